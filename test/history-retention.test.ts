/**
 * History retention on both backends (a real SQLite file and the real PostgreSQL server): rows
 * older than the retention are deleted in batches, oldest first; the table stays append-only for
 * everything else; the background pruner works through a backlog; and an interrupted change whose
 * own row was written before the crash is not recorded a second time as failed.
 */
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { loadConfig, ConfigError } from '../src/config/config.js';
import { ScalingManager } from '../src/engine/manager.js';
import { HistoryRetention, PrunePacer } from '../src/history/history-retention.js';
import type { Executor, MetricSource } from '../src/plugins/api.js';
import { IsolatedExecutor, IsolatedMetricSource } from '../src/plugins/plugin-manager.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { createPostgresStorage, PostgresDriver } from '../src/storage/postgres-storage.js';
import { SqlStorage } from '../src/storage/sql-storage.js';
import type { HistoryRow } from '../src/storage/storage.js';
import { tempSqliteStorage } from './helpers/fixtures.js';
import { createFreshDatabase } from './helpers/pg.js';

const silent = pino({ level: 'silent' });
const DAY = 86_400_000;
const NOW = Date.parse('2026-03-01T00:00:00Z');

function row(daysAgo: number, extra: Partial<HistoryRow> = {}): HistoryRow {
  return {
    id: randomUUID(),
    policy_id: null,
    policy_name: 'kept-or-not',
    action: 'scale_up',
    target_type: 'cdc-worker',
    target_id: null,
    previous_replicas: 1,
    new_replicas: 2,
    reason: 'test',
    reason_code: 'rule_held',
    triggered_by: 'rule',
    dry_run: false,
    status: 'succeeded',
    error: null,
    executed_at: new Date(NOW - daysAgo * DAY).toISOString(),
    details: null,
    ...extra,
  };
}

async function postgres(t: Test): Promise<SqlStorage> {
  const db = await createFreshDatabase('philotes_retention');
  const storage = createPostgresStorage(db.url);
  await storage.migrate();
  t.teardown(async () => {
    await storage.close();
    await db.drop();
  });
  return storage;
}

const backends: Array<[string, (t: Test) => Promise<SqlStorage>]> = [
  ['sqlite', (t) => tempSqliteStorage(t, 'ps-retention')],
  ['postgres', postgres],
];

for (const [name, open] of backends) {
  t.test(`${name}: pruneHistory deletes only rows older than the cutoff, oldest first, a batch at a time`, async (t) => {
    const storage = await open(t);
    const old = [40, 35, 31, 31, 45].map((d) => row(d));
    const recent = [29, 1, 0].map((d) => row(d));
    for (const r of [...old, ...recent]) await storage.appendHistory(r);
    const cutoff = new Date(NOW - 30 * DAY).toISOString();
    t.equal(await storage.pruneHistory(cutoff, 2), 2, 'a batch of 2');
    const left = (await storage.listHistory({ limit: 100 })).rows.map((r) => r.executed_at);
    t.notOk(left.includes(row(45).executed_at), 'the oldest went first');
    t.notOk(left.includes(row(40).executed_at));
    t.equal(await storage.pruneHistory(cutoff, 100), 3, 'then the rest of the old rows');
    t.equal(await storage.pruneHistory(cutoff, 100), 0, 'nothing more to delete');
    t.same(
      (await storage.listHistory({ limit: 100 })).rows.map((r) => r.id).sort(),
      recent.map((r) => r.id).sort(),
      'every row inside the retention is kept',
    );
  });

  t.test(`${name}: outside the pruner the history stays append-only`, async (t) => {
    const storage = await open(t);
    const r = await storage.appendHistory(row(100));
    await t.rejects(storage.driver.run('DELETE FROM scaling_history WHERE id = ?', [r.id]), /append-only/, 'a plain DELETE is refused, however old the row');
    await t.rejects(storage.driver.run('UPDATE scaling_history SET reason = ? WHERE id = ?', ['rewritten', r.id]), /append-only/, 'an UPDATE is refused');
    // The pruner's cutoff lives only inside its own transaction.
    const [flag] = await storage.driver.all<{ before: unknown }>('SELECT before FROM scaling_history_prune WHERE id = 1');
    t.equal(flag?.before ?? null, null, 'no cutoff is left set after a prune');
    await storage.pruneHistory(new Date(NOW - 200 * DAY).toISOString(), 10);
    await t.rejects(storage.driver.run('DELETE FROM scaling_history WHERE id = ?', [r.id]), /append-only/, 'still refused after a prune ran');
    t.equal((await storage.listHistory({ limit: 10 })).rows.length, 1, 'the row is still there');
  });

  t.test(`${name}: the background pruner works through a backlog in batches`, async (t) => {
    const storage = await open(t);
    for (let i = 0; i < 23; i++) await storage.appendHistory(row(31 + (i % 5)));
    for (let i = 0; i < 4; i++) await storage.appendHistory(row(i));
    const retention = new HistoryRetention({ storage, logger: silent, retentionMs: 30 * DAY, batch: 5, now: () => new Date(NOW) });
    t.equal(await retention.prune(), 23, 'one pass deletes the 23 old rows, 5 at a time');
    t.equal((await storage.listHistory({ limit: 100 })).rows.length, 4, 'the 4 recent rows stay');
    const keepAll = new HistoryRetention({ storage, logger: silent, retentionMs: 0, now: () => new Date(NOW + 1000 * DAY) });
    t.equal(await keepAll.prune(), 0, 'retention 0 keeps everything');
    t.equal((await storage.listHistory({ limit: 100 })).rows.length, 4);
  });
}

t.test('postgres: retention keeps its pace while API reads hold every pooled connection', async (t) => {
  const db = await createFreshDatabase('philotes_retention_busy');
  const storage = new SqlStorage(new PostgresDriver(db.url, { max: 2 }));
  await storage.migrate();
  t.teardown(async () => {
    await storage.close();
    await db.drop();
  });
  for (let i = 0; i < 1500; i += 1) await storage.appendHistory(row(40));
  // Readers that hold both connections nearly all the time, 100 ms a statement, as a busy API does.
  let reading = true;
  const reader = async (): Promise<void> => {
    while (reading) await storage.driver.all('SELECT pg_sleep(0.1)');
  };
  const readers = [reader(), reader(), reader()];
  await new Promise((r) => setTimeout(r, 50));
  const timing = { waitedMs: 0 };
  t.equal(await storage.pruneHistory(new Date(NOW - 30 * DAY).toISOString(), 10, timing), 10, 'ten rows deleted');
  t.ok(timing.waitedMs >= 20, `the wait for a connection is reported (${timing.waitedMs.toFixed(0)} ms)`);
  const retention = new HistoryRetention({ storage, logger: silent, retentionMs: 30 * DAY, now: () => new Date(NOW) });
  const deleted = await retention.prune();
  reading = false;
  await Promise.all(readers);
  // Sized by their time (each statement's round trips waiting behind the readers), the batches
  // shrank to one row with a 300 ms pause after each: about 15 rows in the pass's 2 s.
  t.ok(deleted >= 300, `one pass of 2 s deletes ${deleted} of the 1,490 old rows left: batches of the largest size on PostgreSQL`);
});

t.test('PrunePacer sizes statements by time and rests in proportion', async (t) => {
  const pacer = (first = 10): PrunePacer => new PrunePacer({ targetMs: 5, max: 500, restRatio: 3, first });
  // [what, first size, statements observed as [rows, ms], size after, rest after the last]
  const cases: Array<[string, number, Array<[number, number]>, number, number]> = [
    ['starts at the first size', 10, [], 10, 0],
    ['a statement four times too slow: halfway down (geometrically)', 100, [[100, 20]], 50, 60],
    ['a statement four times too fast: halfway up', 100, [[100, 1.25]], 200, 3.75],
    ['on target: stays', 40, [[40, 5]], 40, 15],
    ['never above the most rows per statement', 400, [[400, 0.5], [500, 0.5]], 500, 1.5],
    ['never below one row', 2, [[2, 400]], 1, 1200],
    ['no rows deleted: size unchanged', 30, [[0, 3]], 30, 9],
  ];
  for (const [what, first, seen, size, rest] of cases) {
    const p = pacer(first);
    let last = 0;
    for (const [rows, ms] of seen) last = p.observe(rows, ms);
    t.equal(p.size, size, `${what}: size ${size}`);
    t.equal(last, rest, `${what}: rest ${rest} ms`);
  }
  // A steady cost of 0.25 ms a row: the size settles on the 20 rows that take 5 ms.
  const p = pacer(500);
  for (let i = 0; i < 20; i++) p.observe(p.size, p.size * 0.25);
  t.equal(p.size, 20, 'settles on 20 rows at 0.25 ms a row');
  t.equal(new PrunePacer({ targetMs: 5, max: 3, restRatio: 1 }).size, 3, 'the first size is at most the max');
});

t.test('PrunePacer with bySize false: every statement the largest batch, pauses still by time', async (t) => {
  const pacer = new PrunePacer({ targetMs: 5, max: 500, restRatio: 3, first: 10, bySize: false });
  t.equal(pacer.size, 500, 'the largest batch from the first statement');
  t.equal(pacer.observe(500, 40), 120, 'a slow statement: three times as long a pause');
  t.equal(pacer.size, 500, 'and the same size after it');
  t.equal(pacer.observe(1, 25), 75);
  t.equal(pacer.size, 500, 'a one-row statement that took long does not shrink it either');
});

t.test('stop() ends the pause between two statements at once', async (t) => {
  const storage = await tempSqliteStorage(t, 'ps-prune-stop');
  for (let i = 0; i < 10; i++) await storage.appendHistory(row(40));
  // Statements of one row, each followed by a pause a million times as long as it took.
  const retention = new HistoryRetention({ storage, logger: silent, retentionMs: 30 * DAY, batch: 1, restRatio: 1e6, now: () => new Date(NOW) });
  const pass = retention.prune();
  while (retention.deleted === 0 && (await storage.listHistory({ limit: 100 })).rows.length === 10) await new Promise((r) => setTimeout(r, 5));
  await retention.stop();
  t.equal(await pass, 1, 'the pass ended after its first statement');
  t.equal((await storage.listHistory({ limit: 100 })).rows.length, 9, 'nine rows left for a later pass');
});

t.test('history_retention in the config: default 30d, 0 keeps forever, below 1m refused', async (t) => {
  t.equal(loadConfig({ env: {}, cwd: '/nonexistent' }).history_retention_ms, 30 * DAY);
  t.equal(loadConfig({ env: { PHILOTES_SCALING_HISTORY_RETENTION: '0' }, cwd: '/nonexistent' }).history_retention_ms, 0);
  t.equal(loadConfig({ env: { PHILOTES_SCALING_HISTORY_RETENTION: '7d12h' }, cwd: '/nonexistent' }).history_retention_ms, 7.5 * DAY);
  t.throws(() => loadConfig({ env: { PHILOTES_SCALING_HISTORY_RETENTION: '30s' }, cwd: '/nonexistent' }), ConfigError);
  t.throws(() => loadConfig({ env: { PHILOTES_SCALING_HISTORY_RETENTION: 'a month' }, cwd: '/nonexistent' }), /history_retention/);
});

t.test('history_prune_interval in the config: default 1m, 1s to 1h', async (t) => {
  t.equal(loadConfig({ env: {}, cwd: '/nonexistent' }).history_prune_interval_ms, 60_000);
  t.equal(loadConfig({ env: { PHILOTES_SCALING_HISTORY_PRUNE_INTERVAL: '5s' }, cwd: '/nonexistent' }).history_prune_interval_ms, 5_000);
  for (const bad of ['0', '500ms', '2h', 'often']) {
    t.throws(() => loadConfig({ env: { PHILOTES_SCALING_HISTORY_PRUNE_INTERVAL: bad }, cwd: '/nonexistent' }), /history_prune_interval/, bad);
  }
});

t.test('the background pruner runs a pass every interval', async (t) => {
  const storage = await tempSqliteStorage(t, 'ps-prune-interval');
  let now = NOW;
  const retention = new HistoryRetention({ storage, logger: silent, retentionMs: 30 * DAY, everyMs: 50, now: () => new Date(now) });
  t.teardown(() => retention.stop());
  retention.start(0);
  for (let i = 0; i < 3; i++) {
    await storage.appendHistory(row(29));
    now += 2 * DAY; // the row just written is now 31 days old
    const deadline = Date.now() + 5_000;
    while (retention.deleted < i + 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    t.equal(retention.deleted, i + 1, `pass ${i + 1} found the row that aged past the retention`);
  }
});

t.test('after a crash, a change whose own row was written is not recorded again as failed', async (t) => {
  const storage = await tempSqliteStorage(t, 'ps-pending');
  const policy = normalizePolicy(
    { name: 'crashed', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10, scale_up_rules: [{ metric: 'lag', operator: 'gt', threshold: 60, scale_by: 1 }] },
    { source: 'api', now: new Date('2026-01-01T00:00:00Z') },
  );
  const other = normalizePolicy({ ...policy, name: 'crashed-unrecorded' } as never, { source: 'api', now: new Date('2026-01-01T00:00:00Z') });
  await storage.createPolicy(policy);
  const second = await storage.createPolicy({ ...other, id: randomUUID() });
  const at = '2026-01-28T11:59:30.000Z';
  const pending = (id: string) => ({ id, action: 'scale_up', previous: 1, desired: 2, at, reason: 'lag held', reason_code: 'rule_held', triggered_by: 'rule' });
  // The first policy's change was recorded as succeeded just before the crash (its state still
  // carried the intent); the second's was not recorded at all.
  const recordedId = randomUUID();
  await storage.appendHistory(row(0, { id: recordedId, policy_id: policy.id, policy_name: policy.name, executed_at: at }));
  for (const [p, id] of [[policy, recordedId], [second, randomUUID()]] as const) {
    await storage.putState({ policy_id: p.id, current_replicas: 2, last_change_at: at, last_change_kind: 'scale_up', consecutive_failures: 0, last_blocked: null, data: { pending: pending(id) }, updated_at: at, version: 0 });
  }
  const source: MetricSource = { instantQuery: async (q) => ({ t: q.time.getTime() / 1000, v: 0 }) };
  const executor: Executor = { targetTypes: ['cdc-worker'], getCurrentReplicas: async () => null, scale: async () => undefined };
  const m = new ScalingManager({
    storage,
    logger: silent,
    sources: new Map([['prometheus', new IsolatedMetricSource('prometheus', source, 300)]]),
    executors: new Map([['keda', new IsolatedExecutor('keda', executor, 300)]]),
    now: () => new Date('2026-01-28T12:00:00Z'),
    config: { evaluation_interval_ms: 30_000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 4, executors: { 'cdc-worker': 'keda' }, prices: {} },
  });
  await m.runCycle();
  const rows = async (id: string) => (await storage.listHistory({ limit: 10, policy_id: id })).rows.map((r) => `${r.status}${r.error !== null ? ': outcome unknown' : ''}`.replace(/: outcome unknown.*/, ': outcome unknown'));
  t.same(await rows(policy.id), ['succeeded'], 'the recorded change keeps its one row');
  t.same(await rows(second.id), ['failed: outcome unknown'], 'the unrecorded one is recorded once, outcome unknown');
  t.equal((await storage.getState(policy.id))?.data['pending'], undefined, 'the intent is cleared');
  await m.runCycle();
  t.equal((await rows(second.id)).length, 1, 'and not again');
});
