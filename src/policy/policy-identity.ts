import type { Policy, PolicyInput } from './policy-model.js';
import { DEFAULT_TRACKING_SCALE_DOWN_STABILIZATION } from './policy-normalize.js';

/*
 * What makes a stored policy, rule or schedule "the same" across a replacement (PUT, PATCH, a
 * policy file read again). Content is every stored field as normalised (durations in seconds,
 * defaults applied), without ids, times, source or pause. So a rule written "5m" one time and
 * `duration_seconds: 300` the next is unchanged, while a rule whose threshold moved is a new rule.
 * Fields are not listed here one by one: a field the schema gains is content too.
 */

/** Fields of a stored policy that are not its content: assigned by the server, or runtime state. */
const SERVER_FIELDS: ReadonlySet<string> = new Set(['id', 'created_at', 'updated_at', 'source', 'paused_at', 'paused_reason']);

/** JSON with object keys sorted, so that two equal values always give the same text. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

interface Item {
  id: string;
}

/** A list of items with server-assigned ids: rules, schedules, and any such list the schema gains. */
const isItemList = (v: unknown): v is Item[] =>
  Array.isArray(v) && v.every((x) => typeof x === 'object' && x !== null && typeof (x as { id?: unknown }).id === 'string');

function withoutId(item: Item): Record<string, unknown> {
  const { id: _id, ...rest } = item;
  return rest;
}

/** The policy's content: its fields without the server's, and its items without their ids. */
function content(p: Policy): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(p)) {
    if (!SERVER_FIELDS.has(key)) out[key] = isItemList(value) ? value.map(withoutId) : value;
  }
  return out;
}

const itemContent = (item: Item): string => canonical(withoutId(item));

/**
 * Gives each item of `next` the id of an unchanged item of `previous` (same content): the one at
 * the same position when it is unchanged, else the first unchanged one not yet taken. Each
 * previous id goes to at most one item, so of several identical items, as many keep ids as there
 * were before, in order; every other item keeps the new id it was given.
 */
function carryIds<T extends Item>(previous: readonly T[], next: readonly T[]): T[] {
  const before = previous.map(itemContent);
  const after = next.map(itemContent);
  const taken = new Set<number>();
  const ids: Array<string | undefined> = after.map((key, i) => {
    if (before[i] === undefined || before[i] !== key) return undefined;
    taken.add(i);
    return previous[i]?.id;
  });
  return next.map((item, i) => {
    let id = ids[i];
    if (id === undefined) {
      const j = before.findIndex((key, at) => !taken.has(at) && key === after[i]);
      if (j >= 0) {
        taken.add(j);
        id = previous[j]?.id;
      }
    }
    return id === undefined || id === item.id ? item : { ...item, id };
  });
}

/**
 * `next` (a replacement of `previous`) with the ids of its unchanged rules and schedules (and
 * items of any other list with ids) taken from `previous`, each matched within its own list, so
 * rules within their direction. `unchanged` is true when its content is that of `previous`:
 * storing it would change nothing but ids and times.
 */
export function keepIdentity(previous: Policy, next: Policy): { policy: Policy; unchanged: boolean } {
  const before = previous as unknown as Record<string, unknown>;
  const policy: Record<string, unknown> = { ...next };
  for (const [key, value] of Object.entries(next)) {
    const old = before[key];
    if (isItemList(value) && isItemList(old)) policy[key] = carryIds(old, value);
  }
  return { policy: policy as unknown as Policy, unchanged: canonical(content(previous)) === canonical(content(next)) };
}

/** Duration fields given either as text or in seconds: `<name>` and `<name>_seconds`. */
const SECONDS = '_seconds';

/**
 * Drops from `base` the other form of every duration the patch sets (`period` when the patch sets
 * `period_seconds`, and the reverse), at every depth the patch reaches, so a patch may give a
 * duration in either form without conflicting with the stored one; likewise a direction's match
 * when the patch sets its condition tree, and the reverse (see EXCLUSIVE).
 */
function dropCounterparts(base: Record<string, unknown>, patch: Record<string, unknown>, top = true): void {
  for (const [key, value] of Object.entries(patch)) {
    const other = (top ? EXCLUSIVE[key] : undefined) ?? (key.endsWith(SECONDS) ? key.slice(0, -SECONDS.length) : `${key}${SECONDS}`);
    if (value !== null && Object.hasOwn(base, other)) delete base[other];
    const inner = base[key];
    if (isPlainObject(value) && isPlainObject(inner)) dropCounterparts(inner, value, false);
  }
}

/**
 * Top-level fields that exclude each other: a patch that gives a direction a condition tree
 * replaces its match, and a patch that sets a match replaces its tree.
 */
const EXCLUSIVE: Record<string, string> = {
  scale_up_when: 'scale_up_match',
  scale_up_match: 'scale_up_when',
  scale_down_when: 'scale_down_match',
  scale_down_match: 'scale_down_when',
};

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * The stored behaviour as a request would give it: windows and periods as text only, and what
 * equals the default left out, so that a patch that adds or removes target tracking moves a
 * default window with it (5m with target tracking, else none) as a new policy would get it.
 */
function behaviorInputOf(p: Policy): Record<string, unknown> | undefined {
  const b = p.behavior;
  const out: Record<string, unknown> = {};
  const tracks = p.target_tracking.length > 0;
  if (b.scale_down_stabilization_seconds !== (tracks ? DEFAULT_TRACKING_SCALE_DOWN_STABILIZATION : 0)) out.scale_down_stabilization = b.scale_down_stabilization;
  if (b.scale_up_stabilization_seconds !== 0) out.scale_up_stabilization = b.scale_up_stabilization;
  for (const key of ['scale_up_limit', 'scale_down_limit'] as const) {
    const l = b[key];
    if (l !== null) {
      const { period_seconds: _s, ...rest } = l;
      out[key] = rest;
    }
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * A stored policy as a request body that would store it again: what a merge patch applies to.
 * Its content only (no ids, times, source or pause), with `cooldown_seconds` keeping its stored
 * null ("the config's default") rather than the effective value answers show. Rules and
 * schedules carry durations in both forms (a patch replaces a list whole); the behaviour is
 * given as behaviorInputOf() says. With `patch`, the other form of each duration the patch sets
 * is left out.
 */
export function policyInputOf(p: Policy, patch?: Record<string, unknown>): PolicyInput {
  // A deep copy: the patch is applied to it, and nothing of it may alias the stored policy.
  const out = JSON.parse(JSON.stringify(content(p))) as Record<string, unknown>;
  const behavior = behaviorInputOf(p);
  if (behavior === undefined) delete out.behavior;
  else out.behavior = behavior;
  if (patch !== undefined) dropCounterparts(out, patch);
  return out as unknown as PolicyInput;
}
