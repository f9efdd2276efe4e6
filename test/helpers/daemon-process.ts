import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is test/helpers/daemon-process.ts). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** tsx's loader, by URL: `--import tsx` would be resolved from the daemon's (temp) cwd. */
const TSX_LOADER = import.meta.resolve('tsx');

/** A free TCP port on 127.0.0.1 (asked of the kernel, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

/** One line of the daemon's JSON log (pino); `raw` holds a line that was not JSON. */
export interface LogLine {
  level?: number;
  time?: number;
  msg?: string;
  raw?: string;
  [key: string]: unknown;
}

export interface DaemonOptions {
  /** A label for messages and t.comment lines. */
  name?: string;
  /** Extra environment (DATABASE_URL, PHILOTES_SCALING_EVALUATION_INTERVAL, ...); wins over the defaults. */
  env?: Record<string, string>;
  /** Working directory; default a fresh temp folder removed by destroy(). */
  cwd?: string;
  /** How long to wait for /healthz (default 30 s). */
  readyTimeoutMs?: number;
  /** false: return as soon as the process is spawned (to signal it during start-up). Default true. */
  waitHealthy?: boolean;
  /**
   * A command, with its arguments, that the daemon's node process is started through and that
   * replaces itself with it (such as `setpriv …`), so the daemon keeps its pid and signals.
   */
  via?: string[];
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface DaemonProcess {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** http://127.0.0.1:<port>/api/v1/scaling */
  readonly api: string;
  readonly cwd: string;
  readonly child: ChildProcess;
  /** Set once the process has exited and its output is read. */
  readonly exit: ExitInfo | undefined;
  /** Every log line so far. */
  logs(): LogLine[];
  /** What the process wrote to stderr. */
  stderr(): string;
  /** Resolves with the first log line (already seen or future) that matches. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  kill(signal?: NodeJS.Signals): void;
  /** Resolves when the process has exited and its output is closed. */
  waitExit(timeoutMs?: number): Promise<ExitInfo>;
  /** SIGKILLs the process if it still runs, waits for it and removes its temp folders. */
  destroy(): Promise<void>;
}

/** Children not yet reaped: SIGKILLed at process exit if a test crashed past its teardown. */
const children = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of children) {
      try {
        c.kill('SIGKILL');
      } catch {
        // gone
      }
    }
  });
}

// Variables of the developer's or CI's shell that would change what the daemon does.
const SCRUBBED = /^(PORT|HOST|LOG_LEVEL|DATABASE_URL|PHILOTES_.*|NODE_OPTIONS|NODE_V8_COVERAGE|TAP|TAP_.*)$/;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Spawns `node --import tsx src/cli.ts serve` with its own temp cwd, a free PORT, LOG_LEVEL info,
 * an empty policy folder, and a Prometheus URL where nothing listens, plus `opts.env`; collects
 * its JSON log lines and resolves once GET /healthz answers 200. Rejects (with the output) if the
 * process exits first.
 */
export async function spawnDaemon(opts: DaemonOptions = {}): Promise<DaemonProcess> {
  installExitHook();
  const name = opts.name ?? 'daemon';
  const ownCwd = opts.cwd === undefined;
  const cwd = opts.cwd ?? (await mkdtemp(join(tmpdir(), `philotes-daemon-${name}-`)));
  const policyDir = join(cwd, 'empty-policies');
  await mkdir(policyDir, { recursive: true });
  await mkdir(join(cwd, 'data'), { recursive: true });
  const deadPrometheus = await freePort();

  // A port can be taken between freePort() and the daemon's bind: try again with another one.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !SCRUBBED.test(k)) env[k] = v;
    Object.assign(
      env,
      {
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
        PHILOTES_SCALING_POLICY_DIRS: policyDir,
        PHILOTES_SCALING_PROMETHEUS_URL: `http://127.0.0.1:${deadPrometheus}`,
        PHILOTES_SCALING_DATABASE_PATH: join(cwd, 'data', 'philotes-scaler.db'),
        // tap follows child processes and records their coverage. A daemon runs the sources
        // through tsx, whose output differs from tap's own TypeScript loader; merging the two
        // maps of one file made the coverage report count whole files as one statement, in an
        // order-dependent (flaky) way. The daemons' code is covered by the in-process tests.
        _TAPJS_PROCESSINFO_COVERAGE_: '0',
      },
      opts.env ?? {},
    );
    const daemon = launch(name, port, cwd, env, ownCwd, opts.via ?? []);
    if (opts.waitHealthy === false) return daemon.handle;
    try {
      await daemon.waitHealthy(opts.readyTimeoutMs ?? 30_000);
      return daemon.handle;
    } catch (err) {
      const inUse = daemon.handle.exit !== undefined && /already in use/.test(daemon.handle.stderr());
      if (!inUse || attempt >= 3) {
        await daemon.handle.destroy();
        throw err;
      }
    }
  }
}

function launch(name: string, port: number, cwd: string, env: Record<string, string>, ownCwd: boolean, via: readonly string[]) {
  const args = ['--import', TSX_LOADER, join(REPO_ROOT, 'src', 'cli.ts'), 'serve'];
  const [command, ...wrapper] = via.length > 0 ? [...via, process.execPath] : [process.execPath];
  const child = spawn(command as string, [...wrapper, ...args], {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const lines: LogLine[] = [];
  const waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  let stderr = '';
  let exit: ExitInfo | undefined;
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  rl.on('line', (text) => {
    let line: LogLine;
    try {
      const parsed: unknown = JSON.parse(text);
      line = typeof parsed === 'object' && parsed !== null ? (parsed as LogLine) : { raw: text };
    } catch {
      line = { raw: text };
    }
    lines.push(line);
    for (const w of [...waiters]) {
      if (w.match(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const closed = new Promise<ExitInfo>((resolveExit) => {
    child.once('close', (code, signal) => {
      exit = { code, signal };
      children.delete(child);
      resolveExit(exit);
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const describe = (): string =>
    `${name} (pid ${child.pid}): exit ${JSON.stringify(exit)}\nstderr:\n${stderr}\nlast log lines:\n${lines
      .slice(-15)
      .map((l) => JSON.stringify(l))
      .join('\n')}`;

  const handle: DaemonProcess = {
    name,
    pid: child.pid ?? -1,
    port,
    url,
    api: `${url}/api/v1/scaling`,
    cwd,
    child,
    get exit() {
      return exit;
    },
    logs: () => [...lines],
    stderr: () => stderr,
    waitForLog(match, timeoutMs = 15_000) {
      const seen = lines.find(match);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<LogLine>((resolveLine, reject) => {
        const w = {
          match,
          resolve: (l: LogLine) => {
            clearTimeout(timer);
            resolveLine(l);
          },
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no matching log line within ${timeoutMs} ms from ${describe()}`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
    kill(signal = 'SIGTERM') {
      if (exit === undefined) child.kill(signal);
    },
    async waitExit(timeoutMs = 30_000) {
      let timer: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([
          closed,
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`${name} did not exit within ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
      } finally {
        clearTimeout(timer);
      }
    },
    async destroy() {
      if (exit === undefined) {
        child.kill('SIGKILL');
        await closed;
      }
      if (ownCwd) await rm(cwd, { recursive: true, force: true });
    },
  };

  const waitHealthy = async (timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (exit !== undefined) throw new Error(`daemon exited before it was healthy: ${describe()}`);
      try {
        const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) });
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`daemon not healthy within ${timeoutMs} ms: ${describe()}`);
  };
  return { handle, waitHealthy };
}

/** GET /readyz: its status and JSON body. */
export async function readyz(d: Pick<DaemonProcess, 'url'>, timeoutMs = 5_000): Promise<{ status: number; body: ReadyzBody }> {
  const res = await fetch(`${d.url}/readyz`, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: (await res.json()) as ReadyzBody };
}

export interface ReadyzBody {
  status: string;
  checks: Record<string, { ok: boolean; error?: string; role?: string; [k: string]: unknown }>;
}

/** The evaluation-loop role a daemon reports in /readyz: leader, follower or disabled. */
export async function roleOf(d: Pick<DaemonProcess, 'url'>): Promise<string | undefined> {
  const { body } = await readyz(d);
  return body.checks['evaluation_loop']?.role;
}

/** Polls until fn returns a value other than undefined, or throws after timeoutMs. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last !== undefined ? `: ${(last as Error).message}` : ''}`);
    await sleep(everyMs);
  }
}

/** A JSON request with a timeout; the answer's status, content type and parsed body. */
export async function request(
  method: string,
  url: string,
  body?: unknown,
  timeoutMs = 10_000,
): Promise<{ status: number; type: string; body: unknown; ms: number }> {
  const started = performance.now();
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text === '' ? null : JSON.parse(text);
  } catch {
    // keep the text
  }
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: parsed, ms: Math.round(performance.now() - started) };
}

/**
 * A dry-run policy that acts every cycle without Prometheus: its rule's metric cannot be fetched
 * (nothing listens at the Prometheus URL), so after one failure the fallback wants 3 replicas;
 * being a dry run, nothing changes, and every cycle writes one `fallback` history row.
 */
export function dryRunFallbackPolicy(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    target_type: 'nodes',
    min_replicas: 1,
    max_replicas: 5,
    dry_run: true,
    on_metric_error: 'fallback',
    fallback: { after_failures: 1, replicas: 3 },
    scale_up_rules: [{ metric: 'philotes_test_load', operator: 'gt', threshold: 10, scale_by: 1 }],
    ...extra,
  };
}
