/**
 * The daemon against a real Prometheus scraping a real exporter, end to end: a policy created over
 * the API scales up only after its condition held for the rule's whole duration, cooldown blocks
 * (recorded once), a stopped Prometheus yields metric_error decisions and an unreachable source in
 * /readyz, and a restarted one brings decisions back.
 *
 * PRINT_LOG=1 prints the daemon's log lines for those moments.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import type { DecisionRecord } from '../src/engine/decision.js';
import { startDaemon, type Daemon } from '../src/main.js';
import type { HistoryRow } from '../src/storage/storage.js';
import { call } from './helpers/app.js';
import { testDaemonConfig } from './helpers/daemon-config.js';
import { promQuery, requireTool, startExporter, startPrometheus, waitFor } from './helpers/prometheus.js';

const METRIC = 'philotes_cdc_lag_seconds';
const LABELS = { source: 'orders' };
const QUERY = `max(${METRIC}{source="orders"})`;
const COOLDOWN = 8;
const DURATION = 4;

interface StateAnswer {
  current_replicas: number | null;
  cooldown_remaining_seconds: number;
  consecutive_metric_failures: number;
  last_decision: DecisionRecord | null;
}

interface LogLine {
  time: number;
  level: number;
  msg: string;
  [k: string]: unknown;
}

t.test('a daemon scales against a live Prometheus, blocks on cooldown, survives Prometheus going away', async (t) => {
  const version = requireTool('prometheus');
  t.comment(`using ${version}`);
  const testStart = Date.now();

  // The daemon's log, captured line by line.
  const logLines: LogLine[] = [];
  const logger = pino(
    { level: 'info' },
    {
      write(chunk: string) {
        for (const line of chunk.split('\n')) if (line.trim() !== '') logLines.push(JSON.parse(line) as LogLine);
      },
    },
  );

  const exporter = await startExporter();
  t.teardown(() => exporter.close());
  exporter.set(METRIC, LABELS, 5);
  const prom = await startPrometheus({ target: exporter.target, waitForMetric: `${METRIC}{source="orders"}` });
  t.teardown(() => prom.stop());

  const dir = await mkdtemp(join(tmpdir(), 'philotes-live-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = testDaemonConfig(dir, { evaluation_interval: '1s', prometheus_url: prom.url, plugin_timeout: '2s', log_level: 'info' });
  const daemon: Daemon = await startDaemon(config, logger);
  t.teardown(() => daemon.close());
  const root = `http://127.0.0.1:${daemon.port}`;
  const api = `${root}/api/v1/scaling`;

  const created = await call('POST', `${api}/policies`, {
    name: 'orders-cdc-live',
    target_type: 'cdc-worker',
    min_replicas: 1,
    max_replicas: 10,
    cooldown_seconds: COOLDOWN,
    scale_up_rules: [{ metric: QUERY, operator: 'gt', threshold: 60, duration: `${DURATION}s`, scale_by: 2 }],
  });
  t.equal(created.status, 201, `policy created (${created.text.slice(0, 200)})`);
  const policy = created.body as { id: string; name: string };

  const state = async (): Promise<StateAnswer> => {
    const res = await call('GET', `${api}/policies/${policy.id}/state`);
    if (res.status !== 200) throw new Error(`state: ${res.status} ${res.text}`);
    return res.body as StateAnswer;
  };
  const history = async (): Promise<HistoryRow[]> => {
    const res = await call('GET', `${api}/policies/${policy.id}/history?limit=100`);
    if (res.status !== 200) throw new Error(`history: ${res.status} ${res.text}`);
    return (res.body as { history: HistoryRow[] }).history;
  };
  /** Waits for a decision evaluated after `after` (ms) that satisfies `pred`. */
  const decisionAfter = (what: string, after: number, pred: (d: DecisionRecord) => boolean, timeoutMs = 10_000): Promise<DecisionRecord> =>
    waitFor(
      what,
      async () => {
        const d = (await state()).last_decision;
        return d !== null && Date.parse(d.evaluated_at) > after && pred(d) ? d : undefined;
      },
      timeoutMs,
      100,
    );
  /** Collects every distinct decision seen while waiting for `until` to answer. */
  const watchDecisions = async <T>(what: string, until: () => Promise<T | undefined>, timeoutMs: number): Promise<{ result: T; seen: DecisionRecord[] }> => {
    const seen = new Map<string, DecisionRecord>();
    const result = await waitFor(
      what,
      async () => {
        const d = (await state()).last_decision;
        if (d !== null) seen.set(d.evaluated_at, d);
        return until();
      },
      timeoutMs,
      100,
    );
    return { result, seen: [...seen.values()] };
  };

  // 1. Lag 5: rules are evaluated against Prometheus, nothing scales.
  const low = await decisionAfter('a decision that saw lag 5 over the whole window', testStart, (d) => d.rules[0]?.held === false && d.rules[0]?.samples === DURATION + 1 && d.rules[0]?.value === 5);
  t.equal(low.reason_code, 'no_rule_held', 'lag 5: no rule held');
  t.equal(low.rules[0]?.error, null, 'lag 5: no metric error');
  t.match(low.rules[0]?.detail, /5 > 60 is false/, 'the record says why');
  await decisionAfter('two more evaluations', Date.parse(low.evaluated_at) + 1500, () => true);
  t.same(await history(), [], 'lag 5: no history row');

  // 2. Lag 120: no scale-up before the condition held for 4s, then 1 -> 3.
  const highSetAt = Date.now();
  exporter.set(METRIC, LABELS, 120);
  const { result: scaleUp, seen } = await watchDecisions(
    'the scale-up history row',
    async () => (await history()).find((r) => r.action === 'scale_up' && r.status === 'succeeded'),
    20_000,
  );
  t.match(scaleUp, { action: 'scale_up', status: 'succeeded', triggered_by: 'rule', reason_code: 'rules_held', previous_replicas: 1, new_replicas: 3, dry_run: false }, 'scale-up 1 -> 3 recorded');
  const scaledAt = Date.parse(scaleUp.executed_at);
  t.ok(scaledAt - highSetAt >= DURATION * 1000, `scaled ${scaledAt - highSetAt} ms after lag became 120 (>= ${DURATION}s)`);
  // When did Prometheus first see 120? The rule window must lie wholly after that sample.
  const raw = await promQuery(prom.url, `${METRIC}{source="orders"}[2m]`);
  const firstHigh = raw[0]?.values?.find(([ts, v]) => v === '120' && ts * 1000 >= highSetAt - 1000)?.[0];
  t.ok(firstHigh !== undefined, `Prometheus has the first 120 sample (at ${firstHigh})`);
  t.ok(Math.floor(scaledAt / 1000) - DURATION >= (firstHigh ?? Infinity), `the 4s window of the scale-up [${Math.floor(scaledAt / 1000) - DURATION}, ${Math.floor(scaledAt / 1000)}] starts at or after the first 120 sample (${firstHigh})`);
  const notYet = seen.filter((d) => Date.parse(d.evaluated_at) < scaledAt && d.rules[0]?.latest === 120 && d.rules[0]?.held === false);
  t.ok(notYet.length >= 1, `${notYet.length} evaluation(s) saw 120 before the window was covered and did not scale`);
  t.ok(
    notYet.every((d) => d.action === 'none' && d.reason_code === 'no_rule_held'),
    'those evaluations decided nothing',
  );
  t.comment(`not-yet detail: ${notYet[0]?.rules[0]?.detail ?? ''}`);
  const scaleDecision = scaleUp.details as unknown as DecisionRecord;
  t.equal(scaleDecision.rules[0]?.samples, DURATION + 1, 'the scale-up used a full window of samples');
  t.equal(scaleDecision.rules[0]?.value, 120, 'the scale-up value is 120');

  // The keda stub now reports 3, and the next decision reads it from the executor.
  const keda = daemon.plugins.executors.get('keda');
  t.ok(keda !== undefined, 'keda executor loaded');
  t.equal(await keda?.getCurrentReplicas({ policyId: policy.id, policyName: policy.name, targetType: 'cdc-worker', targetId: null, targetRef: null }), 3, 'the keda stub reports 3');
  const after = await decisionAfter('a decision after the scale-up', scaledAt, () => true);
  t.equal(after.current_replicas, 3, 'current replicas 3');
  t.equal(after.current_replicas_from, 'executor', 'read from the executor');
  t.equal((await state()).current_replicas, 3, 'state current_replicas 3');

  // 3. Still high: cooldown blocks the next step, recorded once.
  const blocked = await waitFor('the cooldown blocked row', async () => (await history()).find((r) => r.status === 'blocked'), 5_000);
  t.match(blocked, { status: 'blocked', reason_code: 'cooldown', action: 'scale_up', previous_replicas: 3, new_replicas: 5, triggered_by: 'rule' }, 'cooldown blocked 3 -> 5');
  const blockedAt = Date.parse(blocked.executed_at);
  t.ok(blockedAt - scaledAt < COOLDOWN * 1000, 'blocked within the cooldown');
  let cooled = 0;
  let lastSeen = blockedAt;
  while (cooled < 3) {
    const d = await decisionAfter('another cooldown decision', lastSeen, () => true, 5_000);
    t.equal(d.reason_code, 'cooldown', `evaluation at ${d.evaluated_at}: still cooldown`);
    lastSeen = Date.parse(d.evaluated_at);
    cooled++;
  }
  const rowsInCooldown = await history();
  t.equal(rowsInCooldown.filter((r) => r.status === 'blocked').length, 1, 'one blocked row for the whole cooldown, not one per cycle');
  t.equal(rowsInCooldown.length, 2, 'history: the scale-up and one blocked row');

  // 4. Prometheus goes away: metric_error, no scaling, /readyz says the source is unreachable.
  const stoppedAt = Date.now();
  await prom.halt();
  const err1 = await decisionAfter('a metric_error decision', stoppedAt, (d) => d.reason_code === 'metric_error');
  t.match(err1.rules[0]?.error, /unreachable/, `the rule records why: ${err1.rules[0]?.error}`);
  t.equal(err1.action, 'none', 'no action on metric error');
  const err3 = await decisionAfter('two more metric_error decisions', Date.parse(err1.evaluated_at) + 1500, () => true);
  t.equal(err3.reason_code, 'metric_error', 'still metric_error');
  const downState = await state();
  t.ok(downState.consecutive_metric_failures >= 3, `consecutive metric failures counted (${downState.consecutive_metric_failures})`);
  t.equal(downState.last_decision?.reason_code, 'metric_error', 'state last decision is metric_error');
  t.equal((await history()).length, 2, 'no new history row while Prometheus is down');
  const ready = await call('GET', `${root}/readyz`);
  t.equal(ready.status, 200, '/readyz still answers 200 (the source is not critical)');
  t.match(
    ready.body,
    { status: 'degraded', checks: { metric_sources: { ok: false, error: /1 metric source\(s\) unreachable/, sources: { prometheus: { ok: false, error: /unreachable/ } } } } },
    '/readyz shows the metric source unreachable',
  );
  t.equal(daemon.manager.sourceHealth.get('prometheus')?.ok, false, 'the loop sees the source down');
  t.equal(daemon.manager.lastCycle?.fetch_errors, 1, 'the last cycle counted the failed fetch');
  const unreachableLines = logLines.filter((l) => /metric source prometheus is unreachable/.test(l.msg));
  t.equal(unreachableLines.length, 1, 'the outage is logged once, not every cycle');

  // 5. Prometheus is back: rules evaluate again, and past the cooldown the next step is taken.
  const restartedAt = Date.now();
  await prom.restart({ waitForMetric: `${METRIC}{source="orders"}` });
  const scaleUp2 = await waitFor(
    'the second scale-up after Prometheus came back',
    async () => (await history()).find((r) => r.action === 'scale_up' && r.status === 'succeeded' && r.previous_replicas === 3),
    20_000,
  );
  t.match(scaleUp2, { new_replicas: 5, reason_code: 'rules_held', triggered_by: 'rule' }, 'recovered: 3 -> 5');
  t.ok(Date.parse(scaleUp2.executed_at) >= restartedAt, 'after the restart');
  t.ok(Date.parse(scaleUp2.executed_at) - scaledAt >= COOLDOWN * 1000, 'and after the cooldown');
  t.equal((await state()).current_replicas, 5, 'state current_replicas 5');
  t.ok(
    logLines.some((l) => /metric source prometheus is answering again/.test(l.msg) && l.time >= restartedAt),
    'recovery is logged',
  );
  const readyAgain = await waitFor('/readyz to show the metric source answering', async () => {
    const r = await call('GET', `${root}/readyz`);
    return (r.body as { checks?: { metric_sources?: { ok?: boolean } } }).checks?.metric_sources?.ok === true ? r : undefined;
  });
  t.match(readyAgain.body, { checks: { metric_sources: { ok: true, sources: { prometheus: { ok: true } } } } }, '/readyz shows the source answering');
  t.equal(daemon.manager.sourceHealth.get('prometheus')?.ok, true, 'the loop sees the source up');
  t.equal(logLines.filter((l) => /metric source prometheus is answering again/.test(l.msg)).length, 1, 'one recovery line');

  // The backtest chart, through the daemon as it starts (not an injected renderer).
  const to = new Date(Math.floor(Date.now() / 1000) * 1000);
  const from = new Date(Math.max(testStart, to.getTime() - 60_000));
  const range = { from: from.toISOString(), to: to.toISOString(), step: '1s' };
  const svg = await call('POST', `${api}/policies/${policy.id}/backtest?format=svg`, range);
  t.equal(svg.status, 200, `?format=svg answers (${svg.text.slice(0, 120)})`);
  t.match(svg.headers.get('content-type'), /^image\/svg\+xml/, 'as image/svg+xml');
  t.match(svg.text, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/, 'an SVG document');
  t.match(svg.text, /orders-cdc-live/, 'naming the policy');
  const json = await call('POST', `${api}/policies/${policy.id}/backtest`, range);
  t.match(json.headers.get('content-type'), /^application\/json/, 'without format, JSON');

  const interesting = /scale_up \d+ -> \d+|^keda stub: recorded|^blocked:|is unreachable|answering again/;
  const excerpt = logLines.filter((l) => interesting.test(l.msg));
  t.ok(excerpt.length >= 5, 'the log has the scale-ups, the cooldown block, the outage and the recovery');
  const stubLines = logLines.filter((l) => l['plugin'] === 'keda' || /keda stub/.test(l.msg)).filter((l) => l['replicas'] !== undefined);
  t.ok(stubLines.length > 0 && stubLines.every((l) => /^keda stub(, dry run)?: .*nothing outside this process change/.test(l.msg) && l['stub'] === true), `the keda stub says it is a stub in each of its ${stubLines.length} scaling line(s)`);
  if (process.env['PRINT_LOG'] === '1') {
    t.comment('daemon log excerpt:');
    for (const l of excerpt) {
      const { time, level, msg, pid: _pid, hostname: _host, ...rest } = l;
      const fields = Object.fromEntries(Object.entries(rest).filter(([k]) => !['policy_id'].includes(k)));
      t.comment(`${new Date(time).toISOString()} ${pino.levels.labels[level] ?? level} ${msg} ${JSON.stringify(fields)}`);
    }
  }
  t.comment(`live scenario took ${((Date.now() - testStart) / 1000).toFixed(1)} s`);
});
