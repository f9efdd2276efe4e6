import type { ResolvedConfig } from '../config/config.js';
import { createPostgresStorage } from './postgres-storage.js';
import { createSqliteStorage } from './sqlite-storage.js';
import type { Storage } from './storage.js';

/** PostgreSQL when database_url is set, else the embedded SQLite file. */
export function openStorage(config: Pick<ResolvedConfig, 'database_url' | 'database_path'>): Storage {
  if (config.database_url !== null && config.database_url !== '') return createPostgresStorage(config.database_url);
  return createSqliteStorage(config.database_path);
}
