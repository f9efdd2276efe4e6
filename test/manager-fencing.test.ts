/**
 * Fencing inside one process: a change is claimed with a compare-and-set on the policy's stored
 * state before the executor is called, so an evaluation working from a stale view (another
 * daemon, or a manual evaluation elsewhere, wrote the state since it was read) executes nothing;
 * a loop told it no longer leads evaluates nothing; a refused batch write makes the loop read the
 * state again instead of deciding from what it remembered.
 */
import { pino } from 'pino';
import t from 'tap';
import { ScalerError } from '../src/errors.js';
import { ScalingManager } from '../src/engine/manager.js';
import type { Executor, MetricSource } from '../src/plugins/api.js';
import { IsolatedExecutor, IsolatedMetricSource } from '../src/plugins/plugin-manager.js';
import type { Policy } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import type { SqlStorage } from '../src/storage/sql-storage.js';
import type { PolicyState, Storage } from '../src/storage/storage.js';
import { tempSqliteStorage } from './helpers/fixtures.js';

const silent = pino({ level: 'silent' });

function setup(storage: Storage, value: { v: number }, opts: { fence?: () => number | undefined | false; now?: () => Date } = {}) {
  const scaled: number[] = [];
  const source: MetricSource = { instantQuery: async (q) => ({ t: q.time.getTime() / 1000, v: value.v }) };
  const executor: Executor = {
    targetTypes: ['cdc-worker'],
    getCurrentReplicas: async () => null,
    scale: async (_target, n) => {
      scaled.push(n);
    },
  };
  let now = new Date('2026-01-28T12:00:00Z');
  const m = new ScalingManager({
    storage,
    logger: silent,
    sources: new Map([['prometheus', new IsolatedMetricSource('prometheus', source, 300)]]),
    executors: new Map([['keda', new IsolatedExecutor('keda', executor, 300)]]),
    now: opts.now ?? (() => now),
    ...(opts.fence !== undefined ? { fence: opts.fence } : {}),
    config: { evaluation_interval_ms: 30_000, default_cooldown: 0, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 4, executors: { 'cdc-worker': 'keda' }, prices: {} },
  });
  return { m, scaled, tick: () => (now = new Date(now.getTime() + 30_000)) };
}

async function policy(storage: SqlStorage, name: string): Promise<Policy> {
  return storage.createPolicy(
    normalizePolicy(
      { name, target_type: 'cdc-worker', min_replicas: 1, max_replicas: 50, cooldown_seconds: 0, scale_up_rules: [{ metric: 'lag', operator: 'gt', threshold: 60, scale_by: 1 }] },
      { source: 'api', now: new Date('2026-01-01T00:00:00Z') },
    ),
  );
}

t.test('a manual evaluation whose view went stale before its claim executes nothing (409 STATE_CONFLICT)', async (t) => {
  const storage = await tempSqliteStorage(t, 'ps-fence');
  const p = await policy(storage, 'stale-manual');
  const base: PolicyState = { policy_id: p.id, current_replicas: 3, last_change_at: null, last_change_kind: null, consecutive_failures: 0, last_blocked: null, data: {}, updated_at: '2026-01-28T11:00:00.000Z', version: 0 };
  await storage.putState(base);
  // Another daemon writes the state between this evaluation's read and its claim.
  let raced = false;
  // The claim is the evaluation's first state write (grouped with other evaluations' writes).
  const racingPut: Storage['putStates'] = async (s, o) => {
    if (!raced) {
      raced = true;
      await storage.putState({ ...base, current_replicas: 4, version: 1 });
    }
    return storage.putStates(s, o);
  };
  const racing = new Proxy(storage, {
    get(target, prop) {
      if (prop === 'putStates') return racingPut;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const { m, scaled } = setup(racing, { v: 100 });
  const err = await m.evaluateNow(p, { dryRun: false }).catch((e: unknown) => e);
  t.ok(err instanceof ScalerError && err.code === 'STATE_CONFLICT' && err.status === 409, `refused with 409 STATE_CONFLICT (${String(err)})`);
  t.same(scaled, [], 'the executor was not called');
  t.equal((await storage.listHistory({ limit: 10, policy_id: p.id })).rows.length, 0, 'no history row');
  t.equal((await storage.getState(p.id))?.current_replicas, 4, "the other writer's state stands");
  // Asked again, it reads the new state and acts on it.
  const record = await m.evaluateNow(p, { dryRun: false });
  t.same([record.current_replicas, record.desired_replicas], [4, 5], 'the next evaluation starts from the stored 4');
  t.same(scaled, [5]);
});

t.test('a loop that no longer leads evaluates and executes nothing', async (t) => {
  const storage = await tempSqliteStorage(t, 'ps-fence-lost');
  await policy(storage, 'deposed');
  let leading: number | undefined | false = undefined;
  const { m, scaled, tick } = setup(storage, { v: 100 }, { fence: () => leading });
  await m.runCycle();
  tick();
  t.same(scaled, [2], 'while leading it scales');
  leading = false;
  const report = await m.runCycle();
  t.same(scaled, [2], 'once leadership is lost: no executor call');
  t.equal(report.errors, 1, 'the policy counts as not evaluated');
});

t.test("a batch state write refused because another writer moved the version: the loop reads the state again", async (t) => {
  const storage = await tempSqliteStorage(t, 'ps-fence-batch');
  const p = await policy(storage, 'moved');
  const value = { v: 10 }; // no rule holds: quiet cycles, state written in the cycle's batch
  const { m, scaled, tick } = setup(storage, value);
  await m.runCycle();
  tick();
  const stored = (await storage.getState(p.id)) as PolicyState;
  t.ok(stored.version >= 1, `stored at version ${stored.version}`);
  // Another daemon scales it to 7 behind this manager's back (its memory still says 1).
  t.equal(await storage.putState({ ...stored, current_replicas: 7, consecutive_failures: 0 }), true);
  value.v = 100;
  await m.runCycle();
  tick();
  // This cycle either claimed from its stale view (refused: nothing executed) or read the new state.
  t.notOk(scaled.includes(2), `no change from the stale count of 1 (scaled: ${JSON.stringify(scaled)})`);
  await m.runCycle();
  t.ok(scaled.includes(8), `after reading the state again it scales 7 -> 8 (scaled: ${JSON.stringify(scaled)})`);
});
