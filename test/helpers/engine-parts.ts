/**
 * Parts shared by the unit tests of the loop's modules (test/engine-*.test.ts): policies made by
 * the real normalizer, decision inputs as the manager makes them, observations covering a rule's
 * window, an in-process metric source and executor (wrapped in the real Isolated* classes by the
 * tests), and a logger whose lines the test can read.
 */
import { pino, type Logger } from 'pino';
import { explain, type Assessment, type DecisionInput } from '../../src/engine/decide.js';
import { EMPTY_MEMORY, type EngineMemory, type Observation } from '../../src/engine/decision.js';
import { applyExecution } from '../../src/engine/execution.js';
import { STATE_KEYS } from '../../src/engine/known-state.js';
import { observationKey, queriedBy, ruleWindow, verdictMemo } from '../../src/engine/rule-window.js';
import type { Executor, MetricSource, Sample, ScaleTarget } from '../../src/plugins/api.js';
import type { Policy, PolicyInput } from '../../src/policy/policy-model.js';
import { normalizePolicy } from '../../src/policy/policy-normalize.js';
import type { PolicyState } from '../../src/storage/storage.js';

export const INTERVAL = 30;
export const DEFAULT_SOURCE = 'prometheus';
export const DEFAULT_COOLDOWN = 300;
export const CREATED = new Date('2026-01-01T00:00:00Z');

/** A stored policy as the API would make it (cdc-worker, 1..10 replicas unless given). */
export function policyOf(input: Partial<PolicyInput> & { name: string }, id?: string): Policy {
  return normalizePolicy({ target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10, ...input } as PolicyInput, { source: 'api', now: CREATED, ...(id !== undefined ? { id } : {}) });
}

export const rule = (metric: string, operator: 'gt' | 'gte' | 'lt' | 'lte' | 'eq' | 'ne', threshold: number, scale_by: number, duration = '1m') => ({ metric, operator, threshold, duration, scale_by });

/** The input the manager gives decide() for a loop evaluation (see ScalingManager.#input). */
export function inputOf(policy: Policy, now: Date, observations: ReadonlyMap<string, Observation>, executorReplicas: number | null, memory: EngineMemory = EMPTY_MEMORY, requestDryRun = false): DecisionInput {
  return {
    policy,
    now,
    intervalSeconds: INTERVAL,
    defaultCooldown: DEFAULT_COOLDOWN,
    defaultSource: DEFAULT_SOURCE,
    price: policy.cost_per_replica_hour,
    executorReplicas,
    memory,
    observations,
    dryRun: { request: requestDryRun, global: false },
  };
}

export type Value = number | 'fail';

/**
 * One observation per distinct query of the policies, each a constant value over the query's
 * whole window (or a failed query), with a verdict memo as the loop's observations have.
 */
export function observationsFor(policies: readonly Policy[], now: Date, values: Readonly<Record<string, Value>>, memo = true): Map<string, Observation> {
  const out = new Map<string, Observation>();
  for (const p of policies) {
    for (const r of queriedBy(p)) {
      const key = observationKey(r, DEFAULT_SOURCE);
      if (out.has(key)) continue;
      out.set(key, observationOf(r, now, values[r.metric] ?? 'fail', memo));
    }
  }
  return out;
}

export function observationOf(r: { duration_seconds: number }, now: Date, v: Value, memo = true): Observation {
  if (v === 'fail') return { samples: [], error: { kind: 'empty', message: 'no data' } };
  const win = ruleWindow(r, now, INTERVAL);
  const samples: Sample[] = [];
  for (let ms = win.startMs; ms <= win.endMs; ms += Math.max(1, win.stepMs)) {
    samples.push({ t: ms / 1000, v });
    if (win.stepMs === 0) break;
  }
  return memo ? { samples, verdicts: verdictMemo() } : { samples };
}

/** Copies of observations without their verdict memos: what a decision from scratch reads. */
export function fresh(observations: ReadonlyMap<string, Observation>): Map<string, Observation> {
  const out = new Map<string, Observation>();
  for (const [k, o] of observations) out.set(k, o.error !== undefined ? { samples: [], error: { ...o.error } } : { samples: o.samples.map((s) => ({ ...s })) });
  return out;
}

/** A metric source answering a constant per query (or failing with the given kind), counting requests. */
export function constantSource(values: Record<string, Value>, opts: { range?: boolean; failKind?: string } = {}): MetricSource & { requests: Array<{ query: string; range: boolean; start?: Date; end?: Date; step?: number; time?: Date }> } {
  const requests: Array<{ query: string; range: boolean; start?: Date; end?: Date; step?: number; time?: Date }> = [];
  const answer = (query: string): number => {
    const v = values[query];
    if (v === undefined || v === 'fail') throw Object.assign(new Error(`no data for ${query}`), { kind: opts.failKind ?? 'empty' });
    return v;
  };
  const s: MetricSource & { requests: typeof requests } = {
    requests,
    async instantQuery(q) {
      requests.push({ query: q.query, range: false, time: q.time });
      return { t: q.time.getTime() / 1000, v: answer(q.query) };
    },
  };
  if (opts.range !== false) {
    s.rangeQuery = async (q) => {
      requests.push({ query: q.query, range: true, start: q.start, end: q.end, step: q.stepSeconds });
      const v = answer(q.query);
      const out: Sample[] = [];
      for (let ms = q.start.getTime(); ms <= q.end.getTime(); ms += q.stepSeconds * 1000) out.push({ t: ms / 1000, v });
      return out;
    };
  }
  return s;
}

/** An executor keeping replicas by policy name; answering for many targets at once unless `many` is false. */
export function memoryExecutor(opts: { many?: boolean; failMany?: boolean } = {}): Executor & { replicas: Map<string, number>; scaled: Array<{ name: string; n: number; dryRun: boolean }>; manyCalls: ScaleTarget[][] } {
  const replicas = new Map<string, number>();
  const scaled: Array<{ name: string; n: number; dryRun: boolean }> = [];
  const manyCalls: ScaleTarget[][] = [];
  const e: Executor & { replicas: typeof replicas; scaled: typeof scaled; manyCalls: typeof manyCalls } = {
    replicas,
    scaled,
    manyCalls,
    targetTypes: ['cdc-worker'],
    async getCurrentReplicas(target) {
      return replicas.get(target.policyName) ?? null;
    },
    async scale(target, n, { dryRun }) {
      scaled.push({ name: target.policyName, n, dryRun });
      if (!dryRun) replicas.set(target.policyName, n);
    },
  };
  if (opts.many !== false) {
    e.getCurrentReplicasMany = async (targets) => {
      manyCalls.push([...targets]);
      if (opts.failMany === true) throw new Error('the cluster API is down');
      return new Map(targets.map((x) => [x.policyId, replicas.get(x.policyName) ?? null]));
    };
  }
  return e;
}

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** A pino logger at info whose lines land in `lines`. */
export function capturingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino(
    { level: 'info' },
    {
      write(chunk: string) {
        for (const line of chunk.split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as LogLine);
      },
    },
  );
  return { logger, lines };
}

export const silent = pino({ level: 'silent' });

/**
 * The state an evaluation leaves behind, built as evaluate() builds it (see its saveState): the
 * memory after the assessment (and after a successful real change, when it made one), the
 * decision record, `kind` the kind of the last executed change.
 */
export function stateAfter(input: DecisionInput, a: Assessment, version: number, kind: string | null = null): PolicyState {
  const record = explain(input, a);
  const m = a.action !== 'none' ? applyExecution(a.memory, record, input.now, { succeeded: true }) : a.memory;
  const changed = a.action !== 'none' && !record.dry_run;
  return {
    policy_id: input.policy.id,
    current_replicas: m.current_replicas,
    last_change_at: m.last_change_at,
    last_change_kind: changed ? a.action : kind,
    consecutive_failures: m.consecutive_failures,
    last_blocked: m.last_blocked,
    data: {
      [STATE_KEYS.memory]: { one_shots: m.one_shots, ...(m.proposals !== undefined ? { proposals: m.proposals } : {}), ...(m.changes !== undefined ? { changes: m.changes } : {}) },
      [STATE_KEYS.lastDecision]: record,
    },
    updated_at: input.now.toISOString(),
    version,
  };
}
