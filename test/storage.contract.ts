import { randomUUID } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type tap from 'tap';
import { ScalerError } from '../src/errors.js';
import type { Policy, PolicyInput } from '../src/policy/policy-model.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { migrate, readMigrations } from '../src/storage/migrator.js';
import { packageRoot } from '../src/util/package-root.js';
import type { SqlDriver } from '../src/storage/sql-driver.js';
import type { HistoryJsonPage, HistoryQuery, HistoryRow, PolicyState, Storage } from '../src/storage/storage.js';

/** A tap test object, as tap hands it to a subtest callback. */
export type TapTest = Parameters<Parameters<typeof tap.test>[0]>[0];

/** The store under test, with its driver exposed so the suite can check what is really in the tables. */
export type ContractStorage = Storage & { readonly driver: SqlDriver };

/** Opens an empty, not yet migrated store; cleanup closes it and removes whatever open created. */
export type OpenStorage = () => Promise<{ storage: ContractStorage; cleanup: () => Promise<void> }>;

const BASE = Date.parse('2026-01-28T12:00:00.000Z');
const at = (seconds: number): string => new Date(BASE + seconds * 1000).toISOString();

function input(name: string, extra: Partial<PolicyInput> = {}): PolicyInput {
  return {
    name,
    target_type: 'cdc-worker',
    min_replicas: 1,
    max_replicas: 10,
    scale_up_rules: [
      { metric: 'max(philotes_cdc_lag_seconds{source="orders"})', operator: 'gt', threshold: 60, duration: '5m', scale_by: 2 },
      { metric: 'avg(cpu)', operator: 'gte', threshold: 0.75, scale_by: 1, aggregation: 'avg', source: 'prometheus' },
    ],
    scale_down_rules: [{ metric: 'max(philotes_cdc_lag_seconds{source="orders"})', operator: 'lt', threshold: 10.5, duration: '10m', scale_by: -1 }],
    schedules: [
      { cron_expression: '0 8 * * 1-5', timezone: 'Europe/Budapest', desired_replicas: 5, duration: '9h', mode: 'floor' },
      { cron_expression: '0 20 * * *', desired_replicas: 2 },
    ],
    ...extra,
  };
}

function makePolicy(name: string, extra: Partial<PolicyInput> = {}, opts: { source?: string; now?: string; createdAt?: string } = {}): Policy {
  return normalizePolicy(input(name, extra), {
    source: opts.source ?? 'api',
    now: new Date(opts.now ?? at(0)),
    ...(opts.createdAt !== undefined ? { createdAt: opts.createdAt } : {}),
  });
}

/** A policy with every optional field set to a non-default value. */
function fullPolicy(name: string): Policy {
  return makePolicy(name, {
    description: 'CDC workers for the orders pipeline — ünïcödé',
    target_type: 'trino',
    target_id: '550e8400-e29b-41d4-a716-446655440000',
    executor: 'keda',
    min_replicas: 0,
    max_replicas: 12,
    cooldown_seconds: 120,
    max_hourly_cost: 4.5,
    cost_per_replica_hour: 0.45,
    scale_to_zero: true,
    enabled: false,
    dry_run: true,
    on_metric_error: 'fallback',
    fallback: { after_failures: 3, replicas: 4 },
    scale_up_match: 'any',
    scale_down_match: 'any',
  });
}

function historyRow(extra: Partial<HistoryRow> = {}): HistoryRow {
  return {
    id: randomUUID(),
    policy_id: null,
    policy_name: 'some-policy',
    action: 'scale_up',
    target_type: 'cdc-worker',
    target_id: null,
    previous_replicas: 1,
    new_replicas: 3,
    reason: 'lag held above 60 for 5m',
    reason_code: null,
    triggered_by: 'rule',
    dry_run: false,
    status: 'succeeded',
    error: null,
    executed_at: at(0),
    details: null,
    ...extra,
  };
}

/** Newest first by executed_at, then id: the order listHistory promises. */
function newestFirst(rows: HistoryRow[]): string[] {
  return [...rows]
    .sort((a, b) => (a.executed_at === b.executed_at ? (a.id < b.id ? 1 : -1) : a.executed_at < b.executed_at ? 1 : -1))
    .map((r) => r.id);
}

async function count(storage: ContractStorage, sql: string, params: unknown[] = []): Promise<number> {
  const [row] = await storage.driver.all<{ n: unknown }>(sql, params);
  return Number(row?.n);
}

const ruleRows = (s: ContractStorage, policyId: string): Promise<number> =>
  count(s, 'SELECT COUNT(*) AS n FROM scaling_rules WHERE policy_id = ?', [policyId]);
const scheduleRows = (s: ContractStorage, policyId: string): Promise<number> =>
  count(s, 'SELECT COUNT(*) AS n FROM scaling_schedules WHERE policy_id = ?', [policyId]);

/** Resolves to the rejection of p, failing the test when p resolves. */
async function rejection(t: TapTest, p: Promise<unknown>, what: string): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  t.fail(`${what}: expected a rejection`);
  return undefined;
}

async function expectCode(t: TapTest, p: Promise<unknown>, code: string, what: string): Promise<void> {
  const err = await rejection(t, p, what);
  t.ok(err instanceof ScalerError, `${what}: a ScalerError`);
  t.equal((err as ScalerError | undefined)?.code, code, `${what}: code ${code}`);
}

/** The members of a history row, in the order every answer gives them. */
const HISTORY_KEYS = [
  'id', 'policy_id', 'policy_name', 'action', 'target_type', 'target_id', 'previous_replicas', 'new_replicas', 'reason',
  'reason_code', 'triggered_by', 'dry_run', 'status', 'error', 'executed_at', 'details',
];

/** A history text as listHistoryJson gives it (a string or its UTF-8 bytes), parsed; null for none. */
const parseText = (text: string | Buffer | undefined): unknown => (text === undefined ? null : JSON.parse(text.toString()));

/**
 * Checks that listHistoryJson's page is listHistory's: the same rows (each text parses to the row
 * listHistory returns, members in the same order), the same order, the same next cursor.
 */
function sameJsonPage(t: TapTest, json: HistoryJsonPage, page: { rows: HistoryRow[]; next_cursor: string | null }, what: string): void {
  const parsed = json.rows.map((text) => parseText(text) as HistoryRow);
  t.strictSame(json.ids, parsed.map((r) => r?.id), `${what}: ids in the order of the rows`);
  t.strictSame(parsed, page.rows, `${what}: listHistoryJson has listHistory's rows`);
  if (!parsed.every((r) => JSON.stringify(Object.keys(r)) === JSON.stringify(HISTORY_KEYS))) t.fail(`${what}: members in the order of a history row`);
  t.equal(json.next_cursor, page.next_cursor, `${what}: and its next cursor`);
}

/**
 * Walks every page of a history query; each page at most `limit` rows, and listHistoryJson
 * answering every page as listHistory does.
 */
async function walk(t: TapTest, storage: Storage, q: Omit<HistoryQuery, 'cursor'>): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  for (;;) {
    const query = cursor === undefined ? q : { ...q, cursor };
    const page = await storage.listHistory(query);
    sameJsonPage(t, await storage.listHistoryJson(query), page, `page ${pages + 1}`);
    pages += 1;
    if (page.rows.length > q.limit) t.fail(`page ${pages} has ${page.rows.length} rows, limit ${q.limit}`);
    ids.push(...page.rows.map((r) => r.id));
    if (page.next_cursor === null) break;
    if (page.rows.length === 0) t.fail('a page with no rows must not offer a next cursor');
    cursor = page.next_cursor;
    if (pages > 500) throw new Error('history pagination does not end');
  }
  return { ids, pages };
}

/**
 * The behaviour every Storage adapter must have. Each subtest gets its own empty, migrated store,
 * so they neither see nor depend on each other's rows.
 */
export function storageContract(t: TapTest, name: string, open: OpenStorage): void {
  const fresh = async (t: TapTest): Promise<ContractStorage> => {
    const { storage, cleanup } = await open();
    t.teardown(cleanup);
    const statuses = await storage.migrate();
    if (!statuses.every((s) => s.status === 'applied')) t.fail('a new store has every migration pending');
    return storage;
  };

  t.test(`${name}: migrate() is idempotent`, async (t) => {
    const { storage, cleanup } = await open();
    t.teardown(cleanup);
    await storage.ping();
    const files = readMigrations(storage.driver.migrationsFolder).map((f) => f.name);
    t.ok(files.length > 0, 'there are migrations');
    const first = await storage.migrate();
    t.strictSame(first, files.map((n) => ({ name: n, status: 'applied' })));
    const second = await storage.migrate();
    t.strictSame(second, files.map((n) => ({ name: n, status: 'already-applied' })));
    t.strictSame(await storage.appliedMigrations(), files);
  });

  t.test(`${name}: create, get and getByName round-trip every field`, async (t) => {
    const storage = await fresh(t);
    for (const p of [fullPolicy('full-policy'), makePolicy('plain-policy', { scale_down_rules: [], schedules: [] })]) {
      const created = await storage.createPolicy(p);
      t.strictSame(created, p, `${p.name}: create answers the policy`);
      t.strictSame(await storage.getPolicy(p.id), p, `${p.name}: get`);
      t.strictSame(await storage.getPolicyByName(p.name), p, `${p.name}: getByName`);
    }
    const full = await storage.getPolicyByName('full-policy');
    t.equal(full?.scale_up_rules[1]?.threshold, 0.75, 'fractional thresholds survive');
    t.strictSame(full?.scale_up_rules.map((r) => r.metric), ['max(philotes_cdc_lag_seconds{source="orders"})', 'avg(cpu)'], 'rule order kept');
    t.strictSame(full?.schedules.map((s) => s.cron_expression), ['0 8 * * 1-5', '0 20 * * *'], 'schedule order kept');
    t.equal(await storage.getPolicy(randomUUID()), undefined, 'unknown id');
    t.equal(await storage.getPolicyByName('no-such-policy'), undefined, 'unknown name');
  });

  t.test(`${name}: policyId finds a policy by id or by name, and nothing else`, async (t) => {
    const storage = await fresh(t);
    const a = await storage.createPolicy(makePolicy('id-by-name'));
    const b = await storage.createPolicy(makePolicy('other-name'));
    t.equal(await storage.policyId('id', a.id), a.id, 'by id');
    t.equal(await storage.policyId('name', 'id-by-name'), a.id, 'by name');
    t.equal(await storage.policyId('name', 'other-name'), b.id, 'another by name');
    t.equal(await storage.policyId('id', randomUUID()), undefined, 'unknown id');
    t.equal(await storage.policyId('name', 'no-such-policy'), undefined, 'unknown name');
    t.equal(await storage.policyId('name', a.id), undefined, 'an id is not a name');
    t.equal(await storage.policyId('id', 'id-by-name'), undefined, 'a name is not an id');
    await storage.deletePolicy(a.id);
    t.equal(await storage.policyId('id', a.id), undefined, 'deleted');
  });

  t.test(`${name}: policy_exists lists a policy's rows only while the policy exists`, async (t) => {
    const storage = await fresh(t);
    const a = await storage.createPolicy(makePolicy('listed-while-it-exists'));
    for (let i = 0; i < 3; i += 1) await storage.appendHistory(historyRow({ policy_id: a.id, policy_name: a.name }));
    const q = { limit: 10, policy_id: a.id, policy_exists: true };
    t.equal((await storage.listHistory(q)).rows.length, 3, 'listHistory: its three rows');
    t.equal((await storage.listHistoryJson(q)).ids.length, 3, 'listHistoryJson: its three rows');
    t.equal((await storage.listHistoryJson(q, () => true)).ids.length, 3, 'listHistoryJson, keys only: its three rows');
    await storage.deletePolicy(a.id);
    t.equal((await storage.listHistory(q)).rows.length, 0, 'deleted: none listed');
    t.equal((await storage.listHistoryJson(q)).ids.length, 0, 'deleted: none in the JSON page');
    t.equal((await storage.listHistoryJson(q, () => true)).ids.length, 0, 'deleted: no keys');
    t.equal((await storage.listHistory({ limit: 10, policy_id: a.id })).rows.length, 3, 'without policy_exists the rows outlive the policy');
  });

  t.test(`${name}: times in any ISO form are stored as instants`, async (t) => {
    const storage = await fresh(t);
    // Same instant order, different spellings: no millis, an offset, millis.
    const a = makePolicy('time-a', {}, { now: '2026-01-28T12:00:00Z' });
    const b = makePolicy('time-b', {}, { now: '2026-01-28T12:00:00.500Z' });
    const c = makePolicy('time-c', {}, { now: '2026-01-28T14:00:01+02:00' });
    a.created_at = '2026-01-28T12:00:00Z';
    c.created_at = '2026-01-28T14:00:01+02:00';
    for (const p of [c, a, b]) await storage.createPolicy(p);
    const got = await storage.getPolicy(a.id);
    t.equal(got?.created_at, '2026-01-28T12:00:00.000Z', 'answered in canonical UTC form');
    const list = await storage.listPolicies({ limit: 10, offset: 0 });
    t.strictSame(list.policies.map((p) => p.name), ['time-a', 'time-b', 'time-c'], 'ordered by instant, not by spelling');
  });

  t.test(`${name}: listPolicies orders, pages, filters and counts`, async (t) => {
    const storage = await fresh(t);
    const specs: Array<[string, string, boolean, number]> = [
      ['list-c', 'trino', true, 30],
      ['list-a', 'cdc-worker', true, 10],
      ['list-e', 'cdc-worker', false, 50],
      ['list-b', 'trino', false, 20],
      ['list-d', 'cdc-worker', true, 40],
    ];
    for (const [n, type, enabled, s] of specs) {
      await storage.createPolicy(makePolicy(n, { target_type: type, enabled }, { now: at(s) }));
    }
    const names = async (q: Parameters<Storage['listPolicies']>[0]): Promise<[string[], number]> => {
      const r = await storage.listPolicies(q);
      return [r.policies.map((p) => p.name), r.total];
    };
    t.strictSame(await names({ limit: 100, offset: 0 }), [['list-a', 'list-b', 'list-c', 'list-d', 'list-e'], 5], 'oldest first');
    t.strictSame(await names({ limit: 2, offset: 0 }), [['list-a', 'list-b'], 5], 'first page, total of all');
    t.strictSame(await names({ limit: 2, offset: 2 }), [['list-c', 'list-d'], 5], 'second page');
    t.strictSame(await names({ limit: 2, offset: 4 }), [['list-e'], 5], 'last page');
    t.strictSame(await names({ limit: 2, offset: 10 }), [[], 5], 'past the end');
    t.strictSame(await names({ limit: 100, offset: 0, enabled: true }), [['list-a', 'list-c', 'list-d'], 3], 'enabled');
    t.strictSame(await names({ limit: 100, offset: 0, enabled: false }), [['list-b', 'list-e'], 2], 'disabled');
    t.strictSame(await names({ limit: 100, offset: 0, target_type: 'trino' }), [['list-b', 'list-c'], 2], 'target_type');
    t.strictSame(await names({ limit: 1, offset: 1, target_type: 'cdc-worker', enabled: true }), [['list-d'], 2], 'filters combine with paging');
    t.strictSame(await names({ limit: 100, offset: 0, target_type: 'nodes' }), [[], 0], 'no match');
    t.strictSame(await names({ limit: 100, offset: 0, source: 'api' }), [['list-a', 'list-b', 'list-c', 'list-d', 'list-e'], 5], 'source');
    const listed = await storage.listPolicies({ limit: 1, offset: 0 });
    t.strictSame(listed.policies[0], await storage.getPolicyByName('list-a'), 'listed policies carry their rules and schedules');
    t.strictSame((await storage.listEnabledPolicies()).map((p) => p.name), ['list-a', 'list-c', 'list-d'], 'listEnabledPolicies');
  });

  t.test(`${name}: replacePolicy replaces children and keeps created_at`, async (t) => {
    const storage = await fresh(t);
    const original = await storage.createPolicy(makePolicy('replace-me', {}, { now: at(0) }));
    const other = await storage.createPolicy(makePolicy('bystander', {}, { now: at(0) }));
    const next = makePolicy(
      'replace-me-renamed',
      {
        max_replicas: 20,
        description: 'second version',
        scale_up_rules: [{ metric: 'new_metric', operator: 'gt', threshold: 1, scale_by: 3 }],
        scale_down_rules: [],
        schedules: [{ cron_expression: '*/5 * * * *', desired_replicas: 3, duration: '1h' }],
      },
      { now: at(100) },
    );
    next.id = original.id;
    next.created_at = at(50); // a caller cannot move created_at
    const replaced = await storage.replacePolicy(next);
    const stored = await storage.getPolicy(original.id);
    t.strictSame(replaced, stored, 'answers what is stored');
    t.equal(stored?.created_at, original.created_at, 'created_at kept');
    t.equal(stored?.updated_at, at(100), 'updated_at moved');
    t.equal(stored?.name, 'replace-me-renamed');
    t.equal(stored?.max_replicas, 20);
    t.strictSame(stored?.scale_up_rules, next.scale_up_rules, 'new up rules');
    t.strictSame(stored?.scale_down_rules, [], 'down rules removed');
    t.strictSame(stored?.schedules, next.schedules, 'new schedules');
    t.equal(await ruleRows(storage, original.id), 1, 'old rule rows gone');
    t.equal(await scheduleRows(storage, original.id), 1, 'old schedule rows gone');
    t.equal(await storage.getPolicyByName('replace-me'), undefined, 'old name free');
    t.strictSame(await storage.getPolicy(other.id), other, 'other policies untouched');

    const ghost = makePolicy('ghost');
    t.equal(await storage.replacePolicy(ghost), undefined, 'unknown id: undefined');
    t.equal(await storage.getPolicy(ghost.id), undefined, 'and nothing is created');
    t.equal(await ruleRows(storage, ghost.id), 0, 'no stray rules');

    const clash = makePolicy('bystander');
    clash.id = original.id;
    await expectCode(t, storage.replacePolicy(clash), 'DUPLICATE_NAME', 'renaming onto a taken name');
    t.strictSame(await storage.getPolicy(original.id), stored, 'the clash changed nothing');
  });

  t.test(`${name}: setEnabled`, async (t) => {
    const storage = await fresh(t);
    const p = await storage.createPolicy(makePolicy('toggle'));
    const off = await storage.setEnabled(p.id, false, at(60));
    t.equal(off?.enabled, false);
    t.equal(off?.updated_at, at(60));
    t.strictSame(off, { ...p, enabled: false, updated_at: at(60) }, 'only enabled and updated_at change');
    t.strictSame(await storage.getPolicy(p.id), off, 'stored');
    t.strictSame((await storage.listEnabledPolicies()).map((x) => x.id), [], 'no longer listed as enabled');
    t.strictSame(await storage.setEnabled(p.id, false, at(90)), off, 'disabling a disabled policy changes nothing, updated_at included');
    const on = await storage.setEnabled(p.id, true, at(120));
    t.equal(on?.enabled, true);
    t.equal(on?.updated_at, at(120));
    t.strictSame((await storage.listEnabledPolicies()).map((x) => x.id), [p.id]);
    t.equal(await storage.setEnabled(randomUUID(), true, at(1)), undefined, 'unknown id');
  });

  t.test(`${name}: replacePolicy keeps the ids of unchanged rules and schedules, and writes nothing for an unchanged policy`, async (t) => {
    const storage = await fresh(t);
    const original = await storage.createPolicy(makePolicy('stable', {}, { now: at(0) }));
    const revision = await storage.policiesRevision();
    // Normalised again: new random rule and schedule ids, a new updated_at, the same content.
    const same = makePolicy('stable', {}, { now: at(100) });
    same.id = original.id;
    t.strictSame(await storage.replacePolicy(same), original, 'the same content: answered as stored, with its ids and updated_at');
    t.strictSame(await storage.getPolicy(original.id), original, 'nothing written');
    t.equal(await storage.policiesRevision(), revision, 'the revision did not move');

    const base = input('stable');
    const [lag, cpu] = base.scale_up_rules ?? [];
    const [office, evening] = base.schedules ?? [];
    if (lag === undefined || cpu === undefined || office === undefined || evening === undefined) throw new Error('fixture has two rules and two schedules');
    const next = makePolicy(
      'stable',
      {
        // A new rule first, the lag rule spelled differently (300 s is its 5m), the cpu rule changed.
        scale_up_rules: [{ metric: 'new_metric', operator: 'gt', threshold: 1, scale_by: 1 }, { ...lag, duration: undefined, duration_seconds: 300 }, { ...cpu, threshold: 0.9 }],
        schedules: [evening, office],
      },
      { now: at(200) },
    );
    next.id = original.id;
    const changed = await storage.replacePolicy(next);
    const before = [...original.scale_up_rules, ...original.scale_down_rules, ...original.schedules].map((x) => x.id);
    t.equal(changed?.updated_at, at(200), 'a change moves updated_at');
    t.notOk(before.includes(changed?.scale_up_rules[0]?.id ?? ''), 'a new rule gets a new id');
    t.equal(changed?.scale_up_rules[1]?.id, original.scale_up_rules[0]?.id, 'an unchanged rule keeps its id, at another position too');
    t.notOk(before.includes(changed?.scale_up_rules[2]?.id ?? ''), 'a changed rule gets a new id');
    t.equal(changed?.scale_down_rules[0]?.id, original.scale_down_rules[0]?.id, 'the untouched direction keeps its ids');
    t.strictSame(changed?.schedules.map((s) => s.id), [original.schedules[1]?.id, original.schedules[0]?.id], 'reordered schedules keep their ids');
    t.strictSame(await storage.getPolicy(original.id), changed, 'answers what is stored');

    const twin = { metric: 'twin', operator: 'gt' as const, threshold: 1, scale_by: 1 };
    const two = makePolicy('stable', { scale_up_rules: [twin, twin], scale_down_rules: [], schedules: [] }, { now: at(300) });
    two.id = original.id;
    const withTwo = await storage.replacePolicy(two);
    const three = makePolicy('stable', { scale_up_rules: [twin, twin, twin], scale_down_rules: [], schedules: [] }, { now: at(400) });
    three.id = original.id;
    const withThree = await storage.replacePolicy(three);
    const ids = withThree?.scale_up_rules.map((r) => r.id) ?? [];
    t.strictSame(ids.slice(0, 2), withTwo?.scale_up_rules.map((r) => r.id), 'identical rules keep their ids in order');
    t.equal(new Set(ids).size, 3, 'and the added twin gets a new one');
  });

  t.test(`${name}: syncSource leaves an unchanged policy as stored, and keeps the ids of unchanged rules of a changed one`, async (t) => {
    const storage = await fresh(t);
    const file = 'policies/stable.yaml';
    await storage.syncSource(file, [makePolicy('file-a', {}, { now: at(0) }), makePolicy('file-b', {}, { now: at(0) })]);
    const a = await storage.getPolicyByName('file-a');
    const b = await storage.getPolicyByName('file-b');
    const revision = await storage.policiesRevision();
    // The file read again, as at every start: new ids and times from normalisation, the same content.
    await storage.syncSource(file, [makePolicy('file-a', {}, { now: at(100) }), makePolicy('file-b', {}, { now: at(100) })]);
    t.strictSame(await storage.getPolicyByName('file-a'), a, 'unchanged: the same ids and updated_at');
    t.strictSame(await storage.getPolicyByName('file-b'), b);
    t.equal(await storage.policiesRevision(), revision, 'nothing written');

    await storage.syncSource(file, [makePolicy('file-a', { max_replicas: 7 }, { now: at(200) }), makePolicy('file-b', {}, { now: at(200) })]);
    const a2 = await storage.getPolicyByName('file-a');
    t.equal(a2?.max_replicas, 7);
    t.equal(a2?.updated_at, at(200), 'a changed policy moves updated_at');
    t.strictSame(a2?.scale_up_rules.map((r) => r.id), a?.scale_up_rules.map((r) => r.id), 'its unchanged rules keep their ids');
    t.strictSame(a2?.schedules.map((s) => s.id), a?.schedules.map((s) => s.id), 'and its schedules');
    t.strictSame(await storage.getPolicyByName('file-b'), b, 'the unchanged policy beside it is left as stored');

    await storage.syncSource('policies/renamed.yaml', [makePolicy('file-a', { max_replicas: 7 }, { now: at(300) })], { adoptFrom: [file] });
    const a3 = await storage.getPolicyByName('file-a');
    t.equal(a3?.id, a?.id, 'adopted by a renamed file: the same policy');
    t.equal(a3?.source, 'policies/renamed.yaml', 'under its new source');
    t.equal(a3?.updated_at, at(300), 'a new source is a write');
    t.strictSame(a3?.scale_up_rules.map((r) => r.id), a?.scale_up_rules.map((r) => r.id), 'rule ids kept');
  });

  t.test(`${name}: target tracking and behaviour round-trip, and unchanged entries keep their ids`, async (t) => {
    const storage = await fresh(t);
    const tracking: PolicyInput['target_tracking'] = [
      { metric: 'sum(rate(philotes_buffer_events_processed_total[5m]))', target_per_replica: 1000 },
      { metric: 'avg(philotes_worker_cpu_ratio)', target_value: 0.7, tolerance: 0.05, duration: '2m', aggregation: 'avg', source: 'prometheus' },
    ];
    const behavior: PolicyInput['behavior'] = {
      scale_down_stabilization: '10m',
      scale_up_limit: { replicas: 4, percent: 100, period: '15s' },
      scale_down_limit: { percent: 10, period_seconds: 60, select: 'min' },
    };
    const p = makePolicy('tracked', { target_tracking: tracking, behavior });
    t.strictSame(await storage.createPolicy(p), p);
    const read = await storage.getPolicy(p.id);
    t.strictSame(read, p, 'every field of the entries and the behaviour');
    t.equal(read?.target_tracking[1]?.tolerance, 0.05);
    t.strictSame(read?.behavior.scale_down_limit, { replicas: null, percent: 10, period: '1m', period_seconds: 60, select: 'min' });
    const [events, cpu] = tracking ?? [];
    const next = makePolicy('tracked', { target_tracking: [{ ...cpu, tolerance: 0.2 } as NonNullable<typeof cpu>, events as NonNullable<typeof events>], behavior }, { now: at(100) });
    next.id = p.id;
    const changed = await storage.replacePolicy(next);
    t.equal(changed?.target_tracking[1]?.id, p.target_tracking[0]?.id, 'the unchanged entry keeps its id, moved');
    t.notOk([p.target_tracking[0]?.id, p.target_tracking[1]?.id].includes(changed?.target_tracking[0]?.id), 'the changed one gets a new id');
    t.strictSame(await storage.getPolicy(p.id), changed);
    const plain = await storage.createPolicy(makePolicy('untracked'));
    t.strictSame((await storage.getPolicy(plain.id))?.target_tracking, []);
    t.equal((await storage.getPolicy(plain.id))?.behavior.scale_down_stabilization_seconds, 0);
  });

  t.test(`${name}: condition trees and rule names round-trip; a new tree is a change, the same one is not`, async (t) => {
    const storage = await fresh(t);
    const rule = (name: string, scale_by: number) => ({ name, metric: `m_${name}`, operator: 'gt' as const, threshold: 1, scale_by });
    const tree: PolicyInput['scale_up_when'] = { any: [{ all: ['lag_high', 'buffer_deep'] }, { not: 'paused' }] };
    const extra: Partial<PolicyInput> = {
      scale_up_rules: [rule('lag_high', 2), rule('buffer_deep', 1), rule('paused', 1)],
      scale_down_rules: [rule('idle', -1)],
      scale_up_when: tree,
      scale_down_when: 'idle',
    };
    const p = makePolicy('composite', extra);
    t.equal(p.scale_up_match, null, 'no match beside a tree');
    t.strictSame(await storage.createPolicy(p), p);
    const read = await storage.getPolicy(p.id);
    t.strictSame(read, p, 'the trees, the null matches and every rule name');
    t.strictSame(read?.scale_up_when, tree);
    t.strictSame(read?.scale_down_rules.map((r) => r.name), ['idle']);
    const same = makePolicy('composite', extra, { now: at(100) });
    same.id = p.id;
    t.equal((await storage.replacePolicy(same))?.updated_at, p.updated_at, 'the same tree writes nothing');
    const next = makePolicy('composite', { ...extra, scale_up_when: { all: ['lag_high', 'buffer_deep', { not: 'paused' }] } }, { now: at(200) });
    next.id = p.id;
    const changed = await storage.replacePolicy(next);
    t.equal(changed?.updated_at, at(200), 'a new tree is a change');
    t.strictSame(changed?.scale_up_rules.map((r) => r.id), p.scale_up_rules.map((r) => r.id), 'its unchanged rules keep their ids');
    const flat = await storage.createPolicy(makePolicy('flat'));
    const plain = await storage.getPolicy(flat.id);
    t.equal(plain?.scale_up_when, null);
    t.equal(plain?.scale_up_match, 'all');
  });

  t.test(`${name}: target_ref round-trips; a policy without one reads back null; a change of it is a write`, async (t) => {
    const storage = await fresh(t);
    const p = makePolicy('referenced', { target_ref: { kind: 'ScaledObject', name: 'orders-consumer', namespace: 'cdc' } });
    t.strictSame(p.target_ref, { kind: 'ScaledObject', name: 'orders-consumer', namespace: 'cdc', api_version: null });
    t.strictSame(await storage.createPolicy(p), p);
    t.strictSame(await storage.getPolicy(p.id), p, 'kind, name, namespace and a null api_version');
    const next = makePolicy('referenced', { target_ref: { kind: 'Deployment', name: 'orders-consumer', namespace: 'cdc', api_version: 'apps/v1' } }, { now: at(100) });
    next.id = p.id;
    const changed = await storage.replacePolicy(next);
    t.strictSame(changed?.target_ref, { kind: 'Deployment', name: 'orders-consumer', namespace: 'cdc', api_version: 'apps/v1' });
    t.equal(changed?.updated_at, at(100), 'a new target_ref is a change');
    t.strictSame((await storage.getPolicy(p.id))?.target_ref, changed?.target_ref);
    const plain = await storage.createPolicy(makePolicy('unreferenced'));
    t.equal((await storage.getPolicy(plain.id))?.target_ref, null);
  });

  t.test(`${name}: a pause is kept apart from the policy's content`, async (t) => {
    const storage = await fresh(t);
    const p = await storage.createPolicy(makePolicy('pausable', {}, { now: at(0) }));
    t.equal(p.paused_at, null, 'a new policy is not paused');
    t.equal(p.paused_reason, null);
    const revision = await storage.policiesRevision();
    const paused = await storage.setPaused(p.id, { at: at(10), reason: 'incident 42' });
    t.strictSame(paused, { ...p, paused_at: at(10), paused_reason: 'incident 42' }, 'only the pause changes: updated_at stays');
    t.strictSame(await storage.getPolicy(p.id), paused, 'stored');
    t.not(await storage.policiesRevision(), revision, 'the revision moves, so the loop lists the policies again');
    t.strictSame(await storage.listEnabledPolicies(), [], 'a paused policy is not listed for the loop');
    t.strictSame(await storage.listEnabledPolicyVersions(), []);
    t.equal((await storage.listPolicies({ limit: 10, offset: 0, enabled: true })).total, 1, 'it is still enabled');
    t.strictSame(await storage.setPaused(p.id, { at: at(20), reason: 'another' }), paused, 'pausing a paused policy keeps the first pause');

    const next = makePolicy('pausable', { max_replicas: 9 }, { now: at(30) });
    next.id = p.id;
    t.match(await storage.replacePolicy(next), { max_replicas: 9, updated_at: at(30), paused_at: at(10), paused_reason: 'incident 42' }, 'a replacement keeps the pause');
    const file = 'policies/paused.yaml';
    await storage.syncSource(file, [makePolicy('from-file', {}, { now: at(0) })]);
    const f = await storage.getPolicyByName('from-file');
    await storage.setPaused(f?.id ?? '', { at: at(40), reason: null });
    await storage.syncSource(file, [makePolicy('from-file', { max_replicas: 3 }, { now: at(50) })]);
    t.match(await storage.getPolicyByName('from-file'), { max_replicas: 3, paused_at: at(40), paused_reason: null }, 'a file reload keeps the pause');

    const lifted = await storage.setPaused(p.id, null);
    t.match(lifted, { paused_at: null, paused_reason: null, max_replicas: 9, updated_at: at(30) }, 'lifted');
    t.strictSame((await storage.listEnabledPolicies()).map((x) => x.id), [p.id], 'listed for the loop again');
    t.strictSame(await storage.setPaused(p.id, null), lifted, 'lifting no pause changes nothing');

    await storage.setPaused(p.id, { at: at(60), reason: null });
    const off = await storage.setEnabled(p.id, false, at(70));
    t.match(off, { enabled: false, paused_at: at(60) }, 'disabling keeps the pause');
    const on = await storage.setEnabled(p.id, true, at(80), { liftPause: true });
    t.match(on, { enabled: true, paused_at: null, paused_reason: null, updated_at: at(80) }, 'setEnabled with liftPause enables and lifts it at once');
    t.equal(await storage.setPaused(randomUUID(), { at: at(1), reason: null }), undefined, 'unknown id');
  });

  t.test(`${name}: no change is claimed for a paused policy`, async (t) => {
    const storage = await fresh(t);
    const p = await storage.createPolicy(makePolicy('claims'));
    const base: PolicyState = {
      policy_id: p.id, current_replicas: 2, last_change_at: null, last_change_kind: null,
      consecutive_failures: 0, last_blocked: null, data: {}, updated_at: at(0), version: 0,
    };
    t.equal(await storage.putState(base, { unlessPaused: true }), true, 'an active policy: written');
    await storage.setPaused(p.id, { at: at(5), reason: null });
    t.equal(await storage.putState({ ...base, version: 1, current_replicas: 9 }, { unlessPaused: true }), false, 'paused: refused');
    t.equal((await storage.getState(p.id))?.current_replicas, 2, 'nothing written');
    t.equal(await storage.putState({ ...base, version: 1, current_replicas: 3 }), true, 'a write that claims nothing still lands');
    const fresh2 = await storage.createPolicy(makePolicy('claims-new'));
    await storage.setPaused(fresh2.id, { at: at(5), reason: null });
    t.equal(await storage.putState({ ...base, policy_id: fresh2.id }, { unlessPaused: true }), false, 'no state yet: the first write is refused too');
    await storage.setPaused(p.id, null);
    t.equal(await storage.putState({ ...base, version: 2, current_replicas: 4 }, { unlessPaused: true }), true, 'written again once the pause is lifted');
  });

  t.test(`${name}: the policies revision moves with every policy write, and only then`, async (t) => {
    const storage = await fresh(t);
    let last = await storage.policiesRevision();
    const moved = async (what: string, expected = true): Promise<void> => {
      const now = await storage.policiesRevision();
      t.equal(now !== last, expected, `${what}: ${expected ? 'moved' : 'unchanged'} (${last} -> ${now})`);
      last = now;
    };
    await moved('nothing written', false);
    const p = await storage.createPolicy(makePolicy('rev'));
    await moved('create');
    await storage.replacePolicy({ ...p, max_replicas: 9, updated_at: at(10) });
    await moved('replace');
    await storage.setEnabled(p.id, false, at(20));
    await moved('disable');
    await storage.putState({ policy_id: p.id, current_replicas: 3, last_change_at: at(0), last_change_kind: 'scale_up', consecutive_failures: 0, last_blocked: null, data: {}, updated_at: at(30), version: 0 });
    await storage.appendHistory(historyRow({ policy_id: p.id, policy_name: p.name }));
    await moved('state and history writes', false);
    await storage.syncSource('policies/rev.yaml', [makePolicy('rev-file', {}, { now: at(40) })]);
    await moved('a file synced');
    await storage.syncSource('policies/rev.yaml', []);
    await moved('a file emptied');
    t.equal(await storage.deletePolicy(p.id), true);
    await moved('delete');
    t.equal(await storage.deletePolicy(p.id), false);
    await moved('deleting what is not there', false);
    // Concurrent writers (on PostgreSQL, on different connections and revision rows) each count.
    const before = Number(await storage.policiesRevision());
    await Promise.all(Array.from({ length: 10 }, (_, i) => storage.createPolicy(makePolicy(`rev-many-${i}`))));
    t.equal(Number(await storage.policiesRevision()) - before, 10, 'ten concurrent creates move it by ten');
  });

  t.test(`${name}: deletePolicy cascades to rules, schedules and state; history stays`, async (t) => {
    const storage = await fresh(t);
    const p = await storage.createPolicy(makePolicy('doomed'));
    const keep = await storage.createPolicy(makePolicy('kept'));
    await storage.putState({ policy_id: p.id, current_replicas: 3, last_change_at: at(0), last_change_kind: 'scale_up', consecutive_failures: 0, last_blocked: null, data: {}, updated_at: at(0), version: 0 });
    await storage.putState({ policy_id: keep.id, current_replicas: 2, last_change_at: null, last_change_kind: null, consecutive_failures: 0, last_blocked: null, data: {}, updated_at: at(0), version: 0 });
    const row = await storage.appendHistory(historyRow({ policy_id: p.id, policy_name: p.name }));
    t.equal(await ruleRows(storage, p.id), 3, 'rules before');
    t.equal(await storage.deletePolicy(p.id), true);
    t.equal(await storage.getPolicy(p.id), undefined);
    t.equal(await storage.getPolicyByName('doomed'), undefined);
    t.equal(await ruleRows(storage, p.id), 0, 'rules gone');
    t.equal(await scheduleRows(storage, p.id), 0, 'schedules gone');
    t.equal(await storage.getState(p.id), undefined, 'state gone');
    const history = await storage.listHistory({ limit: 10, policy_id: p.id });
    t.strictSame(history.rows, [row], 'history row stays');
    t.equal(history.rows[0]?.policy_name, 'doomed', 'with the policy name');
    t.equal(history.rows[0]?.policy_id, p.id, 'and the policy id');
    t.equal(await storage.deletePolicy(p.id), false, 'second delete: false');
    t.strictSame(await storage.getPolicy(keep.id), keep, 'other policy untouched');
    t.equal(await ruleRows(storage, keep.id), 3, 'its rules untouched');
    t.equal((await storage.getState(keep.id))?.current_replicas, 2, 'its state untouched');
    const again = await storage.createPolicy(makePolicy('doomed'));
    t.equal((await storage.getPolicyByName('doomed'))?.id, again.id, 'the name is free again');
  });

  t.test(`${name}: names are unique`, async (t) => {
    const storage = await fresh(t);
    const first = await storage.createPolicy(makePolicy('only-one'));
    const second = makePolicy('only-one', { target_type: 'trino' });
    await expectCode(t, storage.createPolicy(second), 'DUPLICATE_NAME', 'second create');
    t.strictSame(await storage.getPolicyByName('only-one'), first, 'the first stays');
    t.equal(await storage.getPolicy(second.id), undefined, 'the second was not stored');
    t.equal(await ruleRows(storage, second.id), 0, 'nor its rules');
    t.equal((await storage.listPolicies({ limit: 10, offset: 0 })).total, 1);
  });

  t.test(`${name}: syncSource upserts by name and removes what a source no longer lists`, async (t) => {
    const storage = await fresh(t);
    const fileA = 'policies/a.yaml';
    const fileB = 'policies/b.yaml';
    await storage.syncSource(fileA, [makePolicy('a-one', {}, { now: at(0) }), makePolicy('a-two', {}, { now: at(0) })]);
    await storage.syncSource(fileB, [makePolicy('b-one', {}, { now: at(0) })]);
    const api = await storage.createPolicy(makePolicy('api-one', {}, { now: at(0) }));
    const aOne = await storage.getPolicyByName('a-one');
    const bOne = await storage.getPolicyByName('b-one');
    t.equal(aOne?.source, fileA, 'source recorded');
    t.equal(bOne?.source, fileB);
    t.equal(await ruleRows(storage, aOne?.id ?? ''), 3, 'children inserted');

    const changed = makePolicy('a-one', { max_replicas: 7, scale_up_rules: [], schedules: [] }, { now: at(100), source: 'ignored' });
    await storage.syncSource(fileA, [changed, makePolicy('a-three', {}, { now: at(100) })]);
    const aOneAfter = await storage.getPolicyByName('a-one');
    t.equal(aOneAfter?.id, aOne?.id, 'an existing name keeps its id');
    t.equal(aOneAfter?.created_at, aOne?.created_at, 'and its created_at');
    t.equal(aOneAfter?.updated_at, at(100));
    t.equal(aOneAfter?.max_replicas, 7, 'fields updated');
    t.equal(aOneAfter?.source, fileA, 'source is the synced one');
    t.strictSame(aOneAfter?.scale_up_rules, [], 'rules replaced');
    t.equal(await ruleRows(storage, aOne?.id ?? ''), 1, 'old rule rows gone');
    t.equal(await storage.getPolicyByName('a-two'), undefined, 'unlisted policy removed');
    t.equal((await storage.getPolicyByName('a-three'))?.source, fileA, 'new policy added');
    t.strictSame(await storage.getPolicyByName('b-one'), bOne, 'other source untouched');
    t.strictSame(await storage.getPolicy(api.id), api, 'api policy untouched');

    // A name another source owns: the whole sync fails and changes nothing.
    const before = (await storage.listPolicies({ limit: 100, offset: 0 })).policies;
    await expectCode(
      t,
      storage.syncSource(fileA, [makePolicy('a-one', { max_replicas: 3 }), makePolicy('api-one')]),
      'DUPLICATE_NAME',
      'sync onto a name of another source',
    );
    t.strictSame((await storage.listPolicies({ limit: 100, offset: 0 })).policies, before, 'nothing changed');

    await storage.syncSource(fileA, []);
    t.strictSame((await storage.listPolicies({ limit: 100, offset: 0, source: fileA })).total, 0, 'empty sync removes the source');
    t.strictSame((await storage.listPolicies({ limit: 100, offset: 0 })).policies.map((p) => p.name).sort(), ['api-one', 'b-one'], 'the others remain');
  });

  t.test(`${name}: history round-trips, newest first, cursor walks every row once`, async (t) => {
    const storage = await fresh(t);
    const full = historyRow({
      policy_id: randomUUID(),
      target_id: '550e8400-e29b-41d4-a716-446655440000',
      action: 'scale_down',
      reason_code: 'cooldown',
      triggered_by: 'schedule',
      dry_run: true,
      status: 'blocked',
      error: 'executor said no',
      executed_at: '2026-01-28T13:00:00+01:00',
      details: { action: 'scale_down', rules: [{ metric: 'm', value: 1.5, held: true, error: null }], nested: { ü: 'ß' } },
    });
    const stored = await storage.appendHistory(full);
    t.equal(stored.executed_at, '2026-01-28T12:00:00.000Z', 'executed_at normalised');
    const [back] = (await storage.listHistory({ limit: 1 })).rows;
    t.strictSame(back, stored, 'every field round-trips');

    // 24 more rows over 5 instants, so many share executed_at; inserted in scrambled order.
    const rows: HistoryRow[] = [stored];
    for (let i = 0; i < 24; i += 1) rows.push(historyRow({ executed_at: at(((i * 7) % 5) * 10 - 20) }));
    for (const r of rows.slice(1).sort(() => Math.random() - 0.5)) await storage.appendHistory(r);
    const expected = newestFirst(rows);
    t.strictSame((await storage.listHistory({ limit: 1000 })).rows.map((r) => r.id), expected, 'newest first, then id');
    t.equal((await storage.listHistory({ limit: 25 })).next_cursor, null, 'exactly one full page: no cursor');
    for (const limit of [1, 3, 4, 7, 24]) {
      const { ids, pages } = await walk(t, storage, { limit });
      t.strictSame(ids, expected, `limit ${limit}: every row once, in order`);
      t.equal(pages, Math.ceil(25 / limit), `limit ${limit}: page count`);
    }
    // Rows appended after a cursor was issued with an older time do not disturb the walk.
    const page1 = await storage.listHistory({ limit: 5 });
    await storage.appendHistory(historyRow({ executed_at: at(1000) }));
    const rest = await walk(t, storage, { limit: 5 });
    t.equal(rest.ids.length, 26);
    const page2 = await storage.listHistory({ limit: 5, cursor: page1.next_cursor ?? '' });
    t.strictSame(page2.rows.map((r) => r.id), expected.slice(5, 10), 'a cursor is stable under appends');
  });

  t.test(`${name}: history filters`, async (t) => {
    const storage = await fresh(t);
    const p1 = randomUUID();
    const p2 = randomUUID();
    const rows: HistoryRow[] = [];
    for (let i = 0; i < 30; i += 1) {
      rows.push(
        historyRow({
          policy_id: i % 3 === 0 ? p2 : p1,
          action: i % 2 === 0 ? 'scale_up' : 'none',
          dry_run: i % 5 === 0,
          executed_at: at(Math.floor(i / 2) * 60),
        }),
      );
    }
    for (const r of rows) await storage.appendHistory(r);
    const cases: Array<[string, Omit<HistoryQuery, 'limit' | 'cursor'>, (r: HistoryRow) => boolean]> = [
      ['policy_id', { policy_id: p2 }, (r) => r.policy_id === p2],
      ['action', { action: 'none' }, (r) => r.action === 'none'],
      ['dry_run true', { dry_run: true }, (r) => r.dry_run],
      ['dry_run false', { dry_run: false }, (r) => !r.dry_run],
      ['since (inclusive)', { since: at(300) }, (r) => r.executed_at >= at(300)],
      ['until (exclusive)', { until: at(300) }, (r) => r.executed_at < at(300)],
      ['since and until', { since: at(120), until: at(480) }, (r) => r.executed_at >= at(120) && r.executed_at < at(480)],
      ['since with an offset', { since: '2026-01-28T13:05:00+01:00' }, (r) => r.executed_at >= at(300)],
      ['everything', { policy_id: p1, action: 'scale_up', dry_run: false, since: at(60) }, (r) => r.policy_id === p1 && r.action === 'scale_up' && !r.dry_run && r.executed_at >= at(60)],
      ['no match', { policy_id: randomUUID() }, () => false],
    ];
    for (const [label, filter, keep] of cases) {
      const expected = newestFirst(rows.filter(keep));
      if (label !== 'no match') t.ok(expected.length > 0 && expected.length < rows.length, `${label}: the case selects some rows`);
      t.strictSame((await walk(t, storage, { ...filter, limit: 4 })).ids, expected, label);
    }
  });

  t.test(`${name}: a cursor the server did not issue is BAD_REQUEST`, async (t) => {
    const storage = await fresh(t);
    await storage.appendHistory(historyRow());
    const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
    for (const cursor of ['', 'not-a-cursor!', b64({ at: at(0) }), b64(['not a time', 'x']), b64([at(0)]), b64([at(0), 5]), 'W10']) {
      await expectCode(t, storage.listHistory({ limit: 10, cursor }), 'BAD_REQUEST', `cursor ${JSON.stringify(cursor)}`);
      await expectCode(t, storage.listHistoryJson({ limit: 10, cursor }), 'BAD_REQUEST', `listHistoryJson, cursor ${JSON.stringify(cursor)}`);
    }
  });

  t.test(`${name}: each row's stored answer is the row as read back, whatever its content`, async (t) => {
    const storage = await fresh(t);
    const odd = 'quotes " and \\ backslash, newline\n, tab\t, U+2028 \u2028, NUL-free control \u0001, emoji 🚀, ünïcödé';
    const rows = [
      historyRow({ details: null }),
      historyRow({
        policy_id: randomUUID(),
        policy_name: odd,
        target_id: odd,
        reason: odd,
        error: odd,
        reason_code: 'at_max',
        executed_at: '2026-01-28T13:00:01.5+01:00',
        details: {
          reason: odd,
          numbers: [0, -1, 0.1, 1 / 3, 1e21, 1.5e-7, 2 ** 53, -0, 123456789.123],
          nested: { deep: [{ a: null, b: true, c: [] }, {}], '': 'empty key', '10': 'numeric key', b: 1, a: 2 },
          rules: [{ id: randomUUID(), metric: 'max(lag{source="orders"})', value: 61.25, held: true, error: null }],
        },
      }),
      historyRow({ previous_replicas: 0, new_replicas: 0, action: 'none', status: 'failed', triggered_by: 'api', dry_run: true, details: { empty: {} } }),
    ];
    for (const r of rows) await storage.appendHistory(r);
    const page = await storage.listHistory({ limit: 10 });
    sameJsonPage(t, await storage.listHistoryJson({ limit: 10 }), page, 'every row');
    t.strictSame(new Set(page.rows.map((r) => r.id)), new Set(rows.map((r) => r.id)), 'all three rows');
    const stored = await storage.driver.all<{ n: unknown }>('SELECT COUNT(*) AS n FROM scaling_history WHERE answer_json IS NULL');
    t.equal(Number(stored[0]?.n), 0, 'appendHistory stores every row with its answer');
  });

  t.test(`${name}: rows written before their answer was stored are answered the same, and never rewritten`, async (t) => {
    const { storage, cleanup } = await open();
    t.teardown(cleanup);
    // The schema as the previous version left it: every migration before 011.
    const folder = storage.driver.migrationsFolder;
    const before = await mkdtemp(join(tmpdir(), 'philotes-migrations-'));
    t.teardown(() => rm(before, { recursive: true, force: true }));
    await mkdir(join(before, folder));
    for (const f of readMigrations(folder).filter((m) => m.name < '011')) await copyFile(join(packageRoot(), 'migrations', folder, f.name), join(before, folder, f.name));
    await migrate(storage.driver, before);
    const p = randomUUID();
    const old: HistoryRow[] = [];
    for (let i = 0; i < 12; i += 1) {
      old.push(historyRow({ policy_id: i % 2 === 0 ? p : randomUUID(), action: i % 3 === 0 ? 'none' : 'scale_up', executed_at: at(i * 10), details: i % 4 === 0 ? null : { step: i, reason: `ü ${i}`, list: [i, i / 2] } }));
    }
    // What the previous version's appendHistory wrote: the row's columns, no answer.
    for (const r of old) {
      await storage.driver.run(
        `INSERT INTO scaling_history (id, policy_id, policy_name, action, target_type, target_id, previous_replicas,
           new_replicas, reason, reason_code, triggered_by, dry_run, status, error, executed_at, details)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [r.id, r.policy_id, r.policy_name, r.action, r.target_type, r.target_id, r.previous_replicas, r.new_replicas, r.reason,
          r.reason_code, r.triggered_by, r.dry_run, r.status, r.error, r.executed_at, r.details === null ? null : JSON.stringify(r.details)],
      );
    }
    t.strictSame((await storage.migrate()).filter((m) => m.status === 'applied').map((m) => m.name), readMigrations(folder).filter((m) => m.name >= '011').map((m) => m.name), 'then the rest migrates');
    // New rows interleaved in time with the old ones (one at the same instant as an old row).
    const fresh: HistoryRow[] = [];
    for (let i = 0; i < 12; i += 1) fresh.push(historyRow({ policy_id: i % 2 === 0 ? p : randomUUID(), action: i % 3 === 0 ? 'none' : 'scale_up', executed_at: at(i * 10 + (i === 5 ? 0 : 5)), details: { step: i } }));
    for (const r of fresh) await storage.appendHistory(r);
    const all = [...old, ...fresh];
    const legacy = await storage.driver.all<{ id: string }>('SELECT id FROM scaling_history WHERE answer_json IS NULL');
    t.strictSame(new Set(legacy.map((r) => r.id)), new Set(old.map((r) => r.id)), 'the old rows keep no answer: nothing rewrites them');
    // Known but for one old and one new row: those two read by locator, the old one serialised.
    const top = await storage.listHistory({ limit: 8 });
    const unknown = new Set([newestFirst(old)[0], newestFirst(fresh)[0]]);
    const mostly = await storage.listHistoryJson({ limit: 8 }, (id) => !unknown.has(id));
    t.strictSame(mostly.ids, top.rows.map((r) => r.id), 'mostly known: the page\'s rows');
    t.strictSame(
      mostly.rows.map((text, i) => (text === undefined ? null : [mostly.ids[i], parseText(text)])).filter((x) => x !== null),
      top.rows.filter((r) => unknown.has(r.id)).map((r) => [r.id, JSON.parse(JSON.stringify(r))]),
      'mostly known: the old row read by its locator and answered as listHistory reads it, the new one from its stored text',
    );
    for (const [label, q, keep] of [
      ['all', {}, () => true],
      ['policy_id', { policy_id: p }, (r: HistoryRow) => r.policy_id === p],
      ['action', { action: 'none' }, (r: HistoryRow) => r.action === 'none'],
      ['since, until', { since: at(20), until: at(90) }, (r: HistoryRow) => r.executed_at >= at(20) && r.executed_at < at(90)],
    ] as Array<[string, Omit<HistoryQuery, 'limit' | 'cursor'>, (r: HistoryRow) => boolean]>) {
      for (const limit of [1, 5, 100]) {
        t.strictSame((await walk(t, storage, { ...q, limit })).ids, newestFirst(all.filter(keep)), `${label}, limit ${limit}: old and new rows, in order`);
      }
    }
    // The old rows are the oldest: retention deletes them first, and pages simply lose them.
    t.equal(await storage.pruneHistory(at(45), 100), 9, 'the rows before 0:45 pruned');
    t.strictSame((await walk(t, storage, { limit: 4 })).ids, newestFirst(all.filter((r) => r.executed_at >= at(45))), 'what is left, in order');
  });

  t.test(`${name}: paging while rows are appended and pruned`, async (t) => {
    const storage = await fresh(t);
    const rows: HistoryRow[] = [];
    for (let i = 0; i < 40; i += 1) rows.push(historyRow({ executed_at: at(i * 10), details: { i } }));
    for (const r of rows) await storage.appendHistory(r);
    const order = newestFirst(rows);
    const seen: string[] = [];
    const first = await storage.listHistoryJson({ limit: 10 });
    seen.push(...first.rows.map((x) => (parseText(x) as HistoryRow).id));
    t.strictSame(seen, order.slice(0, 10), 'the newest ten');
    // Appended while paging: a newer row is not on the later pages; a row older than the cursor is.
    const newer = historyRow({ executed_at: at(1000) });
    const behind = historyRow({ executed_at: at(55) });
    await storage.appendHistory(newer);
    await storage.appendHistory(behind);
    // Retention deletes the oldest rows meanwhile (before 0:50, the cursor being at 5:00).
    t.equal(await storage.pruneHistory(at(50), 500), 5, 'five rows pruned');
    let cursor = first.next_cursor;
    while (cursor !== null) {
      const q = { limit: 10, cursor };
      const page = await storage.listHistoryJson(q);
      sameJsonPage(t, page, await storage.listHistory(q), 'a later page');
      seen.push(...page.rows.map((x) => (parseText(x) as HistoryRow).id));
      cursor = page.next_cursor;
    }
    const expected = [...order.slice(0, 10), ...newestFirst([...rows.slice(0, 30), behind]).filter((id) => !order.slice(0, 10).includes(id)).filter((id) => !rows.slice(0, 5).some((r) => r.id === id))];
    t.strictSame(seen, expected, 'every row once, the row appended behind the cursor included, the newer one and the pruned ones not');
    t.notOk(seen.includes(newer.id), 'the newer row is on no later page');
    // A cursor whose own row was pruned since still pages on from its place.
    const deep = await storage.listHistoryJson({ limit: 33 });
    t.equal(await storage.pruneHistory(at(400), 500), 36, 'every row before 6:40 pruned, the cursor\'s row among them');
    const after = await storage.listHistoryJson({ limit: 10, cursor: deep.next_cursor ?? '' });
    t.strictSame(after, { ids: [], rows: [], next_cursor: null }, 'nothing older is left');
  });

  t.test(`${name}: a history page leaves out the texts its caller knows when it knows most of them`, async (t) => {
    const storage = await fresh(t);
    const rows: HistoryRow[] = [];
    for (let i = 0; i < 12; i += 1) rows.push(historyRow({ executed_at: at(i * 10), details: { i } }));
    for (const r of rows) await storage.appendHistory(r);
    const order = newestFirst(rows);
    const knownIds = new Set(order.slice(0, 10).filter((_, i) => i !== 2 && i !== 7));
    const asked: string[] = [];
    const page = await storage.listHistoryJson({ limit: 10 }, (id) => {
      asked.push(id);
      return knownIds.has(id);
    });
    t.strictSame(asked, order.slice(0, 10), 'known is asked once for each row of the page, in order');
    t.strictSame(page.ids, order.slice(0, 10), 'every row of the page, known or not, in order');
    const full = await storage.listHistory({ limit: 10 });
    page.ids.forEach((id, i) => {
      const text = page.rows[i];
      if (knownIds.has(id)) t.equal(text, undefined, `row ${i}: known, so without its text`);
      else t.strictSame(parseText(text), JSON.parse(JSON.stringify(full.rows[i])), `row ${i}: its text, the row listHistory reads`);
    });
    t.equal(page.next_cursor, full.next_cursor, 'the cursor as without known');
    // Fewer than three quarters known: the page is read with every text, known or not.
    const some = await storage.listHistoryJson({ limit: 10 }, (id) => id === order[0] || id === order[1] || id === order[2]);
    t.strictSame(some.ids, order.slice(0, 10), 'three of ten known: every row');
    t.strictSame(some.rows.map(parseText), JSON.parse(JSON.stringify(full.rows)), 'each with its text');
    const all = await storage.listHistoryJson({ limit: 10 }, () => true);
    t.strictSame({ ids: all.ids, texts: all.rows.filter((x) => x !== undefined).length }, { ids: order.slice(0, 10), texts: 0 }, 'every row known: only the keys are read');
    // Filters and cursors as without known.
    const q = { limit: 1, policy_name: 'some-policy', cursor: page.next_cursor ?? '' };
    const after = await storage.listHistoryJson(q, (id) => id === order[11]);
    const afterFull = await storage.listHistory(q);
    t.strictSame([after.ids, after.rows.length, after.next_cursor], [[order[10]], 1, afterFull.next_cursor], 'a filtered page after a cursor lists the same row, with the same cursor');
    t.strictSame(parseText(after.rows[0]), JSON.parse(JSON.stringify(afterFull.rows[0])), 'and its text');
    // A known row that retention deleted is not on the page: which rows are listed comes from storage.
    t.equal(await storage.pruneHistory(at(15), 10), 2, 'the two oldest rows pruned');
    const rest = await storage.listHistoryJson({ limit: 20 }, () => true);
    t.strictSame(rest.ids, order.slice(0, 10), 'the pruned rows are gone from the page though known says true for them');
  });

  t.test(`${name}: history is append-only`, async (t) => {
    const storage = await fresh(t);
    const row = await storage.appendHistory(historyRow({ reason: 'original' }));
    await rejection(t, storage.driver.run('UPDATE scaling_history SET reason = ? WHERE id = ?', ['forged', row.id]), 'UPDATE');
    await rejection(t, storage.driver.run('DELETE FROM scaling_history WHERE id = ?', [row.id]), 'DELETE');
    await rejection(t, storage.driver.run('DELETE FROM scaling_history'), 'DELETE all');
    const dup = await rejection(t, storage.appendHistory({ ...row, reason: 'forged' }), 'appending an existing id');
    t.not((dup as ScalerError | undefined)?.code, 'DUPLICATE_NAME', 'a history id clash is not a policy name clash');
    t.strictSame((await storage.listHistory({ limit: 10 })).rows, [row], 'the row is unchanged');
  });

  t.test(`${name}: state round-trips`, async (t) => {
    const storage = await fresh(t);
    const p = await storage.createPolicy(makePolicy('stateful'));
    t.equal(await storage.getState(p.id), undefined, 'no state yet');
    const empty: PolicyState = {
      policy_id: p.id, current_replicas: null, last_change_at: null, last_change_kind: null,
      consecutive_failures: 0, last_blocked: null, data: {}, updated_at: at(0), version: 0,
    };
    t.equal(await storage.putState(empty), true, 'the first write inserts');
    t.strictSame(await storage.getState(p.id), { ...empty, version: 1 }, 'nulls and empty data; version 1');
    const full: PolicyState = {
      policy_id: p.id,
      current_replicas: 4,
      last_change_at: at(30),
      last_change_kind: 'scale_up',
      consecutive_failures: 2,
      last_blocked: 'cooldown',
      data: {
        last_decision: { action: 'none', reason_code: 'cooldown', rules: [{ value: 12.25, held: false, error: null }] },
        fired: { 'schedule-1': at(10) },
        observations: [[1, 2.5], [2, null]],
        flag: true,
        text: 'ünïcödé "quoted" \\ slash',
      },
      updated_at: at(31),
      version: 1,
    };
    t.equal(await storage.putState(full), true);
    t.strictSame(await storage.getState(p.id), { ...full, version: 2 }, 'a write replaces every field and moves the version');
    t.equal(await storage.putState({ ...full, current_replicas: 0, last_change_at: '2026-01-28T13:01:00+01:00', data: {}, version: 2 }), true);
    const last = await storage.getState(p.id);
    t.equal(last?.current_replicas, 0, 'zero is not null');
    t.equal(last?.last_change_at, at(60), 'times answered in UTC');
    t.strictSame(last?.data, {}, 'data replaced, not merged');
    t.equal(last?.version, 3);
  });

  t.test(`${name}: state writes are compare-and-set on the version`, async (t) => {
    const storage = await fresh(t);
    const p = await storage.createPolicy(makePolicy('fenced'));
    const base: PolicyState = {
      policy_id: p.id, current_replicas: 2, last_change_at: null, last_change_kind: null,
      consecutive_failures: 0, last_blocked: null, data: { who: 'first' }, updated_at: at(0), version: 0,
    };
    t.equal(await storage.putState(base), true, 'insert at version 0');
    t.equal(await storage.putState({ ...base, data: { who: 'second insert' } }), false, 'a second insert (version 0) is refused: a state exists');
    t.equal(await storage.putState({ ...base, version: 1, current_replicas: 5, data: { who: 'A' } }), true, 'A writes the version it read');
    t.equal(await storage.putState({ ...base, version: 1, current_replicas: 7, data: { who: 'B' } }), false, 'B read the same version: refused');
    t.equal(await storage.putState({ ...base, version: 9, data: { who: 'future' } }), false, 'a version never stored is refused');
    t.strictSame(await storage.getState(p.id), { ...base, version: 2, current_replicas: 5, data: { who: 'A' } }, 'only A\'s write landed');
    const other = await storage.createPolicy(makePolicy('fenced-2'));
    const gone = await storage.createPolicy(makePolicy('fenced-gone'));
    await storage.deletePolicy(gone.id);
    const refused = await storage.putStates([
      { ...base, version: 2, data: { who: 'batch' } },
      { ...base, policy_id: other.id, version: 0, data: { who: 'batch new' } },
      { ...base, version: 2, data: { who: 'batch stale twin' } },
      { ...base, policy_id: gone.id, version: 0 },
    ]);
    t.strictSame(refused.sort(), [gone.id, p.id].sort(), 'the batch names what it did not write: the stale twin and the deleted policy');
    t.same((await storage.getState(p.id))?.data, { who: 'batch' }, 'the first of two writes of one version wins');
    t.equal((await storage.getState(other.id))?.version, 1);
    t.equal(await storage.getState(gone.id), undefined, 'no state for a deleted policy');
    // Many writers of one version at once: exactly one lands.
    const now = (await storage.getState(p.id)) as PolicyState;
    const wins = await Promise.all(Array.from({ length: 10 }, (_, i) => storage.putState({ ...now, data: { i } })));
    t.equal(wins.filter(Boolean).length, 1, 'ten concurrent writers of one version: one wins');
    t.equal(await storage.historyRowExists(randomUUID()), false, 'historyRowExists: an unknown id');
    const row = await storage.appendHistory(historyRow({ policy_id: p.id, policy_name: p.name }));
    t.equal(await storage.historyRowExists(row.id), true, 'historyRowExists: a written row');
    t.same(await storage.getHistoryRow(row.id), row, 'getHistoryRow: the row as written');
    t.equal(await storage.getHistoryRow(randomUUID()), undefined, 'getHistoryRow: an unknown id');
  });

  t.test(`${name}: recordChanges appends every row and writes each state as a compare-and-set, in one transaction`, async (t) => {
    const storage = await fresh(t);
    const state = (policyId: string, version: number, who: string): PolicyState => ({
      policy_id: policyId, current_replicas: version + 1, last_change_at: at(version), last_change_kind: 'scale_up',
      consecutive_failures: 0, last_blocked: null, data: { who, record: { rules: [{ value: 1.5, text: 'ü "q" \\' }] } }, updated_at: at(version), version,
    });
    // More than one INSERT's and one UPDATE's worth of rows (100 history rows, 1,000 states per statement).
    const n = 1_005;
    const policies: Policy[] = [];
    for (let i = 0; i < n; i++) policies.push(await storage.createPolicy(makePolicy(`recorded-${i}`)));
    t.same(await storage.putStates(policies.map((p) => state(p.id, 0, 'first'))), [], 'first states: inserted');
    const [a, b, c] = policies as [Policy, Policy, Policy];
    const rows = policies.map((p, i) => historyRow({ policy_id: p.id, policy_name: p.name, executed_at: at(100 + i) }));
    const changes = policies.map((p, i) => ({ row: i === 2 ? null : (rows[i] as HistoryRow), state: state(p.id, 1, `change ${i}`) }));
    // b's writer read a version that moved: its row is kept, its state is not written.
    changes[1] = { row: rows[1] as HistoryRow, state: state(b.id, 7, 'stale') };
    // A second change of a in one call: after the first, which wins.
    changes.push({ row: null, state: state(a.id, 1, 'twin') });
    const refused = await storage.recordChanges(changes);
    t.strictSame(refused.sort(), [a.id, b.id].sort(), 'refused: the stale writer and the second write of one version');
    t.same((await storage.getState(a.id))?.data['who'], 'change 0', 'the first write of a version wins');
    t.equal((await storage.getState(a.id))?.version, 2);
    t.same((await storage.getState(b.id))?.data['who'], 'first', 'the refused state is untouched');
    t.strictSame(await storage.getState(c.id), { ...state(c.id, 1, 'change 2'), version: 2 }, 'a change without a row writes its state, every field');
    const last = policies[n - 1] as Policy;
    t.strictSame(await storage.getState(last.id), { ...state(last.id, 1, `change ${n - 1}`), version: 2 }, 'the last state of the last statement');
    let all: HistoryRow[] = [];
    let cursor: string | undefined;
    do {
      const page = await storage.listHistory({ limit: 1000, ...(cursor === undefined ? {} : { cursor }) });
      all = all.concat(page.rows);
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
    t.equal(all.length, n - 1, 'every row but the one not given, the refused state\'s row included');
    t.same(await storage.getHistoryRow((rows[1] as HistoryRow).id), rows[1], 'a row as written');
    t.same(await storage.getHistoryRow((rows[n - 1] as HistoryRow).id), rows[n - 1], 'the last row as written');
    const [unanswered] = await storage.driver.all<{ n: number | string }>('SELECT count(*) AS n FROM scaling_history WHERE answer_json IS NULL');
    t.equal(Number(unanswered?.n), 0, 'every recorded row carries its stored answer');
    const texts = await storage.listHistoryJson({ limit: 1000 });
    const page = await storage.listHistory({ limit: 1000 });
    t.same(texts.rows.map((r) => parseText(r) as unknown), JSON.parse(JSON.stringify(page.rows)), 'the stored answers are the rows as read');
    t.same(await storage.recordChanges([]), [], 'nothing to record');
    // A failing row fails the whole call: nothing of it is kept.
    const d = policies[3] as Policy;
    const before = await storage.getState(d.id);
    await t.rejects(storage.recordChanges([
      { row: historyRow({ id: randomUUID(), policy_id: d.id, policy_name: d.name }), state: { ...state(d.id, 2, 'lost'), version: 2 } },
      { row: rows[0] as HistoryRow, state: state(c.id, 2, 'lost too') },
    ]), 'a row id already stored fails the transaction');
    t.same(await storage.getState(d.id), before, 'its states are not written');
  });

  t.test(`${name}: a claim (putStates unlessPaused) is refused for a paused policy`, async (t) => {
    const storage = await fresh(t);
    const p = await storage.createPolicy(makePolicy('claimed'));
    const q = await storage.createPolicy(makePolicy('claimed-paused'));
    const base = (id: string): PolicyState => ({ policy_id: id, current_replicas: 2, last_change_at: null, last_change_kind: null, consecutive_failures: 0, last_blocked: null, data: {}, updated_at: at(0), version: 0 });
    t.same(await storage.putStates([base(p.id), base(q.id)]), []);
    await storage.setPaused(q.id, { at: at(5), reason: 'maintenance' });
    t.same(await storage.putStates([{ ...base(p.id), version: 1 }, { ...base(q.id), version: 1 }], { unlessPaused: true }), [q.id], 'the paused policy\'s claim is refused');
    t.same(await storage.putStates([{ ...base(q.id), version: 1, current_replicas: 9 }]), [], 'a write that claims nothing is not');
    t.equal((await storage.getState(q.id))?.current_replicas, 9);
  });

  t.test(`${name}: listPolicyVersions moves with every stored change of a policy, and only then`, async (t) => {
    const storage = await fresh(t);
    const p = await storage.createPolicy(makePolicy('versioned', {}, { now: at(0) }));
    const other = await storage.createPolicy(makePolicy('bystander', {}, { now: at(0) }));
    const versions = async (): Promise<Map<string, string>> => new Map((await storage.listPolicyVersions()).map((v) => [v.id, v.version]));
    let before = await versions();
    t.same([...before.keys()].sort(), [p.id, other.id].sort(), 'every policy, enabled or not');
    const moved = async (what: string, change: () => Promise<unknown>, expect = true): Promise<void> => {
      await change();
      const after = await versions();
      t.equal(after.get(p.id) !== before.get(p.id), expect, `${what}: ${expect ? 'moves' : 'stays'}`);
      t.equal(after.get(other.id), before.get(other.id), `${what}: another policy's stays`);
      before = after;
    };
    const same = makePolicy('versioned', {}, { now: at(5) });
    same.id = p.id;
    await moved('a replacement that changes nothing', () => storage.replacePolicy(same), false);
    const edited = makePolicy('versioned', { max_replicas: 7 }, { now: at(10) });
    edited.id = p.id;
    await moved('a replacement', () => storage.replacePolicy(edited));
    await moved('disabling', () => storage.setEnabled(p.id, false, at(20)));
    await moved('enabling', () => storage.setEnabled(p.id, true, at(30)));
    await moved('a pause', () => storage.setPaused(p.id, { at: at(40), reason: 'x' }));
    await moved('lifting it', () => storage.setPaused(p.id, null));
    await storage.deletePolicy(p.id);
    t.same([...(await versions()).keys()], [other.id], 'a deleted policy is gone');
  });

  t.test(`${name}: replicaChanges lists real, succeeded changes since a time, oldest first`, async (t) => {
    const storage = await fresh(t);
    const p = await storage.createPolicy(makePolicy('changes'));
    const at = (m: number): string => new Date(Date.UTC(2026, 0, 1, 0, m)).toISOString();
    const rows: Array<Partial<HistoryRow>> = [
      { executed_at: at(5), action: 'scale_up', status: 'succeeded', previous_replicas: 1, new_replicas: 2 },
      { executed_at: at(10), action: 'scale_up', status: 'succeeded', previous_replicas: 2, new_replicas: 4 },
      { executed_at: at(20), action: 'scale_down', status: 'failed', previous_replicas: 4, new_replicas: 3 },
      { executed_at: at(25), action: 'scale_down', status: 'succeeded', dry_run: true, previous_replicas: 4, new_replicas: 1 },
      { executed_at: at(30), action: 'scale_down', status: 'blocked', previous_replicas: 4, new_replicas: 3 },
      { executed_at: at(40), action: 'scheduled', status: 'succeeded', previous_replicas: 4, new_replicas: 6 },
      { executed_at: at(50), action: 'scale_down', status: 'succeeded', policy_id: null, previous_replicas: 9, new_replicas: 8 },
    ];
    for (const r of [...rows].reverse()) await storage.appendHistory(historyRow({ policy_id: p.id, policy_name: p.name, ...r }));
    const other = await storage.createPolicy(makePolicy('unchanged'));
    const { changes, before } = await storage.replicaChanges([p.id, other.id], at(10), at(45));
    t.same(
      changes,
      [
        { policy_id: p.id, executed_at: at(10), previous_replicas: 2, new_replicas: 4 },
        { policy_id: p.id, executed_at: at(40), previous_replicas: 4, new_replicas: 6 },
      ],
      'in [since, until): failed, dry-run, blocked rows and rows without a policy are left out',
    );
    t.same([...before], [[p.id, 2]], 'the count the last real change before the range set; none for a policy without one');
    t.same((await storage.replicaChanges([p.id], at(10), at(40))).changes.length, 1, 'until is excluded');
    const later = await storage.replicaChanges([p.id], at(41), at(60));
    t.same(later.changes, [], 'none after the last');
    t.same([...later.before], [[p.id, 6]]);
    t.same((await storage.replicaChanges([other.id], at(0), at(60))).changes, [], 'only the policies asked for');
  });

  t.test(`${name}: concurrent writes`, async (t) => {
    const storage = await fresh(t);
    const many = Array.from({ length: 50 }, (_, i) => makePolicy(`parallel-${String(i).padStart(2, '0')}`));
    const results = await Promise.allSettled(many.map((p) => storage.createPolicy(p)));
    t.equal(results.filter((r) => r.status === 'fulfilled').length, 50, '50 distinct creates all succeed');
    const listed = await storage.listPolicies({ limit: 100, offset: 0 });
    t.equal(listed.total, 50);
    t.equal(await count(storage, 'SELECT COUNT(*) AS n FROM scaling_rules'), 150, 'every rule landed');

    const rivals = Array.from({ length: 10 }, () => makePolicy('contested'));
    const outcomes = await Promise.allSettled(rivals.map((p) => storage.createPolicy(p)));
    const won = outcomes.flatMap((r, i) => (r.status === 'fulfilled' ? [rivals[i]] : []));
    const lost = outcomes.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    t.equal(won.length, 1, 'exactly one same-name create wins');
    t.equal(lost.length, 9);
    t.ok(lost.every((e) => e instanceof ScalerError && e.code === 'DUPLICATE_NAME'), 'the others are DUPLICATE_NAME');
    t.equal((await storage.getPolicyByName('contested'))?.id, won[0]?.id, 'the winner is stored');
    const ruleCounts = await Promise.all(rivals.map((p) => ruleRows(storage, p.id)));
    t.equal(ruleCounts.reduce((a, b) => a + b, 0), 3, 'only the winner has rule rows');

    const appended = await Promise.all(Array.from({ length: 50 }, () => storage.appendHistory(historyRow())));
    t.strictSame((await walk(t, storage, { limit: 1000 })).ids.sort(), appended.map((r) => r.id).sort(), '50 parallel appends all land');

    const target = many[0] as Policy;
    const wrote = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        storage.putState({ policy_id: target.id, current_replicas: i, last_change_at: null, last_change_kind: null, consecutive_failures: i, last_blocked: null, data: { i }, updated_at: at(i), version: 0 }),
      ),
    );
    t.equal(wrote.filter(Boolean).length, 1, 'one of 20 parallel first writes inserts');
    const state = await storage.getState(target.id);
    t.ok(state !== undefined && state.current_replicas === state.consecutive_failures && state.data['i'] === state.current_replicas, 'parallel putState leaves one whole write, not a mix');
  });

  t.test(`${name}: a transaction that fails half-way leaves nothing behind`, async (t) => {
    const storage = await fresh(t);
    const broken = makePolicy('half-written');
    const firstRule = broken.scale_up_rules[0];
    if (firstRule === undefined) throw new Error('fixture has rules');
    broken.scale_up_rules = [firstRule, { ...firstRule }]; // second insert violates the rule primary key
    const err = await rejection(t, storage.createPolicy(broken), 'create with a duplicate rule id');
    t.not((err as ScalerError | undefined)?.code, 'DUPLICATE_NAME', 'a rule id clash is not reported as a name clash');
    t.equal(await storage.getPolicy(broken.id), undefined, 'no policy row');
    t.equal(await storage.getPolicyByName('half-written'), undefined, 'name not taken');
    t.equal(await ruleRows(storage, broken.id), 0, 'no rule rows');
    t.equal(await scheduleRows(storage, broken.id), 0, 'no schedule rows');
    t.ok(await storage.createPolicy(makePolicy('half-written')), 'the name can be used afterwards');

    const bad = makePolicy('check-violation', { min_replicas: 5, max_replicas: 2 });
    await rejection(t, storage.createPolicy(bad), 'create violating a CHECK');
    t.equal(await storage.getPolicy(bad.id), undefined, 'no policy row');

    const original = await storage.createPolicy(makePolicy('replace-half'));
    const next = makePolicy('replace-half', { max_replicas: 99 }, { now: at(500) });
    next.id = original.id;
    const rule = next.scale_down_rules[0];
    if (rule === undefined) throw new Error('fixture has rules');
    // New rules (an unchanged rule would take its stored id) sharing one id.
    next.scale_down_rules = [{ ...rule, threshold: 1 }, { ...rule, threshold: 2 }];
    await rejection(t, storage.replacePolicy(next), 'replace with a duplicate rule id');
    t.strictSame(await storage.getPolicy(original.id), original, 'the old version is intact, children included');
    t.equal(await ruleRows(storage, original.id), 3, 'old rule rows still there');

    await storage.syncSource('policies/x.yaml', [makePolicy('x-one'), makePolicy('x-two')]);
    const before = (await storage.listPolicies({ limit: 100, offset: 0, source: 'policies/x.yaml' })).policies;
    const x1 = makePolicy('x-one', { max_replicas: 9 });
    const x3 = makePolicy('x-three');
    const r3 = x3.scale_up_rules[0];
    if (r3 === undefined) throw new Error('fixture has rules');
    x3.scale_up_rules = [r3, { ...r3 }];
    await rejection(t, storage.syncSource('policies/x.yaml', [x1, x3]), 'sync whose last policy fails');
    t.strictSame((await storage.listPolicies({ limit: 100, offset: 0, source: 'policies/x.yaml' })).policies, before, 'the source is as before');
  });
}
