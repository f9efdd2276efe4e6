// @ts-check
// The measuring process of bench/cycle.ts: plain Node on the build, as `npm start` runs the daemon
// (no TypeScript loader, whose extra thread alone adds ~50 MB of RSS). It runs the loop's cycles
// and, after each, the same distinct queries issued directly through the plugin; it asks the
// parent (over IPC) for Prometheus's request counters, and sends back one table row.
import { writeFileSync, readFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { pino } from 'pino';
import { ScalingManager } from '../dist/src/engine/manager.js';
import { ruleWindow } from '../dist/src/engine/rule-window.js';
import { PluginManager } from '../dist/src/plugins/plugin-manager.js';
import { createSqliteStorage } from '../dist/src/storage/sqlite-storage.js';
import { mapLimit } from '../dist/src/util/async.js';
import { tuneHeap } from '../dist/src/util/heap.js';

// The heap settings the daemon runs with (philotes-scaler serve).
tuneHeap();

const env = process.env;
const DB = /** @type {string} */ (env['MEASURE_DB']);
const PROMETHEUS_URL = /** @type {string} */ (env['BENCH_PROMETHEUS_URL']);
const QUERIES = Number(env['BENCH_QUERIES']);
const CONCURRENCY = Number(env['CONCURRENCY'] ?? 16);
const WARMUP_CYCLES = Number(env['WARMUP_CYCLES'] ?? 10);
const MEASURED_CYCLES = Number(env['CYCLES'] ?? 15);
const INTERVAL_S = 30;
const PROFILE_DIR = env['CPU_PROF_DIR'];
const PAUSE_MS = Number(env['PAUSE_MS'] ?? 0);
/** @param {number} i */
const query = (i) => `max(philotes_bench_lag_seconds{series="s${i}"})`;

/** @type {Map<number, (counts: Record<string, number>) => void>} */
const asked = new Map();
let asks = 0;
process.on('message', (/** @type {{ id: number, counts: Record<string, number> }} */ m) => {
  asked.get(m.id)?.(m.counts);
  asked.delete(m.id);
});
/** Prometheus's own request counters, read (and settled) by the parent. @returns {Promise<Record<string, number>>} */
function requestCounts() {
  return new Promise((resolve) => {
    const id = ++asks;
    asked.set(id, resolve);
    process.send?.({ type: 'counts', id });
  });
}

/** CPU time Prometheus has used so far (user + system, from /proc; 0 where there is none). */
function prometheusCpuMs() {
  try {
    const fields = readFileSync(`/proc/${env['BENCH_PROMETHEUS_PID']}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) * 10; // clock ticks of 10 ms
  } catch {
    return 0;
  }
}

/** Garbage collection so far, in ms: major (mark-compact) and minor (scavenges and the rest). */
const gc = { major: 0, minor: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    // detail.kind 4 is NODE_PERFORMANCE_GC_MAJOR.
    if (/** @type {{ kind?: number }} */ (e.detail)?.kind === 4) gc.major += e.duration;
    else gc.minor += e.duration;
  }
}).observe({ entryTypes: ['gc'] });
/** GC time since `from`, as text. @param {{ major: number, minor: number }} from */
const gcSince = (from) => `GC ${(gc.major - from.major).toFixed(0)} + ${(gc.minor - from.minor).toFixed(0)} ms`;

const logger = pino({ level: 'silent' });
const plugins = new PluginManager({ dirs: [PluginManager.bundledDir()], configs: { prometheus: { url: PROMETHEUS_URL } }, logger, timeoutMs: 30_000 });
await plugins.loadAll();
const source = plugins.sources.get('prometheus');
if (source === undefined) throw new Error('prometheus plugin not loaded');

/** The same distinct range queries, issued straight through the plugin with the same concurrency. @param {Date} now */
async function directTime(now) {
  const win = ruleWindow({ duration_seconds: 60 }, now, INTERVAL_S);
  const t0 = performance.now();
  await mapLimit(
    Array.from({ length: QUERIES }, (_, i) => i),
    CONCURRENCY,
    (i) => /** @type {NonNullable<typeof source>} */ (source).rangeQuery({ query: query(i), aggregation: 'max', start: new Date(win.start * 1000), end: new Date(win.end * 1000), stepSeconds: win.step }),
  );
  return performance.now() - t0;
}

/** @param {Session | undefined} session @param {string} name */
async function saveProfile(session, name) {
  if (session === undefined) return;
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(join(/** @type {string} */ (PROFILE_DIR), `${name}.cpuprofile`), JSON.stringify(profile));
}

const storage = createSqliteStorage(DB);
const manager = new ScalingManager({
  storage,
  logger,
  sources: plugins.sources,
  executors: plugins.executors,
  config: { evaluation_interval_ms: INTERVAL_S * 1000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: CONCURRENCY, executors: { 'cdc-worker': 'keda' }, prices: {} },
});

// HEAP_PROFILE=file: a sampling heap profile of what the loop keeps alive, from before its first
// cycle to after the last (what is allocated then and still live at the end, by allocation site).
const heapSession = env['HEAP_PROFILE'] === undefined ? undefined : new Session();
if (heapSession !== undefined) {
  heapSession.connect();
  await heapSession.post('HeapProfiler.enable');
  await heapSession.post('HeapProfiler.startSampling', { samplingInterval: 4096 });
}

// Warm-up, alternating cycles and direct runs as measured: the first cycle writes every state
// row; the next ones let the JIT compile both paths. The daemon runs for days; in a fresh process
// the cycle and the direct run keep getting faster for several rounds (the fifth of each still
// took up to twice the steady-state time here), so the figures are taken after ten.
for (let w = 0; w < WARMUP_CYCLES; w++) {
  const report = await manager.runCycle();
  const direct = await directTime(new Date());
  if (env['VERBOSE'] === '1') console.error(`warm-up ${w + 1}: cycle ${report.duration_ms} ms, states written ${report.states_written}, direct ${direct.toFixed(0)} ms, ${memory()}`);
}

const session = PROFILE_DIR === undefined ? undefined : new Session();
if (session !== undefined) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
}
/** @type {number[]} */ const cycles = [];
/** @type {number[]} */ const directs = [];
/** @type {number[]} */ const requests = [];
let rss = 0;
let n = 0;
/** RSS and the V8 heap, in MB. */
function memory() {
  const m = process.memoryUsage();
  const mb = (/** @type {number} */ b) => (b / 1048576).toFixed(0);
  return `RSS ${mb(m.rss)} MB (heap ${mb(m.heapUsed)} of ${mb(m.heapTotal)} MB, external ${mb(m.external)} MB)`;
}
/** @param {NodeJS.CpuUsage} u */
const ms = (u) => ((u.user + u.system) / 1000).toFixed(0);
for (let c = 0; c < MEASURED_CYCLES; c++) {
  // PAUSE_MS: idle time before each measured cycle (and before its direct run), as the daemon has between cycles.
  if (PAUSE_MS > 0) await new Promise((r) => setTimeout(r, PAUSE_MS));
  const before = await requestCounts();
  await session?.post('Profiler.start');
  const cpu0 = process.cpuUsage();
  const prom0 = prometheusCpuMs();
  const gc0 = { ...gc };
  const report = await manager.runCycle();
  const cpuCycle = process.cpuUsage(cpu0);
  const promCycle = prometheusCpuMs() - prom0;
  const gcCycle = gcSince(gc0);
  await saveProfile(session, `cycle-${report.policies}-${c}`);
  const after = await requestCounts();
  n = report.policies;
  cycles.push(report.duration_ms);
  requests.push((after['/api/v1/query_range'] ?? 0) - (before['/api/v1/query_range'] ?? 0) + (after['/api/v1/query'] ?? 0) - (before['/api/v1/query'] ?? 0));
  rss = Math.max(rss, process.memoryUsage().rss);

  // The direct run idles as long first, so that both halves of a pair start equally cold.
  if (PAUSE_MS > 0) await new Promise((r) => setTimeout(r, PAUSE_MS));
  await session?.post('Profiler.start');
  const cpu1 = process.cpuUsage();
  const prom1 = prometheusCpuMs();
  const gc1 = { ...gc };
  directs.push(await directTime(new Date()));
  const cpuDirect = process.cpuUsage(cpu1);
  const promDirect = prometheusCpuMs() - prom1;
  const gcDirect = gcSince(gc1);
  await saveProfile(session, `direct-${report.policies}-${c}`);
  rss = Math.max(rss, process.memoryUsage().rss);
  if (env['VERBOSE'] === '1') {
    console.error(
      `${n} policies: cycle ${report.duration_ms} ms (phases ${JSON.stringify(report.phases_ms)}, CPU ${ms(cpuCycle)} ms, ${gcCycle}, Prometheus CPU ${promCycle} ms), ` +
        `direct ${directs.at(-1)?.toFixed(0)} ms (CPU ${ms(cpuDirect)} ms, ${gcDirect}, Prometheus CPU ${promDirect} ms), states written ${report.states_written}, ${memory()}`,
    );
  }
  if (report.fetches !== QUERIES || report.errors > 0) throw new Error(`cycle fetched ${report.fetches} keys with ${report.errors} errors`);
}
if (heapSession !== undefined) {
  // Only what is still reachable: collect first (the child runs with --expose-gc then).
  /** @type {{ gc?: () => void }} */ (globalThis).gc?.();
  console.error(`after a full collection: ${memory()}`);
  const { profile } = await heapSession.post('HeapProfiler.getSamplingProfile');
  writeFileSync(/** @type {string} */ (env['HEAP_PROFILE']), JSON.stringify(profile));
  await heapSession.post('HeapProfiler.stopSampling');
}
await storage.close();
await plugins.close();

/** @param {number[]} a */
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN;
const pairs = cycles.map((c, i) => c / /** @type {number} */ (directs[i]));
process.send?.({
  type: 'row',
  row: `| ${n.toLocaleString('en')} | ${med(cycles).toFixed(0)} ms | ${requests.every((r) => r === requests[0]) ? `${requests[0]} in each of ${requests.length}` : requests.join(', ')} (distinct ${QUERIES}) | ${med(directs).toFixed(0)} ms | ${(med(cycles) / med(directs)).toFixed(2)} | ${med(pairs).toFixed(2)} | ${(rss / 1024 / 1024).toFixed(0)} MB |`,
});
process.disconnect?.();
