import pino, { type Logger } from 'pino';

/** JSON logs (pino); pretty when writing to a terminal and pino-pretty is installed. */
export function createLogger(level: string, opts: { pretty?: boolean; stderr?: boolean } = {}): Logger {
  // Commands that print results on stdout (validate, evaluate, backtest, test) log to stderr.
  if (opts.stderr === true) return pino({ level, base: { service: 'philotes-scaler' } }, pino.destination(2));
  const pretty = opts.pretty ?? process.stdout.isTTY;
  if (pretty === true) {
    try {
      return pino({ level, transport: { target: 'pino-pretty', options: { colorize: true } } });
    } catch {
      // pino-pretty is optional: fall back to JSON.
    }
  }
  return pino({ level, base: { service: 'philotes-scaler' } });
}
