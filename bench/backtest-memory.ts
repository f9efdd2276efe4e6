// Memory and responsiveness of the daemon under the worst backtest requests it accepts.
//
// A real Prometheus (no data needed: the rules query `vector(time() % N)`, which Prometheus
// evaluates at every step of any range) and a daemon child process (`node --import tsx
// src/cli.ts serve`, the loop off). For each scenario, a fresh daemon gets the largest backtest
// it accepts (the largest range at a 1-minute step that its own limits let through), alone or
// many at once, while /healthz is polled every 50 ms. Printed: the answers' statuses, the
// daemon's peak RSS (VmHWM from /proc), /healthz latency (p99, max) during the requests, and
// whether the daemon survived.
//
// Run: npm run bench:backtest-memory   (needs prometheus on PATH; Linux, for /proc)
// Env: HEAP_MB (the daemon's --max-old-space-size; unset: Node's default), SCENARIOS
//      (comma-separated: one-3,one-10,ten-3; default all), STEPS (force a step count instead of
//      the largest accepted one).
import { readFile } from 'node:fs/promises';
import * as service from '../src/backtest/backtest-service.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import type { PolicyInput } from '../src/policy/policy-model.js';
import { spawnDaemon, type DaemonProcess } from '../test/helpers/daemon-process.js';
import { startLatencyPoller } from '../test/helpers/latency-poller.js';
import { startPrometheus } from '../test/helpers/prometheus.js';

const HEAP_MB = process.env['HEAP_MB'];
const ONLY = process.env['SCENARIOS']?.split(',').map((s) => s.trim());
const FORCED_STEPS = process.env['STEPS'] === undefined ? undefined : Number(process.env['STEPS']);
const STEP = 60;
const END = Date.parse('2026-01-01T00:00:00Z') / 1000;

/** An inline policy with `rules` rules over distinct synthetic series (values 0..3599 a cycle). */
function policyWith(rules: number): PolicyInput {
  const up: NonNullable<PolicyInput['scale_up_rules']> = [];
  const down: NonNullable<PolicyInput['scale_down_rules']> = [];
  for (let i = 0; i < rules; i++) {
    const metric = `vector((time() + ${i * 97}) % 3600)`;
    if (i % 2 === 0) up.push({ metric, operator: 'gt', threshold: 3000, duration: '5m', scale_by: 1 });
    else down.push({ metric, operator: 'lt', threshold: 600, duration: '10m', scale_by: -1 });
  }
  return { name: `bench-memory-${rules}`, target_type: 'cdc-worker', min_replicas: 1, max_replicas: 50, cooldown_seconds: 120, scale_up_rules: up, scale_down_rules: down };
}

function rangeOf(steps: number): { from: string; to: string; step: string } {
  return { from: new Date((END - (steps - 1) * STEP) * 1000).toISOString(), to: new Date(END * 1000).toISOString(), step: `${STEP}s` };
}

/** Whether the daemon's own checks (this checkout's) accept `steps` evaluations of `input`. */
function accepted(input: PolicyInput, steps: number): boolean {
  const policy = normalizePolicy(input, { source: 'backtest', now: new Date() });
  try {
    const req = service.parseBacktestRequest(rangeOf(steps));
    const check = (service as Record<string, unknown>)['checkBacktestSize'];
    if (typeof check === 'function') (check as (p: unknown, r: unknown) => void)(policy, req);
    return true;
  } catch {
    return false;
  }
}

/** The largest number of 1-minute steps the daemon accepts for this policy (binary search). */
function largestAccepted(input: PolicyInput): number {
  let lo = 1;
  let hi = 10_000_000;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (accepted(input, mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

async function status(pid: number): Promise<{ rssMb: number; peakMb: number } | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
    return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
  } catch {
    return undefined;
  }
}

/** /healthz every 50 ms, each probe bounded by 30 s; failures keep the old field name of this script. */
function startHealthzPoller(url: string): { stop(): Promise<{ latencies: number[]; failedProbes: number; reasons: string[] }> } {
  const poller = startLatencyPoller(url, { everyMs: 50, timeoutMs: 30_000 });
  return { stop: async () => ((r) => ({ latencies: r.latencies, failedProbes: r.failed, reasons: r.reasons }))(await poller.stop()) };
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;

async function scenario(name: string, promUrl: string, rules: number, parallel: number): Promise<void> {
  const input = policyWith(rules);
  const steps = FORCED_STEPS ?? largestAccepted(input);
  const env: Record<string, string> = { PHILOTES_SCALING_ENABLED: 'false', PHILOTES_SCALING_PROMETHEUS_URL: promUrl, LOG_LEVEL: 'warn' };
  if (HEAP_MB !== undefined) env['NODE_OPTIONS'] = `--max-old-space-size=${HEAP_MB}`;
  const daemon: DaemonProcess = await spawnDaemon({ name: `bench-${name}`, env });
  try {
    const base = await status(daemon.pid);
    // /healthz is polled from a worker thread: this thread's own work (reading a 265 MB answer)
    // must not count as the daemon's latency.
    const poller = startHealthzPoller(`${daemon.url}/healthz`);
    const body = JSON.stringify({ policy: input, ...rangeOf(steps) });
    const t0 = performance.now();
    const answers = await Promise.all(
      Array.from({ length: parallel }, async () => {
        try {
          const res = await fetch(`${daemon.api}/backtest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(300_000) });
          let bytes = 0;
          for await (const chunk of res.body ?? []) bytes += (chunk as Uint8Array).byteLength;
          return { status: res.status, type: res.headers.get('content-type') ?? '', bytes, ms: performance.now() - t0 };
        } catch (err) {
          return { status: 0, type: (err as Error).message, bytes: 0, ms: performance.now() - t0 };
        }
      }),
    );
    const { latencies, failedProbes, reasons } = await poller.stop();
    const peak = await status(daemon.pid);
    const sorted = [...latencies].sort((a, b) => a - b);
    const byStatus: Record<string, number> = {};
    for (const a of answers) byStatus[`${a.status} ${a.type.split(';')[0]}`] = (byStatus[`${a.status} ${a.type.split(';')[0]}`] ?? 0) + 1;
    const ok = answers.filter((a) => a.status === 200);
    console.log(`${name}: ${parallel} x POST /backtest, ${rules} rule(s), ${steps} evaluations at a 1m step${HEAP_MB !== undefined ? `, --max-old-space-size=${HEAP_MB}` : ''}`);
    console.log(`  answers: ${JSON.stringify(byStatus)}; slowest ${(Math.max(...answers.map((a) => a.ms)) / 1000).toFixed(1)} s${ok.length > 0 ? `; 200 body ${(ok[0]!.bytes / 1e6).toFixed(1)} MB` : ''}`);
    console.log(`  daemon RSS: ${base?.rssMb.toFixed(0)} MB at rest, peak ${peak?.peakMb.toFixed(0) ?? 'n/a (exited)'} MB`);
    console.log(`  /healthz during the requests: ${latencies.length} probes, p99 ${pct(sorted, 99).toFixed(0)} ms, max ${(sorted.at(-1) ?? NaN).toFixed(0)} ms, ${failedProbes} failed${reasons.length > 0 ? ` (${reasons.slice(0, 3).join('; ')})` : ''}`);
    console.log(`  daemon ${daemon.exit === undefined ? 'survived' : `DIED (${JSON.stringify(daemon.exit)}): ${daemon.stderr().split('\n').filter((l) => l.trim() !== '').slice(-3).join(' | ')}`}`);
  } finally {
    await daemon.destroy();
  }
}

const prom = await startPrometheus();
try {
  const all: Array<[string, number, number]> = [
    ['one-3', 3, 1],
    ['one-10', 10, 1],
    ['ten-3', 3, 10],
  ];
  for (const [name, rules, parallel] of all) {
    if (ONLY !== undefined && !ONLY.includes(name)) continue;
    await scenario(name, prom.url, rules, parallel);
  }
} finally {
  await prom.stop();
}
