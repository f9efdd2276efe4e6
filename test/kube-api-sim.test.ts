/**
 * The simulated Kubernetes API server (test/helpers/kube-api-sim.ts), driven with plain fetch:
 * lists and reads, the scale subresource, resourceVersion and optimistic concurrency, dry run,
 * the three patch content types, ScaledObject patches, the Status objects of every error, fault
 * injection and the request log.
 */
import t, { type Test } from 'tap';
import { startKubeApiSim, type KubeApiSim, type KubeApiSimOptions } from './helpers/kube-api-sim.js';

const MERGE = 'application/merge-patch+json';
const STRATEGIC = 'application/strategic-merge-patch+json';
const JSON_PATCH = 'application/json-patch+json';
const DEPLOYMENTS = '/apis/apps/v1/namespaces/data/deployments';
const SCALED_OBJECTS = '/apis/keda.sh/v1alpha1/namespaces/data/scaledobjects';

interface Answer {
  code: number;
  headers: Headers;
  // The tests read the JSON answers field by field.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

/** Starts a simulator holding deployments data/web (2) and data/api (1), other/etl (3), statefulset data/db (1) and a ScaledObject data/web-so. */
async function setup(t: Test, opts: KubeApiSimOptions = {}): Promise<{ sim: KubeApiSim; call: (method: string, path: string, body?: unknown, contentType?: string, headers?: Record<string, string>) => Promise<Answer> }> {
  const sim = await startKubeApiSim(opts);
  t.teardown(() => sim.close());
  sim.addDeployment('data', 'web', 2);
  sim.addDeployment('data', 'api', 1, { labels: { tier: 'backend' } });
  sim.addDeployment('other', 'etl', 3);
  sim.addStatefulSet('data', 'db', 1);
  sim.addScaledObject('data', 'web-so', { scaleTargetRef: { kind: 'Deployment', name: 'web' }, minReplicaCount: 1, maxReplicaCount: 10 });
  const call = async (method: string, path: string, body?: unknown, contentType?: string, headers: Record<string, string> = {}): Promise<Answer> => {
    const res = await fetch(sim.url + path, {
      method,
      headers: { ...(contentType ? { 'content-type': contentType } : {}), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { code: res.status, headers: res.headers, body: await res.json() };
  };
  return { sim, call };
}

/** A pattern for the meta/v1 Status object of a failure; a string message must match exactly. */
const failure = (code: number, reason: string, message: string | RegExp): Record<string, unknown> => ({
  kind: 'Status',
  apiVersion: 'v1',
  status: 'Failure',
  code,
  reason,
  message: typeof message === 'string' ? new RegExp(`^${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) : message,
});

t.test('lists carry the List kind, ListMeta and items; GET answers one object', async (t) => {
  const { sim, call } = await setup(t);
  const list = await call('GET', DEPLOYMENTS);
  t.equal(list.code, 200);
  t.match(list.body, { apiVersion: 'apps/v1', kind: 'DeploymentList', metadata: { resourceVersion: sim.resourceVersion } });
  t.same(list.body.items.map((i: { metadata: { name: string } }) => i.metadata.name), ['api', 'web'], 'one namespace, ordered by name');
  t.notOk('kind' in list.body.items[0], 'items of a built-in list have no apiVersion/kind, as on the real server');

  t.same((await call('GET', '/apis/apps/v1/deployments')).body.items.length, 3, 'cluster-wide list');
  t.same((await call('GET', `${DEPLOYMENTS}?labelSelector=tier%3Dbackend`)).body.items.map((i: { metadata: { name: string } }) => i.metadata.name), ['api']);
  t.same((await call('GET', `${DEPLOYMENTS}?labelSelector=tier!%3Dbackend,app`)).body.items.length, 1);
  t.match((await call('GET', '/apis/apps/v1/namespaces/data/statefulsets')).body, { kind: 'StatefulSetList', items: [{ metadata: { name: 'db' } }] });
  t.match((await call('GET', '/apis/apps/v1/namespaces/nowhere/deployments')).body, { kind: 'DeploymentList', items: [] }, 'an unknown namespace lists empty');

  const so = await call('GET', SCALED_OBJECTS);
  t.match(so.body, { apiVersion: 'keda.sh/v1alpha1', kind: 'ScaledObjectList', metadata: { continue: '', resourceVersion: /^\d+$/ } });
  t.match(so.body.items[0], { apiVersion: 'keda.sh/v1alpha1', kind: 'ScaledObject', spec: { scaleTargetRef: { name: 'web' }, minReplicaCount: 1, maxReplicaCount: 10 } });

  const web = await call('GET', `${DEPLOYMENTS}/web`);
  t.equal(web.code, 200);
  t.match(web.body, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'data', uid: /^[0-9a-f-]{36}$/, resourceVersion: /^\d+$/, generation: 1, labels: { app: 'web' }, annotations: { 'deployment.kubernetes.io/revision': '1' } },
    spec: { replicas: 2, selector: { matchLabels: { app: 'web' } } },
    status: { observedGeneration: 1, replicas: 2, readyReplicas: 2 },
  });
  t.same(web.body, sim.get('deployments', 'data', 'web'), 'the accessor sees the same object');
});

t.test('the scale subresource: read, write, resourceVersion, generation and 409 on a stale version', async (t) => {
  const { sim, call } = await setup(t);
  const scale = await call('GET', `${DEPLOYMENTS}/web/scale`);
  const before = sim.get('deployments', 'data', 'web');
  t.same(scale.body, {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: { name: 'web', namespace: 'data', uid: before?.metadata.uid, resourceVersion: before?.metadata.resourceVersion, creationTimestamp: before?.metadata.creationTimestamp },
    spec: { replicas: 2 },
    status: { replicas: 2, selector: 'app=web' },
  });

  const rv0 = scale.body.metadata.resourceVersion;
  const put = await call('PUT', `${DEPLOYMENTS}/web/scale`, { ...scale.body, spec: { replicas: 5 } }, 'application/json');
  t.equal(put.code, 200);
  t.match(put.body, { kind: 'Scale', spec: { replicas: 5 }, status: { replicas: 5 } });
  t.ok(Number(put.body.metadata.resourceVersion) > Number(rv0), 'resourceVersion bumped');
  t.equal(put.body.metadata.resourceVersion, sim.resourceVersion, 'to the latest of the global counter');
  t.match(sim.get('deployments', 'data', 'web'), { metadata: { generation: 2 }, spec: { replicas: 5 }, status: { observedGeneration: 2, replicas: 5 } });

  // The same body again: its resourceVersion is now stale.
  const stale = await call('PUT', `${DEPLOYMENTS}/web/scale`, { ...scale.body, spec: { replicas: 6 } }, 'application/json');
  t.equal(stale.code, 409);
  t.same(stale.body, {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: 'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; please apply your changes to the latest version and try again',
    reason: 'Conflict',
    details: { name: 'web', group: 'apps', kind: 'deployments' },
    code: 409,
  });
  t.equal(sim.replicas('deployments', 'data', 'web').spec, 5, 'a refused write changes nothing');

  const rv1 = sim.resourceVersion;
  const same = await call('PUT', `${DEPLOYMENTS}/web/scale`, { spec: { replicas: 5 } }, 'application/json');
  t.equal(same.code, 200, 'no resourceVersion: an unconditional update');
  t.equal(sim.resourceVersion, rv1, 'a write that changes nothing is not stored and bumps nothing');

  const zero = await call('PUT', '/apis/apps/v1/namespaces/data/statefulsets/db/scale', { spec: { replicas: 0 } }, 'application/json');
  t.same(zero.body.spec, {}, 'spec.replicas 0 is omitted (omitempty)');
  t.same(zero.body.status, { replicas: 0, selector: 'app=db' });
  t.match(sim.get('statefulsets', 'data', 'db'), { spec: { replicas: 0 }, status: { replicas: 0, availableReplicas: 0 } });

  // Another client (an HPA) scales in between: the executor's read-modify-write conflicts.
  const read = await call('GET', `${DEPLOYMENTS}/api/scale`);
  sim.update('deployments', 'data', 'api', (d) => void (d.spec['replicas'] = 4));
  t.equal((await call('PUT', `${DEPLOYMENTS}/api/scale`, { ...read.body, spec: { replicas: 2 } }, 'application/json')).code, 409);
  t.equal((await call('PUT', `${DEPLOYMENTS}/api/scale`, { metadata: { name: 'other' }, spec: { replicas: 2 } }, 'application/json')).code, 400, 'a name that differs from the URL');
});

t.test('PATCH of /scale with the three patch content types', async (t) => {
  const { sim, call } = await setup(t);
  const merge = await call('PATCH', `${DEPLOYMENTS}/web/scale`, { spec: { replicas: 3 } }, MERGE);
  t.match(merge.body, { kind: 'Scale', spec: { replicas: 3 } });
  const strategic = await call('PATCH', `${DEPLOYMENTS}/web/scale`, { spec: { replicas: 4 } }, `${STRATEGIC}; charset=utf-8`);
  t.match(strategic.body, { spec: { replicas: 4 } });
  const json = await call('PATCH', '/apis/apps/v1/namespaces/data/statefulsets/db/scale', [{ op: 'replace', path: '/spec/replicas', value: 7 }], JSON_PATCH);
  t.match(json.body, { spec: { replicas: 7 }, status: { replicas: 7 } });
  t.equal(sim.replicas('deployments', 'data', 'web').spec, 4);

  // A patch that names a resourceVersion is a precondition, in every patch type.
  const rv = sim.get('deployments', 'data', 'web')?.metadata.resourceVersion;
  t.equal((await call('PATCH', `${DEPLOYMENTS}/web/scale`, { metadata: { resourceVersion: '1' }, spec: { replicas: 1 } }, MERGE)).code, 409);
  const tested = await call('PATCH', `${DEPLOYMENTS}/web/scale`, [{ op: 'test', path: '/metadata/resourceVersion', value: rv }, { op: 'replace', path: '/spec/replicas', value: 1 }], JSON_PATCH);
  t.equal(tested.code, 200, 'a json patch "test" of the current resourceVersion passes');
  const failed = await call('PATCH', `${DEPLOYMENTS}/web/scale`, [{ op: 'test', path: '/metadata/resourceVersion', value: rv }], JSON_PATCH);
  t.match(failed, { code: 422, body: failure(422, 'Invalid', /test failed/) }, 'and fails once the version moved');
  t.equal((await call('PATCH', `${DEPLOYMENTS}/web/scale`, { op: 'replace' }, JSON_PATCH)).code, 400, 'a json patch that is not an array');
  t.equal((await call('PATCH', `${DEPLOYMENTS}/web/scale`, '{not json', MERGE)).code, 400);

  const wrongType = await call('PATCH', `${DEPLOYMENTS}/web/scale`, { spec: { replicas: 2 } }, 'application/json');
  t.equal(wrongType.code, 415);
  t.match(wrongType.body, failure(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json'));
  t.equal((await call('PATCH', `${DEPLOYMENTS}/web`, 'spec:\n  replicas: 2\n', 'application/apply-patch+yaml')).code, 415, 'server-side apply is not simulated');
  t.equal((await call('PUT', `${DEPLOYMENTS}/web/scale`, { spec: { replicas: 2 } }, 'text/plain')).code, 415, 'PUT takes application/json');
});

t.test('?dryRun=All answers as if applied and stores nothing', async (t) => {
  const { sim, call } = await setup(t);
  const before = sim.get('deployments', 'data', 'web');
  const rv = sim.resourceVersion;
  const dry = await call('PATCH', `${DEPLOYMENTS}/web/scale?dryRun=All`, { spec: { replicas: 9 } }, MERGE);
  t.equal(dry.code, 200);
  t.match(dry.body, { spec: { replicas: 9 }, metadata: { resourceVersion: before?.metadata.resourceVersion } });
  const dryPut = await call('PUT', `${DEPLOYMENTS}/web?dryRun=All`, { ...before, spec: { ...before?.spec, replicas: 8 } }, 'application/json');
  t.match(dryPut.body, { spec: { replicas: 8 }, metadata: { generation: 2, resourceVersion: before?.metadata.resourceVersion } }, 'generation as it would be');
  t.equal(sim.resourceVersion, rv, 'resourceVersion not bumped');
  t.same(sim.get('deployments', 'data', 'web'), before, 'state unchanged');
  t.equal((await call('PATCH', `${DEPLOYMENTS}/web/scale?dryRun=All`, { spec: { replicas: -1 } }, MERGE)).code, 422, 'still validated');
  const bad = await call('PATCH', `${DEPLOYMENTS}/web/scale?dryRun=true`, { spec: { replicas: 1 } }, MERGE);
  t.match(bad.body, failure(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: "true": supported values: "All"'));
});

t.test('ScaledObject: merge patch of spec.minReplicaCount and the paused-replicas annotation', async (t) => {
  const { sim, call } = await setup(t);
  const path = `${SCALED_OBJECTS}/web-so`;
  const patched = await call('PATCH', path, { spec: { minReplicaCount: 3 } }, MERGE);
  t.equal(patched.code, 200);
  t.match(patched.body, { kind: 'ScaledObject', metadata: { generation: 2 }, spec: { minReplicaCount: 3, maxReplicaCount: 10, scaleTargetRef: { name: 'web' } } });

  const paused = await call('PATCH', path, { metadata: { annotations: { 'autoscaling.keda.sh/paused-replicas': '0' } } }, MERGE);
  t.same(paused.body.metadata.annotations, { 'autoscaling.keda.sh/paused-replicas': '0' });
  t.equal(paused.body.metadata.generation, 2, 'a custom resource with a status subresource bumps generation for spec only');
  t.ok(Number(paused.body.metadata.resourceVersion) > Number(patched.body.metadata.resourceVersion));
  const resumed = await call('PATCH', path, { metadata: { annotations: { 'autoscaling.keda.sh/paused-replicas': null } } }, MERGE);
  t.notOk('annotations' in resumed.body.metadata, 'null removes the annotation; the empty map is omitted');

  const numeric = await call('PATCH', path, { metadata: { annotations: { 'autoscaling.keda.sh/paused-replicas': 0 } } }, MERGE);
  t.match(numeric, { code: 400, body: failure(400, 'BadRequest', /of type string/) }, 'annotation values are strings');
  const invalid = await call('PATCH', path, { spec: { minReplicaCount: 'two', scaleTargetRef: { name: null } } }, MERGE);
  t.match(invalid.body, {
    ...failure(422, 'Invalid', 'ScaledObject.keda.sh "web-so" is invalid: [spec.scaleTargetRef.name: Required value, spec.minReplicaCount: Invalid value: "string": spec.minReplicaCount in body must be of type integer: "string"]'),
    details: { name: 'web-so', group: 'keda.sh', kind: 'ScaledObject', causes: [{ field: 'spec.scaleTargetRef.name' }, { field: 'spec.minReplicaCount' }] },
  });
  t.match((await call('PATCH', path, { spec: { minReplicaCount: 1 } }, STRATEGIC)).body, failure(415, 'UnsupportedMediaType', /application\/merge-patch\+json$/), 'no strategic merge patch for a custom resource');
  t.equal((await call('PATCH', path, { status: { pausedReplicaCount: 5 } }, MERGE)).body.status.pausedReplicaCount, undefined, 'status is not written through the object');
  const json = await call('PATCH', path, [{ op: 'add', path: '/metadata/annotations', value: { 'autoscaling.keda.sh/paused-replicas': '2' } }], JSON_PATCH);
  t.same(json.body.metadata.annotations, { 'autoscaling.keda.sh/paused-replicas': '2' });

  const current = sim.get('scaledobjects', 'data', 'web-so');
  const { resourceVersion: _rv, ...noVersion } = current?.metadata ?? {};
  t.match((await call('PUT', path, { ...current, metadata: noVersion }, 'application/json')).body, failure(422, 'Invalid', 'scaledobjects.keda.sh "web-so" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update'));
  t.match((await call('PUT', path, { ...current, spec: { ...current?.spec, maxReplicaCount: 20 } }, 'application/json')).body, { spec: { maxReplicaCount: 20 } });
});

t.test('error Status objects: 404, 403, 401, 422, 400, 405', async (t) => {
  const { sim, call } = await setup(t, {
    user: 'system:serviceaccount:philotes:scaler',
    rbac: [
      { verb: 'get', group: 'apps', resource: 'deployments', namespace: 'data' },
      { verb: 'list', group: 'apps', resource: 'deployments', namespace: 'data' },
      { verb: '*', group: 'apps', resource: 'deployments/scale', namespace: 'data' },
    ],
  });
  t.same((await call('GET', `${DEPLOYMENTS}/missing/scale`)).body, {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: 'deployments.apps "missing" not found',
    reason: 'NotFound',
    details: { name: 'missing', group: 'apps', kind: 'deployments' },
    code: 404,
  });
  t.equal((await call('PATCH', `${DEPLOYMENTS}/missing/scale`, { spec: { replicas: 1 } }, MERGE)).code, 404);

  const forbidden = await call('PATCH', `${DEPLOYMENTS}/web`, { spec: { replicas: 1 } }, MERGE);
  t.same(forbidden.body, {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: 'deployments.apps "web" is forbidden: User "system:serviceaccount:philotes:scaler" cannot patch resource "deployments" in API group "apps" in the namespace "data"',
    reason: 'Forbidden',
    details: { group: 'apps', kind: 'deployments', name: 'web' },
    code: 403,
  });
  t.equal((await call('PATCH', `${DEPLOYMENTS}/web/scale`, { spec: { replicas: 1 } }, MERGE)).code, 200, 'the scale subresource is allowed');
  t.match((await call('GET', '/apis/apps/v1/deployments')).body, failure(403, 'Forbidden', 'deployments.apps is forbidden: User "system:serviceaccount:philotes:scaler" cannot list resource "deployments" in API group "apps" at the cluster scope'));
  t.match((await call('GET', SCALED_OBJECTS)).body, failure(403, 'Forbidden', /cannot list resource "scaledobjects" in API group "keda.sh" in the namespace "data"$/));

  sim.setRbac(undefined);
  sim.setDeny((r) => r.verb === 'patch' && r.subresource === 'scale' && r.namespace === 'other');
  t.match((await call('PATCH', '/apis/apps/v1/namespaces/other/deployments/etl/scale', { spec: { replicas: 1 } }, MERGE)).body, {
    message: 'deployments.apps "etl" is forbidden: User "system:serviceaccount:philotes:scaler" cannot patch resource "deployments/scale" in API group "apps" in the namespace "other"',
  });
  t.equal((await call('PATCH', `${DEPLOYMENTS}/web`, { spec: { replicas: 1 } }, MERGE)).code, 200, 'the hook denies only what it names');

  t.match((await call('PUT', `${DEPLOYMENTS}/web/scale`, { spec: { replicas: -1 } }, 'application/json')).body, {
    ...failure(422, 'Invalid', 'Scale.autoscaling "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0'),
    details: { name: 'web', group: 'autoscaling', kind: 'Scale', causes: [{ reason: 'FieldValueInvalid', field: 'spec.replicas' }] },
  });
  t.match((await call('PATCH', `${DEPLOYMENTS}/web`, { spec: { replicas: -2 } }, MERGE)).body, failure(422, 'Invalid', 'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -2: must be greater than or equal to 0'));
  t.match((await call('PATCH', `${DEPLOYMENTS}/web/scale`, { spec: { replicas: 1.5 } }, MERGE)).body, failure(400, 'BadRequest', /cannot unmarshal number 1.5 into Go struct field ScaleSpec.spec.replicas of type int32/));
  t.match((await call('GET', '/apis/apps/v1/namespaces/data/daemonsets')).body, failure(404, 'NotFound', 'the server could not find the requested resource'));
  t.match((await call('DELETE', `${DEPLOYMENTS}/web`)).body, failure(405, 'MethodNotAllowed', /does not allow this method/));
  t.equal((await call('GET', `${DEPLOYMENTS}?watch=true`)).code, 400, 'watches are not simulated');

  const { call: withToken } = await setup(t, { token: 's3cret' });
  t.same((await withToken('GET', DEPLOYMENTS)).body, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
  t.equal((await withToken('GET', DEPLOYMENTS, undefined, undefined, { authorization: 'Bearer wrong' })).code, 401);
  t.equal((await withToken('GET', DEPLOYMENTS, undefined, undefined, { authorization: 'Bearer s3cret' })).code, 200);
});

t.test('injected faults: 429 with Retry-After, 5xx per path or for the next N requests, delays and resets', async (t) => {
  const { sim, call } = await setup(t);
  sim.failNext(1, 429, 3);
  const throttled = await call('GET', DEPLOYMENTS);
  t.equal(throttled.headers.get('retry-after'), '3');
  t.same(throttled.body, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Too many requests, please try again later.', reason: 'TooManyRequests', details: { retryAfterSeconds: 3 }, code: 429 });
  t.equal((await call('GET', DEPLOYMENTS)).code, 200, 'only the next request');

  const scaleFault = sim.inject({ method: 'PATCH', path: /\/scale$/, status: 500, times: 2 });
  t.match((await call('PATCH', `${DEPLOYMENTS}/web/scale`, { spec: { replicas: 4 } }, MERGE)).body, failure(500, 'InternalError', 'Internal error occurred: injected fault'));
  t.equal((await call('GET', `${DEPLOYMENTS}/web/scale`)).code, 200, 'other methods pass');
  t.equal((await call('PATCH', `${DEPLOYMENTS}/web/scale`, { spec: { replicas: 4 } }, MERGE)).code, 500);
  t.equal((await call('PATCH', `${DEPLOYMENTS}/web/scale`, { spec: { replicas: 4 } }, MERGE)).code, 200, 'after `times` requests the fault is spent');
  t.equal(scaleFault.hits, 2);
  t.equal(sim.replicas('deployments', 'data', 'web').spec, 4);

  sim.failNext(2);
  t.match((await call('GET', DEPLOYMENTS)).body, failure(503, 'ServiceUnavailable', 'the server is currently unable to handle the request'));
  t.equal((await call('GET', SCALED_OBJECTS)).code, 503);
  t.equal((await call('GET', SCALED_OBJECTS)).code, 200);

  const slow = sim.inject({ path: `${DEPLOYMENTS}/web`, delayMs: 60, times: 1 });
  const started = Date.now();
  t.equal((await call('GET', `${DEPLOYMENTS}/web`)).code, 200, 'a delay alone still answers');
  t.ok(Date.now() - started >= 50);
  t.equal(slow.hits, 1);

  const reset = sim.inject({ path: `${DEPLOYMENTS}/api`, reset: true });
  await t.rejects(fetch(`${sim.url}${DEPLOYMENTS}/api`), 'the connection is dropped');
  reset.remove();
  t.equal((await call('GET', `${DEPLOYMENTS}/api`)).code, 200, 'a removed fault no longer applies');
  sim.inject({ status: 503 });
  sim.clearFaults();
  t.equal((await call('GET', DEPLOYMENTS)).code, 200);
});

t.test('status.replicas follows spec.replicas after the configured lag, as a separate write', async (t) => {
  const { sim, call } = await setup(t, { statusLagMs: 40 });
  const put = await call('PATCH', `${DEPLOYMENTS}/web/scale`, { spec: { replicas: 6 } }, MERGE);
  t.match(put.body, { spec: { replicas: 6 }, status: { replicas: 2 } }, 'the answer shows the old status');
  const rvAfterWrite = sim.resourceVersion;
  t.match(sim.get('deployments', 'data', 'web'), { metadata: { generation: 2 }, status: { observedGeneration: 1, replicas: 2 } });
  while (sim.replicas('deployments', 'data', 'web').status !== 6) await new Promise((r) => setTimeout(r, 10));
  t.match(sim.get('deployments', 'data', 'web'), { status: { observedGeneration: 2, replicas: 6, readyReplicas: 6 } });
  t.equal(Number(sim.resourceVersion), Number(rvAfterWrite) + 1, 'the status write bumped resourceVersion');

  sim.setStatusLag(60_000);
  await call('PATCH', '/apis/apps/v1/namespaces/data/statefulsets/db/scale', { spec: { replicas: 0 } }, MERGE);
  t.same(sim.replicas('statefulsets', 'data', 'db'), { spec: 0, status: 1 });
  sim.settle();
  t.same(sim.replicas('statefulsets', 'data', 'db'), { spec: 0, status: 0 }, 'settle() applies pending status writes');
});

t.test('the request log records each request and counts them by verb and path', async (t) => {
  const { sim, call } = await setup(t);
  await call('GET', DEPLOYMENTS);
  await call('GET', `${DEPLOYMENTS}/web/scale`);
  await call('PATCH', `${DEPLOYMENTS}/web/scale?dryRun=All&fieldManager=philotes`, { spec: { replicas: 3 } }, MERGE);
  await call('PATCH', `${DEPLOYMENTS}/web/scale`, { spec: { replicas: 3 } }, MERGE);
  await call('PATCH', `${DEPLOYMENTS}/nope/scale`, { spec: { replicas: 3 } }, MERGE);
  t.equal(sim.requests.length, 5);
  t.equal(sim.count({ verb: 'patch', path: /\/scale$/ }), 3);
  t.equal(sim.count({ method: 'get' }), 2);
  t.equal(sim.count({ verb: 'list' }), 1);
  t.equal(sim.count({ path: `${DEPLOYMENTS}/web/scale`, code: 200 }), 3);
  t.equal(sim.count({ code: 404 }), 1);
  t.match(sim.requests[2], { method: 'PATCH', path: `${DEPLOYMENTS}/web/scale`, query: { dryRun: 'All', fieldManager: 'philotes' }, contentType: MERGE, body: '{"spec":{"replicas":3}}', verb: 'patch', subresource: 'scale', code: 200, time: Number });
  sim.clearRequests();
  t.equal(sim.count(), 0);
});
