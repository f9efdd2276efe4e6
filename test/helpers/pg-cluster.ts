import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './daemon-process.js';

const run = promisify(execFile);

/**
 * A private PostgreSQL cluster for tests that take the database down (outages, restarts). The
 * shared server on :5432 is used by other tests in parallel and must never be stopped; this one
 * lives in a temp folder, listens on its own port and socket folder, and is only ours.
 */
export interface PgCluster {
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** Whether the server is believed to be running. */
  readonly running: boolean;
  /** Stops the server: `fast` (default) terminates open sessions cleanly, `immediate` is a crash. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  restart(): Promise<void>;
  /** Stops the server if it runs and removes its folder; safe to call twice. */
  destroy(): Promise<void>;
  /** A URL to another database of this cluster. */
  urlFor(database: string): string;
}

/** The PostgreSQL binaries: PG_BIN, else `pg_config --bindir`, else the Debian path of 15. */
export function pgBinDir(): string {
  const fromEnv = process.env['PG_BIN'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const debian = '/usr/lib/postgresql/15/bin';
  if (existsSync(join(debian, 'initdb'))) return debian;
  try {
    return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
  } catch {
    return debian;
  }
}

// initdb refuses to run as root: as root, run the PostgreSQL tools as the `postgres` OS user.
const asRoot = process.getuid?.() === 0;

function command(bin: string, args: string[]): [string, string[]] {
  const path = join(pgBinDir(), bin);
  return asRoot ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, args];
}

async function pgTool(bin: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const [cmd, argv] = command(bin, args);
  try {
    const { stdout } = await run(cmd, argv, { timeout: timeoutMs, encoding: 'utf8' });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${bin} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`, { cause: err });
  }
}

function ownerIds(): { uid: number; gid: number } | undefined {
  if (!asRoot) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

/** Clusters not yet destroyed; stopped at process exit if a test crashed past its teardown. */
const live = new Set<string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const data of live) {
      const [cmd, argv] = command('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      spawnSync(cmd, argv, { stdio: 'ignore', timeout: 10_000 });
    }
  });
}

/**
 * Creates a cluster in a temp folder (initdb, trust auth, user postgres) and starts it on `port`
 * (default: a free one), listening on 127.0.0.1 only, its socket in the temp folder.
 */
export async function startPgCluster(port?: number): Promise<PgCluster> {
  const chosen = port ?? (await freePort());
  const dir = await mkdtemp(join(tmpdir(), 'philotes-pg-'));
  const data = join(dir, 'data');
  const sockets = join(dir, 'sock');
  const log = join(dir, 'postgres.log');
  await mkdir(sockets);
  const ids = ownerIds();
  if (ids !== undefined) {
    await chown(dir, ids.uid, ids.gid);
    await chown(sockets, ids.uid, ids.gid);
  }
  await pgTool('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '--no-instructions', '-E', 'UTF8', '--locale=C']);
  installExitHook();
  live.add(data);

  let running = false;
  const options = [`-p ${chosen}`, `-k ${sockets}`, '-c listen_addresses=127.0.0.1', '-c fsync=off', '-c full_page_writes=off'].join(' ');
  const startServer = async (): Promise<void> => {
    await pgTool('pg_ctl', ['-D', data, '-l', log, '-o', options, '-w', '-t', '60', 'start']);
    running = true;
  };
  const stopServer = async (mode: 'fast' | 'immediate' = 'fast'): Promise<void> => {
    await pgTool('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop']);
    running = false;
  };
  try {
    await startServer();
  } catch (err) {
    live.delete(data);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const urlFor = (database: string): string => `postgres://postgres@127.0.0.1:${chosen}/${database}`;
  let destroyed = false;
  return {
    url: urlFor('postgres'),
    port: chosen,
    dir,
    get running() {
      return running;
    },
    stop: (mode) => stopServer(mode),
    start: startServer,
    async restart() {
      if (running) await stopServer('fast');
      await startServer();
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      try {
        if (running) await pgTool('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '30', 'stop']);
      } catch {
        // Already stopped, or never came up: the folder goes anyway.
      }
      running = false;
      live.delete(data);
      await rm(dir, { recursive: true, force: true });
    },
    urlFor,
  };
}

/** The brief's name for it: start(port?) → a running private cluster. */
export { startPgCluster as start };
