import { existsSync, statSync } from 'node:fs';
import { isAbsolute, relative, resolve } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import type { PolicyService } from '../policy/policy-service.js';
import { API_SOURCE } from '../policy/policy-model.js';
import type { Storage } from '../storage/storage.js';
import { Mutex } from '../util/async.js';
import { formatProblem, parsePolicyFile, type FileProblem, type ParsedFile } from './policy-file.js';

/** A policy file as the daemon last saw it; served at GET /api/v1/scaling/sources. */
export interface SourceStatus {
  path: string;
  status: 'ok' | 'error';
  /** Names of the policies in force from this file (the last good version when status is error). */
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
  /** How long a file must stay unchanged before it is read (half-written files are never read). */
  stabilityMs?: number;
  cwd?: string;
  onReload?: (status: SourceStatus | { path: string; status: 'removed' }) => void;
}

const POLICY_FILE = /\.ya?ml$/i;

/**
 * Keeps storage in step with the policy files in the watched folders (DESIGN.md "Policy files").
 * A file's policies are swapped in one transaction; a file that fails keeps its last good
 * policies in force; removing a file removes its policies (their history stays).
 */
export class PolicyFileLoader {
  readonly #opts: PolicyFileLoaderOptions;
  readonly #cwd: string;
  readonly #statuses = new Map<string, SourceStatus>();
  readonly #lock = new Mutex();
  readonly #pending = new Map<string, NodeJS.Timeout>();
  #watcher: FSWatcher | undefined;

  constructor(opts: PolicyFileLoaderOptions) {
    this.#opts = opts;
    this.#cwd = opts.cwd ?? process.cwd();
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

  /** Loads every file now, removes policies of files that vanished while stopped, then watches. */
  async start(): Promise<void> {
    const dirs = this.#opts.dirs.map((d) => resolve(this.#cwd, d));
    if (dirs.length === 0) {
      // Nothing to watch (policies come only from the API); chokidar would never report ready.
      await this.#lock.run(() => this.#removeVanished());
      this.#opts.logger.info('no policy folders configured; policies come from the API only');
      return;
    }
    for (const d of dirs) {
      if (!existsSync(d)) this.#opts.logger.warn({ dir: d }, 'policy folder does not exist; watching for it to appear');
    }
    const initial: string[] = [];
    const stability = this.#opts.stabilityMs ?? 150;
    const watcher = watch(dirs, {
      ignoreInitial: false,
      persistent: true,
      atomic: true,
      ignored: (path, stats) => stats?.isFile() === true && !POLICY_FILE.test(path),
      awaitWriteFinish: { stabilityThreshold: stability, pollInterval: Math.max(10, Math.floor(stability / 4)) },
    });
    this.#watcher = watcher;
    let ready = false;
    await new Promise<void>((resolveReady, reject) => {
      watcher.on('add', (p) => (ready ? this.#schedule(p, 25) : initial.push(p)));
      watcher.on('change', (p) => this.#schedule(p, 25));
      // Removals wait a little longer than the write-finish delay, so that in a rename the new
      // file is loaded first and takes its policies (and their ids and history) along.
      watcher.on('unlink', (p) => this.#schedule(p, stability + 150));
      watcher.on('error', (err) => this.#opts.logger.error({ err }, 'policy folder watcher error'));
      watcher.once('ready', () => {
        ready = true;
        resolveReady();
      });
      watcher.once('error', reject);
    });
    await this.#lock.run(async () => {
      for (const p of initial.filter((f) => POLICY_FILE.test(f)).sort()) await this.#load(p);
      await this.#removeVanished();
    });
    this.#opts.logger.info(
      { files: this.#statuses.size, broken: this.statuses().filter((s) => s.status === 'error').length },
      `policy files loaded from ${this.#opts.dirs.join(', ')}`,
    );
  }

  /** Debounces events per file; a burst of writes becomes one reload. */
  #schedule(path: string, delayMs: number): void {
    if (!POLICY_FILE.test(path)) return;
    const prev = this.#pending.get(path);
    if (prev !== undefined) clearTimeout(prev);
    this.#pending.set(
      path,
      setTimeout(() => {
        this.#pending.delete(path);
        // The lock swallows a rejection (it keeps its queue going), so an unexpected error is logged here.
        this.#lock
          .run(() => (existsSync(path) && statSync(path).isFile() ? this.#load(path) : this.#remove(path)))
          .catch((err: unknown) => this.#opts.logger.error({ file: path, err }, 'policy file reload failed; will retry on the next change'));
      }, delayMs),
    );
  }

  /** Waits until no reload is pending or running (tests and shutdown). */
  async settle(): Promise<void> {
    while (this.#pending.size > 0) await new Promise((r) => setTimeout(r, 10));
    await this.#lock.run(() => undefined);
  }

  async #removeVanished(): Promise<void> {
    const { storage } = this.#opts;
    const all = await storage.listPolicies({ limit: 100_000, offset: 0 });
    const sources = new Set(all.policies.map((p) => p.source).filter((s) => s !== API_SOURCE));
    for (const source of sources) {
      if (!this.#statuses.has(source) && !existsSync(this.#absolute(source))) {
        await storage.syncSource(source, []);
        this.#opts.logger.info({ file: source }, 'policy file is gone; its policies were removed');
      }
    }
  }

  async #remove(abs: string): Promise<void> {
    const path = this.displayName(abs);
    try {
      await this.#opts.storage.syncSource(path, []);
      this.#statuses.delete(path);
      this.#opts.logger.info({ file: path }, 'policy file removed; its policies were removed (history stays)');
      this.#opts.onReload?.({ path, status: 'removed' });
    } catch (err) {
      this.#opts.logger.error({ file: path, err }, 'could not remove the policies of a deleted file; will retry on the next change');
    }
  }

  async #load(abs: string): Promise<void> {
    const { storage, policies: service, logger } = this.#opts;
    const path = this.displayName(abs);
    const now = new Date().toISOString();
    const prev = this.#statuses.get(path);
    let parsed: ParsedFile;
    try {
      parsed = await parsePolicyFile(abs, (input, source) => service.parse(input, { source }), path);
    } catch (err) {
      // Not a problem in the file but a bug in checking it: still reported as a broken file (the
      // last good policies stay in force), never silently dropped.
      logger.error({ file: path, err }, 'policy file could not be checked (internal error)');
      parsed = {
        file: path,
        policies: [],
        problems: [{ file: path, line: null, column: null, document: null, field: '', message: `could not be checked (internal error): ${(err as Error).message}` }],
      };
    }
    const problems = [...parsed.problems];

    // Names must be unique across files and API policies; a file that moved (renamed) takes its names along.
    const moved = new Set<string>();
    if (problems.length === 0) {
      for (const p of parsed.policies) {
        const existing = await storage.getPolicyByName(p.name);
        if (existing === undefined || existing.source === path) continue;
        if (existing.source === API_SOURCE) {
          problems.push({ file: path, line: null, column: null, document: null, field: '/name', message: `"${p.name}" is already used by a policy managed over the API` });
        } else if (existsSync(this.#absolute(existing.source))) {
          problems.push({ file: path, line: null, column: null, document: null, field: '/name', message: `"${p.name}" is already defined in ${existing.source}` });
        } else moved.add(existing.source);
      }
    }

    if (problems.length > 0) {
      const status: SourceStatus = {
        path,
        status: 'error',
        policies: prev?.policies ?? (await this.#namesInStorage(path)),
        errors: problems,
        checked_at: now,
        last_good_at: prev?.last_good_at ?? null,
      };
      this.#statuses.set(path, status);
      logger.warn(
        { file: path, problems: problems.length, in_force: status.policies },
        `policy file ${path} rejected; its last good policies stay in force:\n${problems.map(formatProblem).join('\n')}`,
      );
      this.#opts.onReload?.(status);
      return;
    }
    try {
      await storage.syncSource(path, parsed.policies, { adoptFrom: [...moved] });
    } catch (err) {
      const status: SourceStatus = {
        path,
        status: 'error',
        policies: prev?.policies ?? [],
        errors: [{ file: path, line: null, column: null, document: null, field: '', message: `could not store the policies: ${(err as Error).message}` }],
        checked_at: now,
        last_good_at: prev?.last_good_at ?? null,
      };
      this.#statuses.set(path, status);
      logger.error({ file: path, err }, 'policy file could not be stored');
      this.#opts.onReload?.(status);
      return;
    }
    const status: SourceStatus = { path, status: 'ok', policies: parsed.policies.map((p) => p.name), errors: [], checked_at: now, last_good_at: now };
    this.#statuses.set(path, status);
    logger.info({ file: path, policies: status.policies }, `policy file ${path} loaded (${status.policies.length} ${status.policies.length === 1 ? 'policy' : 'policies'})`);
    this.#opts.onReload?.(status);
  }

  async #namesInStorage(source: string): Promise<string[]> {
    const { policies } = await this.#opts.storage.listPolicies({ limit: 10_000, offset: 0, source });
    return policies.map((p) => p.name);
  }

  async close(): Promise<void> {
    for (const t of this.#pending.values()) clearTimeout(t);
    this.#pending.clear();
    await this.#watcher?.close();
    await this.#lock.run(() => undefined);
  }
}
