import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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

  constructor(collectors: { policiesBySource?: () => Promise<Record<string, number>>; fileErrors?: () => number; plugins?: () => Array<{ status: string }> } = {}) {
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
      async collect() {
        this.reset();
        if (policies === undefined) return;
        try {
          for (const [key, n] of Object.entries(await policies())) {
            const [source, enabled] = key.split('|');
            this.set({ source: source ?? 'api', enabled: enabled ?? 'true' }, n);
          }
        } catch {
          // Storage down: the gauge is left empty; /readyz says why.
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
