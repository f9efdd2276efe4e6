// Time from a policy file write to the new policy being in force (stored, so the next
// evaluation cycle uses it). Goal: <= 1 s. Run: npm run bench:reload
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { PolicyFileLoader } from '../src/files/policy-file-loader.js';
import { PolicyService } from '../src/policy/policy-service.js';
import { createValidationContext } from '../src/policy/validation-context.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';

const ROUNDS = Number(process.env['ROUNDS'] ?? 40);
const root = mkdtempSync(join(tmpdir(), 'ps-bench-reload-'));
const dir = join(root, 'policies');
mkdirSync(dir);
// A realistic folder: 100 other policy files beside the one being edited.
for (let i = 0; i < 100; i++) {
  writeFileSync(join(dir, `other-${i}.yaml`), `name: other-${i}\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: 5\n`);
}
const storage = createSqliteStorage(join(root, 'db.sqlite'));
await storage.migrate();
const policies = new PolicyService({
  storage,
  validation: createValidationContext({ executors: { 'cdc-worker': 'keda' }, prices: {}, default_metric_source: 'prometheus' }),
  defaultCooldown: 300,
});
const loader = new PolicyFileLoader({ dirs: [dir], storage, policies, logger: pino({ level: 'silent' }), cwd: root });
const t0 = performance.now();
await loader.start();
const startMs = performance.now() - t0;

const file = join(dir, 'edited.yaml');
const latencies: number[] = [];
for (let i = 1; i <= ROUNDS; i++) {
  const max = 10 + i;
  const written = performance.now();
  writeFileSync(
    file,
    `name: edited\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: ${max}\nscale_up_rules:\n  - metric: max(philotes_cdc_lag_seconds)\n    operator: gt\n    threshold: 60\n    duration: 5m\n    scale_by: 2\n`,
  );
  for (;;) {
    const p = await storage.getPolicyByName('edited');
    if (p?.max_replicas === max) break;
    if (performance.now() - written > 10_000) throw new Error(`round ${i}: not in force after 10 s`);
    await new Promise((r) => setTimeout(r, 2));
  }
  latencies.push(performance.now() - written);
  await new Promise((r) => setTimeout(r, 50));
}
await loader.close();
await storage.close();
rmSync(root, { recursive: true, force: true });

latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
console.log(`file reload latency, ${ROUNDS} edits, 101 files in the folder, SQLite`);
console.log(`  start (initial load of 101 files): ${startMs.toFixed(0)} ms`);
console.log(`  write -> in force: p50 ${pct(50).toFixed(0)} ms, p95 ${pct(95).toFixed(0)} ms, max ${(latencies.at(-1) ?? NaN).toFixed(0)} ms (goal <= 1000 ms)`);
