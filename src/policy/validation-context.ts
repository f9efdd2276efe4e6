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
