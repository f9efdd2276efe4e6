import { Cron } from 'croner';
import type { Schedule } from '../policy/policy-model.js';

const cache = new Map<string, Cron>();

function cronFor(s: Pick<Schedule, 'cron_expression' | 'timezone'>): Cron {
  const key = `${s.timezone}\u0000${s.cron_expression}`;
  let c = cache.get(key);
  if (c === undefined) {
    // Without a callback croner only evaluates: nothing is scheduled, no timer is held.
    c = new Cron(s.cron_expression, { timezone: s.timezone });
    if (cache.size > 10_000) cache.clear();
    cache.set(key, c);
  }
  return c;
}

/** The latest fire time at or before `at` (the exact boundary second counts), or null. */
export function lastFire(s: Pick<Schedule, 'cron_expression' | 'timezone'>, at: Date): Date | null {
  const cron = cronFor(s);
  const whole = new Date(Math.floor(at.getTime() / 1000) * 1000);
  if (whole.getUTCSeconds() === 0 && cron.match(whole)) return whole;
  const [prev] = cron.previousRuns(1, at);
  return prev ?? null;
}

/** The next `count` fire times after `at`. */
export function nextFires(s: Pick<Schedule, 'cron_expression' | 'timezone'>, at: Date, count = 3): Date[] {
  return cronFor(s).nextRuns(count, at);
}
