import { useEffect, useMemo, useState } from 'preact/hooks';
import { ApiError, query, request } from '../api.js';
import { Chart, type ChartSeries, type Shape } from '../chart.js';
import { ActionBadge, duration, num, RANGES, StatusBadge, Time } from '../format.js';
import { html } from '../html.js';
import { pick, replaceParams } from '../route.js';
import { align, isChange, OPERATOR, replicaSteps, ruleLabel, type ConditionVerdict, type DecisionRecord, type DirectionVerdict, type HistoryRow, type Timeline, type TimelineDecision } from '../series.js';
import { Flags, SourceBadge, type PolicyBasics } from './policies.js';

interface Policy extends PolicyBasics {
  cooldown_seconds: number;
}

interface State {
  current_replicas: number | null;
  cooldown_remaining_seconds: number;
  consecutive_metric_failures: number;
  executor: string;
  last_decision: DecisionRecord | null;
  last_evaluated_at: string | null;
  next_schedule_fires: Array<{ cron_expression: string; timezone: string; next: string[] }>;
}

const MARKERS: Array<{ label: string; color: string; shape: Shape; hollow?: boolean; size?: number; pick: (r: TimelineDecision) => boolean }> = [
  { label: '▲ scaled up', color: '#1a7f37', shape: 'up', pick: (r) => isChange(r) && r.action === 'scale_up' },
  { label: '▼ scaled down', color: '#bc4c00', shape: 'down', pick: (r) => isChange(r) && r.action === 'scale_down' },
  { label: '◆ schedule or fallback', color: '#0969da', shape: 'diamond', pick: (r) => isChange(r) && (r.action === 'scheduled' || r.action === 'fallback') },
  { label: '○ dry run (not applied)', color: '#8250df', shape: 'circle', hollow: true, pick: (r) => r.dry_run && r.status !== 'blocked' },
  { label: '✗ failed', color: '#cf222e', shape: 'cross', size: 12, pick: (r) => r.status === 'failed' && !r.dry_run },
  { label: '□ blocked', color: '#6e7781', shape: 'square', hollow: true, size: 8, pick: (r) => r.status === 'blocked' },
];

function ReplicaChart({ rows, from, to, current }: { rows: TimelineDecision[]; from: number; to: number; current: number | null }) {
  const { data, series } = useMemo(() => {
    const lines: Array<Array<[number, number | null]>> = [replicaSteps(rows, from, to, current)];
    const series: ChartSeries[] = [{ label: 'Replicas', color: '#24292f', kind: 'step' }];
    for (const m of MARKERS) {
      const picked = rows.filter(m.pick);
      if (picked.length === 0) continue;
      lines.push(picked.map((r): [number, number] => [Date.parse(r.executed_at) / 1000, r.new_replicas]));
      series.push({ label: m.label, color: m.color, kind: 'points', shape: m.shape, hollow: m.hollow, size: m.size });
    }
    return { data: align(lines), series };
  }, [rows, from, to, current]);
  return html`<${Chart} label="Replicas over the range, with a marker at each recorded decision (the list below has the same decisions as text)" data=${data} series=${series} yLabel="replicas" testId="replica-chart" />`;
}

/** One chart per rule (and target-tracking entry): its value at each recorded decision against its threshold. */
function RuleCharts({ timeline, from, to }: { timeline: Timeline; from: number; to: number }) {
  const charts = useMemo(() => {
    const series = [
      ...timeline.rules.map((r) => ({ id: r.id, label: ruleLabel(r), threshold: r.threshold })),
      ...timeline.target_tracking.map((t) => ({ id: t.id, label: `target tracking: ${t.metric} target ${t.target}`, threshold: t.target })),
    ];
    return series.map((m) => {
      const points: Array<[number, number | null]> = [];
      const held: Array<[number, number | null]> = [];
      for (const d of timeline.decisions) {
        if (!(m.id in d.values)) continue;
        const t = Date.parse(d.executed_at) / 1000;
        points.push([t, d.values[m.id] ?? null]);
        if (d.held.includes(m.id)) held.push([t, d.values[m.id] ?? null]);
      }
      return {
        id: m.id,
        label: m.label,
        data: align([points, held, [[from, m.threshold], [to, m.threshold]]]),
        series: [
          { label: 'value at the decision', color: '#0969da', kind: 'line' },
          { label: '● held', color: '#1a7f37', kind: 'points', size: 8 },
          { label: `threshold ${m.threshold}`, color: '#cf222e', kind: 'dashed' },
        ] as ChartSeries[],
      };
    });
  }, [timeline, from, to]);
  if (charts.length === 0) return html`<p class="muted">No decision in this range carries metric values.</p>`;
  return html`<div class="rule-charts">${charts.map((c) => html`<${Chart} key=${c.id} label=${c.label} data=${c.data} series=${c.series} height=${180} testId="rule-chart" />`)}</div>`;
}

const howCombined = (d: DirectionVerdict): string => (d.when != null ? 'condition tree' : (d.match ?? 'all'));
const directionVerdict = (d: DirectionVerdict): string => (d.held ? `held${d.decided_by != null ? ` through ${d.decided_by}` : ''}` : 'did not hold');

/** A condition tree, each node with its verdict. */
function ConditionTree({ node }: { node: ConditionVerdict }): unknown {
  const mark = node.held ? html`<span class="badge ok">✓</span>` : html`<span class="badge off">✗</span>`;
  if (node.rule !== undefined) return html`<ul><li>${mark} <code>${node.rule}</code></li></ul>`;
  const op = node.all !== undefined ? 'all' : node.any !== undefined ? 'any' : 'not';
  const children = node.all ?? node.any ?? (node.not !== undefined ? [node.not] : []);
  return html`<ul><li>${mark} ${op}${children.map((c) => html`<${ConditionTree} node=${c} />`)}</li></ul>`;
}

export function DecisionDetails({ d }: { d: DecisionRecord }) {
  return html`<div class="decision" data-testid="decision-details">
    <p><strong>${d.reason}</strong></p>
    <dl class="facts">
      <dt>Reason code</dt><dd><code>${d.reason_code}</code></dd>
      <dt>Replicas</dt><dd>${d.current_replicas} (from ${d.current_replicas_from}) → wanted ${d.wanted_replicas} → decided ${d.desired_replicas}</dd>
      <dt>Triggered by</dt><dd>${d.triggered_by ?? '—'}</dd>
      <dt>Cooldown left</dt><dd>${duration(d.cooldown_remaining_seconds)}</dd>
      <dt>Failed metric reads in a row</dt><dd>${d.consecutive_metric_failures}</dd>
      <dt>Directions</dt><dd>up (${howCombined(d.directions.scale_up)}): ${directionVerdict(d.directions.scale_up)} · down (${howCombined(d.directions.scale_down)}): ${directionVerdict(d.directions.scale_down)} · chosen: ${d.directions.chosen ?? 'none'}</dd>
    </dl>
    ${(['scale_up', 'scale_down'] as const).map((k) => {
      const when = d.directions[k].when;
      return when != null && html`<div class="condition-tree" data-testid="condition-tree-${k}"><p class="muted">${k}_when</p><${ConditionTree} node=${when} /></div>`;
    })}
    ${d.rules.length > 0 && html`<table class="rules">
      <caption>Rules</caption>
      <thead><tr><th scope="col">Direction</th><th scope="col">Metric</th><th scope="col">Source</th><th scope="col">Condition</th><th scope="col">Window</th><th scope="col">Samples</th><th scope="col">Value</th><th scope="col">Verdict</th></tr></thead>
      <tbody>${d.rules.map((r) => html`<tr>
        <td>${r.direction === 'scale_up' ? 'up' : 'down'}${r.name ? html` <code>${r.name}</code>` : ''}</td><td><code>${r.metric}</code></td><td>${r.source}</td>
        <td>${r.aggregation} ${OPERATOR[r.operator] ?? r.operator} ${r.threshold}</td><td>${duration(r.window_seconds)}</td><td>${r.samples}</td><td>${num(r.value, 4)}</td>
        <td>${r.error !== null ? html`<span class="badge status-failed">✗ error</span> ${r.error}` : r.held ? html`<span class="badge ok">✓ held</span>` : html`<span class="badge off">✗ did not hold</span>${r.why ? ` ${r.why}` : ''}`}</td>
      </tr>`)}</tbody>
    </table>`}
    ${(d.target_tracking ?? []).length > 0 && html`<table class="rules">
      <caption>Target tracking</caption>
      <thead><tr><th scope="col">Metric</th><th scope="col">Target</th><th scope="col">Value</th><th scope="col">Formula</th><th scope="col">Wanted</th></tr></thead>
      <tbody>${(d.target_tracking ?? []).map((t) => html`<tr><td><code>${t.metric}</code></td><td>${t.kind} ${t.target} ± ${t.tolerance}</td><td>${num(t.value, 4)}</td><td>${t.formula ?? '—'}</td><td>${t.opinion ?? 'no opinion'}</td></tr>`)}</tbody>
    </table>`}
    ${d.schedule !== null && html`<p>Schedule <code>${d.schedule.cron_expression}</code> (${d.schedule.timezone}, ${d.schedule.kind}, ${d.schedule.mode}) fired <${Time} iso=${d.schedule.fired_at} /> and wants ${d.schedule.desired_replicas}.</p>`}
    ${d.adjustments.length > 0 && html`<table class="rules">
      <caption>What changed the count the rules wanted (bounds, cost cap, cooldown, stabilization, rate limits)</caption>
      <thead><tr><th scope="col">Kind</th><th scope="col">From</th><th scope="col">To</th><th scope="col">Why</th></tr></thead>
      <tbody>${d.adjustments.map((a) => html`<tr><td>${a.kind}</td><td>${a.from}</td><td>${a.to}</td><td>${a.detail}</td></tr>`)}</tbody>
    </table>`}
    <details><summary>The decision record as JSON</summary><pre>${JSON.stringify(d, null, 2)}</pre></details>
  </div>`;
}

/** A decision's whole record, fetched when it is opened. */
function RecordOf({ id }: { id: string }) {
  const [row, setRow] = useState<HistoryRow | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    request<HistoryRow>(`history/${encodeURIComponent(id)}`)
      .then(setRow)
      .catch((e: unknown) => setError(e instanceof Error ? e.message : String(e)));
  }, [id]);
  if (error !== null) return html`<p class="error" role="alert">Could not load the record: ${error}</p>`;
  if (row === null) return html`<p role="status">Loading the record…</p>`;
  return row.details === null ? html`<p class="muted">This decision has no record.</p>` : html`<${DecisionDetails} d=${row.details} />`;
}

function DecisionList({ rows }: { rows: TimelineDecision[] }) {
  const newest = useMemo(() => [...rows].reverse(), [rows]);
  const [shown, setShown] = useState(50);
  const [open, setOpen] = useState<string | null>(null);
  if (newest.length === 0) return html`<p class="muted">No decision was recorded in this range.</p>`;
  return html`<table class="decisions" data-testid="decisions">
    <caption>Decisions recorded in the range, newest first (${num(newest.length, 0)})</caption>
    <thead><tr><th scope="col">Time</th><th scope="col">Action</th><th scope="col">Replicas</th><th scope="col">Outcome</th><th scope="col">Reason</th><th scope="col"><span class="sr-only">Details</span></th></tr></thead>
    <tbody>
      ${newest.slice(0, shown).map((r) => html`<tr key=${r.id}>
          <td><${Time} iso=${r.executed_at} /></td>
          <td><${ActionBadge} action=${r.action} /><div class="muted small">by ${r.triggered_by}</div></td>
          <td>${r.previous_replicas} → ${r.new_replicas}</td>
          <td><${StatusBadge} status=${r.status} dryRun=${r.dry_run} />${r.error !== null ? html`<div class="error small">${r.error}</div>` : ''}</td>
          <td>${r.reason}</td>
          <td>${r.has_record && html`<button type="button" aria-expanded=${open === r.id} aria-controls=${`d-${r.id}`} onClick=${() => setOpen(open === r.id ? null : r.id)}>${open === r.id ? 'Hide' : 'Details'}</button>`}</td>
        </tr>
        ${open === r.id && html`<tr class="expanded" id=${`d-${r.id}`}><td colspan="6"><${RecordOf} id=${r.id} /></td></tr>`}`)}
    </tbody>
  </table>
  ${shown < newest.length && html`<button type="button" onClick=${() => setShown(shown + 200)}>Show ${Math.min(200, newest.length - shown)} more</button>`}`;
}

export function PolicyPage({ id, params, epoch }: { id: string; params: URLSearchParams; epoch: number }) {
  const [range, setRange] = useState(pick(params, 'range', RANGES.map((r) => r.seconds), 86400));
  const [policy, setPolicy] = useState<Policy | null>(null);
  const [state, setState] = useState<State | null>(null);
  const [timeline, setTimeline] = useState<Timeline | null>(null);
  const [window, setWindow] = useState<{ from: number; to: number }>({ from: 0, to: 0 });
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    replaceParams({ range: range === 86400 ? undefined : range });
    const ctl = new AbortController();
    setTimeline(null);
    const path = `policies/${encodeURIComponent(id)}`;
    Promise.all([
      request<Policy>(path, { signal: ctl.signal }),
      request<State>(`${path}/state`, { signal: ctl.signal }),
      // Up to the server's now (a browser's clock may be off); the chart spans the answer's range.
      request<Timeline>(`${path}/timeline${query({ since: new Date(Date.now() - range * 1000).toISOString() })}`, { signal: ctl.signal }),
    ])
      .then(([p, s, tl]) => {
        setPolicy(p);
        setState(s);
        setTimeline(tl);
        setWindow({ from: Date.parse(tl.since) / 1000, to: Date.parse(tl.until) / 1000 });
        setError(null);
      })
      .catch((e: unknown) => {
        if (!ctl.signal.aborted) setError(e instanceof ApiError ? (e.status === 404 ? `No policy "${id}": it may have been deleted.` : e.message) : String(e));
      });
    return () => ctl.abort();
  }, [id, range, epoch]);

  // After the charts and the list are on the page: what the load-time benchmark reads.
  useEffect(() => {
    if (timeline !== null) performance.mark('policy-rendered');
  }, [timeline]);

  if (error !== null) return html`<p class="error" role="alert">${error}</p><p><a href="#/">Back to the policies</a></p>`;
  if (policy === null || state === null) return html`<p role="status">Loading the policy…</p>`;
  const fires = state.next_schedule_fires.flatMap((s) => s.next.slice(0, 1).map((n) => ({ ...s, n }))).sort((a, b) => (a.n < b.n ? -1 : 1));
  return html`<section aria-labelledby="policy-title">
    <p class="crumbs"><a href="#/">Policies</a> / ${policy.name}</p>
    <div class="title-row">
      <h1 id="policy-title">${policy.name}</h1>
      <${Flags} p=${policy} /> <${SourceBadge} source=${policy.source} />
      <a class="button" href=${`#/preview?from=${encodeURIComponent(policy.id)}`}>Preview a change…</a>
    </div>
    ${policy.description !== null && html`<p>${policy.description}</p>`}
    <dl class="facts wide" data-testid="policy-state">
      <dt>Target</dt><dd>${policy.target_type}${policy.target_id !== null ? ` · ${policy.target_id}` : ''} (executor ${state.executor})</dd>
      <dt>Replicas now</dt><dd>${state.current_replicas ?? 'not known yet'} (bounds ${policy.min_replicas}–${policy.max_replicas})</dd>
      <dt>Last decision</dt><dd>${state.last_decision === null ? 'none yet' : html`<${ActionBadge} action=${state.last_decision.action} /> ${state.last_decision.reason} (<${Time} iso=${state.last_evaluated_at} />)`}</dd>
      <dt>Cooldown left</dt><dd>${state.cooldown_remaining_seconds > 0 ? duration(state.cooldown_remaining_seconds) : 'none'} of ${duration(policy.cooldown_seconds)}</dd>
      <dt>Failed metric reads in a row</dt><dd>${state.consecutive_metric_failures}</dd>
      <dt>Next schedule fire</dt><dd>${fires.length === 0 ? 'no schedule' : html`<${Time} iso=${fires[0]?.n} /> (<code>${fires[0]?.cron_expression}</code>, ${fires[0]?.timezone})`}</dd>
    </dl>
    <fieldset class="ranges">
      <legend>Range</legend>
      ${RANGES.map((r) => html`<label><input type="radio" name="range" value=${r.seconds} checked=${range === r.seconds} onChange=${() => setRange(r.seconds)} /> last ${r.label}</label>`)}
    </fieldset>
    ${timeline === null ? html`<p role="status">Loading the history…</p>` : html`
      ${timeline.truncated && html`<p class="error" role="status">This range holds more decisions than one page of the timeline; the newest ${num(timeline.decisions.length, 0)} are shown. Choose a shorter range to see them all.</p>`}
      <h2>Replicas</h2>
      <${ReplicaChart} rows=${timeline.decisions} from=${window.from} to=${window.to} current=${state.current_replicas} />
      <h2>Metrics against thresholds</h2>
      <p class="muted small">Each point is the value a rule saw at a recorded decision (a change, a dry run or a blocked change); quiet evaluations are not recorded. Preview the policy to replay its metrics minute by minute.</p>
      <${RuleCharts} timeline=${timeline} from=${window.from} to=${window.to} />
      <h2>Decisions</h2>
      <${DecisionList} rows=${timeline.decisions} />`}
  </section>`;
}
