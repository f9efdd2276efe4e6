/**
 * The bundled kubernetes executor, loaded as the daemon loads it (its schema's defaults and
 * checks applied), pointed at a simulated API server through a kubeconfig file, with its log
 * lines kept for the tests to read.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Test } from 'tap';
import type { ScaleTarget, TargetRef } from '../../src/plugins/api.js';
import { PluginManager, type IsolatedExecutor } from '../../src/plugins/plugin-manager.js';
import { startKubeApiSim, type KubeApiSim, type KubeApiSimOptions } from './kube-api-sim.js';

export const TOKEN = 'sim-token-0123456789abcdef';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A kubeconfig for the simulator: plain HTTP on loopback, so TLS verification is off. */
export function kubeconfigFor(server: string, token: string, namespace = 'default'): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '  - name: sim',
    '    cluster:',
    `      server: ${server}`,
    '      insecure-skip-tls-verify: true',
    'users:',
    '  - name: scaler',
    '    user:',
    `      token: ${token}`,
    'contexts:',
    '  - name: sim',
    '    context:',
    '      cluster: sim',
    '      user: scaler',
    `      namespace: ${namespace}`,
    'current-context: sim',
    '',
  ].join('\n');
}

/** A logger whose lines are parsed into `lines`. */
export function capturingLogger(lines: LogLine[]): pino.Logger {
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const text of chunk.toString('utf8').split('\n')) if (text.trim() !== '') lines.push(JSON.parse(text) as LogLine);
      done();
    },
  });
  return pino({ level: 'debug' }, stream);
}

export interface KubeHarness {
  sim: KubeApiSim;
  pm: PluginManager;
  executor: IsolatedExecutor;
  logs: LogLine[];
  kubeconfig: string;
  dir: string;
}

/** The simulator, a kubeconfig for it, and the executor loaded with `config` (plus the kubeconfig). */
export async function kubeHarness(
  t: Test,
  config: Record<string, unknown> = {},
  opts: { sim?: KubeApiSimOptions; timeoutMs?: number; kubeconfig?: (sim: KubeApiSim) => string } = {},
): Promise<KubeHarness> {
  const sim = await startKubeApiSim({ token: TOKEN, ...opts.sim });
  const dir = mkdtempSync(join(tmpdir(), 'philotes-kube-'));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, opts.kubeconfig?.(sim) ?? kubeconfigFor(sim.url, TOKEN, 'cdc'));
  const logs: LogLine[] = [];
  const pm = new PluginManager({
    dirs: [PluginManager.bundledDir()],
    configs: { prometheus: { url: 'http://127.0.0.1:9' }, kubernetes: { kubeconfig, ...config } },
    logger: capturingLogger(logs),
    timeoutMs: opts.timeoutMs ?? 20_000,
  });
  await pm.loadAll();
  t.teardown(async () => {
    await pm.close();
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const executor = pm.executors.get('kubernetes');
  if (executor === undefined) throw new Error(`the kubernetes executor did not load: ${JSON.stringify(pm.statuses)}`);
  return { sim, pm, executor, logs, kubeconfig, dir };
}

let nextId = 0;

/** A target as the daemon passes it, for a policy with this target_ref (or none). */
export function targetOf(ref: Partial<TargetRef> & { kind: string; name: string } | null, over: Partial<ScaleTarget> = {}): ScaleTarget {
  const id = `00000000-0000-4000-8000-${String(++nextId).padStart(12, '0')}`;
  return {
    policyId: id,
    policyName: `policy-${nextId}`,
    targetType: 'cdc-worker',
    targetId: null,
    targetRef: ref === null ? null : { namespace: null, apiVersion: null, ...ref },
    ...over,
  };
}

/** Scale options as the daemon passes them (without the signal, which the isolation adds). */
export function scaleOpts(over: { dryRun?: boolean; previousReplicas?: number; decisionId?: string } = {}): { dryRun: boolean; reason: string; decisionId: string; previousReplicas: number } {
  return { dryRun: false, reason: 'test', decisionId: `decision-${++nextId}`, previousReplicas: 1, ...over };
}
