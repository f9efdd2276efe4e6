import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createApp, type ReadinessCheck, type RouteRegistrar } from '../../src/api/app.js';
import type { ScalerConfig } from '../../src/config/config.js';
import { PolicyService } from '../../src/policy/policy-service.js';
import { createValidationContext } from '../../src/policy/validation-context.js';
import { createSqliteStorage } from '../../src/storage/sqlite-storage.js';
import type { Storage } from '../../src/storage/storage.js';

/** The parts of the config the API needs; tests override what they exercise. */
export type TestConfig = Pick<ScalerConfig, 'executors' | 'prices' | 'default_metric_source' | 'default_cooldown'>;

export const DEFAULT_TEST_CONFIG: TestConfig = {
  executors: { 'cdc-worker': 'keda', trino: 'keda', risingwave: 'keda', nodes: 'logger' },
  prices: {},
  default_metric_source: 'prometheus',
  default_cooldown: 300,
};

/** A running API on a fresh SQLite file; close() stops the server and removes the folder. */
export interface TestApp {
  /** Base URL of the scaling API, such as http://127.0.0.1:40123/api/v1/scaling */
  api: string;
  /** Base URL of the server (for /healthz, /readyz). */
  root: string;
  storage: Storage;
  policies: PolicyService;
  close(): Promise<void>;
}

/**
 * Builds the real app (createApp) the way main() does, listening on an ephemeral port; on a fresh
 * SQLite file, or on `opts.storage` (closed with the app).
 */
export async function startTestApp(overrides: Partial<TestConfig> = {}, opts: { extraRoutes?: RouteRegistrar[]; storage?: Storage } = {}): Promise<TestApp> {
  const config: TestConfig = { ...DEFAULT_TEST_CONFIG, ...overrides };
  const dir = await mkdtemp(join(tmpdir(), 'philotes-api-test-'));
  const storage = opts.storage ?? createSqliteStorage(join(dir, 'scaler.db'));
  await storage.migrate();
  const policies = new PolicyService({
    storage,
    validation: createValidationContext(config),
    defaultCooldown: config.default_cooldown,
  });
  const readiness: ReadinessCheck[] = [
    {
      name: 'storage',
      critical: true,
      check: async () => {
        await storage.ping();
        return { kind: storage.kind, migrations: await storage.appliedMigrations() };
      },
    },
  ];
  const app = createApp({ logger: pino({ level: 'silent' }), storage, policies, readiness, extraRoutes: opts.extraRoutes ?? [] });
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(0, '127.0.0.1');
    s.once('listening', () => resolve(s));
    s.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  const root = `http://127.0.0.1:${port}`;
  let closing: Promise<void> | undefined;
  return {
    api: `${root}/api/v1/scaling`,
    root,
    storage,
    policies,
    close() {
      closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await storage.close();
        await rm(dir, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}

/** JSON request helper: sends `body` as JSON (unless a string), returns status, headers and parsed body. */
export async function call(
  method: string,
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: unknown; text: string }> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
      (init.headers as Record<string, string>)['content-type'] = 'application/json';
    }
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let parsed: unknown = undefined;
  if (text !== '') {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}
