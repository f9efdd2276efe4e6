/**
 * The statements behind the history listings read their index in order, on both backends (a real
 * SQLite file and the real PostgreSQL server): neither database sorts the rows a page is taken
 * from. Each statement listHistoryJson runs, for every filter and with and without a cursor, is
 * captured and explained. A statement that sorted would still answer the right rows (the other
 * history tests would pass) but read the whole table for every page.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { createPostgresStorage } from '../src/storage/postgres-storage.js';
import type { SqlStorage } from '../src/storage/sql-storage.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import type { HistoryQuery, HistoryRow } from '../src/storage/storage.js';
import { createFreshDatabase } from './helpers/pg.js';

const BASE = Date.UTC(2026, 0, 28, 12, 0, 0);

/** Every statement a call runs, with its parameters. */
async function captured(storage: SqlStorage, call: () => Promise<unknown>): Promise<Array<{ sql: string; params: unknown[] }>> {
  const seen: Array<{ sql: string; params: unknown[] }> = [];
  const driver = storage.driver as unknown as { all: (sql: string, params?: readonly unknown[]) => Promise<unknown[]> };
  const all = driver.all.bind(driver);
  driver.all = (sql, params = []) => {
    seen.push({ sql, params: [...params] });
    return all(sql, params);
  };
  try {
    await call();
  } finally {
    driver.all = all;
  }
  return seen;
}

async function plan(backend: string, storage: SqlStorage, sql: string, params: unknown[]): Promise<string> {
  if (backend === 'sqlite') {
    const rows = await storage.driver.all<{ detail: string }>(`EXPLAIN QUERY PLAN ${sql}`, params);
    return rows.map((r) => r.detail).join('\n');
  }
  const rows = await storage.driver.all<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, params);
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

const backends: Array<[string, () => Promise<{ storage: SqlStorage; remove: () => Promise<void> }>]> = [
  [
    'sqlite',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'ps-history-plans-'));
      return { storage: createSqliteStorage(join(dir, 'scaler.db')), remove: () => rm(dir, { recursive: true, force: true }) };
    },
  ],
  [
    'postgres',
    async () => {
      const db = await createFreshDatabase('philotes_history_plans');
      return { storage: createPostgresStorage(db.url), remove: () => db.drop() };
    },
  ],
];

for (const [backend, open] of backends) {
  t.test(`${backend}: every history listing statement reads an index in order, never a sort`, async (t) => {
    const { storage, remove } = await open();
    t.teardown(async () => {
      await storage.close();
      await remove();
    });
    await storage.migrate();
    const policy = await storage.createPolicy(normalizePolicy({ name: 'plans', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 5 }, { source: 'api', now: new Date(BASE) }));
    // Enough rows that a planner has a reason to prefer an index, over 40 policies.
    const rows: HistoryRow[] = [];
    for (let i = 0; i < 4000; i++) {
      rows.push({
        id: randomUUID(),
        policy_id: i % 40 === 0 ? policy.id : randomUUID(),
        policy_name: i % 40 === 0 ? 'plans' : `other-${i % 40}`,
        action: i % 3 === 0 ? 'scale_down' : 'scale_up',
        target_type: 'cdc-worker',
        target_id: null,
        previous_replicas: 1,
        new_replicas: 2,
        reason: 'r',
        reason_code: 'rules_held',
        triggered_by: 'rule',
        dry_run: i % 7 === 0,
        status: i % 5 === 0 ? 'failed' : 'succeeded',
        error: null,
        executed_at: new Date(BASE + i * 1000).toISOString(),
        details: { i },
      });
    }
    await storage.recordChanges(rows.map((row) => ({ row, state: { policy_id: policy.id, current_replicas: 1, last_change_at: null, last_change_kind: null, consecutive_failures: 0, last_blocked: null, data: {}, updated_at: new Date(BASE).toISOString(), version: 1 } })));
    if (backend === 'postgres') await storage.driver.exec('ANALYZE scaling_history');
    else await storage.driver.exec('ANALYZE');
    const middle = (await storage.listHistory({ limit: 2000 })).next_cursor ?? undefined;
    t.ok(middle, 'a cursor mid-way');
    const queries: HistoryQuery[] = [
      { limit: 100 },
      { limit: 100, policy_id: policy.id },
      { limit: 100, policy_name: 'plans' },
      { limit: 100, action: 'scale_down' },
      { limit: 100, status: 'failed' },
      { limit: 100, policy_id: policy.id, action: 'scale_up' },
    ];
    for (const base of queries) {
      for (const q of [base, { ...base, cursor: middle }]) {
        const what = JSON.stringify({ ...q, cursor: q.cursor === undefined ? undefined : 'mid-way' });
        // The keys of a page known in full, then a page read whole.
        for (const known of [() => true, undefined]) {
          const statements = await captured(storage, () => storage.listHistoryJson(q, known));
          t.ok(statements.length > 0, `${what}: statements seen`);
          for (const s of statements) {
            const text = await plan(backend, storage, s.sql, s.params);
            const label = `${what}, ${known === undefined ? 'whole page' : 'keys'}`;
            if (backend === 'sqlite') {
              t.notOk(/TEMP B-TREE FOR ORDER BY/.test(text), `${label}: no sort in\n${text}`);
              t.notOk(/^SCAN scaling_history$/m.test(text), `${label}: through an index in\n${text}`);
            } else {
              // PostgreSQL may sort the few rows an index found for a filter; never the table's,
              // and only by the columns (a sort by an expression of them cannot use an index).
              t.notOk(/Seq Scan/.test(text), `${label}: no sequential scan in\n${text}`);
              for (const m of text.matchAll(/Sort Key: (.*)/g)) t.equal(m[1], 'executed_at DESC, id DESC', `${label}: sorted by the columns`);
              if (Object.keys(q).every((k) => k === 'limit' || k === 'cursor')) t.notOk(/\bSort\b/.test(text), `${label}: no sort in\n${text}`);
            }
          }
        }
        // And the page's rows and cursor are those of listHistory.
        const page = await storage.listHistoryJson(q);
        const expected = await storage.listHistory(q);
        t.strictSame(page.ids, expected.rows.map((r) => r.id), `${what}: the rows of listHistory`);
        t.equal(page.next_cursor, expected.next_cursor, `${what}: the cursor of listHistory`);
      }
    }
  });
}
