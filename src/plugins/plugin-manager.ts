import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as nodeModule from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import semver from 'semver';
import { createAjv, PLUGIN_MANIFEST_SCHEMA_ID, toFieldErrors, validator } from '../schemas.js';
import { withDeadline, withTimeout } from '../util/async.js';
import { packageRoot } from '../util/package-root.js';
import {
  PLUGIN_API_VERSION,
  type Executor,
  type InstantQuery,
  type MetricSource,
  type PluginContext,
  type PluginFactory,
  type PluginKind,
  type PluginManifest,
  type RangeQuery,
  type Sample,
  type ScaleOptions,
  type ScaleTarget,
} from './api.js';

/** What discovery and loading found out about one plugin folder; served at /api/v1/scaling/plugins. */
export interface PluginStatus {
  name: string;
  kind: PluginKind | null;
  dir: string;
  version: string | null;
  status: 'loaded' | 'failed';
  error: string | null;
  target_types?: string[];
  range_queries?: boolean;
}

/**
 * Thrown by isolated plugin calls: says which plugin and call failed, and how. When the plugin
 * threw, `cause` is what it threw (a `MetricSourceError`, say).
 */
export class PluginCallError extends Error {
  readonly kind: string;
  constructor(plugin: string, call: string, kind: string, message: string, options?: ErrorOptions) {
    super(`${plugin}.${call}: ${message}`, options);
    this.name = 'PluginCallError';
    this.kind = kind;
  }
}

/** Where isolated calls report their outcome (the daemon's metrics); optional. */
export interface CallObserver {
  call(plugin: string, kind: 'metric-source' | 'executor', call: string, seconds: number, errorKind: string | null): void;
}

async function isolate<T>(
  plugin: string,
  call: string,
  timeoutMs: number,
  fn: (lazy: LazySignal) => Promise<T>,
  observe?: { observer: CallObserver | undefined; kind: 'metric-source' | 'executor' },
): Promise<T> {
  const observer = observe?.observer;
  const pluginKind = observe?.kind ?? 'executor';
  const started = observer !== undefined ? performance.now() : 0;
  const lazy = new LazySignal();
  try {
    let work: Promise<T>;
    try {
      work = fn(lazy);
    } catch (err) {
      // A plugin that throws synchronously is contained like one that rejects.
      work = Promise.reject(err);
    }
    const value = await withDeadline(work, timeoutMs, `${plugin}.${call}`);
    if (observer !== undefined) observer.call(plugin, pluginKind, call, (performance.now() - started) / 1000, null);
    return value;
  } catch (err) {
    let failure: PluginCallError;
    if (err instanceof PluginCallError) failure = err;
    else {
      const e = err as { name?: string; kind?: unknown; message?: unknown };
      if (e.name === 'TimeoutError') {
        // Only a timed-out call's signal is aborted: aborting every finished call would cost an
        // exception object per call and tells a plugin nothing it needs.
        lazy.abort();
        failure = new PluginCallError(plugin, call, 'timeout', `no answer within ${timeoutMs} ms`);
      } else {
        // Read by property, not by `instanceof MetricSourceError`: a plain JavaScript plugin may
        // throw any error with a `kind`, as the bundled ones do.
        const kind = typeof e.kind === 'string' ? e.kind : 'plugin_error';
        failure = new PluginCallError(plugin, call, kind, typeof e.message === 'string' ? e.message : String(err), { cause: err });
      }
    }
    if (observer !== undefined) observer.call(plugin, pluginKind, call, (performance.now() - started) / 1000, failure.kind);
    throw failure;
  }
}

/**
 * A per-call AbortSignal, made only if the plugin reads it: most calls finish long before their
 * timeout, and at 10,000 policies a cycle the controllers nobody looks at add up.
 */
class LazySignal {
  #ac: AbortController | undefined;

  get signal(): AbortSignal {
    this.#ac ??= new AbortController();
    return this.#ac.signal;
  }

  abort(): void {
    this.#ac?.abort();
  }
}

/** `{ signal }` whose signal is made on first read. */
class SignalOption {
  constructor(private readonly lazy: LazySignal) {}

  get signal(): AbortSignal {
    return this.lazy.signal;
  }
}

/** Gives `o` a `signal` property that makes the call's AbortSignal on first read. */
function withSignal<O extends object>(o: O, lazy: LazySignal): O & { signal: AbortSignal } {
  return Object.defineProperty(o, 'signal', { get: () => lazy.signal, enumerable: true }) as O & { signal: AbortSignal };
}


function checkSample(plugin: string, call: string, s: unknown): Sample {
  const o = s as { t?: unknown; v?: unknown } | null;
  if (o === null || typeof o !== 'object' || typeof o.t !== 'number' || typeof o.v !== 'number' || !Number.isFinite(o.t)) {
    throw new PluginCallError(plugin, call, 'malformed', `answered ${JSON.stringify(s)?.slice(0, 100)}, not {t: number, v: number}`);
  }
  // NaN and infinities are values: the instant they are at fails a rule's condition, and no more.
  return { t: o.t, v: o.v };
}

/** A metric source behind timeouts and answer checks: whatever the plugin does, callers get samples or an error. */
export class IsolatedMetricSource {
  constructor(
    readonly name: string,
    private readonly impl: MetricSource,
    private readonly timeoutMs: number,
    private readonly observer?: CallObserver,
  ) {}

  #obs(): { observer: CallObserver | undefined; kind: 'metric-source' } {
    return (this.#observe ??= { observer: this.observer, kind: 'metric-source' });
  }

  #observe: { observer: CallObserver | undefined; kind: 'metric-source' } | undefined;

  get supportsRange(): boolean {
    return typeof this.impl.rangeQuery === 'function';
  }

  instantQuery(q: Omit<InstantQuery, 'signal'>): Promise<Sample> {
    return isolate(this.name, 'instantQuery', this.timeoutMs, async (lazy) => checkSample(this.name, 'instantQuery', await this.impl.instantQuery(withSignal({ ...q }, lazy))), this.#obs());
  }

  rangeQuery(q: Omit<RangeQuery, 'signal'>): Promise<Sample[]> {
    const range = this.impl.rangeQuery;
    if (range === undefined) return Promise.reject(new PluginCallError(this.name, 'rangeQuery', 'unsupported', 'range queries are not supported'));
    return isolate(this.name, 'rangeQuery', this.timeoutMs, async (lazy) => {
      const out: unknown = await range.call(this.impl, withSignal({ ...q }, lazy));
      if (!Array.isArray(out)) throw new PluginCallError(this.name, 'rangeQuery', 'malformed', 'did not answer an array of samples');
      return out.map((s) => checkSample(this.name, 'rangeQuery', s));
    }, this.#obs());
  }

  async healthCheck(): Promise<void> {
    const hc = this.impl.healthCheck;
    if (hc === undefined) return;
    await isolate(this.name, 'healthCheck', this.timeoutMs, (lazy) => hc.call(this.impl, lazy.signal), this.#obs());
  }

  async close(): Promise<void> {
    const c = this.impl.close;
    if (c !== undefined) await isolate(this.name, 'close', this.timeoutMs, () => c.call(this.impl));
  }
}

/** An executor behind timeouts and answer checks. */
export class IsolatedExecutor {
  constructor(
    readonly name: string,
    private readonly impl: Executor,
    private readonly timeoutMs: number,
    private readonly observer?: CallObserver,
  ) {}

  #obs(): { observer: CallObserver | undefined; kind: 'executor' } {
    return (this.#observe ??= { observer: this.observer, kind: 'executor' });
  }

  #observe: { observer: CallObserver | undefined; kind: 'executor' } | undefined;

  get targetTypes(): readonly string[] {
    return this.impl.targetTypes;
  }

  getCurrentReplicas(target: ScaleTarget): Promise<number | null> {
    return isolate(this.name, 'getCurrentReplicas', this.timeoutMs, async (lazy) => {
      // Called for every policy every cycle: a small class with a getter, not defineProperty.
      const n: unknown = await this.impl.getCurrentReplicas(target, new SignalOption(lazy));
      if (n === null || n === undefined) return null;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
        throw new PluginCallError(this.name, 'getCurrentReplicas', 'malformed', `answered ${JSON.stringify(n)}, not a non-negative integer or null`);
      }
      return n;
    }, this.#obs());
  }

  /** Whether the executor answers for many targets in one call. */
  get answersMany(): boolean {
    return typeof this.impl.getCurrentReplicasMany === 'function';
  }

  /**
   * Current replicas of many targets in one call (see Executor.getCurrentReplicasMany), checked
   * like single answers; one answer per target, in the targets' order.
   */
  getCurrentReplicasMany(targets: readonly ScaleTarget[]): Promise<Array<number | null>> {
    const many = this.impl.getCurrentReplicasMany;
    if (many === undefined) return Promise.reject(new PluginCallError(this.name, 'getCurrentReplicasMany', 'unsupported', 'answers one target at a time'));
    return isolate(this.name, 'getCurrentReplicasMany', this.timeoutMs, async (lazy) => {
      const answer: unknown = await many.call(this.impl, targets, new SignalOption(lazy));
      if (!(answer instanceof Map)) throw new PluginCallError(this.name, 'getCurrentReplicasMany', 'malformed', 'did not answer a Map of policy id to replicas');
      const out = new Array<number | null>(targets.length);
      for (let i = 0; i < targets.length; i++) {
        const t = targets[i] as ScaleTarget;
        const n: unknown = answer.get(t.policyId);
        if (n === null || n === undefined) out[i] = null;
        else if (typeof n === 'number' && Number.isInteger(n) && n >= 0) out[i] = n;
        else throw new PluginCallError(this.name, 'getCurrentReplicasMany', 'malformed', `answered ${JSON.stringify(n)} for policy ${t.policyId}, not a non-negative integer or null`);
      }
      return out;
    }, this.#obs());
  }

  scale(target: ScaleTarget, replicas: number, opts: Omit<ScaleOptions, 'signal'>): Promise<void> {
    return isolate(this.name, 'scale', this.timeoutMs, async (lazy) => {
      await this.impl.scale(target, replicas, withSignal({ ...opts }, lazy));
    }, this.#obs());
  }

  async close(): Promise<void> {
    const c = this.impl.close;
    if (c !== undefined) await isolate(this.name, 'close', this.timeoutMs, () => c.call(this.impl));
  }
}

/**
 * Module resolution hook (run by Node on its loader thread): the specifiers in `data` resolve to
 * the given URLs, whoever imports them; every other specifier resolves as usual.
 */
const OWN_PACKAGE_HOOKS = `
let urls = new Map();
export function initialize(data) { urls = data; }
export function resolve(specifier, context, nextResolve) {
  const url = urls.get(specifier);
  return url === undefined ? nextResolve(specifier, context) : { url, shortCircuit: true };
}
`;

let ownPackageProvided = false;

/**
 * Makes `import ... from 'philotes-scaler/plugin'` (and 'philotes-scaler') in plugin code load this
 * running daemon's own modules, wherever the plugin folder is and whether or not it has a
 * node_modules of its own.
 *
 * Node resolves a bare specifier by searching node_modules folders upwards from the importing
 * file: a plugin outside this package's tree finds nothing, and a plugin that installed the
 * package for its types finds a second copy, whose `MetricSourceError` is another class than the
 * daemon's. Linking the package into plugin folders or setting NODE_PATH (which ES modules ignore)
 * fixes neither case; a resolution hook registered with `module.register()` fixes both. It maps
 * the two specifiers to the URLs this module resolves `../index.js` and `./api.js` to, so plugin
 * and daemon share one module instance: `dist/src/plugins/api.js` when running from the build,
 * `src/plugins/api.ts` under a TypeScript loader (the tests), as `import.meta.resolve` goes
 * through the loaders already registered. The mapping holds for every importer in the process, not only for files in plugin
 * folders: the daemon never imports its own package by name, while a plugin's own dependencies and
 * plugin folders reached through symbolic links must get the same modules as the plugin.
 * Registered once per process, before the first plugin is imported. `module.register()` came in
 * Node 20.6; on older versions a plugin that imports the package fails to load.
 */
function provideOwnPackage(): void {
  if (ownPackageProvided) return;
  ownPackageProvided = true;
  // Looked up, not imported by name: a named import of a missing export of node:module would keep
  // this module from loading at all on Node older than 20.6.
  if (typeof nodeModule.register !== 'function' || typeof import.meta.resolve !== 'function') return;
  const urls = new Map([
    ['philotes-scaler', import.meta.resolve('../index.js')],
    ['philotes-scaler/plugin', import.meta.resolve('./api.js')],
  ]);
  nodeModule.register(`data:text/javascript,${encodeURIComponent(OWN_PACKAGE_HOOKS)}`, { data: urls });
}

export interface PluginManagerOptions {
  /** Folders to scan; each subfolder with a package.json is a plugin. Earlier folders win name clashes. */
  dirs: string[];
  /** Config per plugin name. */
  configs: Record<string, Record<string, unknown>>;
  logger: Logger;
  timeoutMs: number;
  observer?: CallObserver;
  /**
   * The config's `executors` mapping (target type to executor name). Only read to say, when two
   * loaded executors declare one target type, which of them serves it; without it the warning
   * says what the choice depends on.
   */
  executorMapping?: Readonly<Record<string, string>>;
}

/**
 * Plugin configs from the daemon config: `plugins.<name>`, and the prometheus source gets
 * `prometheus_url` unless its own config sets `url`.
 */
export function pluginConfigsFrom(config: { plugins: Record<string, Record<string, unknown>>; prometheus_url: string }): Record<string, Record<string, unknown>> {
  return { ...config.plugins, prometheus: { url: config.prometheus_url, ...config.plugins['prometheus'] } };
}

/** Loads plugins and holds them isolated. Homebridge-style: a bad plugin is reported and skipped, never fatal. */
export class PluginManager {
  readonly statuses: PluginStatus[] = [];
  readonly sources = new Map<string, IsolatedMetricSource>();
  readonly executors = new Map<string, IsolatedExecutor>();
  readonly #opts: PluginManagerOptions;
  // Plugin configs get their schema's defaults filled in; policies and the daemon config do not.
  readonly #configAjv = createAjv({ useDefaults: true });

  constructor(opts: PluginManagerOptions) {
    this.#opts = opts;
  }

  /** The bundled plugins folder, shipped with the package. */
  static bundledDir(): string {
    return join(packageRoot(), 'plugins');
  }

  async loadAll(): Promise<PluginStatus[]> {
    provideOwnPackage();
    const seen = new Set<string>();
    for (const dir of this.#opts.dirs) {
      const root = isAbsolute(dir) ? dir : resolve(dir);
      if (!existsSync(root)) {
        this.#opts.logger.warn({ dir: root }, 'plugin folder does not exist; skipped');
        continue;
      }
      for (const entry of readdirSync(root).sort()) {
        const pdir = join(root, entry);
        if (!statSync(pdir).isDirectory() || !existsSync(join(pdir, 'package.json'))) continue;
        const status = await this.#loadOne(pdir, seen);
        this.statuses.push(status);
        if (status.status === 'loaded') seen.add(status.name);
      }
    }
    this.#warnSharedTargetTypes();
    return this.statuses;
  }

  /**
   * Logs a warning for each target type that more than one loaded executor declares, naming them
   * and the one that serves the type. The choice is ScalingManager.executorFor's: a policy's own
   * `executor`, else the config's `executors` mapping for its target type, else the first loaded
   * executor that declares the type (plugin folders in their configured order, the bundled one
   * first, and plugins within a folder by folder name).
   */
  #warnSharedTargetTypes(): void {
    const declaring = new Map<string, string[]>();
    for (const [name, executor] of this.executors) {
      for (const type of new Set(executor.targetTypes)) declaring.set(type, [...(declaring.get(type) ?? []), name]);
    }
    const mapping = this.#opts.executorMapping;
    for (const [type, names] of declaring) {
      if (names.length < 2) continue;
      const first = names[0] as string;
      const listed = `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
      const mapped = mapping !== undefined && Object.hasOwn(mapping, type) ? mapping[type] : undefined;
      let serves: string | undefined;
      let why: string;
      if (mapped !== undefined) {
        serves = mapped;
        why = names.includes(mapped) ? `the config's executors.${type} names ${mapped}, which serves it` : `the config's executors.${type} names ${mapped}, so none of them serves it`;
      } else if (mapping !== undefined) {
        serves = first;
        why = `${first} serves it, being loaded first; set executors.${type} in the config to choose`;
      } else {
        why = `${first}, loaded first, serves it unless the config's executors.${type} names another`;
      }
      this.#opts.logger.warn(
        { targetType: type, executors: names, ...(serves !== undefined ? { serves } : {}) },
        `target type "${type}" is declared by executors ${listed}; ${why} (a policy that names its executor gets that one)`,
      );
    }
  }

  async #loadOne(dir: string, seen: Set<string>): Promise<PluginStatus> {
    const log = this.#opts.logger;
    let name = dir.split(/[\\/]/).pop() ?? dir;
    let kind: PluginKind | null = null;
    let version: string | null = null;
    const failed = (error: string): PluginStatus => {
      log.error({ plugin: name, dir }, `PLUGIN NOT LOADED: ${name}: ${error}`);
      return { name, kind, dir, version, status: 'failed', error };
    };
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
        main?: string;
        exports?: unknown;
        'philotes-scaler'?: unknown;
      };
      version = typeof pkg.version === 'string' ? pkg.version : null;
      const manifest = pkg['philotes-scaler'];
      if (manifest === undefined) return failed('package.json has no "philotes-scaler" manifest');
      const mv = validator<PluginManifest>(PLUGIN_MANIFEST_SCHEMA_ID);
      if (!mv(manifest)) {
        return failed(`invalid manifest: ${toFieldErrors(mv.errors, '/philotes-scaler').map((e) => `${e.field} ${e.message}`).join('; ')}`);
      }
      kind = manifest.kind;
      name = manifest.name ?? (pkg.name ?? name).replace(/^@[^/]+\//, '');
      if (seen.has(name)) return failed(`a plugin named "${name}" is already loaded; names must be unique`);
      if (semver.validRange(manifest.apiVersion) === null) return failed(`apiVersion "${manifest.apiVersion}" is not a semver range`);
      if (!semver.satisfies(PLUGIN_API_VERSION, manifest.apiVersion)) {
        return failed(`supports plugin API ${manifest.apiVersion}, but this daemon implements ${PLUGIN_API_VERSION}; upgrade the plugin or the daemon`);
      }
      // Config: validated by the plugin's own schema before its code runs.
      let schema: unknown = manifest.configSchema ?? { type: 'object' };
      if (typeof schema === 'string') schema = JSON.parse(readFileSync(join(dir, schema), 'utf8'));
      const config = structuredClone(this.#opts.configs[name] ?? {});
      const validate = this.#configAjv.compile({ ...(schema as object), $id: undefined, $schema: undefined });
      if (!validate(config)) {
        return failed(`invalid config (plugins.${name}): ${toFieldErrors(validate.errors, `/plugins/${name}`).map((e) => `${e.field} ${e.message}`).join('; ')}`);
      }
      const entry = typeof pkg.main === 'string' ? pkg.main : 'index.js';
      const mod = (await withTimeout(import(pathToFileURL(join(dir, entry)).href), this.#opts.timeoutMs, `loading ${name}`)) as { default?: unknown };
      if (typeof mod.default !== 'function') return failed(`${entry} has no default export that is a factory function`);
      const ctx: PluginContext = {
        name,
        config,
        apiVersion: PLUGIN_API_VERSION,
        logger: log.child({ plugin: name }),
      };
      const instance: unknown = await withTimeout(Promise.resolve().then(() => (mod.default as PluginFactory)(ctx)), this.#opts.timeoutMs, `starting ${name}`);
      if (instance === null || typeof instance !== 'object') return failed('the factory did not return an object');
      if (kind === 'metric-source') {
        if (typeof (instance as MetricSource).instantQuery !== 'function') return failed('a metric source must have instantQuery()');
        const src = new IsolatedMetricSource(name, instance as MetricSource, this.#opts.timeoutMs, this.#opts.observer);
        this.sources.set(name, src);
        log.info({ plugin: name, version, range: src.supportsRange }, `metric source ${name} loaded`);
        return { name, kind, dir, version, status: 'loaded', error: null, range_queries: src.supportsRange };
      }
      const ex = instance as Executor;
      if (typeof ex.getCurrentReplicas !== 'function' || typeof ex.scale !== 'function' || !Array.isArray(ex.targetTypes)) {
        return failed('an executor must have targetTypes[], getCurrentReplicas() and scale()');
      }
      this.executors.set(name, new IsolatedExecutor(name, ex, this.#opts.timeoutMs, this.#opts.observer));
      log.info({ plugin: name, version, targetTypes: ex.targetTypes }, `executor ${name} loaded`);
      return { name, kind, dir, version, status: 'loaded', error: null, target_types: [...ex.targetTypes] };
    } catch (err) {
      return failed((err as Error).message ?? String(err));
    }
  }

  /** Target types declared by loaded executors. */
  executorTargetTypes(): string[] {
    return [...this.executors.values()].flatMap((e) => [...e.targetTypes]);
  }

  /** Closes every plugin, in reverse load order; a failing close is logged, not thrown. */
  async close(): Promise<void> {
    const all: Array<IsolatedMetricSource | IsolatedExecutor> = [...this.sources.values(), ...this.executors.values()].reverse();
    for (const p of all) {
      try {
        await p.close();
      } catch (err) {
        this.#opts.logger.warn({ plugin: p.name, err: (err as Error).message }, 'plugin close failed');
      }
    }
  }
}
