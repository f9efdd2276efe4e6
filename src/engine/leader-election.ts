import type { Logger } from 'pino';
import type { LeaderLock } from '../storage/storage.js';

export interface LeaderElectionOptions {
  lock: LeaderLock;
  logger: Logger;
  /** How often a follower competes and a leader checks it still holds the lock. */
  checkMs: number;
  onElected: () => void | Promise<void>;
  onDeposed: () => void | Promise<void>;
}

/**
 * Decides whether this daemon runs the evaluation loop. Followers try the lock every `checkMs`;
 * the leader checks it still holds it as often, and steps down the moment it does not (its
 * database connection dropped), so two daemons never run the loop together for longer than one
 * check. When a leader dies, a follower takes over within `checkMs` of the lock being freed.
 */
export class LeaderElection {
  readonly #opts: LeaderElectionOptions;
  #leader = false;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #running: Promise<void> | undefined;
  since: string | null = null;

  constructor(opts: LeaderElectionOptions) {
    this.#opts = opts;
  }

  get isLeader(): boolean {
    return this.#leader;
  }

  get description(): string {
    return this.#opts.lock.description;
  }

  /** Competes once now, then every checkMs. */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.#tick();
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#tick().finally(() => {
        this.#running = undefined;
        this.#schedule();
      });
    }, this.#opts.checkMs);
  }

  async #tick(): Promise<void> {
    const { lock, logger } = this.#opts;
    try {
      if (this.#leader) {
        if (!(await lock.stillHeld())) {
          this.#leader = false;
          this.since = null;
          logger.warn({ lock: lock.description }, 'lost leadership (the lock is gone); stopping the evaluation loop');
          await this.#opts.onDeposed();
        }
      } else if (await lock.tryAcquire()) {
        this.#leader = true;
        this.since = new Date().toISOString();
        logger.info({ lock: lock.description }, 'elected leader: running the evaluation loop');
        await this.#opts.onElected();
      }
    } catch (err) {
      logger.error({ err }, 'leader election check failed');
    }
  }

  /** Stops competing; a leader stops its loop (onDeposed) and releases the lock. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await this.#running;
    if (this.#leader) {
      this.#leader = false;
      await this.#opts.onDeposed();
    }
    await this.#opts.lock.release();
  }
}
