import { writeFile, mkdir } from 'node:fs/promises';
import fc from 'fast-check';
import t from 'tap';
import type { ErrorCode } from '../src/errors.js';
import { PROBLEM_SCHEMA_ID, validator } from '../src/schemas.js';
import { startTestApp } from './helpers/app.js';

/**
 * Bad input -> status. Each row is one request a client could get wrong; the table is the spec of
 * how the API answers it. Every row also must: answer < 500, as application/problem+json with
 * type/title/status/detail/code (valid against schemas/problem.schema.json), and store nothing.
 *
 * Fixtures present while the table runs: policies `existing-a` and `existing-b` (API-managed) and
 * `from-file` (managed by the policy file policies/team.yaml).
 */
export interface BadInput {
  description: string;
  method: string;
  path: string;
  /** Defaults to Content-Type: application/json when there is a body. */
  headers?: Record<string, string>;
  /** Sent as JSON. */
  json?: unknown;
  /** Sent as is (malformed JSON, wrong media types, huge bodies). */
  raw?: string | Uint8Array;
  status: number;
  code: ErrorCode;
  /** For validation problems: exactly these field pointers, in any order. */
  fields?: string[];
}

const S = '/api/v1/scaling';
const P = `${S}/policies`;
const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000';
const JSON_TYPE = { 'content-type': 'application/json' };
const MERGE_PATCH_TYPE = { 'content-type': 'application/merge-patch+json' };
// Every problem of the patched policy at once, at pointers into it (the patch's own).
const PATCH_RESULT_FIELDS = ['/max_replicas', '/min_replicas', '/scale_up_rules/0/operator', '/scale_up_rules/0/threshold', '/scale_up_rules/0/scale_by'];

/** A valid policy body, changed by `extra`. */
function policy(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'bad-input', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 5, ...extra };
}
const rule = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ metric: 'philotes_cdc_lag_seconds', operator: 'gt', threshold: 60, scale_by: 2, ...extra });
const downRule = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ metric: 'philotes_cdc_lag_seconds', operator: 'lt', threshold: 10, scale_by: -1, ...extra });
const schedule = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ cron_expression: '0 8 * * 1-5', desired_replicas: 3, ...extra });

const HUGE = JSON.stringify(policy({ description: 'x'.repeat(1024 * 1024) }));

export const BAD_INPUTS: BadInput[] = [
  // The body as a whole.
  { description: 'malformed JSON', method: 'POST', path: P, raw: '{"name": "x",', status: 400, code: 'MALFORMED_JSON' },
  { description: 'JSON followed by garbage', method: 'POST', path: P, raw: '{"name": "x"} trailing', status: 400, code: 'MALFORMED_JSON' },
  { description: 'body is a JSON array', method: 'POST', path: P, raw: '[]', status: 422, code: 'VALIDATION_FAILED', fields: [''] },
  { description: 'body is a JSON string', method: 'POST', path: P, raw: '"policy"', status: 422, code: 'VALIDATION_FAILED', fields: [''] },
  { description: 'body is JSON null', method: 'POST', path: P, raw: 'null', status: 422, code: 'VALIDATION_FAILED', fields: [''] },
  { description: 'body is a JSON number', method: 'POST', path: P, raw: '42', status: 422, code: 'VALIDATION_FAILED', fields: [''] },
  { description: 'empty body on POST', method: 'POST', path: P, headers: JSON_TYPE, status: 400, code: 'BAD_REQUEST', fields: [''] },
  { description: 'whitespace-only body', method: 'POST', path: P, raw: ' \n ', status: 400, code: 'BAD_REQUEST', fields: [''] },
  { description: 'Content-Type text/plain', method: 'POST', path: P, headers: { 'content-type': 'text/plain' }, raw: JSON.stringify(policy()), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { description: 'Content-Type form-urlencoded', method: 'POST', path: P, headers: { 'content-type': 'application/x-www-form-urlencoded' }, raw: 'name=bad-input&min_replicas=1', status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { description: 'no Content-Type at all', method: 'POST', path: P, headers: {}, raw: new TextEncoder().encode(JSON.stringify(policy())), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { description: 'body over 1 MiB', method: 'POST', path: P, raw: HUGE, status: 413, code: 'PAYLOAD_TOO_LARGE' },
  { description: 'charset other than UTF-8', method: 'POST', path: P, headers: { 'content-type': 'application/json; charset=utf-16' }, raw: JSON.stringify(policy()), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { description: 'compressed body (Content-Encoding: gzip)', method: 'POST', path: P, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, raw: JSON.stringify(policy()), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { description: 'PUT with Content-Type text/plain', method: 'PUT', path: `${P}/existing-a`, headers: { 'content-type': 'text/plain' }, raw: JSON.stringify(policy({ name: 'existing-a' })), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { description: 'PUT with malformed JSON', method: 'PUT', path: `${P}/existing-a`, raw: '{', status: 400, code: 'MALFORMED_JSON' },
  { description: 'PUT with an empty body', method: 'PUT', path: `${P}/existing-a`, headers: JSON_TYPE, status: 400, code: 'BAD_REQUEST', fields: [''] },

  // Schema.
  { description: 'empty object: every required field missing', method: 'POST', path: P, json: {}, status: 422, code: 'VALIDATION_FAILED', fields: ['/name', '/target_type', '/min_replicas', '/max_replicas'] },
  { description: 'unknown property', method: 'POST', path: P, json: policy({ colour: 'blue' }), status: 422, code: 'VALIDATION_FAILED', fields: ['/colour'] },
  { description: 'unknown property in a rule', method: 'POST', path: P, json: policy({ scale_up_rules: [rule({ colour: 'blue' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/colour'] },
  { description: 'name with capitals', method: 'POST', path: P, json: policy({ name: 'My-Policy' }), status: 422, code: 'VALIDATION_FAILED', fields: ['/name'] },
  { description: 'name of 64 characters', method: 'POST', path: P, json: policy({ name: 'a'.repeat(64) }), status: 422, code: 'VALIDATION_FAILED', fields: ['/name'] },
  { description: 'name starting with a dash', method: 'POST', path: P, json: policy({ name: '-policy' }), status: 422, code: 'VALIDATION_FAILED', fields: ['/name'] },
  { description: 'name shaped like a UUID (ambiguous with an id)', method: 'POST', path: P, json: policy({ name: '550e8400-e29b-41d4-a716-446655440000' }), status: 422, code: 'VALIDATION_FAILED', fields: ['/name'] },
  { description: 'name empty', method: 'POST', path: P, json: policy({ name: '' }), status: 422, code: 'VALIDATION_FAILED', fields: ['/name'] },
  { description: 'target_id not a UUID', method: 'POST', path: P, json: policy({ target_id: 'orders-worker' }), status: 422, code: 'VALIDATION_FAILED', fields: ['/target_id'] },
  { description: 'target_id as a urn:uuid: URN', method: 'POST', path: P, json: policy({ target_id: 'urn:uuid:550e8400-e29b-41d4-a716-446655440000' }), status: 422, code: 'VALIDATION_FAILED', fields: ['/target_id'] },
  { description: 'min_replicas as a string', method: 'POST', path: P, json: policy({ min_replicas: '1' }), status: 422, code: 'VALIDATION_FAILED', fields: ['/min_replicas'] },
  { description: 'max_replicas not an integer', method: 'POST', path: P, json: policy({ max_replicas: 2.5 }), status: 422, code: 'VALIDATION_FAILED', fields: ['/max_replicas'] },
  { description: 'min_replicas negative', method: 'POST', path: P, json: policy({ min_replicas: -1 }), status: 422, code: 'VALIDATION_FAILED', fields: ['/min_replicas'] },
  { description: 'min_replicas 1e400 (Infinity after parsing)', method: 'POST', path: P, raw: '{"name":"bad-input","target_type":"cdc-worker","min_replicas":1e400,"max_replicas":5}', status: 422, code: 'VALIDATION_FAILED', fields: ['/min_replicas'] },
  { description: 'enabled as a string', method: 'POST', path: P, json: policy({ enabled: 'yes' }), status: 422, code: 'VALIDATION_FAILED', fields: ['/enabled'] },
  { description: 'cooldown_seconds negative', method: 'POST', path: P, json: policy({ cooldown_seconds: -5 }), status: 422, code: 'VALIDATION_FAILED', fields: ['/cooldown_seconds'] },
  { description: 'scale_up_rules not an array', method: 'POST', path: P, json: policy({ scale_up_rules: rule() }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules'] },
  { description: 'rule with an unknown operator', method: 'POST', path: P, json: policy({ scale_up_rules: [rule({ operator: 'bigger' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/operator'] },
  { description: 'rule threshold as a string', method: 'POST', path: P, json: policy({ scale_up_rules: [rule({ threshold: '60' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/threshold'] },
  { description: 'rule threshold 1e400 (Infinity after parsing)', method: 'POST', path: P, raw: JSON.stringify(policy({ scale_up_rules: [rule({ threshold: 12345 })] })).replace('12345', '1e400'), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/threshold'] },
  { description: 'rule without metric', method: 'POST', path: P, json: policy({ scale_up_rules: [{ operator: 'gt', threshold: 1, scale_by: 1 }] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/metric'] },
  { description: 'rule with a blank metric', method: 'POST', path: P, json: policy({ scale_up_rules: [rule({ metric: '   ' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/metric'] },
  { description: 'rule duration_seconds negative', method: 'POST', path: P, json: policy({ scale_up_rules: [rule({ duration_seconds: -1 })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/duration_seconds'] },
  { description: 'on_metric_error unknown', method: 'POST', path: P, json: policy({ on_metric_error: 'panic' }), status: 422, code: 'VALIDATION_FAILED', fields: ['/on_metric_error'] },
  { description: 'schedule mode unknown', method: 'POST', path: P, json: policy({ schedules: [schedule({ mode: 'ceiling' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/schedules/0/mode'] },

  // Semantic rules.
  { description: 'min_replicas > max_replicas', method: 'POST', path: P, json: policy({ min_replicas: 6, max_replicas: 5 }), status: 422, code: 'VALIDATION_FAILED', fields: ['/min_replicas'] },
  { description: 'max_replicas 0', method: 'POST', path: P, json: policy({ min_replicas: 0, max_replicas: 0 }), status: 422, code: 'VALIDATION_FAILED', fields: ['/max_replicas'] },
  { description: 'unknown target_type', method: 'POST', path: P, json: policy({ target_type: 'spaceship' }), status: 422, code: 'VALIDATION_FAILED', fields: ['/target_type'] },
  { description: 'unknown executor', method: 'POST', path: P, json: policy({ executor: 'kubectl' }), status: 422, code: 'VALIDATION_FAILED', fields: ['/executor'] },
  { description: 'invalid cron expression (minute 61)', method: 'POST', path: P, json: policy({ schedules: [schedule({ cron_expression: '61 8 * * *' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/schedules/0/cron_expression'] },
  { description: 'cron expression that is words', method: 'POST', path: P, json: policy({ schedules: [schedule({ cron_expression: 'every day at eight' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/schedules/0/cron_expression'] },
  { description: '6-field cron expression (with seconds)', method: 'POST', path: P, json: policy({ schedules: [schedule({ cron_expression: '0 0 8 * * 1-5' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/schedules/0/cron_expression'] },
  { description: 'cron expression that never fires (Feb 30)', method: 'POST', path: P, json: policy({ schedules: [schedule({ cron_expression: '0 8 30 2 *' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/schedules/0/cron_expression'] },
  { description: 'invalid time zone', method: 'POST', path: P, json: policy({ schedules: [schedule({ timezone: 'Mars/Olympus_Mons' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/schedules/0/timezone'] },
  { description: 'schedule desired_replicas above max_replicas', method: 'POST', path: P, json: policy({ schedules: [schedule({ desired_replicas: 6 })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/schedules/0/desired_replicas'] },
  { description: 'schedule desired_replicas below min_replicas', method: 'POST', path: P, json: policy({ min_replicas: 2, schedules: [schedule({ desired_replicas: 1 })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/schedules/0/desired_replicas'] },
  { description: 'schedule desired_replicas 0 without scale_to_zero', method: 'POST', path: P, json: policy({ schedules: [schedule({ desired_replicas: 0 })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/schedules/0/desired_replicas'] },
  { description: 'up rule with negative scale_by', method: 'POST', path: P, json: policy({ scale_up_rules: [rule({ scale_by: -2 })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/scale_by'] },
  { description: 'up rule with scale_by 0', method: 'POST', path: P, json: policy({ scale_up_rules: [rule({ scale_by: 0 })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/scale_by'] },
  { description: 'down rule with positive scale_by', method: 'POST', path: P, json: policy({ scale_down_rules: [downRule({ scale_by: 1 })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_down_rules/0/scale_by'] },
  { description: 'negative threshold', method: 'POST', path: P, json: policy({ scale_up_rules: [rule({ threshold: -1 })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/threshold'] },
  { description: 'rule duration "5x"', method: 'POST', path: P, json: policy({ scale_up_rules: [rule({ duration: '5x' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/duration'] },
  { description: 'rule duration longer than 7 days', method: 'POST', path: P, json: policy({ scale_up_rules: [rule({ duration: '8d' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/duration'] },
  { description: 'schedule duration "nine hours"', method: 'POST', path: P, json: policy({ schedules: [schedule({ duration: 'nine hours' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/schedules/0/duration'] },
  { description: 'duration and duration_seconds disagree', method: 'POST', path: P, json: policy({ scale_up_rules: [rule({ duration: '5m', duration_seconds: 60 })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/duration_seconds'] },
  { description: 'unknown metric source', method: 'POST', path: P, json: policy({ scale_up_rules: [rule({ source: 'datadog' })] }), status: 422, code: 'VALIDATION_FAILED', fields: ['/scale_up_rules/0/source'] },
  { description: 'max_hourly_cost without any price', method: 'POST', path: P, json: policy({ max_hourly_cost: 10 }), status: 422, code: 'VALIDATION_FAILED', fields: ['/max_hourly_cost'] },
  { description: 'max_hourly_cost that cannot pay min_replicas', method: 'POST', path: P, json: policy({ min_replicas: 3, max_hourly_cost: 1, cost_per_replica_hour: 0.5 }), status: 422, code: 'VALIDATION_FAILED', fields: ['/max_hourly_cost'] },
  { description: 'on_metric_error fallback without fallback', method: 'POST', path: P, json: policy({ on_metric_error: 'fallback' }), status: 422, code: 'VALIDATION_FAILED', fields: ['/fallback'] },
  { description: 'fallback replicas outside [min, max]', method: 'POST', path: P, json: policy({ on_metric_error: 'fallback', fallback: { after_failures: 3, replicas: 9 } }), status: 422, code: 'VALIDATION_FAILED', fields: ['/fallback/replicas'] },
  {
    description: 'several problems at once: all reported',
    method: 'POST',
    path: P,
    json: {
      name: 'Bad Name',
      target_type: 'spaceship',
      min_replicas: 1,
      max_replicas: 5,
      colour: 'blue',
      scale_up_rules: [rule({ scale_by: -1, duration: '5x' })],
      scale_down_rules: [downRule({ scale_by: 1, threshold: -3 })],
      schedules: [schedule({ cron_expression: '0 25 * * *', timezone: 'Nowhere/City', desired_replicas: 9 })],
    },
    status: 422,
    code: 'VALIDATION_FAILED',
    fields: [
      '/name', '/target_type', '/colour', '/scale_up_rules/0/scale_by', '/scale_up_rules/0/duration',
      '/scale_down_rules/0/scale_by', '/scale_down_rules/0/threshold', '/schedules/0/cron_expression',
      '/schedules/0/timezone', '/schedules/0/desired_replicas',
    ],
  },
  { description: 'PUT with a policy that fails validation', method: 'PUT', path: `${P}/existing-a`, json: policy({ name: 'existing-a', min_replicas: 9 }), status: 422, code: 'VALIDATION_FAILED', fields: ['/min_replicas'] },

  // Query parameters.
  { description: 'limit=abc', method: 'GET', path: `${P}?limit=abc`, status: 400, code: 'BAD_REQUEST', fields: ['/query/limit'] },
  { description: 'limit=0', method: 'GET', path: `${P}?limit=0`, status: 400, code: 'BAD_REQUEST', fields: ['/query/limit'] },
  { description: 'limit=5000', method: 'GET', path: `${P}?limit=5000`, status: 400, code: 'BAD_REQUEST', fields: ['/query/limit'] },
  { description: 'limit=1.5', method: 'GET', path: `${P}?limit=1.5`, status: 400, code: 'BAD_REQUEST', fields: ['/query/limit'] },
  { description: 'limit given twice', method: 'GET', path: `${P}?limit=1&limit=2`, status: 400, code: 'BAD_REQUEST', fields: ['/query/limit'] },
  { description: 'offset=-1', method: 'GET', path: `${P}?offset=-1`, status: 400, code: 'BAD_REQUEST', fields: ['/query/offset'] },
  { description: 'enabled=maybe', method: 'GET', path: `${P}?enabled=maybe`, status: 400, code: 'BAD_REQUEST', fields: ['/query/enabled'] },
  { description: 'several bad query parameters at once', method: 'GET', path: `${P}?limit=0&offset=x&enabled=1`, status: 400, code: 'BAD_REQUEST', fields: ['/query/limit', '/query/offset', '/query/enabled'] },
  { description: 'history since=yesterday', method: 'GET', path: `${S}/history?since=yesterday`, status: 400, code: 'BAD_REQUEST', fields: ['/query/since'] },
  { description: 'history since=2026-02-30 (no such day)', method: 'GET', path: `${S}/history?since=2026-02-30`, status: 400, code: 'BAD_REQUEST', fields: ['/query/since'] },
  { description: 'history until with trailing junk', method: 'GET', path: `${S}/history?until=2026-01-01%20junk`, status: 400, code: 'BAD_REQUEST', fields: ['/query/until'] },
  { description: 'history until=2026-01-01T25:00:00Z', method: 'GET', path: `${S}/history?until=2026-01-01T25:00:00Z`, status: 400, code: 'BAD_REQUEST', fields: ['/query/until'] },
  { description: 'history action=explode', method: 'GET', path: `${S}/history?action=explode`, status: 400, code: 'BAD_REQUEST', fields: ['/query/action'] },
  { description: 'history dry_run=1', method: 'GET', path: `${S}/history?dry_run=1`, status: 400, code: 'BAD_REQUEST', fields: ['/query/dry_run'] },
  { description: 'history policy_id not a UUID', method: 'GET', path: `${S}/history?policy_id=existing-a`, status: 400, code: 'BAD_REQUEST', fields: ['/query/policy_id'] },
  { description: 'history limit=1001', method: 'GET', path: `${S}/history?limit=1001`, status: 400, code: 'BAD_REQUEST', fields: ['/query/limit'] },
  { description: 'history cursor that is not a cursor', method: 'GET', path: `${S}/history?cursor=not-a-cursor`, status: 400, code: 'BAD_REQUEST', fields: ['/query/cursor'] },
  { description: 'history cursor of well-formed base64 JSON, wrong shape', method: 'GET', path: `${S}/history?cursor=${Buffer.from('{"a":1}').toString('base64url')}`, status: 400, code: 'BAD_REQUEST', fields: ['/query/cursor'] },
  { description: 'history cursor over 512 characters', method: 'GET', path: `${S}/history?cursor=${'A'.repeat(600)}`, status: 400, code: 'BAD_REQUEST', fields: ['/query/cursor'] },
  { description: 'policy history limit=0', method: 'GET', path: `${P}/existing-a/history?limit=0`, status: 400, code: 'BAD_REQUEST', fields: ['/query/limit'] },

  // The :id in the path.
  { description: 'malformed id', method: 'GET', path: `${P}/NOT%20VALID!!`, status: 400, code: 'BAD_REQUEST', fields: ['/path/id'] },
  { description: 'malformed id with broken percent-encoding', method: 'GET', path: `${P}/%E0%A4%A`, status: 400, code: 'BAD_REQUEST', fields: ['/path/id'] },
  { description: 'id of 64 name characters', method: 'GET', path: `${P}/${'a'.repeat(64)}`, status: 400, code: 'BAD_REQUEST', fields: ['/path/id'] },
  { description: 'PUT on a malformed id', method: 'PUT', path: `${P}/Not_Valid`, json: policy(), status: 400, code: 'BAD_REQUEST', fields: ['/path/id'] },
  { description: 'DELETE on a malformed id', method: 'DELETE', path: `${P}/Not_Valid`, status: 400, code: 'BAD_REQUEST', fields: ['/path/id'] },
  { description: 'history of a malformed id', method: 'GET', path: `${P}/Not_Valid/history`, status: 400, code: 'BAD_REQUEST', fields: ['/path/id'] },
  { description: 'unknown UUID', method: 'GET', path: `${P}/${UNKNOWN_ID}`, status: 404, code: 'NOT_FOUND' },
  { description: 'unknown name', method: 'GET', path: `${P}/no-such-policy`, status: 404, code: 'NOT_FOUND' },
  { description: 'PUT on an unknown UUID', method: 'PUT', path: `${P}/${UNKNOWN_ID}`, json: policy(), status: 404, code: 'NOT_FOUND' },
  { description: 'DELETE on an unknown UUID', method: 'DELETE', path: `${P}/${UNKNOWN_ID}`, status: 404, code: 'NOT_FOUND' },
  { description: 'enable an unknown UUID', method: 'POST', path: `${P}/${UNKNOWN_ID}/enable`, status: 404, code: 'NOT_FOUND' },
  { description: 'disable an unknown name', method: 'POST', path: `${P}/no-such-policy/disable`, status: 404, code: 'NOT_FOUND' },
  { description: 'history of an unknown UUID', method: 'GET', path: `${P}/${UNKNOWN_ID}/history`, status: 404, code: 'NOT_FOUND' },

  // Routes and methods.
  { description: 'unknown route under the API', method: 'GET', path: `${S}/nothing-here`, status: 404, code: 'ROUTE_NOT_FOUND' },
  { description: 'unknown route at the root', method: 'GET', path: '/nothing-here', status: 404, code: 'ROUTE_NOT_FOUND' },
  { description: 'unknown sub-route of a policy', method: 'POST', path: `${P}/existing-a/explode`, status: 404, code: 'ROUTE_NOT_FOUND' },
  { description: 'DELETE on /policies (no id)', method: 'DELETE', path: P, status: 405, code: 'METHOD_NOT_ALLOWED' },
  { description: 'PATCH on /policies (no id)', method: 'PATCH', path: P, json: { enabled: false }, status: 405, code: 'METHOD_NOT_ALLOWED' },
  { description: 'GET on /enable', method: 'GET', path: `${P}/existing-a/enable`, status: 405, code: 'METHOD_NOT_ALLOWED' },
  { description: 'POST on /history', method: 'POST', path: `${S}/history`, json: {}, status: 405, code: 'METHOD_NOT_ALLOWED' },
  { description: 'POST on /healthz', method: 'POST', path: '/healthz', status: 405, code: 'METHOD_NOT_ALLOWED' },
  { description: 'a method HTTP routers do not know (PROPFIND) on /policies', method: 'PROPFIND', path: P, status: 405, code: 'METHOD_NOT_ALLOWED' },
  { description: 'a method HTTP routers do not know on an unknown route', method: 'PROPFIND', path: `${S}/nothing-here`, status: 404, code: 'ROUTE_NOT_FOUND' },

  // PATCH (a JSON Merge Patch) and pause.
  { description: 'PATCH whose body is not an object (a JSON Patch array)', method: 'PATCH', path: `${P}/existing-a`, headers: MERGE_PATCH_TYPE, raw: '[{"op":"remove","path":"/max_replicas"}]', status: 422, code: 'VALIDATION_FAILED', fields: [''] },
  { description: 'PATCH whose result is not a valid policy', method: 'PATCH', path: `${P}/existing-a`, headers: MERGE_PATCH_TYPE, json: { max_replicas: 0, scale_up_rules: [{ metric: 'lag' }] }, status: 422, code: 'VALIDATION_FAILED', fields: PATCH_RESULT_FIELDS },
  { description: 'PATCH that removes a required member', method: 'PATCH', path: `${P}/existing-a`, headers: MERGE_PATCH_TYPE, json: { target_type: null }, status: 422, code: 'VALIDATION_FAILED', fields: ['/target_type'] },
  { description: 'PATCH that sets paused (pausing is POST .../pause)', method: 'PATCH', path: `${P}/existing-a`, headers: MERGE_PATCH_TYPE, json: { paused: true }, status: 422, code: 'VALIDATION_FAILED', fields: ['/paused'] },
  { description: 'PATCH sent as a JSON Patch (application/json-patch+json)', method: 'PATCH', path: `${P}/existing-a`, headers: { 'content-type': 'application/json-patch+json' }, raw: '[]', status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { description: 'PATCH on an unknown UUID', method: 'PATCH', path: `${P}/${UNKNOWN_ID}`, headers: MERGE_PATCH_TYPE, json: {}, status: 404, code: 'NOT_FOUND' },
  { description: 'pause with a reason that is not a string', method: 'POST', path: `${P}/existing-a/pause`, json: { reason: 42 }, status: 422, code: 'VALIDATION_FAILED', fields: ['/reason'] },
  { description: 'pause with an unknown member', method: 'POST', path: `${P}/existing-a/pause`, json: { reason: 'x', until: '1h' }, status: 422, code: 'VALIDATION_FAILED', fields: ['/until'] },
  { description: 'pause an unknown name', method: 'POST', path: `${P}/no-such-policy/pause`, status: 404, code: 'NOT_FOUND' },

  // Conflicts.
  { description: 'duplicate name', method: 'POST', path: P, json: policy({ name: 'existing-a' }), status: 409, code: 'DUPLICATE_NAME' },
  { description: 'PUT that renames onto an existing name', method: 'PUT', path: `${P}/existing-b`, json: policy({ name: 'existing-a' }), status: 409, code: 'DUPLICATE_NAME' },
  { description: 'PUT on a file-managed policy', method: 'PUT', path: `${P}/from-file`, json: policy({ name: 'from-file' }), status: 409, code: 'FILE_MANAGED' },
  { description: 'DELETE on a file-managed policy', method: 'DELETE', path: `${P}/from-file`, status: 409, code: 'FILE_MANAGED' },
  { description: 'disable a file-managed policy (pause it instead)', method: 'POST', path: `${P}/from-file/disable`, status: 409, code: 'FILE_MANAGED' },
  { description: 'PATCH on a file-managed policy', method: 'PATCH', path: `${P}/from-file`, headers: MERGE_PATCH_TYPE, json: { max_replicas: 6 }, status: 409, code: 'FILE_MANAGED' },
];

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

/** The table as markdown: bad input -> status, code and field pointers. */
export function badInputTableMarkdown(rows: readonly BadInput[] = BAD_INPUTS): string {
  const lines = [
    '# API errors: bad input -> status',
    '',
    '<!-- Generated by test/api-bad-input.test.ts (WRITE_DOCS=1 npx tap test/api-bad-input.test.ts). Do not edit by hand. -->',
    '',
    'Every answer below is `application/problem+json` with `type`, `title`, `status`, `detail` and `code`;',
    'validation answers add `errors: [{field, message}]`, `field` a JSON pointer (`""` is the whole body).',
    'No bad input answers 5xx, and a rejected write stores nothing. Fixtures: API-managed policies',
    '`existing-a` and `existing-b`, and `from-file`, managed by a policy file.',
    '',
    '| Bad input | Request | Status | Code | Fields |',
    '|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const fields = r.fields === undefined ? '' : r.fields.map((f) => `\`${f === '' ? '""' : f}\``).join(', ');
    lines.push(`| ${cell(r.description)} | \`${cell(`${r.method} ${r.path.length > 90 ? `${r.path.slice(0, 87)}...` : r.path}`)}\` | ${r.status} | ${r.code} | ${cell(fields)} |`);
  }
  return `${lines.join('\n')}\n`;
}

t.test('every bad input answers its status as problem+json and stores nothing', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const problemValid = validator(PROBLEM_SCHEMA_ID);
  for (const name of ['existing-a', 'existing-b']) await app.policies.create(policy({ name }));
  await app.storage.syncSource('policies/team.yaml', [app.policies.parse(policy({ name: 'from-file' }), { source: 'policies/team.yaml' })]);
  const snapshot = async (): Promise<unknown> => (await app.storage.listPolicies({ limit: 1000, offset: 0 })).policies;
  const before = await snapshot();
  t.equal((before as unknown[]).length, 3);

  for (const row of BAD_INPUTS) {
    const label = `${row.description}: ${row.method} ${row.path.slice(0, 80)}`;
    const init: RequestInit = { method: row.method };
    const body = row.raw ?? (row.json !== undefined ? JSON.stringify(row.json) : undefined);
    if (body !== undefined) init.body = body;
    init.headers = row.headers ?? (body !== undefined ? JSON_TYPE : {});
    const res = await fetch(`${app.root}${row.path}`, init);
    const text = await res.text();
    t.ok(res.status < 500, `${label}: not a 5xx (${res.status})`);
    t.equal(res.status, row.status, `${label}: status`);
    t.match(res.headers.get('content-type'), /^application\/problem\+json/, `${label}: problem+json`);
    let problem: Record<string, unknown> = {};
    try {
      problem = JSON.parse(text) as Record<string, unknown>;
    } catch {
      t.fail(`${label}: body is not JSON: ${text.slice(0, 200)}`);
    }
    t.ok(problemValid(problem), `${label}: matches problem.schema.json`);
    if (row.status === 405) {
      const allow = res.headers.get('allow') ?? '';
      t.match(allow, /^[A-Z]+(, [A-Z]+)*$/, `${label}: 405 names the allowed methods (${allow})`);
      t.notOk(allow.split(', ').includes(row.method), `${label}: and not the refused one`);
    }
    t.match(problem, { type: /^https:\/\//, title: String, status: row.status, detail: String, code: row.code }, `${label}: problem fields`);
    if (row.fields !== undefined) {
      const errors = (problem['errors'] ?? []) as Array<{ field: string; message: string }>;
      t.same(errors.map((e) => e.field).sort(), [...row.fields].sort(), `${label}: fields ${JSON.stringify(errors)}`);
      for (const e of errors) t.ok(typeof e.message === 'string' && e.message.length > 0, `${label}: ${e.field} has a message`);
    }
    t.same(await snapshot(), before, `${label}: nothing stored`);
  }
});

t.test('the server still answers after the bad inputs (no connection left broken)', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  const big = await fetch(`${app.api}/policies`, { method: 'POST', headers: JSON_TYPE, body: HUGE });
  t.equal(big.status, 413);
  await big.text();
  const ok = await fetch(`${app.api}/policies`, { method: 'POST', headers: JSON_TYPE, body: JSON.stringify(policy()) });
  t.equal(ok.status, 201);
});

t.test('the table has a row for each documented kind of mistake', async (t) => {
  const statuses = new Set(BAD_INPUTS.map((r) => r.status));
  for (const s of [400, 404, 405, 409, 413, 415, 422]) t.ok(statuses.has(s), `a row answers ${s}`);
  const md = badInputTableMarkdown();
  t.equal(md.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| Bad input')).length, BAD_INPUTS.length);
  if (process.env['WRITE_DOCS'] === '1') {
    const url = new URL('../docs/api-errors-table.md', import.meta.url);
    await mkdir(new URL('.', url), { recursive: true });
    await writeFile(url, md);
  }
});

// A valid policy whose every part the property below may break.
const FULL = {
  name: 'fuzzed',
  target_type: 'cdc-worker',
  target_id: '550e8400-e29b-41d4-a716-446655440000',
  min_replicas: 1,
  max_replicas: 10,
  cooldown_seconds: 300,
  max_hourly_cost: 20,
  cost_per_replica_hour: 0.5,
  scale_to_zero: false,
  on_metric_error: 'fallback',
  fallback: { after_failures: 3, replicas: 4 },
  scale_up_rules: [rule({ duration: '5m', source: 'prometheus' })],
  scale_down_rules: [downRule({ duration_seconds: 600 })],
  schedules: [schedule({ timezone: 'Europe/Budapest', duration: '9h', mode: 'floor' })],
};

function paths(v: unknown, at: Array<string | number> = []): Array<Array<string | number>> {
  if (Array.isArray(v)) return [at, ...v.flatMap((x, i) => paths(x, [...at, i]))];
  if (typeof v === 'object' && v !== null) return [at, ...Object.entries(v).flatMap(([k, x]) => paths(x, [...at, k]))];
  return [at];
}
const FULL_PATHS = paths(FULL).filter((p) => p.length > 0);

function mutate(doc: unknown, path: Array<string | number>, value: unknown, remove: boolean): unknown {
  const copy = structuredClone(doc) as Record<string | number, unknown>;
  let parent: Record<string | number, unknown> = copy;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path.at(-1) as string | number;
  if (remove) delete parent[last];
  else parent[last] = value;
  return copy;
}

const INTERESTING = fc.constantFrom<unknown>(
  null, true, false, 0, -1, 1, 2.5, 100001, 1e308, -0, '', ' ', 'x', 'A', '5x', '0', '8d', 'Europe/Budapest', 'Nowhere/City',
  '61 * * * *', '0 0 8 * * 1-5', 'not-a-uuid', 'prometheus', 'fallback', 'gt', [], {}, [null], 'x'.repeat(9000),
);

t.test('property: no mutation of a valid policy, and no query string, gets a 5xx', async (t) => {
  const app = await startTestApp();
  t.teardown(() => app.close());
  t.equal((await fetch(`${app.api}/policies`, { method: 'POST', headers: JSON_TYPE, body: JSON.stringify(FULL) })).status, 201, 'the base is valid');
  await app.policies.create(policy({ name: 'target' }));
  const mutation = fc.record({
    path: fc.constantFrom(...FULL_PATHS),
    value: fc.oneof(INTERESTING, fc.jsonValue({ maxDepth: 2 })),
    remove: fc.boolean(),
  });
  const statuses = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.constantFrom('POST', 'PUT'), async (mutations, method) => {
      let body: unknown = { ...FULL, name: 'fuzz-candidate' };
      for (const m of mutations) {
        try {
          body = mutate(body, m.path, m.value, m.remove);
        } catch {
          // an earlier mutation removed or replaced the parent; keep the body as it is
        }
      }
      const url = method === 'POST' ? `${app.api}/policies` : `${app.api}/policies/target`;
      const res = await fetch(url, { method, headers: JSON_TYPE, body: JSON.stringify(body) });
      const answer = (await res.json()) as { id?: string; name?: string };
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status === 201 && answer.id !== undefined) await fetch(`${app.api}/policies/${answer.id}`, { method: 'DELETE' });
      if (res.status === 200 && answer.name !== 'target') {
        // PUT renamed it: rename back so the next run finds it.
        await fetch(`${app.api}/policies/${answer.id ?? ''}`, { method: 'PUT', headers: JSON_TYPE, body: JSON.stringify(policy({ name: 'target' })) });
      }
      return [200, 201, 409, 422].includes(res.status);
    }),
    { numRuns: 400 },
  );
  t.ok((statuses.get(422) ?? 0) > 0, `mutations were refused (${JSON.stringify([...statuses])})`);
  t.ok((statuses.get(201) ?? 0) + (statuses.get(200) ?? 0) > 0, 'some mutations stayed valid');

  const param = fc.constantFrom('limit', 'offset', 'enabled', 'target_type', 'cursor', 'policy_id', 'action', 'since', 'until', 'dry_run');
  const queryValue = fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('0', '-1', '1000', '1001', 'true', '2026-01-28', '2026-02-29T00:00:00Z', 'scale_up'));
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(param, queryValue), { maxLength: 4 }), fc.constantFrom('/policies', '/history', '/policies/target/history'), async (pairs, route) => {
      const qs = pairs.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
      const res = await fetch(`${app.api}${route}?${qs}`);
      await res.arrayBuffer();
      return res.status === 200 || res.status === 400;
    }),
    { numRuns: 300 },
  );
});

t.test('errors from inside: a library client error stays 4xx, anything else is a 500 that reveals nothing', async (t) => {
  const app = await startTestApp({}, {
    extraRoutes: [
      (scaling) => {
        scaling.get('/test/client-error', () => {
          throw Object.assign(new Error('request timed out'), { status: 408, expose: true });
        });
        scaling.get('/test/crash', () => {
          throw new Error('secret internal detail at /srv/db');
        });
      },
    ],
  });
  t.teardown(() => app.close());
  const client = await fetch(`${app.api}/test/client-error`);
  t.equal(client.status, 400);
  t.match(client.headers.get('content-type'), /^application\/problem\+json/);
  t.match(await client.json(), { status: 400, code: 'BAD_REQUEST', detail: 'request timed out' });
  const crash = await fetch(`${app.api}/test/crash`);
  t.equal(crash.status, 500);
  t.match(crash.headers.get('content-type'), /^application\/problem\+json/);
  const text = await crash.text();
  t.notMatch(text, /secret|\/srv|at .*\.ts/, 'no message or stack from inside');
  t.match(JSON.parse(text), { status: 500, code: 'INTERNAL', title: String, detail: String });
});
