import type { Logger } from 'pino';
import type { ResolvedConfig } from '../config/config.js';
import { createLogger } from '../logger.js';
import { PluginManager, pluginConfigsFrom, type CallObserver } from './plugin-manager.js';

/**
 * The plugin set of a process: the bundled plugins folder, then every `plugin_dirs` entry, each
 * plugin with its config (the prometheus source gets `prometheus_url`) and the call timeout. The
 * daemon and every one-shot command (validate, test, evaluate, backtest) build theirs here, so a
 * plugin, an executor's target types and a metric source's query language are known to each of
 * them alike.
 */
export function createPluginManager(config: ResolvedConfig, logger: Logger, observer?: CallObserver): PluginManager {
  return new PluginManager({
    dirs: [PluginManager.bundledDir(), ...config.plugin_dirs],
    configs: pluginConfigsFrom(config),
    logger,
    timeoutMs: config.plugin_timeout_ms,
    // Which executor serves a target type two executors declare: named in the load-time warning.
    executorMapping: config.executors,
    ...(observer !== undefined ? { observer } : {}),
  });
}

/** Builds and loads the plugin set; the caller closes it. */
export async function loadPlugins(config: ResolvedConfig, logger: Logger): Promise<PluginManager> {
  const plugins = createPluginManager(config, logger);
  await plugins.loadAll();
  return plugins;
}

/** Runs `fn` with the loaded plugin set and closes it afterwards; logs go nowhere unless a logger is given. */
export async function withPlugins<T>(config: ResolvedConfig, logger: Logger | undefined, fn: (plugins: PluginManager) => Promise<T>): Promise<T> {
  const plugins = await loadPlugins(config, logger ?? createLogger('silent', { stderr: true }));
  try {
    return await fn(plugins);
  } finally {
    await plugins.close();
  }
}
