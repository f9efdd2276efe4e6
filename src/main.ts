import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { createApp, type RouteRegistrar } from './api/app.js';
import { listen } from './api/http-server.js';
import { ReadinessError, ReadinessMonitor, type ReadinessCheck } from './api/readiness.js';
import type { ResolvedConfig } from './config/config.js';
import { registerBacktestRoutes } from './backtest/backtest-controller.js';
import { BacktestLimiter } from './backtest/backtest-limiter.js';
import { registerEngineRoutes } from './engine/engine-controller.js';
import { registerConsoleRoutes } from './console/console-controller.js';
import { loadUiAssets, registerUiRoutes } from './console/ui-assets.js';
import { FAILING_AFTER, ScalingManager } from './engine/manager.js';
import { tokensFrom } from './api/auth.js';
import { buildOpenApi } from './api/openapi.js';
import { readPackageJson } from './util/package-root.js';
import type Koa from 'koa';
import { LeaderElection } from './engine/leader-election.js';
import { HistoryRetention } from './history/history-retention.js';
import { PolicyFileLoader } from './files/policy-file-loader.js';
import { PolicyCounts, ScalerMetrics } from './metrics.js';
import { createPluginManager } from './plugins/load-plugins.js';
import type { PluginManager } from './plugins/plugin-manager.js';
import { PolicyService } from './policy/policy-service.js';
import { createValidationContext, namesFromPlugins } from './policy/validation-context.js';
import { openStorage } from './storage/open-storage.js';
import type { Storage } from './storage/storage.js';

/** A running daemon; close() stops its parts in the reverse order of start. */
export interface Daemon {
  readonly app: Koa;
  readonly server: Server;
  readonly storage: Storage;
  readonly policies: PolicyService;
  readonly plugins: PluginManager;
  readonly manager: ScalingManager;
  readonly files: PolicyFileLoader;
  readonly metrics: ScalerMetrics;
  /** Undefined when the loop is disabled by config. */
  readonly election: LeaderElection | undefined;
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  close(): Promise<void>;
}


/** One metric source's health as /readyz shows it. */
interface SourceCheck {
  ok: boolean;
  error?: string;
  checked_at: string;
}

/** The metric_sources detail, or a ReadinessError naming how many are unreachable. */
function sourcesResult(sources: Record<string, SourceCheck>): Record<string, unknown> {
  const bad = Object.values(sources).filter((s) => !s.ok).length;
  if (bad > 0) throw new ReadinessError(`${bad} metric source(s) unreachable`, { sources });
  return { sources };
}

/** Wires config -> storage -> migrations -> plugins -> services -> loop -> HTTP, and listens. */
export async function startDaemon(config: ResolvedConfig, logger: Logger): Promise<Daemon> {
  const stops: Array<{ name: string; stop: () => Promise<void> }> = [];
  const stopAll = async (): Promise<void> => {
    for (const s of [...stops].reverse()) {
      try {
        await s.stop();
      } catch (err) {
        logger.warn({ err, part: s.name }, 'error while stopping');
      }
    }
  };
  try {
    const storage = openStorage(config, { logger });
    stops.push({ name: 'storage', stop: () => storage.close() });
    const migrations = await storage.migrate();
    const applied = migrations.filter((m) => m.status === 'applied').map((m) => m.name);
    logger.info({ storage: storage.kind, applied }, applied.length > 0 ? 'migrations applied' : 'schema up to date');

    // Filled in below; the metrics collectors only run on a scrape, after start. They read memory
    // only: the policy counts are kept by a background task, never counted per scrape.
    const late: { files?: PolicyFileLoader; plugins?: PluginManager } = {};
    const policyCounts = new PolicyCounts(storage, { logger, onChange: () => metrics.invalidate() });
    const metrics = new ScalerMetrics({
      policiesBySource: () => policyCounts.counts,
      fileErrors: () => late.files?.problems().length ?? 0,
      plugins: () => late.plugins?.statuses ?? [],
    });
    await policyCounts.start();
    stops.push({ name: 'policy counts', stop: async () => policyCounts.stop() });

    const plugins = createPluginManager(config, logger, metrics);
    late.plugins = plugins;
    await plugins.loadAll();
    stops.push({ name: 'plugins', stop: () => plugins.close() });

    const policies = new PolicyService({
      storage,
      validation: createValidationContext(config, namesFromPlugins(plugins)),
      defaultCooldown: config.default_cooldown,
    });
    const files = new PolicyFileLoader({
      dirs: config.policy_dirs,
      storage,
      policies,
      logger,
      maxFileBytes: config.max_policy_file_bytes,
      onReload: (status) => metrics.fileReloads.inc({ status: status.status }),
    });
    late.files = files;
    await files.start();
    stops.push({ name: 'policy files', stop: () => files.close() });

    const manager = new ScalingManager({
      storage,
      logger,
      sources: plugins.sources,
      executors: plugins.executors,
      config,
      onCycle: (report) => metrics.cycleDuration.observe(report.duration_ms / 1000),
      onDecision: (outcome, trigger) => metrics.countEvaluations(outcome.action, outcome.reason_code, trigger),
      onRepeated: (count) => metrics.countEvaluations('none', 'no_rule_held', 'loop', count),
      // The loop runs only while elected; every change it makes is fenced by that leadership.
      fence: () => (election === undefined ? false : election.fence()),
    });
    const election: LeaderElection | undefined = config.enabled
      ? new LeaderElection({
          lock: storage.leaderLock(),
          logger,
          // Followers compete twice per interval, so a dead leader is replaced within one interval.
          checkMs: Math.max(500, Math.min(config.evaluation_interval_ms / 2, 10_000)),
          onElected: () => {
            metrics.leader.set(1);
            manager.start();
          },
          onDeposed: async () => {
            metrics.leader.set(0);
            await manager.stop();
          },
        })
      : undefined;

    const readiness: ReadinessCheck[] = [
      {
        name: 'storage',
        critical: true,
        check: async () => {
          await storage.ping();
          return { kind: storage.kind, migrations: await storage.appliedMigrations() };
        },
        // A database known to be unusable (a SQLite file deleted under the daemon) is named at
        // once, whatever the last ping found.
        current: (last) => {
          const fault = storage.fault();
          return fault === undefined ? last : { ok: false, error: `the ${storage.kind} database is unusable: ${fault}`, detail: { kind: storage.kind, fault } };
        },
      },
      {
        name: 'metric_sources',
        critical: false,
        check: async () => {
          const detail: Record<string, SourceCheck> = {};
          await Promise.all(
            [...plugins.sources.values()].map(async (s) => {
              try {
                await s.healthCheck();
                detail[s.name] = { ok: true, checked_at: new Date().toISOString() };
              } catch (err) {
                detail[s.name] = { ok: false, error: (err as Error).message, checked_at: new Date().toISOString() };
              }
            }),
          );
          return sourcesResult(detail);
        },
        // The loop's own fetches, when newer than the last probe, tell what a source does now.
        current: (last) => {
          const probed = (last.detail['sources'] ?? {}) as Record<string, SourceCheck>;
          const detail: Record<string, SourceCheck> = { ...probed };
          for (const [name, seen] of manager.sourceHealth) {
            const probe = probed[name];
            if (probe !== undefined && Date.parse(probe.checked_at) >= Date.parse(seen.checked_at)) continue;
            detail[name] = seen.ok ? { ok: true, checked_at: seen.checked_at } : { ok: false, error: seen.error ?? 'unreachable', checked_at: seen.checked_at };
          }
          try {
            return { ok: true, detail: sourcesResult(detail) };
          } catch (err) {
            return { ok: false, error: (err as Error).message, detail: (err as ReadinessError).detail };
          }
        },
      },
      {
        name: 'evaluation_loop',
        critical: false,
        instant: true,
        check: async () => {
          const last = manager.lastCycle;
          const detail = {
            enabled: config.enabled,
            role: election === undefined ? 'disabled' : election.isLeader ? 'leader' : 'follower',
            leader_since: election?.since ?? null,
            leader_lock: election?.description ?? null,
            interval_seconds: manager.intervalSeconds,
            last_cycle_at: last?.started_at ?? null,
            last_cycle_age_seconds: last === undefined ? null : Math.round((Date.now() - Date.parse(last.started_at)) / 1000),
            last_cycle: last ?? null,
          };
          if (election?.isLeader === true && last !== undefined && detail.last_cycle_age_seconds !== null && detail.last_cycle_age_seconds > (3 * config.evaluation_interval_ms) / 1000) {
            throw new ReadinessError('the evaluation loop has not completed a cycle in three intervals', detail);
          }
          return detail;
        },
      },
      {
        name: 'failing_policies',
        critical: false,
        instant: true,
        check: async () => {
          const failing = manager.failingPolicies;
          const detail = { after_failures: FAILING_AFTER, policies: failing };
          if (failing.length > 0) {
            const names = failing.slice(0, 5).map((f) => f.policy).join(', ');
            throw new ReadinessError(
              `${failing.length} policy(ies) whose metric queries keep failing (${names}${failing.length > 5 ? ', …' : ''}); their rules do not hold until the queries answer`,
              detail,
            );
          }
          return detail;
        },
      },
      {
        name: 'policy_files',
        critical: false,
        instant: true,
        check: async () => {
          const all = files.statuses();
          const broken = files.problems();
          const detail = {
            dirs: config.policy_dirs,
            files: all.filter((f) => f.kind === 'file').length,
            broken: broken.map((f) => ({ path: f.path, kind: f.kind, status: f.status, errors: f.errors.length, in_force: f.policies })),
          };
          if (broken.length > 0) {
            throw new ReadinessError(`${broken.length} policy source problem(s) (rejected files, refused entries or missing folders); their last good policies stay in force`, detail);
          }
          return detail;
        },
      },
      {
        name: 'plugins',
        critical: false,
        instant: true,
        check: async () => {
          const failed = plugins.statuses.filter((s) => s.status === 'failed');
          const detail = { plugins: plugins.statuses.map((s) => ({ name: s.name, kind: s.kind, status: s.status, error: s.error })) };
          if (failed.length > 0) throw new ReadinessError(`${failed.length} plugin(s) failed to load`, detail);
          return detail;
        },
      },
    ];
    // The checks that do I/O run in the background; /readyz answers from memory.
    const readinessMonitor = new ReadinessMonitor(readiness, { logger });
    readinessMonitor.start();
    stops.push({ name: 'readiness checks', stop: async () => readinessMonitor.stop() });
    const uiAssets = loadUiAssets();
    if (uiAssets === undefined) logger.warn('the web console is not built (npm run build): /ui/ answers 404');
    const backtests = new BacktestLimiter({ maxConcurrent: config.max_concurrent_backtests });
    const extraRoutes: RouteRegistrar[] = [
      (scaling) => registerEngineRoutes(scaling, { manager, policies, storage, defaultCooldown: config.default_cooldown }),
      (scaling, root) => {
        registerConsoleRoutes(scaling, { manager, storage, defaultCooldown: config.default_cooldown });
        registerUiRoutes(root, uiAssets);
      },
      (scaling) =>
        registerBacktestRoutes(scaling, {
          policies,
          sources: plugins.sources,
          defaultSource: config.default_metric_source,
          defaultCooldown: config.default_cooldown,
          prices: config.prices,
          limiter: backtests,
          logger,
        }),
      (scaling) => {
        scaling.get('/plugins', (ctx) => {
          ctx.body = { plugins: plugins.statuses };
        });
        scaling.get('/sources', (ctx) => {
          ctx.body = { sources: files.statuses() };
        });
      },
      (_scaling, root) => {
        const openapi = buildOpenApi(readPackageJson<{ version: string }>('package.json').version);
        root.get('/api/v1/openapi.json', (ctx) => {
          ctx.body = openapi;
        });
        // From memory: rendered at most once a second however many scrapers ask; a recount of
        // the policies that a write through this API started is waited for, never started here.
        root.get('/metrics', async (ctx) => {
          await policyCounts.settled();
          ctx.type = metrics.registry.contentType;
          ctx.body = await metrics.render();
        });
      },
    ];
    const app = createApp({
      logger,
      storage,
      policies,
      readiness: readinessMonitor,
      extraRoutes,
      metrics,
      auth: { tokens: tokensFrom(config), openProbes: config.auth.open_probes },
      onWrite: () => policyCounts.changed(),
      bodyTimeoutMs: config.request_body_timeout_ms,
      historyCacheBytes: config.history_cache_mb * 1024 * 1024,
    });
    // History retention prunes old rows in the background, on every daemon (batches serialise).
    const retention = new HistoryRetention({ storage, logger, retentionMs: config.history_retention_ms, everyMs: config.history_prune_interval_ms });
    retention.start();
    stops.push({ name: 'history retention', stop: () => retention.stop() });
    // The loop starts before the API listens and stops after it closes (stops run in reverse).
    if (election !== undefined) {
      await election.start();
      if (!election.isLeader) {
        if (election.lastError !== undefined) {
          logger.warn({ lock: election.description, error: election.lastError }, 'not leading: the leader lock could not be taken (not another daemon); trying again');
        } else {
          logger.info({ lock: election.description }, 'another daemon leads the evaluation loop; following (serving the API, ready to take over)');
        }
      }
      stops.push({ name: 'evaluation loop', stop: () => election.stop() });
    } else {
      logger.info('evaluation loop disabled (enabled: false); serving the API only');
    }
    const server = await listen(app, {
      port: config.port,
      host: config.host,
      logger,
      headersTimeoutMs: config.request_headers_timeout_ms,
      bodyTimeoutMs: config.request_body_timeout_ms,
    });
    stops.push({
      name: 'http',
      stop: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        }),
    });
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : config.port;
    logger.info({ port, host: config.host, storage: storage.kind }, `Philotes Scaler API listening on ${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`);
    if (!isLoopback(config.host) && tokensFrom(config).length === 0) {
      logger.warn(
        { host: config.host },
        `the API listens on ${config.host}, beyond this machine, with no token configured: anyone who can reach port ${port} can change policies and scale targets. Set PHILOTES_SCALING_API_TOKEN (and PHILOTES_SCALING_API_READ_TOKEN), or HOST=127.0.0.1`,
      );
    }

    let closing: Promise<void> | undefined;
    return {
      app,
      server,
      storage,
      policies,
      plugins,
      manager,
      files,
      metrics,
      election,
      port,
      close() {
        closing ??= stopAll();
        return closing;
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Whether a listen address only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}
