/**
 * The policy-file watcher under file-system faults (docs/faults.md, "Policy files and folders"),
 * with real files, folders and symlinks in a temp dir and the real loader, SQLite storage
 * and PolicyService: a policy folder deleted and recreated, symlink loops and links out of the
 * folder, Kubernetes ConfigMap mounts, oversized files, and one name defined in two files.
 *
 * Every wait is bounded; nothing compares file times with the wall clock.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { PolicyFileLoader, type PolicyFileLoaderOptions, type SourceStatus } from '../src/files/policy-file-loader.js';
import { parsePolicyFile } from '../src/files/policy-file.js';
import { validatePaths } from '../src/files/validate-command.js';
import { loadConfig } from '../src/config/config.js';
import { PolicyService } from '../src/policy/policy-service.js';
import { createValidationContext } from '../src/policy/validation-context.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import type { SqlStorage } from '../src/storage/sql-storage.js';

const CONFIG = { executors: { 'cdc-worker': 'keda' }, prices: {}, default_metric_source: 'prometheus' };

const policyYaml = (name: string, max = 5): string => `name: ${name}\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: ${max}\n`;

interface Env {
  root: string;
  dir: string;
  storage: SqlStorage;
  service: PolicyService;
  loader: PolicyFileLoader;
  /** Every log line the loader wrote, parsed. */
  logs: Array<{ level: number; msg: string; [k: string]: unknown }>;
  /** A second loader on the same storage (a restart), closed with the test. */
  restart(extra?: Partial<PolicyFileLoaderOptions>): Promise<PolicyFileLoader>;
}

/** A logger that keeps its lines, to count how often something was reported. */
function capturingLogger(into: Env['logs']) {
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') into.push(JSON.parse(line) as Env['logs'][number]);
      done();
    },
  });
  return pino({ level: 'info' }, stream);
}

async function setup(t: Test, opts: { prepare?: (dir: string, root: string) => void; loader?: Partial<PolicyFileLoaderOptions> } = {}): Promise<Env> {
  const root = mkdtempSync(join(tmpdir(), 'ps-fault-files-'));
  const dir = join(root, 'policies');
  mkdirSync(dir);
  opts.prepare?.(dir, root);
  const storage = createSqliteStorage(join(root, 'db.sqlite'));
  await storage.migrate();
  const service = new PolicyService({ storage, validation: createValidationContext(CONFIG), defaultCooldown: 300 });
  const logs: Env['logs'] = [];
  const loaders: PolicyFileLoader[] = [];
  const make = (extra: Partial<PolicyFileLoaderOptions> = {}): PolicyFileLoader => {
    const l = new PolicyFileLoader({ dirs: [dir], storage, policies: service, logger: capturingLogger(logs), stabilityMs: 40, pollMs: 100, cwd: root, ...opts.loader, ...extra });
    loaders.push(l);
    return l;
  };
  const loader = make();
  t.teardown(async () => {
    for (const l of loaders) await l.close();
    await storage.close();
    rmSync(root, { recursive: true, force: true });
  });
  await bounded(t, 'start', loader.start(), 5000);
  const restart = async (extra?: Partial<PolicyFileLoaderOptions>): Promise<PolicyFileLoader> => {
    const l = make(extra);
    await bounded(t, 'restart', l.start(), 5000);
    return l;
  };
  return { root, dir, storage, service, loader, logs, restart };
}

/** Awaits a promise for at most ms; a test that would hang fails instead. */
async function bounded<T>(t: Test, what: string, p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } catch (err) {
    t.fail(`${what}: ${(err as Error).message}`);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Polls until check() is truthy; fails the test after ms. */
async function until<T>(t: Test, what: string, check: () => Promise<T | undefined | false> | T | undefined | false, ms = 5000): Promise<T> {
  // Monotonic: the wall clock may be moved while the suite runs.
  const deadline = performance.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (performance.now() > deadline) {
      t.fail(`timed out waiting for ${what}`);
      throw new Error(`timed out waiting for ${what}`);
    }
    await sleep(20);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const statusOf = (l: PolicyFileLoader, path: string): SourceStatus | undefined => l.statuses().find((s) => s.path === path);
const idOf = async (s: SqlStorage, name: string) => (await s.getPolicyByName(name))?.id;
const maxOf = async (s: SqlStorage, name: string) => (await s.getPolicyByName(name))?.max_replicas;
const linesAbout = (logs: Env['logs'], path: string) => logs.filter((l) => l.level >= 40 && JSON.stringify(l).includes(path));

/** CPU time (ms) this process spends while idle for ms: a watcher that spins shows here. */
async function cpuWhileIdle(ms: number): Promise<number> {
  const before = process.cpuUsage();
  await sleep(ms);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

t.test('a policy folder deleted and recreated: policies stay in force (degraded), come back with the same ids', async (t) => {
  const { dir, storage, loader } = await setup(t);
  writeFileSync(join(dir, 'a.yaml'), policyYaml('alpha', 5));
  writeFileSync(join(dir, 'b.yaml'), policyYaml('beta', 5));
  await until(t, 'both loaded', async () => (await maxOf(storage, 'alpha')) === 5 && (await maxOf(storage, 'beta')) === 5);
  const ids = { alpha: await idOf(storage, 'alpha'), beta: await idOf(storage, 'beta') };

  rmSync(dir, { recursive: true, force: true });
  const degraded = await until(t, 'folder reported degraded', () => statusOf(loader, 'policies'));
  t.equal(degraded.kind, 'folder');
  t.equal(degraded.status, 'degraded');
  t.match(degraded.errors[0]?.message, /missing|ENOENT/);
  t.same([...degraded.policies].sort(), ['alpha', 'beta'], 'the folder entry names the policies kept in force');
  t.ok(loader.problems().some((p) => p.path === 'policies'), 'the degraded folder is a problem (/readyz)');
  await sleep(1200);
  t.equal(await idOf(storage, 'alpha'), ids.alpha, 'alpha still in force after a second without its folder');
  t.equal(await idOf(storage, 'beta'), ids.beta);

  mkdirSync(dir);
  writeFileSync(join(dir, 'a.yaml'), policyYaml('alpha', 7));
  writeFileSync(join(dir, 'b.yaml'), policyYaml('beta', 5));
  await until(t, 'folder back and read', async () => statusOf(loader, 'policies') === undefined && (await maxOf(storage, 'alpha')) === 7);
  t.equal(await idOf(storage, 'alpha'), ids.alpha, 'same id: its state and history stay linked');
  t.equal(await idOf(storage, 'beta'), ids.beta);
  t.same(loader.problems(), []);

  // The recreated folder is watched again: an edit is seen.
  writeFileSync(join(dir, 'a.yaml'), policyYaml('alpha', 8));
  await until(t, 'edit in the recreated folder', async () => (await maxOf(storage, 'alpha')) === 8);

  // Moved away and back (same inode): also degraded, then watched again.
  renameSync(dir, `${dir}.away`);
  await until(t, 'degraded after a move', () => statusOf(loader, 'policies')?.status === 'degraded');
  renameSync(`${dir}.away`, dir);
  await until(t, 'back after a move', () => statusOf(loader, 'policies') === undefined);
  writeFileSync(join(dir, 'a.yaml'), policyYaml('alpha', 9));
  await until(t, 'edit after the move back', async () => (await maxOf(storage, 'alpha')) === 9);
  t.equal(await idOf(storage, 'alpha'), ids.alpha);

  // Deleting one file while its folder is there still removes its policies.
  unlinkSync(join(dir, 'b.yaml'));
  await until(t, 'beta removed', async () => (await storage.getPolicyByName('beta')) === undefined);
  t.equal(await idOf(storage, 'alpha'), ids.alpha);
});

t.test('a policy folder missing at start keeps the stored policies until it appears', async (t) => {
  const env = await setup(t, { prepare: (dir) => writeFileSync(join(dir, 'a.yaml'), policyYaml('alpha', 5)) });
  const id = await idOf(env.storage, 'alpha');
  t.ok(id, 'loaded by the first start');
  await env.loader.close();
  rmSync(env.dir, { recursive: true, force: true });

  const again = await env.restart();
  t.equal(await idOf(env.storage, 'alpha'), id, 'not removed at start');
  t.equal(statusOf(again, 'policies')?.status, 'degraded');
  t.same(statusOf(again, 'policies')?.policies, ['alpha']);

  mkdirSync(env.dir);
  writeFileSync(join(env.dir, 'a.yaml'), policyYaml('alpha', 6));
  await until(t, 'applied when the folder appears', async () => (await maxOf(env.storage, 'alpha')) === 6);
  t.equal(await idOf(env.storage, 'alpha'), id, 'same id');
  await until(t, 'no longer degraded', () => statusOf(again, 'policies') === undefined);
});

t.test('symlink loops present at start: start finishes, each is reported once, nothing spins', async (t) => {
  const { dir, storage, loader, logs } = await setup(t, {
    prepare: (dir) => {
      writeFileSync(join(dir, 'good.yaml'), policyYaml('good'));
      symlinkSync('loop.yaml', join(dir, 'loop.yaml'));
      symlinkSync('pong.yaml', join(dir, 'ping.yaml'));
      symlinkSync('ping.yaml', join(dir, 'pong.yaml'));
      symlinkSync('.', join(dir, 'sub'));
      mkdirSync(join(dir, 'nested'));
      symlinkSync('..', join(dir, 'nested', 'up'));
    },
  });
  t.ok(await storage.getPolicyByName('good'), 'the good file is loaded');
  const loops = ['policies/loop.yaml', 'policies/ping.yaml', 'policies/pong.yaml', 'policies/sub', 'policies/nested/up'];
  for (const p of loops) {
    const s = statusOf(loader, p);
    t.equal(s?.status, 'error', `${p} is reported`);
    t.match(s?.errors[0]?.message, /symlink loop/, `${p}: named as a loop`);
  }
  t.equal((await storage.listPolicies({ limit: 100, offset: 0 })).total, 1, 'nothing read twice through a loop');

  // Later rescans (a new file, the periodic rescan) do not report them again.
  writeFileSync(join(dir, 'more.yaml'), policyYaml('more'));
  await until(t, 'a later file loaded', async () => (await storage.getPolicyByName('more')) !== undefined);
  const cpu = await cpuWhileIdle(1000);
  t.ok(cpu < 400, `idle with loops present: ${cpu.toFixed(0)} ms of CPU in 1 s`);
  for (const p of loops) t.equal(linesAbout(logs, p).length, 1, `${p} logged once`);
});

t.test('symlink loops made while running are reported once; removing them clears the report', async (t) => {
  const { dir, storage, loader, logs } = await setup(t, { prepare: (dir) => writeFileSync(join(dir, 'good.yaml'), policyYaml('good')) });
  symlinkSync('.', join(dir, 'again'));
  symlinkSync('b.yaml', join(dir, 'a.yaml'));
  symlinkSync('a.yaml', join(dir, 'b.yaml'));
  await until(t, 'loops reported', () => ['policies/again', 'policies/a.yaml', 'policies/b.yaml'].every((p) => statusOf(loader, p)?.status === 'error'));
  const rss = process.memoryUsage().rss;
  const cpu = await cpuWhileIdle(1500);
  t.ok(cpu < 600, `idle with loops made while running: ${cpu.toFixed(0)} ms of CPU in 1.5 s`);
  t.ok(process.memoryUsage().rss - rss < 100 * 1024 * 1024, 'memory does not climb');
  for (const p of ['policies/again', 'policies/a.yaml', 'policies/b.yaml']) t.equal(linesAbout(logs, p).length, 1, `${p} logged once`);
  t.ok(await storage.getPolicyByName('good'), 'other policies untouched');

  unlinkSync(join(dir, 'again'));
  unlinkSync(join(dir, 'a.yaml'));
  unlinkSync(join(dir, 'b.yaml'));
  await until(t, 'reports cleared', () => loader.problems().length === 0);
});

t.test('symlinks: followed only inside the folder; links out of it are reported and not read', async (t) => {
  const prepare = (dir: string, root: string): void => {
    mkdirSync(join(root, 'outside'));
    writeFileSync(join(root, 'outside', 'secret.yaml'), policyYaml('outside-policy'));
    writeFileSync(join(dir, 'good.yaml'), policyYaml('good'));
    symlinkSync('../outside/secret.yaml', join(dir, 'ext.yaml'));
    symlinkSync('/etc/passwd', join(dir, 'passwd.yaml'));
    symlinkSync('../outside', join(dir, 'extdir'));
    mkdirSync(join(dir, '.hidden'));
    writeFileSync(join(dir, '.hidden', 'inner.yaml'), policyYaml('inner'));
    symlinkSync('.hidden/inner.yaml', join(dir, 'linked.yaml'));
    symlinkSync('good.yaml', join(dir, 'alias.yaml'));
    // A FIFO named like a policy: opening it for reading would block until a writer comes.
    const fifo = spawnSync('mkfifo', [join(dir, 'pipe.yaml')]);
    if (fifo.status !== 0) throw new Error(`mkfifo failed: ${fifo.stderr.toString()}`);
  };
  const { root, dir, storage, loader } = await setup(t, { prepare });
  t.equal(await storage.getPolicyByName('outside-policy'), undefined, 'a policy outside the folder is not loaded');
  for (const p of ['policies/ext.yaml', 'policies/passwd.yaml', 'policies/extdir']) {
    t.match(statusOf(loader, p)?.errors[0]?.message, /outside the policy folder/, `${p} reported`);
  }
  t.equal((await storage.getPolicyByName('inner'))?.source, 'policies/linked.yaml', 'a link inside the folder is followed, under its own name');
  t.equal((await storage.getPolicyByName('good'))?.source, 'policies/good.yaml', 'a link to a file already read is not read twice');
  t.equal(statusOf(loader, 'policies/alias.yaml'), undefined);
  t.match(statusOf(loader, 'policies/pipe.yaml')?.errors[0]?.message, /not a regular file/, 'a FIFO is reported, never opened');
  t.equal(loader.statuses().filter((s) => s.status === 'ok').length, 2);

  // validate follows the same rules.
  const config = loadConfig({ env: {}, cwd: tmpdir() });
  const v = await validatePaths([dir], config);
  t.same(v.files.map((f) => f.file).sort(), [join(dir, 'good.yaml'), join(dir, 'linked.yaml')]);
  t.same(v.problems.map((p) => p.file).sort(), [join(dir, 'ext.yaml'), join(dir, 'extdir'), join(dir, 'passwd.yaml'), join(dir, 'pipe.yaml')]);

  // A good file replaced by a link out of the folder: reported, its last good policies stay.
  unlinkSync(join(dir, 'good.yaml'));
  symlinkSync(join(root, 'outside', 'secret.yaml'), join(dir, 'good.yaml'));
  const replaced = await until(t, 'replacement reported', () => {
    const s = statusOf(loader, 'policies/good.yaml');
    return s?.status === 'error' ? s : undefined;
  });
  t.match(replaced.errors[0]?.message, /outside the policy folder/);
  t.same(replaced.policies, ['good']);
  await sleep(800);
  t.ok(await storage.getPolicyByName('good'), 'its last good policy stays in force');
  t.equal(await storage.getPolicyByName('outside-policy'), undefined);
});

t.test('Kubernetes ConfigMap mount: each policy read once; an atomic update is picked up', async (t) => {
  const v1 = '..2026_01_01_00_00_00.123';
  const prepare = (dir: string): void => {
    mkdirSync(join(dir, v1));
    writeFileSync(join(dir, v1, 'x.yaml'), policyYaml('x-policy', 5));
    writeFileSync(join(dir, v1, 'y.yaml'), policyYaml('y-policy', 5));
    symlinkSync(v1, join(dir, '..data'));
    symlinkSync('..data/x.yaml', join(dir, 'x.yaml'));
    symlinkSync('..data/y.yaml', join(dir, 'y.yaml'));
  };
  const { dir, storage, loader } = await setup(t, { prepare });
  t.same(
    loader.statuses().map((s) => [s.path, s.status]),
    [
      ['policies/x.yaml', 'ok'],
      ['policies/y.yaml', 'ok'],
    ],
    'one status per key, no copies from ..data or the timestamped folder',
  );
  t.equal((await storage.listPolicies({ limit: 100, offset: 0 })).total, 2);
  const xId = await idOf(storage, 'x-policy');

  // The kubelet's atomic update: a new timestamped folder, ..data swapped to it by a rename, the
  // old folder removed; a key added (z) and one dropped (y).
  const v2 = '..2026_01_01_00_05_00.456';
  mkdirSync(join(dir, v2));
  writeFileSync(join(dir, v2, 'x.yaml'), policyYaml('x-policy', 9));
  writeFileSync(join(dir, v2, 'z.yaml'), policyYaml('z-policy', 2));
  symlinkSync(v2, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  symlinkSync('..data/z.yaml', join(dir, 'z.yaml'));
  unlinkSync(join(dir, 'y.yaml'));
  rmSync(join(dir, v1), { recursive: true, force: true });

  await until(t, 'update applied', async () => (await maxOf(storage, 'x-policy')) === 9 && (await storage.getPolicyByName('z-policy')) !== undefined && (await storage.getPolicyByName('y-policy')) === undefined);
  await loader.settle();
  t.equal(await idOf(storage, 'x-policy'), xId, 'same id after the update');
  t.same(
    loader.statuses().map((s) => [s.path, s.status]),
    [
      ['policies/x.yaml', 'ok'],
      ['policies/z.yaml', 'ok'],
    ],
  );

  const v = await validatePaths([dir], loadConfig({ env: {}, cwd: tmpdir() }));
  t.same(v.problems, [], 'validate agrees: no copies, no problems');
  t.same(v.files.map((f) => f.file), [join(dir, 'x.yaml'), join(dir, 'z.yaml')]);
});

t.test('oversized policy files are rejected before they are read; the last good policies stay', async (t) => {
  const { dir, storage, loader } = await setup(t);
  const file = join(dir, 'big.yaml');
  writeFileSync(file, policyYaml('big', 5));
  await until(t, 'small version loaded', async () => (await maxOf(storage, 'big')) === 5);

  // Just over the default limit (1 MiB), written beside and renamed in, as an editor would.
  const padded = `${policyYaml('big', 9)}${'# padding padding padding padding padding padding padding padding\n'.repeat(17_000)}`;
  writeFileSync(join(dir, '.big.tmp'), padded);
  renameSync(join(dir, '.big.tmp'), file);
  const over = await until(t, 'rejected for its size', () => statusOf(loader, 'policies/big.yaml')?.errors.find((e) => /bytes/.test(e.message)));
  t.match(over.message, new RegExp(`${Buffer.byteLength(padded)} bytes.*limit of 1048576 bytes`));
  t.equal(await maxOf(storage, 'big'), 5, 'the last good version stays in force');

  // A 47.5 MB (sparse) file: refused from its size alone; the event loop never stalls on it.
  writeFileSync(join(dir, '.huge.tmp'), policyYaml('huge'));
  truncateSync(join(dir, '.huge.tmp'), 47_500_000);
  let worstLag = 0;
  let last = performance.now();
  const probe = setInterval(() => {
    const now = performance.now();
    worstLag = Math.max(worstLag, now - last - 10);
    last = now;
  }, 10);
  renameSync(join(dir, '.huge.tmp'), join(dir, 'huge.yaml'));
  try {
    const huge = await until(t, 'huge file rejected', () => statusOf(loader, 'policies/huge.yaml'));
    t.equal(huge.status, 'error');
    t.match(huge.errors[0]?.message, /47500000 bytes.*limit of 1048576 bytes/);
  } finally {
    clearInterval(probe);
  }
  t.ok(worstLag < 1000, `event loop lag stayed small (${worstLag.toFixed(0)} ms)`);
  t.equal(await storage.getPolicyByName('huge'), undefined);

  // Back under the limit: applied again.
  writeFileSync(file, policyYaml('big', 6));
  await until(t, 'fixed', async () => (await maxOf(storage, 'big')) === 6);
});

t.test('the size limit is an option of the loader and of validate, and holds when a file grows after its stat', async (t) => {
  const { dir, storage, loader } = await setup(t, { loader: { maxFileBytes: 4096 } });
  writeFileSync(join(dir, 'p.yaml'), policyYaml('p', 5));
  await until(t, 'loaded', async () => (await maxOf(storage, 'p')) === 5);
  writeFileSync(join(dir, 'p.yaml'), `${policyYaml('p', 9)}${'#'.repeat(5000)}\n`);
  const s = await until(t, 'rejected', () => statusOf(loader, 'policies/p.yaml')?.errors[0]);
  t.match(s.message, /\d+ bytes.*limit of 4096 bytes/);
  t.equal(await maxOf(storage, 'p'), 5);

  const config = { ...loadConfig({ env: {}, cwd: tmpdir() }), max_policy_file_bytes: 4096 };
  const v = await validatePaths([dir], config);
  t.match(v.problems[0]?.message, /limit of 4096 bytes/, 'validate applies max_policy_file_bytes');

  // A file whose stat says 0 bytes yet reads longer (as one growing between stat and read does):
  // at most limit + 1 bytes are read, and it is refused.
  t.equal(statSync('/proc/self/maps').size, 0, 'precondition: the kernel reports size 0');
  const parsed = await parsePolicyFile('/proc/self/maps', () => {
    throw new Error('must not be parsed');
  }, 'maps.yaml', { maxBytes: 1024 });
  t.match(parsed.problems[0]?.message, /more than 1024 bytes.*limit of 1024 bytes/);
});

t.test('one name in two files: when the owner is deleted or drops it, the other file takes over with the same id', async (t) => {
  const { dir, storage, loader } = await setup(t, {
    prepare: (dir) => {
      writeFileSync(join(dir, 'a.yaml'), `${policyYaml('shared', 5)}---\n${policyYaml('a-only')}`);
      writeFileSync(join(dir, 'b.yaml'), policyYaml('shared', 8));
    },
  });
  t.equal((await storage.getPolicyByName('shared'))?.source, 'policies/a.yaml');
  t.match(statusOf(loader, 'policies/b.yaml')?.errors[0]?.message, /already defined in policies\/a\.yaml/);
  const id = await idOf(storage, 'shared');

  unlinkSync(join(dir, 'a.yaml'));
  await until(t, 'b takes over', async () => (await storage.getPolicyByName('shared'))?.source === 'policies/b.yaml');
  t.equal(await maxOf(storage, 'shared'), 8, "b's version is applied");
  t.equal(await idOf(storage, 'shared'), id, 'same id');
  t.equal(statusOf(loader, 'policies/b.yaml')?.status, 'ok');
  await until(t, 'a-only removed', async () => (await storage.getPolicyByName('a-only')) === undefined);

  writeFileSync(join(dir, 'c.yaml'), policyYaml('shared', 2));
  await until(t, 'c rejected', () => statusOf(loader, 'policies/c.yaml')?.status === 'error');
  t.match(statusOf(loader, 'policies/c.yaml')?.errors[0]?.message, /already defined in policies\/b\.yaml/);
  writeFileSync(join(dir, 'b.yaml'), policyYaml('b-only'));
  await until(t, 'c takes over when b stops defining the name', async () => (await storage.getPolicyByName('shared'))?.source === 'policies/c.yaml');
  t.equal(await maxOf(storage, 'shared'), 2);
  t.equal(await idOf(storage, 'shared'), id, 'still the same id');
  await until(t, 'all ok', () => loader.statuses().every((s) => s.status === 'ok'));
  t.ok(await storage.getPolicyByName('b-only'));
});
