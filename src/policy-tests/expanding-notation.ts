/**
 * promtool's expanding notation for input series (as `promtool test rules` reads `values`):
 *
 * - `a+bxn` is a, a+b, a+2b, ... a+nb: the value a, then n further values (n+1 in all);
 * - `a-bxn` likewise, decrementing;
 * - `axn` is a shorthand for `a+0xn` (n+1 copies of a);
 * - `_` is a missing sample, `_xn` is n missing samples (not n+1: a missing sample cannot increment);
 * - `stale` is a staleness marker; a scaling rule sees no value there, so it is a missing sample too;
 * - numbers may be signed, decimal, in scientific notation (`1.5e3`), or `Inf` / `NaN`.
 *
 * Terms are separated by whitespace. Hexadecimal is not read, as in promtool (`0x3` is 0 repeated).
 * Like promtool, a+bxn adds b n times rather than multiplying, so floating-point results are
 * bit-for-bit the ones promtool would produce. One deliberate difference: promtool reads
 * `stale+1x3` as a stale marker followed by NaNs; here it is an error.
 */

/** A series value: a number, or null for a missing (or stale) sample. */
export type SeriesValue = number | null;

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

const NUMBER = String.raw`[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[iI][nN][fF]|[nN][aA][nN])`;
const UNSIGNED = String.raw`(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[iI][nN][fF]|[nN][aA][nN])`;
const VALUE_TERM = new RegExp(`^(${NUMBER})(?:(?:([+-])(${UNSIGNED}))?x(\\d+))?$`);
const MISSING_TERM = /^_(?:x(\d+))?$/;

function toNumber(text: string): number {
  const lower = text.toLowerCase();
  const sign = lower.startsWith('-') ? -1 : 1;
  const bare = lower.replace(/^[+-]/, '');
  if (bare === 'inf') return sign * Infinity;
  if (bare === 'nan') return NaN;
  return Number(text);
}

function explain(term: string): string {
  if (term.startsWith('stale')) return '"stale" cannot be expanded; write it once per sample';
  if (/^_[+-]/.test(term)) return 'a missing sample cannot increment; write _xN for N missing samples';
  if (/x$/.test(term)) return 'x must be followed by a count, such as 1+1x10';
  if (/x\d*\.\d*$|x-/.test(term)) return 'the count after x must be a whole number';
  if (/^0x[0-9a-f]*$/i.test(term) && !/^0x\d+$/.test(term)) return 'hexadecimal is not read in series values';
  return 'expected a number, a+bxN, a-bxN, axN, _, _xN or stale';
}

/** Expands a promtool `values` string into one value per step; throws ExpandingNotationError. */
export function expandSeries(text: string): SeriesValue[] {
  const out: SeriesValue[] = [];
  const terms = text.trim().split(/\s+/).filter((s) => s.length > 0);
  terms.forEach((term, index) => {
    const room = (n: number): void => {
      if (out.length + n > MAX_SERIES_VALUES) throw new ExpandingNotationError(term, index, `the series would have more than ${MAX_SERIES_VALUES} values`);
    };
    if (term === 'stale') {
      out.push(null);
      return;
    }
    const missing = MISSING_TERM.exec(term);
    if (missing !== null) {
      const n = missing[1] === undefined ? 1 : Number(missing[1]);
      room(n);
      for (let i = 0; i < n; i++) out.push(null);
      return;
    }
    const m = VALUE_TERM.exec(term);
    if (m === null) throw new ExpandingNotationError(term, index, explain(term));
    const [, a, sign, b, count] = m;
    let value = toNumber(a as string);
    if (count === undefined) {
      out.push(value);
      return;
    }
    const n = Number(count);
    if (!Number.isSafeInteger(n)) throw new ExpandingNotationError(term, index, 'the count after x is too large');
    room(n + 1);
    const step = b === undefined ? 0 : (sign === '-' ? -1 : 1) * toNumber(b);
    for (let i = 0; i <= n; i++) {
      out.push(value);
      value += step;
    }
  });
  return out;
}
