// Backtest of 30 days at a 1-minute step for a policy with 3 rules, against a real Prometheus
// holding 30 days of backfilled history, end to end (history fetch + replay). Goal: <= 2 s.
// Run: npm run bench:backtest   (needs prometheus and promtool on PATH)
import { rm } from 'node:fs/promises';
import { pino } from 'pino';
import { runBacktest } from '../src/backtest/backtest-service.js';
import { fetchSeries } from '../src/backtest/fetch-series.js';
import { PluginManager } from '../src/plugins/plugin-manager.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { backfill, startPrometheus, tempDataDir } from '../test/helpers/prometheus.js';

const DAYS = Number(process.env['DAYS'] ?? 30);
const MINUTE = 60;
const end = Math.floor(Date.now() / 1000 / 3600) * 3600 - 3600; // an hour ago, on the hour
const start = end - DAYS * 86_400;

// Three series with daily cycles and bursts, one sample per minute.
let om = '# TYPE philotes_cdc_lag_seconds gauge\n';
for (let t = start - 3600; t <= end; t += MINUTE) {
  const hour = ((t / 3600) % 24 + 24) % 24;
  const lag = 20 + 50 * Math.max(0, Math.sin(((hour - 6) / 24) * 2 * Math.PI)) + ((t / 60) % 97 < 15 ? 80 : 0);
  om += `philotes_cdc_lag_seconds{source="orders"} ${lag.toFixed(2)} ${t}\n`;
}
om += '# TYPE philotes_buffer_depth gauge\n';
for (let t = start - 3600; t <= end; t += MINUTE) {
  const depth = 1000 + 900 * Math.sin((t / 86_400) * 2 * Math.PI) + ((t / 60) % 131 < 20 ? 4000 : 0);
  om += `philotes_buffer_depth{source="orders"} ${depth.toFixed(0)} ${t}\n`;
}
om += '# EOF\n';

const dataDir = await tempDataDir();
const tb = performance.now();
await backfill(dataDir, om);
const backfillMs = performance.now() - tb;
const prom = await startPrometheus({ dataDir });
try {
  const logger = pino({ level: 'silent' });
  const plugins = new PluginManager({ dirs: [PluginManager.bundledDir()], configs: { prometheus: { url: prom.url, timeout_ms: 30_000 } }, logger, timeoutMs: 30_000 });
  await plugins.loadAll();
  const policy = normalizePolicy(
    {
      name: 'bench-backtest',
      target_type: 'cdc-worker',
      min_replicas: 1,
      max_replicas: 20,
      cooldown_seconds: 300,
      cost_per_replica_hour: 0.45,
      scale_up_rules: [
        { metric: 'max(philotes_cdc_lag_seconds{source="orders"})', operator: 'gt', threshold: 60, duration: '5m', scale_by: 2 },
        { metric: 'max(philotes_buffer_depth{source="orders"})', operator: 'gt', threshold: 2500, duration: '3m', scale_by: 1 },
      ],
      scale_down_rules: [{ metric: 'max(philotes_cdc_lag_seconds{source="orders"})', operator: 'lt', threshold: 30, duration: '15m', scale_by: -1 }],
    },
    { source: 'api', now: new Date() },
  );
  const req = { from: new Date(start * 1000), to: new Date(end * 1000), stepSeconds: 60, initialReplicas: 1 };
  const deps = { sources: plugins.sources, defaultSource: 'prometheus', defaultCooldown: 300, prices: {} };
  // One warm-up run (Prometheus loads the blocks on first query), then measured runs.
  await runBacktest(policy, req, deps);
  const runs: number[] = [];
  let last;
  const RUNS = 5;
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    last = await runBacktest(policy, req, deps);
    runs.push(performance.now() - t0);
  }
  runs.sort((a, b) => a - b);
  console.log(`backtest: ${DAYS} days at 1m step (${last?.summary.evaluations} evaluations), 3 rules over 2 distinct series, real Prometheus`);
  console.log(`  backfill with promtool: ${(backfillMs / 1000).toFixed(1)} s (setup, not measured)`);
  console.log(`  end to end over ${RUNS} runs: best ${runs[0]?.toFixed(0)} ms, median ${runs[Math.floor(RUNS / 2)]?.toFixed(0)} ms, worst ${runs.at(-1)?.toFixed(0)} ms (goal <= 2000 ms)`);
  const tf = performance.now();
  await fetchSeries([policy], req.from, req.to, 60, plugins.sources, 'prometheus');
  console.log(`  of which fetching history: ${(performance.now() - tf).toFixed(0)} ms`);
  console.log(`  Prometheus range requests per backtest: ${last?.requests}`);
  await plugins.close();
  console.log(`  summary: ${JSON.stringify(last?.summary.actions)}, peak ${last?.summary.peak_replicas}, ${last?.summary.replica_hours} replica-hours, cost ${last?.summary.estimated_cost}`);
} finally {
  await prom.stop();
  await rm(dataDir, { recursive: true, force: true });
}
