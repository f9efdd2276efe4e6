/**
 * The daemon with the bundled kubernetes executor against the simulated Kubernetes API server:
 * the requests of one cycle over 1,000 policies, and the history row and log lines each failure
 * mode leaves.
 */
import t from 'tap';
import { historyOf, NAMESPACES, requestTable, seedFleet, startKubeDaemon } from './helpers/kube-daemon.js';

t.test('one cycle of 1,000 policies over 3 namespaces: 9 LISTs and one write per change', async (t) => {
  const k = await startKubeDaemon();
  t.teardown(() => k.close());
  const { changes } = await seedFleet(k, 1000);
  k.sim.clearRequests();
  const report = await k.d.manager.runCycle();
  t.equal(report.policies, 1000);
  const table = requestTable(k.sim);
  t.same(
    table.filter((r) => r.verb === 'list').map((r) => [r.path, r.count]),
    NAMESPACES.flatMap((ns) => [
      [`/apis/apps/v1/namespaces/${ns}/deployments`, 1],
      [`/apis/apps/v1/namespaces/${ns}/statefulsets`, 1],
      [`/apis/keda.sh/v1alpha1/namespaces/${ns}/scaledobjects`, 1],
    ]).sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    'one LIST per resource and namespace',
  );
  const writes = k.sim.requests.filter((r) => r.verb === 'update' || r.verb === 'patch');
  t.equal(changes, 200);
  t.equal(writes.length, changes, `one write per change (${changes})`);
  t.equal(k.sim.count({ verb: 'get' }), 0, 'no GET at all');
  t.equal(k.sim.count(), 9 + changes, `${k.sim.count()} requests in all`);
  t.ok(writes.every((r) => r.code === 200));
  const executed = await k.d.storage.listHistory({ limit: 500, status: 'succeeded' });
  t.equal(executed.rows.length, changes, 'a succeeded history row per change');
  t.equal(k.sim.replicas('deployments', 'cdc', 'worker-0').spec, 2, 'worker-0 (1 replica) was raised to min_replicas 2');
  t.equal(k.sim.get('scaledobjects', 'cdc', 'consumer-9')?.spec['minReplicaCount'], 2, 'a ScaledObject whose workload ran 1 has its floor raised to 2');
  t.equal(k.sim.get('scaledobjects', 'analytics', 'consumer-19')?.spec['minReplicaCount'], 2, 'one whose workload ran 2 is left alone');
  t.same(
    [...new Set(writes.map((r) => `${r.method} ${r.path.replace(/\/namespaces\/[^/]+\/([^/]+)\/[^/]+/, '/namespaces/{ns}/$1/{name}')}`))].sort(),
    ['PATCH /apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects/{name}', 'PUT /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale', 'PUT /apis/apps/v1/namespaces/{ns}/statefulsets/{name}/scale'],
    'writes of every kind',
  );

  // The next cycle: the Deployments and StatefulSets run 2 now. The 20 ScaledObjects' workloads
  // still run 1 (no KEDA operator runs in the simulator to bring them to the new floor), so the
  // same floor is decided again, but it is already set: nothing is sent.
  k.sim.clearRequests();
  await k.d.manager.runCycle();
  t.equal(k.sim.count({ verb: 'list' }), 9, 'the next cycle: 9 LISTs');
  t.equal(k.sim.count(), 9, 'and nothing else: an unchanged floor is not written again');
  t.ok(k.logs.some((l) => /^kubernetes: spec\.minReplicaCount of ScaledObject \w+\/consumer-\d+ is already 2; nothing sent/.test(l.msg)), 'it says so');
});

t.test('each failure mode: the history row and the log lines it leaves', async (t) => {
  const k = await startKubeDaemon({ pluginTimeout: '2s' });
  t.teardown(() => k.close());
  const { sim, d, logs } = k;
  // Every policy: a one-shot schedule firing every minute wants 4 replicas (from 1).
  const make = async (name: string, ref: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<string> =>
    (await d.policies.create({ name, target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10, target_ref: ref, schedules: [{ cron_expression: '* * * * *', desired_replicas: 4 }], ...extra })).id;
  for (const name of ['ok', 'busy', 'racy', 'throttled', 'down', 'hang', 'dry']) sim.addDeployment('cdc', name, 1);
  sim.addDeployment('locked', 'api', 1);
  const ids = {
    ok: await make('ok', { kind: 'Deployment', name: 'ok' }),
    forbidden: await make('forbidden', { kind: 'Deployment', name: 'api', namespace: 'locked' }),
    missing: await make('missing', { kind: 'Deployment', name: 'ghost' }),
    busy: await make('busy', { kind: 'Deployment', name: 'busy' }),
    racy: await make('racy', { kind: 'Deployment', name: 'racy' }),
    throttled: await make('throttled', { kind: 'Deployment', name: 'throttled' }),
    down: await make('down', { kind: 'Deployment', name: 'down' }),
    hang: await make('hang', { kind: 'Deployment', name: 'hang' }),
    dry: await make('dry', { kind: 'Deployment', name: 'dry' }, { dry_run: true }),
  };
  sim.setDeny((req) => req.namespace === 'locked' && req.verb !== 'list');
  sim.inject({ method: 'PUT', path: '/apis/apps/v1/namespaces/cdc/deployments/busy/scale', status: 409, times: 2 });
  sim.inject({ method: 'PUT', path: '/apis/apps/v1/namespaces/cdc/deployments/racy/scale', status: 409, times: 1 });
  sim.inject({ method: 'PUT', path: '/apis/apps/v1/namespaces/cdc/deployments/throttled/scale', status: 429, retryAfterSeconds: 1, times: 1 });
  sim.inject({ method: 'PUT', path: '/apis/apps/v1/namespaces/cdc/deployments/down/scale', status: 503 });
  sim.inject({ method: 'PUT', path: '/apis/apps/v1/namespaces/cdc/deployments/hang/scale', delayMs: 5000 });
  sim.clearRequests();
  await d.manager.runCycle();

  const row = async (id: string) => (await historyOf(k, id))[0];
  const expectRow = async (name: keyof typeof ids, status: string, error: RegExp | null, replicas: number): Promise<void> => {
    const r = await row(ids[name]);
    t.match(r, { status, action: 'scheduled', previous_replicas: 1, new_replicas: 4 }, `${name}: a ${status} row`);
    if (error === null) t.equal(r?.error, null, `${name}: no error`);
    else t.match(r?.error, error, `${name}: ${r?.error}`);
    const ns = name === 'forbidden' ? 'locked' : 'cdc';
    const obj = name === 'forbidden' ? 'api' : name;
    if (name !== 'missing') t.equal(sim.replicas('deployments', ns, obj).spec, replicas, `${name}: ${replicas} replicas in the cluster`);
  };
  await expectRow('ok', 'succeeded', null, 4);
  await expectRow('forbidden', 'failed', /forbidden: update deployments\/scale in namespace locked \(Deployment locked\/api\); give the daemon's service account a Role in locked with the rule \{apiGroups: \["apps"\], resources: \["deployments\/scale"\], verbs: \["update"\]\}/, 1);
  await expectRow('missing', 'failed', /Deployment cdc\/ghost not found \(apps\/v1 deployments\)/, 0);
  await expectRow('busy', 'failed', /Deployment cdc\/busy kept changing \(409 Conflict twice\)/, 1);
  await expectRow('racy', 'succeeded', null, 4);
  await expectRow('throttled', 'succeeded', null, 4);
  await expectRow('down', 'failed', /HTTP 503: .* \(gave up after 4 attempts\)/, 1);
  await expectRow('hang', 'failed', /kubernetes\.scale: no answer within 2000 ms/, 1);
  const dry = await row(ids.dry);
  t.match(dry, { status: 'succeeded', dry_run: true, new_replicas: 4 }, 'dry: a dry-run row');
  t.equal(sim.replicas('deployments', 'cdc', 'dry').spec, 1, 'dry: nothing changed');
  t.equal(sim.requests.find((r) => r.path.endsWith('/dry/scale'))?.query['dryRun'], 'All', 'dry: sent with dryRun=All');

  const line = (re: RegExp): boolean => logs.some((l) => re.test(l.msg) || re.test(String(l['error'] ?? '')));
  t.ok(line(/^scheduled 1 -> 4 \(schedule_fired\) failed$/), 'the daemon logs each failed change');
  t.ok(logs.some((l) => l.level === 40 && l['policy'] === 'forbidden' && /forbidden: update deployments\/scale/.test(String(l['error']))) || line(/forbidden: update deployments\/scale/), 'with the executor error');
  t.ok(line(/^kubernetes: PUT \/apis\/apps\/v1\/namespaces\/cdc\/deployments\/throttled\/scale answered HTTP 429; retry 1 of 3 in 1000 ms$/), 'a retry after 429 is logged with its wait');
  t.ok(line(/^kubernetes: Deployment cdc\/racy changed since it was read \(409 Conflict\); reading it again and retrying once$/), 'a conflict is logged');
  t.ok(line(/^kubernetes: set Deployment cdc\/ok to 4 replicas through its scale subresource, from 1 /), 'a change is logged');
  t.ok(line(/^kubernetes, dry run \(dryRun=All, nothing changed\): the API server accepted: set Deployment cdc\/dry to 4 replicas/), 'a dry run is logged as such');
});
