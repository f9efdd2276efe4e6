import { accessSync, constants, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, unlinkSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import Database from 'better-sqlite3';
import { Mutex } from '../util/async.js';
import type { LeaderLock, SqlDriver, SqlExecutor } from './sql-driver.js';
import { SqlStorage } from './sql-storage.js';

type Db = Database.Database;

// better-sqlite3 binds neither booleans nor undefined.
function bind(params: readonly unknown[]): unknown[] {
  return params.map((p) => (p === true ? 1 : p === false ? 0 : p === undefined ? null : p));
}

/** The error a statement fails with while the database file is known to be unusable. */
const FAULT_CODE = 'PHILOTES_SQLITE_FAULT';
// Errors SQLite answers when its files cannot be reached or written (extended codes included,
// such as SQLITE_IOERR_WRITE from an immutable -wal file): the client may retry later.
const UNAVAILABLE = /^SQLITE_(BUSY|CANTOPEN|IOERR|READONLY|FULL)(_|$)/;

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'unknown error';
}

/** What an errno from open/access means for a file the daemon must write. */
function notWritable(err: unknown): string {
  const code = codeOf(err);
  const why: Record<string, string> = {
    EPERM: 'is it immutable (chattr +i)?',
    EACCES: 'check its permissions and owner',
    EROFS: 'the file system is mounted read-only',
  };
  return why[code] === undefined ? code : `${code}: ${why[code]}`;
}

class SqliteExecutor implements SqlExecutor {
  readonly #db: Db;
  readonly #cache = new Map<string, Database.Statement>();
  /** Runs before every statement; throws when the database must not be touched (see SqliteDriver). */
  readonly #before: (write: boolean) => void;
  readonly #failed: (err: unknown) => void;

  constructor(db: Db, before: (write: boolean) => void, failed: (err: unknown) => void) {
    this.#db = db;
    this.#before = before;
    this.#failed = failed;
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

  #guarded<T>(write: boolean, work: () => T): T {
    this.#before(write);
    try {
      return work();
    } catch (err) {
      this.#failed(err);
      throw err;
    }
  }

  allSync<T>(sql: string, params: readonly unknown[] = []): T[] {
    return this.#guarded(false, () => this.#stmt(sql).all(...bind(params)) as T[]);
  }

  runSync(sql: string, params: readonly unknown[] = []): number {
    return this.#guarded(true, () => this.#stmt(sql).run(...bind(params)).changes);
  }

  execSync(sql: string): void {
    this.#guarded(true, () => this.#db.exec(sql));
  }

  async all<T>(sql: string, params?: readonly unknown[]): Promise<T[]> {
    return this.allSync<T>(sql, params);
  }

  async run(sql: string, params?: readonly unknown[]): Promise<number> {
    return this.runSync(sql, params);
  }

  async exec(sql: string): Promise<void> {
    this.execSync(sql);
  }
}

/** Where the SQLite driver reports a fault of its files starting or ending (pino's Logger fits). */
export interface SqliteLogger {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/** Options of the SQLite driver and store. */
export interface SqliteOptions {
  /** Receives one error line when the database file becomes unusable, one info line when it recovers. */
  logger?: SqliteLogger;
}

/** Why the database must not be used; `lasting` when only a restart can end it (deleted, replaced). */
interface Fault {
  reason: string;
  lasting: boolean;
}

/** One of the files SQLite keeps open, and the identity it had when the daemon first saw it. */
interface TrackedFile {
  role: string;
  path: string;
  id: { dev: number; ino: number } | undefined;
}

/** How often the files are checked without a reason to (a change event or a write). */
const CHECK_EVERY_MS = 1_000;

/**
 * better-sqlite3 driver. The connection is one, and a transaction spans awaits, so every
 * statement and transaction goes through one FIFO lock: nothing from another request can slip
 * into an open transaction.
 *
 * The files under the connection are watched, because SQLite itself does not notice them change:
 * a database deleted or replaced under it keeps taking writes into the unlinked file (all lost at
 * the next start, and its -wal would then be replayed onto the new file), and a -shm file made
 * immutable kills the process with SIGBUS at the next statement (SQLite writes it through mmap).
 * So the identity (dev, inode) of the database, -wal and -shm files is recorded at open, and they
 * are checked (stat, and access(W_OK), which as root too fails on an immutable file or a read-only
 * mount) on every change event in their folder, every second, and before each write; the -shm
 * file's writability before every statement outside a transaction (a transaction is checked at
 * its BEGIN and again before its COMMIT). From the first failed check `fault()` names the problem
 * and every statement is refused. A file that is not writable is a fault that ends when it
 * is writable again; a deleted or replaced one lasts until the daemon restarts: the daemon does
 * not recreate an empty database under a running loop, nor adopt a file it did not open.
 */
export class SqliteDriver implements SqlDriver {
  readonly kind = 'sqlite';
  readonly migrationsFolder = 'sqlite';
  readonly supportsSharedAccess = false;
  readonly inProcess = true;
  readonly #db: Db | undefined;
  readonly #exec: SqliteExecutor | undefined;
  readonly #lock = new Mutex();
  readonly #migrationLock = new Mutex();
  readonly #path: string;
  readonly #logger: SqliteLogger | undefined;
  /** Empty for an in-memory database: nothing to watch. */
  readonly #files: TrackedFile[] = [];
  #fault: Fault | undefined;
  #checkedAt = 0;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #checkQueued = false;
  #closed = false;

  constructor(path: string, opts: SqliteOptions = {}) {
    this.#path = path;
    this.#logger = opts.logger;
    const inMemory = path === ':memory:' || path === '';
    if (!inMemory) {
      this.#fault = SqliteDriver.#cannotWrite(path);
      if (this.#fault !== undefined) {
        this.#logger?.error({ database: path, fault: this.#fault.reason }, 'the SQLite database cannot be used; the daemon will not start on it');
        return;
      }
    }
    let db: Db | undefined;
    try {
      db = new Database(path);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      // A checkpoint every 10,000 pages (~40 MB of -wal) rather than SQLite's 1,000: a page
      // written many times between two checkpoints (states rewritten every change, index pages
      // of history) is copied into the database once. At 2,000 changes a cycle checkpoints were
      // half of the cycle's time with 1,000. The -wal file is cut back to 64 MB after one.
      db.pragma('wal_autocheckpoint = 10000');
      db.pragma('journal_size_limit = 67108864');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      // A first read creates the -wal and -shm files, so their identity is known from the start.
      db.prepare('SELECT count(*) FROM sqlite_master').get();
    } catch (err) {
      if (inMemory) throw err;
      db?.close();
      this.#fault = { reason: `the database file ${path} cannot be opened (${codeOf(err)}: ${(err as Error).message})`, lasting: true };
      this.#logger?.error({ database: path, fault: this.#fault.reason }, 'the SQLite database cannot be used; the daemon will not start on it');
      return;
    }
    this.#db = db;
    this.#exec = new SqliteExecutor(
      db,
      // Inside a transaction nothing is checked per statement: its BEGIN checked every file, its
      // COMMIT checks them again, and its statements write neither the -shm file nor the
      // database before the commit (a transaction stays far below the page cache; see rollback).
      // At 2,000 changes a cycle the per-statement access() was a sixth of the cycle's time.
      (write) => {
        if (!db.inTransaction) this.#ensureUsable(write);
      },
      (err) => {
        if (UNAVAILABLE.test(codeOf(err))) this.#refresh();
      },
    );
    if (inMemory) return;
    this.#files.push(
      { role: 'database file', path, id: undefined },
      { role: 'WAL file', path: `${path}-wal`, id: undefined },
      { role: 'WAL index file', path: `${path}-shm`, id: undefined },
    );
    this.#refresh();
    this.#watch();
  }

  /** Why a database at `path` cannot be written, checked before SQLite opens it (undefined: it can). */
  static #cannotWrite(path: string): Fault | undefined {
    const dir = dirname(path);
    try {
      mkdirSync(dir, { recursive: true });
    } catch (err) {
      return { reason: `the database folder ${dir} cannot be created (${notWritable(err)})`, lasting: true };
    }
    try {
      accessSync(dir, constants.W_OK);
    } catch (err) {
      return { reason: `the database folder ${dir} is not writable (${notWritable(err)}); SQLite keeps its -wal and -shm files there, and the daemon its leader lock file`, lasting: true };
    }
    for (const file of [path, `${path}-wal`, `${path}-shm`]) {
      try {
        accessSync(file, constants.W_OK);
      } catch (err) {
        if (codeOf(err) === 'ENOENT') continue;
        return { reason: `the database file ${file} is not writable (${notWritable(err)})`, lasting: true };
      }
    }
    return undefined;
  }

  #watch(): void {
    const names = new Set(this.#files.map((f) => basename(f.path)));
    try {
      this.#watcher = watch(dirname(this.#path), { persistent: false }, (_event, name) => {
        if (name === null || names.has(String(name))) this.#queueCheck();
      });
      // A folder removed or unwatchable: the timer below still checks every second.
      this.#watcher.on('error', () => this.#unwatch());
    } catch {
      // No inotify watch left (ENOSPC): the timer still checks every second.
    }
    this.#timer = setInterval(() => this.#refresh(), CHECK_EVERY_MS);
    this.#timer.unref();
  }

  #unwatch(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  // Events come in bursts (every commit changes the -wal file): one check per turn of the loop.
  #queueCheck(): void {
    if (this.#checkQueued) return;
    this.#checkQueued = true;
    setImmediate(() => {
      this.#checkQueued = false;
      this.#refresh();
    });
  }

  /** Checks the files now and records (and logs) a fault that starts, changes or ends. */
  #refresh(): void {
    if (this.#closed || this.#files.length === 0 || this.#fault?.lasting === true) return;
    this.#checkedAt = performance.now();
    this.#setFault(this.#inspect());
  }

  #inspect(): Fault | undefined {
    for (const f of this.#files) {
      let st;
      try {
        st = statSync(f.path, { throwIfNoEntry: false });
      } catch (err) {
        return { reason: `the ${f.role} ${f.path} cannot be checked (${codeOf(err)})`, lasting: false };
      }
      if (st === undefined) {
        if (f.id === undefined) continue; // not created yet
        return { reason: `the ${f.role} ${f.path} was deleted while the daemon had it open; restart the daemon (after restoring the file, if its data is needed)`, lasting: true };
      }
      if (f.id === undefined) f.id = { dev: st.dev, ino: st.ino };
      else if (f.id.dev !== st.dev || f.id.ino !== st.ino) {
        return { reason: `the ${f.role} ${f.path} was replaced by another file while the daemon had it open; restart the daemon to use the new file`, lasting: true };
      }
    }
    for (const f of this.#files) {
      if (f.id === undefined) continue;
      try {
        accessSync(f.path, constants.W_OK);
      } catch (err) {
        return { reason: `the ${f.role} ${f.path} is not writable (${notWritable(err)})`, lasting: false };
      }
    }
    return undefined;
  }

  #setFault(next: Fault | undefined): void {
    const prev = this.#fault;
    this.#fault = next;
    if (prev === undefined && next === undefined) return;
    if (prev === undefined && next !== undefined) {
      this.#logger?.error(
        { database: this.#path, fault: next.reason, ...this.#openHandles() },
        `the SQLite database cannot be used: every storage call answers 503 and /readyz is not ready ${next.lasting ? 'until the daemon is restarted' : 'until the file is writable again'}`,
      );
    } else if (prev !== undefined && next === undefined) {
      this.#logger?.info({ database: this.#path, was: prev.reason }, 'the SQLite database is writable again; storage calls are served again');
    } else if (prev !== undefined && next !== undefined && next.lasting && !prev.lasting) {
      this.#logger?.warn({ database: this.#path, fault: next.reason, ...this.#openHandles() }, 'the SQLite database fault cannot end any more: restart the daemon');
    }
    if (next?.lasting === true && prev?.lasting !== true) void this.#lock.run(() => this.#detachWal());
  }

  /**
   * After a delete or replace, moves the -wal file's committed frames into the database file the
   * daemon opened (unlinked or not) and empties the -wal file. Nothing new is written: this makes
   * the old file complete on its own (a copy of it through /proc holds all its data), and keeps a
   * daemon started later on a new file at this path from replaying the old -wal onto it.
   */
  #detachWal(): void {
    const db = this.#db;
    if (db === undefined || !db.open || db.inTransaction) return;
    const shm = this.#files[2];
    try {
      // An immutable -shm file would kill the process (SIGBUS) during the checkpoint.
      if (shm !== undefined && this.#isOurs(shm)) accessSync(shm.path, constants.W_OK);
      db.pragma('busy_timeout = 0');
      const [result] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
      if (result?.busy !== 0) throw new Error('another connection is reading the database');
    } catch (err) {
      this.#logger?.warn({ database: this.#path, err }, `the -wal file beside the deleted or replaced database still holds its frames (${(err as Error).message}): move ${this.#path}-wal away before a daemon starts on a new file at this path`);
    } finally {
      if (db.open) db.pragma('busy_timeout = 5000');
    }
  }

  #isOurs(f: TrackedFile): boolean {
    const st = statSync(f.path, { throwIfNoEntry: false });
    return st !== undefined && f.id !== undefined && st.dev === f.id.dev && st.ino === f.id.ino;
  }

  /**
   * The daemon's handles on files no longer at their path (Linux): their data can still be copied
   * out through /proc until the daemon stops. For the error line, never for clients.
   */
  #openHandles(): { open_handles?: Array<{ file: string; now: string; copy_from: string }> } {
    const handles: Array<{ file: string; now: string; copy_from: string }> = [];
    try {
      for (const fd of readdirSync('/proc/self/fd')) {
        const proc = `/proc/self/fd/${fd}`;
        const st = statSync(proc, { throwIfNoEntry: false });
        const f = this.#files.find((x) => x.id !== undefined && st !== undefined && x.id.dev === st.dev && x.id.ino === st.ino);
        if (f === undefined || this.#isOurs(f)) continue;
        handles.push({ file: f.path, now: readlinkSync(proc), copy_from: `/proc/${process.pid}/fd/${fd}` });
      }
    } catch {
      // Not Linux, or the fd went away meanwhile: no hint.
    }
    return handles.length === 0 ? {} : { open_handles: handles };
  }

  /**
   * Throws while the database must not be touched. A write (outside a transaction, or its BEGIN
   * and COMMIT) checks every file first; any statement checks at least that the -shm file can
   * still be written, the one change that would otherwise crash the process.
   */
  #ensureUsable(full: boolean): void {
    if (this.#files.length > 0 && this.#fault?.lasting !== true) {
      const shm = this.#files[2];
      if (full || performance.now() - this.#checkedAt >= CHECK_EVERY_MS || shm === undefined) this.#refresh();
      else {
        try {
          accessSync(shm.path, constants.W_OK);
        } catch {
          this.#refresh();
        }
      }
    }
    if (this.#fault !== undefined) {
      throw Object.assign(new Error(`the SQLite database cannot be used: ${this.#fault.reason}`), { code: FAULT_CODE });
    }
  }

  #executor(): SqliteExecutor {
    if (this.#exec === undefined) throw Object.assign(new Error(`the SQLite database cannot be used: ${this.#fault?.reason ?? 'it is not open'}`), { code: FAULT_CODE });
    return this.#exec;
  }

  all<T>(sql: string, params?: readonly unknown[]): Promise<T[]> {
    return this.#lock.run(() => this.#executor().allSync<T>(sql, params));
  }

  run(sql: string, params?: readonly unknown[]): Promise<number> {
    return this.#lock.run(() => this.#executor().runSync(sql, params));
  }

  exec(sql: string): Promise<void> {
    return this.#lock.run(() => this.#executor().execSync(sql));
  }

  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.#lock.run(async () => {
      const tx = this.#executor();
      tx.execSync('BEGIN IMMEDIATE');
      try {
        const result = await fn(tx);
        // Every file checked again: one deleted while the transaction ran must not get its commit.
        this.#ensureUsable(true);
        tx.execSync('COMMIT');
        return result;
      } catch (err) {
        // Safe with an immutable -shm file: a rollback writes it only when the transaction spilled
        // pages into the -wal file, which takes more than the 16 MB page cache holds.
        if (this.#db?.inTransaction === true) this.#db.exec('ROLLBACK');
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
    return this.#fault?.reason;
  }

  isUnavailable(err: unknown): boolean {
    const code = codeOf(err);
    return code === FAULT_CODE || UNAVAILABLE.test(code);
  }

  leaderLock(): LeaderLock {
    return new SqliteLeaderLock(`${this.#path}.leader`, () => this.#fault);
  }

  /** The lock file is held by this process itself: it cannot be lost while the process lives. */
  readonly fenceCondition = undefined;
  readonly jsonRows = undefined;
  readonly historyLocator = 'rowid';
  readonly asBytes = (column: string): string => `CAST(${column} AS BLOB)`;
  readonly isoTime = undefined;

  async close(): Promise<void> {
    this.#closed = true;
    this.#unwatch();
    await this.#lock.run(() => {
      const db = this.#db;
      if (db === undefined || !db.open) return;
      const shm = this.#files[2];
      if (shm !== undefined && this.#isOurs(shm)) {
        try {
          accessSync(shm.path, constants.W_OK);
        } catch (err) {
          // Closing checkpoints through the -shm mapping: on an immutable file the kernel answers
          // SIGBUS. Left open, the file is closed by the process exit without a write.
          this.#logger?.warn({ database: this.#path, err: codeOf(err) }, 'the SQLite database is left open: closing it would write its -shm file, which is not writable');
          return;
        }
      }
      db.close();
    });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return codeOf(err) === 'EPERM';
  }
}

/** A lock file that cannot be read, written or removed: never to be taken for another daemon's lock. */
function lockFileError(path: string, cannot: string, err: unknown): Error {
  return new Error(
    `the leader lock file ${path} cannot be ${cannot} (${notWritable(err)}); this is not another daemon holding the lock: make the folder and the file writable`,
    { cause: err },
  );
}

/**
 * SQLite is single-instance: a lock file beside the database names the process that leads. A
 * second daemon on the same file finds a live owner and refuses to lead (it still serves the
 * API); a lock file left by a dead process is taken over. A lock file that cannot be created,
 * read or removed is an error naming the file, not another daemon's lock. While the database is
 * unusable (SqliteDriver's fault) this daemon does not lead: the loop could not record anything.
 */
class SqliteLeaderLock implements LeaderLock {
  readonly description: string;
  #held = false;

  constructor(
    private readonly path: string,
    private readonly fault: () => Fault | undefined,
  ) {
    this.description = `lock file ${path}`;
  }

  #owner(): number | undefined {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if (codeOf(err) === 'ENOENT') return undefined;
      throw lockFileError(this.path, 'read', err);
    }
    const pid = Number(text.trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  }

  async tryAcquire(): Promise<boolean> {
    const fault = this.fault();
    if (fault !== undefined) {
      // A database this daemon will never use again: leave the path to a daemon started on it.
      if (fault.lasting) await this.release();
      return false;
    }
    if (this.#held) return this.stillHeld();
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(this.path, `${process.pid}\n`, { flag: 'wx' });
        this.#held = true;
        return true;
      } catch (err) {
        if (codeOf(err) !== 'EEXIST') throw lockFileError(this.path, 'created', err);
        const owner = this.#owner();
        if (owner === process.pid) {
          this.#held = true;
          return true;
        }
        if (owner !== undefined && processAlive(owner)) return false;
        try {
          unlinkSync(this.path); // stale: its process is gone
        } catch (unlinkErr) {
          if (codeOf(unlinkErr) !== 'ENOENT') throw lockFileError(this.path, `removed, though ${owner === undefined ? 'it names no process' : `the process it names (pid ${owner}) is gone`}`, unlinkErr);
        }
      }
    }
    return false;
  }

  async stillHeld(): Promise<boolean> {
    const fault = this.fault();
    // Thrown, so the election says why it steps down.
    if (this.#held && fault !== undefined) throw new Error(`the SQLite database cannot be used: ${fault.reason}`);
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
    try {
      if (this.#held && this.#owner() === process.pid) unlinkSync(this.path);
    } catch {
      // already gone, or not removable: the next owner finds this process gone or alive
    }
    this.#held = false;
  }
}

/** Opens (creating the folder and file when needed) a SQLite store. Call migrate() before use. */
export function createSqliteStorage(path: string, opts: SqliteOptions = {}): SqlStorage {
  return new SqlStorage(new SqliteDriver(path, opts));
}
