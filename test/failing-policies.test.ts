/**
 * A policy whose queries keep failing is surfaced: the daemon (against a real Prometheus) logs one
 * line when it starts failing and one when it recovers, and /readyz names it (status degraded)
 * while it fails. The query parses (so it is accepted when written) but Prometheus refuses it: a
 * regular expression that RE2 does not compile. Fixing the policy over the API recovers it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { FAILING_AFTER } from '../src/engine/manager.js';
import { startDaemon } from '../src/main.js';
import { testDaemonConfig } from './helpers/daemon-config.js';
import { call } from './helpers/app.js';
import { requireTool, startPrometheus, waitFor } from './helpers/prometheus.js';

interface LogLine {
  level: number;
  msg: string;
  policy?: string;
  [k: string]: unknown;
}

t.test('a policy whose queries keep failing: logged once when it starts and once when it recovers, named in /readyz', async (t) => {
  t.comment(`using ${requireTool('prometheus')}`);
  const logLines: LogLine[] = [];
  const logger = pino(
    { level: 'info' },
    {
      write(chunk: string) {
        for (const line of chunk.split('\n')) if (line.trim() !== '') logLines.push(JSON.parse(line) as LogLine);
      },
    },
  );
  const prom = await startPrometheus({ waitForMetric: 'up' });
  t.teardown(() => prom.stop());
  const dir = await mkdtemp(join(tmpdir(), 'philotes-failing-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = testDaemonConfig(dir, { evaluation_interval: '1s', prometheus_url: prom.url, plugin_timeout: '2s', log_level: 'info' });
  const daemon = await startDaemon(config, logger);
  t.teardown(() => daemon.close());
  const root = `http://127.0.0.1:${daemon.port}`;
  const api = `${root}/api/v1/scaling`;

  const body = (metric: string) => ({
    name: 'bad-regex',
    target_type: 'cdc-worker',
    min_replicas: 1,
    max_replicas: 10,
    scale_up_rules: [{ metric, operator: 'gt', threshold: 60, scale_by: 1 }],
  });
  const unparsable = await call('POST', `${api}/policies`, body('max(up'));
  t.equal(unparsable.status, 422, 'PromQL that does not parse is refused when written');
  t.match(unparsable.body, { errors: [{ field: '/scale_up_rules/0/metric' }] }, 'naming the field');

  const created = await call('POST', `${api}/policies`, body('max(up{job=~"("})'));
  t.equal(created.status, 201, 'a query that parses is accepted (only Prometheus finds its regular expression bad)');
  const id = (created.body as { id: string }).id;

  const ready = await waitFor(
    '/readyz to name the failing policy',
    async () => {
      const r = await call('GET', `${root}/readyz`);
      return (r.body as { checks?: { failing_policies?: { ok: boolean } } }).checks?.failing_policies?.ok === false ? r : undefined;
    },
    15_000,
    200,
  );
  t.equal(ready.status, 200, 'degraded, not unready: the daemon still runs every other policy');
  t.match(ready.body, {
    status: 'degraded',
    checks: { failing_policies: { ok: false, error: /1 policy\(ies\) whose metric queries keep failing \(bad-regex\)/, policies: [{ policy_id: id, policy: 'bad-regex', error: /^query:/ }] } },
  });
  const state = await call('GET', `${api}/policies/${id}/state`);
  t.ok((state.body as { consecutive_metric_failures: number }).consecutive_metric_failures >= FAILING_AFTER, `found failing after ${FAILING_AFTER} failed evaluations in a row`);

  // Several more failing cycles: still one line.
  await new Promise((r) => setTimeout(r, 2500));
  const started = logLines.filter((l) => l.policy === 'bad-regex' && /metric queries have failed/.test(l.msg));
  t.equal(started.length, 1, 'one log line when it starts failing, however long it fails');
  t.equal(started[0]?.level, 40, 'a warning');
  t.match(started[0]?.msg, new RegExp(`failed ${FAILING_AFTER} evaluations in a row \\(query: .*\\); its rules do not hold until they answer`));

  const fixed = await call('PUT', `${api}/policies/${id}`, body('max(up)'));
  t.equal(fixed.status, 200, 'the query is fixed');
  const recovered = await waitFor('the recovery line', () => logLines.find((l) => l.policy === 'bad-regex' && /answer again/.test(l.msg)), 10_000, 100);
  t.equal(recovered.level, 30, 'an info line');
  t.match(recovered.msg, /^policy bad-regex: its metric queries answer again, after \d+ failed evaluations$/);
  const readyAgain = await call('GET', `${root}/readyz`);
  t.match(readyAgain.body, { checks: { failing_policies: { ok: true, policies: [] } } }, '/readyz no longer names it');
  t.equal(logLines.filter((l) => l.policy === 'bad-regex' && /answer again/.test(l.msg)).length, 1, 'one recovery line');
});
