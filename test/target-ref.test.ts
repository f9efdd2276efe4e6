/**
 * A policy's target_ref through the REST API and policy files: stored and answered with its
 * defaults, changed by PATCH, and every kind of bad input a 422 at its JSON pointer with words
 * (not a regular expression), the same in files through `validate`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadConfig } from '../src/config/config.js';
import { validatePaths } from '../src/files/validate-command.js';
import { call, startTestApp } from './helpers/app.js';

const BASE = { name: 'referenced', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10 };

interface Problem {
  errors?: Array<{ field: string; message: string }>;
}

t.test('stored and answered; PATCH changes it; null removes it', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const created = await call('POST', `${app.api}/policies`, { ...BASE, target_ref: { kind: 'ScaledObject', name: 'orders-consumer', namespace: 'cdc' } });
  t.equal(created.status, 201, created.text);
  const body = created.body as { id: string; target_ref: unknown };
  t.same(body.target_ref, { kind: 'ScaledObject', name: 'orders-consumer', namespace: 'cdc', api_version: null });
  const read = await call('GET', `${app.api}/policies/${body.id}`);
  t.same((read.body as { target_ref: unknown }).target_ref, body.target_ref);
  const patched = await call('PATCH', `${app.api}/policies/${body.id}`, { target_ref: { kind: 'Deployment', api_version: 'apps/v1' } }, { 'content-type': 'application/merge-patch+json' });
  t.equal(patched.status, 200, patched.text);
  t.same((patched.body as { target_ref: unknown }).target_ref, { kind: 'Deployment', name: 'orders-consumer', namespace: 'cdc', api_version: 'apps/v1' }, 'merged member by member');
  const removed = await call('PATCH', `${app.api}/policies/${body.id}`, { target_ref: null }, { 'content-type': 'application/merge-patch+json' });
  t.equal((removed.body as { target_ref: unknown }).target_ref, null);
  const plain = await call('POST', `${app.api}/policies`, { ...BASE, name: 'plain' });
  t.equal((plain.body as { target_ref: unknown }).target_ref, null, 'default: null');
});

const BAD: Array<[string, unknown, string, RegExp]> = [
  ['no name', { kind: 'Deployment' }, '/target_ref/name', /is required/],
  ['no kind', { name: 'worker' }, '/target_ref/kind', /is required/],
  ['a kind in lower case', { kind: 'deployment', name: 'worker' }, '/target_ref/kind', /"deployment" is not a kind: a name such as Deployment/],
  ['a name with capitals', { kind: 'Deployment', name: 'Worker_1' }, '/target_ref/name', /"Worker_1" is not an object name: lower-case letters, digits, '-' and '\.'/],
  ['a namespace with dots', { kind: 'Deployment', name: 'worker', namespace: 'cdc.prod' }, '/target_ref/namespace', /"cdc\.prod" is not a namespace/],
  ['a bad api_version', { kind: 'Deployment', name: 'worker', api_version: 'apps' }, '/target_ref/api_version', /"apps" is not an apiVersion: group\/version such as apps\/v1/],
  ['an unknown key', { kind: 'Deployment', name: 'worker', apiVersion: 'apps/v1' }, '/target_ref/apiVersion', /is not a known property \(did you mean api_version\?\)/],
  ['not an object', 'deployment/worker', '/target_ref', /must be object/],
];

t.test('bad input: a 422 at the field, in words, over the API', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  for (const [name, ref, field, message] of BAD) {
    const r = await call('POST', `${app.api}/policies`, { ...BASE, target_ref: ref });
    t.equal(r.status, 422, `${name}: 422`);
    const errors = (r.body as Problem).errors ?? [];
    t.match(errors.find((e) => e.field === field)?.message, message, `${name}: ${JSON.stringify(errors)}`);
    t.notOk(errors.some((e) => e.message === 'must be null' || /must match pattern/.test(e.message)), `${name}: no schema jargon`);
  }
  t.equal(((await call('GET', `${app.api}/policies`)).body as { total_count: number }).total_count, 0, 'nothing stored');
});

t.test('bad input: the same in a policy file, through validate', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'philotes-target-ref-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = loadConfig({ env: {}, cwd: dir });
  for (const [i, [name, ref, field, message]] of BAD.entries()) {
    const file = join(dir, `bad-${i}.yaml`);
    writeFileSync(file, JSON.stringify({ ...BASE, name: `bad-${i}`, target_ref: ref }, null, 2));
    const r = await validatePaths([file], config);
    t.match(r.problems.find((p) => p.field === field)?.message, message, `${name}: ${JSON.stringify(r.problems.map((p) => [p.field, p.message]))}`);
  }
});
