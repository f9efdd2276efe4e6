import { Cron, CronPattern } from 'croner';
import type { Schedule } from '../policy/policy-model.js';

/**
 * Fire times of schedules, with the daylight-saving rules of docs/decisions.md "Schedules and daylight-saving time".
 *
 * A cron expression names wall-clock times in the schedule's zone. Each matching wall-clock time W
 * gives the fire instants:
 * - W occurs once: that instant.
 * - W occurs twice (the repeated hour when clocks go back): a fixed-hour schedule fires at the
 *   first occurrence only (as cron(8) does); an hourly one fires at both.
 * - W does not occur (the hour skipped when clocks go forward): a fixed-hour schedule fires at the
 *   first instant after the gap, the transition itself (several skipped times give one fire); an
 *   hourly one skips it, as its fires follow real time.
 *
 * A schedule is fixed-hour when its hour field selects exactly one hour of the day (`30 1 * * *`,
 * `*\/5 1 * * *`, `0 01 * * 1-5`); it is hourly when the hour field selects more than one (`*`,
 * `*\/2`, `1-3`, `1,13`). Only the hour field counts: minutes and days do not change the kind.
 *
 * How: croner matches the expression against wall-clock times written as if they were UTC (its
 * `utcOffset: 0` mode, pure arithmetic, no zone), and this module maps wall-clock times to instants
 * through a table of the zone's offset transitions, built once per zone and year from Intl. Each
 * (expression, zone) keeps the last fire it found and the next one after it: every evaluation
 * between the two is answered from those two numbers, without croner, Intl or allocation.
 */

const SECOND = 1000;
const DAY = 86_400_000;
const YEAR = 366 * DAY;

// ---------------------------------------------------------------------------------------------
// Zones: offsets and their transitions
// ---------------------------------------------------------------------------------------------

const OFFSET_RE = /GMT(?:([+-])(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?)?/;

/**
 * The UTC offsets of one IANA zone over a range of instants that grows on demand. `trans[k]` is an
 * instant (ms) from which the offset is `offs[k]`; before `trans[0]` it is `base`. Every
 * transition in `(from, to]` is listed.
 */
class ZoneTable {
  private readonly fmt: Intl.DateTimeFormat;
  trans: number[] = [];
  offs: number[] = [];
  base: number;
  from: number;
  to: number;

  constructor(zone: string, at: number) {
    this.fmt = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' });
    this.base = 0;
    this.from = 0;
    this.to = 0;
    this.reset(at);
  }

  /** Forgets the table and covers the three years around `at`. */
  private reset(at: number): void {
    const start = yearStart(at) - YEAR;
    const scan = this.scan(start, start + 3 * YEAR);
    this.base = scan.first;
    this.trans = scan.trans;
    this.offs = scan.offs;
    this.from = start;
    this.to = start + 3 * YEAR;
  }

  /** The offset (ms) in force at instant t, read from Intl. */
  private intlOffset(t: number): number {
    const m = OFFSET_RE.exec(this.fmt.format(t));
    if (m === null || m[1] === undefined) return 0;
    const abs = Number(m[2]) * 3_600_000 + Number(m[3] ?? 0) * 60_000 + Number(m[4] ?? 0) * SECOND;
    return m[1] === '-' ? -abs : abs;
  }

  /**
   * The transitions in (a, b], found by reading the offset once a day and bisecting to the second
   * where it changed. Zones never change offset twice within a day, so none is missed.
   */
  private scan(a: number, b: number): { first: number; trans: number[]; offs: number[] } {
    const first = this.intlOffset(a);
    const trans: number[] = [];
    const offs: number[] = [];
    let prev = first;
    for (let t = a; t < b; ) {
      const next = Math.min(t + DAY, b);
      const o = this.intlOffset(next);
      if (o !== prev) {
        // The offset is `prev` at lo and `o` at hi: bisect to the first second with `o`.
        let lo = Math.floor(t / SECOND);
        let hi = Math.floor(next / SECOND);
        while (hi - lo > 1) {
          const mid = Math.floor((lo + hi) / 2);
          if (this.intlOffset(mid * SECOND) === prev) lo = mid;
          else hi = mid;
        }
        trans.push(hi * SECOND);
        offs.push(o);
        prev = o;
      }
      t = next;
    }
    return { first, trans, offs };
  }

  /** Makes the table cover at least a year either side of t. */
  ensure(t: number): void {
    // Far from what is known (a backtest of another decade): start afresh rather than scan the years between.
    if (t < this.from - 5 * YEAR || t > this.to + 5 * YEAR) this.reset(t);
    while (t - YEAR < this.from) this.extendBack();
    while (t + YEAR > this.to) this.extendForward();
  }

  extendBack(): void {
    const a = this.from - YEAR;
    const s = this.scan(a, this.from);
    this.trans = s.trans.concat(this.trans);
    this.offs = s.offs.concat(this.offs);
    this.base = s.first;
    this.from = a;
  }

  extendForward(): void {
    const b = this.to + YEAR;
    const s = this.scan(this.to, b);
    this.trans = this.trans.concat(s.trans);
    this.offs = this.offs.concat(s.offs);
    this.to = b;
  }

  /** Index of the period holding instant t: the last transition at or before t, or -1 (base). */
  period(t: number): number {
    let lo = 0;
    let hi = this.trans.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.trans[mid] as number) <= t) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  /** The offset of period i (-1: the base period). */
  offsetOf(i: number): number {
    return i < 0 ? this.base : (this.offs[i] as number);
  }
}

function yearStart(t: number): number {
  return Date.UTC(new Date(t).getUTCFullYear(), 0, 1);
}

const zones = new Map<string, ZoneTable>();

function zoneTable(zone: string, at: number): ZoneTable {
  let z = zones.get(zone);
  if (z === undefined) {
    z = new ZoneTable(zone, at);
    zones.set(zone, z);
  }
  z.ensure(at);
  return z;
}

// ---------------------------------------------------------------------------------------------
// Clocks: one per (expression, zone)
// ---------------------------------------------------------------------------------------------

/** A search that finds nothing within this many periods (half-years) gives up: no fire. */
const MAX_PERIODS = 64;

class Clock {
  /** The expression matched against wall-clock times written as UTC instants. */
  private readonly wall: Cron;
  /** Whether the hour field selects exactly one hour (see the module comment). */
  readonly fixedHour: boolean;
  /** Two cached answers: the fire `f` (NaN: none) is the latest fire for every `at` in [lo, hi). */
  private lo0 = NaN;
  private hi0 = NaN;
  private f0 = NaN;
  private lo1 = NaN;
  private hi1 = NaN;
  private f1 = NaN;
  private newer = 0;

  constructor(
    readonly expr: string,
    readonly zone: string,
  ) {
    // Without a callback croner only evaluates: nothing is scheduled, no timer is held.
    this.wall = new Cron(expr, { utcOffset: 0 });
    this.fixedHour = new CronPattern(expr, undefined, {}).hour.reduce((n, h) => n + (h ? 1 : 0), 0) === 1;
  }

  /** The latest wall-clock time matching the expression at or before wall time w, or NaN. */
  private wallAtOrBefore(w: number): number {
    const [prev] = this.wall.previousRuns(1, new Date(Math.floor(w / SECOND) * SECOND + 1));
    return prev === undefined ? NaN : prev.getTime();
  }

  /** The earliest wall-clock time matching the expression after wall time w, or NaN. */
  private wallAfter(w: number): number {
    const next = this.wall.nextRun(new Date(w));
    return next === null ? NaN : next.getTime();
  }

  /** The latest fire at or before `at` (ms), or NaN. */
  lastFire(at: number): number {
    if (at >= this.lo0 && at < this.hi0) {
      this.newer = 0;
      return this.f0;
    }
    if (at >= this.lo1 && at < this.hi1) {
      this.newer = 1;
      return this.f1;
    }
    const f = this.computeLast(at);
    // The answer holds until the next fire: no fire lies in (f, at], so the next after f is after at.
    const hi = this.computeNext(Number.isNaN(f) ? at : f);
    const lo = Number.isNaN(f) ? -Infinity : f;
    const hiOrInf = Number.isNaN(hi) ? Infinity : hi;
    if (this.newer === 0) {
      this.lo1 = lo;
      this.hi1 = hiOrInf;
      this.f1 = f;
      this.newer = 1;
    } else {
      this.lo0 = lo;
      this.hi0 = hiOrInf;
      this.f0 = f;
      this.newer = 0;
    }
    return f;
  }

  /** The latest fire at or before `at`, walking the zone's offset periods back from `at`. */
  private computeLast(at: number): number {
    const z = zoneTable(this.zone, at);
    let i = z.period(at);
    let hi = at; // the latest instant still to search in period i
    // `cand` is known to be the latest matching wall time at or before `candBound`.
    let cand = NaN;
    let candBound = NaN;
    for (let n = 0; n < MAX_PERIODS; n++) {
      const o = z.offsetOf(i);
      const bound = hi + o;
      let w = bound <= candBound && cand <= bound ? cand : this.wallAtOrBefore(bound);
      if (Number.isNaN(w)) return NaN;
      cand = w;
      candBound = bound;
      if (i < 0) {
        // The base period: its offset holds from z.from on (a day's margin keeps any repeated or
        // skipped wall times of a transition just before z.from out of reach).
        if (w - o >= z.from + DAY) return w - o;
        z.extendBack();
        i = z.period(hi);
        continue;
      }
      const p0 = z.trans[i] as number;
      const prevO = z.offsetOf(i - 1);
      if (this.fixedHour && prevO > o && w >= p0 + o && w < p0 + prevO) {
        // Clocks went back at p0: wall times in [p0 + o, p0 + prevO) occurred before p0 already,
        // and a fixed-hour schedule fires at their first occurrence only.
        w = this.wallAtOrBefore(p0 + o - 1);
        if (Number.isNaN(w)) return NaN;
        cand = w;
        candBound = p0 + o - 1;
      }
      if (w >= p0 + o) return w - o;
      // Clocks went forward at p0, skipping wall times [p0 + prevO, p0 + o): a fixed-hour schedule
      // that names one of them fires at p0, the first instant after the gap.
      if (this.fixedHour && prevO < o && w >= p0 + prevO) return p0;
      hi = p0 - 1;
      i -= 1;
    }
    return NaN;
  }

  /** The earliest fire after `t`, walking the zone's offset periods forward from `t`. */
  computeNext(t: number): number {
    const z = zoneTable(this.zone, t);
    let i = z.period(t);
    let lo = t; // fires must be after lo
    for (let n = 0; n < MAX_PERIODS; n++) {
      const o = z.offsetOf(i);
      const prevO = z.offsetOf(i - 1);
      const p0 = i >= 0 ? (z.trans[i] as number) : -Infinity;
      if (this.fixedHour && i >= 0 && lo < p0 && prevO < o) {
        // A fixed-hour schedule naming a wall time skipped at p0 fires at p0.
        const skipped = this.wallAfter(p0 + prevO - 1);
        if (!Number.isNaN(skipped) && skipped < p0 + o) return p0;
      }
      let w = this.wallAfter(lo + o);
      if (this.fixedHour && i >= 0 && prevO > o && w >= p0 + o && w < p0 + prevO) {
        // The second occurrence of a repeated wall time: not a fire of a fixed-hour schedule.
        w = this.wallAfter(p0 + prevO - 1);
      }
      if (Number.isNaN(w)) return NaN;
      if (i + 1 >= z.trans.length) {
        // The last known period: its offset holds up to z.to.
        if (w - o <= z.to) return w - o;
        z.extendForward();
        continue;
      }
      const p1 = z.trans[i + 1] as number;
      if (w - o < p1) return w - o;
      i += 1;
      lo = p1 - 1;
    }
    return NaN;
  }
}

const byKey = new Map<string, Clock>();
const bySchedule = new WeakMap<object, Clock>();

function clockFor(s: Pick<Schedule, 'cron_expression' | 'timezone'>): Clock {
  const known = bySchedule.get(s);
  if (known !== undefined && known.expr === s.cron_expression && known.zone === s.timezone) return known;
  const key = `${s.timezone}\u0000${s.cron_expression}`;
  let c = byKey.get(key);
  if (c === undefined) {
    c = new Clock(s.cron_expression, s.timezone);
    if (byKey.size > 10_000) byKey.clear();
    byKey.set(key, c);
  }
  bySchedule.set(s, c);
  return c;
}

/**
 * The latest fire time at or before `at` (ms; the exact instant counts), or NaN when the schedule
 * never fired. Allocates nothing once the schedule's clock has answered for this stretch of time.
 */
export function lastFireMs(s: Pick<Schedule, 'cron_expression' | 'timezone'>, at: number): number {
  return clockFor(s).lastFire(at);
}

/** The latest fire time at or before `at` (the exact boundary instant counts), or null. */
export function lastFire(s: Pick<Schedule, 'cron_expression' | 'timezone'>, at: Date): Date | null {
  const f = lastFireMs(s, at.getTime());
  return Number.isNaN(f) ? null : new Date(f);
}

/** The next `count` fire times after `at`, by the same rules as lastFire. */
export function nextFires(s: Pick<Schedule, 'cron_expression' | 'timezone'>, at: Date, count = 3): Date[] {
  const clock = clockFor(s);
  const out: Date[] = [];
  let t = at.getTime();
  while (out.length < count) {
    const next = clock.computeNext(t);
    if (Number.isNaN(next)) break;
    out.push(new Date(next));
    t = next;
  }
  return out;
}
