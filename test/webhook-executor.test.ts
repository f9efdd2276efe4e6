/**
 * The bundled webhook executor against a real HTTP server on loopback, which verifies each
 * request's signature as a receiver would, and answers with the failures the executor must ride
 * out (5xx, 429 with Retry-After, hangs, refused connections) or report (4xx, bad answers).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { PluginManager, type IsolatedExecutor } from '../src/plugins/plugin-manager.js';
import { capturingLogger, scaleOpts, targetOf, type LogLine } from './helpers/kube-executor.js';

const SECRET = 'webhook-secret-0123456789';

interface Received {
  method: string;
  url: URL;
  headers: IncomingMessage['headers'];
  body: string;
  /** The signature checked as a receiver does: HMAC-SHA256 of the raw body, compared in constant time. */
  signed: boolean;
}

/** A receiver on 127.0.0.1: `answer` decides each response (default 200 {"ok":true}). */
async function receiver(t: Test, answer?: (r: Received, res: ServerResponse, n: number) => void): Promise<{ url: string; got: Received[] }> {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const header = String(req.headers['x-philotes-signature'] ?? '');
      const expected = Buffer.from(`sha256=${createHmac('sha256', SECRET).update(raw).digest('hex')}`);
      const signed = header.length === expected.length && timingSafeEqual(Buffer.from(header), expected);
      const r: Received = { method: req.method ?? '', url: new URL(req.url ?? '/', 'http://x'), headers: req.headers, body: raw.toString('utf8'), signed };
      got.push(r);
      if (answer !== undefined) answer(r, res, got.length);
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got };
}

async function webhook(t: Test, config: Record<string, unknown>, timeoutMs = 10_000): Promise<{ pm: PluginManager; executor: IsolatedExecutor | undefined; logs: LogLine[] }> {
  const logs: LogLine[] = [];
  const pm = new PluginManager({ dirs: [PluginManager.bundledDir()], configs: { prometheus: { url: 'http://127.0.0.1:9' }, webhook: config }, logger: capturingLogger(logs), timeoutMs });
  await pm.loadAll();
  t.teardown(() => pm.close());
  return { pm, executor: pm.executors.get('webhook'), logs };
}

t.test('a signed JSON POST with the decision, under one Idempotency-Key', async (t) => {
  const { url, got } = await receiver(t);
  const { executor, logs } = await webhook(t, { url: `${url}/scale`, secret: SECRET, headers: { authorization: 'Bearer abc' } });
  const target = targetOf({ kind: 'Deployment', name: 'worker', namespace: 'cdc' }, { policyName: 'orders', targetId: '6f1d2c3b-0000-4000-8000-000000000001' });
  await executor?.scale(target, 5, { dryRun: false, reason: 'Scaled up from 3 to 5: lag > 60.', decisionId: 'd-123', previousReplicas: 3 });
  t.equal(got.length, 1);
  const r = got[0] as Received;
  t.equal(r.method, 'POST');
  t.equal(r.url.pathname, '/scale');
  t.ok(r.signed, 'the signature verifies with the shared secret');
  t.equal(r.headers['idempotency-key'], 'd-123');
  t.equal(r.headers['content-type'], 'application/json');
  t.equal(r.headers['authorization'], 'Bearer abc', 'configured headers are sent');
  t.same(JSON.parse(r.body), {
    decision_id: 'd-123',
    policy_id: target.policyId,
    policy_name: 'orders',
    target_type: 'cdc-worker',
    target_id: '6f1d2c3b-0000-4000-8000-000000000001',
    target_ref: { kind: 'Deployment', name: 'worker', namespace: 'cdc', api_version: null },
    previous_replicas: 3,
    replicas: 5,
    reason: 'Scaled up from 3 to 5: lag > 60.',
    dry_run: false,
  });
  t.ok(logs.some((l) => /^webhook: http:\/\/127\.0\.0\.1:\d+\/scale accepted orders 3 -> 5 \(HTTP 200\)$/.test(l.msg)), 'logged');
  await executor?.scale(targetOf(null), 2, scaleOpts({ dryRun: true }));
  t.match(JSON.parse(got[1]?.body ?? '{}'), { dry_run: true, target_ref: null }, 'a dry run is sent too, marked, for the receiver to decide');
});

t.test('5xx and 408 are retried with the same body, signature and Idempotency-Key; 429 waits for Retry-After', async (t) => {
  const codes = [503, 408, 200];
  const { url, got } = await receiver(t, (_r, res, n) => res.writeHead(codes[n - 1] ?? 200).end(n < 3 ? 'busy' : '{}'));
  const { executor, logs } = await webhook(t, { url, secret: SECRET, retry_base_ms: 10 });
  await executor?.scale(targetOf(null), 4, scaleOpts({ decisionId: 'same-key' }));
  t.equal(got.length, 3, 'two failures, then accepted');
  t.same(new Set(got.map((r) => r.headers['idempotency-key'])), new Set(['same-key']), 'one key for every attempt');
  t.same(new Set(got.map((r) => r.body)).size, 1, 'the same body');
  t.ok(got.every((r) => r.signed));
  t.same(
    logs.filter((l) => l.level === 40).map((l) => l.msg.replace(/\d+ ms$/, 'N ms').replace(/:\d+/, ':PORT')),
    ['webhook: POST http://127.0.0.1:PORT/: HTTP 503: busy; retry 1 of 3 in N ms', 'webhook: POST http://127.0.0.1:PORT/: HTTP 408: busy; retry 2 of 3 in N ms'],
  );

  // Without Retry-After the waits follow the backoff: up to retry_base_ms, then twice that.
  const slowBase = await receiver(t, (_r, res, n) => res.writeHead(n < 3 ? 503 : 200).end());
  const backoff = await webhook(t, { url: slowBase.url, secret: SECRET, retry_base_ms: 400 });
  await backoff.executor?.scale(targetOf(null), 4, scaleOpts());
  const waits = backoff.logs.filter((l) => l.level === 40).map((l) => Number(/in (\d+) ms$/.exec(l.msg)?.[1]));
  t.equal(waits.length, 2);
  t.ok(waits[0] !== undefined && waits[0] <= 400 && (waits[1] ?? 0) <= 800, `random waits within 400 and 800 ms: ${waits}`);
  t.ok(waits.some((w) => w > 0), `not all zero: ${waits}`);

  const limited = await receiver(t, (_r, res, n) => (n === 1 ? res.writeHead(429, { 'retry-after': '1' }).end() : res.writeHead(204).end()));
  const second = await webhook(t, { url: limited.url, secret: SECRET, retry_base_ms: 10 });
  const started = Date.now();
  await second.executor?.scale(targetOf(null), 4, scaleOpts());
  t.ok(Date.now() - started >= 950, `waited for Retry-After: 1 (${Date.now() - started} ms)`);
  t.equal(limited.got.length, 2);
});

t.test('other 4xx answers fail at once, naming the status and the answer', async (t) => {
  const { url, got } = await receiver(t, (_r, res) => res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"unknown policy"}'));
  const { executor } = await webhook(t, { url, secret: SECRET, retry_base_ms: 10 });
  await t.rejects(executor?.scale(targetOf(null), 4, scaleOpts()) as Promise<void>, { message: /webhook\.scale: http:\/\/127\.0\.0\.1:\d+\/ answered HTTP 400: \{"error":"unknown policy"\}/ });
  t.equal(got.length, 1, 'not retried');
});

t.test('timeouts and refused connections: bounded retries, then a failure that says so', async (t) => {
  const { url, got } = await receiver(t, () => undefined); // never answers
  const { executor } = await webhook(t, { url, secret: SECRET, timeout_ms: 200, max_retries: 2, retry_base_ms: 10 });
  await t.rejects(executor?.scale(targetOf(null), 4, scaleOpts()) as Promise<void>, { message: /no answer within timeout_ms 200 \(gave up after 3 attempts\)/ });
  t.equal(got.length, 3);

  // A port nothing listens on: bound, then closed.
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const down = await webhook(t, { url: `http://127.0.0.1:${port}/`, secret: SECRET, max_retries: 1, retry_base_ms: 10 });
  await t.rejects(down.executor?.scale(targetOf(null), 4, scaleOpts()) as Promise<void>, { message: /connection failed \(ECONNREFUSED\) \(gave up after 2 attempts\)/ });

  const slow = await receiver(t, () => undefined);
  const bounded = await webhook(t, { url: slow.url, secret: SECRET, timeout_ms: 5000 }, 1000);
  const started = Date.now();
  await t.rejects(bounded.executor?.scale(targetOf(null), 4, scaleOpts()) as Promise<void>, { message: /webhook\.scale: no answer within 1000 ms/ });
  t.ok(Date.now() - started < 2000, 'the daemon timeout bounds every attempt together');
});

t.test('current replicas from replicas_url; nothing without it', async (t) => {
  const answers = ['{"replicas": 4}', '{"replicas": null}', '{"replicas": -1}', 'four', '7'];
  const { url, got } = await receiver(t, (_r, res, n) => res.writeHead(200, { 'content-type': 'application/json' }).end(answers[n - 1]));
  const { executor } = await webhook(t, { url, secret: SECRET, replicas_url: `${url}/replicas?cluster=eu` });
  const target = targetOf(null, { policyName: 'orders', targetId: '6f1d2c3b-0000-4000-8000-000000000001' });
  t.equal(await executor?.getCurrentReplicas(target), 4);
  t.same(Object.fromEntries(got[0]?.url.searchParams ?? []), { cluster: 'eu', policy_id: target.policyId, policy_name: 'orders', target_type: 'cdc-worker', target_id: '6f1d2c3b-0000-4000-8000-000000000001' });
  t.equal(got[0]?.method, 'GET');
  t.equal(await executor?.getCurrentReplicas(target), null, 'null: unknown');
  await t.rejects(executor?.getCurrentReplicas(target) as Promise<unknown>, { message: /replicas must be a non-negative integer or null/ });
  await t.rejects(executor?.getCurrentReplicas(target) as Promise<unknown>, { message: /answered "four", not JSON such as \{"replicas": 3\}/ });
  t.equal(await executor?.getCurrentReplicas(target), 7, 'a bare number is taken too');
  const none = await webhook(t, { url, secret: SECRET });
  t.equal(await none.executor?.getCurrentReplicas(target), null, 'without replicas_url: unknown (the daemon uses its stored count)');
});

t.test('config is checked by the schema: the URL scheme, the secret unless unsigned', async (t) => {
  const cases: Array<[string, Record<string, unknown>, RegExp | null]> = [
    ['ftp URL', { url: 'ftp://example.com/hook', secret: SECRET }, /\/plugins\/webhook\/url must match pattern "\^https\?:\/\/"/],
    ['no secret', { url: 'https://example.com/hook' }, /\/plugins\/webhook\/secret is required/],
    ['a short secret', { url: 'https://example.com/hook', secret: 'short' }, /\/plugins\/webhook\/secret must NOT have fewer than 16 characters/],
    ['an unknown key', { url: 'https://example.com/hook', secret: SECRET, timeout_mss: 300 }, /\/plugins\/webhook\/timeout_mss is not a known property \(did you mean timeout_ms\?\)/],
    ['unsigned, no secret', { url: 'https://example.com/hook', unsigned: true }, null],
    ['no url at all (serves nothing)', {}, null],
  ];
  for (const [name, config, error] of cases) {
    const { pm, executor } = await webhook(t, config);
    const status = pm.statuses.find((s) => s.name === 'webhook');
    if (error === null) t.equal(status?.status, 'loaded', `${name}: loads`);
    else {
      t.equal(executor, undefined, `${name}: not loaded`);
      t.match(status?.error, error, `${name}: ${status?.error}`);
    }
  }
  const { url, got } = await receiver(t);
  const { executor } = await webhook(t, { url, unsigned: true });
  await executor?.scale(targetOf(null), 1, scaleOpts());
  t.equal(got[0]?.headers['x-philotes-signature'], undefined, 'unsigned: no signature header');
  const idle = await webhook(t, {});
  await t.rejects(idle.executor?.scale(targetOf(null), 1, scaleOpts()) as Promise<void>, { message: /plugins\.webhook\.url is not set/ });
});
