/**
 * The bundled Prometheus plugin as an HTTP client: authentication and extra headers, the
 * parameters it sends, and how it reads Prometheus's answer shapes (recorded from Prometheus
 * 2.42's HTTP API). Auth cannot be exercised on a stock Prometheus, so a recording server
 * answers here; test/prometheus-*.test.ts run the same plugin against a real Prometheus.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { PluginManager, type PluginCallError } from '../src/plugins/plugin-manager.js';

interface Seen {
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
}

async function recorder(t: Test, answer: (s: Seen) => { status: number; body: string }) {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const s = { path: url.pathname, query: url.searchParams, headers: req.headers };
    seen.push(s);
    const a = answer(s);
    res.writeHead(a.status, { 'content-type': 'application/json' });
    res.end(a.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

async function source(t: Test, config: Record<string, unknown>) {
  const pm = new PluginManager({ dirs: [PluginManager.bundledDir()], configs: { prometheus: config }, logger: pino({ level: 'silent' }), timeoutMs: 2000 });
  const statuses = await pm.loadAll();
  t.teardown(() => pm.close());
  const s = pm.sources.get('prometheus');
  if (s === undefined) throw new Error(`prometheus not loaded: ${JSON.stringify(statuses)}`);
  return s;
}

const vector = (values: string[]) => JSON.stringify({ status: 'success', data: { resultType: 'vector', result: values.map((v, i) => ({ metric: { pod: `p${i}` }, value: [1769601600, v] })) } });
const matrix = (series: Array<Array<[number, string]>>) => JSON.stringify({ status: 'success', data: { resultType: 'matrix', result: series.map((values, i) => ({ metric: { pod: `p${i}` }, values })) } });
/** 'ok', or 'value NaN' / 'value Infinity' for an answer that is not a finite number, or the error's kind. */
const kindOf = async (p: Promise<unknown>): Promise<string> =>
  p.then(
    (got) => {
      const v = (got as { v?: unknown } | undefined)?.v;
      return typeof v === 'number' && !Number.isFinite(v) ? `value ${v}` : 'ok';
    },
    (e: PluginCallError) => e.kind,
  );

t.test('bearer token, basic auth and extra headers are sent', async (t) => {
  const rec = await recorder(t, () => ({ status: 200, body: vector(['5']) }));
  const bearer = await source(t, { url: rec.url, bearer_token: 's3cret', headers: { 'X-Scope-OrgID': 'philotes' } });
  await bearer.instantQuery({ query: 'up', aggregation: 'max', time: new Date('2026-01-28T12:00:00Z') });
  t.equal(rec.seen[0]?.headers['authorization'], 'Bearer s3cret');
  t.equal(rec.seen[0]?.headers['x-scope-orgid'], 'philotes');
  t.equal(rec.seen[0]?.path, '/api/v1/query');
  t.equal(rec.seen[0]?.query.get('query'), 'up');
  t.equal(rec.seen[0]?.query.get('time'), String(Date.parse('2026-01-28T12:00:00Z') / 1000));
  const basic = await source(t, { url: `${rec.url}/`, basic_auth: { username: 'ops', password: 'pw' } });
  await basic.instantQuery({ query: 'up', aggregation: 'max', time: new Date() });
  t.equal(rec.seen[1]?.headers['authorization'], `Basic ${Buffer.from('ops:pw').toString('base64')}`);
  t.equal(rec.seen[1]?.path, '/api/v1/query', 'a trailing slash in the URL is fine');
});

t.test('series fold by the rule\'s aggregation; range answers fold per timestamp', async (t) => {
  const rec = await recorder(t, (s) =>
    s.path === '/api/v1/query'
      ? { status: 200, body: vector(['10', '30', '20']) }
      : { status: 200, body: matrix([[[100, '1'], [130, '5']], [[100, '3'], [130, '2'], [160, '7']]]) },
  );
  const src = await source(t, { url: rec.url });
  const now = new Date();
  const v = async (aggregation: 'max' | 'min' | 'avg' | 'sum') => (await src.instantQuery({ query: 'q', aggregation, time: now })).v;
  t.same([await v('max'), await v('min'), await v('avg'), await v('sum')], [30, 10, 20, 60]);
  const range = await src.rangeQuery({ query: 'q', aggregation: 'max', start: new Date(100_000), end: new Date(160_000), stepSeconds: 30 });
  t.same(range, [{ t: 100, v: 3 }, { t: 130, v: 5 }, { t: 160, v: 7 }]);
  const last = rec.seen.at(-1);
  t.same([last?.path, last?.query.get('start'), last?.query.get('end'), last?.query.get('step')], ['/api/v1/query_range', '100', '160', '30s']);
  // A step that is not whole seconds is sent in whole milliseconds, never a truncated float.
  await src.rangeQuery({ query: 'q', aggregation: 'max', start: new Date(100_000), end: new Date(145_000), stepSeconds: 22.5 });
  t.equal(rec.seen.at(-1)?.query.get('step'), '22500ms');
});

t.test('folding NaN as Prometheus does: max and min skip it unless every series is NaN; sum and avg carry it', async (t) => {
  let values = ['NaN', '5', '3'];
  const rec = await recorder(t, () => ({ status: 200, body: vector(values) }));
  const src = await source(t, { url: rec.url });
  const v = async (aggregation: 'max' | 'min' | 'avg' | 'sum') => (await src.instantQuery({ query: 'q', aggregation, time: new Date() })).v;
  t.same([await v('max'), await v('min'), await v('avg'), await v('sum')], [5, 3, NaN, NaN]);
  values = ['NaN', 'NaN'];
  t.same([await v('max'), await v('min')], [NaN, NaN]);
  values = ['-Inf', 'NaN', '+Inf'];
  t.same([await v('max'), await v('min')], [Infinity, -Infinity]);
});

t.test('bad answers are errors with a kind; NaN and ±Inf are values', async (t) => {
  let mode = '';
  const rec = await recorder(t, () => {
    switch (mode) {
      case 'nan':
        return { status: 200, body: vector(['NaN']) };
      case 'inf':
        return { status: 200, body: vector(['+Inf']) };
      case 'ninf':
        return { status: 200, body: vector(['-Inf']) };
      case 'empty':
        return { status: 200, body: vector([]) };
      case 'bad-query':
        return { status: 400, body: JSON.stringify({ status: 'error', errorType: 'bad_data', error: '1:5: parse error: unexpected character' }) };
      case '503':
        return { status: 503, body: 'Service Unavailable' };
      case 'malformed':
        return { status: 200, body: '{"status":"success","data":' };
      case 'string-matrix':
        return { status: 200, body: JSON.stringify({ status: 'success', data: { resultType: 'string', result: [1, 'x'] } }) };
      default:
        return { status: 200, body: JSON.stringify({ status: 'success', data: { resultType: 'scalar', result: [1769601600, '42'] } }) };
    }
  });
  const src = await source(t, { url: rec.url });
  const q = () => src.instantQuery({ query: 'q', aggregation: 'max', time: new Date() });
  const cases: Array<[string, string]> = [
    ['nan', 'value NaN'],
    ['inf', 'value Infinity'],
    ['ninf', 'value -Infinity'],
    ['empty', 'empty'],
    ['bad-query', 'query'],
    ['503', 'http'],
    ['malformed', 'malformed'],
    ['string-matrix', 'malformed'],
    ['scalar', 'ok'],
  ];
  for (const [m, expected] of cases) {
    mode = m;
    t.equal(await kindOf(q()), expected, `${m} -> ${expected}`);
  }
  const unreachable = await source(t, { url: 'http://127.0.0.1:9' });
  t.equal(await kindOf(unreachable.instantQuery({ query: 'q', aggregation: 'max', time: new Date() })), 'unreachable');
});

t.test('the plugin\'s own timeout', async (t) => {
  const server = createServer(() => undefined); // accepts, never answers
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const src = await source(t, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, timeout_ms: 200 });
  const started = Date.now();
  t.equal(await kindOf(src.instantQuery({ query: 'q', aggregation: 'max', time: new Date() })), 'timeout');
  t.ok(Date.now() - started < 1500, 'gave up after its timeout');
});

t.test('kept-alive connections: reused, and a request on one the server closed while idle is sent again', async (t) => {
  // A raw server: answers the first request on each connection, keeps it open, and on a second
  // request over the same connection closes it without answering (a server's idle timeout
  // racing the client's next request).
  const connections: number[] = [];
  const body = vector(['7']);
  const server = createNetServer((socket) => {
    const id = connections.push(0) - 1;
    socket.on('data', (chunk) => {
      if (!chunk.toString('latin1').includes('\r\n\r\n')) return;
      connections[id] = (connections[id] ?? 0) + 1;
      if ((connections[id] ?? 0) > 1 && id === 0) {
        socket.destroy();
        return;
      }
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: keep-alive\r\n\r\n${body}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const src = await source(t, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
  const q = () => src.instantQuery({ query: 'q', aggregation: 'max', time: new Date() });
  t.equal((await q()).v, 7);
  t.equal((await q()).v, 7, 'answered although the kept-alive connection was closed');
  t.same(connections, [2, 1], 'the second request went over the first connection, was cut off, and was sent again on a new one');
  t.equal((await q()).v, 7);
  t.same(connections, [2, 2], 'the new connection is kept alive and reused');
});

t.test('an answer cut off mid-body is unreachable, not malformed; no compression is asked for', async (t) => {
  const server = createNetServer((socket) => {
    socket.once('data', () => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"status":"succ');
      setTimeout(() => socket.destroy(), 20);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const src = await source(t, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
  const err = await src.instantQuery({ query: 'q', aggregation: 'max', time: new Date() }).then(
    () => undefined,
    (e: PluginCallError) => e,
  );
  t.equal(err?.kind, 'unreachable');
  t.match(err?.message, /ECONNRESET|closed/);
  const rec = await recorder(t, () => ({ status: 200, body: vector(['1']) }));
  await (await source(t, { url: rec.url })).instantQuery({ query: 'q', aggregation: 'max', time: new Date() });
  t.equal(rec.seen[0]?.headers['accept-encoding'], undefined, 'answers come uncompressed');
  t.equal(rec.seen[0]?.headers['connection'], 'keep-alive');
});

t.test('only http and https URLs are accepted, and the error names the field', async (t) => {
  const pm = new PluginManager({ dirs: [PluginManager.bundledDir()], configs: { prometheus: { url: 'ftp://prometheus.example:9090' } }, logger: pino({ level: 'silent' }), timeoutMs: 2000 });
  const statuses = await pm.loadAll();
  t.teardown(() => pm.close());
  const status = statuses.find((s) => s.name === 'prometheus');
  t.equal(status?.status, 'failed');
  t.match(status?.error, /url/);
  t.comment(status?.error ?? '');
  t.equal(pm.sources.get('prometheus'), undefined);
});
