/**
 * Deterministic rule windows against a real Prometheus: a known series is backfilled with
 * promtool, Prometheus starts on it, and the manager (with the real PluginManager and the bundled
 * prometheus plugin) evaluates policies at fixed instants of a clock the test controls.
 *
 * The series, one sample every 15 s over two hours ending about an hour ago (minutes from S):
 *   orders:   [0,30) 10 | [30,42) 100 | [42,50) 10 | [50,60) 100 | [60,70) no samples | [70,120] 100
 *   payments: 10 throughout
 * Threshold 60 throughout.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import type { DecisionRecord, RuleRecord } from '../src/engine/decision.js';
import { ScalingManager } from '../src/engine/manager.js';
import { PluginManager } from '../src/plugins/plugin-manager.js';
import type { Policy } from '../src/policy/policy-model.js';
import { PolicyService } from '../src/policy/policy-service.js';
import { createValidationContext, namesFromPlugins } from '../src/policy/validation-context.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import { backfill, promQuery, requireTool, startPrometheus, tempDataDir } from './helpers/prometheus.js';

const METRIC = 'philotes_cdc_lag_seconds';
const ORDERS = `max(${METRIC}{source="orders"})`;
const STEP = 15;
const MIN = 60;

// Minute-aligned, so every instant below is a sample time (S is a multiple of 15 s).
const END = Math.floor(Date.now() / 1000 / MIN) * MIN - 3600;
const S = END - 2 * 3600;
const at = (minutes: number, seconds = 0): Date => new Date((S + minutes * MIN + seconds) * 1000);
const iso = (minutes: number, seconds = 0): string => at(minutes, seconds).toISOString();

function ordersValue(tSec: number): number | undefined {
  const m = (tSec - S) / MIN;
  if (m < 30) return 10;
  if (m < 42) return 100;
  if (m < 50) return 10;
  if (m < 60) return 100;
  if (m < 70) return undefined; // the gap
  return 100;
}

function openMetrics(): string {
  const lines = [`# HELP ${METRIC} CDC replication lag.`, `# TYPE ${METRIC} gauge`];
  for (let ts = S; ts <= END; ts += STEP) {
    const v = ordersValue(ts);
    if (v !== undefined) lines.push(`${METRIC}{source="orders"} ${v} ${ts}`);
  }
  for (let ts = S; ts <= END; ts += STEP) lines.push(`${METRIC}{source="payments"} 10 ${ts}`);
  lines.push('# EOF');
  return `${lines.join('\n')}\n`;
}

t.test('rule windows over backfilled data, evaluated at fixed instants', async (t) => {
  requireTool('prometheus');
  requireTool('promtool');
  const dataDir = await tempDataDir();
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const out = await backfill(dataDir, openMetrics());
  t.match(out, /BLOCK ULID/, 'promtool wrote blocks');

  const prom = await startPrometheus({ dataDir });
  t.teardown(() => prom.stop());
  // The backfilled blocks are queryable.
  const probe = await promQuery(prom.url, `${METRIC}{source="orders"}`, S + 35 * MIN);
  t.equal(probe[0]?.value?.[1], '100', 'Prometheus answers the backfilled value');

  const dir = await mkdtemp(join(tmpdir(), 'philotes-backfill-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const logger = pino({ level: 'silent' });
  const plugins = new PluginManager({ dirs: [PluginManager.bundledDir()], configs: { prometheus: { url: prom.url } }, logger, timeoutMs: 5_000 });
  await plugins.loadAll();
  t.teardown(() => plugins.close());
  t.ok(plugins.sources.get('prometheus')?.supportsRange, 'the bundled prometheus source answers range queries');
  const storage = createSqliteStorage(join(dir, 'scaler.db'));
  await storage.migrate();
  t.teardown(() => storage.close());
  const cfg = { executors: { 'cdc-worker': 'keda', trino: 'keda', risingwave: 'keda', nodes: 'logger' }, prices: {}, default_metric_source: 'prometheus' };
  const policies = new PolicyService({
    storage,
    validation: createValidationContext(cfg, namesFromPlugins(plugins)),
    defaultCooldown: 300,
  });
  let clock = at(0);
  const manager = new ScalingManager({
    storage,
    logger,
    sources: plugins.sources,
    executors: plugins.executors,
    config: { evaluation_interval_ms: STEP * 1000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 4, executors: cfg.executors, prices: {} },
    now: () => clock,
  });

  let n = 0;
  const policy = (metric: string, duration: string, aggregation?: string): Promise<Policy> =>
    policies.create({
      name: `backfill-${++n}`,
      target_type: 'cdc-worker',
      min_replicas: 1,
      max_replicas: 10,
      scale_up_rules: [{ metric, operator: 'gt', threshold: 60, duration, scale_by: 2, ...(aggregation === undefined ? {} : { aggregation }) }],
    });
  /** The decision (a preview: no state, no history) at a fixed instant. */
  const evalAt = async (p: Policy, when: Date): Promise<{ d: DecisionRecord; r: RuleRecord }> => {
    clock = when;
    const d = await manager.evaluateNow(p, { dryRun: true });
    const r = d.rules[0];
    if (r === undefined) throw new Error('no rule record');
    return { d, r };
  };

  await t.test('duration 5m: holds 5m into the high stretch, not at 4m or 4m59s', async (t) => {
    const p = await policy(ORDERS, '5m');
    const four = await evalAt(p, at(34));
    t.equal(four.r.held, false, '4m in: not held');
    t.equal(four.r.error, null, 'not an error: the data is there');
    t.equal(four.r.samples, 21, '5m at a 15s step is 21 samples');
    t.equal(four.r.value, 10, 'the weakest value in the window is 10');
    t.equal(four.r.detail, `10 > 60 is false at ${iso(29)}`, 'the first sample before the high stretch breaks it');
    t.match(four.d, { action: 'none', reason_code: 'no_rule_held', should_scale: false });

    const almost = await evalAt(p, at(34, 59));
    t.equal(almost.r.held, false, '4m59s in: not held (the window starts one second before the stretch)');
    t.match(almost.r.detail, /^10 > 60 is false/);

    const five = await evalAt(p, at(35));
    t.equal(five.r.held, true, '5m in: held');
    t.equal(five.r.samples, 21);
    t.equal(five.r.value, 100);
    t.equal(five.r.window_seconds, 300);
    t.equal(five.r.step_seconds, STEP);
    t.match(five.d, { action: 'scale_up', reason_code: 'rules_held', current_replicas: 1, desired_replicas: 3, dry_run: true });

    const late = await evalAt(p, at(41, 59));
    t.equal(late.r.held, true, 'still held at the end of the 12-minute stretch');
    const dropped = await evalAt(p, at(42));
    t.equal(dropped.r.held, false, 'the first low sample ends it');
    t.equal(dropped.r.detail, `10 > 60 is false at ${iso(42)}`);
  });

  await t.test('a window containing the gap does not hold', async (t) => {
    const p15 = await policy(ORDERS, '15m');
    const gap = await evalAt(p15, at(75));
    t.equal(gap.r.held, false, '15m window over the gap: not held');
    t.equal(gap.r.error, null, 'a gap is not a metric error');
    t.equal(gap.r.value, 100, 'every value present is above the threshold');
    // The last sample before the gap is at 59:45; Prometheus's 5-minute lookback carries it to
    // 64:45, so the first instant without a value is 65:00.
    t.equal(gap.r.detail, `no value at ${iso(65)} (a gap in the window, judged every 15s): the condition has not been observed for the whole 900s`);
    t.ok(gap.r.samples < 61, `fewer samples than the full window (${gap.r.samples} < 61)`);
    t.match(gap.d, { action: 'none', reason_code: 'no_rule_held' });

    const covered = await evalAt(p15, at(85));
    t.equal(covered.r.held, true, '15m window wholly after the gap: held');
    t.equal(covered.r.samples, 61);

    const p5 = await policy(ORDERS, '5m');
    t.equal((await evalAt(p5, at(75))).r.held, true, '5m window after the gap: held');
    const inGap = await evalAt(p5, at(67));
    t.equal(inGap.r.held, false, '5m window ending inside the gap: not held');
    t.equal(inGap.r.detail, `no value at ${iso(65)} (a gap in the window, judged every 15s): the condition has not been observed for the whole 300s`);
    const lookback = await evalAt(p5, at(64, 45));
    t.equal(lookback.r.held, true, 'a 5m window ending at 64:45 holds: the lookback carries 59:45 to its end');
    const past = await evalAt(p5, at(65));
    t.equal(past.r.held, false, 'at 65:00 the lookback no longer reaches');
    t.equal(past.r.detail, `no value at ${iso(65)}, the end of the window: the condition has not been observed for the whole 300s`);
  });

  await t.test('a 45s window at a 30s interval ends at the instant: 8 s after the fall it no longer holds', async (t) => {
    const manager30 = new ScalingManager({
      storage,
      logger,
      sources: plugins.sources,
      executors: plugins.executors,
      config: { evaluation_interval_ms: 30_000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 4, executors: cfg.executors, prices: {} },
      now: () => clock,
    });
    const p = await policy(ORDERS, '45s');
    const judge = async (when: Date): Promise<RuleRecord> => {
      clock = when;
      const r = (await manager30.evaluateNow(p, { dryRun: true })).rules[0];
      if (r === undefined) throw new Error('no rule record');
      return r;
    };
    // 45 s at 30 s: ceil(45/30) = 2 steps of 22.5 s, so t-45, t-22.5 and t are judged.
    const before = await judge(at(41, 59));
    t.equal(before.held, true, '41:59: 100 at 41:14, 41:36.5 and 41:59');
    t.equal(before.samples, 3);
    t.equal(before.step_seconds, 22.5);
    const after = await judge(at(42, 8));
    t.equal(after.held, false, '42:08: the value scraped at 42:00 (10) is judged, at the window\'s end');
    t.equal(after.detail, `10 > 60 is false at ${iso(42, 8)}`);
    t.equal(after.latest, 10);
  });

  await t.test('aggregation across two series: max and sum hold, avg and min do not', async (t) => {
    // At S+40m: orders 100, payments 10.
    const want: Record<string, { held: boolean; value: number }> = {
      max: { held: true, value: 100 },
      sum: { held: true, value: 110 },
      avg: { held: false, value: 55 },
      min: { held: false, value: 10 },
    };
    for (const [aggregation, expected] of Object.entries(want)) {
      const p = await policy(METRIC, '5m', aggregation);
      const { r } = await evalAt(p, at(40));
      t.equal(r.aggregation, aggregation);
      t.equal(r.held, expected.held, `${aggregation}: ${expected.held ? 'holds' : 'does not hold'}`);
      t.equal(r.value, expected.value, `${aggregation} of 100 and 10 is ${expected.value}`);
      t.equal(r.samples, 21);
    }
  });

  await t.test('the loop at fixed instants: scale-up recorded at the instant, then cooldown', async (t) => {
    // Only this test's policy is enabled, so runCycle evaluates just it.
    for (const p of await storage.listEnabledPolicies()) await storage.setEnabled(p.id, false, new Date().toISOString());
    const p = await policy(ORDERS, '5m');
    clock = at(34);
    const c1 = await manager.runCycle();
    t.match(c1, { policies: 1, fetches: 1, fetch_errors: 0, outcomes: { no_rule_held: 1 } });
    clock = at(35);
    const c2 = await manager.runCycle();
    t.match(c2, { policies: 1, fetches: 1, outcomes: { scale_up: 1 } });
    clock = at(36);
    const c3 = await manager.runCycle();
    t.match(c3, { outcomes: { cooldown: 1 } });
    const { rows } = await storage.listHistory({ limit: 10, policy_id: p.id });
    t.match(
      rows.map((r) => ({ action: r.action, status: r.status, from: r.previous_replicas, to: r.new_replicas, at: r.executed_at, code: r.reason_code })),
      [
        { action: 'scale_up', status: 'blocked', from: 3, to: 5, at: iso(36), code: 'cooldown' },
        { action: 'scale_up', status: 'succeeded', from: 1, to: 3, at: iso(35), code: 'rules_held' },
      ],
      'history: the scale-up at S+35m exactly, the cooldown block at S+36m',
    );
    t.equal(rows.length, 2);
  });
});
