import { Worker } from 'node:worker_threads';

/** What a poller saw: each answered probe's start (ms, from the first) and latency, and each failure. */
export interface PollResult {
  latencies: number[];
  /** Start of each answered probe, in ms after the first probe started (same order as latencies). */
  starts: number[];
  failed: number;
  /** Each failure: how long it took and why (the error's code or name). */
  reasons: string[];
}

/**
 * Polls `url` from a worker thread (its own event loop, so the measuring side is never the one
 * that stalls) every `everyMs` until stop(); each probe gives up after `timeoutMs`.
 */
export function startLatencyPoller(url: string, opts: { everyMs: number; timeoutMs: number }): { stop(): Promise<PollResult> } {
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads');
    const latencies = [];
    const starts = [];
    const reasons = [];
    let failed = 0;
    let polling = true;
    let first;
    parentPort.on('message', () => { polling = false; });
    (async () => {
      while (polling) {
        const t0 = performance.now();
        first ??= t0;
        try {
          const res = await fetch(workerData.url, { signal: AbortSignal.timeout(workerData.timeoutMs) });
          await res.arrayBuffer();
          latencies.push(performance.now() - t0);
          starts.push(t0 - first);
        } catch (err) {
          failed++;
          reasons.push(Math.round(performance.now() - t0) + ' ms: ' + (err.cause?.code ?? err.name));
        }
        await new Promise((r) => setTimeout(r, workerData.everyMs));
      }
      parentPort.postMessage({ latencies, starts, failed, reasons });
    })();
    `,
    { eval: true, workerData: { url, everyMs: opts.everyMs, timeoutMs: opts.timeoutMs } },
  );
  return {
    stop: () =>
      new Promise((resolve, reject) => {
        worker.once('message', (m: PollResult) => {
          void worker.terminate();
          resolve(m);
        });
        worker.once('error', reject);
        worker.postMessage('stop');
      }),
  };
}
