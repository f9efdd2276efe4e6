import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Storage } from './storage/storage.js';

/** Observes plugin calls; the plugin wrappers report every call here. */
export interface PluginObserver {
  call(plugin: string, kind: 'metric-source' | 'executor', call: string, seconds: number, errorKind: string | null): void;
}

/**
 * The daemon's own metrics (GET /metrics), on a registry of its own so that tests and several
 * daemons in one process never share counters. Names start with philotes_scaling_.
 */
export class ScalerMetrics implements PluginObserver {
  readonly registry = new Registry();
  readonly evaluations: Counter<'action' | 'reason_code' | 'trigger'>;
  readonly cycleDuration: Histogram<string>;
  readonly sourceRequests: Counter<'source' | 'call'>;
  readonly sourceLatency: Histogram<'source' | 'call'>;
  readonly sourceErrors: Counter<'source' | 'call' | 'kind'>;
  readonly executorCalls: Counter<'executor' | 'call'>;
  readonly executorErrors: Counter<'executor' | 'call' | 'kind'>;
  readonly executorLatency: Histogram<'executor' | 'call'>;
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpLatency: Histogram<'method' | 'route'>;
  readonly leader: Gauge<string>;
  readonly fileReloads: Counter<'status'>;
  /** Bound children of `evaluations` by action, reason code and trigger: labels are hashed once, not per evaluation. */
  readonly #evaluationCounts = new Map<string, { inc(n?: number): void }>();

  /** Counts evaluations with one outcome (thousands a cycle: the labelled child is looked up by one string). */
  countEvaluations(action: string, reasonCode: string, trigger: 'loop' | 'api', n = 1): void {
    const key = `${action}|${reasonCode}|${trigger}`;
    let child = this.#evaluationCounts.get(key);
    if (child === undefined) {
      child = this.evaluations.labels({ action, reason_code: reasonCode, trigger });
      this.#evaluationCounts.set(key, child);
    }
    child.inc(n);
  }

  /**
   * Collectors read the daemon's memory only (a scrape never reaches storage or a metric source):
   * `policiesBySource` answers counts a background task keeps (PolicyCounts), keyed "api|true".
   */
  constructor(collectors: { policiesBySource?: () => Record<string, number> | undefined; fileErrors?: () => number; plugins?: () => Array<{ status: string }> } = {}) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.evaluations = new Counter({ name: 'philotes_scaling_evaluations_total', help: 'Policy evaluations by outcome: action, reason code, and what triggered them (loop or api).', labelNames: ['action', 'reason_code', 'trigger'], registers });
    this.cycleDuration = new Histogram({ name: 'philotes_scaling_cycle_duration_seconds', help: 'Wall time of one evaluation cycle.', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30], registers });
    this.sourceRequests = new Counter({ name: 'philotes_scaling_metric_source_requests_total', help: 'Requests to metric sources.', labelNames: ['source', 'call'], registers });
    this.sourceLatency = new Histogram({ name: 'philotes_scaling_metric_source_request_duration_seconds', help: 'Latency of metric source requests.', labelNames: ['source', 'call'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers });
    this.sourceErrors = new Counter({ name: 'philotes_scaling_metric_source_errors_total', help: 'Failed metric source requests by error kind.', labelNames: ['source', 'call', 'kind'], registers });
    this.executorCalls = new Counter({ name: 'philotes_scaling_executor_calls_total', help: 'Calls to executors.', labelNames: ['executor', 'call'], registers });
    this.executorErrors = new Counter({ name: 'philotes_scaling_executor_errors_total', help: 'Failed executor calls by error kind.', labelNames: ['executor', 'call', 'kind'], registers });
    this.executorLatency = new Histogram({ name: 'philotes_scaling_executor_call_duration_seconds', help: 'Latency of executor calls.', labelNames: ['executor', 'call'], buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10], registers });
    this.httpRequests = new Counter({ name: 'philotes_scaling_http_requests_total', help: 'API requests by route and status.', labelNames: ['method', 'route', 'status'], registers });
    this.httpLatency = new Histogram({ name: 'philotes_scaling_http_request_duration_seconds', help: 'API request latency.', labelNames: ['method', 'route'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers });
    this.leader = new Gauge({ name: 'philotes_scaling_leader', help: '1 when this daemon runs the evaluation loop, 0 when it follows.', registers });
    this.fileReloads = new Counter({ name: 'philotes_scaling_policy_file_reloads_total', help: 'Policy file loads by result (ok, error, removed).', labelNames: ['status'], registers });
    const policies = collectors.policiesBySource;
    new Gauge({
      name: 'philotes_scaling_policies',
      help: 'Policies stored, by source kind (api or file) and enabled state.',
      labelNames: ['source', 'enabled'],
      registers,
      collect() {
        this.reset();
        // Not counted yet, or storage down since start: the gauge is left empty; /readyz says why.
        for (const [key, n] of Object.entries(policies?.() ?? {})) {
          const [source, enabled] = key.split('|');
          this.set({ source: source ?? 'api', enabled: enabled ?? 'true' }, n);
        }
      },
    });
    const fileErrors = collectors.fileErrors;
    new Gauge({
      name: 'philotes_scaling_policy_file_errors',
      help: 'Policy files currently rejected (their last good policies stay in force).',
      registers,
      collect() {
        this.set(fileErrors?.() ?? 0);
      },
    });
    const plugins = collectors.plugins;
    new Gauge({
      name: 'philotes_scaling_plugins',
      help: 'Plugins found, by load status.',
      labelNames: ['status'],
      registers,
      collect() {
        this.reset();
        for (const p of plugins?.() ?? []) this.inc({ status: p.status });
      },
    });
  }

  #rendered: { text: string; at: number } | undefined;
  #rendering: Promise<string> | undefined;
  #stale = false;

  /** The next render() renders anew (a value scrapers should see at once changed, such as the policy counts). */
  invalidate(): void {
    this.#stale = true;
  }

  /**
   * The exposition text, rendered at most once per `maxAgeMs` (default 1 s) however many scrapes
   * ask: a flood of /metrics costs one rendering a second, not one per request.
   */
  async render(maxAgeMs = 1_000): Promise<string> {
    if (this.#stale) {
      this.#stale = false;
      this.#rendered = undefined;
    }
    const now = performance.now();
    if (this.#rendered !== undefined && now - this.#rendered.at < maxAgeMs) return this.#rendered.text;
    this.#rendering ??= this.registry
      .metrics()
      .then((text) => {
        this.#rendered = { text, at: performance.now() };
        return text;
      })
      .finally(() => {
        this.#rendering = undefined;
      });
    return this.#rendering;
  }

  call(plugin: string, kind: 'metric-source' | 'executor', call: string, seconds: number, errorKind: string | null): void {
    if (kind === 'metric-source') {
      this.sourceRequests.inc({ source: plugin, call });
      this.sourceLatency.observe({ source: plugin, call }, seconds);
      if (errorKind !== null) this.sourceErrors.inc({ source: plugin, call, kind: errorKind });
    } else {
      this.executorCalls.inc({ executor: plugin, call });
      this.executorLatency.observe({ executor: plugin, call }, seconds);
      if (errorKind !== null) this.executorErrors.inc({ executor: plugin, call, kind: errorKind });
    }
  }
}

/**
 * Policy counts by source kind (api or file) and enabled state, kept in memory for /metrics. They
 * are recounted in the background: at once after a write through this daemon's API (`changed()`),
 * and when `policiesRevision()` (one small query, every `everyMs`) shows a change made elsewhere
 * (policy files, another daemon on the same PostgreSQL). Never per scrape.
 */
export class PolicyCounts {
  readonly #storage: Pick<Storage, 'listPolicies' | 'policiesRevision' | 'fault'>;
  readonly #everyMs: number;
  readonly #logger: Logger | undefined;
  #counts: Record<string, number> | undefined;
  #revision: string | undefined;
  #dirty = true;
  #running: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failed = false;
  #stopped = false;

  readonly #onChange: (() => void) | undefined;

  constructor(storage: Pick<Storage, 'listPolicies' | 'policiesRevision' | 'fault'>, opts: { everyMs?: number; logger?: Logger; onChange?: () => void } = {}) {
    this.#storage = storage;
    this.#everyMs = opts.everyMs ?? 5_000;
    this.#logger = opts.logger;
    this.#onChange = opts.onChange;
  }

  /** The last counts, keyed "api|true"; undefined before the first count succeeded. */
  get counts(): Record<string, number> | undefined {
    return this.#counts;
  }

  /** Counts once, then checks for changes every `everyMs` until stop(). */
  async start(): Promise<void> {
    await this.refresh();
    this.#timer = setInterval(() => void this.refresh(), this.#everyMs);
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The policies changed (a write through the API): recount in the background, once per burst. */
  changed(): void {
    this.#dirty = true;
    if (!this.#stopped) void this.refresh();
  }

  /** Resolves when no recount is due or running (a recount started by changed() has finished). */
  async settled(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  /** Recounts when the policies changed since the last count; one at a time, later calls join it. */
  refresh(): Promise<void> {
    if (this.#running !== undefined) return this.#running;
    const running: Promise<void> = this.#count().finally(() => {
      if (this.#running === running) this.#running = undefined;
    });
    this.#running = running;
    return running;
  }

  async #count(): Promise<void> {
    try {
      while (this.#storage.fault() === undefined) {
        const revision = await this.#storage.policiesRevision();
        if (!this.#dirty && revision === this.#revision) break;
        this.#dirty = false;
        const { policies } = await this.#storage.listPolicies({ limit: 1_000_000, offset: 0 });
        const counts: Record<string, number> = {};
        for (const p of policies) {
          const key = `${p.source === 'api' ? 'api' : 'file'}|${p.enabled}`;
          counts[key] = (counts[key] ?? 0) + 1;
        }
        this.#counts = counts;
        this.#revision = revision;
        this.#onChange?.();
        if (this.#failed) this.#logger?.info('policy counts for /metrics are current again');
        this.#failed = false;
        // A write during the count marked it dirty again: count once more.
        if (!this.#dirty) break;
      }
    } catch (err) {
      // Storage closing under a count at shutdown is not worth a line.
      if (!this.#failed && !this.#stopped) this.#logger?.warn({ err }, 'cannot count policies for /metrics; the last counts are served');
      this.#failed = true;
    }
  }
}
