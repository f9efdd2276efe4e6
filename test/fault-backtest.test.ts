// Safe under faults (item 8): backtests are bounded in memory (history held packed and capped,
// the timeline streamed; a request over the cap is a 422 naming the limit, before any fetch) and in
// concurrency (429 problem+json with Retry-After beyond max_concurrent_backtests); a daemon with a
// 512 MiB memory budget (--max-old-space-size=384) survives the largest requests; every 5xx is
// problem+json and logged.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { BacktestLimiter, isSlot } from '../src/backtest/backtest-limiter.js';
import { registerBacktestRoutes } from '../src/backtest/backtest-controller.js';
import { MAX_BACKTEST_SAMPLES, backtestSize, checkBacktestSize, parseBacktestRequest, runBacktest } from '../src/backtest/backtest-service.js';
import { ScalerError } from '../src/errors.js';
import type { MetricSource, Sample } from '../src/plugins/api.js';
import { IsolatedMetricSource } from '../src/plugins/plugin-manager.js';
import type { PolicyInput } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { createApp } from '../src/api/app.js';
import { listen } from '../src/api/http-server.js';
import { PolicyService } from '../src/policy/policy-service.js';
import { createValidationContext } from '../src/policy/validation-context.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import { DEFAULT_TEST_CONFIG } from './helpers/app.js';
import { spawnDaemon } from './helpers/daemon-process.js';
import { startPrometheus } from './helpers/prometheus.js';

const END = Date.parse('2026-01-01T00:00:00Z');

/** A policy with `rules` rules over distinct queries (values cycle 0..3599 over an hour). */
function policyWith(rules: number, metric = (i: number) => `vector((time() + ${i * 97}) % 3600)`): PolicyInput {
  const up: NonNullable<PolicyInput['scale_up_rules']> = [];
  const down: NonNullable<PolicyInput['scale_down_rules']> = [];
  for (let i = 0; i < rules; i++) {
    if (i % 2 === 0) up.push({ metric: metric(i), operator: 'gt', threshold: 3000, duration: '5m', scale_by: 1 });
    else down.push({ metric: metric(i), operator: 'lt', threshold: 1200, duration: '10m', scale_by: -1 });
  }
  return { name: `bt-${rules}`, target_type: 'cdc-worker', min_replicas: 1, max_replicas: 50, cooldown_seconds: 120, scale_up_rules: up, scale_down_rules: down };
}

/** `steps` one-minute evaluations ending at END. */
function range(steps: number): { from: string; to: string; step: string } {
  return { from: new Date(END - (steps - 1) * 60_000).toISOString(), to: new Date(END).toISOString(), step: '1m' };
}

/** A range-capable source computing values from time; `gate` (when set) holds every request until opened. */
function syntheticSource() {
  let calls = 0;
  let gate: Promise<void> | undefined;
  let open: () => void = () => undefined;
  const impl: MetricSource = {
    async instantQuery(q) {
      return { t: q.time.getTime() / 1000, v: 1 };
    },
    async rangeQuery(q) {
      calls++;
      if (gate !== undefined) await gate;
      const out: Sample[] = [];
      for (let s = q.start.getTime() / 1000; s <= q.end.getTime() / 1000; s += q.stepSeconds) out.push({ t: s, v: s % 3600 });
      return out;
    },
  };
  return {
    source: new IsolatedMetricSource('prometheus', impl, 30_000),
    get calls() {
      return calls;
    },
    hold() {
      gate = new Promise((resolve) => (open = resolve));
    },
    release() {
      gate = undefined;
      open();
    },
  };
}

/** The API (createApp, as main builds it) on a fresh SQLite file, with the backtest routes; `logged` collects log lines. */
async function appWith(source: IsolatedMetricSource, opts: { maxConcurrent?: number; chart?: () => string } = {}): Promise<{ app: { api: string; close(): Promise<void> }; logged: Array<Record<string, unknown>> }> {
  const logged: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logged.push(JSON.parse(line) as Record<string, unknown>) });
  const dir = await mkdtemp(join(tmpdir(), 'philotes-bt-fault-'));
  const storage = createSqliteStorage(join(dir, 'scaler.db'));
  await storage.migrate();
  const policies = new PolicyService({ storage, validation: createValidationContext(DEFAULT_TEST_CONFIG), defaultCooldown: 300 });
  const app = createApp({
    logger,
    storage,
    policies,
    extraRoutes: [
      (scaling) =>
        registerBacktestRoutes(scaling, {
          sources: new Map([['prometheus', source]]),
          defaultSource: 'prometheus',
          defaultCooldown: 300,
          prices: {},
          policies,
          limiter: new BacktestLimiter({ maxConcurrent: opts.maxConcurrent ?? 2 }),
          logger,
          ...(opts.chart !== undefined ? { chart: opts.chart } : {}),
        }),
      (scaling) => {
        // A body that cannot be serialised: Koa's own respond() would answer text/plain, unlogged.
        scaling.get('/unserialisable', (ctx) => {
          ctx.body = { n: 1n };
        });
      },
    ],
  });
  const server = await listen(app, { port: 0, host: '127.0.0.1', logger });
  const { port } = server.address() as AddressInfo;
  return {
    logged,
    app: {
      api: `http://127.0.0.1:${port}/api/v1/scaling`,
      async close() {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await storage.close();
        await rm(dir, { recursive: true, force: true });
      },
    },
  };
}

const post = (url: string, body: unknown, signal?: AbortSignal) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...(signal !== undefined ? { signal } : {}) });

t.test('a backtest too large to hold is a 422 naming the limit, before anything is fetched', async (t) => {
  const syn = syntheticSource();
  const { app } = await appWith(syn.source);
  t.teardown(() => app.close());
  const res = await post(`${app.api}/backtest`, { policy: policyWith(10), ...range(500_000) });
  t.equal(res.status, 422);
  t.match(res.headers.get('content-type'), /application\/problem\+json/);
  const problem = (await res.json()) as { errors: Array<{ field: string; message: string }> };
  t.equal(problem.errors[0]?.field, '/step');
  t.match(problem.errors[0]?.message, /needs 5,000,\d{3} points of history \(10 distinct rule queries over 500,000 evaluations\), more than the limit of 2,000,000/);
  t.equal(syn.calls, 0, 'nothing was fetched');

  // The same policy over a range that fits is answered.
  const size = backtestSize(normalizePolicy(policyWith(10), { source: 'api', now: new Date() }), parseBacktestRequest(range(1000)));
  t.same(size, { evaluations: 1000, series: 10, samples: 5 * 1005 + 5 * 1010 });
  t.equal((await post(`${app.api}/backtest`, { policy: policyWith(10), ...range(1000) })).status, 200);
  // The longest range the step limit allows, with 3 distinct queries, fits.
  const three = normalizePolicy(policyWith(3), { source: 'api', now: new Date() });
  t.ok(checkBacktestSize(three, parseBacktestRequest(range(500_000))).samples <= MAX_BACKTEST_SAMPLES, '500,000 steps of 3 queries fit');
  t.throws(() => checkBacktestSize(three, parseBacktestRequest(range(60_000)), 'prometheus', { chart: true }), ScalerError, 'a chart has a smaller bound (it is drawn in memory)');
});

t.test('the streamed JSON answer is the same backtest as the in-memory one', async (t) => {
  const syn = syntheticSource();
  const { app } = await appWith(syn.source);
  t.teardown(() => app.close());
  const input = policyWith(3);
  const res = await post(`${app.api}/backtest`, { policy: input, ...range(3000) });
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /application\/json/);
  const streamed = (await res.json()) as { policy: { name: string }; requests: number; timeline: Array<{ action: string; reason_code: string; replicas: number; values: Record<string, number | null> }>; summary: Record<string, unknown> };
  const policy = normalizePolicy(input, { source: 'backtest', now: new Date() });
  const memory = await runBacktest(policy, parseBacktestRequest(range(3000)), { sources: new Map([['prometheus', syn.source]]), defaultSource: 'prometheus', defaultCooldown: 300, prices: {} });
  t.equal(streamed.timeline.length, 3000);
  t.same(streamed.summary, memory.summary, 'same summary');
  t.same(
    streamed.timeline.map((r) => `${r.action}:${r.reason_code}:${r.replicas}:${Object.values(r.values).join('/')}`),
    memory.timeline.map((r) => `${r.action}:${r.reason_code}:${r.replicas}:${Object.values(r.values).join('/')}`),
    'same timeline',
  );
  t.ok(memory.summary.actions['scale_up'] !== undefined && memory.summary.actions['scale_down'] !== undefined, 'a timeline that acts');
  t.match(streamed, { policy: { name: 'bt-3' }, requests: 3 });
});

t.test('beyond max_concurrent_backtests: 429 problem+json with Retry-After; a slot frees when a backtest ends or its client leaves', async (t) => {
  const syn = syntheticSource();
  const { app } = await appWith(syn.source, { maxConcurrent: 2 });
  t.teardown(() => app.close());
  syn.hold();
  const body = { policy: policyWith(1), ...range(2000) };
  const running = [post(`${app.api}/backtest`, body), post(`${app.api}/backtest`, body)];
  await new Promise((r) => setTimeout(r, 300));
  const refused = await post(`${app.api}/backtest`, body);
  t.equal(refused.status, 429);
  t.match(refused.headers.get('content-type'), /application\/problem\+json/);
  t.match(refused.headers.get('retry-after'), /^\d+$/, `Retry-After: ${refused.headers.get('retry-after')}`);
  t.match(await refused.json(), { status: 429, code: 'TOO_MANY_REQUESTS', detail: /2 backtest\(s\) are running.*max_concurrent_backtests: 2/ });
  // Validation comes first: a bad request is still a 422, not a 429.
  t.equal((await post(`${app.api}/backtest`, { policy: policyWith(1), from: 'x' })).status, 422);
  syn.release();
  for (const r of await Promise.all(running)) {
    t.equal(r.status, 200);
    t.equal(((await r.json()) as { timeline: unknown[] }).timeline.length, 2000);
  }
  const again = await post(`${app.api}/backtest`, body);
  t.equal(again.status, 200, 'slots are free again');
  // Read to the end: a backtest holds its slot until its answer is written.
  await again.arrayBuffer();

  // A client that leaves mid-answer frees its slot: its replay stops.
  const long = { policy: policyWith(3), ...range(400_000) };
  for (let i = 0; i < 2; i++) {
    const ac = new AbortController();
    const res = await post(`${app.api}/backtest`, long, ac.signal);
    t.equal(res.status, 200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    ac.abort();
  }
  const after = await (async () => {
    for (let i = 0; i < 50; i++) {
      const r = await post(`${app.api}/backtest`, body);
      if (r.status !== 429) return r;
      await r.arrayBuffer();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return undefined;
  })();
  t.equal(after?.status, 200, 'both slots freed after their clients left');
});

t.test('a source answering more than one value per step cannot grow a backtest past its plan', async (t) => {
  const impl: MetricSource = {
    async instantQuery(q) {
      return { t: q.time.getTime() / 1000, v: 1 };
    },
    async rangeQuery(q) {
      const out: Sample[] = [];
      // Raw samples every 15 s, whatever step was asked for.
      for (let s = q.start.getTime() / 1000; s <= q.end.getTime() / 1000; s += 15) out.push({ t: s, v: 1 });
      return out;
    },
  };
  const policy = normalizePolicy(policyWith(1), { source: 'api', now: new Date() });
  const result = await runBacktest(policy, parseBacktestRequest(range(100)), { sources: new Map([['prometheus', new IsolatedMetricSource('prometheus', impl, 5000)]]), defaultSource: 'prometheus', defaultCooldown: 300, prices: {} });
  t.equal(result.summary.reason_codes['metric_error'], 100, 'every evaluation records a metric error');
  t.match(result.timeline[0]?.reason, /more than one value per step/);
});

t.test('limiter: many small backtests at once, few large ones (a shared budget of history)', async (t) => {
  const limiter = new BacktestLimiter({ maxConcurrent: 64 });
  t.equal(limiter.sampleBudget, 2 * MAX_BACKTEST_SAMPLES);
  const small = Array.from({ length: 64 }, () => limiter.acquire(1000));
  t.ok(small.every(isSlot), '64 small ones run');
  t.notOk(isSlot(limiter.acquire(1)), 'the 65th is refused');
  for (const s of small) if (isSlot(s)) s.release();
  const big1 = limiter.acquire(MAX_BACKTEST_SAMPLES);
  const big2 = limiter.acquire(MAX_BACKTEST_SAMPLES);
  const big3 = limiter.acquire(MAX_BACKTEST_SAMPLES);
  t.ok(isSlot(big1) && isSlot(big2));
  t.match(big3, { reason: /would pass the 4,000,000 the daemon allows at once/, retryAfterSeconds: Number });
  if (isSlot(big1)) {
    big1.release();
    big1.release();
  }
  t.equal(limiter.running, 1, 'release is idempotent');
  t.ok(isSlot(limiter.acquire(MAX_BACKTEST_SAMPLES)), 'room again');
});

t.test('every 5xx is problem+json and logged (a chart that throws, a body that cannot be serialised)', async (t) => {
  const syn = syntheticSource();
  const { app, logged } = await appWith(syn.source, {
    chart: () => {
      throw new Error('chart exploded');
    },
  });
  t.teardown(() => app.close());
  const res = await post(`${app.api}/backtest?format=svg`, { policy: policyWith(1), ...range(100) });
  t.equal(res.status, 500);
  t.match(res.headers.get('content-type'), /application\/problem\+json/);
  t.match(await res.json(), { status: 500, code: 'INTERNAL', detail: /the error is in its log/ });
  t.ok(logged.some((l) => l['level'] === 50 && /unhandled error/.test(String(l['msg'])) && String(JSON.stringify(l['err'])).includes('chart exploded')), 'the error is logged with its cause');
  t.ok(logged.some((l) => l['level'] === 50 && l['msg'] === 'request failed' && l['status'] === 500), 'and the request line');

  const bad = await fetch(`${app.api}/unserialisable`);
  t.equal(bad.status, 500);
  t.match(bad.headers.get('content-type'), /application\/problem\+json/);
  t.match(await bad.json(), { code: 'INTERNAL' });
  t.ok(logged.some((l) => l['level'] === 50 && String(JSON.stringify(l['err'])).includes('BigInt')), 'the serialisation error is logged');
});

t.test('a daemon with a 512 MiB budget (--max-old-space-size=384) survives the largest backtests, at once', async (t) => {
  const prom = await startPrometheus();
  t.teardown(() => prom.stop());
  const d = await spawnDaemon({
    name: 'bt-heap',
    env: { PHILOTES_SCALING_ENABLED: 'false', PHILOTES_SCALING_PROMETHEUS_URL: prom.url, NODE_OPTIONS: '--max-old-space-size=384' },
  });
  t.teardown(() => d.destroy());
  // The most history a backtest may hold: 10 distinct queries over ~200,000 one-minute steps.
  const ten = normalizePolicy(policyWith(10), { source: 'api', now: new Date() });
  let steps = 100_000;
  while (backtestSize(ten, parseBacktestRequest(range(steps + 1000))).samples <= MAX_BACKTEST_SAMPLES) steps += 1000;
  const largest = { policy: policyWith(10), ...range(steps) };
  const healthz: number[] = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const t0 = performance.now();
      const r = await fetch(`${d.url}/healthz`, { signal: AbortSignal.timeout(20_000) });
      await r.arrayBuffer();
      healthz.push(performance.now() - t0);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  // Two of the largest (the most that run at once), a third (429), one over the limit (422), all at once.
  const answers = await Promise.all(
    [largest, largest, largest, { policy: policyWith(10), ...range(500_000) }].map(async (body) => {
      const ac = new AbortController();
      const res = await post(`${d.api}/backtest`, body, ac.signal);
      let bytes = 0;
      if (res.status === 200) {
        // Its history is all fetched and held by the first byte; 40 MB of timeline later, leave.
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          bytes += chunk.byteLength;
          if (bytes > 40e6) break;
        }
        ac.abort();
      } else await res.arrayBuffer();
      return { status: res.status, bytes };
    }),
  );
  polling = false;
  await poller;
  t.same(answers.map((a) => a.status).sort(), [200, 200, 422, 429]);
  const status = await readFile(`/proc/${d.pid}/status`, 'utf8');
  const peakMb = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
  t.equal(d.exit, undefined, 'the daemon is alive');
  t.ok(peakMb < 512, `peak RSS ${peakMb.toFixed(0)} MiB, under 512 MiB`);
  const sorted = [...healthz].sort((a, b) => a - b);
  t.ok(healthz.length > 5, `/healthz answered throughout (${healthz.length} probes, max ${Math.round(sorted.at(-1) ?? 0)} ms)`);
  t.equal((await fetch(`${d.url}/healthz`)).status, 200);
  t.comment(`two backtests of ${steps} steps x 10 queries at once under --max-old-space-size=384: peak RSS ${peakMb.toFixed(0)} MiB; /healthz p50 ${Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0)} ms, max ${Math.round(sorted.at(-1) ?? 0)} ms`);
});
