import t from 'tap';
import fc from 'fast-check';
import { decide } from '../src/engine/decide.js';
import { DirectionCombiner, treeHolds, stepRules } from '../src/engine/rule-combiner.js';
import { compileTree, type ConditionNode, type IndexTree } from '../src/policy/condition-tree.js';
import type { PolicyInput } from '../src/policy/policy-model.js';
import { inputOf, observationsFor, policyOf, type Value } from './helpers/engine-parts.js';

// Composite conditions: scale_up_when / scale_down_when trees over named rules. Each case gives
// which rules hold (by name) and what the direction must do: hold or not, its step, the branch
// the record names as deciding, and the verdict of every node of the tree.

const NOW = new Date('2026-03-02T12:00:00Z');

/** An up rule named `name` on its own metric: it holds when the metric is 100, not when it is 0. */
const up = (name: string, scale_by: number) => ({ name, metric: `m_${name}`, operator: 'gt' as const, threshold: 50, duration: '0', scale_by });
const down = (name: string, scale_by: number) => ({ name, metric: `m_${name}`, operator: 'gt' as const, threshold: 50, duration: '0', scale_by });

interface Case {
  name: string;
  when: ConditionNode;
  rules: Array<[string, number]>;
  holding: string[];
  held: boolean;
  step: number;
  decidedBy: string | null;
  /** The record's tree, verdicts only, in the order of a walk (node before its children). */
  verdicts: boolean[];
  triggered?: string[];
  /** Rules whose metric fails (no value): they do not hold, but may have. */
  failing?: string[];
}

const CASES: Case[] = [
  {
    name: 'not over a rule whose metric failed does not hold: a missing metric never lets a direction through',
    when: { not: 'idle' },
    rules: [['idle', 2]],
    holding: [],
    failing: ['idle'],
    held: false,
    step: 0,
    decidedBy: null,
    verdicts: [false, false],
  },
  {
    name: 'a or not b, b failing: a decides alone',
    when: { any: ['lag_high', { not: 'paused' }] },
    rules: [['lag_high', 2], ['paused', 5]],
    holding: ['lag_high'],
    failing: ['paused'],
    held: true,
    step: 2,
    decidedBy: 'lag_high',
    verdicts: [true, true, false, false],
  },
  {
    name: 'not (a and b), a failing, b not holding: b answered no, so the all cannot hold and the not holds',
    when: { not: { all: ['quiet', 'idle'] } },
    rules: [['quiet', 1], ['idle', 3]],
    holding: [],
    failing: ['quiet'],
    held: true,
    step: 3,
    decidedBy: 'not (quiet and idle)',
    verdicts: [true, false, false, false],
    triggered: ['idle'],
  },
  {
    name: 'not not a, a failing: does not hold',
    when: { not: { not: 'lag_high' } },
    rules: [['lag_high', 2]],
    holding: [],
    failing: ['lag_high'],
    held: false,
    step: 0,
    decidedBy: null,
    verdicts: [false, false, false],
  },
  { name: 'a lone name holds', when: 'lag_high', rules: [['lag_high', 2]], holding: ['lag_high'], held: true, step: 2, decidedBy: 'lag_high', verdicts: [true] },
  { name: 'a lone name does not hold', when: 'lag_high', rules: [['lag_high', 2]], holding: [], held: false, step: 0, decidedBy: null, verdicts: [false] },
  {
    name: '(a and b) or c: the all branch decides',
    when: { any: [{ all: ['lag_high', 'buffer_deep'] }, 'errors_climbing'] },
    rules: [['lag_high', 2], ['buffer_deep', 3], ['errors_climbing', 1]],
    holding: ['lag_high', 'buffer_deep'],
    held: true,
    step: 3,
    decidedBy: 'lag_high and buffer_deep',
    verdicts: [true, true, true, true, false],
  },
  {
    name: '(a and b) or c: c decides while only a of the all holds; a still gives the step',
    when: { any: [{ all: ['lag_high', 'buffer_deep'] }, 'errors_climbing'] },
    rules: [['lag_high', 4], ['buffer_deep', 3], ['errors_climbing', 1]],
    holding: ['lag_high', 'errors_climbing'],
    held: true,
    step: 4,
    decidedBy: 'errors_climbing',
    verdicts: [true, false, true, false, true],
    triggered: ['lag_high', 'errors_climbing'],
  },
  {
    name: '(a and b) or c: nothing decides with only b',
    when: { any: [{ all: ['lag_high', 'buffer_deep'] }, 'errors_climbing'] },
    rules: [['lag_high', 2], ['buffer_deep', 3], ['errors_climbing', 1]],
    holding: ['buffer_deep'],
    held: false,
    step: 0,
    decidedBy: null,
    verdicts: [false, false, false, true, false],
  },
  {
    name: 'not: holds when its rule does not; the step comes from the negated rule',
    when: { not: 'idle' },
    rules: [['idle', 2]],
    holding: [],
    held: true,
    step: 2,
    decidedBy: 'not idle',
    verdicts: [true, false],
    triggered: ['idle'],
  },
  { name: 'not: does not hold when its rule does', when: { not: 'idle' }, rules: [['idle', 2]], holding: ['idle'], held: false, step: 0, decidedBy: null, verdicts: [false, true] },
  {
    name: 'a and not b: a held and is used positively: its step, not the negated rule\'s',
    when: { all: ['lag_high', { not: 'idle' }] },
    rules: [['lag_high', 1], ['idle', 5]],
    holding: ['lag_high'],
    held: true,
    step: 1,
    decidedBy: 'lag_high and not idle',
    verdicts: [true, true, true, false],
    triggered: ['lag_high'],
  },
  {
    name: 'not over an all: holds unless both hold',
    when: { not: { all: ['quiet', 'idle'] } },
    rules: [['quiet', 1], ['idle', 3]],
    holding: ['quiet'],
    held: true,
    step: 3,
    decidedBy: 'not (quiet and idle)',
    verdicts: [true, false, true, false],
    triggered: ['idle'],
  },
  {
    name: 'double negation is positive',
    when: { not: { not: 'lag_high' } },
    rules: [['lag_high', 2]],
    holding: ['lag_high'],
    held: true,
    step: 2,
    decidedBy: 'not not lag_high',
    verdicts: [true, false, true],
  },
  {
    name: 'nested any inside any: the innermost branch that held decides',
    when: { any: ['a', { any: ['b', { all: ['c', 'd'] }] }] },
    rules: [['a', 1], ['b', 2], ['c', 3], ['d', 4]],
    holding: ['c', 'd'],
    held: true,
    step: 4,
    decidedBy: 'c and d',
    verdicts: [true, false, true, false, true, true, true],
  },
  {
    name: 'five levels deep',
    when: { all: [{ any: [{ all: [{ any: [{ not: 'x' }, 'y'] }] }] }] },
    rules: [['x', 2], ['y', 1]],
    holding: ['x', 'y'],
    held: true,
    step: 1,
    decidedBy: 'not x or y',
    verdicts: [true, true, true, true, false, true, true],
    triggered: ['y'],
  },
];

/** The verdicts of a record's tree, node before children. */
function walk(node: unknown, out: boolean[] = []): boolean[] {
  const n = node as { held: boolean; all?: unknown[]; any?: unknown[]; not?: unknown };
  out.push(n.held);
  for (const c of n.all ?? n.any ?? (n.not !== undefined ? [n.not] : [])) walk(c, out);
  return out;
}

async function run(c: Case, direction: 'up' | 'down') {
  const list = c.rules.map(([n, s]) => (direction === 'up' ? up(n, s) : down(n, -s)));
  const input: Partial<PolicyInput> & { name: string } =
    direction === 'up' ? { name: 'p', scale_up_rules: list, scale_up_when: c.when } : { name: 'p', scale_down_rules: list, scale_down_when: c.when };
  const policy = policyOf({ ...input, min_replicas: 1, max_replicas: 100, cooldown_seconds: 0 });
  const values = Object.fromEntries(c.rules.map(([n]): [string, Value] => [`m_${n}`, c.failing?.includes(n) === true ? 'fail' : c.holding.includes(n) ? 100 : 0]));
  return decide(inputOf(policy, NOW, observationsFor([policy], NOW, values), 50));
}

for (const direction of ['up', 'down'] as const) {
  t.test(`scale_${direction}_when`, async (t) => {
    for (const c of CASES) {
      const { record } = await run(c, direction);
      const d = record.directions[direction === 'up' ? 'scale_up' : 'scale_down'];
      const sign = direction === 'up' ? 1 : -1;
      t.equal(d.held, c.held, `${c.name}: held`);
      // Down steps: the scale_by closest to zero, which with the signs flipped is the same rule as up's largest.
      const expectedStep = direction === 'up' ? c.step : c.held ? -minStep(c) : 0;
      t.equal(d.step, expectedStep, `${c.name}: step`);
      t.equal(d.match, null, `${c.name}: no match with a tree`);
      t.equal(d.decided_by, c.decidedBy, `${c.name}: deciding branch`);
      t.same(walk(d.when), c.verdicts, `${c.name}: node verdicts`);
      t.equal(record.desired_replicas, c.held ? 50 + (direction === 'up' ? c.step : -minStep(c)) : 50, `${c.name}: desired`);
      t.equal(record.action, c.held ? (sign > 0 ? 'scale_up' : 'scale_down') : 'none', `${c.name}: action`);
      for (const f of c.failing ?? []) t.ok(JSON.stringify(d.when).includes(`{"rule":"${f}","held":false,"error":true}`), `${c.name}: ${f} is marked as a metric error in the record`);
      if (c.held) {
        t.match(record.reason, `scale_${direction}_when held through "${c.decidedBy}"`, `${c.name}: the reason names the branch`);
        const names = record.rules.filter((r) => record.triggered_rules.includes(r.id)).map((r) => r.name);
        t.same(names.sort(), (c.triggered ?? c.holding).slice().sort(), `${c.name}: triggered rules`);
      }
    }
  });
}

/** The down step of a case: its rules' magnitudes flipped, the one closest to zero among the step rules. */
function minStep(c: Case): number {
  const rules = c.rules.map(([n]) => ({ name: n }));
  const tree = compileTree(c.when, rules);
  const held = c.rules.map(([n]) => c.holding.includes(n));
  const failed = c.rules.map(([n]) => c.failing?.includes(n) === true);
  const from = stepRules(shapeOfTree(tree, rules.length), held, failed);
  return Math.min(...c.rules.filter((_, i) => from[i]).map(([, s]) => s));
}

function shapeOfTree(tree: IndexTree, n: number) {
  const polarity = new Uint8Array(n);
  const mark = (x: IndexTree, neg: boolean): void => {
    if (typeof x === 'number') polarity[x] = (polarity[x] as number) | (neg ? 2 : 1);
    else if ('not' in x) mark(x.not, !neg);
    else for (const c of 'all' in x ? x.all : x.any) mark(c, neg);
  };
  mark(tree, false);
  return { tree, polarity };
}

t.test('the flat match is unchanged: all and any, the step from the rules that held', async (t) => {
  const policy = policyOf({ name: 'flat', min_replicas: 1, max_replicas: 100, cooldown_seconds: 0, scale_up_match: 'any', scale_up_rules: [up('a', 2), up('b', 5)] });
  const { record } = await decide(inputOf(policy, NOW, observationsFor([policy], NOW, { m_a: 100, m_b: 0 }), 10));
  t.equal(record.directions.scale_up.match, 'any');
  t.equal(record.directions.scale_up.when, null);
  t.equal(record.directions.scale_up.decided_by, null);
  t.equal(record.desired_replicas, 12);
  t.notMatch(record.reason, 'held through');
});

t.test('json-rules-engine agrees with the tree walk on random trees and verdict vectors', async (t) => {
  const tree = (n: number): fc.Arbitrary<IndexTree> =>
    fc.letrec<{ node: IndexTree }>((tie) => ({
      node: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        fc.integer({ min: 0, max: n - 1 }),
        fc.record({ all: fc.array(tie('node'), { minLength: 1, maxLength: 3 }) }),
        fc.record({ any: fc.array(tie('node'), { minLength: 1, maxLength: 3 }) }),
        fc.record({ not: tie('node') }),
      ),
    })).node;
  const toNames = (x: IndexTree): ConditionNode =>
    typeof x === 'number' ? `r${x}` : 'not' in x ? { not: toNames(x.not) } : 'all' in x ? ({ all: x.all.map(toNames) } as ConditionNode) : ({ any: x.any.map(toNames) } as ConditionNode);
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 5 }).chain((n) => fc.tuple(tree(n), fc.array(fc.constantFrom(0, 1, 2), { minLength: n, maxLength: n }))),
      async ([x, states]) => {
        // 1: held, 0: did not hold, 2: its metric failed (did not hold, may have).
        const held = states.map((v) => v === 1);
        const failed = states.map((v) => v === 2);
        const rules = held.map((_, i) => ({ name: `r${i}`, scale_by: i + 1 }));
        const combiner = new DirectionCombiner({
          scale_up_rules: rules as never,
          scale_down_rules: [],
          scale_up_match: null,
          scale_down_match: 'all',
          scale_up_when: toNames(x),
          scale_down_when: null,
        });
        const answer = await combiner.combine(held, [], failed, []);
        t.equal(answer.up, treeHolds(x, held, failed));
        t.equal(answer.down, false);
        // Holding for certain: for every answer the failed metrics could have given.
        const unknown = failed.flatMap((f, i) => (f ? [i] : []));
        let always = true;
        for (let m = 0; m < 1 << unknown.length; m++) {
          const world = held.slice();
          unknown.forEach((i, b) => (world[i] = ((m >> b) & 1) === 1));
          if (!treeHolds(x, world)) always = false;
        }
        if (!answer.up) return;
        t.ok(always, 'a tree that holds holds whatever the failed metrics would have said');
      },
    ),
    { numRuns: 300 },
  );
});
