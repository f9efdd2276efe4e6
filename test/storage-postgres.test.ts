import t from 'tap';
import { createPostgresStorage } from '../src/storage/postgres-storage.js';
import { createFreshDatabase } from './helpers/pg.js';
import { storageContract } from './storage.contract.js';

// Each subtest gets its own database (CREATE DATABASE is cheap); a failed connection fails the run.
storageContract(t, 'postgres', async () => {
  const db = await createFreshDatabase('philotes_contract');
  const storage = createPostgresStorage(db.url);
  return {
    storage,
    cleanup: async () => {
      await storage.close();
      await db.drop();
    },
  };
});

t.test('postgres: adapter specifics', async (t) => {
  const db = await createFreshDatabase('philotes_contract');
  t.teardown(() => db.drop());
  const storage = createPostgresStorage(db.url);
  t.teardown(() => storage.close());
  t.equal(storage.kind, 'postgres');
  t.equal(storage.supportsSharedAccess, true, 'several daemons may share the database');
  await storage.migrate();
  await storage.ping();
});

t.test('postgres: history refuses TRUNCATE too (append-only)', async (t) => {
  const db = await createFreshDatabase('philotes_contract');
  t.teardown(() => db.drop());
  const storage = createPostgresStorage(db.url);
  t.teardown(() => storage.close());
  await storage.migrate();
  await t.rejects(storage.driver.exec('TRUNCATE scaling_history'), /append-only/);
});
