/**
 * What the loop knows of a stored state (src/engine/known-state.ts): the fingerprint that says
 * whether a state is worth writing, the known state kept between cycles, the engine memory read
 * from a state, and the steady and quiet tests, on assessments made by the real decide().
 */
import fc from 'fast-check';
import t from 'tap';
import { assess, type Assessment } from '../src/engine/decide.js';
import { EMPTY_MEMORY, type DecisionRecord, type EngineMemory } from '../src/engine/decision.js';
import { KnownState, QUIET_REASON, STATE_KEYS, fingerprint, fingerprintOf, isQuiet, isSteady, memoryFromState, sameAsKnown, sameList } from '../src/engine/known-state.js';
import type { PolicyState } from '../src/storage/storage.js';
import { inputOf, observationsFor, policyOf, rule, stateAfter } from './helpers/engine-parts.js';

const AT = new Date('2026-02-01T10:00:00Z');

const decision = (over: Partial<DecisionRecord> = {}): DecisionRecord =>
  ({ policy_id: 'p1', policy_name: 'p', evaluated_at: AT.toISOString(), action: 'none', reason_code: 'no_rule_held', reason: 'No rule held.', current_replicas: 2, desired_replicas: 2, rules: [], ...over }) as DecisionRecord;

const stored = (over: Partial<PolicyState> = {}, data: Record<string, unknown> = {}): PolicyState => ({
  policy_id: 'p1',
  current_replicas: 2,
  last_change_at: null,
  last_change_kind: null,
  consecutive_failures: 0,
  last_blocked: null,
  data: { [STATE_KEYS.memory]: { one_shots: {} }, [STATE_KEYS.lastDecision]: decision(), ...data },
  updated_at: AT.toISOString(),
  version: 3,
  ...over,
});

t.test('fingerprint: what is worth writing, and nothing else', async (t) => {
  const base = stored();
  const fp = fingerprint(base);
  t.equal(fingerprintOf(base), fp, 'fingerprintOf gives the same text');
  // Neither the time, nor the version, nor the record's words and instant make a state worth writing.
  t.equal(fingerprint(stored({ updated_at: '2026-03-01T00:00:00.000Z', version: 9 })), fp, 'updated_at and version are not in it');
  t.equal(fingerprint(stored({}, { [STATE_KEYS.lastDecision]: decision({ evaluated_at: '2026-03-01T00:00:00.000Z', reason: 'other words', policy_name: 'renamed' }) })), fp, 'the record\'s instant and sentence are not in it');
  const changes: Array<[string, PolicyState]> = [
    ['current_replicas', stored({ current_replicas: 3 })],
    ['last_change_at', stored({ last_change_at: AT.toISOString() })],
    ['last_change_kind', stored({ last_change_kind: 'scale_up' })],
    ['consecutive_failures', stored({ consecutive_failures: 1 })],
    ['last_blocked', stored({ last_blocked: 'at_max' })],
    ['memory', stored({}, { [STATE_KEYS.memory]: { one_shots: { s1: AT.toISOString() } } })],
    ['pending', stored({}, { pending: { action: 'scale_up', previous: 2, desired: 3 } })],
    ['last dry run', stored({}, { [STATE_KEYS.lastDryRun]: 'dry run: scale_up 2 -> 3' })],
    ['decided action', stored({}, { [STATE_KEYS.lastDecision]: decision({ action: 'scale_up' }) })],
    ['decided reason', stored({}, { [STATE_KEYS.lastDecision]: decision({ reason_code: 'at_max' }) })],
    ['decided current', stored({}, { [STATE_KEYS.lastDecision]: decision({ current_replicas: 3 }) })],
    ['decided desired', stored({}, { [STATE_KEYS.lastDecision]: decision({ desired_replicas: 4 }) })],
    ['no decision', stored({}, { [STATE_KEYS.lastDecision]: undefined })],
  ];
  for (const [what, s] of changes) t.not(fingerprint(s), fp, `${what} is in it`);
  t.equal(new Set(changes.map(([, s]) => fingerprint(s))).size, changes.length, 'each change gives its own fingerprint');
  t.equal(fingerprint(stored({}, { pending: null })), fp, 'a cleared pending change is no pending change');
});

t.test('KnownState keeps the state without its record, the decided fields flat, the record only when asked', async (t) => {
  const record = decision({ action: 'none', reason_code: 'cooldown', current_replicas: 4, desired_replicas: 4 });
  const memory = { one_shots: { s1: '2026-02-01T09:00:00.000Z' }, proposals: [[1, 2, 4]], changes: [[1, 1]] };
  const s = stored({ current_replicas: 4, last_change_at: '2026-02-01T09:58:00.000Z', last_change_kind: 'scale_up' }, { [STATE_KEYS.lastDecision]: record, [STATE_KEYS.memory]: memory });
  const fp = fingerprintOf(s);
  const kept = new KnownState(s, fp, 123, true);
  t.notOk(STATE_KEYS.lastDecision in kept.state.data, 'the record is not in the known state\'s data');
  t.ok(STATE_KEYS.lastDecision in s.data, 'the state given is left as it was');
  t.same(kept.decided, { action: 'none', reason_code: 'cooldown', current_replicas: 4, desired_replicas: 4 });
  t.equal(kept.record, record, 'kept when this process made it');
  t.equal(kept.fingerprint, fp);
  t.equal(kept.evaluatedAt, 123);
  t.equal(kept.state.version, 3);
  t.equal(kept.pending, false);
  t.same(kept.shots, memory.one_shots);
  t.same(kept.proposals, memory.proposals);
  t.same(kept.changes, memory.changes);
  const read = new KnownState(s, fp, 0, false);
  t.equal(read.record, undefined, 'a state read from storage keeps no record');
  t.same(read.decided, kept.decided, 'but what the steady check compares');

  const m = kept.memory;
  t.same(m, { current_replicas: 4, last_change_at: '2026-02-01T09:58:00.000Z', consecutive_failures: 0, last_blocked: null, one_shots: memory.one_shots, proposals: memory.proposals, changes: memory.changes });
  t.equal(kept.memory, m, 'the memory is made once');

  t.equal(new KnownState(stored({}, { pending: { action: 'scale_up' } }), 'x', 0, false).pending, true, 'a pending change is seen');
  t.equal(new KnownState(stored({}, { pending: null }), 'x', 0, false).pending, false, 'a cleared one is not');
  const bare = new KnownState(stored({}, { [STATE_KEYS.lastDecision]: undefined, [STATE_KEYS.memory]: undefined }), 'x', 0, true);
  t.equal(bare.decided, undefined, 'no decision stored: nothing decided');
  t.equal(bare.shots, undefined);
  t.same(bare.memory.one_shots, {}, 'no memory stored: no one-shot applied');
});

t.test('KnownState.steady keeps the latest inputs in place and drops the record', async (t) => {
  const known = new KnownState(stored(), fingerprintOf(stored()), 0, true);
  t.not(known.record, undefined);
  const p1 = policyOf({ name: 'a' });
  const p2 = policyOf({ name: 'b' });
  const obs1 = new Map();
  const obs2 = new Map();
  known.steady(p1, AT, obs1, 3);
  const latest = known.latest;
  t.same(latest && { policy: latest.policy.name, now: latest.now, observations: latest.observations === obs1, executorReplicas: latest.executorReplicas }, { policy: 'a', now: AT, observations: true, executorReplicas: 3 });
  t.equal(known.record, undefined, 'the record is superseded: the state route decides again');
  t.equal(known.evaluatedAt, AT.getTime());
  const later = new Date(AT.getTime() + 30_000);
  known.steady(p2, later, obs2, null);
  t.equal(known.latest, latest, 'the same object, updated in place');
  t.equal(latest?.policy, p2);
  t.equal(latest?.observations, obs2);
  t.equal(latest?.executorReplicas, null);
  t.equal(known.evaluatedAt, later.getTime());
});

t.test('memoryFromState', async (t) => {
  t.equal(memoryFromState(undefined), EMPTY_MEMORY, 'no state: the empty memory');
  const m = memoryFromState(stored({ current_replicas: null, consecutive_failures: 2, last_blocked: 'cooldown' }, { [STATE_KEYS.memory]: undefined }));
  t.same(m, { current_replicas: null, last_change_at: null, consecutive_failures: 2, last_blocked: 'cooldown', one_shots: {} });
  t.notOk('proposals' in m, 'no proposals key when none is stored');
  t.notOk('changes' in m, 'no changes key when none is stored');
  const full = memoryFromState(stored({}, { [STATE_KEYS.memory]: { one_shots: { a: 'x' }, proposals: [], changes: [[5, 1]] } }));
  t.same(full.proposals, [], 'an empty list is kept as stored');
  t.same(full.changes, [[5, 1]]);
  t.same(full.one_shots, { a: 'x' });
});

t.test('sameList: empty and absent lists are the same, others by content', async (t) => {
  t.ok(sameList(undefined, undefined));
  t.ok(sameList([], undefined));
  t.ok(sameList(undefined, []));
  t.ok(sameList([[1, 2, 3]], [[1, 2, 3]]));
  t.notOk(sameList([[1, 2, 3]], [[1, 2, 4]]));
  t.notOk(sameList([[1, 2, 3]], undefined));
  t.notOk(sameList([[1, 2, 3]], [[1, 2, 3], [4, 5, 6]]));
});

const lagPolicy = policyOf({ name: 'lag', scale_up_rules: [rule('lag', 'gt', 60, 2)], scale_down_rules: [rule('lag', 'lt', 5, -1)], cooldown_seconds: 120 });

/** The stored state after one evaluation, and a known state made from it as the loop reads it. */
async function evaluatedOnce(policy = lagPolicy, values: Record<string, number | 'fail'> = { lag: 30 }, replicas: number | null = 3, at = AT) {
  const input = inputOf(policy, at, observationsFor([policy], at, values), replicas);
  const a = await assess(input);
  const s = stateAfter(input, a, 1);
  return { a, state: s, known: new KnownState(s, fingerprintOf(s), 0, false) };
}

async function again(known: KnownState, values: Record<string, number | 'fail'>, replicas: number | null, at: Date, policy = lagPolicy): Promise<Assessment> {
  return assess(inputOf(policy, at, observationsFor([policy], at, values), replicas, known.memory));
}

t.test('isSteady: the same outcome and memory as stored, nothing to record', async (t) => {
  const later = new Date(AT.getTime() + 30_000);
  const { a: first, known } = await evaluatedOnce();
  t.equal(first.reasonCode, 'no_rule_held');
  t.ok(isSteady(await again(known, { lag: 30 }, 3, later), known), 'the same inputs later: steady');
  t.ok(isSteady(await again(known, { lag: 10 }, 3, later), known), 'another value that holds no rule: steady');
  t.notOk(isSteady(await again(known, { lag: 30 }, 4, later), known), 'the executor reports other replicas: not steady');
  t.notOk(isSteady(await again(known, { lag: 90 }, 3, later), known), 'a rule holds (a change): not steady');
  t.notOk(isSteady(await again(known, { lag: 'fail' }, 3, later), known), 'a failed query (failures count up): not steady');

  // With an interrupted change in the state, a steady outcome is still written (to clear it).
  const pending = new KnownState({ ...known.state, data: { ...known.state.data, pending: { action: 'scale_up', previous: 3, desired: 5 } }, }, 'x', 0, false);
  t.notOk(isSteady(await again(known, { lag: 30 }, 3, later), pending), 'a pending change is never steady');

  // No decision stored (a state from before decisions were kept): not steady, so it gets one.
  const undecided = new KnownState({ ...known.state, data: { [STATE_KEYS.memory]: known.state.data[STATE_KEYS.memory] } }, 'x', 0, false);
  t.notOk(isSteady(await again(known, { lag: 30 }, 3, later), undecided));
});

t.test('isSteady: a blocked change is recorded once, then steady while it persists', async (t) => {
  const capped = policyOf({ name: 'capped', max_replicas: 3, scale_up_rules: [rule('lag', 'gt', 60, 2)] });
  const { a, known } = await evaluatedOnce(capped, { lag: 90 }, 3);
  t.equal(a.reasonCode, 'at_max');
  t.ok(a.recordBlocked, 'the first blocked evaluation records a row');
  const later = new Date(AT.getTime() + 30_000);
  const b = await again(known, { lag: 90 }, 3, later, capped);
  t.equal(b.reasonCode, 'at_max');
  t.notOk(b.recordBlocked, 'the same block again: no row');
  t.ok(isSteady(b, known), 'and nothing to write');
  // The blocked assessment itself, compared with a state that has not recorded it yet.
  const before = new KnownState({ ...known.state, last_blocked: null }, 'x', 0, false);
  t.notOk(isSteady(b, before), 'last_blocked differs: not steady');
});

t.test('isQuiet: only an outcome that time alone cannot change', async (t) => {
  const later = new Date(AT.getTime() + 30_000);
  const { known } = await evaluatedOnce();
  const quiet = await again(known, { lag: 30 }, 3, later);
  t.equal(quiet.reasonCode, QUIET_REASON);
  t.ok(isQuiet(quiet, lagPolicy), 'no rule held, nothing chosen: quiet');
  t.notOk(isQuiet(await again(known, { lag: 90 }, 3, later), lagPolicy), 'a rule held: not quiet');
  t.notOk(isQuiet(await again(known, { lag: 'fail' }, 3, later), lagPolicy), 'a failed query: not quiet');

  // One of two rules of an `all` holds: no direction, reason no_rule_held, but a condition holds.
  const both = policyOf({ name: 'both', scale_up_rules: [rule('lag', 'gt', 60, 1), rule('cpu', 'gt', 80, 1)] });
  const half = await assess(inputOf(both, AT, observationsFor([both], AT, { lag: 90, cpu: 10 }), 3));
  t.equal(half.reasonCode, QUIET_REASON, 'the direction did not hold');
  t.notOk(isQuiet(half, both), 'yet a rule held: not quiet (its window may complete the other\'s)');
  const none = await assess(inputOf(both, AT, observationsFor([both], AT, { lag: 10, cpu: 10 }), 3));
  t.ok(isQuiet(none, both), 'neither held: quiet');

  // Schedules and target tracking depend on time and values themselves.
  const scheduled = policyOf({ name: 'sched', scale_up_rules: [rule('lag', 'gt', 60, 1)], schedules: [{ cron_expression: '0 3 * * *', desired_replicas: 4, duration: '1h' }] });
  const s = await assess(inputOf(scheduled, AT, observationsFor([scheduled], AT, { lag: 10 }), 3));
  t.equal(s.reasonCode, QUIET_REASON, 'no window open at 10:00');
  t.notOk(isQuiet(s, scheduled), 'but a schedule will fire: never quiet');
  const tracking = policyOf({ name: 'track', target_tracking: [{ metric: 'load', target_value: 50 }] });
  const tr = await assess(inputOf(tracking, AT, observationsFor([tracking], AT, { load: 50 }), 3));
  t.equal(tr.reasonCode, QUIET_REASON, 'within tolerance');
  t.notOk(isQuiet(tr, tracking), 'target tracking reads values: never quiet');

  const disabled = policyOf({ name: 'off', enabled: false, scale_up_rules: [rule('lag', 'gt', 60, 1)] });
  const d = await assess(inputOf(disabled, AT, observationsFor([disabled], AT, { lag: 10 }), 3));
  t.equal(d.reasonCode, 'disabled');
  t.notOk(isQuiet(d, disabled), 'a disabled policy is not quiet');
});

/** Lists as the behaviour memory may hold them: absent, empty, or with entries. */
const listArb = <T>(entry: fc.Arbitrary<T>) => fc.oneof(fc.constant(undefined), fc.constant([] as T[]), fc.array(entry, { minLength: 1, maxLength: 2 }));
const proposalArb = fc.tuple(fc.nat(3), fc.nat(3), fc.nat(3));
const changeArb = fc.tuple(fc.nat(3), fc.integer({ min: -2, max: 2 }));
const sideArb = fc.record({
  current: fc.constantFrom(null, 1, 2),
  lastChange: fc.constantFrom(null, '2026-02-01T09:00:00.000Z'),
  kind: fc.constantFrom(null, 'scale_up'),
  failures: fc.nat(1),
  blocked: fc.constantFrom(null, 'at_max'),
  shots: fc.constantFrom<Record<string, string> | undefined>(undefined, {}, { s: 'a' }, { s: 'b' }),
  proposals: listArb(proposalArb),
  changes: listArb(changeArb),
  action: fc.constantFrom('none', 'scale_up'),
  reason: fc.constantFrom('no_rule_held', 'cooldown'),
  desired: fc.constantFrom(1, 2),
});
type Side = typeof sideArb extends fc.Arbitrary<infer S> ? S : never;

function stateOf(x: Side): PolicyState {
  const memory: Record<string, unknown> = {};
  if (x.shots !== undefined) memory['one_shots'] = x.shots;
  if (x.proposals !== undefined) memory['proposals'] = x.proposals;
  if (x.changes !== undefined) memory['changes'] = x.changes;
  return stored(
    { current_replicas: x.current, last_change_at: x.lastChange, last_change_kind: x.kind, consecutive_failures: x.failures, last_blocked: x.blocked },
    { [STATE_KEYS.memory]: memory, [STATE_KEYS.lastDecision]: decision({ action: x.action as DecisionRecord['action'], reason_code: x.reason as DecisionRecord['reason_code'], current_replicas: x.current ?? 1, desired_replicas: x.desired }) },
  );
}

/** The state with empty lists and one-shots written as absent: what sameAsKnown treats as equal. */
const normalized = (x: Side): Side => ({ ...x, shots: x.shots === undefined || Object.keys(x.shots).length === 0 ? undefined : x.shots, proposals: x.proposals?.length ? x.proposals : undefined, changes: x.changes?.length ? x.changes : undefined });

t.test('sameAsKnown agrees with the fingerprint, empty and absent lists aside (property)', async (t) => {
  let same = 0;
  let differ = 0;
  fc.assert(
    fc.property(sideArb, fc.option(sideArb, { nil: undefined, freq: 2 }), (a, maybeB) => {
      // Half the cases compare a state with itself, where they must agree that nothing changed.
      const b = maybeB ?? a;
      const known = new KnownState(stateOf(a), fingerprintOf(stateOf(a)), 0, false);
      const m: EngineMemory = {
        current_replicas: b.current,
        last_change_at: b.lastChange,
        consecutive_failures: b.failures,
        last_blocked: b.blocked,
        one_shots: b.shots ?? {},
        ...(b.proposals !== undefined ? { proposals: b.proposals as EngineMemory['proposals'] } : {}),
        ...(b.changes !== undefined ? { changes: b.changes as EngineMemory['changes'] } : {}),
      };
      const assessed = { action: b.action, reasonCode: b.reason, current: b.current ?? 1, desired: b.desired } as unknown as Assessment;
      const claimed = sameAsKnown(known, m, b.kind, assessed);
      const expected = fingerprint(stateOf(normalized(a))) === fingerprint(stateOf(normalized(b)));
      if (claimed) same++;
      else differ++;
      if (claimed !== expected) throw new Error(`sameAsKnown says ${claimed}, the fingerprints say ${expected}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    }),
    { numRuns: 500, seed: 4101 },
  );
  t.ok(same > 100, `states found the same: ${same}`);
  t.ok(differ > 100, `states found different: ${differ}`);
});
