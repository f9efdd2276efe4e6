import type { ParsedUrlQuery } from 'node:querystring';
import { ScalerError, type FieldError } from '../errors.js';

type Spec =
  | { type: 'int'; min: number; max: number }
  | { type: 'bool' }
  | { type: 'string'; pattern?: RegExp; maxLength?: number }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'time' };

type Out<S> = S extends { type: 'int' } ? number : S extends { type: 'bool' } ? boolean : string;

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
        const t = Date.parse(raw);
        if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}/.test(raw)) errors.push({ field, message: 'must be an ISO-8601 time such as 2026-01-28T12:00:00Z' });
        else out[name] = new Date(t).toISOString();
        break;
      }
      default:
        if ((s.maxLength !== undefined && raw.length > s.maxLength) || (s.pattern !== undefined && !s.pattern.test(raw))) {
          errors.push({ field, message: 'is not valid' });
        } else out[name] = raw;
    }
  }
  if (errors.length > 0) throw new ScalerError('BAD_REQUEST', `invalid query parameter${errors.length > 1 ? 's' : ''}`, errors);
  return out as { [K in keyof T]?: Out<T[K]> };
}
