import { explain, type Assessment, type DecisionInput } from './decide.js';
import type { DecisionRecord } from './decision.js';

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

/** What one cycle of the loop did, and where its time went. */
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
