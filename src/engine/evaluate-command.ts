import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { ResolvedConfig } from '../config/config.js';
import { formatProblem, parsePolicyFile } from '../files/policy-file.js';
import { loadPlugins } from '../plugins/load-plugins.js';
import { PolicyService } from '../policy/policy-service.js';
import { createValidationContext, namesFromPlugins } from '../policy/validation-context.js';
import { createSqliteStorage } from '../storage/sqlite-storage.js';
import type { DecisionRecord } from './decision.js';
import { ScalingManager } from './manager.js';
import { OPERATOR_SYMBOL } from './rule-window.js';
import { IsolatedExecutor } from '../plugins/plugin-manager.js';

/**
 * The executors as they are, except that each answers `replicas` when asked for the current
 * count. Scaling still goes to the real executor (evaluate only ever asks for a dry run).
 */
function answeringWith(executors: ReadonlyMap<string, IsolatedExecutor>, replicas: number, timeoutMs: number): Map<string, IsolatedExecutor> {
  const out = new Map<string, IsolatedExecutor>();
  for (const [name, e] of executors) {
    out.set(
      name,
      new IsolatedExecutor(
        name,
        {
          targetTypes: e.targetTypes,
          getCurrentReplicas: () => Promise.resolve(replicas),
          scale: (target, count, o) => e.scale(target, count, o),
        },
        timeoutMs,
      ),
    );
  }
  return out;
}

const ACTION_WORDS: Record<DecisionRecord['action'], string> = {
  scale_up: 'scale up',
  scale_down: 'scale down',
  scheduled: 'scheduled change',
  fallback: 'fallback',
  none: 'no change',
};

const CURRENT_FROM: Record<DecisionRecord['current_replicas_from'], string> = {
  executor: 'as its executor answered',
  state: 'as last recorded (its executor did not know)',
  min_replicas: 'assumed min_replicas (its executor did not know; --current-replicas sets it)',
};

function shown(v: number | null): string {
  return v === null ? 'none' : String(v);
}

/**
 * A decision record for people: what was decided and why, each rule's verdict and value, the
 * schedule and the adjustments that applied. `--json` prints the record itself.
 */
export function formatDecisionSummary(r: DecisionRecord, opts: { currentReplicasGiven?: boolean } = {}): string {
  const from = opts.currentReplicasGiven === true ? 'given with --current-replicas' : CURRENT_FROM[r.current_replicas_from];
  const lines = [
    `${r.policy_name} at ${r.evaluated_at}`,
    `  decision      ${ACTION_WORDS[r.action]}: ${r.current_replicas} -> ${r.desired_replicas} replicas (${r.reason_code})`,
    `  current       ${r.current_replicas} replicas, ${from}`,
    `  reason        ${r.reason}`,
  ];
  for (const rule of r.rules) {
    const dir = rule.direction === 'scale_up' ? 'up  ' : 'down';
    const verdict = rule.error !== null ? `error: ${rule.error}` : rule.held ? 'held' : `not held${rule.detail !== null ? `: ${rule.detail}` : ''}`;
    lines.push(`  rule ${dir}     ${rule.metric} ${OPERATOR_SYMBOL[rule.operator]} ${rule.threshold} over ${rule.window_seconds}s: ${verdict}; value ${shown(rule.value)}, ${rule.samples} sample(s)`);
  }
  for (const e of r.target_tracking) {
    const what = e.kind === 'target_per_replica' ? `${e.target} per replica` : `target ${e.target}`;
    const verdict =
      e.outcome === 'opinion' ? `wants ${e.opinion} (${e.formula})` : e.outcome === 'within_tolerance' ? `within tolerance ${e.tolerance} (ratio ${e.ratio?.toFixed(3)}): no opinion` : e.outcome === 'metric_error' ? `error: ${e.error}` : 'no finite value: no opinion';
    lines.push(`  tracking      ${e.metric}, ${what}: value ${shown(e.value)}; ${verdict}`);
  }
  if (r.proposal !== null && r.target_tracking.length > 0) lines.push(`  proposal      ${r.proposal} (the highest opinion, before stabilization and rate limits)`);
  if (r.schedule !== null) lines.push(`  schedule      ${r.schedule.cron_expression} (${r.schedule.timezone}, ${r.schedule.kind}, ${r.schedule.mode}): ${r.schedule.desired_replicas} replicas since ${r.schedule.fired_at}`);
  for (const a of r.adjustments) lines.push(`  adjusted      ${a.kind}: ${a.from} -> ${a.to} (${a.detail})`);
  lines.push('  dry run       nothing was executed; --json prints the whole decision record');
  return `${lines.join('\n')}\n`;
}

export interface EvaluateOptions {
  /**
   * The replicas the target runs, in place of what its executor answers (or, when the executor
   * does not know, the persisted count or min_replicas): "what would happen at 7 replicas?".
   */
  currentReplicas?: number;
}

export type EvaluateFileResult = { ok: true; records: DecisionRecord[] } | { ok: false; problems: string[] };

/**
 * `philotes-scaler evaluate <policy file>`: evaluates the file's policies once against the
 * configured metric sources, as a dry run, and returns the decision records. It touches no
 * store: state lives in an in-memory database that is thrown away. `at` is the instant evaluated
 * (schedules, windows and queries are judged there); the present when it is not given.
 */
export async function evaluatePolicyFile(file: string, config: ResolvedConfig, logger: Logger, at?: Date, opts: EvaluateOptions = {}): Promise<EvaluateFileResult> {
  const plugins = await loadPlugins(config, logger);
  const storage = createSqliteStorage(':memory:');
  try {
    await storage.migrate();
    const service = new PolicyService({
      storage,
      validation: createValidationContext(config, namesFromPlugins(plugins)),
      defaultCooldown: config.default_cooldown,
      ...(at !== undefined ? { now: () => at } : {}),
    });
    const parsed = await parsePolicyFile(resolve(file), (input, source) => service.parse(input, { source }), file);
    if (parsed.problems.length > 0) return { ok: false, problems: parsed.problems.map(formatProblem) };
    const executors = opts.currentReplicas === undefined ? plugins.executors : answeringWith(plugins.executors, opts.currentReplicas, config.plugin_timeout_ms);
    const manager = new ScalingManager({ storage, logger, sources: plugins.sources, executors, config, ...(at !== undefined ? { now: () => at } : {}) });
    const records: DecisionRecord[] = [];
    for (const p of parsed.policies) {
      const stored = await storage.createPolicy(p);
      records.push(await manager.evaluateNow(stored, { dryRun: true }));
    }
    return { ok: true, records };
  } finally {
    await storage.close();
    await plugins.close();
  }
}
