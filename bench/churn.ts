// Evaluation cycles under change, against a real Prometheus, on SQLite and on PostgreSQL.
// N enabled policies share 200 distinct queries (one up rule `> 60` and one down rule `< 5` on the
// same query, judged on its latest value, cooldown 0). Every churn cycle a fifth of the queries
// (40 of 200) cross a threshold, alternately upwards and downwards, so about N / 5 policies change
// their replicas: each change is a claim of the state, an executor call, a history row and the
// final state. The same process first measures steady cycles (nothing crosses) of the same
// policies, for the figure beside it. After the run it checks that nothing was lost: one history
// row per change the cycles reported, and every policy's stored replicas equal to the executor's.
// Goal at 10,000 policies: a churn cycle (about 2,000 changes) at most 1 s on both backends.
//
// Run: npm run bench:churn   (POLICIES=10000 by default, comma-separated for several sizes;
// BACKENDS=sqlite,postgres; TREES=0.33 makes every third policy combine its rules by condition trees; CHURN_CYCLES=10, STEADY_CYCLES=10, WARMUP_CYCLES=5; VERBOSE=1 prints
// every cycle; CPU_PROF_DIR=dir writes a .cpuprofile of each measured churn cycle). Needs
// prometheus on PATH and PostgreSQL at 127.0.0.1:5432 (or DATABASE_ADMIN_URL). The cycles run in
// bench/churn-measure.mjs, a fresh plain-Node process on the build (npm run build), as npm start
// runs the daemon, with an in-process executor plugin that keeps the replicas in memory (behind
// the same plugin isolation as a real one).
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import type { PolicyInput } from '../src/policy/policy-model.js';
import { createPostgresStorage } from '../src/storage/postgres-storage.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import type { Storage } from '../src/storage/storage.js';
import { mapLimit } from '../src/util/async.js';
import { createFreshDatabase } from '../test/helpers/pg.js';
import { promQuery, startExporter, startPrometheus, waitFor } from '../test/helpers/prometheus.js';
import { QUERIES, query } from './bench-policies.js';

const env = process.env;
const SIZES = (env['POLICIES'] ?? '10000').split(',').map(Number);
const BACKENDS = (env['BACKENDS'] ?? 'sqlite,postgres').split(',').map((s) => s.trim()).filter((s) => s !== '');
/** Share of the distinct queries that cross a threshold every churn cycle. */
const SHARE = 0.2;
const PERIOD = Math.round(1 / SHARE);
const METRIC = 'philotes_bench_lag_seconds';
const NEUTRAL = 20;
const HIGH = 100;
const LOW = 1;

/** Share of the policies whose rules combine by condition trees (TREES=0.33: every third one). */
const TREES = Number(env['TREES'] ?? 0);

/**
 * The i-th churn policy: up by 1 above 60 and down by 1 below 5, on one query's latest value, no
 * cooldown. With TREES, every 1/TREES-th policy says the same through condition trees: up when
 * `high and not calm` (calm: below 30), down when `any: [low]`.
 */
export function churnPolicy(i: number): PolicyInput {
  const q = query(i % QUERIES);
  if (TREES > 0 && i % Math.round(1 / TREES) === 0) {
    return {
      name: `churn-${i}`,
      target_type: 'cdc-worker',
      min_replicas: 1,
      max_replicas: 10,
      cooldown_seconds: 0,
      scale_up_rules: [
        { name: 'high', metric: q, operator: 'gt', threshold: 60, scale_by: 1 },
        { name: 'calm', metric: q, operator: 'lt', threshold: 30, scale_by: 1 },
      ],
      scale_down_rules: [{ name: 'low', metric: q, operator: 'lt', threshold: 5, scale_by: -1 }],
      scale_up_when: { all: ['high', { not: 'calm' }] },
      scale_down_when: { any: ['low'] },
    };
  }
  return {
    name: `churn-${i}`,
    target_type: 'cdc-worker',
    min_replicas: 1,
    max_replicas: 10,
    cooldown_seconds: 0,
    scale_up_rules: [{ metric: q, operator: 'gt', threshold: 60, scale_by: 1 }],
    scale_down_rules: [{ metric: q, operator: 'lt', threshold: 5, scale_by: -1 }],
  };
}

/**
 * The value of query `q` in churn step `step` (step < 0: steady). In step s the queries with
 * q % 5 == s % 5 cross: upwards on their even turns, downwards on their odd ones, so each policy's
 * replicas go 5 -> 6 -> 5 and never reach a bound.
 */
function valueOf(q: number, step: number): number {
  if (step < 0 || q % PERIOD !== step % PERIOD) return NEUTRAL;
  return Math.floor(step / PERIOD) % 2 === 0 ? HIGH : LOW;
}

console.log(`machine: ${cpus()[0]?.model ?? 'cpu'} x${cpus().length}, node ${process.version}`);
const exporter = await startExporter();
for (let q = 0; q < QUERIES; q++) exporter.set(METRIC, { series: `s${q}` }, NEUTRAL);
const prom = await startPrometheus({ target: exporter.target, waitForMetric: METRIC });

/**
 * Sets the exporter to step `step` and waits until Prometheus's latest samples show it: the
 * exporter serves every series in one scrape, so a marker series with the step's number says the
 * scrape carried that step's values.
 */
async function setStep(step: number): Promise<void> {
  const marker = ++steps;
  for (let q = 0; q < QUERIES; q++) exporter.set(METRIC, { series: `s${q}` }, valueOf(q, step));
  exporter.set('philotes_bench_step', {}, marker);
  await waitFor(`step ${step} scraped`, async () => {
    // At the whole second, as the loop queries (a rule of duration 0 is judged at the cycle's instant in whole seconds).
    const at = Math.floor(Date.now() / 1000);
    const seen = Number((await promQuery(prom.url, 'philotes_bench_step', at))[0]?.value?.[1] ?? NaN);
    return seen === marker ? true : undefined;
  }, 30_000, 100);
}
let steps = 0;

async function seed(storage: Storage, n: number): Promise<void> {
  await storage.migrate();
  const now = new Date();
  await mapLimit(Array.from({ length: n }, (_, i) => i), 8, (i) => storage.createPolicy(normalizePolicy(churnPolicy(i), { source: 'api', now })));
}

/** Runs the measuring process; answers its requests to move the exporter to a step. */
function measure(backend: string, db: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = fork(new URL('./churn-measure.mjs', import.meta.url), [], {
      execArgv: [],
      env: { ...env, MEASURE_BACKEND: backend, MEASURE_DB: db, BENCH_PROMETHEUS_URL: prom.url, BENCH_QUERIES: String(QUERIES) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let rows: string[] | undefined;
    child.on('message', (m: { type: string; id?: number; step?: number; rows?: string[] }) => {
      if (m.type === 'rows') rows = m.rows;
      else if (m.type === 'step') {
        void setStep(m.step as number).then(
          () => child.send({ id: m.id }),
          (err: Error) => child.send({ id: m.id, error: err.message }),
        );
      }
    });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 && rows !== undefined ? resolve(rows) : reject(new Error(`the measuring process exited with ${code}`))));
  });
}

const table: string[] = [];
for (const n of SIZES) {
  for (const backend of BACKENDS) {
    await setStep(-1);
    const t0 = performance.now();
    if (backend === 'sqlite') {
      const dir = mkdtempSync(join(tmpdir(), 'ps-bench-churn-'));
      const file = join(dir, 'db.sqlite');
      const storage = createSqliteStorage(file);
      await seed(storage, n);
      await storage.close();
      console.error(`sqlite: ${n} policies seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      table.push(...(await measure(backend, file)));
      rmSync(dir, { recursive: true, force: true });
    } else if (backend === 'postgres') {
      const db = await createFreshDatabase('philotes_bench_churn');
      try {
        const storage = createPostgresStorage(db.url);
        await seed(storage, n);
        await storage.close();
        console.error(`postgres: ${n} policies seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        table.push(...(await measure(backend, db.url)));
      } finally {
        await db.drop();
      }
    } else throw new Error(`unknown backend ${backend} (sqlite or postgres)`);
  }
}
await prom.stop();
await exporter.close();
console.log(`evaluation cycles under change: ${QUERIES} distinct queries, ${SHARE * 100}% of them crossing a threshold every churn cycle; real Prometheus; in-process executor`);
console.log('| policies | backend | steady cycle | churn cycle (median, max) | changes per churn cycle | history rows / changes | stored replicas = executor\'s | states written per churn cycle | peak RSS |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of table) console.log(r);
