import type { FieldError } from '../errors.js';
import type { ConditionNode } from './policy-input.generated.js';

export type { ConditionNode };

/*
 * Condition trees (`scale_up_when`, `scale_down_when`): how a direction's named rules combine,
 * as nested all / any / not. This module checks a tree as it arrives (every problem at its JSON
 * pointer) and compiles a valid one over rule positions, which is what the engine evaluates.
 */

/** At most this many levels of all / any / not (a bare rule name is no level). */
export const MAX_CONDITION_DEPTH = 5;
/** At most this many nodes (names included) in one tree. */
export const MAX_CONDITION_NODES = 200;
/** At most this many children of one all or any (as many as a direction has rules). */
export const MAX_CONDITION_CHILDREN = 50;

const NAME_RE = /^[a-z][a-z0-9_]{0,62}$/;

/** A tree over rule positions: a number is the rule at that position of its direction. */
export type IndexTree = number | { all: IndexTree[] } | { any: IndexTree[] } | { not: IndexTree };

export type Direction = 'scale_up' | 'scale_down';

const WORDS: Record<Direction, { rules: string; rule: string; when: string; other: string }> = {
  scale_up: { rules: 'scale_up_rules', rule: 'scale-up rule', when: 'scale_up_when', other: 'scale-down rule' },
  scale_down: { rules: 'scale_down_rules', rule: 'scale-down rule', when: 'scale_down_when', other: 'scale-up rule' },
};

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

const quote = (s: string): string => JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}...` : s);

/**
 * The rule names a policy body gives, each with its direction and position; duplicates and names
 * that break the pattern are left to the schema and to checkRuleNames.
 */
export function ruleNamesOf(input: Obj): Map<string, { direction: Direction; index: number }> {
  const out = new Map<string, { direction: Direction; index: number }>();
  for (const direction of ['scale_up', 'scale_down'] as const) {
    const rules = input[WORDS[direction].rules];
    if (!Array.isArray(rules)) continue;
    rules.forEach((r: unknown, index) => {
      const name = isObj(r) ? r['name'] : undefined;
      if (typeof name === 'string' && !out.has(name)) out.set(name, { direction, index });
    });
  }
  return out;
}

/** Two rules of a policy (either direction) with the same name: a 422 at the second one's name. */
export function checkRuleNames(input: Obj, errors: FieldError[]): void {
  const first = new Map<string, string>();
  for (const direction of ['scale_up', 'scale_down'] as const) {
    const key = WORDS[direction].rules;
    const rules = input[key];
    if (!Array.isArray(rules)) continue;
    rules.forEach((r: unknown, i) => {
      const name = isObj(r) ? r['name'] : undefined;
      if (typeof name !== 'string') return;
      const at = `/${key}/${i}`;
      const seen = first.get(name);
      if (seen !== undefined) errors.push({ field: `${at}/name`, message: `${quote(name)} is already the name of ${seen}: rule names are unique within a policy` });
      else first.set(name, at);
    });
  }
}

/**
 * Every problem of one direction's tree, each at its JSON pointer: a node that is neither a name
 * nor an object with exactly one of all / any / not; an empty or too long all / any; a name
 * that is no rule of this direction; more than MAX_CONDITION_DEPTH levels or
 * MAX_CONDITION_NODES nodes; a rule of the direction that the tree does not use; and the tree
 * given together with the direction's `*_match`. Safe on any input: it never descends past the
 * depth limit, so a hostile nesting cannot exhaust the stack.
 */
export function checkConditionTree(input: Obj, direction: Direction, errors: FieldError[]): void {
  const w = WORDS[direction];
  const tree = input[w.when];
  if (tree === undefined || tree === null) return;
  const at = `/${w.when}`;
  const match = input[`${direction}_match`];
  if (match !== undefined && match !== null) {
    errors.push({ field: `/${direction}_match`, message: `cannot be given with ${w.when}: the tree says how the rules combine; remove one of them` });
  }
  const names = ruleNamesOf(input);
  const used = new Set<string>();
  let nodes = 0;
  let tooMany = false;
  const visit = (node: unknown, pointer: string, depth: number): void => {
    nodes++;
    if (nodes > MAX_CONDITION_NODES) {
      if (!tooMany) errors.push({ field: at, message: `has more than ${MAX_CONDITION_NODES} nodes` });
      tooMany = true;
      return;
    }
    if (typeof node === 'string') {
      if (!NAME_RE.test(node)) {
        errors.push({ field: pointer, message: `${quote(node)} is not a rule name: a lower-case letter, then lower-case letters, digits or _, at most 63 characters` });
        return;
      }
      used.add(node);
      const rule = names.get(node);
      if (rule === undefined) {
        const known = [...names].filter(([, r]) => r.direction === direction).map(([n]) => n);
        errors.push({ field: pointer, message: `${quote(node)} is not the name of a ${w.rule}; ${known.length > 0 ? `names: ${known.join(', ')}` : `no ${w.rule} has a name`}` });
      } else if (rule.direction !== direction) {
        errors.push({ field: pointer, message: `${quote(node)} names a ${w.other}; ${w.when} can only use the ${w.rules}` });
      }
      return;
    }
    if (!isObj(node)) {
      errors.push({ field: pointer, message: 'must be a rule name, or an object with one key: all, any or not' });
      return;
    }
    const keys = Object.keys(node);
    if (keys.length !== 1 || !['all', 'any', 'not'].includes(keys[0] as string)) {
      const shown = keys.slice(0, 5).map((k) => quote(k)).join(', ');
      errors.push({ field: pointer, message: `must have exactly one key, all, any or not; ${keys.length === 0 ? 'it has none' : `it has ${shown}`}` });
      return;
    }
    const op = keys[0] as 'all' | 'any' | 'not';
    if (depth + 1 > MAX_CONDITION_DEPTH) {
      errors.push({ field: pointer, message: `is level ${depth + 1} of all/any/not; a tree has at most ${MAX_CONDITION_DEPTH}` });
      return;
    }
    const inner = node[op];
    if (op === 'not') {
      visit(inner, `${pointer}/not`, depth + 1);
      return;
    }
    if (!Array.isArray(inner) || inner.length === 0 || inner.length > MAX_CONDITION_CHILDREN) {
      errors.push({ field: `${pointer}/${op}`, message: `must be a list of 1 to ${MAX_CONDITION_CHILDREN} nodes${Array.isArray(inner) ? `, got ${inner.length}` : ''}` });
      return;
    }
    inner.forEach((child: unknown, i) => visit(child, `${pointer}/${op}/${i}`, depth + 1));
  };
  visit(tree, at, 0);
  if (tooMany) return;
  const rules = input[w.rules];
  if (!Array.isArray(rules)) return;
  rules.forEach((r: unknown, i) => {
    if (!isObj(r)) return;
    const name = r['name'];
    const pointer = `/${w.rules}/${i}/name`;
    if (typeof name !== 'string') {
      errors.push({ field: pointer, message: `is required when ${w.when} is given: the tree must use every ${w.rule} by its name` });
    } else if (!used.has(name)) {
      errors.push({ field: pointer, message: `${quote(name)} is not used by ${w.when}: use it in the tree, or remove the rule` });
    }
  });
}

/** A valid tree over the rules of its direction, names replaced by rule positions. */
export function compileTree(tree: ConditionNode, rules: ReadonlyArray<{ name: string | null }>): IndexTree {
  if (typeof tree === 'string') {
    const i = rules.findIndex((r) => r.name === tree);
    if (i < 0) throw new Error(`condition tree names "${tree}", which is no rule of its direction`);
    return i;
  }
  if ('not' in tree) return { not: compileTree(tree.not, rules) };
  if ('all' in tree) return { all: tree.all.map((n) => compileTree(n, rules)) };
  return { any: tree.any.map((n) => compileTree(n, rules)) };
}

/** The tree as text: `a and (b or not c)`. */
export function treeText(tree: ConditionNode): string {
  const inner = (n: ConditionNode): string => {
    const t = treeText(n);
    return typeof n === 'string' || 'not' in n ? t : `(${t})`;
  };
  if (typeof tree === 'string') return tree;
  if ('not' in tree) return `not ${inner(tree.not)}`;
  if ('all' in tree) return tree.all.length === 1 ? treeText(tree.all[0]) : tree.all.map(inner).join(' and ');
  return tree.any.length === 1 ? treeText(tree.any[0]) : tree.any.map(inner).join(' or ');
}
