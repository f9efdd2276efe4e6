// Step rules against target tracking on one day of CDC buffer load, backtested against a real
// Prometheus holding that day as history.
//
// A deterministic load wave (philotes_buffer_events_per_second, a gauge scraped every 30 s) is
// backfilled with promtool, a Prometheus is started on it, and each policy below is backtested
// in-process (runBacktest, with the bundled Prometheus plugin) over the same range at the same
// step. Each timeline is then scored against the load that was generated, assuming each replica
// carries 1000 events/s.
//
// Run: npm run bench:target-tracking   (needs prometheus and promtool on PATH)
//      --print-policies   also print the policies compared, as YAML
//      --timelines DIR    also write each backtest's timeline to DIR/<policy name>.json
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { runBacktest, type BacktestResult } from '../src/backtest/backtest-service.js';
import type { TimelineRow } from '../src/backtest/replay.js';
import { loadConfig } from '../src/config/config.js';
import { createLogger } from '../src/logger.js';
import { loadPlugins } from '../src/plugins/load-plugins.js';
import type { PluginManager } from '../src/plugins/plugin-manager.js';
import type { Policy } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { validatePolicyInput } from '../src/policy/policy-validation.js';
import { createValidationContext, namesFromPlugins } from '../src/policy/validation-context.js';
import { backfill, promQuery, requireTool, settledRequestCounts, startPrometheus, tempDataDir, type PrometheusServer } from '../test/helpers/prometheus.js';

const METRIC = 'philotes_buffer_events_per_second';
/** Scrape interval of the generated series and step of every backtest, in seconds. */
const STEP = 30;
/** Events per second one replica carries: the capacity model the table is scored with. */
const PER_REPLICA = 1000;
const DAY = 86_400;
const MIN_REPLICAS = 3;
const MAX_REPLICAS = 20;
const SEED = 0x5eed_2026;

// ---------------------------------------------------------------------------------------------
// The load. Hour 0 of the wave is the first evaluation of the backtest (read it as midnight).

/** mulberry32: a small, fast, seeded PRNG; the same seed gives the same series on every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** A standard normal deviate from two uniform ones (Box-Muller). */
function gaussian(rand: () => number): number {
  const u = Math.max(rand(), Number.MIN_VALUE);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

/** The daily wave: `night` events/s at night, rising to `peak` at `peakHour` along a bell with a standard deviation of `spreadHours`. */
const WAVE = { night: 2_500, peak: 11_500, peakHour: 13, spreadHours: 4.2 };

/** The daily wave at `s` seconds after hour 0. */
function dailyWave(s: number): number {
  return WAVE.night + (WAVE.peak - WAVE.night) * Math.exp(-(((s / 3600 - WAVE.peakHour) / WAVE.spreadHours) ** 2) / 2);
}

const hm = (h: number, m: number): number => h * 3600 + m * 60;

/** A burst on top of the wave: `extra` events/s from `at` (seconds after hour 0) for `minutes`, reached in 1 min, gone 2 min after. */
interface Burst {
  at: number;
  minutes: number;
  extra: number;
  what: string;
}

const BURSTS: Burst[] = [
  { at: hm(10, 40), minutes: 12, extra: 3_500, what: 'bulk update in the source database' },
  { at: hm(15, 20), minutes: 6, extra: 4_000, what: 'backfill of one table' },
  { at: hm(21, 0), minutes: 15, extra: 6_000, what: 'nightly batch export' },
];

/**
 * A pause of the source (a database failover) at 17:10: the load falls to `keep` of the wave for
 * `minutes` (DIP_MINUTES, default 4), then the missed events are caught up over `catchUpMinutes`
 * on top of the wave.
 */
const DIP = { at: hm(17, 10), minutes: Number(process.env['DIP_MINUTES'] ?? 4), keep: 0.15, catchUpMinutes: 10 };
if (!Number.isInteger(DIP.minutes * 2) || DIP.minutes <= 0 || DIP.minutes > 60) throw new Error(`DIP_MINUTES must be a multiple of 0.5 from 0.5 to 60, got ${process.env['DIP_MINUTES']}`);

function burstAt(s: number, b: Burst): number {
  const m = (s - b.at) / 60; // minutes since the burst began
  if (m < 0 || m > b.minutes + 2) return 0;
  if (m < 1) return b.extra * m;
  if (m <= b.minutes) return b.extra;
  return b.extra * (1 - (m - b.minutes) / 2);
}

/** The load without noise `s` seconds after hour 0: daily wave, bursts, and the dip with its catch-up. */
function cleanLoad(s: number): number {
  let load = dailyWave(s);
  for (const b of BURSTS) load += burstAt(s, b);
  const since = s - DIP.at;
  if (since >= 0 && since < DIP.minutes * 60) load *= DIP.keep;
  else if (since >= DIP.minutes * 60 && since < (DIP.minutes + DIP.catchUpMinutes) * 60) {
    // The events missed during the pause, spread evenly over the catch-up.
    const missed = (1 - DIP.keep) * dailyWave(DIP.at + DIP.minutes * 30) * DIP.minutes * 60;
    load += missed / (DIP.catchUpMinutes * 60);
  }
  return load;
}

/**
 * One sample every STEP seconds from `startS` to `endS` (unix seconds, both multiples of STEP):
 * the wave times (1 + slow noise + fast noise), where the slow noise is an AR(1) process (about
 * 3% standard deviation, correlated over a few minutes) and the fast noise is 1% white noise.
 * Values are rounded to 0.1 events/s, the precision they are written to Prometheus with.
 */
function generateLoad(startS: number, endS: number, hourZeroS: number): Map<number, number> {
  const rand = mulberry32(SEED);
  const out = new Map<number, number>();
  let slow = 0;
  for (let t = startS; t <= endS; t += STEP) {
    slow = 0.92 * slow + 0.012 * gaussian(rand);
    const fast = 0.01 * gaussian(rand);
    const v = Math.max(0, cleanLoad(t - hourZeroS) * (1 + slow + fast));
    out.set(t, Math.round(v * 10) / 10);
  }
  return out;
}

function openMetrics(load: Map<number, number>): string {
  const lines = [`# HELP ${METRIC} Events entering the CDC buffer per second.`, `# TYPE ${METRIC} gauge`];
  for (const [t, v] of [...load.entries()].sort((a, b) => a[0] - b[0])) lines.push(`${METRIC}{pipeline="orders"} ${v.toFixed(1)} ${t}`);
  lines.push('# EOF', '');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// The policies compared: same bounds, same metric, same range and step.

const BOUNDS = `target_type: cdc-worker
min_replicas: ${MIN_REPLICAS}
max_replicas: ${MAX_REPLICAS}`;

const QUERY = `max(${METRIC})`;

const POLICIES: Array<{ label: string; yaml: string }> = [
  {
    // What an operator writes with step rules alone: a rule cannot divide the load by the running
    // replicas, so the thresholds are on the total. Add 1 when the load stays above 6000 events/s
    // (6 replicas' worth) for 5 minutes, 2 when above 9000 for 2 minutes; remove 1 when it stays
    // below 4000 for 10 minutes; 5 minutes of cooldown between changes. min_replicas (3) is the
    // night's need, which the scale-down rule would otherwise undercut.
    label: '(a) step rules',
    yaml: `name: cdc-buffer-step-rules
${BOUNDS}
cooldown_seconds: 300
scale_up_match: any
scale_up_rules:
  - metric: ${QUERY}
    operator: gt
    threshold: 6000
    duration: 5m
    scale_by: 1
  - metric: ${QUERY}
    operator: gt
    threshold: 9000
    duration: 2m
    scale_by: 2
scale_down_rules:
  - metric: ${QUERY}
    operator: lt
    threshold: 4000
    duration: 10m
    scale_by: -1
`,
  },
  {
    // Target tracking with the default behaviour (5m scale-down stabilization, tolerance 0.1).
    // cooldown_seconds is 0, as in docs/examples/target-tracking.yaml: left out, the config's
    // default_cooldown (300 s) would also hold back target-tracking changes (variant (d)).
    label: '(b) target tracking',
    yaml: `name: cdc-buffer-target-tracking
${BOUNDS}
cooldown_seconds: 0
target_tracking:
  - metric: ${QUERY}
    target_per_replica: ${PER_REPLICA}
`,
  },
  {
    // As (b), adding at most 2 replicas a minute.
    label: '(c) target tracking, scale_up_limit 2/1m',
    yaml: `name: cdc-buffer-target-tracking-limited
${BOUNDS}
cooldown_seconds: 0
target_tracking:
  - metric: ${QUERY}
    target_per_replica: ${PER_REPLICA}
behavior:
  scale_up_limit:
    replicas: 2
    period: 1m
`,
  },
  {
    // As (b) with cooldown_seconds left out: the config's default_cooldown (300 s) applies.
    label: '(d) target tracking, default cooldown',
    yaml: `name: cdc-buffer-target-tracking-cooldown
${BOUNDS}
target_tracking:
  - metric: ${QUERY}
    target_per_replica: ${PER_REPLICA}
`,
  },
  {
    // As (b), tracking 900 events/s per replica: within the default tolerance (10%) an entry has
    // no opinion, so (b) lets the load reach 1100 events/s per replica before it adds one; 900
    // keeps the load at or below 990, under the 1000 a replica carries.
    label: '(e) target tracking, target_per_replica 900',
    yaml: `name: cdc-buffer-target-tracking-headroom
${BOUNDS}
cooldown_seconds: 0
target_tracking:
  - metric: ${QUERY}
    target_per_replica: 900
`,
  },
];

// ---------------------------------------------------------------------------------------------
// Scoring.

interface Score {
  replicaHours: number;
  changes: number;
  peak: number;
  underMinutes: number;
  /** Under-provisioned by more than the default tolerance (10%): load > 1.1 x capacity. */
  underBeyondToleranceMinutes: number;
  overMinutes: number;
  peakLoadPerReplica: number;
}

/**
 * Scores replica counts against the load. Each evaluation at time t stands for the step
 * [t, t + STEP): the count it leaves (`replicas`) runs for that step and carries the load
 * sampled at t.
 */
function score(rows: ReadonlyArray<{ t: number; before: number; replicas: number }>, load: Map<number, number>): Score {
  let replicaSeconds = 0;
  let changes = 0;
  let peak = 0;
  let under = 0;
  let underBeyond = 0;
  let over = 0;
  let peakLoadPerReplica = 0;
  for (const r of rows) {
    const v = load.get(r.t);
    if (v === undefined) throw new Error(`no generated load at ${new Date(r.t * 1000).toISOString()}`);
    const capacity = PER_REPLICA * r.replicas;
    replicaSeconds += r.replicas * STEP;
    if (r.replicas !== r.before) changes++;
    peak = Math.max(peak, r.replicas);
    if (v > capacity) under += STEP;
    if (v > 1.1 * capacity) underBeyond += STEP;
    if (capacity > 1.5 * v) over += STEP;
    peakLoadPerReplica = Math.max(peakLoadPerReplica, r.replicas > 0 ? v / r.replicas : Infinity);
  }
  return { replicaHours: replicaSeconds / 3600, changes, peak, underMinutes: under / 60, underBeyondToleranceMinutes: underBeyond / 60, overMinutes: over / 60, peakLoadPerReplica };
}

/**
 * Checks that every evaluation saw the load that was generated for its instant (the value the
 * timeline shows for `id`, a rule or target-tracking entry reading the load): a mismatch means
 * the history did not survive the trip through promtool and Prometheus, and the scores would
 * compare different inputs.
 */
function checkValues(label: string, timeline: readonly TimelineRow[], id: string, load: Map<number, number>): void {
  for (const row of timeline) {
    const t = Date.parse(row.time) / 1000;
    const seen = row.values[id];
    const want = load.get(t);
    if (seen !== want) throw new Error(`${label}: at ${row.time} the backtest read ${seen} but the load generated for that instant is ${want}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Output.

const fmt = (x: number, digits: number): string => x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

function table(header: string[], rows: string[][], rightAligned: boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (rightAligned[i] === true ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (rightAligned[i] === true ? `${'-'.repeat(w + 1)}:` : `:${'-'.repeat(w + 1)}`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Run.

const args = process.argv.slice(2);
const printPolicies = args.includes('--print-policies');
const timelinesAt = args.indexOf('--timelines');
const timelineDir = timelinesAt >= 0 ? args[timelinesAt + 1] : undefined;
if (timelinesAt >= 0 && (timelineDir === undefined || timelineDir.startsWith('--'))) throw new Error('--timelines needs a folder');
const promVersion = requireTool('prometheus');
requireTool('promtool');

// Data ends an hour before now, on a whole minute; the backtest covers the 24 hours before that,
// evaluated every STEP seconds: [end - 24h, end - STEP], 2880 evaluations, each standing for one step.
const end = Math.floor(Date.now() / 60_000) * 60 - 3600;
const from = end - DAY;
const to = end - STEP;
// An hour of history before the range, for the rules' windows.
const load = generateLoad(from - 3600, end, from);

const dataDir = await tempDataDir();
let prom: PrometheusServer | undefined;
let plugins: PluginManager | undefined;
let cleaning: Promise<void> | undefined;
const cleanup = (): Promise<void> => {
  cleaning ??= (async () => {
    await plugins?.close().catch(() => undefined);
    await prom?.stop().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  })();
  return cleaning;
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void cleanup().finally(() => process.exit(130));
  });
}

try {
  await backfill(dataDir, openMetrics(load));
  prom = await startPrometheus({ dataDir });

  // The history is there: every sample of the range and the hour before it, and the last value.
  const expected = load.size;
  const counted = await promQuery(prom.url, `count_over_time(${METRIC}[${Math.round((end - (from - 3600)) / 60) + 1}m])`, end);
  const got = Number(counted[0]?.value?.[1] ?? 0);
  if (got !== expected) throw new Error(`Prometheus holds ${got} samples of ${METRIC} in the backfilled range, expected ${expected}`);
  const last = Number((await promQuery(prom.url, METRIC, end))[0]?.value?.[1]);
  if (last !== load.get(end)) throw new Error(`Prometheus answers ${last} for ${METRIC} at the end of the data, expected ${load.get(end)}`);

  const config = loadConfig({ env: { PHILOTES_SCALING_PROMETHEUS_URL: prom.url, LOG_LEVEL: 'silent' }, cwd: dataDir });
  const logger = createLogger('silent', { stderr: true });
  plugins = await loadPlugins(config, logger);
  const validation = createValidationContext(config, namesFromPlugins(plugins));
  const deps = { sources: plugins.sources, defaultSource: config.default_metric_source, defaultCooldown: config.default_cooldown, prices: config.prices };

  // Every policy starts at the count the load at the first evaluation needs.
  const initialReplicas = Math.min(MAX_REPLICAS, Math.max(MIN_REPLICAS, Math.ceil((load.get(from) as number) / PER_REPLICA)));
  const req = { from: new Date(from * 1000), to: new Date(to * 1000), stepSeconds: STEP, initialReplicas };

  const results: Array<{ label: string; policy: Policy; result: BacktestResult; counted: number; score: Score }> = [];
  for (const { label, yaml } of POLICIES) {
    const checked = validatePolicyInput(parseYaml(yaml), validation);
    if (!checked.ok) throw new Error(`${label} is not a valid policy:\n${checked.errors.map((e) => `  ${e.field}: ${e.message}`).join('\n')}`);
    const policy = normalizePolicy(checked.value, { source: 'bench', now: new Date() });
    const before = (await settledRequestCounts(prom.url))['/api/v1/query_range'] ?? 0;
    const result = await runBacktest(policy, req, deps);
    const after = (await settledRequestCounts(prom.url))['/api/v1/query_range'] ?? 0;
    const readsLoad = policy.target_tracking[0]?.id ?? policy.scale_up_rules[0]?.id;
    if (readsLoad === undefined) throw new Error(`${label} reads no metric`);
    checkValues(label, result.timeline, readsLoad, load);
    const rows = result.timeline.map((r) => ({ t: Date.parse(r.time) / 1000, before: r.replicas_before, replicas: r.replicas }));
    results.push({ label, policy, result, counted: after - before, score: score(rows, load) });
    if (timelineDir !== undefined) {
      await mkdir(timelineDir, { recursive: true });
      await writeFile(join(timelineDir, `${policy.name}.json`), `${JSON.stringify(result.timeline.map((r) => ({ ...r, load: load.get(Date.parse(r.time) / 1000) })), null, 1)}\n`);
    }
  }

  // Reference: ceil(load / 1000) within the bounds at every step, what no policy can beat on
  // replica-hours without being under-provisioned.
  const ideal: Array<{ t: number; before: number; replicas: number }> = [];
  let prev = initialReplicas;
  for (let t = from; t <= to; t += STEP) {
    const replicas = Math.min(MAX_REPLICAS, Math.max(MIN_REPLICAS, Math.ceil((load.get(t) as number) / PER_REPLICA)));
    ideal.push({ t, before: prev, replicas });
    prev = replicas;
  }
  const idealScore = score(ideal, load);

  const inRange = [...load.entries()].filter(([t]) => t >= from && t <= to).map(([, v]) => v);
  console.log('# Step rules vs target tracking: one day of CDC buffer load');
  console.log('');
  console.log(`command:    npx tsx bench/target-tracking-compare.ts${args.length > 0 ? ` ${args.join(' ')}` : ''}`);
  console.log(`prometheus: ${promVersion} (history backfilled with promtool, queried over HTTP)`);
  console.log(`range:      ${req.from.toISOString()} .. ${req.to.toISOString()} (${results[0]?.result.summary.evaluations} evaluations, hour 0 of the wave at the first)`);
  console.log(`step:       ${STEP}s (the scrape interval of the series, and every backtest's evaluation interval)`);
  console.log(`load:       ${METRIC}, ${fmt(Math.min(...inRange), 0)} to ${fmt(Math.max(...inRange), 0)} events/s (seed ${SEED.toString(16)}); capacity ${PER_REPLICA} events/s per replica`);
  const clock = (sec: number): string => `${String(Math.floor(sec / 3600)).padStart(2, '0')}:${String(Math.floor((sec % 3600) / 60)).padStart(2, '0')}`;
  const bursts = BURSTS.map((x) => `${clock(x.at)} +${fmt(x.extra, 0)} for ${x.minutes}m (${x.what})`).join(', ');
  console.log(`profile:    daily wave ${fmt(WAVE.night, 0)} at night to ${fmt(WAVE.peak, 0)} at ${clock(WAVE.peakHour * 3600)}; bursts ${bursts}; source paused at ${clock(DIP.at)} for ${DIP.minutes}m (load at ${DIP.keep * 100}%), caught up over ${DIP.catchUpMinutes}m; ~3% noise`);
  console.log(`policies:   min_replicas ${MIN_REPLICAS}, max_replicas ${MAX_REPLICAS}, all starting at ${initialReplicas} replicas`);
  console.log('');
  const header = ['policy', 'replica-hours', 'changes', 'peak replicas', 'under-provisioned (min)', 'under-provisioned >10% (min)', 'over-provisioned >50% (min)', 'peak load per replica', 'Prometheus requests'];
  const right = [false, true, true, true, true, true, true, true, true];
  const line = (label: string, s: Score, requests: string): string[] => [
    label,
    fmt(s.replicaHours, 1),
    String(s.changes),
    String(s.peak),
    fmt(s.underMinutes, 1),
    fmt(s.underBeyondToleranceMinutes, 1),
    fmt(s.overMinutes, 1),
    fmt(s.peakLoadPerReplica, 0),
    requests,
  ];
  const body = results.map((r) => line(r.label, r.score, r.counted === r.result.requests ? String(r.result.requests) : `${r.result.requests} (Prometheus counted ${r.counted})`));
  body.push(line('reference: ceil(load / 1000) at every step', idealScore, '-'));
  console.log(table(header, body, right));
  console.log('');
  console.log('Each evaluation at time t stands for the step [t, t + 30s): its replicas run that step and carry the load sampled at t.');
  console.log('- replica-hours: replicas x 30 s summed over the evaluations, in hours.');
  console.log('- changes: evaluations whose replicas differ from replicas_before.');
  console.log('- peak replicas: the most replicas any evaluation left.');
  console.log(`- under-provisioned: minutes in which the load exceeded ${PER_REPLICA} events/s x replicas.`);
  console.log(`- under-provisioned >10%: minutes in which the load exceeded 1.1 x ${PER_REPLICA} events/s x replicas (beyond target tracking's default tolerance).`);
  console.log(`- over-provisioned >50%: minutes in which ${PER_REPLICA} events/s x replicas exceeded 1.5 x the load.`);
  console.log('- peak load per replica: the highest load / replicas over the day, in events/s (above 1000: short of capacity).');
  console.log('- Prometheus requests: range queries the backtest made (runBacktest\'s `requests`, equal to the query_range requests Prometheus counted).');
  console.log('');
  for (const r of results) {
    const s = r.result.summary;
    const reasons = Object.entries(s.reason_codes)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    console.log(`${r.label}: ${reasons}; engine's replica_hours ${s.replica_hours}, scale_up_pending_minutes ${s.scale_up_pending_minutes}`);
  }
  if (printPolicies) {
    for (const { label, yaml } of POLICIES) console.log(`\n# ${label}\n${yaml.trimEnd()}`);
  }
} finally {
  await cleanup();
}
