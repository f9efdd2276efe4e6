/**
 * A simulated Kubernetes API server for tests of the kubernetes executor: an HTTP server on
 * 127.0.0.1 (a random port) that answers JSON the way kube-apiserver does, for the few paths an
 * autoscaler uses. No cluster is involved. It is a simulation written from the Kubernetes API
 * reference (apps/v1 Deployment and StatefulSet, autoscaling/v1 Scale, meta/v1 Status and
 * ListMeta, the API concepts page on resourceVersion, dry run and PATCH content types) and from
 * KEDA's ScaledObject CRD (keda.sh/v1alpha1). Where the reference is silent (message texts,
 * fields omitted when zero), it follows the forms kube-apiserver is known to send; the 400 texts
 * of undecodable bodies are close to, not identical with, the real ones.
 *
 * Paths ({r} is `deployments`, `statefulsets` or `replicasets`; `scaledobjects` is keda.sh/v1alpha1):
 * - GET   /apis/apps/v1/{r}, /apis/keda.sh/v1alpha1/scaledobjects          cluster-wide list
 * - GET   /apis/{group}/{version}/namespaces/{ns}/{r}                       list (?labelSelector)
 * - GET, PUT, PATCH  /apis/{group}/{version}/namespaces/{ns}/{r}/{name}     one object
 * - GET, PUT, PATCH  /apis/apps/v1/namespaces/{ns}/{r}/{name}/scale         autoscaling/v1 Scale
 * - GET   /apis/apps/v1, /apis/keda.sh/v1alpha1                             discovery (APIResourceList)
 *
 * Semantics:
 * - resourceVersion is one global counter, a decimal string, bumped by every stored write
 *   (seeding included). As on the real server, a write that changes nothing is not stored and
 *   keeps the old resourceVersion. Lists carry it in metadata.resourceVersion.
 * - Optimistic concurrency: a PUT or PATCH whose body (after patching) holds a
 *   metadata.resourceVersion other than the stored one is refused with 409 Conflict. A PUT
 *   without one is unconditional for Deployments, StatefulSets and Scales, and refused with 422
 *   for ScaledObjects (custom resources do not allow unconditional updates).
 * - Objects carry metadata name, namespace, uid, resourceVersion, generation, creationTimestamp,
 *   labels and annotations; empty label and annotation maps are omitted, as the API omits them.
 * - generation starts at 1 and is bumped by a change of spec; for Deployments, a change of
 *   metadata.annotations bumps it too (the Deployment strategy does so because annotations are
 *   copied to ReplicaSets). status cannot be written through the object or its scale (the status
 *   subresource is not served); it follows spec.replicas: at once (in the same write) when
 *   statusLagMs is 0, else as a separate write statusLagMs later, which bumps resourceVersion
 *   again, the way the workload controller would (writes within the lag are caught up together,
 *   statusLagMs after the first). settle() applies pending status writes now.
 * - Scale: spec.replicas is omitted when 0 (the field is `omitempty` in autoscaling/v1),
 *   status.replicas is always present, status.selector is the workload's spec.selector in
 *   query-string form ("app=web").
 * - PATCH: application/merge-patch+json (RFC 7386), application/json-patch+json (RFC 6902: add,
 *   remove, replace, move, copy, test) and, for the built-in kinds only,
 *   application/strategic-merge-patch+json. A ScaledObject answers the strategic type with 415
 *   as the real server does for custom resources. PUT takes application/json. A 415 lists the
 *   types the simulator accepts (the real list also names application/apply-patch+yaml).
 * - ?dryRun=All on PUT or PATCH: validated and answered as if applied (generation included),
 *   nothing stored, resourceVersion not bumped. Any other dryRun value is 422.
 * - Validation: negative or non-integer replicas, non-string label or annotation values, and the
 *   ScaledObject CRD's schema (spec.scaleTargetRef.name and spec.triggers required, replica
 *   counts integers).
 * - Errors are meta/v1 Status objects with the real reasons and message forms: 400 BadRequest,
 *   401 Unauthorized (when a bearer token is configured), 403 Forbidden (an RBAC allow-list of
 *   (verb, group, resource[/subresource], namespace) and/or a deny hook), 404 NotFound, 405
 *   MethodNotAllowed, 409 Conflict, 415 UnsupportedMediaType, 422 Invalid, and injected 429
 *   TooManyRequests (with Retry-After), 500 InternalError, 503 ServiceUnavailable, delays and
 *   connection resets, per method and path or for the next N requests.
 * - Every request is logged (method, path, query, content type, body, time, verb, answer code).
 *
 * Left out: watches (?watch is 400), field selectors, set-based label selectors, pagination
 * (limit/continue), resourceVersion semantics of reads (every read is the latest), create and
 * delete through the API (seed with addDeployment etc., remove with remove()), the /status
 * subresource, server-side apply (application/apply-patch+yaml is 415), strategic merge patch's
 * list merge keys and $-directives (strategic patches are merged as JSON merge patches, lists
 * replaced, and a $-directive is 400), managedFields, fieldManager and fieldValidation (ignored),
 * admission (webhooks, quotas, KEDA's validating webhook), other validation of Deployment and
 * StatefulSet fields, immutability checks of metadata (uid and creationTimestamp are kept from
 * the stored object), namespaces as objects (any namespace exists and lists empty), YAML and
 * protobuf, HTTP/2, TLS, and every controller: nothing creates pods, and the KEDA operator does
 * not act on a ScaledObject or its paused-replicas annotation.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { isDeepStrictEqual } from 'node:util';

export type JsonObject = Record<string, unknown>;
export type ResourceName = 'deployments' | 'statefulsets' | 'replicasets' | 'scaledobjects';

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid: string;
  resourceVersion: string;
  generation: number;
  creationTimestamp: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: JsonObject;
  status?: JsonObject;
}

/**
 * One allowed (verb, group, resource, namespace); '*' matches anything. A missing namespace allows
 * every namespace and the cluster scope (a ClusterRole bound by a ClusterRoleBinding).
 */
export interface RbacRule {
  verb: string;
  group: string;
  /** `deployments`, or `deployments/scale` for the subresource. */
  resource: string;
  namespace?: string;
}

/** What a request asks to do, as an authorizer sees it. */
export interface AuthzRequest {
  user: string;
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
}

export interface KubeApiSimOptions {
  /** When set, every request needs `Authorization: Bearer <token>` (else 401). */
  token?: string;
  /** The user named in 403 messages (default system:serviceaccount:default:default). */
  user?: string;
  /** Allow-list; when set, every request it does not allow is 403. Unset: everything is allowed. */
  rbac?: RbacRule[];
  /** Returns true to deny a request (403), whatever the allow-list says. */
  deny?: (req: AuthzRequest) => boolean;
  /** Delay before status.replicas follows spec.replicas (default 0: in the same write). */
  statusLagMs?: number;
}

/** An injected fault; it affects the matching requests, `times` of them (default: all). */
export interface FaultSpec {
  method?: string;
  /** The exact path, or a pattern tested against it. */
  path?: string | RegExp;
  times?: number;
  /** Answer with this code (429, 500, 503, 504 or another) as a Status object. */
  status?: number;
  /** Retry-After header, in seconds (429 defaults to 1). */
  retryAfterSeconds?: number;
  /** Wait this long first; without `status` or `reset`, the request is then served normally. */
  delayMs?: number;
  /** Destroy the connection without an answer. */
  reset?: boolean;
  message?: string;
}

export interface FaultHandle {
  /** Requests this fault has affected. */
  readonly hits: number;
  remove(): void;
}

export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType: string | undefined;
  body: string;
  /** Date.now() on arrival. */
  time: number;
  /** The Kubernetes verb (get, list, update, patch), once the path was recognised. */
  verb?: string;
  subresource?: string;
  /** The HTTP code of the answer (undefined for a reset connection). */
  code?: number;
}

export interface RequestFilter {
  method?: string;
  path?: string | RegExp;
  verb?: string;
  code?: number;
}

export interface KubeApiSim {
  /** http://127.0.0.1:<port>, to be used as the cluster's server URL. */
  readonly url: string;
  /** The current (latest) resourceVersion. */
  readonly resourceVersion: string;
  readonly requests: readonly RequestRecord[];
  /** TCP connections accepted since the last clearRequests(): how well clients reuse them. */
  readonly connections: number;
  /** How many logged requests match every given field. */
  count(filter?: RequestFilter): number;
  clearRequests(): void;

  addDeployment(ns: string, name: string, replicas?: number, meta?: SeedMeta): KubeObject;
  addStatefulSet(ns: string, name: string, replicas?: number, meta?: SeedMeta): KubeObject;
  addReplicaSet(ns: string, name: string, replicas?: number, meta?: SeedMeta): KubeObject;
  addScaledObject(ns: string, name: string, spec: ScaledObjectSeed, meta?: SeedMeta): KubeObject;
  /** A copy of the stored object, or undefined. */
  get(resource: ResourceName, ns: string, name: string): KubeObject | undefined;
  /** Copies of the stored objects of a kind, in one namespace or all, ordered by namespace and name. */
  list(resource: ResourceName, ns?: string): KubeObject[];
  /** spec.replicas and status.replicas of a Deployment or StatefulSet. */
  replicas(resource: 'deployments' | 'statefulsets' | 'replicasets', ns: string, name: string): { spec: number; status: number };
  /** A write by some other client (an HPA, a person): validated, stored, resourceVersion bumped. */
  update(resource: ResourceName, ns: string, name: string, mutate: (obj: KubeObject) => void): KubeObject;
  remove(resource: ResourceName, ns: string, name: string): boolean;
  /** Applies the pending (lagging) status writes now. */
  settle(): void;

  setRbac(rules: RbacRule[] | undefined): void;
  setDeny(hook: ((req: AuthzRequest) => boolean) | undefined): void;
  setStatusLag(ms: number): void;
  inject(fault: FaultSpec): FaultHandle;
  /** The next `n` requests (any path) are answered with `status` (default 503). */
  failNext(n: number, status?: number, retryAfterSeconds?: number): FaultHandle;
  clearFaults(): void;
  close(): Promise<void>;
}

export interface SeedMeta {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface ScaledObjectSeed {
  scaleTargetRef: { name: string; kind?: string; apiVersion?: string };
  minReplicaCount?: number;
  maxReplicaCount?: number;
  triggers?: JsonObject[];
  [field: string]: unknown;
}

interface ResourceInfo {
  group: string;
  version: string;
  kind: string;
  /** Serves /scale. */
  scalable: boolean;
  /** A custom resource: no strategic merge patch, no unconditional PUT, typed list items. */
  custom: boolean;
}

const RESOURCES: Record<ResourceName, ResourceInfo> = {
  deployments: { group: 'apps', version: 'v1', kind: 'Deployment', scalable: true, custom: false },
  statefulsets: { group: 'apps', version: 'v1', kind: 'StatefulSet', scalable: true, custom: false },
  replicasets: { group: 'apps', version: 'v1', kind: 'ReplicaSet', scalable: true, custom: false },
  scaledobjects: { group: 'keda.sh', version: 'v1alpha1', kind: 'ScaledObject', scalable: false, custom: true },
};

const MERGE = 'application/merge-patch+json';
const JSON_PATCH = 'application/json-patch+json';
const STRATEGIC = 'application/strategic-merge-patch+json';

const REASONS: Record<number, string> = {
  400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed', 409: 'Conflict',
  415: 'UnsupportedMediaType', 422: 'Invalid', 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout',
};

/** A failed request, answered as a meta/v1 Status object. */
class ApiError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly details?: JsonObject,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  toStatus(): JsonObject {
    const s: JsonObject = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: REASONS[this.code] ?? 'Unknown' };
    if (this.details) s['details'] = this.details;
    s['code'] = this.code;
    return s;
  }
}

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const clone = <T>(v: T): T => structuredClone(v);
const jsonType = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
/** RFC 3339 to the second, as Kubernetes writes timestamps. */
const timestamp = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
/** `deployments.apps`, the qualified resource of messages (the core group has no suffix). */
const qualified = (info: ResourceInfo, resource: string): string => (info.group ? `${resource}.${info.group}` : resource);

function badRequest(message: string): ApiError {
  return new ApiError(400, message);
}

/** 422 Invalid for `Kind.group "name"` with field errors `[field, message]`. */
function invalid(kind: string, group: string, name: string, errors: Array<[string, string]>): ApiError {
  const causes = errors.map(([field, message]) => ({ reason: message.startsWith('Required value') ? 'FieldValueRequired' : 'FieldValueInvalid', message, field }));
  const list = errors.map(([field, message]) => `${field}: ${message}`);
  const what = list.length === 1 ? list[0] : `[${list.join(', ')}]`;
  const qualifiedKind = group ? `${kind}.${group}` : kind;
  return new ApiError(422, `${qualifiedKind} "${name}" is invalid: ${what}`, { name, group, kind, causes });
}

// ---------------------------------------------------------------------------------------------
// Patches

/** RFC 7386 JSON merge patch: objects merge key by key, null deletes, anything else replaces. */
function mergePatch(target: unknown, patch: unknown, strategic = false): unknown {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (strategic && k.startsWith('$')) throw badRequest(`strategic merge patch directive ${k} is not supported by the simulator`);
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v, strategic);
  }
  return out;
}

/** RFC 6901 JSON pointer to its reference tokens. */
function pointer(path: unknown): string[] {
  if (typeof path !== 'string' || (path !== '' && !path.startsWith('/'))) throw badRequest(`invalid JSON pointer ${JSON.stringify(path)}`);
  return path === '' ? [] : path.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** RFC 6902 JSON patch. A malformed document is 400; an operation that cannot apply is 422. */
function jsonPatch(doc: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw badRequest('json patch must be an array of operations');
  const fail = (message: string): ApiError => new ApiError(422, message);
  let root = clone(doc);
  const parentOf = (tokens: string[], path: string): [unknown, string] => {
    let node: unknown = root;
    for (const t of tokens.slice(0, -1)) {
      node = Array.isArray(node) ? node[Number(t)] : isObject(node) ? node[t] : undefined;
      if (node === undefined) throw fail(`doc is missing path: "${path}"`);
    }
    return [node, tokens[tokens.length - 1] ?? ''];
  };
  const get = (path: string): unknown => {
    let node: unknown = root;
    for (const t of pointer(path)) {
      node = Array.isArray(node) ? node[Number(t)] : isObject(node) && Object.hasOwn(node, t) ? node[t] : undefined;
      if (node === undefined) throw fail(`doc is missing path: "${path}"`);
    }
    return node;
  };
  const add = (path: string, value: unknown): void => {
    const tokens = pointer(path);
    if (tokens.length === 0) return void (root = clone(value));
    const [parent, key] = parentOf(tokens, path);
    if (Array.isArray(parent)) {
      const i = key === '-' ? parent.length : Number(key);
      if (!Number.isInteger(i) || i < 0 || i > parent.length) throw fail(`add operation index out of bounds: "${path}"`);
      parent.splice(i, 0, clone(value));
    } else if (isObject(parent)) parent[key] = clone(value);
    else throw fail(`doc is missing path: "${path}"`);
  };
  const remove = (path: string): void => {
    get(path);
    const [parent, key] = parentOf(pointer(path), path);
    if (Array.isArray(parent)) parent.splice(Number(key), 1);
    else if (isObject(parent)) delete parent[key];
  };
  for (const op of ops) {
    if (!isObject(op) || typeof op['op'] !== 'string' || typeof op['path'] !== 'string') throw badRequest('json patch operation needs string fields "op" and "path"');
    const path = op['path'];
    const from = typeof op['from'] === 'string' ? op['from'] : '';
    switch (op['op']) {
      case 'add':
        add(path, op['value']);
        break;
      case 'remove':
        remove(path);
        break;
      case 'replace':
        remove(path);
        add(path, op['value']);
        break;
      case 'move': {
        const v = get(from);
        remove(from);
        add(path, v);
        break;
      }
      case 'copy':
        add(path, get(from));
        break;
      case 'test':
        if (!isDeepStrictEqual(get(path), op['value'])) throw fail(`testing value ${path} failed: test failed`);
        break;
      default:
        throw badRequest(`Unexpected kind: ${op['op']}`);
    }
  }
  return root;
}

// ---------------------------------------------------------------------------------------------
// Label selectors (equality-based only)

function labelFilter(selector: string | null): (labels: Record<string, string>) => boolean {
  if (!selector) return () => true;
  if (/[()]|\s(in|notin)\s/.test(selector)) throw badRequest(`set-based label selectors are not supported by the simulator: ${selector}`);
  const tests = selector.split(',').map((raw): ((l: Record<string, string>) => boolean) => {
    const req = raw.trim();
    const m = /^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(req);
    if (m) {
      const [, key = '', op, value = ''] = m;
      return op === '!=' ? (l) => l[key] !== value : (l) => l[key] === value;
    }
    if (/^![^=!\s]+$/.test(req)) return (l) => !Object.hasOwn(l, req.slice(1));
    if (/^[^=!\s]+$/.test(req)) return (l) => Object.hasOwn(l, req);
    throw badRequest(`unable to parse requirement: ${req}`);
  });
  return (labels) => tests.every((t) => t(labels));
}

// ---------------------------------------------------------------------------------------------
// The simulator

interface Route {
  resource: ResourceName;
  info: ResourceInfo;
  namespace?: string;
  name?: string;
  subresource?: 'scale';
}

/** Parses /apis/{group}/{version}[/namespaces/{ns}]/{resource}[/{name}[/scale]]. */
function route(path: string): Route | undefined {
  const parts = path.split('/').slice(1).map(decodeURIComponent);
  if (parts[parts.length - 1] === '') parts.pop();
  if (parts[0] !== 'apis') return undefined;
  const [, group, version, ...rest] = parts;
  let namespace: string | undefined;
  if (rest[0] === 'namespaces') {
    namespace = rest[1];
    rest.splice(0, 2);
    if (!namespace) return undefined;
  }
  const [resource, name, subresource, ...extra] = rest;
  const found = (Object.keys(RESOURCES) as ResourceName[]).find((r) => r === resource && RESOURCES[r].group === group && RESOURCES[r].version === version);
  if (!found || extra.length > 0 || (name !== undefined && namespace === undefined)) return undefined;
  if (subresource !== undefined && !(subresource === 'scale' && RESOURCES[found].scalable)) return undefined;
  return { resource: found, info: RESOURCES[found], namespace, name, subresource };
}

/**
 * The discovery document of a group version (GET /apis/{group}/{version}): an APIResourceList
 * naming each resource, its kind and verbs, and the scale subresource of those that have one, as
 * kube-apiserver lists them. Undefined for a group version the simulator does not serve (a 404).
 */
function discoveryOf(path: string): JsonObject | undefined {
  const m = /^\/apis\/([^/]+)\/([^/]+)\/?$/.exec(path);
  if (m === null) return undefined;
  const [, group, version] = m;
  const served = (Object.keys(RESOURCES) as ResourceName[]).filter((r) => RESOURCES[r].group === group && RESOURCES[r].version === version);
  if (served.length === 0) return undefined;
  const resources: JsonObject[] = [];
  for (const r of served) {
    const info = RESOURCES[r];
    resources.push({ name: r, singularName: info.kind.toLowerCase(), namespaced: true, kind: info.kind, verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'] });
    if (info.scalable) resources.push({ name: `${r}/scale`, singularName: '', namespaced: true, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: `${group}/${version}`, resources };
}

/** status of a Deployment or StatefulSet whose controller has caught up with spec (zero counts omitted, as the API does). */
function settledStatus(resource: ResourceName, obj: KubeObject): JsonObject {
  const n = typeof obj.spec['replicas'] === 'number' ? obj.spec['replicas'] : 1;
  const counts = (names: string[]): JsonObject => (n === 0 ? {} : Object.fromEntries(names.map((k) => [k, n])));
  if (resource === 'statefulsets') return { observedGeneration: obj.metadata.generation, replicas: n, ...counts(['readyReplicas', 'currentReplicas', 'updatedReplicas']), availableReplicas: n };
  return { observedGeneration: obj.metadata.generation, ...counts(['replicas', 'updatedReplicas', 'readyReplicas', 'availableReplicas']) };
}

/** spec.selector.matchLabels in query-string form, as Scale's status.selector carries it. */
function selectorString(obj: KubeObject): string {
  const selector = obj.spec['selector'];
  const labels = isObject(selector) && isObject(selector['matchLabels']) ? selector['matchLabels'] : {};
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${String(labels[k])}`)
    .join(',');
}

function toScale(obj: KubeObject): JsonObject {
  const { name, namespace, uid, resourceVersion, creationTimestamp } = obj.metadata;
  const replicas = obj.spec['replicas'];
  const statusReplicas = obj.status?.['replicas'];
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: { name, namespace, uid, resourceVersion, creationTimestamp },
    spec: replicas ? { replicas } : {},
    status: { replicas: typeof statusReplicas === 'number' ? statusReplicas : 0, selector: selectorString(obj) },
  };
}

/** Checks a proposed object against what the API server (or the CRD schema) would accept. */
function validate(resource: ResourceName, obj: KubeObject): void {
  const info = RESOURCES[resource];
  const name = obj.metadata.name;
  const cannotHandle = (detail: string): ApiError => badRequest(`${info.kind} in version "${info.version}" cannot be handled as a ${info.kind}: ${detail}`);
  for (const field of ['labels', 'annotations'] as const) {
    const map = obj.metadata[field];
    if (map === undefined) continue;
    if (!isObject(map)) throw cannotHandle(`json: cannot unmarshal ${jsonType(map)} into Go struct field ObjectMeta.metadata.${field} of type map[string]string`);
    for (const v of Object.values(map)) if (typeof v !== 'string') throw cannotHandle(`json: cannot unmarshal ${jsonType(v)} into Go struct field ObjectMeta.metadata.${field} of type string`);
  }
  if (!isObject(obj.spec)) throw invalid(info.kind, info.group, name, [['spec', 'Required value']]);
  const spec = obj.spec;
  if (resource === 'scaledobjects') {
    // The CRD's openAPIV3Schema, the parts an autoscaler touches.
    const errors: Array<[string, string]> = [];
    const ref = spec['scaleTargetRef'];
    if (!isObject(ref)) errors.push(['spec.scaleTargetRef', 'Required value']);
    else if (typeof ref['name'] !== 'string') errors.push(['spec.scaleTargetRef.name', 'Required value']);
    if (!Array.isArray(spec['triggers'])) errors.push(['spec.triggers', 'Required value']);
    for (const k of ['minReplicaCount', 'maxReplicaCount', 'idleReplicaCount', 'pollingInterval', 'cooldownPeriod']) {
      const v = spec[k];
      if (v !== undefined && !Number.isInteger(v)) {
        const t = jsonType(v) === 'number' ? 'number' : jsonType(v);
        errors.push([`spec.${k}`, `Invalid value: "${t}": spec.${k} in body must be of type integer: "${t}"`]);
      }
    }
    if (errors.length > 0) throw invalid(info.kind, info.group, name, errors);
    return;
  }
  const replicas = spec['replicas'];
  if (replicas === undefined) return;
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas > 2 ** 31 - 1 || replicas < -(2 ** 31)) {
    const what = typeof replicas === 'number' ? `number ${replicas}` : jsonType(replicas);
    throw cannotHandle(`json: cannot unmarshal ${what} into Go struct field ${info.kind}Spec.spec.replicas of type int32`);
  }
  if (replicas < 0) throw invalid(info.kind, info.group, name, [['spec.replicas', `Invalid value: ${replicas}: must be greater than or equal to 0`]]);
}

/** Drops empty label and annotation maps, as the API (omitempty) does. */
function tidyMeta(meta: ObjectMeta): void {
  for (const field of ['labels', 'annotations'] as const) {
    const map = meta[field];
    if (isObject(map) && Object.keys(map).length === 0) delete meta[field];
  }
}

export async function startKubeApiSim(opts: KubeApiSimOptions = {}): Promise<KubeApiSim> {
  const store = new Map<string, KubeObject>();
  const log: RequestRecord[] = [];
  const faults: Array<FaultSpec & { hits: number }> = [];
  const timers = new Set<NodeJS.Timeout>();
  const pending = new Map<string, () => void>();
  const sockets = new Set<Socket>();
  let accepted = 0;
  const user = opts.user ?? 'system:serviceaccount:default:default';
  let rbac = opts.rbac;
  let deny = opts.deny;
  let statusLagMs = opts.statusLagMs ?? 0;
  let counter = 0;

  const key = (resource: ResourceName, ns: string, name: string): string => `${resource}/${ns}/${name}`;
  const bump = (): string => String(++counter);

  const notFound = (r: Route): ApiError =>
    new ApiError(404, `${qualified(r.info, r.resource)} "${r.name}" not found`, { name: r.name, group: r.info.group, kind: r.resource });

  /** Status follows spec: now (lag 0) or by a separate write later. */
  const followStatus = (resource: ResourceName, obj: KubeObject): void => {
    if (!RESOURCES[resource].scalable) return;
    if (statusLagMs <= 0) {
      obj.status = settledStatus(resource, obj);
      return;
    }
    const k = key(resource, obj.metadata.namespace, obj.metadata.name);
    if (pending.has(k)) return; // the pending write reads the spec of its time
    const apply = (): void => {
      pending.delete(k);
      const current = store.get(k);
      if (!current) return;
      const status = settledStatus(resource, current);
      if (isDeepStrictEqual(current.status, status)) return;
      current.status = status;
      current.metadata.resourceVersion = bump();
    };
    pending.set(k, apply);
    const timer = setTimeout(() => {
      timers.delete(timer);
      pending.get(k)?.();
    }, statusLagMs);
    timer.unref();
    timers.add(timer);
  };

  /**
   * Stores `proposed` in place of `current`, as kube-apiserver's update does: precondition on
   * resourceVersion, server-owned fields kept, validation, generation, no-op detection, dry run.
   */
  const commit = (resource: ResourceName, current: KubeObject, proposed: unknown, dryRun: boolean, requireVersion = false): KubeObject => {
    const info = RESOURCES[resource];
    const { name, namespace } = current.metadata;
    if (!isObject(proposed)) throw badRequest(`${info.kind} in version "${info.version}" cannot be handled as a ${info.kind}: the object is not a JSON object`);
    const meta = proposed['metadata'] ?? {};
    if (!isObject(meta)) throw badRequest(`${info.kind} in version "${info.version}" cannot be handled as a ${info.kind}: metadata is not an object`);
    if (meta['name'] !== undefined && meta['name'] !== name) throw badRequest(`the name of the object (${String(meta['name'])}) does not match the name on the URL (${name})`);
    if (meta['namespace'] !== undefined && meta['namespace'] !== namespace) throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    const rv = meta['resourceVersion'];
    if (rv === undefined || rv === '') {
      if (requireVersion) throw invalid(resource, info.group, name, [['metadata.resourceVersion', 'Invalid value: 0x0: must be specified for an update']]);
    } else if (rv !== current.metadata.resourceVersion) {
      throw new ApiError(409, `Operation cannot be fulfilled on ${qualified(info, resource)} "${name}": the object has been modified; please apply your changes to the latest version and try again`, {
        name,
        group: info.group,
        kind: resource,
      });
    }
    const next = clone(proposed) as unknown as KubeObject;
    next.apiVersion = `${info.group}/${info.version}`;
    next.kind = info.kind;
    const { uid, creationTimestamp, generation, resourceVersion } = current.metadata;
    next.metadata = { ...(meta as Partial<ObjectMeta>), name, namespace, uid, creationTimestamp, generation, resourceVersion };
    tidyMeta(next.metadata);
    if (current.status !== undefined) next.status = clone(current.status);
    else delete next.status;
    validate(resource, next);
    const specChanged = !isDeepStrictEqual(next.spec, current.spec);
    if (specChanged || (resource === 'deployments' && !isDeepStrictEqual(next.metadata.annotations, current.metadata.annotations))) next.metadata.generation += 1;
    // The real server does not write (nor bump resourceVersion) when nothing changed.
    if (isDeepStrictEqual(next, current) || dryRun) return clone(next);
    next.metadata.resourceVersion = bump();
    followStatus(resource, next);
    store.set(key(resource, namespace, name), next);
    return clone(next);
  };

  const seed = (resource: ResourceName, ns: string, name: string, spec: JsonObject, meta: SeedMeta, annotations: Record<string, string> = {}): KubeObject => {
    const info = RESOURCES[resource];
    const obj: KubeObject = {
      apiVersion: `${info.group}/${info.version}`,
      kind: info.kind,
      metadata: {
        name,
        namespace: ns,
        uid: randomUUID(),
        resourceVersion: '',
        generation: 1,
        creationTimestamp: timestamp(),
        labels: { ...meta.labels },
        annotations: { ...annotations, ...meta.annotations },
      },
      spec: clone(spec),
    };
    tidyMeta(obj.metadata);
    validate(resource, obj);
    obj.metadata.resourceVersion = bump();
    if (info.scalable) obj.status = settledStatus(resource, obj);
    else obj.status = { scaleTargetKind: `${String((spec['scaleTargetRef'] as JsonObject)['apiVersion'] ?? 'apps/v1')}.${String((spec['scaleTargetRef'] as JsonObject)['kind'] ?? 'Deployment')}` };
    store.set(key(resource, ns, name), obj);
    return clone(obj);
  };

  const workloadSpec = (name: string, replicas: number, labels: Record<string, string>): JsonObject => ({
    replicas,
    selector: { matchLabels: { app: name } },
    template: { metadata: { labels: { app: name, ...labels } }, spec: { containers: [{ name: 'app', image: 'registry.example/app:1' }] } },
  });

  const authorize = (r: Route, verb: string): void => {
    const attrs: AuthzRequest = { user, verb, group: r.info.group, resource: r.resource, subresource: r.subresource, namespace: r.namespace, name: r.name };
    const full = r.subresource ? `${r.resource}/${r.subresource}` : r.resource;
    const allowed = (rule: RbacRule): boolean =>
      (rule.verb === '*' || rule.verb === verb) &&
      (rule.group === '*' || rule.group === r.info.group) &&
      (rule.resource === '*' || rule.resource === full) &&
      (rule.namespace === undefined || rule.namespace === '*' || rule.namespace === r.namespace);
    if (!deny?.(attrs) && (!rbac || rbac.some(allowed))) return;
    const subject = r.name === undefined ? qualified(r.info, r.resource) : `${qualified(r.info, r.resource)} "${r.name}"`;
    const scope = r.namespace === undefined ? 'at the cluster scope' : `in the namespace "${r.namespace}"`;
    const details: JsonObject = { group: r.info.group, kind: r.resource };
    if (r.name !== undefined) details['name'] = r.name;
    throw new ApiError(403, `${subject} is forbidden: User "${user}" cannot ${verb} resource "${full}" in API group "${r.info.group}" ${scope}`, details);
  };

  /** Serves a recognised path; returns the answer's body. */
  const serve = (r: Route, method: string, url: URL, contentType: string, body: string): object => {
    if (method === 'GET' && r.name === undefined) {
      if (url.searchParams.has('watch') && !['false', '0'].includes(url.searchParams.get('watch') ?? '')) throw badRequest('watch is not supported by the simulator');
      const keep = labelFilter(url.searchParams.get('labelSelector'));
      const items = listObjects(r.resource, r.namespace)
        .filter((o) => keep(o.metadata.labels ?? {}))
        .map((o) => {
          if (r.info.custom) return o;
          // Built-in kinds leave apiVersion and kind out of list items.
          const { apiVersion: _a, kind: _k, ...rest } = o;
          return rest;
        });
      const metadata: JsonObject = r.info.custom ? { continue: '', resourceVersion: String(counter) } : { resourceVersion: String(counter) };
      return { apiVersion: `${r.info.group}/${r.info.version}`, kind: `${r.info.kind}List`, metadata, items };
    }
    const current = store.get(key(r.resource, r.namespace ?? '', r.name ?? ''));
    if (method === 'GET') {
      if (!current) throw notFound(r);
      return r.subresource ? toScale(current) : clone(current);
    }
    // PUT or PATCH
    const dryRunValues = url.searchParams.getAll('dryRun');
    const optionsKind = method === 'PUT' ? 'UpdateOptions' : 'PatchOptions';
    for (const v of dryRunValues) if (v !== 'All') throw invalid(optionsKind, 'meta.k8s.io', '', [['dryRun', `Unsupported value: "${v}": supported values: "All"`]]);
    const dryRun = dryRunValues.length > 0;
    const accepted = method === 'PUT' ? ['application/json'] : r.info.custom ? [JSON_PATCH, MERGE] : [JSON_PATCH, MERGE, STRATEGIC];
    if (!accepted.includes(contentType)) throw new ApiError(415, `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch (e) {
      throw badRequest(`error decoding ${method === 'PUT' ? 'body' : 'patch'}: ${(e as Error).message}`);
    }
    if (!current) throw notFound(r);
    const base: unknown = r.subresource ? toScale(current) : clone(current);
    let proposed: unknown = parsed;
    if (method === 'PATCH') {
      if (contentType === JSON_PATCH) proposed = jsonPatch(base, parsed);
      else if (!isObject(parsed)) throw badRequest('patch body must be a JSON object');
      else proposed = mergePatch(base, parsed, contentType === STRATEGIC);
    }
    if (!r.subresource) return commit(r.resource, current, proposed, dryRun, method === 'PUT' && r.info.custom);
    // The scale subresource: validate the Scale, then write spec.replicas (and the precondition) to the workload.
    if (!isObject(proposed)) throw badRequest('Scale in version "v1" cannot be handled as a Scale: the object is not a JSON object');
    const meta = isObject(proposed['metadata']) ? proposed['metadata'] : {};
    if (meta['name'] !== undefined && meta['name'] !== r.name) throw badRequest(`the name of the object (${String(meta['name'])}) does not match the name on the URL (${r.name})`);
    const spec = isObject(proposed['spec']) ? proposed['spec'] : {};
    const replicas = spec['replicas'] ?? 0; // omitempty: an absent spec.replicas is 0
    if (typeof replicas !== 'number' || !Number.isInteger(replicas) || Math.abs(replicas) > 2 ** 31 - 1) {
      const what = typeof replicas === 'number' ? `number ${replicas}` : jsonType(replicas);
      throw badRequest(`Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal ${what} into Go struct field ScaleSpec.spec.replicas of type int32`);
    }
    if (replicas < 0) throw invalid('Scale', 'autoscaling', r.name ?? '', [['spec.replicas', `Invalid value: ${replicas}: must be greater than or equal to 0`]]);
    const workload = clone(current);
    workload.spec['replicas'] = replicas;
    workload.metadata.resourceVersion = typeof meta['resourceVersion'] === 'string' ? meta['resourceVersion'] : '';
    return toScale(commit(r.resource, current, workload, dryRun));
  };

  const listObjects = (resource: ResourceName, ns?: string): KubeObject[] =>
    [...store.entries()]
      .filter(([k]) => k.startsWith(`${resource}/`))
      .map(([, o]) => o)
      .filter((o) => ns === undefined || o.metadata.namespace === ns)
      .sort((a, b) => (a.metadata.namespace + '/' + a.metadata.name).localeCompare(b.metadata.namespace + '/' + b.metadata.name))
      .map(clone);

  /** Applies the first fault that matches; returns true when it answered (or dropped) the request. */
  const applyFault = async (rec: RequestRecord, req: IncomingMessage): Promise<boolean> => {
    const f = faults.find(
      (x) =>
        (x.times === undefined || x.hits < x.times) &&
        (x.method === undefined || x.method.toUpperCase() === rec.method) &&
        (x.path === undefined || (typeof x.path === 'string' ? x.path === rec.path : x.path.test(rec.path))),
    );
    if (!f) return false;
    f.hits += 1;
    if (f.delayMs) await new Promise((r) => setTimeout(r, f.delayMs));
    if (f.reset) {
      req.socket.destroy();
      return true;
    }
    if (f.status === undefined) return false;
    const headers: Record<string, string> = {};
    const retryAfter = f.retryAfterSeconds ?? (f.status === 429 ? 1 : undefined);
    if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter);
    const details: JsonObject | undefined = retryAfter !== undefined ? { retryAfterSeconds: retryAfter } : undefined;
    const message =
      f.status === 429
        ? (f.message ?? 'Too many requests, please try again later.')
        : f.status === 500
          ? `Internal error occurred: ${f.message ?? 'injected fault'}`
          : f.status === 503
            ? (f.message ?? 'the server is currently unable to handle the request')
            : (f.message ?? `injected fault ${f.status}`);
    throw new ApiError(f.status, message, details, headers);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://sim.invalid');
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const ct = req.headers['content-type'];
    const rec: RequestRecord = {
      method: (req.method ?? 'GET').toUpperCase(),
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      contentType: ct,
      body: Buffer.concat(chunks).toString('utf8'),
      time: Date.now(),
    };
    log.push(rec);
    const send = (code: number, body: object, headers: Record<string, string> = {}): void => {
      rec.code = code;
      const text = JSON.stringify(body);
      res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers }).end(text);
    };
    try {
      if (opts.token !== undefined && req.headers.authorization !== `Bearer ${opts.token}`) throw new ApiError(401, 'Unauthorized');
      const r = route(url.pathname);
      if (r) {
        rec.verb = rec.method === 'GET' ? (r.name === undefined ? 'list' : 'get') : rec.method === 'PUT' ? 'update' : rec.method === 'PATCH' ? 'patch' : undefined;
        rec.subresource = r.subresource;
      }
      const discovery = r === undefined && rec.method === 'GET' ? discoveryOf(url.pathname) : undefined;
      if (discovery !== undefined) rec.verb = 'get';
      if (await applyFault(rec, req)) return;
      if (discovery !== undefined) return send(200, discovery);
      if (!r) throw new ApiError(404, 'the server could not find the requested resource', {});
      if (!rec.verb || (rec.verb !== 'get' && rec.verb !== 'list' && r.name === undefined)) throw new ApiError(405, 'the server does not allow this method on the requested resource', {});
      authorize(r, rec.verb);
      send(200, serve(r, rec.method, url, (ct ?? '').split(';')[0]?.trim().toLowerCase() ?? '', rec.body));
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(500, `Internal error occurred: ${(e as Error).message}`);
      send(err.code, err.toStatus(), err.headers);
    }
  };

  const server = createServer((req, res) => void handle(req, res));
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    accepted++;
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  const mustGet = (resource: ResourceName, ns: string, name: string): KubeObject => {
    const obj = store.get(key(resource, ns, name));
    if (!obj) throw new Error(`kube-api-sim: no ${resource} ${ns}/${name}`);
    return obj;
  };

  const inject = (fault: FaultSpec): FaultHandle => {
    const entry = { ...fault, hits: 0 };
    faults.push(entry);
    return {
      get hits() {
        return entry.hits;
      },
      remove: () => {
        const i = faults.indexOf(entry);
        if (i >= 0) faults.splice(i, 1);
      },
    };
  };

  return {
    url: `http://127.0.0.1:${port}`,
    get resourceVersion() {
      return String(counter);
    },
    requests: log,
    count: (f = {}) =>
      log.filter(
        (r) =>
          (f.method === undefined || r.method === f.method.toUpperCase()) &&
          (f.verb === undefined || r.verb === f.verb) &&
          (f.code === undefined || r.code === f.code) &&
          (f.path === undefined || (typeof f.path === 'string' ? r.path === f.path : f.path.test(r.path))),
      ).length,
    clearRequests: () => {
      log.splice(0);
      accepted = 0;
    },
    get connections() {
      return accepted;
    },
    addDeployment: (ns, name, replicas = 1, meta = {}) =>
      seed('deployments', ns, name, workloadSpec(name, replicas, meta.labels ?? {}), { ...meta, labels: { app: name, ...meta.labels } }, { 'deployment.kubernetes.io/revision': '1' }),
    addStatefulSet: (ns, name, replicas = 1, meta = {}) =>
      seed('statefulsets', ns, name, { ...workloadSpec(name, replicas, meta.labels ?? {}), serviceName: name }, { ...meta, labels: { app: name, ...meta.labels } }),
    addReplicaSet: (ns, name, replicas = 1, meta = {}) =>
      seed('replicasets', ns, name, workloadSpec(name, replicas, meta.labels ?? {}), { ...meta, labels: { app: name, ...meta.labels } }),
    addScaledObject: (ns, name, spec, meta = {}) =>
      seed('scaledobjects', ns, name, { triggers: [{ type: 'cpu', metricType: 'Utilization', metadata: { value: '60' } }], ...spec }, meta),
    get: (resource, ns, name) => {
      const obj = store.get(key(resource, ns, name));
      return obj && clone(obj);
    },
    list: listObjects,
    replicas: (resource, ns, name) => {
      const obj = mustGet(resource, ns, name);
      return { spec: Number(obj.spec['replicas'] ?? 1), status: Number(obj.status?.['replicas'] ?? 0) };
    },
    update: (resource, ns, name, mutate) => {
      const current = mustGet(resource, ns, name);
      const proposed = clone(current);
      mutate(proposed);
      return commit(resource, current, proposed, false);
    },
    remove: (resource, ns, name) => store.delete(key(resource, ns, name)),
    settle: () => {
      for (const apply of [...pending.values()]) apply();
    },
    setRbac: (rules) => void (rbac = rules),
    setDeny: (hook) => void (deny = hook),
    setStatusLag: (ms) => void (statusLagMs = ms),
    inject,
    failNext: (n, status = 503, retryAfterSeconds) => inject({ times: n, status, retryAfterSeconds }),
    clearFaults: () => void faults.splice(0),
    close: async () => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      pending.clear();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
