import type { Logger } from 'pino';
import type { ScaleTarget } from '../plugins/api.js';
import type { IsolatedExecutor } from '../plugins/plugin-manager.js';
import type { Policy, Rule } from '../policy/policy-model.js';
import type { Mutex } from '../util/async.js';
import type { Observation } from './decision.js';
import type { KnownState } from './known-state.js';
import { isMetricError, observationKey, queriedBy, ruleWindow, sharedVerdict, type Queried } from './rule-window.js';

// The loop's view of the enabled policies between cycles (a Slot each) and what a cycle does for
// a given set of them (the CyclePlan): the distinct requests, who waits for each, the executors'
// batch calls, and the flat arrays the quiet-repeat path reads.

/** One distinct request of a cycle. */
export interface Fetch {
  source: string;
  /** A rule or a target-tracking entry: what is queried, and over which window. */
  rule: Queried;
}

/** What an executor is told about the target of a policy. */
export function targetOf(policy: Policy): ScaleTarget {
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
export class Slot {
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
export const NO_ANSWER = -2;
/** The largest count CyclePlan.answered holds. */
export const MAX_ANSWER = 0x7fffffff;

/** The instant and observations of a cycle whose repeated outcomes may still be asked for. */
export interface RepeatContext {
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
export class CyclePlan {
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

  /**
   * Asks the executors that answer for many targets in one call for the replicas of all their
   * policies, and puts each answer in `answered` (NO_ANSWER undefined when its executor does not
   * answer in one call, or its call failed: logged, and those policies ask one by one this cycle).
   */
  async askReplicas(logger: Logger): Promise<void> {
    const answered = this.answered;
    answered.fill(NO_ANSWER);
    await Promise.all(
      [...this.byExecutor].map(async ([executor, { indices, targets }]) => {
        try {
          const answers = await executor.getCurrentReplicasMany(targets);
          for (let i = 0; i < indices.length; i++) {
            const n = answers[i] ?? -1;
            // Counts beyond what the array holds (absurd for replicas) are asked for one by one.
            answered[indices[i] as number] = n <= MAX_ANSWER ? n : NO_ANSWER;
          }
        } catch (err) {
          logger.warn({ executor: executor.name, targets: indices.length, err: (err as Error).message }, 'executor could not report the replicas of its targets in one call; asking per policy this cycle');
        }
      }),
    );
  }
}
