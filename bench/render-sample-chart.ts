// Renders the sample backtest chart of docs/backtest.md: twelve hours of a CDC worker policy
// replayed over synthetic replication lag. Run: npx tsx bench/render-sample-chart.ts out.svg
// With --month, replays 30 days at a one-minute step instead (43,200 evaluations), to see how a
// long backtest reads and how large its picture is.
import { writeFileSync } from 'node:fs';
import { renderBacktestSvg } from '../src/backtest/chart.js';
import { replay } from '../src/backtest/replay.js';
import { observationKey } from '../src/engine/rule-window.js';
import type { Sample } from '../src/plugins/api.js';
import type { PolicyInput } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';

const DEFAULT_SOURCE = 'prometheus';
const STEP = 60;

/** policies/cdc-worker.yaml, plus a price and a fallback so every kind of action can show. */
const INPUT: PolicyInput = {
  name: 'cdc-worker-autoscaling',
  description: 'Scale CDC workers on replication lag; five workers from 08:00 on weekdays (Budapest time).',
  target_type: 'cdc-worker',
  target_id: '550e8400-e29b-41d4-a716-446655440000',
  min_replicas: 1,
  max_replicas: 10,
  cooldown_seconds: 300,
  cost_per_replica_hour: 0.12,
  on_metric_error: 'fallback',
  fallback: { after_failures: 10, replicas: 3 },
  scale_up_rules: [{ metric: 'max(philotes_cdc_lag_seconds)', operator: 'gt', threshold: 60, duration: '5m', scale_by: 2 }],
  scale_down_rules: [{ metric: 'max(philotes_cdc_lag_seconds)', operator: 'lt', threshold: 10, duration: '10m', scale_by: -1 }],
  schedules: [{ cron_expression: '0 8 * * 1-5', timezone: 'Europe/Budapest', desired_replicas: 5 }],
};

/** A small deterministic generator, so the picture is the same on every run. */
function noise(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Piecewise-linear lag in seconds by minute of the day (UTC), plus jitter. */
const DAY_SHAPE: Array<[number, number]> = [
  [0, 4],
  [7 * 60, 5],
  [7 * 60 + 20, 22],
  [8 * 60 + 30, 30],
  [8 * 60 + 45, 150],
  [9 * 60 + 30, 140],
  [10 * 60, 6],
  [12 * 60, 6],
  [13 * 60 + 58, 30],
  [14 * 60, 95],
  [14 * 60 + 2, 95],
  [14 * 60 + 4, 28],
  [15 * 60, 35],
  [16 * 60 + 30, 40],
  [17 * 60, 5],
  [24 * 60, 4],
];

function lagAt(minuteOfDay: number): number {
  for (let i = 1; i < DAY_SHAPE.length; i++) {
    const [m1, v1] = DAY_SHAPE[i] as [number, number];
    const [m0, v0] = DAY_SHAPE[i - 1] as [number, number];
    if (minuteOfDay <= m1) return v0 + ((v1 - v0) * (minuteOfDay - m0)) / (m1 - m0);
  }
  return 4;
}

const month = process.argv.includes('--month');
const outFile = process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 'backtest-sample.svg';
const from = new Date(month ? '2026-01-01T00:00:00Z' : '2026-01-05T06:00:00Z');
const to = new Date(month ? '2026-01-31T00:00:00Z' : '2026-01-05T18:00:00Z');
const policy = normalizePolicy(INPUT, { id: '00000000-0000-4000-8000-0000000000c1', source: 'policies/cdc-worker.yaml', now: from });

// One series per distinct query, on the replay's grid from `from - longest window` to `to`.
const rand = noise(7);
const samples: Sample[] = [];
const start = from.getTime() / 1000 - 600;
for (let t = start; t <= to.getTime() / 1000; t += STEP) {
  const minute = Math.floor((t % 86_400) / 60);
  const day = Math.floor(t / 86_400);
  // Missing history: 12:30-12:55 in the sample day; in the month, one such gap every ninth day.
  if (minute >= 12 * 60 + 30 && minute < 12 * 60 + 55 && (!month || day % 9 === 0)) continue;
  const weekend = [0, 6].includes(new Date(t * 1000).getUTCDay());
  const base = weekend ? Math.min(lagAt(minute), 25) : lagAt(minute);
  samples.push({ t, v: Math.round((base * (0.9 + 0.2 * rand()) + rand() * 2) * 10) / 10 });
}
const series = new Map<string, Sample[]>();
for (const rule of [...policy.scale_up_rules, ...policy.scale_down_rules]) series.set(observationKey(rule, DEFAULT_SOURCE), samples);

const result = await replay({
  policy,
  from,
  to,
  intervalSeconds: STEP,
  initialReplicas: 2,
  defaultCooldown: 300,
  defaultSource: DEFAULT_SOURCE,
  price: policy.cost_per_replica_hour,
  series,
});
const svg = renderBacktestSvg(policy, result);
writeFileSync(outFile, svg);
console.log(`${outFile}: ${result.timeline.length} evaluations, ${svg.length} bytes`);
console.log(JSON.stringify(result.summary.actions));
