import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, request, type FieldProblem } from '../api.js';
import { Chart, type ChartSeries } from '../chart.js';
import { num, RANGES } from '../format.js';
import { html } from '../html.js';
import { align, ruleLabel } from '../series.js';
import { editable, toYaml } from '../yaml-out.js';

const TEMPLATE = `name: my-policy
target_type: cdc-worker
min_replicas: 1
max_replicas: 10
cooldown_seconds: 300
scale_up_rules:
  - metric: max(philotes_cdc_lag_seconds)
    operator: gt
    threshold: 60
    duration: 2m
    scale_by: 2
scale_down_rules:
  - metric: max(philotes_cdc_lag_seconds)
    operator: lt
    threshold: 10
    duration: 10m
    scale_by: -1
`;

interface Validation {
  state: 'idle' | 'checking' | 'valid' | 'invalid' | 'error';
  problems: FieldProblem[];
  policies: Array<Record<string, unknown>>;
  message?: string;
}

interface BacktestAnswer {
  policy: { id: string; name: string; rules: Array<{ id: string; direction: string; metric: string; operator: string; threshold: number }>; target_tracking: Array<{ id: string; metric: string; target: number }> };
  timeline: Array<{ time: string; values: Record<string, number | null>; held: Record<string, boolean>; replicas_before: number; replicas: number; action: string; reason: string }>;
  summary: { evaluations: number; actions: Record<string, number>; replica_hours: number; estimated_cost: number | null; scale_up_pending_minutes: number; peak_replicas: number; min_replicas_seen: number; final_replicas: number; step_seconds: number };
}

/** A step that keeps a backtest near 720 evaluations (at least a minute). */
function stepFor(seconds: number): number {
  const wanted = Math.max(60, Math.ceil(seconds / 720));
  return [60, 120, 300, 600, 900, 1800, 3600].find((s) => s >= wanted) ?? 3600;
}

function BacktestResult({ answer }: { answer: BacktestAnswer }) {
  const charts = useMemo(() => {
    const times = answer.timeline.map((r) => Date.parse(r.time) / 1000);
    const replicas: Array<[number, number]> = answer.timeline.map((r, i) => [times[i] as number, r.replicas]);
    const ups = answer.timeline.flatMap((r, i): Array<[number, number]> => (r.replicas > r.replicas_before ? [[times[i] as number, r.replicas]] : []));
    const downs = answer.timeline.flatMap((r, i): Array<[number, number]> => (r.replicas < r.replicas_before ? [[times[i] as number, r.replicas]] : []));
    const main = {
      data: align([replicas, ups, downs]),
      series: [
        { label: 'Replicas (replayed)', color: '#24292f', kind: 'step' },
        { label: '▲ scale up', color: '#1a7f37', kind: 'points', shape: 'up' },
        { label: '▼ scale down', color: '#bc4c00', kind: 'points', shape: 'down' },
      ] as ChartSeries[],
    };
    const first = times[0] ?? 0;
    const last = times.at(-1) ?? 0;
    const metrics = [
      ...answer.policy.rules.map((r) => ({ id: r.id, label: ruleLabel(r), threshold: r.threshold })),
      ...answer.policy.target_tracking.map((t) => ({ id: t.id, label: `target tracking: ${t.metric} target ${t.target}`, threshold: t.target })),
    ].map((m) => ({
      ...m,
      data: align([answer.timeline.map((r, i): [number, number | null] => [times[i] as number, r.values[m.id] ?? null]), [[first, m.threshold], [last, m.threshold]]]),
      series: [
        { label: 'value', color: '#0969da', kind: 'line' },
        { label: `threshold ${m.threshold}`, color: '#cf222e', kind: 'dashed' },
      ] as ChartSeries[],
    }));
    return { main, metrics };
  }, [answer]);
  const s = answer.summary;
  return html`<div data-testid="backtest-result">
    <dl class="facts wide" data-testid="backtest-summary">
      <dt>Evaluations</dt><dd>${num(s.evaluations, 0)} (every ${s.step_seconds} s)</dd>
      <dt>Actions</dt><dd>${Object.entries(s.actions).filter(([k]) => k !== 'none').map(([k, v]) => `${k.replace('_', ' ')}: ${v}`).join(', ') || 'none'}</dd>
      <dt>Replica-hours</dt><dd>${num(s.replica_hours)}</dd>
      <dt>Estimated cost</dt><dd>${s.estimated_cost === null ? 'no price configured' : num(s.estimated_cost)}</dd>
      <dt>Replicas</dt><dd>from ${s.min_replicas_seen} to ${s.peak_replicas}, ${s.final_replicas} at the end</dd>
      <dt>Minutes a scale-up waited</dt><dd>${num(s.scale_up_pending_minutes, 1)}</dd>
    </dl>
    <${Chart} label="Replicas the policy would have run over the range" data=${charts.main.data} series=${charts.main.series} yLabel="replicas" testId="backtest-chart" />
    <div class="rule-charts">${charts.metrics.map((m) => html`<${Chart} key=${m.id} label=${m.label} data=${m.data} series=${m.series} height=${180} testId="backtest-metric-chart" />`)}</div>
  </div>`;
}

export function PreviewPage({ params, epoch }: { params: URLSearchParams; epoch: number }) {
  const [text, setText] = useState<string | null>(params.get('from') === null ? TEMPLATE : null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [validation, setValidation] = useState<Validation>({ state: 'idle', problems: [], policies: [] });
  const [range, setRange] = useState(86400);
  const [initial, setInitial] = useState('');
  const [running, setRunning] = useState(false);
  const [answer, setAnswer] = useState<BacktestAnswer | null>(null);
  // The text the shown backtest replayed, to say when the editor has moved on since.
  const [answerFor, setAnswerFor] = useState<string | null>(null);
  const [btError, setBtError] = useState<string | null>(null);
  const editor = useRef<HTMLTextAreaElement>(null);

  // Starting from a stored policy; asked again once a token is given, if it could not be read.
  useEffect(() => {
    const from = params.get('from');
    if (from === null || text !== null) return;
    request<Record<string, unknown>>(`policies/${encodeURIComponent(from)}`)
      .then((p) => {
        setLoadError(null);
        setText(toYaml(editable(p)));
      })
      .catch((e: unknown) => {
        setLoadError(e instanceof Error ? e.message : String(e));
        if (!(e instanceof ApiError && (e.status === 401 || e.status === 403))) setText(TEMPLATE);
      });
  }, [epoch]);

  // Live validation: the API's own check, a moment after typing stops.
  useEffect(() => {
    if (text === null) return;
    const ctl = new AbortController();
    const timer = setTimeout(() => {
      setValidation((v) => ({ ...v, state: 'checking' }));
      request<{ policies: Array<Record<string, unknown>> }>('validate', { method: 'POST', body: text, contentType: 'application/yaml', signal: ctl.signal })
        .then((r) => setValidation({ state: 'valid', problems: [], policies: r.policies }))
        .catch((e: unknown) => {
          if (ctl.signal.aborted) return;
          if (e instanceof ApiError && e.status === 422) setValidation({ state: 'invalid', problems: e.errors, policies: [] });
          else setValidation({ state: 'error', problems: [], policies: [], message: e instanceof Error ? e.message : String(e) });
        });
    }, 350);
    return () => {
      clearTimeout(timer);
      ctl.abort();
    };
  }, [text, epoch]);

  const goTo = (p: FieldProblem): void => {
    const el = editor.current;
    if (el === null || p.line === undefined) return;
    const lines = el.value.split('\n');
    const start = lines.slice(0, p.line - 1).reduce((n, l) => n + l.length + 1, 0);
    el.focus();
    el.setSelectionRange(start, start + (lines[p.line - 1]?.length ?? 0));
  };

  const run = (e: Event): void => {
    e.preventDefault();
    const policy = validation.policies[0];
    if (policy === undefined) return;
    const to = new Date();
    const from = new Date(to.getTime() - range * 1000);
    setRunning(true);
    setBtError(null);
    const body: Record<string, unknown> = { policy, from: from.toISOString(), to: to.toISOString(), step: stepFor(range) };
    if (initial !== '') body['initial_replicas'] = Number(initial);
    const replayed = text;
    request<BacktestAnswer>('backtest', { method: 'POST', body: JSON.stringify(body) })
      .then((a) => {
        setAnswer(a);
        setAnswerFor(replayed);
      })
      .catch((err: unknown) => {
        setAnswer(null);
        setBtError(
          err instanceof ApiError && err.status === 403
            ? `${err.message}. Backtesting an edited policy runs its queries against the daemon's metric sources, so it needs a token with the write scope (a read token may backtest stored policies).`
            : err instanceof ApiError && err.errors.length > 0
              ? `${err.message}: ${err.errors.map((x) => `${x.field} ${x.message}`).join('; ')}`
              : err instanceof Error
                ? err.message
                : String(err),
        );
      })
      .finally(() => setRunning(false));
  };

  const v = validation;
  return html`<section aria-labelledby="preview-title">
    <h1 id="preview-title">Preview a policy</h1>
    <p class="muted">Edit a policy as YAML (or JSON): the API checks it as you type, and a backtest replays it over the metrics' history. Nothing is stored or changed.</p>
    ${loadError !== null && html`<p class="error" role="alert">Could not load the policy: ${loadError}</p>`}
    <div class="preview">
      <div class="editor">
        <label for="policy-text">Policy (YAML or JSON)</label>
        <textarea id="policy-text" ref=${editor} spellcheck="false" rows="24" value=${text ?? ''} disabled=${text === null}
          aria-describedby="validation" onInput=${(e: Event) => {
            setText((e.target as HTMLTextAreaElement).value);
            // Until the new text is checked, nothing is backtested from the old one.
            setValidation((old) => ({ ...old, state: old.state === 'invalid' ? 'invalid' : 'checking', policies: [] }));
          }}></textarea>
      </div>
      <div class="checks">
        <div id="validation" role="status" aria-live="polite" data-testid="validation" class=${`validation ${v.state}`}>
          ${v.state === 'checking' ? 'Checking…'
            : v.state === 'valid' ? html`<strong>✓ Valid</strong>: ${v.policies.map((p) => String(p['name'])).join(', ')}`
            : v.state === 'invalid' ? html`<strong>✗ ${v.problems.length} ${v.problems.length === 1 ? 'problem' : 'problems'}</strong>`
            : v.state === 'error' ? html`<span class="error">Could not check: ${v.message}</span>` : ''}
        </div>
        ${v.state === 'invalid' && html`<ul class="problems" data-testid="problems">
          ${v.problems.map((p) => html`<li><button type="button" class="link" onClick=${() => goTo(p)}>${p.line !== undefined ? `line ${p.line}${p.column !== undefined ? `:${p.column}` : ''}` : 'document'}</button> <code>${p.field || '/'}</code> ${p.message}</li>`)}
        </ul>`}
        <form class="backtest" onSubmit=${run}>
          <fieldset class="ranges">
            <legend>Backtest over</legend>
            ${RANGES.map((r) => html`<label><input type="radio" name="bt-range" checked=${range === r.seconds} onChange=${() => setRange(r.seconds)} /> last ${r.label}</label>`)}
          </fieldset>
          <div class="field">
            <label for="bt-initial">Replicas at the start (empty: min_replicas)</label>
            <input id="bt-initial" type="number" min="0" max="100000" value=${initial} onInput=${(e: Event) => setInitial((e.target as HTMLInputElement).value)} />
          </div>
          <button type="submit" class="primary" disabled=${v.state !== 'valid' || running}>${running ? 'Running…' : 'Run backtest'}</button>
          ${v.state === 'valid' && v.policies.length > 1 && html`<p class="muted small">The text holds ${v.policies.length} policies; the backtest replays the first.</p>`}
        </form>
      </div>
    </div>
    ${btError !== null && html`<p class="error" role="alert">Backtest failed: ${btError}</p>`}
    ${answer !== null && html`<h2>Backtest</h2>
      ${answerFor !== text && html`<p class="muted" role="status">This backtest replayed an earlier version of the text; run it again to replay the text as it is now.</p>`}
      <${BacktestResult} answer=${answer} />`}
  </section>`;
}
