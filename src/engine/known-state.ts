import type { Policy } from '../policy/policy-model.js';
import type { HistoryRow, PolicyState } from '../storage/storage.js';
import { Interner } from '../util/intern.js';
import type { Assessment } from './decide.js';
import { EMPTY_MEMORY, type DecisionRecord, type EngineMemory, type Observation } from './decision.js';

// What the loop knows of a policy's stored state between cycles, and the tests that tell a
// steady state (nothing to write) and a quiet one (nothing time alone can change) from the rest.

/** Where the engine keeps its parts in a state's `data`. */
export const STATE_KEYS = { memory: 'memory', lastDecision: 'last_decision', lastDryRun: 'last_dry_run' } as const;

/**
 * What of a state is worth writing: the engine memory and the outcome of the last decision, not
 * its timestamp. Two evaluations with the same fingerprint need only one write.
 */
export function fingerprint(s: PolicyState): string {
  const d = s.data[STATE_KEYS.lastDecision] as DecisionRecord | undefined;
  return JSON.stringify([
    s.current_replicas,
    s.last_change_at,
    s.last_change_kind,
    s.consecutive_failures,
    s.last_blocked,
    s.data[STATE_KEYS.memory],
    s.data['pending'] ?? null,
    s.data[STATE_KEYS.lastDryRun] ?? null,
    d?.action,
    d?.reason_code,
    d?.current_replicas,
    d?.desired_replicas,
  ]);
}

/** One copy of each fingerprint: in a steady state most policies' are the same text. */
const fingerprints = new Interner<string>(20_000);
const same = (s: string): string => s;

/** The fingerprint of a state, one copy per distinct text. */
export function fingerprintOf(s: PolicyState): string {
  return fingerprints.get(fingerprint(s), same);
}

/** Data of a state at most this long (as JSON) is shared between the known states that hold it. */
const SHARED_UP_TO = 200;
const sharedData = new Interner<object>(10_000);
const sharedDecided = new Interner<object>(10_000);

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** A real change whose intent is stored before the executor is called, cleared once it is recorded. */
export interface PendingChange {
  /** The id its history row gets: a row already written means the change was recorded. */
  id?: string;
  action: HistoryRow['action'];
  previous: number;
  desired: number;
  at: string;
  reason: string;
  reason_code: string;
  triggered_by: HistoryRow['triggered_by'];
}

/**
 * Whether a state with this memory and decision would have the same fingerprint as the known
 * one, checked field by field without building it (the common case of a steady-state cycle).
 */
export function sameAsKnown(ks: KnownState, m: EngineMemory, kind: string | null, a: Assessment): boolean {
  const known = ks.state;
  const d = ks.decided;
  const knownShots = ks.shots;
  return (
    known.current_replicas === m.current_replicas &&
    known.last_change_at === m.last_change_at &&
    known.last_change_kind === kind &&
    known.consecutive_failures === m.consecutive_failures &&
    known.last_blocked === m.last_blocked &&
    !ks.pending &&
    d !== undefined &&
    d.action === a.action &&
    d.reason_code === a.reasonCode &&
    d.current_replicas === a.current &&
    d.desired_replicas === a.desired &&
    (knownShots === m.one_shots || (Object.keys(knownShots ?? {}).length === 0 && Object.keys(m.one_shots).length === 0) || JSON.stringify(knownShots) === JSON.stringify(m.one_shots)) &&
    sameList(ks.proposals, m.proposals) &&
    sameList(ks.changes, m.changes)
  );
}

/** Whether two lists of the behaviour memory (proposal spans, changes) hold the same entries. */
export function sameList(a: readonly unknown[] | undefined, b: readonly unknown[] | undefined): boolean {
  if (a === b) return true;
  if ((a?.length ?? 0) === 0 && (b?.length ?? 0) === 0) return true;
  return a !== undefined && b !== undefined && a.length === b.length && JSON.stringify(a) === JSON.stringify(b);
}

/** The reason code of a quiet steady state (its action is none). */
export const QUIET_REASON = 'no_rule_held';

/**
 * A steady state that time alone cannot change: no rule held or failed (so no direction was
 * chosen and no cooldown counted), no schedules, nothing to do. Evaluated again with the same
 * policy, state and replicas and again no rule holding or failing, it has the same outcome.
 */
export function isQuiet(a: Assessment, policy: Policy): boolean {
  // Target tracking reads the values themselves, not only whether a condition holds: never quiet.
  if (a.action !== 'none' || a.reasonCode !== QUIET_REASON || a.anyError || a.chosen !== null || policy.schedules.length > 0 || policy.target_tracking.length > 0) return false;
  for (const v of a.up) if (v.held) return false;
  for (const v of a.down) if (v.held) return false;
  return true;
}

/** A loop evaluation that changes nothing, records nothing and has the outcome already stored. */
export function isSteady(a: Assessment, known: KnownState): boolean {
  return a.action === 'none' && !a.recordBlocked && sameAsKnown(known, a.memory, known.state.last_change_kind, a);
}

/**
 * What the manager knows of one policy's state: the state as stored (and its fingerprint), and,
 * after a steady-state evaluation that wrote nothing, the inputs that evaluation had besides the
 * state itself. They are kept in place, not as a new object per evaluation: at 10,000 policies a
 * cycle, keeping each evaluation's record (or any new object) alive until the next cycle made the
 * garbage collector copy and promote all of them, three times the cost of the evaluations.
 */
export class KnownState {
  /** The state without its decision record (see `record`). */
  readonly state: PolicyState;
  /** What the steady-state check compares of the stored decision. */
  readonly decided: Pick<DecisionRecord, 'action' | 'reason_code' | 'current_replicas' | 'desired_replicas'> | undefined;
  /**
   * The stored decision record, kept only when this process made it and until a later
   * evaluation supersedes it. A state read from storage keeps only `decided`: at 10,000 policies
   * the loaded records were half of the live heap, and V8 lets the heap grow to a multiple of it.
   */
  record: DecisionRecord | undefined;
  /** Whether the state carries an interrupted change (`data.pending`). */
  readonly pending: boolean;
  /** The one-shot schedules already applied (`data.memory.one_shots`). */
  readonly shots: Record<string, string> | undefined;
  latest: { policy: Policy; now: Date; observations: ReadonlyMap<string, Observation>; executorReplicas: number | null } | undefined;
  #memory: EngineMemory | undefined;

  constructor(
    state: PolicyState,
    readonly fingerprint: string,
    public evaluatedAt: number,
    keepRecord: boolean,
  ) {
    const { [STATE_KEYS.lastDecision]: stored, ...rest } = state.data;
    const d = stored as DecisionRecord | undefined;
    // Most policies hold the same small data (no schedule fired, nothing pending) and the same
    // few outcomes: one frozen copy of each (at 100,000 policies, 150 bytes a policy).
    const text = JSON.stringify(rest);
    const data = text.length <= SHARED_UP_TO ? (sharedData.get(text, () => deepFreeze(rest)) as Record<string, unknown>) : rest;
    this.state = { ...state, data };
    this.decided =
      d === undefined
        ? undefined
        : (sharedDecided.get(`${d.action}\u0000${d.reason_code}\u0000${d.current_replicas}\u0000${d.desired_replicas}`, () =>
            Object.freeze({ action: d.action, reason_code: d.reason_code, current_replicas: d.current_replicas, desired_replicas: d.desired_replicas }),
          ) as KnownState['decided']);
    this.record = keepRecord ? d : undefined;
    // Kept flat: the steady-state check reads them for 10,000 policies a cycle.
    this.pending = (data['pending'] ?? null) !== null;
    const memory = data[STATE_KEYS.memory] as Partial<EngineMemory> | undefined;
    this.shots = memory?.one_shots;
    this.proposals = memory?.proposals;
    this.changes = memory?.changes;
  }

  /** The stabilization proposals and rate-limit changes in the stored memory (`data.memory`). */
  readonly proposals: EngineMemory['proposals'];
  readonly changes: EngineMemory['changes'];

  /** The engine memory in the state, made once (decide() never changes its input). */
  get memory(): EngineMemory {
    this.#memory ??= memoryFromState(this.state);
    return this.#memory;
  }

  steady(policy: Policy, now: Date, observations: ReadonlyMap<string, Observation>, executorReplicas: number | null): void {
    const l = this.latest;
    if (l === undefined) this.latest = { policy, now, observations, executorReplicas };
    else {
      l.policy = policy;
      l.now = now;
      l.observations = observations;
      l.executorReplicas = executorReplicas;
    }
    this.record = undefined;
    this.evaluatedAt = now.getTime();
  }
}

/** The engine memory kept in a PolicyState row. */
export function memoryFromState(state: PolicyState | undefined): EngineMemory {
  if (state === undefined) return EMPTY_MEMORY;
  const stored = (state.data[STATE_KEYS.memory] ?? {}) as Partial<EngineMemory>;
  return {
    current_replicas: state.current_replicas,
    last_change_at: state.last_change_at,
    consecutive_failures: state.consecutive_failures,
    last_blocked: state.last_blocked,
    one_shots: stored.one_shots ?? {},
    ...(stored.proposals !== undefined ? { proposals: stored.proposals } : {}),
    ...(stored.changes !== undefined ? { changes: stored.changes } : {}),
  };
}
