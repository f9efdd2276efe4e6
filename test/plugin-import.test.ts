import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino, type Logger } from 'pino';
import t, { type Test } from 'tap';
import { ScalingManager } from '../src/engine/manager.js';
import { MetricSourceError } from '../src/plugins/api.js';
import { PluginCallError, PluginManager } from '../src/plugins/plugin-manager.js';
import type { Policy } from '../src/policy/policy-model.js';
import type { Storage } from '../src/storage/storage.js';

const silent = pino({ level: 'silent' });

/** A folder in the system's temp folder, outside this package's tree, removed when the test ends. */
function tempRoot(t: Test, prefix: string): string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  return root;
}

/** Writes a plugin folder as a third party ships it: package.json with the manifest, and index.js. */
function writePlugin(root: string, folder: string, manifest: unknown, code: string): string {
  const dir = join(root, folder);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: folder, version: '1.0.0', type: 'module', main: 'index.js', 'philotes-scaler': manifest }));
  writeFileSync(join(dir, 'index.js'), code);
  return dir;
}

/** A metric source that folds the numbers its query lists, and throws MetricSourceError for none. */
const HELPERS_SOURCE = `
import { MetricSourceError, fold } from 'philotes-scaler/plugin';

export { MetricSourceError as ErrorClass };

export default function create() {
  return {
    async instantQuery({ query, aggregation, time }) {
      const values = query.split(',').filter((s) => s !== '').map(Number);
      if (values.length === 0) throw new MetricSourceError('empty', 'no series');
      return { t: time.getTime() / 1000, v: fold(values, aggregation) };
    },
  };
}
`;

function logCapture(): { logger: Logger; lines: Array<{ level: number; msg: string; [key: string]: unknown }> } {
  const lines: Array<{ level: number; msg: string; [key: string]: unknown }> = [];
  const logger = pino({ level: 'info' }, { write: (chunk: string) => void lines.push(JSON.parse(chunk) as { level: number; msg: string }) });
  return { logger, lines };
}

t.test('a plugin outside the package imports the runtime helpers of philotes-scaler/plugin', async (t) => {
  const root = tempRoot(t, 'ps-plugin-import-');
  const dir = writePlugin(root, 'folding', { kind: 'metric-source', apiVersion: '^1.0.0' }, HELPERS_SOURCE);
  // A second one with its own installed copy of the package (as `npm install philotes-scaler`
  // for the types leaves it): it still gets the daemon's modules, not that copy.
  const own = writePlugin(root, 'with-own-copy', { kind: 'metric-source', apiVersion: '^1.0.0' }, HELPERS_SOURCE);
  const copy = join(own, 'node_modules', 'philotes-scaler');
  mkdirSync(copy, { recursive: true });
  writeFileSync(join(copy, 'package.json'), JSON.stringify({ name: 'philotes-scaler', type: 'module', exports: { './plugin': './plugin.js' } }));
  writeFileSync(join(copy, 'plugin.js'), 'export class MetricSourceError extends Error {}\nexport const fold = () => 42;\n');

  const pm = new PluginManager({ dirs: [root], configs: {}, logger: silent, timeoutMs: 5000 });
  t.teardown(() => pm.close());
  const statuses = await pm.loadAll();
  t.same(statuses.map((s) => [s.name, s.status, s.error]), [['folding', 'loaded', null], ['with-own-copy', 'loaded', null]]);

  for (const [name, folder] of [['folding', dir], ['with-own-copy', own]] as const) {
    const src = pm.sources.get(name);
    const now = new Date('2026-01-28T12:00:00Z');
    const at = now.getTime() / 1000;
    t.same(await src?.instantQuery({ query: '1,5,3', aggregation: 'max', time: now }), { t: at, v: 5 }, `${name}: max by fold`);
    t.same(await src?.instantQuery({ query: '1,5,3', aggregation: 'min', time: now }), { t: at, v: 1 }, `${name}: min by fold`);
    t.same(await src?.instantQuery({ query: '1,5,3', aggregation: 'sum', time: now }), { t: at, v: 9 }, `${name}: sum by fold`);
    t.same(await src?.instantQuery({ query: '1,5,3', aggregation: 'avg', time: now }), { t: at, v: 3 }, `${name}: avg by fold`);

    const err = await src?.instantQuery({ query: '', aggregation: 'max', time: now }).then(() => null, (e: unknown) => e);
    t.ok(err instanceof PluginCallError, `${name}: the daemon reports the failed call`);
    t.equal((err as PluginCallError).kind, 'empty', `${name}: with the kind the plugin gave`);
    t.ok((err as PluginCallError).cause instanceof MetricSourceError, `${name}: what the plugin threw is the daemon's MetricSourceError`);

    // The module cache answers this import with the instance the daemon loaded.
    const mod = (await import(pathToFileURL(join(folder, 'index.js')).href)) as { ErrorClass: unknown };
    t.equal(mod.ErrorClass, MetricSourceError, `${name}: one module instance for plugin and daemon`);
  }
});

t.test('two executors declaring one target type: a warning at load says which serves it', async (t) => {
  const root = tempRoot(t, 'ps-plugin-shared-type-');
  const executor = (types: string[]): string =>
    `export default () => ({ targetTypes: ${JSON.stringify(types)}, async getCurrentReplicas() { return null; }, async scale() {} });`;
  writePlugin(root, 'alpha', { kind: 'executor', apiVersion: '^1.0.0' }, executor(['shared', 'alpha-only', 'twice']));
  writePlugin(root, 'beta', { kind: 'executor', apiVersion: '^1.0.0' }, executor(['shared', 'beta-only']));
  writePlugin(root, 'gamma', { kind: 'executor', apiVersion: '^1.0.0' }, executor(['twice', 'twice']));

  const load = async (executorMapping?: Record<string, string>) => {
    const { logger, lines } = logCapture();
    const pm = new PluginManager({ dirs: [root], configs: {}, logger, timeoutMs: 5000, ...(executorMapping !== undefined ? { executorMapping } : {}) });
    t.teardown(() => pm.close());
    await pm.loadAll();
    const warnings = lines.filter((l) => l.level === 40);
    // What the loop does with a policy of that type that names no executor.
    const manager = new ScalingManager({
      storage: {} as Storage,
      logger: silent,
      sources: pm.sources,
      executors: pm.executors,
      config: { evaluation_interval_ms: 1000, default_cooldown: 0, default_metric_source: 'x', dry_run: false, max_concurrency: 1, executors: executorMapping ?? {}, prices: {} },
    });
    const servedBy = (type: string): string => manager.executorFor({ executor: null, target_type: type } as Policy).name;
    return { warnings, servedBy };
  };

  await t.test('no mapping for the type: the executor loaded first serves it', async (t) => {
    const { warnings, servedBy } = await load({});
    t.same(warnings.map((w) => [w['targetType'], w['executors'], w['serves']]), [['shared', ['alpha', 'beta'], 'alpha'], ['twice', ['alpha', 'gamma'], 'alpha']], 'one warning per shared type, none for the others');
    t.equal(warnings[0]?.msg, 'target type "shared" is declared by executors alpha and beta; alpha serves it, being loaded first; set executors.shared in the config to choose (a policy that names its executor gets that one)');
    t.equal(servedBy('shared'), 'alpha', 'as the loop chooses');
    t.equal(servedBy('twice'), 'alpha');
  });

  await t.test('the config mapping names one of them', async (t) => {
    const { warnings, servedBy } = await load({ shared: 'beta' });
    t.equal(warnings[0]?.msg, 'target type "shared" is declared by executors alpha and beta; the config\'s executors.shared names beta, which serves it (a policy that names its executor gets that one)');
    t.equal(warnings[0]?.['serves'], 'beta');
    t.equal(servedBy('shared'), 'beta', 'as the loop chooses');
  });

  await t.test('the config mapping names another executor', async (t) => {
    const { warnings, servedBy } = await load({ shared: 'delta' });
    t.match(warnings[0]?.msg, /executors alpha and beta; the config's executors\.shared names delta, so none of them serves it/);
    t.equal(warnings[0]?.['serves'], 'delta');
    t.equal(servedBy('shared'), 'delta', 'as the loop chooses');
  });

  await t.test('the mapping unknown to the plugin manager: the warning says what the choice depends on', async (t) => {
    const { warnings } = await load();
    t.equal(warnings[0]?.msg, 'target type "shared" is declared by executors alpha and beta; alpha, loaded first, serves it unless the config\'s executors.shared names another (a policy that names its executor gets that one)');
    t.notOk('serves' in (warnings[0] ?? {}), 'and names no executor as the one that serves it');
  });
});
