const UNIT_SECONDS = { d: 86_400, h: 3_600, m: 60, s: 1 } as const;
const DURATION_RE = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/**
 * Parses "90s", "5m", "1h30m", "1d" (and "0") into whole seconds.
 * Returns undefined for anything else, so callers can report the field.
 */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  if (text.length === 0 || text.length > 32) return undefined;
  const m = DURATION_RE.exec(text);
  if (m === null) return undefined;
  const [, d, h, min, s] = m;
  const total =
    Number(d ?? 0) * UNIT_SECONDS.d +
    Number(h ?? 0) * UNIT_SECONDS.h +
    Number(min ?? 0) * UNIT_SECONDS.m +
    Number(s ?? 0) * UNIT_SECONDS.s;
  return Number.isSafeInteger(total) ? total : undefined;
}

/** Formats whole seconds in the canonical form parseDuration accepts: 5400 -> "1h30m", 0 -> "0s". */
export function formatDuration(seconds: number): string {
  if (seconds === 0) return '0s';
  let rest = seconds;
  let out = '';
  for (const [unit, size] of Object.entries(UNIT_SECONDS)) {
    // Days are only used when the value is a whole number of days, so "36h" stays "36h".
    if (unit === 'd' && rest % size !== 0) continue;
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
