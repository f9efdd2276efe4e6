/**
 * Checks that a rule's metric is a PromQL query Prometheus would accept, when a policy is written
 * (REST, policy files, `validate`), so a typo is refused at once instead of failing every cycle.
 *
 * Syntax is Prometheus's own grammar (@prometheus-io/lezer-promql, the parser of Prometheus's web
 * UI), run in strict mode: it stops at the first syntax error (the place where the error-tolerant
 * mode would put its first error node) instead of recovering, which keeps garbage input cheap.
 * Its lexer also takes an unterminated string literal, so that is checked here.
 *
 * Known limit of that parser: a chain of more than about 500 binary operators (`up + up + ...`)
 * exceeds its stack and is refused, though Prometheus would take it.
 *
 * On top of syntax, the checks Prometheus's own parser makes after parsing (its type checks),
 * which are cheap on the tree and catch queries that parse but that Prometheus refuses:
 * - a function's number of arguments and their types (`rate(up)` needs a range vector;
 *   `vector()` needs one argument), an aggregation's operand and parameter (`topk(up)`,
 *   `sum(up[5m])`);
 * - a binary operator's operands (scalars or instant vectors; a comparison of two scalars needs
 *   `bool`; `and`/`or`/`unless` need vectors; `on`/`ignoring` only between vectors);
 * - a range `[5m]` only after a selector, a subquery `[5m:1m]` only of an instant vector, `offset`
 *   and `@` only after a selector or subquery;
 * - a selector needs a metric name or a matcher that does not match the empty string (`{}` and
 *   `{job=""}` are refused), and one metric name only;
 * - string literals must be closed and use valid escapes.
 * And one check of the scaler's own: the query must answer an instant vector or a scalar (one
 * number per time), not a range vector (`up[5m]`) or a string.
 *
 * Not checked: label matcher regular expressions (Prometheus uses RE2, whose syntax differs from
 * JavaScript's), and whether metrics or labels exist.
 */
import { parser } from '@prometheus-io/lezer-promql';

type Tree = ReturnType<typeof parser.parse>;
type Node = Tree['topNode'];

/** Value types of PromQL expressions, as Prometheus names them in its messages. */
type ValueType = 'scalar' | 'instant vector' | 'range vector' | 'string' | 'none';

const TYPE: Record<string, ValueType> = { s: 'scalar', v: 'instant vector', m: 'range vector', S: 'string' };

/**
 * PromQL's functions: argument types (s scalar, v instant vector, m range vector, S string), how
 * many arguments may follow the fixed ones (0 none, -1 any number, n up to n; the last type
 * repeats), and the result type. From Prometheus's promql/parser/functions.go.
 */
const FUNCTIONS: Record<string, [string, number, string]> = {
  abs: ['v', 0, 'v'], absent: ['v', 0, 'v'], absent_over_time: ['m', 0, 'v'], acos: ['v', 0, 'v'], acosh: ['v', 0, 'v'],
  asin: ['v', 0, 'v'], asinh: ['v', 0, 'v'], atan: ['v', 0, 'v'], atanh: ['v', 0, 'v'], avg_over_time: ['m', 0, 'v'],
  ceil: ['v', 0, 'v'], changes: ['m', 0, 'v'], clamp: ['vss', 0, 'v'], clamp_max: ['vs', 0, 'v'], clamp_min: ['vs', 0, 'v'],
  cos: ['v', 0, 'v'], cosh: ['v', 0, 'v'], count_over_time: ['m', 0, 'v'], days_in_month: ['v', 1, 'v'], day_of_month: ['v', 1, 'v'],
  day_of_week: ['v', 1, 'v'], day_of_year: ['v', 1, 'v'], deg: ['v', 0, 'v'], delta: ['m', 0, 'v'], deriv: ['m', 0, 'v'],
  end: ['', 0, 's'], exp: ['v', 0, 'v'], first_over_time: ['m', 0, 'v'], floor: ['v', 0, 'v'], histogram_avg: ['v', 0, 'v'],
  histogram_count: ['v', 0, 'v'], histogram_fraction: ['ssv', 0, 'v'], histogram_quantile: ['sv', 0, 'v'], histogram_quantiles: ['vSss', 10, 'v'],
  histogram_stddev: ['v', 0, 'v'], histogram_stdvar: ['v', 0, 'v'], histogram_sum: ['v', 0, 'v'], double_exponential_smoothing: ['mss', 0, 'v'],
  hour: ['v', 1, 'v'], idelta: ['m', 0, 'v'], increase: ['m', 0, 'v'], info: ['vv', 1, 'v'], irate: ['m', 0, 'v'],
  label_replace: ['vSSSS', 0, 'v'], label_join: ['vSSS', -1, 'v'], last_over_time: ['m', 0, 'v'], ln: ['v', 0, 'v'], log10: ['v', 0, 'v'],
  log2: ['v', 0, 'v'], mad_over_time: ['m', 0, 'v'], max_over_time: ['m', 0, 'v'], min_over_time: ['m', 0, 'v'], ts_of_first_over_time: ['m', 0, 'v'],
  ts_of_max_over_time: ['m', 0, 'v'], ts_of_min_over_time: ['m', 0, 'v'], ts_of_last_over_time: ['m', 0, 'v'], minute: ['v', 1, 'v'], month: ['v', 1, 'v'],
  pi: ['', 0, 's'], predict_linear: ['ms', 0, 'v'], present_over_time: ['m', 0, 'v'], quantile_over_time: ['sm', 0, 'v'], rad: ['v', 0, 'v'],
  range: ['', 0, 's'], rate: ['m', 0, 'v'], resets: ['m', 0, 'v'], round: ['vs', 1, 'v'], scalar: ['v', 0, 's'], sgn: ['v', 0, 'v'],
  sin: ['v', 0, 'v'], sinh: ['v', 0, 'v'], sort: ['v', 0, 'v'], sort_desc: ['v', 0, 'v'], sort_by_label: ['vS', -1, 'v'],
  sort_by_label_desc: ['vS', -1, 'v'], sqrt: ['v', 0, 'v'], start: ['', 0, 's'], start_timestamp: ['v', 0, 'v'], step: ['', 0, 's'],
  stddev_over_time: ['m', 0, 'v'], stdvar_over_time: ['m', 0, 'v'], sum_over_time: ['m', 0, 'v'], tan: ['v', 0, 'v'], tanh: ['v', 0, 'v'],
  time: ['', 0, 's'], timestamp: ['v', 0, 'v'], vector: ['s', 0, 'v'], year: ['v', 1, 'v'],
};

/** Aggregations that take a parameter before the vector, and its type. */
const AGGREGATION_PARAM: Record<string, ValueType> = {
  topk: 'scalar',
  bottomk: 'scalar',
  limitk: 'scalar',
  limit_ratio: 'scalar',
  quantile: 'scalar',
  count_values: 'string',
};

const COMPARISONS = new Set(['Eql', 'Neq', 'Lte', 'Lss', 'Gte', 'Gtr', 'TrimUpper', 'TrimLower']);
const SET_OPERATORS = new Set(['And', 'Or', 'Unless']);
const EXPRESSIONS = new Set([
  'AggregateExpr', 'BinaryExpr', 'FunctionCall', 'MatrixSelector', 'NumberDurationLiteral', 'OffsetExpr', 'AnchoredExpr',
  'SmoothedExpr', 'ParenExpr', 'StringLiteral', 'SubqueryExpr', 'UnaryExpr', 'VectorSelector', 'StepInvariantExpr',
]);

/** A problem found in a query: where (0-based UTF-16 offset) and what. */
interface Found {
  at: number;
  what: string;
}

class QueryProblem extends Error {
  constructor(readonly found: Found) {
    super(found.what);
  }
}

function fail(at: number, what: string): never {
  throw new QueryProblem({ at, what });
}

/** The expression children of a node (skipping tokens, modifiers and comments). */
function exprChildren(node: Node): Node[] {
  const out: Node[] = [];
  for (let c = node.firstChild; c !== null; c = c.nextSibling) if (EXPRESSIONS.has(c.name)) out.push(c);
  return out;
}

function child(node: Node, name: string): Node | null {
  for (let c = node.firstChild; c !== null; c = c.nextSibling) if (c.name === name) return c;
  return null;
}

/**
 * Where an unclosed bracket starts, skipping strings and comments: for "unexpected end" errors,
 * the bracket that is missing its partner is the useful place to point at.
 */
function unclosedBracket(q: string): { at: number; bracket: string } | undefined {
  const stack: Array<{ at: number; bracket: string }> = [];
  const closing: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  for (let i = 0; i < q.length; i++) {
    const c = q[i] as string;
    if (c === '"' || c === "'" || c === '`') {
      const start = i;
      for (i++; i < q.length && q[i] !== c; i++) if (q[i] === '\\' && c !== '`') i++;
      if (i >= q.length) return { at: start, bracket: c };
    } else if (c === '#') {
      while (i < q.length && q[i] !== '\n') i++;
    } else if (c === '(' || c === '[' || c === '{') stack.push({ at: i, bracket: c });
    else if (c in closing) {
      if (stack.at(-1)?.bracket !== closing[c]) return undefined;
      stack.pop();
    }
  }
  return stack.at(-1);
}

/**
 * The parser in strict mode: it stops at the first syntax error instead of recovering, which on
 * garbage input is far cheaper (recovering through 8 KiB of noise takes half a second).
 */
const strictParser = parser.configure({ strict: true });

/** The tree, or the 0-based offset of the first syntax error. */
function parse(q: string): Tree | number {
  try {
    return strictParser.parse(q);
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    const at = /No parse at (\d+)/.exec(err.message);
    if (at !== null) return Number(at[1]);
    // Another wording: ask the error-tolerant parser where its first error node is.
    let first = 0;
    let found = false;
    parser.parse(q).iterate({
      enter: (n) => {
        if (found) return false;
        if (n.type.isError) {
          first = n.from;
          found = true;
          return false;
        }
        return undefined;
      },
    });
    return first;
  }
}

function syntaxError(q: string, at: number): Found {
  const rest = q.slice(at);
  if (/^\s*(?:#.*)?$/s.test(rest)) {
    const open = unclosedBracket(q);
    if (open !== undefined && '([{'.includes(open.bracket)) {
      return { at, what: `unexpected end of query: "${open.bracket}" at character ${charIndex(q, open.at)} is not closed` };
    }
    if (open !== undefined) return { at: open.at, what: `the string is not closed: a ${open.bracket} is missing` };
    if (q.replace(/#.*$/gm, '').trim() === '') return { at: 0, what: 'the query is empty' };
    return { at, what: 'unexpected end of query' };
  }
  const lead = /^\s*/.exec(rest)?.[0].length ?? 0;
  const token = /^(?:[A-Za-z_:][\w:]*|\d[\w.]*|\S)/u.exec(rest.slice(lead))?.[0] ?? '';
  return { at: at + lead, what: `unexpected ${JSON.stringify(token.length > 40 ? `${token.slice(0, 40)}...` : token)}` };
}

/** Checks a string literal: closed, with escapes PromQL knows. */
function checkString(q: string, node: Node): void {
  const text = q.slice(node.from, node.to);
  const quote = text[0] as string;
  if (quote === '`') {
    if (text.length < 2 || !text.endsWith('`')) fail(node.from, 'the string is not closed: a ` is missing');
    return;
  }
  let i = 1;
  for (; i < text.length; i++) {
    const c = text[i];
    if (c === quote) break;
    if (c === '\\') {
      const esc = text.slice(i + 1);
      const m = /^(?:[abfnrtv\\'"]|x[0-9a-fA-F]{2}|[0-7]{3}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})/.exec(esc);
      if (m === null || (m[0] === "'" && quote === '"') || (m[0] === '"' && quote === "'")) {
        fail(node.from + i, `unknown escape sequence ${JSON.stringify(`\\${esc.slice(0, 1)}`)} in a string`);
      }
      i += m[0].length;
    }
  }
  if (i !== text.length - 1) fail(node.from, `the string is not closed: a ${quote} is missing`);
}

/** The unquoted value of a string literal (escapes resolved well enough to compare with ""). */
function stringValue(q: string, node: Node): string {
  const text = q.slice(node.from, node.to);
  return text.slice(1, -1);
}

/** Whether a label matcher matches the empty string (so it alone cannot select a series). */
function matchesEmpty(q: string, matcher: Node): boolean {
  const op = child(matcher, 'MatchOp')?.firstChild?.name;
  const valueNode = matcher.lastChild;
  if (op === undefined || valueNode === null || valueNode.name !== 'StringLiteral') return false;
  const value = stringValue(q, valueNode);
  switch (op) {
    case 'EqlSingle':
      return value === '';
    case 'Neq':
      return value !== '';
    case 'EqlRegex':
    case 'NeqRegex': {
      let re: RegExp;
      try {
        re = new RegExp(`^(?:${value})$`);
      } catch {
        return false; // RE2 syntax JavaScript does not read: assume it may select series.
      }
      return op === 'EqlRegex' ? re.test('') : !re.test('');
    }
    default:
      return false;
  }
}

function checkSelector(q: string, node: Node): void {
  const name = child(node, 'Identifier');
  const matchers = child(node, 'LabelMatchers');
  const list: Node[] = [];
  for (let c = matchers?.firstChild ?? null; c !== null; c = c.nextSibling) {
    if (c.name === 'UnquotedLabelMatcher' || c.name === 'QuotedLabelMatcher' || c.name === 'QuotedLabelName') list.push(c);
  }
  let names = name !== null ? 1 : 0;
  for (const m of list) {
    if (m.name === 'QuotedLabelName') {
      names++; // {"metric_name"} names the metric
      continue;
    }
    const label = m.firstChild;
    const labelText = label === null ? '' : label.name === 'QuotedLabelName' ? stringValue(q, label.firstChild ?? label) : q.slice(label.from, label.to);
    if (labelText === '__name__' && child(m, 'MatchOp')?.firstChild?.name === 'EqlSingle') names++;
  }
  if (names > 1) fail(node.from, 'the metric name must not be set twice');
  if (name === null && list.every((m) => m.name !== 'QuotedLabelName' && matchesEmpty(q, m))) {
    fail(node.from, 'a selector must have a metric name or at least one matcher that does not match the empty string');
  }
}

/** Type-checks an expression as Prometheus's parser does after parsing; returns its type. */
function check(q: string, node: Node): ValueType {
  switch (node.name) {
    case 'NumberDurationLiteral':
      return 'scalar';
    case 'StringLiteral':
      checkString(q, node);
      return 'string';
    case 'VectorSelector':
      for (let c = child(node, 'LabelMatchers')?.firstChild ?? null; c !== null; c = c.nextSibling) {
        for (let s = c.firstChild; s !== null; s = s.nextSibling) {
          if (s.name === 'StringLiteral') checkString(q, s);
          else if (s.name === 'QuotedLabelName' && s.firstChild !== null) checkString(q, s.firstChild);
        }
        if (c.name === 'QuotedLabelName' && c.firstChild !== null) checkString(q, c.firstChild);
      }
      checkSelector(q, node);
      return 'instant vector';
    case 'ParenExpr': {
      const inner = exprChildren(node)[0];
      return inner === undefined ? 'none' : check(q, inner);
    }
    case 'UnaryExpr': {
      const inner = exprChildren(node)[0];
      if (inner === undefined) return 'none';
      const t = check(q, inner);
      if (t !== 'scalar' && t !== 'instant vector') fail(node.from, `a unary operator applies to a scalar or an instant vector, not a ${t}`);
      return t;
    }
    case 'MatrixSelector': {
      const inner = exprChildren(node)[0];
      if (inner === undefined) return 'range vector';
      check(q, inner);
      if (inner.name !== 'VectorSelector') fail(node.from, `a range [...] applies only to a metric selector such as up[5m], not to ${describe(inner)}; use a subquery [range:step] instead`);
      return 'range vector';
    }
    case 'SubqueryExpr': {
      const inner = exprChildren(node)[0];
      if (inner === undefined) return 'range vector';
      const t = check(q, inner);
      if (t !== 'instant vector') fail(node.from, `a subquery applies only to an instant vector, not a ${t}`);
      return 'range vector';
    }
    case 'OffsetExpr':
    case 'StepInvariantExpr': {
      const inner = exprChildren(node)[0];
      if (inner === undefined) return 'none';
      const t = check(q, inner);
      let base = inner;
      while (base.name === 'OffsetExpr' || base.name === 'StepInvariantExpr') {
        if (base.name === node.name) fail(node.from, node.name === 'OffsetExpr' ? 'offset may not be set twice' : '@ may not be set twice');
        const next = exprChildren(base)[0];
        if (next === undefined) break;
        base = next;
      }
      if (!['VectorSelector', 'MatrixSelector', 'SubqueryExpr'].includes(base.name)) {
        fail(node.from, `${node.name === 'OffsetExpr' ? 'offset' : '@'} must follow a selector or a subquery, not ${describe(base)}`);
      }
      return t;
    }
    case 'AnchoredExpr':
    case 'SmoothedExpr': {
      const inner = exprChildren(node)[0];
      return inner === undefined ? 'none' : check(q, inner);
    }
    case 'FunctionCall':
      return checkFunction(q, node);
    case 'AggregateExpr':
      return checkAggregation(q, node);
    case 'BinaryExpr':
      return checkBinary(q, node);
    default:
      return 'none';
  }
}

function describe(node: Node): string {
  switch (node.name) {
    case 'FunctionCall':
      return 'a function call';
    case 'AggregateExpr':
      return 'an aggregation';
    case 'BinaryExpr':
      return 'an operation';
    case 'ParenExpr':
      return 'an expression in parentheses';
    case 'UnaryExpr':
      return 'a negated expression';
    case 'NumberDurationLiteral':
      return 'a number';
    case 'StringLiteral':
      return 'a string';
    default:
      return 'this expression';
  }
}

function expectType(q: string, arg: Node, want: ValueType, context: string): void {
  const got = check(q, arg);
  if (got !== want && got !== 'none') fail(arg.from, `expected type ${want} in ${context}, got ${got}`);
}

function checkFunction(q: string, node: Node): ValueType {
  const id = child(node, 'FunctionIdentifier');
  const name = id === null ? '' : q.slice(id.from, id.to);
  const body = child(node, 'FunctionCallBody');
  const args = body === null ? [] : exprChildren(body);
  const sig = FUNCTIONS[name];
  if (sig === undefined) {
    for (const a of args) check(q, a);
    return 'instant vector'; // a function this table does not know (a newer Prometheus's): not checked
  }
  const [types, variadic, result] = sig;
  const n = types.length;
  if (variadic === 0) {
    if (args.length !== n) fail(node.from, `expected ${n} argument(s) in call to "${name}", got ${args.length}`);
  } else if (args.length < n - 1) {
    fail(node.from, `expected at least ${n - 1} argument(s) in call to "${name}", got ${args.length}`);
  } else if (variadic > 0 && args.length > n - 1 + variadic) {
    fail(node.from, `expected at most ${n - 1 + variadic} argument(s) in call to "${name}", got ${args.length}`);
  }
  args.forEach((a, i) => {
    const t = TYPE[types[Math.min(i, n - 1)] as string] as ValueType;
    expectType(q, a, t, `call to function "${name}"`);
  });
  return TYPE[result] as ValueType;
}

function checkAggregation(q: string, node: Node): ValueType {
  const opNode = child(node, 'AggregateOp');
  const op = opNode === null ? '' : q.slice(opNode.from, opNode.to).toLowerCase();
  const body = child(node, 'FunctionCallBody');
  const args = body === null ? [] : exprChildren(body);
  const param = AGGREGATION_PARAM[op];
  const want = param === undefined ? 1 : 2;
  if (args.length !== want) fail(node.from, `wrong number of arguments for aggregation "${op}": expected ${want}, got ${args.length}`);
  if (param !== undefined) expectType(q, args[0] as Node, param, `aggregation parameter of "${op}"`);
  expectType(q, args[want - 1] as Node, 'instant vector', `aggregation "${op}"`);
  return 'instant vector';
}

function checkBinary(q: string, node: Node): ValueType {
  const [left, right] = exprChildren(node);
  if (left === undefined || right === undefined) return 'none';
  const lt = check(q, left);
  const rt = check(q, right);
  let op = '';
  let bool = false;
  let matching: Node | null = null;
  for (let c = node.firstChild; c !== null; c = c.nextSibling) {
    if (c === left || c === right) continue;
    if (c.name === 'BoolModifier') bool = true;
    else if (c.name === 'MatchingModifierClause') matching = c;
    else if (COMPARISONS.has(c.name) || SET_OPERATORS.has(c.name) || ['Pow', 'Mul', 'Div', 'Mod', 'Atan2', 'Add', 'Sub'].includes(c.name)) op = c.name;
  }
  const opText = q.slice(left.to, right.from).trim().split(/\s+/)[0] ?? op;
  for (const [side, t] of [[left, lt], [right, rt]] as const) {
    if (t !== 'scalar' && t !== 'instant vector' && t !== 'none') fail(side.from, `"${opText}" applies to scalars and instant vectors, not a ${t}`);
  }
  if (bool && !COMPARISONS.has(op)) fail(node.from, 'bool can only be used with comparison operators');
  if (!bool && lt === 'scalar' && rt === 'scalar' && COMPARISONS.has(op)) fail(node.from, 'a comparison between two scalars must use bool, such as 1 > bool 0');
  if (SET_OPERATORS.has(op) && (lt === 'scalar' || rt === 'scalar')) fail(node.from, `the set operator "${opText}" applies to instant vectors only, not scalars`);
  if (matching !== null && (lt !== 'instant vector' || rt !== 'instant vector')) fail(matching.from, 'vector matching (on, ignoring) applies only between two instant vectors');
  if (matching !== null && SET_OPERATORS.has(op) && (child(matching, 'GroupLeft') !== null || child(matching, 'GroupRight') !== null)) {
    fail(matching.from, 'no group_left or group_right with a set operator');
  }
  return lt === 'scalar' && rt === 'scalar' ? 'scalar' : 'instant vector';
}

/** 1-based character (code point) position of a UTF-16 offset. */
function charIndex(q: string, offset: number): number {
  let n = 1;
  for (let i = 0; i < offset && i < q.length; i++) {
    const c = q.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < q.length) i++;
    n++;
  }
  return n;
}

function findProblem(q: string): Found | undefined {
  const tree = parse(q);
  if (typeof tree === 'number') return syntaxError(q, tree);
  const top = exprChildren(tree.topNode)[0];
  if (top === undefined) return { at: 0, what: 'the query is empty' };
  try {
    const t = check(q, top);
    if (t === 'range vector') {
      return { at: top.from, what: 'the query answers a range vector, but a rule needs one number per time (an instant vector or a scalar): wrap it in a function such as max_over_time(...)' };
    }
    if (t === 'string') return { at: top.from, what: 'the query answers a string, but a rule needs a number (an instant vector or a scalar)' };
  } catch (err) {
    if (err instanceof QueryProblem) return err.found;
    throw err;
  }
  return undefined;
}

const cache = new Map<string, string | null>();
const CACHE_LIMIT = 10_000;

/**
 * Why `query` is not a PromQL query a rule can use, as `invalid PromQL at character N: ...`
 * (N counted from 1), or undefined when it is fine. Answers are cached by query text: the same
 * metric in many policy files is parsed once.
 */
export function promqlProblem(query: string): string | undefined {
  const known = cache.get(query);
  if (known !== undefined) return known ?? undefined;
  const found = findProblem(query);
  const message = found === undefined ? null : `invalid PromQL at character ${charIndex(query, found.at)}: ${found.what}`;
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(query, message);
  return message ?? undefined;
}
