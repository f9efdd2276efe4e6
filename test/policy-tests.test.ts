/**
 * Policy unit tests (`philotes-scaler test`): the shipped example tests must pass, promtool's
 * expanding notation must mean what it means in promtool, and a wrong expectation or a broken
 * test file must say exactly where and what.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';

/** A tap subtest (the callback parameter of t.test). */
type Test = Parameters<Parameters<typeof t.test>[0]>[0];
import { loadConfig } from '../src/config/config.js';
import { ExpandingNotationError, expandSeries, STALE, type SeriesValue } from '../src/policy-tests/expanding-notation.js';
import { parseTestTime, runPolicyTestFiles, runPolicyTestText, type PolicyTestFileResult } from '../src/policy-tests/policy-test-runner.js';
import { packageRoot } from '../src/util/package-root.js';

const config = loadConfig({ env: {}, cwd: tmpdir() });
const ROOT = packageRoot();
const EXAMPLES = join(ROOT, 'test', 'policy-tests');
const CDC = join(ROOT, 'policies', 'cdc-worker.yaml');
const TRINO = join(ROOT, 'policies', 'trino.yaml');
const LAG = 'max(philotes_cdc_lag_seconds)';

function scratch(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ps-policy-tests-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ---------------------------------------------------------------------------------------------
// The shipped examples
// ---------------------------------------------------------------------------------------------

t.test('every example in test/policy-tests passes', async (t) => {
  const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.test.yaml'));
  t.same(files.sort(), ['cdc-worker.test.yaml', 'nightly-batch.test.yaml', 'trino.test.yaml'], 'one example file per shipped policy');
  const run = await runPolicyTestFiles([EXAMPLES], config);
  if (!run.ok) t.comment(run.text);
  t.ok(run.ok, 'the run is ok');
  t.equal(run.errors, 0, 'no file has problems');
  t.equal(run.failed, 0, 'no case failed');
  t.equal(run.passed, 16, 'all 16 cases ran');
  for (const r of run.results) {
    t.same(r.problems, [], `${r.file}: no problems`);
    for (const c of r.cases) t.ok(c.passed, `${r.file}: ${c.name}`);
  }
  t.match(run.text, /^16 passed, 0 failed\n$/m);
});

t.test('the policy test in docs/examples (docs/target-tracking.md) passes, case by case', async (t) => {
  const run = await runPolicyTestFiles([join(packageRoot(), 'docs', 'examples')], config);
  if (!run.ok) t.comment(run.text);
  t.equal(run.errors, 0, 'no file has problems');
  t.ok(run.passed >= 1, `${run.passed} cases ran`);
  t.equal(run.failed, 0, 'no case failed');
});

// ---------------------------------------------------------------------------------------------
// Expanding notation
// ---------------------------------------------------------------------------------------------

const _ = null;
const NOTATION: Array<[string, SeriesValue[], string]> = [
  // The examples of the promtool documentation (unit testing rules, <series>).
  ['-2+4x3', [-2, 2, 6, 10], 'a+bxn: a, then n further values incrementing by b'],
  [' 1-2x4', [1, -1, -3, -5, -7], 'a-bxn: decrementing'],
  [' 1x4', [1, 1, 1, 1, 1], 'axn is a+0xn: n+1 values'],
  [' 1 _x3 stale', [1, _, _, _, STALE], '_xn is n missing values (not n+1); stale is a staleness marker'],
  ['1+0x6 0 0 0 0 0 0 0 0', [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0], 'doc example: up{node_exporter}'],
  ['10+10x2 30+20x5', [10, 20, 30, 30, 50, 70, 90, 110, 130], 'doc example: go_goroutines{prometheus}'],
  ['10+10x7 10+30x4', [10, 20, 30, 40, 50, 60, 70, 80, 10, 40, 70, 100, 130], 'doc example: go_goroutines{node_exporter}'],
  // Single values and specials.
  ['5', [5], 'a plain number'],
  ['_', [_], 'one missing sample'],
  ['_x0', [], '_x0 is nothing'],
  ['1x0', [1], 'axn with n = 0 is one value'],
  ['1+5x0', [1], 'a+bx0 is one value'],
  ['stale 2', [STALE, 2], 'stale is a staleness marker, distinct from a missing sample'],
  ['', [], 'an empty string has no values'],
  ['  1\t2\r3  \n', [1, 2, 3], 'spaces, tabs and carriage returns separate terms; a line break may end the string'],
  // Signs, decimals, scientific notation.
  ['+3 -4 .5 7.', [3, -4, 0.5, 7], 'signed and bare-point decimals'],
  ['-1.5-0.5x2', [-1.5, -2, -2.5], 'negative start, decimal step'],
  ['2.5e-1+0.5x2', [0.25, 0.75, 1.25], 'scientific start'],
  ['1e-2x2', [0.01, 0.01, 0.01], 'an exponent sign is not a step: 1e-2 repeated'],
  ['1e+2+1x1', [100, 101], 'exponent with + sign, then a step'],
  ['1E3-1e2x2', [1000, 900, 800], 'capital E; scientific step'],
  ['0x3', [0, 0, 0, 0], 'no hexadecimal, as in promtool: 0 repeated'],
  ['Inf -Inf +inf', [Infinity, -Infinity, Infinity], 'infinities'],
  ['0.1+0.1x2', [0.1, 0.2, 0.1 + 0.1 + 0.1], 'the step is added n times, as promtool does'],
  ['1 _ 3 _x2 5+1x1', [1, _, 3, _, _, 5, 6], 'terms mix'],
];

t.test('expanding notation: a table of terms and their values', async (t) => {
  for (const [text, want, why] of NOTATION) t.same(expandSeries(text), want, `${JSON.stringify(text)}: ${why}`);
  const nan = expandSeries('NaN nan+1x1');
  t.equal(nan.length, 3);
  t.ok(nan.every((v) => v !== null && Number.isNaN(v)), 'NaN is a value (a rule reading it does not hold), not a missing sample');
});

const BAD_TERMS: Array<[string, string, number, RegExp]> = [
  ['abc', 'abc', 0, /expected a number/],
  ['1 2 1+x3', '1+x3', 2, /expected a number/],
  ['1+2x', '1+2x', 0, /followed by a count/],
  ['1+2x1.5', '1+2x1.5', 0, /whole number/],
  ['1+2x-3', '1+2x-3', 0, /whole number/],
  ['_+1x3', '_+1x3', 0, /missing sample cannot increment/],
  ['stalex3', 'stalex3', 0, /"stale" cannot be expanded/],
  ['1 0xff', '0xff', 1, /hexadecimal/],
  ['1++2x3', '1++2x3', 0, /expected a number/],
  ['5 1x2000000', '1x2000000', 1, /more than 1000000 values/],
  ['1 2\n3', '3', 2, /line break/],
  ['Infx2', 'Infx2', 0, /Inf and NaN cannot be followed by x/],
  ['1 -nanx0', '-nanx0', 1, /Inf and NaN cannot be followed by x/],
  ['1+Infx2', '1+Infx2', 0, /Inf and NaN cannot be a step/],
  ['1e999', '1e999', 0, /out of range/],
  ['1 1+1e309x2', '1+1e309x2', 1, /out of range/],
  ['1_000', '1_000', 0, /underscores/],
  ['1\u00a02', '1\u00a02', 0, /unexpected character U\+00A0/],
  ['1 #x', '#x', 1, /unexpected character "#"/],
  ['1+1', '1+1', 0, /a step needs a count/],
  ['1e', '1e', 0, /exponent needs digits/],
  ['1x1e2', '1x1e2', 0, /whole number/],
  ['Stale', 'Stale', 0, /expected a number/],
];

t.test('expanding notation: an error names the bad term and its position', async (t) => {
  for (const [text, term, index, why] of BAD_TERMS) {
    try {
      expandSeries(text);
      t.fail(`${JSON.stringify(text)} should not parse`);
    } catch (err) {
      t.ok(err instanceof ExpandingNotationError, `${text}: an ExpandingNotationError`);
      const e = err as ExpandingNotationError;
      t.equal(e.term, term, `${text}: names the term`);
      t.equal(e.index, index, `${text}: and its index`);
      t.match(e.message, `term ${index + 1} "${term}"`, `${text}: the message quotes it`);
      t.match(e.message, why, `${text}: and says why`);
    }
  }
});

// The promtool table: every row was produced by running promtool 2.42 (`promtool test rules` on
// a one-series test, the term followed by a sentinel value, with one promql_expr_test per step to
// read the values back). REJECTED: promtool reports a parse error. Otherwise the values promtool
// loaded, in order (_ a missing sample; promtool's stale marker is STALE here). Notable: Inf and
// NaN cannot take x (`Infx2` is read as a name) nor be a step; numbers too large for a float
// (`1e309`) are errors; a leading 0 makes an octal integer (`010` is 8); `0x3` is 0 repeated.
const REJECTED = 'rejected';
const PROMTOOL: Array<[string, SeriesValue[] | typeof REJECTED]> = [
  ["Inf", [Infinity]],
  ["inf", [Infinity]],
  ["INF", [Infinity]],
  ["iNf", [Infinity]],
  ["+Inf", [Infinity]],
  ["-Inf", [-Infinity]],
  ["-inf", [-Infinity]],
  ["NaN", [NaN]],
  ["nan", [NaN]],
  ["NAN", [NaN]],
  ["nAn", [NaN]],
  ["+NaN", [NaN]],
  ["-NaN", [NaN]],
  ["Infinity", REJECTED],
  ["-Infinity", REJECTED],
  ["infinity", REJECTED],
  ["Infx2", REJECTED],
  ["NaNx2", REJECTED],
  ["-Infx2", REJECTED],
  ["+Infx2", REJECTED],
  ["infx0", REJECTED],
  ["Inf+1x2", [Infinity, Infinity, Infinity]],
  ["NaN+1x2", [NaN, NaN, NaN]],
  ["Inf-1x2", [Infinity, Infinity, Infinity]],
  ["-Inf+1x1", [-Infinity, -Infinity]],
  ["Inf+0x2", [Infinity, Infinity, Infinity]],
  ["1+Infx2", REJECTED],
  ["1-Infx2", REJECTED],
  ["1+NaNx2", REJECTED],
  ["1+Inf", REJECTED],
  ["1+Inf x2", REJECTED],
  ["Inf_", REJECTED],
  ["Inf1", REJECTED],
  ["1e308", [1e+308]],
  ["1e309", REJECTED],
  ["-1e309", REJECTED],
  ["1e999", REJECTED],
  ["-1e999", REJECTED],
  ["+1e999", REJECTED],
  ["1.7976931348623157e308", [1.7976931348623157e+308]],
  ["1.7976931348623158e308", [1.7976931348623157e+308]],
  ["1.8e308", REJECTED],
  ["1e-400", [0]],
  ["5e-324", [5e-324]],
  ["1e-324", [0]],
  ["1e309x2", REJECTED],
  ["1+1e309x2", REJECTED],
  ["1e308+1e308x2", [1e+308, Infinity, Infinity]],
  ["1e999+1x2", REJECTED],
  ["-1e308-1e308x2", [-1e+308, -Infinity, -Infinity]],
  ["0x1F", REJECTED],
  ["0x3", [0, 0, 0, 0]],
  ["0X3", REJECTED],
  ["0xff", REJECTED],
  ["0x", REJECTED],
  ["0x0", [0]],
  ["0x1f", REJECTED],
  ["1x", REJECTED],
  ["0xA", REJECTED],
  ["010", [8]],
  ["0755", [493]],
  ["08", [8]],
  ["09", [9]],
  ["-010", [-8]],
  ["+010", [8]],
  ["010.5", [10.5]],
  ["010e1", [100]],
  ["00", [0]],
  ["0010", [8]],
  ["1+010x2", [1, 9, 17]],
  ["010x2", [8, 8, 8]],
  ["1x010", [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
  ["010+1x1", [8, 9]],
  ["0.5", [0.5]],
  ["00.5", [0.5]],
  ["9007199254740993", [9007199254740992]],
  ["99999999999999999999", [100000000000000000000]],
  ["0b11", REJECTED],
  ["0o17", REJECTED],
  ["0_1", REJECTED],
  ["1_000", REJECTED],
  ["1_0x2", REJECTED],
  ["_1", REJECTED],
  ["__", REJECTED],
  ["_x2", [_, _]],
  ["_x0", []],
  ["_x1", [_]],
  ["_+1x2", REJECTED],
  ["_-1x2", REJECTED],
  ["_x", REJECTED],
  ["_1x2", REJECTED],
  ["-_", REJECTED],
  ["_x-1", REJECTED],
  ["_x1.5", REJECTED],
  ["_x1e1", REJECTED],
  ["_X2", REJECTED],
  ["_x010", [_, _, _, _, _, _, _, _, _, _]],
  ["+1", [1]],
  ["+1+1x2", [1, 2, 3]],
  ["-1", [-1]],
  ["--1", REJECTED],
  ["+-1", REJECTED],
  ["-+1", REJECTED],
  ["1++1x2", REJECTED],
  ["1--1x2", REJECTED],
  ["1+-1x2", REJECTED],
  ["1-+1x2", REJECTED],
  ["-", REJECTED],
  ["+", REJECTED],
  ["+.5", [0.5]],
  ["-.5x1", [-0.5, -0.5]],
  [".5", [0.5]],
  ["5.", [5]],
  ["5.e3", [5000]],
  [".5e1", [5]],
  [".", REJECTED],
  [".e1", REJECTED],
  ["1.2.3", REJECTED],
  ["1..2", REJECTED],
  [".5x2", [0.5, 0.5, 0.5]],
  ["5.x2", [5, 5, 5]],
  ["1+.5x2", [1, 1.5, 2]],
  ["1+5.x2", [1, 6, 11]],
  ["1+5.e1x1", [1, 51]],
  ["1e5x2", [100000, 100000, 100000]],
  ["1e", REJECTED],
  ["1e+", REJECTED],
  ["1e-", REJECTED],
  ["1E5", [100000]],
  ["1e+5", [100000]],
  ["1e-5x2", [0.00001, 0.00001, 0.00001]],
  ["1e5+1e5x1", [100000, 200000]],
  ["1e1.5", REJECTED],
  ["1ex2", REJECTED],
  ["1e+x2", REJECTED],
  ["1E-1x1", [0.1, 0.1]],
  ["1x0", [1]],
  ["1+1x0", [1]],
  ["1x-1", REJECTED],
  ["1x+1", REJECTED],
  ["1x1.5", REJECTED],
  ["1x1e2", REJECTED],
  ["1x03", [1, 1, 1, 1]],
  ["1+1x", REJECTED],
  ["1+1", REJECTED],
  ["1-1", REJECTED],
  ["1x2x3", REJECTED],
  ["1xx2", REJECTED],
  ["1X2", REJECTED],
  ["1+1X2", REJECTED],
  ["1x 2", REJECTED],
  ["1 x2", REJECTED],
  ["x2", REJECTED],
  ["x", REJECTED],
  ["1+1x1e1", REJECTED],
  ["stale", [STALE]],
  ["Stale", REJECTED],
  ["STALE", REJECTED],
  ["stalex2", REJECTED],
  ["staley", REJECTED],
  ["stale_", REJECTED],
  ["-stale", REJECTED],
  ["+stale", REJECTED],
  ["1+stalex2", REJECTED],
  ["stale x2", REJECTED],
  ["stalex0", REJECTED],
  ["stale_x2", REJECTED],
  ["abc", REJECTED],
  ["1a", REJECTED],
  ["1e5a", REJECTED],
  ["\u00e9", REJECTED],
  ["1,2", REJECTED],
  ["1;2", REJECTED],
  ["(1)", REJECTED],
  ["1\t2", [1, 2]],
  ["1\n2", REJECTED],
  ["1\u00a02", REJECTED],
  ["1\r2", [1, 2]],
  ["1\u000b2", REJECTED],
  ["1\f2", REJECTED],
  ["  1  ", [1]],
  ["", []],
  ["   ", []],
  ["Inf Inf", [Infinity, Infinity]],
  ["1+1x2 x3", REJECTED],
  ["-Inf-1x2", [-Infinity, -Infinity, -Infinity]],
  ["+NaN+1x1", [NaN, NaN]],
  ["\t1", [1]],
  ["\r1", [1]],
  ["1\t\t2", [1, 2]],
  ["Inf+.5x1", [Infinity, Infinity]],
  ["1+inf", REJECTED],
  ["0x3x2", REJECTED],
  ["00x2", [0, 0, 0]],
  ["0755x1", [493, 493]],
  ["07777777777777777777777", [7.777777777777777e+21]],
  ["0777777777777777777777", [9223372036854776000]],
  ["01000000000000000000000", [1e+21]],
  ["0777777777777777777776", [9223372036854776000]],
  ["-0", [-0]],
  ["0.0", [0]],
  ["1e+308+1e308x1", [1e+308, Infinity]],
  ["1.797693134862315708e308", [1.7976931348623157e+308]],
  ["1.797693134862315807937289714053e308", [1.7976931348623157e+308]],
  ["1.797693134862315807937289714054e308", REJECTED],
  ["2e-324", [0]],
  ["3e-324", [5e-324]],
  ["NaN+Inf", REJECTED],
  ["-nan-1x1", [NaN, NaN]],
  ["1+NaN x1", REJECTED],
  ["_ _x2 1", [_, _, _, 1]],
  ["1x2+1x3", REJECTED],
  ["1+1x2+1x3", REJECTED],
  ["1.e5", [100000]],
  ["1.e5x1", [100000, 100000]],
  ["-.5-.5x2", [-0.5, -1, -1.5]],
  // Line breaks (these rows without the sentinel): one may only end the values.
  ["1\n", [1]],
  ["1 \n", [1]],
  ["1 2\t\n", [1, 2]],
  ["1\r\n", [1]],
  ["1\n ", [1]],
  ["\n", []],
  ["\n\n", []],
  ["\n1", REJECTED],
  ["1 2\n3", REJECTED],
];

// Where this reader refuses on purpose what promtool 2.42 takes, with what promtool makes of it.
const DELIBERATE: Array<[string, string]> = [
  ['stale+1x2', 'promtool: a stale marker, then NaN NaN'],
  ['stale-1x2', 'promtool: a stale marker, then NaN NaN'],
  ['1\n\n2', 'promtool: 1 (what follows a blank line is ignored)'],
  ['1 2\n\n3 4', 'promtool: 1 2'],
  ['1\n#x', 'promtool: 1 (a # after a line break starts a comment)'],
  ['1x2000000', 'promtool: 2000001 values (1x1e18 never finishes); here at most 1000000'],
];

const sameValue = (a: SeriesValue, b: SeriesValue): boolean => Object.is(a, b);

t.test('expanding notation: accepts exactly what promtool 2.42 accepts, with the same values', async (t) => {
  for (const [text, want] of PROMTOOL) {
    const label = JSON.stringify(text);
    if (want === REJECTED) {
      t.throws(() => expandSeries(text), ExpandingNotationError, `${label}: rejected, as by promtool`);
      continue;
    }
    let got: SeriesValue[] | undefined;
    t.doesNotThrow(() => {
      got = expandSeries(text);
    }, `${label}: accepted, as by promtool`);
    if (got === undefined) continue;
    const ok = got.length === want.length && got.every((v, i) => sameValue(v, want[i] as SeriesValue));
    t.ok(ok, `${label}: ${JSON.stringify(want.map(String))}`, { got: got.map(String), want: want.map(String) });
  }
  for (const [text, promtool] of DELIBERATE) {
    t.throws(() => expandSeries(text), ExpandingNotationError, `${JSON.stringify(text)} is an error here (${promtool})`);
  }
});

t.test('expanding notation: stale is a staleness marker, _ a missing sample', async (t) => {
  const values = expandSeries('1 _ stale _x2 stale');
  t.same(values.map((v) => (v === STALE ? 'stale' : v === null ? '_' : v)), [1, '_', 'stale', '_', '_', 'stale']);
  t.equal(String(STALE), 'stale');
  t.not(STALE as unknown, null);
});

// ---------------------------------------------------------------------------------------------
// Times
// ---------------------------------------------------------------------------------------------

t.test('times: offsets, wall-clock times in a zone, daylight saving', async (t) => {
  const at = (text: string, zone = 'UTC') => {
    const r = parseTestTime(text, zone);
    return r.ok ? new Date(r.ms).toISOString() : r.message;
  };
  t.equal(at('2026-01-05T08:00:00Z'), '2026-01-05T08:00:00.000Z');
  t.equal(at('2026-01-05T08:00:00+01:00', 'America/New_York'), '2026-01-05T07:00:00.000Z', 'an explicit offset wins over the zone');
  t.equal(at('2026-01-05T08:00-0130'), '2026-01-05T09:30:00.000Z');
  t.equal(at('2026-01-05T08:00', 'Europe/Budapest'), '2026-01-05T07:00:00.000Z', 'CET in winter');
  t.equal(at('2026-07-06 08:00:00', 'Europe/Budapest'), '2026-07-06T06:00:00.000Z', 'CEST in summer; a space for T');
  t.equal(at('2026-10-25T02:30:00', 'Europe/Budapest'), '2026-10-25T00:30:00.000Z', 'a repeated wall-clock time is the earlier');
  t.match(at('2026-03-29T02:30:00', 'Europe/Budapest'), /does not exist in Europe\/Budapest/, 'a skipped wall-clock time is an error');
  t.match(at('2026-02-30T00:00:00Z'), /not a valid date/);
  t.match(at('yesterday'), /not a time/);
});

t.test('input series are read as Prometheus answers them: 5-minute lookback, staleness markers end a series', async (t) => {
  const dir = scratch();
  const policyFile = join(dir, 'load.yaml');
  writeFileSync(
    policyFile,
    'name: load\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: 1000\ncooldown_seconds: 0\n' +
      'scale_up_rules:\n  - metric: max(load)\n    operator: gt\n    threshold: 60\n    duration: 5m\n    scale_by: 1\n',
  );
  /** The reason code at every minute from 5m to 2h for a series, by minute. */
  const codes = async (values: string): Promise<Map<number, string>> => {
    const minutes = Array.from({ length: 116 }, (_, i) => i + 5);
    const text = `policy_files: [${policyFile}]
evaluation_interval: 1m
tests:
  - name: every minute
    start: 2026-01-05T06:00:00Z
    input_series:
      - query: max(load)
        values: '${values}'
    expect:
${minutes.map((m) => `      - at: ${m}m\n        reason_code: rules_held\n`).join('')}`;
    const r = await runText(text);
    t.same(r.problems, [], `${values}: no problems`);
    const out = new Map<number, string>(minutes.map((m) => [m, 'rules_held']));
    for (const f of r.cases[0]?.failures ?? []) out.set(Number.parseInt(f.at, 10), f.reason_code);
    return out;
  };
  const notHeld = (m: Map<number, string>): number[] => [...m].filter(([, c]) => c !== 'rules_held').map(([k]) => k);

  // promtool keeps a `for: 5m` alert firing across one `_`; so does Prometheus's lookback.
  t.same(notHeld(await codes('70x59 _ 70x59')), [], 'one missed scrape: held at every minute from 5m to 2h');
  t.same(notHeld(await codes('70x59 _x5 70x59')), [], 'five missed scrapes: the sample at 59m still answers at 64m (exactly 5 minutes old)');
  t.same(
    notHeld(await codes('70x59 _x6 70x59')),
    [65, 66, 67, 68, 69, 70],
    'six missed scrapes: 65m has no value, so every window containing it (65m to 70m) does not hold',
  );
  t.same(notHeld(await codes('70x59 stale 70x59')), [60, 61, 62, 63, 64, 65], 'a staleness marker at 60m ends the series at once: windows containing 60m do not hold');
  const gap = await codes('70x59 _x6 70x59');
  t.equal(gap.get(65), 'no_rule_held', 'a gap is no_rule_held, not a metric error');
});

t.test('a window shorter than half the interval holds in a policy test (gt 60 for 10s at 30s on a constant 61)', async (t) => {
  const dir = scratch();
  const policyFile = join(dir, 'short.yaml');
  writeFileSync(
    policyFile,
    'name: short\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: 1000\ncooldown_seconds: 0\n' +
      'scale_up_rules:\n  - metric: max(load)\n    operator: gt\n    threshold: 60\n    duration: 10s\n    scale_by: 1\n',
  );
  const text = `policy_files: [${policyFile}]
evaluation_interval: 30s
tests:
  - name: short window
    start: 2026-01-05T06:00:00Z
    initial_replicas: 1
    input_series:
      - query: max(load)
        values: '61x10'
    expect:
      - at: 0s
        replicas: 1
        reason_code: no_rule_held
      - at: 30s
        replicas: 2
        action: scale_up
        reason_code: rules_held
      - at: 5m
        replicas: 11
        reason_code: rules_held
`;
  const r = await runText(text);
  t.same(r.problems, []);
  t.same(r.cases[0]?.failures, [], 'no value before start at 0s; from 30s on, 61 at t-10s (the sample at t-30s, within the lookback) and at t');
});

// ---------------------------------------------------------------------------------------------
// Failures and broken test files
// ---------------------------------------------------------------------------------------------

const lagTest = (expect: string, extra = ''): string => `policy_files: [${CDC}]
evaluation_interval: 30s
tests:
  - name: lag scales up
    start: 2026-01-05T09:00:00Z
    initial_replicas: 2
${extra}    input_series:
      - query: ${LAG}
        values: '120x20'
    expect:
${expect}`;

async function runText(text: string, name = 'case.test.yaml'): Promise<PolicyTestFileResult> {
  const dir = scratch();
  const file = join(dir, name);
  writeFileSync(file, text);
  return runPolicyTestText(file, text, config);
}

t.test('a wrong expectation fails with a diff naming the field, what was expected and what came', async (t) => {
  const dir = scratch();
  const file = join(dir, 'wrong.test.yaml');
  writeFileSync(file, lagTest('      - at: 5m\n        replicas: 4\n      - at: 5m30s\n        replicas: 6\n        action: scale_up\n        reason_code: rules_held\n'));
  const run = await runPolicyTestFiles([file], config);
  t.equal(run.ok, false);
  t.equal(run.failed, 1);
  t.equal(run.passed, 0);
  const c = run.results[0]?.cases[0];
  t.equal(c?.passed, false);
  t.equal(c?.failures.length, 1, 'the first expectation held; only the second failed');
  const f = c?.failures[0];
  t.equal(f?.index, 1);
  t.equal(f?.time, '2026-01-05T09:05:30Z');
  t.same(f?.mismatches, [
    { field: 'replicas', expected: 6, got: 4 },
    { field: 'action', expected: 'scale_up', got: 'none' },
    { field: 'reason_code', expected: 'rules_held', got: 'cooldown' },
  ]);
  t.match(f?.reason, /cooldown holds 4/);
  t.match(f?.rules, [
    { direction: 'scale_up', condition: `${LAG} > 60 for 5m`, held: true, value: 120 },
    { direction: 'scale_down', condition: `${LAG} < 10 for 10m`, held: false },
  ]);

  t.match(run.text, `FAIL lag scales up\n`);
  t.match(run.text, 'at 5m30s (2026-01-05T09:05:30Z), expect[1]:');
  t.match(run.text, /replicas: +expected 6, got 4/);
  t.match(run.text, /action: +expected scale_up, got none/);
  t.match(run.text, /reason_code: +expected rules_held, got cooldown/);
  t.match(run.text, /reason: Rules wanted 6 .* but cooldown holds 4/);
  t.match(run.text, `up   ${LAG} > 60 for 5m: held, value 120`);
  t.match(run.text, `down ${LAG} < 10 for 10m: not held`);
  t.match(run.text, /\n0 passed, 1 failed\n$/);
});

t.test('a passing file reports PASS and the summary', async (t) => {
  const r = await runText(lagTest('      - at: 5m\n        replicas: 4\n        action: scale_up\n'));
  t.same(r.problems, []);
  t.equal(r.cases[0]?.passed, true);
  t.equal(r.cases[0]?.evaluations, 11, 'evaluations run from start to the last expectation');
});

/** The problems of a broken test file (which must run no test). */
async function problemsOf(t: Test, text: string): Promise<Array<{ line: number | null; column: number | null; field: string; message: string }>> {
  const r = await runText(text);
  t.same(r.cases, [], 'a broken file runs no test');
  return r.problems.map((p) => ({ line: p.line, column: p.column, field: p.field, message: p.message }));
}

t.test('broken test files: every problem names the file, the field and the line', async (t) => {
  t.test('bad YAML', async (t) => {
    const ps = await problemsOf(t, 'policy_files: [a.yaml\ntests: []\n');
    t.ok(ps.length > 0);
    t.match(ps[0], { line: Number, column: Number, message: /^YAML syntax/ });
  });

  t.test('duplicate keys are YAML errors', async (t) => {
    const ps = await problemsOf(t, `policy_files: [${CDC}]\npolicy_files: [${CDC}]\ntests: []\n`);
    t.match(ps[0], { line: 2, message: /YAML syntax/ });
  });

  t.test('an unknown key', async (t) => {
    const ps = await problemsOf(t, lagTest('      - at: 5m\n        replica: 4\n'));
    t.same(ps, [{ line: 12, column: 9, field: '/tests/0/expect/0/replica', message: 'is not a known property (did you mean replicas?)' }]);
  });

  t.test('a missing required key and a wrong type', async (t) => {
    const ps = await problemsOf(t, `policy_files: [${CDC}]\ntests:\n  - name: x\n    initial_replicas: two\n`);
    t.match(ps, [
      { field: '/tests/0/expect', message: 'is required' },
      { field: '/tests/0/initial_replicas', line: 4, column: 23, message: /integer/ },
    ]);
  });

  t.test('a query that matches no rule', async (t) => {
    const ps = await problemsOf(t, lagTest('      - at: 5m\n        replicas: 4\n').replace(`query: ${LAG}`, 'query: max(philotes_cdc_lag_seconds{source="orders"})'));
    t.equal(ps.length, 1);
    t.match(ps[0], { line: 8, column: 16, field: '/tests/0/input_series/0/query', message: /matches no rule of policy cdc-worker-autoscaling.*max\(philotes_cdc_lag_seconds\)/ });
  });

  t.test('a bad term in values points at the term', async (t) => {
    const ps = await problemsOf(t, lagTest('      - at: 5m\n        replicas: 4\n').replace("'120x20'", "'1 2 3+x4 5'"));
    t.same(ps, [{ line: 9, column: 22, field: '/tests/0/input_series/0/values', message: 'term 3 "3+x4": expected a number, a+bxN, a-bxN, axN, _, _xN or stale' }]);
  });

  t.test('an expectation between two evaluations', async (t) => {
    const ps = await problemsOf(t, lagTest('      - at: 5m10s\n        replicas: 4\n'));
    t.same(ps, [{ line: 11, column: 13, field: '/tests/0/expect/0/at', message: '5m10s is not an evaluation instant: evaluations run every 30s from start (the nearest are 5m and 5m30s)' }]);
  });

  t.test('an expectation before start, an unreadable at, an empty expectation', async (t) => {
    const ps = await problemsOf(t, lagTest('      - at: 2026-01-05T08:59:30Z\n        replicas: 4\n      - at: soon\n        replicas: 4\n      - at: 1m\n'));
    t.match(ps, [
      { field: '/tests/0/expect/0/at', message: /before the test's start 2026-01-05T09:00:00Z/ },
      { field: '/tests/0/expect/1/at', message: /"soon" is neither a duration/ },
      { field: '/tests/0/expect/2', line: 15, message: /expects nothing/ },
    ]);
  });

  t.test('a bad time zone, a skipped wall-clock time, a bad interval', async (t) => {
    const tz = await problemsOf(t, lagTest('      - at: 5m\n        replicas: 4\n', '    timezone: Europe/Atlantis\n'));
    t.match(tz, [{ field: '/tests/0/timezone', line: 7, message: /not an IANA time zone/ }]);
    const gap = await problemsOf(t, 
      lagTest('      - at: 5m\n        replicas: 4\n', '    timezone: Europe/Budapest\n').replace('start: 2026-01-05T09:00:00Z', 'start: 2026-03-29T02:30:00'),
    );
    t.match(gap, [{ field: '/tests/0/start', line: 5, message: /does not exist in Europe\/Budapest/ }]);
    const interval = await problemsOf(t, lagTest('      - at: 5m\n        replicas: 4\n').replace('evaluation_interval: 30s', 'evaluation_interval: 0s'));
    t.match(interval, [{ field: '/evaluation_interval', line: 2, message: /at least 1s/ }]);
  });

  t.test('policy files: missing, broken, several policies without a name, an unknown name', async (t) => {
    const missing = await problemsOf(t, lagTest('      - at: 5m\n        replicas: 4\n').replace(CDC, 'nowhere.yaml'));
    t.match(missing, [{ field: '/policy_files/0', line: 1, message: /no such file or folder: .*nowhere\.yaml/ }]);

    const dir = scratch();
    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, 'name: broken\ntarget_type: cdc-worker\nmin_replicas: 3\nmax_replicas: 2\n');
    const r = await runText(lagTest('      - at: 5m\n        replicas: 4\n').replace(CDC, broken));
    t.match(r.problems, [
      { file: /case\.test\.yaml$/, field: '/policy_files', message: /1 problem\(s\) in the policy files/ },
      { file: /broken\.yaml$/, line: 3, field: '/min_replicas', message: /max_replicas/ },
    ]);

    const two = await problemsOf(t, lagTest('      - at: 5m\n        replicas: 4\n').replace(`[${CDC}]`, `[${CDC}, ${TRINO}]`));
    t.match(two, [{ field: '/tests/0/name', message: /define 2 policies \(cdc-worker-autoscaling, trino-workers\): name one in "policy"/ }]);

    const unknown = await problemsOf(t, lagTest('      - at: 5m\n        replicas: 4\n', '    policy: cdc-workers\n'));
    t.match(unknown, [{ field: '/tests/0/policy', line: 7, message: /no policy named "cdc-workers".*cdc-worker-autoscaling/ }]);
  });

  t.test('duplicate test names and queries', async (t) => {
    const text = lagTest('      - at: 5m\n        replicas: 4\n').replace(`        values: '120x20'\n`, `        values: '120x20'\n      - query: ${LAG}\n        values: '1'\n`);
    const ps = await problemsOf(t, `${text}${text.slice(text.indexOf('  - name'))}`);
    t.match(ps, [
      { line: 10, field: '/tests/0/input_series/1/query', message: /already given in input_series\/0/ },
      { line: 15, field: '/tests/1/name', message: /also the name of tests\/0/ },
      { line: 21, field: '/tests/1/input_series/1/query' },
    ], 'in the order of the text');
  });
});

t.test('runPolicyTestFiles: folders give their *.test.yaml, missing paths and empty folders are errors', async (t) => {
  const dir = scratch();
  mkdirSync(join(dir, 'nested'));
  writeFileSync(join(dir, 'nested', 'lag.test.yaml'), lagTest('      - at: 5m\n        replicas: 4\n'));
  writeFileSync(join(dir, 'not-a-test.yaml'), 'this: is ignored in a folder\n');
  writeFileSync(join(dir, 'broken.test.yml'), 'policy_files: [x\n');
  const run = await runPolicyTestFiles([dir, join(dir, 'absent.test.yaml')], config);
  t.equal(run.ok, false);
  t.same(
    run.results.map((r) => r.file.slice(dir.length)),
    ['/absent.test.yaml', '/broken.test.yml', '/nested/lag.test.yaml'],
    'missing paths first, then the folder walk, sorted; other yaml files are not tests',
  );
  t.equal(run.passed, 1);
  t.equal(run.errors, 2);
  t.match(run.text, `ERROR ${join(dir, 'absent.test.yaml')} / no such file or folder`);
  t.match(run.text, new RegExp(`ERROR ${join(dir, 'broken.test.yml').replaceAll('.', '\\.')}:\\d+:\\d+ / YAML syntax`));
  t.match(run.text, '  PASS lag scales up\n');
  t.match(run.text, /\n1 passed, 0 failed, 2 test files with errors\n$/);

  const empty = scratch();
  const none = await runPolicyTestFiles([empty], config);
  t.equal(none.ok, false, 'no tests at all is not a pass');
  t.match(none.text, 'no test files (*.test.yaml or *.test.yml) found');
});
