// Graceful shutdown of the real daemon process: SIGTERM stops it cleanly (exit 0, leadership
// released, history kept), and a second signal during a slow shutdown forces the exit.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import t, { type Test } from 'tap';
import { dryRunFallbackPolicy, request, roleOf, spawnDaemon, waitFor, type DaemonOptions, type DaemonProcess, type LogLine } from './helpers/daemon-process.js';
import { createFreshDatabase } from './helpers/pg.js';

const LEADER_LOCK_KEY = 7_305_002;
const SLOW_SCALE_MS = 3_000;

async function daemon(t: Test, opts: DaemonOptions): Promise<DaemonProcess> {
  const d = await spawnDaemon(opts);
  t.teardown(() => d.destroy());
  return d;
}

/** Rows the API lists now (newest first), at most 1000. */
async function historyIds(d: DaemonProcess): Promise<string[]> {
  const res = await request('GET', `${d.api}/history?limit=1000`);
  if (res.status !== 200) throw new Error(`GET /history answered ${res.status}`);
  return (res.body as { history: Array<{ id: string }> }).history.map((r) => r.id);
}

/** Log problems a clean shutdown must not show: errors, fatal lines, anything "unhandled". */
function badLines(d: DaemonProcess): LogLine[] {
  return d.logs().filter((l) => (l.level ?? 0) >= 50 || /unhandled|uncaught/i.test(JSON.stringify(l)));
}

function signalLine(signal: string) {
  return (l: LogLine): boolean => l.msg === 'shutting down' && l['signal'] === signal;
}

t.test('SIGTERM on a SQLite daemon: exit 0, lock file removed, history all there, no errors', async (t) => {
  const d = await daemon(t, { name: 'sqlite', env: { PHILOTES_SCALING_EVALUATION_INTERVAL: '1s' } });
  const dbPath = join(d.cwd, 'data', 'philotes-scaler.db');
  const lockPath = `${dbPath}.leader`;
  t.equal(await roleOf(d), 'leader', 'the daemon leads');
  t.equal(readFileSync(lockPath, 'utf8').trim(), String(d.pid), 'its lock file names it');

  // A dry-run policy records its unchanged would-be change once: three policies, three rows.
  for (let i = 0; i < 3; i++) t.equal((await request('POST', `${d.api}/policies`, dryRunFallbackPolicy(`shutdown-sqlite-${i}`))).status, 201, `policy ${i} created`);
  const before = await waitFor('three history rows', async () => {
    const ids = await historyIds(d);
    return ids.length >= 3 ? ids : undefined;
  });

  d.kill('SIGTERM');
  const exit = await d.waitExit(15_000);
  t.same(exit, { code: 0, signal: null }, 'exit code 0');
  t.ok(d.logs().some(signalLine('SIGTERM')), 'the daemon logged the signal');
  t.notOk(existsSync(lockPath), 'the lock file is removed');

  const db = new Database(dbPath, { readonly: true });
  t.teardown(() => db.close());
  const stored = new Set(db.prepare('SELECT id FROM scaling_history').all().map((r) => (r as { id: string }).id));
  t.same(before.filter((id) => !stored.has(id)), [], `every row written before the signal is stored (${before.length} before, ${stored.size} after exit)`);
  t.same(badLines(d), [], 'no error or unhandled lines in the log');
  t.equal(d.stderr(), '', 'nothing on stderr');
  t.comment(`shutdown (SQLite): ${before.length} history rows seen before SIGTERM, ${stored.size} stored after exit`);
});

t.test('SIGTERM on a PostgreSQL daemon: exit 0, advisory lock released, history all there', async (t) => {
  const fresh = await createFreshDatabase('philotes_shutdown');
  const client = new pg.Client({ connectionString: fresh.url });
  t.teardown(async () => {
    await client.end().catch(() => undefined);
    await fresh.drop();
  });
  const d = await daemon(t, { name: 'pg', env: { DATABASE_URL: fresh.url, PHILOTES_SCALING_EVALUATION_INTERVAL: '1s' } });
  await client.connect();
  const holders = async (): Promise<number> =>
    (
      await client.query(
        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        [LEADER_LOCK_KEY],
      )
    ).rowCount ?? 0;
  t.equal(await roleOf(d), 'leader', 'the daemon leads');
  t.equal(await holders(), 1, 'it holds the leader advisory lock');

  // A dry-run policy records its unchanged would-be change once: three policies, three rows.
  for (let i = 0; i < 3; i++) t.equal((await request('POST', `${d.api}/policies`, dryRunFallbackPolicy(`shutdown-pg-${i}`))).status, 201, `policy ${i} created`);
  const before = await waitFor('three history rows', async () => {
    const ids = await historyIds(d);
    return ids.length >= 3 ? ids : undefined;
  });

  d.kill('SIGTERM');
  const exit = await d.waitExit(15_000);
  t.same(exit, { code: 0, signal: null }, 'exit code 0');
  t.equal(await holders(), 0, 'the advisory lock is released');
  const got = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [LEADER_LOCK_KEY]);
  t.equal(got.rows[0]?.ok, true, 'another session can take it');
  await client.query('SELECT pg_advisory_unlock($1)', [LEADER_LOCK_KEY]);
  const stored = new Set((await client.query<{ id: string }>('SELECT id FROM scaling_history')).rows.map((r) => r.id));
  t.same(before.filter((id) => !stored.has(id)), [], `every row written before the signal is stored (${before.length} before, ${stored.size} after exit)`);
  t.same(badLines(d), [], 'no error or unhandled lines in the log');
  t.equal(d.stderr(), '', 'nothing on stderr');
});

/**
 * A plugin folder with an executor `slow` (target type slow-thing) whose scale() takes
 * SLOW_SCALE_MS; with `slowLoad`, its factory also takes that long (a slow start-up).
 */
async function slowPluginDir(t: Test, opts: { slowLoad?: boolean } = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'philotes-slow-plugin-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const plugin = join(dir, 'slow-executor');
  await mkdir(plugin);
  await writeFile(
    join(plugin, 'package.json'),
    JSON.stringify({
      name: 'slow-executor',
      version: '1.0.0',
      type: 'module',
      main: 'index.js',
      'philotes-scaler': { kind: 'executor', name: 'slow', apiVersion: '^1.0.0' },
    }),
  );
  await writeFile(
    join(plugin, 'index.js'),
    `export default async function createSlowExecutor(ctx) {
  if (${opts.slowLoad === true}) {
    ctx.logger.info('slow plugin loading');
    await new Promise((resolve) => setTimeout(resolve, ${SLOW_SCALE_MS}));
  }
  return {
    targetTypes: ['slow-thing'],
    async getCurrentReplicas() {
      return null;
    },
    async scale(target, replicas) {
      ctx.logger.info({ target: target.policyName, replicas }, 'slow scale started');
      await new Promise((resolve) => setTimeout(resolve, ${SLOW_SCALE_MS}));
      ctx.logger.info({ target: target.policyName, replicas }, 'slow scale finished');
    },
  };
}
`,
  );
  return dir;
}

async function slowDaemon(t: Test, name: string): Promise<DaemonProcess> {
  const plugins = await slowPluginDir(t);
  const d = await daemon(t, { name, env: { PHILOTES_SCALING_EVALUATION_INTERVAL: '1s', PHILOTES_SCALING_PLUGIN_DIRS: plugins } });
  const res = await request('POST', `${d.api}/policies`, dryRunFallbackPolicy(`slow-${name}`, { target_type: 'slow-thing', executor: 'slow' }));
  if (res.status !== 201) throw new Error(`policy refused: ${JSON.stringify(res.body)}`);
  await d.waitForLog((l) => l.msg === 'slow scale started', 10_000);
  return d;
}

t.test('SIGTERM during a slow scale: the daemon waits for it, records it, and exits 0', async (t) => {
  const d = await slowDaemon(t, 'graceful');
  const sent = Date.now();
  d.kill('SIGTERM');
  const exit = await d.waitExit(20_000);
  const ms = Date.now() - sent;
  t.same(exit, { code: 0, signal: null }, `exit code 0 after ${ms} ms`);
  const finished = d.logs().filter((l) => l.msg === 'slow scale finished').length;
  t.ok(finished >= 1, 'the scale in flight finished before the exit');
  const db = new Database(join(d.cwd, 'data', 'philotes-scaler.db'), { readonly: true });
  t.teardown(() => db.close());
  const rows = (db.prepare('SELECT count(*) AS n FROM scaling_history').get() as { n: number }).n;
  t.equal(rows, finished, 'and its history row was written (one row per finished scale)');
  t.same(badLines(d), [], 'no error or unhandled lines in the log');
});

for (const second of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`a second signal (${second}) during a slow shutdown forces the exit`, async (t) => {
    const d = await slowDaemon(t, `forced-${second.toLowerCase()}`);
    d.kill('SIGTERM');
    await d.waitForLog(signalLine('SIGTERM'), 5_000);
    const sent = Date.now();
    d.kill(second);
    const exit = await d.waitExit(10_000);
    const ms = Date.now() - sent;
    t.not(exit.code, 0, `non-zero exit (${JSON.stringify(exit)})`);
    t.equal(exit.signal, null, 'an exit, not a death by signal');
    t.ok(ms < SLOW_SCALE_MS - 500, `it did not wait for the slow scale (${ms} ms)`);
    t.ok(
      d.logs().some((l) => l.msg === 'second signal: exiting now' && l['signal'] === second),
      'the forced exit is logged',
    );
    t.notOk(d.logs().some((l) => l.msg === 'slow scale finished'), 'the slow scale was abandoned');
  });
}

t.test('SIGTERM during start-up: the daemon finishes starting, then stops cleanly (exit 0, lock file removed)', async (t) => {
  const plugins = await slowPluginDir(t, { slowLoad: true });
  const d = await spawnDaemon({ name: 'starting', waitHealthy: false, env: { PHILOTES_SCALING_EVALUATION_INTERVAL: '1s', PHILOTES_SCALING_PLUGIN_DIRS: plugins } });
  t.teardown(() => d.destroy());
  await d.waitForLog((l) => l.msg === 'slow plugin loading', 30_000);
  d.kill('SIGTERM');
  const exit = await d.waitExit(20_000);
  t.same(exit, { code: 0, signal: null }, 'exit code 0, not a death by signal halfway through the start');
  t.ok(
    d.logs().some((l) => l.msg === 'shutting down once the start completes' && l['signal'] === 'SIGTERM'),
    'the signal is acknowledged during the start',
  );
  t.notOk(existsSync(join(d.cwd, 'data', 'philotes-scaler.db.leader')), 'no lock file is left behind');
  t.same(badLines(d), [], 'no error or unhandled lines in the log');
});
