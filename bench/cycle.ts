// Evaluation cycle against a real Prometheus: N enabled policies (2 up rules + 1 down rule each)
// over 200 distinct queries. Reports cycle wall time, Prometheus HTTP requests per cycle (from
// Prometheus's own prometheus_http_requests_total), RSS, and the ratio of the cycle time to the
// time the same distinct queries take when issued directly with the same concurrency.
// Goals: <= 2 s at 10,000 policies; requests per cycle = distinct queries; ratio <= 1.5; RSS <= 300 MB.
// Run: npm run bench:cycle   (POLICIES=1000,10000 to choose sizes; VERBOSE=1 prints phases and CPU
// times; CPU_PROF_DIR=dir writes a .cpuprofile of each measured cycle and direct run; needs
// prometheus on PATH). The engine is loaded from the build (npm run build, as npm start runs it);
// BENCH_FROM_SOURCE=1 loads the TypeScript sources instead.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import type * as ManagerModule from '../src/engine/manager.js';
import type * as RuleWindowModule from '../src/engine/rule-window.js';
import type * as PluginManagerModule from '../src/plugins/plugin-manager.js';
import type * as NormalizeModule from '../src/policy/policy-normalize.js';
import type * as SqliteModule from '../src/storage/sqlite-storage.js';
import type * as AsyncModule from '../src/util/async.js';
import { settledRequestCounts, startExporter, startPrometheus, waitFor, promQuery } from '../test/helpers/prometheus.js';

const FROM = process.env['BENCH_FROM_SOURCE'] === '1' ? '../src' : '../dist/src';
const { ScalingManager } = (await import(`${FROM}/engine/manager.js`)) as typeof ManagerModule;
const { ruleWindow } = (await import(`${FROM}/engine/rule-window.js`)) as typeof RuleWindowModule;
const { PluginManager } = (await import(`${FROM}/plugins/plugin-manager.js`)) as typeof PluginManagerModule;
const { normalizePolicy } = (await import(`${FROM}/policy/policy-normalize.js`)) as typeof NormalizeModule;
const { createSqliteStorage } = (await import(`${FROM}/storage/sqlite-storage.js`)) as typeof SqliteModule;
const { mapLimit } = (await import(`${FROM}/util/async.js`)) as typeof AsyncModule;

const SIZES = (process.env['POLICIES'] ?? '1000,10000').split(',').map(Number);
const QUERIES = 200;
const CONCURRENCY = Number(process.env['CONCURRENCY'] ?? 16);
const INTERVAL_S = 30;
const WARMUP_CYCLES = Number(process.env['WARMUP_CYCLES'] ?? 10);
const MEASURED_CYCLES = Number(process.env['CYCLES'] ?? 5);
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

/** CPU time Prometheus has used so far (user + system, from /proc; 0 where there is none). */
function prometheusCpuMs(): number {
  const pid = process.env['BENCH_PROMETHEUS_PID'];
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) * 10; // clock ticks of 10 ms
  } catch {
    return 0;
  }
}

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
  // Warm-up, alternating cycles and direct runs as measured: the first cycle writes every state
  // row; the next ones let the JIT compile both paths. The daemon runs for days; in a fresh process
  // the cycle and the direct run keep getting faster for several rounds (the fifth of each still
  // took up to twice the steady-state time here), so the figures are taken after ten.
  for (let w = 0; w < WARMUP_CYCLES; w++) {
    await manager.runCycle();
    await directTime(new Date());
  }
  const cycles: number[] = [];
  const directs: number[] = [];
  const requests: number[] = [];
  let rss = 0;
  let n = 0;
  const profDir = process.env['CPU_PROF_DIR'];
  const session = profDir === undefined ? undefined : new Session();
  if (session !== undefined) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 100 });
  }
  for (let c = 0; c < MEASURED_CYCLES; c++) {
    const before = await settledRequestCounts(prom.url);
    await session?.post('Profiler.start');
    const cpu0 = process.cpuUsage();
    const promCycleBefore = prometheusCpuMs();
    const report = await manager.runCycle();
    const cpuCycle = process.cpuUsage(cpu0);
    const promCycle = prometheusCpuMs() - promCycleBefore;
    if (session !== undefined) {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(join(profDir as string, `cycle-${report.policies}-${c}.cpuprofile`), JSON.stringify(profile));
    }
    const after = await settledRequestCounts(prom.url);
    n = report.policies;
    cycles.push(report.duration_ms);
    requests.push((after['/api/v1/query_range'] ?? 0) - (before['/api/v1/query_range'] ?? 0) + (after['/api/v1/query'] ?? 0) - (before['/api/v1/query'] ?? 0));
    rss = Math.max(rss, process.memoryUsage().rss);
    const cpu1 = process.cpuUsage();
    const promBefore = prometheusCpuMs();
    await session?.post('Profiler.start');
    directs.push(await directTime(new Date()));
    if (session !== undefined) {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(join(profDir as string, `direct-${report.policies}-${c}.cpuprofile`), JSON.stringify(profile));
    }
    const cpuDirect = process.cpuUsage(cpu1);
    const promDirect = prometheusCpuMs() - promBefore;
    if (process.env['VERBOSE'] === '1') {
      const ms = (u: NodeJS.CpuUsage) => ((u.user + u.system) / 1000).toFixed(0);
      console.error(
        `${n} policies: cycle ${report.duration_ms} ms (phases ${JSON.stringify(report.phases_ms)}, CPU ${ms(cpuCycle)} ms, Prometheus CPU ${promCycle} ms), ` +
          `direct ${directs.at(-1)?.toFixed(0)} ms (CPU ${ms(cpuDirect)} ms, Prometheus CPU ${promDirect} ms), states written ${report.states_written}, RSS ${(process.memoryUsage().rss / 1048576).toFixed(0)} MB`,
      );
    }
    if (report.fetches !== QUERIES || report.errors > 0) throw new Error(`cycle fetched ${report.fetches} keys with ${report.errors} errors`);
  }
  await storage.close();
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN;
  return `| ${n.toLocaleString('en')} | ${med(cycles).toFixed(0)} ms | ${requests.join(', ')} (distinct ${QUERIES}) | ${med(directs).toFixed(0)} ms | ${(med(cycles) / med(directs)).toFixed(2)} | ${med(cycles.map((c, i) => c / (directs[i] as number))).toFixed(2)} | ${(rss / 1024 / 1024).toFixed(0)} MB |`;
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
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...process.execArgv, process.argv[1] as string], {
      env: { ...process.env, MEASURE_DB: file, BENCH_PROMETHEUS_URL: prom.url, BENCH_PROMETHEUS_PID: String(('pid' in prom ? prom.pid : undefined) ?? '') },
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
console.log(`evaluation cycle: 2 up + 1 down rules per policy, ${QUERIES} distinct queries, concurrency ${CONCURRENCY}, SQLite, real Prometheus (median of ${MEASURED_CYCLES} cycles after ${WARMUP_CYCLES} warm-up cycles)`);
// Each cycle is followed by a direct run of the same queries; the last ratio is the median of
// those pairs (both halves of a pair ran under the same machine conditions).
console.log('| policies | cycle wall time | Prometheus requests per cycle | same queries direct | ratio of medians | median ratio of pairs | peak RSS |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
