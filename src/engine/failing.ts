import type { Logger } from 'pino';
import type { EvaluationOutcome } from './outcome.js';

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

/** The loop's policies whose metric queries keep failing: each logged once when found, and once when it answers again. */
export class FailingPolicies {
  readonly #failing = new Map<string, FailingPolicy>();

  constructor(private readonly logger: Logger) {}

  /** Watches a loop evaluation's outcome for a policy that starts or stops failing. */
  watch(outcome: EvaluationOutcome): void {
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
      this.logger.warn(
        { policy_id: id, policy: name, failures: a.failures, error },
        `policy ${name}: its metric queries have failed ${a.failures} evaluations in a row (${error}); its rules do not hold until they answer`,
      );
    } else if (known !== undefined) {
      this.#failing.delete(id);
      this.logger.info(
        { policy_id: id, policy: known.policy, failures: known.failures },
        `policy ${known.policy}: its metric queries answer again, after ${known.failures} failed evaluations`,
      );
    }
  }

  /** The failing policies the loop still holds, oldest first; the others are forgotten. */
  list(held: (policyId: string) => boolean): FailingPolicy[] {
    // A policy deleted or disabled while failing is no longer held by the loop: not failing.
    for (const id of this.#failing.keys()) if (!held(id)) this.#failing.delete(id);
    return [...this.#failing.values()].sort((a, b) => a.since.localeCompare(b.since));
  }

  /** Forgets them all (the loop stopped: only the loop that evaluates them knows whether they still fail). */
  clear(): void {
    this.#failing.clear();
  }
}
