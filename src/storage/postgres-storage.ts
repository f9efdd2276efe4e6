import pg from 'pg';
import type { LeaderLock, SqlDriver, SqlExecutor } from './sql-driver.js';
import { SqlStorage } from './sql-storage.js';

/** Key of the advisory lock that serialises migrations between daemons. */
const MIGRATION_LOCK_KEY = 7_305_001;
/** Key of the advisory lock held by the daemon that runs the evaluation loop. */
const LEADER_LOCK_KEY = 7_305_002;

/** Bound on every call of the leader lock's connection: connect, lock query, liveness check. */
const LEADER_LOCK_TIMEOUT_MS = 5_000;

/**
 * Leadership as a session-level advisory lock on a dedicated connection (not a pool client):
 * PostgreSQL releases it the moment that connection ends, so a killed leader frees it at once.
 * A dropped connection means the lock is lost; the next tryAcquire reconnects and competes again.
 *
 * Every query on that connection has a timeout: a session that stops answering (a frozen server,
 * a network partition) counts as a lost lock, so the leader steps down instead of hanging in its
 * check (and so hanging its shutdown) while it may no longer hold anything. The session also asks
 * the server for short TCP keepalives, so that a daemon that vanished without closing its socket
 * frees the lock for another in about half a minute rather than the kernel's two hours.
 */
class PgLeaderLock implements LeaderLock {
  readonly description = `PostgreSQL advisory lock ${LEADER_LOCK_KEY}`;
  #client: pg.Client | undefined;
  #held = false;
  /** The lock session's backend process id while it holds the lock: the fence of state writes. */
  #pid: number | undefined;
  readonly #lost: Array<() => void> = [];

  constructor(private readonly connectionString: string) {}

  /** Forgets a session (and with it the lock) if it is the current one. */
  #forget(client: pg.Client): void {
    if (this.#client !== client) return;
    const wasHeld = this.#held;
    this.#client = undefined;
    this.#held = false;
    this.#pid = undefined;
    if (wasHeld) for (const fn of this.#lost) fn();
  }

  fence(): number | undefined {
    return this.#held ? this.#pid : undefined;
  }

  onLost(fn: () => void): void {
    this.#lost.push(fn);
  }

  /** Forgets a session and closes its connection, without waiting for a server that may not answer. */
  #drop(client: pg.Client): void {
    this.#forget(client);
    client.end().catch(() => undefined);
  }

  async #connect(): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: this.connectionString,
      connectionTimeoutMillis: LEADER_LOCK_TIMEOUT_MS,
      query_timeout: LEADER_LOCK_TIMEOUT_MS,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      application_name: 'philotes-scaler leader lock',
    });
    // Only ever about this client: a late event of an old session must not drop its successor.
    client.on('error', () => this.#drop(client));
    client.on('end', () => this.#forget(client));
    try {
      await client.connect();
    } catch (err) {
      client.end().catch(() => undefined);
      throw err;
    }
    // Best effort (ignored on Unix sockets and by servers without these settings).
    await client.query('SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3').catch(() => undefined);
    return client;
  }

  async tryAcquire(): Promise<boolean> {
    if (this.#held && (await this.stillHeld())) return true;
    let client = this.#client;
    try {
      if (client === undefined) {
        client = await this.#connect();
        this.#client = client;
      }
      // Never twice on one session while held: the lock is re-entrant and one unlock would not free it.
      const res = await client.query<{ ok: boolean; pid: number }>('SELECT pg_try_advisory_lock($1) AS ok, pg_backend_pid() AS pid', [LEADER_LOCK_KEY]);
      // The session may have died while the query ran; a lock on a dead session is no lock.
      if (this.#client !== client) return false;
      this.#held = res.rows[0]?.ok === true;
      this.#pid = this.#held ? res.rows[0]?.pid : undefined;
      return this.#held;
    } catch {
      // Also a timeout: whether the server took the lock is unknown, so the session goes (and the lock with it).
      if (client !== undefined) this.#drop(client);
      return false;
    }
  }

  async stillHeld(): Promise<boolean> {
    const client = this.#client;
    if (!this.#held || client === undefined) return false;
    try {
      // The lock lives as long as the session; a round trip (within the timeout) proves the session does.
      await client.query('SELECT 1');
      return this.#held && this.#client === client;
    } catch {
      this.#drop(client);
      return false;
    }
  }

  async release(): Promise<void> {
    const client = this.#client;
    if (client === undefined) return;
    if (this.#held) await client.query('SELECT pg_advisory_unlock($1)', [LEADER_LOCK_KEY]).catch(() => undefined);
    // Released on purpose: not a loss to report.
    this.#held = false;
    this.#forget(client);
    // Closing the session frees the lock even when the unlock failed; wait a little for it, never long.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([client.end().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, 1_000)))]);
    clearTimeout(timer);
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

/**
 * The query config of a statement: writes of a fixed shape (the loop's state and history writes,
 * thousands a cycle) are named, so each connection parses and plans them once, and so are reads
 * that name their columns and take no list of values (the history listings' keys, asked for every
 * page: planned once, not per request). Not `SELECT *`: prepared, it fails once a newer daemon's
 * migration adds a column; nor `IN (…)` lists, whose every length would be a statement of its own.
 */
const queryConfigs = new Map<string, pg.QueryConfig>();
let namedWrites = 0;
let namedReads = 0;
/** The most statements named per kind: each is prepared on every pooled connection that runs it. */
const MAX_NAMED_WRITES = 200;
const MAX_NAMED_READS = 64;

function queryConfig(sql: string, params: readonly unknown[]): pg.QueryConfig {
  let c = queryConfigs.get(sql);
  if (c === undefined) {
    const text = toPgPlaceholders(sql);
    let named = false;
    if (/^\s*SELECT/i.test(sql)) {
      named = !sql.includes('*') && !/\bIN \(/i.test(sql) && namedReads < MAX_NAMED_READS;
      if (named) namedReads++;
    } else {
      named = params.length <= 64 && namedWrites < MAX_NAMED_WRITES;
      if (named) namedWrites++;
    }
    c = named ? { name: `philotes_${queryConfigs.size}`, text } : { text };
    queryConfigs.set(sql, c);
  }
  return { ...c, values: params as unknown[] };
}

/** Error codes meaning "the database cannot be reached right now": socket errors and SQLSTATEs. */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN', // DNS not answering
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  '53300', // too_many_connections
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down, in recovery)
  '57P05', // idle_session_timeout
  '08000', // connection_exception
  '08001', // sqlclient_unable_to_establish_sqlconnection
  '08003', // connection_does_not_exist
  '08004', // sqlserver_rejected_establishment_of_sqlconnection
  '08006', // connection_failure
  '08007', // transaction_resolution_unknown
]);

/** node-postgres and pg-pool errors that carry no code, by message. */
const UNAVAILABLE_MESSAGES =
  /Connection terminated|connection timeout|Client has encountered a connection error|timeout exceeded when trying to connect|Client was closed and is not queryable|Query read timeout/i;

/**
 * Whether an error means the database is unreachable. Looks into AggregateError.errors (Node
 * tries each address of a host name and reports every failure) and into `cause`, a few levels deep.
 */
function pgUnavailable(err: unknown, depth = 0): boolean {
  if (err === null || typeof err !== 'object' || depth > 4) return false;
  const e = err as { code?: unknown; message?: unknown; errors?: unknown; cause?: unknown };
  if (typeof e.code === 'string' && UNAVAILABLE_CODES.has(e.code)) return true;
  if (typeof e.message === 'string' && UNAVAILABLE_MESSAGES.test(e.message)) return true;
  if (Array.isArray(e.errors) && e.errors.some((x) => pgUnavailable(x, depth + 1))) return true;
  return e.cause !== undefined && pgUnavailable(e.cause, depth + 1);
}

class PgExecutor implements SqlExecutor {
  constructor(private readonly client: pg.Pool | pg.PoolClient) {}

  async all<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    const res = await this.client.query(queryConfig(sql, params));
    return res.rows as T[];
  }

  async run(sql: string, params: readonly unknown[] = []): Promise<number> {
    const res = await this.client.query(queryConfig(sql, params));
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
  readonly inProcess = false;
  /**
   * The leader lock, seen from any connection: a session-level advisory lock on one bigint key is
   * listed in pg_locks with the key's high and low 32 bits as classid and objid, and objsubid 1.
   * Checked in the statement that writes a state, so a write of a daemon whose lock session is
   * gone (terminated, dropped, or replaced after a takeover) changes nothing.
   */
  readonly historyLocator = 'id';
  readonly asBytes = undefined;
  readonly isoTime = (column: string): string => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
  readonly jsonRows = (columns: string): string => `json_to_recordset(?::json) AS v(${columns})`;
  readonly fenceCondition = `EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND classid = ${Math.floor(LEADER_LOCK_KEY / 2 ** 32)} AND objid = ${LEADER_LOCK_KEY % 2 ** 32} AND objsubid = 1 AND pid = ?)`;
  readonly pool: pg.Pool;
  readonly #exec: PgExecutor;

  readonly #connectionString: string;

  constructor(connectionString: string, options: { max?: number } = {}) {
    this.#connectionString = connectionString;
    // Bounded waits: a frozen or unreachable server answers 503 within seconds instead of hanging requests.
    this.pool = new pg.Pool({ connectionString, max: options.max ?? 10, connectionTimeoutMillis: 5_000, query_timeout: 15_000, keepAlive: true });
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

  fault(): string | undefined {
    return undefined;
  }

  isUnavailable(err: unknown): boolean {
    return pgUnavailable(err);
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
