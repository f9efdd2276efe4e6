/**
 * Target tracking and behaviour through the REST API and policy files: stored and answered on
 * both backends' schema (SQLite here; the storage contract covers PostgreSQL), kept across a
 * replacement, and every kind of bad input a 422 at its JSON pointer, the same in files and in
 * `validate`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadConfig } from '../src/config/config.js';
import { validatePaths } from '../src/files/validate-command.js';
import { startDaemon } from '../src/main.js';
import { pino } from 'pino';
import { call, startTestApp } from './helpers/app.js';
import { testDaemonConfig } from './helpers/daemon-config.js';

const BASE = { name: 'tracked', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 20 };
const ENTRY = { metric: 'sum(rate(philotes_buffer_events_processed_total[5m]))', target_per_replica: 1000 };

interface Problem {
  status: number;
  errors?: Array<{ field: string; message: string }>;
}

t.test('stored and answered with defaults; a PUT without them clears them', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const created = await call('POST', `${app.api}/policies`, { ...BASE, target_tracking: [ENTRY, { metric: 'avg(cpu)', target_value: 0.7, tolerance: 0.05, duration: '2m' }], behavior: { scale_up_limit: { replicas: 4, percent: 100, period: '15s' } } });
  t.equal(created.status, 201, created.text);
  const body = created.body as { id: string; target_tracking: Array<Record<string, unknown>>; behavior: Record<string, unknown> };
  t.match(body.target_tracking[0], { metric: ENTRY.metric, target_per_replica: 1000, target_value: null, tolerance: 0.1, duration: '0s', duration_seconds: 0, aggregation: 'max', source: null });
  t.match(body.target_tracking[1], { target_value: 0.7, tolerance: 0.05, duration: '2m', duration_seconds: 120 });
  t.type(body.target_tracking[0]?.['id'], 'string');
  t.same(body.behavior, {
    scale_down_stabilization: '5m',
    scale_down_stabilization_seconds: 300,
    scale_up_stabilization: '0s',
    scale_up_stabilization_seconds: 0,
    scale_up_limit: { replicas: 4, percent: 100, period: '15s', period_seconds: 15, select: 'max' },
    scale_down_limit: null,
  }, 'defaults: 5m scale-down stabilization with target tracking');

  const read = await call('GET', `${app.api}/policies/${body.id}`);
  t.same((read.body as typeof body).target_tracking, body.target_tracking, 'read back as written');
  // What a GET answers is a valid PUT body.
  const { id: _id, created_at: _c, updated_at: _u, source: _s, ...asInput } = read.body as Record<string, unknown>;
  const put = await call('PUT', `${app.api}/policies/${body.id}`, asInput);
  t.equal(put.status, 200, put.text);
  const cleared = await call('PUT', `${app.api}/policies/${body.id}`, BASE);
  t.same((cleared.body as typeof body).target_tracking, [], 'a PUT without them has none');
  t.equal((cleared.body as typeof body).behavior['scale_down_stabilization_seconds'], 0, 'and without tracking the stabilization default is 0');
});

const BAD: Array<[string, Record<string, unknown>, string, RegExp]> = [
  ['a target of 0', { target_tracking: [{ metric: 'm', target_per_replica: 0 }] }, '/target_tracking/0/target_per_replica', /greater than 0/],
  ['a negative target', { target_tracking: [{ metric: 'm', target_value: -1 }] }, '/target_tracking/0/target_value', /greater than 0/],
  ['both target kinds', { target_tracking: [{ metric: 'm', target_value: 1, target_per_replica: 5 }] }, '/target_tracking/0/target_value', /not both/],
  ['neither target kind', { target_tracking: [{ metric: 'm' }] }, '/target_tracking/0', /needs a target/],
  ['tolerance 1', { target_tracking: [{ metric: 'm', target_value: 1, tolerance: 1 }] }, '/target_tracking/0/tolerance', /less than 1/],
  ['tolerance below 0', { target_tracking: [{ metric: 'm', target_value: 1, tolerance: -0.1 }] }, '/target_tracking/0/tolerance', /at least 0/],
  ['a limit with neither replicas nor percent', { behavior: { scale_up_limit: { period: '1m' } } }, '/behavior/scale_up_limit', /needs replicas, percent or both/],
  ['a period of 0', { behavior: { scale_down_limit: { percent: 10, period: '0' } } }, '/behavior/scale_down_limit/period', /from 1s to 1d/],
  ['a period of 0 seconds', { behavior: { scale_down_limit: { percent: 10, period_seconds: 0 } } }, '/behavior/scale_down_limit/period_seconds', /must be >= 1/],
  ['no period', { behavior: { scale_down_limit: { percent: 10 } } }, '/behavior/scale_down_limit/period', /is required/],
  ['a scale-down percent over 100', { behavior: { scale_down_limit: { percent: 150, period: '1m' } } }, '/behavior/scale_down_limit/percent', /at most 100/],
  ['a stabilization that is not a duration', { behavior: { scale_down_stabilization: '5 minutes' } }, '/behavior/scale_down_stabilization', /is not a duration/],
  ['an unknown key', { behavior: { scale_down_stabilisation: '5m' } }, '/behavior/scale_down_stabilisation', /not a known property/],
  ['a metric that is not PromQL', { target_tracking: [{ metric: 'sum(rate(x[5m])', target_value: 1 }] }, '/target_tracking/0/metric', /./],
];

t.test('bad input: a 422 naming the field, over the API', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  for (const [name, extra, field, message] of BAD) {
    const r = await call('POST', `${app.api}/policies`, { ...BASE, ...extra });
    t.equal(r.status, 422, `${name}: 422`);
    const errors = (r.body as Problem).errors ?? [];
    const hit = errors.find((e) => e.field === field);
    t.ok(hit, `${name}: an error at ${field} (got ${JSON.stringify(errors)})`);
    t.match(hit?.message, message, `${name}: says why`);
    // The null branch of a nullable object is no news when the object itself is wrong.
    t.notOk(errors.some((e) => e.message === 'must be null'), `${name}: no "must be null" beside the real problem`);
  }
  const listed = await call('GET', `${app.api}/policies`);
  t.equal((listed.body as { total_count: number }).total_count, 0, 'nothing was stored');
});

t.test('bad input: the same in a policy file, through validate', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'philotes-tracking-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = loadConfig({ env: {}, cwd: dir });
  for (const [i, [name, extra, field]] of BAD.entries()) {
    const file = join(dir, `bad-${i}.yaml`);
    writeFileSync(file, JSON.stringify({ ...BASE, name: `bad-${i}`, ...extra }, null, 2));
    const r = await validatePaths([file], config);
    t.ok(
      r.problems.some((p) => p.field === field),
      `${name}: ${field} in ${JSON.stringify(r.problems.map((p) => p.field))}`,
    );
  }
});

t.test('OpenAPI documents every field of a decision record with target tracking', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'philotes-tracking-openapi-'));
  const d = await startDaemon(testDaemonConfig(dir), pino({ level: 'silent' }));
  t.teardown(async () => {
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const api = `http://127.0.0.1:${d.port}/api/v1/scaling`;
  const created = await call('POST', `${api}/policies`, { ...BASE, name: 'documented', target_tracking: [ENTRY] });
  t.equal(created.status, 201, created.text);
  const id = (created.body as { id: string }).id;
  const evaluated = await call('POST', `${api}/policies/${id}/evaluate`, {});
  t.equal(evaluated.status, 200, evaluated.text);
  const record = evaluated.body as Record<string, unknown> & { target_tracking: Array<Record<string, unknown>> };
  const doc = (await (await fetch(`http://127.0.0.1:${d.port}/api/v1/openapi.json`)).json()) as { components: { schemas: Record<string, { properties: Record<string, unknown> }> } };
  const documented = Object.keys(doc.components.schemas['DecisionRecord']?.properties ?? {});
  t.same(Object.keys(record).filter((k) => !documented.includes(k)), [], 'every key of the record is in DecisionRecord');
  t.equal(record.target_tracking.length, 1);
  const entry = Object.keys(doc.components.schemas['TrackingVerdict']?.properties ?? {});
  t.same(Object.keys(record.target_tracking[0] ?? {}).filter((k) => !entry.includes(k)), [], 'every key of an entry is in TrackingVerdict');
});
