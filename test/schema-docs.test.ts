import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import t from 'tap';
import { ConfigError, loadConfig } from '../src/config/config.js';
import { validationError } from '../src/errors.js';
import { parsePolicyText } from '../src/files/policy-file.js';
import { validatePaths } from '../src/files/validate-command.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { durationProblem, validatePolicyInput } from '../src/policy/policy-validation.js';
import { createValidationContext } from '../src/policy/validation-context.js';
import { runPolicyTestText } from '../src/policy-tests/policy-test-runner.js';
import { createAjv, loadSchema } from '../src/schemas.js';
import { parseDuration } from '../src/util/duration.js';
import { startTestApp } from './helpers/app.js';

/**
 * The JSON Schemas are what editors show on hover and what refuses bad input first, so every
 * field carries a description, and every duration field the one pattern that mirrors
 * parseDuration; a duration the pattern refuses still gets one readable message at its pointer.
 */

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

const SCHEMA_FILES = ['policy.schema.json', 'config.schema.json', 'policy-test.schema.json'] as const;
const schemas = Object.fromEntries(SCHEMA_FILES.map((f) => [f, loadSchema(f)])) as Record<(typeof SCHEMA_FILES)[number], Json>;

/** Every schema node below `node` that describes a field: entries of `properties` and of `$defs`. */
function fieldSchemas(node: unknown, at: string, out: Array<[string, unknown]>): Array<[string, unknown]> {
  if (Array.isArray(node)) {
    node.forEach((x, i) => fieldSchemas(x, `${at}/${i}`, out));
  } else if (isObj(node)) {
    for (const [k, v] of Object.entries(node)) {
      if ((k === 'properties' || k === '$defs') && isObj(v)) {
        for (const [name, sub] of Object.entries(v)) {
          out.push([`${at}/${k}/${name}`, sub]);
          fieldSchemas(sub, `${at}/${k}/${name}`, out);
        }
      } else if (k !== 'examples' && k !== 'default' && k !== 'enum' && k !== 'const') {
        fieldSchemas(v, `${at}/${k}`, out);
      }
    }
  }
  return out;
}

t.test('every property and every $defs entry of the three schemas has a description', async (t) => {
  for (const file of SCHEMA_FILES) {
    const schema = schemas[file];
    t.match(schema['description'], /\S/, `${file}: the schema itself is described`);
    const fields = fieldSchemas(schema, '#', []);
    t.ok(fields.length > 10, `${file}: ${fields.length} fields found`);
    const missing = fields.filter(([, s]) => !isObj(s) || typeof s['description'] !== 'string' || s['description'].trim() === '').map(([at]) => at);
    t.same(missing, [], `${file}: no field without a description`);
  }
});

t.test('the schemas compile in strict mode, and every example is valid where it is given', async (t) => {
  const ajv = createAjv();
  for (const file of SCHEMA_FILES) ajv.addSchema(schemas[file]);
  for (const file of SCHEMA_FILES) {
    const id = schemas[file]['$id'] as string;
    t.doesNotThrow(() => ajv.getSchema(id), `${file} compiles`);
    for (const [at, sub] of fieldSchemas(schemas[file], '#', [])) {
      if (!isObj(sub) || !Array.isArray(sub['examples'])) continue;
      const validate = ajv.getSchema(`${id}${at}`);
      if (validate === undefined) {
        t.fail(`${file} ${at}: cannot be compiled on its own`);
        continue;
      }
      for (const example of sub['examples']) t.ok(validate(example), `${file} ${at}: example ${JSON.stringify(example)} is valid`);
    }
  }
});

const DURATION_FIELDS: Record<(typeof SCHEMA_FILES)[number], string[]> = {
  'policy.schema.json': ['$defs/rule/properties/duration', '$defs/schedule/properties/duration'],
  'config.schema.json': [
    'properties/evaluation_interval',
    'properties/plugin_timeout',
    'properties/history_retention',
    'properties/history_prune_interval',
    'properties/request_headers_timeout',
    'properties/request_body_timeout',
  ],
  'policy-test.schema.json': ['properties/evaluation_interval'],
};

function at(schema: Json, path: string): unknown {
  let v: unknown = schema;
  for (const k of path.split('/')) v = isObj(v) ? v[k] : undefined;
  return v;
}

t.test('every duration field refers to $defs/duration, and the three schemas define it alike', async (t) => {
  const policyDef = at(schemas['policy.schema.json'], '$defs/duration');
  for (const file of SCHEMA_FILES) {
    t.same(at(schemas[file], '$defs/duration'), policyDef, `${file}: the same $defs/duration as the policy schema`);
    for (const path of DURATION_FIELDS[file]) t.equal(at(schemas[file], `${path}/$ref`), '#/$defs/duration', `${file} ${path}`);
  }
  // Every string field whose default parses as a duration is a duration field, so none is missed.
  for (const file of SCHEMA_FILES) {
    for (const [path, sub] of fieldSchemas(schemas[file], '#', [])) {
      if (!isObj(sub) || typeof sub['default'] !== 'string' || parseDuration(sub['default']) === undefined) continue;
      t.equal(sub['$ref'], '#/$defs/duration', `${file} ${path} (default ${sub['default']}) is a duration field`);
    }
  }
});

t.test('the duration pattern accepts exactly what parseDuration accepts', async (t) => {
  const def = at(schemas['policy.schema.json'], '$defs/duration') as Json;
  const schemaAccepts = createAjv().compile(def);
  const cases: Array<[string, boolean]> = [
    ['0', true],
    ['0s', true],
    ['00s', true],
    ['007s', true],
    ['90s', true],
    ['5m', true],
    ['10m', true],
    ['2h', true],
    ['36h', true],
    ['1d', true],
    ['1h30m', true],
    ['1m30s', true],
    ['1d4s', true],
    ['1h5s', true],
    ['1d2h3m4s', true],
    ['1000000d', true],
    ['', false],
    ['5', false],
    ['00', false],
    ['5x', false],
    ['m5', false],
    ['1.5h', false],
    ['-5m', false],
    ['+5m', false],
    ['5m1h', false],
    ['1s1m', false],
    ['1d1d', false],
    ['5m5m', false],
    [' 5m', false],
    ['5m ', false],
    ['5 m', false],
    ['1h 30m', false],
    ['5 minutes', false],
    ['five minutes', false],
    ['1h30', false],
    ['5M', false],
    ['5S', false],
    ['1w', false],
    ['5ms', false],
    ['5mins', false],
    ['PT5M', false],
    ['1e3s', false],
    ['0x10s', false],
    ['d', false],
    ['s', false],
    ['\uff15m', false], // a full-width digit 5
    ['\u0663s', false], // an Arabic-Indic digit 3
    ['5m\n', false],
    [`${'1'.repeat(32)}s`, false], // 33 characters
  ];
  for (const [text, ok] of cases) {
    t.equal(parseDuration(text) !== undefined, ok, `parseDuration ${ok ? 'accepts' : 'refuses'} ${JSON.stringify(text)}`);
    t.equal(schemaAccepts(text), ok, `the schema ${ok ? 'accepts' : 'refuses'} ${JSON.stringify(text)}`);
  }

  // Random strings over the characters of durations and of near misses agree too. At most 12
  // characters, no total exceeds 2^53 seconds, the one limit a pattern cannot express.
  const chars = [...'0123456789dhms .-+xDHMS'];
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom(...chars), maxLength: 12 }), (text) => schemaAccepts(text) === (parseDuration(text) !== undefined)),
    { numRuns: 5000 },
  );

  // The one difference: 32 characters of digits and a unit pass the pattern, but their total
  // is not a safe integer and parseDuration refuses them; validation reports it (see below).
  const huge = `${'9'.repeat(31)}s`;
  t.equal(huge.length, 32);
  t.ok(schemaAccepts(huge), 'the pattern cannot bound the total');
  t.equal(parseDuration(huge), undefined, 'parseDuration refuses a total beyond 2^53 seconds');
});

const CONFIG = { executors: { 'cdc-worker': 'keda', trino: 'keda', risingwave: 'keda', nodes: 'logger' }, prices: {}, default_metric_source: 'prometheus' };
const ctx = createValidationContext(CONFIG);
const base = (extra: Json = {}): Json => ({ name: 'p', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10, ...extra });
const up = (extra: Json = {}): Json => ({ metric: 'm', operator: 'gt', threshold: 60, scale_by: 2, ...extra });
const sched = (extra: Json = {}): Json => ({ cron_expression: '0 8 * * 1-5', desired_replicas: 5, ...extra });

t.test('a duration that is not one: one readable error at its pointer, not the pattern', async (t) => {
  t.equal(
    durationProblem('5 minutes'),
    '"5 minutes" is not a duration: use whole numbers with the units d, h, m and s, in that order and without spaces, such as "90s", "5m", "1h30m" or "1d"',
  );
  const huge = `${'9'.repeat(31)}s`;
  const long = `${'5 minutes '.repeat(10)}`;
  const cases: Array<[string, Json, string, string]> = [
    ['rule, "5 minutes"', base({ scale_up_rules: [up({ duration: '5 minutes' })] }), '/scale_up_rules/0/duration', '5 minutes'],
    ['schedule, "nine hours"', base({ schedules: [sched({ duration: 'nine hours' })] }), '/schedules/0/duration', 'nine hours'],
    ['second rule, units out of order', base({ scale_up_rules: [up(), up({ duration: '30m1h' })] }), '/scale_up_rules/1/duration', '30m1h'],
    ['empty (minLength and pattern)', base({ scale_up_rules: [up({ duration: '' })] }), '/scale_up_rules/0/duration', ''],
    ['over 32 characters (maxLength and pattern)', base({ scale_up_rules: [up({ duration: long })] }), '/scale_up_rules/0/duration', long],
    ['beyond 2^53 seconds (pattern passes, the parser refuses)', base({ scale_up_rules: [up({ duration: huge })] }), '/scale_up_rules/0/duration', huge],
  ];
  for (const [description, input, field, text] of cases) {
    const result = validatePolicyInput(input, ctx);
    t.same(result, { ok: false, errors: [{ field, message: durationProblem(text) }] }, description);
    if (!result.ok) t.notMatch(result.errors[0]?.message, /pattern|characters/, `${description}: in words`);
  }
  t.match(durationProblem(long), /^"(5 minutes ){4}\.\.\." is not a duration/, 'a long value is cut short in the message');
  // Other problems in the same policy are still reported alongside.
  const mixed = validatePolicyInput(base({ min_replicas: 'one', scale_down_rules: [up({ scale_by: -1, operator: 'lt', duration: '10 m' })] }), ctx);
  t.equal(mixed.ok, false);
  if (!mixed.ok) {
    t.same(mixed.errors.map((e) => e.field).sort(), ['/min_replicas', '/scale_down_rules/0/duration']);
    t.same(mixed.errors.find((e) => e.field === '/scale_down_rules/0/duration'), { field: '/scale_down_rules/0/duration', message: durationProblem('10 m') });
  }
});

t.test('over the API: 422 with the error at the JSON pointer', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const res = await fetch(`${app.api}/policies`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(base({ name: 'durations', scale_up_rules: [up({ duration: '5 minutes' })] })),
  });
  t.equal(res.status, 422);
  t.match(res.headers.get('content-type'), /^application\/problem\+json/);
  const problem = (await res.json()) as Json;
  t.match(problem, { code: 'VALIDATION_FAILED', status: 422 });
  t.same(problem['errors'], [{ field: '/scale_up_rules/0/duration', message: durationProblem('5 minutes') }]);
  t.equal(problem['detail'], `The policy has 1 problem: /scale_up_rules/0/duration ${durationProblem('5 minutes')}`);
});

const POLICY_FILE = [
  'name: durations',
  'target_type: cdc-worker',
  'min_replicas: 1',
  'max_replicas: 5',
  'scale_up_rules:',
  '  - metric: up',
  '    operator: gt',
  '    threshold: 1',
  '    duration: 5 minutes',
  '    scale_by: 1',
  '',
].join('\n');

t.test('in a policy file and in validate: the same message, with line and column', async (t) => {
  const parsed = parsePolicyText('durations.yaml', POLICY_FILE, (input, source) => {
    const r = validatePolicyInput(input, ctx);
    if (!r.ok) throw validationError(r.errors);
    return normalizePolicy(r.value, { source, now: new Date(0) });
  });
  t.same(parsed.policies, []);
  t.same(parsed.problems, [
    { file: 'durations.yaml', line: 9, column: 15, document: 0, field: '/scale_up_rules/0/duration', message: durationProblem('5 minutes') },
  ]);

  const dir = mkdtempSync(join(tmpdir(), 'ps-schema-docs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'durations.yaml');
  writeFileSync(file, POLICY_FILE);
  const r = await validatePaths([file], loadConfig({ env: {}, cwd: dir }));
  t.same(
    r.problems.map((p) => [p.line, p.column, p.field, p.message]),
    [[9, 15, '/scale_up_rules/0/duration', durationProblem('5 minutes')]],
  );
});

t.test('the config and policy-test schemas refuse a bad duration at its key', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ps-schema-docs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const refused = (env: Record<string, string>): ConfigError | undefined => {
    try {
      loadConfig({ env, cwd: dir });
      return undefined;
    } catch (err) {
      if (err instanceof ConfigError) return err;
      throw err;
    }
  };
  t.same(refused({ PHILOTES_SCALING_EVALUATION_INTERVAL: '5 minutes' })?.errors.map((e) => e.field), ['/evaluation_interval']);
  t.same(refused({ PHILOTES_SCALING_HISTORY_RETENTION: '30 days' })?.errors.map((e) => e.field), ['/history_retention']);
  t.equal(refused({ PHILOTES_SCALING_HISTORY_RETENTION: '0' }), undefined, '"0" keeps history forever');
  t.match(refused({ PHILOTES_SCALING_EVALUATION_INTERVAL: '0' })?.errors, [{ field: '/evaluation_interval', message: /at least 1s/ }], '"0" is a duration, but too short');

  const config = loadConfig({ env: {}, cwd: dir });
  writeFileSync(join(dir, 'durations.yaml'), POLICY_FILE.replace('5 minutes', '5m'));
  const testFile = join(dir, 'durations.test.yaml');
  const text = 'policy_files: [durations.yaml]\nevaluation_interval: 30 seconds\ntests:\n  - name: t\n    expect:\n      - at: 0\n        replicas: 1\n';
  const result = await runPolicyTestText(testFile, text, config);
  t.same(result.problems.map((p) => [p.line, p.field]), [[2, '/evaluation_interval']]);
});
