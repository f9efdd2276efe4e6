/**
 * One evaluation of one policy (src/engine/evaluate.ts) with a real SQLite file, real grouped
 * writes and an in-process executor behind IsolatedExecutor: the synchronous steady state
 * (steadyNow) and when it declines, a change (its intent stored before the executor is called,
 * then its history row with its state), a stale view refused, leadership lost, an interrupted
 * change recovered, previews, deferred states, dry runs and blocked changes recorded once.
 */
import t, { type Test } from 'tap';
import { CyclePlan, Slot } from '../src/engine/cycle-plan.js';
import type { Observation } from '../src/engine/decision.js';
import { evaluate, steadyNow, type EvaluationContext } from '../src/engine/evaluate.js';
import { KnownState, STATE_KEYS, fingerprintOf, type PendingChange } from '../src/engine/known-state.js';
import type { ManagerDeps } from '../src/engine/manager-deps.js';
import type { EvaluationOutcome } from '../src/engine/outcome.js';
import { StateBatch, StateWrites } from '../src/engine/state-writes.js';
import { ScalerError } from '../src/errors.js';
import type { Executor } from '../src/plugins/api.js';
import { IsolatedExecutor } from '../src/plugins/plugin-manager.js';
import type { Policy, PolicyInput } from '../src/policy/policy-model.js';
import type { SqlStorage } from '../src/storage/sql-storage.js';
import type { HistoryRow, PolicyState } from '../src/storage/storage.js';
import { Mutex, Semaphore } from '../src/util/async.js';
import { tempSqliteStorage } from './helpers/fixtures.js';
import { DEFAULT_COOLDOWN, DEFAULT_SOURCE, capturingLogger, inputOf, observationsFor, policyOf, rule, type LogLine, type Value } from './helpers/engine-parts.js';

const T0 = new Date('2026-02-01T12:00:00Z');
const at = (cycle: number) => new Date(T0.getTime() + cycle * 30_000);

interface Harness {
  storage: SqlStorage;
  ctx: EvaluationContext;
  executor: Executor & { replicas: Map<string, number>; calls: Array<{ name: string; n: number; dryRun: boolean; decisionId: string; previous: number; stored: PolicyState | undefined }>; failScale: Set<string> };
  decided: Array<{ outcome: EvaluationOutcome; trigger: string }>;
  lines: LogLine[];
  unknown: { count: number };
  fence: { value: number | undefined | false };
  slots: Map<string, Slot>;
  plan: { current: CyclePlan | undefined };
  /** The loop's view of these policies: slots in a plan whose executor answered for all of them. */
  hold(policies: Policy[]): Promise<Slot[]>;
  history(policyId: string): Promise<HistoryRow[]>;
  observe(policy: Policy, cycle: number, values: Record<string, Value>): Map<string, Observation>;
}

async function harness(t: Test): Promise<Harness> {
  const storage = await tempSqliteStorage(t, 'ps-evaluate');
  const { logger, lines } = capturingLogger();
  const calls: Harness['executor']['calls'] = [];
  const replicas = new Map<string, number>();
  const failScale = new Set<string>();
  const impl: Harness['executor'] = {
    replicas,
    calls,
    failScale,
    targetTypes: ['cdc-worker'],
    async getCurrentReplicas(target) {
      return replicas.get(target.policyName) ?? null;
    },
    async getCurrentReplicasMany(targets) {
      return new Map(targets.map((x) => [x.policyId, replicas.get(x.policyName) ?? null]));
    },
    async scale(target, n, opts) {
      // What storage holds while the executor works.
      calls.push({ name: target.policyName, n, dryRun: opts.dryRun, decisionId: opts.decisionId, previous: opts.previousReplicas, stored: await storage.getState(target.policyId) });
      if (failScale.has(target.policyName)) throw new Error('the cluster refused');
      if (!opts.dryRun) replicas.set(target.policyName, n);
    },
  };
  const executors = new Map([['keda', new IsolatedExecutor('keda', impl, 1000)]]);
  const fence: Harness['fence'] = { value: undefined };
  const deps: ManagerDeps = {
    storage,
    logger,
    sources: new Map(),
    executors,
    config: { evaluation_interval_ms: 30_000, default_cooldown: DEFAULT_COOLDOWN, default_metric_source: DEFAULT_SOURCE, dry_run: false, max_concurrency: 4, executors: { 'cdc-worker': 'keda' }, prices: {} },
    fence: () => fence.value,
  };
  const decided: Harness['decided'] = [];
  const unknown = { count: 0 };
  const slots = new Map<string, Slot>();
  const plan: Harness['plan'] = { current: undefined };
  const ctx: EvaluationContext = {
    deps,
    writes: new StateWrites(storage),
    executing: new Semaphore(4),
    executorFor: (p) => {
      const name = p.executor ?? 'keda';
      return { name, executor: executors.get(name) };
    },
    plan: () => plan.current,
    slotOf: (id) => slots.get(id),
    statesUnknown: () => {
      unknown.count++;
    },
    decided: (outcome, trigger) => decided.push({ outcome, trigger }),
    input: (policy, now, observations, executorReplicas, memory, requestDryRun) => inputOf(policy, now, observations, executorReplicas, memory, requestDryRun),
  };
  return {
    storage,
    ctx,
    executor: impl,
    decided,
    lines,
    unknown,
    fence,
    slots,
    plan,
    async hold(policies) {
      const held = policies.map((p) => slots.get(p.id) ?? new Slot(p, new Mutex(), 0));
      for (const s of held) slots.set(s.policy.id, s);
      plan.current = new CyclePlan(held, DEFAULT_SOURCE, (p) => executors.get(p.executor ?? 'keda'), plan.current);
      await plan.current.askReplicas(logger);
      return held;
    },
    async history(policyId) {
      return (await storage.listHistory({ limit: 100, policy_id: policyId })).rows.reverse();
    },
    observe: (policy, cycle, values) => observationsFor([policy], at(cycle), values),
  };
}

async function stored(h: Harness, input: Partial<PolicyInput> & { name: string }): Promise<Policy> {
  return h.storage.createPolicy(policyOf(input));
}

const lagPolicy = { scale_up_rules: [rule('lag', 'gt', 60, 2)], scale_down_rules: [rule('lag', 'lt', 5, -1)], cooldown_seconds: 120 };

/** A loop evaluation with its state deferred to a batch, the batch written afterwards. */
async function loopEvaluation(h: Harness, slot: Slot, cycle: number, values: Record<string, Value>): Promise<EvaluationOutcome> {
  const batch = new StateBatch(h.storage, { fence: () => undefined, refused: () => undefined, failed: (_s, err) => { throw err; } });
  const outcome = await evaluate(h.ctx, slot.policy, at(cycle), h.observe(slot.policy, cycle, values), { trigger: 'loop', deferWrite: batch, slot });
  await batch.done();
  return outcome;
}

t.test('a change: its intent stored before the executor is called, then its history row with its state', async (t) => {
  const h = await harness(t);
  const p = await stored(h, { name: 'up', ...lagPolicy });
  h.executor.replicas.set('up', 2);
  const [slot] = (await h.hold([p])) as [Slot];
  const outcome = await loopEvaluation(h, slot, 0, { lag: 90 });
  t.equal(outcome.action, 'scale_up');
  t.equal(h.executor.calls.length, 1, 'the executor was called once');
  const call = h.executor.calls[0];
  const pending = call?.stored?.data['pending'] as PendingChange | undefined;
  t.match(pending, { id: call?.decisionId, action: 'scale_up', previous: 2, desired: 4, at: T0.toISOString(), reason_code: 'rules_held', triggered_by: 'rule' }, 'while it worked, storage held the intent');
  t.equal(call?.stored?.last_change_at, T0.toISOString(), 'and the cooldown had started');
  t.equal(call?.previous, 2);

  const rows = await h.history(p.id);
  t.equal(rows.length, 1);
  t.match(rows[0], { id: call?.decisionId, action: 'scale_up', previous_replicas: 2, new_replicas: 4, status: 'succeeded', triggered_by: 'rule', dry_run: false, error: null, reason_code: 'rules_held', executed_at: T0.toISOString() }, 'the row carries the id the executor was given');
  const st = await h.storage.getState(p.id);
  t.match(st, { current_replicas: 4, last_change_at: T0.toISOString(), last_change_kind: 'scale_up', consecutive_failures: 0, version: 2 }, 'claimed (version 1), then recorded (version 2)');
  t.notOk(st !== undefined && 'pending' in st.data, 'the intent is cleared once the change is recorded');
  t.equal(slot.known?.state.version, 2, 'the loop knows the stored version');
  t.equal(slot.known?.fingerprint, st !== undefined ? fingerprintOf(st) : undefined, 'and its fingerprint is the stored state\'s');
  t.same(h.decided.map((d) => [d.outcome.policy_id, d.trigger]), [[p.id, 'loop']], 'reported once');
  t.match(h.lines.find((l) => /scale_up 2 -> 4/.test(l.msg)), { level: 30, policy: 'up', executor: 'keda', from: 2, to: 4 });
});

t.test('an executor that fails: a failed row, no cooldown, the intent cleared', async (t) => {
  const h = await harness(t);
  const p = await stored(h, { name: 'broken', ...lagPolicy });
  h.executor.replicas.set('broken', 2);
  h.executor.failScale.add('broken');
  const [slot] = (await h.hold([p])) as [Slot];
  await loopEvaluation(h, slot, 0, { lag: 90 });
  const rows = await h.history(p.id);
  t.match(rows, [{ status: 'failed', error: /the cluster refused/, new_replicas: 4 }]);
  const st = await h.storage.getState(p.id);
  t.match(st, { current_replicas: 2, last_change_at: null, last_change_kind: null, version: 2 });
  t.notOk(st !== undefined && 'pending' in st.data);
  t.match(h.lines.find((l) => /broken|scale_up/.test(l.msg) && l.level === 40), { error: /the cluster refused/ }, 'logged as a warning');

  // An executor that is not loaded: the same, with its name in the error.
  const lost = await stored(h, { name: 'lost', executor: 'nowhere', ...lagPolicy });
  const [, lostSlot] = (await h.hold([p, lost])) as [Slot, Slot];
  await loopEvaluation(h, lostSlot, 0, { lag: 90 });
  t.match(await h.history(lost.id), [{ status: 'failed', error: 'executor "nowhere" is not loaded', previous_replicas: 1, new_replicas: 3 }], 'from min_replicas, as no one could tell');
});

t.test('a stale view: the claim is refused, nothing executed, the known state forgotten', async (t) => {
  const h = await harness(t);
  const p = await stored(h, { name: 'stale', ...lagPolicy });
  h.executor.replicas.set('stale', 2);
  const [slot] = (await h.hold([p])) as [Slot];
  await loopEvaluation(h, slot, 0, { lag: 30 });
  const version = slot.known?.state.version;
  t.equal(version, 1, 'a first state stored');
  // Another daemon writes the state behind this one's back.
  const current = (await h.storage.getState(p.id)) as PolicyState;
  t.ok(await h.storage.putState({ ...current, current_replicas: 3 }));
  const err = await loopEvaluation(h, slot, 1, { lag: 90 }).catch((e: unknown) => e);
  t.ok(err instanceof ScalerError && err.code === 'STATE_CONFLICT', 'STATE_CONFLICT');
  t.equal(h.executor.calls.length, 0, 'the executor was not called');
  t.equal(slot.known, undefined, 'the known state is forgotten');
  t.equal(h.unknown.count, 1, 'and the loop told to read states again');
  t.same(await h.history(p.id), [], 'no row');
  t.equal((await h.storage.getState(p.id))?.version, 2, 'the other writer\'s state stays');
});

t.test('leadership lost: the loop evaluates nothing; a manual evaluation is fenced by the version alone', async (t) => {
  const h = await harness(t);
  const p = await stored(h, { name: 'led', ...lagPolicy });
  h.executor.replicas.set('led', 2);
  const [slot] = (await h.hold([p])) as [Slot];
  h.fence.value = false;
  const err = await loopEvaluation(h, slot, 0, { lag: 90 }).catch((e: unknown) => e);
  t.ok(err instanceof ScalerError && err.code === 'STATE_CONFLICT');
  t.equal(h.executor.calls.length, 0);
  t.equal(await h.storage.getState(p.id), undefined, 'no state written');
  t.same(h.decided, []);
  const manual = await evaluate(h.ctx, p, at(0), h.observe(p, 0, { lag: 90 }), { trigger: 'api' });
  t.equal(manual.action, 'scale_up', 'a manual evaluation on any daemon still runs');
  t.match(await h.history(p.id), [{ triggered_by: 'api', status: 'succeeded' }]);
});

t.test('an interrupted change is recorded once by the loop, outcome unknown; a manual evaluation leaves it to the loop', async (t) => {
  const h = await harness(t);
  const p = await stored(h, { name: 'cut', ...lagPolicy });
  h.executor.replicas.set('cut', 4);
  const pending: PendingChange = { id: '4f3c2b1a-0000-4000-8000-000000000001', action: 'scale_up', previous: 2, desired: 4, at: at(-1).toISOString(), reason: 'lag > 60', reason_code: 'rules_held', triggered_by: 'rule' };
  const claimed: PolicyState = { policy_id: p.id, current_replicas: 4, last_change_at: at(-1).toISOString(), last_change_kind: 'scale_up', consecutive_failures: 0, last_blocked: null, data: { pending }, updated_at: at(-1).toISOString(), version: 0 };
  t.ok(await h.storage.putState(claimed));

  const preview = await evaluate(h.ctx, p, at(0), h.observe(p, 0, { lag: 30 }), { trigger: 'api', requestDryRun: true });
  t.equal(preview.action, 'none');
  t.same(await h.history(p.id), [], 'a manual evaluation records nothing of it');

  const [slot] = (await h.hold([p])) as [Slot];
  await loopEvaluation(h, slot, 0, { lag: 30 });
  const rows = await h.history(p.id);
  t.equal(rows.length, 1, 'one row for the interrupted change');
  t.match(rows[0], { status: 'failed', action: 'scale_up', previous_replicas: 2, new_replicas: 4, executed_at: pending.at, triggered_by: 'rule', error: /outcome unknown/ });
  const st = await h.storage.getState(p.id);
  t.notOk(st !== undefined && 'pending' in st.data, 'and the state no longer carries it');
  t.equal(st?.last_change_at, pending.at, 'its cooldown was honoured, not restarted');
  t.match(h.lines.find((l) => /interrupted/.test(l.msg)), { level: 40, action: 'scale_up', at: pending.at });

  // A change whose own row was written before the stop is not recorded again.
  const other = await stored(h, { name: 'done', ...lagPolicy });
  const row: HistoryRow = { ...(rows[0] as HistoryRow), id: '4f3c2b1a-0000-4000-8000-000000000002', policy_id: other.id, policy_name: 'done', status: 'succeeded', error: null };
  await h.storage.appendHistory(row);
  t.ok(await h.storage.putState({ ...claimed, policy_id: other.id, data: { pending: { ...pending, id: row.id } } }));
  const [, otherSlot] = (await h.hold([p, other])) as [Slot, Slot];
  await loopEvaluation(h, otherSlot, 0, { lag: 30 });
  t.same((await h.history(other.id)).map((r) => r.id), [row.id], 'only its own row');
});

t.test('an interrupted change is recorded once even if the loop stops again before its cleared state is stored', async (t) => {
  const h = await harness(t);
  const p = await stored(h, { name: 'twice', ...lagPolicy });
  h.executor.replicas.set('twice', 4);
  const pending: PendingChange = { id: '4f3c2b1a-0000-4000-8000-000000000003', action: 'scale_up', previous: 2, desired: 4, at: at(-1).toISOString(), reason: 'lag > 60', reason_code: 'rules_held', triggered_by: 'rule' };
  t.ok(await h.storage.putState({ policy_id: p.id, current_replicas: 4, last_change_at: at(-1).toISOString(), last_change_kind: 'scale_up', consecutive_failures: 0, last_blocked: null, data: { pending }, updated_at: at(-1).toISOString(), version: 0 }));
  // The first loop after the restart records it, but stops before its cycle's batch is written.
  const [slot] = (await h.hold([p])) as [Slot];
  const unwritten = new StateBatch(h.storage, { fence: () => undefined, refused: () => undefined, failed: () => undefined });
  await evaluate(h.ctx, p, at(0), h.observe(p, 0, { lag: 30 }), { trigger: 'loop', deferWrite: unwritten, slot });
  t.equal((await h.history(p.id)).length, 1, 'recorded');
  // The next daemon's loop starts from storage, which still holds the intent.
  slot.known = undefined;
  await loopEvaluation(h, slot, 1, { lag: 30 });
  const rows = await h.history(p.id);
  t.equal(rows.filter((r) => /outcome unknown/.test(r.error ?? '')).length, 1, 'still one row for the one interrupted change');
});

t.test('a preview changes nothing, and the loop\'s slot is no longer repeated', async (t) => {
  const h = await harness(t);
  const p = await stored(h, { name: 'peek', ...lagPolicy });
  h.executor.replicas.set('peek', 2);
  const [slot] = (await h.hold([p])) as [Slot];
  await loopEvaluation(h, slot, 0, { lag: 30 });
  const quiet = steadyNow(h.ctx, slot, h.plan.current as CyclePlan, at(1), h.observe(p, 1, { lag: 30 }));
  t.ok(quiet !== undefined && slot.quietPolicy === p, 'found quiet by the loop');
  const version = (await h.storage.getState(p.id))?.version;
  const outcome = await evaluate(h.ctx, p, at(2), h.observe(p, 2, { lag: 90 }), { trigger: 'api', requestDryRun: true });
  t.equal(outcome.action, 'scale_up', 'it would scale up');
  t.ok(outcome.record().dry_run, 'as a dry run');
  t.equal(h.executor.calls.length, 0, 'the executor was not asked to change anything');
  t.same(await h.history(p.id), []);
  t.equal((await h.storage.getState(p.id))?.version, version, 'no state written');
  t.equal(slot.quietPolicy, undefined, 'the slot is assessed again next cycle');
  t.equal((h.plan.current as CyclePlan).repeatable[slot.index], 0);
  t.equal(h.decided.at(-1)?.trigger, 'api');
});

t.test('steadyNow: the steady state decided at once, and when it declines', async (t) => {
  const h = await harness(t);
  const p = await stored(h, { name: 'calm', ...lagPolicy });
  const q = await stored(h, { name: 'single', executor: 'keda', ...lagPolicy });
  h.executor.replicas.set('calm', 2);
  h.executor.replicas.set('single', 2);
  const [slot] = (await h.hold([p])) as [Slot];
  const plan = () => h.plan.current as CyclePlan;
  t.equal(steadyNow(h.ctx, slot, plan(), at(0), h.observe(p, 0, { lag: 30 })), undefined, 'no known state: declined');
  await loopEvaluation(h, slot, 0, { lag: 30 });
  const known = slot.known as KnownState;
  const decidedBefore = h.decided.length;

  const outcome = steadyNow(h.ctx, slot, plan(), at(1), h.observe(p, 1, { lag: 30 }));
  t.equal(outcome?.reason_code, 'no_rule_held');
  t.equal(h.decided.length, decidedBefore + 1, 'reported');
  t.equal(slot.known, known, 'the known state kept');
  t.equal(known.latest?.now.getTime(), at(1).getTime(), 'with this evaluation\'s inputs');
  t.equal(known.latest?.executorReplicas, 2);
  t.same([slot.quietPolicy === p, slot.quietKnown === known, slot.quietReplicas], [true, true, 2], 'found quiet');
  t.equal(plan().repeatable[slot.index], 1);
  t.equal((await h.storage.getState(p.id))?.version, 1, 'nothing written');

  t.equal(steadyNow(h.ctx, slot, plan(), at(2), h.observe(p, 2, { lag: 90 })), undefined, 'a rule holds: declined');
  t.equal(h.executor.calls.length, 0, 'and nothing executed');

  // The executor answering other replicas: not steady.
  h.executor.replicas.set('calm', 3);
  await plan().askReplicas(h.ctx.deps.logger);
  t.equal(steadyNow(h.ctx, slot, plan(), at(3), h.observe(p, 3, { lag: 30 })), undefined, 'other replicas: declined');
  h.executor.replicas.set('calm', 2);
  await plan().askReplicas(h.ctx.deps.logger);

  // Its lock held (a manual evaluation running): declined.
  let release = (): void => undefined;
  const holding = slot.lock.run(() => new Promise<void>((r) => (release = r)));
  t.equal(steadyNow(h.ctx, slot, plan(), at(4), h.observe(p, 4, { lag: 30 })), undefined, 'locked: declined');
  release();
  await holding;
  t.not(steadyNow(h.ctx, slot, plan(), at(5), h.observe(p, 5, { lag: 30 })), undefined, 'unlocked: steady again');

  // No batch answer for the slot: declined.
  const other = new Slot(q, new Mutex(), 0);
  other.known = known;
  t.equal(steadyNow(h.ctx, other, plan(), at(6), h.observe(q, 6, { lag: 30 })), undefined, 'a slot the cycle\'s batch did not answer for');

  // An interrupted change in the state: declined (the loop records it).
  slot.known = new KnownState({ ...known.state, data: { ...known.state.data, pending: { action: 'scale_up' } } }, 'x', 0, false);
  t.equal(steadyNow(h.ctx, slot, plan(), at(7), h.observe(p, 7, { lag: 30 })), undefined, 'a pending change: declined');
});

t.test('steadyNow on a steady state that is not quiet: decided at once, not repeated', async (t) => {
  const h = await harness(t);
  const p = await stored(h, { name: 'capped', max_replicas: 3, scale_up_rules: [rule('lag', 'gt', 60, 2)] });
  h.executor.replicas.set('capped', 3);
  const [slot] = (await h.hold([p])) as [Slot];
  await loopEvaluation(h, slot, 0, { lag: 90 });
  t.match(await h.history(p.id), [{ status: 'blocked', reason_code: 'at_max', new_replicas: 5 }], 'the block recorded once, with what the rules wanted');
  const outcome = steadyNow(h.ctx, slot, h.plan.current as CyclePlan, at(1), h.observe(p, 1, { lag: 90 }));
  t.equal(outcome?.reason_code, 'at_max', 'the same block: steady');
  t.equal(slot.quietPolicy, undefined, 'a rule holds: never repeated without an assessment');
  await loopEvaluation(h, slot, 2, { lag: 90 });
  t.equal((await h.history(p.id)).length, 1, 'a full evaluation of the same block records no second row');
});

t.test('deferred states: steady ones not written, others handed to the batch with their record kept until stored', async (t) => {
  const h = await harness(t);
  const p = await stored(h, { name: 'defer', ...lagPolicy });
  h.executor.replicas.set('defer', 2);
  const [slot] = (await h.hold([p])) as [Slot];
  await loopEvaluation(h, slot, 0, { lag: 30 });
  const first = slot.known as KnownState;

  const steadyBatch = new StateBatch(h.storage, { fence: () => undefined, refused: () => undefined, failed: () => undefined });
  await evaluate(h.ctx, p, at(1), h.observe(p, 1, { lag: 30 }), { trigger: 'loop', deferWrite: steadyBatch, slot });
  t.equal(steadyBatch.count, 0, 'a steady evaluation hands nothing to the batch');
  t.equal(slot.known, first, 'and keeps the known state');
  t.equal(first.latest?.now.getTime(), at(1).getTime());

  // A failed query: the failure count moves, so the state is worth writing, later.
  const batch = new StateBatch(h.storage, { fence: () => undefined, refused: () => undefined, failed: () => undefined });
  const outcome = await evaluate(h.ctx, p, at(2), h.observe(p, 2, { lag: 'fail' }), { trigger: 'loop', deferWrite: batch, slot });
  t.equal(outcome.reason_code, 'metric_error');
  t.equal(batch.count, 1);
  const next = slot.known as KnownState;
  t.not(next, first);
  t.equal(next.state.version, 2, 'known at the version the batch\'s write will store');
  t.equal(next.state.consecutive_failures, 1);
  t.same(next.record?.reason_code, 'metric_error', 'its record kept while the state is not stored');
  t.equal((await h.storage.getState(p.id))?.version, 1, 'not written yet');
  await batch.done();
  t.equal(next.record, undefined, 'stored: the record is read from storage from now on');
  const st = await h.storage.getState(p.id);
  t.match(st, { version: 2, consecutive_failures: 1 });
  t.equal((st?.data[STATE_KEYS.lastDecision] as { reason_code?: string } | undefined)?.reason_code, 'metric_error');
  t.equal(next.fingerprint, st !== undefined ? fingerprintOf(st) : undefined);
});

t.test('a dry-run policy records its would-be change once while it persists', async (t) => {
  const h = await harness(t);
  const p = await stored(h, { name: 'shadow', dry_run: true, ...lagPolicy });
  h.executor.replicas.set('shadow', 2);
  const [slot] = (await h.hold([p])) as [Slot];
  for (let c = 0; c < 3; c++) await loopEvaluation(h, slot, c, { lag: 90 });
  t.same(h.executor.calls.map((c) => [c.n, c.dryRun]), [[4, true], [4, true], [4, true]], 'the executor is told each time, as a dry run');
  t.equal(h.executor.replicas.get('shadow'), 2, 'nothing changed');
  const rows = await h.history(p.id);
  t.equal(rows.length, 1, 'one row while the same change repeats');
  t.match(rows[0], { dry_run: true, status: 'succeeded', action: 'scale_up', new_replicas: 4 });
  const st = await h.storage.getState(p.id);
  t.match(st, { last_change_at: null, last_change_kind: null, current_replicas: 2 }, 'no cooldown from a dry run');
  t.notOk(st !== undefined && 'pending' in st.data, 'no intent claimed for a dry run');
  t.match(st?.data[STATE_KEYS.lastDryRun], /^dry run: scale_up 2 -> 4 \(rules_held\) succeeded$/);
  t.equal(h.lines.filter((l) => /as last cycle: recorded once/.test(l.msg)).length, 2);
  // The rule stops holding and holds again: a new row.
  await loopEvaluation(h, slot, 3, { lag: 30 });
  await loopEvaluation(h, slot, 4, { lag: 90 });
  t.equal((await h.history(p.id)).length, 2, 'the change came back: recorded again');
});

t.test('a manual evaluation of a policy the loop holds shares its slot and writes at once', async (t) => {
  const h = await harness(t);
  const p = await stored(h, { name: 'shared', ...lagPolicy });
  h.executor.replicas.set('shared', 2);
  const [slot] = (await h.hold([p])) as [Slot];
  await loopEvaluation(h, slot, 0, { lag: 30 });
  steadyNow(h.ctx, slot, h.plan.current as CyclePlan, at(1), h.observe(p, 1, { lag: 30 }));
  t.equal(slot.quietPolicy, p);
  const outcome = await evaluate(h.ctx, p, at(2), h.observe(p, 2, { lag: 90 }), { trigger: 'api' });
  t.equal(outcome.action, 'scale_up');
  t.match(await h.history(p.id), [{ triggered_by: 'api', status: 'succeeded', new_replicas: 4 }]);
  t.equal(slot.quietPolicy, undefined, 'the loop\'s slot is no longer quiet');
  const st = await h.storage.getState(p.id);
  t.equal(slot.known?.state.version, st?.version, 'the loop knows the state the manual evaluation stored');
  t.equal(slot.known?.state.current_replicas, 4);
});
