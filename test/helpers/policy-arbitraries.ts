/**
 * fast-check generators of scaling policies for the fuzz suite (test/fuzz-policies.test.ts):
 * valid policies built from the fields of schemas/policy.schema.json and the service-layer rules
 * of the policy validation rules, valid policies with one to three mutations, arbitrary JSON, and
 * YAML texts made of all three plus text-level damage.
 *
 * Non-finite numbers cannot be written in JSON; `jsonText()` writes +/-Infinity as 1e400 and
 * -1e400 (which JSON.parse reads back as infinities) and NaN as null, as JSON.stringify would.
 */
import fc from 'fast-check';
import { stringify as yamlStringify } from 'yaml';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Path = Array<string | number>;

export const TARGET_TYPES = ['cdc-worker', 'trino', 'risingwave', 'nodes'] as const;
/** Config prices the fuzz suite runs with: trino has one, so a cost cap needs no policy price there. */
export const CONFIG_PRICES: Readonly<Record<string, number>> = { trino: 0.25 };
export const OPERATORS = ['gt', 'gte', 'lt', 'lte', 'eq', 'ne'] as const;
/** Five-field crons that fire (some rarely). */
export const VALID_CRONS = ['0 8 * * 1-5', '*/5 * * * *', '30 2 1 * *', '0 0 * * 0', '15 14 1 * *', '0 22 * * 1-5', '0 0 1 1 *', '59 23 31 12 *', '0 */2 * * *', '0 0 29 2 *'];
export const VALID_ZONES = ['UTC', 'Europe/Budapest', 'America/New_York', 'Asia/Kolkata', 'Australia/Lord_Howe', 'Pacific/Chatham', 'Etc/GMT+12', 'America/St_Johns'];
export const BAD_CRONS = ['61 * * * *', '0 0 8 * * 1-5', '0 8 30 2 *', '@daily', 'every day', '* * *', '0 25 * * *', '0 0 0 1 *', '0 0 * 13 *', '0 0 * * 8', '', ' ', '*/0 * * * *', '1-0 * * * *', 'L L L L L', '\u0000 * * * *'];
export const BAD_ZONES = ['Nowhere/City', 'Mars/Olympus_Mons', 'utc+25', '', 'Europe/', '../../etc/passwd', 'Europe/Budapest\u0000', 'GMT+99', 'x'.repeat(65)];
export const BAD_DURATIONS = ['5x', '', ' ', '-5m', '1.5h', '1h1h', '8d', '366d', '99999999999999999999s', '5 m', 'PT5M', '1m1h', 'm', '0x10s', '\u0665s'];

const PINF = '__philotes_fuzz_pinf__';
const NINF = '__philotes_fuzz_ninf__';
/** Stands for arrays nested 5,000 deep, written into the text (JSON.stringify would overflow its stack). */
export const DEEP = '__philotes_fuzz_deep__';
const DEEP_TEXT = `${'['.repeat(5_000)}${']'.repeat(5_000)}`;

/** JSON text of a value; +/-Infinity as 1e400 / -1e400, NaN as null, DEEP as 5,000 nested arrays. */
export function jsonText(value: unknown): string {
  const text = JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'number' && !Number.isFinite(v) && !Number.isNaN(v)) return v > 0 ? PINF : NINF;
    return v;
  });
  return (text ?? 'null').replaceAll(`"${PINF}"`, '1e400').replaceAll(`"${NINF}"`, '-1e400').replaceAll(`"${DEEP}"`, DEEP_TEXT);
}

/** A duration string parseDuration accepts, with its seconds, at most `max` seconds. */
function durationArb(max: number): fc.Arbitrary<{ text: string; seconds: number }> {
  return fc
    .record({
      d: fc.option(fc.integer({ min: 0, max: 400 }), { nil: undefined }),
      h: fc.option(fc.integer({ min: 0, max: 48 }), { nil: undefined }),
      m: fc.option(fc.integer({ min: 0, max: 120 }), { nil: undefined }),
      s: fc.option(fc.integer({ min: 0, max: 200 }), { nil: undefined }),
    })
    .map(({ d, h, m, s }) => {
      const text = `${d !== undefined ? `${d}d` : ''}${h !== undefined ? `${h}h` : ''}${m !== undefined ? `${m}m` : ''}${s !== undefined ? `${s}s` : ''}`;
      return { text: text === '' ? '0' : text, seconds: (d ?? 0) * 86_400 + (h ?? 0) * 3_600 + (m ?? 0) * 60 + (s ?? 0) };
    })
    .filter((x) => x.seconds <= max);
}

/** duration, duration_seconds, both (agreeing) or neither. */
function durationFields(max: number): fc.Arbitrary<Record<string, Json>> {
  return fc.oneof(
    fc.constant({}),
    durationArb(max).map((d) => ({ duration: d.text })),
    fc.integer({ min: 0, max }).map((s) => ({ duration_seconds: s })),
    durationArb(max).map((d) => ({ duration: d.text, duration_seconds: d.seconds })),
  );
}

const text = (maxLength: number): fc.Arbitrary<string> => fc.oneof(fc.string({ maxLength }), fc.string({ unit: 'grapheme', maxLength }));

function withoutUndefined(o: Record<string, unknown>): Record<string, Json> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Record<string, Json>;
}

function ruleArb(up: boolean): fc.Arbitrary<Record<string, Json>> {
  return fc
    .tuple(
      fc.record(
        {
          metric: fc.oneof(
            fc.constantFrom('philotes_cdc_lag_seconds', 'max(philotes_cdc_lag_seconds{source="orders"})', 'sum(rate(http_requests_total[5m]))', 'up'),
            // Any text, where PromQL takes it: the source is prometheus, so the metric must parse.
            fc.tuple(fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789_'), maxLength: 20 }), text(60)).map(([name, value]) => `max(m_${name}{label=${JSON.stringify(value)}})`),
          ),
          source: fc.constantFrom('prometheus', null),
          operator: fc.constantFrom(...OPERATORS),
          threshold: fc.oneof(fc.integer({ min: 0, max: 1_000_000 }), fc.double({ min: 0, max: 1e12, noNaN: true })),
          aggregation: fc.constantFrom('max', 'min', 'avg', 'sum'),
          scale_by: up ? fc.integer({ min: 1, max: 100_000 }) : fc.integer({ min: -100_000, max: -1 }),
          id: fc.uuid(),
        },
        { requiredKeys: ['metric', 'operator', 'threshold', 'scale_by'] },
      ),
      durationFields(604_800),
    )
    .map(([r, d]) => withoutUndefined({ ...r, ...d }));
}

function scheduleArb(min: number, max: number, scaleToZero: boolean): fc.Arbitrary<Record<string, Json>> {
  return fc
    .tuple(
      fc.record(
        {
          cron_expression: fc.constantFrom(...VALID_CRONS),
          timezone: fc.constantFrom(...VALID_ZONES),
          desired_replicas: scaleToZero ? fc.oneof(fc.constant(0), fc.integer({ min, max })) : fc.integer({ min, max }),
          mode: fc.constantFrom('exact', 'floor'),
          enabled: fc.boolean(),
        },
        { requiredKeys: ['cron_expression', 'desired_replicas'] },
      ),
      durationFields(31_536_000),
    )
    .map(([s, d]) => withoutUndefined({ ...s, ...d }));
}

/** A policy name that the API accepts (not shaped like a UUID). */
export const policyNameArb: fc.Arbitrary<string> = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,62}$/).filter((n) => !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(n));

/**
 * A policy every check accepts: schema, and the semantic rules (min <= max, max >= 1, scale_by
 * signs, finite non-negative thresholds, durations within bounds, firing crons in real zones,
 * schedule and fallback replicas within [min, max], a cost cap only with a price that pays for min).
 */
export function validPolicyArb(name: fc.Arbitrary<string> = policyNameArb): fc.Arbitrary<Record<string, Json>> {
  return fc
    .record({ min: fc.integer({ min: 0, max: 50 }), span: fc.integer({ min: 0, max: 100 }), scaleToZero: fc.boolean(), targetType: fc.constantFrom(...TARGET_TYPES) })
    .chain(({ min, span, scaleToZero, targetType }) => {
      const configPrice = CONFIG_PRICES[targetType];
      const max = Math.max(1, min + span);
      const price = fc.oneof(fc.integer({ min: 0, max: 20 }), fc.double({ min: 0, max: 20, noNaN: true }));
      const cost = fc.oneof(
        fc.constant({}),
        price.map((p) => ({ cost_per_replica_hour: p })),
        fc.tuple(price, fc.double({ min: 0, max: 1000, noNaN: true })).map(([p, extra]) => ({ cost_per_replica_hour: p, max_hourly_cost: min * p + extra })),
        fc.constant({ cost_per_replica_hour: null, max_hourly_cost: null }),
        // A cap priced by the config.
        configPrice !== undefined ? fc.double({ min: 0, max: 1000, noNaN: true }).map((extra) => ({ max_hourly_cost: min * configPrice + extra })) : fc.constant({}),
      );
      const errorMode = fc.oneof(
        fc.constant({}),
        fc.constant({ on_metric_error: 'hold' }),
        fc.constant({ on_metric_error: 'hold', fallback: null }),
        fc
          .record({ after_failures: fc.integer({ min: 1, max: 10_000 }), replicas: fc.integer({ min, max }) })
          .chain((fb) => fc.constantFrom({ on_metric_error: 'fallback', fallback: fb }, { fallback: fb })),
      );
      return fc
        .tuple(
          fc.record(
            {
              name,
              description: fc.oneof(text(200), fc.constant(null)),
              target_id: fc.oneof(fc.uuid(), fc.constant(null)),
              executor: fc.constantFrom('keda', 'logger', null),
              cooldown_seconds: fc.oneof(fc.integer({ min: 0, max: 604_800 }), fc.constant(null)),
              enabled: fc.boolean(),
              dry_run: fc.boolean(),
              scale_up_match: fc.constantFrom('all', 'any'),
              scale_down_match: fc.constantFrom('all', 'any'),
              scale_up_rules: fc.array(ruleArb(true), { maxLength: 3 }),
              scale_down_rules: fc.array(ruleArb(false), { maxLength: 3 }),
              schedules: fc.array(scheduleArb(min, max, scaleToZero), { maxLength: 3 }),
              // Server-owned fields a client may echo back; they are ignored.
              id: fc.uuid(),
              source: fc.constantFrom('api', 'policies/x.yaml'),
              created_at: fc.constant('2026-01-01T00:00:00.000Z'),
            },
            { requiredKeys: ['name'] },
          ),
          cost,
          errorMode,
        )
        // scale_to_zero is always written when true: schedules and fallbacks may rely on it.
        .map(([p, c, e]) => withoutUndefined({ ...p, target_type: targetType, min_replicas: min, max_replicas: max, ...(scaleToZero ? { scale_to_zero: true } : {}), ...c, ...e }));
    });
}

/** Paths into a JSON value (objects and arrays), the root excluded, at most 12 deep. */
export function pathsOf(v: Json, at: Path = []): Path[] {
  if (at.length >= 12) return [at];
  if (Array.isArray(v)) return [...(at.length > 0 ? [at] : []), ...v.flatMap((x, i) => pathsOf(x, [...at, i]))];
  if (typeof v === 'object' && v !== null) return [...(at.length > 0 ? [at] : []), ...Object.entries(v).flatMap(([k, x]) => pathsOf(x, [...at, k]))];
  return at.length > 0 ? [at] : [];
}

const HUGE = new Map<number, string>();
/** A well-formed string of `n` code points (no surrogate pair cut in half); made once per size. */
function huge(n: number): string {
  let s = HUGE.get(n);
  if (s === undefined) {
    s = 'ä€𝔸x'.repeat(Math.floor(n / 4)) + Array.from('ä€𝔸x').slice(0, n % 4).join('');
    HUGE.set(n, s);
  }
  return s;
}


/** Values that are wrong somewhere: wrong types, out-of-range numbers, non-finite, odd strings, nested junk. */
export const junkArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(
    null, true, false, 0, -1, 1, 2.5, -0.5, 100_001, -100_001, 1e308, -1e308, 2 ** 53, Number.MAX_SAFE_INTEGER + 2, -0,
    Infinity, -Infinity, NaN,
    '', ' ', 'x', '5x', '0', '1', 'true', 'null', 'NaN', 'Infinity', '8d', '1h1h', 'Nowhere/City', '61 * * * *', '@daily',
    'not-a-uuid', 'urn:uuid:550e8400-e29b-41d4-a716-446655440000', '550e8400-e29b-41d4-a716-446655440000', 'prometheus', 'nope', 'kubectl',
    'fallback', 'hold', 'gt', 'any', 'exact', 'spaceship', 'put-target', 'neighbour', 'My-Policy', '-lead', 'ℕ𝔸ℕ', '\u0000', '\u202Eevil', '😀'.repeat(40),
    'a'.repeat(64), huge(2_001), huge(9_000), huge(70_000),
    // Lone surrogates: valid JSON escapes, but not text storage can keep.
    'a\ud800b', '\udc00', 'x\ud83d',
    DEEP,
    [], {}, [null], [[]], { a: { b: [1, { c: null }] } }, [{}], { scale_by: 1 }, [1, 'a', null],
    // Objects whose keys shadow Object.prototype: String() of them throws, JSON.parse makes "__proto__" an own key.
    { toString: [] }, [{ toString: 1 }], { valueOf: {}, toString: {} }, { constructor: 1 }, JSON.parse('{"__proto__": {"polluted": 1}}') as unknown,
  ),
  fc.jsonValue({ maxDepth: 3 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.integer(),
  fc.double(),
);

const keyArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('colour', 'extra', 'a/b', 'a~b', '~1', '', ' ', 'Name', 'min-replicas', 'scaleUpRules', '$ref', 'ℕ', 'constructor', 'toString', 'id', 'prototype'),
  fc.string({ maxLength: 12 }),
);

export type Mutation =
  | { kind: 'set'; at: number; value: unknown }
  | { kind: 'delete'; at: number }
  | { kind: 'extra'; at: number; key: string; value: unknown }
  | { kind: 'negate'; at: number }
  | { kind: 'nonfinite'; at: number; value: number }
  | { kind: 'huge'; at: number; size: number }
  | { kind: 'required'; which: number }
  | { kind: 'rename'; to: string }
  | { kind: 'semantic'; which: number; pick: number; value: string | number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: junkArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('extra' as const), at: fc.nat(), key: keyArb, value: fc.jsonValue({ maxDepth: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('negate' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('nonfinite' as const), at: fc.nat(), value: fc.constantFrom(NaN, Infinity, -Infinity) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('huge' as const), at: fc.nat(), size: fc.constantFrom(2_001, 10_000, 200_000, 1_100_000) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('required' as const), which: fc.nat() }) },
  // Names the fuzz suite's fixtures use (a duplicate over the API; a clash between files).
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rename' as const), to: fc.constantFrom('put-target', 'neighbour', 'shared-name') }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('semantic' as const),
      which: fc.nat(),
      pick: fc.nat(),
      value: fc.oneof(fc.constantFrom(...BAD_CRONS, ...BAD_ZONES, ...BAD_DURATIONS), fc.integer({ min: -10, max: 200 })),
    }),
  },
);

function getAt(doc: Json, path: Path): Json | undefined {
  let v: Json | undefined = doc;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = Array.isArray(v) ? v[k as number] : Object.hasOwn(v, k) ? v[k as string] : undefined;
  }
  return v;
}

function setAt(doc: Json, path: Path, shared: unknown, remove = false): void {
  // Junk constants are shared between runs: never put one in a document that later mutations change.
  const value = typeof shared === 'object' && shared !== null ? structuredClone(shared) : shared;
  const parent = getAt(doc, path.slice(0, -1));
  const last = path.at(-1);
  if (parent === null || typeof parent !== 'object' || last === undefined) return;
  if (Array.isArray(parent)) {
    if (remove) parent.splice(last as number, 1);
    else parent[last as number] = value as Json;
  } else if (remove) delete parent[last as string];
  else Object.defineProperty(parent, last, { value, enumerable: true, writable: true, configurable: true });
}

/** Applies mutations to a copy of `base`; each is interpreted against the document as it is then. */
export function mutate(base: Json, mutations: readonly Mutation[]): unknown {
  const doc = structuredClone(base);
  for (const m of mutations) {
    const paths = pathsOf(doc);
    const path = 'at' in m && paths.length > 0 ? paths[m.at % paths.length] : undefined;
    switch (m.kind) {
      case 'set':
        if (path !== undefined) setAt(doc, path, m.value);
        break;
      case 'delete':
        if (path !== undefined) setAt(doc, path, undefined, true);
        break;
      case 'extra': {
        const objects: Path[] = [[], ...paths.filter((p) => { const v = getAt(doc, p); return typeof v === 'object' && v !== null && !Array.isArray(v); })];
        const at = objects[m.at % objects.length] ?? [];
        setAt(doc, [...at, m.key], m.value);
        break;
      }
      case 'negate': {
        const nums = paths.filter((p) => typeof getAt(doc, p) === 'number');
        const p = nums[m.at % Math.max(1, nums.length)];
        if (p !== undefined) {
          const v = getAt(doc, p) as number;
          setAt(doc, p, v === 0 ? -1 : -v);
        }
        break;
      }
      case 'nonfinite': {
        const nums = paths.filter((p) => typeof getAt(doc, p) === 'number');
        const p = nums[m.at % Math.max(1, nums.length)] ?? path;
        if (p !== undefined) setAt(doc, p, m.value);
        break;
      }
      case 'huge': {
        const strs = paths.filter((p) => typeof getAt(doc, p) === 'string');
        const p = strs[m.at % Math.max(1, strs.length)] ?? path;
        if (p !== undefined) setAt(doc, p, huge(m.size));
        break;
      }
      case 'rename':
        setAt(doc, ['name'], m.to);
        break;
      case 'required': {
        const required: Path[] = [['name'], ['target_type'], ['min_replicas'], ['max_replicas']];
        for (const [key, fields] of [['scale_up_rules', ['metric', 'operator', 'threshold', 'scale_by']], ['scale_down_rules', ['metric', 'operator', 'threshold', 'scale_by']], ['schedules', ['cron_expression', 'desired_replicas']]] as const) {
          const list = getAt(doc, [key]);
          if (Array.isArray(list)) list.forEach((_, i) => fields.forEach((f) => required.push([key, i, f])));
        }
        const fb = getAt(doc, ['fallback']);
        if (typeof fb === 'object' && fb !== null) required.push(['fallback', 'after_failures'], ['fallback', 'replicas']);
        const p = required[m.which % required.length];
        if (p !== undefined) setAt(doc, p, undefined, true);
        break;
      }
      case 'semantic': {
        // Aim at the fields the service layer checks beyond the schema.
        const targets: Path[] = [['min_replicas'], ['max_replicas'], ['max_hourly_cost'], ['fallback', 'replicas']];
        for (const key of ['scale_up_rules', 'scale_down_rules', 'schedules'] as const) {
          const list = getAt(doc, [key]);
          if (!Array.isArray(list)) continue;
          list.forEach((_, i) => {
            if (key === 'schedules') targets.push([key, i, 'cron_expression'], [key, i, 'timezone'], [key, i, 'duration'], [key, i, 'desired_replicas']);
            else targets.push([key, i, 'scale_by'], [key, i, 'threshold'], [key, i, 'duration'], [key, i, 'source'], [key, i, 'metric']);
          });
        }
        const p = targets[m.which % targets.length];
        if (p === undefined) break;
        const last = String(p.at(-1));
        const pool: unknown[] =
          last === 'cron_expression' ? BAD_CRONS : last === 'timezone' ? BAD_ZONES : last === 'duration' ? BAD_DURATIONS : last === 'source' ? ['nope', 'Prometheus', 'prom_2'] : last === 'metric' ? ['   ', '\t\n', 'up\udc00'] : [m.value];
        setAt(doc, p, typeof m.value === 'number' && pool.length > 1 ? pool[m.pick % pool.length] : (pool[m.pick % pool.length] ?? m.value));
        break;
      }
    }
  }
  return doc;
}

export type Category = 'valid' | 'mutated' | 'arbitrary';

/** A labelled input: which of the three kinds it is, and the value. */
export interface Sample {
  category: Category;
  value: unknown;
}

/** Arbitrary JSON: any value, objects shaped like policies with junk in them, fc.anything made JSON. */
export const arbitraryJsonArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.dictionary(
    fc.oneof(fc.constantFrom('name', 'target_type', 'min_replicas', 'max_replicas', 'scale_up_rules', 'scale_down_rules', 'schedules', 'fallback', 'on_metric_error', 'max_hourly_cost', 'cooldown_seconds'), keyArb),
    fc.oneof(junkArb, fc.array(fc.dictionary(keyArb, junkArb, { maxKeys: 5 }), { maxLength: 3 })),
    { maxKeys: 10 },
  ),
  fc.anything({ maxDepth: 3 }).map((x) => JSON.parse(JSON.stringify(x) ?? 'null') as unknown),
);

const POLICY_KEYS = [
  'name', 'description', 'target_type', 'target_id', 'executor', 'min_replicas', 'max_replicas', 'cooldown_seconds', 'max_hourly_cost',
  'cost_per_replica_hour', 'scale_to_zero', 'enabled', 'dry_run', 'on_metric_error', 'fallback', 'scale_up_match', 'scale_down_match',
  'scale_up_rules', 'scale_down_rules', 'schedules',
] as const;

/** A valid policy with one to three top-level fields (present or not) set to junk: cross-field checks on bad neighbours. */
export function junkFieldsArb(name: fc.Arbitrary<string> = policyNameArb): fc.Arbitrary<unknown> {
  return fc
    .tuple(validPolicyArb(name), fc.array(fc.tuple(fc.constantFrom(...POLICY_KEYS), fc.oneof(junkArb, fc.double({ min: 0, max: 100, noNaN: true }))), { minLength: 1, maxLength: 3 }))
    .map(([base, sets]) => {
      const out: Record<string, unknown> = { ...base };
      for (const [k, v] of sets) out[k] = typeof v === 'object' && v !== null ? structuredClone(v) : v;
      return out;
    });
}

/** The input mix of the fuzz suite: 30% valid, 50% mutated (1-3 mutations or junk fields), 20% arbitrary JSON. */
export function sampleArb(name: fc.Arbitrary<string> = policyNameArb): fc.Arbitrary<Sample> {
  return fc.oneof(
    { weight: 3, arbitrary: validPolicyArb(name).map((value): Sample => ({ category: 'valid', value })) },
    {
      weight: 4,
      arbitrary: fc
        .tuple(validPolicyArb(name), fc.array(mutationArb, { minLength: 1, maxLength: 3 }))
        .map(([base, muts]): Sample => ({ category: 'mutated', value: mutate(base, muts) })),
    },
    { weight: 1, arbitrary: junkFieldsArb(name).map((value): Sample => ({ category: 'mutated', value })) },
    { weight: 2, arbitrary: arbitraryJsonArb.map((value): Sample => ({ category: 'arbitrary', value })) },
  );
}

/** Damage done to YAML text, after it was written. */
export type TextDamage =
  | { kind: 'none' }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; junk: string }
  | { kind: 'tabs' }
  | { kind: 'crlf' }
  | { kind: 'bom' }
  | { kind: 'duplicate-key' }
  | { kind: 'yaml11' }
  | { kind: 'anchors' }
  | { kind: 'deep' }
  | { kind: 'surrogate' }
  | { kind: 'raw'; text: string };

export const textDamageArb: fc.Arbitrary<TextDamage> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<TextDamage>({ kind: 'none' }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('insert' as const),
      at: fc.nat(),
      junk: fc.oneof(fc.constantFrom(':', ': :', '- ', '{', '[', '"', "'", '&a ', '*a', '*nope', '!!binary ', '!custom ', '? ', '|', '>-\n', '\t', '%', '@', '`', '\n  - x\n', '\n---\n', '\n...\n', '<<: *a\n', '#'), fc.string({ maxLength: 8 })),
    }),
  },
  { weight: 1, arbitrary: fc.constantFrom<TextDamage>({ kind: 'tabs' }, { kind: 'crlf' }, { kind: 'bom' }, { kind: 'duplicate-key' }, { kind: 'yaml11' }, { kind: 'anchors' }, { kind: 'deep' }, { kind: 'surrogate' }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('raw' as const), text: fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 200 })) }) },
);

/** Applies text damage to a YAML text. */
export function damage(yamlText: string, d: TextDamage): string {
  switch (d.kind) {
    case 'none':
      return yamlText;
    case 'truncate':
      return yamlText.slice(0, d.at % (yamlText.length + 1));
    case 'insert': {
      const at = d.at % (yamlText.length + 1);
      return yamlText.slice(0, at) + d.junk + yamlText.slice(at);
    }
    case 'tabs':
      return yamlText.replace(/^ {2}/gm, '\t');
    case 'crlf':
      return yamlText.replaceAll('\n', '\r\n');
    case 'bom':
      return `\uFEFF${yamlText}`;
    case 'duplicate-key':
      return `${yamlText}${yamlText.endsWith('\n') ? '' : '\n'}name: duplicate-key\n`;
    case 'yaml11':
      return `%YAML 1.1\n---\n${yamlText}\nscale_to_zero: yes\n`;
    case 'anchors':
      return `${yamlText}${yamlText.endsWith('\n') ? '' : '\n'}x_anchor: &a [1, 2, {k: *a}]\n`;
    case 'deep':
      // Flow collections nested past what the YAML parser's recursion can take.
      return `${yamlText}${yamlText.endsWith('\n') ? '' : '\n'}description: ${'['.repeat(3_000)}${']'.repeat(3_000)}\n`;
    case 'surrogate':
      // A double-quoted YAML escape that makes a lone surrogate.
      return `${yamlText}${yamlText.endsWith('\n') ? '' : '\n'}description: "bad \\ud800 text"\n`;
    case 'raw':
      return d.text;
  }
}

/** YAML text of one document (NaN and infinities become .nan / .inf). */
export function yamlDoc(value: unknown): string {
  // A flow sequence nested 5,000 deep is valid YAML too.
  return yamlStringify(value, { lineWidth: 0 }).replaceAll(DEEP, DEEP_TEXT);
}
