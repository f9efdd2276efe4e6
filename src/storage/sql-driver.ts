/** Runs SQL written with `?` placeholders; the driver translates to its own dialect. */
export interface SqlExecutor {
  all<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  /** Runs a statement that returns no rows; resolves to the number of rows changed. */
  run(sql: string, params?: readonly unknown[]): Promise<number>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

/**
 * One database backend, kept small on purpose (kysely's Driver/DialectAdapter split): the shared
 * SqlStorage speaks to this, so backend differences live here and never in `if (kind === ...)`.
 */
export interface SqlDriver extends SqlExecutor {
  readonly kind: string;
  /** Folder under migrations/ with this backend's files. */
  readonly migrationsFolder: string;
  readonly supportsSharedAccess: boolean;
  /** Whether statements run on the daemon's own thread, holding its event loop (see Storage.inProcess). */
  readonly inProcess: boolean;
  /** Runs fn in one transaction; rolls back when it throws. */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Serialises migrations between processes (an advisory lock on PostgreSQL). */
  withMigrationLock<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * For a unique-constraint violation, the key it hit as `table.column` (several columns joined by
   * `,`); undefined for any other error. Lets shared code tell a taken policy name (a client's
   * 409) from any other clash, such as a duplicate rule id (a server bug, never a 409).
   */
  uniqueViolation(err: unknown): string | undefined;
  /** True when the error means the database cannot be reached right now. */
  isUnavailable(err: unknown): boolean;
  /**
   * Why the database must not be used now, known without a query (a SQLite file that was deleted,
   * replaced or made read-only under the daemon); undefined when nothing is known to be wrong.
   * Cheap and synchronous: called before every statement and by /readyz.
   */
  fault(): string | undefined;
  /** A lock that at most one daemon on this database holds: the one that runs the evaluation loop. */
  leaderLock(): LeaderLock;
  /**
   * A SQL condition with one `?` (the fence: a lock session's id) that holds while that session
   * holds the leader lock; undefined where a lock cannot be lost while its holder lives (SQLite's
   * lock file, held by the process itself).
   */
  readonly fenceCondition: string | undefined;
  /**
   * Where the backend reads many rows from one JSON parameter (PostgreSQL's `json_to_recordset`):
   * the FROM item that yields them, given the columns and their types (`id text, n integer`),
   * with one `?` for the JSON text of an array of objects. Many rows are then written by one
   * statement instead of one each (a round trip each on PostgreSQL). Undefined where statements
   * are cheap one by one (SQLite, in the process).
   */
  readonly jsonRows: ((columns: string) => string) | undefined;
  /**
   * The column that finds a history row fastest once a listing named it: SQLite's `rowid` (the
   * table's own key; `id` is a second index over random UUIDs), PostgreSQL's `id` (its primary
   * key). Read together with `id`, which is what a row is matched by.
   */
  readonly historyLocator: string;
  /**
   * An expression reading a text column as its UTF-8 bytes, where the backend hands those over
   * without decoding them (SQLite: `CAST(… AS BLOB)`, a Buffer); undefined where text is as cheap.
   * A history page's texts are sent as bytes: read as bytes, they are never decoded to be encoded again.
   */
  readonly asBytes: ((column: string) => string) | undefined;
  /**
   * An expression reading a timestamp column as ISO 8601 text in UTC with milliseconds (what
   * `Date.toISOString()` gives), where the driver would otherwise build a Date of every row's
   * (PostgreSQL: 5 % of the daemon's time under GET /history went to parsing them); undefined where
   * the column holds that text already (SQLite).
   */
  readonly isoTime: ((column: string) => string) | undefined;
  close(): Promise<void>;
}

/** Leadership over one database: a PostgreSQL advisory lock, or a lock file beside a SQLite file. */
export interface LeaderLock {
  /** Tries to take the lock; true when this process holds it (also when it already did). */
  tryAcquire(): Promise<boolean>;
  /** Whether the lock is still held (false once its connection dropped). */
  stillHeld(): Promise<boolean>;
  release(): Promise<void>;
  /** What the lock is, for logs and /readyz. */
  readonly description: string;
  /**
   * While held, the proof of it that state writes carry (the lock session's id on PostgreSQL);
   * undefined when not held, or when the lock needs no proof (see SqlDriver.fenceCondition).
   */
  fence(): number | undefined;
  /**
   * Calls `fn` once when the lock is found lost without a check (its session was terminated or
   * its connection closed), so the loop stops before its next change, not at the next check.
   */
  onLost(fn: () => void): void;
}
