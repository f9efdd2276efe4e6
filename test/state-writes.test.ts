/**
 * The grouped state and history writes of the loop (src/engine/state-writes.ts), on a real SQLite
 * file: writes asked for together share one transaction, each keeps its own compare-and-set and
 * answer, a failed transaction fails only its own group, and nothing is answered before it is
 * committed.
 */
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { MAX_GROUP, StateWrites } from '../src/engine/state-writes.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import type { SqlStorage } from '../src/storage/sql-storage.js';
import type { HistoryRow, PolicyState, Storage } from '../src/storage/storage.js';
import { tempSqliteStorage } from './helpers/fixtures.js';

const AT = '2026-02-01T10:00:00.000Z';

async function policies(storage: SqlStorage, n: number, prefix: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = await storage.createPolicy(normalizePolicy({ name: `${prefix}-${i}`, target_type: 'cdc-worker', min_replicas: 1, max_replicas: 5, scale_up_rules: [{ metric: 'up', operator: 'gt', threshold: 1, scale_by: 1 }] }, { source: 'api', now: new Date(AT) }));
    ids.push(p.id);
  }
  return ids;
}

const state = (policyId: string, version: number, replicas: number): PolicyState => ({
  policy_id: policyId, current_replicas: replicas, last_change_at: null, last_change_kind: null, consecutive_failures: 0, last_blocked: null, data: { replicas }, updated_at: AT, version,
});

const row = (policyId: string): HistoryRow => ({
  id: randomUUID(), policy_id: policyId, policy_name: 'p', action: 'scale_up', target_type: 'cdc-worker', target_id: null, previous_replicas: 1, new_replicas: 2,
  reason: 'lag', reason_code: 'rules_held', triggered_by: 'rule', dry_run: false, status: 'succeeded', error: null, executed_at: AT, details: { n: 1 },
});

/** The storage, with every call of the named methods counted (each is one transaction). */
function counted(storage: SqlStorage): { storage: Storage; calls: Record<string, number[]> } {
  const calls: Record<string, number[]> = {};
  const proxy = new Proxy(storage, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      const f = (v as (...a: unknown[]) => unknown).bind(target);
      if (prop !== 'putStates' && prop !== 'recordChanges') return f;
      return (...args: unknown[]) => {
        (calls[prop] ??= []).push((args[0] as unknown[]).length);
        return f(...args);
      };
    },
  });
  return { storage: proxy, calls };
}

t.test('writes asked for in one turn share one transaction; each answers its own compare-and-set', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-writes');
  const ids = await policies(sqlite, 30, 'grouped');
  t.same(await sqlite.putStates(ids.map((id) => state(id, 0, 1))), []);
  const { storage, calls } = counted(sqlite);
  const writes = new StateWrites(storage);
  // Claims of 30 policies, the tenth from a stale view (version 5 was never stored).
  const answers = await Promise.all(ids.map((id, i) => writes.claim(state(id, i === 9 ? 5 : 1, 2), undefined)));
  t.same(calls['putStates'], [30], 'one transaction for the 30 claims');
  t.same(answers.map((a, i) => (i === 9 ? !a : a)), ids.map(() => true), 'the stale one refused, the others written');
  t.equal((await sqlite.getState(ids[9] as string))?.version, 1, 'the refused state is untouched');
  // Changes with their rows, and states alone, in one turn.
  const recorded = await Promise.all([
    ...ids.slice(0, 10).map((id) => writes.record({ row: row(id), state: state(id, 2, 3) }, undefined)),
    ...ids.slice(10, 20).map((id) => writes.put(state(id, 2, 4), undefined)),
  ]);
  t.same(recorded, ids.slice(0, 20).map((_, i) => i !== 9), 'each answer is its own: the tenth still holds version 1');
  t.same(calls['recordChanges'], [10], 'the ten changes in one transaction');
  t.same(calls['putStates'], [30, 10], 'the ten states in one more');
  t.equal((await sqlite.listHistory({ limit: 100 })).rows.length, 10, 'every row appended, the refused state\'s too');
  t.equal((await sqlite.getState(ids[15] as string))?.current_replicas, 4);
});

t.test('a policy written twice in one turn: the second waits for the next transaction and sees the first', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-writes');
  const [id] = await policies(sqlite, 1, 'twice');
  await sqlite.putState(state(id as string, 0, 1));
  const { storage, calls } = counted(sqlite);
  const writes = new StateWrites(storage);
  const [first, second] = await Promise.all([writes.put(state(id as string, 1, 2), undefined), writes.put(state(id as string, 1, 3), undefined)]);
  t.equal(first, true);
  t.equal(second, false, 'the same version written second is refused');
  t.same(calls['putStates'], [1, 1], 'two transactions');
  t.equal((await sqlite.getState(id as string))?.current_replicas, 2);
});

t.test('writes of different fences never share a transaction', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-writes');
  const ids = await policies(sqlite, 4, 'fenced');
  await sqlite.putStates(ids.map((id) => state(id, 0, 1)));
  const { storage, calls } = counted(sqlite);
  const writes = new StateWrites(storage);
  await Promise.all(ids.map((id, i) => writes.put(state(id, 1, 2), i % 2 === 0 ? 7 : 8)));
  t.same(calls['putStates'], [2, 2], 'one transaction per fence');
});

t.test('a failed transaction fails every write of its group and only those', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-writes');
  const ids = await policies(sqlite, 3, 'failing');
  await sqlite.putStates(ids.map((id) => state(id, 0, 1)));
  const writes = new StateWrites(sqlite);
  const stored = row(ids[0] as string);
  await sqlite.appendHistory(stored);
  // The same row id again: the transaction of this group fails.
  const group = await Promise.allSettled([
    writes.record({ row: stored, state: state(ids[0] as string, 1, 2) }, undefined),
    writes.record({ row: row(ids[1] as string), state: state(ids[1] as string, 1, 2) }, undefined),
  ]);
  t.same(group.map((g) => g.status), ['rejected', 'rejected'], 'both writes of the group fail');
  t.equal((await sqlite.getState(ids[1] as string))?.version, 1, 'nothing of the group was kept');
  t.equal(await writes.record({ row: row(ids[2] as string), state: state(ids[2] as string, 1, 2) }, undefined), true, 'the next group is written');
});

t.test('more writes than one transaction carries go into several', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-writes');
  const n = MAX_GROUP + 5;
  const ids = await policies(sqlite, n, 'many');
  const { storage, calls } = counted(sqlite);
  const writes = new StateWrites(storage);
  const answers = await Promise.all(ids.map((id) => writes.put(state(id, 0, 1), undefined)));
  t.ok(answers.every(Boolean), 'every first state written');
  t.same(calls['putStates'], [MAX_GROUP, 5]);
});
