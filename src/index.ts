/** Public entry of the philotes-scaler package. Plugin authors import 'philotes-scaler/plugin'. */
export { createApp, API_PREFIX, type AppDeps } from './api/app.js';
export { loadConfig, type ScalerConfig, type ResolvedConfig } from './config/config.js';
export { startDaemon, type Daemon } from './main.js';
export type { Policy, Rule, Schedule, PolicyInput } from './policy/policy-model.js';
export type { Storage, HistoryRow, PolicyState } from './storage/storage.js';
