/**
 * Condition trees in backtests: the replay's branch spans (which branch of each direction's tree
 * held, as runs of evaluations), the chart's lanes, legend entries and marker tooltips for them,
 * and the JSON answer's `branches`. A policy without a tree gets none of it.
 */
import { Ajv2020 } from 'ajv/dist/2020.js';
import t from 'tap';
import { buildOpenApi } from '../src/api/openapi.js';
import { registerBacktestRoutes } from '../src/backtest/backtest-controller.js';
import { branchesJson } from '../src/backtest/backtest-service.js';
import { renderBacktestSvg } from '../src/backtest/chart.js';
import { replay, type ReplayResult } from '../src/backtest/replay.js';
import { observationKey } from '../src/engine/rule-window.js';
import type { MetricSource, Sample } from '../src/plugins/api.js';
import { IsolatedMetricSource } from '../src/plugins/plugin-manager.js';
import type { Policy, PolicyInput } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { startTestApp } from './helpers/app.js';

const SOURCE = 'prometheus';
const FROM = new Date('2026-02-02T06:00:00Z');
/** 180 one-minute evaluations: 06:00 .. 08:59. */
const TO = new Date(FROM.getTime() + 179 * 60_000);

/**
 * Minutes 0-59: a and b hold (the all branch decides); 60-119: only c holds; 120-179: nothing.
 * Each rule reads its own metric; 100 holds (> 50), 0 does not.
 */
function valueAt(metric: string, minute: number): number {
  if (minute < 60) return metric === 'm_a' || metric === 'm_b' ? 100 : 0;
  if (minute < 120) return metric === 'm_c' ? 100 : 0;
  return 0;
}

const upRule = (name: string) => ({ name, metric: `m_${name}`, operator: 'gt' as const, threshold: 50, duration: '0', scale_by: 1 });

const treeInput: PolicyInput = {
  name: 'branches',
  target_type: 'cdc-worker',
  min_replicas: 1,
  max_replicas: 50,
  cooldown_seconds: 300,
  scale_up_rules: [upRule('a'), upRule('b'), upRule('c')],
  scale_up_when: { any: [{ all: ['a', 'b'] }, 'c'] },
  scale_down_rules: [{ metric: 'm_idle', operator: 'gt', threshold: 50, duration: '0', scale_by: -1 }],
};

const flatInput: PolicyInput = {
  name: 'flat',
  target_type: 'cdc-worker',
  min_replicas: 1,
  max_replicas: 50,
  cooldown_seconds: 300,
  scale_up_rules: [upRule('a')],
  scale_down_rules: [{ metric: 'm_idle', operator: 'gt', threshold: 50, duration: '0', scale_by: -1 }],
};

const policyOf = (input: PolicyInput): Policy => normalizePolicy(input, { source: 'api', now: new Date('2026-01-01T00:00:00Z') });

function seriesFor(policy: Policy): Map<string, Sample[]> {
  const series = new Map<string, Sample[]>();
  for (const r of [...policy.scale_up_rules, ...policy.scale_down_rules]) {
    const samples: Sample[] = [];
    for (let minute = -10; minute < 180; minute++) samples.push({ t: FROM.getTime() / 1000 + minute * 60, v: valueAt(r.metric, minute) });
    series.set(observationKey(r, SOURCE), samples);
  }
  return series;
}

async function replayOf(policy: Policy): Promise<ReplayResult> {
  return replay({ policy, from: FROM, to: TO, intervalSeconds: 60, initialReplicas: 1, defaultCooldown: 300, defaultSource: SOURCE, price: null, series: seriesFor(policy) });
}

/** Tags balanced and properly nested, attributes quoted, `&` only as an entity. */
function wellFormed(xml: string): boolean {
  const stack: string[] = [];
  for (const m of xml.matchAll(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    if (m[1] === '/') {
      if (stack.pop() !== m[2]) return false;
    } else if (m[4] !== '/') stack.push(m[2] as string);
  }
  const stripped = xml.replace(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g, '');
  return stack.length === 0 && !stripped.includes('<') && !/&(?!(?:amp|lt|gt|quot|apos);)/.test(xml);
}

const unescape = (s: string): string => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');

/** The text of every <text> element, without its <title>. */
const texts = (svg: string): string[] => [...svg.matchAll(/<text\b[^>]*>([\s\S]*?)<\/text>/g)].map((m) => unescape((m[1] ?? '').replace(/<title>[\s\S]*?<\/title>/g, '')));

t.test('the replay gives the spans of each branch that held', async (t) => {
  const policy = policyOf(treeInput);
  const result = await replayOf(policy);
  t.equal(result.summary.evaluations, 180);
  t.same(result.branches, {
    scale_up: [
      { branch: 'a and b', start: 0, end: 59 },
      { branch: 'c', start: 60, end: 119 },
    ],
    scale_down: null,
  });
  // The spans agree with the decision records step by step.
  const detailed = await replay(
    { policy, from: FROM, to: TO, intervalSeconds: 60, initialReplicas: 1, defaultCooldown: 300, defaultSource: SOURCE, price: null, series: seriesFor(policy) },
    { keepRecords: true },
  );
  const fromSpans = Array.from({ length: 180 }, (_, i) => result.branches?.scale_up?.find((s) => s.start <= i && i <= s.end)?.branch ?? null);
  t.same(fromSpans, detailed.records?.map((r) => r.directions.scale_up.decided_by));
  t.equal(result.timeline[0]?.action, 'scale_up', 'the tree acts');
  t.notOk('branch' in (result.timeline[0] as object), 'rows are as before: the spans are the result’s');

  const answer = JSON.parse(`{"x":0${[...branchesJson(result, 1)].join('')}}`) as { branches: unknown };
  t.same(answer.branches, {
    scale_up: [
      { branch: 'a and b', from: '2026-02-02T06:00:00.000Z', to: '2026-02-02T06:59:00.000Z', evaluations: 60 },
      { branch: 'c', from: '2026-02-02T07:00:00.000Z', to: '2026-02-02T07:59:00.000Z', evaluations: 60 },
    ],
    scale_down: null,
  }, 'the answer’s form, written a span at a time');
});

t.test('a policy without a tree has no spans', async (t) => {
  const result = await replayOf(policyOf(flatInput));
  t.notOk('branches' in result);
  t.same([...branchesJson(result)], []);
});

t.test('the chart marks which branch held: a lane, a segment per span, a legend entry per branch', async (t) => {
  const policy = policyOf(treeInput);
  const result = await replayOf(policy);
  const svg = renderBacktestSvg(policy, result);
  t.ok(wellFormed(svg), 'well-formed');

  const lanes = [...svg.matchAll(/<g class="lane" data-direction="([a-z_]+)">/g)].map((m) => m[1]);
  t.same(lanes, ['scale_up'], 'one lane: only the up direction has a tree');
  const all = texts(svg);
  t.ok(all.includes('condition branches that held'), 'the lanes’ panel is titled');
  t.ok(all.includes('up'), 'the lane is named');
  t.match(svg, /<title>scale_up_when: \(a and b\) or c<\/title>up<\/text>/, 'the lane’s name gives the whole tree');

  const segments = [...svg.matchAll(/<rect class="br" data-branch="([^"]*)" data-spans="(\d+)" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"[^>]*fill="(#[0-9A-Fa-f]{6})"><title>([^<]*)<\/title><\/rect>/g)].map((m) => ({
    branch: unescape(m[1] as string),
    spans: Number(m[2]),
    x: Number(m[3]),
    width: Number(m[4]),
    fill: m[5],
    title: unescape(m[6] as string),
  }));
  t.same(segments.map((s) => [s.branch, s.spans]), [['a and b', 1], ['c', 1]], 'a segment per span, in time order');
  t.equal(segments[0]?.title, 'up: a and b held from 2026-02-02 06:00 to 2026-02-02 06:59 UTC (60 evaluations)');
  t.equal(segments[1]?.title, 'up: c held from 2026-02-02 07:00 to 2026-02-02 07:59 UTC (60 evaluations)');
  t.not(segments[0]?.fill, segments[1]?.fill, 'each branch its own colour');
  const [first, second] = segments as [(typeof segments)[number], (typeof segments)[number]];
  const laneLeft = Number(/<rect class="lane-bg" x="([\d.]+)"/.exec(svg)?.[1]);
  t.equal(first.x, laneLeft, 'the first span starts at the left edge');
  // Each span covers half a step either side of its evaluations; the plot's edge cuts the first one's.
  const halfStep = second.width / 60 / 2;
  t.ok(Math.abs(second.width - first.width - halfStep) < 0.2, 'equal spans, equal widths but for the half step cut at the edge');
  t.ok(Math.abs(first.x + first.width - second.x) < 0.2, 'the second starts where the first ends');
  t.ok(second.x + second.width < 1100 - 100, 'nothing is drawn for the last hour, when no branch held');
  t.ok(all.includes('a and b') && all.includes('c'), 'each segment is labelled with its branch');

  const legend = [...svg.matchAll(/<g class="legend" data-direction="([a-z_]+)" data-branch="([^"]*)"[^>]*><rect[^>]*fill="(#[0-9A-Fa-f]{6})"\/><text[^>]*>([^<]*)<\/text><\/g>/g)].map((m) => ({
    direction: m[1],
    branch: unescape(m[2] as string),
    fill: m[3],
    label: unescape(m[4] as string),
  }));
  t.same(legend, [
    { direction: 'scale_up', branch: 'a and b', fill: first.fill, label: 'up: a and b' },
    { direction: 'scale_up', branch: 'c', fill: second.fill, label: 'up: c' },
  ], 'a legend entry per branch, in its segment’s colour');

  // Action markers name the branch that decided them.
  const ups = [...svg.matchAll(/<path class="mk mk-scale_up" data-count="(\d+)"[^>]*><title>([^<]*)<\/title>/g)].map((m) => unescape(m[2] as string));
  t.ok(ups.length > 2, `several scale-up markers (${ups.length})`);
  t.match(ups[0], /^scale up 1 → 2 at 2026-02-02 06:00 UTC \(rules_held\), branch: a and b$/);
  t.ok(ups.some((u) => u.includes('at 2026-02-02 07:00 UTC (rules_held), branch: c')), 'a scale-up of the second hour names c');
  t.ok(ups.every((u) => /branch: (a and b|c)$/.test(u)), 'every scale-up names its branch');
  t.equal(renderBacktestSvg(policy, result), svg, 'the same bytes again');
});

t.test('the chart of a policy without a tree has no lane, branch or branch legend', async (t) => {
  const policy = policyOf(flatInput);
  const result = await replayOf(policy);
  const svg = renderBacktestSvg(policy, result);
  t.notMatch(svg, /class="lane|class="br"|class="brl"|data-branch|branch-panel|\.lane-bg\{|\.brl\{|branch:/);
  // Spans in a result do not draw lanes for a policy without a tree.
  t.equal(renderBacktestSvg(policy, { ...result, branches: { scale_up: [{ branch: 'a', start: 0, end: 3 }], scale_down: null } }), svg);
});

t.test('many short spans stay few segments, and every span is accounted for', async (t) => {
  const policy = policyOf(treeInput);
  const result = await replayOf(policy);
  // A month at one minute whose tree alternates between the branches and nothing every few steps.
  const n = 43_200;
  const spans = [];
  for (let i = 0; i + 2 < n; i += 5) spans.push({ branch: i % 10 === 0 ? 'a and b' : 'c', start: i, end: i + 2 });
  const start = FROM.getTime();
  const timeline = Array.from({ length: n }, (_, i) => ({ ...(result.timeline[0] as ReplayResult['timeline'][number]), time: new Date(start + i * 60_000).toISOString(), action: 'none' as const, replicas_before: 1, replicas: 1 }));
  const long: ReplayResult = { timeline, summary: { ...result.summary, to: (timeline.at(-1) as { time: string }).time, evaluations: n }, branches: { scale_up: spans, scale_down: null } };
  const svg = renderBacktestSvg(policy, long);
  t.ok(wellFormed(svg), 'well-formed');
  const drawn = [...svg.matchAll(/<rect class="br" data-branch="([^"]*)" data-spans="(\d+)"/g)];
  t.ok(drawn.length <= 4, `spans under a pixel apart merge per branch (${drawn.length} segments for ${spans.length} spans)`);
  t.equal(drawn.reduce((k, m) => k + Number(m[2]), 0), spans.length, 'the segments stand for every span');
  t.ok(svg.length < 200_000, `small (${svg.length} bytes)`);
});

t.test('API: the JSON answer carries the spans after the summary; without a tree it has none', async (t) => {
  const impl: MetricSource = {
    async instantQuery(q) {
      return { t: q.time.getTime() / 1000, v: valueAt(q.query, (q.time.getTime() - FROM.getTime()) / 60_000) };
    },
    async rangeQuery(q) {
      const out: Sample[] = [];
      for (let s = q.start.getTime(); s <= q.end.getTime(); s += q.stepSeconds * 1000) out.push({ t: s / 1000, v: valueAt(q.query, Math.floor((s - FROM.getTime()) / 60_000)) });
      return out;
    },
  };
  const source = new IsolatedMetricSource(SOURCE, impl, 5000);
  const holder: { policies?: Parameters<typeof registerBacktestRoutes>[1]['policies'] } = {};
  const app = await startTestApp({}, {
    extraRoutes: [
      (scaling) =>
        registerBacktestRoutes(scaling, {
          sources: new Map([[SOURCE, source]]),
          defaultSource: SOURCE,
          defaultCooldown: 300,
          prices: {},
          get policies() {
            return holder.policies as NonNullable<typeof holder.policies>;
          },
        }),
    ],
  });
  holder.policies = app.policies;
  t.teardown(() => app.close());
  const post = (body: unknown, query = '') =>
    fetch(`${app.api}/backtest${query}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const range = { from: FROM.toISOString(), to: TO.toISOString(), step: '1m' };

  const res = await post({ policy: treeInput, ...range });
  t.equal(res.status, 200);
  const text = await res.text();
  const body = JSON.parse(text) as { timeline: unknown[]; summary: unknown; branches: unknown };
  t.equal(body.timeline.length, 180);
  t.same(Object.keys(body), ['policy', 'requests', 'timeline', 'summary', 'branches']);
  t.same(body.branches, {
    scale_up: [
      { branch: 'a and b', from: '2026-02-02T06:00:00.000Z', to: '2026-02-02T06:59:00.000Z', evaluations: 60 },
      { branch: 'c', from: '2026-02-02T07:00:00.000Z', to: '2026-02-02T07:59:00.000Z', evaluations: 60 },
    ],
    scale_down: null,
  });
  // As the OpenAPI document describes it.
  const components = (buildOpenApi('0.0.0') as { components: { schemas: Record<string, Record<string, unknown>> } }).components.schemas;
  const branchesSchema = (components['BacktestResult']?.['properties'] as Record<string, unknown>)['branches'];
  const validate = new Ajv2020({ strict: false, validateFormats: false }).addSchema({ $id: 'openapi', components: { schemas: components } }).compile({ $ref: 'openapi#/components/schemas/BacktestResult/properties/branches' });
  t.ok(branchesSchema !== undefined && validate(body.branches), `matches the OpenAPI schema ${JSON.stringify(validate.errors ?? [])}`);

  const svg = await (await post({ policy: treeInput, ...range }, '?format=svg')).text();
  t.match(svg, /<rect class="br" data-branch="a and b" data-spans="1"/, 'the chart route draws the lane');

  const flat = (await (await post({ policy: flatInput, ...range })).json()) as Record<string, unknown>;
  t.same(Object.keys(flat), ['policy', 'requests', 'timeline', 'summary'], 'no branches member without a tree');
});
