/**
 * `philotes-scaler test`: unit tests for policies, modelled on `promtool test rules` but with no
 * Prometheus. A test file names policy files, gives input series in promtool's expanding notation
 * and lists what the policy must decide at given instants; the runner replays the policy over the
 * series with the same decision function the live loop uses and compares. See docs/policy-tests.md.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, relative, resolve } from 'node:path';
import { LineCounter, isMap, isScalar, parseDocument, type Document } from 'yaml';
import type { Logger } from 'pino';
import type { ResolvedConfig } from '../config/config.js';
import { replay, type PackedSeries, type SeriesInput } from '../backtest/replay.js';
import type { Action, DecisionRecord, ReasonCode, RuleRecord } from '../engine/decision.js';
import { OPERATOR_SYMBOL, observationKey, queriedBy } from '../engine/rule-window.js';
import { collectPolicyFiles, commandPolicyParser } from '../files/validate-command.js';
import { formatProblem, parsePolicyFile, type FileProblem } from '../files/policy-file.js';
import type { Policy } from '../policy/policy-model.js';
import { namesFromPlugins, type KnownNames } from '../policy/validation-context.js';
import { withPlugins } from '../plugins/load-plugins.js';
import { explainDurationErrors, isValidTimeZone } from '../policy/policy-validation.js';
import { ajv, loadSchema, toFieldErrors } from '../schemas.js';
import { formatDuration, parseDuration } from '../util/duration.js';
import { ExpandingNotationError, STALE, expandSeries, type SeriesValue } from './expanding-notation.js';

export const POLICY_TEST_SCHEMA_ID = 'https://philotes.dev/schemas/policy-test.schema.json';

/** Defaults of a test file (schemas/policy-test.schema.json). */
export const DEFAULT_EVALUATION_INTERVAL = '1m';
export const DEFAULT_START = '2026-01-01T00:00:00Z';
export const DEFAULT_TIMEZONE = 'UTC';

/** At most this many evaluations per test case, so a typo in `at` cannot run for minutes. */
export const MAX_EVALUATIONS = 200_000;

const TEST_FILE = /\.test\.ya?ml$/i;

// ---------------------------------------------------------------------------------------------
// The file format (as the schema describes it)
// ---------------------------------------------------------------------------------------------

/** One expected outcome at one evaluation instant; at least one of the three fields is given. */
export interface PolicyTestExpectation {
  /** An offset from start (duration string or whole seconds) or an absolute time. */
  at: string | number;
  replicas?: number;
  action?: Action;
  reason_code?: ReasonCode;
}

export interface PolicyTestSeries {
  query: string;
  values: string | number;
}

export interface PolicyTestCase {
  name: string;
  policy?: string;
  start?: string;
  timezone?: string;
  initial_replicas?: number;
  input_series?: PolicyTestSeries[];
  expect: PolicyTestExpectation[];
}

/** A policy test file, as schemas/policy-test.schema.json validates it. */
export interface PolicyTestFile {
  policy_files: string[];
  evaluation_interval?: string;
  tests: PolicyTestCase[];
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

export type ExpectedField = 'replicas' | 'action' | 'reason_code';

/** One field that did not match. */
export interface FieldMismatch {
  field: ExpectedField;
  expected: number | string;
  got: number | string;
}

/** A rule's verdict at the instant of a failed expectation. */
export interface RuleAtInstant {
  direction: RuleRecord['direction'];
  /** The rule as a condition: `max(lag) > 60 for 5m`. */
  condition: string;
  held: boolean;
  /** The value that decided (the weakest in the window), or null. */
  value: number | null;
  latest: number | null;
  samples: number;
  /** Why it did not hold: a metric error or the first failing value. */
  why: string | null;
}

/** An expectation that did not match, with what the decision said at that instant. */
export interface ExpectationFailure {
  /** 0-based index in the test's `expect` list. */
  index: number;
  /** `at` as written in the file. */
  at: string;
  /** The evaluation instant, ISO-8601 UTC. */
  time: string;
  /** The same instant on the test's wall clock (`Mon 08:00 Europe/Budapest`); null when the test is in UTC. */
  local: string | null;
  mismatches: FieldMismatch[];
  replicas_before: number;
  replicas: number;
  action: Action;
  reason_code: ReasonCode;
  /** The decision's one-sentence explanation. */
  reason: string;
  rules: RuleAtInstant[];
}

export interface PolicyTestCaseResult {
  name: string;
  policy: string;
  passed: boolean;
  evaluations: number;
  expectations: number;
  failures: ExpectationFailure[];
}

/** One test file: either problems (it could not be run) or one result per test case. */
export interface PolicyTestFileResult {
  file: string;
  problems: FileProblem[];
  cases: PolicyTestCaseResult[];
}

export interface PolicyTestRun {
  /** True when every test case passed and no file had problems. */
  ok: boolean;
  /** formatResults() of the results, for the CLI. */
  text: string;
  results: PolicyTestFileResult[];
  passed: number;
  failed: number;
  /** Files (or arguments) that could not be run. */
  errors: number;
}

// ---------------------------------------------------------------------------------------------
// Times
// ---------------------------------------------------------------------------------------------

const TIME_RE = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|z|[+-]\d{2}:?\d{2})?$/;

const zoneFormats = new Map<string, Intl.DateTimeFormat>();

/** Milliseconds to add to a UTC instant to get the wall-clock time in `zone`. */
function zoneOffset(zone: string, at: number): number {
  let f = zoneFormats.get(zone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    zoneFormats.set(zone, f);
  }
  const p: Record<string, number> = {};
  for (const part of f.formatToParts(new Date(at))) if (part.type !== 'literal') p[part.type] = Number(part.value);
  const wall = Date.UTC(p['year'] ?? 0, (p['month'] ?? 1) - 1, p['day'] ?? 1, p['hour'] ?? 0, p['minute'] ?? 0, p['second'] ?? 0);
  return wall - Math.floor(at / 1000) * 1000;
}

/**
 * Reads an ISO-8601 time; without an offset it is a wall-clock time in `zone`. A wall-clock time
 * that occurs twice (the hour daylight saving time repeats) is the earlier; one that does not exist
 * (the hour it skips) is an error, since any choice would surprise someone.
 */
export function parseTestTime(text: string, zone: string): { ok: true; ms: number } | { ok: false; message: string } {
  const m = TIME_RE.exec(text);
  if (m === null) return { ok: false, message: `"${text}" is not a time such as 2026-01-05T08:00:00Z or 2026-01-05T08:00` };
  const [, y, mo, d, h, mi, s, frac, offset] = m;
  const ms = Math.round(Number(frac ?? 0) * 1000);
  const wall = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s ?? 0), ms);
  const back = new Date(wall);
  if (
    back.getUTCFullYear() !== Number(y) ||
    back.getUTCMonth() !== Number(mo) - 1 ||
    back.getUTCDate() !== Number(d) ||
    back.getUTCHours() !== Number(h) ||
    back.getUTCMinutes() !== Number(mi) ||
    back.getUTCSeconds() !== Number(s ?? 0)
  ) {
    return { ok: false, message: `"${text}" is not a valid date and time` };
  }
  if (offset !== undefined) {
    if (offset === 'Z' || offset === 'z') return { ok: true, ms: wall };
    const om = /^([+-])(\d{2}):?(\d{2})$/.exec(offset) as RegExpExecArray;
    const minutes = Number(om[2]) * 60 + Number(om[3]);
    return { ok: true, ms: wall - (om[1] === '-' ? -1 : 1) * minutes * 60_000 };
  }
  const day = 86_400_000;
  const candidates = [...new Set([zoneOffset(zone, wall - day), zoneOffset(zone, wall), zoneOffset(zone, wall + day)])]
    .map((o) => wall - o)
    .filter((t) => t + zoneOffset(zone, t) === wall)
    .sort((a, b) => a - b);
  const first = candidates[0];
  if (first === undefined) return { ok: false, message: `"${text}" does not exist in ${zone} (the clocks skip it for daylight saving time); give an offset` };
  return { ok: true, ms: first };
}

/** `2026-01-05T08:00:00Z`: ISO without milliseconds when there are none. */
function isoTime(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

function localTime(ms: number, zone: string): string {
  const p: Record<string, string> = {};
  const f = new Intl.DateTimeFormat('en-GB', { timeZone: zone, weekday: 'short', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
  for (const part of f.formatToParts(new Date(ms))) p[part.type] = part.value;
  return `${p['weekday']} ${p['hour']}:${p['minute']}${p['second'] === '00' ? '' : `:${p['second']}`} ${zone}`;
}

// ---------------------------------------------------------------------------------------------
// Locating problems in the YAML text (as parsePolicyText does for policy files)
// ---------------------------------------------------------------------------------------------

function pointerPath(pointer: string): Array<string | number> {
  return pointer
    .split('/')
    .slice(1)
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/**
 * The source range of the node a JSON pointer names, walking up to the nearest node that exists.
 * With `key`, a pointer to a mapping entry gives the range of its key (an unknown property is
 * its key, not its value).
 */
function nodeRange(doc: Document, pointer: string, key = false): [number, number] | null {
  const path = pointerPath(pointer);
  if (key && path.length > 0) {
    const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true);
    if (isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === String(path.at(-1)));
      const range = isScalar(pair?.key) ? pair.key.range : undefined;
      if (range !== undefined && range !== null) return [range[0], range[1]];
    }
  }
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
    if (range !== undefined) return [range[0], range[1]];
  }
  return null;
}

interface Located {
  doc: Document;
  lc: LineCounter;
  text: string;
}

// ---------------------------------------------------------------------------------------------
// Loading a test file
// ---------------------------------------------------------------------------------------------

function schemaValidator() {
  const shared = ajv();
  // Registered on the one shared ajv instance at first use, compiled once.
  if (shared.getSchema(POLICY_TEST_SCHEMA_ID) === undefined) shared.addSchema(loadSchema('policy-test.schema.json'));
  const fn = shared.getSchema<PolicyTestFile>(POLICY_TEST_SCHEMA_ID);
  if (fn === undefined) throw new Error(`schema ${POLICY_TEST_SCHEMA_ID} is not registered`);
  return fn;
}

/** The parser `philotes-scaler validate` applies to policy files: the same schema, semantics and plugin names. */
function policyParser(config: ResolvedConfig, known: KnownNames) {
  return commandPolicyParser(config, known, () => new Date(0));
}

/** A test case made ready to run: every time resolved, every series expanded and keyed. */
interface PreparedCase {
  name: string;
  policy: Policy;
  start: number;
  timezone: string;
  initialReplicas: number;
  series: Map<string, SeriesInput>;
  expectations: Array<{ index: number; at: string; offset: number; expected: Partial<Record<ExpectedField, number | string>> }>;
}

interface PreparedFile {
  problems: FileProblem[];
  intervalSeconds: number;
  cases: PreparedCase[];
}

/** Collects problems of one test file, located in its text. */
class Problems {
  readonly list: FileProblem[] = [];
  constructor(
    private readonly file: string,
    private readonly where: Located,
  ) {}

  /**
   * A problem at a JSON pointer. `term` (with its 0-based index) narrows it to one term of a
   * scalar; `key` points at the entry's key rather than its value.
   */
  add(field: string, message: string, at: { term?: { text: string; index: number }; key?: boolean } = {}): void {
    const { term } = at;
    let line: number | null = null;
    let column: number | null = null;
    const range = nodeRange(this.where.doc, field, at.key === true);
    if (range !== null) {
      let offset = range[0];
      if (term !== undefined) {
        // The term's own column, when the scalar is written plainly enough to find it.
        const raw = this.where.text.slice(range[0], range[1]);
        const hit = [...raw.matchAll(/[^\s'"]+/g)][term.index];
        if (hit?.[0] === term.text) offset = range[0] + (hit.index ?? 0);
      }
      const pos = this.where.lc.linePos(offset);
      line = pos.line;
      column = pos.col;
    }
    this.list.push({ file: this.file, line, column, document: null, field, message });
  }
}

function sameFileProblem(file: string, message: string): FileProblem {
  return { file, line: null, column: null, document: null, field: '', message };
}

/**
 * Parses, validates and prepares a test file: the YAML, the schema, the policy files (validated as
 * `validate` does) and every test case. Problems carry file, line, column and field; a file with
 * problems runs no test.
 */
async function prepareFile(file: string, text: string, config: ResolvedConfig, known: KnownNames): Promise<PreparedFile> {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const none: PreparedFile = { problems: [], intervalSeconds: 60, cases: [] };
  if (doc.errors.length > 0) {
    none.problems = doc.errors.map((e) => {
      const pos = lc.linePos(e.pos[0]);
      return {
        file,
        line: pos.line,
        column: pos.col,
        document: null,
        field: '',
        message: `YAML syntax: ${e.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '')}`,
      };
    });
    return none;
  }
  const problems = new Problems(file, { doc, lc, text });
  let input: unknown;
  try {
    input = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    problems.add('', `YAML: ${(err as Error).message}`);
    return { ...none, problems: problems.list };
  }
  if (input === null || input === undefined) {
    problems.add('', 'the file is empty: a test file needs policy_files and tests');
    return { ...none, problems: problems.list };
  }
  const validate = schemaValidator();
  if (!validate(input)) {
    // toFieldErrors names an unknown property by its own pointer: point at the key as written.
    for (const e of toFieldErrors(explainDurationErrors(validate.errors ?? [], input))) problems.add(e.field, e.message, { key: e.message.startsWith('is not a known property') });
    return { ...none, problems: problems.list };
  }
  const spec = input as PolicyTestFile;

  const intervalText = spec.evaluation_interval ?? DEFAULT_EVALUATION_INTERVAL;
  const intervalSeconds = parseDuration(intervalText) ?? 0;
  if (intervalSeconds < 1) problems.add('/evaluation_interval', `must be a duration of at least 1s, such as 30s or 1m; got "${intervalText}"`);

  // Policy files, relative to the test file, validated as `philotes-scaler validate` does.
  const parse = policyParser(config, known);
  const policies = new Map<string, Policy>();
  const owner = new Map<string, string>();
  const policyProblems: FileProblem[] = [];
  const base = dirname(file);
  for (const [i, p] of spec.policy_files.entries()) {
    const shown = isAbsolute(p) ? p : normalize(join(base, p));
    const { files, missing } = collectPolicyFiles([resolve(base, p)]);
    if (missing.length > 0) {
      problems.add(`/policy_files/${i}`, `no such file or folder: ${shown}`);
      continue;
    }
    if (files.length === 0) problems.add(`/policy_files/${i}`, `${shown} holds no .yaml or .yml policy file`);
    for (const f of files) {
      // Shown as the test file is shown: relative to the working directory when it was given so.
      const display = isAbsolute(p) ? f : normalize(join(base, relative(resolve(base), f)));
      const parsed = await parsePolicyFile(f, parse, display);
      policyProblems.push(...parsed.problems);
      for (const policy of parsed.policies) {
        const other = owner.get(policy.name);
        if (other !== undefined) {
          policyProblems.push({ file: display, line: null, column: null, document: null, field: '/name', message: `"${policy.name}" is also defined in ${other}` });
          continue;
        }
        owner.set(policy.name, display);
        policies.set(policy.name, policy);
      }
    }
  }
  if (policyProblems.length > 0) {
    problems.add('/policy_files', `${policyProblems.length} problem(s) in the policy files (listed below); no test can run against a broken policy`);
  }

  const cases: PreparedCase[] = [];
  spec.tests.forEach((tc, ti) => {
    const at = `/tests/${ti}`;
    const before = problems.list.length;

    // The policy under test.
    let policy: Policy | undefined;
    if (tc.policy !== undefined) {
      policy = policies.get(tc.policy);
      if (policy === undefined && policyProblems.length === 0) {
        problems.add(`${at}/policy`, `no policy named "${tc.policy}" in the policy files (they define: ${[...policies.keys()].join(', ') || 'none'})`);
      }
    } else if (policies.size === 1) {
      policy = [...policies.values()][0];
    } else if (policyProblems.length === 0) {
      problems.add(`${at}/name`, `the policy files define ${policies.size} policies (${[...policies.keys()].join(', ')}): name one in "policy"`);
    }

    // Times.
    const timezone = tc.timezone ?? DEFAULT_TIMEZONE;
    if (!isValidTimeZone(timezone)) problems.add(`${at}/timezone`, `"${timezone}" is not an IANA time zone (such as Europe/Budapest or UTC)`);
    let start = Date.parse(DEFAULT_START);
    if (tc.start !== undefined && isValidTimeZone(timezone)) {
      const t = parseTestTime(tc.start, timezone);
      if (t.ok) start = t.ms;
      else problems.add(`${at}/start`, t.message);
    }
    if (start % 1000 !== 0) problems.add(`${at}/start`, 'must be a whole second');

    // Expectations: each must be an evaluation instant at or after start.
    const expectations: PreparedCase['expectations'] = [];
    tc.expect.forEach((e, ei) => {
      const field = `${at}/expect/${ei}`;
      const expected: Partial<Record<ExpectedField, number | string>> = {};
      if (e.replicas !== undefined) expected.replicas = e.replicas;
      if (e.action !== undefined) expected.action = e.action;
      if (e.reason_code !== undefined) expected.reason_code = e.reason_code;
      if (Object.keys(expected).length === 0) problems.add(field, 'expects nothing: give at least one of replicas, action, reason_code');
      let offset: number | undefined;
      const written = String(e.at);
      if (typeof e.at === 'number') offset = e.at;
      else if (TIME_RE.test(e.at)) {
        if (!isValidTimeZone(timezone)) return;
        const t = parseTestTime(e.at, timezone);
        if (!t.ok) problems.add(`${field}/at`, t.message);
        else if (t.ms < start) problems.add(`${field}/at`, `${isoTime(t.ms)} is before the test's start ${isoTime(start)}`);
        else offset = (t.ms - start) / 1000;
      } else {
        offset = parseDuration(e.at);
        if (offset === undefined) problems.add(`${field}/at`, `"${e.at}" is neither a duration from start (such as 6m or 1h30m) nor a time (such as 2026-01-05T08:06:00Z)`);
      }
      if (offset === undefined || intervalSeconds < 1) return;
      if (offset % intervalSeconds !== 0) {
        const below = Math.floor(offset / intervalSeconds) * intervalSeconds;
        problems.add(
          `${field}/at`,
          `${written} is not an evaluation instant: evaluations run every ${formatDuration(intervalSeconds)} from start (the nearest are ${formatDuration(below)} and ${formatDuration(below + intervalSeconds)})`,
        );
        return;
      }
      if (offset / intervalSeconds >= MAX_EVALUATIONS) {
        problems.add(`${field}/at`, `${written} needs more than ${MAX_EVALUATIONS} evaluations at ${formatDuration(intervalSeconds)}; shorten the test or lengthen evaluation_interval`);
        return;
      }
      expectations.push({ index: ei, at: written, offset, expected });
    });

    // Input series: each query must be some rule's metric; every rule reading it gets its samples.
    const series = new Map<string, SeriesInput>();
    const seen = new Map<string, number>();
    (tc.input_series ?? []).forEach((s, si) => {
      const field = `${at}/input_series/${si}`;
      const earlier = seen.get(s.query);
      if (earlier !== undefined) {
        problems.add(`${field}/query`, `the same query is already given in input_series/${earlier}`);
        return;
      }
      seen.set(s.query, si);
      const rules = policy === undefined ? [] : queriedBy(policy).filter((r) => r.metric === s.query);
      if (policy !== undefined && rules.length === 0) {
        const metrics = [...new Set(queriedBy(policy).map((r) => r.metric))];
        problems.add(
          `${field}/query`,
          `matches no rule of policy ${policy.name}: a query must equal a rule's metric exactly (its rules read ${metrics.length > 0 ? metrics.map((q) => JSON.stringify(q)).join(', ') : 'nothing'})`,
        );
      }
      let values: SeriesValue[];
      try {
        values = expandSeries(String(s.values));
      } catch (err) {
        if (!(err instanceof ExpandingNotationError)) throw err;
        problems.add(`${field}/values`, err.message, { term: { text: err.term, index: err.index } });
        return;
      }
      const samples = scrapedSeries(values, start, intervalSeconds);
      for (const r of rules) series.set(observationKey(r, config.default_metric_source), samples);
    });

    if (problems.list.length === before && policy !== undefined) {
      cases.push({
        name: tc.name,
        policy,
        start,
        timezone,
        initialReplicas: tc.initial_replicas ?? policy.min_replicas,
        series,
        expectations,
      });
    }
  });

  const names = new Map<string, number>();
  spec.tests.forEach((tc, ti) => {
    const earlier = names.get(tc.name);
    if (earlier !== undefined) problems.add(`/tests/${ti}/name`, `"${tc.name}" is also the name of tests/${earlier}`);
    else names.set(tc.name, ti);
  });

  // In the order of the text, so a long list reads top to bottom; the policy files' own after.
  const ordered = [...problems.list].sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
  return { problems: [...ordered, ...policyProblems], intervalSeconds, cases };
}

/**
 * An input series as Prometheus would hold it after scraping it: value i is a sample at
 * start + i * interval, `_` is a scrape that gave nothing, `stale` a staleness marker. Judged
 * the way Prometheus answers queries (the latest sample within the 5-minute lookback, unless it
 * is a staleness marker), so a missed scrape does not break a window but a stopped series does
 * once its last sample is older than the lookback.
 */
function scrapedSeries(values: readonly SeriesValue[], startMs: number, intervalSeconds: number): PackedSeries {
  let n = 0;
  for (const v of values) if (v !== null) n++;
  const t = new Float64Array(n);
  const v = new Float64Array(n);
  const stale = new Uint8Array(n);
  let k = 0;
  values.forEach((value, i) => {
    if (value === null) return;
    t[k] = startMs + i * intervalSeconds * 1000;
    if (value === STALE) stale[k] = 1;
    else v[k] = value as number;
    k++;
  });
  return { kind: 'scraped', t, v, stale, length: n };
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

function describeRule(r: RuleRecord): string {
  const cond = `${r.metric} ${OPERATOR_SYMBOL[r.operator]} ${r.threshold}`;
  return r.window_seconds > 0 ? `${cond} for ${formatDuration(r.window_seconds)}` : cond;
}

function rulesAt(record: DecisionRecord): RuleAtInstant[] {
  return record.rules.map((r) => ({
    direction: r.direction,
    condition: describeRule(r),
    held: r.held,
    value: r.value,
    latest: r.latest,
    samples: r.samples,
    why: r.error ?? r.detail,
  }));
}

async function runCase(c: PreparedCase, intervalSeconds: number, config: ResolvedConfig): Promise<PolicyTestCaseResult> {
  const last = Math.max(0, ...c.expectations.map((e) => e.offset));
  const result = await replay(
    {
      policy: c.policy,
      from: new Date(c.start),
      to: new Date(c.start + last * 1000),
      intervalSeconds,
      initialReplicas: c.initialReplicas,
      defaultCooldown: config.default_cooldown,
      defaultSource: config.default_metric_source,
      price: c.policy.cost_per_replica_hour ?? config.prices[c.policy.target_type] ?? null,
      series: c.series,
    },
    { keepRecords: true },
  );
  const records = result.records ?? [];
  const failures: ExpectationFailure[] = [];
  for (const e of c.expectations) {
    const k = e.offset / intervalSeconds;
    const row = result.timeline[k];
    const record = records[k];
    if (row === undefined || record === undefined) throw new Error(`policy test "${c.name}": no evaluation ${k} in the replay`);
    const got: Record<ExpectedField, number | string> = { replicas: row.replicas, action: row.action, reason_code: row.reason_code };
    const mismatches: FieldMismatch[] = [];
    for (const field of ['replicas', 'action', 'reason_code'] as const) {
      const want = e.expected[field];
      if (want !== undefined && want !== got[field]) mismatches.push({ field, expected: want, got: got[field] });
    }
    if (mismatches.length === 0) continue;
    failures.push({
      index: e.index,
      at: e.at,
      time: isoTime(c.start + e.offset * 1000),
      local: c.timezone === 'UTC' ? null : localTime(c.start + e.offset * 1000, c.timezone),
      mismatches,
      replicas_before: row.replicas_before,
      replicas: row.replicas,
      action: row.action,
      reason_code: row.reason_code,
      reason: row.reason,
      rules: rulesAt(record),
    });
  }
  return {
    name: c.name,
    policy: c.policy.name,
    passed: failures.length === 0,
    evaluations: result.timeline.length,
    expectations: c.expectations.length,
    failures,
  };
}

/**
 * Runs one test file given as text; `file` names it and anchors its relative policy_files.
 * Policies are validated against the names of loaded plugins: `known` when given (a run of many
 * files loads the plugins once), else the plugins are loaded for this file as the daemon loads them.
 */
export async function runPolicyTestText(file: string, text: string, config: ResolvedConfig, known?: KnownNames): Promise<PolicyTestFileResult> {
  if (known === undefined) return withPlugins(config, undefined, (plugins) => runPolicyTestText(file, text, config, namesFromPlugins(plugins)));
  const prepared = await prepareFile(file, text, config, known);
  if (prepared.problems.length > 0) return { file, problems: prepared.problems, cases: [] };
  const cases: PolicyTestCaseResult[] = [];
  for (const c of prepared.cases) cases.push(await runCase(c, prepared.intervalSeconds, config));
  return { file, problems: [], cases };
}

/** Runs one test file from disk. */
export async function runPolicyTestFile(file: string, config: ResolvedConfig, known?: KnownNames): Promise<PolicyTestFileResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return { file, problems: [sameFileProblem(file, `cannot read the file: ${(err as Error).message}`)], cases: [] };
  }
  return runPolicyTestText(file, text, config, known);
}

/** Expands files and folders into test files: a file is taken as given; a folder gives its `*.test.yaml` / `*.test.yml`, recursively, sorted. */
export function collectTestFiles(paths: string[]): { files: string[]; missing: string[] } {
  const files: string[] = [];
  const missing: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir).sort()) {
      if (e.startsWith('.') || e === 'node_modules') continue;
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (TEST_FILE.test(e)) files.push(p);
    }
  };
  for (const p of paths) {
    if (!existsSync(p)) missing.push(p);
    else if (statSync(p).isDirectory()) walk(p);
    else files.push(p);
  }
  return { files, missing };
}

/**
 * `philotes-scaler test <files or folders...>`: runs every test file and returns whether all
 * passed, the text report and the structured results. Needs no daemon, database or network;
 * plugins are loaded once, as the daemon loads them (their logs go to `logger`, silent when absent).
 */
export async function runPolicyTestFiles(paths: string[], config: ResolvedConfig, logger?: Logger): Promise<PolicyTestRun> {
  return withPlugins(config, logger, (plugins) => runFiles(paths, config, namesFromPlugins(plugins)));
}

async function runFiles(paths: string[], config: ResolvedConfig, known: KnownNames): Promise<PolicyTestRun> {
  const { files, missing } = collectTestFiles(paths);
  const results: PolicyTestFileResult[] = missing.map((m) => ({ file: m, problems: [sameFileProblem(m, 'no such file or folder')], cases: [] }));
  if (files.length === 0 && missing.length === 0) {
    results.push({ file: paths.join(' ') || '.', problems: [sameFileProblem(paths.join(' ') || '.', 'no test files (*.test.yaml or *.test.yml) found')], cases: [] });
  }
  for (const f of files) results.push(await runPolicyTestFile(f, config, known));
  const cases = results.flatMap((r) => r.cases);
  const passed = cases.filter((c) => c.passed).length;
  const failed = cases.length - passed;
  const errors = results.filter((r) => r.problems.length > 0).length;
  return { ok: failed === 0 && errors === 0, text: formatResults(results), results, passed, failed, errors };
}

// ---------------------------------------------------------------------------------------------
// Text output
// ---------------------------------------------------------------------------------------------

function show(v: number | string | null): string {
  return v === null ? 'none' : String(v);
}

/**
 * The CLI's report: per file, `PASS name` / `FAIL name` (with an indented diff for each failed
 * expectation) or `ERROR file:line:col field message` for a file that could not run; then
 * `N passed, N failed`.
 */
export function formatResults(results: PolicyTestFileResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    lines.push(r.file);
    for (const p of r.problems) lines.push(`  ERROR ${formatProblem(p)}`);
    for (const c of r.cases) {
      lines.push(`  ${c.passed ? 'PASS' : 'FAIL'} ${c.name}`);
      for (const f of c.failures) {
        lines.push(`      at ${f.at} (${f.time}${f.local !== null ? `, ${f.local}` : ''}), expect[${f.index}]:`);
        const width = Math.max(...f.mismatches.map((m) => m.field.length)) + 1;
        for (const m of f.mismatches) lines.push(`        ${`${m.field}:`.padEnd(width)} expected ${show(m.expected)}, got ${show(m.got)}`);
        lines.push(`        decision: ${f.action} / ${f.reason_code}, ${f.replicas_before} -> ${f.replicas} replicas`);
        lines.push(`        reason: ${f.reason}`);
        for (const rule of f.rules) {
          const dir = rule.direction === 'scale_up' ? 'up  ' : 'down';
          const verdict = rule.held ? 'held' : 'not held';
          const why = !rule.held && rule.why !== null ? `: ${rule.why}` : '';
          lines.push(`        ${dir} ${rule.condition}: ${verdict}, value ${show(rule.value)} (${rule.samples} sample${rule.samples === 1 ? '' : 's'})${why}`);
        }
      }
    }
  }
  const cases = results.flatMap((r) => r.cases);
  const passed = cases.filter((c) => c.passed).length;
  const errors = results.filter((r) => r.problems.length > 0).length;
  lines.push(`${passed} passed, ${cases.length - passed} failed${errors > 0 ? `, ${errors} test file${errors === 1 ? '' : 's'} with errors` : ''}`);
  return `${lines.join('\n')}\n`;
}
