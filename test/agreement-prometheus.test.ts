/**
 * A policy test predicts the daemon: the same random data, run through a policy test (the data as
 * an input series) and through a backtest against a real Prometheus holding that data (promtool
 * backfill, fetched by the bundled prometheus plugin), gives the same decision at every instant.
 *
 * The data: one series per case, a sample every 30 s over 40 minutes, values around the
 * thresholds with missed scrapes, gaps longer than Prometheus's 5-minute lookback, NaN and ±Inf.
 * Each case is judged by policies with windows of 0 s, 10 s, 45 s, 2 m and 5 m (shorter than the
 * interval, not a multiple of it, and longer than the lookback), an up rule and a down rule, no
 * cooldown and a fallback after two failed evaluations, so every verdict shows in the replicas.
 *
 * The backtest's decision at each instant (replicas, action, reason_code) is written as the policy
 * test's expectation there; a disagreement is a failed expectation. AGREEMENT_SEED and
 * AGREEMENT_CASES choose other data.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { stringify } from 'yaml';
import { loadConfig } from '../src/config/config.js';
import { runBacktest } from '../src/backtest/backtest-service.js';
import { PluginManager } from '../src/plugins/plugin-manager.js';
import type { PolicyInput } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { runPolicyTestText } from '../src/policy-tests/policy-test-runner.js';
import { backfill, promQuery, requireTool, startPrometheus, tempDataDir } from './helpers/prometheus.js';

const SEED = Number(process.env['AGREEMENT_SEED'] ?? 20261205);
const CASES = Number(process.env['AGREEMENT_CASES'] ?? 60);
const METRIC = 'philotes_agreement';
const INTERVAL = 30;
const SAMPLES = 81; // 40 minutes at 30 s, both ends included
const WINDOWS: Array<[string, string]> = [
  ['0s', '45s'],
  ['10s', '2m'],
  ['45s', '10s'],
  ['2m', '5m'],
  ['5m', '0s'],
];

/** A small deterministic generator (mulberry32), so a failing seed can be run again. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

type Point = number | null; // null: no sample at that scrape

/** One case's samples: a level that changes now and then, missed scrapes, long gaps, NaN and ±Inf. */
function series(next: () => number): Point[] {
  const levels = [20, 39, 41, 59, 61, 75];
  let level = levels[Math.floor(next() * levels.length)] as number;
  const out: Point[] = [];
  while (out.length < SAMPLES) {
    const r = next();
    if (r < 0.025) {
      // A gap of 4 to 14 scrapes: shorter and longer than the 5-minute lookback (10 scrapes).
      const n = 4 + Math.floor(next() * 11);
      for (let i = 0; i < n && out.length < SAMPLES; i++) out.push(null);
      continue;
    }
    if (r < 0.08) out.push(null);
    else if (r < 0.09) out.push(NaN);
    else if (r < 0.095) out.push(next() < 0.5 ? Infinity : -Infinity);
    else {
      if (next() < 0.15) level = levels[Math.floor(next() * levels.length)] as number;
      out.push(level);
    }
  }
  return out;
}

const om = (v: number): string => (Number.isNaN(v) ? 'NaN' : v === Infinity ? '+Inf' : v === -Infinity ? '-Inf' : String(v));
const notation = (v: Point): string => (v === null ? '_' : Number.isNaN(v) ? 'NaN' : v === Infinity ? 'Inf' : v === -Infinity ? '-Inf' : String(v));

t.test('the same random data through a policy test and a backtest on a real Prometheus: the same decision at every instant', async (t) => {
  requireTool('prometheus');
  requireTool('promtool');
  t.comment(`seed ${SEED}, ${CASES} cases`);
  const next = random(SEED);
  const data = Array.from({ length: CASES }, () => series(next));
  // One NaN at 20m in a steady 70, judged by a 5m rule that falls back on metric errors.
  const nanCase = Array.from({ length: SAMPLES }, (_, i): Point => (i === 40 ? NaN : 70));
  data.push(nanCase);

  // Minute-aligned, ending an hour ago (blocks older than the head, well inside the retention).
  const end = Math.floor(Date.now() / 1000 / 60) * 60 - 3600;
  const start = end - (SAMPLES - 1) * INTERVAL;
  const lines = [`# HELP ${METRIC} Random data.`, `# TYPE ${METRIC} gauge`];
  data.forEach((points, k) => {
    points.forEach((v, i) => {
      if (v !== null) lines.push(`${METRIC}{case="${k}"} ${om(v)} ${start + i * INTERVAL}`);
    });
  });
  lines.push('# EOF');
  const dataDir = await tempDataDir();
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  await backfill(dataDir, `${lines.join('\n')}\n`);
  const prom = await startPrometheus({ dataDir });
  t.teardown(() => prom.stop());
  t.ok((await promQuery(prom.url, `count(${METRIC})`, start + 600)).length > 0, 'Prometheus answers the backfilled data');

  const logger = pino({ level: 'silent' });
  const plugins = new PluginManager({ dirs: [PluginManager.bundledDir()], configs: { prometheus: { url: prom.url } }, logger, timeoutMs: 10_000 });
  await plugins.loadAll();
  t.teardown(() => plugins.close());
  const dir = await mkdtemp(join(tmpdir(), 'philotes-agreement-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = loadConfig({ env: {}, cwd: dir });

  const from = new Date(start * 1000);
  const to = new Date(end * 1000);
  let instants = 0;
  let disagreements = 0;
  const reasonCodes: Record<string, number> = {};
  for (const [k, points] of data.entries()) {
    const query = `max(${METRIC}{case="${k}"})`;
    for (const [up, down] of k === data.length - 1 ? [['5m', '5m'] as [string, string]] : WINDOWS) {
      const input: PolicyInput = {
        name: `agree-${k}-${up}-${down}`,
        target_type: 'cdc-worker',
        min_replicas: 1,
        max_replicas: 1000,
        cooldown_seconds: 0,
        on_metric_error: 'fallback',
        fallback: { after_failures: 2, replicas: 7 },
        scale_up_rules: [{ metric: query, operator: 'gt', threshold: 60, duration: up, scale_by: 1 }],
        scale_down_rules: [{ metric: query, operator: 'lt', threshold: 40, duration: down, scale_by: -1 }],
      } as PolicyInput;
      const policy = normalizePolicy(input, { source: 'api', now: new Date('2026-01-01T00:00:00Z') });
      const backtest = await runBacktest(policy, { from, to, stepSeconds: INTERVAL, initialReplicas: 500 }, { sources: plugins.sources, defaultSource: 'prometheus', defaultCooldown: 0, prices: {} });
      t.equal(backtest.timeline.length, SAMPLES, `${input.name}: one evaluation per sample time`);

      const policyFile = join(dir, `${input.name}.yaml`);
      await writeFile(policyFile, stringify(input));
      const test = {
        policy_files: [policyFile],
        evaluation_interval: `${INTERVAL}s`,
        tests: [
          {
            name: input.name,
            start: from.toISOString(),
            initial_replicas: 500,
            input_series: [{ query, values: points.map(notation).join(' ') }],
            expect: backtest.timeline.map((row, i) => ({ at: `${i * INTERVAL}s`, replicas: row.replicas, action: row.action, reason_code: row.reason_code })),
          },
        ],
      };
      const text = stringify(test);
      const result = await runPolicyTestText(join(dir, `${input.name}.test.yaml`), text, config);
      t.same(result.problems, [], `${input.name}: the policy test is well formed`);
      const failures = result.cases[0]?.failures ?? [];
      for (const f of failures.slice(0, 3)) {
        t.fail(`${input.name} at ${f.time}: the policy test says ${f.action}/${f.reason_code}/${f.replicas}, the backtest ${JSON.stringify(f.mismatches)}; rules: ${JSON.stringify(f.rules)}`);
      }
      instants += backtest.timeline.length;
      disagreements += failures.length;
      for (const row of backtest.timeline) reasonCodes[row.reason_code] = (reasonCodes[row.reason_code] ?? 0) + 1;

      if (k === data.length - 1) {
        // The NaN case: only instants whose 5-minute window contains 20m fail, and nothing is a metric error.
        const notHeld = backtest.timeline.flatMap((row, i) => (row.reason_code === 'rules_held' ? [] : [i * INTERVAL]));
        const expected = backtest.timeline.flatMap((_, i) => (i < 10 || (i >= 40 && i <= 50) ? [i * INTERVAL] : []));
        t.same(notHeld, expected, 'one NaN at 20m: not held while a 5m window contains 20m (and before 5m of data exist), held everywhere else');
        t.notOk(backtest.timeline.some((row) => row.reason_code === 'metric_error' || row.action === 'fallback'), 'the NaN is no metric error and the fallback never fires');
      }
    }
  }
  t.comment(`${instants} instants compared, ${disagreements} disagreements; reason codes ${JSON.stringify(reasonCodes)}`);
  t.equal(disagreements, 0, `${instants} instants compared: the policy test and the backtest agree at every one`);
  t.ok((reasonCodes['metric_error'] ?? 0) > 0 && (reasonCodes['rules_held'] ?? 0) > 0 && (reasonCodes['no_rule_held'] ?? 0) > 0, 'the data reaches held, not held and metric errors');
});
