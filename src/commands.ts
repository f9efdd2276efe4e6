import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { parseBacktestRequest, runBacktest, timelineCsv, type BacktestResult } from './backtest/backtest-service.js';
import type { ResolvedConfig } from './config/config.js';
import { ScalerError } from './errors.js';
import { formatProblem, parsePolicyText } from './files/policy-file.js';
import { loadPlugins } from './plugins/load-plugins.js';
import type { PluginManager } from './plugins/plugin-manager.js';
import type { Policy } from './policy/policy-model.js';
import { PolicyService } from './policy/policy-service.js';
import { createValidationContext, namesFromPlugins } from './policy/validation-context.js';
import { createSqliteStorage } from './storage/sqlite-storage.js';

/** What a one-shot command prints and its exit code. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr?: string;
}

/** Reads the policies of one file with the daemon's validation; problems come back as lines. */
async function readPolicies(file: string, config: ResolvedConfig, plugins: PluginManager): Promise<{ policies: Policy[]; problems: string[] }> {
  const storage = createSqliteStorage(':memory:');
  try {
    const service = new PolicyService({
      storage,
      validation: createValidationContext(config, namesFromPlugins(plugins)),
      defaultCooldown: config.default_cooldown,
    });
    let text: string;
    try {
      text = await readFile(resolve(file), 'utf8');
    } catch (err) {
      return { policies: [], problems: [`${file} cannot be read: ${(err as Error).message}`] };
    }
    const parsed = parsePolicyText(file, text, (input, source) => service.parse(input, { source }));
    return { policies: parsed.policies, problems: parsed.problems.map(formatProblem) };
  } finally {
    await storage.close();
  }
}

function pick(policies: Policy[], name: string | undefined, file: string): Policy {
  if (name !== undefined) {
    const p = policies.find((x) => x.name === name);
    if (p === undefined) throw new ScalerError('NOT_FOUND', `${file} has no policy named "${name}" (it has: ${policies.map((x) => x.name).join(', ')})`);
    return p;
  }
  if (policies.length !== 1) throw new ScalerError('BAD_REQUEST', `${file} holds ${policies.length} policies; choose one with --policy NAME`);
  return policies[0] as Policy;
}

/** The backtest summary as an aligned table. */
export function formatBacktestSummary(policy: Policy, r: BacktestResult): string {
  const s = r.summary;
  const actions = ['scale_up', 'scale_down', 'scheduled', 'fallback', 'none'].map((a) => `${a} ${s.actions[a] ?? 0}`).join(', ');
  const reasons = Object.entries(s.reason_codes)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const rows: Array<[string, string]> = [
    ['policy', policy.name],
    ['range', `${s.from} .. ${s.to}, step ${s.step_seconds}s`],
    ['evaluations', String(s.evaluations)],
    ['actions', actions],
    ['reason codes', reasons],
    ['replica-hours', s.replica_hours.toFixed(2)],
    ['estimated cost', s.estimated_cost === null ? 'no price (set cost_per_replica_hour or prices)' : s.estimated_cost.toFixed(2)],
    ['scale-up pending', `${s.scale_up_pending_minutes} min (a scale-up condition true, no scale-up yet)`],
    ['replicas', `peak ${s.peak_replicas}, lowest ${s.min_replicas_seen}, final ${s.final_replicas}`],
    ['metric requests', String(r.requests)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return `${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n`;
}

export interface BacktestCommandOptions {
  file: string;
  policy?: string;
  from?: string;
  to?: string;
  step?: string;
  initialReplicas?: string;
  timeline?: string;
  chart?: string;
}

/** `philotes-scaler backtest`: history from the configured sources, the summary on stdout. */
export async function backtestCommand(opts: BacktestCommandOptions, config: ResolvedConfig, logger: Logger): Promise<CommandResult> {
  const plugins = await loadPlugins(config, logger);
  try {
    const { policies, problems } = await readPolicies(opts.file, config, plugins);
    if (problems.length > 0) return { code: 1, stdout: '', stderr: `${problems.join('\n')}\n` };
    const policy = pick(policies, opts.policy, opts.file);
    const raw: Record<string, unknown> = { from: opts.from, to: opts.to };
    if (opts.step !== undefined) raw['step'] = opts.step;
    if (opts.initialReplicas !== undefined) raw['initial_replicas'] = /^\d+$/.test(opts.initialReplicas) ? Number(opts.initialReplicas) : opts.initialReplicas;
    let req;
    try {
      req = parseBacktestRequest(raw);
    } catch (err) {
      const e = err as ScalerError;
      return { code: 2, stdout: '', stderr: `${(e.errors ?? []).map((x) => `--${x.field.slice(1).replaceAll('_', '-')}: ${x.message}`).join('\n')}\n` };
    }
    const result = await runBacktest(policy, req, {
      sources: plugins.sources,
      defaultSource: config.default_metric_source,
      defaultCooldown: config.default_cooldown,
      prices: config.prices,
    });
    const written: string[] = [];
    if (opts.timeline !== undefined) {
      await writeFile(opts.timeline, opts.timeline.endsWith('.json') ? `${JSON.stringify(result.timeline, null, 1)}\n` : timelineCsv(policy, result));
      written.push(`timeline: ${opts.timeline}`);
    }
    if (opts.chart !== undefined) {
      const { renderBacktestSvg } = await import('./backtest/chart.js');
      await writeFile(opts.chart, renderBacktestSvg(policy, result));
      written.push(`chart: ${opts.chart}`);
    }
    const errors = [...new Set(result.timeline.filter((r) => r.reason_code === 'metric_error').map(() => 'metric_error'))];
    const warn = errors.length > 0 ? `note: ${result.summary.reason_codes['metric_error']} evaluations had metric errors (is ${config.prometheus_url} reachable and holding this history?)\n` : '';
    return { code: 0, stdout: `${formatBacktestSummary(policy, result)}${written.join('\n')}${written.length > 0 ? '\n' : ''}`, stderr: warn };
  } finally {
    await plugins.close();
  }
}
