/**
 * GET /history and GET /policies/:id/history on both backends (a real SQLite file and the real
 * PostgreSQL server), through the real app: every page is the rows as listHistory reads them
 * (what these routes answered before pages were built from each row's stored text), rows written
 * without a stored text (by an older version) included, under filters, cursors across pages,
 * rows appended and pruned while paging, and the same 400s for a bad cursor or limit. Every page
 * is also checked as a client that accepts gzip gets it (the same bytes once decompressed), with
 * Accept-Encoding negotiated (q-values, identity, HEAD); a deleted policy's own route is a 404 by
 * id and by name while its rows stay in /history.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { type IncomingHttpHeaders, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import { createPostgresStorage } from '../src/storage/postgres-storage.js';
import type { SqlStorage } from '../src/storage/sql-storage.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import type { HistoryQuery, HistoryRow } from '../src/storage/storage.js';
import { call, startTestApp, type TestApp } from './helpers/app.js';
import { createFreshDatabase } from './helpers/pg.js';

const BASE = Date.UTC(2026, 0, 28, 12, 0, 0);
const at = (minutes: number): string => new Date(BASE + minutes * 60_000).toISOString();

interface World {
  app: TestApp;
  storage: SqlStorage;
  a: { id: string; name: string };
  b: { id: string; name: string };
}

/** A store and what removes it once the app (which closes the store) has stopped. */
type Open = () => Promise<{ storage: SqlStorage; remove: () => Promise<void> }>;

const sqliteStorage: Open = async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ps-history-api-'));
  return { storage: createSqliteStorage(join(dir, 'scaler.db')), remove: () => rm(dir, { recursive: true, force: true }) };
};

const postgresStorage: Open = async () => {
  const db = await createFreshDatabase('philotes_history_api');
  return { storage: createPostgresStorage(db.url), remove: () => db.drop() };
};

async function world(t: Test, open: Open): Promise<World> {
  const { storage, remove } = await open();
  const app = await startTestApp({}, { storage });
  t.teardown(async () => {
    await app.close();
    await remove();
  });
  const policy = async (name: string): Promise<{ id: string; name: string }> => {
    const res = await call('POST', `${app.api}/policies`, { name, target_type: 'cdc-worker', min_replicas: 1, max_replicas: 5 });
    if (res.status !== 201) throw new Error(`create ${name}: ${res.status} ${res.text}`);
    return { id: (res.body as { id: string }).id, name };
  };
  return { app, storage, a: await policy('policy-a'), b: await policy('policy-b') };
}

function row(policy: { id: string; name: string }, minute: number, extra: Partial<HistoryRow> = {}): HistoryRow {
  return {
    id: randomUUID(),
    policy_id: policy.id,
    policy_name: policy.name,
    action: 'scale_up',
    target_type: 'cdc-worker',
    target_id: null,
    previous_replicas: 1,
    new_replicas: 3,
    reason: 'philotes_cdc_lag_seconds > 60 for 5m — ünïcödé "quoted"',
    reason_code: 'rules_held',
    triggered_by: 'rule',
    dry_run: false,
    status: 'succeeded',
    error: null,
    executed_at: at(minute),
    details: { policy_id: policy.id, action: 'scale_up', rules: [{ metric: 'lag', value: 61.5 + minute, held: true, error: null }], minute },
    ...extra,
  };
}

/** Appends a row as a version before the stored answers did: its columns only. */
async function appendLegacy(storage: SqlStorage, r: HistoryRow): Promise<void> {
  await storage.driver.run(
    `INSERT INTO scaling_history (id, policy_id, policy_name, action, target_type, target_id, previous_replicas,
       new_replicas, reason, reason_code, triggered_by, dry_run, status, error, executed_at, details)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [r.id, r.policy_id, r.policy_name, r.action, r.target_type, r.target_id, r.previous_replicas, r.new_replicas, r.reason,
      r.reason_code, r.triggered_by, r.dry_run, r.status, r.error, r.executed_at, r.details === null ? null : JSON.stringify(r.details)],
  );
}

/** 24 rows over both policies, every third one written the old way, varied in every filtered column. */
async function seed(w: World): Promise<HistoryRow[]> {
  const rows: HistoryRow[] = [];
  for (let i = 0; i < 24; i += 1) {
    const r = row(i % 3 === 2 ? w.b : w.a, i, {
      action: i % 4 === 0 ? 'scale_down' : 'scale_up',
      status: i % 5 === 0 ? 'blocked' : i % 7 === 0 ? 'failed' : 'succeeded',
      error: i % 7 === 0 && i % 5 !== 0 ? 'executor answered 503' : null,
      dry_run: i % 6 === 0,
      details: i === 9 ? null : row(w.a, i).details,
      // Two rows at one instant: the id orders them.
      executed_at: at(i === 11 ? 10 : i),
    });
    rows.push(r);
    if (i % 3 === 0) await appendLegacy(w.storage, r);
    else await w.storage.appendHistory(r);
  }
  return rows;
}

/**
 * Checks one answer against the page listHistory reads for the same query: on every backend the
 * same JSON value; where the store keeps a record's members in the order they were written
 * (SQLite, as text), byte for byte what serialising that page gives. (PostgreSQL's JSONB column
 * prints a record's members in its own order when a row is read from its columns.)
 */
async function expectPage(t: Test, w: World, backend: string, url: string, q: HistoryQuery, what: string): Promise<string | null> {
  const res = await call('GET', url, undefined, { 'accept-encoding': 'identity' });
  t.equal(res.status, 200, `${what}: 200`);
  t.equal(res.headers.get('content-type'), 'application/json; charset=utf-8', `${what}: JSON`);
  t.equal(res.headers.get('content-length'), String(Buffer.byteLength(res.text)), `${what}: its length`);
  t.equal(res.headers.get('content-encoding'), null, `${what}: not compressed when the client accepts only identity`);
  t.match(res.headers.get('vary') ?? '', /accept-encoding/i, `${what}: Vary names Accept-Encoding`);
  t.ok(res.headers.get('x-request-id'), `${what}: a request id`);
  const page = await w.storage.listHistory(q);
  const expected = { history: page.rows, next_cursor: page.next_cursor };
  t.strictSame(res.body, expected, `${what}: the rows listHistory reads, and its cursor`);
  if (backend === 'sqlite') t.equal(res.text, JSON.stringify(expected), `${what}: byte for byte`);
  // The same page for a client that accepts gzip, as the bytes on the wire.
  const gz = await rawGet(url, { 'accept-encoding': 'gzip, deflate' });
  t.equal(gz.status, 200, `${what}, gzip: 200`);
  t.equal(gz.headers['content-encoding'], 'gzip', `${what}, gzip: compressed`);
  t.equal(gz.headers['content-length'], String(gz.body.length), `${what}, gzip: its compressed length`);
  t.equal(gunzipSync(gz.body).toString('utf8'), res.text, `${what}, gzip: the same page once decompressed`);
  return page.next_cursor;
}

/** A request through node:http, which (unlike fetch) leaves the answer's bytes as they came. */
function rawGet(url: string, headers: Record<string, string>, method = 'GET'): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const backends: Array<[string, Open]> = [
  ['sqlite', sqliteStorage],
  ['postgres', postgresStorage],
];

for (const [backend, open] of backends) {
  t.test(`${backend}: history pages, filters and cursors are the rows as stored, old and new`, async (t) => {
    const w = await world(t, open);
    const rows = await seed(w);
    const api = w.app.api;
    await expectPage(t, w, backend, `${api}/history`, { limit: 100 }, 'every row');
    const all = (await call('GET', `${api}/history`)).body as { history: HistoryRow[] };
    t.equal(all.history.length, rows.length, 'all 24 rows');

    // Walks pages of 5 by next_cursor, on both routes.
    for (const [label, base, q] of [
      ['/history', `${api}/history?limit=5`, { limit: 5 }],
      ['/policies/:id/history', `${api}/policies/${w.a.id}/history?limit=5`, { limit: 5, policy_id: w.a.id }],
      ['/policies/:name/history', `${api}/policies/${w.b.name}/history?limit=5`, { limit: 5, policy_id: w.b.id }],
    ] as Array<[string, string, HistoryQuery]>) {
      let cursor: string | null = null;
      let pages = 0;
      do {
        const url: string = cursor === null ? base : `${base}&cursor=${encodeURIComponent(cursor)}`;
        cursor = await expectPage(t, w, backend, url, cursor === null ? q : { ...q, cursor }, `${label} page ${++pages}`);
      } while (cursor !== null && pages < 20);
      t.ok(pages > 1, `${label}: several pages`);
    }

    for (const [qs, q] of [
      [`policy_id=${w.b.id}`, { policy_id: w.b.id }],
      ['policy_name=policy-a', { policy_name: 'policy-a' }],
      ['action=scale_down', { action: 'scale_down' }],
      ['status=blocked', { status: 'blocked' }],
      ['status=failed&dry_run=false', { status: 'failed', dry_run: false }],
      ['dry_run=true', { dry_run: true }],
      [`since=${at(5)}&until=${at(15)}`, { since: at(5), until: at(15) }],
      [`since=${encodeURIComponent('2026-01-28T13:10:00+01:00')}`, { since: at(10) }],
    ] as Array<[string, Omit<HistoryQuery, 'limit'>]>) {
      const n = await w.storage.listHistory({ ...q, limit: 100 });
      t.ok(n.rows.length > 0 && n.rows.length < rows.length, `${qs}: selects some rows`);
      await expectPage(t, w, backend, `${api}/history?${qs}`, { ...q, limit: 100 }, qs);
      await expectPage(t, w, backend, `${api}/history?${qs}&limit=2`, { ...q, limit: 2 }, `${qs}, limit 2`);
    }
    await expectPage(t, w, backend, `${api}/policies/${w.a.id}/history?action=scale_up&status=succeeded`, { policy_id: w.a.id, action: 'scale_up', status: 'succeeded', limit: 100 }, 'a policy\'s route with filters');

    // One row of each kind, through GET /history/:id, as before.
    for (const r of [rows[0], rows[1], rows[9]]) {
      if (r === undefined) continue;
      const one = await call('GET', `${api}/history/${r.id}`);
      t.strictSame(one.body, all.history.find((x) => x.id === r.id), `GET /history/:id of ${r.id.slice(0, 8)}`);
    }
    // HEAD: the headers of the GET, no body (uncompressed here; gzip is checked below).
    const get = await call('GET', `${api}/history?limit=7`, undefined, { 'accept-encoding': 'identity' });
    const head = await fetch(`${api}/history?limit=7`, { method: 'HEAD', headers: { 'accept-encoding': 'identity' } });
    t.equal(head.status, 200, 'HEAD /history: 200');
    t.equal(head.headers.get('content-length'), String(Buffer.byteLength(get.text)), 'HEAD /history: the length of the GET answer');
    t.equal(head.headers.get('content-type'), 'application/json; charset=utf-8', 'HEAD /history: JSON');
    t.equal(await head.text(), '', 'HEAD /history: no body');

    // A client gone before its page is sent: the daemon goes on answering.
    const { port } = new URL(api);
    await new Promise<void>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1', () => {
        socket.write(`GET ${new URL(api).pathname}/history?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n`);
        socket.destroy();
        resolve();
      });
      socket.on('error', reject);
    });
    await new Promise((r) => setTimeout(r, 50));
    await expectPage(t, w, backend, `${api}/history?limit=3`, { limit: 3 }, 'after a client went away');

    const timeline = await call('GET', `${api}/policies/${w.a.id}/timeline?since=${at(-60)}&until=${at(60)}`);
    t.equal(timeline.status, 200, 'the timeline reads the same rows');
    t.equal((timeline.body as { decisions: unknown[] }).decisions.length, rows.filter((r) => r.policy_id === w.a.id).length, 'every decision of policy-a');
  });

  t.test(`${backend}: paging while rows are appended and pruned`, async (t) => {
    const w = await world(t, open);
    const rows = await seed(w);
    const api = w.app.api;
    const first = (await call('GET', `${api}/history?limit=6`)).body as { history: HistoryRow[]; next_cursor: string };
    t.strictSame(first.history.map((r) => r.executed_at), [23, 22, 21, 20, 19, 18].map(at), 'the newest six');
    // Appended meanwhile: one newer than every page, one behind the cursor (old style and new).
    const newer = row(w.a, 100);
    const behind = row(w.b, 12.5);
    const behindOld = row(w.a, 3.5);
    await w.storage.appendHistory(newer);
    await w.storage.appendHistory(behind);
    await appendLegacy(w.storage, behindOld);
    // Retention deletes everything before minute 3 (old and new rows).
    t.equal(await w.storage.pruneHistory(at(3), 500), 3, 'three rows pruned');
    const seen = first.history.map((r) => r.id);
    let cursor: string | null = first.next_cursor;
    let pages = 1;
    while (cursor !== null) {
      const url = `${api}/history?limit=6&cursor=${encodeURIComponent(cursor)}`;
      const res = (await call('GET', url)).body as { history: HistoryRow[]; next_cursor: string | null };
      seen.push(...res.history.map((r) => r.id));
      cursor = await expectPage(t, w, backend, url, { limit: 6, cursor }, `page ${++pages}`);
    }
    const kept = [...rows, behind, behindOld].filter((r) => r.executed_at >= at(3));
    const byTime = (x: HistoryRow, y: HistoryRow): number => (x.executed_at === y.executed_at ? (x.id < y.id ? 1 : -1) : x.executed_at < y.executed_at ? 1 : -1);
    t.strictSame(seen, kept.sort(byTime).map((r) => r.id), 'every row once; those behind the cursor included; the newer and the pruned ones not');
    t.strictSame(((await call('GET', `${api}/history?limit=1`)).body as { history: HistoryRow[] }).history[0]?.id, newer.id, 'the newer row heads a fresh first page');
  });

  t.test(`${backend}: Accept-Encoding decides gzip or not (from a page's second ask); HEAD says the same length; a page kept compressed follows appended and pruned rows`, async (t) => {
    const w = await world(t, open);
    await seed(w);
    for (const path of ['/history?limit=5', `/policies/${w.a.id}/history?limit=5`]) {
      const url = `${w.app.api}${path}`;
      const plain = await rawGet(url, {});
      t.equal(plain.headers['content-encoding'], undefined, `${path}: no Accept-Encoding, not compressed`);
      for (const refused of ['gzip;q=0', 'br', 'identity']) {
        const res = await rawGet(url, { 'accept-encoding': refused });
        t.equal(res.headers['content-encoding'], undefined, `${path}: "${refused}", not compressed`);
        t.ok(res.body.equals(plain.body), `${path}: "${refused}", the same bytes`);
      }
      for (const accepted of ['gzip', 'br;q=1, gzip;q=0.5', '*', 'GZIP']) {
        const res = await rawGet(url, { 'accept-encoding': accepted });
        t.equal(res.headers['content-encoding'], 'gzip', `${path}: "${accepted}", gzip`);
        t.ok(gunzipSync(res.body).equals(plain.body), `${path}: "${accepted}", the same page`);
      }
      const head = await rawGet(url, { 'accept-encoding': 'gzip' }, 'HEAD');
      const get = await rawGet(url, { 'accept-encoding': 'gzip' });
      t.equal(head.status, 200, `${path}: HEAD, 200`);
      t.equal(head.body.length, 0, `${path}: HEAD, no body`);
      t.equal(head.headers['content-length'], String(get.body.length), `${path}: HEAD, the compressed length`);
    }
    // Asked twice, the page is kept compressed; then a newer row and a pruning change it.
    const url = `${w.app.api}/policies/${w.a.id}/history?limit=3`;
    const encodings: Array<string | undefined> = [];
    const page = async (): Promise<HistoryRow[]> => {
      const res = await rawGet(url, { 'accept-encoding': 'gzip' });
      encodings.push(res.headers['content-encoding']);
      return (JSON.parse((res.headers['content-encoding'] === 'gzip' ? gunzipSync(res.body) : res.body).toString('utf8')) as { history: HistoryRow[] }).history;
    };
    const before = await page();
    t.strictSame(await page(), before, 'asked again: the same page');
    t.strictSame(encodings, [undefined, 'gzip'], 'sent as it is when asked for once, compressed when asked for again');
    const newer = row(w.a, 500);
    await w.storage.appendHistory(newer);
    const after = await page();
    t.equal(after[0]?.id, newer.id, 'the appended row heads the page');
    t.strictSame(after.slice(1).map((r) => r.id), before.slice(0, 2).map((r) => r.id), 'followed by the rows before it');
    t.ok((await w.storage.pruneHistory(at(1000), 1000)) > 0, 'every row pruned');
    t.strictSame(await page(), [], 'the pruned rows are gone from the page');
    t.strictSame(encodings, [undefined, 'gzip', 'gzip', 'gzip'], 'compressed since');
  });

  t.test(`${backend}: a bad cursor or limit is a 400 naming it, on both routes`, async (t) => {
    const w = await world(t, open);
    await seed(w);
    const bad: Array<[string, string]> = [
      ['cursor=not-a-cursor', '/query/cursor'],
      [`cursor=${Buffer.from('["yesterday","x"]').toString('base64url')}`, '/query/cursor'],
      [`cursor=${Buffer.from('{"at":1}').toString('base64url')}`, '/query/cursor'],
      ['limit=0', '/query/limit'],
      ['limit=1001', '/query/limit'],
      ['limit=ten', '/query/limit'],
      ['limit=5&limit=6', '/query/limit'],
    ];
    for (const path of ['/history', `/policies/${w.a.id}/history`]) {
      for (const [qs, field] of bad) {
        const res = await call('GET', `${w.app.api}${path}?${qs}`);
        t.equal(res.status, 400, `${path}?${qs}: 400`);
        t.match(res.headers.get('content-type'), /^application\/problem\+json/, `${path}?${qs}: a problem`);
        t.strictSame((res.body as { errors?: Array<{ field: string }> }).errors?.map((e) => e.field), [field], `${path}?${qs}: names ${field}`);
      }
    }
    t.equal((await call('GET', `${w.app.api}/policies/${randomUUID()}/history`)).status, 404, 'an unknown policy is a 404');
    // A deleted policy's rows stay in /history, but its own route is a 404, by id or by name,
    // compressed or not; a policy without rows answers an empty page.
    const gone = await call('POST', `${w.app.api}/policies`, { name: 'policy-gone', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 5 });
    const goneId = (gone.body as { id: string }).id;
    for (let m = 0; m < 3; m += 1) await w.storage.appendHistory(row({ id: goneId, name: 'policy-gone' }, 40 + m));
    for (const encoding of ['identity', 'gzip']) {
      const res = await rawGet(`${w.app.api}/policies/${goneId}/history?limit=2`, { 'accept-encoding': encoding });
      t.equal(res.status, 200, `${encoding}: before the delete, 200`);
    }
    t.equal((await call('DELETE', `${w.app.api}/policies/${goneId}`)).status, 204, 'deleted');
    for (const encoding of ['identity', 'gzip']) {
      for (const path of [`/policies/${goneId}/history?limit=2`, `/policies/${goneId.toUpperCase()}/history`, '/policies/policy-gone/history']) {
        const res = await call('GET', `${w.app.api}${path}`, undefined, { 'accept-encoding': encoding });
        t.equal(res.status, 404, `${encoding}: ${path} of a deleted policy is a 404`);
        t.match(res.headers.get('content-type') ?? '', /problem\+json/, `${encoding}: ${path}: a problem`);
      }
    }
    const kept = (await call('GET', `${w.app.api}/history?policy_id=${goneId}`)).body as { history: HistoryRow[] };
    t.equal(kept.history.length, 3, 'its rows are still listed by /history');
    const empty = await call('POST', `${w.app.api}/policies`, { name: 'policy-quiet', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 5 });
    const emptyId = (empty.body as { id: string }).id;
    for (const encoding of ['identity', 'gzip']) {
      const res = await call('GET', `${w.app.api}/policies/${emptyId}/history`, undefined, { 'accept-encoding': encoding });
      t.equal(res.status, 200, `${encoding}: a policy without rows, 200`);
      t.strictSame(res.body, { history: [], next_cursor: null }, `${encoding}: an empty page`);
    }
    for (const route of ['history', 'timeline']) {
      t.equal((await call('GET', `${w.app.api}/policies/no-such-policy/${route}`)).status, 404, `${route}: an unknown name is a 404`);
      const bad = await call('GET', `${w.app.api}/policies/Not%20A%20Name/${route}`);
      t.equal(bad.status, 400, `${route}: neither an id nor a name is a 400`);
      t.strictSame((bad.body as { errors?: Array<{ field: string }> }).errors?.map((e) => e.field), ['/path/id'], `${route}: names /path/id`);
      const upper = await call('GET', `${w.app.api}/policies/${w.a.id.toUpperCase()}/${route}`);
      t.equal(upper.status, 200, `${route}: an id in capitals finds the policy`);
      const byName = await call('GET', `${w.app.api}/policies/${w.a.name}/${route}`);
      t.equal(byName.status, 200, `${route}: by name`);
      if (route === 'timeline') t.equal((byName.body as { policy_id?: string }).policy_id, w.a.id, 'timeline by name: the policy\'s id');
      else {
        const listed = (byName.body as { history: HistoryRow[] }).history;
        t.ok(listed.length > 0 && listed.every((r) => r.policy_id === w.a.id), 'history by name: policy-a\'s rows only');
        t.strictSame(byName.body, upper.body, 'history by name and by id: the same page');
      }
    }
  });
}
