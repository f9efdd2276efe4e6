/**
 * The cost of checking a rule's PromQL when a policy is written (src/policy/promql.ts): distinct
 * queries (each parsed once, then cached), the same query again, and 8 KiB of noise.
 *
 *   npm run bench:promql
 */
import { promqlProblem } from '../src/policy/promql.js';

const N = Number(process.env['QUERIES'] ?? 10_000);
const query = (i: number): string => `sum(rate(http_requests_total{job="api",n="${i}"}[5m])) by (instance)`;

for (let i = 0; i < 500; i++) promqlProblem(query(-i - 1)); // warm up

const rounds: number[] = [];
for (let round = 0; round < 5; round++) {
  const started = performance.now();
  for (let i = 0; i < N; i++) promqlProblem(query(round * N + i));
  rounds.push(((performance.now() - started) / N) * 1000);
}
rounds.sort((a, b) => a - b);

const cachedStart = performance.now();
for (let i = 0; i < N; i++) promqlProblem(query(0));
const cached = ((performance.now() - cachedStart) / N) * 1000;

const noise = Array.from({ length: 8000 }, (_, i) => '(){}[],+-*/ "=~!abc123'[(i * 7919) % 22]).join('');
const noiseStart = performance.now();
promqlProblem(noise);
const noiseMs = performance.now() - noiseStart;

console.log(`PromQL check, ${N.toLocaleString('en-US')} distinct queries a round, 5 rounds`);
console.log(`  distinct query: median ${rounds[2]?.toFixed(1)} µs (best ${rounds[0]?.toFixed(1)}, worst ${rounds[4]?.toFixed(1)}); ${N.toLocaleString('en-US')} policies' metrics in ${(((rounds[2] ?? 0) * N) / 1000).toFixed(0)} ms`);
console.log(`  the same query again (cached): ${cached.toFixed(2)} µs`);
console.log(`  8 KiB of noise: ${noiseMs.toFixed(1)} ms`);
