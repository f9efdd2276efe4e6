import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets the heap grow past what a full collection left alive before it collects again,
 * in percent. V8's own factor (up to four times the live size) kept a daemon holding 100,000
 * policies (200 MB alive) at 650 MB of memory; 25 % keeps it near 400 MB, for major collections a
 * little more often (each a few tens of milliseconds at that size, between or within cycles).
 */
export const HEAP_GROWING_PERCENT = 25;

/** Applies the daemon's heap settings to this process (the daemon, and benchmarks standing in for it). */
export function tuneHeap(): void {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
