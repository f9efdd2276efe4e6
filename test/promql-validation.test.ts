/**
 * A rule's metric for a PromQL source must be valid PromQL when the policy is written: through
 * the REST API (422 at the metric's JSON pointer), in a policy file (a file problem at the field,
 * the last good version stays in force) and in `philotes-scaler validate`, all with the same
 * message `invalid PromQL at character N: ...`. A source whose plugin does not declare
 * `"queryLanguage": "promql"` gets its metric as written.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { loadConfig } from '../src/config/config.js';
import type { SourceStatus } from '../src/files/policy-file-loader.js';
import { validatePaths } from '../src/files/validate-command.js';
import { startDaemon } from '../src/main.js';
import { PluginManager } from '../src/plugins/plugin-manager.js';
import { promqlProblem } from '../src/policy/promql.js';
import { semanticProblems } from '../src/policy/policy-validation.js';
import { createValidationContext, namesFromPlugins } from '../src/policy/validation-context.js';
import { packageRoot } from '../src/util/package-root.js';
import { call, startTestApp } from './helpers/app.js';

const silent = pino({ level: 'silent' });

/** Invalid queries, each with the character (counted from 1) the error is reported at. */
const INVALID: Array<[string, number, RegExp]> = [
  ['max(up', 7, /unexpected end of query: "\(" at character 4 is not closed/],
  ['rate(x[5m]', 11, /"\(" at character 5 is not closed/],
  ['up{job="a"', 11, /"\{" at character 3 is not closed/],
  ['sum by (job) (', 15, /"\(" at character 14 is not closed/],
  ['foo bar', 5, /unexpected "bar"/],
  ['1 +', 4, /unexpected end of query/],
];

const VALID = [
  'sum(rate(http_requests_total{job="api"}[5m])) by (instance)',
  'vector(1)',
  'up offset 5m',
  'histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))',
  'max_over_time(up[10m:1m])',
  'up @ 1700000000',
  'max(philotes_cdc_lag_seconds{source="orders"}) # a comment',
  "up{job='a', instance=~\"10\\\\..*\"}",
  '{__name__="up", job!=""}',
  'sum without (instance) (up) > bool 1',
  'label_replace(up, "a", "$1", "job", "(.*)")',
  'count_values("v", up)',
  'topk(3, rate(x[5m]))',
  'scalar(up) * 2',
  'clamp(up, 0, 1)',
  'absent(nonexistent{job="myjob"})',
];

/** Queries that parse but that Prometheus (or a rule) cannot use: the semantic checks. */
const SEMANTIC: Array<[string, number, RegExp]> = [
  ['rate(up)', 6, /expected type range vector in call to function "rate", got instant vector/],
  ['abs(up[5m])', 5, /expected type instant vector in call to function "abs", got range vector/],
  ['vector()', 1, /expected 1 argument\(s\) in call to "vector", got 0/],
  ['round(up, 1, 2)', 1, /at most 2 argument/],
  ['sum(up[5m])', 5, /expected type instant vector in aggregation "sum", got range vector/],
  ['topk(up)', 1, /wrong number of arguments for aggregation "topk": expected 2, got 1/],
  ['1 > 2', 1, /must use bool/],
  ['up + bool 1', 1, /bool can only be used with comparison operators/],
  ['up and 1', 1, /applies to instant vectors only/],
  ['1 + "a"', 5, /not a string/],
  ['rate(x[5m]) offset 5m', 1, /offset must follow a selector or a subquery/],
  ['up offset 5m offset 1m', 1, /offset may not be set twice/],
  ['(up)[5m]', 1, /a range \[\.\.\.\] applies only to a metric selector/],
  ['{}', 1, /a selector must have a metric name or at least one matcher that does not match the empty string/],
  ['{job=~".*"}', 1, /does not match the empty string/],
  ['up{__name__="x"}', 1, /must not be set twice/],
  ['up{job="a}', 8, /the string is not closed: a " is missing/],
  ['up{job="a\\q"}', 10, /unknown escape sequence/],
  ['up[5m]', 1, /answers a range vector, but a rule needs one number per time/],
  ['"text"', 1, /answers a string/],
  ['# only a comment', 1, /the query is empty/],
];

t.test('the checker: invalid queries name the character, valid ones pass', async (t) => {
  for (const [q, at, why] of [...INVALID, ...SEMANTIC]) {
    const problem = promqlProblem(q);
    t.match(problem, new RegExp(`^invalid PromQL at character ${at}: `), `${q}: at character ${at} (${problem})`);
    t.match(problem, why, `${q}: says why`);
  }
  for (const q of VALID) t.equal(promqlProblem(q), undefined, `${q} is valid`);
  t.equal(promqlProblem('max(up'), promqlProblem('max(up'), 'cached answers are the same');
  t.match(promqlProblem('ΣΣ(up'), /^invalid PromQL at character 1: /, 'characters are counted, not bytes');
  t.match(promqlProblem('up{a="𝔘"} foo'), /^invalid PromQL at character 11: unexpected "foo"/, 'a character outside the BMP counts once');
});

t.test('garbage is refused at its first error, not parsed through (timings: npm run bench:promql)', async (t) => {
  const noise = Array.from({ length: 8000 }, (_, i) => '(){}[],+-*/ "=~!abc123'[(i * 7919) % 22]).join('');
  t.match(promqlProblem(noise), /^invalid PromQL at character \d+: /, '8 KiB of noise: one error, at its place');
});

const policy = (name: string, upMetric: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  name,
  target_type: 'cdc-worker',
  min_replicas: 1,
  max_replicas: 5,
  scale_up_rules: [{ metric: upMetric, operator: 'gt', threshold: 60, duration: '5m', scale_by: 2 }],
  scale_down_rules: [{ metric: 'max(philotes_cdc_lag_seconds)', operator: 'lt', threshold: 10, duration: '10m', scale_by: -1 }],
  ...extra,
});

type Problem = { code?: string; errors?: Array<{ field: string; message: string }> };

t.test('REST: POST and PUT answer 422 at the metric with the error and its place', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  for (const [q, at] of INVALID) {
    const res = await call('POST', `${app.api}/policies`, policy('bad-promql', q));
    t.equal(res.status, 422, `POST ${q}: 422`);
    const body = res.body as Problem;
    t.equal(body.code, 'VALIDATION_FAILED');
    t.same(body.errors?.map((e) => e.field), ['/scale_up_rules/0/metric'], `${q}: the one field`);
    t.match(body.errors?.[0]?.message, `invalid PromQL at character ${at}: `);
  }
  t.equal((await call('GET', `${app.api}/policies/bad-promql`)).status, 404, 'nothing was stored');

  for (const [i, q] of VALID.entries()) {
    const res = await call('POST', `${app.api}/policies`, policy(`good-${i}`, q));
    t.equal(res.status, 201, `POST ${q}: 201 ${res.text.slice(0, 300)}`);
  }

  // PUT: the error is at the rule that has it, here the second scale-down rule.
  const put = policy('good-0', 'max(up)', {
    scale_down_rules: [
      { metric: 'max(up)', operator: 'lt', threshold: 10, scale_by: -1 },
      { metric: 'sum by (job) (', operator: 'lt', threshold: 5, scale_by: -1 },
    ],
  });
  const res = await call('PUT', `${app.api}/policies/good-0`, put);
  t.equal(res.status, 422);
  t.same((res.body as Problem).errors, [{ field: '/scale_down_rules/1/metric', message: 'invalid PromQL at character 15: unexpected end of query: "(" at character 14 is not closed' }]);
  // A semantic error, and a rule naming the prometheus source explicitly.
  const sem = await call('PUT', `${app.api}/policies/good-0`, policy('good-0', 'rate(up)', { scale_up_rules: [{ metric: 'rate(up)', source: 'prometheus', operator: 'gt', threshold: 1, scale_by: 1 }] }));
  t.equal(sem.status, 422);
  t.same((sem.body as Problem).errors?.map((e) => e.field), ['/scale_up_rules/0/metric']);
});

t.test('REST: a default source that is not PromQL gets its metric as written', async (t) => {
  const app = await startTestApp({ default_metric_source: 'constant' });
  t.teardown(() => app.close());
  const res = await call('POST', `${app.api}/policies`, policy('not-promql', 'max(up'));
  t.equal(res.status, 201, res.text);
});

t.test('blank metrics are still "must not be blank", not a PromQL error', async (t) => {
  const ctx = createValidationContext({ executors: {}, prices: {}, default_metric_source: 'prometheus' });
  const errors = semanticProblems(policy('blank', '   '), ctx);
  t.same(errors, [{ field: '/scale_up_rules/0/metric', message: 'must not be blank' }]);
});

/** A plugin folder with two metric sources: `gauge` (no query language) and `thanos` (PromQL). */
function pluginDir(root: string): string {
  const dir = join(root, 'plugins');
  const source = (name: string, manifest: Record<string, unknown>): void => {
    mkdirSync(join(dir, name), { recursive: true });
    writeFileSync(join(dir, name, 'package.json'), JSON.stringify({ name, version: '1.0.0', type: 'module', main: 'index.js', 'philotes-scaler': { kind: 'metric-source', apiVersion: '^1.0.0', ...manifest } }));
    writeFileSync(join(dir, name, 'index.js'), 'export default () => ({ instantQuery: async (q) => ({ t: q.time.getTime() / 1000, v: 1 }) });\n');
  };
  source('gauge', {});
  source('thanos', { queryLanguage: 'promql' });
  return dir;
}

t.test('which sources are checked: the manifest says, "prometheus" offline', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ps-promql-plugins-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = pluginDir(root);
  const plugins = new PluginManager({ dirs: [PluginManager.bundledDir(), dir], configs: { prometheus: { url: 'http://127.0.0.1:9' } }, logger: silent, timeoutMs: 5000 });
  await plugins.loadAll();
  t.teardown(() => plugins.close());
  const config = { executors: {}, prices: {}, default_metric_source: 'prometheus' };
  const loaded = createValidationContext(config, namesFromPlugins(plugins));
  t.same(
    ['prometheus', 'thanos', 'gauge', undefined].map((s) => loaded.speaksPromQL(s)),
    [true, true, false, true],
    'loaded plugins: prometheus and thanos declare promql; undefined is the default source',
  );
  const gaugeDefault = createValidationContext({ ...config, default_metric_source: 'gauge' }, namesFromPlugins(plugins));
  t.equal(gaugeDefault.speaksPromQL(undefined), false, 'a non-PromQL default source');
  const offline = createValidationContext(config);
  t.same(['prometheus', 'gauge', undefined].map((s) => offline.speaksPromQL(s)), [true, false, true], 'no plugins: only prometheus');
  const noStatuses = createValidationContext(config, namesFromPlugins({ sources: new Map(), executors: new Map(), executorTargetTypes: () => [] }));
  t.equal(noStatuses.speaksPromQL('prometheus'), true, 'prometheus not loaded: still the bundled source');

  const errors = semanticProblems(
    policy('mixed', 'max(up', {
      scale_up_rules: [
        { metric: 'max(up', source: 'gauge', operator: 'gt', threshold: 1, scale_by: 1 },
        { metric: 'max(up', source: 'thanos', operator: 'gt', threshold: 1, scale_by: 1 },
        { metric: 'max(up', operator: 'gt', threshold: 1, scale_by: 1 },
      ],
    }),
    loaded,
  );
  t.same(errors.map((e) => e.field), ['/scale_up_rules/1/metric', '/scale_up_rules/2/metric'], 'the gauge rule is not checked');
});

async function daemon(t: Test): Promise<{ base: string; files: () => SourceStatus[] }> {
  const root = mkdtempSync(join(tmpdir(), 'ps-promql-daemon-'));
  const policies = join(root, 'policies');
  mkdirSync(policies);
  const config = loadConfig({
    env: {},
    cwd: root,
    flags: {
      port: 0,
      host: '127.0.0.1',
      database_path: join(root, 'db.sqlite'),
      policy_dirs: [policies],
      plugin_dirs: [pluginDir(root)],
      prometheus_url: 'http://127.0.0.1:9',
      evaluation_interval: '1h',
    },
  });
  writeFileSync(
    join(policies, 'bad.yaml'),
    [
      'name: bad-file',
      'target_type: cdc-worker',
      'min_replicas: 1',
      'max_replicas: 5',
      'scale_up_rules:',
      '  - metric: max(philotes_cdc_lag_seconds)',
      '    operator: gt',
      '    threshold: 60',
      '    scale_by: 1',
      '  - metric: rate(x[5m]',
      '    operator: gt',
      '    threshold: 60',
      '    scale_by: 1',
      '',
    ].join('\n'),
  );
  writeFileSync(join(policies, 'gauge.yaml'), 'name: gauge-file\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: 5\nscale_up_rules:\n  - metric: "not promql ("\n    source: gauge\n    operator: gt\n    threshold: 1\n    scale_by: 1\n');
  const d = await startDaemon(config, silent);
  t.teardown(async () => {
    await d.close();
    rmSync(root, { recursive: true, force: true });
  });
  return { base: `http://127.0.0.1:${d.port}/api/v1/scaling`, files: () => d.files.statuses() };
}

t.test('the daemon: REST and policy files, with plugins loaded', async (t) => {
  const { base, files } = await daemon(t);
  const bad = await call('POST', `${base}/policies`, policy('rest-bad', 'up{job="a"'));
  t.equal(bad.status, 422);
  t.same((bad.body as Problem).errors, [{ field: '/scale_up_rules/0/metric', message: 'invalid PromQL at character 11: unexpected end of query: "{" at character 3 is not closed' }]);
  const thanos = await call('POST', `${base}/policies`, policy('rest-thanos', 'max(up', { scale_up_rules: [{ metric: 'foo bar', source: 'thanos', operator: 'gt', threshold: 1, scale_by: 1 }] }));
  t.equal(thanos.status, 422, 'a third-party source that declares promql is checked');
  t.match((thanos.body as Problem).errors?.[0], { field: '/scale_up_rules/0/metric', message: /^invalid PromQL at character 5: unexpected "bar"/ });
  const gauge = await call('POST', `${base}/policies`, policy('rest-gauge', 'max(up', { scale_up_rules: [{ metric: 'max(up', source: 'gauge', operator: 'gt', threshold: 1, scale_by: 1 }] }));
  t.equal(gauge.status, 201, `a source without a query language is not checked: ${gauge.text.slice(0, 200)}`);

  const status = files().find((s) => s.path.endsWith('bad.yaml'));
  t.equal(status?.status, 'error', 'the file is rejected');
  t.same(
    status?.errors.map((e) => [e.line, e.column, e.field, e.message]),
    [[10, 13, '/scale_up_rules/1/metric', 'invalid PromQL at character 11: unexpected end of query: "(" at character 5 is not closed']],
    'at the metric, with its line and column',
  );
  t.equal((await call('GET', `${base}/policies/bad-file`)).status, 404, 'not in force');
  t.equal(files().find((s) => s.path.endsWith('gauge.yaml'))?.status, 'ok', 'the gauge file is loaded');
  t.equal((await call('GET', `${base}/policies/gauge-file`)).status, 200);
});

t.test('validate: the same message at the field, as a function and on the command line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ps-promql-validate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const yaml = (name: string, metric: string, source = ''): string =>
    `name: ${name}\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: 5\nscale_up_rules:\n  - metric: ${JSON.stringify(metric)}\n${source}    operator: gt\n    threshold: 60\n    scale_by: 1\n`;
  INVALID.forEach(([q], i) => writeFileSync(join(dir, `bad-${i}.yaml`), yaml(`bad-${i}`, q)));
  VALID.forEach((q, i) => writeFileSync(join(dir, `good-${i}.yaml`), yaml(`good-${i}`, q)));
  // Offline, a source other than prometheus is not known to take PromQL.
  writeFileSync(join(dir, 'other.yaml'), yaml('other', 'max(up', ''));
  const config = loadConfig({ env: {}, cwd: dir, flags: { default_metric_source: 'constant' } });
  const otherOnly = await validatePaths([join(dir, 'other.yaml')], config);
  t.same(otherOnly.problems, [], 'the default source "constant" is not checked');

  const r = await validatePaths([dir], loadConfig({ env: {}, cwd: dir }));
  const byFile = new Map(r.problems.map((p) => [p.file.split(/[\\/]/).pop(), p]));
  INVALID.forEach(([q, at], i) => {
    const p = byFile.get(`bad-${i}.yaml`);
    t.same([p?.line, p?.field], [6, '/scale_up_rules/0/metric'], `${q}: at the metric`);
    t.match(p?.message, new RegExp(`^invalid PromQL at character ${at}: `), `${q}: ${p?.message}`);
  });
  t.match(byFile.get('other.yaml')?.message, /^invalid PromQL at character 7: /, 'with the default config, prometheus is the default source');
  t.equal(r.problems.length, INVALID.length + 1, 'no valid query is reported');

  const cli = join(packageRoot(), 'src', 'cli.ts');
  const run = spawnSync(process.execPath, [...process.execArgv, cli, 'validate', join(dir, 'bad-0.yaml')], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  t.equal(run.status, 1, `exit 1: ${run.stderr}`);
  t.match(run.stdout, /bad-0\.yaml:6:13 \/scale_up_rules\/0\/metric invalid PromQL at character 7: unexpected end of query: "\(" at character 4 is not closed/);
});
