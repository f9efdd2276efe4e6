import { MAX_BACKTEST_SAMPLES } from './backtest-service.js';

/** A running backtest's hold on the limiter; release() once it has finished (idempotent). */
export interface BacktestSlot {
  release(): void;
}

export interface BacktestLimits {
  /** Backtests at once (max_concurrent_backtests). */
  maxConcurrent: number;
  /**
   * Points of history all running backtests may hold together (default: two of the largest one,
   * 64 MB packed), whatever maxConcurrent is: many small backtests run at once, few large ones.
   */
  sampleBudget?: number;
}

/** Why a backtest cannot start now, for the 429 answer. */
export interface Refusal {
  reason: string;
  retryAfterSeconds: number;
}

/**
 * Admission of API backtests: at most `maxConcurrent` at once and at most `sampleBudget` points of
 * history held by them together. A request that does not fit now is refused (429 with
 * Retry-After), not queued: a queue would hold its connection and its memory.
 */
export class BacktestLimiter {
  readonly maxConcurrent: number;
  readonly sampleBudget: number;
  #running = 0;
  #samples = 0;
  /** Mean duration of recent backtests (seconds), for Retry-After. */
  #meanSeconds = 5;

  constructor(limits: BacktestLimits) {
    this.maxConcurrent = limits.maxConcurrent;
    this.sampleBudget = limits.sampleBudget ?? 2 * MAX_BACKTEST_SAMPLES;
  }

  get running(): number {
    return this.#running;
  }

  /** A slot for a backtest holding `samples` points, or why there is none now. */
  acquire(samples: number): BacktestSlot | Refusal {
    const retryAfterSeconds = Math.min(60, Math.max(1, Math.ceil(this.#meanSeconds)));
    if (this.#running >= this.maxConcurrent) {
      return { reason: `${this.#running} backtest(s) are running, the most allowed at once (max_concurrent_backtests: ${this.maxConcurrent}); retry after ${retryAfterSeconds} s`, retryAfterSeconds };
    }
    if (this.#running > 0 && this.#samples + samples > this.sampleBudget) {
      return { reason: `the running backtests hold ${this.#samples.toLocaleString('en-US')} points of history; with this one's ${samples.toLocaleString('en-US')} they would pass the ${this.sampleBudget.toLocaleString('en-US')} the daemon allows at once; retry after ${retryAfterSeconds} s`, retryAfterSeconds };
    }
    this.#running++;
    this.#samples += samples;
    const started = performance.now();
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#running--;
        this.#samples -= samples;
        this.#meanSeconds = 0.7 * this.#meanSeconds + 0.3 * ((performance.now() - started) / 1000);
      },
    };
  }
}

/** Whether acquire() gave a slot. */
export function isSlot(x: BacktestSlot | Refusal): x is BacktestSlot {
  return typeof (x as BacktestSlot).release === 'function';
}
