// Safe under faults (item 11): tokens that can never be sent are refused at start, naming the key
// and the variable; slow clients cannot hold a request open: headers and bodies have a bound
// (408 problem+json, connection closed), tested with real slow clients on loopback.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { ConfigError, loadConfig, type ScalerConfig } from '../src/config/config.js';
import { startDaemon, type Daemon } from '../src/main.js';
import { spawnDaemon } from './helpers/daemon-process.js';

const GOOD = 'good-token-0123456789abcdef';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

t.test('tokens with whitespace or control characters are refused at start, naming the key and the variable', async (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'ps-tokens-'));
  t.teardown(() => rmSync(cwd, { recursive: true, force: true }));

  const newline = configError(() => loadConfig({ env: { PHILOTES_SCALING_API_TOKEN: `${GOOD}\n` }, cwd }));
  t.same(newline.errors.map((e) => e.field), ['/api_token']);
  t.match(newline.errors[0]?.message, /line feed \(newline\) at the end/);
  t.match(newline.errors[0]?.message, /\(from PHILOTES_SCALING_API_TOKEN\)/, 'names the variable');
  t.match(newline.message, /kubectl create secret --from-file/, 'says the common cause');
  t.notMatch(newline.message, GOOD, 'never prints the token');

  const spaces = configError(() => loadConfig({ env: { PHILOTES_SCALING_API_READ_TOKEN: `${GOOD}  ` }, cwd }));
  t.same(spaces.errors.map((e) => e.field), ['/api_read_token']);
  t.match(spaces.errors[0]?.message, /a space at the end.*\(from PHILOTES_SCALING_API_READ_TOKEN\)/);

  const both = configError(() => loadConfig({ env: { PHILOTES_SCALING_API_TOKEN: `\r${GOOD}`, PHILOTES_SCALING_API_READ_TOKEN: `${GOOD.slice(0, 5)}\u0000${GOOD.slice(5)}` }, cwd }));
  t.same(both.errors.map((e) => e.field), ['/api_token', '/api_read_token'], 'every bad token is named at once');
  t.match(both.errors[0]?.message, /carriage return at the start/);
  t.match(both.errors[1]?.message, /U\+0000 at character 6 of 28/);

  const file = join(cwd, 'scaler.yaml');
  writeFileSync(file, `api_token: "${GOOD}\\t"\n`);
  const fromFile = configError(() => loadConfig({ file, env: {}, cwd }));
  t.match(fromFile.errors[0], { field: '/api_token', message: new RegExp(`a tab at the end.*\\(from ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\)`) }, 'names the file');

  const nbsp = configError(() => loadConfig({ flags: { api_token: `${GOOD}\u00a0` }, env: {}, cwd }));
  t.match(nbsp.errors[0]?.message, /U\+00A0 at the end.*\(from a flag\)/, 'Unicode whitespace too');

  t.equal(loadConfig({ env: { PHILOTES_SCALING_API_TOKEN: GOOD }, cwd }).api_token, GOOD, 'a clean token is accepted');
});

t.test('a daemon started with such a token exits at once with a message naming the variable', async (t) => {
  const d = await spawnDaemon({ name: 'bad-token', env: { PHILOTES_SCALING_API_TOKEN: `${GOOD}\n` }, waitHealthy: false });
  t.teardown(() => d.destroy());
  const exit = await d.waitExit(20_000);
  t.not(exit.code, 0, `non-zero exit (${JSON.stringify(exit)})`);
  t.match(d.stderr(), /\/api_token: contains a line feed \(newline\) at the end.*\(from PHILOTES_SCALING_API_TOKEN\)/);
});

async function daemon(t: Test, flags: Partial<Record<keyof ScalerConfig, unknown>> = {}): Promise<{ d: Daemon; port: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'ps-slow-'));
  mkdirSync(join(dir, 'policies'));
  const config = loadConfig({
    env: {},
    cwd: dir,
    flags: { port: 0, host: '127.0.0.1', database_path: join(dir, 'db.sqlite'), policy_dirs: [join(dir, 'policies')], prometheus_url: 'http://127.0.0.1:9', enabled: false, ...flags },
  });
  const d = await startDaemon(config, pino({ level: 'silent' }));
  t.teardown(async () => {
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { d, port: d.port };
}

/** A raw client: sends `parts` with pauses, collects the answer until the server closes the connection. */
function slowClient(port: number, parts: Array<string | number>): Promise<{ text: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket: Socket = connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve({ text, closedAfterMs: performance.now() - started }));
    const timer = setTimeout(() => socket.destroy(new Error(`no close within 20 s; got ${JSON.stringify(text)}`)), 20_000);
    socket.on('close', () => clearTimeout(timer));
    socket.on('connect', async () => {
      for (const p of parts) {
        if (typeof p === 'number') await new Promise((r) => setTimeout(r, p));
        else if (!socket.destroyed) socket.write(p);
      }
    });
  });
}

function problemOf(raw: string): { status: number; headers: string; body: Record<string, unknown> } {
  const [head = '', body = ''] = raw.split('\r\n\r\n');
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), headers: head.toLowerCase(), body: JSON.parse(body) as Record<string, unknown> };
}

const POLICY = JSON.stringify({ name: 'slow', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 2, scale_up_rules: [{ metric: 'up', operator: 'gt', threshold: 1, scale_by: 1 }] });

t.test('request reception is bounded: 30 s by default, configurable', async (t) => {
  const defaults = loadConfig({ env: {}, cwd: tmpdir() });
  t.equal(defaults.request_headers_timeout_ms, 30_000);
  t.equal(defaults.request_body_timeout_ms, 30_000);
  t.throws(() => loadConfig({ env: {}, cwd: tmpdir(), flags: { request_body_timeout: '0s' } }), { errors: [{ field: '/request_body_timeout' }] });
  const { d } = await daemon(t);
  t.equal(d.server.headersTimeout, 30_000, 'headers within 30 s');
  t.equal(d.server.requestTimeout, 65_000, 'a whole request within headers + body + 5 s (was 300 s)');
});

t.test('a client too slow with its headers gets 408 problem+json and its connection is closed', async (t) => {
  const { port } = await daemon(t, { request_headers_timeout: '1s', request_body_timeout: '1s' });
  const { text, closedAfterMs } = await slowClient(port, ['GET /api/v1/scaling/policies HTTP/1.1\r\nHost: x\r\n', 400, 'X-Slow: 1\r\n']);
  const p = problemOf(text);
  t.equal(p.status, 408);
  t.match(p.headers, /content-type: application\/problem\+json/);
  t.match(p.headers, /connection: close/);
  t.match(p.body, { status: 408, code: 'REQUEST_TIMEOUT', title: String, detail: /not received in time/ });
  t.ok(closedAfterMs >= 900 && closedAfterMs < 4_000, `closed after ${Math.round(closedAfterMs)} ms (bound 1 s, checked every second)`);
});

t.test('a client too slow with its body gets 408 problem+json from the API and its connection is closed', async (t) => {
  const { d, port } = await daemon(t, { request_headers_timeout: '1s', request_body_timeout: '1s' });
  const head = `POST /api/v1/scaling/policies HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${POLICY.length}\r\n\r\n`;
  const { text, closedAfterMs } = await slowClient(port, [head, POLICY.slice(0, 10), 5_000, POLICY.slice(10)]);
  const p = problemOf(text);
  t.equal(p.status, 408);
  t.match(p.headers, /content-type: application\/problem\+json/);
  t.match(p.headers, /connection: close/);
  t.match(p.body, { status: 408, code: 'REQUEST_TIMEOUT', detail: 'the request body did not arrive within 1 s', instance: '/api/v1/scaling/policies' });
  t.ok(closedAfterMs >= 900 && closedAfterMs < 3_000, `answered and closed after ${Math.round(closedAfterMs)} ms`);
  t.equal((await d.policies.list({ limit: 10, offset: 0 })).total, 0, 'nothing was created');

  // A body that arrives within the bound, even in pieces, is read as usual.
  const ok = await slowClient(port, [head.replace('HTTP/1.1\r\n', 'HTTP/1.1\r\nConnection: close\r\n'), POLICY.slice(0, 10), 300, POLICY.slice(10)]);
  t.match(ok.text, /^HTTP\/1\.1 201/, 'a body in pieces within the bound is accepted');
});
