import t from 'tap';
import { Mutex, Semaphore, TimeoutError, withDeadline } from '../src/util/async.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('withDeadline: answers settle as they are, a hung call rejects with TimeoutError after its time', async (t) => {
  t.equal(await withDeadline(Promise.resolve(7), 50, 'quick'), 7);
  await t.rejects(withDeadline(Promise.reject(new Error('plugin broke')), 50, 'failing'), { message: 'plugin broke' });
  const started = Date.now();
  const err = await withDeadline(new Promise<never>(() => undefined), 60, 'x.getCurrentReplicas').catch((e: unknown) => e);
  t.ok(err instanceof TimeoutError, 'a TimeoutError');
  t.equal((err as Error).message, 'x.getCurrentReplicas did not answer within 60 ms');
  const took = Date.now() - started;
  t.ok(took >= 55 && took < 400, `fired after ${took} ms (deadline 60 ms, checked every 25 ms)`);
});

t.test('withDeadline: thousands at once, mixed deadlines; only the hung ones time out, each once', async (t) => {
  const results = await Promise.allSettled(
    Array.from({ length: 5_000 }, (_, i) => {
      if (i % 1000 === 0) return withDeadline(new Promise<never>(() => undefined), 30 + (i % 3) * 20, `hung-${i}`);
      return withDeadline(sleep(i % 7).then(() => i), 2_000, `ok-${i}`);
    }),
  );
  const rejected = results.flatMap((r, i) => (r.status === 'rejected' ? [i] : []));
  t.same(rejected, [0, 1000, 2000, 3000, 4000], 'exactly the hung calls time out');
  t.ok(results.every((r, i) => r.status === 'rejected' || r.value === i), 'every other call answers its own value');
  // After all settle the wheel is idle: a later deadline still works (the timer restarts).
  await t.rejects(withDeadline(new Promise<never>(() => undefined), 30, 'later'), TimeoutError);
});

t.test('Mutex runs one at a time in order; Semaphore bounds the calls in flight', async (t) => {
  const m = new Mutex();
  const order: number[] = [];
  let inside = 0;
  let most = 0;
  await Promise.all(
    [0, 1, 2, 3].map((i) =>
      m.run(async () => {
        inside++;
        most = Math.max(most, inside);
        await sleep(5 - i);
        order.push(i);
        inside--;
      }),
    ),
  );
  t.same(order, [0, 1, 2, 3]);
  t.equal(most, 1);
  const s = new Semaphore(3);
  inside = 0;
  most = 0;
  await Promise.all(
    Array.from({ length: 10 }, () =>
      s.run(async () => {
        inside++;
        most = Math.max(most, inside);
        await sleep(3);
        inside--;
      }),
    ),
  );
  t.equal(most, 3, 'at most 3 in flight');
});
