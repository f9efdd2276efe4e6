// Evaluation cycle against a real Prometheus: N enabled policies (2 up rules + 1 down rule each)
// over 200 distinct queries. Reports cycle wall time, Prometheus HTTP requests per cycle (from
// Prometheus's own prometheus_http_requests_total), RSS, and the ratio of the cycle time to the
// time the same distinct queries take when issued directly with the same concurrency.
// Goals: <= 2 s at 10,000 policies; requests per cycle = distinct queries; ratio <= 1.5; RSS <= 300 MB.
// Run: npm run bench:cycle   (POLICIES=1000,10000 to choose sizes; CPU_PROF_DIR=dir profiles the
// measuring process; needs prometheus on PATH)
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ScalingManager } from '../src/engine/manager.js';
import { ruleWindow } from '../src/engine/rule-window.js';
import { PluginManager } from '../src/plugins/plugin-manager.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import { mapLimit } from '../src/util/async.js';
import { settledRequestCounts, startExporter, startPrometheus, waitFor, promQuery } from '../test/helpers/prometheus.js';

const SIZES = (process.env['POLICIES'] ?? '1000,10000').split(',').map(Number);
const QUERIES = 200;
const CONCURRENCY = Number(process.env['CONCURRENCY'] ?? 16);
const INTERVAL_S = 30;
const query = (i: number) => `max(philotes_bench_lag_seconds{series="s${i}"})`;

const child = process.env['MEASURE_DB'] !== undefined;
if (!child) console.log(`machine: ${cpus()[0]?.model ?? 'cpu'} x${cpus().length}, node ${process.version}`);
const exporter = child ? undefined : await startExporter();
for (let i = 0; i < QUERIES; i++) exporter?.set('philotes_bench_lag_seconds', { series: `s${i}` }, 10 + (i % 50));
const prom = child
  ? { url: process.env['BENCH_PROMETHEUS_URL'] as string, stop: async () => undefined }
  : await startPrometheus({ target: exporter?.target, waitForMetric: 'philotes_bench_lag_seconds' });
// Let a few scrapes land so every range query returns data.
if (!child) await waitFor('samples', async () => ((await promQuery(prom.url, 'count(count_over_time(philotes_bench_lag_seconds[1m]) >= 5)'))[0]?.value?.[1] === String(QUERIES) ? true : undefined), 30_000, 500);

const logger = pino({ level: 'silent' });
const plugins = new PluginManager({ dirs: [PluginManager.bundledDir()], configs: { prometheus: { url: prom.url } }, logger, timeoutMs: 30_000 });
await plugins.loadAll();
const source = plugins.sources.get('prometheus');
if (source === undefined) throw new Error('prometheus plugin not loaded');

/** The same distinct range queries, issued straight through the plugin with the same concurrency. */
async function directTime(now: Date): Promise<number> {
  const win = ruleWindow({ duration_seconds: 60 }, now, INTERVAL_S);
  const t0 = performance.now();
  await mapLimit(Array.from({ length: QUERIES }, (_, i) => i), CONCURRENCY, (i) =>
    source!.rangeQuery({ query: query(i), aggregation: 'max', start: new Date(win.start * 1000), end: new Date(win.end * 1000), stepSeconds: win.step }),
  );
  return performance.now() - t0;
}

const MEASURE = process.env['MEASURE_DB'];

async function seed(n: number, file: string): Promise<void> {
  const storage = createSqliteStorage(file);
  await storage.migrate();
  for (let i = 0; i < n; i++) {
    await storage.createPolicy(
      normalizePolicy(
        {
          name: `bench-${i}`,
          target_type: 'cdc-worker',
          min_replicas: 1,
          max_replicas: 10,
          scale_up_rules: [
            { metric: query(i % QUERIES), operator: 'gt', threshold: 60, duration: '1m', scale_by: 2 },
            { metric: query((i + 1) % QUERIES), operator: 'gt', threshold: 60, duration: '1m', scale_by: 1 },
          ],
          scale_down_rules: [{ metric: query((i + 2) % QUERIES), operator: 'lt', threshold: 5, duration: '1m', scale_by: -1 }],
        },
        { source: 'api', now: new Date() },
      ),
    );
  }
  await storage.close();
}

/** Runs in a fresh process (MEASURE_DB set), so its RSS is the loop's own, not the seeding's. */
async function measure(file: string): Promise<string> {
  const storage = createSqliteStorage(file);
  const manager = new ScalingManager({
    storage,
    logger,
    sources: plugins.sources,
    executors: plugins.executors,
    config: { evaluation_interval_ms: INTERVAL_S * 1000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: CONCURRENCY, executors: { 'cdc-worker': 'keda' }, prices: {} },
  });
  await manager.runCycle(); // warm-up: first state rows, statement cache, JIT
  const cycles: number[] = [];
  const directs: number[] = [];
  const requests: number[] = [];
  let rss = 0;
  let n = 0;
  for (let c = 0; c < 3; c++) {
    const before = await settledRequestCounts(prom.url);
    const report = await manager.runCycle();
    const after = await settledRequestCounts(prom.url);
    n = report.policies;
    cycles.push(report.duration_ms);
    requests.push((after['/api/v1/query_range'] ?? 0) - (before['/api/v1/query_range'] ?? 0) + (after['/api/v1/query'] ?? 0) - (before['/api/v1/query'] ?? 0));
    rss = Math.max(rss, process.memoryUsage().rss);
    directs.push(await directTime(new Date()));
    if (process.env['VERBOSE'] === '1') console.error(n, JSON.stringify(report.phases_ms), 'states written', report.states_written, 'rss MB', (process.memoryUsage().rss / 1048576).toFixed(0));
    if (report.fetches !== QUERIES || report.errors > 0) throw new Error(`cycle fetched ${report.fetches} keys with ${report.errors} errors`);
  }
  await storage.close();
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN;
  return `| ${n.toLocaleString('en')} | ${med(cycles).toFixed(0)} ms | ${requests.join(', ')} (distinct ${QUERIES}) | ${med(directs).toFixed(0)} ms | ${(med(cycles) / med(directs)).toFixed(2)} | ${(rss / 1024 / 1024).toFixed(0)} MB |`;
}

const rows: string[] = [];
if (MEASURE !== undefined) {
  console.log(await measure(MEASURE));
} else {
  for (const n of SIZES) {
    const dir = mkdtempSync(join(tmpdir(), 'ps-bench-cycle-'));
    const file = join(dir, 'db.sqlite');
    await seed(n, file);
    // Asynchronously: this process serves the exporter Prometheus scrapes meanwhile.
    const profile = process.env['CPU_PROF_DIR'] !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${process.env['CPU_PROF_DIR']}`] : [];
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...profile, ...process.execArgv, process.argv[1] as string], {
      env: { ...process.env, MEASURE_DB: file, BENCH_PROMETHEUS_URL: prom.url },
      encoding: 'utf8',
    });
    if (stderr !== '') process.stderr.write(stderr);
    rows.push(stdout.trim().split('\n').at(-1) ?? '');
    rmSync(dir, { recursive: true, force: true });
  }
}
await plugins.close();
await prom.stop();
await exporter?.close();
if (child) process.exit(0);
console.log(`evaluation cycle: 2 up + 1 down rules per policy, ${QUERIES} distinct queries, concurrency ${CONCURRENCY}, SQLite, real Prometheus (median of 3 cycles)`);
console.log('| policies | cycle wall time | Prometheus requests per cycle | same queries direct | ratio | peak RSS |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
