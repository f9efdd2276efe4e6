import type { Context } from 'koa';
import getRawBody from 'raw-body';
import { ScalerError } from '../errors.js';
import { HttpProblem } from './problem.js';

export const MAX_BODY_BYTES = 1024 * 1024;
/**
 * How long a request body may take to arrive once a route reads it, unless the app sets its own
 * (request_body_timeout); then 408 and the connection is closed. Headers have their own bound
 * (the server's headersTimeout).
 */
export const BODY_TIMEOUT_MS = 30_000;
const UTF8_CHARSETS = new Set(['utf-8', 'utf8', 'us-ascii']);

function isJsonType(ctx: Context, types: readonly string[] | undefined): boolean {
  const type = ctx.request.type; // media type without parameters, lower-cased
  if (types !== undefined) return types.includes(type);
  return type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type);
}

/** Reads the raw body as UTF-8 text, or throws 408 when it does not arrive within `timeoutMs`. */
async function readText(ctx: Context, length: number | undefined, timeoutMs: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    // The rest of the body is never read: the connection cannot carry another request.
    timer = setTimeout(() => reject(new HttpProblem('REQUEST_TIMEOUT', `the request body did not arrive within ${timeoutMs / 1000} s`, { Connection: 'close' })), timeoutMs);
  });
  try {
    return await Promise.race([getRawBody(ctx.req, { limit: MAX_BODY_BYTES, length, encoding: 'utf8' }), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Media types a policy may be sent as YAML text (POST /validate). */
export const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml'] as const;

/**
 * Reads a JSON request body: 415 unless the content type is JSON, 413 over 1 MiB, 408 when it
 * does not arrive in time, 400 when it does not parse. With `optional`, an absent body reads as
 * undefined (POST .../enable, .../evaluate). With `types`, only those media types are JSON
 * (PATCH takes a merge patch, and must not take a JSON Patch, which is also +json, for one).
 */
export async function readJson(ctx: Context, opts: { optional?: boolean; types?: readonly string[] } = {}): Promise<unknown> {
  const body = await readBody(ctx, opts);
  if (body === undefined) return undefined;
  try {
    return JSON.parse(body.text) as unknown;
  } catch (err) {
    throw new ScalerError('MALFORMED_JSON', `the body is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Reads a body that is JSON (parsed, as readJson does) or YAML text (one of YAML_TYPES, left as
 * text for the caller to parse where it can say on which line a problem is).
 */
export async function readJsonOrYaml(ctx: Context): Promise<{ json: unknown } | { yaml: string }> {
  const yaml = (YAML_TYPES as readonly string[]).includes(ctx.request.type);
  const body = (await readBody(ctx, { what: yaml ? 'YAML' : 'JSON', types: yaml ? YAML_TYPES : undefined, alsoAccepted: YAML_TYPES })) as { text: string };
  if (yaml) return { yaml: body.text };
  try {
    return { json: JSON.parse(body.text) as unknown };
  } catch (err) {
    throw new ScalerError('MALFORMED_JSON', `the body is not valid JSON: ${(err as Error).message}`);
  }
}

async function readBody(
  ctx: Context,
  opts: { optional?: boolean; types?: readonly string[]; what?: string; alsoAccepted?: readonly string[] },
): Promise<{ text: string } | undefined> {
  const what = opts.what ?? 'JSON';
  const length = ctx.request.length;
  const hasBody = ctx.request.headers['transfer-encoding'] !== undefined || (length !== undefined && length > 0);
  if (!hasBody) {
    if (opts.optional === true) return undefined;
    // "" is the JSON pointer of the whole document, as for a body that is not an object.
    throw new ScalerError('BAD_REQUEST', `the request needs a ${what} body`, [{ field: '', message: 'is required' }]);
  }
  if (!isJsonType(ctx, opts.types)) {
    throw new ScalerError(
      'UNSUPPORTED_MEDIA_TYPE',
      `the body must be sent as Content-Type: ${[...(opts.types ?? ['application/json']), ...(opts.alsoAccepted ?? [])].join(' or ')}, not ${ctx.request.headers['content-type'] ?? 'no content type'}`,
    );
  }
  // JSON is UTF-8 (RFC 8259); another charset or a compressed body would otherwise be read as
  // UTF-8 text and fail as "malformed JSON", or worse, parse as something the client did not send.
  const charset = ctx.request.charset.toLowerCase();
  if (charset !== '' && !UTF8_CHARSETS.has(charset)) {
    throw new ScalerError('UNSUPPORTED_MEDIA_TYPE', `the body must be UTF-8 ${what}, not charset=${charset.slice(0, 40)}`);
  }
  const encoding = (ctx.request.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (encoding !== 'identity' && encoding !== '') {
    throw new ScalerError('UNSUPPORTED_MEDIA_TYPE', `the body must not be compressed (Content-Encoding: ${encoding.slice(0, 40)} is not supported)`);
  }
  let text: string;
  try {
    const timeoutMs = typeof ctx.state['bodyTimeoutMs'] === 'number' ? ctx.state['bodyTimeoutMs'] : BODY_TIMEOUT_MS;
    text = await readText(ctx, length, timeoutMs);
  } catch (err) {
    if (err instanceof HttpProblem) throw err;
    const e = err as { type?: string; status?: number };
    if (e.type === 'entity.too.large') {
      throw new ScalerError('PAYLOAD_TOO_LARGE', `the body is larger than ${MAX_BODY_BYTES} bytes`);
    }
    throw new ScalerError('BAD_REQUEST', 'the request body could not be read');
  }
  if (text.trim() === '') {
    if (opts.optional === true) return undefined;
    throw new ScalerError('BAD_REQUEST', `the request needs a ${what} body`, [{ field: '', message: 'is required' }]);
  }
  return { text };
}
