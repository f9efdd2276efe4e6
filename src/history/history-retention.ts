import type { Logger } from 'pino';
import type { Storage } from '../storage/storage.js';

export interface HistoryRetentionOptions {
  storage: Storage;
  logger: Logger;
  /** Rows older than this are deleted; 0 keeps every row. */
  retentionMs: number;
  /** Time between passes (default one minute; the first pass runs shortly after start). */
  everyMs?: number;
  /** Rows deleted per statement (default 500): small transactions, so writers and readers never wait long. */
  batch?: number;
  /** Longest a pass keeps deleting before it yields until the next pass (default 2 s). */
  passBudgetMs?: number;
  now?: () => Date;
}

/**
 * Deletes history rows older than `history_retention` in the background, in small batches with a
 * turn of the event loop between them, so that pruning a large backlog never stalls the API or
 * the evaluation loop. A pass that hits its time budget leaves the rest for the next one.
 * Several daemons on one PostgreSQL database may each prune: their batches simply serialise.
 */
export class HistoryRetention {
  readonly #opts: Required<Omit<HistoryRetentionOptions, 'now'>> & { now: () => Date };
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;
  #stopped = true;
  /** Set by stop(): a pass in progress ends after its current batch. */
  #closed = false;
  /** Rows deleted since start (for logs and tests). */
  deleted = 0;

  constructor(opts: HistoryRetentionOptions) {
    this.#opts = { everyMs: 60_000, batch: 500, passBudgetMs: 2_000, now: () => new Date(), ...opts };
  }

  start(firstInMs = 5_000): void {
    if (this.#opts.retentionMs <= 0 || !this.#stopped) return;
    this.#stopped = false;
    this.#schedule(firstInMs);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.prune()
        .catch((err: unknown) => this.#opts.logger.warn({ err }, 'history retention: pruning failed; trying again at the next pass'))
        .finally(() => this.#schedule(this.#opts.everyMs));
    }, ms);
    this.#timer.unref();
  }

  /** One pass: deletes old rows batch by batch until none is left or the budget is spent. */
  prune(): Promise<number> {
    this.#running ??= this.#pass().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #pass(): Promise<number> {
    const { storage, logger, retentionMs, batch, passBudgetMs } = this.#opts;
    // An unusable database was reported once already, by the storage: nothing to add every pass.
    if (retentionMs <= 0 || storage.fault() !== undefined) return 0;
    const before = new Date(this.#opts.now().getTime() - retentionMs).toISOString();
    const until = performance.now() + passBudgetMs;
    let total = 0;
    for (;;) {
      const n = await storage.pruneHistory(before, batch);
      total += n;
      if (n < batch || performance.now() > until || this.#closed) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.deleted += total;
    if (total > 0) logger.info({ deleted: total, before }, `history retention: deleted ${total} rows executed before ${before}`);
    return total;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }
}
