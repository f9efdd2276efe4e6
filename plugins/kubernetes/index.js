// @ts-check
/**
 * Kubernetes executor: scales Deployments, StatefulSets and any resource with a /scale
 * subresource through that subresource (as the HorizontalPodAutoscaler does), and KEDA
 * ScaledObjects by their minReplicaCount (floor mode) or their paused-replicas annotation (exact
 * mode). Written as any third-party plugin is: it sees its config and a logger, nothing else.
 *
 * @kubernetes/client-node finds the cluster and the credentials (the pod's service account,
 * KUBECONFIG or ~/.kube/config; tokens, client certificates, exec plugins) and signs each
 * request; the plugin speaks the REST API itself, so it decides every request it sends:
 *
 * - reads: one LIST per (resource, namespace) per cycle, for all the policies the daemon asks
 *   about at once (getCurrentReplicasMany); never a GET per policy per cycle;
 * - writes: one per change, preconditioned on the resourceVersion the cycle's LIST saw; a 409
 *   (someone wrote in between) re-reads the object and retries once;
 * - 429, 5xx and failed connections: bounded retries with exponential backoff and Retry-After,
 *   within the daemon's timeout; 401, 403, 404 and 422 fail at once with an error that says what
 *   to fix (for 403: the RBAC rule to add);
 * - dry runs are sent with dryRun=All: the API server checks RBAC, existence and validity and
 *   changes nothing.
 *
 * @typedef {import('philotes-scaler/plugin').Executor} Executor
 * @typedef {import('philotes-scaler/plugin').ScaleTarget} ScaleTarget
 * @typedef {import('philotes-scaler/plugin').ScaleOptions} ScaleOptions
 * @typedef {import('philotes-scaler/plugin').PluginLogger} Logger
 * @typedef {{ kind: string, name: string, namespace?: string, api_version?: string, mode?: 'floor' | 'exact' }} Template
 * @typedef {{
 *   kubeconfig?: string, context?: string, namespace?: string, target_types: string[],
 *   targets: Record<string, Template>, scaled_object_mode: 'floor' | 'exact', max_retries: number,
 *   retry_base_ms: number, list_ttl_ms: number, field_manager: string
 * }} Config
 * @typedef {import('philotes-scaler/plugin').PluginContext<Config>} Context
 * @typedef {{ group: string, version: string, plural: string, kind: string }} Resource
 * @typedef {{ kind: string, name: string, namespace: string, apiVersion: string, mode: 'floor' | 'exact', resource: Resource }} Ref
 * @typedef {{ metadata?: { name?: string, namespace?: string, resourceVersion?: string, annotations?: Record<string, string> }, spec?: Record<string, any>, status?: Record<string, any> }} KubeObject
 * @typedef {{ at: number, items: Promise<Map<string, KubeObject>> }} CachedList
 */
import { readFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

const SERVICE_ACCOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';
export const PAUSED_REPLICAS = 'autoscaling.keda.sh/paused-replicas';

/**
 * Kinds known without asking the API server which resource serves them; any other kind is looked
 * up in the API server's discovery document, once.
 */
const KNOWN = /** @type {Record<string, Resource>} */ ({
  'apps/v1/Deployment': { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment' },
  'apps/v1/StatefulSet': { group: 'apps', version: 'v1', plural: 'statefulsets', kind: 'StatefulSet' },
  'keda.sh/v1alpha1/ScaledObject': { group: 'keda.sh', version: 'v1alpha1', plural: 'scaledobjects', kind: 'ScaledObject' },
});
/** The apiVersion a kind has when a reference gives none. */
const DEFAULT_API_VERSION = /** @type {Record<string, string>} */ ({
  Deployment: 'apps/v1',
  StatefulSet: 'apps/v1',
  ReplicaSet: 'apps/v1',
  ScaledObject: 'keda.sh/v1alpha1',
});

/** An answer of the API server that is not a success, with its HTTP code. */
export class KubeApiError extends Error {
  /** @param {number} code @param {string} message @param {number | undefined} retryAfterMs */
  constructor(code, message, retryAfterMs = undefined) {
    super(message);
    this.name = 'KubeApiError';
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

/** A request that could not be prepared (credentials, TLS settings): retrying would not help. */
class SetupError extends Error {}

/** @param {string} apiVersion */
function splitApiVersion(apiVersion) {
  const i = apiVersion.lastIndexOf('/');
  return i < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, i), version: apiVersion.slice(i + 1) };
}

/** @param {Resource} r @param {string} ns */
function collectionPath(r, ns) {
  const base = r.group === '' ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`;
  return `${base}/namespaces/${encodeURIComponent(ns)}/${r.plural}`;
}

/** @param {Ref} ref */
function objectPath(ref) {
  return `${collectionPath(ref.resource, ref.namespace)}/${encodeURIComponent(ref.name)}`;
}

/** @param {Ref} ref */
function describe(ref) {
  return `${ref.kind} ${ref.namespace}/${ref.name}`;
}

/**
 * What the executor keeps of a listed object: its name, resourceVersion, replica count and, for a
 * ScaledObject, its floor, ceiling, annotation and workload (not the pod template or managedFields).
 * @param {KubeObject} o @returns {KubeObject}
 */
function trim(o) {
  const spec = o.spec ?? {};
  const paused = o.metadata?.annotations?.[PAUSED_REPLICAS];
  return {
    metadata: { name: o.metadata?.name, namespace: o.metadata?.namespace, resourceVersion: o.metadata?.resourceVersion, ...(paused !== undefined ? { annotations: { [PAUSED_REPLICAS]: paused } } : {}) },
    spec: {
      ...('replicas' in spec ? { replicas: spec.replicas } : {}),
      ...('minReplicaCount' in spec ? { minReplicaCount: spec.minReplicaCount } : {}),
      ...('maxReplicaCount' in spec ? { maxReplicaCount: spec.maxReplicaCount } : {}),
      ...('scaleTargetRef' in spec ? { scaleTargetRef: spec.scaleTargetRef } : {}),
    },
  };
}

/**
 * The replica count a workload's spec asks for. The apps/v1 kinds default an omitted spec.replicas
 * to 1; for other kinds spec.replicas is the usual place of the count their /scale serves, and
 * without it the count is unknown (null: the daemon uses the count it stored).
 */
function specReplicas(/** @type {KubeObject | undefined} */ obj, /** @type {boolean} */ builtIn) {
  const n = obj?.spec?.replicas;
  if (typeof n === 'number' && Number.isInteger(n) && n >= 0) return n;
  return obj !== undefined && builtIn && n === undefined ? 1 : null;
}

/**
 * The cluster connection: @kubernetes/client-node's KubeConfig, loaded on first use (so a daemon
 * that never scales a Kubernetes object needs neither the library's load time nor a cluster).
 */
class Cluster {
  /** @param {Config} config @param {Logger} logger */
  constructor(config, logger) {
    this.config = config;
    this.logger = logger;
    /** @type {Promise<{ kc: any, server: string, namespace: string }> | undefined} */
    this.loaded = undefined;
    /** @type {http.Agent | undefined} One keep-alive agent for the executor's life (none through a proxy). */
    this.agent = undefined;
  }

  load() {
    if (this.loaded === undefined) {
      this.loaded = this.#load();
      // A failure is not remembered: the next call tries again (a kubeconfig may appear).
      this.loaded.catch(() => (this.loaded = undefined));
    }
    return this.loaded;
  }

  async #load() {
    const { KubeConfig } = await import('@kubernetes/client-node');
    const kc = new KubeConfig();
    const inCluster = process.env.KUBERNETES_SERVICE_HOST !== undefined && existsSync(join(SERVICE_ACCOUNT, 'token'));
    let from;
    if (this.config.kubeconfig !== undefined) {
      kc.loadFromFile(this.config.kubeconfig);
      from = this.config.kubeconfig;
    } else if (inCluster) {
      kc.loadFromCluster();
      from = 'the pod service account';
    } else if ((process.env.KUBECONFIG ?? '') !== '' || existsSync(join(homedir(), '.kube', 'config'))) {
      kc.loadFromDefault();
      from = process.env.KUBECONFIG ? `KUBECONFIG (${process.env.KUBECONFIG})` : '~/.kube/config';
    } else {
      throw new Error(
        'no Kubernetes configuration: not running in a cluster (no service account token), KUBECONFIG is not set and ~/.kube/config does not exist; set plugins.kubernetes.kubeconfig',
      );
    }
    if (this.config.context !== undefined) {
      if (!kc.getContexts().some((/** @type {{ name: string }} */ c) => c.name === this.config.context)) {
        throw new Error(`the kubeconfig (${from}) has no context "${this.config.context}" (plugins.kubernetes.context)`);
      }
      kc.setCurrentContext(this.config.context);
    }
    const cluster = kc.getCurrentCluster();
    if (cluster === null) throw new Error(`the kubeconfig (${from}) names no cluster for context "${kc.getCurrentContext()}"`);
    const contextNamespace = kc.getContextObject(kc.getCurrentContext())?.namespace;
    let namespace = this.config.namespace ?? contextNamespace;
    if (namespace === undefined && inCluster && existsSync(join(SERVICE_ACCOUNT, 'namespace'))) namespace = readFileSync(join(SERVICE_ACCOUNT, 'namespace'), 'utf8').trim();
    namespace ??= 'default';
    this.logger.info({ server: cluster.server, context: kc.getCurrentContext(), namespace, from }, `kubernetes: using ${cluster.server} (${from}), default namespace ${namespace}`);
    return { kc, server: cluster.server.replace(/\/+$/, ''), namespace };
  }

  /**
   * One HTTP exchange. Credentials are applied to every request (tokens rotate). Requests share
   * connections through one keep-alive agent made from the first request's TLS settings (the
   * library makes a new agent, without keep-alive, for every request); through a proxy, the
   * library's proxy agent is used as it is. A failure to prepare the request (an exec credential
   * plugin that fails, say) is thrown as a SetupError, which is not retried.
   * @param {string} method @param {string} path @param {Record<string, string>} query
   * @param {{ body?: unknown, contentType?: string, signal: AbortSignal }} opts
   * @returns {Promise<{ code: number, body: any, headers: http.IncomingHttpHeaders }>}
   */
  async exchange(method, path, query, opts) {
    const { kc, server } = await this.load();
    const url = new URL(server + path);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    /** @type {https.RequestOptions & { headers: Record<string, string | number> }} */
    const req = {
      method,
      headers: { accept: 'application/json', 'user-agent': 'philotes-scaler' },
    };
    if (payload !== undefined) {
      req.headers['content-type'] = opts.contentType ?? 'application/json';
      req.headers['content-length'] = payload.length;
    }
    try {
      await kc.applyToHTTPSOptions(req);
    } catch (err) {
      throw new SetupError(`cannot prepare the request to ${server}: ${/** @type {Error} */ (err).message}`);
    }
    if (!kc.getCurrentCluster()?.proxyUrl) {
      if (this.agent === undefined) {
        const tls = { keepAlive: true, ca: req.ca, cert: req.cert, key: req.key, pfx: req.pfx, passphrase: req.passphrase, servername: req.servername, ...(req.rejectUnauthorized !== undefined ? { rejectUnauthorized: req.rejectUnauthorized } : {}) };
        this.agent = url.protocol === 'http:' ? new http.Agent({ keepAlive: true }) : new https.Agent(tls);
      }
      req.agent = this.agent;
    }
    const send = url.protocol === 'http:' ? http.request : https.request;
    return new Promise((resolve, reject) => {
      const r = send(url, { ...req, signal: opts.signal }, (res) => {
        /** @type {Buffer[]} */
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body;
          try {
            body = text === '' ? undefined : JSON.parse(text);
          } catch {
            body = text;
          }
          resolve({ code: res.statusCode ?? 0, body, headers: res.headers });
        });
      });
      r.on('error', reject);
      r.end(payload);
    });
  }
}

/** @param {Context} ctx @returns {Executor} */
export default function createKubernetesExecutor(ctx) {
  const config = ctx.config;
  const log = ctx.logger;
  const cluster = new Cluster(config, log);
  /** @type {Map<string, CachedList>} */
  const lists = new Map();
  /** @type {Map<string, Promise<Resource>>} */
  const discovered = new Map();
  /** @type {WeakMap<ScaleTarget, Ref>} */
  const resolved = new WeakMap();
  /** @type {Map<string, Promise<string>>} The write in progress per object. */
  const writing = new Map();

  /**
   * A request with bounded retries: 429, 5xx and failed connections are retried up to
   * max_retries times with exponential backoff (with full jitter, at most 5 s, or the server's
   * Retry-After), while the daemon's timeout allows. Other answers are returned or thrown at once.
   * @param {string} method @param {string} path @param {Record<string, string>} query
   * @param {{ body?: unknown, contentType?: string, signal: AbortSignal }} opts
   */
  async function request(method, path, query, opts) {
    for (let attempt = 0; ; attempt++) {
      /** @type {KubeApiError} */
      let failure;
      try {
        const res = await cluster.exchange(method, path, query, opts);
        if (res.code >= 200 && res.code < 300) return res.body;
        const message = typeof res.body === 'object' && res.body !== null && typeof res.body.message === 'string' ? res.body.message : String(res.body ?? '').slice(0, 300);
        const retryAfter = Number(res.headers['retry-after']);
        failure = new KubeApiError(res.code, message, Number.isFinite(retryAfter) ? retryAfter * 1000 : undefined);
        if (res.code !== 429 && res.code < 500) throw failure;
      } catch (err) {
        if (err instanceof SetupError) throw err;
        if (err instanceof KubeApiError && err.code !== 429 && err.code < 500) throw err;
        if (opts.signal.aborted) throw new Error(`${method} ${path}: no answer within the daemon's plugin_timeout (after ${attempt + 1} attempt${attempt === 0 ? '' : 's'})`);
        failure = err instanceof KubeApiError ? err : new KubeApiError(0, `connection failed: ${/** @type {Error} */ (err).message}`);
      }
      if (attempt >= config.max_retries) {
        throw new KubeApiError(failure.code, `${failure.message} (gave up after ${attempt + 1} attempts)`);
      }
      const backoff = Math.min(5000, config.retry_base_ms * 2 ** attempt);
      const wait = failure.retryAfterMs !== undefined ? Math.min(failure.retryAfterMs, 30_000) : Math.round(Math.random() * backoff);
      log.warn({ method, path, code: failure.code, attempt: attempt + 1, retryInMs: wait }, `kubernetes: ${method} ${path} answered ${failure.code === 0 ? failure.message : `HTTP ${failure.code}`}; retry ${attempt + 1} of ${config.max_retries} in ${wait} ms`);
      try {
        await delay(wait, undefined, { signal: opts.signal });
      } catch {
        throw new Error(`${method} ${path}: ${failure.message}; no time left for retry ${attempt + 1} within the daemon's plugin_timeout`);
      }
    }
  }

  /**
   * The error for a failed call on an object, saying what to fix.
   * @param {unknown} err @param {Ref} ref @param {string} verb @param {string} [subresource]
   */
  function explain(err, ref, verb, subresource) {
    if (!(err instanceof KubeApiError)) return /** @type {Error} */ (err);
    const r = ref.resource;
    const resource = subresource === undefined ? r.plural : `${r.plural}/${subresource}`;
    switch (err.code) {
      case 403:
        if (/admission webhook|denied the request/i.test(err.message)) {
          return new Error(`an admission webhook refused ${verb} ${resource} of ${describe(ref)} (not RBAC): ${err.message}`);
        }
        return new Error(
          `forbidden: ${verb} ${resource} in namespace ${ref.namespace} (${describe(ref)}); give the daemon's service account a Role in ${ref.namespace} with the rule ` +
            `{apiGroups: ["${r.group}"], resources: ["${resource}"], verbs: ["${verb}"]} (deploy/kubernetes/executor/rbac.yaml lists every rule it needs): ${err.message}`,
        );
      case 404:
        return new Error(`${describe(ref)} not found (${r.group === '' ? '' : `${r.group}/`}${r.version} ${r.plural}): check the policy's target_ref or the executor's targets template: ${err.message}`);
      case 401:
        return new Error(`unauthorized: the API server refused the credentials (${err.message}); check the kubeconfig or the service account token`);
      case 422:
        return new Error(`the API server refused the change to ${describe(ref)} as invalid: ${err.message}`);
      default:
        return new Error(`${verb} ${resource} ${describe(ref)}: ${err.code === 0 ? '' : `HTTP ${err.code}: `}${err.message}`);
    }
  }

  /**
   * The resource behind an apiVersion and kind: known ones at once, others from the API server's
   * discovery document (/apis/{group}/{version}), once per apiVersion.
   * @param {string} apiVersion @param {string} kind @param {AbortSignal} signal
   * @returns {Promise<Resource>}
   */
  function resourceOf(apiVersion, kind, signal) {
    const known = KNOWN[`${apiVersion}/${kind}`];
    if (known !== undefined) return Promise.resolve(known);
    const key = `${apiVersion}/${kind}`;
    let found = discovered.get(key);
    if (found === undefined) {
      const { group, version } = splitApiVersion(apiVersion);
      found = (async () => {
        const path = group === '' ? `/api/${version}` : `/apis/${group}/${version}`;
        /** @type {{ resources?: Array<{ name: string, kind: string, namespaced?: boolean }> }} */
        let doc;
        try {
          doc = await request('GET', path, {}, { signal });
        } catch (err) {
          if (err instanceof KubeApiError && err.code === 404) throw new Error(`the API server does not serve ${apiVersion} (GET ${path} answered 404): check target_ref.api_version`);
          throw err;
        }
        const resources = doc.resources ?? [];
        const main = resources.find((x) => x.kind === kind && !x.name.includes('/'));
        if (main === undefined) throw new Error(`${apiVersion} has no kind ${kind} (the API server lists ${resources.filter((x) => !x.name.includes('/')).map((x) => x.kind).join(', ') || 'none'})`);
        if (!resources.some((x) => x.name === `${main.name}/scale`)) throw new Error(`${kind} (${apiVersion}) has no /scale subresource, so it cannot be scaled; name the workload it manages instead`);
        return { group, version, plural: main.name, kind };
      })();
      discovered.set(key, found);
      // A failure is remembered for a minute, so that many policies naming the kind do not each
      // ask again in every cycle; it is logged once.
      found.catch((err) => {
        log.warn({ apiVersion, kind, err: err.message }, `kubernetes: ${err.message}`);
        setTimeout(() => {
          if (discovered.get(key) === found) discovered.delete(key);
        }, 60_000).unref();
      });
    }
    return found;
  }

  /**
   * The object a target names: its target_ref, else the template of its target type.
   * The daemon passes the same target object every cycle while its policy is unchanged, so what
   * it resolves to is kept per object (a failure is not kept).
   * @param {ScaleTarget} target @param {AbortSignal} signal @returns {Promise<Ref>}
   */
  async function resolve(target, signal) {
    const known = resolved.get(target);
    if (known !== undefined) return known;
    const ref = await resolveNew(target, signal);
    resolved.set(target, ref);
    return ref;
  }

  /** @param {ScaleTarget} target @param {AbortSignal} signal @returns {Promise<Ref>} */
  async function resolveNew(target, signal) {
    /** @type {Template | undefined} */
    let t;
    let from;
    if (target.targetRef !== null && target.targetRef !== undefined) {
      const r = target.targetRef;
      t = { kind: r.kind, name: r.name, ...(r.namespace !== null ? { namespace: r.namespace } : {}), ...(r.apiVersion !== null ? { api_version: r.apiVersion } : {}) };
      from = 'its target_ref';
    } else {
      const template = config.targets[target.targetType];
      if (template === undefined) {
        throw new Error(`policy ${target.policyName} names no Kubernetes object: give it a target_ref, or set plugins.kubernetes.targets.${target.targetType} in the config`);
      }
      const name = template.name.replaceAll('{target_id}', target.targetId ?? '').replaceAll('{policy_name}', target.policyName);
      if (template.name.includes('{target_id}') && target.targetId === null) {
        throw new Error(`policy ${target.policyName} has no target_id, which plugins.kubernetes.targets.${target.targetType}.name ("${template.name}") needs`);
      }
      t = { ...template, name };
      from = `plugins.kubernetes.targets.${target.targetType}`;
    }
    const apiVersion = t.api_version ?? DEFAULT_API_VERSION[t.kind];
    if (apiVersion === undefined) throw new Error(`${t.kind} ${t.name} (${from}) needs an api_version: only Deployment, StatefulSet, ReplicaSet and ScaledObject have a default`);
    const { namespace: fallbackNamespace } = await cluster.load();
    const resource = await resourceOf(apiVersion, t.kind, signal);
    return { kind: t.kind, name: t.name, namespace: t.namespace ?? fallbackNamespace, apiVersion, mode: t.mode ?? config.scaled_object_mode, resource };
  }

  /** @param {Resource} r @param {string} ns */
  const listKey = (r, ns) => `${r.group}/${r.version}/${r.plural}/${ns}`;

  /**
   * The objects of a resource in a namespace, by name: one LIST, shared by every caller while
   * it is fresh (`fresh`: a new one is always read).
   * @param {Resource} r @param {string} ns @param {AbortSignal} signal @param {boolean} fresh
   */
  function list(r, ns, signal, fresh) {
    const key = listKey(r, ns);
    const cached = lists.get(key);
    if (cached !== undefined && !fresh && Date.now() - cached.at <= config.list_ttl_ms) return cached.items;
    const items = request('GET', collectionPath(r, ns), {}, { signal }).then((/** @type {{ items?: KubeObject[] }} */ body) => {
      /** @type {Map<string, KubeObject>} */
      const byName = new Map();
      for (const item of body.items ?? []) if (item.metadata?.name !== undefined) byName.set(item.metadata.name, trim(item));
      return byName;
    });
    const entry = { at: Date.now(), items };
    lists.set(key, entry);
    items.catch(() => {
      if (lists.get(key) === entry) lists.delete(key);
    });
    return items;
  }

  /**
   * Keeps a written object in the cached list, so the next write within the TTL carries its
   * new resourceVersion.
   * @param {Ref} ref @param {(obj: KubeObject) => void} update
   */
  function remember(ref, update) {
    const cached = lists.get(listKey(ref.resource, ref.namespace));
    if (cached === undefined) return;
    const next = cached.items.then((m) => {
      const obj = m.get(ref.name);
      if (obj !== undefined) update(obj);
      return m;
    });
    // The list may still fail; whoever reads it handles that. This chain must not be an
    // unhandled rejection.
    next.catch(() => undefined);
    cached.items = next;
  }

  /**
   * The workload a ScaledObject scales (its spec.scaleTargetRef).
   * @param {KubeObject} so @param {Ref} ref @param {AbortSignal} signal @returns {Promise<Ref>}
   */
  async function workloadOf(so, ref, signal) {
    const st = so.spec?.scaleTargetRef ?? {};
    const kind = typeof st.kind === 'string' ? st.kind : 'Deployment';
    const apiVersion = typeof st.apiVersion === 'string' ? st.apiVersion : DEFAULT_API_VERSION[kind] ?? 'apps/v1';
    const resource = await resourceOf(apiVersion, kind, signal);
    return { kind, name: String(st.name), namespace: ref.namespace, apiVersion, mode: ref.mode, resource };
  }

  /**
   * Current replicas of resolved targets, reading each needed list once.
   * @param {Ref[]} refs @param {AbortSignal} signal @param {boolean} fresh
   * @returns {Promise<Array<number | null>>}
   */
  async function replicasOf(refs, signal, fresh) {
    /** @type {Map<string, Promise<Map<string, KubeObject> | null>>} */
    const reads = new Map();
    /** @param {Resource} r @param {string} ns */
    const read = (r, ns) => {
      const key = listKey(r, ns);
      let p = reads.get(key);
      if (p === undefined) {
        p = list(r, ns, signal, fresh).catch((err) => {
          log.warn({ resource: r.plural, namespace: ns, err: err.message }, `kubernetes: cannot list ${r.plural} in ${ns}: ${err.message}; their policies use the stored replica count this cycle`);
          return null;
        });
        reads.set(key, p);
      }
      return p;
    };
    return Promise.all(
      refs.map(async (ref) => {
        const items = await read(ref.resource, ref.namespace);
        const obj = items?.get(ref.name);
        if (obj === undefined) return null;
        if (ref.kind !== 'ScaledObject') return specReplicas(obj, ref.resource.group === 'apps');
        try {
          const w = await workloadOf(obj, ref, signal);
          const workloads = await read(w.resource, w.namespace);
          return specReplicas(workloads?.get(w.name), w.resource.group === 'apps');
        } catch {
          // Its workload's kind cannot be resolved (logged once by discovery): unknown, alone.
          return null;
        }
      }),
    );
  }

  /**
   * The stored object (from the cycle's list when fresh, else one GET).
   * @param {Ref} ref @param {AbortSignal} signal @param {boolean} reread
   * @returns {Promise<KubeObject>}
   */
  async function current(ref, signal, reread) {
    if (!reread) {
      const cached = lists.get(listKey(ref.resource, ref.namespace));
      if (cached !== undefined && Date.now() - cached.at <= config.list_ttl_ms) {
        const obj = await cached.items.then((m) => m.get(ref.name)).catch(() => undefined);
        if (obj?.metadata?.resourceVersion !== undefined) return obj;
      }
    }
    const path = ref.kind === 'ScaledObject' ? objectPath(ref) : `${objectPath(ref)}/scale`;
    try {
      return await request('GET', path, {}, { signal });
    } catch (err) {
      throw explain(err, ref, 'get', ref.kind === 'ScaledObject' ? undefined : 'scale');
    }
  }

  /**
   * One write with a resourceVersion precondition; on 409 the object is read again and the write
   * retried once.
   * @param {Ref} ref @param {ScaleOptions} opts @param {string} verb
   * @param {(obj: KubeObject) => { method: string, path: string, body: unknown, contentType: string, subresource?: string }} build
   * @param {KubeObject} [read] the object as already read
   */
  async function write(ref, opts, verb, build, read) {
    const query = { fieldManager: config.field_manager, ...(opts.dryRun ? { dryRun: 'All' } : {}) };
    let obj = read ?? (await current(ref, opts.signal, false));
    for (let attempt = 0; ; attempt++) {
      const w = build(obj);
      try {
        return await request(w.method, w.path, query, { body: w.body, contentType: w.contentType, signal: opts.signal });
      } catch (err) {
        if (err instanceof KubeApiError && err.code === 409 && attempt === 0) {
          log.info({ object: describe(ref), resourceVersion: obj.metadata?.resourceVersion }, `kubernetes: ${describe(ref)} changed since it was read (409 Conflict); reading it again and retrying once`);
          obj = await current(ref, opts.signal, true);
          continue;
        }
        if (err instanceof KubeApiError && err.code === 409) {
          throw new Error(`${describe(ref)} kept changing (409 Conflict twice); the change is left for the next evaluation: ${err.message}`);
        }
        throw explain(err, ref, verb, w.subresource);
      }
    }
  }

  /**
   * @param {Ref} ref @param {number} replicas @param {ScaleOptions} opts
   * @returns {Promise<string>} what was done, in words
   */
  async function scaleScaledObject(ref, replicas, opts) {
    // KEDA raises the workload to a new floor at its next sync; until then the workload runs
    // fewer and the same floor is decided again. An unchanged floor (or annotation) is not sent.
    const read = await current(ref, opts.signal, false);
    if (ref.mode === 'floor' && read.spec?.minReplicaCount === replicas) return `spec.minReplicaCount of ${describe(ref)} is already ${replicas}; nothing sent (KEDA brings the workload to it)`;
    if (ref.mode === 'exact' && read.metadata?.annotations?.[PAUSED_REPLICAS] === String(replicas)) return `${PAUSED_REPLICAS} of ${describe(ref)} is already ${replicas}; nothing sent`;
    if (ref.mode === 'floor') {
      const answer = await write(ref, opts, 'patch', (obj) => {
        const max = obj.spec?.maxReplicaCount;
        if (typeof max === 'number' && replicas > max) {
          throw new Error(`${describe(ref)} has maxReplicaCount ${max}: a floor of ${replicas} would exceed it; raise maxReplicaCount or lower the policy's max_replicas`);
        }
        return {
          method: 'PATCH',
          path: objectPath(ref),
          body: { metadata: { resourceVersion: obj.metadata?.resourceVersion }, spec: { minReplicaCount: replicas } },
          contentType: 'application/merge-patch+json',
        };
      }, read);
      if (!opts.dryRun) remember(ref, (o) => Object.assign(o, trim(answer)));
      return `set spec.minReplicaCount of ${describe(ref)} to ${replicas} (floor mode: KEDA's triggers may go higher)`;
    }
    const answer = await write(ref, opts, 'patch', (obj) => ({
      method: 'PATCH',
      path: objectPath(ref),
      body: { metadata: { resourceVersion: obj.metadata?.resourceVersion, annotations: { [PAUSED_REPLICAS]: String(replicas) } } },
      contentType: 'application/merge-patch+json',
    }), read);
    if (!opts.dryRun) remember(ref, (o) => Object.assign(o, trim(answer)));
    return `set the ${PAUSED_REPLICAS} annotation of ${describe(ref)} to ${replicas} (exact mode: KEDA holds the workload there)`;
  }

  /** @param {Ref} ref @param {number} replicas @param {ScaleOptions} opts */
  async function scaleWorkload(ref, replicas, opts) {
    const answer = await write(ref, opts, 'update', (obj) => ({
      method: 'PUT',
      path: `${objectPath(ref)}/scale`,
      body: {
        apiVersion: 'autoscaling/v1',
        kind: 'Scale',
        metadata: { name: ref.name, namespace: ref.namespace, resourceVersion: obj.metadata?.resourceVersion },
        spec: { replicas },
      },
      contentType: 'application/json',
      subresource: 'scale',
    }));
    if (!opts.dryRun) {
      remember(ref, (o) => {
        o.spec = { ...o.spec, replicas };
        if (o.metadata !== undefined && answer?.metadata?.resourceVersion !== undefined) o.metadata.resourceVersion = answer.metadata.resourceVersion;
      });
    }
    return `set ${describe(ref)} to ${replicas} replicas through its scale subresource`;
  }

  const targetTypes = [...new Set([...config.target_types, ...Object.keys(config.targets)])];
  if (targetTypes.length > 0 || config.kubeconfig !== undefined || config.context !== undefined) {
    // Configured to serve: load the client library and find the cluster now, in the background
    // (the library takes a second or two to load), so the first cycle does not wait for it and a
    // missing kubeconfig shows at start. Unconfigured, nothing is loaded until a policy uses it.
    cluster.load().catch((err) => log.error({ err: err.message }, `kubernetes: ${err.message}`));
  }

  return {
    targetTypes,

    async getCurrentReplicas(target, { signal }) {
      const ref = await resolve(target, signal);
      const [n] = await replicasOf([ref], signal, false);
      return n ?? null;
    },

    // One LIST per (resource, namespace) for every policy the daemon holds, once per cycle.
    async getCurrentReplicasMany(targets, { signal }) {
      /** @type {Map<string, number | null>} */
      const answers = new Map();
      /** @type {Array<{ id: string, ref: Ref }>} */
      const resolved = [];
      for (const t of targets) {
        try {
          resolved.push({ id: t.policyId, ref: await resolve(t, signal) });
        } catch (err) {
          answers.set(t.policyId, null);
          log.debug({ policy: t.policyName, err: /** @type {Error} */ (err).message }, 'kubernetes: no object');
        }
      }
      const counts = await replicasOf(
        resolved.map((r) => r.ref),
        signal,
        true,
      );
      resolved.forEach((r, i) => answers.set(r.id, counts[i] ?? null));
      return answers;
    },

    async scale(target, replicas, opts) {
      const ref = await resolve(target, opts.signal);
      // One write at a time per object: a second one (another policy on the same object, a
      // manual evaluation beside the loop) waits, and then carries the version the first answered.
      const key = `${listKey(ref.resource, ref.namespace)}/${ref.name}`;
      const run = (writing.get(key) ?? Promise.resolve()).catch(() => undefined).then(() => (ref.kind === 'ScaledObject' ? scaleScaledObject(ref, replicas, opts) : scaleWorkload(ref, replicas, opts)));
      writing.set(key, run);
      let done;
      try {
        done = await run;
      } finally {
        if (writing.get(key) === run) writing.delete(key);
      }
      const fields = { object: describe(ref), apiVersion: ref.apiVersion, replicas, previous: opts.previousReplicas, dryRun: opts.dryRun, decisionId: opts.decisionId };
      if (opts.dryRun) log.info(fields, `kubernetes, dry run (dryRun=All, nothing changed): the API server accepted: ${done} (${opts.reason})`);
      else log.info(fields, `kubernetes: ${done}, from ${opts.previousReplicas} (${opts.reason})`);
    },

    async close() {
      lists.clear();
      cluster.agent?.destroy();
    },
  };
}
