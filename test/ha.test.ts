// High availability: several daemons on one database, exactly one of which runs the evaluation
// loop. Real child processes, killed for real.
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import t from 'tap';
import {
  dryRunFallbackPolicy,
  request,
  roleOf,
  spawnDaemon,
  waitFor,
  type DaemonOptions,
  type DaemonProcess,
  type LogLine,
} from './helpers/daemon-process.js';
import { createFreshDatabase } from './helpers/pg.js';

const INTERVAL_MS = 1_000;
const POLICIES = ['ha-dry-a', 'ha-dry-b', 'ha-dry-c'];

/** Starts several daemons at once; every one that started is handed to `track` even if another failed. */
async function spawnAll(options: DaemonOptions[], track: (d: DaemonProcess) => void): Promise<DaemonProcess[]> {
  const settled = await Promise.allSettled(options.map((o) => spawnDaemon(o)));
  for (const s of settled) if (s.status === 'fulfilled') track(s.value);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<DaemonProcess>).value);
}

/** The manager's line for a change it made (here: a dry-run fallback), one per policy per cycle. */
const isChangeLine = (l: LogLine): boolean => typeof l.msg === 'string' && /^dry run: fallback \d+ -> \d+/.test(l.msg);

t.test('PostgreSQL: one leader among two daemons; a follower takes over from a killed leader without duplicates', async (t) => {
  const db = await createFreshDatabase('philotes_ha');
  const daemons: DaemonProcess[] = [];
  const client = new pg.Client({ connectionString: db.url });
  t.teardown(async () => {
    await Promise.all(daemons.map((d) => d.destroy()));
    await client.end().catch(() => undefined);
    await db.drop();
  });

  const env = { DATABASE_URL: db.url, PHILOTES_SCALING_EVALUATION_INTERVAL: `${INTERVAL_MS / 1000}s` };
  // Both at once: they race for the advisory lock (and for the migrations).
  const [a, b] = await spawnAll([{ name: 'A', env }, { name: 'B', env }], (d) => daemons.push(d));
  if (a === undefined || b === undefined) throw new Error('unreachable');
  await client.connect();

  const roles = await waitFor('both daemons to report a role', async () => {
    const r = [await roleOf(a), await roleOf(b)];
    return r.every((x) => x === 'leader' || x === 'follower') ? r : undefined;
  });
  t.same([...roles].sort(), ['follower', 'leader'], 'exactly one daemon leads, the other follows');
  const [leader, follower] = roles[0] === 'leader' ? [a, b] : [b, a];
  t.comment(`leader: daemon ${leader.name} (pid ${leader.pid}); follower: daemon ${follower.name} (pid ${follower.pid})`);
  const heldBy = await client.query<{ pid: number }>(
    "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.objid = 7305002 AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
  );
  t.equal(heldBy.rowCount, 1, 'one session holds the leader advisory lock');

  // The follower serves the API: the policies are created through it.
  for (const name of POLICIES) {
    const res = await request('POST', `${follower.api}/policies`, dryRunFallbackPolicy(name));
    t.equal(res.status, 201, `policy ${name} created through the follower`);
  }
  // A dry-run policy records its would-be change once while it persists, but the daemon that
  // evaluates it logs the change line every cycle: those lines, from both daemons, are the record
  // of who evaluated what and when.
  type Change = { policy: string; time: number; daemon: string };
  const changes = (): Change[] =>
    // Each line carries its cycle's instant (evaluated_at): a cycle starts one interval after the
    // previous one, whereas when a line is written depends on how busy the machine is.
    [leader, follower].flatMap((d) => d.logs().filter(isChangeLine).map((l) => ({ policy: String(l['policy']), time: Date.parse(String(l['evaluated_at'])), daemon: d.name })));
  const count = (pred: (c: Change) => boolean = () => true): number => changes().filter(pred).length;
  // At least three full cycles under the first leader, with both daemons running.
  await waitFor('three cycles under the first leader', () => (count() >= 3 * POLICIES.length ? true : undefined), 15_000, 100);
  t.notOk(follower.logs().some(isChangeLine), 'the follower has evaluated nothing while the leader lives');
  t.equal(await roleOf(follower), 'follower', 'and still follows');
  const rows = Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM scaling_history')).rows[0]?.n ?? 0);
  t.equal(rows, POLICIES.length, 'each dry-run policy recorded its unchanged would-be change once, not every cycle');

  // kill -9: no shutdown code runs; PostgreSQL frees the lock when the session's socket closes.
  const killedAt = Date.now();
  leader.kill('SIGKILL');
  const takeoverMs = await waitFor('the follower to take over', async () => ((await roleOf(follower)) === 'leader' ? Date.now() - killedAt : undefined), 10_000, 25);
  const exit = await leader.waitExit(5_000);
  t.equal(exit.signal, 'SIGKILL', 'the leader was killed');
  t.ok(takeoverMs <= 2 * INTERVAL_MS, `the follower led within two evaluation intervals (${takeoverMs} ms)`);
  await follower.waitForLog((l) => l.msg === 'elected leader: running the evaluation loop', 1_000);
  const before = count((c) => c.time <= killedAt);

  // Three more cycles under the new leader.
  await waitFor('three cycles under the new leader', () => (count((c) => c.time > killedAt) >= 3 * POLICIES.length ? true : undefined), 15_000, 100);
  const after = count((c) => c.time > killedAt);
  t.ok(before >= 3 * POLICIES.length, `evaluations before the kill: ${before}`);
  t.ok(after >= 3 * POLICIES.length, `evaluations after the takeover: ${after}`);

  // No duplicates: (1) one policy's evaluations are at least ~one interval apart (two leaders would
  // interleave their cycles and put them closer), except across the kill, where the dead leader's
  // last cycle and the new leader's first may be close; (2) the follower evaluated nothing before
  // the kill, and the dead leader nothing after it.
  const all = changes().sort((a, b) => (a.policy === b.policy ? a.time - b.time : a.policy < b.policy ? -1 : 1));
  const tooClose: string[] = [];
  for (let i = 1; i < all.length; i++) {
    const prev = all[i - 1] as Change;
    const cur = all[i] as Change;
    if (prev.policy !== cur.policy) continue;
    const acrossKill = prev.time <= killedAt && cur.time > killedAt;
    if (cur.time - prev.time < 0.9 * INTERVAL_MS && !acrossKill) tooClose.push(`${cur.policy}: ${prev.daemon}@${prev.time} and ${cur.daemon}@${cur.time}`);
  }
  t.same(tooClose, [], 'no two evaluations of one policy closer than one interval, apart from the takeover');
  const earlyFollowerLines = all.filter((c) => c.daemon === follower.name && c.time < killedAt);
  t.same(earlyFollowerLines, [], 'the follower evaluated nothing before the leader died');
  t.same([...new Set(all.filter((c) => c.time > killedAt).map((c) => c.policy))].sort(), [...POLICIES].sort(), 'the new leader evaluates every policy');

  t.comment(`HA (PostgreSQL): daemon ${leader.name} led first; daemon ${follower.name} took over ${takeoverMs} ms after kill -9 (limit ${2 * INTERVAL_MS} ms, interval ${INTERVAL_MS} ms)`);
  t.comment(`HA (PostgreSQL): evaluations before the kill ${before}, after the takeover ${after}; evaluations closer than an interval ${tooClose.length}`);
});

t.test('SQLite: a second daemon on the same file follows, and takes over when the leader dies (stale lock file)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'philotes-ha-sqlite-'));
  const dbPath = join(dir, 'shared.db');
  const lockPath = `${dbPath}.leader`;
  const daemons: DaemonProcess[] = [];
  t.teardown(async () => {
    await Promise.all(daemons.map((d) => d.destroy()));
    await rm(dir, { recursive: true, force: true });
  });
  const env = { PHILOTES_SCALING_DATABASE_PATH: dbPath, PHILOTES_SCALING_EVALUATION_INTERVAL: `${INTERVAL_MS / 1000}s` };

  const [first] = await spawnAll([{ name: 'first', env }], (d) => daemons.push(d));
  if (first === undefined) throw new Error('unreachable');
  t.equal(await roleOf(first), 'leader', 'the first daemon leads');
  t.equal(readFileSync(lockPath, 'utf8').trim(), String(first.pid), 'its pid is in the lock file');

  const [second] = await spawnAll([{ name: 'second', env }], (d) => daemons.push(d));
  if (second === undefined) throw new Error('unreachable');
  t.equal(await roleOf(second), 'follower', 'the second daemon on the same file refuses to lead');
  const followLine = await second.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('another daemon leads the evaluation loop'), 2_000);
  t.match(followLine, { lock: lockPath }, 'and says so in its log, naming the lock file');
  t.equal(readFileSync(lockPath, 'utf8').trim(), String(first.pid), 'the lock file still names the first daemon');

  const created = await request('POST', `${second.api}/policies`, dryRunFallbackPolicy('ha-sqlite'));
  t.equal(created.status, 201, 'the follower serves the API (policy created)');
  await first.waitForLog(isChangeLine, 5_000);
  t.notOk(second.logs().some(isChangeLine), 'the follower evaluates nothing');

  const killedAt = Date.now();
  first.kill('SIGKILL');
  await first.waitExit(5_000);
  // kill -9 ran no shutdown code: the file stays, naming a dead pid, unless the follower already replaced it.
  const owner = existsSync(lockPath) ? readFileSync(lockPath, 'utf8').trim() : '';
  t.ok(owner === String(first.pid) || owner === String(second.pid), `after kill -9 the lock file names ${owner === String(first.pid) ? 'the dead leader (stale)' : 'the new leader already'}`);

  const takeoverMs = await waitFor('the second daemon to take over', async () => ((await roleOf(second)) === 'leader' ? Date.now() - killedAt : undefined), 10_000, 25);
  t.ok(takeoverMs <= 2 * INTERVAL_MS, `the second daemon led within two intervals (${takeoverMs} ms)`);
  t.equal(readFileSync(lockPath, 'utf8').trim(), String(second.pid), 'the lock file now names the second daemon');
  await second.waitForLog(isChangeLine, 5_000);
  t.pass('the new leader evaluates the policy');
  t.comment(`HA (SQLite): the follower took over ${takeoverMs} ms after the leader was killed (stale lock file ${owner === String(first.pid) ? 'seen' : 'already replaced'})`);
});
