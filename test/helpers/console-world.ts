/**
 * A daemon with real data for the web console's tests and screenshots: a week of metric history
 * backfilled into a real Prometheus up to two minutes ago (a live exporter answers from then on), policies created
 * through the API and a policy file, a week of decisions made by the daemon's own engine at
 * instants of a clock the helper steps through that week, then the daemon serving it all.
 *
 * The metrics, by UTC hour of each day (minute resolution):
 *   philotes_cdc_lag_seconds{source="orders"}:   10, 150 from 09:00 to 10:30, 90 from 14:00 to 14:40,
 *                                                 and on day 3 an incident at 400 from 20:00 to 23:00
 *   philotes_cdc_lag_seconds{source="payments"}: 5, 80 from 12:00 to 12:30
 *   trino_queued_queries:                         2, 28 from 08:00 to 17:00
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ScalingManager } from '../../src/engine/manager.js';
import { startDaemon, type Daemon } from '../../src/main.js';
import { createSqliteStorage } from '../../src/storage/sqlite-storage.js';
import { PluginManager } from '../../src/plugins/plugin-manager.js';
import { call } from './app.js';
import { testDaemonConfig } from './daemon-config.js';
import { backfill, startExporter, startPrometheus, tempDataDir, type Exporter, type PrometheusServer } from './prometheus.js';

export const READ_TOKEN = 'console-read-token-0123456789';
export const WRITE_TOKEN = 'console-write-token-0123456789';
export const PRICES = { 'cdc-worker': 0.12, trino: 0.6, risingwave: 0.9 };

const MIN = 60;
const HOUR = 3600;
const DAY = 86400;

export function ordersLag(t: number, start: number): number {
  const day = Math.floor((t - start) / DAY);
  const h = (((t % DAY) + DAY) % DAY) / HOUR;
  if (day === 3 && h >= 20 && h < 23) return 400;
  if (h >= 9 && h < 10.5) return 150;
  if (h >= 14 && h < 14 + 40 / 60) return 90;
  return 10;
}

export function paymentsLag(t: number): number {
  const h = (((t % DAY) + DAY) % DAY) / HOUR;
  return h >= 12 && h < 12.5 ? 80 : 5;
}

export function trinoQueued(t: number): number {
  const h = (((t % DAY) + DAY) % DAY) / HOUR;
  return h >= 8 && h < 17 ? 28 : 2;
}

export interface ConsoleWorld {
  daemon: Daemon;
  /** http://127.0.0.1:PORT */
  base: string;
  prom: PrometheusServer;
  exporter: Exporter;
  /** The simulated week: [start, end] in seconds, evaluated every stepSeconds. */
  start: number;
  end: number;
  stepSeconds: number;
  cycles: number;
  /** Policies by name. */
  ids: Record<string, string>;
  close(): Promise<void>;
}

function openMetrics(start: number, end: number): string {
  const lines: string[] = ['# TYPE philotes_cdc_lag_seconds gauge'];
  for (let t = start; t <= end; t += MIN) lines.push(`philotes_cdc_lag_seconds{source="orders"} ${ordersLag(t, start)} ${t}`);
  for (let t = start; t <= end; t += MIN) lines.push(`philotes_cdc_lag_seconds{source="payments"} ${paymentsLag(t)} ${t}`);
  lines.push('# TYPE trino_queued_queries gauge');
  for (let t = start; t <= end; t += MIN) lines.push(`trino_queued_queries ${trinoQueued(t)} ${t}`);
  lines.push('# EOF');
  return `${lines.join('\n')}\n`;
}

const TRINO_FILE = `name: trino-workers
description: Trino workers follow queued queries, five per worker, with three from 08:00 on weekdays.
target_type: trino
min_replicas: 2
max_replicas: 12
cooldown_seconds: 600
target_tracking:
  - metric: sum(trino_queued_queries)
    target_per_replica: 5
schedules:
  - cron_expression: "0 8 * * 1-5"
    timezone: Europe/Budapest
    desired_replicas: 3
    duration: 10h
    mode: floor
`;

/** Builds the world; `days` of history ending two minutes ago, one evaluation every `stepSeconds`. */
export async function buildConsoleWorld(opts: { days?: number; stepSeconds?: number } = {}): Promise<ConsoleWorld> {
  const days = opts.days ?? 7;
  const stepSeconds = opts.stepSeconds ?? 600;
  const cleanups: Array<() => Promise<unknown>> = [];
  const close = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  try {
    // Up to two minutes ago: from there on the exporter answers, so the daemon finds whole windows now.
    const end = Math.floor(Date.now() / 1000 / MIN) * MIN - 2 * MIN;
    const start = end - days * DAY;
    const dataDir = await tempDataDir();
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    await backfill(dataDir, openMetrics(start, end));
    const exporter = await startExporter();
    cleanups.push(() => exporter.close());
    exporter.set('philotes_cdc_lag_seconds', { source: 'orders' }, 95);
    exporter.set('philotes_cdc_lag_seconds', { source: 'payments' }, 5);
    exporter.set('trino_queued_queries', {}, 17);
    const prom = await startPrometheus({ dataDir, target: exporter.target, waitForMetric: 'trino_queued_queries' });
    cleanups.push(() => prom.stop());

    const dir = await mkdtemp(join(tmpdir(), 'philotes-console-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'policies'), { recursive: true });
    writeFileSync(join(dir, 'policies', 'trino.yaml'), TRINO_FILE);
    const flags = { prometheus_url: prom.url, prices: PRICES, api_token: WRITE_TOKEN, api_read_token: READ_TOKEN };
    const logger = pino({ level: 'silent' });

    // 1. A daemon without its loop: the policy file is loaded, and policies are created over the API.
    const setup = await startDaemon(testDaemonConfig(dir, { ...flags, enabled: false }), logger);
    const api = `http://127.0.0.1:${setup.port}/api/v1/scaling`;
    const auth = { authorization: `Bearer ${WRITE_TOKEN}` };
    const lag = (source: string) => `max(philotes_cdc_lag_seconds{source="${source}"})`;
    const bodies = [
      {
        name: 'orders-cdc',
        description: 'CDC workers of the orders database follow replication lag.',
        target_type: 'cdc-worker',
        target_id: '7f1c2a4e-9b1d-4c55-8e0a-3f6d2b8c9a10',
        min_replicas: 1,
        max_replicas: 10,
        cooldown_seconds: 900,
        scale_up_rules: [{ metric: lag('orders'), operator: 'gt', threshold: 60, duration: '5m', scale_by: 2 }],
        scale_down_rules: [{ metric: lag('orders'), operator: 'lt', threshold: 15, duration: '20m', scale_by: -1 }],
      },
      {
        name: 'payments-cdc',
        description: 'A shadow policy: it records what it would do, and changes nothing.',
        target_type: 'cdc-worker',
        min_replicas: 1,
        max_replicas: 6,
        dry_run: true,
        cooldown_seconds: 600,
        scale_up_rules: [{ metric: lag('payments'), operator: 'gt', threshold: 50, duration: '5m', scale_by: 1 }],
        scale_down_rules: [{ metric: lag('payments'), operator: 'lt', threshold: 10, duration: '30m', scale_by: -1 }],
      },
      {
        name: 'risingwave-nightly',
        description: 'Six RisingWave replicas for the nightly batch window.',
        target_type: 'risingwave',
        min_replicas: 1,
        max_replicas: 6,
        schedules: [{ cron_expression: '0 1 * * *', timezone: 'UTC', desired_replicas: 6, duration: '4h', mode: 'exact' }],
      },
      {
        name: 'reports-cdc',
        target_type: 'cdc-worker',
        min_replicas: 1,
        max_replicas: 4,
        scale_up_rules: [{ metric: lag('orders'), operator: 'gt', threshold: 300, duration: '10m', scale_by: 1 }],
      },
      {
        name: 'archive-cdc',
        target_type: 'cdc-worker',
        enabled: false,
        min_replicas: 1,
        max_replicas: 2,
        scale_up_rules: [{ metric: lag('orders'), operator: 'gt', threshold: 600, duration: '10m', scale_by: 1 }],
      },
    ];
    const ids: Record<string, string> = {};
    for (const body of bodies) {
      const r = await call('POST', `${api}/policies`, body, auth);
      if (r.status !== 201) throw new Error(`creating ${body.name}: ${r.status} ${r.text}`);
      ids[body.name] = (r.body as { id: string }).id;
    }
    const listed = await call('GET', `${api}/policies?limit=100`, undefined, auth);
    for (const p of (listed.body as { policies: Array<{ id: string; name: string }> }).policies) ids[p.name] = p.id;
    if (ids['trino-workers'] === undefined) throw new Error('the policy file was not loaded');
    await setup.close();

    // 2. The week, evaluated by the daemon's engine at each step of a clock over it.
    const storage = createSqliteStorage(join(dir, 'db.sqlite'));
    const plugins = new PluginManager({ dirs: [PluginManager.bundledDir()], configs: { prometheus: { url: prom.url } }, logger, timeoutMs: 5_000 });
    await plugins.loadAll();
    let clock = new Date(start * 1000);
    const executors = { 'cdc-worker': 'keda', trino: 'keda', risingwave: 'keda', nodes: 'logger' };
    const manager = new ScalingManager({
      storage,
      logger,
      sources: plugins.sources,
      executors: plugins.executors,
      config: { evaluation_interval_ms: 60_000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 4, executors, prices: PRICES },
      now: () => clock,
    });
    let cycles = 0;
    for (let t = start + 30 * MIN; t <= end; t += stepSeconds) {
      clock = new Date(t * 1000);
      await manager.runCycle();
      cycles++;
    }
    await plugins.close();
    await storage.close();

    // 3. The daemon as an operator runs it, on that database, pausing one policy over the API.
    const daemon = await startDaemon(testDaemonConfig(dir, { ...flags, evaluation_interval: '1h' }), logger);
    cleanups.push(() => daemon.close());
    const base = `http://127.0.0.1:${daemon.port}`;
    const paused = await call('POST', `${base}/api/v1/scaling/policies/reports-cdc/pause`, { reason: 'orders schema migration in progress' }, auth);
    if (paused.status !== 200) throw new Error(`pausing reports-cdc: ${paused.status} ${paused.text}`);
    return { daemon, base, prom, exporter, start, end, stepSeconds, cycles, ids, close };
  } catch (err) {
    await close();
    throw err;
  }
}
