import { pino } from 'pino';
import t, { type Test } from 'tap';
import { ScalingManager, type ManagerDeps } from '../src/engine/manager.js';
import type { Executor, MetricSource, Sample } from '../src/plugins/api.js';
import { IsolatedExecutor, IsolatedMetricSource } from '../src/plugins/plugin-manager.js';
import type { PolicyInput } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import type { SqlStorage } from '../src/storage/sql-storage.js';
import { tempSqliteStorage } from './helpers/fixtures.js';

const silent = pino({ level: 'silent' });

function tempStorage(t: Test): Promise<SqlStorage> {
  return tempSqliteStorage(t, 'ps-manager');
}

/** A metric source whose answers the test sets per query, counting requests. */
function scriptedSource(values: Record<string, number | 'hang' | 'throw'>, opts: { range?: boolean } = {}) {
  const calls: string[] = [];
  const answer = async (query: string, signal: AbortSignal): Promise<number> => {
    calls.push(query);
    const v = values[query];
    if (v === 'hang') return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
    if (v === 'throw' || v === undefined) throw Object.assign(new Error(`no data for ${query}`), { kind: 'empty' });
    return v;
  };
  const impl: MetricSource = {
    async instantQuery(q) {
      return { t: q.time.getTime() / 1000, v: await answer(q.query, q.signal) };
    },
  };
  if (opts.range !== false) {
    impl.rangeQuery = async (q) => {
      const v = await answer(q.query, q.signal);
      const out: Sample[] = [];
      for (let s = q.start.getTime() / 1000; s <= q.end.getTime() / 1000; s += q.stepSeconds) out.push({ t: s, v });
      return out;
    };
  }
  return { impl, calls, values };
}

/** An executor that remembers counts, and can be told to throw or hang for a target. */
function scriptedExecutor(behaviour: Record<string, 'throw' | 'hang' | 'slow'> = {}) {
  const replicas = new Map<string, number>();
  const scaled: Array<[string, number, boolean]> = [];
  let inFlight = 0;
  let maxInFlightPerPolicy = 0;
  const impl: Executor = {
    targetTypes: ['cdc-worker', 'trino', 'risingwave', 'nodes'],
    async getCurrentReplicas(target, { signal }) {
      inFlight++;
      maxInFlightPerPolicy = Math.max(maxInFlightPerPolicy, inFlight);
      try {
        if (behaviour[target.policyName] === 'slow') await new Promise((r) => setTimeout(r, 50));
        if (behaviour[target.policyName] === 'hang') await new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
        return replicas.get(target.policyName) ?? null;
      } finally {
        inFlight--;
      }
    },
    async scale(target, n, { dryRun }) {
      if (behaviour[target.policyName] === 'throw') throw new Error('the cluster refused');
      scaled.push([target.policyName, n, dryRun]);
      if (!dryRun) replicas.set(target.policyName, n);
    },
  };
  return { impl, replicas, scaled, maxInFlight: () => maxInFlightPerPolicy };
}

function manager(storage: SqlStorage, source: MetricSource, executor: Executor, now: () => Date, extra: Partial<ManagerDeps['config']> = {}): ScalingManager {
  return new ScalingManager({
    storage,
    logger: silent,
    sources: new Map([['prometheus', new IsolatedMetricSource('prometheus', source, 300)]]),
    executors: new Map([['keda', new IsolatedExecutor('keda', executor, 300)]]),
    now,
    config: {
      evaluation_interval_ms: 30_000,
      default_cooldown: 300,
      default_metric_source: 'prometheus',
      dry_run: false,
      max_concurrency: 8,
      executors: { 'cdc-worker': 'keda', trino: 'keda', risingwave: 'keda', nodes: 'keda' },
      prices: {},
      ...extra,
    },
  });
}

async function addPolicy(storage: SqlStorage, input: Partial<PolicyInput> & { name: string }): Promise<string> {
  const p = normalizePolicy(
    { target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10, ...input } as PolicyInput,
    { source: 'api', now: new Date('2026-01-01T00:00:00Z') },
  );
  await storage.createPolicy(p);
  return p.id;
}

const upRule = (metric: string, scale_by = 2) => ({ metric, operator: 'gt' as const, threshold: 60, duration: '1m', scale_by });

t.test('one request per distinct (source, query, aggregation, window) per cycle', async (t) => {
  const storage = await tempStorage(t);
  const queries = Array.from({ length: 10 }, (_, i) => `lag_${i}`);
  const src = scriptedSource(Object.fromEntries(queries.map((q) => [q, 10])));
  for (let i = 0; i < 100; i++) {
    await addPolicy(storage, {
      name: `p-${i}`,
      scale_up_rules: [upRule(queries[i % 10] as string), upRule(queries[(i + 1) % 10] as string)],
      scale_down_rules: [{ metric: queries[(i + 2) % 10] as string, operator: 'lt', threshold: 5, duration: '1m', scale_by: -1 }],
    });
  }
  const m = manager(storage, src.impl, scriptedExecutor().impl, () => new Date('2026-01-28T12:00:00Z'));
  const report = await m.runCycle();
  t.equal(report.policies, 100);
  t.equal(report.fetches, 10, '10 distinct queries');
  t.equal(src.calls.length, 10, 'the source was asked 10 times for 100 policies');
  t.comment(`100 policies sharing 10 queries: ${src.calls.length} metric requests in one cycle`);
  t.same(report.outcomes, { no_rule_held: 100 });
});

t.test('an executor that throws: failed history row, no cooldown, retried next cycle, others unaffected', async (t) => {
  const storage = await tempStorage(t);
  const src = scriptedSource({ lag: 100 });
  const ex = scriptedExecutor({ broken: 'throw' });
  const brokenId = await addPolicy(storage, { name: 'broken', scale_up_rules: [upRule('lag')] });
  const fineId = await addPolicy(storage, { name: 'fine', scale_up_rules: [upRule('lag')] });
  let now = new Date('2026-01-28T12:00:00Z');
  const m = manager(storage, src.impl, ex.impl, () => now);
  await m.runCycle();
  const broken = await storage.listHistory({ limit: 10, policy_id: brokenId });
  t.equal(broken.rows.length, 1);
  t.equal(broken.rows[0]?.status, 'failed');
  t.match(broken.rows[0]?.error, /the cluster refused/);
  t.equal((await storage.getState(brokenId))?.last_change_at, null, 'a failed change starts no cooldown');
  const fine = await storage.listHistory({ limit: 10, policy_id: fineId });
  t.equal(fine.rows[0]?.status, 'succeeded');
  t.same(ex.scaled, [['fine', 3, false]]);

  now = new Date('2026-01-28T12:00:30Z');
  await m.runCycle();
  const again = await storage.listHistory({ limit: 10, policy_id: brokenId });
  t.equal(again.rows.length, 2, 'retried on the next cycle, not held by a cooldown');
  t.equal(again.rows[0]?.status, 'failed');
  const fineAgain = await storage.listHistory({ limit: 10, policy_id: fineId });
  t.equal(fineAgain.rows[0]?.status, 'blocked', 'the healthy policy is in its cooldown');
  t.equal(fineAgain.rows[0]?.reason_code, 'cooldown');
});

t.test('a hanging source or executor times out without stalling other policies', async (t) => {
  const storage = await tempStorage(t);
  const src = scriptedSource({ lag: 100, stuck: 'hang' });
  const ex = scriptedExecutor({ 'hangs-executor': 'hang' });
  await addPolicy(storage, { name: 'hangs-source', scale_up_rules: [upRule('stuck')] });
  await addPolicy(storage, { name: 'hangs-executor', scale_up_rules: [upRule('lag')] });
  const okId = await addPolicy(storage, { name: 'healthy', scale_up_rules: [upRule('lag')] });
  const m = manager(storage, src.impl, ex.impl, () => new Date('2026-01-28T12:00:00Z'));
  const started = Date.now();
  const report = await m.runCycle();
  t.ok(Date.now() - started < 3000, `the cycle finished in ${Date.now() - started} ms despite two hung calls`);
  t.equal(report.errors, 0);
  t.equal(report.fetch_errors, 1);
  t.equal((await storage.listHistory({ limit: 5, policy_id: okId })).rows[0]?.new_replicas, 3);
  const hung = await storage.getPolicyByName('hangs-source');
  const state = await storage.getState(hung?.id ?? '');
  const last = ScalingManager.lastDecision(state);
  t.equal(last?.reason_code, 'metric_error');
  t.match(last?.rules[0]?.error, /timeout/);
  t.same(ex.scaled.map((s) => s[0]).sort(), ['hangs-executor', 'healthy'], 'current replicas unknown: state is used and the change still goes out');
});

t.test('cycles never overlap, and a manual evaluation never runs beside the loop on one policy', async (t) => {
  const storage = await tempStorage(t);
  const src = scriptedSource({ lag: 1 });
  const ex = scriptedExecutor({ slow: 'slow' });
  const id = await addPolicy(storage, { name: 'slow', scale_up_rules: [upRule('lag')] });
  const m = manager(storage, src.impl, ex.impl, () => new Date('2026-01-28T12:00:00Z'));
  const a = m.runCycle();
  const b = m.runCycle();
  t.equal(a, b, 'a second runCycle joins the running one');
  const policy = await storage.getPolicy(id);
  if (policy === undefined) throw new Error('policy missing');
  await Promise.all([a, m.evaluateNow(policy, { dryRun: true }), m.evaluateNow(policy, { dryRun: false })]);
  t.equal(ex.maxInFlight(), 1, 'never two evaluations of the policy at once');
});

t.test('dry-run policies record what they would do and start no cooldown; blocked rows are not repeated', async (t) => {
  const storage = await tempStorage(t);
  const src = scriptedSource({ lag: 100 });
  const ex = scriptedExecutor();
  const shadowId = await addPolicy(storage, { name: 'shadow', dry_run: true, scale_up_rules: [upRule('lag')] });
  const cappedId = await addPolicy(storage, { name: 'capped', min_replicas: 10, max_replicas: 10, scale_up_rules: [upRule('lag')] });
  let now = new Date('2026-01-28T12:00:00Z');
  const m = manager(storage, src.impl, ex.impl, () => now);
  for (let i = 0; i < 3; i++) {
    await m.runCycle();
    now = new Date(now.getTime() + 30_000);
  }
  const shadow = await storage.listHistory({ limit: 10, policy_id: shadowId });
  t.equal(shadow.rows.length, 1, 'the same would-be change is recorded once while it persists, not every cycle');
  t.ok(shadow.rows.every((r) => r.dry_run && r.status === 'succeeded' && r.new_replicas === 3));
  t.equal((await storage.getState(shadowId))?.last_change_at, null, 'dry run starts no cooldown');
  t.same(ex.scaled.filter((s) => s[0] === 'shadow').map((s) => s[2]), [true, true, true], 'the executor was told it is a dry run, every cycle');
  const capped = await storage.listHistory({ limit: 10, policy_id: cappedId });
  t.equal(capped.rows.length, 1, 'at_max recorded once while it persists');
  t.equal(capped.rows[0]?.status, 'blocked');
  t.equal(capped.rows[0]?.reason_code, 'at_max');
  // The would-be change goes away (no rule holds), then comes back: recorded again.
  src.values['lag'] = 10;
  await m.runCycle();
  now = new Date(now.getTime() + 30_000);
  src.values['lag'] = 100;
  await m.runCycle();
  await m.runCycle();
  const again = await storage.listHistory({ limit: 10, policy_id: shadowId });
  t.equal(again.rows.length, 2, 'a would-be change that stopped and came back is recorded again, once');
});

t.test('a source without range queries: the engine keeps observations, and the window must fill first', async (t) => {
  const storage = await tempStorage(t);
  const src = scriptedSource({ lag: 100 }, { range: false });
  const ex = scriptedExecutor();
  const id = await addPolicy(storage, { name: 'instant-only', scale_up_rules: [upRule('lag')] });
  let now = new Date('2026-01-28T12:00:00Z');
  const m = manager(storage, src.impl, ex.impl, () => now);
  const actions: string[] = [];
  for (let i = 0; i < 4; i++) {
    await m.runCycle();
    actions.push(ScalingManager.lastDecision(await storage.getState(id))?.action ?? '?');
    now = new Date(now.getTime() + 30_000);
  }
  t.same(actions, ['none', 'none', 'scale_up', 'none'], 'acts once 1m of observations (3 samples 30s apart) exist');

  // A restart forgets the observations: the decision is delayed, never hastened.
  const restarted = manager(storage, src.impl, ex.impl, () => now);
  src.values['lag'] = 100;
  await restarted.runCycle();
  t.equal(ScalingManager.lastDecision(await storage.getState(id))?.reason_code, 'no_rule_held');
});

t.test('a source without range queries: a window shorter than the interval holds from the second cycle (10s at 30s)', async (t) => {
  const storage = await tempStorage(t);
  const src = scriptedSource({ lag: 61 }, { range: false });
  const ex = scriptedExecutor();
  const id = await addPolicy(storage, { name: 'short-window', scale_up_rules: [{ metric: 'lag', operator: 'gt', threshold: 60, duration: '10s', scale_by: 1 }] });
  let now = new Date('2026-01-28T12:00:00Z');
  const m = manager(storage, src.impl, ex.impl, () => now);
  await m.runCycle();
  const first = ScalingManager.lastDecision(await storage.getState(id));
  t.equal(first?.reason_code, 'no_rule_held', 'the first cycle has seen the value only at its own instant');
  t.match(first?.rules[0]?.detail, /no value at 2026-01-28T11:59:50\.000Z/, 'the window starts 10 s before anything was observed');
  now = new Date(now.getTime() + 30_000);
  await m.runCycle();
  const second = ScalingManager.lastDecision(await storage.getState(id));
  // 12:00:20 is answered by the value observed at 12:00:00 (Prometheus's 5-minute lookback), 12:00:30 by its own.
  t.match(second, { action: 'scale_up', reason_code: 'rules_held' }, 'the second cycle holds');
  t.equal(second?.rules[0]?.samples, 2, 'judged at 12:00:20 and 12:00:30');
});

for (const many of [false, true]) {
t.test(`a steady-state evaluation writes nothing, and the known state carries its decision record, the one onDecision made (${many ? 'replicas answered for all targets at once: decided synchronously' : 'replicas asked per policy'})`, async (t) => {
  const storage = await tempStorage(t);
  const src = scriptedSource({ lag: 10 });
  const id = await addPolicy(storage, { name: 'steady', scale_up_rules: [upRule('lag')] });
  let now = new Date('2026-01-28T12:00:00Z');
  const made: Array<Record<string, unknown>> = [];
  const base = scriptedExecutor().impl;
  const batches: number[] = [];
  const executor: Executor = many
    ? {
        ...base,
        async getCurrentReplicasMany(targets) {
          batches.push(targets.length);
          return new Map(targets.map((x) => [x.policyId, 2]));
        },
      }
    : base;
  const m = new ScalingManager({
    storage,
    logger: silent,
    sources: new Map([['prometheus', new IsolatedMetricSource('prometheus', src.impl, 300)]]),
    executors: new Map([['keda', new IsolatedExecutor('keda', executor, 300)]]),
    now: () => now,
    config: { evaluation_interval_ms: 30_000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 8, executors: { 'cdc-worker': 'keda' }, prices: {} },
    onDecision: (outcome) => made.push(outcome.record() as unknown as Record<string, unknown>),
  });
  const first = await m.runCycle();
  t.equal(first.states_written, 1, 'the first evaluation is written');
  now = new Date(now.getTime() + 30_000);
  src.values['lag'] = 20; // another value, the same outcome
  const second = await m.runCycle();
  t.equal(second.states_written, 0, 'the second (same outcome) is not');
  const stored = ScalingManager.lastDecision(await storage.getState(id));
  t.equal(stored?.evaluated_at, '2026-01-28T12:00:00.000Z', 'storage keeps the first record');
  const known = ScalingManager.lastDecision(await m.knownState(id));
  t.equal(known?.evaluated_at, '2026-01-28T12:00:30.000Z', 'the known state has the latest evaluation');
  t.equal(known?.rules[0]?.value, 20, 'with the value that evaluation saw');
  t.same(known, made[1], 'the same record as the evaluation itself made');
  t.equal(m.lastEvaluatedAt(id), '2026-01-28T12:00:30.000Z');
  // A later change of the source does not leak into the record of an evaluation already made.
  src.values['lag'] = 30;
  t.same(ScalingManager.lastDecision(await m.knownState(id)), made[1]);
  if (many) t.same(batches, [1, 1], 'one batch per cycle');
});
}

t.test('an executor that answers for many targets is asked once per cycle; a failed or malformed answer falls back to one call per policy', async (t) => {
  const storage = await tempStorage(t);
  const src = scriptedSource({ lag: 10 });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await addPolicy(storage, { name: `many-${i}`, scale_up_rules: [upRule('lag')] }));
  const singles: string[] = [];
  const batches: string[][] = [];
  let mode: 'ok' | 'throw' | 'object' | 'negative' = 'ok';
  const impl: Executor = {
    targetTypes: ['cdc-worker'],
    async getCurrentReplicas(target) {
      singles.push(target.policyName);
      return 4;
    },
    async getCurrentReplicasMany(targets) {
      batches.push(targets.map((x) => x.policyName));
      if (mode === 'throw') throw new Error('the cluster API is down');
      if (mode === 'object') return Object.fromEntries(targets.map((x) => [x.policyId, 3])) as unknown as Map<string, number>;
      // One target left out: "cannot tell" (null), so the stored or minimum count is used.
      return new Map(targets.filter((x) => x.policyName !== 'many-4').map((x) => [x.policyId, mode === 'negative' ? -1 : 3]));
    },
    async scale() {},
  };
  let now = new Date('2026-01-28T12:00:00Z');
  const made = new Map<string, { from: string; current: number }>();
  const m = new ScalingManager({
    storage,
    logger: silent,
    sources: new Map([['prometheus', new IsolatedMetricSource('prometheus', src.impl, 300)]]),
    executors: new Map([['keda', new IsolatedExecutor('keda', impl, 300)]]),
    now: () => now,
    config: { evaluation_interval_ms: 30_000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 8, executors: { 'cdc-worker': 'keda' }, prices: {} },
    onDecision: (o) => {
      const r = o.record();
      made.set(r.policy_name, { from: r.current_replicas_from, current: r.current_replicas });
    },
  });
  await m.runCycle();
  t.equal(batches.length, 1, 'one call for the cycle');
  t.same([...(batches[0] ?? [])].sort(), ['many-0', 'many-1', 'many-2', 'many-3', 'many-4'], 'with every target');
  t.same(singles, [], 'no call per policy');
  t.same(made.get('many-0'), { from: 'executor', current: 3 }, 'the answer is used');
  t.same(made.get('many-4'), { from: 'min_replicas', current: 1 }, 'a target left out is "cannot tell"');

  for (const bad of ['throw', 'object', 'negative'] as const) {
    mode = bad;
    singles.length = 0;
    now = new Date(now.getTime() + 30_000);
    await m.runCycle();
    t.same([...singles].sort(), ['many-0', 'many-1', 'many-2', 'many-3', 'many-4'], `${bad}: each policy is asked on its own`);
    t.same(made.get('many-0'), { from: 'executor', current: 4 }, `${bad}: with the single answers`);
  }
  t.equal(batches.length, 4, 'the batch is tried again every cycle');
});

t.test('the synchronous steady-state path never runs while a manual evaluation holds the policy', async (t) => {
  const storage = await tempStorage(t);
  const src = scriptedSource({ lag: 1 });
  const id = await addPolicy(storage, { name: 'held', scale_up_rules: [upRule('lag')] });
  const impl: Executor = {
    targetTypes: ['cdc-worker'],
    async getCurrentReplicas() {
      await new Promise((r) => setTimeout(r, 50)); // the manual evaluation holds the lock meanwhile
      return 2;
    },
    async getCurrentReplicasMany(targets) {
      return new Map(targets.map((x) => [x.policyId, 2]));
    },
    async scale() {},
  };
  const order: string[] = [];
  const m = new ScalingManager({
    storage,
    logger: silent,
    sources: new Map([['prometheus', new IsolatedMetricSource('prometheus', src.impl, 300)]]),
    executors: new Map([['keda', new IsolatedExecutor('keda', impl, 300)]]),
    now: () => new Date('2026-01-28T12:00:00Z'),
    config: { evaluation_interval_ms: 30_000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 8, executors: { 'cdc-worker': 'keda' }, prices: {} },
    onDecision: (_, trigger) => order.push(trigger),
  });
  await m.runCycle(); // the state is known from here on: later cycles are steady
  await m.runCycle();
  t.same(order, ['loop', 'loop']);
  const policy = await storage.getPolicy(id);
  if (policy === undefined) throw new Error('policy missing');
  order.length = 0;
  await Promise.all([m.evaluateNow(policy, { dryRun: true }), m.runCycle()]);
  t.same(order, ['api', 'loop'], 'the loop waited for the manual evaluation');
});

t.test('a paused policy is neither evaluated nor executed; lifting the pause lets it act again', async (t) => {
  const storage = await tempStorage(t);
  const src = scriptedSource({ lag: 100 });
  const ex = scriptedExecutor();
  const pausedId = await addPolicy(storage, { name: 'paused', scale_up_rules: [upRule('lag')] });
  await addPolicy(storage, { name: 'active', scale_up_rules: [upRule('lag')] });
  let now = new Date('2026-01-28T12:00:00Z');
  const m = manager(storage, src.impl, ex.impl, () => now);
  await storage.setPaused(pausedId, { at: now.toISOString(), reason: 'incident' });
  const first = await m.runCycle();
  t.equal(first.policies, 1, 'only the active policy is held by the loop');
  t.same(ex.scaled, [['active', 3, false]]);
  now = new Date('2026-01-28T12:00:30Z');
  await m.runCycle();
  t.same((await storage.listHistory({ limit: 10, policy_id: pausedId })).rows, [], 'nothing recorded for the paused policy');
  t.equal(await storage.getState(pausedId), undefined, 'and no state written');

  const policy = await storage.getPolicy(pausedId);
  if (policy === undefined) throw new Error('policy vanished');
  await t.rejects(m.evaluateNow(policy, { dryRun: false }), { code: 'POLICY_PAUSED' }, 'a manual evaluation that would execute is refused');
  const preview = await m.evaluateNow(policy, { dryRun: true });
  t.equal(preview.action, 'scale_up', 'a dry run still shows what the policy would do');
  t.same(ex.scaled.filter(([name]) => name === 'paused'), [], 'the executor was never asked to scale it');

  await storage.setEnabled(pausedId, true, now.toISOString(), { liftPause: true });
  now = new Date('2026-01-28T12:01:00Z');
  const resumed = await m.runCycle();
  t.equal(resumed.policies, 2, 'held again');
  t.same(ex.scaled.filter(([name]) => name === 'paused'), [['paused', 3, false]], 'it acts again once the pause is lifted');
});

t.test('a pause stored while a cycle evaluates the policy stops its change: nothing is executed', async (t) => {
  const storage = await tempStorage(t);
  const src = scriptedSource({ lag: 100 });
  const ex = scriptedExecutor();
  const id = await addPolicy(storage, { name: 'racing', scale_up_rules: [upRule('lag')] });
  const now = new Date('2026-01-28T12:00:00Z');
  // The pause lands after the loop listed the policy, while it asks the executor for the replicas.
  const pausing: Executor = {
    ...ex.impl,
    async getCurrentReplicas(target, opts) {
      await storage.setPaused(id, { at: now.toISOString(), reason: 'mid-cycle' });
      return ex.impl.getCurrentReplicas(target, opts);
    },
  };
  const m = manager(storage, src.impl, pausing, () => now);
  const report = await m.runCycle();
  t.equal(report.policies, 1, 'the cycle held the policy');
  t.same(ex.scaled, [], 'the executor was not asked to scale');
  t.same((await storage.listHistory({ limit: 10, policy_id: id })).rows, [], 'no change recorded');
  t.equal(await storage.getState(id), undefined, 'no change claimed');
});

t.test('target tracking in the loop: queries shared with rules, scaling, and stabilization kept across a restart', async (t) => {
  const storage = await tempStorage(t);
  const src = scriptedSource({ events: 9000, lag: 10 });
  const ex = scriptedExecutor();
  const tracked = await addPolicy(storage, {
    name: 'tracked',
    max_replicas: 20,
    cooldown_seconds: 0,
    target_tracking: [{ metric: 'events', target_per_replica: 1000 }],
    scale_up_rules: [upRule('lag')],
  });
  await addPolicy(storage, { name: 'stepped', scale_up_rules: [{ metric: 'events', operator: 'gt', threshold: 100_000, scale_by: 1 }, upRule('lag')] });
  let now = new Date('2026-01-28T12:00:00Z');
  const first = manager(storage, src.impl, ex.impl, () => now);
  const report = await first.runCycle();
  t.equal(report.fetches, 2, 'two distinct queries: events (read by the entry and by the other policy\'s rule) and lag');
  t.same(ex.scaled, [['tracked', 9, false]], 'ceil(9000 / 1000) = 9');
  const row = (await storage.listHistory({ limit: 1, policy_id: tracked })).rows[0];
  t.equal(row?.reason_code, 'rules_held');
  t.match(row?.reason, /target tracking events at 9000 against target_per_replica 1000 wants 9/);

  // The load drops: the default 5m scale-down stabilization holds 9, even across a restart.
  src.values['events'] = 3000;
  now = new Date('2026-01-28T12:00:30Z');
  await first.runCycle();
  t.equal(ex.replicas.get('tracked'), 9, 'held by stabilization');
  const restarted = manager(storage, src.impl, ex.impl, () => now);
  now = new Date('2026-01-28T12:04:30Z');
  await restarted.runCycle();
  t.equal(ex.replicas.get('tracked'), 9, 'a new manager on the same storage still holds 9 (the proposals were persisted)');
  t.equal((await storage.getState(tracked))?.last_blocked, null);
  now = new Date('2026-01-28T12:05:00Z');
  await restarted.runCycle();
  t.equal(ex.replicas.get('tracked'), 3, '9 was last proposed at 12:00:00: out of the window at 12:05:00');
});
