import t from 'tap';
import type { Observation, RuleWindow } from '../src/engine/decision.js';
import { trackingOpinion, trackingValue, type TargetTracking } from '../src/engine/target-tracking.js';

/**
 * The arithmetic of target tracking against its sources:
 * - HPA: desiredReplicas = ceil[currentReplicas * (currentMetricValue / desiredMetricValue)], "200m
 *   against 100m doubles, 50m halves", no scaling while the ratio is within the tolerance (0.1 by
 *   default) of 1.0 (kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details).
 * - KEDA (AverageValue, the default metricType of its scalers): the HPA divides the metric's total
 *   by the target per replica and rounds up (keda.sh/docs/latest/concepts/scaling-deployments/,
 *   "metricType"; e.g. a Kafka lag of 550 with lagThreshold 100 wants 6 replicas).
 */

const instant: RuleWindow = { start: 100, end: 100, step: 0, seconds: 0, points: 1, startMs: 100_000, endMs: 100_000, stepMs: 0 };
const latest = (v: number): { value: number | null; samples: number; error: boolean } => trackingValue({ samples: [{ t: 100, v }] }, instant);

function entry(over: Partial<TargetTracking>): TargetTracking {
  return { id: 'e', metric: 'm', source: null, aggregation: 'max', duration: '0s', duration_seconds: 0, target_per_replica: null, target_value: null, tolerance: 0.1, ...over };
}

t.test('target_value: the HPA utilisation formula and its tolerance', async (t) => {
  const cpu = entry({ target_value: 100 });
  const rows: Array<[current: number, value: number, opinion: number | null, why: string]> = [
    [4, 200, 8, '200m against 100m doubles'],
    [4, 50, 2, '50m against 100m halves'],
    [4, 109, null, 'ratio 1.09: within the 0.1 tolerance'],
    [4, 110, null, 'ratio 1.10: on the tolerance, still within'],
    [4, 111, 5, 'ratio 1.11: ceil(4 x 1.11) = 5'],
    [4, 91, null, 'ratio 0.91: within'],
    [4, 89, 4, 'ratio 0.89: ceil(3.56) = 4, an opinion equal to the current count'],
    [10, 79, 8, 'ceil(7.9) = 8'],
    [3, 0, 0, 'no load: 0'],
    [0, 250, 3, 'current 0 counts as 1: ceil(2.5) = 3'],
  ];
  for (const [current, value, opinion, why] of rows) t.equal(trackingOpinion(cpu, current, latest(value)).opinion, opinion, why);
  const r = trackingOpinion(entry({ target_value: 0.7 }), 3, latest(0.91));
  t.same([r.opinion, r.formula, r.outcome], [4, 'ceil(3 x 0.91 / 0.7) = 4', 'opinion'], 'the record shows the arithmetic');
  t.equal(trackingOpinion(entry({ target_value: 0.07, tolerance: 0 }), 3, latest(0.21)).opinion, 9, '3 x 0.21 / 0.07 is 9 (not 10 by a float rounding)');
  t.equal(trackingOpinion(entry({ target_value: 100, tolerance: 0 }), 4, latest(101)).opinion, 5, 'tolerance 0: any difference counts');
});

t.test('target_per_replica: KEDA AverageValue arithmetic', async (t) => {
  const lag = entry({ target_per_replica: 100 });
  const rows: Array<[current: number, value: number, opinion: number | null, why: string]> = [
    [1, 550, 6, 'Kafka lag 550, lagThreshold 100: ceil(5.5) = 6'],
    [2, 24, 1, 'a Prometheus value of 24 against a threshold of 100: ceil(0.24) = 1'],
    [6, 600, null, 'ratio 600 / (100 x 6) = 1: within tolerance'],
    [5, 560, 6, 'ratio 1.12: ceil(5.6) = 6'],
    [5, 540, null, 'ratio 1.08: within'],
    [0, 0, 0, 'nothing to do, nothing running: 0 (no ratio from 0 replicas)'],
    [0, 1, 1, 'from 0: any load wants a replica'],
    [3, 0, 0, 'no load: 0 (bounds and scale_to_zero decide whether 0 is allowed)'],
  ];
  for (const [current, value, opinion, why] of rows) t.equal(trackingOpinion(lag, current, latest(value)).opinion, opinion, why);
  t.equal(trackingOpinion(lag, 1, latest(550)).formula, 'ceil(550 / 100) = 6');
  t.equal(trackingOpinion(lag, 0, latest(250)).ratio, null);
});

t.test('values: the latest, or the average of the window; errors and non-finite values give no opinion', async (t) => {
  const win: RuleWindow = { start: 0, end: 120, step: 30, seconds: 120, points: 5, startMs: 0, endMs: 120_000, stepMs: 30_000 };
  const obs: Observation = { samples: [0, 30, 60, 90, 120].map((s, i) => ({ t: s, v: [100, 200, 300, 400, 500][i] as number })) };
  t.same(trackingValue(obs, win), { value: 300, samples: 5, error: false }, 'the average over the window');
  const gap: Observation = { samples: [{ t: 0, v: 100 }, { t: 90, v: 400 }, { t: 120, v: Number.NaN }] };
  t.same(trackingValue(gap, win), { value: 250, samples: 3, error: false }, 'missing instants and NaN left out');
  t.same(trackingValue({ samples: [{ t: 0, v: Number.NaN }] }, win), { value: null, samples: 1, error: false }, 'no finite value: no value');
  t.same(trackingValue({ samples: [] }, win), { value: null, samples: 0, error: true }, 'no sample: a metric error');
  t.same(trackingValue({ samples: [], error: { kind: 'unreachable', message: 'x' } }, win).error, true);
  t.same(trackingValue(undefined, win).error, true);
  const e = entry({ target_value: 1 });
  t.equal(trackingOpinion(e, 3, trackingValue({ samples: [], error: { kind: 'unreachable', message: 'x' } }, win)).outcome, 'metric_error');
  t.equal(trackingOpinion(e, 3, latest(Number.POSITIVE_INFINITY)).outcome, 'not_finite');
  t.equal(trackingOpinion(e, 3, latest(Number.POSITIVE_INFINITY)).opinion, null);
});
