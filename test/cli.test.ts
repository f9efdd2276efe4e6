import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { runCli } from './helpers/cli.js';
import { packageRoot } from '../src/util/package-root.js';

const root = packageRoot();

/** Runs the CLI in the package root. */
function run(args: string[], env: Record<string, string> = {}): ReturnType<typeof runCli> {
  return runCli(args, { env });
}

t.test('--help for the tool and for each command', async (t) => {
  const top = await run(['--help']);
  t.equal(top.code, 0);
  for (const c of ['validate', 'evaluate', 'backtest', 'test', 'migrate']) t.match(top.stdout, new RegExp(`philotes-scaler ${c}`));
  for (const c of ['serve', 'validate', 'evaluate', 'backtest', 'test', 'migrate']) {
    const r = await run([c, '--help']);
    t.equal(r.code, 0, `${c} --help exits 0`);
    t.match(r.stdout, new RegExp(`philotes-scaler ${c}`), `${c} --help describes ${c}`);
  }
});

t.test('a bare philotes-scaler prints the usage and starts nothing; --version prints the version', async (t) => {
  const bare = await run([]);
  t.equal(bare.code, 0);
  t.match(bare.stdout, /^philotes-scaler: the Philotes scaling engine/);
  t.match(bare.stdout, /philotes-scaler serve /, 'serve is named, not implied');
  t.notMatch(bare.stdout + bare.stderr, /listening/, 'no server started');
  const version = await run(['--version']);
  t.equal(version.code, 0);
  t.equal(version.stdout, `philotes-scaler ${JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version}\n`);
});

t.test('usage mistakes exit 2 and say what is wrong', async (t) => {
  const unknown = await run(['frobnicate']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown command "frobnicate"/);
  const flag = await run(['validate', '--colour', 'x']);
  t.equal(flag.code, 2, 'an unknown option is a usage mistake');
  t.match(flag.stderr, /Unknown option '--colour'/);
  t.match(flag.stderr, /philotes-scaler validate/, "with the subcommand's usage");
  t.notMatch(flag.stderr, /philotes-scaler backtest/, 'not the whole tool\'s');
  const env = await run(['validate', 'policies'], { PORT: 'eighty' });
  t.equal(env.code, 2);
  t.match(env.stderr, /PORT: must be an integer/);
  const nope = await run(['validate', 'nope.yaml']);
  t.equal(nope.code, 1, 'a path that is not there fails validate');
  t.match(nope.stdout, /^0 file\(s\) read; 1 path\(s\) not found \(nope\.yaml\)$/m, 'counted as a missing path, not as "1 problem in 1 of 0 files"');
  t.notMatch(nope.stdout, /of 0 file/);
  const mixed = await run(['validate', 'nope.yaml', 'policies']);
  t.match(mixed.stdout, /^3 file\(s\) read; 1 path\(s\) not found \(nope\.yaml\)$/m);
  const noFrom = await run(['backtest', 'policies/trino.yaml', '--to', '2026-01-02T00:00:00Z']);
  t.equal(noFrom.code, 2);
  t.match(noFrom.stderr, /--from: is required/);
});

t.test('evaluate prints a decision record (--json) and touches no store', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ps-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const db = join(dir, 'never.db');
  // trino-workers keeps a floor of 3 from 08:00 to 18:00 Budapest time on weekdays, so the
  // instant is pinned: a Saturday (no window), then a Wednesday at 10:00 in Budapest (inside it).
  const r = await run(['evaluate', 'policies/trino.yaml', '--json', '--prometheus', 'http://127.0.0.1:9', '--at', '2026-01-31T10:00:00Z'], { PHILOTES_SCALING_DATABASE_PATH: db });
  t.equal(r.code, 0, r.stderr);
  type Record = { policy_name: string; evaluated_at: string; reason_code: string; action: string; desired_replicas: number; dry_run: boolean; rules: Array<{ error: string | null }> };
  const record = JSON.parse(r.stdout) as Record;
  t.equal(record.policy_name, 'trino-workers');
  t.equal(record.evaluated_at, '2026-01-31T10:00:00.000Z', 'evaluated at --at, not at the wall clock');
  t.equal(record.reason_code, 'metric_error', 'no Prometheus: metric_error, never a pretend number');
  t.equal(record.dry_run, true);
  t.match(record.rules[0]?.error, /unreachable/);
  const inWindow = await run(['evaluate', 'policies/trino.yaml', '--json', '--prometheus', 'http://127.0.0.1:9', '--at', '2026-01-28T10:00:00+01:00'], { PHILOTES_SCALING_DATABASE_PATH: db });
  t.equal(inWindow.code, 0, inWindow.stderr);
  const held = JSON.parse(inWindow.stdout) as Record;
  t.equal(held.evaluated_at, '2026-01-28T09:00:00.000Z');
  t.same([held.action, held.reason_code, held.desired_replicas], ['scheduled', 'schedule_window', 3], 'inside the weekday floor window the floor of 3 applies');
  const badAt = await run(['evaluate', 'policies/trino.yaml', '--at', 'tomorrow']);
  t.equal(badAt.code, 2);
  t.match(badAt.stderr, /--at: must be an ISO-8601 time with an offset/);
  const { existsSync } = await import('node:fs');
  t.notOk(existsSync(db), 'no database file was created');
  writeFileSync(join(dir, 'bad.yaml'), 'name: bad\ntarget_type: cdc-worker\nmin_replicas: 3\nmax_replicas: 1\n');
  const bad = await run(['evaluate', join(dir, 'bad.yaml')]);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /bad\.yaml:3:15 \/min_replicas must not exceed max_replicas/);
});

t.test('evaluate: a summary for people by default; --current-replicas replaces the assumed count', async (t) => {
  // In the weekday window the floor is 3: from 5 replicas nothing changes, from 2 (min_replicas) the floor lifts it.
  const at = ['--prometheus', 'http://127.0.0.1:9', '--at', '2026-01-28T10:00:00+01:00'];
  const summary = await run(['evaluate', 'policies/trino.yaml', ...at]);
  t.equal(summary.code, 0, summary.stderr);
  t.match(summary.stdout, /^trino-workers at 2026-01-28T09:00:00\.000Z$/m);
  t.match(summary.stdout, /^ {2}decision +scheduled change: 2 -> 3 replicas \(schedule_window\)$/m, 'from min_replicas (2) to the floor');
  t.match(summary.stdout, /^ {2}current +2 replicas, assumed min_replicas \(its executor did not know/m, 'says where the current count came from');
  t.match(summary.stdout, /^ {2}rule up +\S.* > \d+ over \d+s: error: unreachable/m, 'each rule with its verdict');
  t.match(summary.stdout, /^ {2}schedule +0 8 \* \* 1-5 \(Europe\/Budapest, window, floor\): 3 replicas/m);
  t.match(summary.stdout, /nothing was executed/);
  t.throws(() => JSON.parse(summary.stdout) as unknown, 'not JSON');

  const five = await run(['evaluate', 'policies/trino.yaml', '--json', '--current-replicas', '5', ...at]);
  t.equal(five.code, 0, five.stderr);
  const record = JSON.parse(five.stdout) as { current_replicas: number; desired_replicas: number; action: string; reason_code: string };
  t.same([record.current_replicas, record.desired_replicas, record.action], [5, 5, 'none'], 'at 5 replicas the floor of 3 changes nothing');
  const fiveText = await run(['evaluate', 'policies/trino.yaml', '--current-replicas', '5', ...at]);
  t.match(fiveText.stdout, /^ {2}current +5 replicas, given with --current-replicas$/m);

  for (const bad of ['-1', 'three', '100001']) {
    const r = await run(['evaluate', 'policies/trino.yaml', `--current-replicas=${bad}`]);
    t.equal(r.code, 2, `--current-replicas ${bad} is a usage mistake`);
    t.match(r.stderr, /--current-replicas: must be an integer from 0 to 100000/);
  }
  const help = await run(['evaluate', '--help']);
  for (const flag of ['--config FILE', '--current-replicas N', '--json', '--at TIME']) t.match(help.stdout, flag, `evaluate --help names ${flag}`);
  for (const c of ['validate', 'backtest', 'test']) t.match((await run([c, '--help'])).stdout, '--config FILE', `${c} --help names --config`);
});

t.test('backtest takes times relative to now: --from -2h, --to now (the default)', async (t) => {
  const before = Math.floor(Date.now() / 1000) * 1000;
  const r = await run(['backtest', 'policies/trino.yaml', '--from', '-2h', '--prometheus', 'http://127.0.0.1:9']);
  const after = Date.now();
  t.equal(r.code, 0, r.stderr);
  const range = /^range +(\S+) \.\. (\S+), step 60s$/m.exec(r.stdout);
  t.ok(range, r.stdout);
  const from = Date.parse(range?.[1] ?? '');
  const to = Date.parse(range?.[2] ?? '');
  t.ok(to >= before && to <= after, 'to is now');
  t.equal(to - from, 2 * 3600 * 1000, 'from is two hours before it');
  t.match(r.stdout, /^evaluations +121$/m);
  const both = await run(['backtest', 'policies/trino.yaml', '--from', '-1d', '--to', '-23h', '--prometheus', 'http://127.0.0.1:9']);
  t.match(both.stdout, /^evaluations +61$/m, '-1d .. -23h is an hour');
  const iso = await run(['backtest', 'policies/trino.yaml', '--from=2026-01-01T00:00:00Z', '--to', '2026-01-01T00:10:00Z', '--prometheus', 'http://127.0.0.1:9']);
  t.match(iso.stdout, /^range +2026-01-01T00:00:00\.000Z \.\. 2026-01-01T00:10:00\.000Z, step 60s$/m, 'ISO times as before');
  const bad = await run(['backtest', 'policies/trino.yaml', '--from', '-2 hours']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--from: must be an ISO-8601 time, "now" or a duration before now such as -24h/);
});

t.test('test runs policy tests: exit 0 when they pass, 1 with a diff when one fails', async (t) => {
  const ok = await run(['test', 'test/policy-tests']);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, /\d+ passed, 0 failed/);
  const dir = mkdtempSync(join(tmpdir(), 'ps-cli-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    join(dir, 'wrong.test.yaml'),
    [
      `policy_files: [${join(root, 'policies', 'cdc-worker.yaml')}]`,
      'evaluation_interval: 1m',
      'tests:',
      '  - name: expects a scale-up that cannot happen',
      '    start: 2026-01-03T12:00:00Z',
      '    initial_replicas: 2',
      '    input_series:',
      "      - query: max(philotes_cdc_lag_seconds)",
      "        values: '5x10'",
      '    expect:',
      '      - { at: 5m, replicas: 4 }',
    ].join('\n'),
  );
  const bad = await run(['test', join(dir, 'wrong.test.yaml')]);
  t.equal(bad.code, 1);
  t.match(bad.stdout, /FAIL expects a scale-up that cannot happen/);
  t.match(bad.stdout, /replicas/);
  t.match(bad.stdout, /0 passed, 1 failed/);
});
