/**
 * The bundled kubernetes executor against the simulated Kubernetes API server (test/helpers/
 * kube-api-sim.ts; no cluster runs here): the requests it sends, the objects it changes, and the
 * error each failure mode gives.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { PAUSED_REPLICAS } from '../plugins/kubernetes/index.js';
import { packageRoot } from '../src/util/package-root.js';
import type { RbacRule } from './helpers/kube-api-sim.js';
import { kubeconfigFor, kubeHarness, scaleOpts, targetOf } from './helpers/kube-executor.js';

const NAMESPACES = ['cdc', 'analytics', 'streaming'];

t.test('many targets: one LIST per resource and namespace; a change is one PUT to /scale with the listed resourceVersion', async (t) => {
  const { sim, executor } = await kubeHarness(t);
  const targets = [];
  for (const ns of NAMESPACES) {
    for (let i = 0; i < 10; i++) {
      sim.addDeployment(ns, `worker-${i}`, i % 4);
      targets.push(targetOf({ kind: 'Deployment', name: `worker-${i}`, namespace: ns }));
    }
    for (let i = 0; i < 3; i++) {
      sim.addStatefulSet(ns, `store-${i}`, 2);
      targets.push(targetOf({ kind: 'StatefulSet', name: `store-${i}`, namespace: ns }));
    }
  }
  targets.push(targetOf({ kind: 'Deployment', name: 'absent', namespace: 'cdc' }));
  sim.clearRequests();
  const counts = await executor.getCurrentReplicasMany(targets);
  t.same(counts.slice(0, 13), [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 2, 2], 'spec.replicas of each object');
  t.equal(counts[counts.length - 1], null, 'an object that is not there: unknown (the daemon uses its stored count)');
  t.equal(sim.count(), 6, `6 requests: ${sim.requests.map((r) => `${r.method} ${r.path}`).join(', ')}`);
  t.equal(sim.count({ verb: 'list' }), 6, 'all of them LISTs: deployments and statefulsets in 3 namespaces');
  t.equal(sim.count({ verb: 'get' }), 0, 'no GET per object');

  sim.clearRequests();
  const listedVersion = sim.get('deployments', 'analytics', 'worker-3')?.metadata.resourceVersion;
  await executor.scale(targets[13 + 3] as never, 7, scaleOpts({ previousReplicas: 3 }));
  t.same(sim.requests.map((r) => [r.method, r.path, r.verb, r.code]), [['PUT', '/apis/apps/v1/namespaces/analytics/deployments/worker-3/scale', 'update', 200]], 'one write');
  const body = JSON.parse(sim.requests[0]?.body ?? '{}') as { kind: string; apiVersion: string; metadata: { resourceVersion: string }; spec: { replicas: number } };
  t.match(body, { kind: 'Scale', apiVersion: 'autoscaling/v1', metadata: { resourceVersion: listedVersion }, spec: { replicas: 7 } }, 'preconditioned on the version the LIST saw');
  t.equal(sim.requests[0]?.query['fieldManager'], 'philotes-scaler');
  t.equal(sim.replicas('deployments', 'analytics', 'worker-3').spec, 7);
  t.equal(await executor.getCurrentReplicas(targets[16] as never), 7, 'a single read within the TTL answers from the list, updated by the write');
  t.equal(sim.count({ verb: 'list' }) + sim.count({ verb: 'get' }), 0, 'without a request');
  await executor.scale(targets[16] as never, 5, scaleOpts({ previousReplicas: 7 }));
  t.equal(sim.count({ verb: 'update', code: 200 }), 2, 'a second write within the TTL carries the version the first one answered (no 409)');
});

t.test('templates per target type; a policy with neither target_ref nor template is told what to set', async (t) => {
  const { sim, executor } = await kubeHarness(t, {
    target_types: ['risingwave'],
    targets: { 'cdc-worker': { kind: 'Deployment', name: 'worker-{target_id}', namespace: 'cdc' }, trino: { kind: 'StatefulSet', name: 'trino-{policy_name}' } },
  });
  t.same([...executor.targetTypes].sort(), ['cdc-worker', 'risingwave', 'trino'], 'it serves the template types and target_types');
  const id = '7d3c1a2b-0000-4000-8000-0000000000aa';
  sim.addDeployment('cdc', `worker-${id}`, 2);
  sim.addStatefulSet('cdc', 'trino-etl', 3);
  const byTemplate = targetOf(null, { targetId: id });
  t.equal(await executor.getCurrentReplicas(byTemplate), 2, '{target_id} replaced');
  t.equal(await executor.getCurrentReplicas(targetOf(null, { targetType: 'trino', policyName: 'etl' })), 3, "{policy_name} replaced; the kubeconfig context's namespace (cdc) by default");
  await t.rejects(executor.scale(targetOf(null, { targetType: 'risingwave', policyName: 'rw' }), 2, scaleOpts()), {
    message: /policy rw names no Kubernetes object: give it a target_ref, or set plugins\.kubernetes\.targets\.risingwave/,
  });
  await t.rejects(executor.scale(targetOf(null), 2, scaleOpts()), { message: /has no target_id, which plugins\.kubernetes\.targets\.cdc-worker\.name \("worker-\{target_id\}"\) needs/ });
  await t.rejects(executor.scale(targetOf({ kind: 'Rollout', name: 'x' }), 2, scaleOpts()), { message: /Rollout x \(its target_ref\) needs an api_version/ });
});

t.test('409 Conflict: read again and retry once; a second conflict fails and leaves the change to the next evaluation', async (t) => {
  const { sim, executor, logs } = await kubeHarness(t);
  sim.addDeployment('cdc', 'worker', 2);
  const target = targetOf({ kind: 'Deployment', name: 'worker' });
  await executor.getCurrentReplicasMany([target]);
  sim.update('deployments', 'cdc', 'worker', (o) => (o.metadata.labels = { ...o.metadata.labels, touched: 'yes' }));
  sim.clearRequests();
  await executor.scale(target, 4, scaleOpts({ previousReplicas: 2 }));
  t.same(
    sim.requests.map((r) => [r.method, r.verb, r.code]),
    [
      ['PUT', 'update', 409],
      ['GET', 'get', 200],
      ['PUT', 'update', 200],
    ],
    'PUT refused, GET of the scale, PUT again',
  );
  t.equal(sim.replicas('deployments', 'cdc', 'worker').spec, 4);
  t.ok(logs.some((l) => /changed since it was read \(409 Conflict\); reading it again and retrying once/.test(l.msg)), 'the retry is logged');

  sim.inject({ method: 'PUT', path: /\/scale$/, status: 409, times: 2 });
  sim.clearRequests();
  await t.rejects(executor.scale(target, 6, scaleOpts({ previousReplicas: 4 })), { message: /Deployment cdc\/worker kept changing \(409 Conflict twice\); the change is left for the next evaluation/ });
  t.equal(sim.count({ method: 'PUT' }), 2, 'two attempts, no more');
  t.equal(sim.replicas('deployments', 'cdc', 'worker').spec, 4, 'unchanged');
});

t.test('KEDA ScaledObjects: floor mode sets minReplicaCount, exact mode the paused-replicas annotation; replicas come from the workload', async (t) => {
  const { sim, executor } = await kubeHarness(t, { targets: { trino: { kind: 'ScaledObject', name: 'trino-workers', namespace: 'analytics', mode: 'exact' } } });
  sim.addDeployment('cdc', 'orders', 3);
  sim.addScaledObject('cdc', 'orders-so', { scaleTargetRef: { name: 'orders' }, minReplicaCount: 1, maxReplicaCount: 10 });
  sim.addStatefulSet('analytics', 'trino-worker', 2);
  sim.addScaledObject('analytics', 'trino-workers', { scaleTargetRef: { name: 'trino-worker', kind: 'StatefulSet', apiVersion: 'apps/v1' }, minReplicaCount: 0, maxReplicaCount: 8 });
  const floor = targetOf({ kind: 'ScaledObject', name: 'orders-so' });
  const exact = targetOf(null, { targetType: 'trino' });
  sim.clearRequests();
  t.same(await executor.getCurrentReplicasMany([floor, exact]), [3, 2], "the scaled workloads' spec.replicas");
  t.same(
    sim.requests.map((r) => r.path).sort(),
    [
      '/apis/apps/v1/namespaces/analytics/statefulsets',
      '/apis/apps/v1/namespaces/cdc/deployments',
      '/apis/keda.sh/v1alpha1/namespaces/analytics/scaledobjects',
      '/apis/keda.sh/v1alpha1/namespaces/cdc/scaledobjects',
    ],
    'a LIST of ScaledObjects and one of their workloads per namespace',
  );

  sim.clearRequests();
  await executor.scale(floor, 5, scaleOpts({ previousReplicas: 3 }));
  t.same(sim.requests.map((r) => [r.method, r.path, r.contentType, r.code]), [['PATCH', '/apis/keda.sh/v1alpha1/namespaces/cdc/scaledobjects/orders-so', 'application/merge-patch+json', 200]]);
  t.match(JSON.parse(sim.requests[0]?.body ?? '{}'), { metadata: { resourceVersion: /^\d+$/ }, spec: { minReplicaCount: 5 } });
  t.equal(sim.get('scaledobjects', 'cdc', 'orders-so')?.spec['minReplicaCount'], 5, 'floor: minReplicaCount');
  t.equal(sim.replicas('deployments', 'cdc', 'orders').spec, 3, 'the workload itself is left to KEDA');

  await executor.scale(exact, 6, scaleOpts({ previousReplicas: 2 }));
  t.equal(sim.get('scaledobjects', 'analytics', 'trino-workers')?.metadata.annotations?.[PAUSED_REPLICAS], '6', 'exact: the paused-replicas annotation');
  t.equal(sim.get('scaledobjects', 'analytics', 'trino-workers')?.spec['minReplicaCount'], 0, 'and minReplicaCount untouched');

  await t.rejects(executor.scale(floor, 12, scaleOpts()), { message: /ScaledObject cdc\/orders-so has maxReplicaCount 10: a floor of 12 would exceed it/ });
  t.equal(sim.get('scaledobjects', 'cdc', 'orders-so')?.spec['minReplicaCount'], 5, 'nothing written');
});

t.test('403: the error names the verb, resource and namespace, and the RBAC rule to add', async (t) => {
  const { sim, executor } = await kubeHarness(t);
  sim.addDeployment('cdc', 'worker', 2);
  sim.addDeployment('cdc', 'orders', 2);
  sim.addScaledObject('cdc', 'orders-so', { scaleTargetRef: { name: 'orders' } });
  sim.setRbac([
    { verb: 'list', group: 'apps', resource: 'deployments' },
    { verb: 'list', group: 'keda.sh', resource: 'scaledobjects' },
  ]);
  const target = targetOf({ kind: 'Deployment', name: 'worker' });
  const so = targetOf({ kind: 'ScaledObject', name: 'orders-so' });
  t.same(await executor.getCurrentReplicasMany([target, so]), [2, 2], 'listing is allowed');
  await t.rejects(executor.scale(target, 3, scaleOpts()), {
    message: /forbidden: update deployments\/scale in namespace cdc \(Deployment cdc\/worker\); give the daemon's service account a Role in cdc with the rule \{apiGroups: \["apps"\], resources: \["deployments\/scale"\], verbs: \["update"\]\}/,
  });
  await t.rejects(executor.scale(so, 3, scaleOpts()), {
    message: /forbidden: patch scaledobjects in namespace cdc \(ScaledObject cdc\/orders-so\); .*\{apiGroups: \["keda\.sh"\], resources: \["scaledobjects"\], verbs: \["patch"\]\}/,
  });
  await t.rejects(executor.scale(targetOf({ kind: 'ScaledObject', name: 'orders-so', namespace: 'streaming' }), 3, scaleOpts()), {
    message: /forbidden: list scaledobjects in namespace streaming|forbidden: get scaledobjects in namespace streaming/,
  }, 'without a list, the read before the write is refused, and named');
  sim.setRbac([]);
  const counts = await executor.getCurrentReplicasMany([target]);
  t.same(counts, [null], 'a LIST refused: unknown this cycle, not an exception');
});

t.test('404: the error names the object; 401: the credentials', async (t) => {
  const { sim, executor } = await kubeHarness(t);
  await t.rejects(executor.scale(targetOf({ kind: 'StatefulSet', name: 'ghost', namespace: 'streaming' }), 3, scaleOpts()), {
    message: /StatefulSet streaming\/ghost not found \(apps\/v1 statefulsets\): check the policy's target_ref or the executor's targets template/,
  });
  await sim.close();
  const wrong = await kubeHarness(t, {}, { kubeconfig: (s) => kubeconfigFor(s.url, 'not-the-token') });
  wrong.sim.addDeployment('default', 'worker', 1);
  await t.rejects(wrong.executor.scale(targetOf({ kind: 'Deployment', name: 'worker' }), 3, scaleOpts()), { message: /unauthorized: the API server refused the credentials/ });
});

t.test('429 and 5xx: bounded retries with backoff (Retry-After honoured) inside the timeout', async (t) => {
  const { sim, executor, logs } = await kubeHarness(t, { retry_base_ms: 20, max_retries: 3 });
  sim.addDeployment('cdc', 'worker', 2);
  const target = targetOf({ kind: 'Deployment', name: 'worker' });
  await executor.getCurrentReplicasMany([target]);
  sim.clearRequests();
  sim.failNext(2, 503);
  await executor.scale(target, 3, scaleOpts());
  t.same(sim.requests.map((r) => r.code), [503, 503, 200], 'two 503s, then the write');
  t.equal(sim.replicas('deployments', 'cdc', 'worker').spec, 3);
  t.equal(logs.filter((l) => /answered HTTP 503; retry \d of 3/.test(l.msg)).length, 2, 'each retry logged');

  sim.clearRequests();
  sim.failNext(1, 429, 1);
  const started = Date.now();
  await executor.scale(target, 4, scaleOpts());
  t.ok(Date.now() - started >= 950, `Retry-After: 1 waited for (${Date.now() - started} ms)`);
  t.same(sim.requests.map((r) => r.code), [429, 200]);

  sim.clearRequests();
  sim.failNext(10, 500);
  await t.rejects(executor.scale(target, 5, scaleOpts()), { message: /gave up after 4 attempts/ });
  t.equal(sim.count(), 4, '1 + max_retries attempts');
  t.equal(sim.replicas('deployments', 'cdc', 'worker').spec, 4, 'unchanged');
  sim.clearFaults();
});

t.test('a hanging API server: the call ends at the plugin timeout', async (t) => {
  const { sim, executor } = await kubeHarness(t, { retry_base_ms: 20 }, { timeoutMs: 1000 });
  sim.addDeployment('cdc', 'worker', 2);
  const target = targetOf({ kind: 'Deployment', name: 'worker' });
  await executor.getCurrentReplicasMany([target]);
  sim.inject({ method: 'PUT', delayMs: 3000 });
  const started = Date.now();
  await t.rejects(executor.scale(target, 3, scaleOpts()), { message: /kubernetes\.scale: no answer within 1000 ms/ });
  t.ok(Date.now() - started < 2000, 'without waiting for the server');
});

t.test('dry runs are sent with dryRun=All: checked by the server, nothing changed', async (t) => {
  const { sim, executor, logs } = await kubeHarness(t);
  sim.addDeployment('cdc', 'worker', 2);
  sim.addDeployment('cdc', 'orders', 2);
  sim.addScaledObject('cdc', 'orders-so', { scaleTargetRef: { name: 'orders' }, minReplicaCount: 1 });
  const before = sim.resourceVersion;
  sim.clearRequests();
  await executor.scale(targetOf({ kind: 'Deployment', name: 'worker' }), 5, scaleOpts({ dryRun: true }));
  await executor.scale(targetOf({ kind: 'ScaledObject', name: 'orders-so' }), 5, scaleOpts({ dryRun: true }));
  const writes = sim.requests.filter((r) => r.method !== 'GET');
  t.same(writes.map((r) => [r.method, r.query['dryRun'], r.code]), [['PUT', 'All', 200], ['PATCH', 'All', 200]]);
  t.equal(sim.resourceVersion, before, 'nothing stored');
  t.equal(sim.replicas('deployments', 'cdc', 'worker').spec, 2);
  t.equal(sim.get('scaledobjects', 'cdc', 'orders-so')?.spec['minReplicaCount'], 1);
  t.ok(logs.some((l) => /^kubernetes, dry run \(dryRun=All, nothing changed\): the API server accepted: set Deployment cdc\/worker to 5 replicas/.test(l.msg)));
  sim.setRbac([{ verb: 'get', group: 'apps', resource: 'deployments/scale' }]);
  await t.rejects(executor.scale(targetOf({ kind: 'Deployment', name: 'worker' }), 5, scaleOpts({ dryRun: true })), { message: /forbidden: update deployments\/scale/ }, 'a dry run finds a missing RBAC rule');
});

t.test('any resource with a /scale subresource, found through discovery once', async (t) => {
  const { sim, executor } = await kubeHarness(t);
  sim.addReplicaSet('cdc', 'legacy', 2);
  const rs = targetOf({ kind: 'ReplicaSet', name: 'legacy', apiVersion: 'apps/v1' });
  sim.clearRequests();
  t.same(await executor.getCurrentReplicasMany([rs]), [2]);
  await executor.scale(rs, 4, scaleOpts());
  t.same(
    sim.requests.map((r) => `${r.method} ${r.path}`),
    ['GET /apis/apps/v1', 'GET /apis/apps/v1/namespaces/cdc/replicasets', 'PUT /apis/apps/v1/namespaces/cdc/replicasets/legacy/scale'],
    'discovery, the LIST, the write',
  );
  t.equal(sim.replicas('replicasets', 'cdc', 'legacy').spec, 4);
  await executor.getCurrentReplicasMany([rs]);
  t.equal(sim.count({ path: '/apis/apps/v1' }), 1, 'discovery is not repeated');
  await t.rejects(executor.scale(targetOf({ kind: 'ScaledJob', name: 'x', apiVersion: 'keda.sh/v1alpha1' }), 1, scaleOpts()), { message: /keda\.sh\/v1alpha1 has no kind ScaledJob \(the API server lists ScaledObject\)/ });
  await t.rejects(executor.scale(targetOf({ kind: 'Rollout', name: 'x', apiVersion: 'argoproj.io/v1alpha1' }), 1, scaleOpts()), { message: /the API server does not serve argoproj\.io\/v1alpha1/ });
});

t.test('no kubeconfig: a clear error on use, and the plugin still loads', async (t) => {
  const { executor, logs } = await kubeHarness(t, { kubeconfig: '/nonexistent/kubeconfig', target_types: ['nodes'] });
  await t.rejects(executor.scale(targetOf({ kind: 'Deployment', name: 'worker' }), 1, scaleOpts()), { message: /nonexistent\/kubeconfig|ENOENT/ });
  t.ok(logs.some((l) => l.level >= 50 && /kubernetes: /.test(l.msg)), 'configured to serve: the problem is logged at start');
});

t.test('deploy/kubernetes/executor/rbac.yaml: every request the executor sends is allowed, and every rule is needed', async (t) => {
  const docs = parseAllDocuments(readFileSync(join(packageRoot(), 'deploy', 'kubernetes', 'executor', 'rbac.yaml'), 'utf8')).map((d) => d.toJS() as { kind: string; rules?: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }> });
  const role = docs.find((d) => d.kind === 'ClusterRole');
  const granted: RbacRule[] = (role?.rules ?? []).flatMap((r) => r.apiGroups.flatMap((group) => r.resources.flatMap((resource) => r.verbs.map((verb) => ({ verb, group, resource, namespace: 'cdc' })))));
  t.ok(granted.length > 0);
  // Everything the executor does: read each kind, write each kind, re-read after a conflict,
  // read an object no list of the cycle holds, and dry runs.
  const scenario = async (rules: RbacRule[]): Promise<string | null> => {
    const { sim, executor } = await kubeHarness(t);
    sim.addDeployment('cdc', 'worker', 1);
    sim.addStatefulSet('cdc', 'store', 1);
    sim.addDeployment('cdc', 'orders', 1);
    sim.addScaledObject('cdc', 'orders-so', { scaleTargetRef: { name: 'orders' } });
    sim.setRbac(rules);
    const dep = targetOf({ kind: 'Deployment', name: 'worker' });
    const sts = targetOf({ kind: 'StatefulSet', name: 'store' });
    const so = targetOf({ kind: 'ScaledObject', name: 'orders-so' });
    try {
      const counts = await executor.getCurrentReplicasMany([dep, sts, so]);
      if (counts.some((c) => c === null)) return 'a list was refused';
      sim.update('deployments', 'cdc', 'worker', (o) => (o.metadata.labels = { ...o.metadata.labels, x: 'y' }));
      sim.update('scaledobjects', 'cdc', 'orders-so', (o) => (o.metadata.labels = { x: 'y' }));
      await executor.scale(dep, 2, scaleOpts());
      await executor.scale(sts, 2, scaleOpts({ dryRun: true }));
      sim.update('statefulsets', 'cdc', 'store', (o) => (o.metadata.labels = { ...o.metadata.labels, x: 'y' }));
      await executor.scale(sts, 2, scaleOpts());
      await executor.scale(so, 2, scaleOpts());
      await executor.scale(so, 3, scaleOpts({ dryRun: true }));
      return null;
    } catch (err) {
      return (err as Error).message;
    } finally {
      await sim.close();
    }
  };
  t.equal(await scenario(granted), null, 'with the ClusterRole bound in the namespace, everything succeeds');
  for (const [i, rule] of granted.entries()) {
    const without = granted.filter((_, j) => j !== i);
    const failure = await scenario(without);
    t.not(failure, null, `without ${rule.verb} ${rule.group}/${rule.resource} something fails: ${failure}`);
  }
});

t.test('review cases: concurrent writes to one object, an unchanged floor, a failing discovery, a list failing under a write, shared connections', async (t) => {
  const { sim, executor, logs } = await kubeHarness(t, { retry_base_ms: 5, max_retries: 1 });
  sim.addDeployment('cdc', 'shared', 1);
  const a = targetOf({ kind: 'Deployment', name: 'shared' });
  const b = targetOf({ kind: 'Deployment', name: 'shared' });
  await executor.getCurrentReplicasMany([a, b]);
  sim.clearRequests();
  await Promise.all([executor.scale(a, 3, scaleOpts()), executor.scale(b, 5, scaleOpts())]);
  t.same(sim.requests.map((r) => [r.method, r.code]), [['PUT', 200], ['PUT', 200]], 'two policies on one object: one write after the other, the second with the version the first answered (no 409)');
  t.equal(sim.replicas('deployments', 'cdc', 'shared').spec, 5, 'the later write is the last');

  sim.addDeployment('cdc', 'orders', 2);
  sim.addScaledObject('cdc', 'orders-so', { scaleTargetRef: { name: 'orders' }, minReplicaCount: 2 });
  const so = targetOf({ kind: 'ScaledObject', name: 'orders-so' });
  await executor.getCurrentReplicasMany([so]);
  sim.clearRequests();
  await executor.scale(so, 2, scaleOpts());
  t.equal(sim.count(), 0, 'a floor already at the count: nothing sent');
  t.ok(logs.some((l) => /spec\.minReplicaCount of ScaledObject cdc\/orders-so is already 2; nothing sent/.test(l.msg)));

  const ghosts = Array.from({ length: 50 }, (_, i) => targetOf({ kind: 'Rollout', name: `r${i}`, apiVersion: 'argoproj.io/v1alpha1' }));
  sim.clearRequests();
  t.same(await executor.getCurrentReplicasMany(ghosts), ghosts.map(() => null), 'a kind the server does not serve: unknown');
  await executor.getCurrentReplicasMany(ghosts);
  t.equal(sim.count({ path: '/apis/argoproj.io/v1alpha1' }), 1, 'discovery asked once for 50 policies over two cycles (its failure is remembered)');
  t.equal(logs.filter((l) => /does not serve argoproj\.io\/v1alpha1/.test(l.msg)).length, 1, 'and logged once');

  const broken = targetOf({ kind: 'ScaledObject', name: 'broken-so' });
  sim.addScaledObject('cdc', 'broken-so', { scaleTargetRef: { name: 'x', kind: 'Rollout', apiVersion: 'argoproj.io/v1alpha1' } });
  t.same(await executor.getCurrentReplicasMany([broken, so]), [null, 2], "a ScaledObject whose workload kind cannot be resolved is unknown alone; the others answer");

  // A write lands while the cycle's LIST of the same namespace is failing: no unhandled rejection.
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => void unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => void process.off('unhandledRejection', onUnhandled));
  sim.inject({ method: 'GET', path: '/apis/apps/v1/namespaces/cdc/deployments', status: 503, times: 2, delayMs: 100 });
  const listing = executor.getCurrentReplicasMany([a]);
  await executor.scale(a, 6, scaleOpts());
  t.same(await listing, [null], 'the failed list: unknown');
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.same(unhandled, [], 'no unhandled rejection');

  sim.clearRequests();
  sim.clearFaults();
  for (let i = 0; i < 5; i++) await executor.getCurrentReplicasMany([a]);
  t.equal(sim.count(), 5);
  t.ok(sim.connections <= 2, `5 requests over ${sim.connections} connection(s): kept alive`);
});

t.test('an admission webhook refusing a write is not reported as RBAC', async (t) => {
  const { sim, executor } = await kubeHarness(t);
  sim.addDeployment('cdc', 'guarded', 1);
  sim.inject({ method: 'PUT', status: 403, message: 'admission webhook "validate.kyverno.svc" denied the request: replicas must be even' });
  await t.rejects(executor.scale(targetOf({ kind: 'Deployment', name: 'guarded' }), 3, scaleOpts()), {
    message: /an admission webhook refused update deployments\/scale of Deployment cdc\/guarded \(not RBAC\): admission webhook "validate\.kyverno\.svc" denied the request/,
  });
});
