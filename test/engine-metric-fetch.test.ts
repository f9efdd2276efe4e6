/**
 * The loop's requests to metric sources (src/engine/metric-fetch.ts), through the real isolated
 * source wrapper: the window each request asks for, the samples kept for a source without range
 * queries, what a failure leaves behind, the health of each source (and what it logs), and a
 * manual evaluation's fetch of everything its policies need.
 */
import t from 'tap';
import type { Observation } from '../src/engine/decision.js';
import { MetricFetcher } from '../src/engine/metric-fetch.js';
import { observationKey, ruleVerdict, ruleWindow } from '../src/engine/rule-window.js';
import type { MetricSource } from '../src/plugins/api.js';
import { IsolatedMetricSource } from '../src/plugins/plugin-manager.js';
import type { Policy, Rule } from '../src/policy/policy-model.js';
import { DEFAULT_SOURCE, INTERVAL, capturingLogger, constantSource, policyOf, rule, silent, type Value } from './helpers/engine-parts.js';

const T0 = new Date('2026-02-01T12:00:00.400Z');
const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);

function fetcher(sources: Record<string, MetricSource>, opts: { logger?: ReturnType<typeof capturingLogger>['logger']; concurrency?: number; timeoutMs?: number } = {}): MetricFetcher {
  return new MetricFetcher({
    sources: new Map(Object.entries(sources).map(([name, impl]) => [name, new IsolatedMetricSource(name, impl, opts.timeoutMs ?? 1000)])),
    logger: opts.logger ?? silent,
    defaultSource: DEFAULT_SOURCE,
    concurrency: opts.concurrency ?? 4,
    intervalSeconds: INTERVAL,
  });
}

const upRule = (p: Policy, i = 0): Rule => p.scale_up_rules[i] as Rule;
const fetchOf = (r: Rule) => ({ key: observationKey(r, DEFAULT_SOURCE), f: { source: r.source ?? DEFAULT_SOURCE, rule: r } });

t.test('a windowed rule asks for its window\'s instants in one range query; a zero-duration rule asks for now', async (t) => {
  const src = constantSource({ lag: 70 });
  const m = fetcher({ [DEFAULT_SOURCE]: src });
  const p = policyOf({ name: 'w', scale_up_rules: [rule('lag', 'gt', 60, 1, '2m'), rule('lag', 'gt', 60, 1, '0s')] });
  const windowed = fetchOf(upRule(p, 0));
  const obs = await m.fetch(windowed.key, windowed.f, T0);
  const win = ruleWindow(upRule(p, 0), T0, INTERVAL);
  t.same(src.requests[0], { query: 'lag', range: true, start: new Date(win.startMs), end: new Date(win.endMs), step: win.stepMs / 1000 }, 'the window: whole seconds, ending at now');
  t.equal(win.endMs, Date.parse('2026-02-01T12:00:00Z'), 'now, rounded down to its second');
  t.equal(obs.samples.length, win.points, 'a value at every instant');
  t.equal(obs.error, undefined);
  t.ok(obs.verdicts !== undefined, 'verdicts may be shared by the rules reading it');
  t.ok(ruleVerdict(upRule(p, 0), obs, win).held, 'and the rule holds on it');

  const instant = fetchOf(upRule(p, 1));
  const now = await m.fetch(instant.key, instant.f, T0);
  t.same(src.requests[1], { query: 'lag', range: false, time: new Date(win.endMs) });
  t.same(now.samples, [{ t: win.endMs / 1000, v: 70 }]);
});

t.test('a source without range queries: the fetcher keeps one sample per cycle and judges windows from them', async (t) => {
  const values: Record<string, Value> = { lag: 90 };
  const src = constantSource(values, { range: false });
  const m = fetcher({ [DEFAULT_SOURCE]: src });
  const p = policyOf({ name: 'b', scale_up_rules: [rule('lag', 'gt', 60, 1, '1m')] });
  const { key, f } = fetchOf(upRule(p));
  const check = async (seconds: number, v: Value): Promise<Observation> => {
    values['lag'] = v;
    return m.fetch(key, f, at(seconds));
  };
  const sec = (s: number) => Math.floor(at(s).getTime() / 1000);

  const first = await check(0, 90);
  t.same(first.samples, [{ t: sec(0), v: 90 }], 'after a start only the latest instant has a value');
  t.equal(ruleVerdict(upRule(p), first, ruleWindow(upRule(p), at(0), INTERVAL)).miss, 'not_from_start', 'so the rule does not hold yet: decisions are delayed, never hastened');
  t.ok(src.requests.every((r) => !r.range), 'only instant queries');

  const second = await check(30, 91);
  t.same(second.samples, [{ t: sec(0), v: 90 }, { t: sec(30), v: 91 }]);
  const third = await check(60, 92);
  t.same(third.samples.map((s) => s.v), [90, 91, 92], 'the window is covered');
  t.ok(ruleVerdict(upRule(p), third, ruleWindow(upRule(p), at(60), INTERVAL)).held, 'and the rule holds');
  const fourth = await check(90, 93);
  t.same(fourth.samples, [{ t: sec(30), v: 91 }, { t: sec(60), v: 92 }, { t: sec(90), v: 93 }], 'the oldest sample is dropped once no window reads it');

  // Fetched again at the same instant (a manual evaluation in the same second): no second sample there.
  const same = await check(90, 50);
  t.equal(same.samples.length, 3, 'one sample per instant');

  // Cycles further apart than the interval: an instant reads the latest sample within the lookback.
  const late = await check(135, 94);
  t.same(late.samples.map((s) => s.v), [92, 93, 94], 'instants between samples take the latest before them');

  // A failure forgets the samples: after it the window is covered only once observed again.
  const failed = await check(165, 'fail');
  t.match(failed, { samples: [], error: { kind: 'empty', message: /no data for lag/ } });
  const after = await check(195, 95);
  t.same(after.samples, [{ t: sec(195), v: 95 }], 'only what came after the failure');

  // Beyond the lookback (5 minutes) an old sample gives no value.
  const gap = await check(195 + 600, 96);
  t.same(gap.samples, [{ t: sec(795), v: 96 }]);
});

t.test('errors: a source not loaded, a failed query, a timeout', async (t) => {
  const m = fetcher({ [DEFAULT_SOURCE]: constantSource({}), slow: { instantQuery: (q) => new Promise((_, reject) => q.signal.addEventListener('abort', () => reject(new Error('aborted')))) } }, { timeoutMs: 20 });
  const missing = policyOf({ name: 'm', scale_up_rules: [{ ...rule('lag', 'gt', 60, 1), source: 'nowhere' }] });
  const a = fetchOf(upRule(missing));
  t.same(await m.fetch(a.key, a.f, T0), { samples: [], error: { kind: 'unknown_source', message: 'metric source "nowhere" is not loaded' } });
  t.notOk(m.sourceHealth.has('nowhere'), 'a source that is not loaded has no health');

  const bad = policyOf({ name: 'b', scale_up_rules: [rule('nothing', 'gt', 60, 1)] });
  const b = fetchOf(upRule(bad));
  const failed = await m.fetch(b.key, b.f, T0);
  t.equal(failed.error?.kind, 'empty', 'the source\'s own kind');
  t.match(failed.error?.message, /^prometheus\.rangeQuery: no data for nothing$/, 'the message names the source and the call');
  t.equal(failed.verdicts, undefined, 'no verdict memo on a failure');

  const slow = policyOf({ name: 's', scale_up_rules: [{ ...rule('x', 'gt', 60, 1, '0s'), source: 'slow' }] });
  const c = fetchOf(upRule(slow));
  const timedOut = await m.fetch(c.key, c.f, T0);
  t.equal(timedOut.error?.kind, 'timeout');
  t.same(m.sourceHealth.get('slow') && { ok: m.sourceHealth.get('slow')?.ok, error: m.sourceHealth.get('slow')?.error }, { ok: false, error: 'slow.instantQuery: no answer within 20 ms' });
});

t.test('source health: only a source that does not answer is down; logged when it goes down and when it answers again', async (t) => {
  const { logger, lines } = capturingLogger();
  const m = fetcher({}, { logger });
  m.markSource('prom', null);
  t.match(m.sourceHealth.get('prom'), { ok: true, error: null });
  t.equal(lines.length, 0, 'a first successful contact is not logged');
  t.ok(Number.isFinite(Date.parse(m.sourceHealth.get('prom')?.checked_at ?? '')), 'checked_at is a time');

  for (const kind of ['empty', 'query', 'nan', 'malformed', 'error']) {
    m.markSource('prom', { kind, message: `a query failed (${kind})` });
    t.equal(m.sourceHealth.get('prom')?.ok, true, `an answer of kind ${kind} still proves it answers`);
  }
  // A metric may be named after a timeout: only the kind counts.
  m.markSource('prom', { kind: 'query', message: 'bad query: http_client_timeout_total unreachable' });
  t.equal(m.sourceHealth.get('prom')?.ok, true, 'the message is not read');
  t.equal(lines.length, 0);

  m.markSource('prom', { kind: 'unreachable', message: 'connect ECONNREFUSED' });
  t.match(m.sourceHealth.get('prom'), { ok: false, error: 'connect ECONNREFUSED' });
  t.equal(lines.length, 1);
  t.match(lines[0], { level: 40, source: 'prom', kind: 'unreachable', msg: /metric source prom is unreachable: connect ECONNREFUSED/ });
  m.markSource('prom', { kind: 'timeout', message: 'no answer within 5000 ms' });
  m.markSource('prom', { kind: 'http', message: 'HTTP 503' });
  t.equal(lines.length, 1, 'still down: not logged again');
  t.match(m.sourceHealth.get('prom'), { ok: false, error: 'HTTP 503' }, 'the latest error is kept');
  m.markSource('other', { kind: 'timeout', message: 'no answer' });
  t.equal(lines.length, 2, 'another source going down is its own line');
  t.equal(m.sourceHealth.get('prom')?.ok, false, 'and leaves the first as it was');

  m.markSource('prom', null);
  t.equal(m.sourceHealth.get('prom')?.ok, true);
  t.equal(m.sourceHealth.get('prom')?.error, null);
  t.equal(lines.length, 3);
  t.match(lines[2], { level: 30, source: 'prom', msg: 'metric source prom is answering again' });
  m.markSource('prom', null);
  t.equal(lines.length, 3, 'answering on: nothing more logged');
});

t.test('fetch marks its source: up on an answer, down when it does not answer', async (t) => {
  const { logger, lines } = capturingLogger();
  const values: Record<string, Value> = { lag: 1 };
  const down = Object.assign(new Error('connect ECONNREFUSED'), { kind: 'unreachable' });
  let reachable = true;
  const src: MetricSource = {
    async instantQuery(q) {
      if (!reachable) throw down;
      return { t: q.time.getTime() / 1000, v: values[q.query] as number };
    },
  };
  const m = fetcher({ [DEFAULT_SOURCE]: src }, { logger });
  const p = policyOf({ name: 'h', scale_up_rules: [rule('lag', 'gt', 60, 1, '0s')] });
  const { key, f } = fetchOf(upRule(p));
  await m.fetch(key, f, T0);
  t.equal(m.sourceHealth.get(DEFAULT_SOURCE)?.ok, true);
  reachable = false;
  const obs = await m.fetch(key, f, at(30));
  t.equal(obs.error?.kind, 'unreachable');
  t.equal(m.sourceHealth.get(DEFAULT_SOURCE)?.ok, false);
  reachable = true;
  await m.fetch(key, f, at(60));
  t.equal(m.sourceHealth.get(DEFAULT_SOURCE)?.ok, true);
  t.same(lines.map((l) => l.level), [40, 30], 'one warning, one recovery');
});

t.test('fetchAll: one request per distinct query of the given policies, at most `concurrency` at once', async (t) => {
  let inFlight = 0;
  let most = 0;
  const asked: string[] = [];
  const src: MetricSource = {
    async instantQuery(q) {
      asked.push(q.query);
      inFlight++;
      most = Math.max(most, inFlight);
      // Answered on a later turn, so that requests overlap when they may.
      await new Promise((r) => setImmediate(r));
      inFlight--;
      if (q.query === 'broken') throw Object.assign(new Error('bad query'), { kind: 'query' });
      return { t: q.time.getTime() / 1000, v: 1 };
    },
  };
  const m = fetcher({ [DEFAULT_SOURCE]: src }, { concurrency: 2 });
  const zero = (metric: string) => rule(metric, 'gt', 60, 1, '0s');
  const policies = [
    policyOf({ name: 'a', scale_up_rules: [zero('q1'), zero('q2')], scale_down_rules: [{ ...zero('q1'), operator: 'lt', threshold: 5, scale_by: -1 }] }),
    policyOf({ name: 'b', scale_up_rules: [zero('q2'), zero('q3')], target_tracking: [{ metric: 'q4', target_value: 10 }] }),
    policyOf({ name: 'c', scale_up_rules: [{ ...zero('q1'), aggregation: 'sum' }, zero('broken')] }),
  ];
  const { observations, fetches, errors } = await m.fetchAll(policies, T0);
  t.equal(fetches, 6, 'q1, q2, q3, q4, sum(q1) and broken');
  t.equal(asked.length, 6, 'each asked once');
  t.equal(errors, 1);
  t.ok(most <= 2, `at most 2 in flight (${most})`);
  t.equal(most, 2, 'and requests did overlap');
  t.equal(observations.size, 6);
  for (const p of policies) for (const r of [...p.scale_up_rules, ...p.scale_down_rules, ...p.target_tracking]) t.ok(observations.has(observationKey(r, DEFAULT_SOURCE)), `${p.name}: ${r.metric} observed`);
  t.equal(observations.get(observationKey(upRule(policies[2] as Policy, 1), DEFAULT_SOURCE))?.error?.kind, 'query');
  t.same(await m.fetchAll([], T0), { observations: new Map(), fetches: 0, errors: 0 }, 'nothing to fetch');
});
