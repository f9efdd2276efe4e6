// A PostgreSQL outage under a running daemon, on a PRIVATE cluster (the shared server on :5432
// serves other tests and must never go down): the daemon reports it (/readyz 503), answers 503
// problems quickly instead of 500s or hangs, steps down from leadership, and recovers by itself.
import pg from 'pg';
import t, { type Test } from 'tap';
import { dryRunFallbackPolicy, readyz, request, roleOf, spawnDaemon, waitFor, type DaemonProcess, type LogLine } from './helpers/daemon-process.js';
import { startPgCluster, type PgCluster } from './helpers/pg-cluster.js';

const INTERVAL_MS = 1_000;
/** Longest an answer may take while the database is down. */
const MAX_ANSWER_MS = 6_000;
const LEADER_LOCK_KEY = 7_305_002;

const cluster: PgCluster = await startPgCluster();
t.teardown(() => cluster.destroy());

/** A new database on the private cluster; its URL. */
async function freshDatabase(name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return cluster.urlFor(name);
}

/** Runs one query on a new connection (the test's own view of the database). */
async function direct<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

async function startDaemon(t: Test, name: string, url: string): Promise<DaemonProcess> {
  const d = await spawnDaemon({ name, env: { DATABASE_URL: url, PHILOTES_SCALING_EVALUATION_INTERVAL: `${INTERVAL_MS / 1000}s` } });
  t.teardown(() => d.destroy());
  return d;
}

const lostLeadership = (l: LogLine): boolean => typeof l.msg === 'string' && l.msg.startsWith('lost leadership');

for (const mode of ['fast', 'immediate'] as const) {
  t.test(`PostgreSQL goes down (pg_ctl stop -m ${mode}) and comes back under a running daemon`, async (t) => {
    const url = await freshDatabase(`philotes_outage_${mode}`);
    const d = await startDaemon(t, `outage-${mode}`, url);
    t.equal(await roleOf(d), 'leader', 'the daemon leads');
    const created = await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('outage-a'));
    t.equal(created.status, 201, 'policy created');
    const policyId = (created.body as { id: string }).id;
    t.equal((await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('outage-b'))).status, 201, 'second policy created');

    // Each dry-run policy records its (unchanged) would-be change once.
    await waitFor('history before the outage', async () => ((await direct(url, 'SELECT id FROM scaling_history')).length >= 2 ? true : undefined), 15_000, 100);

    // Rows committed before the outage: every one must still be there after it.
    const beforeRows = (await direct<{ id: string }>(url, 'SELECT id FROM scaling_history')).map((r) => r.id);

    // ---- outage ----
    const stoppedAt = Date.now();
    await cluster.stop(mode);
    const down = await waitFor('/readyz to report the outage', async () => {
      const r = await readyz(d);
      return r.status === 503 ? r : undefined;
    });
    t.equal(down.status, 503, '/readyz answers 503');
    t.equal(down.body.status, 'not_ready', 'status not_ready');
    t.equal(down.body.checks['storage']?.ok, false, 'checks.storage.ok is false');
    t.match(down.body.checks['storage']?.error, /\S/, 'with an error message');
    t.comment(`/readyz right after PostgreSQL went down (-m ${mode}): ${JSON.stringify(down.body)}`);

    const calls: Array<[string, string, unknown?]> = [
      ['GET', '/policies'],
      ['GET', `/policies/${policyId}`],
      ['GET', '/policies/outage-b'],
      ['GET', `/policies/${policyId}/state`],
      ['GET', `/policies/${policyId}/history`],
      ['GET', '/history'],
      ['POST', '/policies', dryRunFallbackPolicy('outage-new')],
      ['PUT', `/policies/${policyId}`, dryRunFallbackPolicy('outage-a', { max_replicas: 6 })],
      ['POST', `/policies/${policyId}/disable`],
      ['POST', `/policies/${policyId}/evaluate`],
      ['DELETE', `/policies/${policyId}`],
    ];
    for (const [method, path, body] of calls) {
      const res = await request(method, `${d.api}${path}`, body, MAX_ANSWER_MS + 4_000);
      t.match(
        { status: res.status, type: res.type, code: (res.body as { code?: string } | null)?.code },
        { status: 503, type: /^application\/problem\+json/, code: 'STORAGE_UNAVAILABLE' },
        `${method} ${path}: 503 STORAGE_UNAVAILABLE problem (${res.ms} ms)`,
      );
      t.ok(res.ms < MAX_ANSWER_MS, `${method} ${path} answered within ${MAX_ANSWER_MS} ms`);
    }
    t.equal((await request('GET', `${d.url}/healthz`)).status, 200, 'the process itself stays healthy (/healthz 200)');

    // The lock's session died with the server: the daemon must not go on believing it leads.
    await d.waitForLog(lostLeadership, 5_000);
    t.equal(await roleOf(d), 'follower', 'the daemon stepped down from leadership');
    const downLater = await readyz(d);
    t.equal(downLater.status, 503, '/readyz still 503 after the step-down');
    t.comment(`/readyz during the outage, after the step-down (-m ${mode}): ${JSON.stringify(downLater.body)}`);
    const downFor = Date.now() - stoppedAt;

    // ---- recovery ----
    await waitFor('a few failed cycles', () => (Date.now() - stoppedAt > 3 * INTERVAL_MS ? true : undefined), 10_000, 100);
    t.equal(d.exit, undefined, 'the daemon survived the outage');
    const restartedAt = Date.now();
    await cluster.start();
    const recoveredMs = await waitFor('/readyz to recover', async () => ((await readyz(d)).status === 200 ? Date.now() - restartedAt : undefined), 15_000, 100);
    t.pass(`/readyz is 200 again ${recoveredMs} ms after PostgreSQL came back`);
    const list = await request('GET', `${d.api}/policies`);
    t.equal(list.status, 200, 'the API answers again');
    t.same(
      (list.body as { policies: Array<{ name: string }> }).policies.map((p) => p.name).sort(),
      ['outage-a', 'outage-b'],
      'with the policies as before the outage (no write during it took effect)',
    );
    const releadMs = await waitFor('leadership to be re-acquired', async () => ((await roleOf(d)) === 'leader' ? Date.now() - restartedAt : undefined), 10_000, 50);
    t.pass(`the daemon leads again ${releadMs} ms after PostgreSQL came back`);
    t.equal(d.logs().filter((l) => l.msg === 'elected leader: running the evaluation loop').length, 2, 'elected twice: at start and after the outage');

    // A policy created after the outage records its would-be change: history is written again.
    t.equal((await request('POST', `${d.api}/policies`, dryRunFallbackPolicy('outage-after'))).status, 201, 'a policy created after the outage');
    await waitFor(
      'history written after the outage',
      async () => ((await direct(url, 'SELECT id FROM scaling_history WHERE executed_at > $1', [new Date(restartedAt)])).length >= 1 ? true : undefined),
      10_000,
      100,
    );
    const after = new Set((await direct<{ id: string }>(url, 'SELECT id FROM scaling_history')).map((r) => r.id));
    t.ok(beforeRows.length >= 2, `history rows committed before the outage: ${beforeRows.length}`);
    t.same(beforeRows.filter((id) => !after.has(id)), [], 'none of them is lost');

    const fiveHundreds = d.logs().filter((l: LogLine) => l['status'] === 500);
    t.same(fiveHundreds, [], 'no request answered 500');
    t.same(
      d.logs().filter((l) => /unhandled|uncaught/i.test(JSON.stringify(l))),
      [],
      'no unhandled errors in the log',
    );
    t.equal(d.stderr(), '', 'nothing on stderr');
    t.comment(
      `outage (-m ${mode}): PostgreSQL down ${downFor} ms before the checks finished; /readyz recovered ${recoveredMs} ms and leadership ${releadMs} ms after restart; ` +
        `${beforeRows.length} rows from before the outage kept, ${after.size} rows in all`,
    );
  });
}

t.test('a hung leader-lock session: the leader steps down instead of hanging, and SIGTERM stays prompt', async (t) => {
  const url = await freshDatabase('philotes_hung_lock');
  const d = await startDaemon(t, 'hung-lock', url);
  t.equal(await roleOf(d), 'leader', 'the daemon leads');
  const frozen = new Set<number>();
  const thaw = (pid: number): void => {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // gone
    }
    frozen.delete(pid);
  };
  t.teardown(() => [...frozen].forEach(thaw));
  /** Freezes (SIGSTOP) the backend of the PRIVATE cluster that holds the leader lock: its session stops answering. */
  const freezeLockSession = async (): Promise<number> => {
    const rows = await direct<{ pid: number }>(
      url,
      "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
      [LEADER_LOCK_KEY],
    );
    const pid = rows[0]?.pid;
    if (pid === undefined) throw new Error('no session holds the leader lock');
    frozen.add(pid);
    process.kill(pid, 'SIGSTOP');
    return pid;
  };

  // 1. The leader's check hangs: it must step down (it cannot prove it holds the lock any more).
  const pid = await freezeLockSession();
  const frozenAt = Date.now();
  await d.waitForLog(lostLeadership, 15_000);
  const stepDownMs = Date.now() - frozenAt;
  t.equal(await roleOf(d), 'follower', `the leader stepped down ${stepDownMs} ms after its lock session froze`);
  t.equal((await request('GET', `${d.api}/policies`)).status, 200, 'the API still answers (other connections)');

  // 2. The session comes back, reads the daemon's goodbye, ends, and frees the lock: the daemon leads again.
  thaw(pid);
  const releadMs = await waitFor('leadership again', async () => ((await roleOf(d)) === 'leader' ? Date.now() - frozenAt - stepDownMs : undefined), 10_000, 50);
  t.pass(`leader again ${releadMs} ms after the session was thawed`);

  // 3. SIGTERM while the lock session hangs: bounded, clean exit (not the 30 s watchdog).
  await freezeLockSession();
  const sent = Date.now();
  d.kill('SIGTERM');
  const exit = await d.waitExit(40_000);
  const exitMs = Date.now() - sent;
  t.same(exit, { code: 0, signal: null }, `exit 0 after ${exitMs} ms`);
  t.ok(exitMs < 15_000, 'well before the shutdown watchdog');
  t.comment(`hung lock session: step-down after ${stepDownMs} ms, re-elected ${releadMs} ms after thaw, SIGTERM exit in ${exitMs} ms`);
});
