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

/** @type {WeakMap<ScaleTarget, string>} */
const keys = new WeakMap();

/**
 * The stub's name for a target. The daemon passes the same target objects cycle after cycle while
 * a policy does not change, so the name is made once per object.
 * @param {ScaleTarget} t
 */
function key(t) {
  let k = keys.get(t);
  if (k === undefined) {
    k = `${t.targetType}/${t.targetId ?? t.policyName}`;
    keys.set(t, k);
  }
  return k;
}

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
      /** @type {Map<string, number | null>} */
      const answers = new Map();
      for (const t of targets) answers.set(t.policyId, replicas.get(key(t)) ?? null);
      return answers;
    },
    async scale(target, count, opts) {
      const scaledObject = `${ctx.config.namespace}/${target.targetType}-${target.targetId ?? target.policyName}`;
      // A stub: say so in every line, so no one reads the log as a cluster change.
      if (opts.dryRun) {
        ctx.logger.info(
          { scaledObject, replicas: count, dryRun: true, stub: true },
          `keda stub, dry run: would record ${count} replicas for ${scaledObject}; nothing outside this process changes (${opts.reason})`,
        );
        return;
      }
      replicas.set(key(target), count);
      ctx.logger.info(
        { scaledObject, replicas: count, stub: true },
        `keda stub: recorded ${count} replicas for ${scaledObject}; nothing outside this process changed, no Kubernetes API was called (${opts.reason})`,
      );
    },
  };
}
