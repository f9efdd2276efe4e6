import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { Mutex } from '../util/async.js';
import type { LeaderLock, SqlDriver, SqlExecutor } from './sql-driver.js';
import { SqlStorage } from './sql-storage.js';

type Db = Database.Database;

// better-sqlite3 binds neither booleans nor undefined.
function bind(params: readonly unknown[]): unknown[] {
  return params.map((p) => (p === true ? 1 : p === false ? 0 : p === undefined ? null : p));
}

class SqliteExecutor implements SqlExecutor {
  readonly #db: Db;
  readonly #cache = new Map<string, Database.Statement>();

  constructor(db: Db) {
    this.#db = db;
  }

  #stmt(sql: string): Database.Statement {
    let s = this.#cache.get(sql);
    if (s === undefined) {
      s = this.#db.prepare(sql);
      if (this.#cache.size > 500) this.#cache.clear();
      this.#cache.set(sql, s);
    }
    return s;
  }

  allSync<T>(sql: string, params: readonly unknown[] = []): T[] {
    return this.#stmt(sql).all(...bind(params)) as T[];
  }

  runSync(sql: string, params: readonly unknown[] = []): number {
    return this.#stmt(sql).run(...bind(params)).changes;
  }

  async all<T>(sql: string, params?: readonly unknown[]): Promise<T[]> {
    return this.allSync<T>(sql, params);
  }

  async run(sql: string, params?: readonly unknown[]): Promise<number> {
    return this.runSync(sql, params);
  }

  async exec(sql: string): Promise<void> {
    this.#db.exec(sql);
  }
}

/**
 * better-sqlite3 driver. The connection is one, and a transaction spans awaits, so every
 * statement and transaction goes through one FIFO lock: nothing from another request can slip
 * into an open transaction.
 */
export class SqliteDriver implements SqlDriver {
  readonly kind = 'sqlite';
  readonly migrationsFolder = 'sqlite';
  readonly supportsSharedAccess = false;
  readonly #db: Db;
  readonly #exec: SqliteExecutor;
  readonly #lock = new Mutex();
  readonly #migrationLock = new Mutex();

  readonly #path: string;

  constructor(path: string) {
    this.#path = path;
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('foreign_keys = ON');
    this.#db.pragma('busy_timeout = 5000');
    this.#exec = new SqliteExecutor(this.#db);
  }

  all<T>(sql: string, params?: readonly unknown[]): Promise<T[]> {
    return this.#lock.run(() => this.#exec.allSync<T>(sql, params));
  }

  run(sql: string, params?: readonly unknown[]): Promise<number> {
    return this.#lock.run(() => this.#exec.runSync(sql, params));
  }

  exec(sql: string): Promise<void> {
    return this.#lock.run(() => this.#exec.exec(sql));
  }

  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.#lock.run(async () => {
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        const result = await fn(this.#exec);
        this.#db.exec('COMMIT');
        return result;
      } catch (err) {
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
        throw err;
      }
    });
  }

  // Not the statement lock: fn runs statements through it and would wait on itself. This one
  // serialises migrate() calls within the process (a second call would otherwise read the same
  // pending list and re-run it); between processes the migrator re-checks each migration inside
  // its BEGIN IMMEDIATE transaction, which SQLite grants to one writer at a time.
  withMigrationLock<T>(fn: () => Promise<T>): Promise<T> {
    return this.#migrationLock.run(fn);
  }

  uniqueViolation(err: unknown): string | undefined {
    const { code, message } = err as { code?: unknown; message?: unknown };
    if (code !== 'SQLITE_CONSTRAINT_UNIQUE' && code !== 'SQLITE_CONSTRAINT_PRIMARYKEY') return undefined;
    // "UNIQUE constraint failed: scaling_policies.name" (several columns: "t.a, t.b")
    const m = /constraint failed: (.+)$/.exec(typeof message === 'string' ? message : '');
    const parts = (m?.[1] ?? '').split(', ').map((c) => c.split('.'));
    const table = parts[0]?.[0] ?? '';
    return `${table}.${parts.map((c) => c[1] ?? '').join(',')}`;
  }

  fault(): string | undefined {
    return undefined;
  }

  isUnavailable(err: unknown): boolean {
    const code = (err as { code?: unknown }).code;
    return code === 'SQLITE_BUSY' || code === 'SQLITE_CANTOPEN' || code === 'SQLITE_IOERR';
  }

  leaderLock(): LeaderLock {
    return new SqliteLeaderLock(`${this.#path}.leader`);
  }

  /** The lock file is held by this process itself: it cannot be lost while the process lives. */
  readonly fenceCondition = undefined;

  async close(): Promise<void> {
    await this.#lock.run(() => this.#db.close());
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/**
 * SQLite is single-instance: a lock file beside the database names the process that leads. A
 * second daemon on the same file finds a live owner and refuses to lead (it still serves the
 * API); a lock file left by a dead process is taken over.
 */
class SqliteLeaderLock implements LeaderLock {
  readonly description: string;
  #held = false;

  constructor(private readonly path: string) {
    this.description = `lock file ${path}`;
  }

  #owner(): number | undefined {
    try {
      const pid = Number(readFileSync(this.path, 'utf8').trim());
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  async tryAcquire(): Promise<boolean> {
    if (this.#held) return this.stillHeld();
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(this.path, `${process.pid}\n`, { flag: 'wx' });
        this.#held = true;
        return true;
      } catch (err) {
        if ((err as { code?: string }).code !== 'EEXIST') return false;
        const owner = this.#owner();
        if (owner === process.pid) {
          this.#held = true;
          return true;
        }
        if (owner !== undefined && processAlive(owner)) return false;
        try {
          unlinkSync(this.path); // stale: its process is gone
        } catch {
          return false;
        }
      }
    }
    return false;
  }

  async stillHeld(): Promise<boolean> {
    this.#held = this.#held && this.#owner() === process.pid;
    return this.#held;
  }

  fence(): undefined {
    return undefined;
  }

  onLost(): void {
    // Nothing drops this lock behind the process's back; stillHeld() notices a removed lock file.
  }

  async release(): Promise<void> {
    if (this.#held && this.#owner() === process.pid) {
      try {
        unlinkSync(this.path);
      } catch {
        // already gone
      }
    }
    this.#held = false;
  }
}

/** Opens (creating the folder and file when needed) a SQLite store. Call migrate() before use. */
export function createSqliteStorage(path: string): SqlStorage {
  return new SqlStorage(new SqliteDriver(path));
}
