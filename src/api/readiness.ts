import type { Logger } from 'pino';
import { withTimeout } from '../util/async.js';

/** Thrown by a readiness check: not ok, with a message and detail for /readyz. */
export class ReadinessError extends Error {
  constructor(
    message: string,
    readonly detail: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'ReadinessError';
  }
}

/** What one check found: ok or not, why not, and detail for /readyz. */
export interface CheckResult {
  ok: boolean;
  error?: string;
  detail: Record<string, unknown>;
}

/** A readiness probe: a name and a check that resolves to detail or throws. */
export interface ReadinessCheck {
  name: string;
  /** A failing critical check makes /readyz 503; a failing non-critical one reports "degraded" with 200. */
  critical: boolean;
  /**
   * Finds the check's answer. Unless `instant`, it may do I/O (a database ping, a request to
   * Prometheus): it runs in the background, at most every few seconds, and /readyz answers its
   * last result, so a flood of /readyz never reaches the database or a metric source.
   */
  check(): Promise<Record<string, unknown>>;
  /** The check reads only the daemon's memory: it runs on every /readyz. */
  instant?: boolean;
  /**
   * What the daemon knows now, without I/O, over the last background result (a database known
   * to be unusable, a source the loop just found down); runs on every /readyz.
   */
  current?(last: CheckResult): CheckResult;
}

/** The /readyz answer. */
export interface ReadinessReport {
  status: 'ready' | 'degraded' | 'not_ready';
  checks: Record<string, unknown>;
}

export interface ReadinessOptions {
  /** How often background checks run while started (default 2 s). */
  everyMs?: number;
  /** Bound of one background check (default 5 s): a hung source is "did not answer", not a hung /readyz. */
  timeoutMs?: number;
  logger?: Logger;
}

async function run(c: ReadinessCheck, timeoutMs: number): Promise<CheckResult> {
  try {
    return { ok: true, detail: await withTimeout(c.check(), timeoutMs, `the ${c.name} check`) };
  } catch (err) {
    return { ok: false, error: (err as Error).message, detail: (err as { detail?: Record<string, unknown> }).detail ?? {} };
  }
}

/**
 * Runs the readiness checks that do I/O in the background and answers /readyz from memory. While
 * started, a timer runs them every `everyMs`; unstarted (an app built without the daemon), a
 * /readyz older than that starts one round in the background. Either way at most one round is in
 * flight, whatever the number of /readyz requests; only the very first /readyz waits for one.
 */
export class ReadinessMonitor {
  readonly #checks: readonly ReadinessCheck[];
  readonly #everyMs: number;
  readonly #timeoutMs: number;
  readonly #logger: Logger | undefined;
  readonly #last = new Map<string, CheckResult>();
  #lastAt = -Infinity;
  #round: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** True until start() and after stop(): then a stale /readyz starts a round itself. */
  #stopped = true;
  /** Set by stop(): a round still in flight at shutdown logs nothing. */
  #closed = false;

  constructor(checks: readonly ReadinessCheck[], opts: ReadinessOptions = {}) {
    this.#checks = checks;
    this.#everyMs = opts.everyMs ?? 2_000;
    this.#timeoutMs = opts.timeoutMs ?? 5_000;
    this.#logger = opts.logger;
  }

  /**
   * Starts the first round (a /readyz before it ends waits for it; start-up does not), then one
   * every `everyMs` after the previous ended, until stop().
   */
  start(): void {
    this.#stopped = false;
    this.#closed = false;
    const tick = (): void => {
      this.#timer = setTimeout(() => {
        void this.refresh().finally(() => {
          if (!this.#stopped) tick();
        });
      }, this.#everyMs);
      this.#timer.unref();
    };
    void this.refresh().finally(() => {
      if (!this.#stopped) tick();
    });
  }

  /** Stops the timer; a round in flight ends by itself (bounded by timeoutMs) and is not waited for. */
  stop(): void {
    this.#stopped = true;
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** One round of the background checks (joins the one in flight, if any). */
  refresh(): Promise<void> {
    if (this.#round !== undefined) return this.#round;
    const round: Promise<void> = this.#runRound().finally(() => {
      if (this.#round === round) this.#round = undefined;
    });
    this.#round = round;
    return round;
  }

  async #runRound(): Promise<void> {
    await Promise.all(
      this.#checks
        .filter((c) => c.instant !== true)
        .map(async (c) => {
          const result = await run(c, this.#timeoutMs);
          const prev = this.#last.get(c.name);
          if (prev !== undefined && prev.ok !== result.ok && !this.#closed) {
            if (result.ok) this.#logger?.info({ check: c.name }, `readiness: ${c.name} is ok again`);
            else this.#logger?.warn({ check: c.name, error: result.error }, `readiness: ${c.name} failed: ${result.error}`);
          }
          this.#last.set(c.name, result);
        }),
    );
    this.#lastAt = performance.now();
  }

  /** The /readyz answer, from memory (see the class comment for the one exception). */
  async report(): Promise<ReadinessReport> {
    if (this.#lastAt === -Infinity) await this.refresh();
    else if (this.#stopped && performance.now() - this.#lastAt > this.#everyMs) void this.refresh();
    const checks: Record<string, unknown> = {};
    let ready = true;
    let degraded = false;
    for (const c of this.#checks) {
      let result = c.instant === true ? await run(c, this.#timeoutMs) : (this.#last.get(c.name) ?? { ok: false, error: 'not checked yet', detail: {} });
      if (c.current !== undefined) result = c.current(result);
      if (!result.ok) {
        if (c.critical) ready = false;
        else degraded = true;
      }
      checks[c.name] = result.ok ? { ok: true, critical: c.critical, ...result.detail } : { ok: false, critical: c.critical, error: result.error, ...result.detail };
    }
    return { status: !ready ? 'not_ready' : degraded ? 'degraded' : 'ready', checks };
  }
}
