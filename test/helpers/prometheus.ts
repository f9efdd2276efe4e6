/**
 * Real-Prometheus helpers for integration tests: a Prometheus server on a free port with its own
 * data folder and generated prometheus.yml, promtool backfill, a tiny exporter whose gauge values
 * the test sets, and a reader of Prometheus's own request counters.
 *
 * Nothing here skips: when `prometheus` or `promtool` is missing, the helpers throw an error that
 * says so (CI installs the Debian `prometheus` package).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Prometheus processes this test process started and has not stopped yet. If the test process
 * exits without its teardown finishing (a tap timeout, an uncaught error), they are killed here
 * so no Prometheus outlives its test.
 */
const liveChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of liveChildren) c.kill('SIGKILL');
});

/** Throws a clear error unless `name` (prometheus, promtool) runs from PATH. */
export function requireTool(name: 'prometheus' | 'promtool'): string {
  const r = spawnSync(name, ['--version'], { encoding: 'utf8' });
  if (r.error !== undefined || r.status !== 0) {
    throw new Error(
      `${name} is not on PATH (${r.error?.message ?? `exit ${r.status}: ${r.stderr}`}); ` +
        'these tests need a real Prometheus: install it (Debian: apt-get install prometheus) — .ci/run does',
    );
  }
  return `${r.stdout}${r.stderr}`.split('\n')[0] ?? name;
}

/** Starts `server` on a free loopback port and answers the port. */
export async function listenLocal(server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

/** A TCP port that was free a moment ago (bind to 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.unref();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Polls `fn` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await sleep(everyMs);
  }
}

async function getJson(url: string, timeoutMs = 2_000): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${text.slice(0, 200)}`);
  return JSON.parse(text) as unknown;
}

/** Runs an instant query against a Prometheus; answers `data.result`. */
export async function promQuery(url: string, query: string, time?: number): Promise<Array<{ metric: Record<string, string>; value?: [number, string]; values?: Array<[number, string]> }>> {
  const params = new URLSearchParams({ query });
  if (time !== undefined) params.set('time', String(time));
  const body = (await getJson(`${url}/api/v1/query?${params}`)) as { status: string; data: { result: never } };
  if (body.status !== 'success') throw new Error(`query ${query} failed: ${JSON.stringify(body)}`);
  return body.data.result;
}

export interface PrometheusOptions {
  /** host:port of the one scrape target (job "philotes-test"); default: Prometheus scrapes itself. */
  target?: string;
  /** Use this TSDB folder (for instance one backfill() filled); the caller removes it. Default: a folder inside the helper's temp dir. */
  dataDir?: string;
  /** After /-/ready, wait until an instant query of this PromQL answers at least one series. */
  waitForMetric?: string;
  /** Bound of each start (ready + first sample). Prometheus sends targets to scrapers ~5 s after start. */
  startTimeoutMs?: number;
  /** Bound of the graceful stop before SIGKILL. */
  stopTimeoutMs?: number;
}

export interface PrometheusServer {
  /** Base URL, http://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Whether the process is currently running. */
  readonly running: boolean;
  /** Its process id while it runs (benchmarks read its CPU time). */
  readonly pid: number | undefined;
  /** The tail of Prometheus's own log (for failure messages). */
  logTail(lines?: number): string;
  /** Stops the process (SIGTERM, SIGKILL after a bound) and keeps the data and port for restart(). */
  halt(): Promise<void>;
  /** Starts it again on the same data folder and port, waiting for ready (and the metric, if given). */
  restart(opts?: { waitForMetric?: string }): Promise<void>;
  /** Stops it and removes the helper's temp folder. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a real Prometheus (scrape_interval 1s) on a free port, with a temp folder for its config
 * and (unless given) its data. Resolves once /-/ready answers and, when asked, the first sample of
 * `waitForMetric` is queryable.
 */
export async function startPrometheus(opts: PrometheusOptions = {}): Promise<PrometheusServer> {
  requireTool('prometheus');
  const root = await mkdtemp(join(tmpdir(), 'philotes-prom-'));
  const dataDir = opts.dataDir ?? join(root, 'data');
  const configFile = join(root, 'prometheus.yml');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const target = opts.target ?? `127.0.0.1:${port}`;
  await writeFile(
    configFile,
    [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      '  evaluation_interval: 1s',
      'scrape_configs:',
      '  - job_name: philotes-test',
      '    static_configs:',
      `      - targets: ['${target}']`,
      '',
    ].join('\n'),
  );
  const startTimeout = opts.startTimeoutMs ?? 20_000;
  const stopTimeout = opts.stopTimeoutMs ?? 5_000;
  const log: string[] = [];
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let removed = false;

  const logTail = (n = 20): string => log.slice(-n).join('\n');

  const halt = async (): Promise<void> => {
    const c = child;
    if (c === undefined) return;
    child = undefined;
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const killed = await Promise.race([
        exited.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), stopTimeout);
        }),
      ]);
      clearTimeout(timer);
      if (killed) {
        c.kill('SIGKILL');
        await exited;
      }
    }
  };

  const launch = async (waitForMetric: string | undefined): Promise<void> => {
    if (removed) throw new Error('this Prometheus was stopped for good; start a new one');
    const c = spawn(
      'prometheus',
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${dataDir}`,
        '--storage.tsdb.retention.time=3650d',
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = c;
    liveChildren.add(c);
    exited = new Promise<void>((resolve) =>
      c.once('exit', () => {
        liveChildren.delete(c);
        resolve();
      }),
    );
    let spawnError: Error | undefined;
    c.once('error', (err) => {
      spawnError = err;
    });
    const collect = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) if (line.length > 0) log.push(line);
      if (log.length > 400) log.splice(0, log.length - 400);
    };
    c.stdout?.on('data', collect);
    c.stderr?.on('data', collect);
    const started = Date.now();
    try {
      await waitFor(
        `Prometheus on ${url} to be ready`,
        async () => {
          if (spawnError !== undefined) throw new Error(`cannot run prometheus: ${spawnError.message}`);
          if (c.exitCode !== null || c.signalCode !== null) {
            throw new Error(`prometheus exited (${c.exitCode ?? c.signalCode}) before it was ready:\n${logTail()}`);
          }
          const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) });
          await res.arrayBuffer();
          return res.ok ? true : undefined;
        },
        startTimeout,
        50,
      );
      if (waitForMetric !== undefined) {
        await waitFor(
          `the first sample of ${waitForMetric} in Prometheus on ${url}`,
          async () => ((await promQuery(url, waitForMetric)).length > 0 ? true : undefined),
          Math.max(1_000, startTimeout - (Date.now() - started)),
          100,
        );
      }
    } catch (err) {
      await halt();
      throw new Error(`${(err as Error).message}\nprometheus log:\n${logTail()}`, { cause: err });
    }
  };

  await launch(opts.waitForMetric);

  return {
    url,
    port,
    dataDir,
    get running() {
      return child !== undefined;
    },
    get pid() {
      return child?.pid;
    },
    logTail,
    halt,
    async restart(r = {}) {
      await halt();
      await launch(r.waitForMetric);
    },
    async stop() {
      await halt();
      if (!removed) {
        removed = true;
        await rm(root, { recursive: true, force: true });
      }
    },
  };
}

/** A temp folder for a TSDB that backfill() fills before Prometheus starts on it. */
export function tempDataDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'philotes-tsdb-'));
}

/**
 * Writes OpenMetrics text (timestamps in seconds, each series sorted by time, ending with
 * `# EOF`) into TSDB blocks in `dataDir` with `promtool tsdb create-blocks-from openmetrics`.
 * Run it before Prometheus starts on that folder.
 */
export async function backfill(dataDir: string, openMetricsText: string): Promise<string> {
  requireTool('promtool');
  const text = openMetricsText.endsWith('\n') ? openMetricsText : `${openMetricsText}\n`;
  if (!text.trimEnd().endsWith('\n# EOF')) throw new Error('OpenMetrics input must end with a "# EOF" line');
  const dir = await mkdtemp(join(tmpdir(), 'philotes-backfill-'));
  const file = join(dir, 'input.om');
  try {
    await writeFile(file, text);
    const out = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      const c = spawn('promtool', ['tsdb', 'create-blocks-from', 'openmetrics', file, dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      c.stdout.on('data', (b: Buffer) => (output += b.toString('utf8')));
      c.stderr.on('data', (b: Buffer) => (output += b.toString('utf8')));
      c.once('error', reject);
      c.once('close', (code) => resolve({ code, output }));
    });
    if (out.code !== 0) throw new Error(`promtool tsdb create-blocks-from openmetrics failed (exit ${out.code}):\n${out.output}`);
    return out.output;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One gauge series the exporter serves. */
export interface Exporter {
  /** Base URL, http://127.0.0.1:PORT (metrics at /metrics). */
  readonly url: string;
  /** host:port, for a scrape config. */
  readonly target: string;
  /** Sets (or adds) the value of `name{labels}`; the next scrape sees it. */
  set(name: string, labels: Record<string, string>, value: number): void;
  /** Removes a series; the next scrape no longer has it. */
  remove(name: string, labels: Record<string, string>): void;
  /** How many times /metrics was served. */
  readonly scrapes: number;
  close(): Promise<void>;
}

const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const seriesKey = (name: string, labels: Record<string, string>): string =>
  `${name}{${Object.keys(labels)
    .sort()
    .map((k) => `${k}="${escapeLabel(labels[k] ?? '')}"`)
    .join(',')}}`;

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** A tiny exporter: an HTTP server on a free port serving gauges in the Prometheus text format. */
export async function startExporter(): Promise<Exporter> {
  const series = new Map<string, { name: string; value: number }>();
  let scrapes = 0;
  const server: Server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('not found\n');
      return;
    }
    scrapes++;
    const byName = new Map<string, string[]>();
    for (const [key, s] of [...series.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
      const lines = byName.get(s.name) ?? [];
      lines.push(`${key} ${formatValue(s.value)}`);
      byName.set(s.name, lines);
    }
    let body = '';
    for (const [name, lines] of byName) body += `# HELP ${name} Test gauge.\n# TYPE ${name} gauge\n${lines.join('\n')}\n`;
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(body);
  });
  const port = await listenLocal(server);
  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    target: `127.0.0.1:${port}`,
    set(name, labels, value) {
      series.set(seriesKey(name, labels), { name, value });
    },
    remove(name, labels) {
      series.delete(seriesKey(name, labels));
    },
    get scrapes() {
      return scrapes;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/**
 * Prometheus's own `prometheus_http_requests_total`, summed over status codes, by handler. Read
 * from /metrics (handler "/metrics"), so reading does not count as a query request.
 */
export async function httpRequestCounts(url: string): Promise<Record<string, number>> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(2_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${url}/metrics: HTTP ${res.status}`);
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('prometheus_http_requests_total{')) continue;
    const m = /handler="([^"]*)"/.exec(line);
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (m?.[1] === undefined || !Number.isFinite(value)) continue;
    out[m[1]] = (out[m[1]] ?? 0) + value;
  }
  return out;
}

/**
 * Request counts once they stop moving: Prometheus increments a handler's counter only after the
 * request finished, which can be a moment after the client got the answer. Reads until two reads
 * `settleMs` apart agree (bounded by `timeoutMs`).
 */
export async function settledRequestCounts(url: string, settleMs = 300, timeoutMs = 5_000): Promise<Record<string, number>> {
  const deadline = Date.now() + timeoutMs;
  let prev = await httpRequestCounts(url);
  for (;;) {
    await sleep(settleMs);
    const next = await httpRequestCounts(url);
    const same = (h: string): boolean => (prev[h] ?? 0) === (next[h] ?? 0);
    if ([...new Set([...Object.keys(prev), ...Object.keys(next)])].filter((h) => h !== '/metrics').every(same)) return next;
    if (Date.now() >= deadline) throw new Error(`Prometheus request counters kept moving for ${timeoutMs} ms`);
    prev = next;
  }
}
