import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ScalerConfig } from '../config/config.js';
import { BUILTIN_TARGET_TYPES } from './policy-model.js';
import type { ValidationContext } from './policy-validation.js';

/** Names the running daemon knows of: plugins register theirs as they load. */
export interface KnownNames {
  metricSources: () => Iterable<string>;
  executors: () => Iterable<string>;
  /** Target types declared by loaded executors. */
  executorTargetTypes: () => Iterable<string>;
  /**
   * Metric sources whose queries are PromQL (their manifest says `"queryLanguage": "promql"`), so
   * a rule's metric for them must parse. Absent: only the bundled source "prometheus".
   */
  promqlSources?: () => Iterable<string>;
}

/** The bundled Prometheus source: the one known to take PromQL where plugins are not loaded. */
export const PROMETHEUS_SOURCE = 'prometheus';

/** Builds validation's view of the daemon from the config and the loaded plugins. */
export function createValidationContext(
  config: Pick<ScalerConfig, 'executors' | 'prices' | 'default_metric_source'>,
  known?: KnownNames,
): ValidationContext {
  return {
    targetTypes: () => new Set([...BUILTIN_TARGET_TYPES, ...Object.keys(config.executors), ...(known?.executorTargetTypes() ?? [])]),
    metricSources: () => new Set(known !== undefined ? [...known.metricSources()] : [config.default_metric_source]),
    executors: () => new Set(known !== undefined ? [...known.executors()] : Object.values(config.executors)),
    priceFor: (t) => config.prices[t],
    speaksPromQL: (source) => {
      const name = source ?? config.default_metric_source;
      if (known?.promqlSources === undefined) return name === PROMETHEUS_SOURCE;
      for (const s of known.promqlSources()) if (s === name) return true;
      return false;
    },
  };
}

/** The `queryLanguage` a plugin's manifest declares, or undefined. */
function manifestQueryLanguage(dir: string): string | undefined {
  try {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { 'philotes-scaler'?: { queryLanguage?: unknown } };
    const language = pkg['philotes-scaler']?.queryLanguage;
    return typeof language === 'string' ? language : undefined;
  } catch {
    return undefined;
  }
}

/** Names known from loaded plugins (the daemon and every one-shot command). */
export function namesFromPlugins(plugins: {
  sources: ReadonlyMap<string, unknown>;
  executors: ReadonlyMap<string, unknown>;
  executorTargetTypes(): string[];
  /** What loading found (PluginManager.statuses): where each loaded source's manifest is. */
  statuses?: ReadonlyArray<{ name: string; kind: string | null; dir: string; status: string }>;
}): KnownNames {
  // Manifests are read once per set of loaded plugins, not once per rule validated.
  let promql: { loaded: number; names: string[] } | undefined;
  const promqlSources = (): string[] => {
    const statuses = plugins.statuses;
    const loaded = statuses?.length ?? -1;
    if (promql?.loaded !== loaded) {
      const names =
        statuses === undefined
          ? [...plugins.sources.keys()].filter((n) => n === PROMETHEUS_SOURCE)
          : statuses.filter((s) => s.status === 'loaded' && s.kind === 'metric-source' && plugins.sources.has(s.name) && manifestQueryLanguage(s.dir) === 'promql').map((s) => s.name);
      // A "prometheus" that is not loaded (failed, or not configured) is still the bundled source.
      if (!plugins.sources.has(PROMETHEUS_SOURCE)) names.push(PROMETHEUS_SOURCE);
      promql = { loaded, names };
    }
    return promql.names;
  };
  return {
    metricSources: () => plugins.sources.keys(),
    executors: () => plugins.executors.keys(),
    executorTargetTypes: () => plugins.executorTargetTypes(),
    promqlSources,
  };
}
