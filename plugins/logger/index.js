// @ts-check
/**
 * Logging executor: writes each scaling action to the log and changes nothing. It cannot tell
 * current replicas, so the daemon uses the count it persisted.
 *
 * @typedef {import('philotes-scaler/plugin').Executor} Executor
 * @typedef {import('philotes-scaler/plugin').PluginContext<{ target_types: string[] }>} Context
 */

/** @param {Context} ctx @returns {Executor} */
export default function createLoggerExecutor(ctx) {
  return {
    targetTypes: ctx.config.target_types,
    async getCurrentReplicas() {
      return null;
    },
    async scale(target, replicas, opts) {
      ctx.logger.info(
        { targetType: target.targetType, targetId: target.targetId, policy: target.policyName, replicas, dryRun: opts.dryRun },
        `${opts.dryRun ? 'dry run: would scale' : 'scale'} ${target.targetType} ${target.targetId ?? target.policyName} to ${replicas}: ${opts.reason}`,
      );
    },
  };
}
