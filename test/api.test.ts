import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../src/util/package-root.js';
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { parseIsoTime } from '../src/api/query.js';
import type { HistoryRow } from '../src/storage/storage.js';
import { call, startTestApp, type TestApp } from './helpers/app.js';

type Json = Record<string, unknown>;
type PolicyAnswer = Json & {
  id: string;
  name: string;
  created_at: string;
  updated_at: string;
  scale_up_rules: Array<Json & { id: string }>;
  scale_down_rules: Array<Json & { id: string }>;
  schedules: Array<Json & { id: string }>;
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

// The seed's request bodies, verbatim.
const SEED_MINIMAL = { name: 'test-policy', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 5 };
const SEED_FULL = {
  name: 'cdc-worker-autoscaling',
  target_type: 'cdc-worker',
  target_id: '550e8400-e29b-41d4-a716-446655440000',
  min_replicas: 1,
  max_replicas: 10,
  cooldown_seconds: 300,
  scale_to_zero: false,
  scale_up_rules: [{ metric: 'philotes_cdc_lag_seconds', operator: 'gt', threshold: 60, duration: '5m', scale_by: 2 }],
  scale_down_rules: [{ metric: 'philotes_cdc_lag_seconds', operator: 'lt', threshold: 10, duration: '10m', scale_by: -1 }],
  schedules: [{ cron_expression: '0 8 * * 1-5', desired_replicas: 5, timezone: 'Europe/Budapest' }],
};

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function create(app: TestApp, body: Json): Promise<PolicyAnswer> {
  const res = await call('POST', `${app.api}/policies`, body);
  if (res.status !== 201) throw new Error(`create failed: ${res.status} ${res.text}`);
  return res.body as PolicyAnswer;
}

function policyBody(name: string, extra: Json = {}): Json {
  return { name, target_type: 'cdc-worker', min_replicas: 1, max_replicas: 5, ...extra };
}

/** A history row as the engine would write it; `minutesAgo` orders rows in time. */
function historyRow(policy: { id: string; name: string }, minutesAgo: number, extra: Partial<HistoryRow> = {}): HistoryRow {
  return {
    id: randomUUID(),
    policy_id: policy.id,
    policy_name: policy.name,
    action: 'scale_up',
    target_type: 'cdc-worker',
    target_id: null,
    previous_replicas: 1,
    new_replicas: 3,
    reason: 'philotes_cdc_lag_seconds > 60 for 5m',
    reason_code: null,
    triggered_by: 'rule',
    dry_run: false,
    status: 'succeeded',
    error: null,
    executed_at: new Date(Date.UTC(2026, 0, 28, 12, 0, 0) - minutesAgo * 60_000).toISOString(),
    details: { policy_id: policy.id, action: 'scale_up' },
    ...extra,
  };
}

t.test('seed example 1: POST a minimal policy answers 201 with defaults', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const res = await call('POST', `${app.api}/policies`, SEED_MINIMAL);
  t.equal(res.status, 201);
  t.match(res.headers.get('content-type'), /^application\/json/);
  const p = res.body as PolicyAnswer;
  t.match(p.id, UUID);
  t.equal(res.headers.get('location'), `/api/v1/scaling/policies/${p.id}`);
  t.match(p, {
    name: 'test-policy',
    target_type: 'cdc-worker',
    min_replicas: 1,
    max_replicas: 5,
    enabled: true,
    cooldown_seconds: 300,
    scale_to_zero: false,
    dry_run: false,
    scale_up_rules: [],
    scale_down_rules: [],
    schedules: [],
  });
  t.match(p.created_at, ISO);
  t.match(p.updated_at, ISO);
  t.equal(p.created_at, p.updated_at);
});

t.test('seed example 2: POST the full policy answers 201 with rule and schedule ids and both duration forms', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const res = await call('POST', `${app.api}/policies`, SEED_FULL);
  t.equal(res.status, 201);
  const p = res.body as PolicyAnswer;
  t.match(p, {
    name: 'cdc-worker-autoscaling',
    target_type: 'cdc-worker',
    target_id: '550e8400-e29b-41d4-a716-446655440000',
    min_replicas: 1,
    max_replicas: 10,
    cooldown_seconds: 300,
    scale_to_zero: false,
    enabled: true,
    scale_up_rules: [{ metric: 'philotes_cdc_lag_seconds', operator: 'gt', threshold: 60, duration: '5m', duration_seconds: 300, scale_by: 2 }],
    scale_down_rules: [{ metric: 'philotes_cdc_lag_seconds', operator: 'lt', threshold: 10, duration: '10m', duration_seconds: 600, scale_by: -1 }],
    schedules: [{ cron_expression: '0 8 * * 1-5', desired_replicas: 5, timezone: 'Europe/Budapest', enabled: true }],
  });
  t.equal(p.scale_up_rules.length, 1);
  t.equal(p.scale_down_rules.length, 1);
  t.equal(p.schedules.length, 1);
  for (const item of [...p.scale_up_rules, ...p.scale_down_rules, ...p.schedules]) t.match(item.id, UUID);
  t.match(p.created_at, ISO);
  t.match(p.updated_at, ISO);
});

t.test('GET by id and by name; list with total_count, limit/offset and filters', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const full = await create(app, SEED_FULL);

  const byId = await call('GET', `${app.api}/policies/${full.id}`);
  t.equal(byId.status, 200);
  t.same(byId.body, full, 'GET by id answers what POST answered');
  const byUpperId = await call('GET', `${app.api}/policies/${full.id.toUpperCase()}`);
  t.equal(byUpperId.status, 200, 'a UUID is matched case-insensitively');
  const byName = await call('GET', `${app.api}/policies/cdc-worker-autoscaling`);
  t.equal(byName.status, 200);
  t.same(byName.body, full, 'GET by name answers the same policy');

  await create(app, policyBody('trino-a', { target_type: 'trino' }));
  await create(app, policyBody('trino-b', { target_type: 'trino', enabled: false }));
  await create(app, policyBody('nodes-a', { target_type: 'nodes' }));

  const all = await call('GET', `${app.api}/policies`);
  t.equal(all.status, 200);
  const list = all.body as { policies: PolicyAnswer[]; total_count: number };
  t.equal(list.total_count, 4);
  t.same(list.policies.map((p) => p.name), ['cdc-worker-autoscaling', 'trino-a', 'trino-b', 'nodes-a'], 'oldest first');
  t.same(list.policies[0], full, 'list items are full policies');

  const page = (await call('GET', `${app.api}/policies?limit=2&offset=1`)).body as { policies: PolicyAnswer[]; total_count: number };
  t.same(page.policies.map((p) => p.name), ['trino-a', 'trino-b']);
  t.equal(page.total_count, 4, 'total_count counts every match, not the page');

  const past = (await call('GET', `${app.api}/policies?offset=10`)).body as { policies: PolicyAnswer[]; total_count: number };
  t.same(past, { policies: [], total_count: 4 }, 'an offset past the end is an empty page');

  const trino = (await call('GET', `${app.api}/policies?target_type=trino`)).body as { policies: PolicyAnswer[]; total_count: number };
  t.same(trino.policies.map((p) => p.name), ['trino-a', 'trino-b']);
  t.equal(trino.total_count, 2);

  const disabled = (await call('GET', `${app.api}/policies?enabled=false`)).body as { policies: PolicyAnswer[]; total_count: number };
  t.same(disabled.policies.map((p) => p.name), ['trino-b']);
  t.equal(disabled.total_count, 1);

  const both = (await call('GET', `${app.api}/policies?enabled=true&target_type=trino`)).body as { policies: PolicyAnswer[]; total_count: number };
  t.same(both.policies.map((p) => p.name), ['trino-a']);

  const none = (await call('GET', `${app.api}/policies?target_type=risingwave`)).body as { policies: PolicyAnswer[]; total_count: number };
  t.same(none, { policies: [], total_count: 0 });
});

t.test('PUT replaces the whole policy; a PUT of the GET answer round-trips', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const before = await create(app, SEED_FULL);
  await sleep(5);

  const replacement = {
    ...policyBody('cdc-worker-autoscaling'),
    max_replicas: 8,
    description: 'replaced',
    scale_up_rules: [
      { metric: 'max(philotes_cdc_lag_seconds{source="orders"})', operator: 'gte', threshold: 120, duration: '90s', scale_by: 3 },
      { metric: 'philotes_cdc_queue_depth', operator: 'gt', threshold: 1000, scale_by: 1 },
    ],
  };
  const put = await call('PUT', `${app.api}/policies/${before.id}`, replacement);
  t.equal(put.status, 200);
  const after = put.body as PolicyAnswer;
  t.equal(after.id, before.id, 'the id stays');
  t.equal(after.created_at, before.created_at, 'created_at stays');
  t.not(after.updated_at, before.updated_at, 'updated_at changes');
  t.ok(Date.parse(after.updated_at) > Date.parse(before.updated_at));
  t.match(after, {
    max_replicas: 8,
    description: 'replaced',
    target_id: null,
    scale_down_rules: [],
    schedules: [],
    scale_up_rules: [
      { metric: 'max(philotes_cdc_lag_seconds{source="orders"})', operator: 'gte', threshold: 120, duration: '1m30s', duration_seconds: 90, scale_by: 3 },
      { metric: 'philotes_cdc_queue_depth', operator: 'gt', threshold: 1000, duration: '0s', duration_seconds: 0, scale_by: 1 },
    ],
  });
  t.equal(after.scale_up_rules.length, 2, 'rules are replaced, not merged');
  t.same((await call('GET', `${app.api}/policies/${before.id}`)).body, after, 'GET answers the replacement');

  // PUT by name works too, and the GET answer (ids, times, both duration forms) is a valid body.
  const full = await create(app, { ...SEED_FULL, name: 'round-trip' });
  const got = (await call('GET', `${app.api}/policies/round-trip`)).body as PolicyAnswer;
  await sleep(5);
  const again = await call('PUT', `${app.api}/policies/round-trip`, got);
  t.equal(again.status, 200, again.text);
  t.same(again.body, full, 'the same policy comes back: a PUT that changes nothing keeps rule and schedule ids, and updated_at');
});

t.test('enable and disable answer the policy and change updated_at', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const p = await create(app, SEED_MINIMAL);
  await sleep(5);
  const off = await call('POST', `${app.api}/policies/${p.id}/disable`);
  t.equal(off.status, 200);
  t.match(off.body, { id: p.id, enabled: false, created_at: p.created_at });
  t.not((off.body as PolicyAnswer).updated_at, p.updated_at);
  t.match((await call('GET', `${app.api}/policies/${p.id}`)).body, { enabled: false });
  const offAgain = await call('POST', `${app.api}/policies/test-policy/disable`);
  t.equal(offAgain.status, 200, 'disabling twice is fine');
  const on = await call('POST', `${app.api}/policies/test-policy/enable`);
  t.equal(on.status, 200);
  t.match(on.body, { id: p.id, enabled: true });
  t.equal((await call('POST', `${app.api}/policies/${randomUUID()}/enable`)).status, 404);
});

t.test('DELETE answers 204, then the policy is gone (404); its history stays with policy_name', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const p = await create(app, SEED_FULL);
  await app.storage.appendHistory(historyRow(p, 1));
  const del = await call('DELETE', `${app.api}/policies/${p.id}`);
  t.equal(del.status, 204);
  t.equal(del.text, '');
  const get = await call('GET', `${app.api}/policies/${p.id}`);
  t.equal(get.status, 404);
  t.match(get.headers.get('content-type'), /^application\/problem\+json/);
  t.match(get.body, { status: 404, code: 'NOT_FOUND' });
  t.equal((await call('GET', `${app.api}/policies/cdc-worker-autoscaling`)).status, 404);
  t.equal((await call('DELETE', `${app.api}/policies/${p.id}`)).status, 404, 'deleting twice is a 404');
  t.match((await call('GET', `${app.api}/policies`)).body, { total_count: 0 });

  const history = (await call('GET', `${app.api}/history?policy_id=${p.id}`)).body as { history: HistoryRow[] };
  t.equal(history.history.length, 1);
  t.match(history.history[0], { policy_id: p.id, policy_name: 'cdc-worker-autoscaling' });
  t.equal((await call('GET', `${app.api}/policies/${p.id}/history`)).status, 404, 'the per-policy route needs the policy');

  // The name is free again.
  t.equal((await call('POST', `${app.api}/policies`, SEED_FULL)).status, 201);
});

t.test('history: newest first, cursor pagination, filters, limits', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const a = await create(app, policyBody('policy-a'));
  const b = await create(app, policyBody('policy-b'));
  // 5 rows for a (0..4 minutes ago), 3 for b (10..12 minutes ago), mixed actions and dry-run flags.
  const rowsA = [0, 1, 2, 3, 4].map((m) =>
    historyRow(a, m, { action: m % 2 === 0 ? 'scale_up' : 'scale_down', dry_run: m === 3 }),
  );
  const rowsB = [10, 11, 12].map((m) => historyRow(b, m, { action: 'scheduled', triggered_by: 'schedule' }));
  for (const r of [...rowsB, ...rowsA].reverse()) await app.storage.appendHistory(r);
  const newestFirst = [...rowsA, ...rowsB].map((r) => r.id);

  const all = await call('GET', `${app.api}/history`);
  t.equal(all.status, 200);
  const page = all.body as { history: HistoryRow[]; next_cursor: string | null };
  t.same(page.history.map((r) => r.id), newestFirst, 'newest first');
  t.equal(page.next_cursor, null, 'one page: no cursor');
  t.same(page.history[0], rowsA[0], 'a row comes back as written');

  // Walk with limit=3.
  const seen: string[] = [];
  let url: string | null = `${app.api}/history?limit=3`;
  let pages = 0;
  while (url !== null) {
    const res = (await call('GET', url)).body as { history: HistoryRow[]; next_cursor: string | null };
    pages++;
    seen.push(...res.history.map((r) => r.id));
    t.ok(res.history.length <= 3);
    url = res.next_cursor === null ? null : `${app.api}/history?limit=3&cursor=${encodeURIComponent(res.next_cursor)}`;
  }
  t.equal(pages, 3);
  t.same(seen, newestFirst, 'the pages cover every row once, in order');

  const ofA = (await call('GET', `${app.api}/policies/${a.id}/history`)).body as { history: HistoryRow[] };
  t.same(ofA.history.map((r) => r.id), rowsA.map((r) => r.id), '/policies/:id/history lists that policy only');
  const ofBByName = (await call('GET', `${app.api}/policies/policy-b/history`)).body as { history: HistoryRow[] };
  t.same(ofBByName.history.map((r) => r.id), rowsB.map((r) => r.id), 'by name too');
  const ofAPaged = (await call('GET', `${app.api}/policies/${a.id}/history?limit=2`)).body as { history: HistoryRow[]; next_cursor: string };
  t.same(ofAPaged.history.map((r) => r.id), rowsA.slice(0, 2).map((r) => r.id));
  const ofAPage2 = (await call('GET', `${app.api}/policies/${a.id}/history?limit=2&cursor=${ofAPaged.next_cursor}`)).body as { history: HistoryRow[] };
  t.same(ofAPage2.history.map((r) => r.id), rowsA.slice(2, 4).map((r) => r.id));

  const filter = async (qs: string): Promise<string[]> => {
    const res = await call('GET', `${app.api}/history?${qs}`);
    t.equal(res.status, 200, qs);
    return (res.body as { history: HistoryRow[] }).history.map((r) => r.id);
  };
  t.same(await filter('action=scale_down'), [rowsA[1], rowsA[3]].map((r) => r?.id), 'action');
  t.same(await filter('action=scheduled'), rowsB.map((r) => r.id));
  t.same(await filter('action=none'), []);
  t.same(await filter('dry_run=true'), [rowsA[3]?.id], 'dry_run=true');
  t.equal((await filter('dry_run=false')).length, 7, 'dry_run=false');
  t.same(await filter(`policy_id=${b.id}`), rowsB.map((r) => r.id), 'policy_id');
  t.same(await filter(`policy_id=${b.id.toUpperCase()}`), rowsB.map((r) => r.id), 'policy_id is case-insensitive');
  t.same(await filter(`policy_id=${randomUUID()}`), [], 'an unknown policy_id is an empty list, not an error');
  // since is inclusive, until exclusive.
  const since = rowsA[2]?.executed_at ?? '';
  t.same(await filter(`since=${encodeURIComponent(since)}`), rowsA.slice(0, 3).map((r) => r.id), 'since (inclusive)');
  t.same(await filter(`until=${encodeURIComponent(since)}`), [...rowsA.slice(3), ...rowsB].map((r) => r.id), 'until (exclusive)');
  t.same(
    await filter(`since=2026-01-28T11:50:00Z&until=2026-01-28T11:58:00Z`),
    [rowsA[3], rowsA[4], rowsB[0]].map((r) => r?.id),
    'since and until together: [11:50, 11:58)',
  );
  t.same(await filter('since=2026-01-28T12:57:00%2B01:00'), rowsA.slice(0, 4).map((r) => r.id), 'an offset is honoured');
  t.same(await filter('since=2026-01-28T12:57:00+01:00'), rowsA.slice(0, 4).map((r) => r.id), 'an unencoded + (a space) still reads as an offset');
  t.same(await filter('since=2026-01-28'), newestFirst, 'a date alone is midnight UTC');
  t.same(await filter('since=2026-01-29'), []);
  t.same(await filter(`action=scale_up&dry_run=false&policy_id=${a.id}&limit=1`), [rowsA[0]?.id], 'filters combine');
});

t.test('history: status and policy_name filters (a deleted policy is found by name); unknown parameters are 400 naming them', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const a = await create(app, policyBody('policy-a'));
  const b = await create(app, policyBody('policy-b'));
  const done = historyRow(a, 3, { action: 'scale_up', status: 'succeeded' });
  const blocked = historyRow(a, 2, { action: 'scale_up', status: 'blocked', reason_code: 'cooldown' });
  const failed = historyRow(a, 1, { action: 'scale_up', status: 'failed', error: 'the cluster refused' });
  const ofB = historyRow(b, 0, { action: 'scale_down', status: 'succeeded' });
  for (const r of [done, blocked, failed, ofB]) await app.storage.appendHistory(r);
  const ids = async (qs: string, path = '/history'): Promise<string[]> => {
    const res = await call('GET', `${app.api}${path}?${qs}`);
    t.equal(res.status, 200, `${path}?${qs}`);
    return (res.body as { history: HistoryRow[] }).history.map((r) => r.id);
  };
  t.same(await ids('action=scale_up&status=succeeded'), [done.id], 'executed scale-ups only, without the blocked and failed ones');
  t.same(await ids('status=blocked'), [blocked.id]);
  t.same(await ids('status=failed'), [failed.id]);
  t.same(await ids('status=succeeded', `/policies/${a.id}/history`), [done.id], 'on a policy\'s own route too');
  t.same(await ids('policy_name=policy-a'), [failed.id, blocked.id, done.id], 'by name');

  t.equal((await call('DELETE', `${app.api}/policies/${a.id}`)).status, 204);
  t.same(await ids('policy_name=policy-a'), [failed.id, blocked.id, done.id], 'after a DELETE, its history is still found by name');
  t.same(await ids('policy_name=policy-a&status=failed'), [failed.id]);

  const typo = await call('GET', `${app.api}/history?actoin=scale_up`);
  t.equal(typo.status, 400, 'a misspelt parameter is refused, not ignored');
  t.match(typo.body, { code: 'BAD_REQUEST', errors: [{ field: '/query/actoin', message: /is not a known parameter \(did you mean action\?\)/ }] });
  const several = await call('GET', `${app.api}/history?colour=red&status=done`);
  t.equal(several.status, 400);
  t.match(several.body, {
    errors: [
      { field: '/query/status', message: /must be one of succeeded, failed, blocked/ },
      { field: '/query/colour', message: /is not a known parameter; this route takes limit, cursor, policy_id, policy_name, action, status, since, until, dry_run/ },
    ],
  });
  const own = await call('GET', `${app.api}/policies/${b.id}/history?policy_name=policy-a`);
  t.equal(own.status, 400, 'a policy\'s own route takes no policy filter');
  const list = await call('GET', `${app.api}/policies?enabeld=true`);
  t.equal(list.status, 400, 'the policy list refuses unknown parameters too');
  t.match(list.body, { errors: [{ field: '/query/enabeld', message: /did you mean enabled\?/ }] });
});

t.test('history: limit defaults to 100 and may be up to 1000', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const p = await create(app, SEED_MINIMAL);
  for (let i = 0; i < 120; i++) await app.storage.appendHistory(historyRow(p, i));
  const first = (await call('GET', `${app.api}/history`)).body as { history: HistoryRow[]; next_cursor: string | null };
  t.equal(first.history.length, 100, 'default page size 100');
  t.type(first.next_cursor, 'string');
  const rest = (await call('GET', `${app.api}/history?cursor=${first.next_cursor}`)).body as { history: HistoryRow[]; next_cursor: string | null };
  t.equal(rest.history.length, 20);
  t.equal(rest.next_cursor, null);
  const max = (await call('GET', `${app.api}/history?limit=1000`)).body as { history: HistoryRow[]; next_cursor: string | null };
  t.equal(max.history.length, 120);
  t.equal(max.next_cursor, null);
  t.equal((await call('GET', `${app.api}/history?limit=1001`)).status, 400);
});

t.test('rules take duration_seconds as a number and answer with both forms', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const p = await create(
    app,
    policyBody('seconds', {
      scale_up_rules: [{ metric: 'm', operator: 'gt', threshold: 1, duration_seconds: 90, scale_by: 1 }],
      scale_down_rules: [{ metric: 'm', operator: 'lt', threshold: 0.5, duration: '1h30m', duration_seconds: 5400, scale_by: -1 }],
      schedules: [{ cron_expression: '0 8 * * 1-5', desired_replicas: 2, duration_seconds: 32400, mode: 'floor' }],
    }),
  );
  t.match(p.scale_up_rules[0], { duration: '1m30s', duration_seconds: 90 });
  t.match(p.scale_down_rules[0], { duration: '1h30m', duration_seconds: 5400, threshold: 0.5 });
  t.match(p.schedules[0], { duration: '9h', duration_seconds: 32400, mode: 'floor', timezone: 'UTC', enabled: true });
});

t.test('a cost cap that exactly pays for min_replicas is accepted despite float rounding', async (t) => {
  const app = await startTestApp({ prices: { trino: 0.1 } });
  t.teardown(() => app.close());
  // 3 x 0.1 is 0.30000000000000004 in floating point.
  const own = await call('POST', `${app.api}/policies`, policyBody('own-price', { min_replicas: 3, max_hourly_cost: 0.3, cost_per_replica_hour: 0.1 }));
  t.equal(own.status, 201, own.text);
  const config = await call('POST', `${app.api}/policies`, policyBody('config-price', { target_type: 'trino', min_replicas: 3, max_hourly_cost: 0.3 }));
  t.equal(config.status, 201, config.text);
  t.match(config.body, { max_hourly_cost: 0.3, cost_per_replica_hour: null });
  const tooLow = await call('POST', `${app.api}/policies`, policyBody('too-low', { target_type: 'trino', min_replicas: 3, max_hourly_cost: 0.29 }));
  t.equal(tooLow.status, 422);
});

t.test('probes: /healthz and /readyz', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const health = await call('GET', `${app.root}/healthz`);
  t.equal(health.status, 200);
  t.same(health.body, { status: 'ok' });
  const ready = await call('GET', `${app.root}/readyz`);
  t.equal(ready.status, 200);
  const shipped = readdirSync(join(packageRoot(), 'migrations', 'sqlite')).filter((f) => f.endsWith('.sql')).sort();
  t.ok(shipped.length >= 1);
  t.same(ready.body, { status: 'ready', checks: { storage: { ok: true, critical: true, kind: 'sqlite', migrations: shipped } } }, 'every shipped migration applied');
  t.match(health.headers.get('x-request-id'), /^[0-9a-f-]{36}$/, 'every answer carries a request id');
  const echoed = await call('GET', `${app.root}/healthz`, undefined, { 'x-request-id': 'abc-123' });
  t.equal(echoed.headers.get('x-request-id'), 'abc-123');
});

t.test('/readyz answers 503 when storage is gone', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  await app.storage.close();
  const ready = await call('GET', `${app.root}/readyz`);
  t.equal(ready.status, 503);
  t.match(ready.body, { status: 'not_ready', checks: { storage: { ok: false, critical: true, error: String } } });
});

t.test('Location of a created policy, also when POSTed with a trailing slash', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const res = await call('POST', `${app.api}/policies/`, SEED_MINIMAL);
  t.equal(res.status, 201);
  const id = (res.body as PolicyAnswer).id;
  t.equal(res.headers.get('location'), `/api/v1/scaling/policies/${id}`);
  t.equal((await call('GET', `${app.root}${res.headers.get('location') ?? ''}`)).status, 200);
});

t.test('JSON bodies: media-type parameters and +json types are accepted', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const a = await call('POST', `${app.api}/policies`, policyBody('charset'), { 'content-type': 'application/json; charset=UTF-8' });
  t.equal(a.status, 201, a.text);
  const b = await call('POST', `${app.api}/policies`, policyBody('vendor-type'), { 'content-type': 'application/vnd.philotes+json' });
  t.equal(b.status, 201, b.text);
  const c = await call('POST', `${app.api}/policies`, policyBody('identity'), { 'content-type': 'application/json', 'content-encoding': 'identity' });
  t.equal(c.status, 201, c.text);
});

t.test('parseIsoTime: strict ISO-8601 for since/until', async (t) => {
  const ok: Array<[string, string]> = [
    ['2026-01-28', '2026-01-28T00:00:00.000Z'],
    ['2026-01-28T12:00:00Z', '2026-01-28T12:00:00.000Z'],
    ['2026-01-28T12:00:00.5z', '2026-01-28T12:00:00.500Z'],
    ['2026-01-28T12:00:00.123456Z', '2026-01-28T12:00:00.123Z'],
    ['2026-01-28T12:00Z', '2026-01-28T12:00:00.000Z'],
    ['2026-01-28T12:00:00', '2026-01-28T12:00:00.000Z'],
    ['2026-01-28 12:00:00', '2026-01-28T12:00:00.000Z'],
    ['2026-01-28T12:00:00+01:00', '2026-01-28T11:00:00.000Z'],
    ['2026-01-28T12:00:00-0230', '2026-01-28T14:30:00.000Z'],
    ['2026-01-28T12:00:00 01:00', '2026-01-28T11:00:00.000Z'],
    ['2024-02-29', '2024-02-29T00:00:00.000Z'],
    ['2000-02-29', '2000-02-29T00:00:00.000Z'],
  ];
  for (const [raw, iso] of ok) t.equal(parseIsoTime(raw), iso, raw);
  const bad = [
    'yesterday', '', '2026', '2026-01', '2026-1-28', '2026-02-29', '1900-02-29', '2026-02-30', '2026-04-31', '2026-13-01',
    '2026-00-10', '2026-01-00', '2026-01-01 junk', '2026-01-01x', '2026-01-01T24:00:00Z', '2026-01-01T12:60:00Z',
    '2026-01-01T12:00:61Z', '2026-01-01T12:00:00+25:00', '2026-01-01T12:00:00+01:75', '1769601600000', ' 2026-01-01',
  ];
  for (const raw of bad) t.equal(parseIsoTime(raw), undefined, JSON.stringify(raw));
});
