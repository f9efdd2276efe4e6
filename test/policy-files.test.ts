import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { PolicyFileLoader } from '../src/files/policy-file-loader.js';
import { parsePolicyText } from '../src/files/policy-file.js';
import { validatePaths } from '../src/files/validate-command.js';
import { loadConfig } from '../src/config/config.js';
import { PolicyService } from '../src/policy/policy-service.js';
import { createValidationContext } from '../src/policy/validation-context.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import type { SqlStorage } from '../src/storage/sql-storage.js';
import { packageRoot } from '../src/util/package-root.js';

const silent = pino({ level: 'silent' });
const CONFIG = { executors: { 'cdc-worker': 'keda', trino: 'keda', risingwave: 'keda', nodes: 'logger' }, prices: {}, default_metric_source: 'prometheus' };

const policyYaml = (name: string, max = 5, extra = ''): string =>
  `name: ${name}\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: ${max}\n${extra}`;

interface Env {
  root: string;
  dir: string;
  storage: SqlStorage;
  service: PolicyService;
  loader: PolicyFileLoader;
}

async function setup(t: Test, prepare?: (dir: string) => void): Promise<Env> {
  const root = mkdtempSync(join(tmpdir(), 'ps-files-'));
  const dir = join(root, 'policies');
  mkdirSync(dir);
  prepare?.(dir);
  const storage = createSqliteStorage(join(root, 'db.sqlite'));
  await storage.migrate();
  const service = new PolicyService({ storage, validation: createValidationContext(CONFIG), defaultCooldown: 300 });
  const loader = new PolicyFileLoader({ dirs: [dir], storage, policies: service, logger: silent, stabilityMs: 40, cwd: root });
  await loader.start();
  t.teardown(async () => {
    await loader.close();
    await storage.close();
    rmSync(root, { recursive: true, force: true });
  });
  return { root, dir, storage, service, loader };
}

/** Polls until check() is truthy; fails the test after 5 s. */
async function until<T>(t: Test, what: string, check: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) {
      t.fail(`timed out waiting for ${what}`);
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

const maxOf = async (s: SqlStorage, name: string) => (await s.getPolicyByName(name))?.max_replicas;

t.test('add, edit, break, fix, delete: storage follows the folder, the last good version survives a break', async (t) => {
  const { dir, storage, loader } = await setup(t);
  const file = join(dir, 'a.yaml');
  writeFileSync(file, policyYaml('alpha', 5));
  await until(t, 'alpha added', async () => (await maxOf(storage, 'alpha')) === 5);
  const added = await storage.getPolicyByName('alpha');
  t.equal(added?.source, 'policies/a.yaml', 'stored with its source path');

  writeFileSync(file, policyYaml('alpha', 7));
  await until(t, 'alpha edited', async () => (await maxOf(storage, 'alpha')) === 7);
  t.equal((await storage.getPolicyByName('alpha'))?.id, added?.id, 'an edit keeps the policy id (and so its history)');

  writeFileSync(file, 'name: alpha\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: [7\n');
  const broken = await until(t, 'error status', async () => loader.statuses().find((s) => s.path === 'policies/a.yaml' && s.status === 'error'));
  t.equal(await maxOf(storage, 'alpha'), 7, 'the last good version stays in force');
  t.same(broken.policies, ['alpha']);
  t.match(broken.errors[0]?.message, /YAML syntax/);

  writeFileSync(file, policyYaml('alpha', 3, 'scale_up_rules:\n  - metric: lag\n    operator: gt\n    threshold: 5\n    scale_by: -1\n'));
  const semantic = await until(t, 'semantic error', async () => loader.statuses().find((s) => s.errors.some((e) => e.field === '/scale_up_rules/0/scale_by')));
  t.same([semantic.errors[0]?.line, semantic.errors[0]?.column], [9, 15], 'line and column of the bad value');
  t.equal(await maxOf(storage, 'alpha'), 7);

  writeFileSync(file, policyYaml('alpha', 4));
  await until(t, 'fixed', async () => (await maxOf(storage, 'alpha')) === 4);
  t.equal(loader.statuses()[0]?.status, 'ok');

  await storage.appendHistory({
    id: '00000000-0000-4000-8000-000000000001', policy_id: added?.id ?? null, policy_name: 'alpha', action: 'scale_up', target_type: 'cdc-worker',
    target_id: null, previous_replicas: 1, new_replicas: 2, reason: 'test', reason_code: 'rules_held', triggered_by: 'rule', dry_run: false,
    status: 'succeeded', error: null, executed_at: new Date().toISOString(), details: null,
  });
  unlinkSync(file);
  await until(t, 'removed', async () => (await storage.getPolicyByName('alpha')) === undefined);
  t.equal(loader.statuses().length, 0);
  t.equal((await storage.listHistory({ limit: 10 })).rows[0]?.policy_name, 'alpha', 'history stays');
});

t.test('one file, several documents; a broken document keeps the whole file at its last good version', async (t) => {
  const { dir, storage, loader } = await setup(t);
  const file = join(dir, 'multi.yml');
  writeFileSync(file, `${policyYaml('one')}---\n${policyYaml('two')}---\n`);
  await until(t, 'both', async () => (await storage.getPolicyByName('two')) !== undefined && (await storage.getPolicyByName('one')) !== undefined);
  writeFileSync(file, `${policyYaml('one', 9)}---\n${policyYaml('two', 0)}`);
  const status = await until(t, 'error', async () => loader.statuses().find((s) => s.status === 'error'));
  const maxError = status.errors.find((e) => e.field === '/max_replicas');
  t.equal(maxError?.document, 1);
  t.equal(maxError?.line, 9, 'line counted from the top of the file');
  t.same(status.errors.map((e) => e.line), [...status.errors.map((e) => e.line)].sort((a, b) => (a ?? 0) - (b ?? 0)), 'in the order of the text');
  t.equal(await maxOf(storage, 'one'), 5, 'the valid document did not go in alone: the file is all or nothing');
  writeFileSync(file, policyYaml('one', 9));
  await until(t, 'two removed', async () => (await storage.getPolicyByName('two')) === undefined);
  t.equal(await maxOf(storage, 'one'), 9);
});

t.test('names are unique across files and API policies; other files are unaffected', async (t) => {
  const { dir, storage, service, loader } = await setup(t);
  await service.create({ name: 'api-owned', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 2 });
  writeFileSync(join(dir, 'good.yaml'), policyYaml('good'));
  writeFileSync(join(dir, 'steals-api.yaml'), policyYaml('api-owned', 9));
  await until(t, 'both handled', async () => loader.statuses().length === 2 && loader.statuses().every((s) => s.checked_at !== ''));
  const steal = await until(t, 'conflict', async () => loader.statuses().find((s) => s.path.endsWith('steals-api.yaml') && s.status === 'error'));
  t.match(steal.errors[0]?.message, /already used by a policy managed over the API/);
  t.equal(await maxOf(storage, 'api-owned'), 2, 'the API policy is untouched');
  t.equal((await storage.getPolicyByName('good'))?.source, 'policies/good.yaml');

  writeFileSync(join(dir, 'dup.yaml'), policyYaml('good', 8));
  const dup = await until(t, 'dup conflict', async () => loader.statuses().find((s) => s.path.endsWith('dup.yaml') && s.status === 'error'));
  t.match(dup.errors[0]?.message, /already defined in policies\/good\.yaml/);
  t.equal(await maxOf(storage, 'good'), 5);
});

t.test('renames and editors that write through a temp file', async (t) => {
  const { dir, storage } = await setup(t);
  writeFileSync(join(dir, 'old.yaml'), policyYaml('moving', 5));
  await until(t, 'added', async () => (await storage.getPolicyByName('moving'))?.source === 'policies/old.yaml');
  const id = (await storage.getPolicyByName('moving'))?.id;
  renameSync(join(dir, 'old.yaml'), join(dir, 'new.yaml'));
  await until(t, 'moved', async () => (await storage.getPolicyByName('moving'))?.source === 'policies/new.yaml');
  t.equal((await storage.getPolicyByName('moving'))?.id, id, 'a rename keeps the policy');

  // An editor's atomic save: write a temp file beside it, then rename over the original.
  writeFileSync(join(dir, '.new.yaml.swp'), policyYaml('moving', 6));
  writeFileSync(join(dir, 'new.yaml.tmp'), policyYaml('moving', 6));
  renameSync(join(dir, 'new.yaml.tmp'), join(dir, 'new.yaml'));
  await until(t, 'saved', async () => (await maxOf(storage, 'moving')) === 6);
  t.equal((await storage.listPolicies({ limit: 10, offset: 0 })).total, 1, 'temp files are not policies');
});

t.test('many rapid edits settle on the last version; a half-written file is never stored', async (t) => {
  const { dir, storage, loader } = await setup(t);
  const file = join(dir, 'rapid.yaml');
  for (let i = 1; i <= 40; i++) writeFileSync(file, policyYaml('rapid', i));
  await until(t, 'last version', async () => (await maxOf(storage, 'rapid')) === 40);
  await loader.settle();
  t.equal(loader.statuses()[0]?.status, 'ok');
  t.equal(await maxOf(storage, 'rapid'), 40);
});

t.test('100 files at start, and files deleted while stopped are removed at start', async (t) => {
  const { root, dir, storage, service, loader } = await setup(t, (dir) => {
    for (let i = 0; i < 100; i++) writeFileSync(join(dir, `p${String(i).padStart(3, '0')}.yaml`), policyYaml(`policy-${i}`));
  });
  t.equal(loader.statuses().length, 100, 'all loaded before start() returns');
  t.equal((await storage.listPolicies({ limit: 1000, offset: 0 })).total, 100);

  // A source in storage whose file is gone (deleted while the daemon was down) is removed at the next start.
  const template = await storage.getPolicyByName('policy-0');
  if (template === undefined) throw new Error('policy-0 missing');
  await storage.syncSource('policies/ghost.yaml', [{ ...template, id: '00000000-0000-4000-8000-00000000abcd', name: 'ghost' }]);
  t.ok(await storage.getPolicyByName('ghost'));
  await loader.close();
  const again = new PolicyFileLoader({ dirs: [dir], storage, policies: service, logger: silent, cwd: root });
  await again.start();
  t.teardown(() => again.close());
  t.equal(await storage.getPolicyByName('ghost'), undefined, 'the vanished file\'s policy is gone');
  t.equal((await storage.listPolicies({ limit: 1000, offset: 0 })).total, 100);
});

t.test('a YAML syntax error is reported at its line', async (t) => {
  const parsed = parsePolicyText('x.yaml', 'name: x\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: 2\nscale_up_rules:\n  - metric: "unterminated\n', (i) => {
    throw new Error(`should not parse ${JSON.stringify(i)}`);
  });
  t.equal(parsed.problems.length > 0, true);
  t.ok((parsed.problems[0]?.line ?? 0) >= 6, `reported at line ${parsed.problems[0]?.line}, where the string opens or runs out`);
  t.match(parsed.problems[0]?.message, /YAML syntax/);
});

t.test('validate: the shipped policies are valid; bad files give file:line:col lines and exit 1', async (t) => {
  const config = loadConfig({ env: {}, cwd: tmpdir() });
  const shipped = await validatePaths([join(packageRoot(), 'policies')], config);
  t.same(shipped.problems, [], 'policies/ is valid');
  t.equal(shipped.files.length, 3);

  const dir = mkdtempSync(join(tmpdir(), 'ps-validate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'bad.yaml'), 'name: bad\ntarget_type: cdc-worker\nmin_replicas: 3\nmax_replicas: 2\n');
  writeFileSync(join(dir, 'dup-a.yaml'), policyYaml('same'));
  writeFileSync(join(dir, 'dup-b.yaml'), policyYaml('same'));
  const cli = join(packageRoot(), 'src', 'cli.ts');
  const run = (...args: string[]) => spawnSync(process.execPath, [...process.execArgv, cli, 'validate', ...args], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  const bad = run(dir);
  t.equal(bad.status, 1, 'exit 1 on problems');
  t.match(bad.stdout, /bad\.yaml:3:15 \/min_replicas must not exceed max_replicas \(3 > 2\)/);
  t.match(bad.stdout, /dup-b\.yaml \/name "same" is also defined in .*dup-a\.yaml/);
  const json = run('--format', 'json', join(dir, 'bad.yaml'));
  t.equal(json.status, 1);
  const report = JSON.parse(json.stdout) as { valid: boolean; problems: Array<{ line: number; column: number; field: string }> };
  t.equal(report.valid, false);
  t.same([report.problems[0]?.line, report.problems[0]?.column, report.problems[0]?.field], [3, 15, '/min_replicas']);
  const good = run(join(packageRoot(), 'policies'));
  t.equal(good.status, 0, `exit 0 when valid: ${good.stderr}`);
});

t.test('validate: an unknown key is reported at the key with the nearest known name; problems in the order of the text', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ps-validate-order-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'p.yaml');
  writeFileSync(
    file,
    [
      'name: x',
      'target_type: cdc-worker',
      'min_replicas: 1',
      'max_replicas: 0',
      'scale_up_rule:',
      '  - metric: up',
      '    operator: gt',
      '    threshold: 1',
      '    scale_by: 1',
      'cooldown_seconds: -5',
      '',
    ].join('\n'),
  );
  const r = await validatePaths([file], loadConfig({ env: {}, cwd: dir }));
  t.same(
    r.problems.map((p) => [p.line, p.column, p.field]),
    [
      [3, 15, '/min_replicas'],
      [4, 15, '/max_replicas'],
      [5, 1, '/scale_up_rule'],
      [10, 19, '/cooldown_seconds'],
    ],
    'sorted by line; the unknown key at its own line and column, not at its value (6:3)',
  );
  t.equal(r.problems.find((p) => p.field === '/scale_up_rule')?.message, 'is not a known property (did you mean scale_up_rules?)');
});

t.test('a restart with unchanged files changes nothing stored: the same ids, updated_at and revision; an edit keeps the ids of unchanged rules', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ps-files-restart-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'policies');
  mkdirSync(dir);
  const rules =
    'scale_up_rules:\n  - { metric: lag, operator: gt, threshold: 60, duration: 5m, scale_by: 2 }\n' +
    'scale_down_rules:\n  - { metric: lag, operator: lt, threshold: 10, duration: 10m, scale_by: -1 }\n' +
    'schedules:\n  - { cron_expression: "0 8 * * 1-5", desired_replicas: 3 }\n';
  writeFileSync(join(dir, 'a.yaml'), policyYaml('restart-a', 5, rules));
  writeFileSync(join(dir, 'b.yaml'), policyYaml('restart-b', 4));
  const dbFile = join(root, 'db.sqlite');
  const run = async (): Promise<{ storage: SqlStorage; loader: PolicyFileLoader }> => {
    const storage = createSqliteStorage(dbFile);
    await storage.migrate();
    const service = new PolicyService({ storage, validation: createValidationContext(CONFIG), defaultCooldown: 300 });
    const loader = new PolicyFileLoader({ dirs: [dir], storage, policies: service, logger: silent, stabilityMs: 40, cwd: root });
    await loader.start();
    return { storage, loader };
  };
  const stop = async (r: { storage: SqlStorage; loader: PolicyFileLoader }): Promise<void> => {
    await r.loader.close();
    await r.storage.close();
  };

  const first = await run();
  const a = await first.storage.getPolicyByName('restart-a');
  const b = await first.storage.getPolicyByName('restart-b');
  const revision = await first.storage.policiesRevision();
  t.equal(a?.scale_up_rules.length, 1, 'loaded');
  await stop(first);
  await new Promise((r) => setTimeout(r, 20)); // a later clock, so a rewrite would show

  const second = await run();
  t.teardown(() => stop(second));
  t.strictSame(await second.storage.getPolicyByName('restart-a'), a, 'the same policy: ids, rule and schedule ids, updated_at');
  t.strictSame(await second.storage.getPolicyByName('restart-b'), b);
  t.equal(await second.storage.policiesRevision(), revision, 'nothing was written, so the revision did not move');

  writeFileSync(join(dir, 'a.yaml'), policyYaml('restart-a', 6, rules));
  const edited = await until(t, 'restart-a edited', async () => {
    const p = await second.storage.getPolicyByName('restart-a');
    return p?.max_replicas === 6 ? p : undefined;
  });
  t.not(edited.updated_at, a?.updated_at, 'an edit moves updated_at');
  t.equal(edited.scale_up_rules[0]?.id, a?.scale_up_rules[0]?.id, 'an unchanged rule keeps its id');
  t.equal(edited.scale_down_rules[0]?.id, a?.scale_down_rules[0]?.id);
  t.equal(edited.schedules[0]?.id, a?.schedules[0]?.id, 'an unchanged schedule keeps its id');
  t.strictSame(await second.storage.getPolicyByName('restart-b'), b, 'the other file is untouched');
});
