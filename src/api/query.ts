import type { ParsedUrlQuery } from 'node:querystring';
import { nearestName } from '../util/nearest.js';
import { ScalerError, type FieldError } from '../errors.js';

type Spec =
  | { type: 'int'; min: number; max: number }
  | { type: 'bool' }
  | { type: 'string'; pattern?: RegExp; maxLength?: number }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'time' };

type Out<S> = S extends { type: 'int' } ? number : S extends { type: 'bool' } ? boolean : string;

const ISO_TIME_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+\- ]\d{2}:?\d{2})?)?$/i;

/**
 * Parses an ISO-8601 date or date-time strictly, into a UTC ISO string. Date.parse alone is not
 * enough: V8 accepts "2026-02-30" (as March 2) and "2026-01-01 junk" (as June 1), and reads a
 * date-time without an offset in the server's local zone. Here a missing offset means UTC, a
 * day or time that does not exist is refused, and an offset's "+" sent unencoded (so arriving as
 * a space) still counts.
 */
export function parseIsoTime(raw: string): string | undefined {
  const m = ISO_TIME_RE.exec(raw);
  if (m === null) return undefined;
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac = '', zone] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  if (month < 1 || month > 12 || day < 1 || Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return undefined;
  const last = new Date(0);
  last.setUTCFullYear(year, month, 0); // day 0 of the next month: the month's last day (Date.UTC maps years 0-99 to 19xx)
  const daysInMonth = last.getUTCDate();
  if (day > daysInMonth) return undefined;
  let offset = 'Z';
  if (zone !== undefined && zone.toUpperCase() !== 'Z') {
    // An unencoded "+" in a query string arrives as a space.
    const digits = zone.replace(':', '').replace(' ', '+');
    if (Number(digits.slice(1, 3)) > 23 || Number(digits.slice(3, 5)) > 59) return undefined;
    offset = `${digits.slice(0, 3)}:${digits.slice(3, 5)}`;
  }
  const ms = frac === '' ? '' : frac.slice(0, 4).padEnd(4, '0');
  const t = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}${ms}${offset}`);
  return Number.isNaN(t) ? undefined : new Date(t).toISOString();
}

/**
 * Parses query parameters by a small spec; every bad value is a 400 naming `/query/<name>`.
 * A parameter given twice is an error too, rather than a silent pick of one.
 */
export function parseQuery<T extends Record<string, Spec>>(query: ParsedUrlQuery, spec: T): { [K in keyof T]?: Out<T[K]> } {
  const out: Record<string, unknown> = {};
  const errors: FieldError[] = [];
  for (const [name, s] of Object.entries(spec)) {
    const raw = query[name];
    if (raw === undefined) continue;
    const field = `/query/${name}`;
    if (Array.isArray(raw)) {
      errors.push({ field, message: 'must be given once' });
      continue;
    }
    switch (s.type) {
      case 'int': {
        const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
        if (!Number.isSafeInteger(n) || n < s.min || n > s.max) errors.push({ field, message: `must be an integer from ${s.min} to ${s.max}` });
        else out[name] = n;
        break;
      }
      case 'bool':
        if (raw === 'true' || raw === 'false') out[name] = raw === 'true';
        else errors.push({ field, message: 'must be true or false' });
        break;
      case 'enum':
        if (s.values.includes(raw)) out[name] = raw;
        else errors.push({ field, message: `must be one of ${s.values.join(', ')}` });
        break;
      case 'time': {
        const iso = parseIsoTime(raw);
        if (iso === undefined) {
          errors.push({ field, message: 'must be an ISO-8601 date or time such as 2026-01-28 or 2026-01-28T12:00:00Z (UTC unless an offset is given)' });
        } else out[name] = iso;
        break;
      }
      default:
        if ((s.maxLength !== undefined && raw.length > s.maxLength) || (s.pattern !== undefined && !s.pattern.test(raw))) {
          errors.push({ field, message: 'is not valid' });
        } else out[name] = raw;
    }
  }
  // An unknown parameter is a mistake (a typo such as ?actoin= would otherwise widen the answer).
  const known = Object.keys(spec);
  for (const name of Object.keys(query)) {
    if (Object.hasOwn(spec, name)) continue;
    const near = nearestName(name, known);
    errors.push({
      field: `/query/${name}`,
      message: `is not a known parameter${near !== undefined ? ` (did you mean ${near}?)` : ''}; this route takes ${known.length > 0 ? known.join(', ') : 'none'}`,
    });
  }
  if (errors.length > 0) throw new ScalerError('BAD_REQUEST', `invalid query parameter${errors.length > 1 ? 's' : ''}`, errors);
  return out as { [K in keyof T]?: Out<T[K]> };
}


/**
 * The range of a `since`/`until` query (parsed by parseQuery as times), in ms: `until` defaults
 * to now and is capped at it, `since` defaults to `defaultSeconds` before `until`; 400 naming
 * /query/since when the range is empty or longer than `maxDays`.
 */
export function timeRange(q: { since?: string; until?: string }, opts: { now: number; defaultSeconds: number; maxDays: number }): { since: number; until: number } {
  const until = q.until === undefined ? opts.now : Math.min(Date.parse(q.until), opts.now);
  const since = q.since === undefined ? until - opts.defaultSeconds * 1000 : Date.parse(q.since);
  if (since >= until) throw new ScalerError('BAD_REQUEST', 'since must be before until (and before now)', [{ field: '/query/since', message: 'must be before until' }]);
  if (until - since > opts.maxDays * 86_400_000) {
    throw new ScalerError('BAD_REQUEST', `the range may span at most ${opts.maxDays} days`, [{ field: '/query/since', message: `must be at most ${opts.maxDays} days before until` }]);
  }
  return { since, until };
}
