import type { Logger } from 'pino';
import type { LeaderLock } from '../storage/storage.js';
import { withTimeout } from '../util/async.js';

export interface LeaderElectionOptions {
  lock: LeaderLock;
  logger: Logger;
  /** How often a follower competes and a leader checks it still holds the lock. */
  checkMs: number;
  /**
   * Bound on one call of the lock (default: the larger of 10 s and two checks). A leader whose
   * check does not answer in time steps down: it can no longer prove it holds the lock.
   */
  callTimeoutMs?: number;
  onElected: () => void | Promise<void>;
  onDeposed: () => void | Promise<void>;
}

/**
 * Decides whether this daemon runs the evaluation loop. Followers try the lock every `checkMs`;
 * the leader checks it still holds it as often, and steps down the moment it does not (its
 * database connection dropped), so two daemons never run the loop together for longer than one
 * check. When a leader dies, a follower takes over within `checkMs` of the lock being freed.
 * Lock calls are bounded (`callTimeoutMs`), so a hung database connection can neither keep a
 * leader that cannot prove its lock running, nor hang stop() (and with it the daemon's shutdown).
 */
export class LeaderElection {
  readonly #opts: LeaderElectionOptions;
  #leader = false;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #running: Promise<void> | undefined;
  #deposing: Promise<void> | undefined;
  /**
   * Why the last attempt to take the lock failed (the lock itself could not be used, such as a
   * lock file that cannot be written), as opposed to another daemon holding it; undefined then.
   */
  lastError: string | undefined;
  since: string | null = null;

  constructor(opts: LeaderElectionOptions) {
    this.#opts = opts;
    // A lock session that ends (terminated, connection dropped) deposes at once, not at the next
    // check: the loop stops before its next change. The change it may be making is fenced anyway.
    opts.lock.onLost(() => {
      if (!this.#leader || this.#stopped) return;
      // #depose clears the flag before its first await: fence() refuses from this moment.
      this.#deposing = this.#depose('lost leadership (the lock session ended); stopping the evaluation loop').finally(() => {
        this.#deposing = undefined;
      });
    });
  }

  get isLeader(): boolean {
    return this.#leader;
  }

  /**
   * What this daemon's loop may do now: `false` when it does not lead (it must not execute);
   * otherwise the proof of leadership its state writes carry (undefined where the lock needs none).
   */
  fence(): number | undefined | false {
    if (!this.#leader) return false;
    return this.#opts.lock.fence();
  }

  get description(): string {
    return this.#opts.lock.description;
  }

  get #callTimeoutMs(): number {
    return this.#opts.callTimeoutMs ?? Math.max(10_000, 2 * this.#opts.checkMs);
  }

  /** Competes once now, then every checkMs. */
  async start(): Promise<void> {
    this.#stopped = false;
    // Tracked like a scheduled tick, so that a stop() during start waits for it.
    this.#running = this.#tick().finally(() => {
      this.#running = undefined;
    });
    await this.#running;
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#running = this.#tick().finally(() => {
        this.#running = undefined;
        this.#schedule();
      });
    }, this.#opts.checkMs);
  }

  async #tick(): Promise<void> {
    const { lock, logger } = this.#opts;
    // A loop being stopped after a lost session finishes stopping before this daemon competes again.
    if (this.#deposing !== undefined) await this.#deposing;
    if (this.#leader) {
      let held: boolean;
      let why = 'the lock is gone';
      try {
        held = await withTimeout(lock.stillHeld(), this.#callTimeoutMs, 'leader lock check');
      } catch (err) {
        // Not knowing is not holding: better no leader for a moment than two.
        held = false;
        why = `the lock cannot be checked: ${(err as Error).message}`;
      }
      if (!held) await this.#depose(`lost leadership (${why}); stopping the evaluation loop`);
      return;
    }
    if (this.#stopped) return;
    try {
      const acquired = await withTimeout(lock.tryAcquire(), this.#callTimeoutMs, 'leader lock');
      this.lastError = undefined;
      if (!acquired) return;
    } catch (err) {
      this.lastError = (err as Error).message;
      logger.warn({ err, lock: lock.description }, 'could not compete for leadership; trying again');
      return;
    }
    if (this.#stopped) return; // stop() releases it
    this.#leader = true;
    this.since = new Date().toISOString();
    logger.info({ lock: lock.description }, 'elected leader: running the evaluation loop');
    try {
      await this.#opts.onElected();
    } catch (err) {
      logger.error({ err }, 'could not start the evaluation loop; stepping down');
      await this.#depose('stepping down');
      await this.#opts.lock.release().catch(() => undefined);
    }
  }

  async #depose(message: string): Promise<void> {
    this.#leader = false;
    this.since = null;
    this.#opts.logger.warn({ lock: this.#opts.lock.description }, message);
    try {
      await this.#opts.onDeposed();
    } catch (err) {
      this.#opts.logger.error({ err }, 'error while stopping the evaluation loop');
    }
  }

  /** Stops competing; a leader stops its loop (onDeposed) and releases the lock. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
    await this.#deposing;
    try {
      if (this.#leader) {
        this.#leader = false;
        this.since = null;
        await this.#opts.onDeposed();
      }
    } finally {
      // Always, bounded: a lock that does not answer is freed by the process exit anyway.
      await withTimeout(this.#opts.lock.release(), this.#callTimeoutMs, 'leader lock release').catch((err: unknown) => {
        this.#opts.logger.warn({ err, lock: this.#opts.lock.description }, 'could not release the leader lock');
      });
    }
  }
}
