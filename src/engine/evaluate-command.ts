import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { ResolvedConfig } from '../config/config.js';
import { formatProblem, parsePolicyFile } from '../files/policy-file.js';
import { loadPlugins } from '../commands.js';
import { PolicyService } from '../policy/policy-service.js';
import { createValidationContext, namesFromPlugins } from '../policy/validation-context.js';
import { createSqliteStorage } from '../storage/sqlite-storage.js';
import type { DecisionRecord } from './decision.js';
import { ScalingManager } from './manager.js';

export type EvaluateFileResult = { ok: true; records: DecisionRecord[] } | { ok: false; problems: string[] };

/**
 * `philotes-scaler evaluate <policy file>`: evaluates the file's policies once against the
 * configured metric sources, as a dry run, and returns the decision records. It touches no
 * store: state lives in an in-memory database that is thrown away. `at` is the instant evaluated
 * (schedules, windows and queries are judged there); the present when it is not given.
 */
export async function evaluatePolicyFile(file: string, config: ResolvedConfig, logger: Logger, at?: Date): Promise<EvaluateFileResult> {
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
    const manager = new ScalingManager({ storage, logger, sources: plugins.sources, executors: plugins.executors, config, ...(at !== undefined ? { now: () => at } : {}) });
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
