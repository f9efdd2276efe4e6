import type { Logger } from 'pino';
import type { ResolvedConfig } from '../config/config.js';
import { createPostgresStorage } from './postgres-storage.js';
import { createSqliteStorage } from './sqlite-storage.js';
import type { Storage } from './storage.js';

/**
 * PostgreSQL when database_url is set, else the embedded SQLite file. The logger reports faults
 * the SQLite driver notices by itself (its file deleted, replaced or made read-only).
 */
export function openStorage(config: Pick<ResolvedConfig, 'database_url' | 'database_path'>, opts: { logger?: Logger } = {}): Storage {
  if (config.database_url !== null && config.database_url !== '') return createPostgresStorage(config.database_url);
  return createSqliteStorage(config.database_path, opts.logger !== undefined ? { logger: opts.logger } : {});
}
