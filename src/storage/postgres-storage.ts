import pg from 'pg';
import type { LeaderLock, SqlDriver, SqlExecutor } from './sql-driver.js';
import { SqlStorage } from './sql-storage.js';

/** Key of the advisory lock that serialises migrations between daemons. */
const MIGRATION_LOCK_KEY = 7_305_001;
/** Key of the advisory lock held by the daemon that runs the evaluation loop. */
const LEADER_LOCK_KEY = 7_305_002;

/**
 * Leadership as a session-level advisory lock on a dedicated connection (not a pool client):
 * PostgreSQL releases it the moment that connection ends, so a killed leader frees it at once.
 * A dropped connection means the lock is lost; the next tryAcquire reconnects and competes again.
 */
class PgLeaderLock implements LeaderLock {
  readonly description = `PostgreSQL advisory lock ${LEADER_LOCK_KEY}`;
  #client: pg.Client | undefined;
  #held = false;

  constructor(private readonly connectionString: string) {}

  #drop(): void {
    const c = this.#client;
    this.#client = undefined;
    this.#held = false;
    c?.end().catch(() => undefined);
  }

  async tryAcquire(): Promise<boolean> {
    if (this.#held && (await this.stillHeld())) return true;
    try {
      if (this.#client === undefined) {
        const client = new pg.Client({ connectionString: this.connectionString, connectionTimeoutMillis: 5_000, keepAlive: true });
        client.on('error', () => this.#drop());
        client.on('end', () => {
          if (this.#client === client) this.#drop();
        });
        await client.connect();
        this.#client = client;
      }
      const res = await this.#client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [LEADER_LOCK_KEY]);
      this.#held = res.rows[0]?.ok === true;
      return this.#held;
    } catch {
      this.#drop();
      return false;
    }
  }

  async stillHeld(): Promise<boolean> {
    if (!this.#held || this.#client === undefined) return false;
    try {
      // The lock lives as long as the session; a round trip proves the session does.
      await this.#client.query('SELECT 1');
      return true;
    } catch {
      this.#drop();
      return false;
    }
  }

  async release(): Promise<void> {
    const c = this.#client;
    if (c !== undefined && this.#held) await c.query('SELECT pg_advisory_unlock($1)', [LEADER_LOCK_KEY]).catch(() => undefined);
    this.#drop();
  }
}

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

  readonly #connectionString: string;

  constructor(connectionString: string, options: { max?: number } = {}) {
    this.#connectionString = connectionString;
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

  // A session-level lock on one pooled connection; fn's statements use other connections, which
  // is fine: the lock only has to keep other daemons' migrate() calls out.
  async withMigrationLock<T>(fn: () => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken = false;
    try {
      try {
        await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
      } catch (err) {
        broken = true;
        throw err;
      }
      try {
        return await fn();
      } finally {
        try {
          await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
        } catch {
          // The connection is gone, and a session lock dies with its session: keep fn's outcome
          // rather than hide it behind this error, and keep the dead connection out of the pool.
          broken = true;
        }
      }
    } finally {
      client.release(broken);
    }
  }

  uniqueViolation(err: unknown): string | undefined {
    const e = err as { code?: unknown; table?: unknown; detail?: unknown; constraint?: unknown };
    if (e.code !== '23505') return undefined;
    const table = typeof e.table === 'string' ? e.table : '';
    // detail: "Key (name)=(x) already exists."; without it, the default constraint name "<table>_<cols>_key".
    const fromDetail = /^Key \((.+?)\)=/.exec(typeof e.detail === 'string' ? e.detail : '')?.[1];
    const constraint = typeof e.constraint === 'string' ? e.constraint : '';
    const columns = fromDetail?.split(', ').join(',') ?? constraint.slice(table.length + 1).replace(/_key$/, '');
    return `${table}.${columns}`;
  }

  isUnavailable(err: unknown): boolean {
    const e = err as { code?: unknown; message?: unknown };
    if (typeof e.code === 'string' && UNAVAILABLE_CODES.has(e.code)) return true;
    const msg = typeof e.message === 'string' ? e.message : '';
    return /Connection terminated|connection timeout|Client has encountered a connection error|timeout exceeded when trying to connect/i.test(msg);
  }

  leaderLock(): LeaderLock {
    return new PgLeaderLock(this.#connectionString);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

export function createPostgresStorage(connectionString: string): SqlStorage {
  return new SqlStorage(new PostgresDriver(connectionString));
}
