/**
 * The daemon's heap setting (src/util/heap.ts): after each full collection, V8's growing factor is
 * set to give 64 MB of room over the heap held after it (between 25 % and 300 %); the notice of
 * full collections comes from V8 itself (a real collection of a real heap).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { fullCollections, growingPercent, HEAP_GROWING_PERCENT, HEAP_HEADROOM_BYTES, tuneHeap } from '../src/util/heap.js';

const MB = 1024 * 1024;

t.test('the factor gives 64 MB of room, as a share of the heap held, between 25 % and 300 %', async (t) => {
  t.equal(HEAP_HEADROOM_BYTES, 64 * MB);
  t.equal(growingPercent(20 * MB), 300, '20 MB: four times at most');
  t.equal(growingPercent(0), 300, 'nothing alive');
  t.equal(growingPercent(64 * MB), 100);
  t.equal(growingPercent(50 * MB), 130, '50 MB (10,000 policies): 128 %, rounded up to a multiple of 5');
  t.equal(growingPercent(200 * MB), 35, '200 MB (100,000 policies): 32 %, rounded up');
  t.equal(growingPercent(256 * MB), HEAP_GROWING_PERCENT);
  t.equal(growingPercent(4096 * MB), HEAP_GROWING_PERCENT, 'never below 25 %');
});

t.test('each full collection sets the factor for what it left, only when it changes', async (t) => {
  // What each full collection leaves, in MB, one collection after another.
  const sizes = [20, 10, 64, 128, 200, 256, 1000, 50];
  let i = -1;
  let collect: (() => void) | undefined;
  let stopped = false;
  const flags: Array<{ at: number; flags: string }> = [];
  const stop = tuneHeap({
    heapHeld: () => (sizes[i] ?? 0) * MB,
    setFlags: (f) => flags.push({ at: sizes[i] ?? -1, flags: f }),
    onFullCollection: (listener) => {
      collect = listener;
      return () => {
        stopped = true;
      };
    },
  });
  t.same(flags, [], 'nothing set before a collection');
  for (i = 0; i < sizes.length; i += 1) collect?.();
  t.same(flags, [
    { at: 20, flags: '--heap-growing-percent=300' },
    { at: 64, flags: '--heap-growing-percent=100' },
    { at: 128, flags: '--heap-growing-percent=50' },
    { at: 200, flags: '--heap-growing-percent=35' },
    { at: 256, flags: `--heap-growing-percent=${HEAP_GROWING_PERCENT}` },
    { at: 50, flags: '--heap-growing-percent=130' },
  ]);
  stop();
  t.ok(stopped, 'the stop ends the listening');
});

t.test('a real full collection of a large heap bounds the factor, of a small one widens it', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const flags: string[] = [];
  let collections = 0;
  const stopCount = fullCollections(() => (collections += 1));
  const stop = tuneHeap({ setFlags: (f) => flags.push(f) });
  t.teardown(() => {
    stop();
    stopCount();
  });
  const settle = async (): Promise<void> => {
    // The notice is delivered a moment after the collection.
    for (let k = 0; k < 50 && collections === 0; k += 1) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 20));
  };

  // About 160 MB alive: 20,000 arrays of 1,000 numbers.
  let kept: number[][] | undefined = Array.from({ length: 20_000 }, (_, k) => new Array<number>(1000).fill(k));
  gc();
  await settle();
  t.ok(collections > 0, 'V8 told of the full collection');
  const percent = (f: string | undefined): number => Number(f?.replace('--heap-growing-percent=', ''));
  const large = percent(flags.at(-1));
  t.ok(large >= HEAP_GROWING_PERCENT && large <= 40, `${kept.length} arrays alive: ${large} %, 64 MB of 160 MB or more`);

  kept = undefined;
  collections = 0;
  gc();
  await settle();
  t.ok(collections > 0, 'and of the next one');
  // V8 gives the emptied pages back over time, so the heap held shrinks less than what is alive.
  t.ok(percent(flags.at(-1)) > large, `released: ${percent(flags.at(-1))} %, more room than ${large} %`);
});
