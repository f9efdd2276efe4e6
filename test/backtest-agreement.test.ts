/**
 * Agreement: a series backfilled into a real Prometheus (promtool) and backtested gives the same
 * decisions as a policy test on the same series in expanding notation. The backtest's decision
 * at every evaluation becomes an expectation of a generated policy test, which must then pass.
 */
import { rm, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { runBacktest } from '../src/backtest/backtest-service.js';
import { loadConfig } from '../src/config/config.js';
import { PluginManager } from '../src/plugins/plugin-manager.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { expandSeries } from '../src/policy-tests/expanding-notation.js';
import { runPolicyTestText } from '../src/policy-tests/policy-test-runner.js';
import { backfill, requireTool, startPrometheus, tempDataDir } from './helpers/prometheus.js';

const METRIC = 'philotes_cdc_lag_seconds';
const QUERY = `max(${METRIC}{source="agree"})`;
// Quiet, a surge, quiet, a second surge with a dip, quiet: 185 minutes, one value a minute.
const NOTATION = '5x19 120x24 5x29 90+1x14 30x4 95x19 2x69 ';
const POLICY_YAML = `name: agreement
target_type: cdc-worker
min_replicas: 1
max_replicas: 10
cooldown_seconds: 300
scale_up_rules:
  - metric: '${QUERY}'
    operator: gt
    threshold: 60
    duration: 5m
    scale_by: 2
scale_down_rules:
  - metric: '${QUERY}'
    operator: lt
    threshold: 10
    duration: 10m
    scale_by: -1
`;

t.test('backtest on backfilled Prometheus history == policy test on the same series', async (t) => {
  requireTool('prometheus');
  requireTool('promtool');
  const values = expandSeries(NOTATION.trim());
  t.equal(values.length, 185);
  const start = Math.floor(Date.now() / 1000 / 60) * 60 - 4 * 3600; // minute-aligned, four hours ago
  const lines = [`# TYPE ${METRIC} gauge`];
  values.forEach((v, i) => {
    if (v !== null) lines.push(`${METRIC}{source="agree"} ${v} ${start + i * 60}`);
  });
  lines.push('# EOF');
  const dataDir = await tempDataDir();
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  await backfill(dataDir, `${lines.join('\n')}\n`);
  const prom = await startPrometheus({ dataDir });
  t.teardown(() => prom.stop());

  const logger = pino({ level: 'silent' });
  const plugins = new PluginManager({ dirs: [PluginManager.bundledDir()], configs: { prometheus: { url: prom.url } }, logger, timeoutMs: 10_000 });
  await plugins.loadAll();
  t.teardown(() => plugins.close());
  const { parse } = await import('yaml');
  const policy = normalizePolicy(parse(POLICY_YAML), { source: 'api', now: new Date() });
  const from = new Date(start * 1000);
  const to = new Date((start + (values.length - 1) * 60) * 1000);
  const bt = await runBacktest(policy, { from, to, stepSeconds: 60, initialReplicas: 1 }, { sources: plugins.sources, defaultSource: 'prometheus', defaultCooldown: 300, prices: {} });
  t.equal(bt.timeline.length, values.length);
  t.ok((bt.summary.actions['scale_up'] ?? 0) >= 2 && (bt.summary.actions['scale_down'] ?? 0) >= 2, `a non-trivial run: ${JSON.stringify(bt.summary.actions)}`);
  t.notOk(bt.timeline.some((r) => r.reason_code === 'metric_error'), 'Prometheus answered every window');

  // The same decisions, stated as a policy test on the same series.
  const dir = await mkdtemp(join(tmpdir(), 'ps-agree-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'agreement.yaml'), POLICY_YAML);
  const expect = bt.timeline.map((row, i) => `      - { at: ${i}m, replicas: ${row.replicas}, action: ${row.action}, reason_code: ${row.reason_code} }`);
  const testYaml = [
    'policy_files: [agreement.yaml]',
    'evaluation_interval: 1m',
    'tests:',
    '  - name: every decision of the Prometheus backtest',
    `    start: ${from.toISOString()}`,
    '    initial_replicas: 1',
    '    input_series:',
    `      - query: '${QUERY}'`,
    `        values: '${NOTATION.trim()}'`,
    '    expect:',
    ...expect,
  ].join('\n');
  const config = loadConfig({ env: {}, cwd: dir });
  const result = await runPolicyTestText(join(dir, 'agreement.test.yaml'), `${testYaml}\n`, config);
  const failures = result.cases.flatMap((c) => c.failures);
  t.same(result.problems, [], 'the generated test file is valid');
  t.equal(result.cases.length, 1);
  t.equal(result.cases[0]?.passed, true, `all ${values.length} decisions agree${failures.length > 0 ? `; first difference: ${JSON.stringify(failures[0])}` : ''}`);
  t.comment(`backtest vs policy test: ${bt.timeline.length} decisions compared, actions ${JSON.stringify(bt.summary.actions)}`);
});
