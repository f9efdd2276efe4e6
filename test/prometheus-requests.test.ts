/**
 * One manager cycle sends one request per distinct (source, query, aggregation, window), counted
 * by Prometheus itself: 100 policies drawing their 300 rules from 10 query strings cost 10 range
 * queries, not 300.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { ScalingManager } from '../src/engine/manager.js';
import { observationKey } from '../src/engine/rule-window.js';
import { PluginManager } from '../src/plugins/plugin-manager.js';
import { PolicyService } from '../src/policy/policy-service.js';
import { createValidationContext, namesFromPlugins } from '../src/policy/validation-context.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import { promQuery, requireTool, settledRequestCounts, startExporter, startPrometheus, waitFor } from './helpers/prometheus.js';

const METRIC = 'philotes_cdc_lag_seconds';
const QUERIES = Array.from({ length: 10 }, (_, i) => `max(${METRIC}{source="s${i}"})`);
const POLICIES = 100;
const QUERY_HANDLERS = ['/api/v1/query_range', '/api/v1/query'];

t.test('one cycle over 100 policies sharing 10 queries sends Prometheus 10 requests', async (t) => {
  requireTool('prometheus');
  const exporter = await startExporter();
  t.teardown(() => exporter.close());
  QUERIES.forEach((_, i) => exporter.set(METRIC, { source: `s${i}` }, 10 * i));
  const prom = await startPrometheus({ target: exporter.target, waitForMetric: `${METRIC}{source="s9"}` });
  t.teardown(() => prom.stop());
  // A window ends at the whole second before now: wait until every series has a sample there, so
  // no query of the cycle can come back empty.
  await waitFor('a sample of every series before the current second', async () => {
    const r = await promQuery(prom.url, `count(${METRIC})`, Math.floor(Date.now() / 1000) - 1);
    return r[0]?.value?.[1] === String(QUERIES.length) ? true : undefined;
  });

  const dir = await mkdtemp(join(tmpdir(), 'philotes-requests-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const logger = pino({ level: 'silent' });
  const plugins = new PluginManager({ dirs: [PluginManager.bundledDir()], configs: { prometheus: { url: prom.url } }, logger, timeoutMs: 5_000 });
  await plugins.loadAll();
  t.teardown(() => plugins.close());
  const storage = createSqliteStorage(join(dir, 'scaler.db'));
  await storage.migrate();
  t.teardown(() => storage.close());
  const cfg = { executors: { 'cdc-worker': 'keda', trino: 'keda', risingwave: 'keda', nodes: 'logger' }, prices: {}, default_metric_source: 'prometheus' };
  const policies = new PolicyService({
    storage,
    validation: createValidationContext(cfg, namesFromPlugins(plugins)),
    defaultCooldown: 300,
  });

  // 100 policies: up rules on queries i and i+1, a down rule on i+2 (mod 10), all with duration 5s.
  for (let i = 0; i < POLICIES; i++) {
    const q = (k: number): string => QUERIES[(i + k) % QUERIES.length] as string;
    await policies.create({
      name: `requests-${i}`,
      target_type: 'cdc-worker',
      min_replicas: 1,
      max_replicas: 10,
      scale_up_rules: [
        { metric: q(0), operator: 'gt', threshold: 60, duration: '5s', scale_by: 2 },
        { metric: q(1), operator: 'gt', threshold: 30, duration: '5s', scale_by: 1 },
      ],
      scale_down_rules: [{ metric: q(2), operator: 'lt', threshold: 10, duration: '5s', scale_by: -1 }],
    });
  }
  const stored = await storage.listEnabledPolicies();
  t.equal(stored.length, POLICIES, '100 enabled policies stored');
  const rules = stored.flatMap((p) => [...p.scale_up_rules, ...p.scale_down_rules]);
  t.equal(rules.length, 300, '300 rules');
  t.equal(new Set(rules.map((r) => observationKey(r, 'prometheus'))).size, 10, 'exactly 10 distinct (source, query, aggregation, window) keys');

  const manager = new ScalingManager({
    storage,
    logger,
    sources: plugins.sources,
    executors: plugins.executors,
    config: { evaluation_interval_ms: 1_000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 16, executors: cfg.executors, prices: {} },
  });

  // Counters are read from /metrics (another handler), once they have settled: Prometheus counts a
  // request when it finishes, possibly just after the client got its answer.
  const before = await settledRequestCounts(prom.url);
  const report = await manager.runCycle();
  const afterCounts = await settledRequestCounts(prom.url);
  const delta = (h: string): number => (afterCounts[h] ?? 0) - (before[h] ?? 0);
  const requests = QUERY_HANDLERS.reduce((n, h) => n + delta(h), 0);
  t.comment(`Prometheus counted ${requests} query requests for one cycle over ${report.policies} policies (${rules.length} rules): ${QUERY_HANDLERS.map((h) => `${h} +${delta(h)}`).join(', ')}`);
  t.equal(requests, 10, 'Prometheus received exactly 10 query requests');
  t.equal(delta('/api/v1/query_range'), 10, 'all of them range queries (the rules have a 5s window)');
  t.equal(report.fetches, 10, 'lastCycle reports 10 fetches');
  t.equal(manager.lastCycle?.fetches, 10, 'manager.lastCycle.fetches === 10');
  const firstError = (await Promise.all(stored.map((p) => storage.getState(p.id))))
    .flatMap((s) => ScalingManager.lastDecision(s)?.rules ?? [])
    .find((r) => r.error !== null)?.error;
  t.equal(report.fetch_errors, 0, `no fetch failed${firstError === undefined ? '' : ` (${firstError})`}`);
  t.equal(report.policies, POLICIES, 'every policy evaluated');
  t.equal(report.errors, 0, 'no evaluation failed');
  const evaluated = Object.values(report.outcomes).reduce((a, b) => a + b, 0);
  t.equal(evaluated, POLICIES, `outcomes for all 100 policies: ${JSON.stringify(report.outcomes)}`);
  const states = await Promise.all(stored.map((p) => storage.getState(p.id)));
  t.ok(
    states.every((s) => ScalingManager.lastDecision(s)?.rules.every((r) => r.error === null) === true),
    'every decision saw its metrics without error',
  );
});
