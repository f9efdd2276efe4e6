import { existsSync, realpathSync, statSync } from 'node:fs';
import { watch, type FSWatcher } from 'chokidar';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { PolicyService } from '../policy/policy-service.js';
import { API_SOURCE, type Policy } from '../policy/policy-model.js';
import type { Storage } from '../storage/storage.js';
import { Mutex } from '../util/async.js';
import {
  DEFAULT_MAX_POLICY_FILE_BYTES,
  fileProblem,
  formatProblem,
  parsePolicyText,
  readPolicyFileText,
  tooLargeMessage,
  type FileProblem,
  type ParsedFile,
} from './policy-file.js';
import { fingerprintOf, isInside, scanPolicyFolder, type FolderScan, type FoundFile } from './policy-folder-scan.js';

/**
 * What the daemon last saw of one path; served at GET /api/v1/scaling/sources, and every entry
 * whose status is not `ok` is a problem for /readyz.
 */
export interface SourceStatus {
  path: string;
  /**
   * `file`: a policy file. `folder`: a watched folder that is gone or unreadable (listed only
   * then). `entry`: something in a folder that is refused and never read (a symlink loop, a link
   * out of the folder, a FIFO named .yaml).
   */
  kind: 'file' | 'folder' | 'entry';
  /** `degraded`: a folder out of sight, whose files' last good policies stay in force. */
  status: 'ok' | 'error' | 'degraded';
  /** Names of the policies in force from this path (the last good version when it is not ok). */
  policies: string[];
  errors: FileProblem[];
  checked_at: string;
  last_good_at: string | null;
}

export interface PolicyFileLoaderOptions {
  dirs: string[];
  storage: Storage;
  policies: PolicyService;
  logger: Logger;
  /** How long a folder must stay quiet before it is scanned (half-written files are not read). */
  stabilityMs?: number;
  /** Largest policy file read (config `max_policy_file_bytes`); a larger one is refused unread. */
  maxFileBytes?: number;
  /** How often a missing folder is looked for, and a folder's own identity checked (ms). */
  pollMs?: number;
  /** How often every folder is scanned whatever the watches said, for changes they missed (ms). */
  rescanMs?: number;
  cwd?: string;
  onReload?: (status: SourceStatus | { path: string; status: 'removed' }) => void;
}

/** A policy file the loader knows: seen in a folder, or known from storage and not yet seen. */
interface TrackedFile {
  /** Its display name, which is also its `source` in storage. */
  path: string;
  folder: WatchedFolder;
  /** What was last read; null when it must be read at the next scan that finds it. */
  found: FoundFile | null;
  /** A new version seen but not read yet, and since when (monotonic ms): read once it stayed unchanged for stabilityMs. */
  seen: { fingerprint: string; since: number } | null;
  /** When scans began to miss it (monotonic ms); it is removed only after a grace period. */
  missingSince: number | null;
  /** Names it defines that another file or the API holds: it is tried again when one is freed. */
  blockedOn: Set<string>;
}

/** One configured folder and what watching it takes. */
interface WatchedFolder {
  root: string;
  display: string;
  /** Why the folder is out of sight (it is then `degraded`); null when it was listed. */
  unavailable: string | null;
  /** Identity (dev:ino) of the folder at the last scan: a recreated folder must be watched anew. */
  rootId: string | null;
  watchers: Map<string, { id: string; watcher: FSWatcher }>;
  watchFailureLogged: boolean;
  /** Refused entries as last reported, so each is reported once. */
  refused: Map<string, string>;
  /** Real paths named by watch events since the last scan: read again even if their stat looks unchanged. */
  dirty: Set<string>;
  /** When a watch last reported a change (monotonic ms). */
  lastEventAt: number;
  timer: NodeJS.Timeout | undefined;
  dueAt: number;
  firstEventAt: number | null;
  queued: boolean;
  lastScanAt: number;
  lastGoodAt: string | null;
}

/** A file that stopped defining names, or was deleted: files blocked on those names may take them. */
interface Handoff {
  from: string;
  released: ReadonlySet<string>;
  /** Names the releasing file is about to store: still its own. */
  reserved: ReadonlySet<string>;
}

/** What one scan knows besides the folder listing. */
interface ScanContext {
  /** Real paths named by watch events since the last scan. */
  dirty: ReadonlySet<string>;
  /** Folders watched, by the same watch, since before this scan. */
  watchedBefore: ReadonlySet<string>;
  /** The first scan at start: files missing from it are removed at once (deleted while stopped). */
  initial: boolean;
}

// Scans at start before start() returns with a file still being written (it is read later).
const START_ROUNDS = 20;

/** Read errors that mean the file changed under us: scan again rather than report. */
const CHANGED_WHILE_READING = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

/**
 * Keeps storage in step with the policy files in the watched folders (README "Policy files", docs/faults.md). Each folder is scanned as a whole (scanPolicyFolder:
 * hidden entries skipped, symlinks followed only inside the folder) when a watch reports a change,
 * when its identity changes, and every `rescanMs`; the scan is compared with what was read before.
 * A file's policies are swapped in one transaction; a file that fails keeps its last good
 * policies in force; removing a file removes its policies (their history stays), and a file that
 * defines one of its names takes it over. A folder that disappears keeps its policies (degraded)
 * until it is back.
 */
export class PolicyFileLoader {
  readonly #opts: PolicyFileLoaderOptions;
  readonly #cwd: string;
  readonly #stabilityMs: number;
  readonly #graceMs: number;
  readonly #maxWaitMs: number;
  readonly #maxBytes: number;
  readonly #pollMs: number;
  readonly #rescanMs: number;
  readonly #statuses = new Map<string, SourceStatus>();
  readonly #files = new Map<string, TrackedFile>();
  /** Sources whose removal from storage failed; tried again at every scan. */
  readonly #orphans = new Set<string>();
  readonly #loading = new Set<string>();
  readonly #lock = new Mutex();
  #folders: WatchedFolder[] = [];
  #ticker: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: PolicyFileLoaderOptions) {
    this.#opts = opts;
    this.#cwd = opts.cwd ?? process.cwd();
    this.#stabilityMs = opts.stabilityMs ?? 150;
    // A file missing from one scan may be mid-rename or mid-rewrite; it is removed only once it
    // stayed missing this long, so its successor can take its policies (and ids) along.
    this.#graceMs = Math.max(500, this.#stabilityMs * 3);
    // A folder that never goes quiet (a log file written beside the policies) is still scanned.
    this.#maxWaitMs = Math.max(2000, this.#stabilityMs * 10);
    this.#maxBytes = opts.maxFileBytes ?? DEFAULT_MAX_POLICY_FILE_BYTES;
    this.#pollMs = opts.pollMs ?? 1000;
    this.#rescanMs = Math.max(opts.rescanMs ?? 5000, this.#pollMs);
  }

  /** The name a file is stored under: relative to the working directory when inside it. */
  displayName(abs: string): string {
    const rel = relative(this.#cwd, abs);
    return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel.split('\\').join('/') : abs;
  }

  #absolute(display: string): string {
    return isAbsolute(display) ? display : resolve(this.#cwd, display);
  }

  statuses(): SourceStatus[] {
    return [...this.#statuses.values()].sort((a, b) => a.path.localeCompare(b.path));
  }

  /** Every status that is not ok: rejected files, refused entries and degraded folders (for /readyz). */
  problems(): SourceStatus[] {
    return this.statuses().filter((s) => s.status !== 'ok');
  }

  /** Loads every file now, removes policies of files that vanished while stopped, then watches. */
  async start(): Promise<void> {
    this.#folders = distinctFolders(this.#opts.dirs.map((d) => resolve(this.#cwd, d))).map((root) => this.#newFolder(root));
    await this.#lock.run(async () => {
      await this.#trackStoredSources();
      // Files are read once they stop changing, so the first scan only notes them; start()
      // returns when every file present has been read (or after START_ROUNDS, for a file that
      // is written without a pause: the watch reads it when it settles).
      let unsettled = this.#folders;
      for (let round = 0; unsettled.length > 0 && round < START_ROUNDS; round++) {
        if (round > 0) await sleep(this.#stabilityMs);
        const next: WatchedFolder[] = [];
        for (const folder of unsettled) if (await this.#reconcile(folder, round === 0)) next.push(folder);
        unsettled = next;
      }
    });
    if (this.#folders.length === 0) {
      this.#opts.logger.info('no policy folders configured; policies come from the API only');
      return;
    }
    this.#ticker = setInterval(() => this.#tick(), this.#pollMs);
    this.#ticker.unref();
    this.#opts.logger.info(
      { files: this.#files.size, problems: this.problems().length },
      `policy files loaded from ${this.#opts.dirs.join(', ')}`,
    );
  }

  /** Waits until no scan is pending or running (tests and shutdown). */
  async settle(): Promise<void> {
    do {
      while (this.#folders.some((f) => f.timer !== undefined || f.queued)) await sleep(10);
      await this.#lock.run(() => undefined);
    } while (this.#folders.some((f) => f.timer !== undefined || f.queued));
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#ticker);
    for (const folder of this.#folders) {
      clearTimeout(folder.timer);
      folder.timer = undefined;
      await this.#unwatch(folder);
    }
    await this.#lock.run(() => undefined);
  }

  #newFolder(root: string): WatchedFolder {
    return {
      root,
      display: this.displayName(root),
      unavailable: null,
      rootId: null,
      watchers: new Map(),
      watchFailureLogged: false,
      refused: new Map(),
      dirty: new Set(),
      lastEventAt: Number.NEGATIVE_INFINITY,
      timer: undefined,
      dueAt: 0,
      firstEventAt: null,
      queued: false,
      lastScanAt: 0,
      lastGoodAt: null,
    };
  }

  // ---- Scheduling ------------------------------------------------------------------------

  /** A watch event: scan once the folder has been quiet for stabilityMs, but not later than maxWaitMs. */
  #onEvent(folder: WatchedFolder, dirReal: string, name: string | Buffer | null): void {
    if (name !== null) folder.dirty.add(join(dirReal, name.toString()));
    const now = performance.now();
    folder.lastEventAt = now;
    folder.firstEventAt ??= now;
    this.#scheduleAt(folder, Math.min(now + this.#stabilityMs, folder.firstEventAt + this.#maxWaitMs), true);
  }

  /** Scan no later than delayMs from now (an earlier scan already planned stays). */
  #scanWithin(folder: WatchedFolder, delayMs: number): void {
    this.#scheduleAt(folder, performance.now() + delayMs, false);
  }

  #scheduleAt(folder: WatchedFolder, dueAt: number, pushBack: boolean): void {
    if (this.#closed) return;
    if (folder.timer !== undefined) {
      if (!pushBack && folder.dueAt <= dueAt) return;
      clearTimeout(folder.timer);
    }
    folder.dueAt = dueAt;
    folder.timer = setTimeout(() => this.#runScan(folder), Math.max(0, dueAt - performance.now()));
  }

  #runScan(folder: WatchedFolder): void {
    folder.timer = undefined;
    folder.firstEventAt = null;
    // One scan waiting for the lock sees every change made before it starts.
    if (folder.queued) return;
    folder.queued = true;
    // The lock swallows a rejection (it keeps its queue going), so an unexpected error is logged here.
    this.#lock
      .run(async () => {
        folder.queued = false;
        if (!this.#closed) await this.#reconcile(folder, false);
      })
      .catch((err: unknown) => this.#opts.logger.error({ dir: folder.display, err }, 'policy folder scan failed; will retry at the next change or rescan'));
  }

  /** Polls missing folders, notices a folder replaced under its watch, and rescans now and then. */
  #tick(): void {
    const now = performance.now();
    for (const folder of this.#folders) {
      const due = folder.unavailable !== null || now - folder.lastScanAt >= this.#rescanMs || this.#rootChanged(folder);
      if (due) this.#scanWithin(folder, 0);
    }
  }

  /** True when the folder is gone or is another folder than the one watched (deleted and recreated, moved). */
  #rootChanged(folder: WatchedFolder): boolean {
    try {
      const st = statSync(realpathSync(folder.root));
      return `${st.dev}:${st.ino}` !== folder.rootId;
    } catch {
      return true;
    }
  }

  // ---- One scan --------------------------------------------------------------------------

  /** Scans a folder and applies what changed; true when some file is still changing (it is read later). */
  async #reconcile(folder: WatchedFolder, initial: boolean): Promise<boolean> {
    const dirty = folder.dirty;
    folder.dirty = new Set();
    const scan = scanPolicyFolder(folder.root);
    folder.lastScanAt = performance.now();
    if (scan.unavailable !== null) {
      await this.#degrade(folder, scan.unavailable);
      return false;
    }
    if (folder.unavailable !== null) this.#recover(folder);
    folder.rootId = scan.dirs[0]?.id ?? null;
    folder.lastGoodAt = new Date().toISOString();
    const watchedBefore = this.#watchedThroughout(folder, scan.dirs);
    await this.#watch(folder, scan.dirs);
    await this.#reportRefused(folder, scan);
    const unsettled = await this.#applyScan(folder, scan, { dirty, watchedBefore, initial });
    await this.#retryBlocked();
    await this.#retryOrphans();
    return unsettled;
  }

  /** Folders of this scan that were already watched, by the same watch, before it. */
  #watchedThroughout(folder: WatchedFolder, dirs: FolderScan['dirs']): Set<string> {
    const ids = new Map(dirs.map((d) => [d.real, d.id]));
    return new Set([...folder.watchers].filter(([real, w]) => ids.get(real) === w.id).map(([real]) => real));
  }

  /**
   * Whether a new version of a file has stopped changing, so that reading it gives no torn text
   * (an empty file read mid-rewrite would remove its policies). In a folder watched all along,
   * every write raises an event, so no event for stabilityMs means no write; elsewhere (a folder
   * just found or back, a ConfigMap's hidden target folders, rescans) the same version must be
   * seen twice, stabilityMs apart. All times are monotonic: the wall clock may jump.
   */
  #settled(file: TrackedFile, f: FoundFile, ctx: ScanContext, now: number): boolean {
    const changedAgain = file.seen?.fingerprint !== f.fingerprint || ctx.dirty.has(f.real);
    if (changedAgain) file.seen = { fingerprint: f.fingerprint, since: now };
    if (ctx.watchedBefore.has(dirname(f.real)) && now - file.folder.lastEventAt >= this.#stabilityMs) return true;
    return !changedAgain && now - (file.seen?.since ?? now) >= this.#stabilityMs;
  }

  /** Reads new and changed files once settled, and removes files that stayed missing past the grace period. */
  async #applyScan(folder: WatchedFolder, scan: FolderScan, ctx: ScanContext): Promise<boolean> {
    const now = performance.now();
    const found = new Map(scan.files.map((f) => [this.displayName(f.path), f]));
    const refused = new Set(scan.refused.map((r) => this.displayName(r.path)));
    const unreadable = scan.unreadable.map((u) => resolve(this.#cwd, u));
    // Missing files are noted first, so that a renamed file's new name finds the old one gone
    // and takes its policies (ids, state, history) along.
    for (const file of this.#filesOf(folder)) {
      const stillThere = found.has(file.path) || refused.has(file.path) || unreadable.some((u) => isInside(u, this.#absolute(file.path)));
      file.missingSince = stillThere ? null : (file.missingSince ?? now);
    }
    let unsettled = false;
    for (const [path, f] of [...found].sort(([a], [b]) => a.localeCompare(b))) {
      const file = this.#files.get(path) ?? this.#track(path, folder);
      if (file.found?.fingerprint === f.fingerprint && !ctx.dirty.has(f.real)) {
        file.seen = null;
        continue;
      }
      if (!this.#settled(file, f, ctx, now)) {
        unsettled = true;
        continue;
      }
      file.found = f;
      file.seen = null;
      await this.#load(file);
    }
    if (unsettled) this.#scanWithin(folder, this.#stabilityMs);
    for (const file of this.#filesOf(folder)) {
      if (file.missingSince === null) continue;
      const waited = now - file.missingSince;
      if (ctx.initial || waited >= this.#graceMs) await this.#removeFile(file);
      else this.#scanWithin(folder, this.#graceMs - waited);
    }
    return unsettled;
  }

  #track(path: string, folder: WatchedFolder): TrackedFile {
    const file: TrackedFile = { path, folder, found: null, seen: null, missingSince: null, blockedOn: new Set() };
    this.#files.set(path, file);
    return file;
  }

  #filesOf(folder: WatchedFolder): TrackedFile[] {
    return [...this.#files.values()].filter((f) => f.folder === folder);
  }

  /** Storage's file sources at start: those in a watched folder are tracked until a scan decides. */
  async #trackStoredSources(): Promise<void> {
    const { storage, logger } = this.#opts;
    const all = await storage.listPolicies({ limit: 100_000, offset: 0 });
    const sources = new Set(all.policies.map((p) => p.source).filter((s): s is string => s !== null && s !== API_SOURCE));
    for (const source of sources) {
      const folder = this.#folderOf(source);
      if (folder !== undefined) this.#track(source, folder);
      // A file outside every watched folder (an older configuration) is removed only once it is gone.
      else if (!existsSync(this.#absolute(source))) {
        await storage.syncSource(source, []);
        logger.info({ file: source }, 'policy file is gone; its policies were removed');
      }
    }
  }

  #folderOf(source: string): WatchedFolder | undefined {
    const abs = this.#absolute(source);
    return this.#folders.find((f) => isInside(f.root, abs));
  }

  // ---- Folders out of sight --------------------------------------------------------------

  /** The folder is gone or unreadable: nothing in it is removed; it is reported and looked for. */
  async #degrade(folder: WatchedFolder, reason: string): Promise<void> {
    void this.#unwatch(folder);
    folder.rootId = null;
    // Its files are out of sight, not deleted: no grace period runs out while it is away.
    for (const file of this.#filesOf(folder)) file.missingSince = null;
    for (const path of folder.refused.keys()) if (this.#statuses.get(path)?.kind === 'entry') this.#statuses.delete(path);
    folder.refused.clear();
    const message = `the policy folder is ${reason}; its last good policies stay in force until it is back`;
    if (folder.unavailable === reason && this.#statuses.has(folder.display)) return;
    folder.unavailable = reason;
    const policies = await this.#namesUnder(folder);
    this.#statuses.set(folder.display, {
      path: folder.display,
      kind: 'folder',
      status: 'degraded',
      policies,
      errors: [fileProblem(folder.display, message)],
      checked_at: new Date().toISOString(),
      last_good_at: folder.lastGoodAt,
    });
    this.#opts.logger.warn({ dir: folder.display, reason, in_force: policies }, `policy folder ${folder.display} is ${reason}; its last good policies stay in force; looking for it every ${this.#pollMs} ms`);
  }

  #recover(folder: WatchedFolder): void {
    folder.unavailable = null;
    this.#statuses.delete(folder.display);
    // Whatever came back is read again: a recreated file may reuse an inode number and a size.
    for (const file of this.#filesOf(folder)) file.found = null;
    this.#opts.logger.info({ dir: folder.display }, `policy folder ${folder.display} is back; watching it again`);
  }

  async #namesUnder(folder: WatchedFolder): Promise<string[]> {
    try {
      const { policies } = await this.#opts.storage.listPolicies({ limit: 100_000, offset: 0 });
      return policies.filter((p) => p.source !== null && p.source !== API_SOURCE && this.#folderOf(p.source) === folder).map((p) => p.name).sort();
    } catch {
      return this.#filesOf(folder).flatMap((f) => this.#statuses.get(f.path)?.policies ?? []).sort();
    }
  }

  // ---- Watches ---------------------------------------------------------------------------

  /** Watches exactly the folders the scan listed; a folder recreated under the same path is watched anew. */
  async #watch(folder: WatchedFolder, dirs: FolderScan['dirs']): Promise<void> {
    if (this.#closed) return;
    const starting: Array<Promise<void>> = [];
    const wanted = new Map(dirs.map((d) => [d.real, d.id]));
    for (const [real, w] of folder.watchers) {
      if (wanted.get(real) === w.id) continue;
      void w.watcher.close();
      folder.watchers.delete(real);
    }
    for (const [real, id] of wanted) {
      if (folder.watchers.has(real)) continue;
      try {
        // chokidar only says that something in this folder changed: the scan that follows decides
        // what is read (hidden names, links and their targets, sizes). Hidden names are not ignored
        // here, so that the swap of a ConfigMap's ..data link still triggers a scan; links are not
        // followed, so a loop or a link out of the folder is never descended into.
        const watcher = watch(real, { persistent: true, depth: 0, followSymlinks: false, ignoreInitial: true });
        watcher.on('all', (_event, path) => this.#onEvent(folder, real, relative(real, path) || null));
        // Events flow once chokidar has listed the folder: wait for that (bounded), so a change
        // made right after this scan is not missed.
        starting.push(new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 2_000);
          watcher.once('ready', () => {
            clearTimeout(timer);
            resolve();
          });
        }));
        watcher.on('error', () => {
          void watcher.close();
          if (folder.watchers.get(real)?.watcher === watcher) folder.watchers.delete(real);
          this.#scanWithin(folder, this.#stabilityMs);
        });
        folder.watchers.set(real, { id, watcher });
      } catch (err) {
        // Out of inotify watches, say: changes are still found, by the periodic rescan.
        if (!folder.watchFailureLogged) {
          this.#opts.logger.warn({ dir: real, err }, `cannot watch ${real}; its changes are found by rescanning every ${this.#rescanMs} ms`);
          folder.watchFailureLogged = true;
        }
      }
    }
    await Promise.all(starting);
  }

  /** Stops watching a folder; resolves once its watchers have released their handles. */
  #unwatch(folder: WatchedFolder): Promise<void> {
    const closing = [...folder.watchers.values()].map((w) => w.watcher.close().catch(() => undefined));
    folder.watchers.clear();
    return Promise.all(closing).then(() => undefined);
  }

  // ---- Refused entries -------------------------------------------------------------------

  /**
   * Loops, links out of the folder and other refused entries are reported once (a status and a
   * log line) and cleared when they go. A known file that becomes one keeps its last good
   * policies in force, as a file that fails to parse does.
   */
  async #reportRefused(folder: WatchedFolder, scan: FolderScan): Promise<void> {
    const current = new Map(scan.refused.map((r) => [this.displayName(r.path), r.message]));
    for (const [path, message] of current) {
      const tracked = this.#files.get(path);
      // Read again once it is no longer refused, whatever its stat then says.
      if (tracked !== undefined) tracked.found = null;
      if (folder.refused.get(path) === message) continue;
      const prev = this.#statuses.get(path);
      const inForce = tracked === undefined ? [] : (prev?.policies ?? (await this.#namesInStorage(path)));
      folder.refused.set(path, message);
      this.#statuses.set(path, {
        path,
        kind: tracked === undefined ? 'entry' : 'file',
        status: 'error',
        policies: inForce,
        errors: [fileProblem(path, message)],
        checked_at: new Date().toISOString(),
        last_good_at: prev?.last_good_at ?? null,
      });
      const kept = inForce.length > 0 ? '; its last good policies stay in force' : '';
      this.#opts.logger.warn({ file: path, in_force: inForce }, `${path} ${message}${kept}`);
    }
    for (const path of [...folder.refused.keys()]) {
      if (current.has(path)) continue;
      folder.refused.delete(path);
      if (this.#statuses.get(path)?.kind === 'entry') this.#statuses.delete(path);
    }
  }

  // ---- Loading one file ------------------------------------------------------------------

  async #load(file: TrackedFile, handoff?: Handoff): Promise<void> {
    const found = file.found;
    // A file already being loaded higher up a hand-over chain is left to that load.
    if (found === null || this.#loading.has(file.path)) return;
    this.#loading.add(file.path);
    try {
      await this.#loadFound(file, found, handoff);
    } catch (err) {
      // Storage failed midway: read it again at the next scan, even if the file does not change.
      file.found = null;
      throw err;
    } finally {
      this.#loading.delete(file.path);
    }
  }

  async #loadFound(file: TrackedFile, found: FoundFile, handoff: Handoff | undefined): Promise<void> {
    const parsed = await this.#read(file.path, found);
    if (parsed === undefined) {
      // Changed under us (a ConfigMap swap, a rename): the next scan sees the new state.
      file.found = null;
      this.#scanWithin(file.folder, this.#stabilityMs);
      return;
    }
    if (parsed.problems.length > 0) {
      file.blockedOn = new Set();
      await this.#reject(file.path, parsed.problems);
      return;
    }
    const names = await this.#checkNames(file.path, parsed.policies, handoff);
    file.blockedOn = names.blockedOn;
    if (names.problems.length > 0) {
      await this.#reject(file.path, names.problems);
      return;
    }
    // Names this version no longer defines go to files waiting for them before this version is
    // stored (which would delete them), so they keep their ids.
    const wanted = new Set(parsed.policies.map((p) => p.name));
    const dropped = (await this.#namesInStorage(file.path)).filter((n) => !wanted.has(n));
    await this.#handOver(file.path, dropped, wanted);
    await this.#store(file.path, parsed.policies, names.adoptFrom);
  }

  /** Reads and parses a file within the size limit; undefined when it changed while being read. */
  async #read(path: string, found: FoundFile): Promise<ParsedFile | undefined> {
    // Refused from its stat alone: a huge file is never opened, let alone parsed.
    if (found.size > this.#maxBytes) return { file: path, policies: [], problems: [fileProblem(path, tooLargeMessage(found.size, this.#maxBytes))] };
    // The real path the scan resolved (inside the folder) is read, and not if it became a symlink since.
    const read = await readPolicyFileText(found.real, { maxBytes: this.#maxBytes, noFollow: true });
    if (!read.ok) {
      if (read.code !== undefined && CHANGED_WHILE_READING.has(read.code)) return undefined;
      return { file: path, policies: [], problems: [fileProblem(path, read.message)] };
    }
    // Written to since the scan, or while being read: the text may be torn; the next scan reads it whole.
    if (read.changedWhileReading || fingerprintOf(found.real, read.stat) !== found.fingerprint) return undefined;
    try {
      return parsePolicyText(path, read.text, (input, source) => this.#opts.policies.parse(input, { source }));
    } catch (err) {
      // Not a problem in the file but a bug in checking it: still reported as a broken file (the
      // last good policies stay in force), never silently dropped.
      this.#opts.logger.error({ file: path, err }, 'policy file could not be checked (internal error)');
      return { file: path, policies: [], problems: [fileProblem(path, `could not be checked (internal error): ${(err as Error).message}`)] };
    }
  }

  /**
   * Names must be unique across files and API policies. A name held by a file that is gone (a
   * rename) or that is handing it over moves here with its id; a name another file still holds
   * blocks this file until it is freed.
   */
  async #checkNames(path: string, policies: Policy[], handoff: Handoff | undefined): Promise<{ problems: FileProblem[]; adoptFrom: string[]; blockedOn: Set<string> }> {
    const problems: FileProblem[] = [];
    const adoptFrom = new Set<string>();
    const blockedOn = new Set<string>();
    for (const { name } of policies) {
      if (handoff?.reserved.has(name) === true) {
        blockedOn.add(name);
        problems.push(fileProblem(path, `"${name}" is already defined in ${handoff.from}`, '/name'));
        continue;
      }
      const owner = (await this.#opts.storage.getPolicyByName(name))?.source;
      if (owner === undefined || owner === path) continue;
      if (owner === null || owner === API_SOURCE) {
        blockedOn.add(name);
        problems.push(fileProblem(path, `"${name}" is already used by a policy managed over the API`, '/name'));
      } else if ((handoff?.from === owner && handoff.released.has(name)) || !this.#holds(owner)) {
        adoptFrom.add(owner);
      } else {
        blockedOn.add(name);
        problems.push(fileProblem(path, `"${name}" is already defined in ${owner}`, '/name'));
      }
    }
    return { problems, adoptFrom: [...adoptFrom], blockedOn };
  }

  /** Whether a file source still holds its policies' names. */
  #holds(source: string): boolean {
    const tracked = this.#files.get(source);
    if (tracked !== undefined) return tracked.missingSince === null;
    // Under a watched folder yet not tracked: a scan did not find it.
    if (this.#folderOf(source) !== undefined) return false;
    return existsSync(this.#absolute(source));
  }

  async #store(path: string, policies: Policy[], adoptFrom: string[]): Promise<void> {
    const { storage, logger } = this.#opts;
    try {
      await storage.syncSource(path, policies, { adoptFrom });
    } catch (err) {
      logger.error({ file: path, err }, 'policy file could not be stored');
      await this.#reject(path, [fileProblem(path, `could not store the policies: ${(err as Error).message}`)], false);
      return;
    }
    const now = new Date().toISOString();
    const status: SourceStatus = { path, kind: 'file', status: 'ok', policies: policies.map((p) => p.name), errors: [], checked_at: now, last_good_at: now };
    this.#statuses.set(path, status);
    logger.info({ file: path, policies: status.policies }, `policy file ${path} loaded (${status.policies.length} ${status.policies.length === 1 ? 'policy' : 'policies'})`);
    this.#opts.onReload?.(status);
  }

  /** A file's current version is not applied: its last good policies stay in force. */
  async #reject(path: string, problems: FileProblem[], log = true): Promise<void> {
    const prev = this.#statuses.get(path);
    const status: SourceStatus = {
      path,
      kind: 'file',
      status: 'error',
      policies: prev?.policies ?? (await this.#namesInStorage(path)),
      errors: problems,
      checked_at: new Date().toISOString(),
      last_good_at: prev?.last_good_at ?? null,
    };
    this.#statuses.set(path, status);
    if (log) {
      this.#opts.logger.warn(
        { file: path, problems: problems.length, in_force: status.policies },
        `policy file ${path} rejected; its last good policies stay in force:\n${problems.map(formatProblem).join('\n')}`,
      );
    }
    this.#opts.onReload?.(status);
  }

  // ---- Removal and take-over -------------------------------------------------------------

  /** A file gone for good: files waiting for its names take them (keeping their ids); the rest is removed. */
  async #removeFile(file: TrackedFile): Promise<void> {
    const { storage, logger } = this.#opts;
    this.#files.delete(file.path);
    try {
      await this.#handOver(file.path, await this.#namesInStorage(file.path), new Set());
      await storage.syncSource(file.path, []);
    } catch (err) {
      this.#orphans.add(file.path);
      logger.error({ file: file.path, err }, 'could not remove the policies of a deleted file; will retry at the next scan');
      return;
    }
    this.#orphans.delete(file.path);
    this.#statuses.delete(file.path);
    logger.info({ file: file.path }, 'policy file removed; its policies were removed (history stays)');
    this.#opts.onReload?.({ path: file.path, status: 'removed' });
  }

  async #handOver(from: string, names: string[], reserved: ReadonlySet<string>): Promise<void> {
    if (names.length === 0) return;
    const released = new Set(names);
    for (const other of this.#waitingFiles()) {
      if (other.path !== from && [...other.blockedOn].some((n) => released.has(n))) await this.#load(other, { from, released, reserved });
    }
  }

  /** Files blocked on a name whose holder has gone (or that nobody holds any more) try again. */
  async #retryBlocked(): Promise<void> {
    for (const file of this.#waitingFiles()) {
      if (await this.#anyNameFreed(file)) await this.#load(file);
    }
  }

  #waitingFiles(): TrackedFile[] {
    return [...this.#files.values()]
      .filter((f) => f.blockedOn.size > 0 && f.found !== null && f.missingSince === null)
      .sort((a, b) => a.path.localeCompare(b.path));
  }

  async #anyNameFreed(file: TrackedFile): Promise<boolean> {
    for (const name of file.blockedOn) {
      const owner = (await this.#opts.storage.getPolicyByName(name))?.source;
      if (owner === undefined || owner === file.path) return true;
      if (owner !== null && owner !== API_SOURCE && !this.#holds(owner)) return true;
    }
    return false;
  }

  async #retryOrphans(): Promise<void> {
    for (const source of [...this.#orphans]) {
      if (this.#files.has(source)) {
        this.#orphans.delete(source);
        continue;
      }
      try {
        await this.#opts.storage.syncSource(source, []);
        this.#orphans.delete(source);
        this.#statuses.delete(source);
        this.#opts.onReload?.({ path: source, status: 'removed' });
      } catch {
        // Still failing: logged when it first failed; tried again at the next scan.
      }
    }
  }

  async #namesInStorage(source: string): Promise<string[]> {
    const { policies } = await this.#opts.storage.listPolicies({ limit: 10_000, offset: 0, source });
    return policies.map((p) => p.name);
  }
}

/** Configured folders, each once; a folder inside another is already watched as part of it. */
function distinctFolders(roots: string[]): string[] {
  const unique = [...new Set(roots)];
  return unique.filter((r) => !unique.some((o) => o !== r && isInside(o, r)));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
