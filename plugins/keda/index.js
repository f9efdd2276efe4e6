// @ts-check
/**
 * KEDA executor, as the seed scopes it: a stub that logs each scaling action and remembers the
 * replica count per target. It does not talk to Kubernetes. After a restart it answers "unknown"
 * until it is scaled again, and the daemon falls back to the replica count it persisted.
 *
 * @typedef {import('philotes-scaler/plugin').Executor} Executor
 * @typedef {import('philotes-scaler/plugin').ScaleTarget} ScaleTarget
 * @typedef {import('philotes-scaler/plugin').PluginContext<{ target_types: string[], namespace: string }>} Context
 */

/** @param {ScaleTarget} t */
const key = (t) => `${t.targetType}/${t.targetId ?? t.policyName}`;

/** @param {Context} ctx @returns {Executor} */
export default function createKedaExecutor(ctx) {
  /** @type {Map<string, number>} */
  const replicas = new Map();
  return {
    targetTypes: ctx.config.target_types,
    async getCurrentReplicas(target) {
      return replicas.get(key(target)) ?? null;
    },
    // One call for every target the loop holds (a real cluster would list its ScaledObjects once).
    async getCurrentReplicasMany(targets) {
      return new Map(targets.map((t) => [t.policyId, replicas.get(key(t)) ?? null]));
    },
    async scale(target, count, opts) {
      const scaledObject = `${ctx.config.namespace}/${target.targetType}-${target.targetId ?? target.policyName}`;
      if (opts.dryRun) {
        ctx.logger.info({ scaledObject, replicas: count, dryRun: true }, `dry run: would set ${scaledObject} to ${count} replicas: ${opts.reason}`);
        return;
      }
      replicas.set(key(target), count);
      ctx.logger.info({ scaledObject, replicas: count }, `set ${scaledObject} to ${count} replicas: ${opts.reason}`);
    },
  };
}
