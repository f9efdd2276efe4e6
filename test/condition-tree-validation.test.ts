import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { stringify as toYaml } from 'yaml';
import { loadConfig } from '../src/config/config.js';
import { validatePaths } from '../src/files/validate-command.js';
import { validatePolicyInput } from '../src/policy/policy-validation.js';
import { createValidationContext } from '../src/policy/validation-context.js';
import { call, startTestApp } from './helpers/app.js';

// Composite conditions as they arrive: every problem of a condition tree is a 422 at its JSON
// pointer, the same through the REST API, policy files and `validate`; a valid tree is stored and
// answered as sent, on both merge-patch paths.

type Obj = Record<string, unknown>;
type Problem = { errors?: Array<{ field: string; message: string }> };
const ctx = createValidationContext({ executors: { 'cdc-worker': 'keda', trino: 'keda', risingwave: 'keda', nodes: 'logger' }, prices: {}, default_metric_source: 'prometheus' });

const rule = (name: string | undefined, scale_by: number): Obj => ({ ...(name !== undefined ? { name } : {}), metric: `m_${name ?? 'x'}`, operator: 'gt', threshold: 1, scale_by });
const policy = (extra: Obj = {}): Obj => ({
  name: 'tree',
  target_type: 'cdc-worker',
  min_replicas: 1,
  max_replicas: 10,
  cooldown_seconds: 60,
  scale_up_rules: [rule('lag_high', 2), rule('buffer_deep', 1), rule('errors_climbing', 1)],
  scale_down_rules: [rule('idle', -1)],
  scale_up_when: { any: [{ all: ['lag_high', 'buffer_deep'] }, 'errors_climbing'] },
  scale_down_when: 'idle',
  ...extra,
});

/** `depth` levels of not around a name. */
function nots(depth: number, name = 'lag_high'): unknown {
  let n: unknown = name;
  for (let i = 0; i < depth; i++) n = { not: n };
  return n;
}

const CASES: Array<[string, Obj, string, RegExp]> = [
  ['an unknown name', { scale_up_when: { any: [{ all: ['lag_high', 'buffer_deep'] }, 'errors_climbing', 'nope'] } }, '/scale_up_when/any/2', /"nope" is not the name of a scale-up rule; names: lag_high, buffer_deep, errors_climbing/],
  ['a name of the other direction', { scale_up_when: { any: [{ all: ['lag_high', 'buffer_deep'] }, 'errors_climbing', 'idle'] } }, '/scale_up_when/any/2', /names a scale-down rule/],
  ['an unused name', { scale_up_when: { all: ['lag_high', 'buffer_deep'] } }, '/scale_up_rules/2/name', /"errors_climbing" is not used by scale_up_when/],
  ['a rule without a name in a direction with a tree', { scale_down_rules: [rule('idle', -1), rule(undefined, -2)] }, '/scale_down_rules/1/name', /is required when scale_down_when is given/],
  ['a duplicate name, across directions', { scale_down_rules: [rule('lag_high', -1)], scale_down_when: 'lag_high' }, '/scale_down_rules/0/name', /already the name of \/scale_up_rules\/0/],
  ['a duplicate name, within a direction', { scale_up_rules: [rule('lag_high', 2), rule('lag_high', 1), rule('buffer_deep', 1), rule('errors_climbing', 1)] }, '/scale_up_rules/1/name', /already the name/],
  ['depth over 5', { scale_up_when: { all: [nots(6), 'buffer_deep', 'errors_climbing'] } }, '/scale_up_when/all/0/not/not/not/not', /level 6 of all\/any\/not; a tree has at most 5/],
  ['a tree with a match', { scale_up_match: 'any' }, '/scale_up_match', /cannot be given with scale_up_when/],
  ['an empty all', { scale_down_when: { all: [] }, scale_down_rules: [] }, '/scale_down_when/all', /must be a list of 1 to 50 nodes, got 0/],
  ['two keys in one node', { scale_down_when: { all: ['idle'], any: ['idle'] } }, '/scale_down_when', /must have exactly one key/],
  ['an unknown key', { scale_down_when: { xor: ['idle'] } }, '/scale_down_when', /must have exactly one key, all, any or not; it has "xor"/],
  ['a number as a node', { scale_down_when: { any: ['idle', 7] } }, '/scale_down_when/any/1', /must be a rule name, or an object/],
  ['a name that breaks the pattern', { scale_down_when: { any: ['idle', 'Idle-2'] } }, '/scale_down_when/any/1', /is not a rule name/],
  ['a rule name that breaks the pattern', { scale_down_rules: [rule('Idle', -1)], scale_down_when: null }, '/scale_down_rules/0/name', /must match pattern/],
];

t.test('each problem is a 422 at its pointer: validation, the REST API and policy files agree', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const dir = mkdtempSync(join(tmpdir(), 'philotes-trees-'));
  const config = loadConfig({ env: {}, cwd: tmpdir() });
  for (const [what, extra, field, message] of CASES) {
    const body = policy(extra);
    const v = validatePolicyInput(body, ctx);
    t.notOk(v.ok, `${what}: refused`);
    const errors = v.ok ? [] : v.errors;
    const hit = errors.find((e) => e.field === field);
    t.ok(hit, `${what}: an error at ${field} (got ${JSON.stringify(errors)})`);
    if (hit !== undefined) t.match(hit.message, message, `${what}: the message`);

    const res = await call('POST', `${app.api}/policies`, body);
    t.equal(res.status, 422, `${what}: POST answers 422`);
    t.ok((res.body as Problem).errors?.some((e) => e.field === field), `${what}: POST names ${field}`);

    const file = join(dir, `${what.replace(/[^a-z0-9]+/gi, '-')}.yaml`);
    writeFileSync(file, toYaml(body));
    const r = await validatePaths([file], config);
    t.ok(r.problems.some((p) => p.field === field && message.test(p.message)), `${what}: validate reports ${field}`);
  }
  const list = await call('GET', `${app.api}/policies`);
  t.equal((list.body as { total_count: number }).total_count, 0, 'nothing was stored');
});

t.test('a hostile nesting is refused as a client error, not followed to its end', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const deep = '{"not":'.repeat(50_000) + '"lag_high"' + '}'.repeat(50_000);
  const text = JSON.stringify(policy()).replace('"scale_down_when":"idle"', `"scale_down_when":${deep}`);
  const res = await call('POST', `${app.api}/policies`, text);
  t.ok(res.status === 422 || res.status === 413 || res.status === 400, `a 4xx (${res.status})`);
  const wide = { any: Array.from({ length: 50 }, () => ({ any: Array.from({ length: 50 }, () => 'idle') })) };
  const v = validatePolicyInput(policy({ scale_down_when: wide }), ctx);
  t.notOk(v.ok);
  t.ok(!v.ok && v.errors.some((e) => e.field === '/scale_down_when' && /more than 200 nodes/.test(e.message)), 'at most 200 nodes');
});

t.test('a valid tree is stored and answered as sent; depth 5 is accepted', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const body = policy({ scale_down_when: { all: [nots(4, 'idle')] } });
  const created = await call('POST', `${app.api}/policies`, body);
  t.equal(created.status, 201, created.text);
  const answer = created.body as Obj & { scale_up_rules: Obj[]; id: string };
  t.same(answer['scale_up_when'], body['scale_up_when']);
  t.same(answer['scale_down_when'], body['scale_down_when']);
  t.equal(answer['scale_up_match'], null, 'no match beside a tree');
  t.same(answer.scale_up_rules.map((r) => r['name']), ['lag_high', 'buffer_deep', 'errors_climbing']);
  const again = await call('GET', `${app.api}/policies/${answer.id}`);
  t.same(again.body, answer, 'read back the same');
  const put = await call('PUT', `${app.api}/policies/${answer.id}`, answer);
  t.equal(put.status, 200, `the answer is a valid PUT body: ${put.text}`);
  t.equal((put.body as Obj)['updated_at'], answer['updated_at'], 'and changes nothing');
  const flat = await call('POST', `${app.api}/policies`, { ...policy({ name: 'flat', scale_up_when: undefined, scale_down_when: undefined }) });
  t.equal(flat.status, 201, flat.text);
  t.equal((flat.body as Obj)['scale_up_when'], null);
  t.equal((flat.body as Obj)['scale_up_match'], 'all');
});

t.test('PATCH: a tree replaces the match, a match replaces the tree', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const flat = await call('POST', `${app.api}/policies`, policy({ scale_up_when: undefined, scale_up_match: 'any' }));
  t.equal(flat.status, 201, flat.text);
  const patch = { 'content-type': 'application/merge-patch+json' };
  const withTree = await call('PATCH', `${app.api}/policies/tree`, { scale_up_when: { any: ['lag_high', 'buffer_deep', 'errors_climbing'] } }, patch);
  t.equal(withTree.status, 200, withTree.text);
  t.equal((withTree.body as Obj)['scale_up_match'], null);
  t.same((withTree.body as Obj)['scale_up_when'], { any: ['lag_high', 'buffer_deep', 'errors_climbing'] });
  const back = await call('PATCH', `${app.api}/policies/tree`, { scale_up_match: 'all' }, patch);
  t.equal(back.status, 200, back.text);
  t.equal((back.body as Obj)['scale_up_match'], 'all');
  t.equal((back.body as Obj)['scale_up_when'], null);
  const both = await call('PATCH', `${app.api}/policies/tree`, { scale_up_match: 'any', scale_up_when: 'lag_high' }, patch);
  t.equal(both.status, 422);
  t.ok((both.body as Problem).errors?.some((e) => e.field === '/scale_up_match'));
});

t.test('the OpenAPI document describes trees, rule names and the directions of a decision', async (t) => {
  const { buildOpenApi } = await import('../src/api/openapi.js');
  const doc = buildOpenApi('test') as { components: { schemas: Record<string, { properties?: Record<string, unknown>; anyOf?: unknown[] }> } };
  const s = doc.components.schemas;
  t.ok(s['Policy']?.properties?.['scale_up_when'], 'Policy.scale_up_when');
  t.ok(s['Policy']?.properties?.['scale_down_when'], 'Policy.scale_down_when');
  t.equal(JSON.stringify(s).includes('#/$defs/'), false, 'every reference resolved into components');
  t.ok(Object.values(s).some((x) => x.anyOf !== undefined && JSON.stringify(x).includes('"not"')), 'the condition node');
  t.ok(s['DirectionVerdict']?.properties?.['when'] && s['DirectionVerdict']?.properties?.['decided_by'], 'DirectionVerdict.when and decided_by');
  t.ok(s['ConditionVerdict'], 'ConditionVerdict');
  t.ok(s['RuleVerdict']?.properties?.['name'], 'RuleVerdict.name');
});
