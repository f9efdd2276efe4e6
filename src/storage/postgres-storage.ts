import pg from 'pg';
import type { SqlDriver, SqlExecutor } from './sql-driver.js';
import { SqlStorage } from './sql-storage.js';

/** Key of the advisory lock that serialises migrations between daemons. */
const MIGRATION_LOCK_KEY = 7_305_001;

// Shared SQL uses `?`; PostgreSQL wants $1, $2, ... (no `?` appears inside our string literals).
const placeholderCache = new Map<string, string>();
export function toPgPlaceholders(sql: string): string {
  let out = placeholderCache.get(sql);
  if (out === undefined) {
    let n = 0;
    out = sql.replace(/\?/g, () => `$${++n}`);
    placeholderCache.set(sql, out);
  }
  return out;
}

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '08000',
  '08001',
  '08003',
  '08006',
]);

class PgExecutor implements SqlExecutor {
  constructor(private readonly client: pg.Pool | pg.PoolClient) {}

  async all<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    const res = await this.client.query(toPgPlaceholders(sql), params as unknown[]);
    return res.rows as T[];
  }

  async run(sql: string, params: readonly unknown[] = []): Promise<number> {
    const res = await this.client.query(toPgPlaceholders(sql), params as unknown[]);
    return res.rowCount ?? 0;
  }

  async exec(sql: string): Promise<void> {
    await this.client.query(sql);
  }
}

/** node-postgres driver over a pool; several daemons may share the database. */
export class PostgresDriver implements SqlDriver {
  readonly kind = 'postgres';
  readonly migrationsFolder = 'postgres';
  readonly supportsSharedAccess = true;
  readonly pool: pg.Pool;
  readonly #exec: PgExecutor;

  constructor(connectionString: string, options: { max?: number } = {}) {
    this.pool = new pg.Pool({ connectionString, max: options.max ?? 10, connectionTimeoutMillis: 5_000 });
    // An idle client losing its connection (server restart) must not crash the daemon.
    this.pool.on('error', () => undefined);
    this.#exec = new PgExecutor(this.pool);
  }

  all<T>(sql: string, params?: readonly unknown[]): Promise<T[]> {
    return this.#exec.all<T>(sql, params);
  }

  run(sql: string, params?: readonly unknown[]): Promise<number> {
    return this.#exec.run(sql, params);
  }

  exec(sql: string): Promise<void> {
    return this.#exec.exec(sql);
  }

  async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      const result = await fn(new PgExecutor(client));
      await client.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true;
      }
      throw err;
    } finally {
      client.release(broken);
    }
  }

  async withMigrationLock<T>(fn: () => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
      try {
        return await fn();
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
      }
    } finally {
      client.release();
    }
  }

  isUniqueViolation(err: unknown): boolean {
    return (err as { code?: unknown }).code === '23505';
  }

  isUnavailable(err: unknown): boolean {
    const e = err as { code?: unknown; message?: unknown };
    if (typeof e.code === 'string' && UNAVAILABLE_CODES.has(e.code)) return true;
    const msg = typeof e.message === 'string' ? e.message : '';
    return /Connection terminated|connection timeout|Client has encountered a connection error|timeout exceeded when trying to connect/i.test(msg);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

export function createPostgresStorage(connectionString: string): SqlStorage {
  return new SqlStorage(new PostgresDriver(connectionString));
}
