import { Engine, type TopLevelCondition } from 'json-rules-engine';
import { compileTree, type IndexTree } from '../policy/condition-tree.js';
import type { Policy, Rule } from '../policy/policy-model.js';
import type { ConditionRecord } from './decision.js';

/**
 * How one direction combines its rules, by position: a condition tree (`scale_*_when`), or null
 * for a flat `all` / `any` (`scale_*_match`). `polarity` has a bit per rule: 1 when the tree uses
 * it outside a `not` (an even number of them), 2 when inside one; null without a tree.
 */
export interface DirectionShape {
  tree: IndexTree | null;
  polarity: Uint8Array | null;
}

/** A json-rules-engine condition: all / any / not, or a fact's test. */
type NestedCondition = TopLevelCondition | { fact: string; operator: string; value: unknown };

const FLAT: DirectionShape = Object.freeze({ tree: null, polarity: null });

function shapeOf(when: Policy['scale_up_when'], rules: readonly Rule[]): DirectionShape {
  if (when === null) return FLAT;
  const tree = compileTree(when, rules);
  const polarity = new Uint8Array(rules.length);
  const mark = (n: IndexTree, negated: boolean): void => {
    if (typeof n === 'number') polarity[n] = (polarity[n] as number) | (negated ? 2 : 1);
    else if ('not' in n) mark(n.not, !negated);
    else for (const c of 'all' in n ? n.all : n.any) mark(c, negated);
  };
  mark(tree, false);
  return { tree, polarity };
}

/**
 * A tree as json-rules-engine conditions. A rule used outside a `not` reads the fact
 * `<prefix><position>` (it held); inside one, `<prefix><position>m` (it held, or its metric failed
 * so it may have): a `not` over a rule whose metric failed does not hold, so a missing metric
 * never lets a direction through (see treeVerdict).
 */
function engineCondition(n: IndexTree, prefix: string, negated = false): NestedCondition {
  if (typeof n === 'number') return { fact: `${prefix}${n}${negated ? 'm' : ''}`, operator: 'equal', value: true };
  if ('not' in n) return { not: engineCondition(n.not, prefix, !negated) } as TopLevelCondition;
  if ('all' in n) return { all: n.all.map((c) => engineCondition(c, prefix, negated)) } as TopLevelCondition;
  return { any: n.any.map((c) => engineCondition(c, prefix, negated)) } as TopLevelCondition;
}

function topCondition(shape: DirectionShape, match: Policy['scale_up_match'], count: number, prefix: string): TopLevelCondition {
  if (shape.tree !== null) {
    const c = engineCondition(shape.tree, prefix);
    // A rule's top level is all, any or not; a lone name is wrapped in an all of one.
    return 'fact' in c ? { all: [c] } : c;
  }
  const c = Array.from({ length: count }, (_, i) => ({ fact: `${prefix}${i}`, operator: 'equal', value: true }));
  return match === 'any' ? { any: c } : { all: c };
}

const NONE_FAILED: readonly boolean[] = Object.freeze([]);

/**
 * A tree's verdict in three values: `holds` (it holds whatever the failed rules' metrics would
 * have said) and `may` (it would hold for some of their answers). A rule whose metric failed did
 * not hold but may have; `not` turns "may" into "does not hold", so a tree holds only when it
 * holds for certain.
 */
export function treeVerdict(n: IndexTree, held: readonly boolean[], failed: readonly boolean[] = NONE_FAILED): { holds: boolean; may: boolean } {
  if (typeof n === 'number') {
    const h = held[n] === true;
    return { holds: h, may: h || failed[n] === true };
  }
  if ('not' in n) {
    const v = treeVerdict(n.not, held, failed);
    return { holds: !v.may, may: !v.holds };
  }
  const vs = ('all' in n ? n.all : n.any).map((c) => treeVerdict(c, held, failed));
  return 'all' in n ? { holds: vs.every((v) => v.holds), may: vs.every((v) => v.may) } : { holds: vs.some((v) => v.holds), may: vs.some((v) => v.may) };
}

/** Whether a tree holds for certain (see treeVerdict). */
export function treeHolds(n: IndexTree, held: readonly boolean[], failed: readonly boolean[] = NONE_FAILED): boolean {
  return treeVerdict(n, held, failed).holds;
}

/**
 * The rules a direction that held takes its step from: those that held, and with a tree only
 * those it uses outside a `not`; when no such rule held (the tree held through a `not`), the
 * rules it uses inside one that did not hold (and whose metric answered).
 */
export function stepRules(shape: DirectionShape, held: readonly boolean[], failed: readonly boolean[] = NONE_FAILED): boolean[] {
  const pol = shape.polarity;
  if (pol === null) return held.slice();
  const out = held.map((h, i) => h && ((pol[i] as number) & 1) !== 0);
  if (out.some((x) => x)) return out;
  return held.map((h, i) => !h && failed[i] !== true && ((pol[i] as number) & 2) !== 0);
}

/**
 * Each direction's rules compiled into one json-rules-engine rule (`all` or `any` of the rules,
 * or the direction's condition tree), whose facts are the per-rule verdicts. The answer depends
 * only on the verdict vector, so it is memoised per vector: the live loop and a month-long
 * backtest pay for the rules engine at most once per distinct vector per policy shape instead of
 * once per step.
 */
export class DirectionCombiner {
  readonly #engine: Engine;
  readonly #memo = new Map<string, { up: boolean; down: boolean }>();
  readonly up: DirectionShape;
  readonly down: DirectionShape;

  constructor(policy: Pick<Policy, 'scale_up_rules' | 'scale_down_rules' | 'scale_up_match' | 'scale_down_match' | 'scale_up_when' | 'scale_down_when'>) {
    this.#engine = new Engine([], { allowUndefinedFacts: false });
    this.up = shapeOf(policy.scale_up_when, policy.scale_up_rules);
    this.down = shapeOf(policy.scale_down_when, policy.scale_down_rules);
    // A direction without rules never holds (an empty `all` would be vacuously true).
    if (policy.scale_up_rules.length > 0) {
      this.#engine.addRule({ name: 'scale_up', conditions: topCondition(this.up, policy.scale_up_match, policy.scale_up_rules.length, 'up'), event: { type: 'scale_up' } });
    }
    if (policy.scale_down_rules.length > 0) {
      this.#engine.addRule({ name: 'scale_down', conditions: topCondition(this.down, policy.scale_down_match, policy.scale_down_rules.length, 'down'), event: { type: 'scale_down' } });
    }
  }

  /**
   * The memoised answer for this verdict vector (`failed`: the rules whose metric failed, which
   * did not hold), without a promise; undefined the first time.
   */
  peek(up: readonly boolean[], down: readonly boolean[], upFailed?: readonly boolean[], downFailed?: readonly boolean[]): { up: boolean; down: boolean } | undefined {
    return this.#memo.get(this.#key(up, down, upFailed, downFailed));
  }

  /** The vector as text: 1 held, 2 failed (told apart only where a tree can tell), 0 did not hold. */
  #key(up: readonly boolean[], down: readonly boolean[], upFailed?: readonly boolean[], downFailed?: readonly boolean[]): string {
    let k = '';
    const upTree = this.up.tree !== null && upFailed !== undefined;
    const downTree = this.down.tree !== null && downFailed !== undefined;
    for (let i = 0; i < up.length; i++) k += up[i] ? '1' : upTree && upFailed[i] ? '2' : '0';
    k += '|';
    for (let i = 0; i < down.length; i++) k += down[i] ? '1' : downTree && downFailed[i] ? '2' : '0';
    return k;
  }

  async combine(up: readonly boolean[], down: readonly boolean[], upFailed?: readonly boolean[], downFailed?: readonly boolean[]): Promise<{ up: boolean; down: boolean }> {
    const key = this.#key(up, down, upFailed, downFailed);
    const hit = this.#memo.get(key);
    if (hit !== undefined) return hit;
    const facts: Record<string, boolean> = {};
    up.forEach((v, i) => {
      facts[`up${i}`] = v;
      facts[`up${i}m`] = v || upFailed?.[i] === true;
    });
    down.forEach((v, i) => {
      facts[`down${i}`] = v;
      facts[`down${i}m`] = v || downFailed?.[i] === true;
    });
    const { events } = await this.#engine.run(facts);
    const result = { up: events.some((e) => e.type === 'scale_up'), down: events.some((e) => e.type === 'scale_down') };
    this.#memo.set(key, result);
    return result;
  }
}

const compiled = new Map<string, DirectionCombiner>();
// Replays pass the same policy object at every step: a by-object cache skips building the key.
const byObject = new WeakMap<Policy, DirectionCombiner>();

/** A direction's part of a shape key: its tree over rule positions, or its match and rule count. */
function directionKey(when: Policy['scale_up_when'], match: Policy['scale_up_match'], rules: readonly Rule[]): string {
  return when === null ? `${match}:${rules.length}` : `${rules.length}:${JSON.stringify(compileTree(when, rules))}`;
}

/**
 * The combiner for a policy. Its rules engine depends only on the policy's shape (how many rules
 * each direction has, and how they combine: match, or a tree over rule positions), so policies of
 * one shape share one: 10,000 policies need a handful of engines, not 10,000.
 */
export function combinerFor(policy: Policy): DirectionCombiner {
  const hit = byObject.get(policy);
  if (hit !== undefined) return hit;
  const key = `${directionKey(policy.scale_up_when, policy.scale_up_match, policy.scale_up_rules)}|${directionKey(policy.scale_down_when, policy.scale_down_match, policy.scale_down_rules)}`;
  let c = compiled.get(key);
  if (c === undefined) {
    c = new DirectionCombiner(policy);
    if (compiled.size > 50_000) compiled.clear();
    compiled.set(key, c);
  }
  byObject.set(policy, c);
  return c;
}

const nameOf = (rules: readonly Rule[], i: number): string => (rules[i] as Rule).name ?? `#${i}`;

/**
 * The tree with each node's verdict (holds for certain, see treeVerdict), rules by name; a rule
 * whose metric failed is marked `error: true`.
 */
export function conditionRecord(n: IndexTree, rules: readonly Rule[], held: readonly boolean[], failed: readonly boolean[] = NONE_FAILED): ConditionRecord {
  return recordOf(n, rules, held, failed).record;
}

function recordOf(n: IndexTree, rules: readonly Rule[], held: readonly boolean[], failed: readonly boolean[]): { record: ConditionRecord; may: boolean } {
  if (typeof n === 'number') {
    const h = held[n] === true;
    const f = !h && failed[n] === true;
    return { record: f ? { rule: nameOf(rules, n), held: false, error: true } : { rule: nameOf(rules, n), held: h }, may: h || f };
  }
  if ('not' in n) {
    const inner = recordOf(n.not, rules, held, failed);
    return { record: { not: inner.record, held: !inner.may }, may: !inner.record.held };
  }
  const parts = ('all' in n ? n.all : n.any).map((c) => recordOf(c, rules, held, failed));
  const list = parts.map((p) => p.record);
  if ('all' in n) return { record: { all: list, held: list.every((c) => c.held) }, may: parts.every((p) => p.may) };
  return { record: { any: list, held: list.some((c) => c.held) }, may: parts.some((p) => p.may) };
}

/** A tree as text over rule names: `a and (b or not c)`. */
export function conditionText(n: IndexTree, rules: readonly Rule[]): string {
  const inner = (c: IndexTree): string => (typeof c === 'number' || 'not' in c ? conditionText(c, rules) : `(${conditionText(c, rules)})`);
  if (typeof n === 'number') return nameOf(rules, n);
  if ('not' in n) return `not ${inner(n.not)}`;
  const list = 'all' in n ? n.all : n.any;
  if (list.length === 1) return conditionText(list[0] as IndexTree, rules);
  return list.map(inner).join('all' in n ? ' and ' : ' or ');
}

/**
 * The branch that decided a tree that held, as text: down through each `any` to its first child
 * that held; an `all`, a `not` or a name decides whole. Null when the tree did not hold.
 */
export function decidingBranch(n: IndexTree, rules: readonly Rule[], held: readonly boolean[], failed: readonly boolean[] = NONE_FAILED): string | null {
  if (!treeHolds(n, held, failed)) return null;
  let node = n;
  while (typeof node !== 'number' && 'any' in node) node = node.any.find((c) => treeHolds(c, held, failed)) as IndexTree;
  return conditionText(node, rules);
}
