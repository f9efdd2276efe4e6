/**
 * Writes plain JSON data as YAML for the preview's editor. Strings that YAML could read as
 * something else are written JSON-quoted, which YAML reads back as the same string.
 */
const PLAIN = /^[A-Za-z_/][\w ./@-]*$/;
const RESERVED = /^(?:true|false|null|yes|no|on|off|y|n|~)$/i;

function scalar(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return PLAIN.test(v) && !RESERVED.test(v) && !v.endsWith(' ') && !v.includes(': ') && !v.includes(' #') ? v : JSON.stringify(v);
  return JSON.stringify(v);
}

function isEmpty(v: unknown): boolean {
  return (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0);
}

function lines(v: unknown, indent: string): string[] {
  if (Array.isArray(v)) {
    return v.flatMap((item) => {
      if (typeof item === 'object' && item !== null && !isEmpty(item)) {
        const inner = lines(item, `${indent}  `);
        return [`${indent}- ${(inner[0] ?? '').trimStart()}`, ...inner.slice(1)];
      }
      return [`${indent}- ${isEmpty(item) ? JSON.stringify(item) : scalar(item)}`];
    });
  }
  if (typeof v === 'object' && v !== null) {
    return Object.entries(v).flatMap(([k, val]) => {
      const key = PLAIN.test(k) ? k : JSON.stringify(k);
      if (typeof val === 'object' && val !== null && !isEmpty(val)) return [`${indent}${key}:`, ...lines(val, Array.isArray(val) ? indent : `${indent}  `)];
      return [`${indent}${key}: ${isEmpty(val) ? JSON.stringify(val) : scalar(val)}`];
    });
  }
  return [`${indent}${scalar(v)}`];
}

export function toYaml(v: unknown): string {
  return `${lines(v, '').join('\n')}\n`;
}

/** A stored policy's answer as a body to edit: what the server sets (ids, times, source, pause) left out. */
export function editable(policy: Record<string, unknown>): Record<string, unknown> {
  const { id: _id, created_at: _c, updated_at: _u, source: _s, paused: _p, paused_at: _pa, paused_reason: _pr, ...rest } = policy;
  const strip = (list: unknown): unknown =>
    Array.isArray(list)
      ? list.map((r: Record<string, unknown>) => {
          const { id: _rid, duration_seconds: _ds, ...keep } = r;
          return 'duration' in r ? keep : { ...keep, ...(r['duration_seconds'] !== undefined ? { duration_seconds: r['duration_seconds'] } : {}) };
        })
      : list;
  for (const key of ['scale_up_rules', 'scale_down_rules', 'schedules', 'target_tracking']) if (key in rest) rest[key] = strip(rest[key]);
  return dropNulls(rest) as Record<string, unknown>;
}

/** Null means "the default" in a policy: left out, the text is shorter and says the same. */
function dropNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(dropNulls);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null).map(([k, x]) => [k, dropNulls(x)]));
  return v;
}
