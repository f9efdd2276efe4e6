import { pino } from 'pino';
import t from 'tap';
import { parseBacktestRequest, runBacktest, timelineCsv } from '../src/backtest/backtest-service.js';
import { replay } from '../src/backtest/replay.js';
import { decide } from '../src/engine/decide.js';
import { EMPTY_MEMORY, type EngineMemory } from '../src/engine/decision.js';
import { applyExecution } from '../src/engine/execution.js';
import { observationKey } from '../src/engine/rule-window.js';
import { ScalerError } from '../src/errors.js';
import type { MetricSource, Sample } from '../src/plugins/api.js';
import { IsolatedMetricSource } from '../src/plugins/plugin-manager.js';
import type { PolicyInput } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { startTestApp } from './helpers/app.js';
import { registerBacktestRoutes } from '../src/backtest/backtest-controller.js';

void pino;
const FROM = new Date('2026-01-01T00:00:00Z');

/** Lag as a function of time: quiet, a 20-minute surge, quiet again (per-minute resolution). */
function lagAt(t: number): number {
  const minute = (t - FROM.getTime() / 1000) / 60;
  return minute >= 60 && minute < 80 ? 150 : 5;
}

/** A range-capable source computing values from lagAt, counting requests and points. */
function syntheticSource() {
  const calls: Array<{ start: number; end: number; step: number; points: number }> = [];
  const impl: MetricSource = {
    async instantQuery(q) {
      return { t: q.time.getTime() / 1000, v: lagAt(q.time.getTime() / 1000) };
    },
    async rangeQuery(q) {
      const out: Sample[] = [];
      for (let s = q.start.getTime() / 1000; s <= q.end.getTime() / 1000; s += q.stepSeconds) out.push({ t: s, v: lagAt(s) });
      calls.push({ start: q.start.getTime() / 1000, end: q.end.getTime() / 1000, step: q.stepSeconds, points: out.length });
      if (out.length > 11_000) throw Object.assign(new Error('exceeded maximum resolution of 11,000 points per timeseries'), { kind: 'query' });
      return out;
    },
  };
  return { source: new IsolatedMetricSource('prometheus', impl, 5000), calls };
}

const policyInput: PolicyInput = {
  name: 'bt',
  target_type: 'cdc-worker',
  min_replicas: 1,
  max_replicas: 10,
  cooldown_seconds: 600,
  cost_per_replica_hour: 0.5,
  scale_up_rules: [{ metric: 'lag', operator: 'gt', threshold: 60, duration: '5m', scale_by: 2 }],
  scale_down_rules: [{ metric: 'lag', operator: 'lt', threshold: 10, duration: '10m', scale_by: -1 }],
};
const policy = normalizePolicy(policyInput, { source: 'api', now: FROM });
const deps = (source: IsolatedMetricSource) => ({ sources: new Map([['prometheus', source]]), defaultSource: 'prometheus', defaultCooldown: 300, prices: {} });

t.test('a backtest replays the live semantics: durations, cooldown, summary', async (t) => {
  const { source, calls } = syntheticSource();
  const result = await runBacktest(policy, { from: FROM, to: new Date(FROM.getTime() + 3 * 3600_000), stepSeconds: 60, initialReplicas: 1 }, deps(source));
  t.equal(result.requests, 2, 'one request per distinct (query, window): the up and down rules have different windows');
  t.equal(calls.length, 2);
  const changes = result.timeline.filter((r) => r.action !== 'none').map((r) => [r.time.slice(11, 16), r.action, r.replicas]);
  // Surge from 01:00 to 01:20: up after 5 minutes of it (01:05), again after the 10m cooldown (01:15);
  // quiet from 01:20: down after 10 quiet minutes (01:30; the 01:15 change's cooldown ended at 01:25), then every 10 minutes.
  t.same(changes.slice(0, 3), [
    ['01:05', 'scale_up', 3],
    ['01:15', 'scale_up', 5],
    ['01:30', 'scale_down', 4],
  ]);
  t.equal(result.summary.actions['scale_up'], 2);
  t.equal(result.summary.peak_replicas, 5);
  t.equal(result.summary.evaluations, 181);
  t.ok(result.summary.scale_up_pending_minutes >= 5 && result.summary.scale_up_pending_minutes <= 20, `pending ${result.summary.scale_up_pending_minutes} min`);
  t.equal(result.summary.estimated_cost, Math.round(result.summary.replica_hours * 0.5 * 100) / 100);
  const csv = timelineCsv(policy, result).split('\n');
  t.equal(csv[0], 'time,up:lag,down:lag,replicas_before,replicas,action,reason_code');
  t.equal(csv.length, 183, 'a header, 181 rows and a final newline');
});

t.test('the replay makes the same decisions as calling decide() step by step like the loop', async (t) => {
  const { source } = syntheticSource();
  const to = new Date(FROM.getTime() + 2 * 3600_000);
  const bt = await runBacktest(policy, { from: FROM, to, stepSeconds: 60, initialReplicas: 1 }, deps(source));
  let memory: EngineMemory = { ...EMPTY_MEMORY, current_replicas: 1 };
  let replicas = 1;
  const live: string[] = [];
  for (let at = FROM.getTime(); at <= to.getTime(); at += 60_000) {
    const now = new Date(at);
    const observations = new Map();
    for (const r of [...policy.scale_up_rules, ...policy.scale_down_rules]) {
      const samples = await source.rangeQuery({ query: r.metric, aggregation: r.aggregation, start: new Date(at - r.duration_seconds * 1000), end: now, stepSeconds: 60 });
      observations.set(observationKey(r, 'prometheus'), { samples });
    }
    const { record, memory: next } = await decide({ policy, now, intervalSeconds: 60, defaultCooldown: 300, defaultSource: 'prometheus', price: 0.5, executorReplicas: replicas, memory, observations });
    memory = applyExecution(next, record, now, { succeeded: true });
    if (record.should_scale) replicas = record.desired_replicas;
    live.push(`${record.action}:${record.reason_code}:${replicas}`);
  }
  t.same(bt.timeline.map((r) => `${r.action}:${r.reason_code}:${r.replicas}`), live);
});

t.test('long ranges are fetched in chunks under the 11,000-point limit', async (t) => {
  const { source, calls } = syntheticSource();
  const to = new Date(FROM.getTime() + 30 * 86_400_000);
  const result = await runBacktest(policy, { from: FROM, to, stepSeconds: 60, initialReplicas: 1 }, deps(source));
  t.equal(result.summary.evaluations, 43_201);
  t.ok(calls.every((c) => c.points <= 10_000), 'every request within the limit');
  t.equal(result.requests, calls.length);
  t.equal(calls.length, 10, '2 distinct queries x 5 chunks of at most 10,000 points');
});

t.test('metric errors and missing data in a backtest are metric_error decisions, not crashes', async (t) => {
  const r = await replay({ policy, from: FROM, to: new Date(FROM.getTime() + 600_000), intervalSeconds: 60, initialReplicas: 2, defaultCooldown: 300, defaultSource: 'prometheus', price: null, series: new Map([[observationKey(policy.scale_up_rules[0]!, 'prometheus'), { error: { kind: 'unreachable', message: 'down' } }]]) });
  t.ok(r.timeline.every((row) => row.action === 'none' && row.reason_code === 'metric_error'));
  t.equal(r.summary.estimated_cost, null);
});

t.test('backtest parameters: every problem named', async (t) => {
  const fields = (raw: Record<string, unknown>): string[] => {
    try {
      parseBacktestRequest(raw);
      return [];
    } catch (err) {
      t.ok(err instanceof ScalerError);
      return ((err as ScalerError).errors ?? []).map((e) => e.field);
    }
  };
  t.same(fields({}), ['/from', '/to']);
  t.same(fields({ from: 'yesterday', to: '2026-01-02T00:00:00Z' }), ['/from']);
  t.same(fields({ from: '2026-01-02T00:00:00Z', to: '2026-01-01T00:00:00Z' }), ['/to']);
  t.same(fields({ from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00Z', step: '0s' }), ['/step']);
  t.same(fields({ from: '2026-01-01T00:00:00Z', to: '2027-01-02T00:00:00Z', step: '1s' }), ['/step']);
  t.same(fields({ from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00Z', initial_replicas: -1, extra: 1 }), ['/initial_replicas', '/extra']);
  t.same(parseBacktestRequest({ from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00+01:00', step: '5m' }).stepSeconds, 300);
});

t.test('API: backtest routes answer results and name bad fields with 422', async (t) => {
  const { source } = syntheticSource();
  const holder: { policies?: Parameters<typeof registerBacktestRoutes>[1]['policies'] } = {};
  const app = await startTestApp({}, {
    extraRoutes: [
      (scaling) =>
        registerBacktestRoutes(scaling, {
          ...deps(source),
          get policies() {
            return holder.policies as NonNullable<typeof holder.policies>;
          },
          chart: () => '<svg xmlns="http://www.w3.org/2000/svg"/>',
        }),
    ],
  });
  holder.policies = app.policies;
  t.teardown(() => app.close());
  const post = (path: string, body: unknown) =>
    fetch(`${app.api}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const created = await post('/policies', policyInput);
  t.equal(created.status, 201);
  const range = { from: '2026-01-01T00:00:00Z', to: '2026-01-01T03:00:00Z', step: '1m' };
  const ok = await post('/policies/bt/backtest', range);
  t.equal(ok.status, 200);
  const body = (await ok.json()) as { summary: { actions: Record<string, number> }; timeline: unknown[] };
  t.equal(body.timeline.length, 181);
  t.equal(body.summary.actions['scale_up'], 2);
  const svg = await post('/policies/bt/backtest?format=svg', range);
  t.match(svg.headers.get('content-type'), /image\/svg\+xml/);
  const inline = await post('/backtest', { policy: { ...policyInput, name: 'inline' }, ...range });
  t.equal(inline.status, 200);
  const bad = await post('/backtest', { policy: { ...policyInput, min_replicas: 20 }, from: 'x' });
  t.equal(bad.status, 422);
  const problem = (await bad.json()) as { errors: Array<{ field: string }> };
  t.same(problem.errors.map((e) => e.field).sort(), ['/policy/min_replicas']);
  const bad2 = await post('/policies/bt/backtest', { from: 'x' });
  t.same(((await bad2.json()) as { errors: Array<{ field: string }> }).errors.map((e) => e.field), ['/from', '/to']);
  t.equal((await post('/policies/nope/backtest', range)).status, 404);
  t.equal((await post('/policies/bt/backtest?format=png', range)).status, 400);
});
