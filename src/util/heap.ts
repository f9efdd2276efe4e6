import { constants, PerformanceObserver } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';

/**
 * How far V8 may let the heap grow past what a full collection left alive before collecting again:
 * HEAP_HEADROOM_BYTES, as a share of the heap V8 holds after the collection, but never less than
 * HEAP_GROWING_PERCENT nor more than V8's own largest factor (four times). V8's own factor kept a
 * daemon holding 100,000 policies (200 MB alive) at 650 MB of memory; 64 MB of room keeps it near
 * 400 MB. A small heap keeps room to allocate between collections: at 10,000 policies (50 MB
 * alive) a bound of 25 % made major collections a quarter of a busy cycle's time.
 *
 * A share of the heap held, not of what is alive: the factor set after one collection applies at
 * the next, and while the heap grows fast (policies loading) what is alive doubles between two
 * collections; a share of what was alive let the first cycle at 100,000 policies reach 650 MB.
 */
export const HEAP_HEADROOM_BYTES = 64 * 1024 * 1024;
export const HEAP_GROWING_PERCENT = 25;
const MAX_GROWING_PERCENT = 300;

/** The growing factor, in percent, for a heap of `held` bytes after a full collection (a multiple of 5). */
export function growingPercent(held: number): number {
  const percent = (HEAP_HEADROOM_BYTES / Math.max(held, 1)) * 100;
  return Math.min(MAX_GROWING_PERCENT, Math.max(HEAP_GROWING_PERCENT, Math.ceil(percent / 5) * 5));
}

/**
 * Applies the daemon's heap settings to this process (the daemon, and benchmarks standing in for
 * it): after each full (mark-compact) collection, the heap V8 holds then sets V8's growing factor
 * for the collections after it (growingPercent).
 *
 * Set at every full collection, small heaps included: a switch from V8's own factor to a bound once
 * a collection left 128 MB came one collection late (V8 had already allowed up to four times that),
 * and a daemon loading 100,000 policies went through its first cycle (15–20 s) at 530–660 MB,
 * memory that back-to-back cycles then kept (450–540 MB). Sampled every 2 s, the switch came later
 * still.
 *
 * The options stand in for the process in tests: `heapHeld` for V8's figure, `setFlags` for V8's
 * flags, `onFullCollection` for V8's notice of each full collection.
 */
export function tuneHeap(
  opts: {
    heapHeld?: () => number;
    setFlags?: (flags: string) => void;
    onFullCollection?: (listener: () => void) => () => void;
  } = {},
): () => void {
  const heapHeld = opts.heapHeld ?? (() => getHeapStatistics().total_heap_size);
  const setFlags = opts.setFlags ?? setFlagsFromString;
  const onFullCollection = opts.onFullCollection ?? fullCollections;
  let set: number | undefined;
  return onFullCollection(() => {
    const percent = growingPercent(heapHeld());
    if (percent !== set) {
      set = percent;
      setFlags(`--heap-growing-percent=${percent}`);
    }
  });
}

/**
 * Calls `listener` after each full collection of this process's heap (V8's performance entries,
 * delivered a moment after the collection, before much is allocated again). Returns a stop. The
 * observer does not keep the process alive.
 */
export function fullCollections(listener: () => void): () => void {
  const observer = new PerformanceObserver((list) => {
    const full = list.getEntries().some((e) => ((e as { detail?: { kind?: number } | null }).detail)?.kind === constants.NODE_PERFORMANCE_GC_MAJOR);
    if (full) listener();
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => observer.disconnect();
}
