import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { startDaemon, type Daemon } from '../src/main.js';
import { testDaemonConfig } from './helpers/daemon-config.js';
import { call } from './helpers/app.js';

const silent = pino({ level: 'silent' });
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

type Json = Record<string, unknown>;
type Problem = { code: string; detail: string; errors?: Array<{ field: string; message: string }> };

/** A folder with a policies/ folder and a SQLite file; start() runs a daemon on it (again after a close). */
function workspace(t: Test): { dir: string; start: () => Promise<{ d: Daemon; api: string }> } {
  const dir = mkdtempSync(join(tmpdir(), 'ps-pause-'));
  mkdirSync(join(dir, 'policies'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const start = async (): Promise<{ d: Daemon; api: string }> => {
    const d = await startDaemon(testDaemonConfig(dir), silent);
    let closed = false;
    const close = d.close.bind(d);
    d.close = async () => {
      if (closed) return;
      closed = true;
      await close();
    };
    t.teardown(() => d.close());
    return { d, api: `http://127.0.0.1:${d.port}/api/v1/scaling` };
  };
  return { dir, start };
}

const POLICY = { name: 'orders', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 5, scale_up_rules: [{ metric: 'lag', operator: 'gt', threshold: 60, scale_by: 1 }] };

t.test('pause and enable: shown in the policy and its state, idempotent, lifted by /enable; PUT and PATCH leave it', async (t) => {
  const { start } = workspace(t);
  const { api } = await start();
  const created = (await call('POST', `${api}/policies`, POLICY)).body as Json;
  t.match(created, { paused: false, paused_at: null, paused_reason: null }, 'a new policy is not paused');

  const paused = await call('POST', `${api}/policies/orders/pause`, { reason: 'incident 42: runaway scale-up' });
  t.equal(paused.status, 200, paused.text);
  t.match(paused.body, { id: created['id'], paused: true, paused_at: ISO, paused_reason: 'incident 42: runaway scale-up', enabled: true, updated_at: created['updated_at'] }, 'paused; its content (and updated_at) unchanged');
  const pausedAt = (paused.body as Json)['paused_at'];
  t.same((await call('GET', `${api}/policies/orders`)).body, paused.body, 'GET shows the pause');
  const state = await call('GET', `${api}/policies/orders/state`);
  t.equal(state.status, 200);
  t.match(state.body, { paused: true, paused_at: pausedAt, paused_reason: 'incident 42: runaway scale-up' }, 'the state shows the pause');

  const again = await call('POST', `${api}/policies/orders/pause`, { reason: 'second thoughts' });
  t.equal(again.status, 200, 'pausing a paused policy is fine');
  t.match(again.body, { paused_at: pausedAt, paused_reason: 'incident 42: runaway scale-up' }, 'and keeps the pause in force as it was');

  const real = await call('POST', `${api}/policies/orders/evaluate`, { dry_run: false });
  t.equal(real.status, 409, 'an evaluation that would execute is refused');
  t.equal((real.body as Problem).code, 'POLICY_PAUSED');
  t.match((real.body as Problem).detail, /\/enable/);
  const dry = await call('POST', `${api}/policies/orders/evaluate`);
  t.equal(dry.status, 200, `a dry run still answers: ${dry.text.slice(0, 300)}`);

  const put = await call('PUT', `${api}/policies/orders`, { ...POLICY, max_replicas: 6 });
  t.match(put.body, { max_replicas: 6, paused: true, paused_at: pausedAt }, 'a PUT leaves the pause');
  const patch = await call('PATCH', `${api}/policies/orders`, { max_replicas: 7 }, { 'content-type': 'application/merge-patch+json' });
  t.match(patch.body, { max_replicas: 7, paused: true, paused_at: pausedAt }, 'a PATCH too');
  const roundTrip = await call('PUT', `${api}/policies/orders`, patch.body);
  t.equal(roundTrip.status, 200, `the GET answer, pause fields included, is still a valid PUT body: ${roundTrip.text}`);
  const flip = await call('PATCH', `${api}/policies/orders`, { paused: false }, { 'content-type': 'application/merge-patch+json' });
  t.equal(flip.status, 422, 'a pause is not lifted by a PATCH');
  t.match((flip.body as Problem).errors, [{ field: '/paused', message: /\/enable/ }]);

  const enabled = await call('POST', `${api}/policies/orders/enable`);
  t.equal(enabled.status, 200);
  t.match(enabled.body, { paused: false, paused_at: null, paused_reason: null, enabled: true }, '/enable lifts the pause');
  t.match((await call('GET', `${api}/policies/orders/state`)).body, { paused: false, paused_at: null, paused_reason: null });

  const bare = await call('POST', `${api}/policies/orders/pause`);
  t.equal(bare.status, 200, 'the body is optional');
  t.match(bare.body, { paused: true, paused_reason: null });
});

t.test('pause: a body that is not { "reason": string } is refused', async (t) => {
  const { start } = workspace(t);
  const { api } = await start();
  await call('POST', `${api}/policies`, POLICY);
  const cases: Array<[unknown, string]> = [
    [{ reason: 5 }, '/reason'],
    [{ reason: 'x'.repeat(1001) }, '/reason'],
    [{ why: 'typo' }, '/why'],
    [['reason'], ''],
  ];
  for (const [body, field] of cases) {
    const res = await call('POST', `${api}/policies/orders/pause`, body);
    t.equal(res.status, 422, `${JSON.stringify(body).slice(0, 40)}: ${res.text.slice(0, 200)}`);
    t.match((res.body as Problem).errors, [{ field }]);
  }
  t.equal((await call('POST', `${api}/policies/orders/pause`, '{"reason": ', { 'content-type': 'application/json' })).status, 400);
  t.equal((await call('POST', `${api}/policies/no-such-policy/pause`)).status, 404);
  t.match((await call('GET', `${api}/policies/orders`)).body, { paused: false }, 'nothing was paused');
});

t.test('a file-managed policy can be paused and resumed; /disable on it points to /pause', async (t) => {
  const { dir, start } = workspace(t);
  writeFileSync(join(dir, 'policies', 'team.yaml'), 'name: from-file\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: 5\n---\nname: off-in-file\ntarget_type: trino\nmin_replicas: 1\nmax_replicas: 3\nenabled: false\n');
  const { api } = await start();
  const before = (await call('GET', `${api}/policies/from-file`)).body as Json;
  t.match(before['source'], /policies\/team\.yaml$/, 'managed by its file');

  const disable = await call('POST', `${api}/policies/from-file/disable`);
  t.equal(disable.status, 409);
  t.equal((disable.body as Problem).code, 'FILE_MANAGED');
  t.match((disable.body as Problem).detail, /\/pause/, 'the answer points to /pause');

  const paused = await call('POST', `${api}/policies/from-file/pause`, { reason: 'maintenance' });
  t.equal(paused.status, 200, paused.text);
  t.match(paused.body, { paused: true, paused_reason: 'maintenance', enabled: true, updated_at: before['updated_at'] });
  const resumed = await call('POST', `${api}/policies/from-file/enable`);
  t.equal(resumed.status, 200, `/enable lifts the pause of a file-managed policy: ${resumed.text}`);
  t.match(resumed.body, { paused: false, enabled: true, updated_at: before['updated_at'] });
  t.equal((await call('POST', `${api}/policies/from-file/enable`)).status, 200, 'enabling it again is fine: its file enables it');

  const off = await call('POST', `${api}/policies/off-in-file/enable`);
  t.equal(off.status, 409, 'a policy its file disables cannot be enabled over the API');
  t.equal((off.body as Problem).code, 'FILE_MANAGED');
  t.equal((await call('POST', `${api}/policies/off-in-file/pause`)).status, 200, 'but it can be paused');
  const lifted = await call('POST', `${api}/policies/off-in-file/enable`);
  t.equal(lifted.status, 200, '/enable then lifts the pause');
  t.match(lifted.body, { paused: false, enabled: false }, 'and leaves it disabled, as its file says');
});

t.test('a pause is kept across a restart; unchanged policy files keep their updated_at', async (t) => {
  const { dir, start } = workspace(t);
  writeFileSync(join(dir, 'policies', 'team.yaml'), 'name: from-file\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: 5\nscale_up_rules:\n  - { metric: lag, operator: gt, threshold: 60, scale_by: 1 }\n');
  const first = await start();
  await call('POST', `${first.api}/policies`, POLICY);
  const paused = (await call('POST', `${first.api}/policies/orders/pause`, { reason: 'until the migration ends' })).body as Json;
  const pausedFile = (await call('POST', `${first.api}/policies/from-file/pause`)).body as Json;
  await first.d.close();
  await new Promise((r) => setTimeout(r, 20));

  const second = await start();
  t.same((await call('GET', `${second.api}/policies/orders`)).body, paused, 'the API policy is still paused, unchanged');
  t.same((await call('GET', `${second.api}/policies/from-file`)).body, pausedFile, 'the file policy too, with the same updated_at and rule ids');
  t.match((await call('GET', `${second.api}/policies/orders/state`)).body, { paused: true, paused_reason: 'until the migration ends' });
});
