import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Sample, ScaleTarget } from '../plugins/api.js';
import type { IsolatedExecutor, IsolatedMetricSource, PluginCallError } from '../plugins/plugin-manager.js';
import type { Policy, Rule } from '../policy/policy-model.js';
import type { HistoryRow, PolicyState, Storage } from '../storage/storage.js';
import { ScalerError } from '../errors.js';
import { Mutex, Semaphore } from '../util/async.js';
import { assess, explain, type Assessment, type DecisionInput } from './decide.js';
import { EMPTY_MEMORY, type DecisionRecord, type EngineMemory, type Observation } from './decision.js';
import { applyExecution } from './execution.js';
import { StateWrites } from './state-writes.js';
import { isMetricError, observationKey, queriedBy, ruleWindow, sharedVerdict, valuesAtInstants, verdictMemo, type Queried } from './rule-window.js';

/** What the manager needs from the daemon; plugins come in already isolated. */
export interface ManagerDeps {
  storage: Storage;
  logger: Logger;
  sources: ReadonlyMap<string, IsolatedMetricSource>;
  executors: ReadonlyMap<string, IsolatedExecutor>;
  config: {
    evaluation_interval_ms: number;
    default_cooldown: number;
    default_metric_source: string;
    dry_run: boolean;
    max_concurrency: number;
    executors: Readonly<Record<string, string>>;
    prices: Readonly<Record<string, number>>;
  };
  now?: () => Date;
  /**
   * Leadership of the loop (LeaderElection.fence): `false` when this daemon does not lead, so its
   * loop must not execute or write states; otherwise the proof its state writes carry. Without
   * it (one-shot commands, tests), the loop's writes are compare-and-set on the state version only.
   */
  fence?: () => number | undefined | false;
  /** Called after every cycle (metrics, tests). */
  onCycle?: (report: CycleReport) => void;
  /**
   * Called after every assessed evaluation, loop or manual (metrics); `outcome.record()` makes its
   * decision record. Outcomes the loop repeated without an assessment are counted by onRepeated.
   */
  onDecision?: (outcome: EvaluationOutcome, trigger: 'loop' | 'api') => void;
  /**
   * Called once per cycle with how many policies repeated their quiet steady state (action none,
   * reason no_rule_held) without an assessment; `knownState()` makes their records on demand.
   */
  onRepeated?: (count: number) => void;
}

/**
 * The outcome of one evaluation, with its decision record made on first ask. A steady-state
 * evaluation of the loop (same outcome as stored) needs no record, and at 10,000 policies a cycle
 * building them was most of the loop's own work; as decide() is pure, the record made later from
 * the same input and assessment is the one that would have been made at once.
 */
export class EvaluationOutcome {
  #record: DecisionRecord | undefined;

  constructor(
    readonly input: DecisionInput,
    readonly assessment: Assessment,
  ) {}

  get policy_id(): string {
    return this.input.policy.id;
  }

  get action(): DecisionRecord['action'] {
    return this.assessment.action;
  }

  get reason_code(): DecisionRecord['reason_code'] {
    return this.assessment.reasonCode;
  }

  record(): DecisionRecord {
    this.#record ??= explain(this.input, this.assessment);
    return this.#record;
  }
}

export interface CycleReport {
  started_at: string;
  duration_ms: number;
  policies: number;
  fetches: number;
  fetch_errors: number;
  outcomes: Record<string, number>;
  /** Of those, quiet steady states repeated without an assessment (counted under no_rule_held). */
  repeated: number;
  errors: number;
  /** Policy states written this cycle (unchanged states are not rewritten). */
  states_written: number;
  /** Where the time went: loading policies, fetching (from load end), evaluating (overlaps fetch), writing states. */
  phases_ms: { load: number; fetch: number; evaluate_until: number; write: number };
}

interface Fetch {
  source: string;
  /** A rule or a target-tracking entry: what is queried, and over which window. */
  rule: Queried;
}

/** Health of a metric source as the loop last saw it; logged on change, served by /readyz. */
export interface SourceHealth {
  ok: boolean;
  checked_at: string;
  error: string | null;
}

const STATE_KEYS = { memory: 'memory', lastDecision: 'last_decision', lastDryRun: 'last_dry_run' } as const;

/** Error kinds that mean the source itself did not answer (as opposed to answering badly). */
const SOURCE_DOWN_KINDS: ReadonlySet<string> = new Set(['unreachable', 'timeout', 'http']);

/**
 * What of a state is worth writing: the engine memory and the outcome of the last decision, not
 * its timestamp. Two evaluations with the same fingerprint need only one write.
 */
function fingerprint(s: PolicyState): string {
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

/** A real change whose intent is stored before the executor is called, cleared once it is recorded. */
interface PendingChange {
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

/** How long the loop evaluates ready policies before it lets responses in flight be read. */
const EVALUATION_SLICE_MS = 1;

/**
 * Whether a state with this memory and decision would have the same fingerprint as the known
 * one, checked field by field without building it (the common case of a steady-state cycle).
 */
function sameAsKnown(ks: KnownState, m: EngineMemory, kind: string | null, a: Assessment): boolean {
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
function sameList(a: readonly unknown[] | undefined, b: readonly unknown[] | undefined): boolean {
  if (a === b) return true;
  if ((a?.length ?? 0) === 0 && (b?.length ?? 0) === 0) return true;
  return a !== undefined && b !== undefined && a.length === b.length && JSON.stringify(a) === JSON.stringify(b);
}

/** The reason code of a quiet steady state (its action is none). */
const QUIET_REASON = 'no_rule_held';

/**
 * A steady state that time alone cannot change: no rule held or failed (so no direction was
 * chosen and no cooldown counted), no schedules, nothing to do. Evaluated again with the same
 * policy, state and replicas and again no rule holding or failing, it has the same outcome.
 */
function isQuiet(a: Assessment, policy: Policy): boolean {
  // Target tracking reads the values themselves, not only whether a condition holds: never quiet.
  if (a.action !== 'none' || a.reasonCode !== QUIET_REASON || a.anyError || a.chosen !== null || policy.schedules.length > 0 || policy.target_tracking.length > 0) return false;
  for (const v of a.up) if (v.held) return false;
  for (const v of a.down) if (v.held) return false;
  return true;
}

/** A loop evaluation that changes nothing, records nothing and has the outcome already stored. */
function isSteady(a: Assessment, known: KnownState): boolean {
  return a.action === 'none' && !a.recordBlocked && sameAsKnown(known, a.memory, known.state.last_change_kind, a);
}

/**
 * What the manager knows of one policy's state: the state as stored (and its fingerprint), and,
 * after a steady-state evaluation that wrote nothing, the inputs that evaluation had besides the
 * state itself. They are kept in place, not as a new object per evaluation: at 10,000 policies a
 * cycle, keeping each evaluation's record (or any new object) alive until the next cycle made the
 * garbage collector copy and promote all of them, three times the cost of the evaluations.
 */
class KnownState {
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
    const { [STATE_KEYS.lastDecision]: stored, ...data } = state.data;
    const d = stored as DecisionRecord | undefined;
    this.state = { ...state, data };
    this.decided = d === undefined ? undefined : { action: d.action, reason_code: d.reason_code, current_replicas: d.current_replicas, desired_replicas: d.desired_replicas };
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

/** What an executor is told about the target of a policy. */
function targetOf(policy: Policy): ScaleTarget {
  const ref = policy.target_ref;
  return {
    policyId: policy.id,
    policyName: policy.name,
    targetType: policy.target_type,
    targetId: policy.target_id,
    targetRef: ref === null ? null : { kind: ref.kind, name: ref.name, namespace: ref.namespace, apiVersion: ref.api_version },
  };
}

/** One enabled policy as the loop holds it between cycles (see ScalingManager.#slots). */
class Slot {
  known: KnownState | undefined;
  /** Its index in the current CyclePlan (where the plan keeps what it knows of it). */
  index = -1;
  /**
   * Set when its last assessment was a steady state that time cannot change (no rule held or
   * failed, no schedules, nothing to do): the policy version, known state and replicas it had.
   * While those stay the same and still no rule holds, the outcome is the same: the plan repeats
   * it without an assessment (CyclePlan.repeats).
   */
  quietPolicy: Policy | undefined;
  quietKnown: KnownState | undefined;
  quietReplicas: number | null = null;

  constructor(
    public policy: Policy,
    readonly lock: Mutex,
    public seen: number,
  ) {}
}

/** In CyclePlan.answered: the executor gave no answer in its call for many targets. */
const NO_ANSWER = -2;
/** The largest count CyclePlan.answered holds. */
const MAX_ANSWER = 0x7fffffff;

/** The instant and observations of a cycle whose repeated outcomes may still be asked for. */
interface RepeatContext {
  cycle: number;
  now: Date;
  observations: ReadonlyMap<string, Observation>;
}

/**
 * What a cycle does for a given set of held policies, worked out once and reused while the set
 * (the same policy versions, in the same order) does not change: the distinct requests, which
 * policies wait for each, the distinct conditions (operator and threshold) each request is read
 * with, and which policies each executor answers for in one call. At 10,000 policies building it
 * cost more than the evaluations of a steady cycle.
 */
class CyclePlan {
  readonly policies: Policy[];
  /** Distinct (source, query, aggregation, window) keys and the rule each is fetched for. */
  readonly keys: string[] = [];
  readonly fetches: Fetch[] = [];
  /** By key index: the indices (in `slots`) of the policies that wait for it, and its distinct conditions. */
  readonly waiting: number[][] = [];
  readonly conditions: Array<Array<Pick<Rule, 'operator' | 'threshold' | 'duration_seconds'>>> = [];
  /** By key index: where its conditions start in `quiet`. */
  readonly firstCondition: number[] = [];
  /** Per condition, filled each cycle as its observation comes in: no verdict held or failed. */
  readonly quiet: Uint8Array;
  /** The conditions of every policy's rules, slot after slot: slot i's are [conditionsFrom[i], conditionsTo[i]). */
  readonly conditionOf: Int32Array;
  readonly byExecutor = new Map<IsolatedExecutor, { indices: number[]; targets: ScaleTarget[] }>();

  // By slot index. What the loop reads of every policy every cycle is kept in flat arrays, not on
  // the policies' objects: at 10,000 policies, touching 10,000 scattered objects (and missing the
  // CPU's caches on each) cost more than the checks themselves.
  readonly conditionsFrom: Int32Array;
  readonly conditionsTo: Int32Array;
  /** How many distinct observations it waits for (copied into `missing` each cycle). */
  readonly needs: Uint8Array;
  /** How many of them it still waits for this cycle. */
  readonly missing: Uint8Array;
  /** What its executor answered this cycle in one call for many targets: NO_ANSWER none, -1 "cannot tell". */
  readonly answered: Int32Array;
  /** 1 while its quiet steady state may be repeated (see Slot.quietPolicy), with the replicas it had (-1 for null). */
  readonly repeatable: Uint8Array;
  readonly repeatReplicas: Int32Array;
  /** The cycle whose outcome it repeated last (0: none). */
  readonly repeatedIn: Int32Array;

  constructor(
    readonly slots: readonly Slot[],
    readonly defaultSource: string,
    executorOf: (policy: Policy) => IsolatedExecutor | undefined,
    previous: CyclePlan | undefined,
  ) {
    const n = slots.length;
    this.policies = slots.map((s) => s.policy);
    this.needs = new Uint8Array(n);
    this.missing = new Uint8Array(n);
    this.answered = new Int32Array(n).fill(NO_ANSWER);
    this.repeatable = new Uint8Array(n);
    this.repeatReplicas = new Int32Array(n);
    this.repeatedIn = new Int32Array(n);
    this.conditionsFrom = new Int32Array(n);
    this.conditionsTo = new Int32Array(n);
    const keyIndex = new Map<string, number>();
    const perKey: Array<Map<string, number>> = [];
    const conditionsOf: number[][] = [];
    for (let index = 0; index < n; index++) {
      const slot = slots[index] as Slot;
      const policy = slot.policy;
      // What the previous plan knew of this slot carries over.
      if (previous !== undefined && previous.slots[slot.index] === slot) this.repeatedIn[index] = previous.repeatedIn[slot.index] as number;
      slot.index = index;
      if (slot.quietPolicy === policy && slot.quietKnown === slot.known) {
        this.repeatable[index] = 1;
        this.repeatReplicas[index] = slot.quietReplicas ?? -1;
      }
      const conds: number[] = [];
      let keys = 0;
      for (const rule of queriedBy(policy)) {
        const key = observationKey(rule, defaultSource);
        let k = keyIndex.get(key);
        if (k === undefined) {
          k = this.keys.length;
          keyIndex.set(key, k);
          this.keys.push(key);
          this.fetches.push({ source: rule.source ?? defaultSource, rule });
          this.waiting.push([]);
          this.conditions.push([]);
          perKey.push(new Map());
        }
        const waiting = this.waiting[k] as number[];
        if (waiting[waiting.length - 1] !== index) {
          waiting.push(index);
          keys++;
        }
        // A target-tracking entry has no condition (its policy is never repeated quietly).
        if (!('operator' in rule)) continue;
        const condKey = `${rule.operator}\u0000${rule.threshold}`;
        const byCond = perKey[k] as Map<string, number>;
        let local = byCond.get(condKey);
        if (local === undefined) {
          local = (this.conditions[k] as unknown[]).length;
          byCond.set(condKey, local);
          (this.conditions[k] as Array<Pick<Rule, 'operator' | 'threshold' | 'duration_seconds'>>).push(rule);
        }
        conds.push(k, local);
      }
      // At most 100 distinct observations (the schema allows 50 rules per direction): a byte each.
      this.needs[index] = keys;
      conditionsOf.push(conds);
      const executor = executorOf(policy);
      if (executor !== undefined && executor.answersMany) {
        let group = this.byExecutor.get(executor);
        if (group === undefined) {
          group = { indices: [], targets: [] };
          this.byExecutor.set(executor, group);
        }
        group.indices.push(index);
        group.targets.push(Object.freeze(targetOf(policy)));
      }
    }
    let conditionCount = 0;
    for (const list of this.conditions) {
      this.firstCondition.push(conditionCount);
      conditionCount += list.length;
    }
    this.quiet = new Uint8Array(conditionCount);
    let total = 0;
    for (const pairs of conditionsOf) total += pairs.length / 2;
    this.conditionOf = new Int32Array(total);
    let at = 0;
    for (let index = 0; index < n; index++) {
      const pairs = conditionsOf[index] as number[];
      this.conditionsFrom[index] = at;
      for (let j = 0; j < pairs.length; j += 2) this.conditionOf[at++] = (this.firstCondition[pairs[j] as number] as number) + (pairs[j + 1] as number);
      this.conditionsTo[index] = at;
    }
  }

  /** Whether this plan was made for exactly these slots holding exactly these policy versions. */
  fits(held: readonly Slot[], defaultSource: string): boolean {
    if (held.length !== this.slots.length || defaultSource !== this.defaultSource) return false;
    for (let i = 0; i < held.length; i++) if (held[i] !== this.slots[i] || (held[i] as Slot).policy !== this.policies[i]) return false;
    return true;
  }

  /** Whether the slot is one of this plan's. */
  has(slot: Slot): boolean {
    return this.slots[slot.index] === slot;
  }

  /** What the slot's executor answered this cycle in its call for many targets; undefined when it did not. */
  answerOf(slot: Slot): number | null | undefined {
    if (!this.has(slot)) return undefined;
    const a = this.answered[slot.index] as number;
    return a === NO_ANSWER ? undefined : a < 0 ? null : a;
  }

  /** Records, for each condition of key `k`, whether its verdict on this observation is quiet. */
  observe(k: number, obs: Observation, now: Date, intervalSeconds: number): void {
    const conds = this.conditions[k] as Array<Pick<Rule, 'operator' | 'threshold' | 'duration_seconds'>>;
    const first = this.firstCondition[k] as number;
    for (let i = 0; i < conds.length; i++) {
      const rule = conds[i] as Pick<Rule, 'operator' | 'threshold' | 'duration_seconds'>;
      const v = sharedVerdict(rule, obs, ruleWindow(rule, now, intervalSeconds));
      this.quiet[first + i] = v.held || isMetricError(v) ? 0 : 1;
    }
  }

  /**
   * Whether slot `i`'s outcome this cycle repeats its last one without an assessment: its quiet
   * steady state is repeatable, its executor answered the same replicas in the cycle's batch, and
   * no rule of its policy held or failed (all its observations are in). Marks it repeated in `cycle`.
   */
  repeats(i: number, cycle: number): boolean {
    if (this.repeatable[i] === 0 || this.answered[i] !== this.repeatReplicas[i]) return false;
    const to = this.conditionsTo[i] as number;
    for (let c = this.conditionsFrom[i] as number; c < to; c++) if (this.quiet[this.conditionOf[c] as number] === 0) return false;
    this.repeatedIn[i] = cycle;
    return true;
  }

  /** After an assessment of the slot (or before a full evaluation): whether its outcome may be repeated from now on. */
  setQuiet(slot: Slot, quiet: boolean, known: KnownState | undefined, replicas: number | null): void {
    if (quiet) {
      slot.quietPolicy = slot.policy;
      slot.quietKnown = known;
      slot.quietReplicas = replicas;
    } else slot.quietPolicy = undefined;
    if (!this.has(slot)) return;
    this.repeatable[slot.index] = quiet ? 1 : 0;
    this.repeatReplicas[slot.index] = replicas ?? -1;
    // Assessed now: its latest outcome is no longer a repeat.
    this.repeatedIn[slot.index] = 0;
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

/**
 * A policy is "failing" once its metric queries have failed this many loop evaluations in a row
 * (one failure is a blip the next cycle usually clears): it is logged then, once, named in
 * /readyz while it lasts, and logged once more when its queries answer again.
 */
export const FAILING_AFTER = 3;

/** A policy whose metric queries keep failing (see FAILING_AFTER). */
export interface FailingPolicy {
  policy_id: string;
  policy: string;
  /** Loop evaluations in a row with a metric error. */
  failures: number;
  /** When it was found failing: the evaluation that made FAILING_AFTER failures in a row. */
  since: string;
  /** The latest metric error (of its first failing rule). */
  error: string;
}

/**
 * The evaluation loop: every interval it loads enabled policies,
 * fetches each distinct (source, query, window) once, evaluates policies with bounded
 * concurrency, executes, and records. Cycles never overlap; a per-policy lock keeps a manual
 * evaluation and the loop off the same policy at once.
 */
export class ScalingManager {
  readonly #deps: ManagerDeps;
  /** State and history writes made at once, grouped into few transactions. */
  readonly #writes: StateWrites;
  /** Executor calls in flight (scale, and current replicas asked one by one): at most max_concurrency. */
  readonly #executing: Semaphore;
  readonly #now: () => Date;
  readonly #locks = new Map<string, Mutex>();
  /** Samples kept for sources without range queries, by observation key. */
  readonly #buffers = new Map<string, { t: number[]; v: number[]; length: number }>();
  readonly sourceHealth = new Map<string, SourceHealth>();
  #sourceMarked = 0;
  #sourceMarkedName = '';
  /**
   * The enabled policies the loop holds between cycles, by id: the version last loaded (only
   * changed versions are read again), the policy's lock, and what the manager knows of its state.
   * One entry per policy, so an evaluation looks its policy up once, not once per concern. The
   * known state is the stored one plus, after a steady-state evaluation (same memory, same
   * outcome, nothing written), that evaluation's inputs; the state route reads it first, so it
   * shows the latest decision. Cleared when the loop (re)starts.
   */
  readonly #slots = new Map<string, Slot>();
  /** Policies whose metric queries have failed FAILING_AFTER loop evaluations in a row, by id. */
  readonly #failing = new Map<string, FailingPolicy>();
  /** Whether some held policy may have no known state (set by a listing or a failed state write). */
  #unknownStates = true;
  /** The policies revision of the last listing and the enabled policies it found (see #loadPolicies). */
  #loaded: { revision: string; held: Slot[] } | undefined;
  /** Cycles run so far (a repeated outcome names the cycle it was repeated in). */
  #cycles = 0;
  /** The contexts of the last two cycles, for the records of outcomes repeated in them. */
  #repeats: RepeatContext[] = [];
  /** Manual evaluations running: while any does, the loop repeats no outcome without checking the policy's lock. */
  #manual = 0;
  /** The plan of the last cycle, reused while the held policies do not change. */
  #plan: CyclePlan | undefined;
  /** Cycle counter; a slot not seen in the latest load is dropped. */
  #loads = 0;
  readonly #dryRunRequested: DecisionInput['dryRun'];
  readonly #dryRunNotRequested: DecisionInput['dryRun'];
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<CycleReport> | undefined;
  #stopped = true;
  lastCycle: CycleReport | undefined;

  constructor(deps: ManagerDeps) {
    this.#deps = deps;
    this.#writes = new StateWrites(deps.storage);
    this.#executing = new Semaphore(deps.config.max_concurrency);
    this.#now = deps.now ?? (() => new Date());
    this.#dryRunRequested = Object.freeze({ request: true, global: deps.config.dry_run });
    this.#dryRunNotRequested = Object.freeze({ request: false, global: deps.config.dry_run });
  }

  get intervalSeconds(): number {
    return Math.max(1, Math.round(this.#deps.config.evaluation_interval_ms / 1000));
  }

  /** Starts the loop: a cycle now, then one per interval after the previous finished (never overlapping). */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    // Another daemon may have led meanwhile: trust only storage from here on.
    this.#slots.clear();
    this.#loaded = undefined;
    this.#plan = undefined;
    this.#repeats = [];
    this.#unknownStates = true;
    const tick = async (): Promise<void> => {
      if (this.#stopped) return;
      const started = Date.now();
      try {
        await this.runCycle();
      } catch (err) {
        this.#deps.logger.error({ err }, 'evaluation cycle failed');
      }
      if (this.#stopped) return;
      const wait = Math.max(0, this.#deps.config.evaluation_interval_ms - (Date.now() - started));
      this.#timer = setTimeout(() => void tick(), wait);
    };
    void tick();
  }

  /** Stops the loop and waits (bounded) for a running cycle to finish. */
  async stop(timeoutMs = 15_000): Promise<void> {
    this.#stopped = true;
    // Only the loop that evaluates them knows whether they still fail (a follower does not).
    this.#failing.clear();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#running !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.#running.catch(() => undefined),
        new Promise((r) => {
          timer = setTimeout(r, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
  }

  #lock(policyId: string): Mutex {
    let m = this.#locks.get(policyId);
    if (m === undefined) {
      m = new Mutex();
      this.#locks.set(policyId, m);
    }
    return m;
  }

  /** Runs one cycle; a second call while one runs joins it instead of overlapping. */
  runCycle(): Promise<CycleReport> {
    this.#running ??= this.#cycle().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** Enabled policies, reading again only those whose version changed since the last cycle. */
  async #loadPolicies(): Promise<Slot[]> {
    const { storage } = this.#deps;
    // Read before the listing: a change made between the two is listed again next cycle.
    const revision = await storage.policiesRevision();
    if (revision === this.#loaded?.revision) return this.#loaded.held;
    const versions = await storage.listEnabledPolicyVersions();
    const load = ++this.#loads;
    const held: Slot[] = [];
    const stale: string[] = [];
    for (const v of versions) {
      const slot = this.#slots.get(v.id);
      if (slot !== undefined && slot.policy.updated_at === v.updated_at) {
        slot.seen = load;
        held.push(slot);
      } else stale.push(v.id);
    }
    if (stale.length > 0) {
      for (const p of await storage.getPolicies(stale)) {
        const slot = this.#slots.get(p.id);
        if (slot !== undefined) {
          slot.policy = p;
          slot.seen = load;
          held.push(slot);
        } else {
          const fresh = new Slot(p, this.#lock(p.id), load);
          this.#slots.set(p.id, fresh);
          held.push(fresh);
        }
      }
    }
    if (held.length !== this.#slots.size) {
      for (const [id, slot] of this.#slots) {
        if (slot.seen !== load) {
          this.#slots.delete(id);
          this.#locks.delete(id);
        }
      }
    }
    // Storage lists neither disabled nor paused policies; a version read as one is not held either.
    const enabled = held.filter((s) => s.policy.enabled && s.policy.paused_at === null);
    this.#loaded = { revision, held: enabled };
    this.#unknownStates = true;
    return enabled;
  }

  async #cycle(): Promise<CycleReport> {
    const t0 = performance.now();
    const now = this.#now();
    const held = await this.#loadPolicies();
    const tLoaded = performance.now();
    // States are read in one batch for policies new to the loop (or whose write failed); a policy
    // with no stored state yet reads it during its own evaluation.
    if (this.#unknownStates) {
      this.#unknownStates = false;
      const unknown = held.filter((s) => s.known === undefined);
      const stored = unknown.length > 0 ? await this.#deps.storage.getStates(unknown.map((s) => s.policy.id)) : new Map<string, PolicyState>();
      for (const slot of unknown) {
        const st = stored.get(slot.policy.id);
        if (st !== undefined) slot.known = new KnownState(st, fingerprint(st), 0, false);
      }
    }
    const defaultSource = this.#deps.config.default_metric_source;
    if (this.#plan === undefined || !this.#plan.fits(held, defaultSource)) {
      this.#plan = new CyclePlan(held, defaultSource, (p) => this.executorFor(p).executor, this.#plan);
    }
    const plan = this.#plan;
    const intervalSeconds = this.intervalSeconds;
    const cycle = ++this.#cycles;

    // Fetches start at once; each policy is evaluated as soon as the last of its own observations
    // is in (a count per policy, not a Promise.all per policy), overlapping the slowest queries.
    const fetching = new Semaphore(this.#deps.config.max_concurrency);
    const pending = plan.fetches.map((f, k) => fetching.run(() => this.#fetch(plan.keys[k] as string, f, now)));
    // Executors that answer for many targets are asked once, while the fetches run.
    await this.#replicasOfMany(plan);
    const observations = new Map<string, Observation>();
    // Outcomes repeated this cycle are made (on demand) from this cycle's instant and observations.
    this.#repeats = [this.#repeats[this.#repeats.length - 1], { cycle, now, observations }].filter((r) => r !== undefined);
    let repeated = 0;
    let fetchErrors = 0;
    let fetchedAt = 0;
    const writes: PolicyState[] = [];
    const outcomes: Record<string, number> = {};
    let errors = 0;
    const count = (outcome: EvaluationOutcome): void => {
      const k = outcome.action === 'none' ? outcome.reason_code : outcome.action;
      outcomes[k] = (outcomes[k] ?? 0) + 1;
    };
    let conflicts = 0;
    const failed = (policy: Policy, err: unknown): void => {
      errors++;
      // A stale view (another daemon wrote the state, or leadership was lost) is one line a cycle, below.
      if (err instanceof ScalerError && err.code === 'STATE_CONFLICT') conflicts++;
      else this.#deps.logger.error({ policy_id: policy.id, policy: policy.name, err }, 'policy evaluation failed');
    };
    /**
     * Most policies in most cycles are a steady state decided without waiting for anything: done
     * synchronously, with no promise, lock or concurrency slot. True when it was.
     */
    const steadyNow = (slot: Slot): boolean => {
      try {
        const outcome = this.#steadyNow(slot, plan, now, observations);
        if (outcome === undefined) return false;
        count(outcome);
      } catch (err) {
        failed(slot.policy, err);
      }
      return true;
    };
    const evaluateOne = async (slot: Slot): Promise<void> => {
      const policy = slot.policy;
      try {
        count(await slot.lock.run(() => this.#evaluate(policy, now, observations, { trigger: 'loop', deferWrite: writes, slot })));
      } catch (err) {
        failed(policy, err);
      }
    };
    const running: Array<Promise<void>> = [];
    // Ready policies that do not repeat are evaluated in slices of about a millisecond with a turn
    // of the event loop between them, so responses to the fetches still in flight are read
    // promptly instead of waiting behind thousands of evaluations (whose promise chains would
    // otherwise run back to back). Each policy is queued at most once a cycle: the queue is an
    // array of slot indices.
    const slots = plan.slots;
    const queue = new Int32Array(slots.length);
    let queued = 0;
    let next = 0;
    let draining = false;
    let drained: Promise<void> = Promise.resolve();
    const drain = async (): Promise<void> => {
      try {
        while (next < queued) {
          const until = performance.now() + EVALUATION_SLICE_MS;
          // Start evaluations without waiting for them: a slow executor call in one must not hold back the others.
          while (next < queued) {
            const slot = slots[queue[next++] as number] as Slot;
            if (!steadyNow(slot)) running.push(evaluateOne(slot));
            if ((next & 15) === 0 && performance.now() > until) break;
          }
          if (next < queued) await new Promise<void>((resolve) => setImmediate(resolve));
        }
      } finally {
        draining = false;
      }
    };
    // Started once per batch of newly ready policies, not per policy: a drain that empties the
    // queue returns, and starting one per policy cost an async call (and its promise) each.
    const kick = (): void => {
      if (!draining && next < queued) {
        draining = true;
        drained = drain();
      }
    };
    // A policy whose observations are all in either repeats its quiet outcome (a few array reads,
    // done at once) or is queued for evaluation. While a manual evaluation holds a policy's lock,
    // nothing is repeated: every policy is checked on its own.
    const ready = (index: number): void => {
      if (this.#manual === 0 && plan.repeats(index, cycle)) repeated++;
      else queue[queued++] = index;
    };
    const missing = plan.missing;
    missing.set(plan.needs);
    for (let i = 0; i < slots.length; i++) if (missing[i] === 0) ready(i);
    kick();
    await Promise.all(
      pending.map(async (promise, k) => {
        const obs = await promise;
        observations.set(plan.keys[k] as string, obs);
        if (obs.error !== undefined) fetchErrors++;
        plan.observe(k, obs, now, intervalSeconds);
        const waiting = plan.waiting[k] as number[];
        for (let i = 0; i < waiting.length; i++) {
          const index = waiting[i] as number;
          const left = (missing[index] as number) - 1;
          missing[index] = left;
          if (left === 0) ready(index);
        }
        kick();
      }),
    );
    fetchedAt = performance.now();
    await drained;
    await Promise.all(running);
    if (repeated > 0) {
      outcomes[QUIET_REASON] = (outcomes[QUIET_REASON] ?? 0) + repeated;
      this.#deps.onRepeated?.(repeated);
    }
    const tEvaluated = performance.now();
    if (writes.length > 0) {
      try {
        const fence = this.#deps.fence?.();
        const refused = fence === false ? writes.map((w) => w.policy_id) : await this.#deps.storage.putStates(writes, fence === undefined ? {} : { fence });
        // Not written (the version moved, or leadership was lost): forget those states, so the
        // next cycle reads them again instead of deciding from a stale view.
        for (const id of refused) {
          const slot = this.#slots.get(id);
          if (slot !== undefined) {
            slot.known = undefined;
            plan.setQuiet(slot, false, undefined, null);
          }
        }
        if (refused.length > 0) {
          this.#unknownStates = true;
          conflicts += refused.length;
        }
      } catch (err) {
        // Not written: forget what we think is stored, so the next cycle reads and writes again.
        for (const w of writes) {
          const slot = this.#slots.get(w.policy_id);
          if (slot !== undefined) {
            slot.known = undefined;
            plan.setQuiet(slot, false, undefined, null);
          }
        }
        this.#unknownStates = true;
        this.#deps.logger.error({ err, states: writes.length }, 'could not store policy states; will retry next cycle');
      }
    }
    const report: CycleReport = {
      started_at: now.toISOString(),
      duration_ms: Math.round(performance.now() - t0),
      policies: held.length,
      fetches: plan.fetches.length,
      fetch_errors: fetchErrors,
      outcomes,
      repeated,
      errors,
      states_written: writes.length,
      phases_ms: {
        load: Math.round(tLoaded - t0),
        fetch: Math.round((fetchedAt || tEvaluated) - tLoaded),
        evaluate_until: Math.round(tEvaluated - tLoaded),
        write: Math.round(performance.now() - tEvaluated),
      },
    };
    if (conflicts > 0) {
      this.#deps.logger.warn(
        { policies: conflicts },
        `${conflicts} policies were not evaluated or their state not stored: another daemon changed their state, they were paused, or this daemon lost leadership; nothing was executed from the stale view`,
      );
    }
    this.lastCycle = report;
    this.#deps.logger.debug(report, 'evaluation cycle done');
    this.#deps.onCycle?.(report);
    return report;
  }

  /**
   * Asks the executors that answer for many targets in one call for the replicas of all their
   * policies, and puts each answer on its slot (`answered`; undefined when its executor does not
   * answer in one call, or its call failed: logged, and those policies ask one by one this cycle).
   */
  async #replicasOfMany(plan: CyclePlan): Promise<void> {
    const answered = plan.answered;
    answered.fill(NO_ANSWER);
    await Promise.all(
      [...plan.byExecutor].map(async ([executor, { indices, targets }]) => {
        try {
          const answers = await executor.getCurrentReplicasMany(targets);
          for (let i = 0; i < indices.length; i++) {
            const n = answers[i] ?? -1;
            // Counts beyond what the array holds (absurd for replicas) are asked for one by one.
            answered[indices[i] as number] = n <= MAX_ANSWER ? n : NO_ANSWER;
          }
        } catch (err) {
          this.#deps.logger.warn({ executor: executor.name, targets: indices.length, err: (err as Error).message }, 'executor could not report the replicas of its targets in one call; asking per policy this cycle');
        }
      }),
    );
  }

  /**
   * Fetches everything the given policies need (one request per distinct source, query,
   * aggregation and window), and waits for all of it: a manual evaluation's fetch; the loop's
   * requests come from its CyclePlan.
   */
  async #fetchAll(policies: readonly Policy[], now: Date): Promise<{ observations: Map<string, Observation>; fetches: number; errors: number }> {
    const distinct = new Map<string, Fetch>();
    const defaultSource = this.#deps.config.default_metric_source;
    for (const p of policies) {
      for (const rule of queriedBy(p)) {
        const key = observationKey(rule, defaultSource);
        if (!distinct.has(key)) distinct.set(key, { source: rule.source ?? defaultSource, rule });
      }
    }
    const fetching = new Semaphore(this.#deps.config.max_concurrency);
    const pending = [...distinct].map(([key, f]) => [key, fetching.run(() => this.#fetch(key, f, now))] as const);
    const observations = new Map<string, Observation>();
    let errors = 0;
    for (const [key, p] of pending) {
      const obs = await p;
      if (obs.error !== undefined) errors++;
      observations.set(key, obs);
    }
    return { observations, fetches: distinct.size, errors };
  }

  async #fetch(key: string, f: Fetch, now: Date): Promise<Observation> {
    const source = this.#deps.sources.get(f.source);
    if (source === undefined) {
      return { samples: [], error: { kind: 'unknown_source', message: `metric source "${f.source}" is not loaded` } };
    }
    const win = ruleWindow(f.rule, now, this.intervalSeconds);
    try {
      let samples: Sample[];
      if (win.seconds > 0 && source.supportsRange) {
        // Judged at the window's instants: end at `now`, every win.step (see ruleWindow).
        samples = await source.rangeQuery({
          query: f.rule.metric,
          aggregation: f.rule.aggregation,
          start: new Date(win.startMs),
          end: new Date(win.endMs),
          stepSeconds: win.stepMs / 1000,
        });
      } else {
        const s = await source.instantQuery({ query: f.rule.metric, aggregation: f.rule.aggregation, time: new Date(win.endMs) });
        if (win.seconds > 0) {
          // No range queries: keep our own observations, one per cycle, and judge the window's
          // instants from them as Prometheus would (the latest at or before each instant, within
          // the lookback). After a restart the buffer is empty, so a window is not covered until
          // it has been observed again: decisions are delayed, never hastened.
          const buf = this.#buffers.get(key) ?? { t: [], v: [], length: 0 };
          if (buf.length === 0 || (buf.t[buf.length - 1] as number) < win.endMs) {
            buf.t.push(win.endMs);
            buf.v.push(s.v);
          }
          let drop = 0;
          // Keep what the next windows may still read: the latest sample before the window's start too.
          while (drop + 1 < buf.t.length && (buf.t[drop + 1] as number) <= win.startMs) drop++;
          if (drop > 0) {
            buf.t.splice(0, drop);
            buf.v.splice(0, drop);
          }
          buf.length = buf.t.length;
          this.#buffers.set(key, buf);
          samples = valuesAtInstants(buf, win);
        } else samples = [s];
      }
      this.#markSource(f.source, null);
      return { samples, verdicts: verdictMemo() };
    } catch (err) {
      const e = err as PluginCallError;
      this.#markSource(f.source, { kind: e.kind ?? 'error', message: e.message });
      if (win.seconds > 0) this.#buffers.delete(key);
      return { samples: [], error: { kind: e.kind ?? 'error', message: e.message } };
    }
  }

  /**
   * Tracks whether a source answers. Only source-level failures (unreachable, timeout, an HTTP
   * error) mark it down; an answer that was empty, NaN or a bad query still proves it answers, so
   * one bad query does not make Prometheus "down". Decided by the error's kind, never by its
   * message: messages quote the query, and a metric may well be called `..._timeout_total`.
   */
  #markSource(name: string, error: { kind: string; message: string } | null): void {
    const prev = this.sourceHealth.get(name);
    const down = error !== null && SOURCE_DOWN_KINDS.has(error.kind);
    // A cycle marks a source once per request (200 times in a few milliseconds): an answering
    // source that answered less than a second ago keeps its entry.
    const at = Date.now();
    if (!down && prev?.ok === true && at - this.#sourceMarked < 1000 && this.#sourceMarkedName === name) return;
    this.#sourceMarked = at;
    this.#sourceMarkedName = name;
    const checkedAt = new Date(at).toISOString();
    if (!down) {
      // A first successful contact is not "answering again": log only a recovery.
      if (prev !== undefined && !prev.ok) this.#deps.logger.info({ source: name }, `metric source ${name} is answering again`);
      this.sourceHealth.set(name, { ok: true, checked_at: checkedAt, error: null });
      return;
    }
    if (prev === undefined || prev.ok) {
      this.#deps.logger.warn(
        { source: name, kind: error.kind },
        `metric source ${name} is unreachable: ${error.message}; its rules do not hold and decisions record metric_error until it answers`,
      );
    }
    this.sourceHealth.set(name, { ok: false, checked_at: checkedAt, error: error.message });
  }

  /** The executor that serves a policy: its own `executor`, else the config's mapping, else one declaring the type. */
  executorFor(policy: Policy): { name: string; executor: IsolatedExecutor | undefined } {
    const name =
      policy.executor ??
      this.#deps.config.executors[policy.target_type] ??
      [...this.#deps.executors.entries()].find(([, e]) => e.targetTypes.includes(policy.target_type))?.[0] ??
      'none';
    return { name, executor: this.#deps.executors.get(name) };
  }

  priceFor(policy: Policy): number | null {
    return policy.cost_per_replica_hour ?? this.#deps.config.prices[policy.target_type] ?? null;
  }

  /** Policies whose metric queries keep failing, oldest first (named in /readyz). */
  get failingPolicies(): FailingPolicy[] {
    // A policy deleted or disabled while failing is no longer held by the loop: not failing.
    for (const id of this.#failing.keys()) if (!this.#slots.has(id)) this.#failing.delete(id);
    return [...this.#failing.values()].sort((a, b) => a.since.localeCompare(b.since));
  }

  /** Reports an outcome, and watches the loop's for policies that start or stop failing. */
  #decided(outcome: EvaluationOutcome, trigger: 'loop' | 'api'): void {
    this.#deps.onDecision?.(outcome, trigger);
    if (trigger !== 'loop') return;
    const a = outcome.assessment;
    const id = outcome.policy_id;
    const known = this.#failing.get(id);
    if (a.anyError) {
      if (a.failures < FAILING_AFTER) return;
      const record = outcome.record();
      const error = record.rules.find((r) => r.error !== null)?.error ?? 'a metric query failed';
      if (known !== undefined) {
        known.failures = a.failures;
        known.error = error;
        return;
      }
      const since = record.evaluated_at;
      const name = outcome.input.policy.name;
      this.#failing.set(id, { policy_id: id, policy: name, failures: a.failures, since, error });
      this.#deps.logger.warn(
        { policy_id: id, policy: name, failures: a.failures, error },
        `policy ${name}: its metric queries have failed ${a.failures} evaluations in a row (${error}); its rules do not hold until they answer`,
      );
    } else if (known !== undefined) {
      this.#failing.delete(id);
      this.#deps.logger.info(
        { policy_id: id, policy: known.policy, failures: known.failures },
        `policy ${known.policy}: its metric queries answer again, after ${known.failures} failed evaluations`,
      );
    }
  }

  /**
   * Evaluates one policy now, outside the loop (POST .../evaluate). Dry-run by default; with
   * dryRun false it executes and records like the loop, marked triggered_by "api".
   */
  async evaluateNow(policy: Policy, opts: { dryRun: boolean }): Promise<DecisionRecord> {
    if (!opts.dryRun && policy.paused_at !== null) {
      // A dry run still previews what the policy would do; nothing that may execute runs while paused.
      throw new ScalerError(
        'POLICY_PAUSED',
        `policy ${policy.name} is paused since ${policy.paused_at}${policy.paused_reason !== null ? ` (${policy.paused_reason})` : ''}, so nothing is executed for it; POST /policies/${policy.name}/enable lifts the pause`,
      );
    }
    const now = this.#now();
    const { observations } = await this.#fetchAll([policy], now);
    this.#manual++;
    try {
      const outcome = await this.#lock(policy.id).run(() => this.#evaluate(policy, now, observations, { trigger: 'api', requestDryRun: opts.dryRun }));
      return outcome.record();
    } finally {
      this.#manual--;
    }
  }

  /**
   * The loop's evaluation of a policy when it can be done synchronously and is a steady state
   * (the same checks and outcome as #evaluate would reach): its executor answered in the cycle's
   * batch, its state is known and carries no interrupted change, nothing else holds its lock, the
   * rules engine has seen this verdict vector, and the outcome is the stored one with nothing to
   * record. Being synchronous, nothing can interleave, so it needs no lock. Undefined (and
   * nothing changed) when any of that does not hold; #evaluate then does the whole evaluation.
   */
  #steadyNow(slot: Slot, plan: CyclePlan, now: Date, observations: ReadonlyMap<string, Observation>): EvaluationOutcome | undefined {
    const known = slot.known;
    const policy = slot.policy;
    const executorReplicas = plan.answerOf(slot);
    if (known === undefined || executorReplicas === undefined || slot.lock.locked || known.pending) return undefined;
    const input = this.#input(policy, now, observations, executorReplicas, known.memory, false);
    const a = assess(input);
    // Not steady: #evaluate takes it (and stops it from being repeated).
    if (a instanceof Promise || !isSteady(a, known)) return undefined;
    const outcome = new EvaluationOutcome(input, a);
    plan.setQuiet(slot, isQuiet(a, policy), known, executorReplicas);
    known.steady(policy, now, observations, executorReplicas);
    this.#decided(outcome, 'loop');
    return outcome;
  }

  async #evaluate(
    policy: Policy,
    now: Date,
    observations: ReadonlyMap<string, Observation>,
    opts: { trigger: 'loop' | 'api'; requestDryRun?: boolean; deferWrite?: PolicyState[]; slot?: Slot },
  ): Promise<EvaluationOutcome> {
    const { storage, logger } = this.#deps;
    // A child logger per evaluation is costly at 10,000 policies a cycle: made only when a line is written.
    let child: Logger | undefined;
    const log = (): Logger => (child ??= logger.child({ policy_id: policy.id, policy: policy.name }));
    const target = targetOf(policy);
    const { name: executorName, executor } = this.executorFor(policy);
    let executorReplicas: number | null = null;
    // The loop's cycle asked executors that answer for many targets once (a manual evaluation asks now).
    const answered = opts.trigger === 'loop' && opts.slot !== undefined ? this.#plan?.answerOf(opts.slot) : undefined;
    if (answered !== undefined) executorReplicas = answered;
    else if (executor !== undefined) {
      try {
        executorReplicas = await this.#executing.run(() => executor.getCurrentReplicas(target));
      } catch (err) {
        log().warn({ executor: executorName, err: (err as Error).message }, 'executor could not report current replicas; using stored state');
      }
    }
    // The loop holds its slot; a manual evaluation of a policy the loop holds shares it. Whatever
    // this evaluation finds, the slot's last outcome is not repeated until the loop next finds it quiet.
    const slot = opts.slot ?? this.#slots.get(policy.id);
    if (slot !== undefined) this.#plan?.setQuiet(slot, false, undefined, null);
    const known = slot?.known;
    const state = known !== undefined ? known.state : await storage.getState(policy.id);
    const memory = known !== undefined ? known.memory : memoryFromState(state);
    // Leadership: the loop of a daemon that no longer leads makes no change and writes no state.
    // A manual evaluation (the API, any daemon) is fenced by the state version alone.
    const fence = opts.trigger === 'loop' ? this.#deps.fence?.() : undefined;
    if (fence === false) throw new ScalerError('STATE_CONFLICT', 'this daemon no longer leads the evaluation loop; the policy was not evaluated');
    // Every state write below is a compare-and-set on the version read here.
    let version = state?.version ?? 0;
    const interrupted = state?.data['pending'] as PendingChange | undefined;
    // Only the loop recovers an interrupted change: a manual evaluation on another daemon may see
    // a change the leader is applying right now.
    if (interrupted !== undefined && interrupted !== null && opts.trigger === 'loop' && (interrupted.id === undefined || !(await storage.historyRowExists(interrupted.id)))) {
      // The daemon stopped while an executor was applying this change: record it, outcome unknown.
      // Its cooldown already counts (the intent was stored first), so nothing is applied twice.
      // A change whose own row was written before the stop is not recorded again.
      await storage.appendHistory({
        id: randomUUID(),
        policy_id: policy.id,
        policy_name: policy.name,
        action: interrupted.action,
        target_type: policy.target_type,
        target_id: policy.target_id,
        previous_replicas: interrupted.previous,
        new_replicas: interrupted.desired,
        reason: interrupted.reason,
        reason_code: interrupted.reason_code,
        triggered_by: interrupted.triggered_by,
        dry_run: false,
        status: 'failed',
        error: 'outcome unknown: the daemon stopped while the executor was applying this change; the cooldown it started is honoured',
        executed_at: interrupted.at,
        details: null,
      });
      log().warn({ action: interrupted.action, at: interrupted.at }, 'a change was interrupted by a stop; recorded with outcome unknown');
    }
    const input = this.#input(policy, now, observations, executorReplicas, memory, opts.requestDryRun === true);
    const assessed = assess(input);
    const a = assessed instanceof Promise ? await assessed : assessed;
    const outcome = new EvaluationOutcome(input, a);
    const next = a.memory;

    // A manual preview (request dry-run) changes nothing: no history, no state.
    if (opts.requestDryRun === true) {
      this.#decided(outcome, opts.trigger);
      return outcome;
    }

    // The loop's steady state (no change, nothing to record, the same memory and outcome as
    // stored): nothing to write and no record to build; the state route makes it when asked.
    if (opts.deferWrite !== undefined && known !== undefined && isSteady(a, known)) {
      known.steady(policy, now, observations, executorReplicas);
      this.#decided(outcome, opts.trigger);
      return outcome;
    }

    const row = (status: HistoryRow['status'], newReplicas: number, error: string | null, id: string = randomUUID()): HistoryRow => {
      const record = outcome.record();
      return {
      id,
      policy_id: policy.id,
      policy_name: policy.name,
      action: record.action === 'none' ? (record.directions.chosen ?? 'none') : record.action,
      target_type: policy.target_type,
      target_id: policy.target_id,
      previous_replicas: record.current_replicas,
      new_replicas: newReplicas,
      reason: record.reason,
      reason_code: record.reason_code,
      triggered_by: opts.trigger === 'api' ? 'api' : (record.triggered_by ?? 'rule'),
      dry_run: record.dry_run,
      status,
      error,
      executed_at: now.toISOString(),
      details: record as unknown as Record<string, unknown>,
      };
    };

    /**
     * Saves the state: at once when it matters now (a change is being made, or a manual
     * evaluation), else in the cycle's batch, and only when something worth keeping changed.
     */
    const saveState = async (m: EngineMemory, kind: string | null, opts2: { now: boolean; claim?: boolean; row?: HistoryRow | null; extra?: Record<string, unknown> }): Promise<void> => {
      const record = outcome.record();
      const st: PolicyState = {
        policy_id: policy.id,
        current_replicas: m.current_replicas,
        last_change_at: m.last_change_at,
        last_change_kind: kind,
        consecutive_failures: m.consecutive_failures,
        last_blocked: m.last_blocked,
        data: {
          [STATE_KEYS.memory]: {
            one_shots: m.one_shots,
            ...(m.proposals !== undefined ? { proposals: m.proposals } : {}),
            ...(m.changes !== undefined ? { changes: m.changes } : {}),
          },
          [STATE_KEYS.lastDecision]: record,
          ...(lastDryRun !== null ? { [STATE_KEYS.lastDryRun]: lastDryRun } : {}),
          ...opts2.extra,
        },
        updated_at: now.toISOString(),
        version,
      };
      const fp = fingerprint(st);
      const row = opts2.row ?? null;
      if (opts2.now || row !== null || opts.deferWrite === undefined) {
        // Written at once, grouped with other evaluations' writes into one transaction. A claim is
        // refused for a paused policy too, in the same statement: a pause stored after this policy
        // was listed or read stops the change. A history row is appended with its state.
        const writes = this.#writes;
        const written = opts2.claim === true ? writes.claim(st, fence) : row !== null ? writes.record({ row, state: st }, fence) : writes.put(st, fence);
        if (!(await written)) {
          // Another daemon wrote this state since it was read, this one lost its lock session, or
          // the policy was paused: forget the state (the next cycle reads it again) and make no
          // change from this stale view.
          if (slot !== undefined) slot.known = undefined;
          this.#unknownStates = true;
          throw new ScalerError('STATE_CONFLICT', `the state of policy ${policy.name} changed during the evaluation (another daemon evaluated it, this one lost leadership, or the policy was paused); nothing was executed`);
        }
        version++;
      } else if (slot?.known?.fingerprint !== fp) {
        opts.deferWrite.push(st);
        // The batch's write moves the version by one; a refused write forgets the known state.
        version++;
      }
      if (slot !== undefined) slot.known = new KnownState({ ...st, version }, fp, now.getTime(), true);
    };

    let final = next;
    let kind = state?.last_change_kind ?? null;
    const shouldScale = a.action !== 'none';
    // The dry-run change last recorded, so that a shadow policy whose rule keeps holding records
    // its would-be change once, and again only when the change, its reason or its outcome changes
    // (as blocked rows are recorded once while their reason persists).
    const storedDryRun = (state?.data[STATE_KEYS.lastDryRun] as string | undefined) ?? null;
    let lastDryRun: string | null = null;
    /** The history row this evaluation records (with its state, in one transaction). */
    let historyRow: HistoryRow | null = null;
    if (shouldScale) {
      const record = outcome.record();
      const triggeredBy = opts.trigger === 'api' ? 'api' : (record.triggered_by ?? 'rule');
      const real = !record.dry_run;
      const changeId = randomUUID();
      if (real) {
        // Record the intent first: if the process dies while the executor works, the restarted
        // daemon still honours the cooldown of a change that may have happened (never a double scale).
        const pending: PendingChange = {
          id: changeId,
          action: record.action,
          previous: record.current_replicas,
          desired: record.desired_replicas,
          at: now.toISOString(),
          reason: record.reason,
          reason_code: record.reason_code,
          triggered_by: triggeredBy,
        };
        await saveState(applyExecution(next, record, now, { succeeded: true }), record.action, { now: true, claim: true, extra: { pending } });
      }
      let status: HistoryRow['status'] = 'succeeded';
      let error: string | null = null;
      if (executor === undefined) {
        status = 'failed';
        error = `executor "${executorName}" is not loaded`;
      } else {
        try {
          await this.#executing.run(() => executor.scale(target, record.desired_replicas, { dryRun: record.dry_run, reason: record.reason, decisionId: changeId, previousReplicas: record.current_replicas }));
        } catch (err) {
          status = 'failed';
          error = (err as Error).message;
        }
      }
      const line = `${record.dry_run ? 'dry run: ' : ''}${record.action} ${record.current_replicas} -> ${record.desired_replicas} (${record.reason_code}) ${status}`;
      lastDryRun = record.dry_run ? `${line}${error !== null ? `: ${error}` : ''}` : null;
      const repeatedDryRun = lastDryRun !== null && lastDryRun === storedDryRun;
      if (!repeatedDryRun) historyRow = row(status, record.desired_replicas, error, changeId);
      final = applyExecution(next, record, now, { succeeded: status === 'succeeded' });
      if (real && status === 'succeeded') kind = record.action;
      const fields = { executor: executorName, action: record.action, from: record.current_replicas, to: record.desired_replicas, evaluated_at: record.evaluated_at };
      if (repeatedDryRun) log().info(fields, `${line} (as last cycle: recorded once)`);
      else if (status === 'failed') log().warn({ ...fields, error }, line);
      else log().info(fields, line);
    } else if (a.recordBlocked) {
      const record = outcome.record();
      historyRow = row('blocked', record.wanted_replicas, null);
      log().info({ reason_code: record.reason_code }, `blocked: ${record.reason}`);
    }
    // A real change is stored at once, with its history row; so is any other row. A dry run
    // without a row changes nothing that cannot wait for the cycle's batch.
    await saveState(final, kind, { now: shouldScale && lastDryRun === null, row: historyRow });
    this.#decided(outcome, opts.trigger);
    return outcome;
  }

  /**
   * The freshest state this manager knows for a policy (it may be newer than storage's), with the
   * latest decision record: after a steady-state evaluation it is made now, by deciding again on
   * the inputs that evaluation had (decide() is pure, so it is the same record). Undefined when
   * the manager holds nothing newer than the stored state: read that from storage.
   */
  async knownState(policyId: string): Promise<PolicyState | undefined> {
    const slot = this.#slots.get(policyId);
    const known = slot?.known;
    if (slot === undefined || known === undefined) return undefined;
    const repeat = this.#repeatOf(slot);
    const latest = repeat !== undefined ? { policy: slot.policy, now: repeat.now, observations: repeat.observations, executorReplicas: slot.quietReplicas } : known.latest;
    if (latest === undefined) {
      // Its own record, or none kept: then the stored state is the latest (read it from storage).
      return known.record === undefined ? undefined : { ...known.state, data: { ...known.state.data, [STATE_KEYS.lastDecision]: known.record } };
    }
    const input = this.#input(latest.policy, latest.now, latest.observations, latest.executorReplicas, known.memory, false);
    const a = await assess(input);
    return { ...known.state, data: { ...known.state.data, [STATE_KEYS.lastDecision]: explain(input, a) } };
  }

  /** The cycle whose context the slot's latest outcome repeated, when it was a repeat. */
  #repeatOf(slot: Slot): RepeatContext | undefined {
    const plan = this.#plan;
    if (plan === undefined || !plan.has(slot)) return undefined;
    const cycle = plan.repeatedIn[slot.index] as number;
    return cycle === 0 ? undefined : this.#repeats.find((r) => r.cycle === cycle);
  }

  #input(policy: Policy, now: Date, observations: ReadonlyMap<string, Observation>, executorReplicas: number | null, memory: EngineMemory, requestDryRun: boolean): DecisionInput {
    return {
      policy,
      now,
      intervalSeconds: this.intervalSeconds,
      defaultCooldown: this.#deps.config.default_cooldown,
      defaultSource: this.#deps.config.default_metric_source,
      price: this.priceFor(policy),
      executorReplicas,
      memory,
      observations,
      dryRun: requestDryRun ? this.#dryRunRequested : this.#dryRunNotRequested,
    };
  }

  /** When this manager last evaluated a policy (the stored last decision may be older: same outcome). */
  lastEvaluatedAt(policyId: string): string | null {
    const slot = this.#slots.get(policyId);
    const repeat = slot === undefined ? undefined : this.#repeatOf(slot);
    const at = repeat?.now.getTime() ?? slot?.known?.evaluatedAt;
    return at === undefined || at === 0 ? null : new Date(at).toISOString();
  }

  static lastDecision(state: PolicyState | undefined): DecisionRecord | null {
    return (state?.data[STATE_KEYS.lastDecision] as DecisionRecord | undefined) ?? null;
  }
}
