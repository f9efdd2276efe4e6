import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { ERROR_CATALOGUE, ScalerError, problemType, type ErrorCode, type FieldError } from '../errors.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** Writes an RFC 9457 problem answer. */
export function sendProblem(ctx: Context, code: ErrorCode, detail: string, errors?: FieldError[]): void {
  const spec = ERROR_CATALOGUE[code];
  ctx.status = spec.status;
  ctx.type = PROBLEM_CONTENT_TYPE;
  ctx.body = {
    type: problemType(code),
    title: spec.title,
    status: spec.status,
    detail,
    code,
    instance: ctx.path,
    ...(errors !== undefined ? { errors } : {}),
  };
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

/**
 * Turns every error into application/problem+json. Catalogue errors keep their code; known client
 * errors from libraries map to theirs; anything else is logged and becomes a bare 500 with no
 * stack trace or message from inside the daemon.
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
    } catch (err) {
      if (err instanceof ScalerError) {
        sendProblem(ctx, err.code, err.message, err.errors);
        if (err.status >= 500) logger.warn({ code: err.code, path: ctx.path }, err.message);
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
