/**
 * The API routes the console is built on, and the serving of its files: GET /overview,
 * GET /cost, POST /validate (JSON and YAML), read tokens on the POSTs that change nothing, and
 * /ui/ (no token, security headers, ETag, 404s). A real daemon on a SQLite file.
 */
import { randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { replicaHours } from '../src/console/console-controller.js';
import { loadUiAssets, registerUiRoutes } from '../src/console/ui-assets.js';
import { startDaemon, type Daemon } from '../src/main.js';
import type { HistoryRow } from '../src/storage/storage.js';
import { call, startTestApp } from './helpers/app.js';
import { testDaemonConfig } from './helpers/daemon-config.js';

const WRITE = 'console-api-write-token-0123';
const READ = 'console-api-read-token-01234';
const asWriter = { authorization: `Bearer ${WRITE}` };
const asReader = { authorization: `Bearer ${READ}` };

const built = spawnSync(process.execPath, ['scripts/build-ui.mjs'], { encoding: 'utf8' });
if (built.status !== 0) throw new Error(`building the console failed: ${built.stderr}`);

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

async function daemon(t: TapTest): Promise<{ d: Daemon; api: string; base: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'philotes-console-api-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = testDaemonConfig(dir, { api_token: WRITE, api_read_token: READ, prices: { 'cdc-worker': 0.5 } });
  writeFileSync(join(dir, 'policies', 'zeta.yaml'), 'name: zeta-from-file\ntarget_type: trino\nmin_replicas: 1\nmax_replicas: 3\ndescription: Loaded from a file\n');
  const d = await startDaemon(config, pino({ level: 'silent' }));
  t.teardown(() => d.close());
  const base = `http://127.0.0.1:${d.port}`;
  return { d, base, api: `${base}/api/v1/scaling` };
}


t.test('replicaHours: a step function integrated over the range', async (t) => {
  const H = 3600_000;
  t.same(replicaHours([], null, null, 0, H), { replicaHours: null, average: null, changes: 0 }, 'never known: null, not 0');
  t.same(replicaHours([], null, 3, 0, 2 * H), { replicaHours: 6, average: 3, changes: 0 }, 'no change: the current count all along');
  const changes = [
    { at: H, from: 1, to: 4 },
    { at: 3 * H, from: 4, to: 2 },
    { at: 5 * H, from: 2, to: 7 },
  ];
  t.same(replicaHours(changes, null, 9, 0, 4 * H), { replicaHours: 1 + 8 + 2, average: 2.75, changes: 2 }, 'the count before the first change is its previous count');
  t.same(replicaHours(changes, null, 9, 2 * H, 4 * H), { replicaHours: 4 + 2, average: 3, changes: 1 }, 'a change before the range sets the count at its start');
  t.same(replicaHours(changes, null, 9, 3 * H, 5 * H), { replicaHours: 4, average: 2, changes: 1 }, 'a change at the start counts; one at the end does not');
  t.same(replicaHours(changes, null, 9, 6 * H, 7 * H), { replicaHours: 7, average: 7, changes: 0 }, 'after the last change: its count');
  t.same(replicaHours(changes, null, 9, H, H), { replicaHours: 0, average: null, changes: 0 }, 'an empty range');
  t.same(replicaHours([], 5, 9, 0, 2 * H), { replicaHours: 10, average: 5, changes: 0 }, 'no change in the range: what the last change before it set, not the count now');
  t.same(replicaHours(changes, 2, 9, 0, 2 * H), { replicaHours: 2 + 4, average: 3, changes: 1 }, 'the last change before the range sets the count at its start');
});

t.test('GET /overview: every policy with its state, searched, filtered and paged on the server', async (t) => {
  const { api } = await daemon(t);
  for (let i = 0; i < 24; i++) {
    const r = await call(
      'POST',
      `${api}/policies`,
      {
        name: `cdc-${String(i).padStart(2, '0')}`,
        description: i === 7 ? 'The Billing database' : undefined,
        target_type: i % 3 === 0 ? 'trino' : 'cdc-worker',
        target_id: i === 5 ? 'aaaaaaaa-0000-4000-8000-00000000abcd' : undefined,
        min_replicas: 1,
        max_replicas: 5,
        dry_run: i % 4 === 0,
        enabled: i % 5 !== 0,
        scale_up_rules: [{ metric: 'up', operator: 'gt', threshold: 1, duration: '1m', scale_by: 1 }],
      },
      asWriter,
    );
    t.equal(r.status, 201, r.text.slice(0, 200));
  }
  const all = await call('GET', `${api}/overview?limit=1000`, undefined, asReader);
  t.equal(all.status, 200);
  const body = all.body as { policies: Array<Record<string, unknown>>; total_count: number; facets: Record<string, unknown> };
  t.equal(body.total_count, 25, '24 API policies and one from a file');
  t.same(body.facets, { policies: 25, enabled: 20, disabled: 5, dry_run: 6, paused: 0, file: 1, api: 24, target_types: { trino: 9, 'cdc-worker': 16 } });
  t.same(body.policies.map((p) => p['name']), [...body.policies.map((p) => p['name'] as string)].sort(), 'by name');
  t.match(body.policies.find((p) => p['name'] === 'zeta-from-file'), { source: /zeta\.yaml$/, target_type: 'trino', cooldown_remaining_seconds: 0, next_schedule_fire: null });

  const page = await call('GET', `${api}/overview?limit=10&offset=20`, undefined, asReader);
  t.same((page.body as typeof body).policies.map((p) => p['name']), ['cdc-20', 'cdc-21', 'cdc-22', 'cdc-23', 'zeta-from-file'], 'the last page');
  t.equal((page.body as typeof body).total_count, 25);
  const q = async (query: string): Promise<string[]> => ((await call('GET', `${api}/overview?${query}`, undefined, asReader)).body as typeof body).policies.map((p) => p['name'] as string);
  t.same(await q('q=BILLING'), ['cdc-07'], 'search is case-blind and reads descriptions');
  t.same(await q('q=abcd'), ['cdc-05'], 'and target ids');
  t.same(await q('q=zeta.yaml'), ['zeta-from-file'], 'and file paths');
  // The file's temp folder is named philotes-console-api-*: only it holds "api" in a searched field.
  t.same(await q('q=api'), ['zeta-from-file'], 'not "api", the source of every API policy');
  t.same(await q('source=file'), ['zeta-from-file']);
  t.equal((await q('source=api')).length, 24);
  t.same(await q('enabled=false&target_type=trino'), ['cdc-00', 'cdc-15']);
  t.same(await q('dry_run=true&enabled=true'), ['cdc-04', 'cdc-08', 'cdc-12', 'cdc-16']);

  // Pausing shows at once: the snapshot of policies follows every change.
  t.equal((await call('POST', `${api}/policies/cdc-03/pause`, { reason: 'maintenance' }, asWriter)).status, 200);
  t.same(await q('paused=true'), ['cdc-03']);
  t.match((await call('GET', `${api}/overview?q=cdc-03`, undefined, asReader)).body, { policies: [{ paused: true, paused_reason: 'maintenance' }] });

  // Edits and deletions too (only what changed is read again).
  t.equal((await call('PATCH', `${api}/policies/cdc-02`, { description: 'now about Invoices' }, asWriter)).status, 200);
  t.same(await q('q=invoices'), ['cdc-02'], 'an edit shows at once');
  t.equal((await call('DELETE', `${api}/policies/cdc-22`, undefined, asWriter)).status, 204);
  const after = (await call('GET', `${api}/overview?limit=1000`, undefined, asReader)).body as typeof body;
  t.equal(after.total_count, 24, 'a deletion too');
  t.notOk(after.policies.some((p) => p['name'] === 'cdc-22'));
  t.equal(after.facets['policies'], 24);

  // A real evaluation's outcome is what the overview shows.
  const evaluated = await call('POST', `${api}/policies/cdc-01/evaluate`, { dry_run: false }, asWriter);
  t.equal(evaluated.status, 200);
  const record = evaluated.body as { action: string; reason: string; reason_code: string; desired_replicas: number; current_replicas: number };
  const row = ((await call('GET', `${api}/overview?q=cdc-01`, undefined, asReader)).body as typeof body).policies[0] as Record<string, unknown>;
  t.match(row, { current_replicas: record.current_replicas, desired_replicas: record.desired_replicas, last_decision: { action: record.action, reason: record.reason, reason_code: record.reason_code } });

  for (const [query, field] of [
    ['limit=0', '/query/limit'],
    ['limit=1001', '/query/limit'],
    ['source=git', '/query/source'],
    ['paused=maybe', '/query/paused'],
    ['q=a&q=b', '/query/q'],
  ]) {
    const r = await call('GET', `${api}/overview?${query}`, undefined, asReader);
    t.equal(r.status, 400, `${query}: 400`);
    t.match(r.body, { errors: [{ field }] }, `naming ${field}`);
  }
  t.equal((await call('GET', `${api}/overview`)).status, 401, 'a token is needed, as for every read');
});

t.test('GET /cost: replica-hours and cost per policy from the recorded changes', async (t) => {
  const { d, api } = await daemon(t);
  const create = async (body: Record<string, unknown>): Promise<string> => {
    const r = await call('POST', `${api}/policies`, { min_replicas: 1, max_replicas: 20, scale_up_rules: [{ metric: 'up', operator: 'gt', threshold: 1, duration: '1m', scale_by: 1 }], ...body }, asWriter);
    t.equal(r.status, 201, r.text.slice(0, 200));
    return (r.body as { id: string }).id;
  };
  const priced = await create({ name: 'priced', target_type: 'cdc-worker' });
  const own = await create({ name: 'own-price', target_type: 'cdc-worker', cost_per_replica_hour: 2 });
  const unpriced = await create({ name: 'unpriced', target_type: 'trino' });
  const H = 3600_000;
  const now = Date.now();
  const at = (hoursAgo: number): string => new Date(now - hoursAgo * H).toISOString();
  const row = (policy: string, name: string, extra: Partial<HistoryRow>): HistoryRow => ({
    id: randomUUID(), policy_id: policy, policy_name: name, action: 'scale_up', target_type: 'cdc-worker', target_id: null, previous_replicas: 1, new_replicas: 2,
    reason: 'test', reason_code: 'rules_held', triggered_by: 'rule', dry_run: false, status: 'succeeded', error: null, executed_at: at(0), details: null, ...extra,
  });
  // priced: 1 -> 3 at -5h, 3 -> 2 at -3h; a dry run, a failure and a block change nothing.
  for (const r of [
    row(priced, 'priced', { executed_at: at(5), previous_replicas: 1, new_replicas: 3 }),
    row(priced, 'priced', { executed_at: at(4), previous_replicas: 3, new_replicas: 9, dry_run: true }),
    row(priced, 'priced', { executed_at: at(3), action: 'scale_down', previous_replicas: 3, new_replicas: 2 }),
    row(priced, 'priced', { executed_at: at(2), previous_replicas: 2, new_replicas: 5, status: 'failed', error: 'boom' }),
    row(priced, 'priced', { executed_at: at(1.5), previous_replicas: 2, new_replicas: 5, status: 'blocked' }),
    row(own, 'own-price', { executed_at: at(5), previous_replicas: 4, new_replicas: 4, action: 'scheduled' }),
    row(unpriced, 'unpriced', { executed_at: at(5), previous_replicas: 1, new_replicas: 2 }),
  ])
    await d.storage.appendHistory(r);
  const report = await call('GET', `${api}/cost?since=${encodeURIComponent(at(6))}&until=${encodeURIComponent(at(1))}`, undefined, asReader);
  t.equal(report.status, 200, report.text.slice(0, 300));
  const body = report.body as { since: string; until: string; totals: Record<string, number>; policies: Array<Record<string, unknown>>; total_count: number };
  t.equal(body.since, at(6));
  t.equal(body.until, at(1));
  // priced: from its first change (-5h, earlier than its creation) to -1h: 3 x 2h + 2 x 2h = 10.
  t.same(body.policies.find((p) => p['policy_name'] === 'priced'), { policy_id: priced, policy_name: 'priced', target_type: 'cdc-worker', target_id: null, price_per_replica_hour: 0.5, replica_hours: 10, average_replicas: 2.5, changes: 2, cost: 5 });
  t.match(body.policies.find((p) => p['policy_name'] === 'own-price'), { price_per_replica_hour: 2, replica_hours: 16, cost: 32 }, 'a policy\'s own price wins over the config\'s');
  t.match(body.policies.find((p) => p['policy_name'] === 'unpriced'), { price_per_replica_hour: null, replica_hours: 8, cost: null });
  t.same(body.policies.map((p) => p['policy_name']), ['own-price', 'priced', 'unpriced', 'zeta-from-file'], 'most costly first; no price last');
  t.match(body.policies.find((p) => p['policy_name'] === 'zeta-from-file'), { replica_hours: 0, changes: 0 }, 'a policy created after the range ran nothing in it');
  t.same(body.totals, { replica_hours: 34, cost: 37, unpriced_policies: 2, unknown_policies: 0 });
  const byName = await call('GET', `${api}/cost?since=${encodeURIComponent(at(6))}&until=${encodeURIComponent(at(1))}&sort=name&limit=1&offset=1`, undefined, asReader);
  t.match(byName.body, { policies: [{ policy_name: 'priced' }], total_count: 4 });
  const hours = await call('GET', `${api}/cost?since=${encodeURIComponent(at(6))}&until=${encodeURIComponent(at(1))}&sort=replica_hours&q=price`, undefined, asReader);
  t.same((hours.body as typeof body).policies.map((p) => p['policy_name']), ['own-price', 'priced', 'unpriced'], 'q filters (every name holds "price"), replica-hours order');

  // No change in the range: the policy's count now, from its creation on.
  const quiet = await create({ name: 'quiet', target_type: 'cdc-worker' });
  await call('POST', `${api}/policies/${quiet}/evaluate`, { dry_run: false }, asWriter);
  const recent = await call('GET', `${api}/cost?q=quiet`, undefined, asReader);
  const q = (recent.body as typeof body).policies[0] as Record<string, number>;
  t.ok(q['replica_hours'] !== undefined && q['replica_hours'] >= 0 && q['replica_hours'] < 0.01, `a policy created a moment ago ran almost nothing (${q['replica_hours']})`);
  t.equal(q['average_replicas'], 1, 'its min_replicas since creation');

  for (const [query, field] of [
    [`since=${encodeURIComponent(at(1))}&until=${encodeURIComponent(at(2))}`, '/query/since'],
    [`since=${encodeURIComponent(at(24 * 40))}`, '/query/since'],
    ['since=yesterday', '/query/since'],
    ['sort=price', '/query/sort'],
  ]) {
    const r = await call('GET', `${api}/cost?${query}`, undefined, asReader);
    t.equal(r.status, 400, `${query}: 400`);
    t.match(r.body, { errors: [{ field }] }, `naming ${field}`);
  }
});

t.test('POST /validate: the API\'s own check, storing nothing; YAML problems carry lines', async (t) => {
  const { api } = await daemon(t);
  const json = await call('POST', `${api}/validate`, { name: 'checked', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 3 }, asReader);
  t.equal(json.status, 200, 'a read token may check a policy');
  t.match(json.body, { valid: true, policies: [{ name: 'checked', min_replicas: 1, max_replicas: 3 }] });
  t.equal((await call('GET', `${api}/policies/checked`, undefined, asReader)).status, 404, 'nothing was stored');
  const badJson = await call('POST', `${api}/validate`, { name: 'Bad Name', target_type: 'cdc-worker', min_replicas: 3, max_replicas: 1 }, asReader);
  t.equal(badJson.status, 422);
  t.match(badJson.body, { errors: [{ field: '/name' }] });

  const yaml = (text: string): Promise<{ status: number; body: unknown; text: string }> => call('POST', `${api}/validate`, text, { ...asReader, 'content-type': 'application/yaml' });
  const two = await yaml('name: one\ntarget_type: trino\nmin_replicas: 1\nmax_replicas: 2\n---\nname: two\ntarget_type: trino\nmin_replicas: 1\nmax_replicas: 2\n');
  t.equal(two.status, 200);
  t.match(two.body, { valid: true, policies: [{ name: 'one' }, { name: 'two' }] }, 'one policy per document');
  const bad = await yaml('name: ok-name\ntarget_type: trino\nmin_replicas: 4\nmax_replicas: 2\nbogus: 1\n');
  t.equal(bad.status, 422);
  t.match(bad.body, {
    code: 'VALIDATION_FAILED',
    errors: [
      { field: '/min_replicas', line: 3, column: 15, document: 0 },
      { field: '/bogus', message: /not a known property/, line: 5, column: 1, document: 0 },
    ],
  }, 'problems in the order of the text, at the key of an unknown property');
  const syntax = await yaml('name: x\n  target_type: [\n');
  t.equal(syntax.status, 422);
  t.match(syntax.body, { errors: [{ message: /YAML syntax/, line: Number }] });
  const dup = await yaml('name: same\ntarget_type: trino\nmin_replicas: 1\nmax_replicas: 2\n---\nname: same\ntarget_type: trino\nmin_replicas: 1\nmax_replicas: 2\n');
  t.match(dup.body, { errors: [{ field: '/name', line: 6, document: 1 }] }, 'a name twice in one text');
  t.match((await yaml('# nothing here\n---\n')).body, { status: 422, errors: [{ message: /holds no policy/ }] });
  t.equal((await yaml('')).status, 400, 'an empty body');

  const plain = await call('POST', `${api}/validate`, 'name: x', { ...asReader, 'content-type': 'text/plain' });
  t.equal(plain.status, 415);
  t.match(plain.body, { detail: /application\/json or application\/yaml/ }, 'the 415 names what is taken');
  t.equal((await call('POST', `${api}/validate`, '{"name": ', { ...asReader })).status, 400, 'malformed JSON');
  t.equal((await call('POST', `${api}/validate`, 'x'.repeat(1024 * 1024 + 10), { ...asReader, 'content-type': 'application/yaml' })).status, 413);
  t.equal((await call('POST', `${api}/validate`, { name: 'x' })).status, 401, 'a token is needed');
});

t.test('read tokens may send the POSTs that change nothing, and only those', async (t) => {
  const { api } = await daemon(t);
  const body = { name: 'reader-made', target_type: 'trino', min_replicas: 1, max_replicas: 2 };
  t.equal((await call('POST', `${api}/policies`, body, asReader)).status, 403, 'creating needs the write scope');
  t.equal((await call('POST', `${api}/validate`, body, asReader)).status, 200, 'checking does not');
  const stored = await call('POST', `${api}/policies/zeta-from-file/backtest`, { from: 'x', to: 'y' }, asReader);
  t.equal(stored.status, 422, `nor a backtest of a stored policy (its queries are the policy's): the body's mistakes are reported (${stored.status})`);
  const inline = await call('POST', `${api}/backtest`, { policy: body, from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00Z' }, asReader);
  t.equal(inline.status, 403, 'an inline backtest runs queries its body brings: write scope');
  t.match(inline.body, { detail: /needs the "write" scope/ });
  t.equal((await call('POST', `${api}/backtest`, { policy: body, from: 'x', to: 'y' }, asWriter)).status, 422, 'which a write token has');
  t.equal((await call('POST', `${api}/policies/zeta-from-file/evaluate`, undefined, asReader)).status, 403, 'an evaluation may act: write scope');
  t.equal((await call('POST', `${api}/policies/zeta-from-file/pause`, undefined, asReader)).status, 403);
  t.equal((await call('POST', `${api}/validate/extra`, body, asReader)).status, 403, 'only the exact paths');
});

t.test('/ui/: the console\'s files, without a token, with security headers', async (t) => {
  const { base } = await daemon(t);
  const redirect = await fetch(`${base}/ui`, { redirect: 'manual' });
  t.equal(redirect.status, 308);
  t.equal(redirect.headers.get('location'), '/ui/');
  const page = await fetch(`${base}/ui/`);
  t.equal(page.status, 200, 'no token needed for the page: it holds no data');
  t.match(page.headers.get('content-type'), 'text/html');
  t.match(page.headers.get('content-security-policy'), "default-src 'self'");
  t.match(page.headers.get('content-security-policy'), "script-src 'self'");
  t.equal(page.headers.get('x-content-type-options'), 'nosniff');
  const html = await page.text();
  t.match(html, '<script type="module" src="app.js"></script>');
  t.notMatch(html, /https?:\/\//, 'nothing from another server');
  const js = await fetch(`${base}/ui/app.js`);
  t.match(js.headers.get('content-type'), 'text/javascript');
  const etag = js.headers.get('etag') as string;
  t.equal((await fetch(`${base}/ui/app.js`, { headers: { 'if-none-match': etag } })).status, 304, 'unchanged: 304');
  t.match(await (await fetch(`${base}/ui/app.css`)).text(), '.uplot', 'uPlot\'s stylesheet is in the bundle');
  const missing = await fetch(`${base}/ui/nope.js`);
  t.equal(missing.status, 404);
  t.match(await missing.json(), { detail: 'the console has no file nope.js' });
  t.equal((await fetch(`${base}/ui/../api/v1/scaling/policies`)).status, 401, 'a path cannot climb out of /ui/');
  t.equal((await fetch(`${base}/ui/`, { method: 'HEAD' })).status, 200, 'HEAD too');
  t.equal((await fetch(`${base}/ui/`, { method: 'POST' })).status, 401, 'only reads are open');

  const bare = await startTestApp({}, { extraRoutes: [(_s, root) => registerUiRoutes(root, loadUiAssets(join(tmpdir(), 'no-such-console')))] });
  t.teardown(() => bare.close());
  const unbuilt = await fetch(`${bare.root}/ui/`);
  t.equal(unbuilt.status, 404);
  t.match(await unbuilt.json(), { detail: /not built.*npm run build/ }, 'an installation without the built console says how to build it');
});

t.test('GET .../timeline and GET /history/:id: a range of decisions in one answer, a record on demand', async (t) => {
  const { d, api } = await daemon(t);
  const created = await call('POST', `${api}/policies`, { name: 'timed', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 9, scale_up_rules: [{ metric: 'up', operator: 'gt', threshold: 1, duration: '1m', scale_by: 1 }] }, asWriter);
  const id = (created.body as { id: string }).id;
  const H = 3600_000;
  const now = Date.now();
  const rule = (ruleId: string, value: number | null, held: boolean) => ({ id: ruleId, direction: 'scale_up', metric: 'max(lag)', operator: 'gt', threshold: 60, value, held, extra: 'x'.repeat(50) });
  const rows: HistoryRow[] = [3, 2, 1].map((hoursAgo, i) => ({
    id: randomUUID(), policy_id: id, policy_name: 'timed', action: 'scale_up', target_type: 'cdc-worker', target_id: null, previous_replicas: i + 1, new_replicas: i + 2,
    reason: `change ${i}`, reason_code: 'rules_held', triggered_by: 'rule', dry_run: false, status: 'succeeded', error: null, executed_at: new Date(now - hoursAgo * H).toISOString(),
    details: { rules: [rule('r-up', 70 + i, true), rule('r-other', null, false)], target_tracking: i === 2 ? [{ id: 'tt-1', metric: 'sum(q)', kind: 'target_per_replica', target: 5, value: 12 }] : [] },
  }));
  rows.push({ ...(rows[0] as HistoryRow), id: randomUUID(), reason: 'no record', details: null, executed_at: new Date(now - 0.5 * H).toISOString() });
  for (const r of rows) await d.storage.appendHistory(r);

  const tl = await call('GET', `${api}/policies/timed/timeline?since=${encodeURIComponent(new Date(now - 4 * H).toISOString())}`, undefined, asReader);
  t.equal(tl.status, 200, tl.text.slice(0, 200));
  const body = tl.body as { truncated: boolean; rules: unknown[]; target_tracking: unknown[]; decisions: Array<Record<string, unknown>> };
  t.equal(body.truncated, false);
  t.same(body.rules, [
    { id: 'r-up', direction: 'scale_up', metric: 'max(lag)', operator: 'gt', threshold: 60 },
    { id: 'r-other', direction: 'scale_up', metric: 'max(lag)', operator: 'gt', threshold: 60 },
  ], 'what each rule id stands for');
  t.same(body.target_tracking, [{ id: 'tt-1', metric: 'sum(q)', kind: 'target_per_replica', target: 5 }]);
  t.same(body.decisions.map((x) => x['reason']), ['change 0', 'change 1', 'change 2', 'no record'], 'oldest first');
  t.same(body.decisions[0], {
    id: rows[0]?.id, action: 'scale_up', previous_replicas: 1, new_replicas: 2, reason: 'change 0', reason_code: 'rules_held', triggered_by: 'rule', dry_run: false, status: 'succeeded', error: null,
    executed_at: rows[0]?.executed_at, has_record: true, values: { 'r-up': 70, 'r-other': null }, held: ['r-up'],
  }, 'each decision without its record, with its rules\' values and the ids that held');
  t.same(body.decisions[2]?.['values'], { 'r-up': 72, 'r-other': null, 'tt-1': 12 });
  t.match(body.decisions[3], { has_record: false, values: {}, held: [] });
  const narrow = await call('GET', `${api}/policies/${id}/timeline?since=${encodeURIComponent(new Date(now - 2.5 * H).toISOString())}&until=${encodeURIComponent(new Date(now - 0.75 * H).toISOString())}`, undefined, asReader);
  t.same((narrow.body as typeof body).decisions.map((x) => x['reason']), ['change 1', 'change 2'], 'since and until bound the range');
  t.equal(((await call('GET', `${api}/policies/timed/timeline`, undefined, asReader)).body as typeof body).decisions.length, 4, 'default: the last 24 hours');
  for (const [query, status, field] of [
    [`since=${encodeURIComponent(new Date(now + H).toISOString())}`, 400, '/query/since'],
    [`since=${encodeURIComponent(new Date(now - 40 * 24 * H).toISOString())}`, 400, '/query/since'],
    ['until=soon', 400, '/query/until'],
  ] as const) {
    const r = await call('GET', `${api}/policies/timed/timeline?${query}`, undefined, asReader);
    t.equal(r.status, status, query);
    t.match(r.body, { errors: [{ field }] });
  }
  t.equal((await call('GET', `${api}/policies/nope/timeline`, undefined, asReader)).status, 404);

  const one = await call('GET', `${api}/history/${rows[1]?.id}`, undefined, asReader);
  t.equal(one.status, 200);
  t.same(one.body, rows[1], 'the whole row, record included');
  t.equal((await call('GET', `${api}/history/${randomUUID()}`, undefined, asReader)).status, 404);
  const bad = await call('GET', `${api}/history/not-a-uuid`, undefined, asReader);
  t.equal(bad.status, 400);
  t.match(bad.body, { errors: [{ field: '/path/id' }] });
});
