/**
 * The daemon's heap setting (src/util/heap.ts): V8's growing factor is bounded only while the
 * heap stays large over the whole sampling window, and given back to V8 once it is small again.
 */
import t from 'tap';
import { HEAP_GROWING_PERCENT, LARGE_HEAP_BYTES, tuneHeap } from '../src/util/heap.js';

const MB = 1024 * 1024;

t.test('the factor follows the least heap of the last five samples, with a gap between on and off', async (t) => {
  const sizes = [
    // A small sample among the large ones keeps the window's least small.
    200, 40, 200, 200, 200, 200,
    // Five large samples in a row (the 3rd to the 7th): bounded.
    180, 150, 140, 130,
    // Down to 100 MB: still bounded (above the 96 MB floor).
    100, 100, 100, 100, 100,
    // The first sample below 96 MB: V8's own factor again.
    60, 60, 60, 60, 60,
  ];
  const flags: Array<{ at: number; flags: string }> = [];
  let i = 0;
  const stop = tuneHeap({ heapUsed: () => (sizes[i++] ?? 60) * MB, setFlags: (f) => flags.push({ at: i, flags: f }), everyMs: 1 });
  await new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (i >= sizes.length) {
        clearInterval(check);
        resolve();
      }
    }, 1);
  });
  stop();
  t.ok(LARGE_HEAP_BYTES / MB <= 130, 'the threshold is below the large samples');
  t.same(flags, [
    { at: 7, flags: `--heap-growing-percent=${HEAP_GROWING_PERCENT}` },
    { at: 16, flags: '--heap-growing-percent=0' },
  ]);
});

t.test('the stop ends the sampling', async (t) => {
  let calls = 0;
  const stop = tuneHeap({ heapUsed: () => (calls++, 10 * MB), setFlags: () => undefined, everyMs: 1 });
  await new Promise((r) => setTimeout(r, 20));
  stop();
  const after = calls;
  await new Promise((r) => setTimeout(r, 20));
  t.ok(after > 0, 'sampled while running');
  t.equal(calls, after, 'not after the stop');
});
