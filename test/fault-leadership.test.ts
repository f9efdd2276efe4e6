/**
 * Leadership fencing under faults: two daemons (real child processes) on one PostgreSQL database,
 * three policies whose rule holds every cycle (cooldown 0, so every cycle of the leader makes one
 * change per policy), and an executor plugin that logs every scale() call. The test then
 *   - terminates the leader's lock session (pg_terminate_backend) ten times, and
 *   - pauses the leader with SIGSTOP, terminates its lock session so the other daemon takes
 *     over, lets the new leader make changes, and resumes the old one with SIGCONT (three times).
 * A change executed twice (the same policy going from the same previous to the same new count in
 * two scale() calls) is a duplicate: there must be none, and every change must follow from the
 * one before it (no replica count skipped or repeated), which is what a single leader produces.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import t from 'tap';
import { request, roleOf, spawnDaemon, waitFor, type DaemonProcess } from './helpers/daemon-process.js';
import { createFreshDatabase } from './helpers/pg.js';

const INTERVAL = '1s';
const POLICIES = ['fence-a', 'fence-b', 'fence-c'];
const DROPS = 10;
const PAUSES = 3;

async function writePlugin(root: string, name: string, kind: string, code: string): Promise<void> {
  await mkdir(join(root, name));
  await writeFile(join(root, name, 'package.json'), JSON.stringify({ name: `philotes-test-${name}`, version: '1.0.0', type: 'module', main: 'index.js', 'philotes-scaler': { kind, name, apiVersion: '^1.0.0' } }));
  await writeFile(join(root, name, 'index.js'), code);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('lock-session drops and a paused leader: zero duplicate executions, nothing lost, no hang', async (t) => {
  const db = await createFreshDatabase('philotes_fence');
  const root = await mkdtemp(join(tmpdir(), 'philotes-fence-'));
  const daemons: DaemonProcess[] = [];
  const admin = new pg.Client({ connectionString: db.url });
  t.teardown(async () => {
    for (const d of daemons) {
      d.kill('SIGCONT');
      await d.destroy();
    }
    await admin.end().catch(() => undefined);
    await db.drop();
    await rm(root, { recursive: true, force: true });
  });
  const pluginDir = join(root, 'plugins');
  await mkdir(pluginDir);
  const calls = join(root, 'calls.log');
  // Each scale() call is logged with the daemon's pid when it is made (the moment a change is
  // executed); it then takes 30 ms, so a pause or a dropped session may land while one is in flight.
  await writePlugin(
    pluginDir,
    'recorder',
    'executor',
    `import { appendFileSync } from 'node:fs';
export default function create() {
  return {
    targetTypes: ['fenced-thing'],
    async getCurrentReplicas() { return null; },
    async scale(target, replicas) {
      appendFileSync(${JSON.stringify(calls)}, target.policyName + ' ' + replicas + ' ' + process.pid + '\\n');
      await new Promise((resolve) => setTimeout(resolve, 30));
    },
  };
}
`,
  );
  await writePlugin(pluginDir, 'constant', 'metric-source', `export default function create() {\n  return { async instantQuery(q) { return { t: q.time.getTime() / 1000, v: 100 }; } };\n}\n`);
  const env = { DATABASE_URL: db.url, PHILOTES_SCALING_EVALUATION_INTERVAL: INTERVAL, PHILOTES_SCALING_PLUGIN_DIRS: pluginDir };
  const [a, b] = await Promise.all([spawnDaemon({ name: 'A', env }), spawnDaemon({ name: 'B', env })]);
  if (a === undefined || b === undefined) throw new Error('unreachable');
  daemons.push(a, b);
  await admin.connect();
  for (const name of POLICIES) {
    const res = await request('POST', `${a.api}/policies`, {
      name,
      target_type: 'fenced-thing',
      executor: 'recorder',
      min_replicas: 1,
      max_replicas: 100_000,
      cooldown_seconds: 0,
      scale_up_rules: [{ metric: 'load', source: 'constant', operator: 'gt', threshold: 1, scale_by: 1 }],
    });
    t.equal(res.status, 201, `${name} created`);
  }
  const leaderOf = async (): Promise<DaemonProcess | undefined> => {
    for (const d of daemons) if ((await roleOf(d).catch(() => undefined)) === 'leader') return d;
    return undefined;
  };
  // The session holding the leader lock (the follower's competing session holds nothing).
  const holder = async (): Promise<number | undefined> =>
    (
      await admin.query<{ pid: number }>(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 7305002 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
      )
    ).rows[0]?.pid;
  const terminate = async (pid: number): Promise<boolean> => (await admin.query<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [pid])).rows[0]?.ok === true;
  const lines = (): string[] => (existsSync(calls) ? readFileSync(calls, 'utf8').split('\n').filter((l) => l !== '') : []);

  await waitFor('a leader making changes', () => (lines().length >= 6 ? true : undefined), 20_000, 50);

  // 1. Lock sessions dropped under a running leader, at varied moments of its cycle.
  let drops = 0;
  for (let i = 0; i < DROPS; i++) {
    await waitFor('a daemon holding the leader lock', () => holder(), 15_000, 25);
    await sleep(150 + ((i * 137) % 700));
    // The holder read a moment ago may already be gone (its session ended): drop whoever holds it now.
    await waitFor('the leader lock session terminated', async () => {
      const pid = await holder();
      return pid !== undefined && (await terminate(pid)) ? true : undefined;
    }, 15_000, 25);
    drops++;
  }
  await waitFor('a leader again after the drops', () => leaderOf(), 15_000, 100);
  const afterDrops = lines().length;
  await waitFor('changes after the drops', () => (lines().length >= afterDrops + 6 ? true : undefined), 15_000, 50);

  // 2. The leader paused past a takeover, then resumed.
  let pauses = 0;
  const pids = new Set<number>();
  for (let i = 0; i < PAUSES; i++) {
    const leader = await waitFor('a leader to pause', () => leaderOf(), 15_000, 100);
    const other = daemons.find((d) => d !== leader) as DaemonProcess;
    await sleep(200 + i * 170);
    leader.kill('SIGSTOP');
    pauses++;
    // Its lock session stays open while it sleeps (the kernel answers for it): end it, as a
    // server or network would, so that the other daemon takes over.
    const pid = await waitFor('the paused leader\'s lock session', () => holder(), 15_000, 25);
    await terminate(pid);
    await waitFor(`daemon ${other.name} to take over from the paused ${leader.name}`, async () => ((await roleOf(other)) === 'leader' ? true : undefined), 15_000, 50);
    const before = lines().length;
    await waitFor('the new leader to make changes', () => (lines().length >= before + 6 ? true : undefined), 15_000, 50);
    leader.kill('SIGCONT');
    // The resumed daemon finds its lock gone; it must not act on what it knew before the pause.
    await sleep(1_500);
    pids.add(leader.pid);
    pids.add(other.pid);
  }
  // Quiet for a moment, then stop both (no hang: each exits within its bound).
  await sleep(1_000);
  for (const d of daemons) d.kill('SIGTERM');
  for (const d of daemons) {
    const exit = await d.waitExit(20_000);
    t.equal(exit.code, 0, `daemon ${d.name} stopped cleanly after the faults (exit ${JSON.stringify(exit)})`);
  }

  // Every scale() call, in order, per policy.
  const perPolicy = new Map<string, number[]>();
  for (const l of lines()) {
    const [name, replicas] = l.split(' ');
    const list = perPolicy.get(name as string) ?? [];
    list.push(Number(replicas));
    perPolicy.set(name as string, list);
  }
  let executions = 0;
  let duplicates = 0;
  for (const name of POLICIES) {
    const seq = perPolicy.get(name) ?? [];
    executions += seq.length;
    const seen = new Set<number>();
    for (const r of seq) {
      if (seen.has(r)) duplicates++;
      seen.add(r);
    }
    // A single leader at a time makes 2, 3, 4, ... : each change follows from the one before.
    const expected = Array.from({ length: seq.length }, (_, i) => i + 2);
    t.same(seq, expected, `${name}: ${seq.length} changes, each from the previous count to the next (none skipped or repeated)`);
  }
  t.equal(duplicates, 0, `duplicate executions: ${duplicates} of ${executions} scale() calls`);

  // History: one succeeded row per scale() call, none repeated, none lost.
  const { Client } = pg;
  const reader = new Client({ connectionString: db.url });
  await reader.connect();
  try {
    const rows = (
      await reader.query<{ policy_name: string; previous_replicas: number; new_replicas: number; status: string; n: string }>(
        "SELECT policy_name, previous_replicas, new_replicas, status, COUNT(*) AS n FROM scaling_history WHERE NOT dry_run GROUP BY 1, 2, 3, 4",
      )
    ).rows;
    const succeeded = rows.filter((r) => r.status === 'succeeded');
    const repeated = succeeded.filter((r) => Number(r.n) > 1);
    t.same(repeated, [], 'no transition has two succeeded history rows');
    t.equal(succeeded.reduce((n, r) => n + Number(r.n), 0), executions, 'every scale() call has its succeeded history row (none lost)');
    const states = (await reader.query<{ name: string; current_replicas: number }>('SELECT p.name, s.current_replicas FROM scaling_state s JOIN scaling_policies p ON p.id = s.policy_id')).rows;
    for (const s of states) t.equal(s.current_replicas, (perPolicy.get(s.name) ?? []).at(-1), `${s.name}: the stored replicas are the last executed change's`);
  } finally {
    await reader.end();
  }
  t.equal(drops, DROPS, `lock sessions of the leader terminated: ${drops} of ${DROPS}`);
  t.equal(pauses, PAUSES, `leaders paused past a takeover: ${pauses}`);
  t.comment(`fencing: ${drops} lock-session drops, ${pauses} SIGSTOP pauses, ${executions} executions, ${duplicates} duplicates, daemons ${[...pids].join(', ')}`);
});
