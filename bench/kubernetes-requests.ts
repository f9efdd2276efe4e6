/**
 * The requests the kubernetes executor sends for one evaluation cycle of N policies (default
 * 1,000) over 3 namespaces, against the simulated Kubernetes API server of the tests (no cluster
 * runs here): count by verb and path, and the cycle's time. Of every 10 policies 7 scale a
 * Deployment, 2 a StatefulSet and 1 a KEDA ScaledObject; 20 % of them need a change.
 *
 *   npm run bench:kubernetes            # POLICIES=10000 npm run bench:kubernetes
 */
import { requestTable, seedFleet, startKubeDaemon } from '../test/helpers/kube-daemon.js';

const n = Number(process.env['POLICIES'] ?? 1000);
const k = await startKubeDaemon();
try {
  const seeded = Date.now();
  const { changes } = await seedFleet(k, n);
  console.log(`seeded ${n} policies and their objects in ${Date.now() - seeded} ms; ${changes} need a change`);
  for (const label of ['first cycle (changes)', 'second cycle']) {
    k.sim.clearRequests();
    const report = await k.d.manager.runCycle();
    console.log(`\n${label}: ${report.duration_ms} ms, ${k.sim.requests.length} requests, outcomes ${JSON.stringify(report.outcomes)}`);
    console.log('| verb | path | requests | answers |');
    console.log('|---|---|--:|---|');
    for (const r of requestTable(k.sim)) console.log(`| ${r.verb} | ${r.path} | ${r.count} | ${r.codes} |`);
  }
  console.log('\n(in the second cycle the 20 ScaledObjects are decided again, as the simulator runs no KEDA operator to raise their workloads to the new floor; the floor is already set, so nothing is sent)');
} finally {
  await k.close();
}
