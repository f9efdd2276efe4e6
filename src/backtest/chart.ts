/**
 * The picture of a backtest: one SVG a person can read without the code. A panel per distinct
 * rule metric (the value over time, each rule's threshold as a labelled dashed line, hatching where
 * the value was missing), a panel per target-tracking entry (the value the entry used, and its
 * target as a dash-dot line: level at a `target_value`, or for a `target_per_replica` the capacity
 * of the running replicas, target x replicas, a step line), a panel of the replica count with
 * markers where something acted (and, with target tracking, the proposal before stabilization and
 * rate limits as a dashed step line), one shared UTC time axis, a legend and the summary as a footer.
 * For a policy with a condition tree (scale_up_when / scale_down_when), a lane per such direction
 * above the replica panel marks where the tree held, each span coloured and labelled by the branch
 * that decided it.
 *
 * Pure and deterministic: the same policy and result give the same bytes. Long timelines are
 * reduced per pixel column to the first, lowest, highest and last value, so a one-minute spike in a
 * month still shows and the file stays small (about 100 kB for 43,200 evaluations).
 */
import type { Action } from '../engine/decision.js';
import { conditionText } from '../engine/rule-combiner.js';
import { OPERATOR_SYMBOL } from '../engine/rule-window.js';
import { compileTree } from '../policy/condition-tree.js';
import type { Policy, Rule, TargetTracking } from '../policy/policy-model.js';
import { formatDuration } from '../util/duration.js';
import type { BranchSpan, ReplayResult, TimelineRow } from './replay.js';

/** Options of {@link renderBacktestSvg}. */
export interface BacktestChartOptions {
  /** Width in pixels (default 1100, at least 480). The height follows from the number of panels. */
  width?: number;
  /** First line of the heading; default "Backtest of <policy name>". */
  title?: string;
}

type MarkedAction = Exclude<Action, 'none'>;

const DEFAULT_WIDTH = 1100;
const FONT = "Helvetica, Arial, 'Liberation Sans', 'DejaVu Sans', sans-serif";
// Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
const COLOR = {
  value: '#0072B2',
  up: '#D55E00',
  down: '#009E73',
  scheduled: '#AA4499',
  fallback: '#222222',
  replicas: '#333333',
  bound: '#8a8a8a',
  target: '#E69F00',
  proposal: '#CC79A7',
  grid: '#e6e6e6',
  axis: '#9a9a9a',
  text: '#222222',
  muted: '#666666',
};
const MARKERS: ReadonlyArray<{ kind: MarkedAction; label: string; color: string }> = [
  { kind: 'scale_up', label: 'scale up', color: COLOR.up },
  { kind: 'scale_down', label: 'scale down', color: COLOR.down },
  { kind: 'scheduled', label: 'scheduled', color: COLOR.scheduled },
  { kind: 'fallback', label: 'fallback', color: COLOR.fallback },
];
const METRIC_PLOT_HEIGHT = 170;
const REPLICA_PLOT_HEIGHT = 130;
const PANEL_TITLE_SPACE = 22;
const PANEL_GAP = 14;
/** Markers of one kind closer than this would hide each other: they become one, with a count. */
const MARKER_MERGE_PX = 3;
/** Above this many marker groups, action guide lines in the metric panels would be clutter. */
const MAX_GUIDES = 40;
/** Dash patterns that tell lines apart without colour: thresholds, targets, the proposal. */
const DASH_TARGET = '9 3 2 3';
const DASH_PROPOSAL = '5 3';
/**
 * Fills of the condition branches, in order of first appearance (then again from the start), each
 * saying whether a label on it is drawn light; Paul Tol's "muted" scheme, apart from the colours
 * that mark directions and actions.
 */
const BRANCH_COLORS: ReadonlyArray<{ fill: string; light: boolean }> = [
  { fill: '#88CCEE', light: false },
  { fill: '#CC6677', light: false },
  { fill: '#DDCC77', light: false },
  { fill: '#332288', light: true },
  { fill: '#44AA99', light: false },
  { fill: '#882255', light: true },
  { fill: '#999933', light: false },
  { fill: '#117733', light: true },
  { fill: '#AA4499', light: true },
];
const LANE_HEIGHT = 18;
const LANE_GAP = 6;

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

/** Whether XML 1.0 can carry this code point at all (not even as a character reference). */
function xmlChar(c: number): boolean {
  return c === 0x9 || c === 0xa || c === 0xd || (c >= 0x20 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) || c >= 0x10000;
}

/** Escapes text and attribute values; drops characters XML 1.0 cannot carry (controls, lone surrogates). */
export function escapeXml(text: string): string {
  let out = '';
  // for..of walks code points: a lone surrogate comes out on its own and is dropped.
  for (const ch of text) {
    if (!xmlChar(ch.codePointAt(0) as number)) continue;
    out += ch === '&' ? '&amp;' : ch === '<' ? '&lt;' : ch === '>' ? '&gt;' : ch === '"' ? '&quot;' : ch === "'" ? '&apos;' : ch;
  }
  return out;
}

/**
 * Approximate rendered width of `text` at `size` px. There are no font metrics in a pure function;
 * the factors are a little wider than Helvetica so that layouts stay clear with wider fallbacks.
 */
function textWidth(text: string, size: number, bold = false): number {
  let em = 0;
  for (const ch of text) {
    if ('il.,:;!|\'`[]()Ijtf '.includes(ch)) em += 0.33;
    else if ('mwMW@%'.includes(ch)) em += 0.92;
    else if (ch >= 'A' && ch <= 'Z') em += 0.72;
    else if (ch >= '0' && ch <= '9') em += 0.64;
    else em += 0.6;
  }
  return em * size * (bold ? 1.1 : 1);
}

/** Cuts `text` with an ellipsis so it fits in `width` px. */
function fitText(text: string, size: number, width: number, bold = false): string {
  if (textWidth(text, size, bold) <= width) return text;
  const chars = [...text];
  let lo = 0;
  let hi = chars.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (textWidth(`${chars.slice(0, mid).join('')}…`, size, bold) <= width) lo = mid;
    else hi = mid - 1;
  }
  return `${chars.slice(0, lo).join('')}…`;
}

// ---------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------

const UNITS: ReadonlyArray<[number, string]> = [
  [1e12, 'T'],
  [1e9, 'G'],
  [1e6, 'M'],
  [1e3, 'k'],
];

/** Coordinates with one decimal, no trailing ".0": short paths, same bytes every time. */
function px(v: number): string {
  const r = Math.round(v * 10) / 10;
  return Object.is(r, -0) ? '0' : String(r);
}

function trimZeros(s: string): string {
  return s.includes('.') && !s.includes('e') ? s.replace(/\.?0+$/, '') : s;
}

function noNegativeZero(s: string): string {
  return /^-0(\.0*)?$/.test(s) ? s.slice(1) : s;
}

/** 1234 -> "1.234k", 3400000 -> "3.4M", 0.25 -> "0.25", -12 -> "-12". For labels, not ticks. */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const abs = Math.abs(v);
  if (abs >= 1e15) return trimZeros(v.toExponential(2).replace(/\.?0+e/, 'e'));
  for (const [size, suffix] of UNITS) {
    if (abs >= size) return `${noNegativeZero(trimZeros((v / size).toFixed(3)))}${suffix}`;
  }
  return noNegativeZero(String(Number(v.toPrecision(6))));
}

/** Thousands separators without locale data, so output does not depend on the host. */
function groupThousands(v: number, decimals: number): string {
  const [int = '0', frac] = Math.abs(v).toFixed(decimals).split('.');
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${v < 0 && Number(v.toFixed(decimals)) !== 0 ? '-' : ''}${grouped}${frac === undefined ? '' : `.${frac}`}`;
}

interface Scale {
  lo: number;
  hi: number;
  ticks: number[];
  labels: string[];
}

function niceStep(raw: number, integer: boolean): number {
  const exp = Math.floor(Math.log10(raw));
  const base = 10 ** exp;
  const f = raw / base;
  // 2.5 only where it stays a whole number on integer scales (25, 250, ...).
  const quarter = !integer || exp >= 1;
  const m = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 && quarter ? 2.5 : f <= 5 ? 5 : 10;
  return integer ? Math.max(1, Math.round(m * base)) : m * base;
}

/**
 * Each tick in its own unit with the fewest decimals that keep it exact to the step: 0, 250, 500,
 * 750, 1k, 1.25k (not 0.00k ... 1.25k).
 */
function tickLabels(ticks: number[], step: number): string[] {
  return ticks.map((t) => {
    const abs = Math.abs(t);
    if (t === 0) return '0';
    if (abs >= 1e15) return trimZeros(t.toExponential(2).replace(/\.?0+e/, 'e'));
    const [size, suffix] = UNITS.find(([u]) => abs >= u) ?? [1, ''];
    for (let d = 0; d <= 8; d++) {
      const text = (t / size).toFixed(d);
      if (Math.abs(Number(text) * size - t) <= step * 1e-6) return `${noNegativeZero(text)}${suffix}`;
    }
    return formatValue(t);
  });
}

/**
 * A linear scale over [lo, hi] widened to round ticks (1, 2, 2.5 or 5 times a power of ten), with
 * a little headroom so a line does not run along the frame; never below zero for data that is not.
 */
function niceScale(lo: number, hi: number, target: number, integer = false): Scale {
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  } else {
    const pad = (hi - lo) * 0.04 || (hi / 2 - lo / 2) * 0.08;
    const nonNegative = lo >= 0;
    lo -= pad;
    hi += pad;
    if (nonNegative && lo < 0) lo = 0;
  }
  // Halves keep the arithmetic finite near ±Number.MAX_VALUE.
  const step = niceStep(Math.max(hi / 2 - lo / 2, Number.MIN_VALUE) / Math.max(1, target / 2), integer);
  const first = Math.floor(lo / step);
  const last = Math.ceil(hi / step);
  const ticks: number[] = [];
  for (let i = first; i <= last && ticks.length <= 60; i++) ticks.push(Number((i * step).toPrecision(12)));
  const niceLo = ticks[0] ?? lo;
  const niceHi = ticks.at(-1) ?? hi;
  return { lo: niceLo, hi: niceHi === niceLo ? niceLo + step : niceHi, ticks, labels: tickLabels(ticks, step) };
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

type TickUnit = { kind: 'ms'; size: number } | { kind: 'month'; size: number } | { kind: 'year'; size: number };

const TIME_STEPS: TickUnit[] = [
  ...[1, 2, 5, 10, 15, 30].map((n) => ({ kind: 'ms' as const, size: n * SECOND })),
  ...[1, 2, 5, 10, 15, 30].map((n) => ({ kind: 'ms' as const, size: n * MINUTE })),
  ...[1, 2, 3, 6, 12].map((n) => ({ kind: 'ms' as const, size: n * HOUR })),
  ...[1, 2, 7, 14].map((n) => ({ kind: 'ms' as const, size: n * DAY })),
  ...[1, 2, 3, 6].map((n) => ({ kind: 'month' as const, size: n })),
  ...[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000].map((n) => ({ kind: 'year' as const, size: n })),
];

function approxMs(u: TickUnit): number {
  return u.kind === 'ms' ? u.size : u.kind === 'month' ? u.size * 30.44 * DAY : u.size * 365.25 * DAY;
}

const pad2 = (n: number): string => String(n).padStart(2, '0');

/** "2026-01-05 06:00 UTC" (seconds only when there are any). */
function formatInstant(ms: number): string {
  const d = new Date(ms);
  const sec = d.getUTCSeconds() === 0 ? '' : `:${pad2(d.getUTCSeconds())}`;
  return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}${sec}`;
}

interface TimeTick {
  t: number;
  /** Main label ("06:00", "Jan 5", "Mar", "2026"). */
  label: string;
  /** Second line giving the day or year, where it changes. */
  context: string | null;
}

/** Instants of `unit` boundaries (UTC) in [t0, t1]. */
function tickTimes(unit: TickUnit, t0: number, t1: number): number[] {
  const times: number[] = [];
  if (unit.kind === 'ms') {
    // Weeks start on Monday (the epoch was a Thursday); every other unit divides a UTC day or is days.
    const offset = unit.size % (7 * DAY) === 0 ? 4 * DAY : 0;
    for (let t = Math.ceil((t0 - offset) / unit.size) * unit.size + offset; t <= t1 && times.length < 2000; t += unit.size) times.push(t);
    return times;
  }
  const start = new Date(t0);
  let y = start.getUTCFullYear();
  let m = 0;
  if (unit.kind === 'month') m = Math.floor(start.getUTCMonth() / unit.size) * unit.size;
  else y = Math.floor(y / unit.size) * unit.size;
  for (let i = 0; i < 5000 && times.length < 2000; i++) {
    const t = Date.UTC(y, m, 1);
    if (t > t1) break;
    if (t >= t0) times.push(t);
    if (unit.kind === 'month') m += unit.size;
    else y += unit.size;
  }
  return times;
}

/** Whether every boundary of `major` is one of `minor`. */
function divides(minor: TickUnit, major: TickUnit): boolean {
  if (approxMs(minor) >= approxMs(major)) return false;
  if (major.kind === 'ms') return minor.kind === 'ms' && major.size % minor.size === 0 && (minor.size % DAY === 0 || DAY % minor.size === 0);
  if (minor.kind === 'ms') return minor.size === DAY || DAY % minor.size === 0;
  if (major.kind === 'month') return minor.kind === 'month' && major.size % minor.size === 0;
  return minor.kind === 'month' ? 12 % minor.size === 0 : major.size % minor.size === 0;
}

/**
 * Labelled ticks on UTC boundaries (the finest unit that leaves `minSpacing` px between labels),
 * and unlabelled minor ticks at the largest unit dividing it that is still a few pixels apart.
 */
function timeTicks(t0: number, t1: number, width: number, minSpacing: number): { major: TimeTick[]; minor: number[] } {
  const maxTicks = Math.max(2, Math.floor(width / minSpacing));
  const unit = TIME_STEPS.find((u) => (t1 - t0) / approxMs(u) <= maxTicks) ?? (TIME_STEPS.at(-1) as TickUnit);
  const times = tickTimes(unit, t0, t1);
  const minorUnit = [...TIME_STEPS].reverse().find((u) => divides(u, unit) && (approxMs(u) / (t1 - t0)) * width >= 10);
  const majorSet = new Set(times);
  const minor = minorUnit === undefined ? [] : tickTimes(minorUnit, t0, t1).filter((t) => !majorSet.has(t));
  const ticks: TimeTick[] = [];
  let prevDay = '';
  let prevYear = '';
  for (const t of times) {
    const d = new Date(t);
    const day = `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
    const year = String(d.getUTCFullYear());
    if (unit.kind === 'year') {
      ticks.push({ t, label: year, context: null });
    } else if (unit.kind === 'month') {
      ticks.push({ t, label: MONTHS[d.getUTCMonth()] as string, context: year !== prevYear ? year : null });
    } else if (unit.size >= DAY) {
      ticks.push({ t, label: day, context: year !== prevYear ? year : null });
    } else {
      const hm = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
      const label = unit.size < MINUTE ? `${hm}:${pad2(d.getUTCSeconds())}` : hm;
      // The weekday matters to readers of weekday schedules.
      const dated = `${WEEKDAYS[d.getUTCDay()]} ${day}`;
      ticks.push({ t, label, context: day !== prevDay ? (year !== prevYear && prevYear !== '' ? `${dated}, ${year}` : dated) : null });
    }
    prevDay = day;
    prevYear = year;
  }
  return { major: ticks, minor };
}

// ---------------------------------------------------------------------------------------------
// Series
// ---------------------------------------------------------------------------------------------

interface LineParts {
  /** Path data of the line, reduced per pixel column. */
  d: string;
  /** Points with no neighbour to join (drawn as dots). */
  dots: Array<[number, number]>;
  /** Pixel extents where the value was missing, merged. */
  gaps: Array<[number, number]>;
  /** Number of non-missing values. */
  present: number;
}

/**
 * Turns values (null = missing) into a line. Within one pixel column only the first, lowest,
 * highest and last values are kept, in time order: what the eye can see at this width, spikes
 * included, in O(columns) bytes.
 */
function reduceLine(xs: number[], values: Array<number | null>, y: (v: number) => number, halfStepPx: number, left: number, right: number): LineParts {
  let d = '';
  const dots: Array<[number, number]> = [];
  const gaps: Array<[number, number]> = [];
  let present = 0;
  let segmentPoints = 0;
  let segmentFirst: [number, number] | null = null;
  let bucket: { col: number; idx: number[] } | null = null;
  let gapStart = -1;

  const emit = (i: number): void => {
    const p: [number, number] = [xs[i] as number, y(values[i] as number)];
    d += `${segmentPoints === 0 ? 'M' : 'L'}${px(p[0])},${px(p[1])}`;
    if (segmentPoints === 0) segmentFirst = p;
    segmentPoints++;
  };
  const flush = (): void => {
    if (bucket === null) return;
    const [first, ...rest] = bucket.idx;
    let lo = first as number;
    let hi = first as number;
    for (const i of rest) {
      if ((values[i] as number) < (values[lo] as number)) lo = i;
      if ((values[i] as number) > (values[hi] as number)) hi = i;
    }
    const last = bucket.idx.at(-1) as number;
    for (const i of [...new Set([first as number, lo, hi, last])].sort((a, b) => a - b)) emit(i);
    bucket = null;
  };
  const endSegment = (): void => {
    flush();
    if (segmentPoints === 1 && segmentFirst !== null) dots.push(segmentFirst);
    segmentPoints = 0;
    segmentFirst = null;
  };
  const addGap = (from: number, to: number): void => {
    const a = Math.max(left, (xs[from] as number) - halfStepPx);
    const b = Math.min(right, Math.max((xs[to] as number) + halfStepPx, a + 1));
    const prev = gaps.at(-1);
    if (prev !== undefined && a <= prev[1] + 0.5) prev[1] = Math.max(prev[1], b);
    else gaps.push([a, b]);
  };

  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) {
      if (gapStart < 0) {
        endSegment();
        gapStart = i;
      }
      continue;
    }
    if (gapStart >= 0) {
      addGap(gapStart, i - 1);
      gapStart = -1;
    }
    present++;
    const col = Math.floor(xs[i] as number);
    if (bucket !== null && bucket.col !== col) flush();
    if (bucket === null) bucket = { col, idx: [] };
    bucket.idx.push(i);
  }
  if (gapStart >= 0) addGap(gapStart, values.length - 1);
  endSegment();
  return { d, dots, gaps, present };
}

/** The step line of the replica count: flat between evaluations, vertical at changes. */
function replicaPath(xs: number[], rows: TimelineRow[], y: (v: number) => number, xStart: number, xEnd: number): string {
  const first = rows[0];
  if (first === undefined) return '';
  let d = `M${px(xStart)},${px(y(first.replicas_before))}`;
  let current = first.replicas_before;
  let i = 0;
  while (i < rows.length) {
    const row = rows[i] as TimelineRow;
    if (row.replicas === current) {
      i++;
      continue;
    }
    // Every change within this pixel column becomes one vertical stroke from lowest to highest.
    const col = Math.floor(xs[i] as number);
    const seen: number[] = [current];
    let j = i;
    while (j < rows.length && Math.floor(xs[j] as number) === col) {
      seen.push((rows[j] as TimelineRow).replicas);
      j++;
    }
    const lastValue = seen.at(-1) as number;
    d += `H${px(xs[i] as number)}`;
    const lo = Math.min(...seen);
    const hi = Math.max(...seen);
    for (const v of lastValue >= current ? [lo, hi, lastValue] : [hi, lo, lastValue]) d += `V${px(y(v))}`;
    current = lastValue;
    i = j;
  }
  return `${d}H${px(xEnd)}`.replace(/(V[^HVML]+)(?:\1)+/g, '$1');
}

/**
 * A step line of levels that may be missing: level i holds from the evaluation at xs[i] to the
 * next one (the last to xEnd), and a missing level breaks the line. Levels within one pixel
 * column become one vertical stroke through the lowest and highest of them, as in {@link replicaPath}.
 */
function stepPath(xs: number[], levels: ReadonlyArray<number | null>, y: (v: number) => number, xEnd: number): string {
  let d = '';
  let current: number | null = null;
  let i = 0;
  while (i < levels.length) {
    const col = Math.floor(xs[i] as number);
    const seen: number[] = [];
    let j = i;
    while (j < levels.length && Math.floor(xs[j] as number) === col) {
      const v = levels[j];
      if (v !== null && v !== undefined) seen.push(v);
      j++;
    }
    const last = levels[j - 1] ?? null;
    if (current !== null && seen.length === j - i && seen.every((v) => v === current)) {
      i = j;
      continue;
    }
    let level: number | null = current;
    if (level === null) {
      if (seen.length === 0) {
        i = j;
        continue;
      }
      level = seen[0] as number;
      d += `M${px(xs[i] as number)},${px(y(level))}`;
    } else d += `H${px(xs[i] as number)}`;
    if (seen.length > 0) {
      const lastSeen = seen.at(-1) as number;
      const lo = Math.min(...seen);
      const hi = Math.max(...seen);
      for (const v of lastSeen >= level ? [lo, hi, lastSeen] : [hi, lo, lastSeen]) {
        if (v === level) continue;
        d += `V${px(y(v))}`;
        level = v;
      }
    }
    // A missing level at the column's end ends the line there.
    current = last === null ? null : level;
    i = j;
  }
  if (current !== null) d += `H${px(xEnd)}`;
  return d;
}

// ---------------------------------------------------------------------------------------------
// Drawing helpers
// ---------------------------------------------------------------------------------------------

function markerPath(kind: MarkedAction, x: number, y: number, s: number): string {
  switch (kind) {
    case 'scale_up':
      return `M${px(x)},${px(y - s)}L${px(x + s)},${px(y + s * 0.75)}L${px(x - s)},${px(y + s * 0.75)}Z`;
    case 'scale_down':
      return `M${px(x)},${px(y + s)}L${px(x + s)},${px(y - s * 0.75)}L${px(x - s)},${px(y - s * 0.75)}Z`;
    case 'scheduled':
      return `M${px(x)},${px(y - s)}L${px(x + s)},${px(y)}L${px(x)},${px(y + s)}L${px(x - s)},${px(y)}Z`;
    case 'fallback': {
      const c = s * 0.8;
      return `M${px(x - c)},${px(y - c)}L${px(x + c)},${px(y + c)}M${px(x + c)},${px(y - c)}L${px(x - c)},${px(y + c)}`;
    }
  }
}

function markerStyle(kind: MarkedAction, color: string): string {
  return kind === 'fallback' ? `fill="none" stroke="${color}" stroke-width="2.5"` : `fill="${color}" stroke="#fff" stroke-width="1"`;
}

interface SideLabel {
  y: number;
  text: string;
  color: string;
}

/** Spreads labels vertically so none overlaps, keeping each as near its line as possible. */
function spreadLabels(labels: SideLabel[], top: number, bottom: number, gap: number): Array<SideLabel & { at: number }> {
  const sorted = labels.map((l, i) => ({ ...l, at: l.y, i })).sort((a, b) => a.y - b.y || a.i - b.i);
  for (let k = 0; k < sorted.length; k++) {
    const l = sorted[k] as (typeof sorted)[number];
    l.at = Math.max(l.at, top + gap / 2, k > 0 ? (sorted[k - 1] as (typeof sorted)[number]).at + gap : -Infinity);
  }
  for (let k = sorted.length - 1; k >= 0; k--) {
    const l = sorted[k] as (typeof sorted)[number];
    l.at = Math.min(l.at, k < sorted.length - 1 ? (sorted[k + 1] as (typeof sorted)[number]).at - gap : bottom);
  }
  return sorted;
}

/** The side label of a target-tracking entry's line: the target, or the capacity per replica. */
function trackingLabel(entry: TargetTracking): string {
  return entry.target_per_replica !== null ? `capacity ${formatValue(entry.target_per_replica)} × replicas` : `target ${formatValue(entry.target_value ?? NaN)}`;
}

/** What a target-tracking panel shows, after its metric in the panel title. */
function trackingDescription(entry: TargetTracking): string {
  const tolerance = `±${formatValue(entry.tolerance * 100)}%`;
  const window = entry.duration_seconds > 0 ? `, ${formatDuration(entry.duration_seconds)} average` : '';
  return entry.target_per_replica !== null
    ? `target tracking: a total, ${formatValue(entry.target_per_replica)} per replica (${tolerance})${window}; above the capacity line: too few replicas`
    : `target tracking: a per-replica average, target ${formatValue(entry.target_value ?? NaN)} (${tolerance})${window}; above the target: too few replicas`;
}

function ruleLabel(rule: Rule, direction: 'up' | 'down'): string {
  const op = OPERATOR_SYMBOL[rule.operator] ?? rule.operator;
  const window = rule.duration_seconds > 0 ? ` for ${formatDuration(rule.duration_seconds)}` : '';
  const step = rule.scale_by > 0 ? `+${rule.scale_by}` : String(rule.scale_by);
  return `${direction}: ${op} ${formatValue(rule.threshold)}${window} (${step})`;
}

// ---------------------------------------------------------------------------------------------
// The chart
// ---------------------------------------------------------------------------------------------

interface MetricPanel {
  metric: string;
  rules: Array<{ rule: Rule; direction: 'up' | 'down' }>;
  values: Array<number | null>;
  scale: Scale;
}

interface TrackingPanel {
  entry: TargetTracking;
  /** The value the entry used at each evaluation (null: none). */
  values: Array<number | null>;
  scale: Scale;
}

interface MarkerGroup {
  kind: MarkedAction;
  x: number;
  y: number;
  count: number;
  title: string;
}

type TreeDirection = 'scale_up' | 'scale_down';

/** A direction with a condition tree: its lane shows the spans where the tree held. */
interface BranchLane {
  direction: TreeDirection;
  label: 'up' | 'down';
  /** The whole tree as text, for the lane's tooltip. */
  tree: string;
  spans: readonly BranchSpan[];
}

/** What a lane draws for one or more spans of one branch, merged where less than a pixel apart. */
interface BranchSegment {
  branch: string;
  color: number;
  x0: number;
  x1: number;
  /** Evaluation positions of the first and last evaluation covered. */
  first: number;
  last: number;
  spans: number;
  evaluations: number;
}

/** Where a lane's spans are drawn: at most one segment per branch for each run of spans with sub-pixel gaps. */
function branchSegments(spans: readonly BranchSpan[], xs: number[], halfStepPx: number, left: number, right: number, colorOf: (branch: string) => number): BranchSegment[] {
  const open = new Map<string, BranchSegment>();
  const segments: BranchSegment[] = [];
  for (const span of spans) {
    if (span.start < 0 || span.end < span.start || span.end >= xs.length) continue;
    const a = Math.max(left, (xs[span.start] as number) - halfStepPx);
    const b = Math.min(right, Math.max((xs[span.end] as number) + halfStepPx, a + 1));
    const evaluations = span.end - span.start + 1;
    const o = open.get(span.branch);
    if (o !== undefined && a <= o.x1 + 1) {
      o.x1 = Math.max(o.x1, b);
      o.last = span.end;
      o.spans++;
      o.evaluations += evaluations;
      continue;
    }
    if (o !== undefined) segments.push(o);
    open.set(span.branch, { branch: span.branch, color: colorOf(span.branch), x0: a, x1: b, first: span.start, last: span.end, spans: 1, evaluations });
  }
  segments.push(...open.values());
  return segments.sort((p, q) => p.x0 - q.x0 || p.color - q.color);
}

/**
 * Renders a replay as a self-contained SVG (inline styles, no fonts, scripts or links to fetch).
 * Every text is escaped. Action markers carry `class="mk"` and `data-count` (how many actions one
 * marker stands for), so the markers account for every action of the timeline. A target-tracking
 * entry's panel carries `class="panel tt-panel"` and `data-entry` (the entry's id); its target line
 * is `class="tgt"`, the proposal line `class="prop"`. Without target tracking none of these appear.
 * For a direction with a condition tree whose spans the result carries (`result.branches`), a lane
 * `<g class="lane" data-direction="scale_up">` holds a `<rect class="br" data-branch="..."
 * data-spans="n">` per drawn segment (n: the spans it stands for), with a tooltip giving the
 * branch, its start and its end; each branch has a legend entry with `data-branch` too, and the
 * markers of the actions it decided name it in their tooltips. Without a tree none of these appear.
 */
export function renderBacktestSvg(policy: Policy, result: ReplayResult, opts: BacktestChartOptions = {}): string {
  const width = Math.max(480, Math.round(opts.width ?? DEFAULT_WIDTH));
  const rows = result.timeline;
  const summary = result.summary;
  const stepMs = Math.max(1, summary.step_seconds) * SECOND;
  const times = rows.map((r) => Date.parse(r.time));
  let t0 = Date.parse(summary.from);
  let t1 = Date.parse(summary.to);
  if (times.length > 0) {
    t0 = Number.isFinite(t0) ? Math.min(t0, times[0] as number) : (times[0] as number);
    t1 = Number.isFinite(t1) ? Math.max(t1, times.at(-1) as number) : (times.at(-1) as number);
  }
  if (!Number.isFinite(t0) || !Number.isFinite(t1)) {
    t0 = 0;
    t1 = stepMs;
  }
  if (t1 - t0 < stepMs) {
    // One evaluation: a window of a step either side, so the point sits in the middle.
    t0 -= stepMs;
    t1 += stepMs;
  }

  // Panels: one per distinct metric text, rules in policy order (up first).
  const panels: MetricPanel[] = [];
  const byMetric = new Map<string, MetricPanel>();
  const directed = [
    ...policy.scale_up_rules.map((rule) => ({ rule, direction: 'up' as const })),
    ...policy.scale_down_rules.map((rule) => ({ rule, direction: 'down' as const })),
  ];
  for (const r of directed) {
    let p = byMetric.get(r.rule.metric);
    if (p === undefined) {
      p = { metric: r.rule.metric, rules: [], values: [], scale: niceScale(0, 1, 4) };
      byMetric.set(r.rule.metric, p);
      panels.push(p);
    }
    p.rules.push(r);
  }
  const metricTicksTarget = Math.max(3, Math.floor(METRIC_PLOT_HEIGHT / 34));
  for (const p of panels) {
    // Rules on one metric may differ in window; the first with a value at each instant speaks.
    p.values = rows.map((row) => {
      for (const { rule } of p.rules) {
        const v = row.values[rule.id];
        if (typeof v === 'number' && Number.isFinite(v)) return v;
      }
      return null;
    });
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of p.values) {
      if (v === null) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    for (const { rule } of p.rules) {
      if (!Number.isFinite(rule.threshold)) continue;
      lo = Math.min(lo, rule.threshold);
      hi = Math.max(hi, rule.threshold);
    }
    if (!Number.isFinite(lo)) {
      lo = 0;
      hi = 1;
    }
    p.scale = niceScale(lo, hi, metricTicksTarget);
  }

  // Target tracking: a panel per entry, in policy order; the proposal on the replica panel.
  const tracking = policy.target_tracking.length > 0;
  let replicasLow = rows[0]?.replicas_before ?? 0;
  let replicasHigh = replicasLow;
  for (const row of rows) {
    if (row.replicas < replicasLow) replicasLow = row.replicas;
    if (row.replicas > replicasHigh) replicasHigh = row.replicas;
  }
  const trackingPanels: TrackingPanel[] = policy.target_tracking.map((entry) => {
    const values = rows.map((row) => {
      const v = row.values[entry.id];
      return typeof v === 'number' && Number.isFinite(v) ? v : null;
    });
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of values) {
      if (v === null) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    // The scale holds the target, or the capacity at every replica count the timeline had.
    const perReplica = entry.target_per_replica;
    const targets = perReplica !== null ? (rows.length > 0 ? [perReplica * replicasLow, perReplica * replicasHigh] : []) : [entry.target_value ?? NaN];
    for (const v of targets) {
      if (!Number.isFinite(v)) continue;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    if (!Number.isFinite(lo)) {
      lo = 0;
      hi = 1;
    }
    return { entry, values, scale: niceScale(lo, hi, metricTicksTarget) };
  });
  const proposals: Array<number | null> = tracking ? rows.map((row) => (typeof row.proposal === 'number' && Number.isFinite(row.proposal) ? row.proposal : null)) : [];
  let proposalPeak = -Infinity;
  for (const v of proposals) if (v !== null && v > proposalPeak) proposalPeak = v;

  let rLo = Math.min(policy.min_replicas, summary.min_replicas_seen, rows[0]?.replicas_before ?? policy.min_replicas);
  let rHi = Math.max(policy.max_replicas, summary.peak_replicas);
  // A proposal above the replicas widens the scale, up to twice its height: beyond that the line
  // is cut at the top and a side label gives its peak.
  if (proposalPeak > rHi) rHi = Math.min(proposalPeak, 2 * Math.max(rHi, 1));
  rLo = Math.min(0, rLo);
  // Room above max_replicas, so the line at the cap stays visible under the frame.
  rHi = Math.max(rHi + Math.max(1, Math.ceil(rHi * 0.05)), 1);
  const replicaScale = niceScale(rLo, rHi, Math.max(3, Math.floor(REPLICA_PLOT_HEIGHT / 20)), true);
  const proposalClipped = proposalPeak > replicaScale.hi;

  // Condition trees: a lane per direction with one, when the result says where it held.
  const lanes: BranchLane[] = [];
  for (const direction of ['scale_up', 'scale_down'] as const) {
    const when = direction === 'scale_up' ? policy.scale_up_when : policy.scale_down_when;
    const spans = result.branches?.[direction];
    if (when === null || spans === null || spans === undefined) continue;
    const list = direction === 'scale_up' ? policy.scale_up_rules : policy.scale_down_rules;
    lanes.push({ direction, label: direction === 'scale_up' ? 'up' : 'down', tree: conditionText(compileTree(when, list), list), spans });
  }
  // A colour per distinct branch of a direction, in order of first appearance.
  const branchColors = new Map<string, number>();
  const branchKey = (direction: TreeDirection, branch: string): string => `${direction}\n${branch}`;
  for (const lane of lanes) {
    for (const span of lane.spans) {
      const key = branchKey(lane.direction, span.branch);
      if (!branchColors.has(key)) branchColors.set(key, branchColors.size);
    }
  }
  const laneSpans = new Map<TreeDirection, readonly BranchSpan[]>(lanes.map((l) => [l.direction, l.spans]));
  const spanCursor = new Map<TreeDirection, number>();
  /** The branch that decided `direction` at evaluation i; asked with i increasing. */
  const branchAt = (direction: TreeDirection, i: number): string | null => {
    const spans = laneSpans.get(direction);
    if (spans === undefined) return null;
    let k = spanCursor.get(direction) ?? 0;
    while (k < spans.length && (spans[k] as BranchSpan).end < i) k++;
    spanCursor.set(direction, k);
    const span = spans[k];
    return span !== undefined && span.start <= i ? span.branch : null;
  };

  // Margins follow the labels they hold.
  const allTickLabels = [...panels.flatMap((p) => p.scale.labels), ...trackingPanels.flatMap((p) => p.scale.labels), ...replicaScale.labels, ...lanes.map((l) => l.label)];
  const left = Math.ceil(Math.max(44, ...allTickLabels.map((l) => textWidth(l, 11) + 16)));
  const sideLabels = [
    ...directed.map((r) => ruleLabel(r.rule, r.direction)),
    `max ${formatValue(policy.max_replicas)}`,
    `min ${formatValue(policy.min_replicas)}`,
    ...trackingPanels.map((p) => trackingLabel(p.entry)),
    ...(proposalClipped ? [`proposal up to ${formatValue(proposalPeak)}`] : []),
  ];
  const right = Math.ceil(Math.min(Math.max(90, ...sideLabels.map((l) => textWidth(l, 11) + 24)), width * 0.3));
  const plotLeft = left;
  const plotRight = width - right;
  const plotWidth = plotRight - plotLeft;
  const x = (t: number): number => plotLeft + ((t - t0) / (t1 - t0)) * plotWidth;
  const xs = times.map(x);
  const halfStepPx = (stepMs / 2 / (t1 - t0)) * plotWidth;

  const out: string[] = [];
  const title = opts.title ?? `Backtest of ${policy.name}`;
  const evals = summary.evaluations ?? rows.length;
  const rangeFrom = Date.parse(summary.from);
  const rangeTo = Date.parse(summary.to);
  const subtitle = `${formatInstant(Number.isFinite(rangeFrom) ? rangeFrom : t0)} → ${formatInstant(Number.isFinite(rangeTo) ? rangeTo : t1)} UTC · step ${formatDuration(summary.step_seconds)} · ${groupThousands(evals, 0)} evaluation${evals === 1 ? '' : 's'} · replicas ${policy.min_replicas}–${policy.max_replicas}`;

  // Heading.
  let y = 30;
  out.push(`<text x="${PANEL_GAP + 2}" y="${y}" class="h1">${escapeXml(fitText(title, 17, width - 2 * PANEL_GAP, true))}</text>`);
  y += 20;
  out.push(`<text x="${PANEL_GAP + 2}" y="${y}" class="sub">${escapeXml(fitText(subtitle, 12, width - 2 * PANEL_GAP))}</text>`);
  y += 14;

  // Legend, wrapped to the width.
  const legend: Array<{ swatch: string; label: string; attrs?: string }> = [];
  const valuePanels = panels.length + trackingPanels.length;
  if (valuePanels > 0) legend.push({ swatch: `<line x1="0" y1="0" x2="22" y2="0" stroke="${COLOR.value}" stroke-width="2"/>`, label: 'metric value' });
  if (policy.scale_up_rules.length > 0) {
    legend.push({ swatch: `<line x1="0" y1="0" x2="22" y2="0" stroke="${COLOR.up}" stroke-width="1.5" stroke-dasharray="6 3"/>`, label: 'scale-up threshold' });
  }
  if (policy.scale_down_rules.length > 0) {
    legend.push({ swatch: `<line x1="0" y1="0" x2="22" y2="0" stroke="${COLOR.down}" stroke-width="1.5" stroke-dasharray="6 3"/>`, label: 'scale-down threshold' });
  }
  if (policy.target_tracking.some((e) => e.target_per_replica === null)) {
    legend.push({
      swatch: `<line x1="0" y1="0" x2="22" y2="0" stroke="${COLOR.target}" stroke-width="2" stroke-dasharray="${DASH_TARGET}"/>`,
      label: 'target (target_value)',
    });
  }
  if (policy.target_tracking.some((e) => e.target_per_replica !== null)) {
    legend.push({
      swatch: `<path d="M0,4H9V-4H22" fill="none" stroke="${COLOR.target}" stroke-width="2" stroke-dasharray="${DASH_TARGET}"/>`,
      label: 'capacity: target_per_replica × replicas',
    });
  }
  if (valuePanels > 0) {
    legend.push({ swatch: `<rect x="2" y="-7" width="18" height="14" fill="url(#bt-hatch)"/><rect x="2" y="3" width="18" height="4" class="rug"/>`, label: 'no data' });
  }
  legend.push({ swatch: `<path d="M0,4H9V-4H22" fill="none" stroke="${COLOR.replicas}" stroke-width="2"/>`, label: 'replicas' });
  if (tracking) {
    legend.push({
      swatch: `<path d="M0,4H9V-4H22" fill="none" stroke="${COLOR.proposal}" stroke-width="2" stroke-dasharray="${DASH_PROPOSAL}"/>`,
      label: 'proposal before stabilization and rate limits',
    });
  }
  legend.push(
    { swatch: `<line x1="0" y1="0" x2="22" y2="0" stroke="${COLOR.bound}" stroke-width="1" stroke-dasharray="2 3"/>`, label: 'min / max replicas' },
    ...MARKERS.map((m) => ({ swatch: `<path d="${markerPath(m.kind, 11, 0, 5)}" ${markerStyle(m.kind, m.color)}/>`, label: m.label })),
  );
  for (const [key, color] of branchColors) {
    const [direction, branch] = key.split('\n') as [TreeDirection, string];
    const fill = (BRANCH_COLORS[color % BRANCH_COLORS.length] as (typeof BRANCH_COLORS)[number]).fill;
    legend.push({
      swatch: `<rect x="2" y="-6" width="18" height="12" fill="${fill}"/>`,
      label: `${direction === 'scale_up' ? 'up' : 'down'}: ${branch}`,
      attrs: ` data-direction="${direction}" data-branch="${escapeXml(branch)}"`,
    });
  }
  y += 12;
  let lx = PANEL_GAP + 2;
  for (const item of legend) {
    const w = 28 + textWidth(item.label, 12) + 18;
    if (lx + w > width - PANEL_GAP && lx > PANEL_GAP + 2) {
      lx = PANEL_GAP + 2;
      y += 20;
    }
    out.push(`<g class="legend"${item.attrs ?? ''} transform="translate(${px(lx)},${y})">${item.swatch}<text x="28" y="4" class="lg">${escapeXml(item.label)}</text></g>`);
    lx += w;
  }
  y += 14;

  // Shared time ticks.
  const { major: ticks, minor: minorTicks } = timeTicks(t0, t1, plotWidth, 84);

  // Action markers, grouped per kind where they would overlap.
  // With a condition tree, a marker of a scale-up or scale-down names the branches that decided it.
  type OpenGroup = MarkerGroup & { firstTime: string; lastTime: string; lastRow: TimelineRow; firstRow: TimelineRow; branches: string[] };
  const groups: MarkerGroup[] = [];
  const openGroup = new Map<MarkedAction, OpenGroup>();
  const closeGroup = (g: OpenGroup): void => {
    const name = MARKERS.find((m) => m.kind === g.kind)?.label ?? g.kind;
    g.title =
      g.count === 1
        ? `${name} ${g.firstRow.replicas_before} → ${g.firstRow.replicas} at ${formatInstant(Date.parse(g.firstTime))} UTC (${g.firstRow.reason_code})`
        : `${g.count} × ${name} from ${formatInstant(Date.parse(g.firstTime))} to ${formatInstant(Date.parse(g.lastTime))} UTC, ending at ${g.lastRow.replicas}`;
    if (g.branches.length > 0) g.title += `, ${g.branches.length === 1 ? 'branch' : 'branches'}: ${g.branches.join('; ')}`;
    groups.push({ kind: g.kind, x: g.x, y: g.lastRow.replicas, count: g.count, title: g.title });
  };
  const addBranch = (g: OpenGroup, i: number): void => {
    if (g.kind !== 'scale_up' && g.kind !== 'scale_down') return;
    const branch = branchAt(g.kind, i);
    if (branch !== null && !g.branches.includes(branch)) g.branches.push(branch);
  };
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as TimelineRow;
    if (row.action === 'none') continue;
    const kind = row.action;
    const open = openGroup.get(kind);
    const xi = xs[i] as number;
    if (open !== undefined && xi - open.x <= MARKER_MERGE_PX) {
      open.count++;
      open.lastTime = row.time;
      open.lastRow = row;
      addBranch(open, i);
      continue;
    }
    if (open !== undefined) closeGroup(open);
    const group: OpenGroup = { kind, x: xi, y: 0, count: 1, title: '', firstTime: row.time, lastTime: row.time, firstRow: row, lastRow: row, branches: [] };
    addBranch(group, i);
    openGroup.set(kind, group);
  }
  for (const m of MARKERS) {
    const open = openGroup.get(m.kind);
    if (open !== undefined) closeGroup(open);
  }
  groups.sort((a, b) => a.x - b.x || MARKERS.findIndex((m) => m.kind === a.kind) - MARKERS.findIndex((m) => m.kind === b.kind));

  const drawGrid = (top: number, height: number, scale: Scale, yOf: (v: number) => number): void => {
    if (minorTicks.length > 0) out.push(`<path class="grid2" d="${minorTicks.map((t) => `M${px(x(t))},${top}v${height}`).join('')}"/>`);
    const lines: string[] = [];
    for (const t of ticks) lines.push(`M${px(x(t.t))},${top}v${height}`);
    for (const v of scale.ticks) lines.push(`M${plotLeft},${px(yOf(v))}H${plotRight}`);
    out.push(`<path class="grid" d="${lines.join('')}"/>`);
    scale.ticks.forEach((v, k) => {
      out.push(`<text x="${plotLeft - 6}" y="${px(yOf(v) + 4)}" class="yt">${escapeXml(scale.labels[k] as string)}</text>`);
    });
    if (scale.lo < 0 && scale.hi > 0) out.push(`<path class="zero" d="M${plotLeft},${px(yOf(0))}H${plotRight}"/>`);
  };
  const drawSideLabels = (labels: SideLabel[], top: number, height: number): void => {
    for (const l of spreadLabels(labels, top, top + height, 14)) {
      if (Math.abs(l.at - l.y) > 2) {
        out.push(`<path d="M${plotRight},${px(l.y)}L${plotRight + 6},${px(l.at)}" stroke="${l.color}" stroke-width="1" fill="none"/>`);
      }
      out.push(`<text x="${plotRight + 9}" y="${px(l.at + 4)}" class="side" fill="${l.color}">${escapeXml(fitText(l.text, 11, right - 12))}</text>`);
    }
  };

  // The replica count's step line starts half a step before the first evaluation and ends half a
  // step after the last; so does the capacity line of a target_per_replica entry.
  const stepStart = Math.max(plotLeft, (xs[0] ?? plotLeft) - halfStepPx);
  const stepEnd = Math.min(plotRight, (xs.at(-1) ?? plotLeft) + halfStepPx);

  /**
   * A panel of a value over time: grid, hatching where the value is missing, action guides, the
   * reference lines `lines` draws (returning their side labels), the value and the frame.
   */
  const drawValuePanel = (
    panel: { attrs: string; title: (y: number) => string; scale: Scale; values: Array<number | null>; valueClass: string },
    lines: (yOf: (v: number) => number, top: number, h: number) => SideLabel[],
  ): void => {
    y += PANEL_TITLE_SPACE;
    const top = y;
    const h = METRIC_PLOT_HEIGHT;
    const { lo, hi } = panel.scale;
    const yOf = (v: number): number => top + h - ((v - lo) / (hi - lo)) * h;
    out.push(`<g ${panel.attrs}>`);
    out.push(panel.title(top - 7));
    drawGrid(top, h, panel.scale, yOf);
    const line = reduceLine(xs, panel.values, yOf, halfStepPx, plotLeft, plotRight);
    for (const [a, b] of line.gaps) out.push(`<rect class="gap" x="${px(a)}" y="${top}" width="${px(b - a)}" height="${h}"/>`);
    if (groups.length <= MAX_GUIDES) {
      const guides = groups.map((g) => `M${px(g.x)},${top}v${h}`).join('');
      if (guides !== '') out.push(`<path class="guide" d="${guides}"/>`);
    }
    const labels = lines(yOf, top, h);
    if (line.d !== '') out.push(`<path class="${panel.valueClass}" d="${line.d}"/>`);
    for (const [dx, dy] of line.dots) out.push(`<circle class="dot" cx="${px(dx)}" cy="${px(dy)}" r="3"/>`);
    // The hatching shows a long gap; this bar over the bottom edge keeps a one-pixel gap visible.
    for (const [a, b] of line.gaps) {
      const w = Math.max(3, b - a);
      out.push(`<rect class="rug" x="${px(Math.min(a, plotRight - w))}" y="${top + h - 4}" width="${px(w)}" height="4"/>`);
    }
    if (rows.length > 0 && line.present === 0) {
      out.push(`<text x="${px(plotLeft + plotWidth / 2)}" y="${px(top + h / 2 + 4)}" class="nodata">no value of this metric in the range</text>`);
    }
    out.push(`<rect class="frame" x="${plotLeft}" y="${top}" width="${plotWidth}" height="${h}"/>`);
    drawSideLabels(labels, top, h);
    out.push(`</g>`);
    y += h + PANEL_GAP;
  };

  // Metric panels.
  for (const p of panels) {
    drawValuePanel(
      {
        attrs: 'class="panel metric-panel"',
        title: (ty) => `<text x="${plotLeft}" y="${ty}" class="pt"><title>${escapeXml(p.metric)}</title>${escapeXml(fitText(p.metric, 12.5, plotWidth + right - 10, true))}</text>`,
        scale: p.scale,
        values: p.values,
        valueClass: 'val',
      },
      (yOf) => {
        const labels: SideLabel[] = [];
        for (const { rule, direction } of p.rules) {
          if (!Number.isFinite(rule.threshold)) continue;
          const color = direction === 'up' ? COLOR.up : COLOR.down;
          const ty = yOf(rule.threshold);
          out.push(`<path class="thr thr-${direction}" d="M${plotLeft},${px(ty)}H${plotRight}" stroke="${color}"/>`);
          labels.push({ y: ty, text: ruleLabel(rule, direction), color });
        }
        return labels;
      },
    );
  }

  // Target-tracking panels: the value each entry used, and its target line.
  for (const p of trackingPanels) {
    const { entry } = p;
    // The metric keeps at least about half the title's width; the description gets the rest, or
    // is left out when too little remains.
    const room = plotWidth + right - 10;
    // A no-break space: some renderers drop a plain space at the start of a tspan.
    const description = `\u00a0· ${trackingDescription(entry)}`;
    const metricRoom = Math.max(room * 0.45, room - textWidth(description, 12.5));
    const metric = fitText(entry.metric, 12.5, metricRoom, true);
    const descriptionRoom = room - textWidth(metric, 12.5, true);
    const suffix = descriptionRoom >= 80 ? `<tspan class="pts">${escapeXml(fitText(description, 12.5, descriptionRoom))}</tspan>` : '';
    drawValuePanel(
      {
        attrs: `class="panel tt-panel" data-entry="${escapeXml(entry.id)}"`,
        title: (ty) => `<text x="${plotLeft}" y="${ty}" class="pt"><title>${escapeXml(`${entry.metric}${description}`)}</title>${escapeXml(metric)}${suffix}</text>`,
        scale: p.scale,
        values: p.values,
        valueClass: 'val tt-val',
      },
      (yOf) => {
        const label = trackingLabel(entry);
        if (entry.target_per_replica !== null) {
          // The total the running replicas can carry: the replica count's step line, scaled.
          const perReplica = entry.target_per_replica;
          const d = replicaPath(xs, rows, (v) => yOf(perReplica * v), stepStart, stepEnd);
          if (d === '') return [];
          out.push(`<path class="tgt tgt-capacity" d="${d}"/>`);
          const last = rows.at(-1) as TimelineRow;
          return [{ y: yOf(perReplica * last.replicas), text: label, color: COLOR.text }];
        }
        const target = entry.target_value ?? NaN;
        if (!Number.isFinite(target)) return [];
        const ty = yOf(target);
        out.push(`<path class="tgt tgt-value" d="M${plotLeft},${px(ty)}H${plotRight}"/>`);
        return [{ y: ty, text: label, color: COLOR.text }];
      },
    );
  }

  // Condition branches: a lane per direction with a tree, a segment where it held.
  if (lanes.length > 0) {
    y += PANEL_TITLE_SPACE;
    const top = y;
    const h = lanes.length * LANE_HEIGHT + (lanes.length - 1) * LANE_GAP;
    out.push(`<g class="panel branch-panel">`);
    out.push(`<text x="${plotLeft}" y="${top - 7}" class="pt">condition branches that held</text>`);
    lanes.forEach((lane, k) => {
      const ly = top + k * (LANE_HEIGHT + LANE_GAP);
      out.push(`<g class="lane" data-direction="${lane.direction}">`);
      out.push(`<rect class="lane-bg" x="${plotLeft}" y="${ly}" width="${plotWidth}" height="${LANE_HEIGHT}"/>`);
      const grid = ticks.map((t) => `M${px(x(t.t))},${ly}v${LANE_HEIGHT}`).join('');
      if (grid !== '') out.push(`<path class="grid" d="${grid}"/>`);
      const segments = branchSegments(lane.spans, xs, halfStepPx, plotLeft, plotRight, (b) => branchColors.get(branchKey(lane.direction, b)) ?? 0);
      for (const seg of segments) {
        const color = BRANCH_COLORS[seg.color % BRANCH_COLORS.length] as (typeof BRANCH_COLORS)[number];
        const from = formatInstant(times[seg.first] as number);
        const to = formatInstant(times[seg.last] as number);
        const evaluations = `${groupThousands(seg.evaluations, 0)} evaluation${seg.evaluations === 1 ? '' : 's'}`;
        const when = seg.first === seg.last ? `at ${from} UTC` : `from ${from} to ${to} UTC`;
        const title = `${lane.label}: ${seg.branch} held ${seg.spans > 1 ? `in ${groupThousands(seg.spans, 0)} spans ` : ''}${when} (${evaluations})`;
        const w = seg.x1 - seg.x0;
        out.push(
          `<rect class="br" data-branch="${escapeXml(seg.branch)}" data-spans="${seg.spans}" x="${px(seg.x0)}" y="${ly}" width="${px(w)}" height="${LANE_HEIGHT}" fill="${color.fill}"><title>${escapeXml(title)}</title></rect>`,
        );
        if (w < 24) continue;
        const label = fitText(seg.branch, 10.5, w - 6);
        if (label !== '…') out.push(`<text x="${px(seg.x0 + w / 2)}" y="${ly + 12.5}" class="${color.light ? 'brl brl-light' : 'brl'}">${escapeXml(label)}</text>`);
      }
      out.push(`<rect class="frame" x="${plotLeft}" y="${ly}" width="${plotWidth}" height="${LANE_HEIGHT}"/>`);
      out.push(`<text x="${plotLeft - 6}" y="${ly + 13}" class="yt"><title>${escapeXml(`${lane.direction}_when: ${lane.tree}`)}</title>${lane.label}</text>`);
      out.push(`</g>`);
    });
    if (groups.length <= MAX_GUIDES) {
      const guides = groups.map((g) => `M${px(g.x)},${top}v${h}`).join('');
      if (guides !== '') out.push(`<path class="guide" d="${guides}"/>`);
    }
    out.push(`</g>`);
    y += h + PANEL_GAP;
  }

  // Replica panel.
  {
    y += PANEL_TITLE_SPACE;
    const top = y;
    const h = REPLICA_PLOT_HEIGHT;
    const { lo, hi } = replicaScale;
    const yOf = (v: number): number => top + h - ((v - lo) / (hi - lo)) * h;
    out.push(`<g class="panel replica-panel">`);
    out.push(`<text x="${plotLeft}" y="${top - 7}" class="pt">replicas</text>`);
    drawGrid(top, h, replicaScale, yOf);
    const bounds = `M${plotLeft},${px(yOf(policy.max_replicas))}H${plotRight}M${plotLeft},${px(yOf(policy.min_replicas))}H${plotRight}`;
    out.push(`<path class="bound" d="${bounds}"/>`);
    if (groups.length <= MAX_GUIDES) {
      const guides = groups.map((g) => `M${px(g.x)},${top}v${h}`).join('');
      if (guides !== '') out.push(`<path class="guide" d="${guides}"/>`);
    }
    const d = replicaPath(xs, rows, yOf, stepStart, stepEnd);
    if (d !== '') out.push(`<path class="rep" d="${d}"/>`);
    if (tracking) {
      // Over the replica line, so that where the two agree the dashes show on it.
      const clamp = (v: number): number => yOf(Math.min(Math.max(v, lo), hi));
      const pd = stepPath(xs, proposals, clamp, stepEnd);
      if (pd !== '') out.push(`<path class="prop" d="${pd}"/>`);
    }
    // Counts go beside merged markers where they hide nothing; the tooltip always has them.
    const boxes: Array<[number, number, number, number]> = groups.map((g) => [g.x - 6, yOf(g.y) - 6, g.x + 6, yOf(g.y) + 6]);
    const free = (b: [number, number, number, number], own: number): boolean =>
      b[0] >= plotLeft && b[2] <= plotRight && b[1] >= top && boxes.every((o, k) => k === own || o[2] <= b[0] || o[0] >= b[2] || o[3] <= b[1] || o[1] >= b[3]);
    groups.forEach((g, k) => {
      const color = MARKERS.find((m) => m.kind === g.kind)?.color ?? COLOR.text;
      const gy = yOf(g.y);
      out.push(`<path class="mk mk-${g.kind}" data-count="${g.count}" d="${markerPath(g.kind, g.x, gy, 5)}" ${markerStyle(g.kind, color)}><title>${escapeXml(g.title)}</title></path>`);
      // Pairs are common where actions follow each cooldown; only larger bursts get a number.
      if (g.count < 3 || groups.length > 400) return;
      const text = `×${g.count}`;
      const w = textWidth(text, 10);
      const right: [number, number, number, number] = [g.x + 6, gy - 15, g.x + 7 + w, gy - 4];
      const left: [number, number, number, number] = [g.x - 7 - w, gy - 15, g.x - 6, gy - 4];
      const spot = free(right, k) ? right : free(left, k) ? left : null;
      if (spot === null) return;
      boxes.push(spot);
      out.push(`<text x="${px(spot[0] + 1)}" y="${px(spot[3] - 1)}" class="cnt" fill="${color}">${text}</text>`);
    });
    out.push(`<rect class="frame" x="${plotLeft}" y="${top}" width="${plotWidth}" height="${h}"/>`);
    drawSideLabels(
      [
        { y: yOf(policy.max_replicas), text: `max ${formatValue(policy.max_replicas)}`, color: COLOR.muted },
        { y: yOf(policy.min_replicas), text: `min ${formatValue(policy.min_replicas)}`, color: COLOR.muted },
        ...(proposalClipped ? [{ y: top, text: `proposal up to ${formatValue(proposalPeak)}`, color: COLOR.text }] : []),
      ],
      top,
      h,
    );
    out.push(`</g>`);
    y += h;
  }

  // Time axis under the last panel.
  // A label centred under a tick near an edge is moved in just far enough to stay whole.
  const inside = (cx: number, text: string, bold: boolean): string => {
    const half = textWidth(text, 11, bold) / 2;
    return px(Math.min(Math.max(cx, half + 2), width - half - 2));
  };
  for (const t of ticks) {
    const tx = x(t.t);
    out.push(`<path class="tick" d="M${px(tx)},${y}v5"/><text x="${inside(tx, t.label, false)}" y="${y + 18}" class="xt">${escapeXml(t.label)}</text>`);
    if (t.context !== null) out.push(`<text x="${inside(tx, t.context, true)}" y="${y + 32}" class="xc">${escapeXml(t.context)}</text>`);
  }
  y += 50;
  out.push(`<text x="${px(plotLeft + plotWidth / 2)}" y="${y}" class="xa">time (UTC)</text>`);
  y += 14;

  // Footer: the summary in words.
  const acted = MARKERS.filter((m) => (summary.actions[m.kind] ?? 0) > 0).map((m) => `${groupThousands(summary.actions[m.kind] ?? 0, 0)} ${m.label}`);
  const footer1 = `Actions: ${acted.length > 0 ? acted.join(', ') : 'none'}`;
  const parts = [
    `replica-hours ${groupThousands(summary.replica_hours, summary.replica_hours >= 100 ? 1 : 2)}`,
    ...(summary.estimated_cost === null || summary.estimated_cost === undefined ? [] : [`estimated cost ${groupThousands(summary.estimated_cost, 2)}`]),
    `peak ${groupThousands(summary.peak_replicas, 0)} replicas (lowest ${groupThousands(summary.min_replicas_seen, 0)}, final ${groupThousands(summary.final_replicas, 0)})`,
    `scale-up pending ${groupThousands(summary.scale_up_pending_minutes, summary.scale_up_pending_minutes % 1 === 0 ? 0 : 1)} min`,
  ];
  const footerLines: string[] = [];
  let current = footer1;
  for (const part of parts) {
    const next = `${current} · ${part}`;
    if (textWidth(next, 12) > width - 2 * PANEL_GAP) {
      footerLines.push(current);
      current = part.charAt(0).toUpperCase() + part.slice(1);
    } else current = next;
  }
  footerLines.push(current);
  out.push(`<path class="rule" d="M${PANEL_GAP},${y}H${width - PANEL_GAP}"/>`);
  for (const line of footerLines) {
    y += 18;
    out.push(`<text x="${PANEL_GAP + 2}" y="${y}" class="foot">${escapeXml(line)}</text>`);
  }
  y += 14;
  const height = Math.ceil(y);

  const style = [
    `text{font-family:${FONT};fill:${COLOR.text};font-variant-numeric:tabular-nums}`,
    `.h1{font-size:17px;font-weight:bold}`,
    `.sub{font-size:12px;fill:${COLOR.muted}}`,
    `.lg{font-size:12px}`,
    `.pt{font-size:12.5px;font-weight:bold}`,
    `.yt{font-size:11px;text-anchor:end;fill:${COLOR.muted}}`,
    `.xt{font-size:11px;text-anchor:middle;fill:${COLOR.muted}}`,
    `.xc{font-size:11px;text-anchor:middle;font-weight:bold;fill:${COLOR.muted}}`,
    `.xa{font-size:11px;text-anchor:middle;fill:${COLOR.muted}}`,
    `.side{font-size:11px}`,
    `.cnt{font-size:10px;font-weight:bold}`,
    `.foot{font-size:12px}`,
    `.nodata{font-size:12px;text-anchor:middle;fill:${COLOR.muted};font-style:italic;paint-order:stroke;stroke:#fff;stroke-width:5px;stroke-linejoin:round}`,
    `.grid{stroke:${COLOR.grid};stroke-width:1;fill:none}`,
    `.grid2{stroke:#f0f0f0;stroke-width:1;fill:none}`,
    `.zero{stroke:${COLOR.axis};stroke-width:1;fill:none}`,
    `.frame{fill:none;stroke:${COLOR.axis};stroke-width:1}`,
    `.tick{stroke:${COLOR.axis};stroke-width:1}`,
    `.rule{stroke:${COLOR.grid};stroke-width:1}`,
    `.gap{fill:url(#bt-hatch)}`,
    `.rug{fill:#8c8c8c}`,
    `.guide{stroke:#b0b0b0;stroke-width:1;stroke-dasharray:1 3;fill:none}`,
    `.thr{stroke-width:1.5;stroke-dasharray:6 3;fill:none}`,
    `.val{stroke:${COLOR.value};stroke-width:1.6;fill:none;stroke-linejoin:round}`,
    `.dot{fill:${COLOR.value}}`,
    `.rep{stroke:${COLOR.replicas};stroke-width:2;fill:none}`,
    `.bound{stroke:${COLOR.bound};stroke-width:1;stroke-dasharray:2 3;fill:none}`,
    ...(tracking
      ? [
          `.pts{font-weight:normal;fill:${COLOR.muted}}`,
          `.tgt{stroke:${COLOR.target};stroke-width:2;stroke-dasharray:${DASH_TARGET};fill:none}`,
          `.prop{stroke:${COLOR.proposal};stroke-width:2;stroke-dasharray:${DASH_PROPOSAL};fill:none}`,
        ]
      : []),
    ...(lanes.length > 0 ? [`.lane-bg{fill:#f7f7f7}`, `.brl{font-size:10.5px;text-anchor:middle;pointer-events:none}`, `.brl-light{fill:#ffffff}`] : []),
  ].join('');
  const defs =
    `<defs><pattern id="bt-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">` +
    `<rect width="6" height="6" fill="#f1f1f1"/><line x1="0" y1="0" x2="0" y2="6" stroke="#cfcfcf" stroke-width="2"/></pattern></defs>`;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img">` +
    `<title>${escapeXml(`${title}: ${subtitle}`)}</title>` +
    `<style>${style}</style>${defs}` +
    `<rect width="${width}" height="${height}" fill="#ffffff"/>\n` +
    `${out.join('\n')}\n</svg>\n`
  );
}
