// @ts-check
// The measuring process of bench/churn.ts: plain Node on the build, as `npm start` runs the daemon.
// It runs steady cycles, then churn cycles (asking the parent over IPC to move the exporter to the
// next step before each), then checks that every change has its history row and every policy's
// stored replicas equal the executor's. Sends back one table row.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { pino } from 'pino';
import { ScalingManager } from '../dist/src/engine/manager.js';
import { IsolatedExecutor, PluginManager } from '../dist/src/plugins/plugin-manager.js';
import { createPostgresStorage } from '../dist/src/storage/postgres-storage.js';
import { createSqliteStorage } from '../dist/src/storage/sqlite-storage.js';
import { tuneHeap } from '../dist/src/util/heap.js';

// The heap settings the daemon runs with (philotes-scaler serve).
tuneHeap();

const env = process.env;
const BACKEND = /** @type {string} */ (env['MEASURE_BACKEND']);
const DB = /** @type {string} */ (env['MEASURE_DB']);
const QUERIES = Number(env['BENCH_QUERIES']);
const WARMUP = Number(env['WARMUP_CYCLES'] ?? 5);
const STEADY = Number(env['STEADY_CYCLES'] ?? 10);
const CHURN = Number(env['CHURN_CYCLES'] ?? 10);
const PROFILE_DIR = env['CPU_PROF_DIR'];
const START_REPLICAS = 5;
/** Share of the policies that change in a churn cycle (a fifth of the queries cross). */
const SHARE = 0.2;

/** @type {Map<number, { resolve: () => void, reject: (e: Error) => void }>} */
const asked = new Map();
let asks = 0;
process.on('message', (/** @type {{ id: number, error?: string }} */ m) => {
  const a = asked.get(m.id);
  asked.delete(m.id);
  if (m.error !== undefined) a?.reject(new Error(m.error));
  else a?.resolve();
});
/** Asks the parent to move the exporter to churn step `step` (-1: steady) and waits until Prometheus shows it. @param {number} step @returns {Promise<void>} */
function step(step) {
  return new Promise((resolve, reject) => {
    const id = ++asks;
    asked.set(id, { resolve, reject });
    process.send?.({ type: 'step', id, step });
  });
}

const logger = pino({ level: env['LOG_LEVEL'] ?? 'silent' });
const plugins = new PluginManager({ dirs: [PluginManager.bundledDir()], configs: { prometheus: { url: env['BENCH_PROMETHEUS_URL'] } }, logger, timeoutMs: 30_000 });
await plugins.loadAll();

/** The executor's replicas by policy name (every target starts at START_REPLICAS). @type {Map<string, number>} */
const replicas = new Map();
let scaleCalls = 0;
const executor = new IsolatedExecutor(
  'memory',
  {
    targetTypes: ['cdc-worker'],
    async getCurrentReplicas(t) {
      return replicas.get(t.policyName) ?? START_REPLICAS;
    },
    async getCurrentReplicasMany(targets) {
      return new Map(targets.map((t) => [t.policyId, replicas.get(t.policyName) ?? START_REPLICAS]));
    },
    async scale(t, n) {
      scaleCalls++;
      replicas.set(t.policyName, n);
    },
  },
  30_000,
);

const storage = BACKEND === 'postgres' ? createPostgresStorage(DB) : createSqliteStorage(DB);
// Storage calls a cycle makes (each one a transaction), counted by wrapping the storage's methods.
/** @type {Record<string, number>} */
const calls = {};
/** Time from each call to its answer, summed (calls overlap: not a share of the cycle). @type {Record<string, number>} */
const callMs = {};
for (const m of ['putState', 'putStates', 'appendHistory', 'recordChanges', 'claimChanges']) {
  const self = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (storage));
  const f = self[m];
  if (typeof f !== 'function') continue;
  self[m] = async (/** @type {unknown[]} */ ...args) => {
    calls[m] = (calls[m] ?? 0) + 1;
    const t0 = performance.now();
    try {
      return await f.apply(storage, args);
    } finally {
      callMs[m] = (callMs[m] ?? 0) + performance.now() - t0;
    }
  };
}
const manager = new ScalingManager({
  storage,
  logger,
  sources: plugins.sources,
  executors: new Map([['memory', executor]]),
  config: { evaluation_interval_ms: 30_000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 16, executors: { 'cdc-worker': 'memory' }, prices: {} },
});

/** @param {number[]} a */
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN;
let rss = 0;
let changes = 0;
const mb = (/** @type {number} */ b) => (b / 1048576).toFixed(0);
/** @param {string} what @param {Awaited<ReturnType<typeof manager.runCycle>>} r */
async function check(what, r) {
  if (r.errors > 0 || r.fetch_errors > 0 || r.fetches !== Math.min(QUERIES, r.policies)) throw new Error(`${what}: ${r.errors} errors, ${r.fetch_errors} fetch errors, ${r.fetches} fetches`);
  const made = (r.outcomes['scale_up'] ?? 0) + (r.outcomes['scale_down'] ?? 0);
  const txs = Object.entries(calls).map(([k, v]) => `${k} ${v} (${(callMs[k] ?? 0).toFixed(0)} ms)`).join(', ');
  for (const k of Object.keys(calls)) delete calls[k];
  for (const k of Object.keys(callMs)) delete callMs[k];
  if (what.startsWith('churn') && made !== Math.round(r.policies * SHARE)) throw new Error(`${what}: ${made} changes, expected ${Math.round(r.policies * SHARE)}`);
  changes += made;
  rss = Math.max(rss, process.memoryUsage().rss);
  if (env['VERBOSE'] === '1') {
    const m = process.memoryUsage();
    console.error(`${BACKEND} ${what}: ${r.duration_ms} ms, ${made} changes, states written ${r.states_written}, storage calls: ${txs || 'none'}, phases ${JSON.stringify(r.phases_ms)}, RSS ${mb(m.rss)} MB (heap ${mb(m.heapUsed)} MB)`);
  }
  return made;
}

await step(-1);
for (let w = 0; w < WARMUP; w++) await check(`steady warm-up ${w + 1}`, await manager.runCycle());
/** @type {number[]} */ const steady = [];
for (let c = 0; c < STEADY; c++) {
  const r = await manager.runCycle();
  await check(`steady ${c + 1}`, r);
  steady.push(r.duration_ms);
}

const session = PROFILE_DIR === undefined ? undefined : new Session();
if (session !== undefined) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
}
/** @type {number[]} */ const churn = [];
/** @type {number[]} */ const made = [];
/** @type {number[]} */ const written = [];
// One full period of steps (each query crosses once) as warm-up, then the measured steps.
const PERIOD = 5;
for (let s = 0; s < PERIOD + CHURN; s++) {
  await step(s);
  const measured = s >= PERIOD;
  if (measured) await session?.post('Profiler.start');
  const r = await manager.runCycle();
  if (measured && session !== undefined) {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(join(PROFILE_DIR ?? '.', `churn-${BACKEND}-${r.policies}-${s}.cpuprofile`), JSON.stringify(profile));
  }
  const n = await check(`churn step ${s}${measured ? '' : ' (warm-up)'}`, r);
  if (measured) {
    churn.push(r.duration_ms);
    made.push(n);
    written.push(r.states_written);
  }
}
const policies = manager.lastCycle?.policies ?? 0;

// Nothing lost: one history row per change, and the stored replicas are the executor's.
let historyRows;
if (BACKEND === 'postgres') {
  const client = new pg.Client({ connectionString: DB });
  await client.connect();
  historyRows = Number((await client.query("SELECT count(*) AS n FROM scaling_history WHERE status = 'succeeded'")).rows[0].n);
  const other = Number((await client.query("SELECT count(*) AS n FROM scaling_history WHERE status <> 'succeeded'")).rows[0].n);
  if (other > 0) throw new Error(`${other} history rows did not succeed`);
  await client.end();
} else {
  const db = new Database(DB, { readonly: true });
  historyRows = /** @type {{ n: number }} */ (db.prepare("SELECT count(*) AS n FROM scaling_history WHERE status = 'succeeded'").get()).n;
  const other = /** @type {{ n: number }} */ (db.prepare("SELECT count(*) AS n FROM scaling_history WHERE status <> 'succeeded'").get()).n;
  if (other > 0) throw new Error(`${other} history rows did not succeed`);
  db.close();
}
const ids = (await storage.listEnabledPolicyVersions()).map((v) => v.id);
const names = new Map((await storage.getPolicies(ids)).map((p) => [p.id, p.name]));
const states = await storage.getStates(ids);
let matching = 0;
for (const id of ids) {
  const st = states.get(id);
  if (st !== undefined && st.current_replicas === (replicas.get(/** @type {string} */ (names.get(id))) ?? START_REPLICAS) && st.data['pending'] === undefined) matching++;
}
await storage.close();
await plugins.close();
if (historyRows !== changes || scaleCalls !== changes || matching !== ids.length) {
  throw new Error(`lost work: ${changes} changes reported, ${scaleCalls} executor calls, ${historyRows} history rows, ${matching} of ${ids.length} states matching the executor`);
}
process.send?.({
  type: 'rows',
  rows: [
    `| ${policies.toLocaleString('en')} | ${BACKEND === 'postgres' ? 'PostgreSQL' : 'SQLite'} | ${med(steady)} ms | ${med(churn)} ms, ${Math.max(...churn)} ms | ${med(made).toLocaleString('en')} | ${historyRows.toLocaleString('en')} / ${changes.toLocaleString('en')} | ${matching.toLocaleString('en')} of ${ids.length.toLocaleString('en')} | ${med(written).toLocaleString('en')} | ${mb(rss)} MB |`,
  ],
});
process.disconnect?.();
