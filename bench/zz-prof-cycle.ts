import { Session } from 'node:inspector/promises';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ScalingManager } from '../src/engine/manager.js';
import { PluginManager } from '../src/plugins/plugin-manager.js';
import { IsolatedMetricSource } from '../src/plugins/plugin-manager.js';
import { normalizePolicy } from '../src/policy/policy-normalize.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
const logger = pino({ level: 'silent' });
const plugins = new PluginManager({ dirs: [PluginManager.bundledDir()], configs: { prometheus: { url: 'http://127.0.0.1:1' } }, logger, timeoutMs: 30_000 });
await plugins.loadAll();
const fake = new IsolatedMetricSource('prometheus', { async instantQuery(q) { return { t: q.time.getTime() / 1000, v: 10 }; }, async rangeQuery(q) { const out = []; for (let s = q.start.getTime() / 1000; s <= q.end.getTime() / 1000; s += q.stepSeconds) out.push({ t: s, v: 10 }); return out; } }, 30000);
const dir = mkdtempSync(join(tmpdir(), 'zz-'));
const storage = createSqliteStorage(join(dir, 'db.sqlite'));
await storage.migrate();
const query = (i: number) => `max(m{series="s${i}"})`;
for (let i = 0; i < 10000; i++) await storage.createPolicy(normalizePolicy({ name: `b-${i}`, target_type: 'cdc-worker', min_replicas: 1, max_replicas: 10,
  scale_up_rules: [{ metric: query(i % 200), operator: 'gt', threshold: 60, duration: '1m', scale_by: 2 }, { metric: query((i + 1) % 200), operator: 'gt', threshold: 60, duration: '1m', scale_by: 1 }],
  scale_down_rules: [{ metric: query((i + 2) % 200), operator: 'lt', threshold: 5, duration: '1m', scale_by: -1 }] }, { source: 'api', now: new Date() }));
const m = new ScalingManager({ storage, logger, sources: new Map([['prometheus', fake]]), executors: plugins.executors, config: { evaluation_interval_ms: 30000, default_cooldown: 300, default_metric_source: 'prometheus', dry_run: false, max_concurrency: 16, executors: { 'cdc-worker': 'keda' }, prices: {} } });
await m.runCycle();
const session = new Session(); session.connect();
await session.post('Profiler.enable'); await session.post('Profiler.start');
for (let i = 0; i < 3; i++) { const r = await m.runCycle(); console.log(JSON.stringify(r.phases_ms), r.duration_ms); }
const { profile } = await session.post('Profiler.stop');
writeFileSync('/tmp/cycle.cpuprofile', JSON.stringify(profile));
