import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 may let the heap grow past what a full collection left alive, in percent, once the
 * daemon holds a large heap. V8's own factor (up to four times the live size) kept a daemon holding
 * 100,000 policies (200 MB alive) at 650 MB of memory; 25 % keeps it near 400 MB, for major
 * collections a little more often. A small heap keeps V8's own factor: at 10,000 policies (50 MB
 * alive) 25 % made major collections a quarter of a busy cycle's time.
 */
export const HEAP_GROWING_PERCENT = 25;
/** Live heap (the least seen over the last samples) from which the factor above applies. */
export const LARGE_HEAP_BYTES = 128 * 1024 * 1024;
/** ... and below which V8's own factor applies again. */
const SMALL_HEAP_BYTES = 96 * 1024 * 1024;
const SAMPLE_EVERY_MS = 2_000;
const SAMPLES = 5;

/**
 * Applies the daemon's heap settings to this process (the daemon, and benchmarks standing in for
 * it): the heap's size is sampled every 2 seconds, and the least of the last five samples (close to
 * what is alive, as a collection runs between them) decides V8's growing factor. Returns a stop.
 * The options stand in for the process in tests.
 */
export function tuneHeap(
  opts: { heapUsed?: () => number; setFlags?: (flags: string) => void; everyMs?: number } = {},
): () => void {
  const heapUsed = opts.heapUsed ?? (() => process.memoryUsage().heapUsed);
  const setFlags = opts.setFlags ?? setFlagsFromString;
  const samples: number[] = [];
  let large = false;
  const sample = (): void => {
    samples.push(heapUsed());
    if (samples.length > SAMPLES) samples.shift();
    const live = Math.min(...samples);
    if (!large && samples.length === SAMPLES && live >= LARGE_HEAP_BYTES) {
      large = true;
      setFlags(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
    } else if (large && live < SMALL_HEAP_BYTES) {
      large = false;
      // 0: V8 chooses the factor itself again.
      setFlags('--heap-growing-percent=0');
    }
  };
  const timer = setInterval(sample, opts.everyMs ?? SAMPLE_EVERY_MS);
  timer.unref();
  return () => clearInterval(timer);
}
