import type { Policy, PolicyPause } from '../policy/policy-model.js';
import type { LeaderLock } from './sql-driver.js';

export type { LeaderLock };

export type HistoryAction = 'scale_up' | 'scale_down' | 'scheduled' | 'fallback' | 'none';
export type TriggeredBy = 'rule' | 'schedule' | 'fallback' | 'api';
export type HistoryStatus = 'succeeded' | 'failed' | 'blocked';

/** One row of the append-only audit trail. */
export interface HistoryRow {
  id: string;
  policy_id: string | null;
  policy_name: string;
  action: HistoryAction;
  target_type: string;
  target_id: string | null;
  previous_replicas: number;
  new_replicas: number;
  reason: string;
  reason_code: string | null;
  triggered_by: TriggeredBy;
  dry_run: boolean;
  status: HistoryStatus;
  error: string | null;
  executed_at: string;
  /** The decision record that led to this row. */
  details: Record<string, unknown> | null;
}

/** A replica count the daemon changed and recorded: a succeeded, real (not dry-run) history row. */
export interface ReplicaChange {
  policy_id: string;
  executed_at: string;
  previous_replicas: number;
  new_replicas: number;
}

/** A change as the loop records it: the history row of what was done and the state after it. */
export interface RecordedChange {
  row: HistoryRow | null;
  state: PolicyState;
}

/** The engine's persisted memory of a policy: what survives a restart. */
export interface PolicyState {
  policy_id: string;
  current_replicas: number | null;
  /** Time and kind of the last executed (not dry-run, not failed) change; cooldown counts from it. */
  last_change_at: string | null;
  last_change_kind: string | null;
  consecutive_failures: number;
  /** Reason code of the last `blocked` history row, so it is not repeated while it persists. */
  last_blocked: string | null;
  /** Free-form engine memory (last decision, one-shot schedule marks, observations of sources without range queries). */
  data: Record<string, unknown>;
  updated_at: string;
  /**
   * The stored row's version: 0 when the policy has no stored state. Every write is a
   * compare-and-set on it (see putState) and moves it by one.
   */
  version: number;
}

/**
 * Proof of leadership carried by the loop's state writes (see LeaderLock.fence): on PostgreSQL the
 * write also requires, in the same statement, that the lock session it names still holds the
 * leader lock.
 */
export type LeaderFence = number;

export interface PolicyListQuery {
  limit: number;
  offset: number;
  enabled?: boolean;
  target_type?: string;
  source?: string;
}

export interface HistoryQuery {
  limit: number;
  /** Opaque cursor from a previous page's next_cursor. */
  cursor?: string;
  policy_id?: string;
  /**
   * With policy_id: rows only while that policy exists (a deleted policy's rows make an empty
   * page), checked in the page's own statement.
   */
  policy_exists?: boolean;
  /** Rows recorded under this policy name (a deleted policy's rows keep it). */
  policy_name?: string;
  action?: HistoryAction;
  status?: HistoryStatus;
  since?: string;
  until?: string;
  dry_run?: boolean;
}

/**
 * One page of history as the API answers it: each row's JSON object as text (the HistoryRow,
 * `details` included), newest first, ready to be joined into `{"history": [...]}` unparsed.
 */
export interface HistoryJsonPage {
  /** The page's row ids, newest first. */
  ids: string[];
  /**
   * Each row's JSON text (as a string, or as its UTF-8 bytes where the backend reads them so), in
   * the order of `ids`; undefined for a row the caller said it knows.
   */
  rows: Array<string | Buffer | undefined>;
  next_cursor: string | null;
}

export interface MigrationStatus {
  name: string;
  status: 'applied' | 'already-applied';
}

/**
 * Where policies, state and history live. Two adapters implement it (SQLite and PostgreSQL) and
 * one contract suite (test/storage.contract.ts) holds both to the same behaviour.
 */
export interface Storage {
  /** Short name of the backend, for logs and /readyz only; never branched on. */
  readonly kind: string;
  /** Whether several daemons may share this storage (and so need leader election). */
  readonly supportsSharedAccess: boolean;
  /**
   * Whether statements run on the daemon's own thread (SQLite): while one runs, nothing else in
   * the daemon does, so background work sizes its statements by time. Elsewhere (PostgreSQL) a
   * statement's time is mostly spent waiting, which holds nothing in the daemon.
   */
  readonly inProcess: boolean;

  /** Applies pending migrations in order, each in its own transaction, under the backend's lock. */
  migrate(): Promise<MigrationStatus[]>;
  /** Names of the migrations recorded as applied. */
  appliedMigrations(): Promise<string[]>;
  ping(): Promise<void>;
  /**
   * Why the database must not be used now, known without a query (see SqlDriver.fault);
   * undefined when nothing is known to be wrong. While set, every call fails with
   * STORAGE_UNAVAILABLE (503) without touching the database.
   */
  fault(): string | undefined;

  /** Inserts a policy with its rules and schedules in one transaction. Throws DUPLICATE_NAME. */
  createPolicy(policy: Policy): Promise<Policy>;
  /**
   * Replaces a policy with its rules and schedules in one transaction; undefined when absent.
   * Rules and schedules whose content is unchanged keep their stored ids (see keepIdentity), and
   * a policy whose content is unchanged is not written at all: it keeps its updated_at. The
   * stored pause and created_at are kept whatever the argument says.
   */
  replacePolicy(policy: Policy): Promise<Policy | undefined>;
  getPolicy(id: string): Promise<Policy | undefined>;
  getPolicyByName(name: string): Promise<Policy | undefined>;
  /**
   * The id of the policy with this id or name, read without the policy (one indexed column, no
   * rules or schedules): for routes that only need to know the policy exists.
   */
  policyId(by: 'id' | 'name', value: string): Promise<string | undefined>;
  listPolicies(query: PolicyListQuery): Promise<{ policies: Policy[]; total: number }>;
  /** Every enabled policy that is not paused; the evaluation loop's read. */
  listEnabledPolicies(): Promise<Policy[]>;
  /** Ids and versions of the enabled policies that are not paused: lets the loop reload only what changed. */
  listEnabledPolicyVersions(): Promise<Array<{ id: string; updated_at: string }>>;
  /**
   * Every policy's id with a value that changes whenever anything stored of it changes (content,
   * enabled, pause, source): lets a reader of all policies reload only what changed.
   */
  listPolicyVersions(): Promise<Array<{ id: string; version: string }>>;
  /**
   * A value that changes whenever any policy is created, changed or deleted, by any process on
   * this database: the loop lists the policies again only when it changed.
   */
  policiesRevision(): Promise<string>;
  /** Policies by id (any number; missing ids are left out). */
  getPolicies(ids: readonly string[]): Promise<Policy[]>;
  /**
   * Sets `enabled`, moving updated_at only when it changes; with liftPause, lifts a pause in the
   * same statement.
   */
  setEnabled(id: string, enabled: boolean, now: string, opts?: { liftPause?: boolean }): Promise<Policy | undefined>;
  /**
   * Pauses a policy, or with null lifts its pause; updated_at does not move. Pausing a paused
   * policy keeps the pause in force as it is (its time and reason). Undefined when absent.
   */
  setPaused(id: string, pause: PolicyPause | null): Promise<Policy | undefined>;
  /** Deletes a policy, its rules, schedules and state; its history stays. */
  deletePolicy(id: string): Promise<boolean>;
  /**
   * Makes the policies of one source (a file) exactly `policies`, in one transaction: upserts by
   * name, deletes the source's policies not listed. Policies found by name under a source in
   * `adoptFrom` (a renamed file) move to `source` keeping their ids. An existing policy is
   * replaced as replacePolicy does: unchanged rules and schedules keep their ids, and a policy
   * unchanged in content and source is not written (its updated_at stays).
   */
  syncSource(source: string, policies: Policy[], opts?: { adoptFrom?: readonly string[] }): Promise<void>;

  appendHistory(row: HistoryRow): Promise<HistoryRow>;
  /**
   * Deletes at most `limit` history rows executed before `before`, oldest first (history
   * retention); resolves to how many were deleted. When `timing` is given, its `waitedMs` is set
   * to how long the call waited before its deletion began (for a connection, or behind other
   * statements), so a caller pacing its deletions by their cost can leave that wait out.
   */
  pruneHistory(before: string, limit: number, timing?: { waitedMs: number }): Promise<number>;
  listHistory(query: HistoryQuery): Promise<{ rows: HistoryRow[]; next_cursor: string | null }>;
  /**
   * The same page as listHistory (same rows, order, filters and cursor), each row as its JSON
   * text: the text stored with the row when it was appended, so that no decision record is parsed
   * or serialised per request. Rows written without one (by a version before this text was
   * stored) are read from their columns and serialised as listHistory returns them. When `known`
   * is given it is called once for each row of the page, in order, before the texts are read; if
   * it says true for at least three quarters of them, those rows are on the page without their
   * text (the caller has it) and only the others are read; otherwise every row comes with its
   * text. History rows never change, so a text once read stays the row's answer for as long as
   * the row exists.
   */
  listHistoryJson(query: HistoryQuery, known?: (id: string) => boolean): Promise<HistoryJsonPage>;

  /**
   * The replica changes of these policies (succeeded, not dry runs, not `none`) in [since, until),
   * oldest first, without the decision records; and for each policy with a change before `since`,
   * the count the last of them set: what replica-hours over the range are computed from.
   */
  replicaChanges(policyIds: readonly string[], since: string, until: string): Promise<{ changes: ReplicaChange[]; before: Map<string, number> }>;

  /** One history row by id, with its decision record; undefined when there is none. */
  getHistoryRow(id: string): Promise<HistoryRow | undefined>;

  /** Whether a history row with this id exists (a change recorded before a crash is not recorded again). */
  historyRowExists(id: string): Promise<boolean>;

  getState(policyId: string): Promise<PolicyState | undefined>;
  /** States of many policies in a few queries (the loop's read). */
  getStates(policyIds: readonly string[]): Promise<Map<string, PolicyState>>;
  /**
   * Writes a state as a compare-and-set: only when the stored version is still `state.version`
   * (0: no state is stored), and, with a `fence`, only while that leader lock session still holds
   * the lock. The stored version becomes `state.version + 1`. False, with nothing written, when
   * the version moved, the fence failed, or the policy no longer exists; with `unlessPaused`
   * (the write that claims a change before it is executed), also when the policy is paused.
   */
  putState(state: PolicyState, opts?: { fence?: LeaderFence; unlessPaused?: boolean }): Promise<boolean>;
  /**
   * Writes many states in one transaction, each a compare-and-set as in putState. Resolves to
   * the ids of the policies whose state was not written.
   */
  putStates(states: readonly PolicyState[], opts?: { fence?: LeaderFence; unlessPaused?: boolean }): Promise<string[]>;
  /**
   * Records executed changes in one transaction: each one's history row (when it has one) is
   * appended, whatever happens to its state, and its state is written as a compare-and-set as in
   * putState. Resolves to the ids of the policies whose state was not written. The loop groups the
   * changes of many policies into one call.
   */
  recordChanges(changes: readonly RecordedChange[], opts?: { fence?: LeaderFence }): Promise<string[]>;

  /** The lock that decides which daemon on this storage runs the evaluation loop. */
  leaderLock(): LeaderLock;

  close(): Promise<void>;
}
