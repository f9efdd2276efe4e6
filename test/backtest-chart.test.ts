/**
 * The backtest chart (src/backtest/chart.ts): well-formed, self-contained SVG that names what it
 * shows (title, thresholds, legend, time axis), a marker for every action, escaped text, bounded
 * size for a month at a one-minute step, and the same bytes for the same input. With target
 * tracking: a panel per entry with its value and target line (the capacity target x replicas for
 * target_per_replica), and the proposal before stabilization and rate limits on the replica panel.
 */
import t from 'tap';
import { formatValue, renderBacktestSvg } from '../src/backtest/chart.js';
import { replay, type ReplayResult, type TimelineRow } from '../src/backtest/replay.js';
import type { Action } from '../src/engine/decision.js';
import { observationKey } from '../src/engine/rule-window.js';
import type { Sample } from '../src/plugins/api.js';
import type { Policy, PolicyInput, RuleInput } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';

const SOURCE = 'prometheus';
const LAG = 'max(philotes_cdc_lag_seconds)';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function policyOf(input: Partial<PolicyInput>): Policy {
  return normalizePolicy(
    { name: 'chart-test', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10, cooldown_seconds: 300, ...input },
    { id: '00000000-0000-4000-8000-00000000c4a7', source: 'api', now: new Date('2026-01-01T00:00:00Z') },
  );
}

/** Rule ids are random: give them fixed ones, so two normalisations render the same bytes. */
function withFixedIds(p: Policy): Policy {
  return {
    ...p,
    scale_up_rules: p.scale_up_rules.map((r, i) => ({ ...r, id: `up${i}` })),
    scale_down_rules: p.scale_down_rules.map((r, i) => ({ ...r, id: `down${i}` })),
  };
}

const CDC_RULES: Pick<PolicyInput, 'scale_up_rules' | 'scale_down_rules'> = {
  scale_up_rules: [{ metric: LAG, operator: 'gt', threshold: 60, duration: '5m', scale_by: 2 }],
  scale_down_rules: [{ metric: LAG, operator: 'lt', threshold: 10, duration: '10m', scale_by: -1 }],
};

/**
 * A replayed CDC worker morning: lag quiet, rising above 60 for 40 minutes, falling back, and a
 * 25-minute hole in the history; fallback to 3 workers when the metric is missing.
 */
async function cdcMorning(): Promise<{ policy: Policy; result: ReplayResult }> {
  const policy = withFixedIds(policyOf({ ...CDC_RULES, cost_per_replica_hour: 0.12, on_metric_error: 'fallback', fallback: { after_failures: 10, replicas: 3 } }));
  const from = new Date('2026-01-05T06:00:00Z');
  const to = new Date('2026-01-05T12:00:00Z');
  const samples: Sample[] = [];
  for (let t = from.getTime() / 1000 - 600; t <= to.getTime() / 1000; t += 60) {
    const minute = (t - from.getTime() / 1000) / 60;
    if (minute >= 240 && minute < 265) continue;
    const v = minute < 60 ? 5 : minute < 70 ? 5 + (minute - 60) * 14 : minute < 110 ? 145 + (minute % 3) : minute < 130 ? 145 - (minute - 110) * 7 : 4;
    samples.push({ t, v });
  }
  const series = new Map<string, Sample[]>();
  for (const r of [...policy.scale_up_rules, ...policy.scale_down_rules]) series.set(observationKey(r, SOURCE), samples);
  const result = await replay({ policy, from, to, intervalSeconds: 60, initialReplicas: 2, defaultCooldown: 300, defaultSource: SOURCE, price: 0.12, series });
  return { policy, result };
}

/** A timeline built directly: values by rule id per row, replica counts, actions. */
function timelineOf(
  policy: Policy,
  from: string,
  stepSeconds: number,
  n: number,
  value: (i: number) => number | null,
  replicas: (i: number) => number = () => 2,
  action: (i: number, before: number, after: number) => Action = (_i, b, a) => (a > b ? 'scale_up' : a < b ? 'scale_down' : 'none'),
): ReplayResult {
  const start = Date.parse(from);
  const ids = [...policy.scale_up_rules, ...policy.scale_down_rules].map((r) => r.id);
  const timeline: TimelineRow[] = [];
  const actions: Record<string, number> = {};
  let before = replicas(0);
  let peak = before;
  let lowest = before;
  for (let i = 0; i < n; i++) {
    const after = replicas(i);
    const v = value(i);
    const a = action(i, before, after);
    actions[a] = (actions[a] ?? 0) + 1;
    timeline.push({
      time: new Date(start + i * stepSeconds * 1000).toISOString(),
      values: Object.fromEntries(ids.map((id) => [id, v])),
      held: Object.fromEntries(ids.map((id) => [id, false])),
      replicas_before: before,
      replicas: after,
      action: a,
      reason_code: a === 'none' ? 'no_rule_held' : 'rules_held',
      reason: '',
    });
    before = after;
    peak = Math.max(peak, after);
    lowest = Math.min(lowest, after);
  }
  return {
    timeline,
    summary: {
      from,
      to: (timeline.at(-1) as TimelineRow).time,
      step_seconds: stepSeconds,
      evaluations: n,
      actions,
      reason_codes: {},
      replica_hours: 1,
      estimated_cost: null,
      scale_up_pending_minutes: 0,
      peak_replicas: peak,
      min_replicas_seen: lowest,
      final_replicas: before,
    },
  };
}

/** A small deterministic generator. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const ENTITY = /&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/y;

/**
 * A small XML well-formedness check: one root, balanced and properly nested tags, quoted
 * attributes without a raw `<`, no duplicate attribute, and `&` only as an entity. Returns the
 * problems found (none for a well-formed document).
 */
function xmlProblems(xml: string): string[] {
  const problems: string[] = [];
  const stack: string[] = [];
  let roots = 0;
  const checkText = (text: string, at: number): void => {
    for (let i = text.indexOf('&'); i >= 0; i = text.indexOf('&', i + 1)) {
      ENTITY.lastIndex = i;
      if (!ENTITY.test(text)) problems.push(`bare & at ${at + i}`);
    }
    if (text.includes('<')) problems.push(`raw < at ${at}`);
  };
  let pos = 0;
  while (pos < xml.length) {
    const lt = xml.indexOf('<', pos);
    if (lt < 0) {
      if (xml.slice(pos).trim() !== '') problems.push('text after the root');
      break;
    }
    const text = xml.slice(pos, lt);
    if (stack.length === 0 && text.trim() !== '') problems.push(`text outside the root at ${pos}`);
    checkText(text, pos);
    if (xml.startsWith('<!--', lt)) {
      const end = xml.indexOf('-->', lt);
      if (end < 0) return [...problems, 'unclosed comment'];
      pos = end + 3;
      continue;
    }
    const gt = xml.indexOf('>', lt);
    if (gt < 0) return [...problems, `unclosed tag at ${lt}`];
    const tag = xml.slice(lt + 1, gt);
    if (tag.startsWith('/')) {
      const name = tag.slice(1).trim();
      const open = stack.pop();
      if (open !== name) problems.push(`</${name}> closes <${open ?? 'nothing'}> at ${lt}`);
    } else {
      const selfClosing = tag.endsWith('/');
      const body = selfClosing ? tag.slice(0, -1) : tag;
      const m = /^([A-Za-z_][\w.:-]*)([\s\S]*)$/.exec(body);
      if (m === null) {
        problems.push(`bad tag name at ${lt}`);
      } else {
        const [, name = '', attrs = ''] = m;
        const seen = new Set<string>();
        const rest = attrs.replace(/\s+([A-Za-z_][\w.:-]*)\s*=\s*(?:"([^"<]*)"|'([^'<]*)')/g, (_all, attr: string, dq?: string, sq?: string) => {
          if (seen.has(attr)) problems.push(`duplicate attribute ${attr} at ${lt}`);
          seen.add(attr);
          checkText(dq ?? sq ?? '', lt);
          return '';
        });
        if (rest.trim() !== '') problems.push(`bad attributes ${JSON.stringify(rest.slice(0, 40))} at ${lt}`);
        if (stack.length === 0) roots++;
        if (!selfClosing) stack.push(name);
      }
    }
    pos = gt + 1;
  }
  if (stack.length > 0) problems.push(`unclosed <${stack.join('><')}>`);
  if (roots !== 1) problems.push(`${roots} root elements`);
  return problems;
}

function unescape(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

/** The text of every <text> element (its own text, without a <title> child), unescaped. */
function texts(svg: string): string[] {
  return [...svg.matchAll(/<text\b[^>]*>([\s\S]*?)<\/text>/g)].map((m) => unescape((m[1] ?? '').replace(/<title>[\s\S]*?<\/title>/g, '')));
}

/** Action markers: kind and how many actions each stands for. */
function markers(svg: string): Array<{ kind: string; count: number }> {
  return [...svg.matchAll(/<path class="mk mk-([a-z_]+)" data-count="(\d+)"/g)].map((m) => ({ kind: m[1] as string, count: Number(m[2]) }));
}

function actionCounts(result: ReplayResult): Record<string, number> {
  const out: Record<string, number> = {};
  for (const row of result.timeline) if (row.action !== 'none') out[row.action] = (out[row.action] ?? 0) + 1;
  return out;
}

function markerCounts(svg: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of markers(svg)) out[m.kind] = (out[m.kind] ?? 0) + m.count;
  return out;
}

/** Numbers of a path's "d" attribute as [x, y] pairs (absolute M/L commands only). */
function points(d: string): Array<[number, number]> {
  return [...d.matchAll(/[ML](-?[\d.]+),(-?[\d.]+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

t.test('a replayed CDC worker morning: structure, labels, legend, axes, markers', async (t) => {
  const { policy, result } = await cdcMorning();
  const svg = renderBacktestSvg(policy, result);
  t.same(xmlProblems(svg), [], 'well-formed XML');
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="1100" height="\d+" viewBox="0 0 1100 \d+"/, 'an SVG root with its size');
  t.notMatch(svg, /<script|<image|<foreignObject|@import|@font-face|href=/, 'self-contained: nothing to fetch or run');

  const all = texts(svg);
  t.ok(all.includes('Backtest of chart-test'), 'title names the policy');
  t.ok(
    all.some((s) => s.includes('2026-01-05 06:00 → 2026-01-05 12:00 UTC') && s.includes('step 1m') && s.includes('361 evaluations')),
    'subtitle gives the range, the step and the evaluations',
  );
  t.ok(all.includes(LAG), 'one panel titled by its metric');
  t.ok(all.includes('replicas'), 'the replica panel');
  t.ok(all.includes('up: > 60 for 5m (+2)'), 'scale-up threshold label');
  t.ok(all.includes('down: < 10 for 10m (-1)'), 'scale-down threshold label');
  t.ok(all.includes('max 10') && all.includes('min 1'), 'replica bounds labelled');
  for (const entry of ['metric value', 'scale-up threshold', 'scale-down threshold', 'no data', 'replicas', 'min / max replicas', 'scale up', 'scale down', 'scheduled', 'fallback']) {
    t.ok(all.includes(entry), `legend: ${entry}`);
  }
  t.equal((svg.match(/<g class="legend"/g) ?? []).length, 10, 'ten legend entries');
  for (const tick of ['06:00', '07:00', '08:00', '09:00', '10:00', '11:00', '12:00']) t.ok(all.includes(tick), `time tick ${tick}`);
  t.ok(all.includes('Mon Jan 5'), 'the day under the first time tick');
  t.ok(all.includes('time (UTC)'), 'the axis says UTC');
  for (const tick of ['0', '50', '100', '150']) t.ok(all.includes(tick), `value tick ${tick}`);

  // Every action of the timeline has a marker (a merged marker counts all it stands for).
  const expected = actionCounts(result);
  t.ok((expected['scale_up'] ?? 0) > 0 && (expected['scale_down'] ?? 0) > 0 && (expected['fallback'] ?? 0) > 0, 'the scenario acts in three ways');
  t.same(markerCounts(svg), expected, 'marker counts equal the actions by kind');
  t.equal(
    markers(svg).reduce((n, m) => n + m.count, 0),
    result.timeline.filter((r) => r.action !== 'none').length,
    'marker total equals the actions in the timeline',
  );

  t.match(svg, /<rect class="gap" x="[\d.]+" y="[\d.]+" width="[\d.]+"/, 'the hole in the history is shaded');
  const footer = all.filter((s) => s.startsWith('Actions:') || /replica-hours|pending/i.test(s)).join(' ');
  t.match(footer, /Actions: \d+ scale up, \d+ scale down, 1 fallback/, 'footer: actions by kind');
  t.match(footer, new RegExp(`replica-hours ${result.summary.replica_hours.toFixed(2)}`), 'footer: replica-hours');
  t.match(footer, /estimated cost \d+\.\d\d/, 'footer: estimated cost');
  t.match(footer, new RegExp(`peak ${result.summary.peak_replicas} replicas`), 'footer: peak');
  t.match(footer, /scale-up pending [\d.]+ min/i, 'footer: scale-up pending minutes');
});

t.test('deterministic: the same input gives the same bytes', async (t) => {
  const a = await cdcMorning();
  const b = await cdcMorning();
  t.equal(renderBacktestSvg(a.policy, a.result), renderBacktestSvg(b.policy, b.result));
  t.equal(renderBacktestSvg(a.policy, a.result, { width: 800, title: 'x' }), renderBacktestSvg(a.policy, a.result, { width: 800, title: 'x' }));
});

t.test('text is escaped: metric names, policy names and titles', async (t) => {
  const nasty = `rate(x{job="a<b>&c",le='1'}[5m])`;
  const rule: RuleInput = { metric: nasty, operator: 'gte', threshold: 5, duration: '1m', scale_by: 1 };
  const policy = withFixedIds(policyOf({ name: `p "<&>" 'q'`, scale_up_rules: [rule] }));
  const result = timelineOf(policy, '2026-01-01T00:00:00Z', 60, 30, (i) => i);
  const svg = renderBacktestSvg(policy, result, { title: `Title <script>alert('&')</script>` });
  t.same(xmlProblems(svg), [], 'well-formed XML');
  t.ok(svg.includes('rate(x{job=&quot;a&lt;b&gt;&amp;c&quot;,le=&apos;1&apos;}[5m])'), 'the metric is escaped');
  t.notOk(svg.includes(nasty), 'the raw metric does not appear');
  t.notOk(svg.includes('<script'), 'no element from the title');
  t.ok(texts(svg).includes(nasty), 'and reads back as written');
  t.ok(texts(svg).includes(`Title <script>alert('&')</script>`), 'the title reads back as written');
  t.ok(texts(svg).includes('up: >= 5 for 1m (+1)'), 'operators are escaped in labels');
  t.ok(svg.includes('up: &gt;= 5 for 1m (+1)'));

  const control = withFixedIds(policyOf({ scale_up_rules: [{ ...rule, metric: 'bad\u0001name\uFFFE\uD800x' }] }));
  t.same(xmlProblems(renderBacktestSvg(control, timelineOf(control, '2026-01-01T00:00:00Z', 60, 3, () => 1))), [], 'characters XML cannot carry are dropped');
});

t.test('43,200 points (a month at one minute) stay small, and spikes survive', async (t) => {
  const policy = withFixedIds(policyOf(CDC_RULES));
  const rand = lcg(42);
  const spikeAt = 20_000;
  const n = 43_200;
  const result = timelineOf(
    policy,
    '2026-01-01T00:00:00Z',
    60,
    n,
    (i) => (i === spikeAt ? 500 : i % 9000 < 30 ? null : 20 + 20 * rand()),
    (i) => 1 + (Math.floor(i / 97) % 4),
  );
  const svg = renderBacktestSvg(policy, result);
  t.same(xmlProblems(svg), [], 'well-formed XML');
  t.ok(svg.length < 1_000_000, `under 1 MB (${svg.length} bytes)`);
  t.ok(svg.length < 300_000, `in fact well under (${svg.length} bytes)`);
  t.same(markerCounts(svg), actionCounts(result), 'every action still accounted for');

  // The one-minute spike to 500 is the top of the line, far above the threshold at 60.
  const thr = /<path class="thr thr-up" d="M[\d.]+,([\d.]+)H/.exec(svg);
  const val = /<path class="val" d="([^"]+)"/.exec(svg);
  t.ok(thr !== null && val !== null, 'threshold and value paths');
  const ys = points(val?.[1] ?? '').map(([, y]) => y);
  const top = Math.min(...ys);
  t.ok(top < Number(thr?.[1]) - 50, `the spike reaches well above the threshold (y ${top} vs ${thr?.[1]})`);
  for (const tick of ['Jan 5', 'Jan 12', 'Jan 19', 'Jan 26']) t.ok(texts(svg).includes(tick), `weekly tick ${tick}`);
  t.ok(texts(svg).includes('2026'), 'the year under the first tick');
});

t.test('50,000 points render in bounded size and time', async (t) => {
  const policy = withFixedIds(policyOf(CDC_RULES));
  const rand = lcg(7);
  const result = timelineOf(policy, '2026-01-01T00:00:00Z', 60, 50_000, () => 1000 * rand(), (i) => 1 + (i % 2));
  const started = performance.now();
  const svg = renderBacktestSvg(policy, result);
  const ms = performance.now() - started;
  t.same(xmlProblems(svg), [], 'well-formed XML');
  t.ok(svg.length < 1_000_000, `under 1 MB even when every evaluation acts (${svg.length} bytes)`);
  t.ok(ms < 5000, `fast enough (${Math.round(ms)} ms)`);
  t.same(markerCounts(svg), actionCounts(result), 'all 49,999 actions accounted for by merged markers');
});

t.test('edge cases render and say what they show', async (t) => {
  const policy = withFixedIds(policyOf(CDC_RULES));

  await t.test('one point', async (t) => {
    const result = timelineOf(policy, '2026-03-01T10:00:00Z', 60, 1, () => 42, () => 3);
    const svg = renderBacktestSvg(policy, result);
    t.same(xmlProblems(svg), [], 'well-formed XML');
    t.match(svg, /<circle class="dot" cx="[\d.]+" cy="[\d.]+"/, 'a lone value is a dot');
    t.ok(texts(svg).includes('10:00:00'), 'ticks around the instant');
    t.ok(texts(svg).some((s) => s.includes('1 evaluation ')), 'one evaluation, singular');
    t.notMatch(svg, /NaN|Infinity|undefined/, 'no broken numbers');
  });

  await t.test('all values missing', async (t) => {
    const result = timelineOf(policy, '2026-01-01T00:00:00Z', 60, 120, () => null);
    const svg = renderBacktestSvg(policy, result);
    t.same(xmlProblems(svg), [], 'well-formed XML');
    t.ok(texts(svg).includes('no value of this metric in the range'), 'says so');
    t.notMatch(svg, /<path class="val"/, 'no line');
    t.ok(texts(svg).includes('up: > 60 for 5m (+2)'), 'thresholds still shown');
    t.notMatch(svg, /NaN|Infinity|undefined/, 'no broken numbers');
  });

  await t.test('a constant series equal to a threshold', async (t) => {
    const p = withFixedIds(policyOf({ scale_up_rules: [{ metric: 'c', operator: 'gt', threshold: 7, duration: '0', scale_by: 1 }] }));
    const svg = renderBacktestSvg(p, timelineOf(p, '2026-01-01T00:00:00Z', 60, 60, () => 7));
    t.same(xmlProblems(svg), [], 'well-formed XML');
    t.notMatch(svg, /NaN|Infinity|undefined/, 'no broken numbers');
    t.ok(texts(svg).some((s) => /^7(\.0)?$/.test(s)), 'the value is a tick');
    t.ok(texts(svg).includes('up: > 7 (+1)'), 'a zero-duration rule has no "for"');
  });

  await t.test('negative values', async (t) => {
    const p = withFixedIds(policyOf({ scale_down_rules: [{ metric: 'temp', operator: 'lt', threshold: -20, duration: '10m', scale_by: -1 }] }));
    const svg = renderBacktestSvg(p, timelineOf(p, '2026-01-01T00:00:00Z', 60, 600, (i) => -12 + 14 * Math.sin(i / 50)));
    t.same(xmlProblems(svg), [], 'well-formed XML');
    const all = texts(svg);
    t.ok(all.includes('-20') && all.includes('0'), 'ticks below and at zero');
    t.ok(all.includes('down: < -20 for 10m (-1)'));
    t.match(svg, /<path class="zero"/, 'a zero line when zero is inside the range');
  });

  await t.test('huge values use k/M/G', async (t) => {
    const p = withFixedIds(policyOf({ scale_up_rules: [{ metric: 'bytes', operator: 'gt', threshold: 2_500_000, duration: '10m', scale_by: 3 }] }));
    const svg = renderBacktestSvg(p, timelineOf(p, '2026-01-01T00:00:00Z', 60, 600, (i) => 2e6 + 1.5e6 * Math.sin(i / 40)));
    const all = texts(svg);
    t.ok(all.includes('up: > 2.5M for 10m (+3)'), 'threshold in M');
    t.ok(all.some((s) => /^\d(\.\d)?M$/.test(s)), 'ticks in M');
    t.equal(formatValue(1234), '1.234k');
    t.equal(formatValue(1200), '1.2k');
    t.equal(formatValue(3_400_000), '3.4M');
    t.equal(formatValue(-7_000_000_000), '-7G');
    t.equal(formatValue(0.25), '0.25');
    t.equal(formatValue(2e18), '2e+18');
  });

  await t.test('no rules: only the replica panel', async (t) => {
    const p = withFixedIds(policyOf({ schedules: [{ cron_expression: '0 8 * * *', desired_replicas: 4 }] }));
    const result = timelineOf(p, '2026-01-01T00:00:00Z', 600, 432, () => null, (i) => (i % 144 >= 48 && i % 144 < 120 ? 4 : 1), (i, b, a) => (a > b ? 'scheduled' : a < b ? 'scale_down' : 'none'));
    const svg = renderBacktestSvg(p, result, { width: 480 });
    t.same(xmlProblems(svg), [], 'well-formed XML');
    t.notMatch(svg, /metric-panel/, 'no metric panel');
    t.notOk(texts(svg).includes('metric value'), 'no metric legend entry');
    t.same(markerCounts(svg), actionCounts(result), 'scheduled and scale-down markers');
    t.match(svg, /width="480"/);
  });

  await t.test('several metrics: one panel each, rules grouped by metric', async (t) => {
    const p = withFixedIds(
      policyOf({
        scale_up_rules: [
          { metric: 'a', operator: 'gt', threshold: 60, duration: '5m', scale_by: 1 },
          { metric: 'b', operator: 'gt', threshold: 0.8, duration: '5m', scale_by: 1 },
        ],
        scale_down_rules: [{ metric: 'a', operator: 'lt', threshold: 10, duration: '10m', scale_by: -1 }],
      }),
    );
    const svg = renderBacktestSvg(p, timelineOf(p, '2026-01-01T00:00:00Z', 60, 60, (i) => i));
    t.equal((svg.match(/class="panel metric-panel"/g) ?? []).length, 2, 'two metric panels');
    t.equal((svg.match(/class="thr thr-/g) ?? []).length, 3, 'three threshold lines');
  });
});

// ---------------------------------------------------------------------------------------------
// Target tracking
// ---------------------------------------------------------------------------------------------

const EVENTS = 'sum(rate(philotes_buffer_events_processed_total[5m]))';
const CPU = 'avg(philotes_worker_cpu_ratio)';

/** Rule and target-tracking entry ids are random: fixed ones give the same bytes every time. */
function withFixedTrackingIds(p: Policy): Policy {
  return { ...withFixedIds(p), target_tracking: p.target_tracking.map((e, i) => ({ ...e, id: `tt${i}` })) };
}

/**
 * A replayed morning of a buffer worker pool tracking two targets: events per second (100 per
 * replica) rising from 150 to about 900 and falling to 200, with a 15-minute hole in the history,
 * and CPU (target 0.6, 5-minute average) quiet but for one burst to 0.95. Scale-ups are limited to
 * 2 replicas per 2 minutes and scale-downs stabilized over 5 minutes (the default with target
 * tracking), so the proposal runs ahead of the replicas.
 */
async function trackedMorning(): Promise<{ policy: Policy; result: ReplayResult }> {
  const policy = withFixedTrackingIds(
    policyOf({
      name: 'buffer-workers',
      cooldown_seconds: 60,
      target_tracking: [
        { metric: EVENTS, target_per_replica: 100 },
        { metric: CPU, target_value: 0.6, duration: '5m' },
      ],
      behavior: { scale_up_limit: { replicas: 2, period: '2m' } },
    }),
  );
  const from = new Date('2026-01-05T06:00:00Z');
  const to = new Date('2026-01-05T10:00:00Z');
  const events: Sample[] = [];
  const cpu: Sample[] = [];
  for (let t = from.getTime() / 1000 - 600; t <= to.getTime() / 1000; t += 60) {
    const m = (t - from.getTime() / 1000) / 60;
    const e = m < 40 ? 150 : m < 70 ? 150 + (m - 40) * 25 : m < 130 ? 900 + 30 * Math.sin(m / 3) : m < 150 ? 900 - (m - 130) * 35 : 200;
    if (m < 170 || m >= 185) events.push({ t, v: e });
    cpu.push({ t, v: m > 190 && m < 215 ? 0.95 : 0.5 + 0.05 * Math.sin(m / 7) });
  }
  const [perReplica, value] = policy.target_tracking as [Policy['target_tracking'][number], Policy['target_tracking'][number]];
  const series = new Map<string, Sample[]>([
    [observationKey(perReplica, SOURCE), events],
    [observationKey(value, SOURCE), cpu],
  ]);
  const result = await replay({ policy, from, to, intervalSeconds: 60, initialReplicas: 2, defaultCooldown: 300, defaultSource: SOURCE, price: null, series });
  return { policy, result };
}

/** Adds target-tracking values (by entry id) and proposals to a timeline built by timelineOf. */
function withTracking(policy: Policy, result: ReplayResult, value: (i: number, entry: number) => number | null, proposal: (i: number) => number | null): ReplayResult {
  return {
    ...result,
    timeline: result.timeline.map((row, i) => ({
      ...row,
      values: { ...row.values, ...Object.fromEntries(policy.target_tracking.map((e, k) => [e.id, value(i, k)])) },
      proposal: proposal(i),
    })),
  };
}

/** The markup of one panel group (panels hold no nested groups). */
function panelOf(svg: string, open: string): string {
  const start = svg.indexOf(open);
  if (start < 0) return '';
  return svg.slice(start, svg.indexOf('</g>', start));
}

function tickValue(label: string): number {
  const m = /^(-?[\d.]+)([kMGT]?)$/.exec(label);
  const unit = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m?.[2] ?? ''] ?? NaN;
  return m === null ? NaN : Number(m[1]) * unit;
}

/** A panel's value scale read back from its y tick labels: the value at a y coordinate. */
function valueAtY(panel: string): (y: number) => number {
  const ticks = [...panel.matchAll(/<text x="[\d.]+" y="(-?[\d.]+)" class="yt">([^<]+)<\/text>/g)].map((m) => [Number(m[1]) - 4, tickValue(m[2] as string)] as const);
  const [y0, v0] = ticks[0] ?? [0, 0];
  const [y1, v1] = ticks.at(-1) ?? [1, 1];
  return (y) => v0 + ((y - y0) * (v1 - v0)) / (y1 - y0);
}

/** The "d" attribute of the first path with this class in `svg`. */
function pathData(svg: string, cls: string): string {
  return new RegExp(`<path class="${cls}" d="([^"]+)"`).exec(svg)?.[1] ?? '';
}

/** A step path's commands: M x,y, H x and V y (the only ones step lines use). */
function stepCommands(d: string): Array<{ c: string; x?: number; y?: number }> {
  return [...d.matchAll(/([MHV])(-?[\d.]+)(?:,(-?[\d.]+))?/g)].map((m) =>
    m[1] === 'M' ? { c: 'M', x: Number(m[2]), y: Number(m[3]) } : m[1] === 'H' ? { c: 'H', x: Number(m[2]) } : { c: 'V', y: Number(m[2]) },
  );
}

/** The levels a step path passes through, in order, as values of its panel's scale. */
function stepLevels(d: string, at: (y: number) => number): number[] {
  return stepCommands(d).flatMap((k) => (k.y === undefined ? [] : [at(k.y)]));
}

/** Consecutive repeats dropped. */
function collapse(xs: number[]): number[] {
  return xs.filter((v, i) => i === 0 || v !== xs[i - 1]);
}

/** The text of every <text> element with nested markup (tspan, title) removed, unescaped. */
function plainTexts(svg: string): string[] {
  return [...svg.matchAll(/<text\b[^>]*>([\s\S]*?)<\/text>/g)].map((m) => unescape((m[1] ?? '').replace(/<title>[\s\S]*?<\/title>/g, '').replace(/<[^>]+>/g, '')));
}

t.test('target tracking: a panel per entry with its value and target, and the proposal', async (t) => {
  const { policy, result } = await trackedMorning();
  const svg = renderBacktestSvg(policy, result);
  const rows = result.timeline;
  t.same(xmlProblems(svg), [], 'well-formed XML');
  t.equal((svg.match(/class="panel tt-panel"/g) ?? []).length, 2, 'one panel per entry');
  t.notMatch(svg, /metric-panel/, 'no rule panels: the policy has no rules');
  t.same(markerCounts(svg), actionCounts(result), 'every action still has its marker');

  const all = plainTexts(svg);
  t.ok(
    all.includes(`${EVENTS}\u00a0· target tracking: a total, 100 per replica (±10%); above the capacity line: too few replicas`),
    'the per-replica panel names its metric and says what its line means',
  );
  t.ok(
    all.includes(`${CPU}\u00a0· target tracking: a per-replica average, target 0.6 (±10%), 5m average; above the target: too few replicas`),
    'the target-value panel names its metric, target and window',
  );
  for (const entry of ['metric value', 'target (target_value)', 'capacity: target_per_replica × replicas', 'no data', 'replicas', 'proposal before stabilization and rate limits', 'min / max replicas']) {
    t.ok(all.includes(entry), `legend: ${entry}`);
  }
  t.notOk(all.includes('scale-up threshold') || all.includes('scale-down threshold'), 'no threshold legend without rules');
  t.equal((svg.match(/<g class="legend"/g) ?? []).length, 11, 'eleven legend entries');
  t.ok(all.includes('capacity 100 × replicas'), 'the capacity line is labelled');
  t.ok(all.includes('target 0.6'), 'the target line is labelled');

  // The per-replica entry: its value series, point for point (one pixel column per evaluation here).
  const events = panelOf(svg, '<g class="panel tt-panel" data-entry="tt0"');
  const eventsAt = valueAtY(events);
  const eventValues = rows.map((r) => r.values['tt0'] ?? null).filter((v): v is number => v !== null);
  t.ok(eventValues.length > 200 && eventValues.length < rows.length, 'the replay used the entry value, with a hole');
  const line = points(pathData(events, 'val tt-val')).map(([, y]) => eventsAt(y));
  t.equal(line.length, eventValues.length, 'a point for every value');
  t.ok(
    line.every((v, i) => Math.abs(v - (eventValues[i] as number)) < 2),
    'the line is the value the entry used at each evaluation',
  );
  t.match(events, /<rect class="gap" /, 'the hole in its history is hatched');

  // Its capacity line: target x replicas at each step, the replica count's step line scaled.
  const capacity = pathData(events, 'tgt tgt-capacity');
  const replicaPanel = panelOf(svg, '<g class="panel replica-panel"');
  const replicasAt = valueAtY(replicaPanel);
  const rep = pathData(replicaPanel, 'rep');
  t.ok(capacity !== '' && rep !== '', 'capacity and replica lines');
  const expectedReplicas = collapse([(rows[0] as TimelineRow).replicas_before, ...rows.map((r) => r.replicas)]);
  t.ok(expectedReplicas.length > 5, 'the replicas changed several times');
  t.same(collapse(stepLevels(capacity, eventsAt).map((v) => Math.round(v / 100))), expectedReplicas, 'its levels are 100 × the replicas, in order');
  t.ok(
    stepLevels(capacity, eventsAt).every((v) => Math.abs(v / 100 - Math.round(v / 100)) < 0.02),
    'each level is a whole number of replicas times the target',
  );
  const capacityX = stepCommands(capacity).flatMap((k) => (k.x === undefined ? [] : [k.x]));
  const repX = stepCommands(rep).flatMap((k) => (k.x === undefined ? [] : [k.x]));
  t.same(capacityX, repX, 'it steps where the replica count steps');
  t.same(
    stepCommands(capacity).map((k) => k.c),
    stepCommands(rep).map((k) => k.c),
    'the same shape as the replica line',
  );
  t.same(
    stepLevels(capacity, eventsAt).map((v) => Math.round(v / 100)),
    stepLevels(rep, replicasAt).map((v) => Math.round(v)),
    'level by level, 100 × the replica line',
  );

  // The target-value entry: its value and the horizontal target line.
  const cpu = panelOf(svg, '<g class="panel tt-panel" data-entry="tt1"');
  const cpuAt = valueAtY(cpu);
  const cpuValues = rows.map((r) => r.values['tt1'] ?? null);
  t.ok(cpuValues.every((v) => v !== null), 'the CPU entry had a value at every evaluation');
  const cpuLine = points(pathData(cpu, 'val tt-val')).map(([, y]) => cpuAt(y));
  t.equal(cpuLine.length, rows.length, 'a point for every evaluation');
  t.ok(
    cpuLine.every((v, i) => Math.abs(v - (cpuValues[i] as number)) < 0.005),
    'the line is the 5-minute average the entry used',
  );
  const target = /<path class="tgt tgt-value" d="M([\d.]+),([\d.]+)H([\d.]+)"\/>/.exec(cpu);
  t.ok(target !== null, 'a horizontal target line');
  t.ok(Math.abs(cpuAt(Number(target?.[2])) - 0.6) < 0.001, 'at the target, 0.6');
  t.notMatch(cpu, /tgt-capacity/, 'no capacity line for a target_value entry');

  // The proposal: a dashed step line on the replica panel, where the replay put it.
  const proposals = rows.map((r) => r.proposal);
  t.ok(
    rows.some((r) => typeof r.proposal === 'number' && r.proposal !== r.replicas),
    'stabilization and the rate limit keep the replicas from the proposal at times',
  );
  t.ok(proposals.includes(null), 'and at times no one has an opinion');
  const prop = pathData(replicaPanel, 'prop');
  t.ok(prop !== '', 'the proposal line');
  t.same(
    collapse(stepLevels(prop, replicasAt).map((v) => Math.round(v))),
    collapse(proposals.filter((v): v is number => typeof v === 'number')),
    'its levels are the proposals, in order',
  );
  t.ok((prop.match(/M/g) ?? []).length > 1, 'broken where there was no proposal');
  t.match(svg, /\.prop\{[^}]*stroke-dasharray:5 3/, 'dashed, so colour is not the only difference from the replica line');
  t.match(svg, /\.tgt\{[^}]*stroke-dasharray:9 3 2 3/, 'target lines are dash-dot');
  t.ok(svg.indexOf('class="prop"') > svg.indexOf('class="rep"'), 'drawn over the replica line');

  t.equal(renderBacktestSvg(policy, result), svg, 'the same bytes again');
});

t.test('target tracking with rules: rule panels first, then entries', async (t) => {
  const policy = withFixedTrackingIds(
    policyOf({
      ...CDC_RULES,
      target_tracking: [{ metric: `rate(x{job="a<b>&c"}[5m])`, target_value: 50, tolerance: 0.2 }],
    }),
  );
  const base = timelineOf(policy, '2026-01-01T00:00:00Z', 60, 120, (i) => (i % 40 < 5 ? null : i), (i) => 2 + Math.floor(i / 30));
  const result = withTracking(policy, base, (i) => (i < 10 ? null : 40 + (i % 20)), (i) => (i % 25 === 0 ? null : 2 + Math.floor((i + 5) / 30)));
  const svg = renderBacktestSvg(policy, result);
  t.same(xmlProblems(svg), [], 'well-formed XML');
  t.ok(svg.indexOf('metric-panel') < svg.indexOf('tt-panel'), 'the rule panel comes first');
  t.ok(svg.includes('rate(x{job=&quot;a&lt;b&gt;&amp;c&quot;}[5m])'), 'the entry metric is escaped');
  t.ok(plainTexts(svg).some((s) => s.startsWith(`rate(x{job="a<b>&c"}[5m])\u00a0· target tracking: a per-replica average, target 50 (±20%)`)), 'and reads back as written');
  const all = texts(svg);
  for (const entry of ['metric value', 'scale-up threshold', 'scale-down threshold', 'target (target_value)', 'proposal before stabilization and rate limits']) {
    t.ok(all.includes(entry), `legend: ${entry}`);
  }
  t.notOk(all.includes('capacity: target_per_replica × replicas'), 'no capacity legend without a per-replica entry');
  t.match(svg, /<path class="prop" d="M/, 'the proposal line');
  t.notMatch(svg, /NaN|Infinity|undefined/, 'no broken numbers');
});

t.test('target tracking edge cases', async (t) => {
  await t.test('a proposal far above max_replicas is cut at the top and labelled', async (t) => {
    const policy = withFixedTrackingIds(policyOf({ target_tracking: [{ metric: 'q', target_per_replica: 10 }] }));
    const base = timelineOf(policy, '2026-01-01T00:00:00Z', 60, 60, () => null, (i) => (i < 30 ? 2 : 10));
    const result = withTracking(policy, base, (i) => (i < 30 ? 20 : 5000), (i) => (i < 30 ? 2 : 500));
    const svg = renderBacktestSvg(policy, result);
    t.same(xmlProblems(svg), [], 'well-formed XML');
    t.ok(texts(svg).includes('proposal up to 500'), 'the peak is given');
    const panel = panelOf(svg, '<g class="panel replica-panel"');
    const frame = /<rect class="frame" x="[\d.]+" y="([\d.]+)"/.exec(panel);
    const top = Number(frame?.[1]);
    const ys = stepCommands(pathData(panel, 'prop')).flatMap((k) => (k.y === undefined ? [] : [k.y]));
    t.ok(ys.length > 0 && ys.every((y) => y >= top), 'the line stays inside the panel');
    const at = valueAtY(panel);
    t.ok(at(top) >= 20 && at(top) <= 25, `the scale reaches twice max_replicas (${at(top)})`);
  });

  await t.test('a proposal a little above max_replicas widens the scale to show it', async (t) => {
    const policy = withFixedTrackingIds(policyOf({ target_tracking: [{ metric: 'q', target_value: 1 }] }));
    const result = withTracking(policy, timelineOf(policy, '2026-01-01T00:00:00Z', 60, 30, () => null, () => 10), () => 1.4, () => 14);
    const svg = renderBacktestSvg(policy, result);
    t.notOk(texts(svg).some((s) => s.startsWith('proposal up to')), 'nothing cut, nothing to say');
    const panel = panelOf(svg, '<g class="panel replica-panel"');
    const at = valueAtY(panel);
    t.same(collapse(stepLevels(pathData(panel, 'prop'), at).map((v) => Math.round(v))), [14], 'drawn at 14');
  });

  await t.test('an entry without any value still shows its target', async (t) => {
    const policy = withFixedTrackingIds(policyOf({ target_tracking: [{ metric: 'q', target_per_replica: 10 }] }));
    const result = withTracking(policy, timelineOf(policy, '2026-01-01T00:00:00Z', 60, 30, () => null), () => null, () => null);
    const svg = renderBacktestSvg(policy, result);
    t.same(xmlProblems(svg), [], 'well-formed XML');
    t.ok(texts(svg).includes('no value of this metric in the range'), 'says so');
    t.notMatch(svg, /tt-val/, 'no value line');
    t.match(svg, /<path class="tgt tgt-capacity" d="M/, 'the capacity line');
    t.notMatch(svg, /<path class="prop"/, 'no proposal, no line');
    t.ok(texts(svg).includes('proposal before stabilization and rate limits'), 'the legend still names it: the policy tracks targets');
    t.notMatch(svg, /NaN|Infinity|undefined/, 'no broken numbers');
  });

  await t.test('one evaluation', async (t) => {
    const policy = withFixedTrackingIds(policyOf({ target_tracking: [{ metric: 'q', target_per_replica: 10 }] }));
    const result = withTracking(policy, timelineOf(policy, '2026-03-01T10:00:00Z', 60, 1, () => null, () => 3), () => 42, () => 5);
    const svg = renderBacktestSvg(policy, result);
    t.same(xmlProblems(svg), [], 'well-formed XML');
    t.match(svg, /<circle class="dot" /, 'a lone value is a dot');
    t.match(svg, /<path class="prop" d="M[\d.]+,[\d.]+H[\d.]+"/, 'a proposal held for the step');
    t.notMatch(svg, /NaN|Infinity|undefined/, 'no broken numbers');
  });

  await t.test('a month at one minute stays small', async (t) => {
    const policy = withFixedTrackingIds(
      policyOf({
        target_tracking: [
          { metric: 'q', target_per_replica: 10 },
          { metric: 'cpu', target_value: 0.6 },
        ],
      }),
    );
    const rand = lcg(3);
    const n = 43_200;
    const base = timelineOf(policy, '2026-01-01T00:00:00Z', 60, n, () => null, (i) => 1 + (Math.floor(i / 37) % 6));
    const result = withTracking(
      policy,
      base,
      (i, k) => (i % 9000 < 30 ? null : k === 0 ? 60 * rand() : rand()),
      (i) => (i % 50 === 0 ? null : 1 + (Math.floor(i / 23) % 8)),
    );
    const started = performance.now();
    const svg = renderBacktestSvg(policy, result);
    const ms = performance.now() - started;
    t.same(xmlProblems(svg), [], 'well-formed XML');
    t.ok(svg.length < 1_000_000, `under 1 MB (${svg.length} bytes)`);
    t.ok(ms < 5000, `fast enough (${Math.round(ms)} ms)`);
    t.same(markerCounts(svg), actionCounts(result), 'every action accounted for');
  });
});

t.test('without target tracking the chart is as it was', async (t) => {
  const { policy, result } = await cdcMorning();
  const svg = renderBacktestSvg(policy, result);
  t.notMatch(svg, /tt-panel|tt-val|class="tgt|class="prop"|\.tgt\{|\.prop\{|\.pts\{/, 'no target-tracking element or style');
  const legend = [...svg.matchAll(/<g class="legend"[^>]*>[\s\S]*?<text[^>]*>([^<]*)<\/text><\/g>/g)].map((m) => m[1]);
  t.same(
    legend,
    ['metric value', 'scale-up threshold', 'scale-down threshold', 'no data', 'replicas', 'min / max replicas', 'scale up', 'scale down', 'scheduled', 'fallback'],
    'the legend of old, in its order',
  );
  // The proposal and extra values of a row are drawn only for a policy that tracks targets.
  const stray = withTracking(policy, result, () => 7, () => 9);
  t.equal(renderBacktestSvg(policy, { ...stray, timeline: stray.timeline.map((r) => ({ ...r, values: { ...r.values, other: 1 } })) }), svg, 'a proposal in the rows changes nothing');
});
