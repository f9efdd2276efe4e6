#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type ScalerConfig } from './config/config.js';
import type { Logger } from 'pino';
import { createLogger } from './logger.js';
import { startDaemon, type Daemon } from './main.js';
import { parseDuration } from './util/duration.js';
import { readPackageJson } from './util/package-root.js';
import { tuneHeap } from './util/heap.js';

const HELP = `philotes-scaler: the Philotes scaling engine

Usage:
  philotes-scaler serve [--config FILE] [--port N] [--dry-run] [--database-url URL]
  philotes-scaler validate [--config FILE] [--format text|json] <files or folders...>
  philotes-scaler evaluate [--config FILE] <policy file> [--at TIME] [--current-replicas N] [--json]
  philotes-scaler backtest [--config FILE] <policy file> --from TIME [--to TIME] [--step 1m]
                           [--initial-replicas N] [--prometheus URL]
                           [--timeline out.csv|out.json] [--chart out.svg]
  philotes-scaler test [--config FILE] <policy test files or folders...>
  philotes-scaler migrate [--config FILE]
  philotes-scaler <command> --help
  philotes-scaler --version

Configuration: defaults, then the config file (--config, or ./philotes-scaler.yaml),
then environment variables, then flags. See README.md for every key.
`;

const COMMAND_HELP: Record<string, string> = {
  serve: `philotes-scaler serve: run the daemon (the API listens on 127.0.0.1 unless HOST says otherwise)

  --config FILE        config file (YAML or JSON); default ./philotes-scaler.yaml when present
  --port N             HTTP port (PORT)
  --dry-run            decide and record, never execute (PHILOTES_SCALING_DRY_RUN)
  --database-url URL   use PostgreSQL (DATABASE_URL)
  --database-path FILE SQLite file (PHILOTES_SCALING_DATABASE_PATH)
  --log-level LEVEL    fatal, error, warn, info, debug, trace or silent
`,
  validate: `philotes-scaler validate [--config FILE] [--format text|json] <files or folders...>

Checks policy files exactly as the daemon would (YAML syntax, schema, semantic rules, unique
names across the files) without a database or network. Folders are searched for *.yaml / *.yml.
Plugins and config are loaded as \`serve\` loads them, so target types and metric sources that
plugins in plugin_dirs declare are known. Prints one line per problem, "file:line:col field
message", and exits 1 if there is any; exit 0 when every policy is valid.

  --config FILE      the daemon's config file (default ./philotes-scaler.yaml when present)
  --format json      a machine-readable report
`,
  evaluate: `philotes-scaler evaluate [options] <policy file>

Evaluates the file's policies once against the configured metric sources (or the Prometheus
at --prometheus) and prints what each would do and why. A dry run that touches no store:
state lives in memory and is thrown away, and nothing is executed. Plugins and config are
loaded as \`serve\` loads them. Exit 0, or 1 when the file is invalid.

  --config FILE            the daemon's config file (default ./philotes-scaler.yaml when present)
  --at TIME                the instant to evaluate at, ISO-8601 with an offset such as
                           2026-01-28T10:00:00Z (default: now); schedules, windows and
                           queries are all judged at that instant
  --current-replicas N     evaluate as if the target ran N replicas (default: what its
                           executor answers, else min_replicas)
  --json                   print the whole decision record as JSON instead of a summary
  --policy NAME            which policy, when the file holds several
  --prometheus URL         the Prometheus to query (default prometheus_url)
`,
  backtest: `philotes-scaler backtest [options] <policy file> --from TIME [--to TIME]

Replays the policy over metric history with the same decision function as the daemon and
prints a summary (actions, replica-hours, estimated cost, pending scale-up minutes, peak).
Plugins and config are loaded as \`serve\` loads them.

  --config FILE            the daemon's config file (default ./philotes-scaler.yaml when present)
  --from, --to TIME        ISO-8601 with an offset, such as 2026-01-01T00:00:00Z; or relative
                           to now: "now", "-24h", "-7d", "-1h30m"; --to defaults to now
  --step DURATION          evaluation step (default 1m)
  --initial-replicas N     replicas at --from (default min_replicas)
  --policy NAME            which policy, when the file holds several
  --prometheus URL         Prometheus holding the history (default prometheus_url)
  --timeline FILE          write every evaluation as CSV (or JSON when FILE ends in .json)
  --chart FILE             draw the metrics, thresholds and replicas as SVG
`,
  test: `philotes-scaler test [--config FILE] <policy test files or folders...>

Runs policy unit tests (YAML files; see docs/policy-tests.md) with synthetic series, no
Prometheus. Policies are checked as \`validate\` checks them, with the config's plugins.
Prints PASS or FAIL per case with a diff, exits 1 on any failure, 2 on bad usage.

  --config FILE      the daemon's config file (default ./philotes-scaler.yaml when present)
`,
  migrate: `philotes-scaler migrate [--config FILE] [--database-url URL]

Applies pending database migrations and prints each migration's status. The daemon also
migrates at start; this command is for deploy pipelines.
`,
};

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
  if (typeof values['prometheus'] === 'string') flags.prometheus_url = values['prometheus'];
  return flags;
}

/** An ISO-8601 instant with an offset (as the backtest's --from and --to take); a usage error naming the flag otherwise. */
function parseInstant(raw: string, flag: string): Date {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/.test(raw) || Number.isNaN(Date.parse(raw))) {
    throw new ConfigError([{ field: flag, message: `must be an ISO-8601 time with an offset, such as 2026-01-28T10:00:00Z, got "${raw}"` }], 'flags');
  }
  return new Date(raw);
}

/**
 * A backtest bound: an ISO-8601 time is passed on as it is (the backtest checks it); "now" and
 * "-DURATION" (such as -24h, -7d, -1h30m) are resolved against the present, to the second.
 */
function relativeInstant(raw: string, flag: string): string {
  if (raw === 'now') return new Date(Math.floor(Date.now() / 1000) * 1000).toISOString();
  if (!raw.startsWith('-')) return raw;
  const seconds = parseDuration(raw.slice(1));
  if (seconds === undefined || seconds === 0) {
    throw new ConfigError([{ field: flag, message: `must be an ISO-8601 time, "now" or a duration before now such as -24h, -7d or -1h30m; got "${raw}"` }], 'flags');
  }
  return new Date((Math.floor(Date.now() / 1000) - seconds) * 1000).toISOString();
}

/** How long a graceful shutdown may take before the process exits anyway. */
const SHUTDOWN_WATCHDOG_MS = 30_000;

/**
 * Runs the daemon until SIGTERM or SIGINT. The handlers are installed before the daemon starts,
 * so a signal during start-up (migrations, plugin loading) still ends in a clean stop once the
 * start completes, never in a kill halfway. The first signal closes the daemon (exit 0); a failed
 * start exits 1 as before; a second signal, or a shutdown slower than the watchdog,
 * exits at once with 1.
 */
function serve(config: ReturnType<typeof loadConfig>, logger: Logger): void {
  tuneHeap();
  let daemon: Daemon | undefined;
  let stopping = false;
  const exit = (code: number): void => {
    // pino writes synchronously to stdout, so nothing logged before this line is lost.
    process.exit(code);
  };
  const shutdown = (): void => {
    if (daemon === undefined) return; // still starting: the start's continuation closes it
    void daemon.close().then(
      () => {
        logger.info('stopped');
        exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'error while shutting down');
        exit(1);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      exit(1);
      return;
    }
    stopping = true;
    logger.info({ signal }, daemon === undefined ? 'shutting down once the start completes' : 'shutting down');
    const watchdog = setTimeout(() => {
      logger.error(`shutdown took longer than ${SHUTDOWN_WATCHDOG_MS / 1000} s: exiting`);
      exit(1);
    }, SHUTDOWN_WATCHDOG_MS);
    watchdog.unref();
    shutdown();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  startDaemon(config, logger).then(
    (started) => {
      daemon = started;
      if (stopping) shutdown();
    },
    (err: unknown) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      // A failed start has already stopped what it had started: the process ends by itself.
      reportFailure(err);
    },
  );
}

/**
 * `--from -24h` as `--from=-24h`: a value that starts with a dash and a digit is a relative time,
 * never an option, so it is joined to its flag before the arguments are parsed.
 */
function joinRelativeTimes(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const next = argv[i + 1];
    if ((a === '--from' || a === '--to') && next !== undefined && /^-\d/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: joinRelativeTimes(argv),
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string' },
      port: { type: 'string' },
      'dry-run': { type: 'boolean' },
      'database-url': { type: 'string' },
      'database-path': { type: 'string' },
      'log-level': { type: 'string' },
      format: { type: 'string' },
      prometheus: { type: 'string' },
      policy: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      at: { type: 'string' },
      step: { type: 'string' },
      'initial-replicas': { type: 'string' },
      'current-replicas': { type: 'string' },
      json: { type: 'boolean' },
      timeline: { type: 'string' },
      chart: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  });
  if (values.version === true) {
    process.stdout.write(`philotes-scaler ${packageVersion()}\n`);
    return 0;
  }
  // A bare `philotes-scaler` explains itself rather than opening a server: `serve` is asked for by name.
  if (positionals[0] === undefined && values.help !== true) {
    process.stdout.write(HELP);
    return 0;
  }
  const command = positionals[0] ?? 'serve';
  if (values.help === true) {
    process.stdout.write(positionals[0] === undefined ? HELP : (COMMAND_HELP[command] ?? HELP));
    return 0;
  }
  const config = loadConfig({ file: values.config, flags: flagsFrom(values) });
  // One-shot commands print results on stdout; their logs go to stderr, and only warnings by default.
  const logger = command === 'serve' ? createLogger(config.log_level) : createLogger(values['log-level'] ?? 'warn', { stderr: true });
  const emit = (r: { code: number; stdout: string; stderr?: string }): number => {
    process.stdout.write(r.stdout);
    if (r.stderr !== undefined && r.stderr !== '') process.stderr.write(r.stderr);
    return r.code;
  };

  switch (command) {
    case 'serve': {
      serve(config, logger);
      return -1; // keep running
    }
    case 'validate': {
      const paths = positionals.slice(1);
      if (paths.length === 0) {
        process.stderr.write(COMMAND_HELP['validate'] ?? HELP);
        return 2;
      }
      const format = values.format ?? 'text';
      if (format !== 'text' && format !== 'json') throw new ConfigError([{ field: '--format', message: `must be text or json, got "${format}"` }], 'flags');
      const { validatePaths, formatValidateText } = await import('./files/validate-command.js');
      const result = await validatePaths(paths, config, logger);
      process.stdout.write(format === 'json' ? `${JSON.stringify({ valid: result.problems.length === 0, ...result }, null, 2)}\n` : formatValidateText(result));
      return result.problems.length === 0 ? 0 : 1;
    }
    case 'evaluate': {
      const file = positionals[1];
      if (file === undefined || positionals.length > 2) {
        process.stderr.write(COMMAND_HELP['evaluate'] ?? HELP);
        return 2;
      }
      const at = values.at === undefined ? undefined : parseInstant(values.at, '--at');
      const current = values['current-replicas'];
      if (current !== undefined && (!/^\d{1,6}$/.test(current) || Number(current) > 100_000)) {
        throw new ConfigError([{ field: '--current-replicas', message: `must be an integer from 0 to 100000, got "${current}"` }], 'flags');
      }
      const { evaluatePolicyFile, formatDecisionSummary } = await import('./engine/evaluate-command.js');
      const result = await evaluatePolicyFile(file, config, logger, at, current !== undefined ? { currentReplicas: Number(current) } : {});
      if (!result.ok) return emit({ code: 1, stdout: '', stderr: `${result.problems.join('\n')}\n` });
      const chosen = values.policy !== undefined ? result.records.filter((r) => r.policy_name === values.policy) : result.records;
      if (chosen.length === 0) return emit({ code: 1, stdout: '', stderr: `${file} has no policy named "${values.policy}"\n` });
      if (values.json === true) return emit({ code: 0, stdout: `${JSON.stringify(chosen.length === 1 ? chosen[0] : chosen, null, 2)}\n` });
      return emit({ code: 0, stdout: chosen.map((r) => formatDecisionSummary(r, { currentReplicasGiven: current !== undefined })).join('\n') });
    }
    case 'backtest': {
      const file = positionals[1];
      if (file === undefined || positionals.length > 2) {
        process.stderr.write(COMMAND_HELP['backtest'] ?? HELP);
        return 2;
      }
      const { backtestCommand } = await import('./commands.js');
      return emit(
        await backtestCommand(
          {
            file,
            policy: values.policy,
            from: values.from === undefined ? undefined : relativeInstant(values.from, '--from'),
            to: relativeInstant(values.to ?? 'now', '--to'),
            step: values.step,
            initialReplicas: values['initial-replicas'],
            timeline: values.timeline,
            chart: values.chart,
          },
          config,
          logger,
        ),
      );
    }
    case 'test': {
      const paths = positionals.slice(1);
      if (paths.length === 0) {
        process.stderr.write(COMMAND_HELP['test'] ?? HELP);
        return 2;
      }
      const { runPolicyTestFiles } = await import('./policy-tests/policy-test-runner.js');
      const result = await runPolicyTestFiles(paths, config, logger);
      return emit({ code: result.ok ? 0 : 1, stdout: result.text });
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

function reportFailure(err: unknown): void {
  if (err instanceof ConfigError) {
    process.stderr.write(`philotes-scaler: ${err.message}\n`);
    process.exitCode = 2;
    return;
  }
  const e = err as { code?: string; message?: string };
  if (e.code === 'EADDRINUSE') process.stderr.write(`philotes-scaler: the port is already in use (${e.message ?? ''})\n`);
  else if (e.code?.startsWith('ERR_PARSE_ARGS') === true) {
    // A usage mistake: the usage of the command that was meant (its first word), exit 2.
    const command = process.argv.slice(2).find((a) => !a.startsWith('-'));
    process.stderr.write(`philotes-scaler: ${e.message ?? ''}\n\n${(command !== undefined ? COMMAND_HELP[command] : undefined) ?? HELP}`);
    process.exitCode = 2;
    return;
  } else process.stderr.write(`philotes-scaler: failed to start: ${e.message ?? String(err)}\n`);
  process.exitCode = 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  reportFailure,
);

/** This package's version, from its package.json. */
function packageVersion(): string {
  return readPackageJson<{ version: string }>('package.json').version;
}
