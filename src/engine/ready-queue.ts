/** How long the loop evaluates ready policies before it lets responses in flight be read. */
export const EVALUATION_SLICE_MS = 1;

/**
 * The policies of a cycle whose observations are all in, evaluated in slices of about a
 * millisecond with a turn of the event loop between them, so responses to the fetches still in
 * flight are read promptly instead of waiting behind thousands of evaluations (whose promise
 * chains would otherwise run back to back). Each index is queued at most once a cycle, so the
 * queue is a typed array of that size.
 */
export class ReadyQueue {
  readonly #queue: Int32Array;
  #queued = 0;
  #next = 0;
  #draining = false;
  #drained: Promise<void> = Promise.resolve();

  /** `start(index)` begins one policy's evaluation and must not wait for it. */
  constructor(
    size: number,
    private readonly start: (index: number) => void,
    private readonly sliceMs = EVALUATION_SLICE_MS,
  ) {
    this.#queue = new Int32Array(size);
  }

  /** Queues a policy; `kick()` starts the evaluations. */
  push(index: number): void {
    this.#queue[this.#queued++] = index;
  }

  /** How many were queued. */
  get queued(): number {
    return this.#queued;
  }

  /**
   * Starts evaluating what is queued, once per batch of newly ready policies rather than per
   * policy: a drain that empties the queue returns, and one per policy cost an async call each.
   */
  kick(): void {
    if (!this.#draining && this.#next < this.#queued) {
      this.#draining = true;
      this.#drained = this.#drain();
    }
  }

  /** Resolves once every queued policy's evaluation has been started. */
  drained(): Promise<void> {
    return this.#drained;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#next < this.#queued) {
        const until = performance.now() + this.sliceMs;
        while (this.#next < this.#queued) {
          this.start(this.#queue[this.#next++] as number);
          if ((this.#next & 15) === 0 && performance.now() > until) break;
        }
        if (this.#next < this.#queued) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      this.#draining = false;
    }
  }
}
