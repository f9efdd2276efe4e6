import { Engine } from 'json-rules-engine';
import type { Policy } from '../policy/policy-model.js';

/**
 * Each direction's rules compiled into one json-rules-engine rule (`all`, or `any` when the
 * policy says so), whose facts are the per-rule verdicts. The answer depends only on the verdict
 * vector, so it is memoised per vector: the live loop and a month-long backtest pay for the rules
 * engine at most 2^n times per policy version instead of once per step.
 */
export class DirectionCombiner {
  readonly #engine: Engine;
  readonly #memo = new Map<string, { up: boolean; down: boolean }>();
  readonly #upCount: number;
  readonly #downCount: number;

  constructor(policy: Pick<Policy, 'scale_up_rules' | 'scale_down_rules' | 'scale_up_match' | 'scale_down_match'>) {
    this.#engine = new Engine([], { allowUndefinedFacts: false });
    this.#upCount = policy.scale_up_rules.length;
    this.#downCount = policy.scale_down_rules.length;
    const conditions = (prefix: string, n: number) =>
      Array.from({ length: n }, (_, i) => ({ fact: `${prefix}${i}`, operator: 'equal', value: true }));
    // A direction without rules never holds (an empty `all` would be vacuously true).
    if (this.#upCount > 0) {
      const c = conditions('up', this.#upCount);
      this.#engine.addRule({
        name: 'scale_up',
        conditions: policy.scale_up_match === 'any' ? { any: c } : { all: c },
        event: { type: 'scale_up' },
      });
    }
    if (this.#downCount > 0) {
      const c = conditions('down', this.#downCount);
      this.#engine.addRule({
        name: 'scale_down',
        conditions: policy.scale_down_match === 'any' ? { any: c } : { all: c },
        event: { type: 'scale_down' },
      });
    }
  }

  /** The memoised answer for this verdict vector, without a promise; undefined the first time. */
  peek(up: readonly boolean[], down: readonly boolean[]): { up: boolean; down: boolean } | undefined {
    return this.#memo.get(DirectionCombiner.#key(up, down));
  }

  static #key(up: readonly boolean[], down: readonly boolean[]): string {
    let k = '';
    for (const v of up) k += v ? '1' : '0';
    k += '|';
    for (const v of down) k += v ? '1' : '0';
    return k;
  }

  async combine(up: readonly boolean[], down: readonly boolean[]): Promise<{ up: boolean; down: boolean }> {
    const key = DirectionCombiner.#key(up, down);
    const hit = this.#memo.get(key);
    if (hit !== undefined) return hit;
    const facts: Record<string, boolean> = {};
    up.forEach((v, i) => (facts[`up${i}`] = v));
    down.forEach((v, i) => (facts[`down${i}`] = v));
    const { events } = await this.#engine.run(facts);
    const result = { up: events.some((e) => e.type === 'scale_up'), down: events.some((e) => e.type === 'scale_down') };
    this.#memo.set(key, result);
    return result;
  }
}

const compiled = new Map<string, DirectionCombiner>();
// Replays pass the same policy object at every step: a by-object cache skips building the key.
const byObject = new WeakMap<Policy, DirectionCombiner>();

/**
 * The combiner for a policy. Its rules engine depends only on the policy's shape (how many rules
 * each direction has and how they match), so policies of one shape share one: 10,000 policies
 * need a handful of engines, not 10,000.
 */
export function combinerFor(policy: Policy): DirectionCombiner {
  const hit = byObject.get(policy);
  if (hit !== undefined) return hit;
  const key = `${policy.scale_up_match}:${policy.scale_up_rules.length}|${policy.scale_down_match}:${policy.scale_down_rules.length}`;
  let c = compiled.get(key);
  if (c === undefined) {
    c = new DirectionCombiner(policy);
    if (compiled.size > 50_000) compiled.clear();
    compiled.set(key, c);
  }
  byObject.set(policy, c);
  return c;
}
