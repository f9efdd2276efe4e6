// Probes under a flood: /healthz latency while autocannon floods /metrics, then /readyz, of a
// daemon child process (`node --import tsx src/cli.ts serve`, loop off) holding POLICIES policies
// on SQLite and pointed at a real Prometheus. Loopback only, bounded in time (DURATION s a flood).
// Printed per flood: the flood's requests and latency, /healthz p50/p99/max from a worker thread
// polling every 20 ms (from 0.5 s before the flood to its end), and how many requests the flood caused at Prometheus (/-/ready: the
// metric-source readiness probe).
//
// Run: npm run bench:metrics-flood   (needs prometheus on PATH)
// Env: POLICIES (2000), CONNECTIONS (200), DURATION (10), TARGETS (metrics,readyz)
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import { spawnDaemon } from '../test/helpers/daemon-process.js';
import { startLatencyPoller } from '../test/helpers/latency-poller.js';
import { httpRequestCounts, startPrometheus } from '../test/helpers/prometheus.js';
import { benchPolicy } from './bench-policies.js';

const POLICIES = Number(process.env['POLICIES'] ?? 2000);
const CONNECTIONS = Number(process.env['CONNECTIONS'] ?? 200);
const DURATION = Number(process.env['DURATION'] ?? 10);
const TARGETS = (process.env['TARGETS'] ?? 'metrics,readyz').split(',').map((s) => s.trim());

/** /healthz every 20 ms, each probe bounded by 30 s; `worst` lists the three slowest as [start ms, latency ms]. */
function startHealthzPoller(url: string): { stop(): Promise<{ latencies: number[]; failed: number; worst: Array<[number, number]> }> } {
  const poller = startLatencyPoller(url, { everyMs: 20, timeoutMs: 30_000 });
  return {
    stop: async () => {
      const r = await poller.stop();
      const worst = r.latencies.map((l, i): [number, number] => [Math.round(r.starts[i] ?? 0), Math.round(l)]).sort((a, b) => b[1] - a[1]).slice(0, 3);
      return { latencies: r.latencies, failed: r.failed, worst };
    },
  };
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
const summary = (ms: number[]): string => {
  const s = [...ms].sort((a, b) => a - b);
  return `p50 ${pct(s, 50).toFixed(1)} ms, p99 ${pct(s, 99).toFixed(1)} ms, max ${(s.at(-1) ?? NaN).toFixed(1)} ms (${s.length} probes)`;
};

const cwd = await mkdtemp(join(tmpdir(), 'philotes-bench-flood-'));
const prom = await startPrometheus();
try {
  await mkdir(join(cwd, 'data'), { recursive: true });
  const t0 = performance.now();
  const storage = createSqliteStorage(join(cwd, 'data', 'philotes-scaler.db'));
  await storage.migrate();
  const now = new Date();
  for (let i = 0; i < POLICIES; i++) await storage.createPolicy(normalizePolicy(benchPolicy(i), { source: 'api', now }));
  await storage.close();
  console.log(`seeded ${POLICIES} policies in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const daemon = await spawnDaemon({ name: 'flood', cwd, env: { PHILOTES_SCALING_ENABLED: 'false', PHILOTES_SCALING_PROMETHEUS_URL: prom.url, LOG_LEVEL: 'warn' } });
  try {
    const idle = startHealthzPoller(`${daemon.url}/healthz`);
    await new Promise((r) => setTimeout(r, 3_000));
    console.log(`/healthz idle: ${summary((await idle.stop()).latencies)}`);
    for (const target of TARGETS) {
      const before = (await httpRequestCounts(prom.url))['/-/ready'] ?? 0;
      // The poller connects first: the probes measure the daemon, not the poller's connection set-up.
      const poller = startHealthzPoller(`${daemon.url}/healthz`);
      await new Promise((r) => setTimeout(r, 500));
      const flood = await autocannon({ url: `${daemon.url}/${target}`, connections: CONNECTIONS, duration: DURATION, timeout: 30 });
      const { latencies, failed, worst } = await poller.stop();
      await new Promise((r) => setTimeout(r, 1_500));
      const after = (await httpRequestCounts(prom.url))['/-/ready'] ?? 0;
      const codes = Object.entries(flood.statusCodeStats ?? {})
        .map(([code, s]) => `${code}: ${s.count}`)
        .join(', ');
      console.log(`flood of /${target}: ${CONNECTIONS} connections for ${DURATION} s, ${flood.requests.total} requests (${flood.requests.average.toFixed(0)}/s; ${codes}; ${flood.errors} errors, ${flood.timeouts} timeouts), its latency p99 ${flood.latency.p99} ms`);
      console.log(`  /healthz during it: ${summary(latencies)}${failed > 0 ? `, ${failed} failed` : ''}; slowest probes [start ms, latency ms]: ${JSON.stringify(worst)}`);
      console.log(`  requests to Prometheus /-/ready during it: ${after - before}`);
      console.log(`  daemon ${daemon.exit === undefined ? 'alive' : `exited ${JSON.stringify(daemon.exit)}`}`);
    }
  } finally {
    await daemon.destroy();
  }
} finally {
  await prom.stop();
  await rm(cwd, { recursive: true, force: true });
}
