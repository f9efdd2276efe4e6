// HTTP API throughput and latency, per storage backend, against 1,000 policies and 1,000,000
// history rows. The daemon runs as a child process from the build, as `npm start` runs it
// (`node dist/src/cli.js serve`, the evaluation loop off), so autocannon and the server do not
// share one event loop; `npm run bench:api` builds first.
//
// History retention runs during every measurement: besides the 1,000,000 rows inside the
// retention, PRUNE_BACKLOG older rows are seeded, and the daemon runs with history_retention
// 180d and history_prune_interval 1s, so it keeps deleting the oldest rows in batches (500 rows a
// statement, passes of up to 2 s, one second apart) while autocannon runs. The rows pruned during
// each measurement are counted and printed.
//
// Goals: on SQLite, GET /policies/:id >= 3,000 req/s with p99 <= 20 ms; on both backends,
// GET /history?limit=100 and GET /policies/:id/history?limit=100 >= 2,000 req/s with p99 <= 20 ms.
//
// Run: npm run bench:api   (PostgreSQL 15 at 127.0.0.1:5432, or DATABASE_ADMIN_URL)
// Env: DURATION (s per endpoint, 10), CONNECTIONS (10), WARMUP (s per endpoint, 2),
//      POLICIES (1000), HISTORY_ROWS (1000000), PRUNE_BACKLOG (rows older than the retention,
//      600000; 0: no pruning), BACKENDS (sqlite,postgres),
//      LOAD (autocannon or raw: the load generator of every endpoint; by default autocannon, and
//      bench/raw-load.ts for the -gzip keys, as autocannon decodes every answer into a string),
//      ONLY (comma-separated endpoint keys: by-id,list,create,history,history-cursor,
//      policy-history,policy-history-cursor, and each history key with -gzip: the same requests
//      saying Accept-Encoding: gzip),
//      PROFILE_DIR (the daemon writes a --cpu-prof profile there when it stops),
//      STORAGE_FLOOR=1 (after each backend's HTTP runs, the daemon stopped: the same history
//      queries asked of the storage layer directly in this process, no HTTP, no pruning, nothing
//      kept in memory; the most pages a second storage alone reads on this machine),
//      HISTORY_CACHE_MB (the daemon's history_cache_mb; its default, 32, when unset),
//      PIN (a CPU number: the daemon runs on that CPU, this process and autocannon on the other,
//      with taskset; on this two-core machine one CPU at times ran at 55 % of the other's speed,
//      see BENCHMARKS.md),
//      SEED_CACHE (a folder: the seeded SQLite file, and a PostgreSQL template database, are kept
//      and copied for the next run with the same parameters, code and migrations, within 20 h).
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';
import Database from 'better-sqlite3';
import pg from 'pg';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import type { Policy, PolicyInput } from '../src/policy/policy-model.js';
import { createPostgresStorage } from '../src/storage/postgres-storage.js';
import { historyJson } from '../src/storage/sql-storage.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import type { HistoryQuery, HistoryRow, Storage } from '../src/storage/storage.js';
import { freePort } from '../test/helpers/daemon-process.js';
import { createFreshDatabase, PG_ADMIN_URL } from '../test/helpers/pg.js';
import { rawLoad, type RawLoadResult } from './raw-load.js';

const env = process.env;
const DURATION = Number(env['DURATION'] ?? 10);
const CONNECTIONS = Number(env['CONNECTIONS'] ?? 10);
const WARMUP = Number(env['WARMUP'] ?? 2);
const POLICIES = Number(env['POLICIES'] ?? 1000);
const HISTORY_ROWS = Number(env['HISTORY_ROWS'] ?? 1_000_000);
const PRUNE_BACKLOG = Number(env['PRUNE_BACKLOG'] ?? 600_000);
const BACKENDS = (env['BACKENDS'] ?? 'sqlite,postgres').split(',').map((s) => s.trim()).filter((s) => s !== '');
const ONLY = env['ONLY']?.split(',').map((s) => s.trim());
const PROFILE_DIR = env['PROFILE_DIR'] === undefined ? undefined : resolve(env['PROFILE_DIR']);
const STORAGE_FLOOR = env['STORAGE_FLOOR'] === '1';
const HISTORY_CACHE_MB = env['HISTORY_CACHE_MB'];
const PIN = env['PIN'] === undefined || env['PIN'] === '' ? undefined : Number(env['PIN']);
if (PIN !== undefined && PIN !== 0 && PIN !== 1) throw new Error(`PIN must be 0 or 1 (the CPU the daemon runs on), got "${env['PIN']}"`);
const SEED_CACHE = env['SEED_CACHE'] === undefined ? undefined : resolve(env['SEED_CACHE']);
const API = '/api/v1/scaling';
const GOAL = { rps: 3000, p99: 20 };
/** Goal of the history listings, on both backends, while retention prunes. */
const HISTORY_GOAL_ENDPOINTS = ['GET /history?limit=100', 'GET /policies/:id/history?limit=100'];
const HISTORY_GOAL = { rps: 2000, p99: 20, endpoints: [...HISTORY_GOAL_ENDPOINTS, ...HISTORY_GOAL_ENDPOINTS.map((e) => `${e} gzip`)] };
const DAY_MS = 86_400_000;
/** The daemon's history_retention: the kept rows span the 179 days before now, the backlog lies before 180. */
const RETENTION = '180d';
/** Rows of the seeded history with their own columns, in time order. */
const KEPT_SPAN_MS = 179 * DAY_MS;
const BACKLOG_SPAN_MS = 20 * DAY_MS;

// ---------------------------------------------------------------------------------------------
// Data

const TARGET_TYPES = ['cdc-worker', 'trino', 'risingwave', 'nodes'] as const;
const SOURCES = ['orders', 'payments', 'inventory', 'customers', 'shipments', 'audit', 'events', 'billing'];

/** A varied, realistic policy input: 1-2 scale-up rules, 1 scale-down rule, some schedules. */
function policyInput(i: number): PolicyInput {
  const src = SOURCES[i % SOURCES.length] as string;
  const targetType = TARGET_TYPES[i % TARGET_TYPES.length] as (typeof TARGET_TYPES)[number];
  const up: NonNullable<PolicyInput['scale_up_rules']> = [
    { metric: `max(philotes_cdc_lag_seconds{source="${src}"})`, operator: 'gt', threshold: 60 + (i % 5) * 10, duration: '5m', scale_by: 2 },
  ];
  if (i % 2 === 0) up.push({ metric: `max(philotes_buffer_depth{source="${src}"})`, operator: 'gt', threshold: 2500, duration: '3m', scale_by: 1 });
  return {
    name: `bench-policy-${String(i).padStart(4, '0')}`,
    description: `Scale ${targetType} workers for the ${src} pipeline on replication lag and buffer depth.`,
    target_type: targetType,
    target_id: randomUUID(),
    min_replicas: 1,
    max_replicas: 10 + (i % 11),
    cooldown_seconds: i % 3 === 0 ? undefined : 300,
    cost_per_replica_hour: 0.45,
    enabled: i % 10 !== 0,
    scale_up_rules: up,
    scale_down_rules: [{ metric: `max(philotes_cdc_lag_seconds{source="${src}"})`, operator: 'lt', threshold: 10, duration: '10m', scale_by: -1 }],
    schedules: i % 4 === 0 ? [{ cron_expression: '0 8 * * 1-5', desired_replicas: 5, timezone: 'Europe/Budapest', duration: '10h' }] : [],
  };
}

/** The body of POST /policies: unique name per request, same shape as the seeded policies. */
function createBody(name: string): string {
  return JSON.stringify({
    name,
    target_type: 'cdc-worker',
    target_id: '550e8400-e29b-41d4-a716-446655440000',
    min_replicas: 1,
    max_replicas: 10,
    cooldown_seconds: 300,
    scale_up_rules: [{ metric: 'max(philotes_cdc_lag_seconds{source="orders"})', operator: 'gt', threshold: 60, duration: '5m', scale_by: 2 }],
    scale_down_rules: [{ metric: 'max(philotes_cdc_lag_seconds{source="orders"})', operator: 'lt', threshold: 10, duration: '10m', scale_by: -1 }],
    schedules: [{ cron_expression: '0 8 * * 1-5', desired_replicas: 5, timezone: 'Europe/Budapest' }],
  });
}

/** Small fast PRNG, so every run seeds the same rows (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type HistoryTuple = [
  id: string, policy_id: string, policy_name: string, action: string, target_type: string, target_id: string | null,
  previous_replicas: number, new_replicas: number, reason: string, reason_code: string | null, triggered_by: string,
  dry_run: boolean, status: string, error: string | null, executed_at: string, details: string,
];

/**
 * History rows in time order (as the engine appends them), `count` of them over the `span` ms
 * before `end`, spread uniformly over the policies; `details` is a decision record of ~1.4 KB.
 */
function* historyRows(policies: Policy[], count: number, end: number, span: number, seed: number): Generator<HistoryTuple> {
  const rnd = prng(seed);
  const step = span / count;
  for (let i = 0; i < count; i++) {
    const p = policies[Math.floor(rnd() * policies.length)] as Policy;
    const at = new Date(end - span + i * step + Math.floor(rnd() * step)).toISOString();
    const r = rnd();
    const action = r < 0.45 ? 'scale_up' : r < 0.85 ? 'scale_down' : r < 0.93 ? 'scheduled' : r < 0.97 ? 'none' : 'fallback';
    const s = rnd();
    const status = action === 'none' || s < 0.1 ? 'blocked' : s < 0.15 ? 'failed' : 'succeeded';
    const dryRun = p.dry_run || rnd() < 0.1;
    const current = 1 + Math.floor(rnd() * (p.max_replicas - 1));
    const desired = Math.max(p.min_replicas, Math.min(p.max_replicas, current + (action === 'scale_down' ? -1 : 2)));
    const up = p.scale_up_rules[0];
    const down = p.scale_down_rules[0];
    const lag = Math.round(rnd() * 18_000) / 100;
    const reasonCode = status === 'blocked' ? (rnd() < 0.5 ? 'cooldown' : 'at_max') : action === 'scheduled' ? 'schedule_fired' : action === 'fallback' ? 'fallback' : 'rules_held';
    const reason =
      action === 'scale_up'
        ? `${up?.metric ?? 'lag'} > ${up?.threshold ?? 60} for ${up?.duration ?? '5m'} (value ${lag})`
        : action === 'scale_down'
          ? `${down?.metric ?? 'lag'} < ${down?.threshold ?? 10} for ${down?.duration ?? '10m'} (value ${lag})`
          : action === 'scheduled'
            ? 'schedule "0 8 * * 1-5" (Europe/Budapest) fired'
            : action === 'fallback'
              ? `metrics failed ${3} times in a row: fallback to ${desired} replicas`
              : 'cooldown: 120 s of 300 s left';
    const ruleRecord = (rule: Policy['scale_up_rules'][number] | undefined, direction: 'scale_up' | 'scale_down', held: boolean) => ({
      id: rule?.id ?? randomUUID(),
      direction,
      metric: rule?.metric ?? 'max(philotes_cdc_lag_seconds)',
      source: 'prometheus',
      operator: rule?.operator ?? 'gt',
      threshold: rule?.threshold ?? 60,
      aggregation: rule?.aggregation ?? 'max',
      window_seconds: rule?.duration_seconds ?? 300,
      step_seconds: 15,
      samples: 21,
      value: lag,
      latest: Math.round(lag * 0.97 * 100) / 100,
      held,
      error: null,
      detail: held ? null : `value ${lag} is not ${rule?.operator ?? 'gt'} ${rule?.threshold ?? 60}`,
    });
    const details = {
      policy_id: p.id,
      policy_name: p.name,
      evaluated_at: at,
      current_replicas: current,
      current_replicas_from: 'executor',
      desired_replicas: desired,
      action,
      reason_code: reasonCode,
      reason,
      should_scale: status !== 'blocked',
      dry_run: dryRun,
      dry_run_from: dryRun ? ['policy'] : [],
      triggered_by: action === 'scheduled' ? 'schedule' : action === 'fallback' ? 'fallback' : 'rule',
      triggered_rules: action === 'scale_up' && up !== undefined ? [up.id] : action === 'scale_down' && down !== undefined ? [down.id] : [],
      rules: [ruleRecord(up, 'scale_up', action === 'scale_up'), ruleRecord(down, 'scale_down', action === 'scale_down')],
      directions: {
        scale_up: { match: p.scale_up_match, rules: p.scale_up_rules.length, held: action === 'scale_up', step: 2 },
        scale_down: { match: p.scale_down_match, rules: p.scale_down_rules.length, held: action === 'scale_down', step: -1 },
        chosen: action === 'scale_up' || action === 'scale_down' ? action : null,
      },
      schedule: null,
      adjustments: status === 'blocked' ? [{ kind: 'cooldown', from: desired, to: current, detail: 'cooldown: 120 s of 300 s left' }] : [],
      cooldown_remaining_seconds: status === 'blocked' ? 120 : 0,
      consecutive_metric_failures: action === 'fallback' ? 3 : 0,
      wanted_replicas: desired,
      blocked: status === 'blocked',
    };
    yield [
      randomUUID(), p.id, p.name, action, p.target_type, p.target_id, current, desired, reason, reasonCode,
      details.triggered_by, dryRun, status, status === 'failed' ? 'executor "keda" answered 503: service unavailable' : null,
      at, JSON.stringify(details),
    ];
  }
}

// ---------------------------------------------------------------------------------------------
// Seeding

interface Seeded {
  policies: Policy[];
  policiesMs: number;
  historyMs: number;
  detailsBytes: number;
  /** History cursors at 1,000 depths spread evenly over the kept rows (GET /history?cursor=...). */
  cursors: string[];
  size: string;
}

/**
 * Collects a cursor every HISTORY_ROWS/1000 kept rows (never in the backlog that retention
 * deletes during the run: a page there would soon be empty). Cursors are opaque to clients; the
 * bench builds them the way the server does (base64url of [executed_at, id]) to jump to any depth.
 */
function cursorSampler(): { see(r: HistoryTuple, i: number): void; cursors: string[] } {
  const every = Math.max(1, Math.floor(HISTORY_ROWS / 1000));
  const cursors: string[] = [];
  return {
    cursors,
    see(r, i) {
      if (i % every === every - 1) cursors.push(Buffer.from(JSON.stringify([r[14], r[0]])).toString('base64url'));
    },
  };
}

async function seedPolicies(storage: Storage): Promise<Policy[]> {
  await storage.migrate();
  const now = new Date();
  const out: Policy[] = [];
  for (let i = 0; i < POLICIES; i++) out.push(await storage.createPolicy(normalizePolicy(policyInput(i), { source: 'api', now })));
  return out;
}

/**
 * Every seeded row, oldest first: the backlog (older than the retention, pruned during the run),
 * then the rows inside it. `kept` is the index among the kept rows, -1 in the backlog.
 */
function* seedRows(policies: Policy[]): Generator<[HistoryTuple, number]> {
  const now = Date.now();
  const keptEnd = now - 60_000;
  if (PRUNE_BACKLOG > 0) {
    for (const r of historyRows(policies, PRUNE_BACKLOG, keptEnd - KEPT_SPAN_MS - DAY_MS - 3_600_000, BACKLOG_SPAN_MS, 7)) yield [r, -1];
  }
  let i = 0;
  for (const r of historyRows(policies, HISTORY_ROWS, keptEnd, KEPT_SPAN_MS, 42)) yield [r, i++];
}

const HISTORY_COLUMNS =
  'id, policy_id, policy_name, action, target_type, target_id, previous_replicas, new_replicas, reason, reason_code, triggered_by, dry_run, status, error, executed_at, details, answer_json';

/** The row's answer text, as appendHistory stores it with the row. */
function answerOf(r: HistoryTuple): string {
  const [id, policy_id, policy_name, action, target_type, target_id, previous_replicas, new_replicas, reason, reason_code, triggered_by, dry_run, status, error, executed_at, details] = r;
  return historyJson({
    id, policy_id, policy_name, target_type, target_id, previous_replicas, new_replicas, reason, reason_code, dry_run, error, executed_at,
    action: action as HistoryRow['action'],
    triggered_by: triggered_by as HistoryRow['triggered_by'],
    status: status as HistoryRow['status'],
    details: JSON.parse(details) as Record<string, unknown>,
  });
}

async function seedSqlite(path: string): Promise<Seeded> {
  const t0 = performance.now();
  const storage = createSqliteStorage(path);
  const policies = await seedPolicies(storage);
  await storage.close();
  const policiesMs = performance.now() - t0;

  const t1 = performance.now();
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  db.pragma('cache_size = -262144');
  const insert = db.prepare(`INSERT INTO scaling_history (${HISTORY_COLUMNS}) VALUES (${Array(17).fill('?').join(', ')})`);
  const batch = db.transaction((rows: HistoryTuple[]) => {
    for (const r of rows) {
      const answer = answerOf(r);
      r[11] = (r[11] ? 1 : 0) as unknown as boolean; // better-sqlite3 binds no booleans
      insert.run(...r, answer);
    }
  });
  let rows: HistoryTuple[] = [];
  let detailsBytes = 0;
  const sampler = cursorSampler();
  for (const [r, kept] of seedRows(policies)) {
    if (kept >= 0) sampler.see(r, kept);
    detailsBytes += r[15].length;
    rows.push(r);
    if (rows.length === 10_000) {
      batch(rows);
      rows = [];
    }
  }
  if (rows.length > 0) batch(rows);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  const historyMs = performance.now() - t1;
  const size = (await stat(path)).size;
  return { policies, policiesMs, historyMs, detailsBytes: detailsBytes / (HISTORY_ROWS + PRUNE_BACKLOG), cursors: sampler.cursors, size: `${(size / 1e9).toFixed(2)} GB file` };
}

async function seedPostgres(url: string): Promise<Seeded> {
  const t0 = performance.now();
  const storage = createPostgresStorage(url);
  const policies = await seedPolicies(storage);
  await storage.close();
  const policiesMs = performance.now() - t0;

  const t1 = performance.now();
  const pool = new pg.Pool({ connectionString: url, max: 2, options: '-c synchronous_commit=off' });
  // One JSON document per batch, expanded by the server: about twice as fast as unnest() over
  // typed arrays, whose array literals PostgreSQL parses slowly for kilobyte-sized elements.
  const sql = `INSERT INTO scaling_history (${HISTORY_COLUMNS}) SELECT ${HISTORY_COLUMNS} FROM json_populate_recordset(NULL::scaling_history, $1::json)`;
  const names = HISTORY_COLUMNS.split(', ');
  const BATCH = 5_000;
  const inFlight = new Set<Promise<unknown>>();
  let detailsBytes = 0;
  let batch: string[] = [];
  const sampler = cursorSampler();
  const flush = async (): Promise<void> => {
    const doc = `[${batch.join(',')}]`;
    batch = [];
    // Two batches in flight: one being inserted while the next is generated.
    while (inFlight.size >= 2) await Promise.race(inFlight);
    const p: Promise<unknown> = pool.query(sql, [doc]).finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  for (const [r, kept] of seedRows(policies)) {
    if (kept >= 0) sampler.see(r, kept);
    detailsBytes += r[15].length;
    // details is already JSON text: splice it in as the object it is, not as a string.
    const answer = answerOf(r);
    batch.push(`{${names.map((n, c) => `${JSON.stringify(n)}:${c === 15 ? r[15] : c === 16 ? JSON.stringify(answer) : JSON.stringify(r[c])}`).join(',')}}`);
    if (batch.length === BATCH) await flush();
  }
  if (batch.length > 0) await flush();
  await Promise.all(inFlight);
  // As autovacuum would after a million inserts; done here so it does not run during the measurement.
  await pool.query('VACUUM (ANALYZE) scaling_history');
  const { rows } = await pool.query<{ size: string }>('SELECT pg_size_pretty(pg_database_size(current_database())) AS size');
  await pool.end();
  const historyMs = performance.now() - t1;
  return { policies, policiesMs, historyMs, detailsBytes: detailsBytes / (HISTORY_ROWS + PRUNE_BACKLOG), cursors: sampler.cursors, size: `${rows[0]?.size ?? '?'} database` };
}

// ---------------------------------------------------------------------------------------------
// Seed cache (SEED_CACHE): seeding takes minutes, a copy seconds

/** What a seed depends on: its parameters, and the code and migrations that write it. */
function seedKey(backend: string): string {
  const h = createHash('sha256').update(JSON.stringify([backend, POLICIES, HISTORY_ROWS, PRUNE_BACKLOG]));
  // The seeding part of this file (from "Data" to here), and what it calls.
  const own = readFileSync(join(REPO, 'bench', 'api.ts'), 'utf8');
  h.update(own.slice(own.indexOf('// Data'), own.indexOf('// Seed cache')));
  for (const f of ['src/storage/sql-storage.ts', 'src/policy/policy-normalize.ts']) h.update(readFileSync(join(REPO, f)));
  const migrations = join(REPO, 'migrations', backend);
  for (const f of readdirSync(migrations).sort()) h.update(f).update(readFileSync(join(migrations, f)));
  return h.digest('hex').slice(0, 12);
}

/** A seed's metadata, kept beside it; times in it are relative to when it was seeded. */
interface SeedMeta {
  seededAt: number;
  seeded: Seeded;
}

async function cachedMeta(backend: string, key: string): Promise<Seeded | undefined> {
  if (SEED_CACHE === undefined) return undefined;
  try {
    const meta = JSON.parse(await readFile(join(SEED_CACHE, `${backend}-${key}.json`), 'utf8')) as SeedMeta;
    // The kept rows start a day inside the retention: a seed stays usable for less than that.
    return Date.now() - meta.seededAt < 20 * 3_600_000 ? meta.seeded : undefined;
  } catch {
    return undefined;
  }
}

async function saveMeta(backend: string, key: string, seeded: Seeded, seededAt: number): Promise<void> {
  if (SEED_CACHE === undefined) return;
  await writeFile(join(SEED_CACHE, `${backend}-${key}.json`), JSON.stringify({ seededAt, seeded } satisfies SeedMeta));
}

/** Waits until a file's data are on disk. */
async function flushFile(path: string): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The seeded SQLite file at `path`: copied from the cache, or seeded (and then cached). */
async function sqliteSeed(path: string): Promise<Seeded> {
  const key = seedKey('sqlite');
  const cached = await cachedMeta('sqlite', key);
  if (SEED_CACHE !== undefined && cached !== undefined) {
    await copyFile(join(SEED_CACHE, `sqlite-${key}.db`), path);
    // On disk before measuring: the kernel writing 8 GB back meanwhile would share the machine.
    await flushFile(path);
    return cached;
  }
  const seededAt = Date.now();
  const seeded = await seedSqlite(path);
  if (SEED_CACHE !== undefined) {
    await mkdir(SEED_CACHE, { recursive: true });
    for (const f of readdirSync(SEED_CACHE)) if (f.startsWith('sqlite-')) await rm(join(SEED_CACHE, f), { force: true });
    await copyFile(path, join(SEED_CACHE, `sqlite-${key}.db`));
    await saveMeta('sqlite', key, seeded, seededAt);
  }
  return seeded;
}

async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_ADMIN_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A seeded PostgreSQL database: a copy of the cached template, or seeded (and then kept as the template). */
async function postgresSeed(): Promise<{ url: string; drop: () => Promise<void>; seeded: Seeded }> {
  const db = await createFreshDatabase('philotes_bench_api');
  if (SEED_CACHE === undefined) return { url: db.url, drop: () => db.drop(), seeded: await seedPostgres(db.url) };
  const key = seedKey('postgres');
  const template = `philotes_bench_seed_${key}`;
  const cached = await cachedMeta('postgres', key);
  const exists = await withAdmin(async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [template])).rows.length > 0);
  let seeded = cached;
  if (cached === undefined || !exists) {
    const seededAt = Date.now();
    seeded = await seedPostgres(db.url);
    await withAdmin(async (c) => {
      const old = await c.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'philotes_bench_seed_%'");
      for (const r of old.rows) await c.query(`DROP DATABASE "${r.datname}" WITH (FORCE)`);
      await c.query(`CREATE DATABASE "${template}" TEMPLATE "${db.name}" STRATEGY FILE_COPY`);
    });
    await mkdir(SEED_CACHE, { recursive: true });
    await saveMeta('postgres', key, seeded, seededAt);
    return { url: db.url, drop: () => db.drop(), seeded };
  }
  await withAdmin(async (c) => {
    await c.query(`DROP DATABASE "${db.name}"`);
    await c.query(`CREATE DATABASE "${db.name}" TEMPLATE "${template}" STRATEGY FILE_COPY`);
  });
  return { url: db.url, drop: () => db.drop(), seeded: seeded as Seeded };
}

// ---------------------------------------------------------------------------------------------
// Load

interface Scenario {
  key: string;
  label: string;
  requests: () => autocannon.Request[];
  /** A single request checked before the load, so a broken endpoint fails loudly instead of timing 404s. */
  check: (base: string) => Promise<void>;
}

async function expectJson(res: Response, status: number, what: string): Promise<Record<string, unknown>> {
  const text = await res.text();
  if (res.status !== status) throw new Error(`${what}: expected ${status}, got ${res.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text) as Record<string, unknown>;
}

function scenarios(backend: string, policies: Policy[], cursors: string[]): Scenario[] {
  const ids = policies.map((p) => p.id);
  let nextId = 0;
  let nextName = 0;
  let nextCursor = 0;
  const run = Date.now().toString(36);
  const json = { 'content-type': 'application/json' };
  const all: Scenario[] = [
    {
      key: 'by-id',
      label: 'GET /policies/:id',
      requests: () => [{ method: 'GET', setupRequest: (req) => ({ ...req, path: `${API}/policies/${ids[nextId++ % ids.length]}` }) }],
      check: async (base) => {
        const body = await expectJson(await fetch(`${base}${API}/policies/${ids[0]}`), 200, 'GET /policies/:id');
        if (body['id'] !== ids[0]) throw new Error('GET /policies/:id answered another policy');
      },
    },
    {
      key: 'list',
      label: 'GET /policies?limit=100',
      requests: () => [{ method: 'GET', path: `${API}/policies?limit=100` }],
      check: async (base) => {
        const body = await expectJson(await fetch(`${base}${API}/policies?limit=100`), 200, 'GET /policies');
        if ((body['policies'] as unknown[]).length !== 100) throw new Error('GET /policies?limit=100 did not answer 100 policies');
      },
    },
    {
      key: 'create',
      label: 'POST /policies',
      requests: () => [{ method: 'POST', path: `${API}/policies`, headers: json, setupRequest: (req) => ({ ...req, body: createBody(`bench-${backend}-${run}-${nextName++}`) }) }],
      check: async (base) => {
        await expectJson(await fetch(`${base}${API}/policies`, { method: 'POST', headers: json, body: createBody(`bench-${backend}-${run}-check`) }), 201, 'POST /policies');
      },
    },
    {
      key: 'history',
      label: 'GET /history?limit=100',
      requests: () => [{ method: 'GET', path: `${API}/history?limit=100` }],
      check: async (base) => {
        const body = await expectJson(await fetch(`${base}${API}/history?limit=100`), 200, 'GET /history');
        if ((body['history'] as unknown[]).length !== 100 || typeof body['next_cursor'] !== 'string') throw new Error('GET /history?limit=100 did not answer a full page');
      },
    },
    {
      key: 'history-cursor',
      label: 'GET /history?limit=100&cursor= (deep)',
      requests: () => [{ method: 'GET', setupRequest: (req) => ({ ...req, path: `${API}/history?limit=100&cursor=${cursors[nextCursor++ % cursors.length]}` }) }],
      check: async (base) => {
        const cursor = cursors[Math.floor(cursors.length / 2)];
        const body = await expectJson(await fetch(`${base}${API}/history?limit=100&cursor=${cursor}`), 200, 'GET /history?cursor=');
        if ((body['history'] as unknown[]).length !== 100) throw new Error('GET /history?cursor= (mid-way) did not answer a full page');
      },
    },
    {
      key: 'policy-history',
      label: 'GET /policies/:id/history?limit=100',
      requests: () => [{ method: 'GET', setupRequest: (req) => ({ ...req, path: `${API}/policies/${ids[nextId++ % ids.length]}/history?limit=100` }) }],
      check: async (base) => {
        const body = await expectJson(await fetch(`${base}${API}/policies/${ids[0]}/history?limit=100`), 200, 'GET /policies/:id/history');
        if ((body['history'] as unknown[]).length === 0) throw new Error('GET /policies/:id/history answered no rows');
      },
    },
    {
      key: 'policy-history-cursor',
      label: 'GET /policies/:id/history?limit=100&cursor= (deep)',
      // Policies and depths in different strides, so that the pairs spread over both.
      requests: () => [
        {
          method: 'GET',
          setupRequest: (req) => {
            const k = nextCursor++;
            return { ...req, path: `${API}/policies/${ids[(k * 7) % ids.length]}/history?limit=100&cursor=${cursors[k % cursors.length]}` };
          },
        },
      ],
      check: async (base) => {
        const cursor = cursors[Math.floor(cursors.length / 2)];
        const body = await expectJson(await fetch(`${base}${API}/policies/${ids[0]}/history?limit=100&cursor=${cursor}`), 200, 'GET /policies/:id/history?cursor=');
        if ((body['history'] as unknown[]).length === 0) throw new Error('GET /policies/:id/history?cursor= (mid-way) answered no rows');
      },
    },
  ];
  // Each history listing again for a client that accepts gzip (browsers, curl --compressed, most
  // HTTP libraries): the daemon answers a page asked for again with the page kept compressed, a
  // page asked for once as it is.
  const gzip = { 'accept-encoding': 'gzip' };
  const compressed = all
    .filter((s) => s.key.includes('history'))
    .map(
      (s): Scenario => ({
        key: `${s.key}-gzip`,
        label: `${s.label} gzip`,
        requests: () => s.requests().map((r) => ({ ...r, headers: { ...r.headers, ...gzip } })),
        check: async (base) => {
          const [r] = s.requests();
          const path = r === undefined ? '/' : nextPath(r);
          // A page is compressed from the second time it is asked for.
          await (await fetch(`${base}${path}`, { headers: gzip })).arrayBuffer();
          const res = await fetch(`${base}${path}`, { headers: gzip });
          await res.arrayBuffer();
          if (res.headers.get('content-encoding') !== 'gzip') throw new Error(`${s.label} with Accept-Encoding: gzip was not compressed when asked again`);
          await s.check(base);
        },
      }),
    );
  return [...all, ...compressed].filter((s) => ONLY === undefined || ONLY.includes(s.key));
}

interface Row extends LoadResult {
  backend: string;
  endpoint: string;
  /** History rows the daemon's retention deleted during the measurement (warm-up excluded). */
  pruned: number;
}

/** Counts the history rows, from the bench's own connection: the rows pruned are the difference. */
type HistoryCounter = () => Promise<number>;

/** The first non-2xx answer of a run, to say what went wrong rather than only count it. */
let firstFailure: string | undefined;

/** What one load run measured (the figures raw-load reports, from either generator). */
type LoadResult = Pick<RawLoadResult, 'rps' | 'p50' | 'p99' | 'non2xx' | 'errors'> & {
  /** Bytes received per answer, headers included. */
  bytes: number;
  generator: 'autocannon' | 'raw';
};

/** The path of a scenario's next request, as autocannon would send it. */
function nextPath(r: autocannon.Request): string {
  return r.path ?? r.setupRequest?.({ method: 'GET', path: '/' } as autocannon.Request, undefined as never)?.path ?? '/';
}

/** The load generator of a scenario: LOAD=autocannon or LOAD=raw for all; by default raw for gzip answers (see bench/raw-load.ts). */
function generatorOf(s: Scenario): 'autocannon' | 'raw' {
  const chosen = env['LOAD'] === '' ? undefined : env['LOAD'];
  if (chosen === 'autocannon' || chosen === 'raw') return chosen;
  if (chosen !== undefined) throw new Error(`LOAD must be autocannon or raw, not "${chosen}"`);
  return s.key.endsWith('-gzip') ? 'raw' : 'autocannon';
}

async function load(base: string, s: Scenario, seconds: number): Promise<LoadResult> {
  firstFailure = undefined;
  if (generatorOf(s) === 'raw') {
    const [r] = s.requests();
    if (r === undefined) throw new Error(`${s.label}: no request`);
    const path = (): string => nextPath(r);
    const headers = Object.fromEntries(Object.entries(r.headers ?? {}).map(([k, v]) => [k, String(v)]));
    const out = await rawLoad({ url: base, connections: CONNECTIONS, seconds, path, headers });
    firstFailure = out.firstFailure;
    return { rps: out.rps, p50: out.p50, p99: out.p99, non2xx: out.non2xx, errors: out.errors, bytes: out.requests > 0 ? out.bytes / out.requests : 0, generator: 'raw' };
  }
  const requests = s.requests().map((r) => ({
    ...r,
    onResponse: (status: number, body: string) => {
      if ((status < 200 || status > 299) && firstFailure === undefined) firstFailure = `${status} ${body.slice(0, 300)}`;
    },
  }));
  const r = await autocannon({ url: base, connections: CONNECTIONS, duration: seconds, timeout: 10, requests });
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    bytes: r.requests.total > 0 ? r.throughput.total / r.requests.total : 0,
    generator: 'autocannon',
  };
}

/** Waits until retention has deleted a first batch, so that every measurement runs while it prunes. */
async function pruningStarted(count: HistoryCounter): Promise<void> {
  if (PRUNE_BACKLOG === 0) return;
  const first = await count();
  const deadline = Date.now() + 30_000;
  while ((await count()) >= first) {
    if (Date.now() > deadline) throw new Error('history retention deleted nothing within 30 s of the daemon start');
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function measure(backend: string, daemon: Server, seeded: Seeded, count: HistoryCounter): Promise<Row[]> {
  const out: Row[] = [];
  await pruningStarted(count);
  for (const s of scenarios(backend, seeded.policies, seeded.cursors)) {
    await s.check(daemon.url);
    if (WARMUP > 0) await load(daemon.url, s, WARMUP);
    const before = await count();
    const r = await load(daemon.url, s, DURATION);
    const after = await count();
    const row: Row = { backend, endpoint: s.label, pruned: Math.max(0, before - after), ...r };
    console.log(
      `  ${s.label.padEnd(52)} ${row.rps.toFixed(0).padStart(6)} req/s  p50 ${row.p50} ms  p99 ${row.p99} ms  non-2xx ${row.non2xx}  errors ${row.errors}  ` +
        `${(row.bytes / 1024).toFixed(1)} KiB/answer  pruned ${row.pruned.toLocaleString('en')} rows (backlog left ${Math.max(0, after - HISTORY_ROWS).toLocaleString('en')})`,
    );
    if (firstFailure !== undefined) console.log(`    first non-2xx answer: ${firstFailure}`);
    if (PRUNE_BACKLOG > 0 && after <= HISTORY_ROWS) console.log('    the backlog ran out during this measurement: raise PRUNE_BACKLOG');
    out.push(row);
  }
  return out;
}

interface Server {
  url: string;
  stop(): Promise<void>;
}

const REPO = resolve(import.meta.dirname, '..');
const CLI = join(REPO, 'dist', 'src', 'cli.js');

/** The newest modification time of the files under a folder, ms. */
function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Refuses to measure a build older than the sources (npm run bench:api builds first). */
function checkBuild(): void {
  const built = statSync(CLI, { throwIfNoEntry: false });
  if (built === undefined || built.mtimeMs < newest(join(REPO, 'src'))) {
    throw new Error(`${CLI} is missing or older than src/: run npm run build (npm run bench:api does)`);
  }
}

/**
 * Starts `node dist/src/cli.js serve` (what `npm start` runs) in a temp folder (no config file
 * there), with an empty policy folder, the loop disabled, history retention pruning the backlog,
 * and a Prometheus URL where nothing listens; resolves once /healthz answers. --cpu-prof cannot
 * go through NODE_OPTIONS, hence a spawn of our own.
 */
async function startServer(name: string, dbEnv: Record<string, string>): Promise<Server> {
  const cwd = await mkdtemp(join(os.tmpdir(), `philotes-bench-${name}-`));
  const policyDir = join(cwd, 'policies');
  await mkdir(policyDir);
  const port = await freePort();
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(PORT|HOST|LOG_LEVEL|DATABASE_URL|PHILOTES_.*|NODE_OPTIONS)$/.test(k)) childEnv[k] = v;
  Object.assign(childEnv, {
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    PHILOTES_SCALING_ENABLED: 'false',
    PHILOTES_SCALING_POLICY_DIRS: policyDir,
    PHILOTES_SCALING_PROMETHEUS_URL: `http://127.0.0.1:${await freePort()}`,
    PHILOTES_SCALING_HISTORY_RETENTION: PRUNE_BACKLOG > 0 ? RETENTION : '0',
    PHILOTES_SCALING_HISTORY_PRUNE_INTERVAL: '1s',
    ...(HISTORY_CACHE_MB === undefined ? {} : { PHILOTES_SCALING_HISTORY_CACHE_MB: HISTORY_CACHE_MB }),
    ...dbEnv,
  });
  const profile = PROFILE_DIR === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`];
  if (PROFILE_DIR !== undefined) await mkdir(PROFILE_DIR, { recursive: true });
  const child = spawn(process.execPath, [...profile, CLI, 'serve'], { cwd, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  if (PIN !== undefined && child.pid !== undefined) {
    execFileSync('taskset', ['-a', '-p', '-c', String(PIN), String(child.pid)], { stdio: 'ignore' });
    execFileSync('taskset', ['-a', '-p', '-c', String(1 - PIN), String(process.pid)], { stdio: 'ignore' });
  }
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  let gone = false;
  void exited.then(() => (gone = true));
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (!gone) {
      child.kill('SIGTERM'); // a clean exit, so --cpu-prof writes its profile
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(cwd, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (gone) {
      await stop();
      throw new Error(`the ${name} daemon exited before it was healthy:\n${output}`);
    }
    try {
      if ((await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) })).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the ${name} daemon was not healthy within 60 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, stop };
}

// ---------------------------------------------------------------------------------------------
// Storage floor (STORAGE_FLOOR=1)

/**
 * The history scenarios' queries asked of a storage directly: the pages a second the storage
 * layer alone reads, with no HTTP, no retention and no page kept in memory (every row read with its
 * answer), CONNECTIONS callers at once (on SQLite they queue behind one connection, as in the
 * daemon). An upper bound on what the API can answer for pages not kept in memory.
 */
async function storageFloor(backend: string, open: () => Storage, seeded: Seeded): Promise<void> {
  const storage = open();
  try {
    await floorRuns(backend, storage, seeded);
  } finally {
    await storage.close();
  }
}

async function floorRuns(backend: string, storage: Storage, seeded: Seeded): Promise<void> {
  const ids = seeded.policies.map((p) => p.id);
  const queries: Array<{ label: string; query: (k: number) => HistoryQuery }> = [
    { label: 'history?limit=100 (first page)', query: () => ({ limit: 100 }) },
    { label: 'history?limit=100&cursor= (deep)', query: (k) => ({ limit: 100, cursor: seeded.cursors[k % seeded.cursors.length] }) },
    { label: 'policies/:id/history?limit=100 (1,000 in turn)', query: (k) => ({ limit: 100, policy_id: ids[k % ids.length] }) },
    { label: 'policies/:id/history?limit=100&cursor= (deep)', query: (k) => ({ limit: 100, policy_id: ids[(k * 7) % ids.length], cursor: seeded.cursors[k % seeded.cursors.length] }) },
  ];
  for (const { label, query } of queries) {
    let k = 0;
    let pages = 0;
    let bytes = 0;
    const runFor = async (ms: number): Promise<void> => {
      const end = performance.now() + ms;
      await Promise.all(
        Array.from({ length: CONNECTIONS }, async () => {
          while (performance.now() < end) {
            const page = await storage.listHistoryJson(query(k++));
            pages++;
            for (const r of page.rows) bytes += r === undefined ? 0 : typeof r === 'string' ? Buffer.byteLength(r) : r.length;
          }
        }),
      );
    };
    await runFor(WARMUP * 1000);
    pages = 0;
    bytes = 0;
    const started = performance.now();
    await runFor(DURATION * 1000);
    const seconds = (performance.now() - started) / 1000;
    console.log(`  storage floor ${backend}: ${label.padEnd(48)} ${(pages / seconds).toFixed(0).padStart(6)} pages/s  ${(bytes / pages / 1024).toFixed(1)} KiB of answers a page`);
  }
}

// ---------------------------------------------------------------------------------------------
// Main

const cpus = os.cpus();
console.log(`API benchmark: ${POLICIES} policies, ${HISTORY_ROWS.toLocaleString('en')} history rows, ${DURATION} s per endpoint (after ${WARMUP} s warm-up), ${CONNECTIONS} connections`);
console.log(`machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}, Node.js ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
checkBuild();
console.log(`daemon: child process (node dist/src/cli.js serve, as npm start), evaluation loop disabled, LOG_LEVEL=warn; load: ${CONNECTIONS} connections in this process (autocannon; bench/raw-load.ts for gzip answers unless LOAD says otherwise)${PIN === undefined ? '' : `; daemon pinned to CPU ${PIN}, this process to CPU ${1 - PIN}`}${HISTORY_CACHE_MB === undefined ? '' : `; history_cache_mb ${HISTORY_CACHE_MB}`}`);
console.log(
  PRUNE_BACKLOG > 0
    ? `history retention ${RETENTION}, a pass every 1 s: ${PRUNE_BACKLOG.toLocaleString('en')} more rows, older than the retention, are pruned during the measurements`
    : 'history retention off (PRUNE_BACKLOG=0)',
);

const results: Row[] = [];
const seeding: string[] = [];
for (const backend of BACKENDS) {
  console.log(`\n${backend}:`);
  if (backend === 'sqlite') {
    const dir = await mkdtemp(join(os.tmpdir(), 'philotes-bench-api-'));
    try {
      const path = join(dir, 'scaler.db');
      const seeded = await sqliteSeed(path);
      const line = `sqlite: ${POLICIES} policies in ${(seeded.policiesMs / 1000).toFixed(1)} s, ${(HISTORY_ROWS + PRUNE_BACKLOG).toLocaleString('en')} history rows (${PRUNE_BACKLOG.toLocaleString('en')} of them older than the retention) in ${(seeded.historyMs / 1000).toFixed(1)} s (details ${seeded.detailsBytes.toFixed(0)} B on average; ${seeded.size})`;
      console.log(`  seeded ${line}`);
      seeding.push(line);
      const daemon = await startServer('bench-sqlite', { PHILOTES_SCALING_DATABASE_PATH: path });
      const reader = new Database(path, { readonly: true });
      try {
        const count = async (): Promise<number> => (reader.prepare('SELECT count(*) AS n FROM scaling_history').get() as { n: number }).n;
        results.push(...(await measure(backend, daemon, seeded, count)));
      } finally {
        reader.close();
        await daemon.stop();
      }
      if (STORAGE_FLOOR) await storageFloor(backend, () => createSqliteStorage(path), seeded);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  } else if (backend === 'postgres') {
    const db = await postgresSeed();
    try {
      const seeded = db.seeded;
      const line = `postgres: ${POLICIES} policies in ${(seeded.policiesMs / 1000).toFixed(1)} s, ${(HISTORY_ROWS + PRUNE_BACKLOG).toLocaleString('en')} history rows (${PRUNE_BACKLOG.toLocaleString('en')} of them older than the retention) in ${(seeded.historyMs / 1000).toFixed(1)} s incl. VACUUM ANALYZE (details ${seeded.detailsBytes.toFixed(0)} B on average; ${seeded.size})`;
      console.log(`  seeded ${line}`);
      seeding.push(line);
      const daemon = await startServer('bench-postgres', { DATABASE_URL: db.url });
      const reader = new pg.Client({ connectionString: db.url });
      await reader.connect();
      try {
        const count = async (): Promise<number> => Number((await reader.query<{ n: string }>('SELECT count(*) AS n FROM scaling_history')).rows[0]?.n);
        results.push(...(await measure(backend, daemon, seeded, count)));
      } finally {
        await reader.end();
        await daemon.stop();
      }
      if (STORAGE_FLOOR) await storageFloor(backend, () => createPostgresStorage(db.url), seeded);
    } finally {
      await db.drop();
    }
  } else {
    throw new Error(`unknown backend "${backend}" (BACKENDS takes sqlite and postgres)`);
  }
}

console.log('\nSeeding (setup, not measured):');
for (const s of seeding) console.log(`  ${s}`);
console.log(`\n| backend | endpoint | req/s (avg) | p50 ms | p99 ms | non-2xx | errors | KiB/answer | rows pruned meanwhile | load |`);
console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---|');
for (const r of results) {
  console.log(`| ${r.backend} | ${r.endpoint} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${r.errors} | ${(r.bytes / 1024).toFixed(1)} | ${r.pruned.toLocaleString('en')} | ${r.generator} |`);
}
for (const r of results.filter((x) => HISTORY_GOAL.endpoints.includes(x.endpoint))) {
  const met = r.rps >= HISTORY_GOAL.rps && r.p99 <= HISTORY_GOAL.p99 && r.non2xx === 0 && r.errors === 0 && (PRUNE_BACKLOG === 0 || r.pruned > 0);
  console.log(`Goal (${r.backend}, ${r.endpoint} >= ${HISTORY_GOAL.rps} req/s, p99 <= ${HISTORY_GOAL.p99} ms, while pruning): ${met ? 'met' : 'MISSED'} (${r.rps.toFixed(0)} req/s, p99 ${r.p99} ms, ${r.pruned.toLocaleString('en')} rows pruned)`);
}
const goalRow = results.find((r) => r.backend === 'sqlite' && r.endpoint === 'GET /policies/:id');
if (goalRow !== undefined) {
  const met = goalRow.rps >= GOAL.rps && goalRow.p99 <= GOAL.p99 && goalRow.non2xx === 0 && goalRow.errors === 0;
  console.log(`\nGoal (SQLite, GET /policies/:id >= ${GOAL.rps} req/s, p99 <= ${GOAL.p99} ms): ${met ? 'met' : 'MISSED'} (${goalRow.rps.toFixed(0)} req/s, p99 ${goalRow.p99} ms)`);
  if (!met) process.exitCode = 1;
}
