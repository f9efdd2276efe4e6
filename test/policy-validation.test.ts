import { readFile } from 'node:fs/promises';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { generatePolicyTypes } from '../scripts/gen-types.mjs';
import {
  costWithinCap,
  cronProblem,
  isValidTimeZone,
  semanticProblems,
  validatePolicyInput,
  type ValidationContext,
} from '../src/policy/policy-validation.js';
import { createValidationContext } from '../src/policy/validation-context.js';

const CONFIG = {
  executors: { 'cdc-worker': 'keda', trino: 'keda', risingwave: 'keda', nodes: 'logger' },
  prices: { trino: 0.45 } as Record<string, number>,
  default_metric_source: 'prometheus',
};
const ctx: ValidationContext = createValidationContext(CONFIG);

type Obj = Record<string, unknown>;
const base = (extra: Obj = {}): Obj => ({ name: 'p', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10, ...extra });
const up = (extra: Obj = {}): Obj => ({ metric: 'm', operator: 'gt', threshold: 60, scale_by: 2, ...extra });
const down = (extra: Obj = {}): Obj => ({ metric: 'm', operator: 'lt', threshold: 10, scale_by: -1, ...extra });
const sched = (extra: Obj = {}): Obj => ({ cron_expression: '0 8 * * 1-5', desired_replicas: 5, ...extra });

const SEED_YAML = `
name: cdc-worker-autoscaling
target_type: cdc-worker
target_id: 550e8400-e29b-41d4-a716-446655440000
min_replicas: 1
max_replicas: 10
cooldown_seconds: 300
max_hourly_cost: 4.50
cost_per_replica_hour: 0.45
scale_to_zero: false
enabled: true
dry_run: false
on_metric_error: hold
fallback: { after_failures: 3, replicas: 4 }
scale_up_rules:
  - metric: max(philotes_cdc_lag_seconds{source="orders"})
    source: prometheus
    operator: gt
    threshold: 60
    duration: 5m
    scale_by: 2
scale_down_rules:
  - metric: max(philotes_cdc_lag_seconds{source="orders"})
    operator: lt
    threshold: 10
    duration: 10m
    scale_by: -1
schedules:
  - cron_expression: "0 8 * * 1-5"
    timezone: Europe/Budapest
    desired_replicas: 5
    duration: 9h
    mode: exact
`;

t.test('the full example policy (every field) is valid as YAML', async (t) => {
  const input: unknown = parseYaml(SEED_YAML);
  const result = validatePolicyInput(input, ctx);
  t.same(result, { ok: true, value: input });
  t.same(semanticProblems(input, ctx), []);
});

t.test('semantic rules: each problem names its field', async (t) => {
  // [description, input, field, message pattern]
  const cases: Array<[string, Obj, string, RegExp]> = [
    ['min > max', base({ min_replicas: 11 }), '/min_replicas', /must not exceed max_replicas \(11 > 10\)/],
    ['max 0', base({ min_replicas: 0, max_replicas: 0 }), '/max_replicas', /at least 1/],
    ['name shaped like a UUID', base({ name: '550e8400-e29b-41d4-a716-446655440000' }), '/name', /must not be a UUID/],
    ['unknown target type', base({ target_type: 'spaceship' }), '/target_type', /unknown target type "spaceship"; known: cdc-worker, trino, risingwave, nodes/],
    ['unknown executor', base({ executor: 'kubectl' }), '/executor', /unknown executor "kubectl"; known: keda, logger/],
    ['target_id URN', base({ target_id: 'urn:uuid:550e8400-e29b-41d4-a716-446655440000' }), '/target_id', /must be a UUID/],
    ['invalid cron', base({ schedules: [sched({ cron_expression: '61 8 * * *' })] }), '/schedules/0/cron_expression', /not a valid cron expression/],
    ['6-field cron', base({ schedules: [sched({ cron_expression: '0 0 8 * * *' })] }), '/schedules/0/cron_expression', /must have 5 fields .* found 6/],
    ['cron that never fires', base({ schedules: [sched({ cron_expression: '0 8 30 2 *' })] }), '/schedules/0/cron_expression', /never fires/],
    ['invalid time zone', base({ schedules: [sched({ timezone: 'Mars/Olympus' })] }), '/schedules/0/timezone', /not an IANA time zone/],
    ['desired above max', base({ schedules: [sched({ desired_replicas: 11 })] }), '/schedules/0/desired_replicas', /\[1, 10\]/],
    ['desired below min', base({ min_replicas: 3, schedules: [sched({ desired_replicas: 2 })] }), '/schedules/0/desired_replicas', /\[3, 10\]/],
    ['desired 0 without scale_to_zero', base({ schedules: [sched({ desired_replicas: 0 })] }), '/schedules/0/desired_replicas', /needs scale_to_zero/],
    ['up rule scale_by < 0', base({ scale_up_rules: [up({ scale_by: -1 })] }), '/scale_up_rules/0/scale_by', /greater than 0/],
    ['up rule scale_by 0', base({ scale_up_rules: [up({ scale_by: 0 })] }), '/scale_up_rules/0/scale_by', /greater than 0/],
    ['down rule scale_by > 0', base({ scale_down_rules: [down({ scale_by: 1 })] }), '/scale_down_rules/0/scale_by', /less than 0/],
    ['down rule scale_by 0', base({ scale_down_rules: [down({ scale_by: 0 })] }), '/scale_down_rules/0/scale_by', /less than 0/],
    ['negative threshold', base({ scale_up_rules: [up({ threshold: -0.5 })] }), '/scale_up_rules/0/threshold', /must not be negative/],
    ['second rule is the bad one', base({ scale_up_rules: [up(), up({ threshold: -1 })] }), '/scale_up_rules/1/threshold', /must not be negative/],
    ['duration 5x', base({ scale_up_rules: [up({ duration: '5x' })] }), '/scale_up_rules/0/duration', /"5x" is not a duration/],
    ['rule duration over 7 days', base({ scale_up_rules: [up({ duration: '8d' })] }), '/scale_up_rules/0/duration', /more than the maximum of 604800 \(7d\)/],
    ['schedule duration over 365 days', base({ schedules: [sched({ duration: '366d' })] }), '/schedules/0/duration', /more than the maximum of 31536000/],
    ['duration and seconds disagree', base({ scale_up_rules: [up({ duration: '5m', duration_seconds: 60 })] }), '/scale_up_rules/0/duration_seconds', /is 60 but duration "5m" is 300 seconds/],
    ['schedule durations disagree', base({ schedules: [sched({ duration: '9h', duration_seconds: 3600 })] }), '/schedules/0/duration_seconds', /is 3600/],
    ['unknown metric source', base({ scale_down_rules: [down({ source: 'datadog' })] }), '/scale_down_rules/0/source', /unknown metric source "datadog"; known: prometheus/],
    ['blank metric', base({ scale_up_rules: [up({ metric: ' \t' })] }), '/scale_up_rules/0/metric', /must not be blank/],
    ['cost cap without price', base({ max_hourly_cost: 10 }), '/max_hourly_cost', /needs a price/],
    ['cost cap below min_replicas (own price)', base({ min_replicas: 3, max_hourly_cost: 1, cost_per_replica_hour: 0.5 }), '/max_hourly_cost', /cannot pay for min_replicas: 3 x 0.5 = 1.5/],
    ['cost cap below min_replicas (config price)', base({ target_type: 'trino', min_replicas: 3, max_hourly_cost: 1 }), '/max_hourly_cost', /3 x 0.45/],
    ['fallback mode without fallback', base({ on_metric_error: 'fallback' }), '/fallback', /required when on_metric_error is "fallback"/],
    ['fallback mode with null fallback', base({ on_metric_error: 'fallback', fallback: null }), '/fallback', /required/],
    ['fallback replicas above max', base({ fallback: { after_failures: 3, replicas: 11 } }), '/fallback/replicas', /\[1, 10\]/],
  ];
  for (const [description, input, field, message] of cases) {
    const problems = semanticProblems(input, ctx);
    t.equal(problems.length, 1, `${description}: one problem (${JSON.stringify(problems)})`);
    t.equal(problems[0]?.field, field, `${description}: field`);
    t.match(problems[0]?.message, message, `${description}: message`);
    const result = validatePolicyInput(input, ctx);
    t.equal(result.ok, false, `${description}: validatePolicyInput refuses it`);
    if (!result.ok) t.same(result.errors.map((e) => e.field), [field], `${description}: and names the same field once`);
  }
});

t.test('boundaries that are allowed', async (t) => {
  const ok: Array<[string, Obj]> = [
    ['min = max', base({ min_replicas: 4, max_replicas: 4 })],
    ['min 0', base({ min_replicas: 0 })],
    ['desired 0 with scale_to_zero', base({ scale_to_zero: true, schedules: [sched({ desired_replicas: 0 })] })],
    ['desired 0 when min is 0', base({ min_replicas: 0, schedules: [sched({ desired_replicas: 0 })] })],
    ['desired at min and at max', base({ schedules: [sched({ desired_replicas: 1 }), sched({ desired_replicas: 10 })] })],
    ['threshold 0', base({ scale_up_rules: [up({ threshold: 0 })] })],
    ['duration "0"', base({ scale_up_rules: [up({ duration: '0' })] })],
    ['duration 7d exactly', base({ scale_up_rules: [up({ duration: '7d', duration_seconds: 604800 })] })],
    ['duration and seconds agree', base({ scale_up_rules: [up({ duration: '1h30m', duration_seconds: 5400 })] })],
    ['time zone UTC', base({ schedules: [sched({ timezone: 'UTC' })] })],
    ['cron with names and steps', base({ schedules: [sched({ cron_expression: '*/15 8-18 * JAN-DEC MON-FRI' })] })],
    ['cost cap that exactly pays (3 x 0.1 in floats)', base({ min_replicas: 3, max_hourly_cost: 0.3, cost_per_replica_hour: 0.1 })],
    ['cost cap with a config price', base({ target_type: 'trino', min_replicas: 2, max_hourly_cost: 0.9 })],
    ['cost_per_replica_hour 0', base({ max_hourly_cost: 0, cost_per_replica_hour: 0 })],
    ['fallback 0 with scale_to_zero', base({ scale_to_zero: true, on_metric_error: 'fallback', fallback: { after_failures: 1, replicas: 0 } })],
    ['upper-case target_id', base({ target_id: '550E8400-E29B-41D4-A716-446655440000' })],
  ];
  for (const [description, input] of ok) {
    t.same(semanticProblems(input, ctx), [], description);
    t.equal(validatePolicyInput(input, ctx).ok, true, `${description}: valid`);
  }
});

t.test('YAML-only values: .inf and .nan are not finite numbers', async (t) => {
  const yamlWith = (threshold: string): unknown =>
    parseYaml(`name: p\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: 5\nscale_up_rules:\n  - metric: m\n    operator: gt\n    threshold: ${threshold}\n    scale_by: 1\n`);
  for (const [yaml, shown] of [['.inf', 'Infinity'], ['-.inf', '-Infinity'], ['.nan', 'NaN']] as const) {
    const input = yamlWith(yaml);
    const semantic = semanticProblems(input, ctx);
    t.same(semantic, [{ field: '/scale_up_rules/0/threshold', message: `must be a finite number, not ${shown}` }], `semanticProblems, ${yaml}`);
    const result = validatePolicyInput(input, ctx);
    t.same(result, { ok: false, errors: [{ field: '/scale_up_rules/0/threshold', message: `must be a finite number, not ${shown}` }] }, `validatePolicyInput, ${yaml}`);
  }
  const replicas = parseYaml('name: p\ntarget_type: cdc-worker\nmin_replicas: .inf\nmax_replicas: 5\n') as unknown;
  const result = validatePolicyInput(replicas, ctx);
  t.equal(result.ok, false);
  if (!result.ok) t.same(result.errors.find((e) => e.field === '/min_replicas'), { field: '/min_replicas', message: 'must be a finite number, not Infinity' });
  // YAML has other types JSON lacks: a date is not a string.
  const dated = validatePolicyInput(parseYaml('name: 2026-01-28\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: 5\n'), ctx);
  t.equal(dated.ok, true, 'the yaml package reads a bare date as a string (YAML 1.2 core schema)');
});

t.test('every problem is reported at once, schema and semantic together, each field once', async (t) => {
  const input = {
    name: 'Bad',
    target_type: 'spaceship',
    min_replicas: 5,
    max_replicas: 2,
    surprise: true,
    scale_up_rules: [up({ scale_by: -1, operator: 'bigger' })],
    schedules: [sched({ timezone: 'Nowhere', cron_expression: '* * *' })],
  };
  const result = validatePolicyInput(input, ctx);
  t.equal(result.ok, false);
  if (result.ok) return;
  t.same(
    result.errors.map((e) => e.field).sort(),
    ['/min_replicas', '/name', '/schedules/0/cron_expression', '/schedules/0/timezone', '/scale_up_rules/0/operator', '/scale_up_rules/0/scale_by', '/surprise', '/target_type'].sort(),
  );
  t.match(result.errors.find((e) => e.field === '/surprise'), { message: 'is not a known property' });
  t.match(result.errors.find((e) => e.field === '/scale_up_rules/0/operator'), { message: /must be one of "gt", "gte"/ });
});

t.test('min > max is one problem, not one per schedule and fallback as well', async (t) => {
  const input = base({ min_replicas: 5, max_replicas: 2, schedules: [sched({ desired_replicas: 3 })], fallback: { after_failures: 1, replicas: 3 } });
  t.same(semanticProblems(input, ctx).map((e) => e.field), ['/min_replicas']);
});

t.test('input that is not an object', async (t) => {
  for (const input of [null, [], 'policy', 42, true, undefined]) {
    t.same(semanticProblems(input, ctx), [], `semanticProblems(${JSON.stringify(input)}) has nothing to add`);
    const result = validatePolicyInput(input, ctx);
    t.same(result, { ok: false, errors: [{ field: '', message: 'must be object' }] }, `validatePolicyInput(${JSON.stringify(input)})`);
  }
});

t.test('semantic checks run on input that failed the schema without throwing', async (t) => {
  const odd: unknown[] = [
    { min_replicas: 'x', max_replicas: null, scale_up_rules: 'nope', schedules: {} },
    { scale_up_rules: [null, 1, 'x', [], { scale_by: '2', threshold: '1' }], schedules: [null, { desired_replicas: 'x', timezone: 5 }] },
    { max_hourly_cost: 1, cost_per_replica_hour: 'x', target_type: 7 },
    { on_metric_error: 'fallback', fallback: [] },
  ];
  for (const input of odd) {
    t.doesNotThrow(() => semanticProblems(input, ctx));
    t.equal(validatePolicyInput(input, ctx).ok, false);
  }
});

t.test('the validation context follows the config and the loaded plugins', async (t) => {
  const fromConfig = createValidationContext({ ...CONFIG, executors: { ...CONFIG.executors, spark: 'keda' } });
  t.ok(fromConfig.targetTypes().has('spark'), 'a config mapping adds a target type');
  t.same([...fromConfig.metricSources()], ['prometheus']);
  t.equal(fromConfig.priceFor('trino'), 0.45);
  t.equal(fromConfig.priceFor('nodes'), undefined);
  const withPlugins = createValidationContext(CONFIG, {
    metricSources: () => ['prometheus', 'datadog'],
    executors: () => ['keda', 'logger', 'nomad'],
    executorTargetTypes: () => ['flink'],
  });
  const input = base({ target_type: 'flink', executor: 'nomad', scale_up_rules: [up({ source: 'datadog' })] });
  t.same(semanticProblems(input, withPlugins), [], 'names from loaded plugins are known');
  t.same(semanticProblems(input, ctx).map((e) => e.field), ['/target_type', '/executor', '/scale_up_rules/0/source'], 'and unknown without them');
});

t.test('helpers: cron, time zones, cost', async (t) => {
  t.equal(cronProblem('0 8 * * 1-5', 'Europe/Budapest'), undefined);
  t.equal(cronProblem('  0 8 * * 1-5  ', 'UTC'), undefined, 'surrounding spaces are fine');
  t.match(cronProblem('@daily', 'UTC'), /5 fields/);
  t.match(cronProblem('', 'UTC'), /5 fields/);
  t.equal(cronProblem('0 8 * * 1-5', 'Not/AZone'), undefined, 'a bad zone is reported on its own field, not the cron');
  t.ok(isValidTimeZone('Europe/Budapest'));
  t.ok(isValidTimeZone('UTC'));
  t.notOk(isValidTimeZone('Europe/Atlantis'));
  t.notOk(isValidTimeZone(''));
  t.ok(costWithinCap(3, 0.1, 0.3));
  t.ok(costWithinCap(0, 1, 0));
  t.ok(costWithinCap(10, 0.45, 4.5));
  t.notOk(costWithinCap(11, 0.45, 4.5));
  t.notOk(costWithinCap(3, 0.1, 0.29));
  t.notOk(costWithinCap(100000, 1e308, 1e308));
});

t.test('src/policy/policy-input.generated.ts is up to date with schemas/policy.schema.json', async (t) => {
  const onDisk = await readFile(new URL('../src/policy/policy-input.generated.ts', import.meta.url), 'utf8');
  const fresh = await generatePolicyTypes();
  t.equal(onDisk, fresh, 'run `npm run gen:types` after changing schemas/policy.schema.json');
});
