import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { createApp, type RouteRegistrar, type ReadinessCheck } from './api/app.js';
import type { ResolvedConfig } from './config/config.js';
import { PolicyService } from './policy/policy-service.js';
import { createValidationContext } from './policy/validation-context.js';
import { openStorage } from './storage/open-storage.js';
import type { Storage } from './storage/storage.js';

/** A running daemon; close() stops its parts in the reverse order of start. */
export interface Daemon {
  readonly server: Server;
  readonly storage: Storage;
  readonly policies: PolicyService;
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  close(): Promise<void>;
}

/** Wires config -> storage -> migrations -> services -> HTTP, and listens. */
export async function startDaemon(config: ResolvedConfig, logger: Logger): Promise<Daemon> {
  const stops: Array<{ name: string; stop: () => Promise<void> }> = [];
  const storage = openStorage(config);
  stops.push({ name: 'storage', stop: () => storage.close() });
  try {
    const migrations = await storage.migrate();
    const applied = migrations.filter((m) => m.status === 'applied').map((m) => m.name);
    logger.info({ storage: storage.kind, applied }, applied.length > 0 ? 'migrations applied' : 'schema up to date');

    const policies = new PolicyService({
      storage,
      validation: createValidationContext(config),
      defaultCooldown: config.default_cooldown,
    });
    const readiness: ReadinessCheck[] = [
      {
        name: 'storage',
        check: async () => {
          await storage.ping();
          return { kind: storage.kind, migrations: (await storage.appliedMigrations()).length };
        },
      },
    ];
    const extraRoutes: RouteRegistrar[] = [];
    const app = createApp({ logger, storage, policies, readiness, extraRoutes });
    const server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(config.port, config.host);
      s.once('listening', () => resolve(s));
      s.once('error', reject);
    });
    stops.push({
      name: 'http',
      stop: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        }),
    });
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : config.port;
    logger.info({ port, storage: storage.kind }, `Philotes Scaler API listening on :${port}`);

    let closing: Promise<void> | undefined;
    return {
      server,
      storage,
      policies,
      port,
      close() {
        closing ??= (async () => {
          for (const s of [...stops].reverse()) {
            try {
              await s.stop();
            } catch (err) {
              logger.warn({ err, part: s.name }, 'error while stopping');
            }
          }
        })();
        return closing;
      },
    };
  } catch (err) {
    for (const s of [...stops].reverse()) await s.stop().catch(() => undefined);
    throw err;
  }
}
