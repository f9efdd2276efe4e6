import type { PolicyInput } from '../src/policy/policy-model.js';

/** Distinct queries the benchmark policies share. */
export const QUERIES = 200;

/** The i-th distinct query. */
export const query = (i: number): string => `max(philotes_bench_lag_seconds{series="s${i}"})`;

/** The i-th benchmark policy: 2 up rules and 1 down rule over three of the distinct queries. */
export function benchPolicy(i: number): PolicyInput {
  return {
    name: `bench-${i}`,
    target_type: 'cdc-worker',
    min_replicas: 1,
    max_replicas: 10,
    scale_up_rules: [
      { metric: query(i % QUERIES), operator: 'gt', threshold: 60, duration: '1m', scale_by: 2 },
      { metric: query((i + 1) % QUERIES), operator: 'gt', threshold: 60, duration: '1m', scale_by: 1 },
    ],
    scale_down_rules: [{ metric: query((i + 2) % QUERIES), operator: 'lt', threshold: 5, duration: '1m', scale_by: -1 }],
  };
}
