import t from 'tap';
import {
  NO_BEHAVIOR,
  recordChange,
  recordProposal,
  scaleDownLimit,
  scaleUpLimit,
  stabilize,
  type Behavior,
  type ChangeEvent,
  type ProposalSpan,
  type RateLimit,
} from '../src/engine/behavior.js';

/**
 * Stabilization and rate limits, against the examples of the Kubernetes documentation of the
 * HorizontalPodAutoscaler ("Configurable scaling behavior", kubernetes.io/docs/tasks/run-application/
 * horizontal-pod-autoscale/#configurable-scaling-behavior) and the arithmetic of the HPA controller
 * (pkg/controller/podautoscaler/horizontal.go: the period's start count is the current count less
 * the net change within the period; percent limits round up for scale-up and down for scale-down;
 * selectPolicy Max takes the larger change, Min the smaller).
 */

const NONE: Behavior = NO_BEHAVIOR;

/** A rate limit as stored: the period in both forms. */
function limitOf(replicas: number | null, percent: number | null, periodSeconds: number, select: 'max' | 'min'): RateLimit {
  return { replicas, percent, period: `${periodSeconds}s`, period_seconds: periodSeconds, select };
}

/** Drives a scale-down to `target` one period at a time, as the HPA controller would, and lists the counts. */
function stepsDown(from: number, target: number, limit: RateLimit): number[] {
  const counts = [from];
  let current = from;
  let changes: ChangeEvent[] = [];
  for (let period = 1; current > target && period < 100; period++) {
    const now = period * limit.period_seconds * 1000;
    const next = Math.max(target, scaleDownLimit(current, changes, now, limit));
    changes = recordChange(changes, now, next - current, limit.period_seconds * 1000);
    current = next;
    counts.push(current);
  }
  return counts;
}

t.test('scale-down limit: 10 percent or 5 pods per minute, select max (the documented example)', async (t) => {
  const limit: RateLimit = limitOf(5, 10, 60, 'max');
  // "if there are 80 replicas and the target has to be scaled down to 10 replicas then during the
  // first step 8 replicas will be reduced. In the next iteration when the number of replicas is 72,
  // 10% of the pods is 7.2 but the number is rounded up to 8 ... When the number of replicas falls
  // below 40 the first policy (Pods) is applied and 5 replicas will be reduced at a time."
  const counts = stepsDown(80, 10, limit);
  t.same(counts.slice(0, 3), [80, 72, 64], '80 -> 72 (8 = 10% of 80), 72 -> 64 (7.2 rounds to a drop of 8)');
  t.same(counts, [80, 72, 64, 57, 51, 45, 40, 35, 30, 25, 20, 15, 10]);
  const drops = counts.slice(1).map((c, i) => (counts[i] as number) - c);
  t.ok(drops.slice(6).every((d) => d === 5), 'from 40 down, 5 pods per step (the larger of 5 and 10%)');
});

t.test('select min takes the smaller change', async (t) => {
  const limit: RateLimit = limitOf(5, 10, 60, 'min');
  t.equal(scaleDownLimit(80, [], 60_000, limit), 75, 'at 80: 5 pods (smaller than 8)');
  t.equal(scaleDownLimit(30, [], 60_000, limit), 27, 'at 30: 10% = 3 (smaller than 5)');
  const up: RateLimit = limitOf(4, 100, 15, 'min');
  t.equal(scaleUpLimit(10, [], 15_000, up), 14, 'up from 10: 4 pods (smaller than +100%)');
  t.equal(scaleUpLimit(2, [], 15_000, up), 4, 'up from 2: +100% = 2 (smaller than 4)');
});

t.test("HPA's default scale-up: 100 percent or 4 pods per 15 s, select max", async (t) => {
  const up: RateLimit = limitOf(4, 100, 15, 'max');
  t.equal(scaleUpLimit(1, [], 0, up), 5, 'from 1: +4 pods beats doubling');
  t.equal(scaleUpLimit(10, [], 0, up), 20, 'from 10: doubling beats +4');
  t.equal(scaleUpLimit(3, [], 0, { ...up, percent: 50 }), 7, 'from 3: +4 beats ceil(4.5) = 5');
  t.equal(scaleUpLimit(3, [], 0, limitOf(null, 50, 15, 'max')), 5, '3 * 1.5 = 4.5 rounds up to 5');
});

t.test("the period's start count is the current count less the net change within the period", async (t) => {
  const up: RateLimit = limitOf(4, null, 60, 'max');
  const changes: ChangeEvent[] = [[0, 3]];
  t.equal(scaleUpLimit(5, changes, 30_000, up), 6, '3 added 30 s ago: the period started at 2, so at most 6');
  t.equal(scaleUpLimit(5, changes, 60_000, up), 9, 'a change exactly one period old is outside it');
  const mixed: ChangeEvent[] = [
    [0, -4],
    [10_000, 2],
  ];
  t.equal(scaleUpLimit(8, mixed, 20_000, up), 14, '10 -> 6 -> 8 within the period: it started at 10');
  t.equal(scaleDownLimit(8, mixed, 20_000, limitOf(5, null, 60, 'max')), 5, 'down: 10 less 5');
  t.equal(scaleUpLimit(12, [[0, 8]], 1_000, up), 12, 'a limit never forces a count below what runs');
  t.equal(scaleDownLimit(2, [], 0, limitOf(5, null, 60, 'max')), 0, 'never below 0');
  t.same(recordChange([[0, 1], [50_000, 2]], 70_000, -1, 60_000), [[50_000, 2], [70_000, -1]], 'changes older than the longest period are dropped');
});

t.test('stabilization: a scale-down goes only to the highest proposal of the window', async (t) => {
  const b: Behavior = { ...NONE, scale_down_stabilization_seconds: 300 };
  // Evaluations every 15 s: 10 replicas are wanted until 60 s, then 4, with a blip of 6 at 120 s.
  let spans: ProposalSpan[] = [];
  const wanted = (s: number): number => (s < 60 ? 10 : s === 120 ? 6 : 4);
  const out: Array<[number, number]> = [];
  let current = 10;
  for (let s = 0; s <= 480; s += 15) {
    const now = s * 1000;
    const proposal = wanted(s);
    const next = stabilize(current, proposal, spans, now, b);
    spans = recordProposal(spans, now, 15_000, proposal, 300_000);
    if (next !== current) out.push([s, next]);
    current = next;
  }
  // 10 was last proposed at 45 s: it counts while 45 > now - 300, i.e. until now = 345 s; the
  // controller scales to the highest remaining proposal, 6 (made at 120 s), then to 4 once 120 s leaves the window.
  t.same(out, [
    [345, 6],
    [420, 4],
  ]);
});

t.test('stabilization: a scale-up goes only to the lowest proposal of its window', async (t) => {
  const b: Behavior = { ...NONE, scale_up_stabilization_seconds: 60 };
  let spans: ProposalSpan[] = [];
  let current = 2;
  const seen: number[] = [];
  for (const [s, p] of [
    [0, 2],
    [15, 8],
    [30, 5],
    [45, 8],
    [60, 8],
    [75, 8],
    [90, 8],
  ] as const) {
    current = stabilize(current, p, spans, s * 1000, b);
    spans = recordProposal(spans, s * 1000, 15_000, p, 60_000);
    seen.push(current);
  }
  t.same(seen, [2, 2, 2, 2, 5, 5, 8], 'held at 2 while 2 is in the window, then 5 until 5 leaves it');
  t.equal(stabilize(4, 4, [], 0, b), 4, 'no history: the proposal itself');
});

t.test('proposal spans: kept once while repeated, closed at the evaluation before a change, dropped when old', async (t) => {
  let spans = recordProposal([], 0, 10_000, 3, 60_000);
  const same = recordProposal(spans, 10_000, 10_000, 3, 60_000);
  t.equal(same, spans, 'a repeated proposal returns the same array: the memory does not change');
  spans = recordProposal(same, 30_000, 10_000, 5, 60_000);
  t.same(spans, [
    [0, 20_000, 3],
    [30_000, 30_000, 5],
  ]);
  spans = recordProposal(spans, 90_000, 10_000, 5, 60_000);
  t.same(spans, [[30_000, 30_000, 5]], 'the span of 3 ended at 20 s, before the window (30 s .. 90 s)');
  spans = recordProposal(spans, 200_000, 10_000, 1, 60_000);
  t.same(
    spans,
    [
      [30_000, 190_000, 5],
      [200_000, 200_000, 1],
    ],
    'the span of 5 was in force until the evaluation at 190 s, inside the window (140 s .. 200 s)',
  );
});
