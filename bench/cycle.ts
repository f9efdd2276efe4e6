// Evaluation cycle against a real Prometheus: N enabled policies (2 up rules + 1 down rule each)
// over 200 distinct queries. Reports cycle wall time, Prometheus HTTP requests per cycle (from
// Prometheus's own prometheus_http_requests_total), RSS, and the ratio of the cycle time to the
// time the same distinct queries take when issued directly with the same concurrency.
// Goals: <= 2 s at 10,000 policies; requests per cycle = distinct queries; ratio <= 1.5; RSS <= 300 MB.
// Run: npm run bench:cycle   (POLICIES=1000,10000 to choose sizes; TRACKING=0.5 makes every other
// policy a target-tracking one; TREES=0.33 makes every third combine its rules by condition trees; VERBOSE=1 prints phases, CPU
// times and memory; CPU_PROF_DIR=dir writes a .cpuprofile of each measured cycle and direct run;
// HEAP_PROFILE=file writes a sampling heap profile of what the loop keeps alive (the last size's);
// NODE_FLAGS gives the measuring process Node/V8 flags (as the daemon would be started with);
// WARMUP_CYCLES, CYCLES; PAUSE_MS idles before each measured cycle and before its direct run, as
// the daemon does between cycles; needs prometheus on PATH). This process seeds the database and runs Prometheus and its
// exporter; the cycles run in bench/cycle-measure.mjs, a fresh plain-Node process on the build
// (npm run build), as npm start runs the daemon.
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import { settledRequestCounts, startExporter, startPrometheus, waitFor, promQuery } from '../test/helpers/prometheus.js';
import { QUERIES, benchPolicy } from './bench-policies.js';

const SIZES = (process.env['POLICIES'] ?? '1000,10000').split(',').map(Number);
/** Share of the policies that track a target instead of their up rules (TRACKING=0.5: every other one). */
const TRACKING = Number(process.env['TRACKING'] ?? 0);
const tracked = (i: number): boolean => TRACKING > 0 && i % Math.round(1 / TRACKING) === 0;
/** Share of the policies whose rules combine by condition trees (TREES=0.33: every third one). */
const TREES = Number(process.env['TREES'] ?? 0);
const treed = (i: number): boolean => TREES > 0 && !tracked(i) && i % Math.round(1 / TREES) === 0;

console.log(`machine: ${cpus()[0]?.model ?? 'cpu'} x${cpus().length}, node ${process.version}`);
const exporter = await startExporter();
for (let i = 0; i < QUERIES; i++) exporter.set('philotes_bench_lag_seconds', { series: `s${i}` }, 10 + (i % 50));
const prom = await startPrometheus({ target: exporter.target, waitForMetric: 'philotes_bench_lag_seconds' });
// Let a few scrapes land so every range query returns data.
await waitFor('samples', async () => ((await promQuery(prom.url, 'count(count_over_time(philotes_bench_lag_seconds[1m]) >= 5)'))[0]?.value?.[1] === String(QUERIES) ? true : undefined), 30_000, 500);

async function seed(n: number, file: string): Promise<void> {
  const storage = createSqliteStorage(file);
  await storage.migrate();
  for (let i = 0; i < n; i++) {
    await storage.createPolicy(normalizePolicy(benchPolicy(i, { tracking: tracked(i), tree: treed(i) }), { source: 'api', now: new Date() }));
  }
  await storage.close();
}

/** Runs the measuring process on a seeded database; answers its requests for Prometheus's counters. */
function measure(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = fork(new URL('./cycle-measure.mjs', import.meta.url), [], {
      execArgv: [...(process.env['HEAP_PROFILE'] === undefined ? [] : ['--expose-gc']), ...(process.env['NODE_FLAGS']?.split(' ').filter((f) => f !== '') ?? [])],
      env: { ...process.env, MEASURE_DB: file, BENCH_QUERIES: String(QUERIES), BENCH_PROMETHEUS_URL: prom.url, BENCH_PROMETHEUS_PID: String(prom.pid ?? '') },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let row: string | undefined;
    child.on('message', (m: { type: string; id?: number; row?: string }) => {
      if (m.type === 'row') row = m.row;
      else if (m.type === 'counts') void settledRequestCounts(prom.url).then((counts) => child.send({ id: m.id, counts }));
    });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 && row !== undefined ? resolve(row) : reject(new Error(`the measuring process exited with ${code}`))));
  });
}

const rows: string[] = [];
for (const n of SIZES) {
  const dir = mkdtempSync(join(tmpdir(), 'ps-bench-cycle-'));
  const file = join(dir, 'db.sqlite');
  await seed(n, file);
  rows.push(await measure(file));
  rmSync(dir, { recursive: true, force: true });
}
await prom.stop();
await exporter.close();
const warmup = Number(process.env['WARMUP_CYCLES'] ?? 10);
const measured = Number(process.env['CYCLES'] ?? 15);
const trees = TREES > 0 ? `; ${Math.round(TREES * 100)}% of them combining the same rules by condition trees` : '';
const mix = TRACKING > 0 ? `${Math.round(TRACKING * 100)}% of the policies tracking a target (1 target_value entry + 1 down rule), the rest 2 up + 1 down rules` : '2 up + 1 down rules per policy';
console.log(`evaluation cycle: ${mix}${trees}, ${QUERIES} distinct queries, concurrency ${process.env['CONCURRENCY'] ?? 16}, SQLite, real Prometheus (median of ${measured} cycles after ${warmup} warm-up rounds)`);
// Each cycle is followed by a direct run of the same queries; the last ratio is the median of
// those pairs (both halves of a pair ran under the same machine conditions).
console.log('| policies | cycle wall time | Prometheus requests per cycle | same queries direct | ratio of medians | median ratio of pairs | peak RSS |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
