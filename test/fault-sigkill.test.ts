/**
 * kill -9 in the middle of a scaling action. A daemon child process on SQLite runs two policies
 * whose executor (a third-party plugin from a temp folder) takes SCALE_MS per scale() and logs each
 * call to a file. The daemon is SIGKILLed while both scale() calls are in flight (started, not
 * finished); a new daemon on the same database then runs several cycles.
 *
 * No second scale call may happen within the cooldown, and the state must show the cooldown
 * running: the manager records the intent of a real change before it calls the executor, so the
 * restarted daemon treats the change in flight as made (never a double scale).
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { request, roleOf, spawnDaemon, waitFor, type DaemonProcess } from './helpers/daemon-process.js';

const SCALE_MS = 3_000;
const COOLDOWN = 300;
const CYCLES_AFTER_RESTART = 4;

interface StateAnswer {
  current_replicas: number | null;
  last_change_at: string | null;
  cooldown_seconds: number;
  cooldown_remaining_seconds: number;
  consecutive_metric_failures: number;
  last_decision: { action: string; reason_code: string; current_replicas: number; desired_replicas: number; evaluated_at: string } | null;
  last_evaluated_at: string | null;
}

async function writePlugin(root: string, name: string, kind: string, code: string): Promise<void> {
  await mkdir(join(root, name));
  await writeFile(join(root, name, 'package.json'), JSON.stringify({ name: `philotes-test-${name}`, version: '1.0.0', type: 'module', main: 'index.js', 'philotes-scaler': { kind, name, apiVersion: '^1.0.0' } }));
  await writeFile(join(root, name, 'index.js'), code);
}

t.test('SIGKILL while scale() runs: the restarted daemon makes no second call within the cooldown', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'philotes-sigkill-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const pluginDir = join(root, 'plugins');
  await mkdir(pluginDir);
  const calls = join(pluginDir, 'slowlog', 'calls.log');
  await writePlugin(
    pluginDir,
    'slowlog',
    'executor',
    `import { appendFileSync } from 'node:fs';
const log = new URL('./calls.log', import.meta.url);
export default function create() {
  return {
    targetTypes: ['slow-thing'],
    async getCurrentReplicas() { return null; },
    async scale(target, replicas, opts) {
      appendFileSync(log, 'start ' + target.policyName + ' ' + replicas + ' ' + Date.now() + '\\n');
      await new Promise((resolve) => setTimeout(resolve, ${SCALE_MS}));
      appendFileSync(log, 'done ' + target.policyName + ' ' + replicas + ' ' + Date.now() + '\\n');
    },
  };
}
`,
  );
  await writePlugin(
    pluginDir,
    'constant',
    'metric-source',
    `export default function create() {
  return { async instantQuery(q) { return { t: q.time.getTime() / 1000, v: 100 }; } };
}
`,
  );
  const cwd = join(root, 'daemon');
  await mkdir(cwd);
  const env = { PHILOTES_SCALING_EVALUATION_INTERVAL: '1s', PHILOTES_SCALING_PLUGIN_DIRS: pluginDir };
  const daemons: DaemonProcess[] = [];
  t.teardown(async () => {
    for (const d of daemons) await d.destroy();
  });

  const first = await spawnDaemon({ name: 'first', cwd, env });
  daemons.push(first);
  const base = { target_type: 'slow-thing', executor: 'slowlog', min_replicas: 1, max_replicas: 5, dry_run: false, cooldown_seconds: COOLDOWN };
  const policies = {
    // Prometheus is unreachable (the helper's URL): after one failure the fallback wants 3.
    'kill-fallback': { ...base, on_metric_error: 'fallback', fallback: { after_failures: 1, replicas: 3 }, scale_up_rules: [{ metric: 'philotes_test_load', operator: 'gt', threshold: 10, scale_by: 1 }] },
    // The constant source answers 100: the rule holds every cycle and wants one more replica each time.
    'kill-rule': { ...base, scale_up_rules: [{ metric: 'load', source: 'constant', operator: 'gt', threshold: 10, scale_by: 1 }] },
  };
  const expected = { 'kill-fallback': 3, 'kill-rule': 2 };
  for (const [name, body] of Object.entries(policies)) {
    const res = await request('POST', `${first.api}/policies`, { name, ...body });
    t.equal(res.status, 201, `policy ${name} created (${JSON.stringify(res.body).slice(0, 200)})`);
  }

  const lines = (): string[] => (existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n').filter((l) => l !== '') : []);
  const starts = (name: string): string[] => lines().filter((l) => l.startsWith(`start ${name} `));
  const dones = (): string[] => lines().filter((l) => l.startsWith('done '));
  await waitFor('both scale() calls to start', () => (starts('kill-fallback').length > 0 && starts('kill-rule').length > 0 ? true : undefined), 15_000, 10);
  first.kill('SIGKILL');
  const killedAt = Date.now();
  const exit = await first.waitExit(10_000);
  t.same(exit, { code: null, signal: 'SIGKILL' }, 'the first daemon died of SIGKILL');
  t.same(dones(), [], 'it died while both scale() calls were in flight (started, none finished)');
  const startedBeforeKill = lines();
  t.comment(`killed ${killedAt - Number(startedBeforeKill.at(-1)?.split(' ')[3] ?? killedAt)} ms after the last scale() started: ${startedBeforeKill.join(' | ')}`);

  const second = await spawnDaemon({ name: 'second', cwd, env });
  daemons.push(second);
  await waitFor('the new daemon to lead (the dead one left its lock file)', async () => ((await roleOf(second)) === 'leader' ? true : undefined), 15_000, 100);

  const state = async (name: string): Promise<StateAnswer> => {
    const res = await request('GET', `${second.api}/policies/${name}/state`);
    if (res.status !== 200) throw new Error(`GET state of ${name}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body as StateAnswer;
  };
  // Several cycles of the new daemon: each evaluation moves last_evaluated_at.
  const seen = new Map<string, Set<string>>(Object.keys(policies).map((n) => [n, new Set<string>()]));
  const restartedAt = new Date().toISOString();
  await waitFor(
    `${CYCLES_AFTER_RESTART} evaluations of each policy by the new daemon`,
    async () => {
      for (const name of Object.keys(policies)) {
        const at = (await state(name)).last_evaluated_at;
        if (at !== null && at >= restartedAt) seen.get(name)?.add(at);
      }
      return [...seen.values()].every((s) => s.size >= CYCLES_AFTER_RESTART) ? true : undefined;
    },
    30_000,
    200,
  );

  for (const [name, desired] of Object.entries(expected)) {
    t.equal(starts(name).length, 1, `${name}: exactly one scale() call in all (${starts(name).join(' | ')})`);
    const s = await state(name);
    t.ok(s.last_change_at !== null, `${name}: the change in flight counts as made (last_change_at ${s.last_change_at})`);
    t.ok(s.cooldown_remaining_seconds > 0 && s.cooldown_remaining_seconds <= COOLDOWN, `${name}: the cooldown is honoured (${s.cooldown_remaining_seconds} of ${s.cooldown_seconds} s remaining)`);
    t.equal(s.current_replicas, desired, `${name}: current replicas are the in-flight change's ${desired}`);
    t.equal(s.last_decision?.action, 'none', `${name}: the new daemon's decision is no action (${s.last_decision?.reason_code})`);
    t.ok((s.last_decision?.evaluated_at ?? '') >= restartedAt, `${name}: that decision is the new daemon's`);
  }
  const rule = await state('kill-rule');
  t.equal(rule.last_decision?.reason_code, 'cooldown', 'kill-rule: the rule still holds, and the cooldown is what stops it');
  const history = await request('GET', `${second.api}/history?limit=100`);
  const rows = (history.body as { history: Array<{ policy_name: string; status: string; reason_code: string; error: string | null; new_replicas: number }> }).history;
  for (const [name, desired] of Object.entries(expected)) {
    const interrupted = rows.filter((r) => r.policy_name === name && r.status === 'failed' && /outcome unknown/.test(r.error ?? ''));
    t.equal(interrupted.length, 1, `${name}: the change cut off by SIGKILL has one history row, outcome unknown`);
    t.equal(interrupted[0]?.new_replicas, desired);
  }
  t.ok(
    rows.some((r) => r.policy_name === 'kill-rule' && r.status === 'blocked' && r.reason_code === 'cooldown'),
    'kill-rule: the blocked change is in the history (cooldown)',
  );
  t.notOk(rows.some((r) => r.status === 'succeeded'), 'no scale is recorded as succeeded after the restart');
  t.comment(`after the restart: ${[...seen.values()].map((s) => s.size).join(' and ')} evaluations; scale() calls in all: ${lines().filter((l) => l.startsWith('start ')).length}; history rows: ${rows.map((r) => `${r.policy_name}/${r.status}/${r.reason_code}`).join(', ')}`);
});
