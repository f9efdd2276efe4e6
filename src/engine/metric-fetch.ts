import type { Logger } from 'pino';
import type { Sample } from '../plugins/api.js';
import type { IsolatedMetricSource, PluginCallError } from '../plugins/plugin-manager.js';
import type { Policy } from '../policy/policy-model.js';
import { Semaphore } from '../util/async.js';
import type { Fetch } from './cycle-plan.js';
import type { Observation } from './decision.js';
import { observationKey, queriedBy, ruleWindow, valuesAtInstants, verdictMemo } from './rule-window.js';

/** Health of a metric source as the loop last saw it; logged on change, served by /readyz. */
export interface SourceHealth {
  ok: boolean;
  checked_at: string;
  error: string | null;
}

/** Error kinds that mean the source itself did not answer (as opposed to answering badly). */
const SOURCE_DOWN_KINDS: ReadonlySet<string> = new Set(['unreachable', 'timeout', 'http']);

export interface MetricFetcherOptions {
  sources: ReadonlyMap<string, IsolatedMetricSource>;
  logger: Logger;
  /** The source of rules that name none. */
  defaultSource: string;
  /** Requests in flight at once (fetchAll). */
  concurrency: number;
  /** The evaluation interval in seconds: windows are judged at most this far apart. */
  intervalSeconds: number;
}

/**
 * The loop's requests to metric sources: one observation per distinct (source, query, aggregation,
 * window), samples kept for sources without range queries, and the health of each source (logged
 * when it changes, served by /readyz).
 */
export class MetricFetcher {
  readonly #opts: MetricFetcherOptions;
  /** Samples kept for sources without range queries, by observation key. */
  readonly #buffers = new Map<string, { t: number[]; v: number[]; length: number }>();
  readonly sourceHealth = new Map<string, SourceHealth>();
  #sourceMarked = 0;
  #sourceMarkedName = '';

  constructor(opts: MetricFetcherOptions) {
    this.#opts = opts;
  }

  /**
   * Fetches everything the given policies need (one request per distinct source, query,
   * aggregation and window), and waits for all of it: a manual evaluation's fetch; the loop's
   * requests come from its CyclePlan.
   */
  async fetchAll(policies: readonly Policy[], now: Date): Promise<{ observations: Map<string, Observation>; fetches: number; errors: number }> {
    const distinct = new Map<string, Fetch>();
    const defaultSource = this.#opts.defaultSource;
    for (const p of policies) {
      for (const rule of queriedBy(p)) {
        const key = observationKey(rule, defaultSource);
        if (!distinct.has(key)) distinct.set(key, { source: rule.source ?? defaultSource, rule });
      }
    }
    const fetching = new Semaphore(this.#opts.concurrency);
    const pending = [...distinct].map(([key, f]) => [key, fetching.run(() => this.fetch(key, f, now))] as const);
    const observations = new Map<string, Observation>();
    let errors = 0;
    for (const [key, p] of pending) {
      const obs = await p;
      if (obs.error !== undefined) errors++;
      observations.set(key, obs);
    }
    return { observations, fetches: distinct.size, errors };
  }

  async fetch(key: string, f: Fetch, now: Date): Promise<Observation> {
    const source = this.#opts.sources.get(f.source);
    if (source === undefined) {
      return { samples: [], error: { kind: 'unknown_source', message: `metric source "${f.source}" is not loaded` } };
    }
    const win = ruleWindow(f.rule, now, this.#opts.intervalSeconds);
    try {
      let samples: Sample[];
      if (win.seconds > 0 && source.supportsRange) {
        // Judged at the window's instants: end at `now`, every win.step (see ruleWindow).
        samples = await source.rangeQuery({
          query: f.rule.metric,
          aggregation: f.rule.aggregation,
          start: new Date(win.startMs),
          end: new Date(win.endMs),
          stepSeconds: win.stepMs / 1000,
        });
      } else {
        const s = await source.instantQuery({ query: f.rule.metric, aggregation: f.rule.aggregation, time: new Date(win.endMs) });
        if (win.seconds > 0) {
          // No range queries: keep our own observations, one per cycle, and judge the window's
          // instants from them as Prometheus would (the latest at or before each instant, within
          // the lookback). After a restart the buffer is empty, so a window is not covered until
          // it has been observed again: decisions are delayed, never hastened.
          const buf = this.#buffers.get(key) ?? { t: [], v: [], length: 0 };
          if (buf.length === 0 || (buf.t[buf.length - 1] as number) < win.endMs) {
            buf.t.push(win.endMs);
            buf.v.push(s.v);
          }
          let drop = 0;
          // Keep what the next windows may still read: the latest sample before the window's start too.
          while (drop + 1 < buf.t.length && (buf.t[drop + 1] as number) <= win.startMs) drop++;
          if (drop > 0) {
            buf.t.splice(0, drop);
            buf.v.splice(0, drop);
          }
          buf.length = buf.t.length;
          this.#buffers.set(key, buf);
          samples = valuesAtInstants(buf, win);
        } else samples = [s];
      }
      this.markSource(f.source, null);
      return { samples, verdicts: verdictMemo() };
    } catch (err) {
      const e = err as PluginCallError;
      this.markSource(f.source, { kind: e.kind ?? 'error', message: e.message });
      if (win.seconds > 0) this.#buffers.delete(key);
      return { samples: [], error: { kind: e.kind ?? 'error', message: e.message } };
    }
  }

  /**
   * Tracks whether a source answers. Only source-level failures (unreachable, timeout, an HTTP
   * error) mark it down; an answer that was empty, NaN or a bad query still proves it answers, so
   * one bad query does not make Prometheus "down". Decided by the error's kind, never by its
   * message: messages quote the query, and a metric may well be called `..._timeout_total`.
   */
  markSource(name: string, error: { kind: string; message: string } | null): void {
    const prev = this.sourceHealth.get(name);
    const down = error !== null && SOURCE_DOWN_KINDS.has(error.kind);
    // A cycle marks a source once per request (200 times in a few milliseconds): an answering
    // source that answered less than a second ago keeps its entry.
    const at = Date.now();
    if (!down && prev?.ok === true && at - this.#sourceMarked < 1000 && this.#sourceMarkedName === name) return;
    this.#sourceMarked = at;
    this.#sourceMarkedName = name;
    const checkedAt = new Date(at).toISOString();
    if (!down) {
      // A first successful contact is not "answering again": log only a recovery.
      if (prev !== undefined && !prev.ok) this.#opts.logger.info({ source: name }, `metric source ${name} is answering again`);
      this.sourceHealth.set(name, { ok: true, checked_at: checkedAt, error: null });
      return;
    }
    if (prev === undefined || prev.ok) {
      this.#opts.logger.warn(
        { source: name, kind: error.kind },
        `metric source ${name} is unreachable: ${error.message}; its rules do not hold and decisions record metric_error until it answers`,
      );
    }
    this.sourceHealth.set(name, { ok: false, checked_at: checkedAt, error: error.message });
  }
}
