import { randomUUID } from 'node:crypto';
import t from 'tap';
import { call, startTestApp, type TestApp } from './helpers/app.js';

type Json = Record<string, unknown>;
type Item = Json & { id: string };
type PolicyAnswer = Json & {
  id: string;
  name: string;
  updated_at: string;
  scale_up_rules: Item[];
  scale_down_rules: Item[];
  schedules: Item[];
};
type Problem = { code: string; detail: string; errors?: Array<{ field: string; message: string }> };

const MERGE_PATCH = { 'content-type': 'application/merge-patch+json' };

const FULL = {
  name: 'orders-workers',
  target_type: 'cdc-worker',
  description: 'orders pipeline',
  min_replicas: 1,
  max_replicas: 10,
  cooldown_seconds: 120,
  on_metric_error: 'fallback',
  fallback: { after_failures: 3, replicas: 4 },
  scale_up_rules: [
    { metric: 'philotes_cdc_lag_seconds', operator: 'gt', threshold: 60, duration: '5m', scale_by: 2 },
    { metric: 'philotes_cdc_queue_depth', operator: 'gt', threshold: 1000, scale_by: 1 },
  ],
  scale_down_rules: [{ metric: 'philotes_cdc_lag_seconds', operator: 'lt', threshold: 10, duration: '10m', scale_by: -1 }],
  schedules: [{ cron_expression: '0 8 * * 1-5', desired_replicas: 5, timezone: 'Europe/Budapest' }],
};

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function create(app: TestApp, body: Json): Promise<PolicyAnswer> {
  const res = await call('POST', `${app.api}/policies`, body);
  if (res.status !== 201) throw new Error(`create failed: ${res.status} ${res.text}`);
  return res.body as PolicyAnswer;
}

const ids = (items: Item[]): string[] => items.map((x) => x.id);

t.test('PATCH merges (RFC 7396): members replace, objects merge, null restores the default, arrays replace whole', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const before = await create(app, FULL);
  await sleep(5);

  const res = await call('PATCH', `${app.api}/policies/${before.id}`, { max_replicas: 8, description: null, cooldown_seconds: null, fallback: { replicas: 5 } }, MERGE_PATCH);
  t.equal(res.status, 200, res.text);
  const after = res.body as PolicyAnswer;
  t.match(after, {
    id: before.id,
    name: 'orders-workers',
    max_replicas: 8,
    description: null,
    cooldown_seconds: 300,
    fallback: { after_failures: 3, replicas: 5 },
    min_replicas: 1,
    on_metric_error: 'fallback',
  });
  t.not(after.updated_at, before.updated_at, 'a change moves updated_at');
  t.strictSame(ids(after.scale_up_rules), ids(before.scale_up_rules), 'rules the patch did not touch keep their ids');
  t.strictSame(ids(after.scale_down_rules), ids(before.scale_down_rules));
  t.strictSame(ids(after.schedules), ids(before.schedules), 'schedules too');
  t.same((await call('GET', `${app.api}/policies/orders-workers`)).body, after, 'stored');

  // An array is replaced whole; an unchanged rule in it keeps its id.
  const lag = FULL.scale_up_rules[0];
  const rules = await call('PATCH', `${app.api}/policies/orders-workers`, { scale_up_rules: [{ metric: 'cpu', operator: 'gt', threshold: 0.8, scale_by: 1 }, lag] }, MERGE_PATCH);
  t.equal(rules.status, 200, rules.text);
  const replaced = rules.body as PolicyAnswer;
  t.equal(replaced.scale_up_rules.length, 2, 'the array is replaced, not merged');
  t.match(replaced.scale_up_rules, [{ metric: 'cpu' }, { metric: 'philotes_cdc_lag_seconds', duration_seconds: 300 }]);
  t.notOk(ids(before.scale_up_rules).includes(replaced.scale_up_rules[0]?.id ?? ''), 'the new rule gets a new id');
  t.equal(replaced.scale_up_rules[1]?.id, before.scale_up_rules[0]?.id, 'the lag rule, unchanged, keeps its id at its new position');
  t.strictSame(ids(replaced.scale_down_rules), ids(before.scale_down_rules));

  // Plain application/json is a merge patch too.
  const json = await call('PATCH', `${app.api}/policies/orders-workers`, { dry_run: true });
  t.equal(json.status, 200, json.text);
  t.match(json.body, { dry_run: true, max_replicas: 8 });
});

t.test('PATCH: an empty patch or one that changes nothing writes nothing', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const before = await create(app, FULL);
  const revision = await app.storage.policiesRevision();
  await sleep(5);
  for (const patch of [{}, { max_replicas: 10 }, { scale_up_rules: FULL.scale_up_rules }, { id: randomUUID(), updated_at: '2020-01-01T00:00:00Z' }]) {
    const res = await call('PATCH', `${app.api}/policies/${before.id}`, patch, MERGE_PATCH);
    t.equal(res.status, 200, `${JSON.stringify(patch)}: ${res.text}`);
    t.same(res.body, before, `${JSON.stringify(patch)}: the policy as it was, updated_at included`);
  }
  t.equal(await app.storage.policiesRevision(), revision, 'nothing was written');
});

t.test('PATCH: the result is validated as a whole, as a PUT body is; nothing is stored when it fails', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const before = await create(app, FULL);

  const bounds = await call('PATCH', `${app.api}/policies/${before.id}`, { min_replicas: 20 }, MERGE_PATCH);
  t.equal(bounds.status, 422, bounds.text);
  t.equal((bounds.body as Problem).code, 'VALIDATION_FAILED');
  t.ok((bounds.body as Problem).errors?.some((e) => e.field === '/min_replicas' || e.field === '/max_replicas'), `a bound is named: ${bounds.text}`);

  const rule = await call('PATCH', `${app.api}/policies/${before.id}`, { scale_up_rules: [{ metric: 'lag', threshold: 'high' }], max_replicas: -1 }, MERGE_PATCH);
  t.equal(rule.status, 422, rule.text);
  const fields = ((rule.body as Problem).errors ?? []).map((e) => e.field);
  for (const f of ['/scale_up_rules/0/operator', '/scale_up_rules/0/threshold', '/scale_up_rules/0/scale_by', '/max_replicas']) t.ok(fields.includes(f), `${f} is named (${fields.join(', ')})`);

  // on_metric_error: fallback needs a fallback: deleting it breaks the whole, not the patch.
  const whole = await call('PATCH', `${app.api}/policies/${before.id}`, { fallback: null }, MERGE_PATCH);
  t.equal(whole.status, 422, whole.text);
  t.ok(((whole.body as Problem).errors ?? []).some((e) => e.field === '/fallback'), `named at /fallback: ${whole.text}`);

  const unknown = await call('PATCH', `${app.api}/policies/${before.id}`, { max_replica: 3 }, MERGE_PATCH);
  t.equal(unknown.status, 422);
  t.match((unknown.body as Problem).errors, [{ field: '/max_replica', message: /not a known property/ }]);

  const taken = await create(app, { name: 'taken', target_type: 'trino', min_replicas: 1, max_replicas: 2 });
  const clash = await call('PATCH', `${app.api}/policies/${before.id}`, { name: taken.name }, MERGE_PATCH);
  t.equal(clash.status, 409);
  t.equal((clash.body as Problem).code, 'DUPLICATE_NAME');

  t.same((await call('GET', `${app.api}/policies/${before.id}`)).body, before, 'nothing was stored');
});

t.test('PATCH: a body that is not an object, is missing, or is not JSON', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const before = await create(app, FULL);
  for (const body of ['[{"op":"replace","path":"/max_replicas","value":3}]', '"text"', '5', 'null', 'true']) {
    const res = await call('PATCH', `${app.api}/policies/${before.id}`, body, MERGE_PATCH);
    t.equal(res.status, 422, `${body}: ${res.text}`);
    const p = res.body as Problem;
    t.equal(p.code, 'VALIDATION_FAILED');
    t.match(p.errors, [{ field: '', message: /must be a JSON object/ }], `${body}: the whole body is named`);
  }
  const empty = await call('PATCH', `${app.api}/policies/${before.id}`, '', MERGE_PATCH);
  t.equal(empty.status, 400);
  const malformed = await call('PATCH', `${app.api}/policies/${before.id}`, '{"max_replicas": ', MERGE_PATCH);
  t.equal(malformed.status, 400);
  t.equal((malformed.body as Problem).code, 'MALFORMED_JSON');
  const jsonPatch = await call('PATCH', `${app.api}/policies/${before.id}`, '[]', { 'content-type': 'application/json-patch+json' });
  t.equal(jsonPatch.status, 415, 'JSON Patch (RFC 6902) is not a merge patch');
  t.match((jsonPatch.body as Problem).detail, /application\/merge-patch\+json/);
  t.equal((await call('PATCH', `${app.api}/policies/${before.id}`, '{}', { 'content-type': 'text/plain' })).status, 415);
  const huge = await call('PATCH', `${app.api}/policies/${before.id}`, JSON.stringify({ description: 'x'.repeat(1024 * 1024) }), MERGE_PATCH);
  t.equal(huge.status, 413, 'the body limit applies');
  t.equal((await call('PATCH', `${app.api}/policies/${randomUUID()}`, {}, MERGE_PATCH)).status, 404);
  t.equal((await call('PATCH', `${app.api}/policies/Not%20A%20Name`, {}, MERGE_PATCH)).status, 400);
  t.same((await call('GET', `${app.api}/policies/${before.id}`)).body, before, 'nothing was stored');
});

t.test('PATCH on a policy managed by a policy file answers 409, as PUT does', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  await app.storage.syncSource('policies/team.yaml', [app.policies.parse({ name: 'from-file', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 5 }, { source: 'policies/team.yaml' })]);
  const put = await call('PUT', `${app.api}/policies/from-file`, { name: 'from-file', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 6 });
  const patch = await call('PATCH', `${app.api}/policies/from-file`, { max_replicas: 6 }, MERGE_PATCH);
  t.equal(patch.status, 409);
  t.equal(put.status, 409);
  t.equal((patch.body as Problem).code, 'FILE_MANAGED');
  t.equal((patch.body as Problem).detail, (put.body as Problem).detail, 'the same answer as PUT');
  const invalid = await call('PATCH', `${app.api}/policies/from-file`, '[]', MERGE_PATCH);
  t.equal(invalid.status, 409, 'also for a patch that would not be valid');
});

t.test('PUT keeps the ids of unchanged rules and schedules; a PUT of the same policy writes nothing', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const before = await create(app, FULL);
  await sleep(5);
  const same = await call('PUT', `${app.api}/policies/${before.id}`, FULL);
  t.equal(same.status, 200, same.text);
  t.same(same.body, before, 'the same policy: ids and updated_at kept');

  const changed = await call('PUT', `${app.api}/policies/${before.id}`, { ...FULL, scale_up_rules: [FULL.scale_up_rules[1]], schedules: [{ ...FULL.schedules[0], desired_replicas: 6 }] });
  t.equal(changed.status, 200, changed.text);
  const after = changed.body as PolicyAnswer;
  t.not(after.updated_at, before.updated_at);
  t.strictSame(ids(after.scale_up_rules), [before.scale_up_rules[1]?.id], 'the remaining rule keeps its id');
  t.strictSame(ids(after.scale_down_rules), ids(before.scale_down_rules));
  t.notOk(ids(before.schedules).includes(after.schedules[0]?.id ?? ''), 'a changed schedule gets a new id');
});

t.test('PATCH of behaviour: either duration form, and defaults that follow target tracking', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const base = { name: 'tt-patch', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10, scale_up_rules: [{ metric: 'philotes_cdc_lag_seconds', operator: 'gt', threshold: 60, scale_by: 1 }] };
  const created = await create(app, base);
  const behaviorOf = (p: unknown): Json => (p as { behavior: Json }).behavior;
  t.equal(behaviorOf(created)['scale_down_stabilization_seconds'], 0, 'no target tracking: no stabilization by default');

  const tracked = await call('PATCH', `${app.api}/policies/${created.id}`, { target_tracking: [{ metric: 'sum(rate(philotes_buffer_events_processed_total[5m]))', target_per_replica: 1000 }] }, MERGE_PATCH);
  t.equal(tracked.status, 200, tracked.text);
  t.equal(behaviorOf(tracked.body)['scale_down_stabilization_seconds'], 300, 'adding target tracking brings its 5m default, as a new policy would get');

  const text = await call('PATCH', `${app.api}/policies/${created.id}`, { behavior: { scale_down_stabilization: '10m' } }, MERGE_PATCH);
  t.equal(text.status, 200, `a window as text replaces the stored one (${text.text})`);
  t.match(behaviorOf(text.body), { scale_down_stabilization: '10m', scale_down_stabilization_seconds: 600 });

  const seconds = await call('PATCH', `${app.api}/policies/${created.id}`, { behavior: { scale_down_stabilization_seconds: 120, scale_up_limit: { replicas: 2, period_seconds: 30 } } }, MERGE_PATCH);
  t.equal(seconds.status, 200, `and in seconds too (${seconds.text})`);
  t.match(behaviorOf(seconds.body), { scale_down_stabilization: '2m', scale_down_stabilization_seconds: 120, scale_up_limit: { replicas: 2, period: '30s', period_seconds: 30 } });

  const period = await call('PATCH', `${app.api}/policies/${created.id}`, { behavior: { scale_up_limit: { period: '1m' } } }, MERGE_PATCH);
  t.equal(period.status, 200, `a limit's period as text after seconds (${period.text})`);
  t.match(behaviorOf(period.body), { scale_up_limit: { replicas: 2, period: '1m', period_seconds: 60 } });

  const both = await call('PATCH', `${app.api}/policies/${created.id}`, { behavior: { scale_down_stabilization: '1m', scale_down_stabilization_seconds: 90 } }, MERGE_PATCH);
  t.equal(both.status, 422, 'both forms that disagree, in one patch: 422');
  t.ok((both.body as Problem).errors?.some((e) => e.field.startsWith('/behavior/scale_down_stabilization')), both.text);

  const untracked = await call('PATCH', `${app.api}/policies/${created.id}`, { target_tracking: null, behavior: { scale_down_stabilization: null } }, MERGE_PATCH);
  t.equal(untracked.status, 200, untracked.text);
  t.equal(behaviorOf(untracked.body)['scale_down_stabilization_seconds'], 0, 'tracking and the window removed: back to no stabilization');
});
