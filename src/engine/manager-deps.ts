import type { Logger } from 'pino';
import type { IsolatedExecutor, IsolatedMetricSource } from '../plugins/plugin-manager.js';
import type { Storage } from '../storage/storage.js';
import type { CycleReport, EvaluationOutcome } from './outcome.js';

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
