import type { ScalerConfig } from '../config/config.js';
import { BUILTIN_TARGET_TYPES } from './policy-model.js';
import type { ValidationContext } from './policy-validation.js';

/** Names the running daemon knows of: plugins register theirs as they load. */
export interface KnownNames {
  metricSources: () => Iterable<string>;
  executors: () => Iterable<string>;
  /** Target types declared by loaded executors. */
  executorTargetTypes: () => Iterable<string>;
}

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
  };
}

/** Names known from loaded plugins (the daemon, evaluate, backtest). */
export function namesFromPlugins(plugins: {
  sources: ReadonlyMap<string, unknown>;
  executors: ReadonlyMap<string, unknown>;
  executorTargetTypes(): string[];
}): KnownNames {
  return {
    metricSources: () => plugins.sources.keys(),
    executors: () => plugins.executors.keys(),
    executorTargetTypes: () => plugins.executorTargetTypes(),
  };
}

/** Names known from plugin manifests alone, without running plugin code (validate, policy tests). */
export function namesFromManifests(manifests: ReadonlyArray<{ name: string; kind: 'metric-source' | 'executor' }>): KnownNames {
  return {
    metricSources: () => manifests.filter((m) => m.kind === 'metric-source').map((m) => m.name),
    executors: () => manifests.filter((m) => m.kind === 'executor').map((m) => m.name),
    executorTargetTypes: () => [],
  };
}
