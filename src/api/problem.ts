import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { ERROR_CATALOGUE, ScalerError, problemType, type ErrorCode, type FieldError } from '../errors.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/**
 * Problems of the HTTP layer itself: a request not received in time, too many of a kind at once,
 * a request Node's parser refuses. Same shape as ERROR_CATALOGUE (src/errors.ts, where they belong
 * with the rest; kept here until that file lists them).
 */
export const HTTP_ERRORS = {
  REQUEST_TIMEOUT: { status: 408, title: 'The request was not received in time' },
  TOO_MANY_REQUESTS: { status: 429, title: 'Too many requests of this kind are running' },
  HEADERS_TOO_LARGE: { status: 431, title: 'The request headers are too large' },
} as const;

export type ProblemCode = ErrorCode | keyof typeof HTTP_ERRORS;

const SPECS: Record<ProblemCode, { status: number; title: string }> = { ...ERROR_CATALOGUE, ...HTTP_ERRORS };

/** The status and title of a problem code. */
export function problemSpec(code: ProblemCode): { status: number; title: string } {
  return SPECS[code];
}

/** An HTTP-layer problem (HTTP_ERRORS) thrown by a route or middleware; headers go on the answer. */
export class HttpProblem extends Error {
  readonly status: number;
  constructor(
    readonly code: keyof typeof HTTP_ERRORS,
    detail: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = 'HttpProblem';
    this.status = HTTP_ERRORS[code].status;
  }
}

/** The RFC 9457 body of a problem. */
export function problemBody(code: ProblemCode, detail: string, instance: string, errors?: FieldError[]): Record<string, unknown> {
  const spec = SPECS[code];
  return {
    type: problemType(code as ErrorCode),
    title: spec.title,
    status: spec.status,
    detail,
    code,
    instance,
    ...(errors !== undefined ? { errors } : {}),
  };
}

/** Writes an RFC 9457 problem answer. */
export function sendProblem(ctx: Context, code: ProblemCode, detail: string, errors?: FieldError[]): void {
  ctx.status = SPECS[code].status;
  ctx.type = PROBLEM_CONTENT_TYPE;
  ctx.body = problemBody(code, detail, ctx.path, errors);
}

// Client errors raised by libraries (raw-body, koa) carry a status and an `expose` flag.
function libraryCode(err: { status?: unknown; type?: unknown }): ErrorCode | undefined {
  switch (err.status) {
    case 400:
      return 'BAD_REQUEST';
    case 413:
      return 'PAYLOAD_TOO_LARGE';
    case 415:
      return 'UNSUPPORTED_MEDIA_TYPE';
    default:
      return undefined;
  }
}

/** A body Koa would serialise itself (not a string, buffer or stream). */
function isJsonBody(body: unknown): body is object {
  return typeof body === 'object' && body !== null && !Buffer.isBuffer(body) && typeof (body as { pipe?: unknown }).pipe !== 'function';
}

/**
 * Turns every error into application/problem+json. Catalogue errors keep their code; known client
 * errors from libraries map to theirs; anything else is logged and becomes a bare 500 with no
 * stack trace or message from inside the daemon. JSON bodies are serialised here, not by Koa after
 * the middleware, so that a body too large to serialise is a logged problem too, not Koa's
 * text/plain 500.
 */
export function problemMiddleware(logger: Logger) {
  return async function problems(ctx: Context, next: Next): Promise<void> {
    try {
      await next();
      if (ctx.body === undefined || ctx.body === null) {
        // The router answers a known path with a wrong method by a bare 405 (or 501 for a method it
        // does not know at all) and an Allow header, which stays on the problem answer.
        const allow = ctx.response.get('Allow');
        if (ctx.status === 404 || (ctx.status === 501 && allow === '')) {
          sendProblem(ctx, 'ROUTE_NOT_FOUND', `no route for ${ctx.method} ${ctx.path}`);
        } else if (ctx.status === 405 || ctx.status === 501) {
          sendProblem(ctx, 'METHOD_NOT_ALLOWED', `${ctx.method} is not allowed on ${ctx.path}; allowed: ${allow}`);
        }
      }
      if (ctx.respond !== false && isJsonBody(ctx.body)) ctx.body = JSON.stringify(ctx.body);
    } catch (err) {
      if (ctx.headerSent) {
        // The answer is on its way (a streamed body): it cannot become a problem any more.
        logger.error({ err, req_id: ctx.state['requestId'], method: ctx.method, path: ctx.path }, 'error after the answer started; the connection is closed');
        ctx.res.destroy();
        return;
      }
      if (err instanceof ScalerError) {
        sendProblem(ctx, err.code, err.message, err.errors);
        if (err.status >= 500) logger.warn({ code: err.code, path: ctx.path }, err.message);
        return;
      }
      if (err instanceof HttpProblem) {
        sendProblem(ctx, err.code, err.message);
        for (const [k, v] of Object.entries(err.headers)) ctx.set(k, v);
        return;
      }
      const e = err as { status?: unknown; expose?: unknown; message?: unknown; type?: unknown };
      // Any other client error a library exposes is still the client's: a 400, never a 500.
      const clientError = typeof e.status === 'number' && e.status >= 400 && e.status < 500;
      const code = libraryCode(e) ?? (clientError ? 'BAD_REQUEST' : undefined);
      if (code !== undefined && e.expose === true) {
        sendProblem(ctx, code, typeof e.message === 'string' ? e.message : ERROR_CATALOGUE[code].title);
        return;
      }
      logger.error({ err, req_id: ctx.state['requestId'], method: ctx.method, path: ctx.path }, 'unhandled error while serving a request');
      sendProblem(ctx, 'INTERNAL', 'the server failed to answer this request; the error is in its log');
    }
  };
}
