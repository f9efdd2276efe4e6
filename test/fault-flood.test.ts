// Safe under faults (item 9): /metrics and /readyz never query storage or a metric source per
// request. Values are kept in memory by background tasks (policy counts on change and every few
// seconds, readiness checks every 2 s), so a flood of either cannot stall the daemon; /readyz
// still names a database known to be unusable (storage.fault()) at once.
import { mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { loadConfig, type ScalerConfig } from '../src/config/config.js';
import { startDaemon, type Daemon } from '../src/main.js';
import type { PolicyInput } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import type { Storage } from '../src/storage/storage.js';
import { spawnDaemon, waitFor } from './helpers/daemon-process.js';
import { startLatencyPoller } from './helpers/latency-poller.js';
import { listenLocal } from './helpers/prometheus.js';

/** A stand-in Prometheus that answers /-/ready and counts the requests. */
async function fakePrometheus(t: Test): Promise<{ url: string; readonly ready: number }> {
  let ready = 0;
  const server = createServer((req, res) => {
    if (req.url === '/-/ready') ready++;
    res.writeHead(200, { 'content-type': 'text/plain' }).end('Prometheus Server is Ready.\n');
  });
  const port = await listenLocal(server);
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return {
    url: `http://127.0.0.1:${port}`,
    get ready() {
      return ready;
    },
  };
}

async function daemon(t: Test, flags: Partial<Record<keyof ScalerConfig, unknown>>): Promise<{ d: Daemon; base: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'ps-flood-'));
  mkdirSync(join(dir, 'policies'));
  const config = loadConfig({
    env: {},
    cwd: dir,
    flags: { port: 0, host: '127.0.0.1', database_path: join(dir, 'db.sqlite'), policy_dirs: [join(dir, 'policies')], enabled: false, ...flags },
  });
  const d = await startDaemon(config, pino({ level: 'silent' }));
  t.teardown(async () => {
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { d, base: `http://127.0.0.1:${d.port}`, dir };
}

/** Counts calls of the storage methods a probe could make. */
function countCalls(storage: Storage): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of ['listPolicies', 'ping', 'appliedMigrations', 'policiesRevision', 'getPolicies', 'listEnabledPolicies'] as const) {
    const original = (storage[name] as (...args: unknown[]) => unknown).bind(storage);
    counts[name] = 0;
    (storage as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
      counts[name] = (counts[name] ?? 0) + 1;
      return original(...args);
    };
  }
  return counts;
}

/** Sends `n` GETs of `url`, `concurrency` at a time; answers the statuses seen. */
async function burst(url: string, n: number, concurrency: number): Promise<Record<number, number>> {
  const statuses: Record<number, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        const res = await fetch(url);
        await res.arrayBuffer();
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
      }
    }),
  );
  return statuses;
}

const policy = (name: string): PolicyInput => ({ name, target_type: 'cdc-worker', min_replicas: 1, max_replicas: 2, scale_up_rules: [{ metric: 'up', operator: 'gt', threshold: 1, scale_by: 1 }] });
const gauge = (text: string, labels: string): number | undefined => {
  const m = new RegExp(`^philotes_scaling_policies\\{${labels}\\} (\\d+)$`, 'm').exec(text);
  return m === null ? undefined : Number(m[1]);
};

t.test('a flood of /metrics and /readyz reaches neither storage nor Prometheus', async (t) => {
  const prom = await fakePrometheus(t);
  const { d, base } = await daemon(t, { prometheus_url: prom.url });
  for (let i = 0; i < 20; i++) {
    const res = await fetch(`${base}/api/v1/scaling/policies`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(policy(`flood-${i}`)) });
    t.equal(res.status, 201);
  }
  const calls = countCalls(d.storage);
  const readyBefore = prom.ready;
  const started = performance.now();
  t.same(await burst(`${base}/metrics`, 500, 50), { 200: 500 }, '500 scrapes answered');
  t.same(await burst(`${base}/readyz`, 500, 50), { 200: 500 }, '500 readiness probes answered');
  const seconds = (performance.now() - started) / 1000;
  // Background work only: readiness checks every 2 s, a policies revision check every 5 s.
  const rounds = Math.ceil(seconds / 2) + 1;
  t.equal(calls['listPolicies'], 0, 'no policy listing (nothing changed)');
  t.ok((calls['ping'] ?? 0) <= rounds, `storage pinged ${calls['ping']} times in ${seconds.toFixed(1)} s (background rounds: at most ${rounds}), not per request`);
  t.ok((calls['policiesRevision'] ?? 0) <= Math.ceil(seconds / 5) + 1, `policies revision read ${calls['policiesRevision']} times`);
  t.ok(prom.ready - readyBefore <= rounds, `Prometheus asked ${prom.ready - readyBefore} times, not per request`);
  t.comment(`1000 probes in ${seconds.toFixed(1)} s: storage ${JSON.stringify(calls)}, Prometheus /-/ready ${prom.ready - readyBefore}`);

  const text = await (await fetch(`${base}/metrics`)).text();
  t.equal(gauge(text, 'source="api",enabled="true"'), 20, 'the policy count is there');
});

t.test('the policy counts follow changes: at once for writes through the API, within seconds for policy files', async (t) => {
  const prom = await fakePrometheus(t);
  const { base, dir } = await daemon(t, { prometheus_url: prom.url });
  const scrape = async (): Promise<string> => (await fetch(`${base}/metrics`)).text();
  t.equal(gauge(await scrape(), 'source="api",enabled="true"'), undefined, 'no policies yet');
  const created = await fetch(`${base}/api/v1/scaling/policies`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(policy('counted')) });
  t.equal(created.status, 201);
  t.equal(gauge(await scrape(), 'source="api",enabled="true"'), 1, 'the next scrape counts the new policy');
  t.equal((await fetch(`${base}/api/v1/scaling/policies/counted/disable`, { method: 'POST' })).status, 200);
  const disabled = await scrape();
  t.equal(gauge(disabled, 'source="api",enabled="false"'), 1, 'and sees it disabled');
  t.equal(gauge(disabled, 'source="api",enabled="true"'), undefined);
  writeFileSync(join(dir, 'policies', 'from-file.yaml'), `name: from-file\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: 2\nscale_up_rules:\n  - { metric: up, operator: gt, threshold: 1, scale_by: 1 }\n`);
  const seen = await waitFor('the file policy counted', async () => gauge(await scrape(), 'source="file",enabled="true"'), 12_000, 200);
  t.equal(seen, 1, 'a policy file is counted within seconds');
});

t.test('/readyz names a database known to be unusable at once, without asking it', async (t) => {
  const prom = await fakePrometheus(t);
  const { d, base, dir } = await daemon(t, { prometheus_url: prom.url });
  const ready = await fetch(`${base}/readyz`);
  t.equal(ready.status, 200);
  unlinkSync(join(dir, 'db.sqlite'));
  const started = performance.now();
  const down = await waitFor(
    '/readyz to report the deleted database',
    async () => {
      const r = await fetch(`${base}/readyz`);
      return r.status === 503 ? ((await r.json()) as { status: string; checks: { storage: Record<string, unknown> } }) : undefined;
    },
    5_000,
    20,
  );
  t.ok(d.storage.fault() !== undefined, 'storage.fault() names it');
  t.match(down, { status: 'not_ready', checks: { storage: { ok: false, critical: true, kind: 'sqlite', error: /the sqlite database is unusable: .*deleted/, fault: String } } });
  t.comment(`/readyz 503 ${Math.round(performance.now() - started)} ms after the file was deleted: ${JSON.stringify(down.checks.storage)}`);
});


t.test('/healthz stays quick while 200 connections flood /metrics and /readyz (a daemon with 1,000 policies)', async (t) => {
  const prom = await fakePrometheus(t);
  const cwd = await mkdtemp(join(tmpdir(), 'ps-flood-daemon-'));
  t.teardown(() => rm(cwd, { recursive: true, force: true }));
  await mkdir(join(cwd, 'data'), { recursive: true });
  const storage = createSqliteStorage(join(cwd, 'data', 'philotes-scaler.db'));
  await storage.migrate();
  const now = new Date();
  for (let i = 0; i < 1000; i++) await storage.createPolicy(normalizePolicy(policy(`seeded-${i}`), { source: 'api', now }));
  await storage.close();
  const d = await spawnDaemon({ name: 'flood', cwd, env: { PHILOTES_SCALING_ENABLED: 'false', PHILOTES_SCALING_PROMETHEUS_URL: prom.url, LOG_LEVEL: 'warn' } });
  t.teardown(() => d.destroy());
  for (const target of ['metrics', 'readyz']) {
    const readyBefore = prom.ready;
    const poller = startLatencyPoller(`${d.url}/healthz`, { everyMs: 20, timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 500));
    const flood = await autocannon({ url: `${d.url}/${target}`, connections: 200, duration: 4, timeout: 20 });
    const { latencies, failed } = await poller.stop();
    const sorted = [...latencies].sort((a, b) => a - b);
    const p99 = sorted[Math.floor(sorted.length * 0.99)] ?? Infinity;
    const max = sorted.at(-1) ?? Infinity;
    t.equal(failed, 0, `every /healthz probe answered during the /${target} flood`);
    t.equal(flood.non2xx, 0, `the flood's ${flood.requests.total} requests all answered 200`);
    // Before: a scrape listed every policy; /healthz waited more than 10 s behind the flood.
    t.ok(p99 < 2_000, `/healthz p99 ${Math.round(p99)} ms during the /${target} flood (max ${Math.round(max)} ms)`);
    t.ok(prom.ready - readyBefore <= 6, `Prometheus asked ${prom.ready - readyBefore} times during ${flood.requests.total} /${target} requests`);
    t.comment(`/${target} flood: ${flood.requests.total} requests in 4 s (p99 ${flood.latency.p99} ms); /healthz p50 ${Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0)} ms, p99 ${Math.round(p99)} ms, max ${Math.round(max)} ms; Prometheus /-/ready ${prom.ready - readyBefore}`);
  }
  t.equal(d.exit, undefined, 'the daemon is alive');
});
