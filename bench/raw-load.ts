// A minimal HTTP/1.1 load generator for the API benchmark: `connections` keep-alive sockets, each
// sending one GET and waiting for its whole answer before the next, for `seconds`. An answer is
// counted by its Content-Length and never decoded: autocannon appends every answer's bytes to a
// string (`body += chunk`), and for gzip bytes (not UTF-8) that decoding took 0.72 of a CPU
// against 0.39 for the same number of plain JSON answers, so on a two-core machine the load
// generator, not the daemon, set the figure for compressed answers.
//
// It understands what the daemon answers: a status line, headers with Content-Length (chunked
// answers are counted as errors, not parsed), and the body. Latency is from writing a request to
// the last byte of its answer, in ms.
import { connect, type Socket } from 'node:net';

export interface RawLoadOptions {
  /** http://host:port */
  url: string;
  connections: number;
  seconds: number;
  /** The path of the next request (called once per request). */
  path: () => string;
  headers?: Record<string, string>;
}

export interface RawLoadResult {
  requests: number;
  /** Requests a second over the run. */
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  /** Bytes received, headers included. */
  bytes: number;
  /** The first answer that was not 2xx: its status and the start of its body. */
  firstFailure?: string;
}

const HEAD_END = Buffer.from('\r\n\r\n');

export async function rawLoad(opts: RawLoadOptions): Promise<RawLoadResult> {
  const { hostname, port } = new URL(opts.url);
  const extra = Object.entries(opts.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  const latencies: number[] = [];
  let non2xx = 0;
  let errors = 0;
  let bytes = 0;
  let firstFailure: string | undefined;
  const started = performance.now();
  const deadline = started + opts.seconds * 1000;

  const run = (): Promise<void> =>
    new Promise((resolve) => {
      let socket: Socket;
      let pending: Buffer = Buffer.alloc(0);
      let sentAt = 0;
      /** Body bytes still to come for the answer being read; -1 while its head is not complete. */
      let remaining = -1;
      let status = 0;
      let failureBody: Buffer[] | undefined;
      /** Set when the run is over on this socket (its deadline passed). */
      let finished = false;

      const send = (): void => {
        if (performance.now() >= deadline) {
          finished = true;
          socket.end();
          resolve();
          return;
        }
        sentAt = performance.now();
        remaining = -1;
        socket.write(`GET ${opts.path()} HTTP/1.1\r\nhost: ${hostname}:${port}\r\n${extra}\r\n`);
      };
      const done = (): void => {
        latencies.push(performance.now() - sentAt);
        if (status < 200 || status > 299) {
          non2xx++;
          if (firstFailure === undefined) firstFailure = `${status} ${Buffer.concat(failureBody ?? []).toString('utf8').slice(0, 300)}`;
        }
        failureBody = undefined;
        send();
      };
      const open = (): void => {
        pending = Buffer.alloc(0);
        socket = connect({ host: hostname, port: Number(port) }, send);
        socket.setNoDelay(true);
        socket.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          let data = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
          pending = Buffer.alloc(0);
          while (data.length > 0) {
            if (remaining < 0) {
              const end = data.indexOf(HEAD_END);
              if (end < 0) {
                pending = data;
                return;
              }
              const head = data.subarray(0, end).toString('latin1');
              status = Number(head.slice(9, 12));
              const length = /\r\ncontent-length: *(\d+)/i.exec(head);
              if (length === null) {
                // Not an answer this generator reads (chunked): counted, and the socket replaced.
                errors++;
                socket.destroy();
                return;
              }
              remaining = Number(length[1]);
              if (status < 200 || status > 299) failureBody = [];
              data = data.subarray(end + HEAD_END.length);
            }
            const take = Math.min(remaining, data.length);
            failureBody?.push(data.subarray(0, take));
            remaining -= take;
            data = data.subarray(take);
            if (remaining === 0) {
              done();
              if (data.length > 0) {
                // The daemon answers one request at a time per socket: nothing may follow.
                errors++;
                data = Buffer.alloc(0);
              }
            }
          }
        });
        socket.on('error', () => {
          errors++;
        });
        // Closed before the run was over (an error, or the server closing it): a new socket while
        // there is time, the request in flight lost.
        socket.on('close', () => {
          if (finished) return;
          if (performance.now() < deadline) setTimeout(open, 10);
          else {
            finished = true;
            resolve();
          }
        });
      };
      open();
    });

  await Promise.all(Array.from({ length: opts.connections }, run));
  const seconds = (performance.now() - started) / 1000;
  const sorted = latencies.sort((a, b) => a - b);
  const at = (q: number): number => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);
  return {
    requests: sorted.length,
    rps: sorted.length / seconds,
    p50: at(0.5),
    p99: at(0.99),
    non2xx,
    errors,
    bytes,
    ...(firstFailure === undefined ? {} : { firstFailure }),
  };
}
