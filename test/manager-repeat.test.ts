/**
 * The loop's shortcuts against the full evaluation. A steady state that time cannot change is
 * decided by repeating the previous outcome (no assessment), and each cycle reuses the plan of
 * the last one and lists policies only when their revision moved. Here random runs of cycles
 * (metric values, time steps, replicas changed behind the engine's back, policies edited by
 * another connection to the same database) check every outcome the loop reported against the
 * decision made from scratch on the same inputs.
 */
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { decide } from '../src/engine/decide.js';
import type { Observation } from '../src/engine/decision.js';
import { ScalingManager, memoryFromState, type EvaluationOutcome } from '../src/engine/manager.js';
import { ScalerMetrics } from '../src/metrics.js';
import { observationKey, ruleWindow } from '../src/engine/rule-window.js';
import type { Executor, MetricSource, Sample } from '../src/plugins/api.js';
import { IsolatedExecutor, IsolatedMetricSource } from '../src/plugins/plugin-manager.js';
import type { PolicyInput } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';

const silent = pino({ level: 'silent' });
type Value = number | 'fail';

/** A source answering a constant series per query (or failing), counting requests. */
function source(values: Record<string, Value>): MetricSource & { requests: number } {
  const answer = (query: string): number => {
    s.requests++;
    const v = values[query];
    if (v === undefined || v === 'fail') throw Object.assign(new Error(`no data for ${query}`), { kind: 'empty' });
    return v;
  };
  const s = {
    requests: 0,
    async instantQuery(q: { query: string; time: Date }) {
      return { t: q.time.getTime() / 1000, v: answer(q.query) };
    },
    async rangeQuery(q: { query: string; start: Date; end: Date; stepSeconds: number }) {
      const v = answer(q.query);
      const out: Sample[] = [];
      for (let x = q.start.getTime() / 1000; x <= q.end.getTime() / 1000; x += q.stepSeconds) out.push({ t: x, v });
      return out;
    },
  };
  return s;
}

/** An executor answering for all targets at once (so steady states take the synchronous path). */
function executor(): Executor & { replicas: Map<string, number> } {
  const replicas = new Map<string, number>();
  return {
    replicas,
    targetTypes: ['cdc-worker'],
    async getCurrentReplicas(target) {
      return replicas.get(target.policyName) ?? null;
    },
    async getCurrentReplicasMany(targets) {
      return new Map(targets.map((x) => [x.policyId, replicas.get(x.policyName) ?? null]));
    },
    async scale(target, n, { dryRun }) {
      if (!dryRun) replicas.set(target.policyName, n);
    },
  };
}

const rule = (metric: string, operator: 'gt' | 'lt', threshold: number, scale_by: number) => ({ metric, operator, threshold, duration: '1m', scale_by });

/** Policies covering what the outcome can depend on besides the rules: schedules, cooldown, bounds, zero, fallback, cost, dry run. */
const POLICIES: Array<Partial<PolicyInput> & { name: string }> = [
  { name: 'plain', scale_up_rules: [rule('lag', 'gt', 60, 2)], scale_down_rules: [rule('lag', 'lt', 5, -1)], cooldown_seconds: 120 },
  { name: 'any', scale_up_match: 'any', scale_up_rules: [rule('lag', 'gt', 60, 1), rule('cpu', 'gt', 80, 3)], scale_down_rules: [rule('queue', 'lt', 5, -2)] },
  { name: 'floor', scale_up_rules: [rule('cpu', 'gt', 60, 1)], schedules: [{ cron_expression: '0 * * * *', desired_replicas: 3, duration: '20m', mode: 'floor' }] },
  { name: 'one-shot', scale_up_rules: [rule('cpu', 'gt', 60, 1)], schedules: [{ cron_expression: '*/10 * * * *', desired_replicas: 2 }] },
  { name: 'zero', min_replicas: 1, scale_to_zero: true, scale_down_rules: [rule('queue', 'lt', 5, -1)], scale_up_rules: [rule('queue', 'gt', 60, 1)] },
  { name: 'fallback', on_metric_error: 'fallback', fallback: { after_failures: 2, replicas: 4 }, scale_up_rules: [rule('queue', 'gt', 60, 1)] },
  { name: 'capped', cost_per_replica_hour: 1, max_hourly_cost: 3, scale_up_rules: [rule('lag', 'gt', 60, 4)] },
  { name: 'dry', dry_run: true, scale_up_rules: [rule('cpu', 'gt', 60, 2)], scale_down_rules: [rule('cpu', 'lt', 5, -1)] },
];

/** Mostly nothing, sometimes a value: most cycles of a real loop change little. */
const sometimes = <T>(arb: fc.Arbitrary<T>, weight: number): fc.Arbitrary<T | null> => fc.oneof({ arbitrary: fc.constant(null), weight }, { arbitrary: arb, weight: 1 });

const step = fc.record({
  values: sometimes(fc.record({ lag: fc.constantFrom<Value>(1, 30, 31, 70, 'fail'), cpu: fc.constantFrom<Value>(1, 30, 70, 90, 'fail'), queue: fc.constantFrom<Value>(1, 30, 70, 'fail') }), 2),
  advance: fc.constantFrom(30, 30, 30, 60, 300, 1200),
  /** Replicas set behind the engine's back: [policy index, count]. */
  external: sometimes(fc.tuple(fc.nat(POLICIES.length - 1), fc.integer({ min: 0, max: 12 })), 4),
  /** A policy edited by another connection: [policy index, new max_replicas]. */
  edit: sometimes(fc.tuple(fc.nat(POLICIES.length - 1), fc.integer({ min: 2, max: 12 })), 6),
});

t.test('every outcome the loop reports, repeated or assessed, is the one the full evaluation reaches', async (t) => {
  let repeated = 0;
  let assessed = 0;
  let listings = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(step, { minLength: 4, maxLength: 14 }), async (steps) => {
      const dir = mkdtempSync(join(tmpdir(), 'ps-repeat-'));
      const file = join(dir, 'db.sqlite');
      const storage = createSqliteStorage(file);
      const other = createSqliteStorage(file);
      try {
        await storage.migrate();
        const ids: string[] = [];
        for (const p of POLICIES) {
          const policy = normalizePolicy({ target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10, ...p } as PolicyInput, { source: 'api', now: new Date('2026-01-01T00:00:00Z') });
          await storage.createPolicy(policy);
          ids.push(policy.id);
        }
        const values: Record<string, Value> = { lag: 1, cpu: 1, queue: 30 };
        const ex = executor();
        let now = new Date('2026-01-28T11:58:00Z');
        const seen: EvaluationOutcome[] = [];
        const originalList = storage.listEnabledPolicyVersions.bind(storage);
        storage.listEnabledPolicyVersions = () => {
          listings++;
          return originalList();
        };
        const m = new ScalingManager({
          storage,
          logger: silent,
          sources: new Map([['prometheus', new IsolatedMetricSource('prometheus', source(values), 300)]]),
          executors: new Map([['keda', new IsolatedExecutor('keda', ex, 300)]]),
          now: () => now,
          config: { evaluation_interval_ms: 30_000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 4, executors: { 'cdc-worker': 'keda' }, prices: {} },
          onDecision: (o) => seen.push(o),
        });
        for (const s of steps) {
          if (s.values !== null) Object.assign(values, s.values);
          now = new Date(now.getTime() + s.advance * 1000);
          if (s.external !== null) ex.replicas.set(POLICIES[s.external[0]]?.name ?? '', s.external[1]);
          // An edit to the value in force changes nothing, so nothing is written (see replacePolicy).
          let edited = false;
          if (s.edit !== null) {
            const id = ids[s.edit[0]] ?? '';
            const stored = await other.getPolicy(id);
            if (stored !== undefined) {
              edited = stored.max_replicas !== s.edit[1];
              await other.replacePolicy({ ...stored, max_replicas: s.edit[1], updated_at: new Date(Date.parse(stored.updated_at) + 1000).toISOString() });
            }
          }
          // The oracle: the whole evaluation from scratch on this cycle's inputs, as the loop should see
          // them: the policies and states as stored, the executor's replicas, the source's values.
          const expected = new Map<string, { action: string; reason_code: string; desired: number }>();
          for (const id of ids) {
            const policy = await storage.getPolicy(id);
            if (policy === undefined) throw new Error(`policy ${id} missing`);
            const observations = new Map<string, Observation>();
            for (const r of [...policy.scale_up_rules, ...policy.scale_down_rules]) {
              const win = ruleWindow(r, now, 30);
              const v = values[r.metric];
              const samples: Sample[] = [];
              for (let x = win.start; x <= win.end; x += win.step) samples.push({ t: x, v: typeof v === 'number' ? v : NaN });
              observations.set(observationKey(r, 'prometheus'), typeof v === 'number' ? { samples } : { samples: [], error: { kind: 'empty', message: 'no data' } });
            }
            const { record } = await decide({
              policy,
              now,
              intervalSeconds: 30,
              defaultCooldown: 300,
              defaultSource: 'prometheus',
              price: policy.cost_per_replica_hour,
              executorReplicas: ex.replicas.get(policy.name) ?? null,
              memory: memoryFromState(await storage.getState(id)),
              observations,
              dryRun: { request: false, global: false },
            });
            expected.set(id, { action: record.action, reason_code: record.reason_code, desired: record.desired_replicas });
          }
          seen.length = 0;
          const report = await m.runCycle();
          t.equal(report.policies, POLICIES.length);
          if (seen.length + report.repeated !== POLICIES.length) throw new Error(`${seen.length} assessed and ${report.repeated} repeated outcomes for ${POLICIES.length} policies`);
          for (const [i, id] of ids.entries()) {
            const o = seen.find((x) => x.policy_id === id);
            // A repeated outcome's record is made on demand, deciding again on that cycle's inputs.
            const state = (await m.knownState(id)) ?? (await storage.getState(id));
            const full = o?.record() ?? ScalingManager.lastDecision(state);
            const name = POLICIES[i]?.name;
            if (full === null) throw new Error(`${name}: no decision`);
            const claimed = o === undefined ? { action: 'none', reason_code: 'no_rule_held' } : { action: o.action, reason_code: o.reason_code };
            if (full.action !== claimed.action || full.reason_code !== claimed.reason_code) {
              throw new Error(`${name} at ${now.toISOString()}: reported ${claimed.action}/${claimed.reason_code}${o === undefined ? ' (repeated)' : ''}, the evaluation says ${full.action}/${full.reason_code}`);
            }
            const oracle = expected.get(id);
            if (oracle?.action !== full.action || oracle.reason_code !== full.reason_code || oracle.desired !== full.desired_replicas) {
              throw new Error(`${name} at ${now.toISOString()}: the loop decided ${full.action}/${full.reason_code} to ${full.desired_replicas}${o === undefined ? ' (repeated)' : ''}, from scratch ${oracle?.action}/${oracle?.reason_code} to ${oracle?.desired}`);
            }
            if (full.evaluated_at !== now.toISOString()) throw new Error(`${name}: record of ${full.evaluated_at}, evaluated at ${now.toISOString()}`);
            if (m.lastEvaluatedAt(id) !== now.toISOString()) throw new Error(`${name}: last evaluated at ${m.lastEvaluatedAt(id)}, not ${now.toISOString()}`);
            // And the state the loop keeps is the one that evaluation leaves behind.
            if (state?.consecutive_failures !== full.consecutive_metric_failures || (full.action === 'none' && state.current_replicas !== full.current_replicas)) {
              throw new Error(`${name} at ${now.toISOString()}: state keeps ${state?.consecutive_failures} failures and ${state?.current_replicas} replicas, the evaluation says ${full.consecutive_metric_failures} and ${full.current_replicas}`);
            }
            if (o === undefined) {
              repeated++;
              if (name === 'floor' || name === 'one-shot') throw new Error(`${name} has schedules: its outcome depends on time and must be assessed`);
            } else assessed++;
          }
          // What the policy edit changed is in force in this very cycle.
          if (s.edit !== null && edited) {
            const outcome = seen.find((o) => o.policy_id === ids[s.edit?.[0] ?? 0]);
            if (outcome?.input.policy.max_replicas !== s.edit[1]) throw new Error(`the edit of ${POLICIES[s.edit[0]]?.name} was not picked up`);
          }
        }
      } finally {
        await other.close();
        await storage.close();
        rmSync(dir, { recursive: true, force: true });
      }
    }),
    { numRuns: 40, seed: 7305 },
  );
  t.ok(repeated > 100, `steady states repeated without an assessment: ${repeated}`);
  t.ok(assessed > 100, `outcomes assessed: ${assessed}`);
  t.comment(`${repeated} repeated, ${assessed} assessed outcomes; ${listings} policy listings`);
});

t.test('a steady loop lists the policies only when their revision moved; edits from another connection move it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ps-revision-'));
  const file = join(dir, 'db.sqlite');
  const storage = createSqliteStorage(file);
  await storage.migrate();
  t.teardown(async () => {
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const ex = executor();
  const values: Record<string, Value> = { lag: 1 };
  const src = source(values);
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const p = normalizePolicy({ name: `r${i}`, target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10, scale_up_rules: [rule('lag', 'gt', 60, 1)] }, { source: 'api', now: new Date('2026-01-01T00:00:00Z') });
    await storage.createPolicy(p);
    ids.push(p.id);
  }
  let listings = 0;
  const originalList = storage.listEnabledPolicyVersions.bind(storage);
  storage.listEnabledPolicyVersions = () => {
    listings++;
    return originalList();
  };
  let now = new Date('2026-01-28T12:00:00Z');
  const m = new ScalingManager({
    storage,
    logger: silent,
    sources: new Map([['prometheus', new IsolatedMetricSource('prometheus', src, 300)]]),
    executors: new Map([['keda', new IsolatedExecutor('keda', ex, 300)]]),
    now: () => now,
    config: { evaluation_interval_ms: 30_000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 4, executors: { 'cdc-worker': 'keda' }, prices: {} },
  });
  const cycle = async () => {
    now = new Date(now.getTime() + 30_000);
    return m.runCycle();
  };
  await cycle();
  await cycle();
  await cycle();
  t.equal(listings, 1, 'three cycles, one listing');
  t.equal(src.requests, 3, 'one request per cycle for the one distinct query');

  // Another connection to the same database file disables one policy and adds another.
  const other = createSqliteStorage(file);
  t.teardown(() => other.close());
  await other.setEnabled(ids[0] ?? '', false, new Date('2026-01-28T12:02:00Z').toISOString());
  await other.createPolicy(normalizePolicy({ name: 'r-new', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10, scale_up_rules: [rule('cpu', 'gt', 60, 1)] }, { source: 'api', now: new Date('2026-01-28T12:02:00Z') }));
  values['cpu'] = 1;
  const after = await cycle();
  t.equal(listings, 2, 'the moved revision made the loop list again');
  t.equal(after.policies, 3, 'one disabled, one added');
  t.equal(after.fetches, 2, 'the new policy\'s query is fetched too');
  await cycle();
  t.equal(listings, 2, 'and not again while nothing changes');
  // State writes and history rows do not move it.
  values['lag'] = 90;
  const scaled = await cycle();
  t.ok((scaled.outcomes['scale_up'] ?? 0) >= 2, 'the rule held: scale-ups written');
  await cycle();
  t.equal(listings, 2, 'writing states and history did not make the loop list again');
});

t.test('repeated outcomes are counted in the cycle report, by onRepeated, and in the evaluations metric', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ps-repeat-count-'));
  const storage = createSqliteStorage(join(dir, 'db.sqlite'));
  await storage.migrate();
  t.teardown(async () => {
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  });
  for (let i = 0; i < 5; i++) {
    await storage.createPolicy(normalizePolicy({ name: `c${i}`, target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10, scale_up_rules: [rule('lag', 'gt', 60, 1)] }, { source: 'api', now: new Date('2026-01-01T00:00:00Z') }));
  }
  const metrics = new ScalerMetrics();
  const repeats: number[] = [];
  let now = new Date('2026-01-28T12:00:00Z');
  const m = new ScalingManager({
    storage,
    logger: silent,
    sources: new Map([['prometheus', new IsolatedMetricSource('prometheus', source({ lag: 1 }), 300)]]),
    executors: new Map([['keda', new IsolatedExecutor('keda', executor(), 300)]]),
    now: () => now,
    config: { evaluation_interval_ms: 30_000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 4, executors: { 'cdc-worker': 'keda' }, prices: {} },
    onDecision: (o, trigger) => metrics.countEvaluations(o.action, o.reason_code, trigger),
    onRepeated: (n) => {
      repeats.push(n);
      metrics.countEvaluations('none', 'no_rule_held', 'loop', n);
    },
  });
  const reports = [];
  for (let c = 0; c < 4; c++) {
    now = new Date(now.getTime() + 30_000);
    reports.push(await m.runCycle());
  }
  // First cycle: states unknown (assessed, written); second: assessed, found quiet; then repeated.
  t.same(reports.map((r) => r.repeated), [0, 0, 5, 5]);
  t.same(reports.map((r) => r.outcomes['no_rule_held']), [5, 5, 5, 5], 'repeats count under no_rule_held');
  t.same(repeats, [5, 5], 'onRepeated once per cycle that repeated any');
  const text = await metrics.registry.metrics();
  t.match(text, /philotes_scaling_evaluations_total\{action="none",reason_code="no_rule_held",trigger="loop"\} 20\n/, 'every evaluation in the metric, repeated or not');
});
