/**
 * Metric faults against a REAL Prometheus (scraping a real exporter), seen through the real
 * bundled plugins (PluginManager: prometheus, keda) and the ScalingManager, with a fault-injecting
 * proxy (test/helpers/fault-proxy.ts) between the prometheus plugin and Prometheus.
 *
 * For each fault (the proxy hangs, answers 500/422/503, malformed or wrongly shaped JSON, a
 * truncated or cut body, resets; real PromQL that evaluates to nothing or does not parse;
 * Prometheus stopped): no scaling action, every decision's reason_code is metric_error and each
 * rule's `error` names the kind. NaN, +Inf and -Inf (0/0, 1/0, a gauge exported as NaN) are values,
 * not errors: the rule's condition fails at them (no_rule_held, no action, the detail names the
 * value). Then recovery: with the proxy passing through again (or the exporter fixed, or
 * Prometheus restarted), the rule that should hold does and the scale-up happens.
 */
import { pino } from 'pino';
import t from 'tap';
import type { DecisionRecord } from '../src/engine/decision.js';
import { ScalingManager } from '../src/engine/manager.js';
import { PluginManager } from '../src/plugins/plugin-manager.js';
import { PolicyService } from '../src/policy/policy-service.js';
import { createValidationContext, namesFromPlugins } from '../src/policy/validation-context.js';
import { startFaultProxy, type FaultMode } from './helpers/fault-proxy.js';
import { loadedPlugins, tempSqliteStorage } from './helpers/fixtures.js';
import { promQuery, requireTool, startExporter, startPrometheus, waitFor } from './helpers/prometheus.js';

const PLUGIN_TIMEOUT_MS = 1_000;
const EXECUTORS = { 'cdc-worker': 'keda', trino: 'keda', risingwave: 'keda', nodes: 'logger' };

/** Policies whose one scale-up rule holds whenever the metric answers (philotes_fault_load is 50). */
const LOAD = { instant: 'load-instant', range: 'load-range' } as const;

/** Policies whose query is always bad in a given way, through a proxy that passes through. */
const QUERY_FAULTS: Array<{ name: string; metric: string; duration?: string; kind: string; what: string }> = [
  { name: 'empty-expr', metric: 'philotes_fault_does_not_exist', kind: 'empty', what: 'a metric that does not exist' },
  { name: 'empty-expr-range', metric: 'philotes_fault_does_not_exist', duration: '3s', kind: 'empty', what: 'a metric that does not exist, over a range' },
  // Syntax errors are refused when a policy is written; a bad regular expression (RE2) is only found by Prometheus.
  { name: 'bad-promql', metric: 'philotes_fault_load{job=~"("}', kind: 'query', what: 'PromQL that Prometheus does not parse (HTTP 400 bad_data)' },
];

/** Policies whose query always answers a value that is not a finite number: the condition fails, no error. */
const NOT_FINITE: Array<{ name: string; metric: string; duration?: string; shown: string; what: string }> = [
  { name: 'nan-expr', metric: '(philotes_fault_load - philotes_fault_load) / (philotes_fault_load - philotes_fault_load)', shown: 'NaN', what: '0/0 in PromQL' },
  { name: 'nan-expr-range', metric: '(philotes_fault_load - philotes_fault_load) / (philotes_fault_load - philotes_fault_load)', duration: '3s', shown: 'NaN', what: '0/0 over a range' },
  { name: 'nan-gauge', metric: 'philotes_fault_gauge_nan', shown: 'NaN', what: 'a gauge exported as NaN' },
  { name: 'inf-expr', metric: 'vector(1) / 0', shown: '+Inf', what: 'vector(1)/0 (+Inf)' },
  { name: 'inf-expr-range', metric: '1 / 0 * scalar(philotes_fault_load)', duration: '3s', shown: '+Inf', what: '1/0 * scalar(...) over a range (+Inf)' },
  { name: 'ninf-expr', metric: '-philotes_fault_load / 0', shown: '-Inf', what: '-x/0 (-Inf)' },
];

/** Proxy faults and the error kind the prometheus plugin must report for each. */
const PROXY_FAULTS: Array<{ mode: FaultMode; kind: string; what: string }> = [
  { mode: 'hang', kind: 'timeout', what: 'the proxy never answers' },
  { mode: 'error500', kind: 'http', what: "HTTP 500 with Prometheus's error JSON" },
  { mode: 'error503-html', kind: 'http', what: 'HTTP 503 with an HTML body' },
  { mode: 'error422', kind: 'query', what: "HTTP 422 with Prometheus's error JSON (errorType execution)" },
  { mode: 'malformed', kind: 'malformed', what: 'HTTP 200 with a body that is not JSON' },
  { mode: 'wrong-shape', kind: 'malformed', what: 'HTTP 200, status success, an unexpected resultType' },
  { mode: 'bad-value', kind: 'malformed', what: 'HTTP 200, a sample value that is not a number' },
  { mode: 'truncated', kind: 'malformed', what: 'the real answer cut in half, framed correctly' },
  { mode: 'cut', kind: 'unreachable', what: 'the connection drops halfway through the body' },
  { mode: 'reset', kind: 'unreachable', what: 'the connection is reset without an answer' },
];

t.test('metric faults through a real Prometheus: no action, metric_error with the kind; then recovery', async (t) => {
  t.comment(`using ${requireTool('prometheus')}`);
  const exporter = await startExporter();
  t.teardown(() => exporter.close());
  exporter.set('philotes_fault_load', {}, 50);
  exporter.set('philotes_fault_gauge_nan', {}, NaN);
  exporter.set('philotes_fault_num', {}, 0);
  exporter.set('philotes_fault_den', {}, 0);
  const prom = await startPrometheus({ target: exporter.target, waitForMetric: 'philotes_fault_den' });
  t.teardown(() => prom.stop());
  const proxy = await startFaultProxy(prom.url);
  t.teardown(() => proxy.close());

  const storage = await tempSqliteStorage(t, 'philotes-fault-prom');
  const logger = pino({ level: 'silent' });
  const plugins = await loadedPlugins(
    t,
    { dirs: [PluginManager.bundledDir()], configs: { prometheus: { url: proxy.url } }, logger, timeoutMs: PLUGIN_TIMEOUT_MS },
    'the bundled plugins load',
  );
  const keda = plugins.executors.get('keda');
  if (keda === undefined) throw new Error('keda executor not loaded');

  // The latest decision of each policy. A quiet outcome whose observations did not change is
  // repeated by the loop without a new record (counted by onRepeated): its latest record stands.
  const decisions = new Map<string, DecisionRecord>();
  const decidedNow = new Set<string>();
  let repeatedNow = 0;
  const manager = new ScalingManager({
    storage,
    logger,
    sources: plugins.sources,
    executors: plugins.executors,
    config: {
      evaluation_interval_ms: 1_000,
      default_cooldown: 0,
      default_metric_source: 'prometheus',
      dry_run: false,
      max_concurrency: 32,
      executors: EXECUTORS,
      prices: {},
    },
    onDecision: (outcome) => {
      decisions.set(outcome.policy_id, outcome.record());
      decidedNow.add(outcome.policy_id);
    },
    onRepeated: (count) => {
      repeatedNow += count;
    },
  });

  const service = new PolicyService({
    storage,
    validation: createValidationContext({ executors: EXECUTORS, prices: {}, default_metric_source: 'prometheus' }, namesFromPlugins(plugins)),
    defaultCooldown: 0,
  });
  const ids = new Map<string, string>();
  const addPolicy = async (name: string, metric: string, duration?: string): Promise<void> => {
    const p = await service.create({
      name,
      target_type: 'cdc-worker',
      min_replicas: 1,
      max_replicas: 1_000,
      cooldown_seconds: 0,
      scale_up_rules: [{ metric, operator: 'gt', threshold: 10, scale_by: 1, ...(duration !== undefined ? { duration } : {}) }],
    });
    ids.set(name, p.id);
  };
  await addPolicy(LOAD.instant, 'philotes_fault_load');
  await addPolicy(LOAD.range, 'philotes_fault_load', '3s');
  await addPolicy('ratio', 'philotes_fault_num / philotes_fault_den');
  await addPolicy('maybe', 'philotes_fault_maybe');
  for (const q of QUERY_FAULTS) await addPolicy(q.name, q.metric, q.duration);
  for (const q of NOT_FINITE) await addPolicy(q.name, q.metric, q.duration);
  const allNames = [...ids.keys()];

  /** Runs one cycle and answers each policy's decision of that cycle, by name. */
  const cycle = async (): Promise<Map<string, DecisionRecord>> => {
    decidedNow.clear();
    repeatedNow = 0;
    const report = await manager.runCycle();
    if (report.errors > 0) throw new Error(`the cycle had ${report.errors} evaluation error(s)`);
    if (decidedNow.size + repeatedNow !== ids.size) throw new Error(`the cycle decided ${decidedNow.size} and repeated ${repeatedNow} of ${ids.size} policies`);
    const out = new Map<string, DecisionRecord>();
    for (const [name, id] of ids) {
      const d = decisions.get(id);
      if (d === undefined) throw new Error(`no decision for ${name} yet`);
      out.set(name, d);
    }
    return out;
  };
  const replicas = async (name: string): Promise<number | null> =>
    keda.getCurrentReplicas({ policyId: ids.get(name) ?? '', policyName: name, targetType: 'cdc-worker', targetId: null, targetRef: null });
  const historyCount = async (name: string): Promise<number> => (await storage.listHistory({ limit: 1000, policy_id: ids.get(name) ?? '' })).rows.length;

  let faultCases = 0;
  let recoveries = 0;
  const byKind: Record<string, number> = {};

  /** Asserts a decision is metric_error with no action, its rule's error of `kind`. */
  const expectMetricError = (tt: typeof t, d: DecisionRecord | undefined, name: string, kind: string, label: string): void => {
    const error = d?.rules[0]?.error ?? null;
    const ok = d?.action === 'none' && d.reason_code === 'metric_error' && d.should_scale === false && typeof error === 'string' && error.startsWith(`${kind}:`);
    tt.ok(ok, `${label}: ${name} is metric_error, no action, error kind ${kind} (got ${d?.action}/${d?.reason_code}: ${error})`);
    faultCases++;
    byKind[kind] = (byKind[kind] ?? 0) + 1;
  };

  /** Asserts a decision is no_rule_held with no action: its rule's value was not finite (no error). */
  const expectNotFinite = (tt: typeof t, d: DecisionRecord | undefined, name: string, shown: string, label: string): void => {
    const r = d?.rules[0];
    const ok =
      d?.action === 'none' && d.reason_code === 'no_rule_held' && r?.held === false && r.error === null && typeof r.detail === 'string' && r.detail.includes(`is ${shown}, which is not a finite number`);
    tt.ok(ok, `${label}: ${name} does not hold (value ${shown}), no action, no error (got ${d?.action}/${d?.reason_code}: ${r?.error} / ${r?.detail})`);
  };

  /** Scale-ups of the two load policies in one cycle (each exactly one step, recorded as succeeded). */
  const expectLoadScaled = async (tt: typeof t, got: Map<string, DecisionRecord>, before: Record<string, { replicas: number | null; rows: number }>, label: string): Promise<void> => {
    for (const name of Object.values(LOAD)) {
      const d = got.get(name);
      tt.equal(d?.action, 'scale_up', `${label}: ${name} scales up (${d?.reason_code}: ${d?.reason})`);
      const was = before[name]?.replicas ?? 1;
      tt.equal(await replicas(name), was + 1, `${label}: ${name} now runs ${was + 1} replicas`);
      const rows = (await storage.listHistory({ limit: 1, policy_id: ids.get(name) ?? '' })).rows;
      tt.equal(await historyCount(name), (before[name]?.rows ?? 0) + 1, `${label}: ${name} has one new history row`);
      tt.match(rows[0], { action: 'scale_up', status: 'succeeded', new_replicas: was + 1 }, `${label}: ${name}'s row is a succeeded scale-up`);
      recoveries++;
    }
  };
  const snapshot = async (): Promise<Record<string, { replicas: number | null; rows: number }>> => {
    const out: Record<string, { replicas: number | null; rows: number }> = {};
    for (const name of Object.values(LOAD)) out[name] = { replicas: await replicas(name), rows: await historyCount(name) };
    return out;
  };

  await t.test('baseline: through the pass-through proxy, the load rules hold and scale; bad queries are metric_error', async (t) => {
    // The 3 s range rules need samples from before their window: wait until Prometheus has one 5 s old.
    await waitFor('a 5 s old sample of philotes_fault_load in Prometheus', async () => ((await promQuery(prom.url, 'philotes_fault_load', Date.now() / 1000 - 5)).length > 0 ? true : undefined), 20_000, 250);
    const before = await snapshot();
    const got = await cycle();
    await expectLoadScaled(t, got, before, 'baseline');
    for (const q of QUERY_FAULTS) {
      expectMetricError(t, got.get(q.name), q.name, q.kind, `${q.what}`);
      t.equal(await historyCount(q.name), 0, `${q.name}: no history row (no action)`);
    }
    for (const q of NOT_FINITE) {
      expectNotFinite(t, got.get(q.name), q.name, q.shown, q.what);
      t.equal(await historyCount(q.name), 0, `${q.name}: no history row (no action)`);
    }
    expectNotFinite(t, got.get('ratio'), 'ratio', 'NaN', 'num/den with both 0');
    expectMetricError(t, got.get('maybe'), 'maybe', 'empty', 'a metric not exported yet');
  });

  for (const f of PROXY_FAULTS) {
    await t.test(`proxy fault "${f.mode}" (${f.what}): every policy metric_error/${f.kind}, then recovery`, async (t) => {
      const before = await snapshot();
      proxy.mode = f.mode;
      const started = Date.now();
      const got = await cycle();
      const ms = Date.now() - started;
      proxy.mode = 'pass';
      t.ok((proxy.served[f.mode] ?? 0) > 0, `the proxy served requests in mode ${f.mode}`);
      for (const name of allNames) {
        // A query Prometheus refuses (400) stays a query error when the answer is cut short but framed.
        const kind = f.mode === 'truncated' && name === 'bad-promql' ? 'http' : f.kind;
        expectMetricError(t, got.get(name), name, kind, f.mode);
      }
      for (const name of Object.values(LOAD)) {
        t.equal(await replicas(name), before[name]?.replicas, `${f.mode}: ${name}'s replicas are unchanged`);
        t.equal(await historyCount(name), before[name]?.rows, `${f.mode}: ${name} has no new history row`);
      }
      if (f.mode === 'hang') t.ok(ms < PLUGIN_TIMEOUT_MS * 3 + 2_000, `the hanging cycle finished within its bound (${ms} ms; plugin timeout ${PLUGIN_TIMEOUT_MS} ms)`);

      const recovered = await cycle();
      // Recovery starts from the counts before the fault, which the fault left unchanged.
      await expectLoadScaled(t, recovered, before, `after ${f.mode}`);
    });
  }

  await t.test('exporter-driven faults: 0/0 (NaN), 1/0 (+Inf), a missing series (empty); then the values become usable', async (t) => {
    // Asked at the whole second, as a cycle asks: a sample scraped later in that second is not seen yet.
    const scraped = (q: string, want: (v: string) => boolean) =>
      waitFor(`${q} in Prometheus`, async () => {
        const r = await promQuery(prom.url, q, Math.floor(Date.now() / 1000));
        return r[0]?.value !== undefined && want(r[0].value[1]) ? true : undefined;
      });
    exporter.set('philotes_fault_num', {}, 1);
    await scraped('philotes_fault_num / philotes_fault_den', (v) => v === '+Inf');
    let got = await cycle();
    expectNotFinite(t, got.get('ratio'), 'ratio', '+Inf', 'num/den with den 0');
    expectMetricError(t, got.get('maybe'), 'maybe', 'empty', 'still not exported');
    t.equal(await historyCount('ratio'), 0, 'ratio: no action');
    t.equal(await historyCount('maybe'), 0, 'maybe: no action');

    exporter.set('philotes_fault_num', {}, 50);
    exporter.set('philotes_fault_den', {}, 1);
    exporter.set('philotes_fault_maybe', {}, 50);
    await scraped('philotes_fault_num / philotes_fault_den', (v) => v === '50');
    await scraped('philotes_fault_maybe', (v) => v === '50');
    got = await cycle();
    for (const name of ['ratio', 'maybe']) {
      t.equal(got.get(name)?.action, 'scale_up', `${name} holds once its value is usable, and scales up`);
      t.match((await storage.listHistory({ limit: 1, policy_id: ids.get(name) ?? '' })).rows[0], { action: 'scale_up', status: 'succeeded', new_replicas: 2 }, `${name}: a succeeded scale-up row`);
      recoveries++;
    }
  });

  await t.test('Prometheus stopped: unreachable through the proxy; restarted: recovery', async (t) => {
    const before = await snapshot();
    await prom.halt();
    const got = await cycle();
    for (const name of allNames) expectMetricError(t, got.get(name), name, 'unreachable', 'Prometheus stopped');
    for (const name of Object.values(LOAD)) t.equal(await replicas(name), before[name]?.replicas, `stopped: ${name}'s replicas are unchanged`);
    t.ok(manager.sourceHealth.get('prometheus')?.ok === false, 'the source is marked down');

    await prom.restart({ waitForMetric: 'philotes_fault_load' });
    // The range rule needs its whole window covered again, so recovery may take a few cycles.
    let cycles = 0;
    const recovered = await waitFor(
      'both load policies to scale up after the restart',
      async () => {
        cycles++;
        const d = await cycle();
        return [...Object.values(LOAD)].every((n) => d.get(n)?.action === 'scale_up') ? d : undefined;
      },
      20_000,
      500,
    );
    t.ok(recovered !== undefined, `recovered after ${cycles} cycle(s)`);
    for (const name of Object.values(LOAD)) {
      const rows = (await storage.listHistory({ limit: 1, policy_id: ids.get(name) ?? '' })).rows;
      t.match(rows[0], { action: 'scale_up', status: 'succeeded' }, `${name}: the recovery scale-up succeeded`);
      recoveries++;
    }
    t.ok(manager.sourceHealth.get('prometheus')?.ok === true, 'the source is marked up again');
  });

  t.comment(`fault cases run: ${faultCases} (by kind: ${Object.entries(byKind).map(([k, v]) => `${k}=${v}`).join(' ')}); recoveries: ${recoveries}`);
  t.comment(`proxy requests by mode: ${Object.entries(proxy.served).map(([k, v]) => `${k}=${v}`).join(' ')}`);
});
