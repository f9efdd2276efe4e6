/**
 * The states a cycle leaves to be written later (StateBatch in src/engine/state-writes.ts), on a
 * real SQLite file: written in transactions of `chunk` as they come, each state's `written` called
 * once it is stored, the refused and the failed ones reported, nothing written once leadership is
 * lost (the fence is asked for each transaction).
 */
import t from 'tap';
import { MAX_GROUP, StateBatch } from '../src/engine/state-writes.js';
import type { SqlStorage } from '../src/storage/sql-storage.js';
import type { LeaderFence, PolicyState, Storage } from '../src/storage/storage.js';
import { tempSqliteStorage } from './helpers/fixtures.js';
import { policyOf } from './helpers/engine-parts.js';

const AT = '2026-02-01T10:00:00.000Z';

async function policies(storage: SqlStorage, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push((await storage.createPolicy(policyOf({ name: `b-${i}` }))).id);
  return ids;
}

const state = (policyId: string, version: number, replicas: number, data: Record<string, unknown> = { replicas }): PolicyState => ({
  policy_id: policyId, current_replicas: replicas, last_change_at: null, last_change_kind: null, consecutive_failures: 0, last_blocked: null, data, updated_at: AT, version,
});

/** The storage with each putStates call recorded (its size and options). */
function counted(storage: SqlStorage): { storage: Storage; calls: Array<{ n: number; opts: unknown }> } {
  const calls: Array<{ n: number; opts: unknown }> = [];
  const proxy = new Proxy(storage, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      const f = (v as (...a: unknown[]) => unknown).bind(target);
      if (prop !== 'putStates') return f;
      return (states: PolicyState[], opts: unknown) => {
        calls.push({ n: states.length, opts });
        return f(states, opts);
      };
    },
  });
  return { storage: proxy, calls };
}

interface Reports {
  refused: string[][];
  failed: Array<{ ids: string[]; err: unknown }>;
}

function batchOf(storage: Storage, fence: () => LeaderFence | undefined | false, chunk?: number): { batch: StateBatch; reports: Reports } {
  const reports: Reports = { refused: [], failed: [] };
  const batch = new StateBatch(storage, {
    fence,
    refused: (ids) => reports.refused.push([...ids]),
    failed: (states, err) => reports.failed.push({ ids: states.map((s) => s.policy_id), err }),
    ...(chunk !== undefined ? { chunk } : {}),
  });
  return { batch, reports };
}

t.test('states are written in chunks as they come; written() once each is stored', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-batch');
  const ids = await policies(sqlite, 7);
  const { storage, calls } = counted(sqlite);
  const { batch, reports } = batchOf(storage, () => undefined, 3);
  const written: string[] = [];
  for (const [i, id] of ids.entries()) {
    batch.add(state(id, 0, i + 1), () => written.push(id));
    if (i === 2) t.same(calls.map((c) => c.n), [3], 'the first chunk is handed to storage as soon as it is full');
  }
  t.same(calls.map((c) => c.n), [3, 3], 'two full chunks before done()');
  t.equal(batch.count, 7, 'every state counted');
  await batch.done();
  t.same(calls.map((c) => c.n), [3, 3, 1], 'the rest at done()');
  t.same(calls.map((c) => c.opts), [{}, {}, {}], 'no fence: a plain compare-and-set');
  t.same(written.sort(), [...ids].sort(), 'each written() called by the time done() resolved');
  t.same(reports, { refused: [], failed: [] });
  const stored = await sqlite.getStates(ids);
  t.same(ids.map((id) => stored.get(id)?.current_replicas), [1, 2, 3, 4, 5, 6, 7], 'and stored');
  t.ok(ids.every((id) => stored.get(id)?.version === 1));
});

t.test('a state whose version moved is refused, reported, and not marked written', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-batch');
  const ids = await policies(sqlite, 4);
  await sqlite.putStates(ids.map((id) => state(id, 0, 1)));
  const { batch, reports } = batchOf(sqlite, () => undefined);
  const written: string[] = [];
  // The second and fourth from a stale view (version 0: another writer stored version 1 since).
  ids.forEach((id, i) => batch.add(state(id, i % 2 === 1 ? 0 : 1, 5), () => written.push(id)));
  await batch.done();
  t.same(written, [ids[0], ids[2]]);
  t.same(reports.refused, [[ids[1], ids[3]]], 'reported in one call per transaction');
  t.same(reports.failed, []);
  const stored = await sqlite.getStates(ids);
  t.same(ids.map((id) => stored.get(id)?.current_replicas), [5, 1, 5, 1], 'the refused states are untouched');
});

t.test('the fence is asked for each transaction: after leadership is lost nothing more is written', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-batch');
  const ids = await policies(sqlite, 5);
  const { storage, calls } = counted(sqlite);
  let fence: LeaderFence | false = 42;
  const { batch, reports } = batchOf(storage, () => fence, 2);
  const written: string[] = [];
  for (const id of ids.slice(0, 2)) batch.add(state(id, 0, 3), () => written.push(id));
  fence = false;
  for (const id of ids.slice(2)) batch.add(state(id, 0, 3), () => written.push(id));
  await batch.done();
  t.same(calls, [{ n: 2, opts: { fence: 42 } }], 'the first chunk carried the fence; the others were not handed to storage');
  t.same(written, ids.slice(0, 2));
  t.same(reports.refused, [ids.slice(2, 4), ids.slice(4)], 'the states of both later chunks refused');
  const stored = await sqlite.getStates(ids);
  t.same([...stored.keys()].sort(), ids.slice(0, 2).sort(), 'nothing stored for them');
});

t.test('a transaction that fails reports its states; the other chunks are written', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-batch');
  const ids = await policies(sqlite, 6);
  const { batch, reports } = batchOf(sqlite, () => undefined, 2);
  const written: string[] = [];
  ids.forEach((id, i) => {
    // A value that cannot be written as JSON fails the second chunk's transaction.
    const data = i === 3 ? { bad: 10n } : { ok: true };
    batch.add(state(id, 0, 2, data), () => written.push(id));
  });
  await batch.done();
  t.equal(reports.failed.length, 1);
  t.same(reports.failed[0]?.ids, ids.slice(2, 4), 'the failed chunk\'s states');
  t.match(String(reports.failed[0]?.err), /BigInt/);
  t.same(reports.refused, [], 'a failure is not a refusal');
  t.same(written.sort(), [ids[0], ids[1], ids[4], ids[5]].sort());
  const stored = await sqlite.getStates(ids);
  t.notOk(stored.has(ids[2] as string), 'nothing of the failed chunk was kept');
  t.equal(stored.size, 4);
});

t.test('done() with nothing added writes nothing; the default chunk is MAX_GROUP', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-batch');
  const { storage, calls } = counted(sqlite);
  const empty = batchOf(storage, () => undefined);
  await empty.batch.done();
  t.same(calls, [], 'no transaction');
  t.equal(empty.batch.count, 0);

  const ids = await policies(sqlite, MAX_GROUP + 1);
  const { batch, reports } = batchOf(storage, () => undefined);
  for (const id of ids) batch.add(state(id, 0, 1));
  await batch.done();
  t.same(calls.map((c) => c.n), [MAX_GROUP, 1]);
  t.same(reports, { refused: [], failed: [] });
  t.equal((await sqlite.getStates(ids)).size, MAX_GROUP + 1, 'states without a written() callback are stored too');
});
