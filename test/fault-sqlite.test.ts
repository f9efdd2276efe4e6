/**
 * The SQLite file under the store and under a running daemon: deleted, replaced by another file,
 * made immutable (chattr +i, the one way to make a file read-only for root), and a daemon started
 * on a file or folder it cannot write. Real files, real attributes, real daemon processes.
 *
 * Expected: the fault is noticed before the next write; from then on every storage call answers
 * 503 (STORAGE_UNAVAILABLE) and /readyz is not ready; exactly one error line names it; nothing is
 * written to a deleted file; an immutable -shm file never kills the process (SIGBUS); a read-only
 * database is never taken for another daemon's lock.
 */
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import t from 'tap';
import { ScalerError } from '../src/errors.js';
import type { Policy } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { createSqliteStorage, type SqliteLogger } from '../src/storage/sqlite-storage.js';
import { dryRunFallbackPolicy, readyz, request, roleOf, spawnDaemon, waitFor, type DaemonProcess, type LogLine } from './helpers/daemon-process.js';

const root = await mkdtemp(join(tmpdir(), 'philotes-fault-sqlite-'));
const immutable = new Set<string>();
function chattr(flag: '+i' | '-i', ...paths: string[]): void {
  const present = paths.filter((p) => existsSync(p));
  if (present.length === 0) return;
  execFileSync('chattr', [flag, ...present]);
  for (const p of present) {
    if (flag === '+i') immutable.add(p);
    else immutable.delete(p);
  }
}
/** The same, without blocking this process: requests to a daemon stay in flight meanwhile. */
async function chattrLater(flag: '+i', ...paths: string[]): Promise<void> {
  await promisify(execFile)('chattr', [flag, ...paths]);
  for (const p of paths) immutable.add(p);
}
// Attributes first: an immutable file or folder cannot be removed, not even by root.
t.teardown(async () => {
  chattr('-i', ...immutable);
  await rm(root, { recursive: true, force: true });
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let dirs = 0;
async function freshPath(): Promise<string> {
  const dir = join(root, `db-${++dirs}`);
  await mkdir(dir);
  return join(dir, 'scaler.db');
}
const filesOf = (path: string): string[] => [path, `${path}-wal`, `${path}-shm`];

interface Logged {
  level: 'error' | 'warn' | 'info';
  obj: Record<string, unknown>;
  msg: string;
}
function recorder(): SqliteLogger & { lines: Logged[] } {
  const lines: Logged[] = [];
  const add = (level: Logged['level']) => (obj: object, msg: string) => void lines.push({ level, obj: obj as Record<string, unknown>, msg });
  return { lines, error: add('error'), warn: add('warn'), info: add('info') };
}

function policy(name: string): Policy {
  return normalizePolicy({ name, target_type: 'nodes', min_replicas: 1, max_replicas: 3 }, { source: 'api', now: new Date('2026-01-28T12:00:00.000Z') });
}

/** Expects STORAGE_UNAVAILABLE (503); with `match`, a message that says why. */
async function unavailable(t: Tap, work: Promise<unknown>, what: string, match?: RegExp): Promise<void> {
  try {
    await work;
    t.fail(`${what}: expected STORAGE_UNAVAILABLE, it succeeded`);
  } catch (err) {
    t.ok(err instanceof ScalerError && err.code === 'STORAGE_UNAVAILABLE' && err.status === 503, `${what}: STORAGE_UNAVAILABLE (${(err as Error).message})`);
    if (match !== undefined) t.match((err as Error).message, match, `${what}: the message says why`);
  }
}
type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

t.test('store: the database file deleted is refused before the next write; its data stays whole in the open handle', async (t) => {
  const path = await freshPath();
  const log = recorder();
  const storage = createSqliteStorage(path, { logger: log });
  t.teardown(() => storage.close());
  await storage.migrate();
  const kept = await storage.createPolicy(policy('kept'));
  t.equal(storage.fault(), undefined, 'no fault while the file is in place');

  unlinkSync(path);
  // No wait: the write itself checks the file first.
  await unavailable(t, storage.createPolicy(policy('lost')), 'a write right after the delete');
  await unavailable(t, storage.listPolicies({ limit: 10, offset: 0 }), 'a read', /was deleted/);
  t.match(storage.fault(), /database file .*scaler\.db was deleted while the daemon had it open; restart the daemon/);
  t.notOk(existsSync(path), 'no empty database is created in its place');
  t.equal(await storage.leaderLock().tryAcquire(), false, 'no leadership over a deleted database');

  await sleep(1_300); // the periodic check runs meanwhile: still one line
  const errors = log.lines.filter((l) => l.level === 'error');
  t.equal(errors.length, 1, 'exactly one error line');
  t.match(errors[0]?.msg, /every storage call answers 503 .* until the daemon is restarted/);
  const handles = errors[0]?.obj['open_handles'] as Array<{ file: string; now: string; copy_from: string }> | undefined;
  const handle = handles?.find((h) => h.file === path);
  t.match(handle, { now: `${path} (deleted)`, copy_from: new RegExp(`^/proc/${process.pid}/fd/\\d+$`) }, 'the error line names the handle to copy the data from');

  // The -wal frames were moved into the deleted file: its copy alone holds every committed row.
  const copy = join(dirname(path), 'rescued.db');
  copyFileSync(handle?.copy_from ?? '/nonexistent', copy);
  const rescued = new Database(copy, { readonly: true });
  t.same(rescued.prepare('SELECT name FROM scaling_policies').all(), [{ name: kept.name }], 'the copy holds the policy written before the delete, and nothing after');
  t.same(rescued.pragma('integrity_check'), [{ integrity_check: 'ok' }]);
  rescued.close();
});

t.test('store: the database file replaced is refused; a store opened later on the path reads the new file intact', async (t) => {
  const path = await freshPath();
  const storage = createSqliteStorage(path, { logger: recorder() });
  await storage.migrate();
  await storage.createPolicy(policy('old-a'));
  await storage.createPolicy(policy('old-b'));

  // Another database, made elsewhere and renamed over the open one (a restore from a backup).
  const other = join(dirname(path), 'other.db');
  const replacement = createSqliteStorage(other);
  await replacement.migrate();
  await replacement.createPolicy(policy('new-only'));
  await replacement.close();
  renameSync(other, path);

  await unavailable(t, storage.createPolicy(policy('old-c')), 'a write right after the replace');
  t.match(storage.fault(), /database file .*scaler\.db was replaced by another file while the daemon had it open; restart the daemon to use the new file/);
  await unavailable(t, storage.getPolicyByName('old-a'), 'a read', /was replaced by another file/);
  await storage.close();

  // The old connection's -wal file is still beside the new file: had its frames stayed in it,
  // they would be replayed onto the new database at the next open.
  const reopened = createSqliteStorage(path);
  t.teardown(() => reopened.close());
  t.equal(reopened.fault(), undefined);
  const { policies } = await reopened.listPolicies({ limit: 10, offset: 0 });
  t.same(policies.map((p) => p.name), ['new-only'], 'the new file, and only it');
  t.same(await reopened.driver.all('PRAGMA integrity_check'), [{ integrity_check: 'ok' }]);
});

t.test('store: an immutable -shm file refuses the next statement instead of a SIGBUS; chattr -i ends the fault', async (t) => {
  const path = await freshPath();
  const log = recorder();
  const storage = createSqliteStorage(path, { logger: log });
  t.teardown(async () => {
    chattr('-i', ...filesOf(path));
    await storage.close();
  });
  await storage.migrate();
  const a = await storage.createPolicy(policy('a'));

  // SQLite writes the -shm file through mmap, even for a read: on an immutable file the kernel
  // answers SIGBUS, which would end this very process. Reaching the next line is the test.
  chattr('+i', `${path}-shm`);
  await t.rejects(storage.driver.all('SELECT name FROM scaling_policies'), { code: 'PHILOTES_SQLITE_FAULT' }, 'a read is refused by the driver itself');
  await unavailable(t, storage.getPolicy(a.id), 'a read through the store', /WAL index file .*scaler\.db-shm is not writable \(EPERM: is it immutable/);
  chattr('+i', path, `${path}-wal`);
  await unavailable(t, storage.createPolicy(policy('b')), 'a write', /not writable/);
  t.equal(await storage.leaderLock().tryAcquire(), false, 'no leadership while the files cannot be written');

  chattr('-i', ...filesOf(path));
  await waitFor('the fault to end', () => (storage.fault() === undefined ? true : undefined), 3_000);
  t.ok(await storage.createPolicy(policy('b')), 'writes work again');
  t.same((await storage.listPolicies({ limit: 10, offset: 0 })).policies.map((p) => p.name).sort(), ['a', 'b']);
  t.same(log.lines.map((l) => l.level), ['error', 'info'], 'one error line when it started, one info line when it ended');
  t.match(log.lines[1]?.msg, /writable again/);
});

t.test('store: close() with an immutable -shm file leaves the handle open instead of crashing', async (t) => {
  const path = await freshPath();
  const log = recorder();
  const storage = createSqliteStorage(path, { logger: log });
  await storage.migrate();
  await storage.createPolicy(policy('a'));
  chattr('+i', `${path}-shm`);
  t.teardown(() => chattr('-i', `${path}-shm`)); // before this process exits and closes the handle
  await storage.close();
  t.ok(log.lines.some((l) => l.level === 'warn' && /left open/.test(l.msg)), 'it says why the handle stays open');
});

t.test('store: opened on a file or folder it cannot write, it names that file, never a lock', async (t) => {
  const path = await freshPath();
  const first = createSqliteStorage(path);
  await first.migrate();
  await first.close();

  chattr('+i', path);
  const log = recorder();
  const onFile = createSqliteStorage(path, { logger: log });
  t.match(onFile.fault(), new RegExp(`database file ${path} is not writable \\(EPERM`), 'the fault names the file');
  await unavailable(t, onFile.migrate(), 'migrate (the first call a daemon makes)', /scaler\.db is not writable/);
  t.equal(await onFile.leaderLock().tryAcquire(), false);
  t.equal(log.lines.filter((l) => l.level === 'error').length, 1, 'one error line');
  await onFile.close();
  chattr('-i', path);

  chattr('+i', dirname(path));
  const onFolder = createSqliteStorage(path);
  t.match(onFolder.fault(), new RegExp(`database folder ${dirname(path)} is not writable \\(EPERM.*leader lock file`), 'the fault names the folder');
  await unavailable(t, onFolder.migrate(), 'migrate', /folder .* is not writable/);
  await onFolder.close();
  chattr('-i', dirname(path));
});

t.test('leader lock: a lock file that cannot be written is an error naming it, a live owner is not', async (t) => {
  const path = await freshPath();
  const storage = createSqliteStorage(path);
  t.teardown(() => storage.close());
  await storage.migrate();
  const lockPath = `${path}.leader`;

  writeFileSync(lockPath, `${process.ppid}\n`); // a live process
  t.equal(await storage.leaderLock().tryAcquire(), false, 'a live owner: another daemon leads');

  writeFileSync(lockPath, '999999999\n'); // no such process
  chattr('+i', lockPath);
  await t.rejects(storage.leaderLock().tryAcquire(), /leader lock file .*scaler\.db\.leader cannot be removed, though the process it names \(pid 999999999\) is gone \(EPERM.*this is not another daemon holding the lock/);
  chattr('-i', lockPath);
  unlinkSync(lockPath);

  chattr('+i', dirname(path)); // the database itself stays writable
  await t.rejects(storage.leaderLock().tryAcquire(), /leader lock file .*scaler\.db\.leader cannot be created \(EPERM.*this is not another daemon/);
  chattr('-i', dirname(path));
  const lock = storage.leaderLock();
  t.equal(await lock.tryAcquire(), true, 'taken once the folder is writable');
  await lock.release();
});

// ---- real daemons ---------------------------------------------------------------------------

const FAULT_LINE = /the SQLite database cannot be used/;
const isFaultLine = (l: LogLine): boolean => l.level === 50 && FAULT_LINE.test(l.msg ?? '');
const isRecoveryLine = (l: LogLine): boolean => l.level === 30 && /writable again/.test(l.msg ?? '');
/**
 * The daemon's lines matching `match`, once at least one arrived: its log comes through a pipe,
 * which may deliver a line after an HTTP answer the daemon sent later.
 */
async function linesOf(d: DaemonProcess, match: (l: LogLine) => boolean): Promise<LogLine[]> {
  await d.waitForLog(match, 5_000);
  return d.logs().filter(match);
}

async function daemonIn(t: Tap, name: string, cwd: string): Promise<DaemonProcess> {
  const d = await spawnDaemon({ name, cwd, env: { PHILOTES_SCALING_EVALUATION_INTERVAL: '1s' } });
  t.teardown(() => d.destroy());
  return d;
}
async function newDaemonDir(name: string): Promise<{ cwd: string; db: string }> {
  const cwd = join(root, name);
  await mkdir(cwd);
  return { cwd, db: join(cwd, 'data', 'philotes-scaler.db') };
}
async function names(d: DaemonProcess): Promise<string[]> {
  const res = await request('GET', `${d.api}/policies?limit=100`);
  if (res.status !== 200) throw new Error(`GET /policies: ${res.status} ${JSON.stringify(res.body)}`);
  return (res.body as { policies: Array<{ name: string }> }).policies.map((p) => p.name).sort();
}
async function notReady(t: Tap, d: DaemonProcess, match: RegExp): Promise<void> {
  const ready = await waitFor('/readyz to turn', async () => {
    const r = await readyz(d);
    return r.status === 503 ? r : undefined;
  }, 5_000);
  t.equal(ready.status, 503, '/readyz is not ready');
  t.match(ready.body.checks['storage'], { ok: false, error: match }, '/readyz names the storage fault');
}

t.test('daemon: its database deleted answers 503 at once and stops leading; the data is rescued from the handle it names', async (t) => {
  const { cwd, db } = await newDaemonDir('deleted');
  const d = await daemonIn(t, 'deleted', cwd);
  t.equal((await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('before'))).status, 201);
  await waitFor('it leads', async () => ((await roleOf(d)) === 'leader' ? true : undefined));

  unlinkSync(db);
  const after = await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('after'));
  t.equal(after.status, 503, 'the next write answers 503');
  t.match(after.type, /application\/problem\+json/);
  t.match(after.body, { code: 'STORAGE_UNAVAILABLE' });
  t.equal((await request('GET', `${d.api}/policies`)).status, 503, 'reads too');
  await notReady(t, d, /was deleted/);
  await waitFor('it stops leading', async () => ((await roleOf(d)) === 'follower' ? true : undefined), 5_000);
  t.notOk(existsSync(db), 'no empty database was created in its place');
  await sleep(1_500);
  t.equal(d.exit, undefined, 'the daemon runs on');
  const lines = await linesOf(d, isFaultLine);
  t.equal(lines.length, 1, 'exactly one error line names the fault');

  // What an operator does with that line: copy the handle back, then restart.
  const handle = (lines[0]?.['open_handles'] as Array<{ file: string; copy_from: string }> | undefined)?.find((h) => h.file === db);
  t.ok(handle, 'the line names the handle of the deleted file');
  copyFileSync(handle?.copy_from ?? '/nonexistent', db);
  d.kill('SIGTERM');
  t.same(await d.waitExit(), { code: 0, signal: null }, 'a clean stop');
  const again = await daemonIn(t, 'deleted-again', cwd);
  t.same(await names(again), ['before'], 'the restarted daemon has the rescued data; nothing written after the delete');
});

t.test('daemon: its database replaced answers 503; restarted, it reads the new file intact', async (t) => {
  const { cwd, db } = await newDaemonDir('replaced');
  const d = await daemonIn(t, 'replaced', cwd);
  t.equal((await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('in-backup'))).status, 201);
  // An online backup (as `sqlite3 .backup` takes), then one more policy, then the backup restored
  // by renaming it over the live file.
  const backup = join(cwd, 'backup.db');
  const live = new Database(db, { readonly: true });
  await live.backup(backup);
  live.close();
  t.equal((await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('after-backup'))).status, 201);
  renameSync(backup, db);

  const res = await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('refused'));
  t.equal(res.status, 503, 'the next write answers 503');
  await notReady(t, d, /was replaced by another file/);
  await sleep(1_200);
  t.equal((await linesOf(d, isFaultLine)).length, 1, 'exactly one error line');
  d.kill('SIGTERM');
  t.same(await d.waitExit(), { code: 0, signal: null }, 'a clean stop');

  const again = await daemonIn(t, 'replaced-again', cwd);
  t.same(await names(again), ['in-backup'], 'the restored file as it was: the old -wal was not replayed onto it');
  const check = new Database(db, { readonly: true });
  t.same(check.pragma('integrity_check'), [{ integrity_check: 'ok' }]);
  check.close();
});

t.test('daemon: chattr +i on its files under load does not crash it; 503 until chattr -i, then it serves and leads again', async (t) => {
  const { cwd, db } = await newDaemonDir('immutable');
  const d = await daemonIn(t, 'immutable', cwd);
  t.teardown(() => chattr('-i', ...filesOf(db)));
  t.equal((await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('looping'))).status, 201);
  await waitFor('it leads', async () => ((await roleOf(d)) === 'leader' ? true : undefined));

  // Reads and writes going on while the attributes change, and the loop running every second.
  let loading = true;
  const statuses: number[] = [];
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; loading; i++) {
      const res = await request(i % 2 === 0 ? 'GET' : 'POST', `${d.api}/policies`, i % 2 === 0 ? undefined : dryRunFallbackPolicy(`load-${w}-${i}`)).catch(() => undefined);
      statuses.push(res?.status ?? 0);
    }
  };
  const workers = [0, 1, 2, 3].map(worker);
  await sleep(300);
  await chattrLater('+i', ...filesOf(db));
  await sleep(300);
  loading = false;
  await Promise.all(workers);
  t.comment(`answers while the attributes changed: ${statuses.join(' ')}`);
  t.ok(statuses.every((s) => s === 200 || s === 201 || s === 503), 'every answer was a success or a 503');
  const res = await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('refused'));
  t.equal(res.status, 503, 'a write answers 503');
  t.equal((await request('GET', `${d.api}/policies`)).status, 503, 'a read answers 503');
  await notReady(t, d, /not writable \(EPERM/);
  await waitFor('it stops leading', async () => ((await roleOf(d)) === 'follower' ? true : undefined), 5_000);
  await sleep(2_500); // loop and checks keep running
  t.equal(d.exit, undefined, `the daemon is alive (no SIGBUS): ${d.stderr()}`);
  t.equal((await linesOf(d, isFaultLine)).length, 1, 'exactly one error line');

  chattr('-i', ...filesOf(db));
  await waitFor('ready again', async () => ((await readyz(d)).status === 200 ? true : undefined), 5_000);
  t.equal((await linesOf(d, isRecoveryLine)).length, 1, 'one info line when it ended');
  t.equal((await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('after'))).status, 201, 'writes work again');
  await waitFor('it leads again', async () => ((await roleOf(d)) === 'leader' ? true : undefined), 5_000);
  t.equal((await linesOf(d, isFaultLine)).length, 1, 'still one error line');
});

t.test('daemon: started on an immutable database file or folder, it exits naming it, never "another daemon leads"', async (t) => {
  const { cwd, db } = await newDaemonDir('readonly');
  const d = await daemonIn(t, 'readonly', cwd);
  t.equal((await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('kept'))).status, 201);
  d.kill('SIGTERM');
  t.same(await d.waitExit(), { code: 0, signal: null });
  t.teardown(() => chattr('-i', db, dirname(db)));

  const cases: Array<[string, string, RegExp]> = [
    ['file', db, new RegExp(`failed to start: .*database file ${db} is not writable \\(EPERM`)],
    ['folder', dirname(db), new RegExp(`failed to start: .*database folder ${dirname(db)} is not writable \\(EPERM`)],
  ];
  for (const [what, target, message] of cases) {
    chattr('+i', target);
    const started = await spawnDaemon({ name: `readonly-${what}`, cwd, waitHealthy: false });
    t.teardown(() => started.destroy());
    t.same(await started.waitExit(), { code: 1, signal: null }, `immutable ${what}: the start fails`);
    t.match(started.stderr(), message, `immutable ${what}: the message names it`);
    t.notOk(started.logs().some((l) => /another daemon/.test(l.msg ?? '')), `immutable ${what}: nothing about another daemon`);
    chattr('-i', target);
  }
  const again = await daemonIn(t, 'readonly-again', cwd);
  t.same(await names(again), ['kept'], 'writable again: it starts with its data');
});

t.test('daemon that the mode bits bind: chmod 444 under it answers 503 until chmod 644; restarted on a 444 file, it exits naming it', async (t) => {
  // Root writes whatever the mode bits say; a daemon normally runs as a user, for whom they count.
  // Root without the capabilities that override them (setpriv) is bound by them the same way,
  // and can still read this checkout wherever it lies (another user cannot enter a clone made
  // under mktemp -d, a 0700 folder).
  const via = ['setpriv', '--bounding-set=-dac_override,-dac_read_search', '--'];
  const { cwd, db } = await newDaemonDir('bound');
  await mkdir(dirname(db));
  await mkdir(join(cwd, 'empty-policies'));
  const env = { PHILOTES_SCALING_EVALUATION_INTERVAL: '1s' };

  const d = await spawnDaemon({ name: 'bound', cwd, env, via });
  t.teardown(() => d.destroy());
  t.equal((await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('kept'))).status, 201);
  await chmod(db, 0o444);
  t.equal((await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('refused'))).status, 503, 'the next write answers 503');
  await notReady(t, d, /database file .* is not writable \(EACCES/);
  await chmod(db, 0o644);
  await waitFor('ready again', async () => ((await readyz(d)).status === 200 ? true : undefined), 5_000);
  t.equal((await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('after'))).status, 201, 'writes work again');
  t.equal((await linesOf(d, isFaultLine)).length, 1, 'one error line');
  t.equal((await linesOf(d, isRecoveryLine)).length, 1, 'one info line');
  d.kill('SIGTERM');
  t.same(await d.waitExit(), { code: 0, signal: null });

  await chmod(db, 0o444);
  const started = await spawnDaemon({ name: 'bound-444', cwd, env, via, waitHealthy: false });
  t.teardown(() => started.destroy());
  t.same(await started.waitExit(), { code: 1, signal: null }, 'the start fails');
  t.match(started.stderr(), new RegExp(`failed to start: .*database file ${db} is not writable \\(EACCES: check its permissions and owner\\)`), 'the message names the file');
  t.notOk(started.logs().some((l) => /another daemon/.test(l.msg ?? '')), 'nothing about another daemon');
});
