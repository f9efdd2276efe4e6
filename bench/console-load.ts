// Load times of the web console in headless Chromium (Debian's chromium, driven by playwright-core)
// against a daemon on SQLite holding 10,000 policies, each with an engine state (the daemon's
// first cycle, against an unreachable Prometheus, records a decision for every one), and one
// policy with a week of history (a row every 5 minutes, and a worst case of one every minute),
// each row carrying a real decision record.
// Reports, median of RUNS fresh browser contexts (nothing cached), from navigation start:
//   - the policies page until its first 100 rows are on the page (10,000 policies);
//   - the same page with a search that matches 1,111 of them;
//   - one policy's page with the 7-day range until its charts and decision list are on the page;
// and the API alone (GET /overview warm and right after a policy changed, GET .../timeline and the
// history pages for the week).
// Goal: the overview in under a second. Run: npm run bench:console (RUNS=5, POLICIES=10000).
import { mkdtempSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Page } from 'playwright-core';
import { startDaemon } from '../src/main.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import type { HistoryRow } from '../src/storage/storage.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import { launchBrowser } from '../test/helpers/browser.js';
import { testDaemonConfig } from '../test/helpers/daemon-config.js';
import { benchPolicy } from './bench-policies.js';

const POLICIES = Number(process.env['POLICIES'] ?? 10_000);
const RUNS = Number(process.env['RUNS'] ?? 5);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

const built = spawnSync(process.execPath, ['scripts/build-ui.mjs'], { encoding: 'utf8' });
if (built.status !== 0) throw new Error(built.stderr);
console.log(`machine: ${cpus()[0]?.model ?? 'cpu'} x${cpus().length}, node ${process.version}; ${built.stdout.trim()}`);

const dir = mkdtempSync(join(tmpdir(), 'ps-bench-console-'));
const file = join(dir, 'db.sqlite');
{
  const started = Date.now();
  const storage = createSqliteStorage(file);
  await storage.migrate();
  for (let i = 0; i < POLICIES; i++) await storage.createPolicy(normalizePolicy(benchPolicy(i), { source: 'api', now: new Date() }));
  await storage.close();
  console.log(`seeded ${POLICIES} policies in ${Date.now() - started} ms`);
}

const config = testDaemonConfig(dir, { database_path: file, evaluation_interval: '1h', policy_dirs: [] });
const daemon = await startDaemon(config, pino({ level: 'silent' }));
const base = `http://127.0.0.1:${daemon.port}`;
const api = `${base}/api/v1/scaling`;
const json = async <T>(path: string, init?: RequestInit): Promise<T> => (await (await fetch(`${api}/${path}`, init)).json()) as T;

// The first cycle gives every policy a state and a last decision.
for (;;) {
  const row = await json<{ policies: Array<{ last_decision: unknown }> }>(`overview?limit=1&offset=${POLICIES - 1}`);
  if (row.policies[0]?.last_decision !== null && row.policies[0]?.last_decision !== undefined) break;
  await new Promise((r) => setTimeout(r, 500));
}

// A week of history for two policies, each row with a real decision record.
async function weekOf(name: string, everySeconds: number): Promise<{ id: string; rows: number }> {
  const policy = await json<{ id: string; name: string }>(`policies/${name}`);
  const record = await json<Record<string, unknown>>(`policies/${name}/evaluate`, { method: 'POST' });
  const now = Date.now();
  const started = Date.now();
  let rows = 0;
  let replicas = 3;
  for (let t = now - 7 * 86400_000; t < now; t += everySeconds * 1000) {
    const up = rows % 4 !== 3;
    const next = Math.max(1, Math.min(10, replicas + (up ? 1 : -2)));
    const row: HistoryRow = {
      id: randomUUID(), policy_id: policy.id, policy_name: policy.name, action: up ? 'scale_up' : 'scale_down', target_type: 'cdc-worker', target_id: null,
      previous_replicas: replicas, new_replicas: next, reason: `bench row ${rows}`, reason_code: up ? 'rules_held' : 'rules_held', triggered_by: 'rule',
      dry_run: false, status: rows % 7 === 0 ? 'blocked' : 'succeeded', error: null, executed_at: new Date(t).toISOString(),
      details: { ...record, evaluated_at: new Date(t).toISOString(), current_replicas: replicas, desired_replicas: next },
    };
    await daemon.storage.appendHistory(row);
    if (row.status === 'succeeded') replicas = next;
    rows++;
  }
  console.log(`${name}: ${rows} history rows written in ${Date.now() - started} ms (record ${JSON.stringify(record).length} bytes each)`);
  return { id: policy.id, rows };
}
const fiveMinutes = await weekOf('bench-1', 300);
const everyMinute = await weekOf('bench-2', 60);

async function apiTime(path: string): Promise<number> {
  const started = performance.now();
  const res = await fetch(`${api}/${path}`);
  await res.arrayBuffer();
  return performance.now() - started;
}
async function apiRuns(path: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < RUNS; i++) out.push(await apiTime(path));
  return out;
}
async function weekHistory(id: string): Promise<number> {
  const started = performance.now();
  let cursor: string | null = null;
  const since = new Date(Date.now() - 7 * 86400_000).toISOString();
  do {
    const page: { next_cursor: string | null } = await json(`policies/${id}/history?limit=1000&since=${since}${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`);
    cursor = page.next_cursor;
  } while (cursor !== null);
  return performance.now() - started;
}

const browser = await launchBrowser();
async function load(hash: string, mark: string, ready: (p: Page) => Promise<unknown>): Promise<number> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  await page.goto(`${base}/ui/${hash}`);
  await ready(page);
  await page.waitForFunction((m) => performance.getEntriesByName(m).length > 0, mark);
  const ms = await page.evaluate((m) => performance.getEntriesByName(m)[0]?.startTime ?? -1, mark);
  if (process.env['VERBOSE'] === '1') {
    const where = await page.evaluate(() => ({
      dom: Math.round((performance.getEntriesByType('navigation' as never)[0] as unknown as { domContentLoadedEventEnd?: number } | undefined)?.domContentLoadedEventEnd ?? -1),
      api: performance
        .getEntriesByType('resource' as never)
        .map((r) => r as unknown as { name: string; startTime: number; responseEnd: number })
        .filter((r) => r.name.includes('/api/'))
        .map((r) => `${new URL(r.name).pathname.split('/').pop()} ${Math.round(r.startTime)}-${Math.round(r.responseEnd)}`),
    }));
    console.log(`  ${hash}: rendered at ${Math.round(ms)} ms; DOMContentLoaded ${where.dom} ms; API ${where.api.join(', ')}`);
  }
  await context.close();
  return ms;
}

const results: Array<[string, number[]]> = [];
const runs = async (label: string, f: () => Promise<number>): Promise<void> => {
  const xs: number[] = [];
  for (let i = 0; i < RUNS; i++) xs.push(await f());
  results.push([label, xs]);
};
results.push([`API: GET /overview?limit=100 (${POLICIES} policies)`, await apiRuns('overview?limit=100')]);
results.push(['API: GET /overview?q=bench-1&limit=100 (search)', await apiRuns('overview?q=bench-1&limit=100')]);
// After any policy changes, the next /overview reads every policy again.
let touched = 0;
await runs(`API: GET /overview?limit=100 right after a policy changed (one of ${POLICIES} read again)`, async () => {
  await fetch(`${api}/policies/bench-3/${touched++ % 2 === 0 ? 'disable' : 'enable'}`, { method: 'POST' });
  return apiTime('overview?limit=100');
});
const weekAgo = (): string => encodeURIComponent(new Date(Date.now() - 7 * 86400_000).toISOString());
await runs(`API: GET .../timeline, 7 days, ${fiveMinutes.rows} decisions`, () => apiTime(`policies/${fiveMinutes.id}/timeline?since=${weekAgo()}`));
await runs(`API: GET .../timeline, 7 days, ${everyMinute.rows} decisions`, () => apiTime(`policies/${everyMinute.id}/timeline?since=${weekAgo()}`));
await runs(`API: GET .../history, 7 days, ${fiveMinutes.rows} rows with records (pages of 1,000)`, () => weekHistory(fiveMinutes.id));
await runs(`API: GET .../history, 7 days, ${everyMinute.rows} rows with records`, () => weekHistory(everyMinute.id));
await runs(`console: policies page, first 100 of ${POLICIES} rows on the page`, () => load('#/', 'overview-rendered', (p) => p.locator('table.policies tbody tr').nth(99).waitFor()));
await runs('console: policies page with a search (#/?q=bench-1)', () => load('#/?q=bench-1', 'overview-rendered', (p) => p.locator('table.policies tbody tr').nth(99).waitFor()));
await runs(`console: one policy, 7 days, ${fiveMinutes.rows} decisions`, () => load(`#/policies/${fiveMinutes.id}?range=604800`, 'policy-rendered', (p) => p.locator('[data-testid=replica-chart] canvas').waitFor()));
await runs(`console: one policy, 7 days, ${everyMinute.rows} decisions`, () => load(`#/policies/${everyMinute.id}?range=604800`, 'policy-rendered', (p) => p.locator('[data-testid=replica-chart] canvas').waitFor({ timeout: 60_000 })));

await browser.close();
await daemon.close();
rmSync(dir, { recursive: true, force: true });

console.log(`\nmedian of ${RUNS} (min–max), ms; console times from navigation start, each in a fresh browser context`);
console.log('| measurement | median | min–max |');
console.log('|---|---|---|');
for (const [label, xs] of results) console.log(`| ${label} | ${Math.round(median(xs))} | ${Math.round(Math.min(...xs))}–${Math.round(Math.max(...xs))} |`);
