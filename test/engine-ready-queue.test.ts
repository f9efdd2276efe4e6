/**
 * The evaluation slices of a cycle (src/engine/ready-queue.ts): every policy queued is started
 * exactly once, in the order it became ready, by one drain at a time; a drain that runs past its
 * slice lets the event loop read other work (responses in flight) before it goes on. Slices are
 * made deterministic here with a slice that never ends (Infinity) or is always over (-1).
 */
import t from 'tap';
import { ReadyQueue } from '../src/engine/ready-queue.js';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

t.test('every queued index is started once, in order; drained() waits for the last start', async (t) => {
  const started: number[] = [];
  const q = new ReadyQueue(100, (i) => started.push(i), -1);
  t.equal(q.queued, 0);
  await q.drained();
  const order = Array.from({ length: 100 }, (_, i) => (i * 37) % 100);
  for (const i of order) q.push(i);
  t.equal(q.queued, 100);
  t.same(started, [], 'nothing starts before kick()');
  q.kick();
  await q.drained();
  t.same(started, order, 'each once, in the order queued');
});

t.test('a slice not yet over starts everything queued before kick() returns', async (t) => {
  const started: number[] = [];
  const q = new ReadyQueue(1000, (i) => started.push(i), Infinity);
  for (let i = 0; i < 1000; i++) q.push(i);
  q.kick();
  t.equal(started.length, 1000, 'synchronously, with no turn of the event loop');
  await q.drained();
});

t.test('a slice that is over yields every 16 starts: other work runs in between', async (t) => {
  const started: number[] = [];
  const q = new ReadyQueue(100, (i) => started.push(i), -1);
  for (let i = 0; i < 100; i++) q.push(i);
  const seen: number[] = [];
  // Work that came in before the drain (a response read on the next turn), and again after it.
  void turn().then(() => seen.push(started.length));
  q.kick();
  t.equal(started.length, 16, 'one slice started at once');
  void turn()
    .then(turn)
    .then(() => seen.push(started.length));
  await q.drained();
  t.equal(started.length, 100);
  t.same(seen, [16, 48], 'the other work ran between slices, not after the whole queue');
});

t.test('indices queued while a drain runs are started by it; kick() never starts a second drain', async (t) => {
  const started: number[] = [];
  let concurrent = 0;
  let most = 0;
  const q = new ReadyQueue(64, (i) => {
    concurrent++;
    most = Math.max(most, concurrent);
    started.push(i);
    // Starting one policy can make another ready (as an observation coming in does).
    if (i < 8) q.push(i + 8);
    q.kick();
    concurrent--;
  }, -1);
  for (let i = 0; i < 8; i++) q.push(i);
  q.kick();
  // More come in while the drain waits for its next turn.
  for (let i = 16; i < 40; i++) q.push(i);
  q.kick();
  q.kick();
  await q.drained();
  t.same(started, Array.from({ length: 40 }, (_, i) => i), 'all 40 started, in the order they became ready');
  t.equal(new Set(started).size, 40, 'each once');
  t.equal(most, 1, 'never two starts at once');
  t.equal(q.queued, 40);
});

t.test('after a drain emptied the queue, new indices need a kick() and get a new drain', async (t) => {
  const started: number[] = [];
  const q = new ReadyQueue(8, (i) => started.push(i), Infinity);
  q.push(3);
  q.kick();
  await q.drained();
  q.push(5);
  await turn();
  t.same(started, [3], 'queued but not kicked: not started');
  q.kick();
  await q.drained();
  t.same(started, [3, 5]);
  q.kick();
  await q.drained();
  t.same(started, [3, 5], 'a kick with nothing new starts nothing');
});
