import { ScalerError } from '../errors.js';
import { keepIdentity } from '../policy/policy-identity.js';
import type { Behavior, Policy, PolicyPause, Rule, Schedule, StoredTargetRef, TargetTracking } from '../policy/policy-model.js';
import type { ConditionNode } from '../policy/condition-tree.js';
import { normalizeBehavior } from '../policy/policy-normalize.js';
import { formatDuration } from '../util/duration.js';
import { Interner, intern } from '../util/intern.js';
import { MIGRATIONS_TABLE, migrate } from './migrator.js';
import type { LeaderLock, SqlDriver, SqlExecutor } from './sql-driver.js';
import type {
  HistoryJsonPage,
  HistoryQuery,
  HistoryRow,
  MigrationStatus,
  PolicyListQuery,
  PolicyState,
  RecordedChange,
  ReplicaChange,
  Storage,
} from './storage.js';

type Row = Record<string, unknown>;

// Backends return booleans as 0/1 or true/false, times as text or Date, JSON as text or objects.
const bool = (v: unknown): boolean => v === true || v === 1 || v === '1';
const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v));
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : num(v));
const str = (v: unknown): string => String(v);
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
const CANONICAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
// Times are written in canonical form, so reading them back rarely needs a Date round trip.
const iso = (v: unknown): string =>
  v instanceof Date ? v.toISOString() : typeof v === 'string' && CANONICAL_TIME.test(v) ? v : new Date(String(v)).toISOString();
const isoOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : iso(v));
const json = <T>(v: unknown): T | null => (v === null || v === undefined ? null : typeof v === 'string' ? (JSON.parse(v) as T) : (v as T));

const internOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : intern(String(v)));
/**
 * A JSON column that most policies hold with the same text (a behavior block, no target
 * tracking): parsed once, deep-frozen and shared (nothing changes a policy read from storage).
 */
const parsedJson = new Interner<unknown>(10_000);
const shared = <T>(v: unknown): T | null =>
  v === null || v === undefined ? null : typeof v === 'string' ? (parsedJson.get(v, (text) => deepFreeze(JSON.parse(text))) as T) : (v as T);

/**
 * A condition tree column: JSON text (SQLite), or the value PostgreSQL's driver already parsed
 * from JSONB, which for a tree that is one rule name is that name itself (a name never starts
 * with '{' or '"', which every JSON text of a tree does).
 */
function treeFrom(v: unknown): ConditionNode | null {
  if (typeof v === 'string' && !v.startsWith('{') && !v.startsWith('"')) return intern(v);
  return shared<ConditionNode>(v);
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** The unique key a taken policy name violates, as SqlDriver.uniqueViolation reports it. */
const POLICY_NAME_KEY = 'scaling_policies.name';

const POLICY_COLUMNS = [
  'id', 'name', 'description', 'target_type', 'target_id', 'executor', 'min_replicas', 'max_replicas',
  'cooldown_seconds', 'max_hourly_cost', 'cost_per_replica_hour', 'scale_to_zero', 'enabled', 'dry_run',
  'on_metric_error', 'fallback_after_failures', 'fallback_replicas', 'scale_up_match', 'scale_down_match',
  'source', 'created_at', 'updated_at', 'target_tracking', 'behavior', 'target_ref', 'scale_up_when', 'scale_down_when',
] as const;

// Times are written in one canonical UTC form: SQLite compares them as text, so "…12:00:00Z"
// and "…14:00:01+02:00" would otherwise sort by spelling rather than by instant.
function policyValues(p: Policy): unknown[] {
  return [
    p.id, p.name, p.description, p.target_type, p.target_id, p.executor, p.min_replicas, p.max_replicas,
    p.cooldown_seconds, p.max_hourly_cost, p.cost_per_replica_hour, p.scale_to_zero, p.enabled, p.dry_run,
    // With a condition tree the match column keeps its default; it is not read (see policyFrom).
    p.on_metric_error, p.fallback?.after_failures ?? null, p.fallback?.replicas ?? null, p.scale_up_match ?? 'all',
    p.scale_down_match ?? 'all', p.source, iso(p.created_at), iso(p.updated_at), JSON.stringify(p.target_tracking), JSON.stringify(p.behavior),
    p.target_ref === null ? null : JSON.stringify(p.target_ref),
    p.scale_up_when === null ? null : JSON.stringify(p.scale_up_when), p.scale_down_when === null ? null : JSON.stringify(p.scale_down_when),
  ];
}

function ruleFrom(r: Row): Rule {
  const seconds = num(r['duration_seconds']);
  return {
    id: str(r['id']),
    name: internOrNull(r['name']),
    metric: intern(str(r['metric'])),
    source: internOrNull(r['source']),
    operator: intern(str(r['operator'])) as Rule['operator'],
    threshold: num(r['threshold']),
    duration: intern(formatDuration(seconds)),
    duration_seconds: seconds,
    aggregation: intern(str(r['aggregation'])) as Rule['aggregation'],
    scale_by: num(r['scale_by']),
  };
}

function scheduleFrom(r: Row): Schedule {
  const seconds = num(r['duration_seconds']);
  return {
    id: str(r['id']),
    cron_expression: str(r['cron_expression']),
    timezone: str(r['timezone']),
    desired_replicas: num(r['desired_replicas']),
    duration: formatDuration(seconds),
    duration_seconds: seconds,
    mode: str(r['mode']) as Schedule['mode'],
    enabled: bool(r['enabled']),
  };
}

function policyFrom(r: Row, rules: Row[], schedules: Row[]): Policy {
  const after = numOrNull(r['fallback_after_failures']);
  const replicas = numOrNull(r['fallback_replicas']);
  const upWhen = treeFrom(r['scale_up_when']);
  const downWhen = treeFrom(r['scale_down_when']);
  return {
    id: str(r['id']),
    name: str(r['name']),
    description: strOrNull(r['description']),
    target_type: intern(str(r['target_type'])),
    target_id: strOrNull(r['target_id']),
    target_ref: json<StoredTargetRef>(r['target_ref']),
    executor: internOrNull(r['executor']),
    min_replicas: num(r['min_replicas']),
    max_replicas: num(r['max_replicas']),
    cooldown_seconds: numOrNull(r['cooldown_seconds']),
    max_hourly_cost: numOrNull(r['max_hourly_cost']),
    cost_per_replica_hour: numOrNull(r['cost_per_replica_hour']),
    scale_to_zero: bool(r['scale_to_zero']),
    enabled: bool(r['enabled']),
    dry_run: bool(r['dry_run']),
    on_metric_error: intern(str(r['on_metric_error'])) as Policy['on_metric_error'],
    fallback: after !== null && replicas !== null ? { after_failures: after, replicas } : null,
    scale_up_match: upWhen === null ? (intern(str(r['scale_up_match'])) as Policy['scale_up_match']) : null,
    scale_down_match: downWhen === null ? (intern(str(r['scale_down_match'])) as Policy['scale_down_match']) : null,
    scale_up_when: upWhen,
    scale_down_when: downWhen,
    scale_up_rules: rules.filter((x) => x['rule_type'] === 'scale_up').map(ruleFrom),
    scale_down_rules: rules.filter((x) => x['rule_type'] === 'scale_down').map(ruleFrom),
    schedules: schedules.map(scheduleFrom),
    target_tracking: shared<TargetTracking[]>(r['target_tracking']) ?? [],
    behavior: shared<Behavior>(r['behavior']) ?? normalizeBehavior(null, false),
    source: intern(str(r['source'])),
    created_at: intern(iso(r['created_at'])),
    updated_at: intern(iso(r['updated_at'])),
    paused_at: isoOrNull(r['paused_at']),
    paused_reason: strOrNull(r['paused_reason']),
  };
}

/** A history row's columns, in the order of its answer (HistoryRow); never the stored answer_json. */
const HISTORY_COLUMNS = [
  'id', 'policy_id', 'policy_name', 'action', 'target_type', 'target_id', 'previous_replicas', 'new_replicas', 'reason',
  'reason_code', 'triggered_by', 'dry_run', 'status', 'error', 'executed_at', 'details',
].join(', ');

function historyFrom(r: Row): HistoryRow {
  return {
    id: str(r['id']),
    policy_id: strOrNull(r['policy_id']),
    policy_name: str(r['policy_name']),
    action: str(r['action']) as HistoryRow['action'],
    target_type: str(r['target_type']),
    target_id: strOrNull(r['target_id']),
    previous_replicas: num(r['previous_replicas']),
    new_replicas: num(r['new_replicas']),
    reason: str(r['reason']),
    reason_code: strOrNull(r['reason_code']),
    triggered_by: str(r['triggered_by']) as HistoryRow['triggered_by'],
    dry_run: bool(r['dry_run']),
    status: str(r['status']) as HistoryRow['status'],
    error: strOrNull(r['error']),
    executed_at: iso(r['executed_at']),
    details: json<Record<string, unknown>>(r['details']),
  };
}

/**
 * A history row's answer: the JSON text of the row exactly as a read of it returns it (the same
 * conversions as historyFrom, then JSON.stringify). Stored with the row (answer_json, migration
 * 011), so a page of history is its rows' texts joined, with no record parsed per request.
 */
export function historyJson(row: HistoryRow): string {
  return JSON.stringify(historyFrom(row as unknown as Row));
}

function stateFrom(r: Row): PolicyState {
  return {
    policy_id: str(r['policy_id']),
    current_replicas: numOrNull(r['current_replicas']),
    last_change_at: isoOrNull(r['last_change_at']),
    last_change_kind: strOrNull(r['last_change_kind']),
    consecutive_failures: num(r['consecutive_failures']),
    last_blocked: strOrNull(r['last_blocked']),
    data: json<Record<string, unknown>>(r['data']) ?? {},
    updated_at: iso(r['updated_at']),
    version: num(r['version']),
  };
}

// Every state write is a compare-and-set on the row's version (migration 005). A policy without
// stored state gets its row inserted at version 1, only while the policy exists (a policy deleted
// during a cycle loses its pending state quietly instead of failing the cycle's batch on the
// foreign key) and while no other writer inserted one first; a stored row is updated only while
// its version is the one the writer read. The fence, where the backend has one, is part of the
// same statement.
const STATE_COLUMNS = 'current_replicas, last_change_at, last_change_kind, consecutive_failures, last_blocked, data, updated_at';
const INSERT_STATE_SQL = `INSERT INTO scaling_state (policy_id, ${STATE_COLUMNS}, version)
  SELECT ?, ?, ?, ?, ?, ?, ?, ?, 1 WHERE EXISTS (SELECT 1 FROM scaling_policies WHERE id = ?)`;
const UPDATE_STATE_SQL = `UPDATE scaling_state SET current_replicas = ?, last_change_at = ?, last_change_kind = ?,
    consecutive_failures = ?, last_blocked = ?, data = ?, updated_at = ?, version = version + 1
  WHERE policy_id = ? AND version = ?`;

// A write that claims a change (the intent stored before the executor is called) also requires,
// in the same statement, that the policy is not paused: a pause stored after the loop planned the
// policy stops the change, whichever daemon stored it.
const NOT_PAUSED_SQL = 'NOT EXISTS (SELECT 1 FROM scaling_policies WHERE id = ? AND paused_at IS NOT NULL)';

function stateSql(s: PolicyState, fenceCondition: string | undefined, fence: number | undefined, unlessPaused = false): { sql: string; params: unknown[] } {
  const values = [s.current_replicas, isoOrNull(s.last_change_at), s.last_change_kind, s.consecutive_failures, s.last_blocked, JSON.stringify(s.data), iso(s.updated_at)];
  const fenced = fence !== undefined && fenceCondition !== undefined;
  const conditions = `${unlessPaused ? ` AND ${NOT_PAUSED_SQL}` : ''}${fenced ? ` AND ${fenceCondition}` : ''}`;
  const params = [...(unlessPaused ? [s.policy_id] : []), ...(fenced ? [fence] : [])];
  if (s.version === 0) {
    return {
      sql: `${INSERT_STATE_SQL}${conditions} ON CONFLICT (policy_id) DO NOTHING`,
      params: [s.policy_id, ...values, s.policy_id, ...params],
    };
  }
  return { sql: `${UPDATE_STATE_SQL}${conditions}`, params: [...values, s.policy_id, s.version, ...params] };
}

const INSERT_HISTORY_PREFIX_ONLY = `INSERT INTO scaling_history (${HISTORY_COLUMNS}, answer_json)`;
const INSERT_HISTORY_SQL = `${INSERT_HISTORY_PREFIX_ONLY} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;
/** The history columns' types, for rows read from JSON (SqlDriver.jsonRows). */
const HISTORY_JSON_TYPES = `id text, policy_id text, policy_name text, action text, target_type text, target_id text,
  previous_replicas integer, new_replicas integer, reason text, reason_code text, triggered_by text, dry_run boolean,
  status text, error text, executed_at timestamptz, details jsonb, answer_json text`;
/** History rows per INSERT of recordChanges where the backend reads rows from JSON. */
const HISTORY_ROWS_PER_INSERT = 1000;
/** Stored states per UPDATE where the backend reads rows from JSON (see SqlDriver.jsonRows). */
const STATES_PER_UPDATE = 1000;

/** The values of INSERT_HISTORY_SQL for a row whose time is already canonical. */
function historyValues(r: HistoryRow): unknown[] {
  return [
    r.id, r.policy_id, r.policy_name, r.action, r.target_type, r.target_id, r.previous_replicas, r.new_replicas,
    r.reason, r.reason_code, r.triggered_by, r.dry_run, r.status, r.error, r.executed_at,
    r.details === null ? null : JSON.stringify(r.details),
    historyJson(r),
  ];
}

function encodeCursor(row: { executed_at: string; id: string }): string {
  return Buffer.from(JSON.stringify([row.executed_at, row.id])).toString('base64url');
}

/** The WHERE clause and parameters of a history query (filters and cursor), shared by both listings. */
function historyWhere(q: HistoryQuery): { where: string; params: unknown[] } {
  const conds: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, ...values: unknown[]): void => {
    conds.push(sql);
    params.push(...values);
  };
  if (q.policy_id !== undefined) add('policy_id = ?', q.policy_id);
  if (q.policy_id !== undefined && q.policy_exists === true) add('EXISTS (SELECT 1 FROM scaling_policies WHERE id = ?)', q.policy_id);
  if (q.policy_name !== undefined) add('policy_name = ?', q.policy_name);
  if (q.action !== undefined) add('action = ?', q.action);
  if (q.status !== undefined) add('status = ?', q.status);
  if (q.dry_run !== undefined) add('dry_run = ?', q.dry_run);
  if (q.since !== undefined) add('executed_at >= ?', iso(q.since));
  if (q.until !== undefined) add('executed_at < ?', iso(q.until));
  if (q.cursor !== undefined) {
    const [at, id] = decodeCursor(q.cursor);
    // A row-value comparison, not the equivalent `executed_at < ? OR (executed_at = ? AND id < ?)`:
    // both backends seek the (…, executed_at DESC, id DESC) indexes with it, whereas the OR
    // form scans every newer row first, so a page deep in the history cost O(depth).
    add('(executed_at, id) < (?, ?)', at, id);
  }
  return { where: conds.length > 0 ? `WHERE ${conds.join(' AND ')}` : '', params };
}

/** Decodes a history cursor; throws BAD_REQUEST for anything a client could not have received. */
export function decodeCursor(cursor: string): [string, string] {
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string' && !Number.isNaN(Date.parse(v[0]))) {
      return [new Date(v[0]).toISOString(), v[1]];
    }
  } catch {
    // fall through
  }
  throw new ScalerError('BAD_REQUEST', 'cursor is not a cursor this server issued', [{ field: '/query/cursor', message: 'is not valid' }]);
}

/**
 * The Storage implementation shared by every SQL backend. Writes of a policy and its children
 * run in one transaction; history keyset-paginates newest first on (executed_at, id).
 */
export class SqlStorage implements Storage {
  readonly driver: SqlDriver;

  constructor(driver: SqlDriver) {
    this.driver = driver;
  }

  get kind(): string {
    return this.driver.kind;
  }

  get inProcess(): boolean {
    return this.driver.inProcess;
  }

  get supportsSharedAccess(): boolean {
    return this.driver.supportsSharedAccess;
  }

  fault(): string | undefined {
    return this.driver.fault();
  }

  /** Maps backend errors to catalogue errors, so a client sees 409 or 503, never a driver message. */
  async #guard<T>(work: () => Promise<T>): Promise<T> {
    // A database the driver knows to be unusable (a SQLite file deleted, replaced or read-only)
    // is not touched at all: nothing may be written to a file that is no longer the database.
    const fault = this.driver.fault();
    if (fault !== undefined) throw new ScalerError('STORAGE_UNAVAILABLE', `the ${this.driver.kind} database is unusable: ${fault}`);
    try {
      return await work();
    } catch (err) {
      if (err instanceof ScalerError) throw err;
      // Only the name is a client's clash; any other unique key (a rule id, a history id) is a bug
      // on our side and must surface as one, not as a misleading 409.
      if (this.driver.uniqueViolation(err) === POLICY_NAME_KEY) {
        throw new ScalerError('DUPLICATE_NAME', 'a policy with this name already exists');
      }
      if (this.driver.isUnavailable(err)) {
        // The driver may have found the fault while running this call: name it, not a retry.
        const known = this.driver.fault();
        throw new ScalerError(
          'STORAGE_UNAVAILABLE',
          known !== undefined ? `the ${this.driver.kind} database is unusable: ${known}` : `the ${this.driver.kind} database cannot be reached; retry shortly`,
        );
      }
      throw err;
    }
  }

  migrate(): Promise<MigrationStatus[]> {
    return this.#guard(() => migrate(this.driver));
  }

  async appliedMigrations(): Promise<string[]> {
    return this.#guard(async () => {
      const rows = await this.driver.all<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY name`);
      return rows.map((r) => r.name);
    });
  }

  async ping(): Promise<void> {
    await this.#guard(() => this.driver.all('SELECT 1 AS ok'));
  }

  async #insertChildren(tx: SqlExecutor, p: Policy): Promise<void> {
    const rules: Array<[string, Rule, number]> = [
      ...p.scale_up_rules.map((r, i): [string, Rule, number] => ['scale_up', r, i]),
      ...p.scale_down_rules.map((r, i): [string, Rule, number] => ['scale_down', r, i]),
    ];
    for (const [type, r, i] of rules) {
      await tx.run(
        `INSERT INTO scaling_rules (id, policy_id, rule_type, position, name, metric, source, operator, threshold,
           duration_seconds, aggregation, scale_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [r.id, p.id, type, i, r.name, r.metric, r.source, r.operator, r.threshold, r.duration_seconds, r.aggregation, r.scale_by, iso(p.updated_at)],
      );
    }
    for (const [i, s] of p.schedules.entries()) {
      await tx.run(
        `INSERT INTO scaling_schedules (id, policy_id, position, cron_expression, timezone, desired_replicas,
           duration_seconds, mode, enabled, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [s.id, p.id, i, s.cron_expression, s.timezone, s.desired_replicas, s.duration_seconds, s.mode, s.enabled, iso(p.updated_at)],
      );
    }
  }

  async #insert(tx: SqlExecutor, p: Policy): Promise<void> {
    const cols = [...POLICY_COLUMNS, 'paused_at', 'paused_reason'];
    await tx.run(
      `INSERT INTO scaling_policies (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`,
      [...policyValues(p), isoOrNull(p.paused_at), p.paused_reason],
    );
    await this.#insertChildren(tx, p);
  }

  /**
   * Writes `p` over `previous`, the stored version read in this transaction: unchanged rules and
   * schedules keep their ids, and nothing is written when content and source are unchanged (so
   * updated_at and the policies revision stay). The pause and created_at are never written here.
   * True when something was written.
   */
  async #update(tx: SqlExecutor, p: Policy, previous: Policy): Promise<boolean> {
    const { policy, unchanged } = keepIdentity(previous, p);
    if (unchanged && policy.source === previous.source) return false;
    const cols = POLICY_COLUMNS.filter((c) => c !== 'id' && c !== 'created_at');
    const values = policyValues(policy).filter((_, i) => POLICY_COLUMNS[i] !== 'id' && POLICY_COLUMNS[i] !== 'created_at');
    await tx.run(`UPDATE scaling_policies SET ${cols.map((c) => `${c} = ?`).join(', ')} WHERE id = ?`, [...values, previous.id]);
    await tx.run('DELETE FROM scaling_rules WHERE policy_id = ?', [previous.id]);
    await tx.run('DELETE FROM scaling_schedules WHERE policy_id = ?', [previous.id]);
    await this.#insertChildren(tx, { ...policy, id: previous.id });
    return true;
  }

  async #load(db: SqlExecutor, where: string, params: unknown[], suffix = ''): Promise<Policy[]> {
    const rows = await db.all<Row>(`SELECT * FROM scaling_policies ${where} ${suffix}`, params);
    if (rows.length === 0) return [];
    const ids = rows.map((r) => str(r['id']));
    const marks = ids.map(() => '?').join(', ');
    const rules = await db.all<Row>(
      `SELECT * FROM scaling_rules WHERE policy_id IN (${marks}) ORDER BY policy_id, rule_type, position`,
      ids,
    );
    const schedules = await db.all<Row>(
      `SELECT * FROM scaling_schedules WHERE policy_id IN (${marks}) ORDER BY policy_id, position`,
      ids,
    );
    const group = (list: Row[]): Map<string, Row[]> => {
      const m = new Map<string, Row[]>();
      for (const r of list) {
        const id = str(r['policy_id']);
        const arr = m.get(id);
        if (arr === undefined) m.set(id, [r]);
        else arr.push(r);
      }
      return m;
    };
    const rulesBy = group(rules);
    const schedulesBy = group(schedules);
    return rows.map((r) => policyFrom(r, rulesBy.get(str(r['id'])) ?? [], schedulesBy.get(str(r['id'])) ?? []));
  }

  // Both answer the row as stored (read back in the same transaction), not the argument: a
  // replacement keeps the stored created_at whatever the caller passed, and times come back canonical.
  createPolicy(policy: Policy): Promise<Policy> {
    return this.#guard(() =>
      this.driver.transaction(async (tx) => {
        await this.#insert(tx, policy);
        const [stored] = await this.#load(tx, 'WHERE id = ?', [policy.id]);
        if (stored === undefined) throw new Error(`policy ${policy.id} vanished inside its own transaction`);
        return stored;
      }),
    );
  }

  replacePolicy(policy: Policy): Promise<Policy | undefined> {
    return this.#guard(() =>
      this.driver.transaction(async (tx) => {
        const [previous] = await this.#load(tx, 'WHERE id = ?', [policy.id]);
        if (previous === undefined) return undefined;
        if (!(await this.#update(tx, policy, previous))) return previous;
        return (await this.#load(tx, 'WHERE id = ?', [policy.id]))[0];
      }),
    );
  }

  getPolicy(id: string): Promise<Policy | undefined> {
    return this.#guard(async () => (await this.#load(this.driver, 'WHERE id = ?', [id]))[0]);
  }

  getPolicyByName(name: string): Promise<Policy | undefined> {
    return this.#guard(async () => (await this.#load(this.driver, 'WHERE name = ?', [name]))[0]);
  }

  policyId(by: 'id' | 'name', value: string): Promise<string | undefined> {
    // Two fixed statements naming their column: prepared once per connection on PostgreSQL.
    const sql = by === 'id' ? 'SELECT id FROM scaling_policies WHERE id = ?' : 'SELECT id FROM scaling_policies WHERE name = ?';
    return this.#guard(async () => {
      const [r] = await this.driver.all<Row>(sql, [value]);
      return r === undefined ? undefined : str(r['id']);
    });
  }

  listPolicies(q: PolicyListQuery): Promise<{ policies: Policy[]; total: number }> {
    return this.#guard(async () => {
      const conds: string[] = [];
      const params: unknown[] = [];
      if (q.enabled !== undefined) {
        conds.push('enabled = ?');
        params.push(q.enabled);
      }
      if (q.target_type !== undefined) {
        conds.push('target_type = ?');
        params.push(q.target_type);
      }
      if (q.source !== undefined) {
        conds.push('source = ?');
        params.push(q.source);
      }
      const where = conds.length > 0 ? `WHERE ${conds.join(' AND ')}` : '';
      const [count] = await this.driver.all<{ n: unknown }>(`SELECT COUNT(*) AS n FROM scaling_policies ${where}`, params);
      const policies = await this.#load(this.driver, where, [...params, q.limit, q.offset], 'ORDER BY created_at, id LIMIT ? OFFSET ?');
      return { policies, total: num(count?.n ?? 0) };
    });
  }

  listEnabledPolicies(): Promise<Policy[]> {
    return this.#guard(() => this.#load(this.driver, 'WHERE enabled = ? AND paused_at IS NULL', [true], 'ORDER BY name'));
  }

  listEnabledPolicyVersions(): Promise<Array<{ id: string; updated_at: string }>> {
    return this.#guard(async () => {
      const rows = await this.driver.all<Row>('SELECT id, updated_at FROM scaling_policies WHERE enabled = ? AND paused_at IS NULL ORDER BY name', [true]);
      return rows.map((r) => ({ id: str(r['id']), updated_at: iso(r['updated_at']) }));
    });
  }

  listPolicyVersions(): Promise<Array<{ id: string; version: string }>> {
    return this.#guard(async () => {
      const rows = await this.driver.all<Row>('SELECT id, updated_at, paused_at, enabled, source FROM scaling_policies', []);
      return rows.map((r) => ({ id: str(r['id']), version: `${iso(r['updated_at'])}|${isoOrNull(r['paused_at']) ?? ''}|${bool(r['enabled'])}|${str(r['source'])}` }));
    });
  }

  policiesRevision(): Promise<string> {
    return this.#guard(async () => {
      // The sum of its rows (one on SQLite, 64 on PostgreSQL: migration 004).
      const [row] = await this.driver.all<Row>('SELECT sum(revision) AS revision FROM scaling_policy_revision', []);
      if (row === undefined || row['revision'] === null) throw new Error('scaling_policy_revision has no row: the database was not migrated');
      return String(row['revision']);
    });
  }

  getPolicies(ids: readonly string[]): Promise<Policy[]> {
    return this.#guard(async () => {
      const out: Policy[] = [];
      // Chunks keep every statement under the backends' limits on bound parameters.
      for (let i = 0; i < ids.length; i += 500) {
        const chunk = ids.slice(i, i + 500);
        out.push(...(await this.#load(this.driver, `WHERE id IN (${chunk.map(() => '?').join(', ')})`, chunk)));
      }
      return out;
    });
  }

  setEnabled(id: string, enabled: boolean, now: string, opts: { liftPause?: boolean } = {}): Promise<Policy | undefined> {
    return this.#guard(async () => {
      const lift = opts.liftPause === true ? ', paused_at = NULL, paused_reason = NULL' : '';
      // `enabled` is content: updated_at moves only when it changes, as for any other field.
      const changed = await this.driver.run(
        `UPDATE scaling_policies SET updated_at = CASE WHEN enabled = ? THEN updated_at ELSE ? END, enabled = ?${lift} WHERE id = ?`,
        [enabled, iso(now), enabled, id],
      );
      if (changed === 0) return undefined;
      return this.getPolicy(id);
    });
  }

  setPaused(id: string, pause: PolicyPause | null): Promise<Policy | undefined> {
    return this.#guard(async () => {
      // Only a change is written: a pause in force stays as it is, and the revision moves only
      // when the loop has something to notice.
      if (pause === null) await this.driver.run('UPDATE scaling_policies SET paused_at = NULL, paused_reason = NULL WHERE id = ? AND paused_at IS NOT NULL', [id]);
      else await this.driver.run('UPDATE scaling_policies SET paused_at = ?, paused_reason = ? WHERE id = ? AND paused_at IS NULL', [iso(pause.at), pause.reason, id]);
      return this.getPolicy(id);
    });
  }

  deletePolicy(id: string): Promise<boolean> {
    return this.#guard(async () => (await this.driver.run('DELETE FROM scaling_policies WHERE id = ?', [id])) > 0);
  }

  syncSource(source: string, policies: Policy[], opts: { adoptFrom?: readonly string[] } = {}): Promise<void> {
    return this.#guard(() =>
      this.driver.transaction(async (tx) => {
        const existing = await this.#load(tx, 'WHERE source = ?', [source]);
        const wanted = new Set(policies.map((p) => p.name));
        for (const row of existing) {
          if (!wanted.has(row.name)) await tx.run('DELETE FROM scaling_policies WHERE id = ?', [row.id]);
        }
        // Policies that moved here from another source keep their id (and so their state and history).
        const adopt = opts.adoptFrom ?? [];
        const adopted = adopt.length === 0 ? [] : await this.#load(tx, `WHERE source IN (${adopt.map(() => '?').join(', ')})`, [...adopt]);
        const byName = new Map([...adopted.filter((r) => wanted.has(r.name)), ...existing].map((r) => [r.name, r]));
        for (const p of policies) {
          const previous = byName.get(p.name);
          if (previous === undefined) await this.#insert(tx, { ...p, source });
          else await this.#update(tx, { ...p, id: previous.id, source }, previous);
        }
      }),
    );
  }

  appendHistory(row: HistoryRow): Promise<HistoryRow> {
    const stored = { ...row, executed_at: iso(row.executed_at) };
    return this.#guard(async () => {
      await this.driver.run(INSERT_HISTORY_SQL, historyValues(stored));
      return stored;
    });
  }

  recordChanges(changes: readonly RecordedChange[], opts: { fence?: number } = {}): Promise<string[]> {
    if (changes.length === 0) return Promise.resolve([]);
    return this.#guard(() =>
      this.driver.transaction(async (tx) => {
        const rows: HistoryRow[] = [];
        for (const c of changes) if (c.row !== null) rows.push({ ...c.row, executed_at: iso(c.row.executed_at) });
        const json = this.driver.jsonRows;
        if (json === undefined) {
          for (const r of rows) await tx.run(INSERT_HISTORY_SQL, historyValues(r));
        } else {
          for (let i = 0; i < rows.length; i += HISTORY_ROWS_PER_INSERT) {
            // One JSON text for the chunk; the decision records go in as JSON values.
            const chunk = rows.slice(i, i + HISTORY_ROWS_PER_INSERT).map((r) => ({ ...r, answer_json: historyJson(r) }));
            await tx.run(`${INSERT_HISTORY_PREFIX_ONLY} SELECT ${HISTORY_COLUMNS}, answer_json FROM ${json(HISTORY_JSON_TYPES)}`, [JSON.stringify(chunk)]);
          }
        }
        return this.#writeStates(tx, changes.map((c) => c.state), opts.fence, false);
      }),
    );
  }

  /**
   * Writes states as compare-and-sets within a transaction: many stored rows per UPDATE (one
   * statement per row cost a round trip each on PostgreSQL), a first state per INSERT. Answers
   * the ids of the policies whose state was not written.
   */
  async #writeStates(tx: SqlExecutor, states: readonly PolicyState[], fence: number | undefined, unlessPaused: boolean): Promise<string[]> {
    const refused: string[] = [];
    const one = async (s: PolicyState): Promise<void> => {
      const { sql, params } = stateSql(s, this.driver.fenceCondition, fence, unlessPaused);
      if ((await tx.run(sql, params)) !== 1) refused.push(s.policy_id);
    };
    // A policy's first state is inserted; its stored one updated (with others, where the backend
    // takes arrays). A second write of a policy in one call is made after the first (which wins),
    // on its own: one UPDATE joining two rows to one state would apply either.
    const stored: PolicyState[] = [];
    const again: PolicyState[] = [];
    const ids = new Set<string>();
    for (const s of states) {
      if (ids.has(s.policy_id)) again.push(s);
      else {
        ids.add(s.policy_id);
        if (s.version === 0) await one(s);
        else stored.push(s);
      }
    }
    const rows = this.driver.jsonRows;
    if (rows === undefined) {
      for (const s of stored) await one(s);
    } else {
      const fenced = fence !== undefined && this.driver.fenceCondition !== undefined;
      for (let i = 0; i < stored.length; i += STATES_PER_UPDATE) {
        const chunk = stored.slice(i, i + STATES_PER_UPDATE);
        // One JSON text for the chunk: the states' data go in as JSON values, not as text to escape.
        const json = JSON.stringify(
          chunk.map((s) => ({
            policy_id: s.policy_id,
            current_replicas: s.current_replicas,
            last_change_at: isoOrNull(s.last_change_at),
            last_change_kind: s.last_change_kind,
            consecutive_failures: s.consecutive_failures,
            last_blocked: s.last_blocked,
            data: s.data,
            updated_at: iso(s.updated_at),
            version: s.version,
          })),
        );
        const written = await tx.all<Row>(
          `UPDATE scaling_state SET current_replicas = v.current_replicas, last_change_at = v.last_change_at,
             last_change_kind = v.last_change_kind, consecutive_failures = v.consecutive_failures,
             last_blocked = v.last_blocked, data = v.data, updated_at = v.updated_at, version = scaling_state.version + 1
           FROM ${rows('policy_id text, current_replicas integer, last_change_at timestamptz, last_change_kind text, consecutive_failures integer, last_blocked text, data jsonb, updated_at timestamptz, version bigint')}
           WHERE scaling_state.policy_id = v.policy_id AND scaling_state.version = v.version
             ${unlessPaused ? `AND ${NOT_PAUSED_SQL.replace('id = ?', 'id = v.policy_id')}` : ''}
             ${fenced ? `AND ${this.driver.fenceCondition}` : ''}
           RETURNING scaling_state.policy_id`,
          [json, ...(fenced ? [fence] : [])],
        );
        const ok = new Set(written.map((r) => str(r['policy_id'])));
        for (const s of chunk) if (!ok.has(s.policy_id)) refused.push(s.policy_id);
      }
    }
    for (const s of again) await one(s);
    return refused;
  }

  listHistory(q: HistoryQuery): Promise<{ rows: HistoryRow[]; next_cursor: string | null }> {
    return this.#guard(async () => {
      const { where, params } = historyWhere(q);
      const rows = await this.driver.all<Row>(
        `SELECT ${HISTORY_COLUMNS} FROM scaling_history ${where} ORDER BY executed_at DESC, id DESC LIMIT ?`,
        [...params, q.limit + 1],
      );
      const page = rows.slice(0, q.limit).map(historyFrom);
      const last = page.at(-1);
      return { rows: page, next_cursor: rows.length > q.limit && last !== undefined ? encodeCursor(last) : null };
    });
  }

  listHistoryJson(q: HistoryQuery, known?: (id: string) => boolean): Promise<HistoryJsonPage> {
    return this.#guard(async () => {
      const { where, params } = historyWhere(q);
      const cursorAfter = (found: Row[]): string | null => {
        const last = found.length > q.limit ? found[q.limit - 1] : undefined;
        return last !== undefined ? encodeCursor({ executed_at: iso(last['executed_iso']), id: str(last['id']) }) : null;
      };
      if (known !== undefined) {
        // The page's keys first: every listing has an index on (…, executed_at, id), so this reads
        // the index alone. When the caller knows most of the page, only the other rows are read.
        const loc = this.driver.historyLocator;
        const found = await this.driver.all<Row>(
          `SELECT id, ${this.#executedAt()}${loc === 'id' ? '' : `, ${loc} AS loc`} FROM scaling_history ${where} ORDER BY executed_at DESC, id DESC LIMIT ?`,
          [...params, q.limit + 1],
        );
        const page = found.length > q.limit ? found.slice(0, q.limit) : found;
        const ids = page.map((r) => str(r['id']));
        const had = ids.map((id) => known(id));
        const wanted = page.filter((_, i) => !had[i]).map((r) => (loc === 'id' ? r['id'] : r['loc']));
        if (wanted.length <= page.length / 4) {
          const texts = wanted.length > 0 ? await this.#historyTexts(wanted) : new Map<string, string | Buffer>();
          // A row pruned between the two reads is left out, as it would be from a page read a
          // moment later (the table is append-only: a row can only disappear, never change).
          const kept = ids.filter((id, i) => had[i] === true || texts.has(id));
          return { ids: kept, rows: kept.map((id) => texts.get(id)), next_cursor: cursorAfter(found) };
        }
        // Most of the page unknown: one read of the page with its texts costs less than a second
        // lookup of each row (a round trip more on PostgreSQL, an index more on both).
      }
      const found = await this.driver.all<Row>(
        `SELECT id, ${this.#executedAt()}, ${this.#answerColumn()} AS answer FROM scaling_history ${where} ORDER BY executed_at DESC, id DESC LIMIT ?`,
        [...params, q.limit + 1],
      );
      const page = found.length > q.limit ? found.slice(0, q.limit) : found;
      const texts = await this.#answers(page);
      const kept = page.map((r) => str(r['id'])).filter((id) => texts.has(id));
      return { ids: kept, rows: kept.map((id) => texts.get(id)), next_cursor: cursorAfter(found) };
    });
  }

  /**
   * The JSON texts of the history rows at these locators (driver.historyLocator), by id: the text
   * stored with each row (migration 011). Rows that no longer exist are absent.
   */
  async #historyTexts(locators: readonly unknown[]): Promise<Map<string, string | Buffer>> {
    const rows: Row[] = [];
    for (let i = 0; i < locators.length; i += 500) {
      const chunk = locators.slice(i, i + 500);
      rows.push(...(await this.driver.all<Row>(`SELECT id, ${this.#answerColumn()} AS answer FROM scaling_history WHERE ${this.driver.historyLocator} IN (${chunk.map(() => '?').join(', ')})`, chunk)));
    }
    return this.#answers(rows);
  }

  /**
   * A history row's time as a listing reads it for its cursor, named `executed_iso`: ISO text, never
   * a Date per row. Not named `executed_at`: ORDER BY would then sort by this expression, not by
   * the column its index holds (PostgreSQL sorted every row for each page).
   */
  #executedAt(): string {
    return `${this.driver.isoTime?.('executed_at') ?? 'executed_at'} AS executed_iso`;
  }

  /** The stored answer as the query reads it: as bytes where the backend hands those over undecoded. */
  #answerColumn(): string {
    return this.driver.asBytes?.('answer_json') ?? 'answer_json';
  }

  /**
   * The texts of rows read with their stored `answer`, by id. Rows appended without one (before
   * migration 011, or by an older daemon still running against the same database) are read whole
   * and serialised as listHistory returns them; a row pruned meanwhile is left out.
   */
  async #answers(rows: readonly Row[]): Promise<Map<string, string | Buffer>> {
    const texts = new Map<string, string | Buffer>();
    const legacy: string[] = [];
    for (const r of rows) {
      const text = r['answer'];
      if (typeof text === 'string' || Buffer.isBuffer(text)) texts.set(str(r['id']), text);
      else legacy.push(str(r['id']));
    }
    for (let i = 0; i < legacy.length; i += 500) {
      const chunk = legacy.slice(i, i + 500);
      const full = await this.driver.all<Row>(`SELECT ${HISTORY_COLUMNS} FROM scaling_history WHERE id IN (${chunk.map(() => '?').join(', ')})`, chunk);
      for (const r of full) texts.set(str(r['id']), JSON.stringify(historyFrom(r)));
    }
    return texts;
  }

  getState(policyId: string): Promise<PolicyState | undefined> {
    return this.#guard(async () => {
      const [r] = await this.driver.all<Row>('SELECT * FROM scaling_state WHERE policy_id = ?', [policyId]);
      return r === undefined ? undefined : stateFrom(r);
    });
  }

  getStates(policyIds: readonly string[]): Promise<Map<string, PolicyState>> {
    return this.#guard(async () => {
      const out = new Map<string, PolicyState>();
      for (let i = 0; i < policyIds.length; i += 500) {
        const chunk = policyIds.slice(i, i + 500);
        const rows = await this.driver.all<Row>(`SELECT * FROM scaling_state WHERE policy_id IN (${chunk.map(() => '?').join(', ')})`, chunk);
        for (const r of rows) out.set(str(r['policy_id']), stateFrom(r));
      }
      return out;
    });
  }

  putState(s: PolicyState, opts: { fence?: number; unlessPaused?: boolean } = {}): Promise<boolean> {
    return this.#guard(async () => {
      const { sql, params } = stateSql(s, this.driver.fenceCondition, opts.fence, opts.unlessPaused);
      return (await this.driver.run(sql, params)) === 1;
    });
  }

  putStates(states: readonly PolicyState[], opts: { fence?: number; unlessPaused?: boolean } = {}): Promise<string[]> {
    if (states.length === 0) return Promise.resolve([]);
    return this.#guard(() => this.driver.transaction((tx) => this.#writeStates(tx, states, opts.fence, opts.unlessPaused === true)));
  }

  pruneHistory(before: string, limit: number, timing?: { waitedMs: number }): Promise<number> {
    const cutoff = iso(before);
    const called = performance.now();
    return this.#guard(() =>
      this.driver.transaction(async (tx) => {
        if (timing !== undefined) timing.waitedMs = performance.now() - called;
        // The append-only trigger lets this transaction, and only it, delete rows older than the cutoff.
        await tx.run('UPDATE scaling_history_prune SET before = ? WHERE id = 1', [cutoff]);
        const deleted = await tx.run(
          'DELETE FROM scaling_history WHERE id IN (SELECT id FROM scaling_history WHERE executed_at < ? ORDER BY executed_at, id LIMIT ?)',
          [cutoff, limit],
        );
        await tx.run('UPDATE scaling_history_prune SET before = NULL WHERE id = 1');
        return deleted;
      }),
    );
  }

  replicaChanges(policyIds: readonly string[], since: string, until: string): Promise<{ changes: ReplicaChange[]; before: Map<string, number> }> {
    const real = `status = 'succeeded' AND dry_run = ? AND action <> 'none'`;
    return this.#guard(async () => {
      const changes: ReplicaChange[] = [];
      const before = new Map<string, number>();
      for (let i = 0; i < policyIds.length; i += 500) {
        const chunk = policyIds.slice(i, i + 500);
        const marks = chunk.map(() => '?').join(', ');
        const rows = await this.driver.all<Row>(
          `SELECT policy_id, executed_at, previous_replicas, new_replicas FROM scaling_history
            WHERE policy_id IN (${marks}) AND executed_at >= ? AND executed_at < ? AND ${real}`,
          [...chunk, iso(since), iso(until), false],
        );
        for (const r of rows) changes.push({ policy_id: str(r['policy_id']), executed_at: iso(r['executed_at']), previous_replicas: num(r['previous_replicas']), new_replicas: num(r['new_replicas']) });
        // Each policy's last change before the range: one index seek each.
        const last = await this.driver.all<Row>(
          `SELECT h.policy_id, h.new_replicas FROM scaling_history h WHERE h.id IN (
             SELECT (SELECT x.id FROM scaling_history x WHERE x.policy_id = p.id AND x.executed_at < ?
                        AND x.status = 'succeeded' AND x.dry_run = ? AND x.action <> 'none'
                      ORDER BY x.executed_at DESC, x.id DESC LIMIT 1)
               FROM scaling_policies p WHERE p.id IN (${marks}))`,
          [iso(since), false, ...chunk],
        );
        for (const r of last) before.set(str(r['policy_id']), num(r['new_replicas']));
      }
      changes.sort((a, b) => (a.executed_at < b.executed_at ? -1 : a.executed_at > b.executed_at ? 1 : 0));
      return { changes, before };
    });
  }

  getHistoryRow(id: string): Promise<HistoryRow | undefined> {
    return this.#guard(async () => {
      const [r] = await this.driver.all<Row>(`SELECT ${HISTORY_COLUMNS} FROM scaling_history WHERE id = ?`, [id]);
      return r === undefined ? undefined : historyFrom(r);
    });
  }

  historyRowExists(id: string): Promise<boolean> {
    return this.#guard(async () => (await this.driver.all('SELECT 1 AS found FROM scaling_history WHERE id = ?', [id])).length > 0);
  }

  leaderLock(): LeaderLock {
    return this.driver.leaderLock();
  }

  close(): Promise<void> {
    return this.driver.close();
  }
}
