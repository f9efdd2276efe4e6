import { existsSync, readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { FieldError } from '../errors.js';
import { CONFIG_SCHEMA_ID, loadSchema, toFieldErrors, validator } from '../schemas.js';
import { explainDurationErrors } from '../policy/policy-validation.js';
import { parseDuration } from '../util/duration.js';

/** The daemon's configuration, as the config file names it (schemas/config.schema.json). */
export interface ScalerConfig {
  port: number;
  host: string;
  log_level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  enabled: boolean;
  evaluation_interval: string;
  prometheus_url: string;
  default_cooldown: number;
  dry_run: boolean;
  database_path: string;
  database_url: string | null;
  policy_dirs: string[];
  plugin_dirs: string[];
  default_metric_source: string;
  executors: Record<string, string>;
  prices: Record<string, number>;
  plugins: Record<string, Record<string, unknown>>;
  max_concurrency: number;
  plugin_timeout: string;
  max_policy_file_bytes: number;
  history_retention: string;
  history_prune_interval: string;
  /** MiB of history answers kept in memory (HistoryPages); 0 keeps none. */
  history_cache_mb: number;
  max_concurrent_backtests: number;
  request_headers_timeout: string;
  request_body_timeout: string;
  auth: { tokens: Array<{ name?: string; sha256: string; scopes: Array<'read' | 'write'> }>; open_probes: boolean };
  api_token: string | null;
  api_read_token: string | null;
}

/** Config plus values derived from it once, at start. */
export interface ResolvedConfig extends ScalerConfig {
  evaluation_interval_ms: number;
  plugin_timeout_ms: number;
  /** history_retention in milliseconds; 0 keeps history forever. */
  history_retention_ms: number;
  /** history_prune_interval in milliseconds: the time between two retention passes. */
  history_prune_interval_ms: number;
  request_headers_timeout_ms: number;
  request_body_timeout_ms: number;
  /** Where each value came from, for `--print-config` and error messages. */
  readonly origins: Readonly<Record<string, 'default' | 'file' | 'env' | 'flag'>>;
}

/** Environment variables and the config key each sets (README "Configuration"). */
export const ENV_KEYS: Record<string, { key: keyof ScalerConfig; type: 'int' | 'bool' | 'string' | 'list' }> = {
  PORT: { key: 'port', type: 'int' },
  HOST: { key: 'host', type: 'string' },
  LOG_LEVEL: { key: 'log_level', type: 'string' },
  PHILOTES_SCALING_ENABLED: { key: 'enabled', type: 'bool' },
  PHILOTES_SCALING_EVALUATION_INTERVAL: { key: 'evaluation_interval', type: 'string' },
  PHILOTES_SCALING_PROMETHEUS_URL: { key: 'prometheus_url', type: 'string' },
  PHILOTES_SCALING_DEFAULT_COOLDOWN: { key: 'default_cooldown', type: 'int' },
  PHILOTES_SCALING_DRY_RUN: { key: 'dry_run', type: 'bool' },
  PHILOTES_SCALING_DATABASE_PATH: { key: 'database_path', type: 'string' },
  DATABASE_URL: { key: 'database_url', type: 'string' },
  PHILOTES_SCALING_POLICY_DIRS: { key: 'policy_dirs', type: 'list' },
  PHILOTES_SCALING_PLUGIN_DIRS: { key: 'plugin_dirs', type: 'list' },
  PHILOTES_SCALING_MAX_CONCURRENCY: { key: 'max_concurrency', type: 'int' },
  PHILOTES_SCALING_HISTORY_RETENTION: { key: 'history_retention', type: 'string' },
  PHILOTES_SCALING_HISTORY_PRUNE_INTERVAL: { key: 'history_prune_interval', type: 'string' },
  PHILOTES_SCALING_HISTORY_CACHE_MB: { key: 'history_cache_mb', type: 'int' },
  PHILOTES_SCALING_API_TOKEN: { key: 'api_token', type: 'string' },
  PHILOTES_SCALING_API_READ_TOKEN: { key: 'api_read_token', type: 'string' },
};

export class ConfigError extends Error {
  readonly errors: FieldError[];
  constructor(errors: FieldError[], where: string) {
    super(`invalid configuration (${where}):\n${errors.map((e) => `  ${e.field}: ${e.message}`).join('\n')}`);
    this.name = 'ConfigError';
    this.errors = errors;
  }
}

function convert(raw: string, type: 'int' | 'bool' | 'string' | 'list', name: string): unknown {
  switch (type) {
    case 'int': {
      if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError([{ field: name, message: `must be an integer, got "${raw}"` }], 'environment');
      return Number(raw);
    }
    case 'bool': {
      const v = raw.trim().toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(v)) return true;
      if (['false', '0', 'no', 'off'].includes(v)) return false;
      throw new ConfigError([{ field: name, message: `must be true or false, got "${raw}"` }], 'environment');
    }
    case 'list':
      return raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    default:
      return raw;
  }
}

const CONTROL_NAMES: Record<number, string> = { 9: 'a tab', 10: 'a line feed (newline)', 13: 'a carriage return', 32: 'a space' };

/**
 * Why a token can never be sent in an Authorization header as configured (whitespace or control
 * characters, such as the newline `kubectl create secret --from-file` keeps), or undefined.
 * Names the character and its position, never the token.
 */
export function tokenProblem(token: string): string | undefined {
  const at = [...token].findIndex((ch) => /[\s\p{Cc}]/u.test(ch));
  if (at < 0) return undefined;
  const chars = [...token];
  const ch = chars[at] as string;
  const cp = ch.codePointAt(0) as number;
  const what = CONTROL_NAMES[cp] ?? `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  const trailing = chars.slice(at).every((c) => /[\s\p{Cc}]/u.test(c));
  const where = trailing ? 'at the end' : at === 0 ? 'at the start' : `at character ${at + 1} of ${chars.length}`;
  return `contains ${what} ${where}; a bearer token cannot contain whitespace or control characters, so no request could ever match it (a file made with a trailing newline, as kubectl create secret --from-file keeps it, is a common cause: create the secret with --from-literal or strip the newline)`;
}

function defaults(): Record<string, unknown> {
  const schema = loadSchema('config.schema.json') as { properties: Record<string, { default?: unknown; properties?: Record<string, { default?: unknown }> }> };
  const out: Record<string, unknown> = {};
  for (const [key, prop] of Object.entries(schema.properties)) {
    if (prop.default !== undefined) out[key] = structuredClone(prop.default);
    if (prop.properties !== undefined) {
      const nested: Record<string, unknown> = {};
      for (const [k, p] of Object.entries(prop.properties)) if (p.default !== undefined) nested[k] = structuredClone(p.default);
      out[key] = { ...nested, ...(out[key] as object) };
    }
  }
  return out;
}

export interface LoadConfigOptions {
  /** Path from --config; else philotes-scaler.yaml in the working directory when present. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Values from CLI flags, already keyed by config key. */
  flags?: Partial<Record<keyof ScalerConfig, unknown>>;
  cwd?: string;
}

/** Reads and validates a config file (YAML or JSON); throws ConfigError naming the key. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([{ field: '--config', message: `cannot read ${path}: ${(err as Error).message}` }], path);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (err) {
    throw new ConfigError([{ field: '/', message: `not valid YAML or JSON: ${(err as Error).message}` }], path);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError([{ field: '/', message: 'must be a mapping of keys to values' }], path);
  return parsed as Record<string, unknown>;
}

/**
 * Defaults, then the file, then the environment, then CLI flags; validated by the config schema
 * and frozen. A bad value fails here, at start, naming the key.
 */
export function loadConfig(opts: LoadConfigOptions = {}): ResolvedConfig {
  const env = opts.env ?? process.env;
  const merged: Record<string, unknown> = defaults();
  const origins: Record<string, 'default' | 'file' | 'env' | 'flag'> = {};
  for (const k of Object.keys(merged)) origins[k] = 'default';

  const cwdFile = `${opts.cwd ?? process.cwd()}/philotes-scaler.yaml`;
  const file = opts.file ?? (existsSync(cwdFile) ? cwdFile : undefined);
  if (file !== undefined) {
    const fromFile = readConfigFile(file);
    const v = validator(CONFIG_SCHEMA_ID);
    if (!v(fromFile)) throw new ConfigError(toFieldErrors(explainDurationErrors(v.errors ?? [], fromFile)), file);
    for (const [k, val] of Object.entries(fromFile)) {
      merged[k] = k === 'auth' ? { ...(merged[k] as object), ...(val as object) } : val;
      origins[k] = 'file';
    }
  }
  for (const [name, { key, type }] of Object.entries(ENV_KEYS)) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    merged[key] = convert(raw, type, name);
    origins[key] = 'env';
  }
  for (const [k, val] of Object.entries(opts.flags ?? {})) {
    if (val === undefined) continue;
    merged[k] = val;
    origins[k] = 'flag';
  }

  // A token with whitespace passes the length check but can never be sent: refuse it now, by name.
  const tokenErrors: FieldError[] = [];
  for (const key of ['api_token', 'api_read_token'] as const) {
    const value = merged[key];
    if (typeof value !== 'string') continue;
    const problem = tokenProblem(value);
    if (problem === undefined) continue;
    const envName = Object.entries(ENV_KEYS).find(([, m]) => m.key === key)?.[0];
    const from = origins[key] === 'env' && envName !== undefined ? ` (from ${envName})` : origins[key] === 'flag' ? ' (from a flag)' : origins[key] === 'file' && file !== undefined ? ` (from ${file})` : '';
    tokenErrors.push({ field: `/${key}`, message: `${problem}${from}` });
  }
  if (tokenErrors.length > 0) throw new ConfigError(tokenErrors, 'merged configuration');

  const v = validator<ScalerConfig>(CONFIG_SCHEMA_ID);
  if (!v(merged)) {
    // Name the variable or flag that set a bad key, not only the key.
    const errors = toFieldErrors(explainDurationErrors(v.errors ?? [], merged)).map((e) => {
      const key = e.field.split('/')[1] ?? '';
      const envName = Object.entries(ENV_KEYS).find(([, m]) => m.key === key)?.[0];
      const from = origins[key] === 'env' && envName !== undefined ? ` (from ${envName})` : origins[key] === 'flag' ? ' (from a flag)' : '';
      return { field: e.field, message: `${e.message}${from}` };
    });
    throw new ConfigError(errors, 'merged configuration');
  }
  const cfg = merged as unknown as ScalerConfig;
  const interval = parseDuration(cfg.evaluation_interval);
  if (interval === undefined || interval < 1) {
    throw new ConfigError([{ field: '/evaluation_interval', message: `must be a duration of at least 1s, got "${cfg.evaluation_interval}"` }], 'merged configuration');
  }
  const timeout = parseDuration(cfg.plugin_timeout);
  if (timeout === undefined || timeout < 1) {
    throw new ConfigError([{ field: '/plugin_timeout', message: `must be a duration of at least 1s, got "${cfg.plugin_timeout}"` }], 'merged configuration');
  }
  const retention = cfg.history_retention === '0' ? 0 : parseDuration(cfg.history_retention);
  if (retention === undefined || (retention > 0 && retention < 60)) {
    throw new ConfigError([{ field: '/history_retention', message: `must be 0 (keep forever) or a duration of at least 1m, got "${cfg.history_retention}"` }], 'merged configuration');
  }
  const pruneInterval = parseDuration(cfg.history_prune_interval);
  if (pruneInterval === undefined || pruneInterval < 1 || pruneInterval > 3600) {
    throw new ConfigError([{ field: '/history_prune_interval', message: `must be a duration from 1s to 1h, got "${cfg.history_prune_interval}"` }], 'merged configuration');
  }
  const requestTimeouts: Record<string, number> = {};
  for (const key of ['request_headers_timeout', 'request_body_timeout'] as const) {
    const seconds = parseDuration(cfg[key]);
    if (seconds === undefined || seconds < 1 || seconds > 3600) {
      throw new ConfigError([{ field: `/${key}`, message: `must be a duration from 1s to 1h, got "${cfg[key]}"` }], 'merged configuration');
    }
    requestTimeouts[key] = seconds * 1000;
  }
  const resolved: ResolvedConfig = {
    ...cfg,
    request_headers_timeout_ms: requestTimeouts['request_headers_timeout'] as number,
    request_body_timeout_ms: requestTimeouts['request_body_timeout'] as number,
    evaluation_interval_ms: interval * 1000,
    plugin_timeout_ms: timeout * 1000,
    history_retention_ms: retention * 1000,
    history_prune_interval_ms: pruneInterval * 1000,
    origins,
  };
  return deepFreeze(resolved);
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}
