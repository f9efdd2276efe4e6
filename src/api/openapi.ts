import type Koa from 'koa';
import { loadSchema } from '../schemas.js';
import { MERGE_PATCH_TYPES } from '../policy/policy-controller.js';
import { YAML_TYPES } from './body.js';
import { API_PREFIX } from './app.js';

type Json = Record<string, unknown>;

/** One documented operation; the route table below is the API's documentation. */
interface Operation {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  path: string;
  summary: string;
  tag: string;
  scope?: 'read' | 'write' | 'none';
  body?: 'Policy' | 'PolicyPatch' | 'PauseRequest' | 'EvaluateRequest' | 'BacktestRequest' | 'BacktestInlineRequest';
  /** Media types the body may be sent as; default application/json. */
  bodyTypes?: readonly string[];
  bodyRequired?: boolean;
  ok: { status: number; schema?: string; description: string; contentType?: string };
  query?: Array<{ name: string; schema: Json; description: string }>;
  errors: number[];
}

/** The pause fields of a policy's answer and state (POST .../pause, lifted by POST .../enable). */
const PAUSE_PROPERTIES: Json = {
  paused: { type: 'boolean', readOnly: true, description: 'Whether the policy is paused: the loop neither evaluates nor executes it. Set by POST .../pause, lifted by POST .../enable; a body may carry it only as answered.' },
  paused_at: { type: ['string', 'null'], format: 'date-time', readOnly: true, description: 'When the pause began.' },
  paused_reason: { type: ['string', 'null'], readOnly: true, description: 'The reason the pause request gave.' },
};

const historyIdParam = { name: 'id', in: 'path', required: true, description: 'History row id (UUID).', schema: { type: 'string', format: 'uuid' } };
const fileParam = { name: 'file', in: 'path', required: true, description: 'A file name of the built console.', schema: { type: 'string' } };
const idParam = { name: 'id', in: 'path', required: true, description: 'Policy id (UUID) or policy name.', schema: { type: 'string' } };
const listQuery = [
  { name: 'limit', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 }, description: 'Page size.' },
  { name: 'offset', schema: { type: 'integer', minimum: 0, default: 0 }, description: 'Rows to skip.' },
  { name: 'enabled', schema: { type: 'boolean' }, description: 'Only enabled (true) or disabled (false) policies.' },
  { name: 'target_type', schema: { type: 'string' }, description: 'Only policies for this target type.' },
];
const overviewQuery = [
  { name: 'limit', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 }, description: 'Page size.' },
  { name: 'offset', schema: { type: 'integer', minimum: 0, default: 0 }, description: 'Rows to skip.' },
  { name: 'q', schema: { type: 'string', maxLength: 253 }, description: 'Only policies whose name, target id, target type, description or file contains this text (any case).' },
  { name: 'enabled', schema: { type: 'boolean' }, description: 'Only enabled (true) or disabled (false) policies.' },
  { name: 'dry_run', schema: { type: 'boolean' }, description: 'Only policies in dry run (true) or acting (false).' },
  { name: 'paused', schema: { type: 'boolean' }, description: 'Only paused (true) or running (false) policies.' },
  { name: 'source', schema: { enum: ['api', 'file'] }, description: 'Only policies managed over the API, or by policy files.' },
  { name: 'target_type', schema: { type: 'string' }, description: 'Only policies for this target type.' },
];
const costQuery = [
  ...overviewQuery,
  { name: 'since', schema: { type: 'string', format: 'date-time' }, description: 'Start of the range; default 24 hours before until.' },
  { name: 'until', schema: { type: 'string', format: 'date-time' }, description: 'End of the range; default (and at most) now.' },
  { name: 'sort', schema: { enum: ['cost', 'replica_hours', 'name'], default: 'cost' }, description: 'Order of the policies: most costly first, most replica-hours first, or by name.' },
];
const timelineQuery = [
  { name: 'since', schema: { type: 'string', format: 'date-time' }, description: 'Start of the range; default 24 hours before until.' },
  { name: 'until', schema: { type: 'string', format: 'date-time' }, description: 'End of the range; default (and at most) now.' },
];
const formatQuery = { name: 'format', schema: { enum: ['json', 'svg'], default: 'json' }, description: 'svg answers the chart as image/svg+xml.' };
const historyQuery = [
  { name: 'limit', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 }, description: 'Page size.' },
  { name: 'cursor', schema: { type: 'string' }, description: 'next_cursor of the previous page.' },
  { name: 'policy_id', schema: { type: 'string', format: 'uuid' }, description: 'Only rows of this policy.' },
  { name: 'policy_name', schema: { type: 'string', maxLength: 253 }, description: 'Only rows recorded under this policy name (also finds the rows of a deleted policy).' },
  { name: 'action', schema: { enum: ['scale_up', 'scale_down', 'scheduled', 'fallback', 'none'] }, description: 'Only rows with this action.' },
  { name: 'status', schema: { enum: ['succeeded', 'failed', 'blocked'] }, description: 'Only rows with this status: succeeded or failed executions (dry runs included; see dry_run), or changes a bound, the cost cap or cooldown blocked.' },
  { name: 'since', schema: { type: 'string', format: 'date-time' }, description: 'Rows executed at or after this time.' },
  { name: 'until', schema: { type: 'string', format: 'date-time' }, description: 'Rows executed before this time.' },
  { name: 'dry_run', schema: { type: 'boolean' }, description: 'Only dry-run (true) or real (false) rows.' },
];

export const OPERATIONS: Operation[] = [
  { method: 'post', path: '/policies', tag: 'policies', summary: 'Create a policy', body: 'Policy', bodyRequired: true, ok: { status: 201, schema: 'Policy', description: 'The created policy.' }, errors: [400, 401, 403, 408, 409, 413, 415, 422] },
  { method: 'get', path: '/policies', tag: 'policies', summary: 'List policies', query: listQuery, ok: { status: 200, schema: 'PolicyList', description: 'A page of policies.' }, errors: [400, 401, 403] },
  { method: 'get', path: '/policies/{id}', tag: 'policies', summary: 'Get a policy by id or name', ok: { status: 200, schema: 'Policy', description: 'The policy.' }, errors: [400, 401, 403, 404] },
  { method: 'put', path: '/policies/{id}', tag: 'policies', summary: 'Replace a policy (atomic)', body: 'Policy', bodyRequired: true, ok: { status: 200, schema: 'Policy', description: 'The policy as stored.' }, errors: [400, 401, 403, 404, 408, 409, 413, 415, 422] },
  { method: 'patch', path: '/policies/{id}', tag: 'policies', summary: 'Change some fields of a policy (JSON Merge Patch, RFC 7396); the result is validated as a PUT body', body: 'PolicyPatch', bodyRequired: true, bodyTypes: MERGE_PATCH_TYPES, ok: { status: 200, schema: 'Policy', description: 'The policy as stored.' }, errors: [400, 401, 403, 404, 408, 409, 413, 415, 422] },
  { method: 'delete', path: '/policies/{id}', tag: 'policies', summary: 'Delete a policy (its history stays)', ok: { status: 204, description: 'Deleted.' }, errors: [400, 401, 403, 404, 409] },
  { method: 'post', path: '/policies/{id}/enable', tag: 'policies', summary: 'Enable a policy and lift its pause (for a file-managed policy: lift its pause)', ok: { status: 200, schema: 'Policy', description: 'The policy.' }, errors: [400, 401, 403, 404, 409] },
  { method: 'post', path: '/policies/{id}/disable', tag: 'policies', summary: 'Disable a policy (not a file-managed one: pause it instead)', ok: { status: 200, schema: 'Policy', description: 'The policy.' }, errors: [400, 401, 403, 404, 409] },
  { method: 'post', path: '/policies/{id}/pause', tag: 'policies', summary: 'Pause a policy, file-managed ones included: the loop neither evaluates nor executes it until POST .../enable', body: 'PauseRequest', ok: { status: 200, schema: 'Policy', description: 'The policy, paused (a paused policy keeps its pause as it was).' }, errors: [400, 401, 403, 404, 408, 413, 415, 422] },
  { method: 'post', path: '/policies/{id}/evaluate', tag: 'engine', summary: 'Evaluate a policy now (a dry run unless {"dry_run": false})', body: 'EvaluateRequest', ok: { status: 200, schema: 'DecisionRecord', description: 'The decision record.' }, errors: [400, 401, 403, 404, 408, 415, 422] },
  { method: 'get', path: '/policies/{id}/state', tag: 'engine', summary: 'Engine state of a policy', ok: { status: 200, schema: 'PolicyState', description: 'Current replicas, cooldown, failures, last decision, next schedule fires.' }, errors: [400, 401, 403, 404] },
  { method: 'post', path: '/policies/{id}/backtest', tag: 'backtest', summary: 'Backtest a stored policy over metric history (?format=svg for a chart); a read token may send it', body: 'BacktestRequest', bodyRequired: true, query: [formatQuery], ok: { status: 200, schema: 'BacktestResult', description: 'Timeline and summary (streamed), or an SVG chart.' }, errors: [400, 401, 403, 404, 408, 415, 422, 429] },
  { method: 'post', path: '/backtest', tag: 'backtest', summary: 'Backtest an inline policy over metric history (?format=svg for a chart)', body: 'BacktestInlineRequest', bodyRequired: true, query: [formatQuery], ok: { status: 200, schema: 'BacktestResult', description: 'Timeline and summary (streamed), or an SVG chart.' }, errors: [400, 401, 403, 408, 415, 422, 429] },
  { method: 'get', path: '/policies/{id}/history', tag: 'history', summary: 'History of one policy, newest first', query: historyQuery.filter((q) => q.name !== 'policy_id' && q.name !== 'policy_name'), ok: { status: 200, schema: 'HistoryPage', description: 'A page of history rows; gzip-compressed (Content-Encoding: gzip) when Accept-Encoding takes gzip and the page was asked for before.' }, errors: [400, 401, 403, 404] },
  { method: 'get', path: '/history/{id}', tag: 'history', summary: 'One history row, with its decision record', ok: { status: 200, schema: 'HistoryRow', description: 'The row.' }, errors: [400, 401, 403, 404] },
  { method: 'get', path: '/policies/{id}/timeline', tag: 'history', summary: 'A policy\'s recorded decisions over a range (at most 31 days; default the last 24 hours), oldest first, with each rule\'s value and verdict but not the whole record', query: timelineQuery, ok: { status: 200, schema: 'Timeline', description: 'The decisions, and what the rule ids stand for.' }, errors: [400, 401, 403, 404] },
  { method: 'get', path: '/history', tag: 'history', summary: 'Scaling history, newest first', query: historyQuery, ok: { status: 200, schema: 'HistoryPage', description: 'A page of history rows; gzip-compressed (Content-Encoding: gzip) when Accept-Encoding takes gzip and the page was asked for before.' }, errors: [400, 401, 403] },
  { method: 'post', path: '/validate', tag: 'policies', summary: 'Check a policy as POST /policies would (but for name uniqueness), storing nothing: JSON (one policy) or YAML text (a policy file; problems carry line and column). A read token may send it.', body: 'Policy', bodyRequired: true, bodyTypes: ['application/json', ...YAML_TYPES], ok: { status: 200, schema: 'ValidateResult', description: 'Valid: the policies as they would be stored.' }, errors: [400, 401, 403, 408, 413, 415, 422] },
  { method: 'get', path: '/overview', tag: 'console', summary: 'Every policy with its engine state (replicas now and wanted, last decision, cooldown left, next schedule fire), searched, filtered and paged', query: overviewQuery, ok: { status: 200, schema: 'Overview', description: 'A page of policies with their state, the count that matched, and counts over all policies.' }, errors: [400, 401, 403] },
  { method: 'get', path: '/cost', tag: 'console', summary: 'Replica-hours and cost per policy over a range (at most 31 days), from the replica changes the daemon made and recorded', query: costQuery, ok: { status: 200, schema: 'CostReport', description: 'Totals, and a page of policies (most costly first by default).' }, errors: [400, 401, 403] },
  { method: 'get', path: '/sources', tag: 'files', summary: 'Policy files: status, policies in force, errors', ok: { status: 200, schema: 'SourceList', description: 'Every policy file.' }, errors: [401, 403] },
  { method: 'get', path: '/plugins', tag: 'plugins', summary: 'Plugins found, loaded or failed', ok: { status: 200, schema: 'PluginList', description: 'Every plugin folder found.' }, errors: [401, 403] },
];

/** Routes outside /api/v1/scaling. */
export const ROOT_OPERATIONS: Operation[] = [
  { method: 'get', path: '/healthz', tag: 'probes', summary: 'Liveness: the process answers', scope: 'none', ok: { status: 200, description: 'Alive.' }, errors: [] },
  { method: 'get', path: '/readyz', tag: 'probes', summary: 'Readiness with detail; 503 when storage is unreachable', scope: 'none', ok: { status: 200, description: 'Ready or degraded, with detail per check.' }, errors: [503] },
  { method: 'get', path: '/metrics', tag: 'probes', summary: 'Prometheus metrics of the daemon', scope: 'none', ok: { status: 200, description: 'Prometheus text format.', contentType: 'text/plain' }, errors: [] },
  { method: 'get', path: '/ui', tag: 'console', summary: 'The web console (/ui redirects to /ui/; its files need no token: the page asks for one and sends it to the API)', scope: 'none', ok: { status: 200, description: 'The console page.', contentType: 'text/html' }, errors: [404] },
  { method: 'get', path: '/ui/{file}', tag: 'console', summary: 'A file of the web console (app.js, app.css)', scope: 'none', ok: { status: 200, description: 'The file.', contentType: 'application/octet-stream' }, errors: [404] },
  { method: 'get', path: '/api/v1/openapi.json', tag: 'meta', summary: 'This document', ok: { status: 200, description: 'OpenAPI 3.1 document.' }, errors: [] },
];

const STATUS_TEXT: Record<number, string> = {
  400: 'The request cannot be read (malformed JSON, bad query parameter, bad id).',
  401: 'A bearer token is required, or the one sent is not valid.',
  403: 'The token lacks the scope this request needs.',
  404: 'No such policy (for /ui/: no such file, or the console was not built).',
  408: 'The request body did not arrive in time (request_body_timeout, 30 s by default); the connection is closed.',
  409: 'Duplicate name, the policy is managed by a policy file, or (a real evaluation) the policy is paused or its state changed meanwhile.',
  413: 'The body is larger than 1 MiB.',
  415: 'The body is not application/json (a PATCH: not application/merge-patch+json or application/json; POST /validate also takes application/yaml).',
  422: 'The body is not a valid policy or request (a backtest too large to hold names its limit); errors lists every problem with a JSON pointer.',
  429: 'As many backtests as max_concurrent_backtests (or as much history as the daemon holds at once) are running; retry after Retry-After seconds.',
  503: 'Storage is unavailable.',
};

/** Moves a schema's $defs into components and rewrites its refs, so every tool can follow them. */
function hoist(schema: Json, prefix: string, components: Json): Json {
  const defs = (schema['$defs'] ?? {}) as Record<string, Json>;
  const name = (key: string): string => `${prefix}${key.charAt(0).toUpperCase()}${key.slice(1)}`;
  const rewrite = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(rewrite);
    if (node === null || typeof node !== 'object') return node;
    const out: Json = {};
    for (const [k, v] of Object.entries(node as Json)) {
      if (k === '$ref' && typeof v === 'string' && v.startsWith('#/$defs/')) out[k] = `#/components/schemas/${name(v.slice('#/$defs/'.length))}`;
      else if (k !== '$defs' && k !== '$id' && k !== '$schema') out[k] = rewrite(v);
    }
    return out;
  };
  for (const [k, v] of Object.entries(defs)) components[name(k)] = rewrite(v);
  return rewrite(schema) as Json;
}

/** The OpenAPI 3.1 document, built from the same JSON Schemas that validate requests. */
export function buildOpenApi(version: string): Json {
  const schemas: Json = {};
  const policy = hoist(loadSchema('policy.schema.json'), 'Policy', schemas);
  // Answers say whether the policy is paused; a body may carry these only as answered.
  const properties = (policy['properties'] ?? {}) as Json;
  policy['properties'] = { ...PAUSE_PROPERTIES, ...properties };
  schemas['Policy'] = policy;
  schemas['PolicyPatch'] = {
    type: 'object',
    description:
      'A JSON Merge Patch (RFC 7396) of the policy: a member replaces the policy\'s, null removes it (its default applies), an object merges into the member it names, and an array (rules, schedules) replaces it whole. The result must be a valid policy, as a PUT body; errors point into it. Rules and schedules left unchanged keep their ids.',
  };
  schemas['PauseRequest'] = {
    type: 'object',
    additionalProperties: false,
    properties: { reason: { type: 'string', maxLength: 1000, description: 'Why the policy is paused; shown with the pause.' } },
  };
  schemas['Problem'] = hoist(loadSchema('problem.schema.json'), 'Problem', schemas);
  schemas['PolicyList'] = {
    type: 'object',
    required: ['policies', 'total_count'],
    properties: { policies: { type: 'array', items: { $ref: '#/components/schemas/Policy' } }, total_count: { type: 'integer' } },
  };
  schemas['EvaluateRequest'] = { type: 'object', additionalProperties: false, properties: { dry_run: { type: 'boolean', default: true } } };
  schemas['RuleVerdict'] = {
    type: 'object',
    properties: {
      id: { type: 'string' }, name: { type: ['string', 'null'], description: 'The rule\'s name, by which a condition tree uses it; null without one.' },
      direction: { enum: ['scale_up', 'scale_down'] }, metric: { type: 'string' }, source: { type: 'string' },
      operator: { type: 'string' }, threshold: { type: 'number' }, window_seconds: { type: 'integer' }, step_seconds: { type: 'integer' },
      samples: { type: 'integer' }, value: { type: ['number', 'null'] }, latest: { type: ['number', 'null'] }, held: { type: 'boolean' },
      error: { type: ['string', 'null'] }, detail: { type: ['string', 'null'] },
    },
  };
  schemas['DirectionVerdict'] = {
    type: 'object',
    description: 'One direction of a decision: how its rules combined (a match, or a condition tree with each node\'s verdict), whether it held, and its step.',
    properties: {
      match: { enum: ['all', 'any', null], description: 'all or any; null when a condition tree combined the rules.' },
      when: { oneOf: [{ type: 'null' }, { $ref: '#/components/schemas/ConditionVerdict' }], description: 'The condition tree (scale_up_when / scale_down_when) with each node\'s verdict; null without one.' },
      decided_by: { type: ['string', 'null'], description: 'The branch of the tree that decided, as text (such as "lag_high and buffer_deep"); null when the direction did not hold or has no tree.' },
      rules: { type: 'integer' }, held: { type: 'boolean' }, step: { type: 'integer' },
    },
  };
  schemas['ConditionVerdict'] = {
    description: 'A node of a condition tree with its verdict: {rule, held}, {all: [...], held}, {any: [...], held} or {not: node, held}.',
    type: 'object',
    required: ['held'],
    properties: {
      held: { type: 'boolean', description: 'Whether the node holds for certain: a rule whose metric failed does not hold, and a not over it does not hold either.' },
      rule: { type: 'string' },
      error: { const: true, description: 'On a rule whose metric failed (no value, or the source answered an error).' },
      all: { type: 'array', items: { $ref: '#/components/schemas/ConditionVerdict' } },
      any: { type: 'array', items: { $ref: '#/components/schemas/ConditionVerdict' } },
      not: { $ref: '#/components/schemas/ConditionVerdict' },
    },
  };
  schemas['DecisionRecord'] = {
    type: 'object',
    description: 'The explanation of one evaluation.',
    required: ['policy_id', 'evaluated_at', 'current_replicas', 'desired_replicas', 'action', 'reason_code', 'reason', 'should_scale', 'dry_run', 'triggered_rules', 'rules'],
    properties: {
      policy_id: { type: 'string' }, policy_name: { type: 'string' }, evaluated_at: { type: 'string', format: 'date-time' },
      current_replicas: { type: 'integer' }, desired_replicas: { type: 'integer' },
      action: { enum: ['scale_up', 'scale_down', 'scheduled', 'fallback', 'none'] },
      reason_code: { type: 'string' }, reason: { type: 'string' }, should_scale: { type: 'boolean' }, dry_run: { type: 'boolean' },
      triggered_by: { type: ['string', 'null'] }, triggered_rules: { type: 'array', items: { type: 'string' } },
      rules: { type: 'array', items: { $ref: '#/components/schemas/RuleVerdict' } },
      directions: {
        type: 'object',
        description: 'How each direction\'s rules combined, and which direction was chosen.',
        properties: {
          scale_up: { $ref: '#/components/schemas/DirectionVerdict' },
          scale_down: { $ref: '#/components/schemas/DirectionVerdict' },
          chosen: { enum: ['scale_up', 'scale_down', null] },
        },
      },
      schedule: { type: ['object', 'null'] }, adjustments: { type: 'array', items: { type: 'object' } },
      cooldown_remaining_seconds: { type: 'integer' }, consecutive_metric_failures: { type: 'integer' },
      current_replicas_from: { enum: ['executor', 'state', 'min_replicas'] },
      dry_run_from: { type: 'array', items: { enum: ['policy', 'request', 'config'] } },
      wanted_replicas: { type: 'integer', description: 'What rules, target tracking, a schedule or the fallback wanted, before bounds, the cost cap and cooldown.' },
      blocked: { type: 'boolean', description: 'True when a bound, the cost cap or cooldown stopped a change the rules wanted.' },
      target_tracking: { type: 'array', items: { $ref: '#/components/schemas/TrackingVerdict' }, description: 'Each target-tracking entry: value, formula, opinion and tolerance verdict (empty without target tracking).' },
      proposal: { type: ['integer', 'null'], description: 'The highest opinion of step rules and target tracking, before stabilization and rate limits; null when no one had an opinion.' },
    },
  };
  schemas['TrackingVerdict'] = {
    type: 'object',
    description: 'What one target-tracking entry read and wanted.',
    properties: {
      id: { type: 'string' }, metric: { type: 'string' }, source: { type: 'string' },
      kind: { enum: ['target_per_replica', 'target_value'] }, target: { type: 'number' }, tolerance: { type: 'number' },
      window_seconds: { type: 'integer' }, samples: { type: 'integer' },
      value: { type: ['number', 'null'], description: 'The latest value, or the window average with a duration.' },
      ratio: { type: ['number', 'null'], description: 'value / target (per replica with target_per_replica), judged against the tolerance.' },
      formula: { type: ['string', 'null'], description: 'The arithmetic, e.g. "ceil(4200 / 1000) = 5".' },
      opinion: { type: ['integer', 'null'], description: 'The replicas it wanted; null: no opinion.' },
      outcome: { enum: ['opinion', 'within_tolerance', 'metric_error', 'not_finite'] },
      error: { type: ['string', 'null'] },
    },
  };
  schemas['PolicyState'] = { type: 'object', properties: { policy_id: { type: 'string' }, ...PAUSE_PROPERTIES, current_replicas: { type: ['integer', 'null'] }, cooldown_remaining_seconds: { type: 'integer' }, consecutive_metric_failures: { type: 'integer' }, last_decision: { oneOf: [{ $ref: '#/components/schemas/DecisionRecord' }, { type: 'null' }] }, next_schedule_fires: { type: 'array', items: { type: 'object' } } } };
  schemas['HistoryRow'] = {
    type: 'object',
    properties: {
      id: { type: 'string' }, policy_id: { type: ['string', 'null'] }, policy_name: { type: 'string' }, action: { type: 'string' },
      target_type: { type: 'string' }, target_id: { type: ['string', 'null'] }, previous_replicas: { type: 'integer' }, new_replicas: { type: 'integer' },
      reason: { type: 'string' }, reason_code: { type: ['string', 'null'] }, triggered_by: { enum: ['rule', 'schedule', 'fallback', 'api'] },
      dry_run: { type: 'boolean' }, status: { enum: ['succeeded', 'failed', 'blocked'] }, error: { type: ['string', 'null'] },
      executed_at: { type: 'string', format: 'date-time' }, details: { oneOf: [{ $ref: '#/components/schemas/DecisionRecord' }, { type: 'null' }] },
    },
  };
  schemas['HistoryPage'] = { type: 'object', required: ['history', 'next_cursor'], properties: { history: { type: 'array', items: { $ref: '#/components/schemas/HistoryRow' } }, next_cursor: { type: ['string', 'null'] } } };
  const backtestProps = {
    from: { type: 'string', format: 'date-time' },
    to: { type: 'string', format: 'date-time' },
    step: { oneOf: [{ type: 'string', description: 'A duration such as 1m.' }, { type: 'integer', minimum: 1 }], default: '1m' },
    initial_replicas: { type: 'integer', minimum: 0 },
  };
  schemas['BacktestRequest'] = { type: 'object', additionalProperties: false, required: ['from', 'to'], properties: backtestProps };
  schemas['BacktestInlineRequest'] = { type: 'object', additionalProperties: false, required: ['policy', 'from', 'to'], properties: { policy: { $ref: '#/components/schemas/Policy' }, ...backtestProps } };
  schemas['BacktestResult'] = {
    type: 'object',
    properties: {
      policy: {
        type: 'object',
        description: 'The policy backtested: its id and name, and what the ids the timeline is keyed by stand for (an inline policy gets fresh ids).',
        properties: {
          id: { type: 'string' }, name: { type: 'string' },
          rules: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, direction: { enum: ['scale_up', 'scale_down'] }, metric: { type: 'string' }, operator: { type: 'string' }, threshold: { type: 'number' } } } },
          target_tracking: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, metric: { type: 'string' }, kind: { enum: ['target_per_replica', 'target_value'] }, target: { type: 'number' } } } },
        },
      },
      requests: { type: 'integer', description: 'Metric requests made (one per distinct query, per chunk).' },
      summary: { type: 'object', description: 'Actions by kind, replica-hours, estimated cost, scale-up pending minutes, peak replicas.' },
      timeline: {
        type: 'array',
        items: {
          type: 'object',
          description: 'One evaluation.',
          properties: {
            time: { type: 'string', format: 'date-time' },
            values: { type: 'object', additionalProperties: { type: ['number', 'null'] }, description: 'By rule id: the latest value; by target-tracking entry id: the value it used.' },
            held: { type: 'object', additionalProperties: { type: 'boolean' }, description: 'Each rule verdict, by rule id.' },
            replicas_before: { type: 'integer' }, replicas: { type: 'integer' },
            proposal: { type: ['integer', 'null'], description: 'Present with target tracking: the highest opinion before stabilization and rate limits (null: none).' },
            action: { enum: ['scale_up', 'scale_down', 'scheduled', 'fallback', 'none'] }, reason_code: { type: 'string' }, reason: { type: 'string' },
          },
        },
      },
      branches: {
        type: 'object',
        description: 'Only for a policy with a condition tree (scale_up_when or scale_down_when), after the summary: for each direction, the runs of consecutive evaluations at which its tree held through one branch, oldest first; null for a direction without a tree.',
        required: ['scale_up', 'scale_down'],
        properties: {
          scale_up: { oneOf: [{ type: 'array', items: { $ref: '#/components/schemas/BranchSpan' } }, { type: 'null' }] },
          scale_down: { oneOf: [{ type: 'array', items: { $ref: '#/components/schemas/BranchSpan' } }, { type: 'null' }] },
        },
      },
    },
  };
  schemas['BranchSpan'] = { type: 'object', required: ['branch', 'from', 'to', 'evaluations'], properties: { branch: { type: 'string', description: 'The deciding branch as text, as decision records give it in decided_by.' }, from: { type: 'string', format: 'date-time', description: 'The first evaluation of the run.' }, to: { type: 'string', format: 'date-time', description: 'The last evaluation of the run.' }, evaluations: { type: 'integer', minimum: 1 } } };
  schemas['Timeline'] = {
    type: 'object',
    required: ['policy_id', 'since', 'until', 'truncated', 'rules', 'target_tracking', 'decisions'],
    properties: {
      policy_id: { type: 'string' }, since: { type: 'string', format: 'date-time' }, until: { type: 'string', format: 'date-time' },
      truncated: { type: 'boolean', description: 'True when the range holds more than 50,000 decisions: the newest 50,000 are answered.' },
      rules: { type: 'array', description: 'Every rule id found in the decisions, with its direction, metric, operator and threshold (as last recorded).', items: { type: 'object' } },
      target_tracking: { type: 'array', description: 'Every target-tracking entry id found, with its metric, kind and target.', items: { type: 'object' } },
      decisions: {
        type: 'array',
        description: 'Oldest first: the fields of a history row but its policy and target, with has_record, values (by rule or entry id) and held (the ids of the rules that held).',
        items: { type: 'object' },
      },
    },
  };
  schemas['ValidateResult'] = { type: 'object', required: ['valid', 'policies'], properties: { valid: { const: true }, policies: { type: 'array', items: { $ref: '#/components/schemas/Policy' }, description: 'The policies as they would be stored (ids are not kept).' } } };
  schemas['OverviewRow'] = {
    type: 'object',
    properties: {
      id: { type: 'string' }, name: { type: 'string' }, description: { type: ['string', 'null'] }, target_type: { type: 'string' }, target_id: { type: ['string', 'null'] },
      source: { type: 'string', description: '"api", or the policy file\'s path.' }, enabled: { type: 'boolean' }, dry_run: { type: 'boolean' }, paused: { type: 'boolean' }, paused_reason: { type: ['string', 'null'] },
      min_replicas: { type: 'integer' }, max_replicas: { type: 'integer' }, executor: { type: 'string' }, executor_loaded: { type: 'boolean' },
      current_replicas: { type: ['integer', 'null'] }, desired_replicas: { type: ['integer', 'null'], description: 'What the last decision decided.' },
      last_decision: { type: ['object', 'null'], description: 'action, reason_code, reason, evaluated_at and should_scale of the last decision.' },
      last_evaluated_at: { type: ['string', 'null'], format: 'date-time' }, last_change_at: { type: ['string', 'null'], format: 'date-time' }, last_change_kind: { type: ['string', 'null'] },
      cooldown_remaining_seconds: { type: 'integer' }, consecutive_metric_failures: { type: 'integer' },
      next_schedule_fire: { type: ['string', 'null'], format: 'date-time', description: 'The earliest next fire of its enabled schedules.' },
    },
  };
  schemas['Overview'] = {
    type: 'object',
    required: ['policies', 'total_count', 'facets'],
    properties: {
      policies: { type: 'array', items: { $ref: '#/components/schemas/OverviewRow' } },
      total_count: { type: 'integer', description: 'Policies that matched the filters.' },
      facets: { type: 'object', description: 'Counts over all policies: policies, enabled, disabled, dry_run, paused, file, api, and target_types by name.' },
    },
  };
  schemas['CostReport'] = {
    type: 'object',
    properties: {
      since: { type: 'string', format: 'date-time' }, until: { type: 'string', format: 'date-time' },
      totals: { type: 'object', description: 'replica_hours and cost over every matched policy; unpriced_policies (no price configured) and unknown_policies (replicas never known).' },
      total_count: { type: 'integer' },
      policies: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            policy_id: { type: 'string' }, policy_name: { type: 'string' }, target_type: { type: 'string' }, target_id: { type: ['string', 'null'] },
            price_per_replica_hour: { type: ['number', 'null'] }, replica_hours: { type: ['number', 'null'] }, average_replicas: { type: ['number', 'null'] },
            changes: { type: 'integer', description: 'Replica changes in the range.' }, cost: { type: ['number', 'null'], description: 'replica_hours x price; null without a price.' },
          },
        },
      },
    },
  };
  schemas['SourceList'] = { type: 'object', properties: { sources: { type: 'array', items: { type: 'object' } } } };
  schemas['PluginList'] = { type: 'object', properties: { plugins: { type: 'array', items: { type: 'object' } } } };

  const paths: Record<string, Json> = {};
  const add = (op: Operation, base: string): void => {
    const full = `${base}${op.path}`;
    const responses: Json = {
      [op.ok.status]: {
        description: op.ok.description,
        ...(op.ok.schema !== undefined ? { content: { 'application/json': { schema: { $ref: `#/components/schemas/${op.ok.schema}` } } } } : {}),
        ...(op.ok.contentType !== undefined ? { content: { [op.ok.contentType]: { schema: { type: 'string' } } } } : {}),
      },
    };
    for (const status of op.errors) {
      responses[status] = { description: STATUS_TEXT[status] ?? 'Error.', content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } };
    }
    const operation: Json = {
      operationId: `${op.method}${full.replace(/[^a-zA-Z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? '').toUpperCase())}`,
      summary: op.summary,
      tags: [op.tag],
      responses,
      parameters: [...(op.path.includes('{id}') ? [op.path.startsWith('/history/') ? historyIdParam : idParam] : []), ...(op.path.includes('{file}') ? [fileParam] : []), ...(op.query ?? []).map((q) => ({ ...q, in: 'query', required: false }))],
      ...(op.scope === 'none' ? { security: [] } : {}),
      ...(op.body !== undefined
        ? { requestBody: { required: op.bodyRequired === true, content: Object.fromEntries((op.bodyTypes ?? ['application/json']).map((type) => [type, { schema: { $ref: `#/components/schemas/${op.body}` } }])) } }
        : {}),
    };
    paths[full] = { ...(paths[full] ?? {}), [op.method]: operation };
  };
  for (const op of OPERATIONS) add(op, API_PREFIX);
  for (const op of ROOT_OPERATIONS) add(op, '');

  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'Philotes Scaler API',
      version,
      description: 'Scaling policies, evaluations and history of the Philotes scaling engine. Errors are application/problem+json (RFC 9457).',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    tags: ['policies', 'engine', 'backtest', 'history', 'console', 'files', 'plugins', 'probes', 'meta'].map((name) => ({ name })),
    paths,
    components: {
      schemas,
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'Needed when tokens are configured: reads need the read scope, writes the write scope; POST /validate and POST /policies/{id}/backtest change nothing and need only read.' } },
    },
  };
}

/** Every route the app serves, as "METHOD /path/{param}", read from its routers. */
export function servedRoutes(app: Koa): string[] {
  const out = new Set<string>();
  for (const mw of app.middleware) {
    const router = (mw as { router?: { stack: Array<{ path: string; methods: string[] }> } }).router;
    for (const layer of router?.stack ?? []) {
      const path = layer.path.replace(/:([a-zA-Z_]+)/g, '{$1}');
      for (const m of layer.methods) if (m !== 'HEAD') out.add(`${m} ${path}`);
    }
  }
  return [...out].sort();
}
