/**
 * Fuzzing the policy front doors: 10,000 generated policies (valid, mutated, arbitrary JSON) go
 * through the three channels that accept policies: 4,000 POST bodies, 3,000 PUT bodies against
 * an existing API policy, and 3,000 YAML files through the real PolicyFileLoader watching a real
 * folder (the file loader, the same PolicyService parse the API uses, SQLite storage).
 *
 * For every input: no crash, no 5xx; every 4xx is application/problem+json (and valid against
 * schemas/problem.schema.json); every 422 names fields, each a JSON pointer anchored in the input
 * (it resolves there, or names a missing property of an object that is there); a valid input is
 * accepted and stored as answered; a rejected input stores nothing (the full GET answers before
 * and after are equal). For files: a rejected file keeps its previous policies in force, and every
 * problem names a field or a line.
 *
 * Seeds are fixed (FUZZ_SEED overrides them); a failure prints the seed and the input.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { parseAllDocuments } from 'yaml';
import { PolicyFileLoader, type SourceStatus } from '../src/files/policy-file-loader.js';
import { parsePolicyText } from '../src/files/policy-file.js';
import type { Policy } from '../src/policy/policy-model.js';
import { PolicyService } from '../src/policy/policy-service.js';
import { createValidationContext } from '../src/policy/validation-context.js';
import { PROBLEM_SCHEMA_ID, validator } from '../src/schemas.js';
import { createSqliteStorage } from '../src/storage/sqlite-storage.js';
import { DEFAULT_TEST_CONFIG, startTestApp, type TestApp } from './helpers/app.js';
import {
  CONFIG_PRICES,
  damage,
  jsonText,
  mutate,
  mutationArb,
  arbitraryJsonArb,
  sampleArb,
  textDamageArb,
  validPolicyArb,
  yamlDoc,
  type Category,
  type Json,
  type Mutation,
  type TextDamage,
} from './helpers/policy-arbitraries.js';

const POST_RUNS = 4_000;
const PUT_RUNS = 3_000;
const YAML_SLOTS = 100;
const YAML_ROUNDS = 30; // 3,000 files
const SEED_BASE = process.env['FUZZ_SEED'] !== undefined ? Number(process.env['FUZZ_SEED']) : 0x5eed_0000;
const seedOf = (n: number): number => SEED_BASE + n;

// Bounded by the counts above (about a minute on 2 cores); the margin is for a loaded CI machine.
t.setTimeout(300_000);

const problemValid = validator(PROBLEM_SCHEMA_ID);

/** Unescapes one JSON-pointer segment. */
const unescape = (s: string): string => s.replaceAll('~1', '/').replaceAll('~0', '~');

/**
 * Whether a JSON pointer is anchored in `doc`: "" (the document), a path that resolves, or a
 * missing property of an object that is there (how a missing required field is named).
 */
function anchored(doc: unknown, pointer: string): boolean {
  if (pointer === '') return true;
  if (!pointer.startsWith('/')) return false;
  const segs = pointer.slice(1).split('/').map(unescape);
  let v: unknown = doc;
  for (let i = 0; i < segs.length; i++) {
    const k = segs[i] as string;
    const last = i === segs.length - 1;
    if (Array.isArray(v)) {
      if (!/^(0|[1-9]\d*)$/.test(k) || Number(k) >= v.length) return false;
      v = v[Number(k)];
    } else if (typeof v === 'object' && v !== null) {
      if (!Object.hasOwn(v, k)) return last;
      v = (v as Record<string, unknown>)[k];
    } else return false;
  }
  return true;
}

/** The start of a request body or file, for failure messages. */
function brief(text: string, max = 1500): string {
  return text.length > max ? `${text.slice(0, max)}... (${text.length} chars)` : text;
}

interface Answer {
  status: number;
  type: string;
  body: unknown;
  text: string;
}

/** HTTP with one keep-alive agent per channel. */
function client(agent: Agent) {
  return async (method: string, url: string, body?: string): Promise<Answer> => {
    return new Promise<Answer>((resolve, reject) => {
      const req = request(url, { method, agent, headers: body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body: parsed, text });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${url}: no answer in 30 s`)));
      if (body !== undefined) req.write(body);
      req.end();
    });
  };
}

/** A test app with prices, and an HTTP client on one keep-alive connection; both closed at teardown. */
async function fuzzTarget(t: Test): Promise<{ app: TestApp; http: ReturnType<typeof client> }> {
  const app = await startTestApp({ prices: CONFIG_PRICES });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(async () => {
    agent.destroy();
    await app.close();
  });
  return { app, http: client(agent) };
}

/** Fails unless a refusal is allowed for this category and passes checkRefusal. */
function assertRefusal(category: string, res: Answer, sent: unknown, body: string): void {
  if (category === 'valid') assert.fail(`a valid policy was refused: ${res.status} ${res.text.slice(0, 800)}\ninput: ${brief(body)}`);
  const problem = checkRefusal(res, sent);
  if (problem !== null) assert.fail(`${problem}\ninput: ${brief(body)}`);
}

/** How many requests ended with this status (`:201`), over every category. */
function countOf(counts: Counts, suffix: string): number {
  return Object.entries(counts)
    .filter(([k]) => k.endsWith(suffix))
    .reduce((a, [, v]) => a + v, 0);
}

/** The checks every refused request must pass; returns a description of what is wrong, or null. */
function checkRefusal(res: Answer, sent: unknown): string | null {
  if (res.status >= 500) return `answered ${res.status}: ${res.text.slice(0, 500)}`;
  if (!/^application\/problem\+json/.test(res.type)) return `a ${res.status} that is not problem+json (${res.type})`;
  if (!problemValid(res.body)) return `a problem answer that does not match problem.schema.json: ${res.text.slice(0, 500)}`;
  if (![400, 409, 413, 422].includes(res.status)) return `an unexpected status ${res.status}: ${res.text.slice(0, 300)}`;
  if (res.status === 422) {
    const errors = (res.body as { errors?: Array<{ field?: unknown; message?: unknown }> }).errors;
    if (!Array.isArray(errors) || errors.length === 0) return 'a 422 without errors';
    for (const e of errors) {
      if (typeof e.field !== 'string' || typeof e.message !== 'string' || e.message === '') return `a 422 error without field or message: ${JSON.stringify(e)}`;
      if (!anchored(sent, e.field)) return `the 422 names ${JSON.stringify(e.field)}, which is not in the input (${e.message})`;
    }
  }
  return null;
}

/**
 * What an accepted policy must give back as sent: every field the client set, and each rule's and
 * schedule's own fields (ids, defaults and the other duration form are the server's). Returns a
 * description of the first difference, or null.
 */
function carries(sent: unknown, answer: Policy): string | null {
  const s = sent as Record<string, unknown>;
  const a = answer as unknown as Record<string, unknown>;
  const same = (x: unknown, y: unknown): boolean => JSON.stringify(x) === JSON.stringify(y);
  const top = ['name', 'description', 'target_type', 'executor', 'min_replicas', 'max_replicas', 'cooldown_seconds', 'max_hourly_cost', 'cost_per_replica_hour', 'scale_to_zero', 'enabled', 'dry_run', 'on_metric_error', 'fallback', 'scale_up_match', 'scale_down_match'];
  for (const k of top) if (s[k] !== undefined && s[k] !== null && !same(a[k], s[k])) return `${k}: sent ${JSON.stringify(s[k])?.slice(0, 200)}, answered ${JSON.stringify(a[k])?.slice(0, 200)}`;
  if (typeof s['target_id'] === 'string' && a['target_id'] !== s['target_id'].toLowerCase()) return `target_id: sent ${s['target_id']}, answered ${String(a['target_id'])}`;
  for (const [key, fields] of [['scale_up_rules', ['metric', 'operator', 'threshold', 'scale_by', 'source', 'aggregation', 'duration_seconds']], ['scale_down_rules', ['metric', 'operator', 'threshold', 'scale_by', 'source', 'aggregation', 'duration_seconds']], ['schedules', ['timezone', 'desired_replicas', 'mode', 'enabled', 'duration_seconds']]] as const) {
    const sentList = (s[key] ?? []) as Array<Record<string, unknown>>;
    const answered = (a[key] ?? []) as Array<Record<string, unknown>>;
    if (sentList.length !== answered.length) return `${key}: sent ${sentList.length}, answered ${answered.length}`;
    for (const [i, item] of sentList.entries()) {
      for (const f of fields) if (item[f] !== undefined && item[f] !== null && !same(answered[i]?.[f], item[f])) return `${key}/${i}/${f}: sent ${JSON.stringify(item[f])}, answered ${JSON.stringify(answered[i]?.[f])}`;
      if (key === 'schedules' && answered[i]?.['cron_expression'] !== String(item['cron_expression']).trim()) return `${key}/${i}/cron_expression differs`;
    }
  }
  return null;
}

type Counts = Record<string, number>;
const bump = (c: Counts, k: string): void => {
  c[k] = (c[k] ?? 0) + 1;
};
const show = (c: Counts): string =>
  Object.entries(c)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');

async function runProperty<T>(t: Test, label: string, seed: number, prop: fc.IAsyncProperty<[T]> | fc.IAsyncPropertyWithHooks<[T]>, numRuns: number, extra: fc.Parameters<[T]> = {}): Promise<void> {
  const details = await fc.check(prop, { seed, numRuns, ...extra });
  if (details.failed) {
    const error = (details.errorInstance as Error | null)?.message ?? '';
    const report = fc.defaultReportMessage(details) ?? '';
    t.fail(`${label}: property failed with seed ${seed} (FUZZ_SEED=${SEED_BASE} reruns this suite): ${error}\n${report.length > 4000 ? `${report.slice(0, 4000)}...` : report}`);
  } else t.pass(`${label}: ${details.numRuns} runs, seed ${seed}`);
}

t.test('POST /policies: 4,000 generated bodies', async (t) => {
  const { app, http } = await fuzzTarget(t);
  for (const name of ['put-target', 'neighbour']) await app.policies.create({ name, target_type: 'cdc-worker', min_replicas: 1, max_replicas: 5 });
  const list = `${app.api}/policies?limit=1000`;
  const before = (await http('GET', list)).text;
  const counts: Counts = {};
  const started = Date.now();

  const prop = fc.asyncProperty(sampleArb(), async ({ category, value }) => {
    const body = jsonText(value);
    const sent = JSON.parse(body) as unknown;
    const res = await http('POST', `${app.api}/policies`, body);
    bump(counts, `${category}:${res.status}`);
    if (res.status === 201) {
      const answer = res.body as Policy;
      const stored = await http('GET', `${app.api}/policies/${answer.id}`);
      assert.equal(stored.status, 200, 'the created policy can be read back');
      assert.deepEqual(stored.body, answer, 'the stored policy is the one answered');
      const diff = carries(sent, answer);
      if (diff !== null) assert.fail(`the answer does not carry the input: ${diff}\ninput: ${brief(body)}`);
      assert.equal((await http('DELETE', `${app.api}/policies/${answer.id}`)).status, 204);
    } else {
      assertRefusal(category, res, sent, body);
    }
    if ((await http('GET', list)).text !== before) assert.fail(`the policy list changed (${res.status}); input: ${brief(body)}`);
  });
  await runProperty(t, 'POST', seedOf(1), prop, POST_RUNS);
  t.comment(`POST: ${POST_RUNS} bodies in ${Date.now() - started} ms: ${show(counts)}`);
  const accepted = countOf(counts, ':201');
  t.comment(`POST: accepted ${accepted}, rejected ${POST_RUNS - accepted}`);
  t.ok((counts['valid:201'] ?? 0) > 500, 'many valid policies were generated and accepted');
  t.ok((counts['mutated:422'] ?? 0) > 500, 'many mutated policies were refused');
  t.ok((counts['mutated:201'] ?? 0) > 0, 'some mutations kept the policy valid');
});

t.test('PUT /policies/:id: 3,000 generated bodies against an existing API policy', async (t) => {
  const { app, http } = await fuzzTarget(t);
  const original = { name: 'put-target', target_type: 'trino', min_replicas: 2, max_replicas: 8, scale_up_rules: [{ metric: 'q', operator: 'gt', threshold: 5, scale_by: 1 }] };
  const target = await app.policies.create(original);
  await app.policies.create({ name: 'neighbour', target_type: 'cdc-worker', min_replicas: 1, max_replicas: 5 });
  const url = `${app.api}/policies/${target.id}`;
  const list = `${app.api}/policies?limit=1000`;
  let beforeList = (await http('GET', list)).text;
  let beforeOne = (await http('GET', url)).text;
  const counts: Counts = {};
  const started = Date.now();

  const prop = fc.asyncProperty(sampleArb(), async ({ category, value }) => {
    const body = jsonText(value);
    const sent = JSON.parse(body) as unknown;
    const res = await http('PUT', url, body);
    bump(counts, `${category}:${res.status}`);
    if (res.status === 200) {
      const answer = res.body as Policy;
      assert.equal(answer.id, target.id, 'a PUT keeps the id');
      assert.equal(answer.created_at, target.created_at, 'and the creation time');
      const diff = carries(sent, answer);
      if (diff !== null) assert.fail(`the answer does not carry the input: ${diff}\ninput: ${brief(body)}`);
      const stored = await http('GET', url);
      assert.deepEqual(stored.body, answer, 'the stored policy is the one answered');
      const list2 = (await http('GET', list)).body as { total_count: number };
      assert.equal(list2.total_count, 2, 'a PUT adds no policy');
      const back = await http('PUT', url, JSON.stringify(original));
      assert.equal(back.status, 200, 'the original is restored');
      beforeList = (await http('GET', list)).text;
      beforeOne = (await http('GET', url)).text;
    } else {
      assertRefusal(category, res, sent, body);
      if ((await http('GET', url)).text !== beforeOne) assert.fail(`the PUT target changed (${res.status}); input: ${brief(body)}`);
      if ((await http('GET', list)).text !== beforeList) assert.fail(`the policy list changed (${res.status}); input: ${brief(body)}`);
    }
  });
  await runProperty(t, 'PUT', seedOf(2), prop, PUT_RUNS);
  t.comment(`PUT: ${PUT_RUNS} bodies in ${Date.now() - started} ms: ${show(counts)}`);
  const accepted = countOf(counts, ':200');
  t.comment(`PUT: accepted ${accepted}, rejected ${PUT_RUNS - accepted}`);
  t.ok((counts['valid:200'] ?? 0) > 400, 'many valid replacements were accepted');
  t.ok((counts['mutated:422'] ?? 0) > 400, 'many mutated replacements were refused');
});

/** One YAML document of a generated file, before its name is fixed. */
type DocSpec = { category: 'valid' } | { category: 'mutated'; mutations: Mutation[] } | { category: 'arbitrary'; value: unknown };
interface FileSpec {
  docs: Array<{ spec: DocSpec; base: Record<string, Json> }>;
  damage: TextDamage;
}

const docSpecArb: fc.Arbitrary<{ spec: DocSpec; base: Record<string, Json> }> = fc.tuple(
  validPolicyArb(fc.constant('placeholder')),
  fc.oneof(
    { weight: 3, arbitrary: fc.constant<DocSpec>({ category: 'valid' }) },
    { weight: 5, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 3 }).map((mutations): DocSpec => ({ category: 'mutated', mutations })) },
    { weight: 2, arbitrary: arbitraryJsonArb.map((value): DocSpec => ({ category: 'arbitrary', value })) },
  ),
).map(([base, spec]) => ({ spec, base }));

const fileSpecArb: fc.Arbitrary<FileSpec> = fc.record({ docs: fc.array(docSpecArb, { minLength: 1, maxLength: 3 }), damage: textDamageArb });

/** The file's text and what kind of file it is (valid only when every document is valid and the text undamaged). */
function renderFile(spec: FileSpec, slot: number, round: number): { text: string; category: Category; values: unknown[] } {
  const values = spec.docs.map(({ spec: d, base }, i) => {
    const named = { ...base, name: `s${slot}-r${round % 2}-d${i}` };
    if (d.category === 'valid') return named;
    if (d.category === 'mutated') return mutate(named, d.mutations);
    return d.value;
  });
  const body = values.map((v) => yamlDoc(v)).join('---\n');
  const category: Category = spec.damage.kind !== 'none' ? 'mutated' : spec.docs.every((d) => d.spec.category === 'valid') ? 'valid' : spec.docs.some((d) => d.spec.category === 'arbitrary') ? 'arbitrary' : 'mutated';
  // A comment line makes each round's text differ, so the watcher always sees a change.
  const text = `# fuzz round ${round}\n${damage(body, spec.damage)}`;
  // As the file will read back: writing UTF-8 turns a lone surrogate into U+FFFD.
  return { text: Buffer.from(text, 'utf8').toString('utf8'), category, values };
}

t.test('policy files: 3,000 generated YAML files through the real file loader', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'philotes-fuzz-files-'));
  const dir = join(root, 'policies');
  mkdirSync(dir);
  const storage = createSqliteStorage(join(root, 'db.sqlite'));
  await storage.migrate();
  const service = new PolicyService({ storage, validation: createValidationContext({ ...DEFAULT_TEST_CONFIG, prices: CONFIG_PRICES }), defaultCooldown: 300 });
  const reloads = new Map<string, number>();
  const loader = new PolicyFileLoader({
    dirs: [dir],
    storage,
    policies: service,
    logger: pino({ level: 'silent' }),
    stabilityMs: 20,
    cwd: root,
    onReload: (s) => reloads.set(s.path, (reloads.get(s.path) ?? 0) + 1),
  });
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown): void => {
    unhandled.push(err);
  };
  process.on('unhandledRejection', onUnhandled);
  t.teardown(async () => {
    process.off('unhandledRejection', onUnhandled);
    await loader.close();
    await storage.close();
    rmSync(root, { recursive: true, force: true });
  });

  const slotPath = (i: number): string => `policies/s${String(i).padStart(3, '0')}.yaml`;
  // Every slot starts with a good file, so a rejected file always has policies to keep in force.
  for (let i = 0; i < YAML_SLOTS; i++) writeFileSync(join(root, slotPath(i)), `name: s${i}-init\ntarget_type: cdc-worker\nmin_replicas: 1\nmax_replicas: 3\n`);
  await loader.start();
  t.equal(loader.statuses().filter((s) => s.status === 'ok').length, YAML_SLOTS, 'the initial files are loaded');

  const bySource = async (): Promise<Map<string, Policy[]>> => {
    const out = new Map<string, Policy[]>();
    for (const p of (await storage.listPolicies({ limit: 100_000, offset: 0 })).policies) out.set(p.source, [...(out.get(p.source) ?? []), p]);
    for (const list of out.values()) list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return out;
  };
  const counts: Counts = {};
  let round = 0;
  let problemsSeen = 0;
  const started = Date.now();

  const prop = fc.asyncProperty(fc.array(fileSpecArb, { minLength: YAML_SLOTS, maxLength: YAML_SLOTS }), async (files) => {
    round++;
    const before = await bySource();
    const seen = new Map(reloads);
    const rendered = files.map((f, i) => renderFile(f, i, round));
    // Written beside the file and renamed over it, as editors and git do: the loader must never
    // see a half-written file (with a 20 ms stability window, a 1 MB write could be caught midway).
    rendered.forEach((r, i) => {
      const tmp = join(dir, `.s${i}.tmp`);
      writeFileSync(tmp, r.text);
      renameSync(tmp, join(root, slotPath(i)));
    });
    const deadline = Date.now() + 20_000;
    while (rendered.some((_, i) => (reloads.get(slotPath(i)) ?? 0) <= (seen.get(slotPath(i)) ?? 0))) {
      if (Date.now() > deadline) {
        const missing = rendered.map((r, i) => ({ path: slotPath(i), text: r.text })).filter((r) => (reloads.get(r.path) ?? 0) <= (seen.get(r.path) ?? 0));
        throw new Error(
          `round ${round}: the loader did not reload ${missing.length} file(s) within 20 s; unhandled: ${unhandled.map((e) => (e as Error).stack ?? String(e)).join('\n')}\n${missing.map((m) => `${m.path}:\n${brief(m.text, 3000)}`).join('\n')}`,
        );
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await loader.settle();
    assert.deepEqual(unhandled, [], 'no unhandled rejection (a crash in the loader)');
    const after = await bySource();
    const statuses = new Map<string, SourceStatus>(loader.statuses().map((s) => [s.path, s]));
    rendered.forEach(({ text, category }, i) => {
      const path = slotPath(i);
      const where = `round ${round}, ${path} (${category}):\n${brief(text, 3000)}`;
      const status = statuses.get(path);
      assert.ok(status !== undefined, `no status for ${where}`);
      bump(counts, `${category}:${status.status}`);
      if (status.status === 'ok') {
        const parsed = parsePolicyText(path, text, (input, source) => service.parse(input, { source }));
        if (parsed.problems.length > 0) assert.fail(`accepted, yet parsing finds problems ${JSON.stringify(parsed.problems).slice(0, 1000)}: ${where}`);
        const stored = after.get(path) ?? [];
        assert.deepEqual(stored.map((p) => p.name), parsed.policies.map((p) => p.name).sort(), `storage holds what the file says: ${where}`);
        for (const p of parsed.policies) {
          const s = stored.find((x) => x.name === p.name);
          assert.deepEqual(
            [s?.min_replicas, s?.max_replicas, s?.target_type, s?.scale_up_rules.length, s?.schedules.length],
            [p.min_replicas, p.max_replicas, p.target_type, p.scale_up_rules.length, p.schedules.length],
            `stored ${p.name} as parsed: ${where}`,
          );
        }
      } else {
        assert.notEqual(category, 'valid', `a valid file was refused (${JSON.stringify(status.errors).slice(0, 800)}): ${where}`);
        assert.deepEqual(after.get(path) ?? [], before.get(path) ?? [], `a rejected file changed the policies in force: ${where}`);
        assert.deepEqual([...status.policies].sort(), (before.get(path) ?? []).map((p) => p.name).sort(), `the status names the policies in force: ${where}`);
        assert.ok(status.errors.length > 0, `rejected without a problem: ${where}`);
        const docs = parseAllDocuments(text.replace(/^\uFEFF/, ''), { uniqueKeys: false });
        const values = new Map<number, unknown>();
        const valueOf = (index: number): unknown => {
          if (!values.has(index)) {
            try {
              values.set(index, Array.isArray(docs) ? docs[index]?.toJS({ maxAliasCount: 100 }) : undefined);
            } catch {
              values.set(index, undefined);
            }
          }
          return values.get(index);
        };
        const lines = text.split(/\r\n|\r|\n/).length;
        for (const p of status.errors) {
          problemsSeen++;
          // A file over max_policy_file_bytes is refused whole, before it is read: that problem
          // is about the file, so it has no line; it must then name its size and the limit.
          const oversized = /^the file is \d+ bytes, over the limit of \d+ bytes \(max_policy_file_bytes\); not read$/.test(p.message);
          assert.ok(p.field !== '' || p.line !== null || (oversized && Buffer.byteLength(text) > 1_048_576), `a problem with neither field nor line (${JSON.stringify(p)}): ${where}`);
          assert.ok(p.line === null || (p.line >= 1 && p.line <= lines + 1), `a problem whose line ${p.line} is outside the file: ${where}`);
          if (p.field !== '' && p.document !== null) {
            const value = valueOf(p.document);
            if (value !== undefined) assert.ok(anchored(value, p.field), `the problem names ${p.field}, which is not in document ${p.document}: ${where}`);
          }
        }
      }
    });
  });
  await runProperty(t, 'YAML files', seedOf(3), prop, YAML_ROUNDS, { endOnFailure: true });
  t.comment(`YAML: ${YAML_ROUNDS * YAML_SLOTS} files in ${YAML_ROUNDS} rounds of ${YAML_SLOTS}, ${Date.now() - started} ms: ${show(counts)}`);
  const ok = Object.entries(counts).filter(([k]) => k.endsWith(':ok')).reduce((a, [, v]) => a + v, 0);
  t.comment(`YAML: accepted ${ok}, rejected ${YAML_ROUNDS * YAML_SLOTS - ok} (${problemsSeen} problems reported, each with a field or a line)`);
  t.ok((counts['valid:ok'] ?? 0) > 150, 'many valid files were accepted');
  t.ok((counts['mutated:error'] ?? 0) > 300, 'many damaged files were refused');
});
