// The loop's own work, without HTTP: N enabled policies (2 up rules + 1 down rule each, over 200
// distinct queries) evaluated by the real manager on SQLite, with an in-process metric source
// (answers after 1 ms) and executor behind the same plugin isolation. Prints the cycle's wall
// time, CPU time and garbage-collection time (median and best of the measured cycles). Used to
// find what the evaluation itself costs; bench:cycle measures it against a real Prometheus.
// Run: npm run bench:evaluation   (POLICIES=10000, CYCLES=12, CPU_PROF=file writes a profile of the last cycle)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { pino } from 'pino';
import type * as ManagerModule from '../src/engine/manager.js';
import type * as PluginManagerModule from '../src/plugins/plugin-manager.js';
import type * as NormalizeModule from '../src/policy/policy-normalize.js';
import type * as SqliteModule from '../src/storage/sqlite-storage.js';
import type { Sample } from '../src/plugins/api.js';
import { QUERIES, benchPolicy } from './bench-policies.js';

// The build, as npm start runs it (BENCH_FROM_SOURCE=1 for the TypeScript sources).
const FROM = process.env['BENCH_FROM_SOURCE'] === '1' ? '../src' : '../dist/src';
const { ScalingManager } = (await import(`${FROM}/engine/manager.js`)) as typeof ManagerModule;
const { IsolatedExecutor, IsolatedMetricSource } = (await import(`${FROM}/plugins/plugin-manager.js`)) as typeof PluginManagerModule;
const { normalizePolicy } = (await import(`${FROM}/policy/policy-normalize.js`)) as typeof NormalizeModule;
const { createSqliteStorage } = (await import(`${FROM}/storage/sqlite-storage.js`)) as typeof SqliteModule;

const N = Number(process.env['POLICIES'] ?? 10_000);
const CYCLES = Number(process.env['CYCLES'] ?? 12);

let gcMs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMs += e.duration;
}).observe({ entryTypes: ['gc'] });

const dir = mkdtempSync(join(tmpdir(), 'ps-bench-evaluation-'));
const storage = createSqliteStorage(join(dir, 'db.sqlite'));
await storage.migrate();
for (let i = 0; i < N; i++) {
  await storage.createPolicy(normalizePolicy(benchPolicy(i), { source: 'api', now: new Date() }));
}

const source = new IsolatedMetricSource(
  'prometheus',
  {
    async instantQuery(q) {
      return { t: q.time.getTime() / 1000, v: 20 };
    },
    async rangeQuery(q) {
      await new Promise((r) => setTimeout(r, 1));
      const out: Sample[] = [];
      for (let t = Math.ceil(q.start.getTime() / 1000 / q.stepSeconds) * q.stepSeconds; t <= q.end.getTime() / 1000; t += q.stepSeconds) out.push({ t, v: 20 });
      return out;
    },
  },
  30_000,
);
const replicas = new Map<string, number>();
const executor = new IsolatedExecutor(
  'keda',
  {
    targetTypes: ['cdc-worker'],
    async getCurrentReplicas(t) {
      return replicas.get(t.policyName) ?? null;
    },
    // Like the bundled keda executor: one call for every target of the cycle.
    async getCurrentReplicasMany(targets) {
      return new Map(targets.map((t) => [t.policyId, replicas.get(t.policyName) ?? null]));
    },
    async scale(t, n) {
      replicas.set(t.policyName, n);
    },
  },
  30_000,
);
const manager = new ScalingManager({
  storage,
  logger: pino({ level: 'silent' }),
  sources: new Map([['prometheus', source]]),
  executors: new Map([['keda', executor]]),
  config: { evaluation_interval_ms: 30_000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 16, executors: { 'cdc-worker': 'keda' }, prices: {} },
});

// Two warm-up cycles: the first writes every state row.
await manager.runCycle();
await manager.runCycle();
const session = process.env['CPU_PROF'] !== undefined ? new Session() : undefined;
if (session !== undefined) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
}
const walls: number[] = [];
const cpu: number[] = [];
const gc: number[] = [];
for (let c = 0; c < CYCLES; c++) {
  const last = c === CYCLES - 1;
  if (last) await session?.post('Profiler.start');
  gcMs = 0;
  const cpu0 = process.cpuUsage();
  const report = await manager.runCycle();
  const used = process.cpuUsage(cpu0);
  if (last && session !== undefined) writeFileSync(process.env['CPU_PROF'] as string, JSON.stringify((await session.post('Profiler.stop')).profile));
  await new Promise((r) => setImmediate(r)); // let the GC observer report
  walls.push(report.duration_ms);
  cpu.push((used.user + used.system) / 1000);
  gc.push(gcMs);
  if (report.policies !== N || report.errors > 0) throw new Error(`cycle evaluated ${report.policies} policies with ${report.errors} errors`);
}
await storage.close();
rmSync(dir, { recursive: true, force: true });
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1] as number;
console.log(`evaluation only: ${N.toLocaleString('en')} policies, ${QUERIES} distinct queries, ${CYCLES} cycles after 2 warm-up cycles`);
console.log(`cycle wall time: median ${med(walls).toFixed(0)} ms, best ${Math.min(...walls).toFixed(0)} ms`);
console.log(`CPU time: median ${med(cpu).toFixed(0)} ms; garbage collection: median ${med(gc).toFixed(0)} ms`);
