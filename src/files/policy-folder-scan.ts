import { lstatSync, readdirSync, realpathSync, statSync, type Stats } from 'node:fs';
import { join, sep } from 'node:path';

/** Names of policy files: `*.yaml` and `*.yml`. */
export const POLICY_FILE = /\.ya?ml$/i;

// Deeper real nesting than this is refused rather than walked (a bind mount of a parent folder
// would otherwise be walked until the path is too long).
const MAX_DEPTH = 32;

/** A policy file found in a folder. */
export interface FoundFile {
  /** The path it is seen under: the root as given, joined with the names walked (a symlink's own path). */
  path: string;
  /** Its real path (symlinks resolved): what is read. */
  real: string;
  size: number;
  /** Identity and version of what would be read; any change means the file must be read again. */
  fingerprint: string;
}

/** An entry the scan refused to follow or read: reported, never read. */
export interface RefusedEntry {
  path: string;
  message: string;
}

/** One folder as it is now; the daemon's watcher and `validate` both see folders through this. */
export interface FolderScan {
  /** Why the folder itself could not be listed (missing, not a folder, no permission); null when it could. */
  unavailable: string | null;
  files: FoundFile[];
  refused: RefusedEntry[];
  /** Every folder listed, by real path, with its identity: these are the folders to watch. */
  dirs: Array<{ real: string; id: string }>;
  /** Subfolders that could not be listed: what they hold is unknown, not gone. */
  unreadable: string[];
}

/** True when `path` is `dir` or lies inside it (both real paths). */
export function isInside(dir: string, path: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/** Entries a scan never reads nor enters: hidden ones (editor swap files, ConfigMap `..data`), node_modules. */
export function isSkippedName(name: string): boolean {
  return name.startsWith('.') || name === 'node_modules';
}

const identity = (st: Stats): string => `${st.dev}:${st.ino}`;
/** Identity and version of a file as a string: equal only if nothing about it changed. */
export function fingerprintOf(real: string, st: Stats): string {
  return `${real}|${identity(st)}|${st.size}|${st.mtimeMs}|${st.ctimeMs}`;
}
const errorCode = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

interface DirToWalk {
  /** Path as seen (under the root as given). */
  path: string;
  real: string;
  depth: number;
  /** Reached through a symlink: its files lose to the same file seen without one. */
  linked: boolean;
}

/**
 * Lists the policy files of a folder by the rules of docs/faults.md: hidden entries are skipped; a symlink is followed only when its real path lies
 * inside the folder; loops and links out of the folder are refused; each real file is seen once
 * (under its own name when it is reachable without a link) and each real folder is walked once,
 * so the walk is bounded whatever the links.
 *
 * Synchronous on purpose: `validate` and the policy-test runner call it synchronously, and one
 * walker keeps them in step with the daemon. It stats entries and never reads a file.
 */
export function scanPolicyFolder(root: string): FolderScan {
  const scan: FolderScan = { unavailable: null, files: [], refused: [], dirs: [], unreadable: [] };
  let rootReal: string;
  try {
    rootReal = realpathSync(root);
    const st = statSync(rootReal);
    if (!st.isDirectory()) return { ...scan, unavailable: 'not a folder' };
  } catch (err) {
    return { ...scan, unavailable: describeMissing(err) };
  }
  const walker = new FolderWalker(rootReal, scan);
  walker.walk({ path: root, real: rootReal, depth: 0, linked: false });
  if (scan.unavailable === null) scan.files = walker.chosenFiles();
  return scan;
}

function describeMissing(err: unknown): string {
  const code = errorCode(err);
  if (code === 'ENOENT') return 'missing (ENOENT)';
  if (code === 'EACCES' || code === 'EPERM') return `not readable (${code})`;
  return `cannot be read (${code})`;
}

/** The state of one scan: real folders already walked, and the candidate files by real path. */
class FolderWalker {
  readonly #rootReal: string;
  readonly #scan: FolderScan;
  readonly #walked = new Set<string>();
  /** Folders reached through symlinks, walked after every real folder so real paths win. */
  readonly #linkedDirs: Array<{ path: string; real: string; parentReal: string; depth: number }> = [];
  readonly #byReal = new Map<string, FoundFile & { linked: boolean }>();

  constructor(rootReal: string, scan: FolderScan) {
    this.#rootReal = rootReal;
    this.#scan = scan;
  }

  walk(first: DirToWalk): void {
    this.#walkDir(first);
    // A folder link is entered only if nothing walked so far is that folder; one leading back to a
    // folder that contains it is a loop.
    // (An array iterator sees entries pushed while it runs: links found inside linked folders.)
    for (const link of this.#linkedDirs) {
      if (isInside(link.real, link.parentReal)) this.#refuse(link.path, 'is a symlink loop (it leads back to a folder that contains it); not followed');
      else if (!this.#walked.has(link.real)) this.#walkDir({ path: link.path, real: link.real, depth: link.depth, linked: true });
    }
  }

  /** One file per real path: the one seen without a link, else the first seen. */
  chosenFiles(): FoundFile[] {
    return [...this.#byReal.values()].map(({ linked: _linked, ...file }) => file);
  }

  #walkDir(dir: DirToWalk): void {
    this.#walked.add(dir.real);
    let names: string[];
    try {
      names = readdirSync(dir.path).sort();
      this.#scan.dirs.push({ real: dir.real, id: identity(statSync(dir.real)) });
    } catch (err) {
      if (dir.depth === 0) this.#scan.unavailable = describeMissing(err);
      else this.#scan.unreadable.push(dir.path);
      return;
    }
    for (const name of names) {
      if (!isSkippedName(name)) this.#visit(join(dir.path, name), name, dir);
    }
  }

  #visit(path: string, name: string, parent: DirToWalk): void {
    let st: Stats;
    try {
      st = lstatSync(path);
    } catch {
      return; // gone since the folder was listed
    }
    if (st.isSymbolicLink()) {
      this.#visitLink(path, name, parent);
      return;
    }
    const real = join(parent.real, name);
    if (st.isDirectory()) this.#enterDir(path, real, parent);
    else if (POLICY_FILE.test(name)) this.#addFile(path, real, st, parent.linked);
  }

  #visitLink(path: string, name: string, parent: DirToWalk): void {
    let real: string;
    let st: Stats;
    try {
      real = realpathSync(path);
      st = statSync(real);
    } catch (err) {
      const code = errorCode(err);
      if (code === 'ELOOP') this.#refuse(path, 'is a symlink loop; not followed');
      // A dangling link is no file (as during a ConfigMap update, before the kubelet removes it).
      else if (code !== 'ENOENT') this.#refuse(path, `is a symlink that cannot be resolved (${code}); not followed`);
      return;
    }
    const relevant = st.isDirectory() || POLICY_FILE.test(name);
    if (!isInside(this.#rootReal, real)) {
      if (relevant) this.#refuse(path, `is a symlink to ${real}, outside the policy folder; not followed`);
      return;
    }
    if (st.isDirectory()) this.#linkedDirs.push({ path, real, parentReal: parent.real, depth: parent.depth + 1 });
    else if (POLICY_FILE.test(name)) this.#addFile(path, real, st, true);
  }

  #enterDir(path: string, real: string, parent: DirToWalk): void {
    // Only a folder entered through a link can lead to one walked already; its files are known.
    if (this.#walked.has(real)) return;
    if (parent.depth + 1 > MAX_DEPTH) {
      this.#refuse(path, `is nested more than ${MAX_DEPTH} folders deep; not read`);
      return;
    }
    this.#walkDir({ path, real, depth: parent.depth + 1, linked: parent.linked });
  }

  #addFile(path: string, real: string, st: Stats, linked: boolean): void {
    // Reading a FIFO or a device would block or never end.
    if (!st.isFile()) {
      this.#refuse(path, 'is not a regular file; not read');
      return;
    }
    const seen = this.#byReal.get(real);
    if (seen !== undefined && !(seen.linked && !linked)) return;
    if (seen !== undefined) this.#byReal.delete(real); // keeps walk order for the rest
    this.#byReal.set(real, { path, real, size: st.size, fingerprint: fingerprintOf(real, st), linked });
  }

  #refuse(path: string, message: string): void {
    this.#scan.refused.push({ path, message });
  }
}
