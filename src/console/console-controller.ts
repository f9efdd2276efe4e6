/**
 * The read routes the web console is built on, public like the rest of the API:
 * GET /overview (every policy with its engine state, searched, filtered and paged on the server)
 * and GET /cost (replica-hours and cost per policy over a range, from the recorded changes).
 */
import type { Router } from '@koa/router';
import { parseQuery, timeRange } from '../api/query.js';
import { engineFields } from '../engine/engine-controller.js';
import { ScalingManager } from '../engine/manager.js';
import { nextFires } from '../engine/schedule-clock.js';
import { API_SOURCE, type Policy } from '../policy/policy-model.js';
import type { PolicyState, Storage } from '../storage/storage.js';

export const OVERVIEW_QUERY = {
  limit: { type: 'int', min: 1, max: 1000 },
  offset: { type: 'int', min: 0, max: Number.MAX_SAFE_INTEGER },
  q: { type: 'string', maxLength: 253 },
  enabled: { type: 'bool' },
  dry_run: { type: 'bool' },
  paused: { type: 'bool' },
  source: { type: 'enum', values: ['api', 'file'] },
  target_type: { type: 'string', maxLength: 63 },
} as const;

export const COST_QUERY = {
  ...OVERVIEW_QUERY,
  since: { type: 'time' },
  until: { type: 'time' },
  sort: { type: 'enum', values: ['cost', 'replica_hours', 'name'] },
} as const;

/** The longest range GET /cost sums over. */
export const MAX_COST_RANGE_DAYS = 31;

export interface ConsoleDeps {
  storage: Storage;
  manager: ScalingManager;
  defaultCooldown: number;
  now?: () => Date;
}

type Filters = { q?: string; enabled?: boolean; dry_run?: boolean; paused?: boolean; source?: string; target_type?: string };

/**
 * Every policy, held until the policies change: the revision query that tells is one row, so a
 * console paging through 10,000 policies reads them from the database once; after a change, only
 * the policies whose version moved are read again.
 */
class PolicySnapshot {
  #revision: string | undefined;
  #byId = new Map<string, { version: string; policy: Policy }>();
  #sorted: Policy[] = [];
  #loading: { revision: string; done: Promise<Policy[]> } | undefined;

  constructor(private readonly storage: Storage) {}

  async all(): Promise<Policy[]> {
    const revision = await this.storage.policiesRevision();
    if (revision === this.#revision) return this.#sorted;
    if (this.#loading !== undefined) {
      // A load begun at another revision may miss a change this caller has seen: wait, then look again.
      if (this.#loading.revision === revision) return this.#loading.done;
      await this.#loading.done.catch(() => undefined);
      return this.all();
    }
    const done = (async () => {
      try {
        const versions = await this.storage.listPolicyVersions();
        const stale = versions.filter((v) => this.#byId.get(v.id)?.version !== v.version);
        const fresh = await this.storage.getPolicies(stale.map((v) => v.id));
        const found = new Map(fresh.map((p) => [p.id, p]));
        const next = new Map<string, { version: string; policy: Policy }>();
        for (const v of versions) {
          const policy = found.get(v.id) ?? this.#byId.get(v.id)?.policy;
          // Deleted between the two reads: left out until the next change.
          if (policy !== undefined) next.set(v.id, { version: v.version, policy });
        }
        this.#byId = next;
        this.#sorted = [...next.values()].map((e) => e.policy).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
        this.#revision = revision;
        return this.#sorted;
      } finally {
        this.#loading = undefined;
      }
    })();
    this.#loading = { revision, done };
    return done;
  }
}

function matches(p: Policy, f: Filters): boolean {
  if (f.enabled !== undefined && p.enabled !== f.enabled) return false;
  if (f.dry_run !== undefined && p.dry_run !== f.dry_run) return false;
  if (f.paused !== undefined && (p.paused_at !== null) !== f.paused) return false;
  if (f.source !== undefined && (p.source === API_SOURCE) !== (f.source === 'api')) return false;
  if (f.target_type !== undefined && p.target_type !== f.target_type) return false;
  if (f.q !== undefined && f.q !== '') {
    const q = f.q.toLowerCase();
    // The source is searched when it is a file's path ("api" would match every API policy).
    const hay = [p.name, p.target_id ?? '', p.target_type, p.description ?? '', p.source === API_SOURCE ? '' : p.source];
    if (!hay.some((s) => s.toLowerCase().includes(q))) return false;
  }
  return true;
}

/** Counts over every policy, for the console's filter choices. */
function facets(all: readonly Policy[]): Record<string, unknown> {
  const targetTypes: Record<string, number> = {};
  let enabled = 0;
  let dryRun = 0;
  let paused = 0;
  let files = 0;
  for (const p of all) {
    targetTypes[p.target_type] = (targetTypes[p.target_type] ?? 0) + 1;
    if (p.enabled) enabled++;
    if (p.dry_run) dryRun++;
    if (p.paused_at !== null) paused++;
    if (p.source !== API_SOURCE) files++;
  }
  return { policies: all.length, enabled, disabled: all.length - enabled, dry_run: dryRun, paused, file: files, api: all.length - files, target_types: targetTypes };
}

export function registerConsoleRoutes(router: Router, deps: ConsoleDeps): void {
  const snapshot = new PolicySnapshot(deps.storage);
  const now = (): Date => deps.now?.() ?? new Date();

  router.get('/overview', async (ctx) => {
    const q = parseQuery(ctx.query, OVERVIEW_QUERY);
    const all = await snapshot.all();
    const matched = all.filter((p) => matches(p, q));
    const offset = q.offset ?? 0;
    const page = matched.slice(offset, offset + (q.limit ?? 100));
    const stored = await deps.storage.getStates(page.map((p) => p.id));
    const at = now();
    const rows = [];
    for (const p of page) {
      // The leader's own memory is fresher than storage (steady repeats are not written).
      const state = (await deps.manager.knownState(p.id)) ?? stored.get(p.id);
      rows.push(overviewRow(p, state, at, deps));
    }
    ctx.body = { policies: rows, total_count: matched.length, facets: facets(all) };
  });

  router.get('/cost', async (ctx) => {
    const q = parseQuery(ctx.query, COST_QUERY);
    const at = now();
    const range = timeRange(q, { now: at.getTime(), defaultSeconds: 86_400, maxDays: MAX_COST_RANGE_DAYS });
    const since = new Date(range.since);
    const until = new Date(range.until);
    const all = await snapshot.all();
    const matched = all.filter((p) => matches(p, q));
    const { changes: recorded, before } = await deps.storage.replicaChanges(matched.map((p) => p.id), since.toISOString(), until.toISOString());
    const changes = new Map<string, Array<{ at: number; from: number; to: number }>>();
    for (const c of recorded) {
      let list = changes.get(c.policy_id);
      if (list === undefined) changes.set(c.policy_id, (list = []));
      list.push({ at: Date.parse(c.executed_at), from: c.previous_replicas, to: c.new_replicas });
    }
    // Policies with no change recorded at all ran the count they run now.
    const states = await deps.storage.getStates(matched.filter((p) => !changes.has(p.id) && !before.has(p.id)).map((p) => p.id));
    const rows = matched.map((p) => {
      const price = deps.manager.priceFor(p);
      const list = changes.get(p.id) ?? [];
      // Counted from the policy's creation, or from its first recorded change when that is earlier
      // (a policy file that was renamed keeps its history): from the range's start with a change before it.
      const from = before.has(p.id) ? since.getTime() : Math.max(since.getTime(), Math.min(Date.parse(p.created_at), list[0]?.at ?? Infinity));
      const hours = replicaHours(list, before.get(p.id) ?? null, states.get(p.id)?.current_replicas ?? null, from, until.getTime());
      return {
        policy_id: p.id,
        policy_name: p.name,
        target_type: p.target_type,
        target_id: p.target_id,
        price_per_replica_hour: price,
        replica_hours: hours.replicaHours,
        average_replicas: hours.average,
        changes: hours.changes,
        cost: hours.replicaHours === null || price === null ? null : round(hours.replicaHours * price),
      };
    });
    const sort = q.sort ?? 'cost';
    const key = (r: (typeof rows)[number]): number => (sort === 'cost' ? (r.cost ?? -1) : (r.replica_hours ?? -1));
    rows.sort(sort === 'name' ? (a, b) => (a.policy_name < b.policy_name ? -1 : 1) : (a, b) => key(b) - key(a) || (a.policy_name < b.policy_name ? -1 : 1));
    const offset = q.offset ?? 0;
    ctx.body = {
      since: since.toISOString(),
      until: until.toISOString(),
      totals: {
        replica_hours: round(rows.reduce((s, r) => s + (r.replica_hours ?? 0), 0)),
        cost: round(rows.reduce((s, r) => s + (r.cost ?? 0), 0)),
        unpriced_policies: rows.filter((r) => r.price_per_replica_hour === null).length,
        unknown_policies: rows.filter((r) => r.replica_hours === null).length,
      },
      policies: rows.slice(offset, offset + (q.limit ?? 100)),
      total_count: rows.length,
    };
  });
}

const round = (n: number): number => Math.round(n * 1000) / 1000;

/**
 * Replica-hours of one policy over [start, end), from its changes in the range (oldest first):
 * the count at the start is what the last change before it set (`before`, when it was before the
 * range), else the first change's previous count, else the count it runs now (`current`);
 * unknown (null) when none is known.
 */
export function replicaHours(
  changes: ReadonlyArray<{ at: number; from: number; to: number }>,
  before: number | null,
  current: number | null,
  start: number,
  end: number,
): { replicaHours: number | null; average: number | null; changes: number } {
  if (end <= start) return { replicaHours: 0, average: null, changes: 0 };
  let value: number | null = null;
  let i = 0;
  // Changes before the start only tell the count at the start.
  while (i < changes.length && (changes[i] as { at: number }).at <= start) value = (changes[i++] as { to: number }).to;
  value ??= before ?? changes[i]?.from ?? current;
  if (value === null) return { replicaHours: null, average: null, changes: 0 };
  let t = start;
  let sum = 0;
  for (; i < changes.length; i++) {
    const c = changes[i] as { at: number; from: number; to: number };
    if (c.at >= end) break;
    sum += value * (c.at - t);
    t = c.at;
    value = c.to;
  }
  sum += value * (end - t);
  const counted = changes.filter((c) => c.at >= start && c.at < end).length;
  return { replicaHours: round(sum / 3600_000), average: round(sum / (end - start)), changes: counted };
}

function overviewRow(p: Policy, state: PolicyState | undefined, now: Date, deps: ConsoleDeps): Record<string, unknown> {
  const decision = ScalingManager.lastDecision(state);
  let nextFire: string | null = null;
  for (const s of p.schedules) {
    if (!s.enabled) continue;
    const at = nextFires(s, now, 1)[0];
    if (at !== undefined && (nextFire === null || at.toISOString() < nextFire)) nextFire = at.toISOString();
  }
  return {
    id: p.id,
    name: p.name,
    description: p.description,
    target_type: p.target_type,
    target_id: p.target_id,
    source: p.source,
    enabled: p.enabled,
    dry_run: p.dry_run,
    paused: p.paused_at !== null,
    paused_reason: p.paused_reason,
    min_replicas: p.min_replicas,
    max_replicas: p.max_replicas,
    ...engineFields(p, state, now, deps),
    desired_replicas: decision?.desired_replicas ?? null,
    last_decision: decision === null ? null : { action: decision.action, reason_code: decision.reason_code, reason: decision.reason, evaluated_at: decision.evaluated_at, should_scale: decision.should_scale },
    next_schedule_fire: nextFire,
  };
}
