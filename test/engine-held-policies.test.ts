/**
 * The enabled policies the loop holds (src/engine/held-policies.ts), on a real SQLite file: only
 * versions that changed are read again, a slot (and what the loop knows in it) stays with its
 * policy across versions, deleted, disabled and paused policies are dropped with their locks, and
 * a change made while the policies are being listed is not missed.
 */
import t from 'tap';
import { Slot } from '../src/engine/cycle-plan.js';
import { HeldPolicies } from '../src/engine/held-policies.js';
import { KnownState } from '../src/engine/known-state.js';
import type { SqlStorage } from '../src/storage/sql-storage.js';
import type { Storage } from '../src/storage/storage.js';
import { tempSqliteStorage } from './helpers/fixtures.js';
import { policyOf, rule } from './helpers/engine-parts.js';

interface Calls {
  revision: number;
  listings: number;
  reads: string[][];
}

/** The storage with its reads of policies counted, and hooks run after a call answers. */
function watched(storage: SqlStorage, hooks: { afterRevision?: () => Promise<void>; afterListing?: () => Promise<void>; beforeRead?: () => Promise<void> } = {}): { storage: Storage; calls: Calls } {
  const calls: Calls = { revision: 0, listings: 0, reads: [] };
  const proxy = new Proxy(storage, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      const f = (v as (...a: unknown[]) => Promise<unknown>).bind(target);
      if (prop === 'policiesRevision') {
        return async () => {
          calls.revision++;
          const r = await f();
          await hooks.afterRevision?.();
          return r;
        };
      }
      if (prop === 'listEnabledPolicyVersions') {
        return async () => {
          calls.listings++;
          const r = await f();
          await hooks.afterListing?.();
          return r;
        };
      }
      if (prop === 'getPolicies') {
        return async (ids: string[]) => {
          calls.reads.push([...ids].sort());
          await hooks.beforeRead?.();
          return f(ids);
        };
      }
      return f;
    },
  });
  return { storage: proxy, calls };
}

async function create(storage: SqlStorage, names: string[]): Promise<Record<string, string>> {
  const ids: Record<string, string> = {};
  for (const name of names) ids[name] = (await storage.createPolicy(policyOf({ name, scale_up_rules: [rule('lag', 'gt', 60, 1)] }))).id;
  return ids;
}

const names = (held: readonly Slot[]) => held.map((s) => s.policy.name).sort();
const later = (iso: string, s: number) => new Date(Date.parse(iso) + s * 1000).toISOString();

t.test('only changed versions are read again; slots and their known states stay with their policies', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-held');
  const ids = await create(sqlite, ['a', 'b', 'c']);
  const { storage, calls } = watched(sqlite);
  const held = new HeldPolicies(storage);

  const first = await held.load();
  t.ok(first.changed, 'the first load is a change');
  t.same(names(first.held), ['a', 'b', 'c']);
  t.same(calls.reads, [Object.values(ids).sort()], 'every policy read once, in one call');
  for (const s of first.held) {
    t.ok(s instanceof Slot);
    t.equal(s.lock, held.lock(s.policy.id), `${s.policy.name}: the slot holds the policy's lock`);
    t.equal(held.slots.get(s.policy.id), s);
  }

  const again = await held.load();
  t.notOk(again.changed, 'nothing moved: no change');
  t.equal(again.held, first.held, 'the same list');
  t.equal(calls.listings, 1, 'not listed again');
  t.equal(calls.reads.length, 1, 'nothing read again');
  t.equal(calls.revision, 2, 'only the revision was read');

  // What the loop knows of b stays in its slot across a new version of b.
  const b = held.slots.get(ids['b'] as string) as Slot;
  const a = held.slots.get(ids['a'] as string) as Slot;
  const aPolicy = a.policy;
  const known = new KnownState({ policy_id: b.policy.id, current_replicas: 2, last_change_at: null, last_change_kind: null, consecutive_failures: 0, last_blocked: null, data: {}, updated_at: b.policy.updated_at, version: 1 }, 'fp', 0, false);
  b.known = known;
  const stored = await sqlite.getPolicy(ids['b'] as string);
  if (stored === undefined) throw new Error('b is not stored');
  await sqlite.replacePolicy({ ...stored, max_replicas: 7, updated_at: later(stored.updated_at, 60) });
  const edited = await held.load();
  t.ok(edited.changed);
  t.same(calls.reads[1], [ids['b']], 'only b read again');
  t.equal(held.slots.get(ids['b'] as string), b, 'b keeps its slot');
  t.equal(b.policy.max_replicas, 7, 'holding the new version');
  t.equal(b.known, known, 'and what the loop knew of its state');
  t.equal(a.policy, aPolicy, 'a keeps the very policy object it had');
  t.same(names(edited.held), ['a', 'b', 'c']);
  t.equal(calls.listings, 2);
});

t.test('deleted, disabled and paused policies are dropped, with their locks; coming back they get a new slot', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-held');
  const ids = await create(sqlite, ['a', 'b', 'c', 'd']);
  const held = new HeldPolicies(sqlite);
  await held.load();
  const locks = Object.fromEntries(Object.entries(ids).map(([n, id]) => [n, held.lock(id)]));
  const slotOf = (n: string) => held.slots.get(ids[n] as string);
  const before = { c: slotOf('c'), d: slotOf('d') };

  t.ok(await sqlite.deletePolicy(ids['b'] as string));
  await sqlite.setEnabled(ids['c'] as string, false, '2026-02-01T00:00:00.000Z');
  await sqlite.setPaused(ids['d'] as string, { at: '2026-02-01T00:00:00.000Z', reason: 'maintenance' });
  const { held: now, changed } = await held.load();
  t.ok(changed);
  t.same(names(now), ['a'], 'only a is held');
  t.same([...held.slots.keys()], [ids['a']], 'the others\' slots are gone');
  t.equal(held.lock(ids['a'] as string), locks['a'], 'a keeps its lock');
  for (const n of ['b', 'c', 'd']) t.not(held.lock(ids[n] as string), locks[n], `${n}: its lock was dropped (a new one now)`);

  await sqlite.setEnabled(ids['c'] as string, true, '2026-02-02T00:00:00.000Z');
  await sqlite.setPaused(ids['d'] as string, null);
  const back = await held.load();
  t.same(names(back.held), ['a', 'c', 'd'], 'enabled again and no longer paused: held again');
  t.not(slotOf('c'), before.c, 'c in a new slot');
  t.not(slotOf('d'), before.d, 'd in a new slot, though its version did not move');
  t.equal(slotOf('d')?.known, undefined, 'knowing nothing of its state: the loop reads it again');
});

t.test('clear() forgets every slot: the next load reads every policy again', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-held');
  const ids = await create(sqlite, ['a', 'b']);
  const { storage, calls } = watched(sqlite);
  const held = new HeldPolicies(storage);
  const first = await held.load();
  held.clear();
  t.equal(held.slots.size, 0);
  const second = await held.load();
  t.ok(second.changed, 'a change, though the revision did not move');
  t.same(calls.reads, [Object.values(ids).sort(), Object.values(ids).sort()], 'both read again');
  t.ok(second.held.every((s) => !first.held.includes(s)), 'in new slots');
});

t.test('a change made while the policies are listed is picked up by the next load', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-held');
  await create(sqlite, ['a']);
  let once = true;
  const { storage } = watched(sqlite, {
    // Another daemon creates a policy just after the listing answered.
    afterListing: async () => {
      if (!once) return;
      once = false;
      await sqlite.createPolicy(policyOf({ name: 'late' }));
    },
  });
  const held = new HeldPolicies(storage);
  const first = await held.load();
  t.same(names(first.held), ['a'], 'the listing did not see it');
  const second = await held.load();
  t.ok(second.changed, 'the revision read before the listing has moved since');
  t.same(names(second.held), ['a', 'late']);
});

t.test('a policy disabled or paused between its listing and its read is not held', async (t) => {
  const sqlite = await tempSqliteStorage(t, 'ps-held');
  const ids = await create(sqlite, ['a', 'b', 'c']);
  let once = true;
  const { storage } = watched(sqlite, {
    beforeRead: async () => {
      if (!once) return;
      once = false;
      await sqlite.setEnabled(ids['b'] as string, false, '2026-02-01T00:00:00.000Z');
      await sqlite.setPaused(ids['c'] as string, { at: '2026-02-01T00:00:00.000Z', reason: null });
    },
  });
  const held = new HeldPolicies(storage);
  const { held: first } = await held.load();
  t.same(names(first), ['a'], 'b was read disabled and c paused: neither held');
  const { held: second, changed } = await held.load();
  t.ok(changed);
  t.same(names(second), ['a']);
  t.same([...held.slots.keys()], [ids['a']], 'and their slots are gone once they are no longer listed');
});
