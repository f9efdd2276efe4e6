// What SQLite alone costs for the history rows of one churn cycle at 100,000 policies: 20,000
// rows appended to a history table that already holds the rows of earlier cycles, with no engine,
// no executor, no state writes and no decision built, each way the rows could be written:
//   - in transactions of 200 rows (about what the loop's grouped writes gather under churn),
//   - all 20,000 in one transaction (the cheapest SQLite allows for one cycle's rows),
//   - the same with only the primary key, the secondary indexes (by time, policy, name, action,
//     status, policy and action: what the history listings and filters read) dropped.
// Each row is written as the daemon writes it (the columns, the decision record in `details` and
// the row's answer text in `answer_json`, by the same INSERT on the project's migrated schema), its
// decision record shaped like a churn policy's (two rules with their values and verdicts), the
// policy one of 100,000, the id a random UUID. The goal of 0.5 s per churn cycle at 100,000
// policies (20,000 changes) includes these rows; this prints what they alone take.
//
// Run: npx tsx bench/churn-floor.ts   (CYCLES=8 cycles of 20,000 rows on top of each other for
// each way; CHANGES=20000; POLICIES=100000; a file in the system's temporary folder, removed after)
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { historyJson } from '../src/storage/sql-storage.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import type { HistoryRow } from '../src/storage/storage.js';

const env = process.env;
const CYCLES = Number(env['CYCLES'] ?? 8);
const CHANGES = Number(env['CHANGES'] ?? 20_000);
const POLICIES = Number(env['POLICIES'] ?? 100_000);

const policies = Array.from({ length: POLICIES }, () => randomUUID());

function record(policyId: string, at: string, up: boolean): Record<string, unknown> {
  const metric = `avg(philotes_bench_lag_seconds{query="q${policyId.slice(0, 3)}"})`;
  const rule = (direction: string, operator: string, threshold: number, held: boolean): Record<string, unknown> => ({
    id: `${direction}-0`,
    direction,
    metric,
    source: 'prometheus',
    operator,
    threshold,
    window_seconds: 0,
    samples: 1,
    value: up ? 100 : 1,
    held,
    error: null,
  });
  return {
    policy_id: policyId,
    evaluated_at: at,
    current_replicas: up ? 1 : 2,
    desired_replicas: up ? 2 : 1,
    action: up ? 'scale_up' : 'scale_down',
    reason_code: 'rule_triggered',
    reason: up ? `${metric} > 60 (value 100): scale up by 1 to 2 replicas` : `${metric} < 5 (value 1): scale down by 1 to 1 replica`,
    should_scale: true,
    dry_run: false,
    triggered_rules: [up ? 'up-0' : 'down-0'],
    rules: [rule('up', 'gt', 60, up), rule('down', 'lt', 5, !up)],
  };
}

function row(i: number, atMs: number): HistoryRow {
  const p = Math.floor(Math.random() * POLICIES);
  const policyId = policies[p] as string;
  const at = new Date(atMs).toISOString();
  const up = i % 2 === 0;
  return {
    id: randomUUID(),
    policy_id: policyId,
    policy_name: `churn-${p}`,
    action: up ? 'scale_up' : 'scale_down',
    target_type: 'cdc-worker',
    target_id: `churn-${p}`,
    previous_replicas: up ? 1 : 2,
    new_replicas: up ? 2 : 1,
    reason: up ? 'a rule held: scale up by 1' : 'a rule held: scale down by 1',
    reason_code: 'rule_triggered',
    triggered_by: 'rule',
    dry_run: false,
    status: 'succeeded',
    error: null,
    executed_at: at,
    details: record(policyId, at, up),
  };
}

const INSERT = `INSERT INTO scaling_history (id, policy_id, policy_name, action, target_type, target_id, previous_replicas, new_replicas, reason,
  reason_code, triggered_by, dry_run, status, error, executed_at, details, answer_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

interface Way {
  label: string;
  group: number;
  secondaryIndexes: boolean;
}

const WAYS: Way[] = [
  { label: 'transactions of 200 rows', group: 200, secondaryIndexes: true },
  { label: 'one transaction', group: CHANGES, secondaryIndexes: true },
  { label: 'one transaction, primary key only', group: CHANGES, secondaryIndexes: false },
];

async function run(way: Way): Promise<{ ms: number[]; rowBytes: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'ps-churn-floor-'));
  try {
    const file = join(dir, 'scaler.db');
    const storage = createSqliteStorage(file);
    await storage.migrate();
    await storage.close();
    // The migrated file, opened with the daemon's settings (src/storage/sqlite-storage.ts).
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('wal_autocheckpoint = 10000');
    db.pragma('journal_size_limit = 67108864');
    if (!way.secondaryIndexes) {
      const names = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'scaling_history' AND name LIKE 'idx_%'`).all() as Array<{ name: string }>;
      for (const { name } of names) db.exec(`DROP INDEX ${name}`);
    }
    const insert = db.prepare(INSERT);
    const write = db.transaction((rows: HistoryRow[]) => {
      for (const r of rows) {
        insert.run(r.id, r.policy_id, r.policy_name, r.action, r.target_type, r.target_id, r.previous_replicas, r.new_replicas, r.reason, r.reason_code,
          r.triggered_by, r.dry_run ? 1 : 0, r.status, r.error, r.executed_at, JSON.stringify(r.details), historyJson(r));
      }
    });
    const ms: number[] = [];
    let bytes = 0;
    let start = Date.UTC(2026, 11, 1);
    for (let c = 0; c < CYCLES; c++) {
      // Rows built before the clock starts: only SQLite's part is timed.
      const rows = Array.from({ length: CHANGES }, (_, i) => row(i, start + i));
      for (const r of rows.slice(0, 100)) bytes += Buffer.byteLength(JSON.stringify(r.details)) + Buffer.byteLength(historyJson(r));
      start += CHANGES + 60_000;
      const t0 = performance.now();
      for (let i = 0; i < rows.length; i += way.group) write(rows.slice(i, i + way.group));
      ms.push(performance.now() - t0);
    }
    db.close();
    return { ms, rowBytes: bytes / (CYCLES * 100) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`machine: ${cpus()[0]?.model ?? 'unknown'} x${cpus().length}, node ${process.version}`);
console.log(`${CHANGES.toLocaleString('en')} history rows a cycle over ${POLICIES.toLocaleString('en')} policies, ${CYCLES} cycles on top of each other, SQLite with the daemon's settings\n`);
console.log('| way | rows before the last cycle | first cycle | last cycle | median | bytes a row (record + answer) |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const way of WAYS) {
  const { ms, rowBytes } = await run(way);
  const sorted = [...ms].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  console.log(`| ${way.label} | ${((CYCLES - 1) * CHANGES).toLocaleString('en')} | ${ms[0]?.toFixed(0)} ms | ${ms.at(-1)?.toFixed(0)} ms | ${median.toFixed(0)} ms | ${rowBytes.toFixed(0)} |`);
}
