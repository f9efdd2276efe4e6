import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../util/package-root.js';
import type { SqlDriver } from './sql-driver.js';
import type { MigrationStatus } from './storage.js';

export const MIGRATIONS_TABLE = 'scaling_migrations';
const NAME_RE = /^\d{3,}_[a-z0-9_]+\.sql$/;

interface MigrationFile {
  name: string;
  sql: string;
  checksum: string;
}

/** Reads a backend's migration files, sorted by name. */
export function readMigrations(folder: string, dir = join(packageRoot(), 'migrations')): MigrationFile[] {
  const path = join(dir, folder);
  return readdirSync(path)
    .filter((f) => f.endsWith('.sql'))
    .sort()
    .map((name) => {
      if (!NAME_RE.test(name)) throw new Error(`migration ${folder}/${name}: name must look like 001_description.sql`);
      const sql = readFileSync(join(path, name), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

/**
 * Applies pending migrations in name order, each in its own transaction, under the driver's
 * migration lock. Refuses to run when the database holds a migration that is missing from disk,
 * one that was edited after it was applied, or a pending file that sorts before an applied one.
 */
export async function migrate(driver: SqlDriver, dir?: string): Promise<MigrationStatus[]> {
  const files = readMigrations(driver.migrationsFolder, dir);
  return driver.withMigrationLock(async () => {
    await driver.exec(
      `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (name TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)`,
    );
    const applied = await driver.all<{ name: string; checksum: string }>(
      `SELECT name, checksum FROM ${MIGRATIONS_TABLE} ORDER BY name`,
    );
    const byName = new Map(files.map((f) => [f.name, f]));
    for (const row of applied) {
      const file = byName.get(row.name);
      if (file === undefined) {
        throw new Error(`migration ${row.name} is applied in the database but missing from migrations/${driver.migrationsFolder}/`);
      }
      if (file.checksum !== row.checksum) {
        throw new Error(`migration ${row.name} was edited after it was applied; add a new migration instead`);
      }
    }
    const appliedNames = new Set(applied.map((r) => r.name));
    const lastApplied = applied.at(-1)?.name;
    const statuses: MigrationStatus[] = [];
    for (const file of files) {
      if (appliedNames.has(file.name)) {
        statuses.push({ name: file.name, status: 'already-applied' });
        continue;
      }
      if (lastApplied !== undefined && file.name < lastApplied) {
        throw new Error(`migration ${file.name} is pending but sorts before applied migration ${lastApplied}; rename it to run last`);
      }
      const ran = await driver.transaction(async (tx) => {
        // Where the lock is per process (SQLite), another process may have applied this file
        // since the list above was read; inside the transaction we see its commit.
        const done = await tx.all(`SELECT name FROM ${MIGRATIONS_TABLE} WHERE name = ?`, [file.name]);
        if (done.length > 0) return false;
        await tx.exec(file.sql);
        await tx.run(`INSERT INTO ${MIGRATIONS_TABLE} (name, checksum, applied_at) VALUES (?, ?, ?)`, [
          file.name,
          file.checksum,
          new Date().toISOString(),
        ]);
        return true;
      });
      statuses.push({ name: file.name, status: ran ? 'applied' : 'already-applied' });
    }
    return statuses;
  });
}
