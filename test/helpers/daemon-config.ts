/**
 * The config most daemon tests start from: the API on an ephemeral loopback port, a SQLite file
 * and a policies folder in `dir` (made when missing), an unreachable Prometheus and an hour
 * between cycles (tests run cycles themselves), with `flags` over it.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig, type ResolvedConfig, type ScalerConfig } from '../../src/config/config.js';

export function testDaemonConfig(dir: string, flags: Partial<Record<keyof ScalerConfig, unknown>> = {}): ResolvedConfig {
  mkdirSync(join(dir, 'policies'), { recursive: true });
  return loadConfig({
    env: {},
    cwd: dir,
    flags: {
      port: 0,
      host: '127.0.0.1',
      database_path: join(dir, 'db.sqlite'),
      policy_dirs: [join(dir, 'policies')],
      prometheus_url: 'http://127.0.0.1:9',
      evaluation_interval: '1h',
      ...flags,
    },
  });
}
