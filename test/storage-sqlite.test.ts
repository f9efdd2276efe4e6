import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import { storageContract } from './storage.contract.js';

const root = await mkdtemp(join(tmpdir(), 'philotes-sqlite-'));
t.teardown(() => rm(root, { recursive: true, force: true }));

let n = 0;
storageContract(t, 'sqlite', async () => {
  n += 1;
  // A folder that does not exist yet: the adapter creates it.
  const path = join(root, `run-${n}`, 'scaler.db');
  const storage = createSqliteStorage(path);
  return { storage, cleanup: () => storage.close() };
});

t.test('sqlite: adapter specifics', async (t) => {
  const path = join(root, 'specifics', 'scaler.db');
  const storage = createSqliteStorage(path);
  t.teardown(() => storage.close());
  t.equal(storage.kind, 'sqlite');
  t.equal(storage.supportsSharedAccess, false, 'one daemon per file: no leader election');
  await storage.migrate();
  const [mode] = await storage.driver.all<{ journal_mode: string }>('PRAGMA journal_mode');
  t.equal(mode?.journal_mode, 'wal');
  const [fk] = await storage.driver.all<{ foreign_keys: number }>('PRAGMA foreign_keys');
  t.equal(fk?.foreign_keys, 1, 'foreign keys enforced (the cascades depend on it)');
});

t.test('sqlite: a pause is kept across a restart (the same file opened again)', async (t) => {
  const path = join(root, 'restart', 'scaler.db');
  const first = createSqliteStorage(path);
  await first.migrate();
  const policy = normalizePolicy({ name: 'paused-across', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 5 }, { source: 'api', now: new Date('2026-01-28T12:00:00Z') });
  await first.createPolicy(policy);
  await first.setPaused(policy.id, { at: '2026-01-28T12:05:00.000Z', reason: 'load test in progress' });
  await first.close();

  const second = createSqliteStorage(path);
  t.teardown(() => second.close());
  await second.migrate();
  t.match(await second.getPolicy(policy.id), { paused_at: '2026-01-28T12:05:00.000Z', paused_reason: 'load test in progress', updated_at: policy.updated_at }, 'still paused');
  t.strictSame(await second.listEnabledPolicies(), [], 'and still left out of the loop');
});
