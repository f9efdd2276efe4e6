/** Thrown by withTimeout when the wrapped work does not settle in time. */
export class TimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what} did not answer within ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

/**
 * Races a promise against a timer. The timer is cleared as soon as the work settles; it is not
 * unref'd, because a caller awaiting a hung plugin must still get its timeout.
 */
export function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what, ms)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** A FIFO lock: run() calls execute one at a time, in the order they were made. */
export class Mutex {
  #locked = false;
  readonly #waiting: Array<() => void> = [];

  /** Whether a run() holds the lock now (work done synchronously while it is free needs no lock). */
  get locked(): boolean {
    return this.#locked;
  }

  // An uncontended run costs one async call: the loop takes a lock per policy per cycle, and a
  // promise chain per lock was a visible share of a 10,000-policy cycle.
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    if (this.#locked) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#locked = true;
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next !== undefined) next();
      else this.#locked = false;
    }
  }
}

/** Runs fn over items with at most `limit` in flight; results keep the input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Lets at most `limit` run() calls be in flight; the rest wait in order. */
export class Semaphore {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(limit: number) {
    this.#free = Math.max(1, limit);
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next !== undefined) next();
      else this.#free++;
    }
  }
}

interface Deadline {
  at: number;
  fire: (() => void) | null;
}

/**
 * Many concurrent timeouts on one timer. The loop wraps every plugin call in a timeout (tens of
 * thousands per cycle at scale); one setTimeout each costs more than the calls themselves. Pending
 * deadlines are checked every `resolutionMs`, so a timeout fires up to that much late. Adding is
 * a push and cancelling clears the entry; each check drops the cleared ones.
 */
class DeadlineWheel {
  #pending: Deadline[] = [];
  #live = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(private readonly resolutionMs: number) {}

  add(ms: number, fire: () => void): Deadline {
    const d: Deadline = { at: Date.now() + ms, fire };
    this.#pending.push(d);
    this.#live++;
    this.#timer ??= setInterval(() => this.#tick(), this.resolutionMs);
    return d;
  }

  cancel(d: Deadline): void {
    if (d.fire === null) return;
    d.fire = null;
    this.#live--;
    if (this.#live === 0) this.#idle();
  }

  #tick(): void {
    const now = Date.now();
    const due: Array<() => void> = [];
    const kept: Deadline[] = [];
    for (const d of this.#pending) {
      if (d.fire === null) continue;
      if (d.at <= now) {
        due.push(d.fire);
        d.fire = null;
        this.#live--;
      } else kept.push(d);
    }
    this.#pending = kept;
    for (const fire of due) fire();
    if (this.#live === 0) this.#idle();
  }

  #idle(): void {
    this.#pending = [];
    if (this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}

const wheel = new DeadlineWheel(25);

/** Like withTimeout, on the shared deadline wheel (up to 25 ms late); for hot paths. */
export function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const deadline = wheel.add(ms, () => reject(new TimeoutError(what, ms)));
    work.then(
      (v) => {
        wheel.cancel(deadline);
        resolve(v);
      },
      (e: unknown) => {
        wheel.cancel(deadline);
        reject(e);
      },
    );
  });
}
