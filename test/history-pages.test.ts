/**
 * HistoryPages on a real SQLite file: a page's bytes are the JSON of the rows listHistory reads
 * (cold or with its rows kept), rows kept are not read again, rows appended or pruned show at
 * once, the byte bound holds with the least recently listed dropped first, and pages built at
 * the same time under a bound too small for them are still whole; a bound of 0 keeps nothing, and
 * history_cache_mb sets the bound. Compressed pages: sent as they are on a page's first ask,
 * gzipped from its second and kept, then answered from their keys alone until a row is appended
 * or pruned, within their half of the bound (the page asked for longest ago dropped first).
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import { HistoryPages } from '../src/history/history-pages.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import type { SqlStorage } from '../src/storage/sql-storage.js';
import type { HistoryQuery, HistoryRow } from '../src/storage/storage.js';

const BASE = Date.UTC(2026, 2, 1, 8, 0, 0);
const at = (minutes: number): string => new Date(BASE + minutes * 60_000).toISOString();

function row(minute: number, extra: Partial<HistoryRow> = {}): HistoryRow {
  return {
    id: randomUUID(),
    policy_id: null,
    policy_name: minute % 2 === 0 ? 'even' : 'odd',
    action: 'scale_up',
    target_type: 'cdc-worker',
    target_id: 'w',
    previous_replicas: 1,
    new_replicas: 2,
    reason: `minute ${minute}: lag "high" — über 60`,
    reason_code: 'rule_triggered',
    triggered_by: 'rule',
    dry_run: false,
    status: 'succeeded',
    error: null,
    executed_at: at(minute),
    details: { minute, text: 'x'.repeat(minute * 10) },
    ...extra,
  };
}

/** A SQLite store, with a count of the texts storage answered (not the rows it was told were known). */
async function store(t: Test): Promise<{ storage: SqlStorage; texts: () => number }> {
  const dir = await mkdtemp(join(tmpdir(), 'ps-history-pages-'));
  const storage = createSqliteStorage(join(dir, 'scaler.db'));
  await storage.migrate();
  t.teardown(async () => {
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  });
  let texts = 0;
  const list = storage.listHistoryJson.bind(storage);
  storage.listHistoryJson = async (q, known) => {
    const page = await list(q, known);
    texts += page.rows.filter((r) => r !== undefined).length;
    return page;
  };
  return { storage, texts: () => texts };
}

/** What the route answered before pages were built from bytes: listHistory's page, serialised. */
async function expected(storage: SqlStorage, q: HistoryQuery): Promise<string> {
  const page = await storage.listHistory(q);
  return JSON.stringify({ history: page.rows, next_cursor: page.next_cursor });
}

t.test('a page is the JSON of listHistory\'s rows, cold and with its rows kept; kept rows are not read again', async (t) => {
  const { storage, texts } = await store(t);
  for (let m = 0; m < 30; m += 1) await storage.appendHistory(row(m));
  const pages = new HistoryPages(storage);
  const q = { limit: 10 };
  const cold = await pages.page(q);
  t.equal(cold.toString('utf8'), await expected(storage, q), 'cold: byte for byte');
  t.equal(texts(), 10, 'ten texts read');
  t.equal(pages.size.rows, 0, 'a page asked for once: its rows are not kept');
  t.ok((await pages.page(q)).equals(cold), 'asked again: the same bytes');
  t.equal(texts(), 20, 'read again');
  t.equal(pages.size.rows, 10, 'and kept now');
  const warm = await pages.page(q);
  t.ok(warm.equals(cold), 'warm: the same bytes');
  t.equal(texts(), 20, 'no text read again');
  // The next page by its cursor (asked once: not kept), and a filtered one overlapping the kept rows.
  const next = { limit: 10, cursor: (JSON.parse(cold.toString('utf8')) as { next_cursor: string }).next_cursor };
  t.equal((await pages.page(next)).toString('utf8'), await expected(storage, next), 'the next page');
  t.equal(pages.size.rows, 10, 'its rows not kept');
  const even = { limit: 12, policy_name: 'even' };
  t.equal((await pages.page(even)).toString('utf8'), await expected(storage, even), 'a filtered page');
  t.equal(texts(), 30 + 12, 'five of its twelve rows kept: under three quarters, so the page is read whole');
  t.equal(pages.size.rows, 10 + 7, 'and the seven others kept, the page having kept rows');
  const odd = { limit: 6, policy_name: 'odd' };
  await pages.page(odd);
  const before = texts();
  t.equal((await pages.page({ limit: 8, policy_name: 'even' })).toString('utf8'), await expected(storage, { limit: 8, policy_name: 'even' }), 'a page of kept rows only');
  t.equal(texts(), before, 'reads no text');
  const empty = { limit: 10, policy_name: 'nobody' };
  t.equal((await pages.page(empty)).toString('utf8'), '{"history":[],"next_cursor":null}', 'an empty page');
});

t.test('pages read once do not push out the rows of a page asked for again and again', async (t) => {
  const { storage, texts } = await store(t);
  for (let m = 0; m < 60; m += 1) await storage.appendHistory(row(m, { policy_name: `p${m % 20}` }));
  const hot = { limit: 5 };
  const hotBytes = Buffer.byteLength(await expected(storage, hot));
  // Rows have half the memory: four times the hot page.
  const pages = new HistoryPages(storage, 2 * 4 * hotBytes);
  await pages.page(hot);
  await pages.page(hot);
  for (let p = 0; p < 20; p += 1) {
    const q = { limit: 3, policy_name: `p${p}` };
    t.equal((await pages.page(q)).toString('utf8'), await expected(storage, q), `p${p}'s page, read once`);
  }
  const before = texts();
  t.equal((await pages.page(hot)).toString('utf8'), await expected(storage, hot), 'the page asked for again');
  t.equal(texts(), before, 'still kept: no text read');
});

t.test('rows appended and pruned show on the next page at once', async (t) => {
  const { storage } = await store(t);
  for (let m = 0; m < 10; m += 1) await storage.appendHistory(row(m));
  const pages = new HistoryPages(storage);
  const q = { limit: 5 };
  await pages.page(q);
  await pages.page(q);
  t.equal(pages.size.rows, 5, 'asked twice: kept');
  const newer = row(100);
  await storage.appendHistory(newer);
  const after = await pages.page(q);
  t.equal(after.toString('utf8'), await expected(storage, q), 'the appended row leads the page');
  t.match(after.toString('utf8'), new RegExp(`^\\{"history":\\[\\{"id":"${newer.id}"`));
  await storage.pruneHistory(at(200), 100);
  t.equal((await pages.page(q)).toString('utf8'), '{"history":[],"next_cursor":null}', 'every kept row pruned: none listed');
});

t.test('the byte bound: the rows listed longest ago are dropped; a row over half the bound is answered, not kept', async (t) => {
  const { storage, texts } = await store(t);
  const rows = Array.from({ length: 10 }, (_, m) => row(m));
  for (const r of rows) await storage.appendHistory(r);
  const size = (r: HistoryRow): number => Buffer.byteLength(JSON.stringify(r));
  // Rows have half the bound: room for the four largest, two in each generation.
  const bound = 2 * rows.slice(6).reduce((n, r) => n + size(r), 0);
  const pages = new HistoryPages(storage, bound);
  const q = { limit: 10 };
  await pages.page(q);
  t.equal((await pages.page(q)).toString('utf8'), await expected(storage, q), 'the page is whole, asked again');
  t.ok(pages.size.bytes <= bound, `kept ${pages.size.bytes} bytes, at most ${bound}`);
  t.ok(pages.size.rows >= 2 && pages.size.rows < 10, `some rows kept (${pages.size.rows}), not all`);
  // The page's last two rows (the oldest, listed last) are kept: reading them reads no text.
  const oldest = { limit: 2, cursor: (await storage.listHistory({ limit: 8 })).next_cursor ?? '' };
  let before = texts();
  t.equal((await pages.page(oldest)).toString('utf8'), await expected(storage, oldest), 'the two oldest');
  t.equal(texts() - before, 0, 'listed last, so kept: no text read');
  // The page's first rows were listed longest ago: dropped, read again.
  before = texts();
  const top = { limit: 3 };
  t.equal((await pages.page(top)).toString('utf8'), await expected(storage, top), 'the newest three');
  t.equal(texts() - before, 3, 'listed first, so dropped: read again');
  t.ok(pages.size.bytes <= bound, 'still within the bound');
  const huge = row(50, { details: { blob: 'y'.repeat(bound / 2) } });
  await storage.appendHistory(huge);
  t.equal((await pages.page({ limit: 1 })).toString('utf8'), await expected(storage, { limit: 1 }), 'a row larger than half the bound is answered');
  for (const time of ['asked again', 'asked a third time']) {
    before = texts();
    await pages.page({ limit: 1 });
    t.equal(texts() - before, 1, `${time}: read again, as it is not kept`);
  }
  t.ok(pages.size.bytes <= bound, 'within the bound');
});

t.test('pages built at once, with a bound that keeps two rows, are each whole', async (t) => {
  const { storage } = await store(t);
  for (let m = 0; m < 60; m += 1) await storage.appendHistory(row(m));
  const pages = new HistoryPages(storage, 2 * Buffer.byteLength(JSON.stringify(row(59))));
  const queries: HistoryQuery[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 6; i += 1) {
    const q: HistoryQuery = cursor === undefined ? { limit: 10 } : { limit: 10, cursor };
    queries.push(q, { ...q, limit: 7 }, { limit: 15, policy_name: i % 2 === 0 ? 'even' : 'odd' });
    cursor = (await storage.listHistory(q)).next_cursor ?? undefined;
  }
  const answers = await Promise.all([...queries, ...queries].map((q) => pages.page(q)));
  for (const [i, q] of [...queries, ...queries].entries()) {
    t.equal(answers[i]?.toString('utf8'), await expected(storage, q), `page ${i}`);
  }
});

t.test('a bound of 0 (history_cache_mb: 0) keeps nothing and reads every page whole', async (t) => {
  const { storage, texts } = await store(t);
  for (let m = 0; m < 10; m += 1) await storage.appendHistory(row(m));
  const pages = new HistoryPages(storage, 0);
  const q = { limit: 5 };
  for (let i = 0; i < 3; i += 1) t.equal((await pages.page(q)).toString('utf8'), await expected(storage, q), `asked ${i + 1} times: the rows as stored`);
  t.strictSame(pages.size, { rows: 0, bytes: 0 }, 'nothing kept');
  const before = texts();
  await pages.page(q);
  t.ok(texts() > before, 'the texts are read again');
});

t.test('history_cache_mb in the config: default 32, 0 to 4096, from the file or the environment', async (t) => {
  const { loadConfig } = await import('../src/config/config.js');
  t.equal(loadConfig({ env: {}, cwd: '/nonexistent' }).history_cache_mb, 32);
  t.equal(loadConfig({ env: { PHILOTES_SCALING_HISTORY_CACHE_MB: '0' }, cwd: '/nonexistent' }).history_cache_mb, 0);
  t.equal(loadConfig({ env: { PHILOTES_SCALING_HISTORY_CACHE_MB: '256' }, cwd: '/nonexistent' }).history_cache_mb, 256);
  for (const bad of ['-1', '4097', 'lots', '1.5']) {
    t.throws(() => loadConfig({ env: { PHILOTES_SCALING_HISTORY_CACHE_MB: bad }, cwd: '/nonexistent' }), /history_cache_mb|PHILOTES_SCALING_HISTORY_CACHE_MB/, bad);
  }
  const dir = await mkdtemp(join(tmpdir(), 'ps-history-cache-config-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { writeFile } = await import('node:fs/promises');
  await writeFile(join(dir, 'philotes-scaler.yaml'), 'history_cache_mb: 128\n');
  t.equal(loadConfig({ env: {}, cwd: dir }).history_cache_mb, 128, 'from the config file');
  await writeFile(join(dir, 'philotes-scaler.yaml'), 'history_cache_mb: "a lot"\n');
  t.throws(() => loadConfig({ env: {}, cwd: dir }), /history_cache_mb/, 'a bad value in the file names the field');
});

t.test('a walk through more distinct pages than 1,024 is kept from its second time when the memory holds it', async (t) => {
  const { storage, texts } = await store(t);
  const walk = 1_100;
  for (let m = 0; m < walk; m += 1) await storage.appendHistory(row(m, { policy_name: `p${m}`, details: { m } }));
  const queries = Array.from({ length: walk }, (_, m): HistoryQuery => ({ limit: 1, policy_name: `p${m}` }));
  // 72 MiB, 36 of them for rows: the newer half holds every row many times over, and remembers
  // 1,152 queries a generation.
  const pages = new HistoryPages(storage, 72 * 1024 * 1024);
  for (const q of queries) await pages.page(q);
  t.equal(pages.size.rows, 0, 'the first walk keeps nothing');
  for (const q of queries) await pages.page(q);
  t.equal(pages.size.rows, walk, 'the second walk keeps every row');
  const before = texts();
  for (const [m, q] of queries.entries()) if (m % 100 === 0) t.equal((await pages.page(q)).toString('utf8'), await expected(storage, q), `p${m}'s page from memory`);
  for (const q of queries) await pages.page(q);
  t.equal(texts(), before, 'the third walk reads no text');
});

/** The page for a client that accepts gzip: the bytes sent, decompressed when they are gzip. */
async function gzipClient(pages: HistoryPages, q: HistoryQuery): Promise<{ text: string; gzip: boolean; sent: Buffer }> {
  const a = await pages.answer(q, true);
  const sent = Buffer.concat(a.parts, a.bytes);
  return { text: (a.gzip ? gunzipSync(sent) : sent).toString('utf8'), gzip: a.gzip, sent };
}

t.test('compressed pages: a page asked for again is gzipped and kept; then only its keys are read; rows appended or pruned rebuild it', async (t) => {
  const { storage, texts } = await store(t);
  for (let m = 0; m < 30; m += 1) await storage.appendHistory(row(m));
  const pages = new HistoryPages(storage);
  const q = { limit: 10 };
  const once = await gzipClient(pages, q);
  t.equal(once.text, await expected(storage, q), 'asked once: the page');
  t.equal(once.gzip, false, 'asked once: sent as it is');
  t.strictSame(pages.compressedSize, { pages: 0, bytes: 0 }, 'asked once: nothing kept compressed');
  t.equal(texts(), 10, 'the ten rows\' texts read');
  const twice = await gzipClient(pages, q);
  t.equal(twice.gzip, true, 'asked again: gzip');
  t.equal(twice.text, await expected(storage, q), 'asked again: the page, byte for byte once decompressed');
  t.equal(pages.compressedSize.pages, 1, 'kept compressed');
  t.ok(pages.compressedSize.bytes > twice.sent.length && pages.compressedSize.bytes < twice.sent.length + 100, 'counted as its bytes and a short digest of its ids');
  t.equal(texts(), 20, 'read again (its rows were not kept either)');
  const thrice = await pages.answer(q, true);
  t.ok(thrice.gzip && Buffer.concat(thrice.parts).equals(twice.sent), 'asked a third time: the bytes kept');
  t.equal((await pages.answer(q, true)).parts[0], thrice.parts[0], 'the same buffer each time');
  t.equal(thrice.rows, 10, 'ten rows on it');
  t.equal(texts(), 20, 'no text read, twice: the page\'s keys only');
  const identity = await pages.answer(q, false);
  t.equal(identity.gzip, false, 'a client without gzip: as it is');
  t.equal(Buffer.concat(identity.parts, identity.bytes).toString('utf8'), await expected(storage, q), 'the same page');
  t.equal(texts(), 20, 'from the rows kept since the second ask');

  const newer = row(100);
  await storage.appendHistory(newer);
  const appended = await gzipClient(pages, q);
  t.equal(appended.gzip, true, 'a row appended: still gzip');
  t.equal(appended.text, await expected(storage, q), 'a row appended: the page built anew');
  t.match(appended.text, new RegExp(`^\\{"history":\\[\\{"id":"${newer.id}"`), 'led by the new row');
  t.equal(texts(), 21, 'only the new row read');
  t.equal(pages.compressedSize.pages, 1, 'in place of the page kept for the query');
  await storage.pruneHistory(at(25), 100);
  const pruned = await gzipClient(pages, q);
  t.equal(pruned.text, await expected(storage, q), 'rows pruned: the page built anew');
  t.equal(pruned.gzip, true, 'rows pruned: gzip');
});

t.test('compressed pages: the bound (half the memory) drops the pages asked for longest ago; 0 keeps none', async (t) => {
  const { storage, texts } = await store(t);
  for (let m = 0; m < 40; m += 1) await storage.appendHistory(row(m, { policy_name: `p${m % 8}` }));
  const query = (p: number): HistoryQuery => ({ limit: 5, policy_name: `p${p}` });
  // What each page counts against the bound once kept (its compressed bytes and the digest of its ids).
  const sizes: number[] = [];
  for (let p = 0; p < 8; p += 1) {
    const probe = new HistoryPages(storage);
    await probe.answer(query(p), true);
    await probe.answer(query(p), true);
    sizes.push(probe.compressedSize.bytes);
  }
  const size = Math.max(...sizes);
  // Pages have half the memory: room for three of the largest.
  const pages = new HistoryPages(storage, size * 3 * 2);
  for (let p = 0; p < 8; p += 1) await pages.answer(query(p), true);
  t.strictSame(pages.compressedSize, { pages: 0, bytes: 0 }, 'each asked once: none kept');
  for (let p = 0; p < 8; p += 1) t.equal((await pages.answer(query(p), true)).gzip, true, `p${p} asked again: gzip`);
  t.ok(pages.compressedSize.bytes <= size * 3, `at most three pages' bytes kept (${pages.compressedSize.bytes})`);
  t.equal(pages.compressedSize.pages, 3, 'three pages kept: p5, p6, p7');
  let before = texts();
  await pages.answer(query(5), true);
  await pages.answer(query(7), true);
  t.equal(texts() - before, 0, 'p5 and p7 kept: keys only');
  before = texts();
  const p0 = await gzipClient(pages, query(0));
  t.equal(p0.text, await expected(storage, query(0)), 'p0, asked for before, answered');
  t.equal(p0.gzip, true, 'p0 gzip');
  t.ok(texts() - before > 0, 'p0 was not kept: built again');
  before = texts();
  await pages.answer(query(5), true);
  await pages.answer(query(7), true);
  t.equal(texts() - before, 0, 'p5 and p7 still kept');
  before = texts();
  await pages.answer(query(6), true);
  t.ok(texts() - before > 0, 'p6, asked for longest ago, was dropped for p0');
  const none = new HistoryPages(storage, 0);
  for (let i = 0; i < 3; i += 1) {
    before = texts();
    const a = await gzipClient(none, query(1));
    t.equal(a.text, await expected(storage, query(1)), `a bound of 0, ask ${i + 1}: the page`);
    t.equal(texts() - before, 5, `a bound of 0, ask ${i + 1}: built from its rows`);
  }
  t.strictSame(none.compressedSize, { pages: 0, bytes: 0 }, 'a bound of 0: none kept');
});
