import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MIGRATIONS_TABLE, migrate } from '../src/storage/migrator.js';
import { PostgresDriver } from '../src/storage/postgres-storage.js';
import type { SqlDriver } from '../src/storage/sql-driver.js';
import { SqliteDriver } from '../src/storage/sqlite-storage.js';
import { createFreshDatabase } from './helpers/pg.js';
import type { TapTest } from './storage.contract.js';

const root = await mkdtemp(join(tmpdir(), 'philotes-migrator-'));
t.teardown(() => rm(root, { recursive: true, force: true }));

let seq = 0;

/** An empty database of one backend, plus the URL or path to open a second connection to it. */
interface Backend {
  name: string;
  open(t: TapTest): Promise<{ driver: SqlDriver; reopen: () => SqlDriver }>;
}

const backends: Backend[] = [
  {
    name: 'sqlite',
    async open(t) {
      seq += 1;
      const path = join(root, `db-${seq}`, 'scaler.db');
      const reopen = (): SqlDriver => {
        const d = new SqliteDriver(path);
        t.teardown(() => d.close());
        return d;
      };
      return { driver: reopen(), reopen };
    },
  },
  {
    name: 'postgres',
    async open(t) {
      const db = await createFreshDatabase('philotes_migrator');
      const drivers: PostgresDriver[] = [];
      t.teardown(async () => {
        await Promise.all(drivers.map((d) => d.close()));
        await db.drop();
      });
      const reopen = (): SqlDriver => {
        const d = new PostgresDriver(db.url, { max: 4 });
        drivers.push(d);
        return d;
      };
      return { driver: reopen(), reopen };
    },
  },
];

/** A fresh migrations root for one test; files go to `<dir>/<driver.migrationsFolder>/`. */
async function folder(driver: SqlDriver): Promise<{ dir: string; write: (name: string, sql: string) => Promise<void>; remove: (name: string) => Promise<void> }> {
  seq += 1;
  const dir = join(root, `migrations-${seq}`);
  const sub = join(dir, driver.migrationsFolder);
  await mkdir(sub, { recursive: true });
  return {
    dir,
    write: (name, sql) => writeFile(join(sub, name), sql),
    remove: (name) => rm(join(sub, name)),
  };
}

async function recorded(driver: SqlDriver): Promise<string[]> {
  return (await driver.all<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY name`)).map((r) => r.name);
}

async function tableExists(driver: SqlDriver, table: string): Promise<boolean> {
  try {
    await driver.all(`SELECT COUNT(*) AS n FROM ${table}`);
    return true;
  } catch {
    return false;
  }
}

async function refusal(t: TapTest, p: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await p;
    t.fail(`expected a refusal matching ${pattern}`);
  } catch (err) {
    t.match((err as Error).message, pattern, `refused: ${pattern}`);
  }
}

for (const backend of backends) {
  t.test(`${backend.name}: pending files are applied in name order, once`, async (t) => {
    const { driver } = await backend.open(t);
    const m = await folder(driver);
    await m.write('001_create.sql', 'CREATE TABLE mt_a (x INTEGER NOT NULL);');
    await m.write('README.txt', 'not a migration');
    t.strictSame(await migrate(driver, m.dir), [{ name: '001_create.sql', status: 'applied' }]);
    // Written out of order on disk; 003 needs 002's column, 002 needs 001's table.
    await m.write('003_seed.sql', 'INSERT INTO mt_a (x, y) VALUES (1, 2);');
    await m.write('002_add_column.sql', 'ALTER TABLE mt_a ADD COLUMN y INTEGER;');
    t.strictSame(await migrate(driver, m.dir), [
      { name: '001_create.sql', status: 'already-applied' },
      { name: '002_add_column.sql', status: 'applied' },
      { name: '003_seed.sql', status: 'applied' },
    ]);
    t.strictSame(await recorded(driver), ['001_create.sql', '002_add_column.sql', '003_seed.sql']);
    t.strictSame(await migrate(driver, m.dir), [
      { name: '001_create.sql', status: 'already-applied' },
      { name: '002_add_column.sql', status: 'already-applied' },
      { name: '003_seed.sql', status: 'already-applied' },
    ]);
    const rows = await driver.all<{ x: number; y: number }>('SELECT x, y FROM mt_a');
    t.strictSame(rows, [{ x: 1, y: 2 }], 'the seed ran exactly once');
  });

  t.test(`${backend.name}: a migration edited after it was applied is refused`, async (t) => {
    const { driver } = await backend.open(t);
    const m = await folder(driver);
    await m.write('001_create.sql', 'CREATE TABLE mt_a (x INTEGER);');
    await migrate(driver, m.dir);
    await m.write('001_create.sql', 'CREATE TABLE mt_a (x INTEGER); -- tweaked');
    await m.write('002_more.sql', 'CREATE TABLE mt_b (x INTEGER);');
    await refusal(t, migrate(driver, m.dir), /001_create\.sql was edited after it was applied/);
    t.equal(await tableExists(driver, 'mt_b'), false, 'nothing pending ran');
    t.strictSame(await recorded(driver), ['001_create.sql']);
  });

  t.test(`${backend.name}: an applied migration missing from disk is refused`, async (t) => {
    const { driver } = await backend.open(t);
    const m = await folder(driver);
    await m.write('001_create.sql', 'CREATE TABLE mt_a (x INTEGER);');
    await m.write('002_more.sql', 'CREATE TABLE mt_b (x INTEGER);');
    await migrate(driver, m.dir);
    await m.remove('002_more.sql');
    await m.write('003_later.sql', 'CREATE TABLE mt_c (x INTEGER);');
    await refusal(t, migrate(driver, m.dir), /002_more\.sql is applied in the database but missing/);
    t.equal(await tableExists(driver, 'mt_c'), false, 'nothing pending ran');
  });

  t.test(`${backend.name}: a new file that sorts before the last applied one is refused`, async (t) => {
    const { driver } = await backend.open(t);
    const m = await folder(driver);
    await m.write('001_create.sql', 'CREATE TABLE mt_a (x INTEGER);');
    await m.write('003_later.sql', 'CREATE TABLE mt_c (x INTEGER);');
    await migrate(driver, m.dir);
    await m.write('002_sneaky.sql', 'CREATE TABLE mt_b (x INTEGER);');
    await m.write('004_next.sql', 'CREATE TABLE mt_d (x INTEGER);');
    await refusal(t, migrate(driver, m.dir), /002_sneaky\.sql is pending but sorts before applied migration 003_later\.sql/);
    t.equal(await tableExists(driver, 'mt_b'), false, 'the out-of-order file did not run');
    t.equal(await tableExists(driver, 'mt_d'), false, 'nor the one after it');
    t.strictSame(await recorded(driver), ['001_create.sql', '003_later.sql']);
  });

  t.test(`${backend.name}: a failing migration rolls back and is not recorded`, async (t) => {
    const { driver } = await backend.open(t);
    const m = await folder(driver);
    await m.write('001_create.sql', 'CREATE TABLE mt_a (x INTEGER);');
    await m.write('002_broken.sql', 'CREATE TABLE mt_b (x INTEGER);\nINSERT INTO mt_b (x) VALUES (1);\nINSERT INTO no_such_table (x) VALUES (1);');
    await refusal(t, migrate(driver, m.dir), /no_such_table|does not exist/);
    t.equal(await tableExists(driver, 'mt_a'), true, 'the migration before it stays applied');
    t.equal(await tableExists(driver, 'mt_b'), false, 'the failing migration left no table');
    t.strictSame(await recorded(driver), ['001_create.sql'], 'and no record');
    await m.write('002_broken.sql', 'CREATE TABLE mt_b (x INTEGER);\nINSERT INTO mt_b (x) VALUES (1);');
    t.strictSame(await migrate(driver, m.dir), [
      { name: '001_create.sql', status: 'already-applied' },
      { name: '002_broken.sql', status: 'applied' },
    ], 'once fixed, it applies');
    t.strictSame(await driver.all('SELECT x FROM mt_b'), [{ x: 1 }]);
  });

  t.test(`${backend.name}: badly named files are refused before anything runs`, async (t) => {
    const { driver } = await backend.open(t);
    const m = await folder(driver);
    await m.write('001_create.sql', 'CREATE TABLE mt_a (x INTEGER);');
    await m.write('2_Bad-Name.sql', 'CREATE TABLE mt_b (x INTEGER);');
    await refusal(t, migrate(driver, m.dir), /2_Bad-Name\.sql: name must look like 001_description\.sql/);
    t.equal(await tableExists(driver, 'mt_a'), false);
  });

  t.test(`${backend.name}: concurrent migrate() calls apply each migration once`, async (t) => {
    const { driver } = await backend.open(t);
    const m = await folder(driver);
    await m.write('001_create.sql', 'CREATE TABLE mt_a (x INTEGER);');
    await m.write('002_seed.sql', 'INSERT INTO mt_a (x) VALUES (1);');
    const runs = await Promise.all([migrate(driver, m.dir), migrate(driver, m.dir), migrate(driver, m.dir)]);
    for (const name of ['001_create.sql', '002_seed.sql']) {
      const applied = runs.flat().filter((s) => s.name === name && s.status === 'applied').length;
      t.equal(applied, 1, `${name} applied by exactly one call`);
    }
    t.strictSame(await driver.all('SELECT x FROM mt_a'), [{ x: 1 }], 'the seed ran once');
  });
}

t.test('postgres: migrations run under the advisory lock, released afterwards', async (t) => {
  const backend = backends.find((b) => b.name === 'postgres');
  if (backend === undefined) throw new Error('postgres backend missing');
  const { driver, reopen } = await backend.open(t);
  const m = await folder(driver);
  // The migration itself checks that some session holds the migration lock while it runs.
  await m.write(
    '001_check_lock.sql',
    `DO $$ BEGIN
       IF NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 7305001 AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND granted) THEN
         RAISE EXCEPTION 'migration ran without the advisory lock';
       END IF;
     END $$;
     CREATE TABLE mt_a (x INTEGER);`,
  );
  await m.write('002_seed.sql', 'INSERT INTO mt_a (x) VALUES (1);');
  // Two daemons (two pools) migrating one database at once.
  const other = reopen();
  const runs = await Promise.all([migrate(driver, m.dir), migrate(other, m.dir)]);
  for (const name of ['001_check_lock.sql', '002_seed.sql']) {
    t.equal(runs.flat().filter((s) => s.name === name && s.status === 'applied').length, 1, `${name} applied once across daemons`);
  }
  t.strictSame(await driver.all('SELECT x FROM mt_a'), [{ x: 1 }]);
  const held = await driver.all("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 7305001 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())");
  t.equal(held.length, 0, 'the lock is released');
});
