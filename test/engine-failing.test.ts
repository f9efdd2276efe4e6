/**
 * Policies whose metric queries keep failing (src/engine/failing.ts), watched through outcomes of
 * real assessments: found failing at FAILING_AFTER failures in a row and logged once, kept up to
 * date while they fail, logged once more when they answer again, listed oldest first while the
 * loop holds them.
 */
import t from 'tap';
import { assess } from '../src/engine/decide.js';
import type { Observation } from '../src/engine/decision.js';
import { EMPTY_MEMORY } from '../src/engine/decision.js';
import { FAILING_AFTER, FailingPolicies } from '../src/engine/failing.js';
import { EvaluationOutcome } from '../src/engine/outcome.js';
import type { Policy } from '../src/policy/policy-model.js';
import { capturingLogger, inputOf, observationsFor, policyOf, rule } from './helpers/engine-parts.js';

const T0 = new Date('2026-02-01T12:00:00Z');
const at = (cycle: number) => new Date(T0.getTime() + cycle * 30_000);

/** The outcome of a loop evaluation `previous` failures in, with the policy's queries failing with `message` (or answering). */
async function outcome(policy: Policy, cycle: number, previous: number, message: string | null): Promise<EvaluationOutcome> {
  const now = at(cycle);
  const observations = observationsFor([policy], now, { lag: message === null ? 10 : 'fail', load: message === null ? 10 : 'fail' });
  if (message !== null) for (const o of observations.values()) (o as Observation).error = { kind: 'http', message };
  const input = inputOf(policy, now, observations, 2, { ...EMPTY_MEMORY, current_replicas: 2, consecutive_failures: previous });
  return new EvaluationOutcome(input, await assess(input));
}

t.test('found failing at the FAILING_AFTER-th failure in a row: one warning, kept up to date while it fails, one line when it answers again', async (t) => {
  const { logger, lines } = capturingLogger();
  const failing = new FailingPolicies(logger);
  const p = policyOf({ name: 'flaky', scale_up_rules: [rule('lag', 'gt', 60, 1)] });
  const held = () => true;
  for (let n = 1; n < FAILING_AFTER; n++) {
    const o = await outcome(p, n, n - 1, 'HTTP 500');
    t.equal(o.assessment.failures, n);
    failing.watch(o);
  }
  t.same(failing.list(held), [], `${FAILING_AFTER - 1} failures in a row: not failing yet`);
  t.equal(lines.length, 0, 'and nothing logged');

  const found = await outcome(p, FAILING_AFTER, FAILING_AFTER - 1, 'HTTP 500');
  failing.watch(found);
  t.same(failing.list(held), [{ policy_id: p.id, policy: 'flaky', failures: FAILING_AFTER, since: found.record().evaluated_at, error: 'http: HTTP 500' }]);
  t.equal(lines.length, 1);
  t.match(lines[0], { level: 40, policy_id: p.id, policy: 'flaky', failures: FAILING_AFTER, error: 'http: HTTP 500', msg: `policy flaky: its metric queries have failed ${FAILING_AFTER} evaluations in a row (http: HTTP 500); its rules do not hold until they answer` });

  failing.watch(await outcome(p, FAILING_AFTER + 1, FAILING_AFTER, 'HTTP 502'));
  failing.watch(await outcome(p, FAILING_AFTER + 2, FAILING_AFTER + 1, 'HTTP 503'));
  t.equal(lines.length, 1, 'still failing: no more lines');
  t.same(failing.list(held), [{ policy_id: p.id, policy: 'flaky', failures: FAILING_AFTER + 2, since: found.record().evaluated_at, error: 'http: HTTP 503' }], 'the count and the latest error follow; since stays');

  failing.watch(await outcome(p, FAILING_AFTER + 3, FAILING_AFTER + 2, null));
  t.same(failing.list(held), [], 'answering again: no longer failing');
  t.equal(lines.length, 2);
  t.match(lines[1], { level: 30, policy_id: p.id, policy: 'flaky', failures: FAILING_AFTER + 2, msg: `policy flaky: its metric queries answer again, after ${FAILING_AFTER + 2} failed evaluations` });
  failing.watch(await outcome(p, FAILING_AFTER + 4, 0, null));
  t.equal(lines.length, 2, 'answering on: nothing more');
});

t.test('a policy that recovers before it is found failing is never logged', async (t) => {
  const { logger, lines } = capturingLogger();
  const failing = new FailingPolicies(logger);
  const p = policyOf({ name: 'blip', scale_up_rules: [rule('lag', 'gt', 60, 1)] });
  failing.watch(await outcome(p, 1, 0, 'timeout'));
  failing.watch(await outcome(p, 2, 1, 'timeout'));
  failing.watch(await outcome(p, 3, 2, null));
  failing.watch(await outcome(p, 4, 0, 'timeout'));
  t.equal(lines.length, 0);
  t.same(failing.list(() => true), []);
});

t.test('a policy without step rules (target tracking only) is named with a generic error', async (t) => {
  const { logger } = capturingLogger();
  const failing = new FailingPolicies(logger);
  const p = policyOf({ name: 'tracking', target_tracking: [{ metric: 'load', target_value: 10 }] });
  const o = await outcome(p, 5, FAILING_AFTER - 1, 'down');
  t.ok(o.assessment.anyError, 'its entry\'s metric failed');
  failing.watch(o);
  t.equal(failing.list(() => true)[0]?.error, 'a metric query failed');
});

t.test('list(): oldest first, and only policies the loop still holds; clear() forgets them all', async (t) => {
  const { logger, lines } = capturingLogger();
  const failing = new FailingPolicies(logger);
  const [a, b, c] = ['a', 'b', 'c'].map((name) => policyOf({ name, scale_up_rules: [rule('lag', 'gt', 60, 1)] })) as [Policy, Policy, Policy];
  // c found failing first, then a, then b.
  failing.watch(await outcome(c, 10, FAILING_AFTER - 1, 'x'));
  failing.watch(await outcome(a, 11, FAILING_AFTER - 1, 'x'));
  failing.watch(await outcome(b, 12, FAILING_AFTER - 1, 'x'));
  t.same(failing.list(() => true).map((f) => f.policy), ['c', 'a', 'b'], 'by when each was found failing');
  t.same(failing.list((id) => id !== a.id).map((f) => f.policy), ['c', 'b'], 'a deleted or disabled policy is not failing');
  t.same(failing.list(() => true).map((f) => f.policy), ['c', 'b'], 'and is forgotten, not just hidden');
  failing.watch(await outcome(a, 13, 0, null));
  t.equal(lines.filter((l) => /answer again/.test(l.msg)).length, 0, 'a forgotten policy that answers again is not logged as recovered');

  failing.clear();
  t.same(failing.list(() => true), []);
  failing.watch(await outcome(b, 14, FAILING_AFTER + 5, 'x'));
  t.same(failing.list(() => true).map((f) => [f.policy, f.failures, f.since]), [['b', FAILING_AFTER + 6, at(14).toISOString()]], 'found failing anew after a clear (a new leader\'s loop)');
  t.equal(lines.filter((l) => l.policy === 'b' && /have failed/.test(l.msg)).length, 2, 'and logged again');
});
