/**
 * The daemon as it starts, with the bundled kubernetes executor pointed at a simulated API server
 * (test/helpers/kube-api-sim.ts). Used by test/kubernetes-daemon.test.ts and by
 * bench/kubernetes-requests.ts, which prints the same figures.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type Daemon } from '../../src/main.js';
import type { HistoryRow } from '../../src/storage/storage.js';
import { testDaemonConfig } from './daemon-config.js';
import { startKubeApiSim, type KubeApiSim } from './kube-api-sim.js';
import { capturingLogger, kubeconfigFor, TOKEN, type LogLine } from './kube-executor.js';

export interface KubeDaemon {
  sim: KubeApiSim;
  d: Daemon;
  logs: LogLine[];
  close(): Promise<void>;
}

export async function startKubeDaemon(opts: { pluginTimeout?: string; kubernetes?: Record<string, unknown> } = {}): Promise<KubeDaemon> {
  const sim = await startKubeApiSim({ token: TOKEN });
  const dir = mkdtempSync(join(tmpdir(), 'philotes-kube-daemon-'));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, kubeconfigFor(sim.url, TOKEN, 'cdc'));
  const config = testDaemonConfig(dir, {
    plugin_timeout: opts.pluginTimeout ?? '10s',
    executors: { 'cdc-worker': 'kubernetes', nodes: 'logger' },
    plugins: { kubernetes: { kubeconfig, retry_base_ms: 20, ...opts.kubernetes } },
  });
  const logs: LogLine[] = [];
  const d = await startDaemon(config, capturingLogger(logs));
  return {
    sim,
    d,
    logs,
    async close() {
      await d.close();
      await sim.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const NAMESPACES = ['cdc', 'analytics', 'streaming'] as const;

/**
 * `n` policies over the three namespaces, each naming its own object with target_ref: of every
 * 10, 7 Deployments, 2 StatefulSets and 1 KEDA ScaledObject (with its Deployment). Every policy
 * has min_replicas 2; the objects of one run of 10 policies in `changeEvery` start at 1 replica, so
 * the cycle brings exactly those up to 2 (out_of_bounds): one write each, of every kind.
 */
export async function seedFleet(k: KubeDaemon, n: number, changeEvery = 5): Promise<{ changes: number }> {
  let changes = 0;
  for (let i = 0; i < n; i++) {
    const ns = NAMESPACES[i % 3] as string;
    const replicas = Math.floor(i / 10) % changeEvery === 0 ? 1 : 2;
    if (replicas === 1) changes++;
    const slot = i % 10;
    let ref: { kind: string; name: string; namespace: string };
    if (slot < 7) {
      k.sim.addDeployment(ns, `worker-${i}`, replicas);
      ref = { kind: 'Deployment', name: `worker-${i}`, namespace: ns };
    } else if (slot < 9) {
      k.sim.addStatefulSet(ns, `store-${i}`, replicas);
      ref = { kind: 'StatefulSet', name: `store-${i}`, namespace: ns };
    } else {
      k.sim.addDeployment(ns, `consumer-${i}`, replicas);
      k.sim.addScaledObject(ns, `consumer-${i}`, { scaleTargetRef: { name: `consumer-${i}` }, minReplicaCount: replicas, maxReplicaCount: 20 });
      ref = { kind: 'ScaledObject', name: `consumer-${i}`, namespace: ns };
    }
    await k.d.policies.create({ name: `fleet-${i}`, target_type: 'cdc-worker', min_replicas: 2, max_replicas: 10, target_ref: ref });
  }
  return { changes };
}

/** Requests by verb and path pattern (names replaced by {name}), sorted. */
export function requestTable(sim: KubeApiSim): Array<{ verb: string; path: string; codes: string; count: number }> {
  const rows = new Map<string, { verb: string; path: string; codes: Map<number, number>; count: number }>();
  for (const r of sim.requests) {
    const path = r.path.replace(/^(\/apis\/[^/]+\/[^/]+\/namespaces\/[^/]+\/[^/]+)\/[^/]+/, '$1/{name}');
    const verb = `${r.verb ?? r.method}${r.query['dryRun'] !== undefined ? ' (dryRun=All)' : ''}`;
    const key = `${verb} ${path}`;
    const row = rows.get(key) ?? { verb, path, codes: new Map<number, number>(), count: 0 };
    row.count++;
    row.codes.set(r.code ?? 0, (row.codes.get(r.code ?? 0) ?? 0) + 1);
    rows.set(key, row);
  }
  return [...rows.values()]
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.verb < b.verb ? -1 : 1))
    .map((r) => ({ verb: r.verb, path: r.path, count: r.count, codes: [...r.codes].map(([c, n]) => `${c}×${n}`).join(' ') }));
}

/** The history rows of a policy, newest first. */
export async function historyOf(k: KubeDaemon, policyId: string): Promise<HistoryRow[]> {
  return (await k.d.storage.listHistory({ limit: 50, policy_id: policyId })).rows;
}
