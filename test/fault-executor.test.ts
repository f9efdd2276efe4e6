/**
 * Executor faults, with plugins a third party would write: a temp plugin folder holding a metric
 * source (`constant`), an executor whose scale() throws (`thrower`) and one whose scale() never
 * settles (`hanger`), loaded through PluginManager beside the bundled ones; the ScalingManager runs
 * real cycles against SQLite.
 *
 * Each failed change: a `failed` history row with the error, no cooldown started (state
 * last_change_at stays null), retried on the next cycle (another failed row); other policies in
 * the same cycles scale and record `succeeded`; a cycle finishes within a bound despite the hang,
 * and the hung call's abort signal fires.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { ScalingManager } from '../src/engine/manager.js';
import { PluginManager } from '../src/plugins/plugin-manager.js';
import { PolicyService } from '../src/policy/policy-service.js';
import { createValidationContext, namesFromPlugins } from '../src/policy/validation-context.js';
import { loadedPlugins, tempSqliteStorage } from './helpers/fixtures.js';

const PLUGIN_TIMEOUT_MS = 1_000;
const CYCLES = 3;
const EXECUTORS = { 'cdc-worker': 'keda', trino: 'keda', risingwave: 'keda', nodes: 'logger' };

/** Writes one plugin package (package.json with its manifest, index.js) into `root`. */
function writePlugin(root: string, name: string, kind: 'metric-source' | 'executor', code: string, configSchema?: Record<string, unknown>): void {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: `philotes-test-${name}`, version: '1.0.0', type: 'module', main: 'index.js', 'philotes-scaler': { kind, name, apiVersion: '^1.0.0', ...(configSchema !== undefined ? { configSchema } : {}) } }),
  );
  writeFileSync(join(dir, 'index.js'), code);
}

t.test('an executor that throws and one that hangs: failed rows, no cooldown, retried; the others scale', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'philotes-fault-exec-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const pluginDir = join(root, 'plugins');
  mkdirSync(pluginDir);
  const aborts = join(root, 'aborted.log');

  writePlugin(
    pluginDir,
    'constant',
    'metric-source',
    `export default function create() {
  return { async instantQuery(q) { return { t: q.time.getTime() / 1000, v: 100 }; } };
}
`,
  );
  writePlugin(
    pluginDir,
    'thrower',
    'executor',
    `export default function create() {
  return {
    targetTypes: ['cdc-worker'],
    async getCurrentReplicas() { return null; },
    async scale() { throw new Error('the cluster refused: quota exceeded'); },
  };
}
`,
  );
  writePlugin(
    pluginDir,
    'hanger',
    'executor',
    `import { appendFileSync } from 'node:fs';
export default function create(ctx) {
  return {
    targetTypes: ['cdc-worker'],
    async getCurrentReplicas() { return null; },
    // Never settles; it only notes that the daemon gave up on it.
    scale(target, replicas, opts) {
      opts.signal.addEventListener('abort', () => appendFileSync(ctx.config.aborts, target.policyName + '\\n'));
      return new Promise(() => {});
    },
  };
}
`,
    { type: 'object', required: ['aborts'], properties: { aborts: { type: 'string' } } },
  );

  const logger = pino({ level: 'silent' });
  const plugins = await loadedPlugins(
    t,
    { dirs: [PluginManager.bundledDir(), pluginDir], configs: { prometheus: { url: 'http://127.0.0.1:9' }, hanger: { aborts } }, logger, timeoutMs: PLUGIN_TIMEOUT_MS },
    'the bundled and third-party plugins load',
  );
  t.ok(plugins.executors.has('thrower') && plugins.executors.has('hanger') && plugins.sources.has('constant'), 'the test plugins are there');

  const storage = await tempSqliteStorage(t, 'philotes-fault-exec-store');
  const service = new PolicyService({
    storage,
    validation: createValidationContext({ executors: EXECUTORS, prices: {}, default_metric_source: 'constant' }, namesFromPlugins(plugins)),
    defaultCooldown: 300,
  });
  const rule = { metric: 'load', operator: 'gt', threshold: 10, scale_by: 1 };
  const ids: Record<string, string> = {};
  // The failing ones have a long cooldown: a retry on the next cycle shows no cooldown started.
  for (const [name, executor, cooldown] of [
    ['throws', 'thrower', 300],
    ['hangs', 'hanger', 300],
    ['fine-a', 'keda', 0],
    ['fine-b', 'keda', 0],
  ] as const) {
    const p = await service.create({ name, target_type: 'cdc-worker', executor, min_replicas: 1, max_replicas: 50, cooldown_seconds: cooldown, scale_up_rules: [rule] });
    ids[name] = p.id;
  }

  const manager = new ScalingManager({
    storage,
    logger,
    sources: plugins.sources,
    executors: plugins.executors,
    config: {
      evaluation_interval_ms: 1_000,
      default_cooldown: 300,
      default_metric_source: 'constant',
      dry_run: false,
      max_concurrency: 8,
      executors: EXECUTORS,
      prices: {},
    },
  });
  const history = async (name: string) => (await storage.listHistory({ limit: 100, policy_id: ids[name] ?? '' })).rows;

  const durations: number[] = [];
  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    await t.test(`cycle ${cycle}`, async (t) => {
      const started = Date.now();
      const report = await manager.runCycle();
      const ms = Date.now() - started;
      durations.push(ms);
      t.equal(report.errors, 0, 'no evaluation failed outright');
      t.ok(ms < PLUGIN_TIMEOUT_MS + 2_000, `the cycle finished within its bound despite the hang (${ms} ms, plugin timeout ${PLUGIN_TIMEOUT_MS} ms)`);

      for (const [name, pattern] of [
        ['throws', /the cluster refused: quota exceeded/],
        ['hangs', /no answer within 1000 ms/],
      ] as const) {
        const rows = await history(name);
        t.equal(rows.length, cycle, `${name}: one history row per cycle (retried every cycle)`);
        t.match(rows[0], { action: 'scale_up', status: 'failed', previous_replicas: 1, new_replicas: 2, dry_run: false, triggered_by: 'rule', error: pattern }, `${name}: the newest row is failed, with the error`);
        t.ok(rows.every((r) => r.status === 'failed'), `${name}: every row is failed`);
        const stored = await storage.getState(ids[name] ?? '');
        t.equal(stored?.last_change_at ?? null, null, `${name}: no cooldown started (stored last_change_at is null)`);
        t.equal(stored?.current_replicas, 1, `${name}: the replica count stays 1, not the failed change's 2`);
        t.equal((await manager.knownState(ids[name] ?? ''))?.last_change_at ?? null, null, `${name}: nor in the manager's memory`);
      }
      for (const name of ['fine-a', 'fine-b']) {
        const rows = await history(name);
        t.equal(rows.length, cycle, `${name}: one row per cycle`);
        t.match(rows[0], { action: 'scale_up', status: 'succeeded', previous_replicas: cycle, new_replicas: cycle + 1, error: null }, `${name}: scaled ${cycle} -> ${cycle + 1}, succeeded`);
        const replicas = await plugins.executors.get('keda')?.getCurrentReplicas({ policyId: ids[name] ?? '', policyName: name, targetType: 'cdc-worker', targetId: null, targetRef: null });
        t.equal(replicas, cycle + 1, `${name}: the executor runs ${cycle + 1} replicas`);
      }
    });
  }
  const aborted = existsSync(aborts) ? readFileSync(aborts, 'utf8').trim().split('\n') : [];
  t.same(aborted, Array(CYCLES).fill('hangs'), 'every hung scale() got its abort signal');
  t.comment(`${CYCLES} cycles, 4 policies each: ${CYCLES * 2} failed changes (throw, hang) and ${CYCLES * 2} succeeded; cycle times ${durations.join(', ')} ms (plugin timeout ${PLUGIN_TIMEOUT_MS} ms)`);
});
