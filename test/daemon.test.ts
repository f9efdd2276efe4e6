import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { servedRoutes } from '../src/api/openapi.js';
import { ConfigError, loadConfig, type ScalerConfig } from '../src/config/config.js';
import { startDaemon, type Daemon } from '../src/main.js';
import { testDaemonConfig } from './helpers/daemon-config.js';

const silent = pino({ level: 'silent' });
const WRITE_TOKEN = 'write-token-0123456789abcdef';
const READ_TOKEN = 'read-token-0123456789abcdef';
const FILE_TOKEN = 'file-token-0123456789abcdef';

async function daemon(t: Test, flags: Partial<Record<keyof ScalerConfig, unknown>> = {}, logger = silent): Promise<{ d: Daemon; base: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'ps-daemon-'));
  const config = testDaemonConfig(dir, flags);
  const d = await startDaemon(config, logger);
  t.teardown(async () => {
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { d, base: `http://127.0.0.1:${d.port}` };
}


t.test('OpenAPI: every served route is documented and every documented route is served', async (t) => {
  const { d, base } = await daemon(t);
  const res = await fetch(`${base}/api/v1/openapi.json`);
  t.equal(res.status, 200);
  const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, unknown>>; components: { schemas: Record<string, unknown> } };
  t.equal(doc.openapi, '3.1.0');
  const documented = Object.entries(doc.paths)
    .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
    .sort();
  t.same(documented, servedRoutes(d.app), 'the same set of routes');
  // Every $ref points at a component that exists.
  const refs = JSON.stringify(doc).match(/"#\/components\/schemas\/[^"]+"/g) ?? [];
  for (const r of new Set(refs)) t.ok(doc.components.schemas[r.slice('"#/components/schemas/'.length, -1)] !== undefined, `${r} resolves`);
  t.ok(refs.length > 10);
  t.match(doc.components.schemas['Policy'], { properties: { name: { pattern: '^[a-z0-9][a-z0-9-]{0,62}$' } } }, 'built from the policy schema itself');
});

t.test('auth matrix: 401 without or with a bad token, 403 with the wrong scope, probes open', async (t) => {
  const { base } = await daemon(t, {
    api_token: WRITE_TOKEN,
    api_read_token: READ_TOKEN,
    auth: { tokens: [{ name: 'ci', sha256: createHash('sha256').update(FILE_TOKEN).digest('hex'), scopes: ['read'] }], open_probes: true },
  });
  const policy = JSON.stringify({ name: 'auth-test', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 2 });
  const call = async (method: string, path: string, token?: string, raw?: string) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (raw !== undefined) headers['authorization'] = raw;
    else if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
    const res = await fetch(`${base}${path}`, { method, headers, body: method === 'POST' ? policy : undefined });
    return { status: res.status, type: res.headers.get('content-type') ?? '', www: res.headers.get('www-authenticate') };
  };
  const matrix: Array<[string, string, string | undefined, string | undefined, number]> = [
    ['GET', '/api/v1/scaling/policies', undefined, undefined, 401],
    ['GET', '/api/v1/scaling/policies', 'not-a-token', undefined, 401],
    ['GET', '/api/v1/scaling/policies', undefined, `Basic ${Buffer.from('a:b').toString('base64')}`, 401],
    ['GET', '/api/v1/scaling/policies', undefined, `Bearer`, 401],
    ['GET', '/api/v1/scaling/policies', READ_TOKEN, undefined, 200],
    ['GET', '/api/v1/scaling/policies', FILE_TOKEN, undefined, 200],
    ['GET', '/api/v1/scaling/policies', WRITE_TOKEN, undefined, 200],
    ['POST', '/api/v1/scaling/policies', undefined, undefined, 401],
    ['POST', '/api/v1/scaling/policies', READ_TOKEN, undefined, 403],
    ['POST', '/api/v1/scaling/policies', FILE_TOKEN, undefined, 403],
    ['POST', '/api/v1/scaling/policies', WRITE_TOKEN, undefined, 201],
    ['GET', '/api/v1/scaling/history', READ_TOKEN, undefined, 200],
    ['POST', '/api/v1/scaling/policies/auth-test/evaluate', READ_TOKEN, undefined, 403],
    ['DELETE', '/api/v1/scaling/policies/auth-test', READ_TOKEN, undefined, 403],
    ['DELETE', '/api/v1/scaling/policies/auth-test', WRITE_TOKEN, undefined, 204],
    ['GET', '/healthz', undefined, undefined, 200],
    ['GET', '/readyz', undefined, undefined, 200],
    ['GET', '/metrics', undefined, undefined, 200],
    ['GET', '/api/v1/openapi.json', undefined, undefined, 401],
  ];
  for (const [method, path, token, raw, expected] of matrix) {
    const r = await call(method, path, token, raw);
    const who = raw !== undefined ? `header "${raw.slice(0, 12)}"` : token === undefined ? 'no token' : token.split('-')[0] + ' token';
    t.equal(r.status, expected, `${method} ${path} with ${who} -> ${expected}`);
    if (expected === 401 || expected === 403) t.match(r.type, /application\/problem\+json/);
    if (expected === 401) t.match(r.www, /^Bearer/);
  }
});

t.test('probes can require a token too', async (t) => {
  const { base } = await daemon(t, { api_token: WRITE_TOKEN, auth: { tokens: [], open_probes: false } });
  t.equal((await fetch(`${base}/metrics`)).status, 401);
  t.equal((await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${WRITE_TOKEN}` } })).status, 200);
});

t.test('/metrics: the daemon\'s own metrics, prefixed philotes_scaling_', async (t) => {
  const { d, base } = await daemon(t, { evaluation_interval: '1s' });
  await fetch(`${base}/api/v1/scaling/policies`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'm', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 2, scale_up_rules: [{ metric: 'up', operator: 'gt', threshold: 1, scale_by: 1 }] }),
  });
  await d.manager.runCycle();
  const text = await (await fetch(`${base}/metrics`)).text();
  for (const name of [
    'philotes_scaling_cycle_duration_seconds_count',
    'philotes_scaling_evaluations_total{action="none",reason_code="metric_error",trigger="loop"}',
    'philotes_scaling_metric_source_requests_total{source="prometheus",call="instantQuery"}',
    'philotes_scaling_metric_source_errors_total{source="prometheus",call="instantQuery",kind="unreachable"}',
    'philotes_scaling_policies{source="api",enabled="true"} 1',
    'philotes_scaling_policy_file_errors 0',
    'philotes_scaling_leader 1',
    'philotes_scaling_plugins{status="loaded"} 5',
    'philotes_scaling_http_requests_total{method="POST",route="/api/v1/scaling/policies",status="201"} 1',
    'process_cpu_user_seconds_total',
  ]) {
    t.ok(text.includes(name), name);
  }
});

t.test('config: defaults, then file, then environment, then flags; a bad value names its key', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ps-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'philotes-scaler.yaml');
  writeFileSync(file, 'port: 9000\nevaluation_interval: 1m\ndefault_cooldown: 60\nprices: { trino: 0.6 }\n');
  const base = loadConfig({ env: {}, cwd: tmpdir() });
  t.equal(base.port, 8080);
  t.equal(base.evaluation_interval_ms, 30_000);
  t.equal(base.prometheus_url, 'http://localhost:9090');
  t.equal(base.default_cooldown, 300);
  t.same(base.policy_dirs, ['./policies']);
  t.same(base.executors, { 'cdc-worker': 'keda', trino: 'keda', risingwave: 'keda', nodes: 'logger' });
  const fromFile = loadConfig({ env: {}, cwd: dir });
  t.equal(fromFile.port, 9000, 'philotes-scaler.yaml in the working directory is read');
  t.equal(fromFile.evaluation_interval_ms, 60_000);
  t.same(fromFile.prices, { trino: 0.6 });
  const fromEnv = loadConfig({ env: { PORT: '9100', PHILOTES_SCALING_DEFAULT_COOLDOWN: '30', PHILOTES_SCALING_POLICY_DIRS: 'a, b', PHILOTES_SCALING_DRY_RUN: 'true' }, cwd: dir });
  t.equal(fromEnv.port, 9100, 'environment beats the file');
  t.equal(fromEnv.default_cooldown, 30);
  t.same(fromEnv.policy_dirs, ['a', 'b']);
  t.equal(fromEnv.dry_run, true);
  t.equal(fromEnv.evaluation_interval_ms, 60_000, 'file values the environment does not set stay');
  const fromFlags = loadConfig({ env: { PORT: '9100' }, cwd: dir, flags: { port: 9200 } });
  t.equal(fromFlags.port, 9200, 'flags beat the environment');
  t.ok(Object.isFrozen(fromFlags) && Object.isFrozen(fromFlags.prices), 'frozen');

  const bad = (opts: Parameters<typeof loadConfig>[0]): string => {
    try {
      loadConfig(opts);
      return 'no error';
    } catch (err) {
      t.ok(err instanceof ConfigError);
      return (err as Error).message;
    }
  };
  t.match(bad({ env: { PORT: 'eighty' } }), /PORT: must be an integer, got "eighty"/);
  t.match(bad({ env: { PHILOTES_SCALING_ENABLED: 'maybe' } }), /PHILOTES_SCALING_ENABLED: must be true or false/);
  t.match(bad({ env: { PHILOTES_SCALING_EVALUATION_INTERVAL: 'soon' } }), /\/evaluation_interval: "soon" is not a duration: use whole numbers with the units d, h, m and s.*\(from PHILOTES_SCALING_EVALUATION_INTERVAL\)/);
  t.match(bad({ env: { PHILOTES_SCALING_EVALUATION_INTERVAL: '0s' } }), /\/evaluation_interval: must be a duration of at least 1s/);
  t.match(bad({ env: { PHILOTES_SCALING_PROMETHEUS_URL: 'not a url' } }), /\/prometheus_url: must match format "uri" \(from PHILOTES_SCALING_PROMETHEUS_URL\)/);
  writeFileSync(file, 'port: 9000\nevaluation_intervall: 1m\n');
  t.match(bad({ env: {}, cwd: dir }), /\/evaluation_intervall: is not a known property/);
  writeFileSync(file, 'port: [\n');
  t.match(bad({ env: {}, cwd: dir }), /not valid YAML or JSON/);
  t.match(bad({ env: {}, file: join(dir, 'missing.yaml') }), /cannot read/);
});

t.test('safe defaults: 127.0.0.1 unless a host is configured; beyond loopback without a token, a warning at start', async (t) => {
  t.equal(loadConfig({ env: {}, cwd: tmpdir() }).host, '127.0.0.1', 'the default listen address is loopback');
  t.equal(loadConfig({ env: { HOST: '0.0.0.0' }, cwd: tmpdir() }).host, '0.0.0.0', 'HOST sets it (the container image does)');
  const started = async (flags: Partial<Record<keyof ScalerConfig, unknown>>): Promise<Array<{ level: number; msg: string }>> => {
    const lines: Array<{ level: number; msg: string }> = [];
    const logger = pino({ level: 'info' }, { write: (chunk: string) => void lines.push(JSON.parse(chunk) as { level: number; msg: string }) });
    await daemon(t, flags, logger);
    return lines;
  };
  const open = await started({ host: '0.0.0.0' });
  const warning = open.filter((l) => /beyond this machine, with no token configured/.test(l.msg));
  t.equal(warning.length, 1, 'one warning when the API is open to the network without a token');
  t.equal(warning[0]?.level, 40);
  t.match(warning[0]?.msg, /Set PHILOTES_SCALING_API_TOKEN/);
  t.ok(open.some((l) => /listening on 0\.0\.0\.0:\d+/.test(l.msg)), 'the listen line names the address');
  const withToken = await started({ host: '0.0.0.0', api_token: WRITE_TOKEN });
  t.notOk(withToken.some((l) => /no token configured/.test(l.msg)), 'no warning with a token');
  const loopback = await started({ host: '127.0.0.1' });
  t.notOk(loopback.some((l) => /no token configured/.test(l.msg)), 'no warning on loopback');
});
