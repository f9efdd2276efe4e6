import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { IsolatedExecutor } from '../plugins/plugin-manager.js';
import type { Policy } from '../policy/policy-model.js';
import type { HistoryRow, PolicyState } from '../storage/storage.js';
import { ScalerError } from '../errors.js';
import type { Semaphore } from '../util/async.js';
import { assess, type DecisionInput } from './decide.js';
import type { EngineMemory, Observation } from './decision.js';
import { applyExecution } from './execution.js';
import { type CyclePlan, type Slot, targetOf } from './cycle-plan.js';
import { KnownState, STATE_KEYS, fingerprintOf, isQuiet, isSteady, memoryFromState, type PendingChange } from './known-state.js';
import type { ManagerDeps } from './manager-deps.js';
import { EvaluationOutcome } from './outcome.js';
import type { StateBatch, StateWrites } from './state-writes.js';

// One evaluation of one policy: the steady state decided at once, and the whole evaluation with
// its change (the intent stored first, the executor called, the history row and the state
// recorded together).

/** What an evaluation needs of the manager that runs it. */
export interface EvaluationContext {
  readonly deps: ManagerDeps;
  /** State and history writes made at once, grouped into few transactions. */
  readonly writes: StateWrites;
  /** Executor calls in flight: at most max_concurrency. */
  readonly executing: Semaphore;
  executorFor(policy: Policy): { name: string; executor: IsolatedExecutor | undefined };
  /** The plan of the loop's current cycle. */
  plan(): CyclePlan | undefined;
  /** The loop's slot of a policy it holds. */
  slotOf(policyId: string): Slot | undefined;
  /** Some state the loop held may be stale: the next cycle reads the states it does not know. */
  statesUnknown(): void;
  /** Reports an outcome (metrics, failing policies). */
  decided(outcome: EvaluationOutcome, trigger: 'loop' | 'api'): void;
  input(policy: Policy, now: Date, observations: ReadonlyMap<string, Observation>, executorReplicas: number | null, memory: EngineMemory, requestDryRun: boolean): DecisionInput;
}

/**
 * The loop's evaluation of a policy when it can be done synchronously and is a steady state
 * (the same checks and outcome as #evaluate would reach): its executor answered in the cycle's
 * batch, its state is known and carries no interrupted change, nothing else holds its lock, the
 * rules engine has seen this verdict vector, and the outcome is the stored one with nothing to
 * record. Being synchronous, nothing can interleave, so it needs no lock. Undefined (and
 * nothing changed) when any of that does not hold; #evaluate then does the whole evaluation.
 */
export function steadyNow(ctx: EvaluationContext, slot: Slot, plan: CyclePlan, now: Date, observations: ReadonlyMap<string, Observation>): EvaluationOutcome | undefined {
  const known = slot.known;
  const policy = slot.policy;
  const executorReplicas = plan.answerOf(slot);
  if (known === undefined || executorReplicas === undefined || slot.lock.locked || known.pending) return undefined;
  const input = ctx.input(policy, now, observations, executorReplicas, known.memory, false);
  const a = assess(input);
  // Not steady: #evaluate takes it (and stops it from being repeated).
  if (a instanceof Promise || !isSteady(a, known)) return undefined;
  const outcome = new EvaluationOutcome(input, a);
  plan.setQuiet(slot, isQuiet(a, policy), known, executorReplicas);
  known.steady(policy, now, observations, executorReplicas);
  ctx.decided(outcome, 'loop');
  return outcome;
}

export async function evaluate(
  ctx: EvaluationContext,
  policy: Policy,
  now: Date,
  observations: ReadonlyMap<string, Observation>,
  opts: { trigger: 'loop' | 'api'; requestDryRun?: boolean; deferWrite?: StateBatch; slot?: Slot },
): Promise<EvaluationOutcome> {
  const { storage, logger } = ctx.deps;
  // A child logger per evaluation is costly at 10,000 policies a cycle: made only when a line is written.
  let child: Logger | undefined;
  const log = (): Logger => (child ??= logger.child({ policy_id: policy.id, policy: policy.name }));
  const target = targetOf(policy);
  const { name: executorName, executor } = ctx.executorFor(policy);
  let executorReplicas: number | null = null;
  // The loop's cycle asked executors that answer for many targets once (a manual evaluation asks now).
  const answered = opts.trigger === 'loop' && opts.slot !== undefined ? ctx.plan()?.answerOf(opts.slot) : undefined;
  if (answered !== undefined) executorReplicas = answered;
  else if (executor !== undefined) {
    try {
      executorReplicas = await ctx.executing.run(() => executor.getCurrentReplicas(target));
    } catch (err) {
      log().warn({ executor: executorName, err: (err as Error).message }, 'executor could not report current replicas; using stored state');
    }
  }
  // The loop holds its slot; a manual evaluation of a policy the loop holds shares it. Whatever
  // this evaluation finds, the slot's last outcome is not repeated until the loop next finds it quiet.
  const slot = opts.slot ?? ctx.slotOf(policy.id);
  if (slot !== undefined) ctx.plan()?.setQuiet(slot, false, undefined, null);
  const known = slot?.known;
  const state = known !== undefined ? known.state : await storage.getState(policy.id);
  const memory = known !== undefined ? known.memory : memoryFromState(state);
  // Leadership: the loop of a daemon that no longer leads makes no change and writes no state.
  // A manual evaluation (the API, any daemon) is fenced by the state version alone.
  const fence = opts.trigger === 'loop' ? ctx.deps.fence?.() : undefined;
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
      // The change's own id: recorded once, even if the loop stops again before its state is stored.
      id: interrupted.id ?? randomUUID(),
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
  const input = ctx.input(policy, now, observations, executorReplicas, memory, opts.requestDryRun === true);
  const assessed = assess(input);
  const a = assessed instanceof Promise ? await assessed : assessed;
  const outcome = new EvaluationOutcome(input, a);
  const next = a.memory;

  // A manual preview (request dry-run) changes nothing: no history, no state.
  if (opts.requestDryRun === true) {
    ctx.decided(outcome, opts.trigger);
    return outcome;
  }

  // The loop's steady state (no change, nothing to record, the same memory and outcome as
  // stored): nothing to write and no record to build; the state route makes it when asked.
  if (opts.deferWrite !== undefined && known !== undefined && isSteady(a, known)) {
    known.steady(policy, now, observations, executorReplicas);
    ctx.decided(outcome, opts.trigger);
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
    const fp = fingerprintOf(st);
    const row = opts2.row ?? null;
    if (opts2.now || row !== null || opts.deferWrite === undefined) {
      // Written at once, grouped with other evaluations' writes into one transaction. A claim is
      // refused for a paused policy too, in the same statement: a pause stored after this policy
      // was listed or read stops the change. A history row is appended with its state.
      const writes = ctx.writes;
      const written = opts2.claim === true ? writes.claim(st, fence) : row !== null ? writes.record({ row, state: st }, fence) : writes.put(st, fence);
      if (!(await written)) {
        // Another daemon wrote this state since it was read, this one lost its lock session, or
        // the policy was paused: forget the state (the next cycle reads it again) and make no
        // change from this stale view.
        if (slot !== undefined) slot.known = undefined;
        ctx.statesUnknown();
        throw new ScalerError('STATE_CONFLICT', `the state of policy ${policy.name} changed during the evaluation (another daemon evaluated it, this one lost leadership, or the policy was paused); nothing was executed`);
      }
      version++;
      // Stored with its record: the state route reads it from storage.
      if (slot !== undefined) slot.known = new KnownState({ ...st, version }, fp, now.getTime(), false);
      return;
    }
    const batch = opts.deferWrite;
    if (slot?.known?.fingerprint === fp) {
      // Nothing worth writing: storage keeps an older record of the same outcome, so this one is kept.
      if (slot !== undefined) slot.known = new KnownState({ ...st, version }, fp, now.getTime(), true);
      return;
    }
    // The batch's write moves the version by one; a refused write forgets the known state. The
    // record is kept until the state is stored (the state route reads the latest from here).
    version++;
    if (slot === undefined) batch.add(st);
    else {
      const known = new KnownState({ ...st, version }, fp, now.getTime(), true);
      slot.known = known;
      batch.add(st, () => {
        known.record = undefined;
      });
    }
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
        await ctx.executing.run(() => executor.scale(target, record.desired_replicas, { dryRun: record.dry_run, reason: record.reason, decisionId: changeId, previousReplicas: record.current_replicas }));
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
  ctx.decided(outcome, opts.trigger);
  return outcome;
}
