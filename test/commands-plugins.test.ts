import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { runCli } from './helpers/cli.js';

/**
 * The one-shot commands (validate, test, evaluate, backtest) load plugins and config exactly as
 * `serve` does: a target type that only a third-party executor declares, in a plugin folder
 * named by the config, is known to all of them.
 */

function run(args: string[], cwd: string): ReturnType<typeof runCli> {
  return runCli(args, { cwd });
}

/** A third party's executor for the target type "flink", in a folder of its own, outside this package. */
function writeFlinkExecutor(dir: string): void {
  const plugin = join(dir, 'flink-exec');
  mkdirSync(plugin, { recursive: true });
  writeFileSync(
    join(plugin, 'package.json'),
    JSON.stringify({ name: 'flink-exec', version: '1.0.0', type: 'module', main: 'index.js', 'philotes-scaler': { kind: 'executor', name: 'flink-exec', apiVersion: '^1.0.0' } }),
  );
  writeFileSync(
    join(plugin, 'index.js'),
    `export default function create(ctx) {
  const replicas = new Map();
  return {
    targetTypes: ['flink'],
    async getCurrentReplicas(target) { return replicas.get(target.policyName) ?? 4; },
    async scale(target, count) { replicas.set(target.policyName, count); },
  };
}
`,
  );
}

const POLICY = `name: flink-jobs
target_type: flink
executor: flink-exec
min_replicas: 1
max_replicas: 10
scale_up_rules:
  - metric: flink_backlog
    operator: gt
    threshold: 100
    scale_by: 2
`;

const TEST_FILE = `policy_files: [flink.yaml]
evaluation_interval: 1m
tests:
  - name: a backlog scales up
    start: 2026-12-07T10:00:00Z
    initial_replicas: 1
    input_series:
      - query: flink_backlog
        values: '500x5'
    expect:
      - at: 0m
        action: scale_up
        replicas: 3
`;

t.test('validate, test, evaluate and backtest know a target type that a configured plugin folder declares', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'philotes-commands-plugins-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFlinkExecutor(join(dir, 'third-party'));
  writeFileSync(join(dir, 'flink.yaml'), POLICY);
  writeFileSync(join(dir, 'flink.test.yaml'), TEST_FILE);
  // Prometheus is not there: evaluate and backtest still load the policy, then meet a metric error.
  writeFileSync(join(dir, 'conf.yaml'), `plugin_dirs: [${JSON.stringify(join(dir, 'third-party'))}]\nprometheus_url: http://127.0.0.1:9\n`);

  const validate = await run(['validate', '--config', 'conf.yaml', 'flink.yaml'], dir);
  t.equal(validate.code, 0, `validate accepts the policy: ${validate.stdout}${validate.stderr}`);
  t.match(validate.stdout, /ok: 1 file\(s\), 1 policies valid/);

  const withoutConfig = await run(['validate', 'flink.yaml'], dir);
  t.equal(withoutConfig.code, 1, 'without the config the plugin folder is unknown, and so is the target type');
  t.match(withoutConfig.stdout, /target_type/);

  const test = await run(['test', '--config', 'conf.yaml', 'flink.test.yaml'], dir);
  t.equal(test.code, 0, `the policy test runs: ${test.stdout}${test.stderr}`);
  t.match(test.stdout, /PASS/);

  const evaluate = await run(['evaluate', '--config', 'conf.yaml', '--json', '--at', '2026-12-07T10:00:00Z', 'flink.yaml'], dir);
  t.equal(evaluate.code, 0, `evaluate loads the policy: ${evaluate.stderr}`);
  const record = JSON.parse(evaluate.stdout) as { policy_name: string; reason_code: string; current_replicas: number };
  t.equal(record.policy_name, 'flink-jobs');
  t.equal(record.reason_code, 'metric_error', 'no Prometheus at port 9');
  t.equal(record.current_replicas, 4, "the current replicas are the third-party executor's answer");

  const backtest = await run(['backtest', '--config', 'conf.yaml', 'flink.yaml', '--from', '2026-12-07T10:00:00Z', '--to', '2026-12-07T10:05:00Z'], dir);
  t.equal(backtest.code, 0, `backtest loads the policy: ${backtest.stderr}`);
  t.match(backtest.stdout, /policy\s+flink-jobs/);
});
