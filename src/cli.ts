#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type ScalerConfig } from './config/config.js';
import { createLogger } from './logger.js';
import { startDaemon } from './main.js';

const HELP = `philotes-scaler: the Philotes scaling engine

Usage:
  philotes-scaler [serve] [--config FILE] [--port N] [--dry-run] [--database-url URL]
  philotes-scaler migrate [--config FILE]
  philotes-scaler --help

Configuration: defaults, then the config file (--config, or ./philotes-scaler.yaml),
then environment variables, then flags. See README.md for every key.
`;

function flagsFrom(values: Record<string, unknown>): Partial<Record<keyof ScalerConfig, unknown>> {
  const flags: Partial<Record<keyof ScalerConfig, unknown>> = {};
  if (typeof values['port'] === 'string') {
    if (!/^\d+$/.test(values['port'])) throw new ConfigError([{ field: '--port', message: `must be an integer, got "${values['port']}"` }], 'flags');
    flags.port = Number(values['port']);
  }
  if (values['dry-run'] === true) flags.dry_run = true;
  if (typeof values['database-url'] === 'string') flags.database_url = values['database-url'];
  if (typeof values['database-path'] === 'string') flags.database_path = values['database-path'];
  if (typeof values['log-level'] === 'string') flags.log_level = values['log-level'];
  return flags;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string' },
      port: { type: 'string' },
      'dry-run': { type: 'boolean' },
      'database-url': { type: 'string' },
      'database-path': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(HELP);
    return 0;
  }
  const command = positionals[0] ?? 'serve';
  const config = loadConfig({ file: values.config, flags: flagsFrom(values) });
  const logger = createLogger(config.log_level);

  switch (command) {
    case 'serve': {
      const daemon = await startDaemon(config, logger);
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) {
          logger.warn({ signal }, 'second signal: exiting now');
          process.exit(1);
        }
        stopping = true;
        logger.info({ signal }, 'shutting down');
        const watchdog = setTimeout(() => {
          logger.error('shutdown took longer than 30 s: exiting');
          process.exit(1);
        }, 30_000);
        watchdog.unref();
        void daemon.close().then(() => process.exit(0));
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      return -1; // keep running
    }
    case 'migrate': {
      const { openStorage } = await import('./storage/open-storage.js');
      const storage = openStorage(config);
      try {
        for (const m of await storage.migrate()) process.stdout.write(`${m.status.padEnd(16)} ${m.name}\n`);
      } finally {
        await storage.close();
      }
      return 0;
    }
    default:
      process.stderr.write(`unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`philotes-scaler: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    const e = err as { code?: string; message?: string };
    if (e.code === 'EADDRINUSE') process.stderr.write(`philotes-scaler: the port is already in use (${e.message ?? ''})\n`);
    else if (e.code?.startsWith('ERR_PARSE_ARGS') === true) process.stderr.write(`philotes-scaler: ${e.message ?? ''}\n\n${HELP}`);
    else process.stderr.write(`philotes-scaler: failed to start: ${e.message ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
