import type { IsolatedExecutor } from '../plugins/plugin-manager.js';
import type { Policy } from '../policy/policy-model.js';
import type { PolicyState } from '../storage/storage.js';
import { ScalerError } from '../errors.js';
import { Semaphore } from '../util/async.js';
import { assess, explain, type DecisionInput } from './decide.js';
import type { DecisionRecord, EngineMemory, Observation } from './decision.js';
import { CyclePlan, type RepeatContext, type Slot } from './cycle-plan.js';
import { evaluate, steadyNow, type EvaluationContext } from './evaluate.js';
import { FailingPolicies, type FailingPolicy } from './failing.js';
import { HeldPolicies } from './held-policies.js';
import type { ManagerDeps } from './manager-deps.js';
import { KnownState, QUIET_REASON, STATE_KEYS, fingerprintOf } from './known-state.js';
import { MetricFetcher, type SourceHealth } from './metric-fetch.js';
import type { CycleReport, EvaluationOutcome } from './outcome.js';
import { ReadyQueue } from './ready-queue.js';
import { MAX_GROUP, StateBatch, StateWrites } from './state-writes.js';

export { EvaluationOutcome, type CycleReport } from './outcome.js';
export { FAILING_AFTER, type FailingPolicy } from './failing.js';
export { memoryFromState } from './known-state.js';
export type { SourceHealth } from './metric-fetch.js';
export type { ManagerDeps } from './manager-deps.js';


/**
 * The evaluation loop: every interval it loads enabled policies,
 * fetches each distinct (source, query, window) once, evaluates policies with bounded
 * concurrency, executes, and records. Cycles never overlap; a per-policy lock keeps a manual
 * evaluation and the loop off the same policy at once.
 */
export class ScalingManager {
  readonly #deps: ManagerDeps;
  readonly #now: () => Date;
  readonly #fetcher: MetricFetcher;
  /** What an evaluation needs of this manager (see evaluate.ts). */
  readonly #context: EvaluationContext;
  /** The enabled policies the loop holds between cycles (cleared when the loop (re)starts). */
  readonly #held: HeldPolicies;
  /** Policies whose metric queries have failed FAILING_AFTER loop evaluations in a row. */
  readonly #failing: FailingPolicies;
  /** Whether some held policy may have no known state (set by a listing or a failed state write). */
  #unknownStates = true;
  /** Cycles run so far (a repeated outcome names the cycle it was repeated in). */
  #cycles = 0;
  /** The contexts of the last two cycles, for the records of outcomes repeated in them. */
  #repeats: RepeatContext[] = [];
  /** Manual evaluations running: while any does, the loop repeats no outcome without checking the policy's lock. */
  #manual = 0;
  /** The plan of the last cycle, reused while the held policies do not change. */
  #plan: CyclePlan | undefined;
  readonly #dryRunRequested: DecisionInput['dryRun'];
  readonly #dryRunNotRequested: DecisionInput['dryRun'];
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<CycleReport> | undefined;
  #stopped = true;
  lastCycle: CycleReport | undefined;

  constructor(deps: ManagerDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? (() => new Date());
    this.#dryRunRequested = Object.freeze({ request: true, global: deps.config.dry_run });
    this.#dryRunNotRequested = Object.freeze({ request: false, global: deps.config.dry_run });
    this.#failing = new FailingPolicies(deps.logger);
    this.#held = new HeldPolicies(deps.storage);
    this.#fetcher = new MetricFetcher({
      sources: deps.sources,
      logger: deps.logger,
      defaultSource: deps.config.default_metric_source,
      concurrency: deps.config.max_concurrency,
      intervalSeconds: this.intervalSeconds,
    });
    this.#context = {
      deps,
      writes: new StateWrites(deps.storage),
      executing: new Semaphore(deps.config.max_concurrency),
      executorFor: (p) => this.executorFor(p),
      plan: () => this.#plan,
      slotOf: (id) => this.#held.slots.get(id),
      statesUnknown: () => {
        this.#unknownStates = true;
      },
      decided: (outcome, trigger) => this.#decided(outcome, trigger),
      input: (policy, now, observations, executorReplicas, memory, requestDryRun) => this.#input(policy, now, observations, executorReplicas, memory, requestDryRun),
    };
  }

  /** Health of each metric source as the loop last saw it (served by /readyz). */
  get sourceHealth(): ReadonlyMap<string, SourceHealth> {
    return this.#fetcher.sourceHealth;
  }

  get intervalSeconds(): number {
    return Math.max(1, Math.round(this.#deps.config.evaluation_interval_ms / 1000));
  }

  /** Starts the loop: a cycle now, then one per interval after the previous finished (never overlapping). */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    // Another daemon may have led meanwhile: trust only storage from here on.
    this.#held.clear();
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


  /** Runs one cycle; a second call while one runs joins it instead of overlapping. */
  runCycle(): Promise<CycleReport> {
    this.#running ??= this.#cycle().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #cycle(): Promise<CycleReport> {
    const t0 = performance.now();
    const now = this.#now();
    const { held, changed } = await this.#held.load();
    if (changed) this.#unknownStates = true;
    const tLoaded = performance.now();
    // States are read in one batch for policies new to the loop (or whose write failed); a policy
    // with no stored state yet reads it during its own evaluation.
    if (this.#unknownStates) {
      this.#unknownStates = false;
      const unknown = held.filter((s) => s.known === undefined);
      const stored = unknown.length > 0 ? await this.#deps.storage.getStates(unknown.map((s) => s.policy.id)) : new Map<string, PolicyState>();
      for (const slot of unknown) {
        const st = stored.get(slot.policy.id);
        if (st !== undefined) slot.known = new KnownState(st, fingerprintOf(st), 0, false);
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
    const pending = plan.fetches.map((f, k) => fetching.run(() => this.#fetcher.fetch(plan.keys[k] as string, f, now)));
    // Executors that answer for many targets are asked once, while the fetches run.
    await plan.askReplicas(this.#deps.logger);
    const observations = new Map<string, Observation>();
    // Outcomes repeated this cycle are made (on demand) from this cycle's instant and observations.
    this.#repeats = [this.#repeats[this.#repeats.length - 1], { cycle, now, observations }].filter((r) => r !== undefined);
    let repeated = 0;
    let fetchErrors = 0;
    let fetchedAt = 0;
    const outcomes: Record<string, number> = {};
    let errors = 0;
    let conflicts = 0;
    const forget = (policyId: string): void => {
      const slot = this.#held.slots.get(policyId);
      if (slot !== undefined) {
        slot.known = undefined;
        plan.setQuiet(slot, false, undefined, null);
      }
    };
    // States with nothing urgent in them, written in chunks as they come. Not written (the
    // version moved, or leadership was lost): forget those states, so the next cycle reads them
    // again instead of deciding from a stale view.
    const batch = new StateBatch(this.#deps.storage, {
      fence: () => this.#deps.fence?.(),
      refused: (ids) => {
        for (const id of ids) forget(id);
        this.#unknownStates = true;
        conflicts += ids.length;
      },
      failed: (states, err) => {
        for (const s of states) forget(s.policy_id);
        this.#unknownStates = true;
        this.#deps.logger.error({ err, states: states.length }, 'could not store policy states; will retry next cycle');
      },
    });
    const count = (outcome: EvaluationOutcome): void => {
      const k = outcome.action === 'none' ? outcome.reason_code : outcome.action;
      outcomes[k] = (outcomes[k] ?? 0) + 1;
    };
    const failed = (policy: Policy, err: unknown): void => {
      errors++;
      // A stale view (another daemon wrote the state, or leadership was lost) is one line a cycle, below.
      if (err instanceof ScalerError && err.code === 'STATE_CONFLICT') conflicts++;
      else this.#deps.logger.error({ policy_id: policy.id, policy: policy.name, err }, 'policy evaluation failed');
    };
    // Evaluations in flight are bounded, not to max_concurrency (their writes are grouped: many
    // must wait together for one transaction) but so that a cycle evaluating every policy anew
    // does not hold every policy's record and state at once.
    const inFlight = new Semaphore(MAX_GROUP);
    const evaluateOne = async (slot: Slot): Promise<void> => {
      const policy = slot.policy;
      try {
        count(await inFlight.run(() => slot.lock.run(() => evaluate(this.#context, policy, now, observations, { trigger: 'loop', deferWrite: batch, slot }))));
      } catch (err) {
        failed(policy, err);
      }
    };
    const running: Array<Promise<void>> = [];
    const slots = plan.slots;
    // Most policies in most cycles are a steady state decided without waiting for anything: done
    // synchronously, with no promise or lock. The others are evaluated without waiting for them:
    // a slow executor call in one must not hold back the rest.
    const queue = new ReadyQueue(slots.length, (index) => {
      const slot = slots[index] as Slot;
      try {
        const outcome = steadyNow(this.#context, slot, plan, now, observations);
        if (outcome !== undefined) {
          count(outcome);
          return;
        }
      } catch (err) {
        failed(slot.policy, err);
        return;
      }
      running.push(evaluateOne(slot));
    });
    // A policy whose observations are all in either repeats its quiet outcome (a few array reads,
    // done at once) or is queued for evaluation. While a manual evaluation holds a policy's lock,
    // nothing is repeated: every policy is checked on its own.
    const ready = (index: number): void => {
      if (this.#manual === 0 && plan.repeats(index, cycle)) repeated++;
      else queue.push(index);
    };
    const missing = plan.missing;
    missing.set(plan.needs);
    for (let i = 0; i < slots.length; i++) if (missing[i] === 0) ready(i);
    queue.kick();
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
        queue.kick();
      }),
    );
    fetchedAt = performance.now();
    await queue.drained();
    await Promise.all(running);
    if (repeated > 0) {
      outcomes[QUIET_REASON] = (outcomes[QUIET_REASON] ?? 0) + repeated;
      this.#deps.onRepeated?.(repeated);
    }
    const tEvaluated = performance.now();
    await batch.done();
    const report: CycleReport = {
      started_at: now.toISOString(),
      duration_ms: Math.round(performance.now() - t0),
      policies: held.length,
      fetches: plan.fetches.length,
      fetch_errors: fetchErrors,
      outcomes,
      repeated,
      errors,
      states_written: batch.count,
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
    return this.#failing.list((id) => this.#held.slots.has(id));
  }

  /** Reports an outcome, and watches the loop's for policies that start or stop failing. */
  #decided(outcome: EvaluationOutcome, trigger: 'loop' | 'api'): void {
    this.#deps.onDecision?.(outcome, trigger);
    if (trigger === 'loop') this.#failing.watch(outcome);
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
    const { observations } = await this.#fetcher.fetchAll([policy], now);
    this.#manual++;
    try {
      const outcome = await this.#held.lock(policy.id).run(() => evaluate(this.#context, policy, now, observations, { trigger: 'api', requestDryRun: opts.dryRun }));
      return outcome.record();
    } finally {
      this.#manual--;
    }
  }

  /**
   * The freshest state this manager knows for a policy (it may be newer than storage's), with the
   * latest decision record: after a steady-state evaluation it is made now, by deciding again on
   * the inputs that evaluation had (decide() is pure, so it is the same record). Undefined when
   * the manager holds nothing newer than the stored state: read that from storage.
   */
  async knownState(policyId: string): Promise<PolicyState | undefined> {
    const slot = this.#held.slots.get(policyId);
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
    const slot = this.#held.slots.get(policyId);
    const repeat = slot === undefined ? undefined : this.#repeatOf(slot);
    const at = repeat?.now.getTime() ?? slot?.known?.evaluatedAt;
    return at === undefined || at === 0 ? null : new Date(at).toISOString();
  }

  static lastDecision(state: PolicyState | undefined): DecisionRecord | null {
    return (state?.data[STATE_KEYS.lastDecision] as DecisionRecord | undefined) ?? null;
  }
}
