/**
 * A fault-injecting HTTP proxy to put in front of a real Prometheus: the test switches its mode
 * and every request from then on gets that fault.
 *
 * - `pass`: forwards to the upstream and streams the answer back; when the upstream refuses the
 *   connection, the client's connection is reset (as a TCP proxy would), so a stopped Prometheus
 *   looks unreachable through it too.
 * - `hang`: reads the request and never answers (held until the client gives up or close()).
 * - `error500`: HTTP 500 with Prometheus's error body `{"status":"error","errorType":...,"error":...}`.
 * - `error503-html`: HTTP 503 with an HTML body, as a load balancer in front of Prometheus answers.
 * - `error422`: HTTP 422 with Prometheus's error body (errorType "execution"), a query the server refused.
 * - `malformed`: HTTP 200, Content-Type JSON, a body that is not JSON.
 * - `wrong-shape`: HTTP 200, valid JSON with status success, but a result type no query asked for.
 * - `bad-value`: HTTP 200, a well-formed vector whose sample value is not a number.
 * - `truncated`: the real answer, cut in half, framed correctly (Content-Length of the half).
 * - `cut`: the real answer's headers (full Content-Length) and half its body, then the connection drops.
 * - `reset`: the connection is destroyed without an answer.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { listenLocal } from './prometheus.js';

export type FaultMode = 'pass' | 'hang' | 'error500' | 'error503-html' | 'error422' | 'malformed' | 'wrong-shape' | 'bad-value' | 'truncated' | 'cut' | 'reset';

export interface FaultProxy {
  readonly url: string;
  mode: FaultMode;
  /** Requests served, by the mode they were served in. */
  readonly served: Readonly<Record<string, number>>;
  /** Requests currently held open by `hang`. */
  readonly hanging: number;
  close(): Promise<void>;
}

const PROM_ERROR = (errorType: string, error: string): string => JSON.stringify({ status: 'error', errorType, error });

export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream);
  const served: Record<string, number> = {};
  const held = new Set<ServerResponse>();
  const sockets = new Set<Socket>();
  let mode: FaultMode = 'pass';

  /** Fetches the upstream answer in full (for the modes that damage a real answer). */
  const fetchUpstream = (req: IncomingMessage): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> =>
    new Promise((resolve, reject) => {
      const up = request(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: { ...req.headers, host: target.host } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 502, headers: { 'content-type': String(res.headers['content-type'] ?? 'application/json') }, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      up.on('error', reject);
      req.pipe(up);
    });

  const server = createServer((req, res) => {
    const m = mode;
    served[m] = (served[m] ?? 0) + 1;
    const json = (status: number, body: string): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    };
    switch (m) {
      case 'pass': {
        const up = request(
          { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: { ...req.headers, host: target.host } },
          (upRes) => {
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            upRes.pipe(res);
          },
        );
        up.on('error', () => req.socket.destroy());
        req.pipe(up);
        return;
      }
      case 'hang':
        held.add(res);
        res.on('close', () => held.delete(res));
        req.resume();
        return;
      case 'error500':
        json(500, PROM_ERROR('internal', 'fault injected: the query engine failed'));
        return;
      case 'error422':
        json(422, PROM_ERROR('execution', 'fault injected: query processing would load too many samples into memory'));
        return;
      case 'error503-html': {
        const body = '<html><body><h1>503 Service Unavailable</h1>No server is available to handle this request.</body></html>';
        res.writeHead(503, { 'content-type': 'text/html', 'content-length': Buffer.byteLength(body) }).end(body);
        return;
      }
      case 'malformed':
        json(200, 'this is not JSON {"status": "success"');
        return;
      case 'wrong-shape':
        json(200, JSON.stringify({ status: 'success', data: { resultType: 'string', result: [Date.now() / 1000, 'surprise'] } }));
        return;
      case 'bad-value':
        json(200, JSON.stringify({ status: 'success', data: { resultType: 'vector', result: [{ metric: {}, value: [Date.now() / 1000, 'fifty'] }] } }));
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'truncated':
      case 'cut':
        fetchUpstream(req).then(
          ({ status, headers, body }) => {
            const half = body.subarray(0, Math.floor(body.length / 2));
            if (m === 'truncated') {
              res.writeHead(status, { ...headers, 'content-length': half.length }).end(half);
            } else {
              res.writeHead(status, { ...headers, 'content-length': body.length });
              res.write(half, () => setTimeout(() => req.socket.destroy(), 10));
            }
          },
          () => req.socket.destroy(),
        );
        return;
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const port = await listenLocal(server);
  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    get mode() {
      return mode;
    },
    set mode(m: FaultMode) {
      mode = m;
    },
    served,
    get hanging() {
      return held.size;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const r of held) r.destroy();
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      return closing;
    },
  };
}
