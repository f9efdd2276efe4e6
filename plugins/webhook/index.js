// @ts-check
/**
 * Webhook executor: each change is POSTed as JSON to a configured URL, for systems the daemon
 * has no plugin for (a deployment tool, a job scheduler, a chat channel that a person acts on).
 *
 * - The body is one JSON object: decision_id, policy_id, policy_name, target_type, target_id,
 *   target_ref, previous_replicas, replicas, reason, dry_run.
 * - `X-Philotes-Signature: sha256=<hex>` is the HMAC-SHA256 of the exact body bytes with the
 *   configured secret; the receiver recomputes it and compares in constant time.
 * - `Idempotency-Key` is the decision id, the same on every retry of one change, so a receiver
 *   that saw it already answers 2xx without acting twice.
 * - A failed connection, a timeout, 408, 429 and 5xx are retried (max_retries, exponential
 *   backoff with jitter, or Retry-After) within the daemon's plugin timeout; any other answer
 *   that is not 2xx fails the change at once, with the receiver's status and the start of its
 *   answer in the history row.
 *
 * @typedef {import('philotes-scaler/plugin').Executor} Executor
 * @typedef {import('philotes-scaler/plugin').ScaleTarget} ScaleTarget
 * @typedef {{
 *   url?: string, secret?: string, unsigned: boolean, replicas_url?: string, target_types: string[],
 *   timeout_ms: number, max_retries: number, retry_base_ms: number, headers: Record<string, string>
 * }} Config
 * @typedef {import('philotes-scaler/plugin').PluginContext<Config>} Context
 */
import { createHmac } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';

/** The signature header of a body: `sha256=` and the hex HMAC-SHA256 with the secret. */
export function signature(/** @type {string} */ secret, /** @type {Buffer | string} */ body) {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** A URL without its query and credentials, for messages. */
function shown(/** @type {string} */ url) {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}`;
}

/** @param {Context} ctx @returns {Executor} */
export default function createWebhookExecutor(ctx) {
  const config = ctx.config;
  const log = ctx.logger;
  const url = config.url;
  if (url !== undefined && !config.unsigned && config.secret === undefined) {
    // The schema refuses this already; a plugin never sends unsigned by accident.
    throw new Error('plugins.webhook.secret is required to sign requests (or set unsigned: true)');
  }
  if (url === undefined && config.target_types.length > 0) {
    throw new Error('plugins.webhook.target_types is set but plugins.webhook.url is not: there is nowhere to send changes');
  }

  /**
   * One request with bounded retries. `retryable` answers are retried while attempts and the
   * daemon's timeout allow; the answer is returned, or the last failure thrown.
   * @param {string} method @param {string} target @param {{ body?: Buffer, headers: Record<string, string>, signal: AbortSignal }} opts
   * @returns {Promise<{ status: number, text: string, attempts: number }>}
   */
  async function send(method, target, opts) {
    let last = '';
    for (let attempt = 0; ; attempt++) {
      let retryAfterMs;
      try {
        const res = await fetch(target, {
          method,
          headers: opts.headers,
          ...(opts.body !== undefined ? { body: opts.body } : {}),
          signal: AbortSignal.any([opts.signal, AbortSignal.timeout(config.timeout_ms)]),
          redirect: 'manual',
        });
        const text = await res.text();
        if (res.status >= 200 && res.status < 300) return { status: res.status, text, attempts: attempt + 1 };
        last = `HTTP ${res.status}${text.trim() !== '' ? `: ${text.trim().slice(0, 200)}` : ''}`;
        if (!(res.status === 408 || res.status === 429 || res.status >= 500)) {
          throw Object.assign(new Error(`${shown(target)} answered ${last}`), { final: true });
        }
        // Retry-After in seconds (an HTTP date is not used); without it, the backoff below.
        const ra = res.headers.get('retry-after');
        if (ra !== null && /^\d+$/.test(ra.trim())) retryAfterMs = Math.min(Number(ra) * 1000, 30_000);
      } catch (err) {
        if (/** @type {{ final?: boolean }} */ (err).final) throw err;
        if (opts.signal.aborted) throw new Error(`${shown(target)}: no answer within the daemon's plugin_timeout (${attempt + 1} attempt${attempt === 0 ? '' : 's'}${last !== '' ? `; last: ${last}` : ''})`);
        const e = /** @type {Error & { cause?: { code?: string, message?: string } }} */ (err);
        last = e.name === 'TimeoutError' ? `no answer within timeout_ms ${config.timeout_ms}` : `connection failed (${e.cause?.code ?? e.cause?.message ?? e.message})`;
      }
      if (attempt >= config.max_retries) throw new Error(`${shown(target)}: ${last} (gave up after ${attempt + 1} attempts)`);
      const wait = retryAfterMs ?? Math.round(Math.random() * Math.min(5000, config.retry_base_ms * 2 ** attempt));
      log.warn({ url: shown(target), attempt: attempt + 1, retryInMs: wait, error: last }, `webhook: ${method} ${shown(target)}: ${last}; retry ${attempt + 1} of ${config.max_retries} in ${wait} ms`);
      try {
        await delay(wait, undefined, { signal: opts.signal });
      } catch {
        throw new Error(`${shown(target)}: ${last}; no time left for retry ${attempt + 1} within the daemon's plugin_timeout`);
      }
    }
  }

  return {
    targetTypes: [...config.target_types],

    async getCurrentReplicas(target, { signal }) {
      if (config.replicas_url === undefined) return null;
      const u = new URL(config.replicas_url);
      u.searchParams.set('policy_id', target.policyId);
      u.searchParams.set('policy_name', target.policyName);
      u.searchParams.set('target_type', target.targetType);
      if (target.targetId !== null) u.searchParams.set('target_id', target.targetId);
      const res = await send('GET', u.href, { headers: { accept: 'application/json', ...config.headers }, signal });
      let answer;
      try {
        answer = JSON.parse(res.text);
      } catch {
        throw new Error(`${shown(u.href)} answered ${JSON.stringify(res.text.slice(0, 100))}, not JSON such as {"replicas": 3}`);
      }
      const n = answer === null || typeof answer !== 'object' ? answer : answer.replicas;
      if (n === null) return null;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
        throw new Error(`${shown(u.href)} answered ${JSON.stringify(answer).slice(0, 100)}: replicas must be a non-negative integer or null`);
      }
      return n;
    },

    async scale(target, replicas, opts) {
      if (url === undefined) throw new Error('plugins.webhook.url is not set: there is nowhere to send the change');
      const ref = target.targetRef;
      const body = Buffer.from(
        JSON.stringify({
          decision_id: opts.decisionId,
          policy_id: target.policyId,
          policy_name: target.policyName,
          target_type: target.targetType,
          target_id: target.targetId,
          target_ref: ref === null ? null : { kind: ref.kind, name: ref.name, namespace: ref.namespace, api_version: ref.apiVersion },
          previous_replicas: opts.previousReplicas,
          replicas,
          reason: opts.reason,
          dry_run: opts.dryRun,
        }),
      );
      /** @type {Record<string, string>} */
      const headers = {
        ...config.headers,
        'content-type': 'application/json',
        'user-agent': 'philotes-scaler',
        'idempotency-key': opts.decisionId,
      };
      if (!config.unsigned && config.secret !== undefined) headers['x-philotes-signature'] = signature(config.secret, body);
      const res = await send('POST', url, { body, headers, signal: opts.signal });
      log.info(
        { url: shown(url), decisionId: opts.decisionId, replicas, previous: opts.previousReplicas, dryRun: opts.dryRun, status: res.status, attempts: res.attempts },
        `webhook: ${shown(url)} accepted ${opts.dryRun ? 'the dry run of ' : ''}${target.policyName} ${opts.previousReplicas} -> ${replicas} (HTTP ${res.status}${res.attempts > 1 ? `, attempt ${res.attempts}` : ''})`,
      );
    },
  };
}
