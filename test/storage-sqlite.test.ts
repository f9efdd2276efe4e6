import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
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
