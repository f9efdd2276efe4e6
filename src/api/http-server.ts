import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type Koa from 'koa';
import type { Logger } from 'pino';
import { BODY_TIMEOUT_MS } from './body.js';
import { PROBLEM_CONTENT_TYPE, problemBody, type ProblemCode } from './problem.js';

/** How long a client may take to send a request's headers; then 408 and the connection closes. */
export const HEADERS_TIMEOUT_MS = 30_000;

export interface ListenOptions {
  port: number;
  host: string;
  logger: Logger;
  /** Bound of receiving the headers (default HEADERS_TIMEOUT_MS). */
  headersTimeoutMs?: number;
  /** Bound of receiving a body a route reads (default BODY_TIMEOUT_MS; the app enforces it, see readJson). */
  bodyTimeoutMs?: number;
}

/** The problem answer to a request Node's parser refused, written on the socket itself. */
function rawProblem(socket: Socket, code: ProblemCode, status: number, detail: string): void {
  const body = JSON.stringify(problemBody(code, detail, ''));
  socket.end(
    `HTTP/1.1 ${status} ${status === 408 ? 'Request Timeout' : status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
      `Content-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * Listens with bounded request reception: headers within `headersTimeoutMs`, a body a route reads
 * within `bodyTimeoutMs` (readJson answers 408 itself), and the whole request within both plus 5 s
 * whatever a route does (Node's requestTimeout, checked every second). A client that sends too
 * slowly gets a 408 problem and its connection is closed, so it cannot hold a socket for minutes.
 */
export function listen(app: Koa, opts: ListenOptions): Promise<Server> {
  const headersTimeout = opts.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
  const bodyTimeout = opts.bodyTimeoutMs ?? BODY_TIMEOUT_MS;
  const server = createServer(
    {
      headersTimeout,
      requestTimeout: headersTimeout + bodyTimeout + 5_000,
      // Node checks these bounds on a timer (30 s by default): check every second, so a bound is kept to the second.
      connectionsCheckingInterval: 1_000,
    },
    app.callback(),
  );
  // Node's own answers to these are plain text; here they are problems too.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const pending = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (!socket.writable || pending?.headersSent === true || err.code === 'ECONNRESET' || err.code === 'HPE_INVALID_EOF_STATE') {
      socket.destroy();
      return;
    }
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      opts.logger.info({ remote: socket.remoteAddress }, 'request refused: not received in time (408)');
      rawProblem(socket, 'REQUEST_TIMEOUT', 408, `the request was not received in time (headers within ${headersTimeout / 1000} s, a body within ${bodyTimeout / 1000} s)`);
    } else if (err.code === 'HPE_HEADER_OVERFLOW') {
      rawProblem(socket, 'HEADERS_TOO_LARGE', 431, 'the request headers are too large');
    } else {
      rawProblem(socket, 'BAD_REQUEST', 400, `the request is not valid HTTP/1.1 (${err.code ?? 'parse error'})`);
    }
  });
  return new Promise<Server>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
