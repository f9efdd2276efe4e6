import type { PolicyInput } from '../src/policy/policy-model.js';

/** Distinct queries the benchmark policies share. */
export const QUERIES = 200;

/** The i-th distinct query. */
export const query = (i: number): string => `max(philotes_bench_lag_seconds{series="s${i}"})`;

/**
 * The i-th benchmark policy: 2 up rules and 1 down rule over three of the distinct queries. With
 * `tracking`, a target-tracking policy instead: one target_value entry over one of the same
 * queries (1-minute average) and the down rule. Its target is far above the exporter's values, so
 * the opinion is min_replicas (nothing scales) while every evaluation computes it: such a policy
 * is never repeated quietly.
 */
export function benchPolicy(i: number, opts: { tracking?: boolean; tree?: boolean } = {}): PolicyInput {
  if (opts.tree === true) {
    // The same rules, named and combined by condition trees: scale up when both hold, or when the
    // second holds and the first does not; scale down as the flat policy does. With the
    // exporter's quiet values neither tree holds, as the flat policy's rules do not.
    const flat = benchPolicy(i);
    const [a, b] = flat.scale_up_rules ?? [];
    const [d] = flat.scale_down_rules ?? [];
    return {
      ...flat,
      scale_up_rules: [{ ...a!, name: 'lag_a' }, { ...b!, name: 'lag_b' }],
      scale_down_rules: [{ ...d!, name: 'idle' }],
      scale_up_when: { any: [{ all: ['lag_a', 'lag_b'] }, { all: ['lag_b', { not: 'lag_a' }] }] },
      scale_down_when: { all: ['idle'] },
    };
  }
  if (opts.tracking === true) {
    return {
      name: `bench-${i}`,
      target_type: 'cdc-worker',
      min_replicas: 1,
      max_replicas: 10,
      target_tracking: [{ metric: query(i % QUERIES), target_value: 1000, duration: '1m' }],
      scale_down_rules: [{ metric: query((i + 2) % QUERIES), operator: 'lt', threshold: 5, duration: '1m', scale_by: -1 }],
    };
  }
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
