// @ts-check
import http from 'node:http';
import https from 'node:https';
/**
 * Prometheus metric source for Philotes Scaler, written as any third-party plugin would be:
 * it depends on nothing but the plugin contract ('philotes-scaler/plugin', types only).
 *
 * @typedef {import('philotes-scaler/plugin').MetricSource} MetricSource
 * @typedef {import('philotes-scaler/plugin').PluginContext<PrometheusConfig>} Context
 * @typedef {import('philotes-scaler/plugin').Aggregation} Aggregation
 * @typedef {import('philotes-scaler/plugin').Sample} Sample
 * @typedef {{ url: string, timeout_ms: number, bearer_token?: string,
 *   basic_auth?: { username: string, password: string }, headers: Record<string, string> }} PrometheusConfig
 */

/** An error with a kind the daemon understands (see MetricErrorKind in the plugin contract). */
class PrometheusError extends Error {
  /** @param {string} kind @param {string} message */
  constructor(kind, message) {
    super(message);
    this.name = 'PrometheusError';
    this.kind = kind;
  }
}

/**
 * The largest (sign 1) or smallest (sign -1) value, as Prometheus's max() and min() fold: a NaN
 * counts only when every value is NaN.
 * @param {number[]} values @param {1 | -1} sign
 */
function extreme(values, sign) {
  let out = NaN;
  for (const v of values) if (Number.isNaN(out) || (!Number.isNaN(v) && (v - out) * sign > 0)) out = v;
  return out;
}

/** @param {number[]} values @param {Aggregation} aggregation */
function fold(values, aggregation) {
  switch (aggregation) {
    case 'min':
      return extreme(values, -1);
    case 'sum':
      return values.reduce((a, b) => a + b, 0);
    case 'avg':
      return values.reduce((a, b) => a + b, 0) / values.length;
    default:
      return extreme(values, 1);
  }
}

/** Prometheus writes values as strings, including "NaN", "+Inf" and "-Inf". @param {unknown} raw */
function parseValue(raw) {
  if (typeof raw !== 'string') throw new PrometheusError('malformed', `value ${JSON.stringify(raw)} is not a string`);
  const v = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
  if (raw !== 'NaN' && Number.isNaN(v)) throw new PrometheusError('malformed', `value "${raw}" is not a number`);
  return v;
}

/**
 * @typedef {{ status: number, text: string }} Answer
 * @typedef {Error & { code?: string }} SystemError
 */

/** A query_range step: "30s" for whole seconds, else whole milliseconds ("22500ms"). @param {number} stepSeconds */
function stepParam(stepSeconds) {
  const ms = Math.max(1, Math.round(stepSeconds * 1000));
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** @param {Context} ctx @returns {MetricSource} */
export default function createPrometheusSource(ctx) {
  const base = ctx.config.url.replace(/\/+$/, '');
  const protocol = new URL(base).protocol;
  if (protocol !== 'http:' && protocol !== 'https:') throw new Error(`url: must be an http or https URL, got ${protocol}`);
  // node:http with a keep-alive agent rather than fetch: a cycle sends hundreds of small requests,
  // and fetch's streams, request objects and signals cost several times the CPU and garbage of a
  // plain request. No Accept-Encoding is sent: Prometheus answers uncompressed.
  const client = protocol === 'https:' ? https : http;
  const agent = new client.Agent({ keepAlive: true });
  const timeoutMs = ctx.config.timeout_ms;
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json', ...ctx.config.headers };
  if (ctx.config.bearer_token !== undefined) headers['Authorization'] = `Bearer ${ctx.config.bearer_token}`;
  else if (ctx.config.basic_auth !== undefined) {
    const { username, password } = ctx.config.basic_auth;
    headers['Authorization'] = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  }

  /**
   * One GET, its whole body read; every transport failure becomes a PrometheusError with a kind.
   * A kept-alive connection the server closed while idle fails at once with ECONNRESET: such a
   * request is sent once more on a new connection.
   * @param {string} url @param {AbortSignal} signal @param {boolean} [retry] @returns {Promise<Answer>}
   */
  function send(url, signal, retry = true) {
    return new Promise((resolve, reject) => {
      let timedOut = false;
      let settled = false;
      /** @param {SystemError} err */
      const fail = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (retry && req.reusedSocket && err.code === 'ECONNRESET' && !signal.aborted) {
          send(url, signal, false).then(resolve, reject);
          return;
        }
        if (timedOut) reject(new PrometheusError('timeout', `${base} did not answer within ${timeoutMs} ms`));
        else if (signal.aborted) reject(new PrometheusError('timeout', `${base}: the request was cancelled`));
        else reject(new PrometheusError('unreachable', `${base} is unreachable (${err.code ?? err.message})`));
      };
      const req = client.request(url, { agent, headers, signal }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, text });
        });
        // The body can fail too (timeout or connection closed mid-answer): same classification.
        res.on('error', fail);
        res.on('close', () => {
          if (!res.complete) fail(Object.assign(new Error('the connection closed mid-answer'), { code: 'ECONNRESET' }));
        });
      });
      const timer = setTimeout(() => {
        timedOut = true;
        req.destroy();
      }, timeoutMs);
      req.on('error', fail);
      req.end();
    });
  }

  /**
   * GETs an API path and returns `data`; every failure becomes a PrometheusError with a kind.
   * @param {string} path @param {Record<string, string>} params @param {AbortSignal} signal
   */
  async function get(path, params, signal) {
    const res = await send(`${base}${path}?${new URLSearchParams(params)}`, signal);
    const ok = res.status >= 200 && res.status < 300;
    /** @type {any} */
    let body;
    try {
      body = JSON.parse(res.text);
    } catch {
      throw new PrometheusError(ok ? 'malformed' : 'http', `${base} answered HTTP ${res.status} with a body that is not JSON`);
    }
    if (!ok || body?.status !== 'success') {
      const detail = typeof body?.error === 'string' ? body.error : `HTTP ${res.status}`;
      throw new PrometheusError(res.status === 400 || res.status === 422 ? 'query' : 'http', `${base}: ${detail}`);
    }
    if (typeof body.data !== 'object' || body.data === null) throw new PrometheusError('malformed', `${base} answered without data`);
    return body.data;
  }

  return {
    async instantQuery(q) {
      const data = await get('/api/v1/query', { query: q.query, time: String(q.time.getTime() / 1000) }, q.signal);
      if (data.resultType === 'scalar') {
        const [t, raw] = data.result;
        return { t, v: parseValue(raw) };
      }
      if (data.resultType !== 'vector' || !Array.isArray(data.result)) {
        throw new PrometheusError('malformed', `expected an instant vector, got ${data.resultType}`);
      }
      if (data.result.length === 0) throw new PrometheusError('empty', `${q.query} returned no series`);
      const values = data.result.map((/** @type {any} */ s) => parseValue(s?.value?.[1]));
      const t = Number(data.result[0].value[0]);
      return { t, v: fold(values, q.aggregation) };
    },

    async rangeQuery(q) {
      const data = await get(
        '/api/v1/query_range',
        {
          query: q.query,
          start: String(q.start.getTime() / 1000),
          end: String(q.end.getTime() / 1000),
          // In whole milliseconds, as Prometheus steps are: "22500ms" rather than a float that
          // Prometheus would truncate (23.333 s can become 23332 ms and miss the window's end).
          step: stepParam(q.stepSeconds),
        },
        q.signal,
      );
      if (data.resultType !== 'matrix' || !Array.isArray(data.result)) {
        throw new PrometheusError('malformed', `expected a range vector, got ${data.resultType}`);
      }
      if (data.result.length === 0) throw new PrometheusError('empty', `${q.query} returned no series in the window`);
      /** @type {Map<number, number[]>} */
      const byTime = new Map();
      for (const series of data.result) {
        for (const [t, raw] of series.values ?? []) {
          const list = byTime.get(t);
          const v = parseValue(raw);
          if (list === undefined) byTime.set(t, [v]);
          else list.push(v);
        }
      }
      /** @type {Sample[]} */
      const samples = [...byTime.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([t, values]) => ({ t, v: fold(values, q.aggregation) }));
      if (samples.length === 0) throw new PrometheusError('empty', `${q.query} returned no values in the window`);
      return samples;
    },

    async healthCheck(signal) {
      const res = await send(`${base}/-/ready`, signal);
      if (res.status < 200 || res.status >= 300) throw new PrometheusError('http', `${base}/-/ready answered HTTP ${res.status}`);
    },

    async close() {
      agent.destroy();
    },
  };
}
