/**
 * promtool's expanding notation for input series (as `promtool test rules` reads `values`).
 * What is accepted, and what each term means, was checked term by term against promtool 2.42
 * (see the table in test/policy-tests.test.ts):
 *
 * - `a+bxn` is a, a+b, a+2b, ... a+nb: the value a, then n further values (n+1 in all);
 * - `a-bxn` likewise, decrementing;
 * - `axn` is a shorthand for `a+0xn` (n+1 copies of a);
 * - `_` is a missing sample, `_xn` is n missing samples (not n+1: a missing sample cannot
 *   increment), so `_x0` is nothing;
 * - `stale` is a staleness marker, returned as STALE (not null, which is `_`), and only on its
 *   own: `stalex2`, `Stale` and `-stale` are errors.
 *
 * A number is digits with an optional decimal point and exponent (`5`, `.5`, `5.`, `1.5e3`,
 * `1E-3`), with an optional sign (`+5`, `-5`), or `Inf` / `NaN` in any case, with an optional
 * sign (`-inf`). Not numbers: hexadecimal or binary (`0x1F`, `0b1`; `0x3` is 0 repeated 3
 * times, as in promtool), underscores (`1_000`), `Infinity`, an exponent without digits (`1e`),
 * and a number too large for a 64-bit float (`1e309`, `-1e999`); one too small reads as 0
 * (`1e-400`). As in promtool, a number written with a leading 0 and only the digits 0-7 is
 * octal (`010` is 8, `0755` is 493) when it fits a signed 64-bit integer; `08` and `010.5` are
 * decimal.
 *
 * The count n after `x` is a whole number written in decimal digits (`x010` is 10); it cannot be
 * signed, fractional or in scientific notation. The step b is a number but not `Inf` or `NaN`,
 * and `Inf` / `NaN` cannot take `x` directly (promtool reads `Infx2` and `1+Infx2` as a name and
 * rejects them); `Inf+0x2` repeats Inf. A step needs a count: `1+1` is an error. The x is
 * lower case (`1X2` is an error).
 *
 * Terms are separated by spaces, tabs or carriage returns; no other character, not even other
 * Unicode spaces, may appear. A line break may only end the string (as a YAML `|` or `>` block
 * leaves it): values cannot continue on a second line.
 *
 * Like promtool, a+bxn adds b n times rather than multiplying, so floating-point results are
 * bit-for-bit the ones promtool would produce (and may overflow to Inf, `1e308+1e308x1`).
 *
 * Deliberate differences from promtool, each an error here where promtool silently does
 * something surprising: `stale+1x3` (promtool: a stale marker followed by NaNs); text after a
 * line break that follows the values (promtool ignores what follows a blank line or a `#`, and
 * rejects the rest); and a series of more than MAX_SERIES_VALUES values (promtool tries to
 * build it, `1x1e18` never finishes).
 */

/** The staleness marker that the term `stale` stands for; compare with `=== STALE`. */
export class StaleMarker {
  /** The one marker. */
  static readonly INSTANCE: StaleMarker = new StaleMarker();
  private constructor() {
    Object.freeze(this);
  }
  toString(): string {
    return 'stale';
  }
}

/** What `stale` expands to: distinct from null (`_`, a missing sample). */
export const STALE: StaleMarker = StaleMarker.INSTANCE;

/** A series value: a number, null for a missing sample (`_`), or STALE for a staleness marker. */
export type SeriesValue = number | null | StaleMarker;

/** A term of a `values` string that could not be read; `term` is the term as written. */
export class ExpandingNotationError extends Error {
  readonly term: string;
  /** 0-based index of the term among the whitespace-separated terms. */
  readonly index: number;
  constructor(term: string, index: number, why: string) {
    super(`term ${index + 1} "${term}": ${why}`);
    this.name = 'ExpandingNotationError';
    this.term = term;
    this.index = index;
  }
}

/** At most this many values per series, so one typo (`1x1e9`) cannot exhaust memory. */
export const MAX_SERIES_VALUES = 1_000_000;

/** A number as promtool's lexer reads one in series values: no sign, not Inf or NaN. */
const DIGITS = String.raw`(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?`;
const INF_NAN = String.raw`[iI][nN][fF]|[nN][aA][nN]`;
/** `a`, `axn`, `a+bxn`, `a-bxn`; a may be Inf or NaN only when no x follows it directly. */
const VALUE_TERM = new RegExp(String.raw`^([+-]?)(?:(${DIGITS})|(${INF_NAN}))(?:x(\d+)|([+-])(${DIGITS})x(\d+))?$`);
const MISSING_TERM = /^_(?:x(\d+))?$/;
/** Separators between terms: promtool's spaces. A line feed may only end the string. */
const SEPARATORS = /[ \t\r\n]+/;
const INT64_MAX = 2n ** 63n - 1n;

/**
 * The value of an unsigned number token, as promtool's parser computes it: Go's
 * strconv.ParseInt(text, 0, 64) first (so `010` is octal), then strconv.ParseFloat.
 * Returns undefined when the number does not fit a float64 (`1e309`).
 */
function tokenValue(text: string): number | undefined {
  const lower = text.toLowerCase();
  if (lower === 'inf') return Infinity;
  if (lower === 'nan') return NaN;
  if (/^0[0-7]+$/.test(text)) {
    const octal = BigInt(`0o${text.slice(1)}`);
    if (octal <= INT64_MAX) return Number(octal);
  }
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

function explain(term: string): string {
  const odd = /[^0-9A-Za-z_.+-]/u.exec(term);
  if (odd !== null) {
    const c = odd[0];
    const shown = /^[\x21-\x7e]$/.test(c) ? `"${c}"` : `U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
    return `unexpected character ${shown}; terms are separated by spaces or tabs`;
  }
  if (term.startsWith('stale')) return '"stale" cannot be expanded; write it once per sample';
  if (/^_[+-]/.test(term)) return 'a missing sample cannot increment; write _xN for N missing samples';
  if (/^[+-]?(?:inf|nan)x/i.test(term)) return 'Inf and NaN cannot be followed by x (promtool reads it as a name); write Inf+0xN to repeat Inf';
  if (/[+-](?:inf|nan)(?:x|$)/i.test(term.slice(1))) return 'Inf and NaN cannot be a step; the step after + or - must be a finite number';
  if (/x$/.test(term)) return 'x must be followed by a count, such as 1+1x10';
  if (/x\d*\.\d*$|x\d*e|x[+-]/i.test(term)) return 'the count after x must be a whole number in decimal digits';
  if (/^0x[0-9a-f]*$/i.test(term) && !/^0x\d+$/.test(term)) return 'hexadecimal is not read in series values';
  if (/^[+-]?\d[\d.]*_/.test(term)) return 'numbers cannot contain underscores';
  if (/^[+-]?\d+(?:\.\d*)?[eE][+-]?$/.test(term)) return 'an exponent needs digits, such as 1e3';
  if (/^[+-]?(?:\d|\.\d)[\d.eE+-]*[+-]\d[\d.eE]*$/.test(term)) return 'a step needs a count: write a+bxN, such as 1+1x10';
  return 'expected a number, a+bxN, a-bxN, axN, _, _xN or stale';
}

/**
 * Expands a promtool `values` string into one value per step: a number, null for `_` (a missing
 * sample) or STALE for `stale`. Throws ExpandingNotationError naming the first term that
 * promtool would not read (or that this reader refuses on purpose, see the module comment).
 */
export function expandSeries(text: string): SeriesValue[] {
  const out: SeriesValue[] = [];
  const body = text.replace(/[ \t\r\n]+$/, '').replace(/^[ \t\r]+/, '');
  const lineBreak = body.indexOf('\n');
  const terms = body.split(SEPARATORS).filter((s) => s.length > 0);
  if (lineBreak !== -1) {
    // promtool reads values as one line; the first term after the break is the one it trips on.
    const index = body.slice(0, lineBreak).split(SEPARATORS).filter((s) => s.length > 0).length;
    const term = terms[index] ?? '';
    throw new ExpandingNotationError(term, index, 'values continue after a line break; promtool reads values as one line, so write them all on one line');
  }
  terms.forEach((term, index) => {
    const room = (n: number): void => {
      if (out.length + n > MAX_SERIES_VALUES) throw new ExpandingNotationError(term, index, `the series would have more than ${MAX_SERIES_VALUES} values`);
    };
    const count = (digits: string): number => {
      const n = Number(digits);
      if (!Number.isSafeInteger(n)) throw new ExpandingNotationError(term, index, 'the count after x is too large');
      return n;
    };
    if (term === 'stale') {
      out.push(STALE);
      return;
    }
    const missing = MISSING_TERM.exec(term);
    if (missing !== null) {
      const n = missing[1] === undefined ? 1 : count(missing[1]);
      room(n);
      for (let i = 0; i < n; i++) out.push(null);
      return;
    }
    const m = VALUE_TERM.exec(term);
    if (m === null) throw new ExpandingNotationError(term, index, explain(term));
    const [, sign, digits, infNan, repeat, stepSign, step, stepCount] = m;
    // promtool's lexer reads `Infx2` as one word, a name, not as Inf repeated.
    if (infNan !== undefined && repeat !== undefined) throw new ExpandingNotationError(term, index, explain(term));
    const base = tokenValue((digits ?? infNan) as string);
    const stepValue = step === undefined ? 0 : tokenValue(step);
    if (base === undefined || stepValue === undefined) {
      throw new ExpandingNotationError(term, index, 'the number is out of range: a value must be at most 1.7976931348623157e308 in size');
    }
    let value = sign === '-' ? -base : base;
    const times = repeat ?? stepCount;
    if (times === undefined) {
      out.push(value);
      return;
    }
    const n = count(times);
    room(n + 1);
    const increment = stepSign === '-' ? -stepValue : stepValue;
    for (let i = 0; i <= n; i++) {
      out.push(value);
      value += increment;
    }
  });
  return out;
}
