import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import type { Context } from 'koa';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { authMiddleware, tokensFrom } from '../src/api/auth.js';
import { ConfigError, ENV_KEYS, loadConfig } from '../src/config/config.js';
import { ScalerError } from '../src/errors.js';
import { createAjv } from '../src/schemas.js';
import { packageRoot } from '../src/util/package-root.js';

/**
 * The deployment files (deploy/Dockerfile, /.dockerignore, deploy/kubernetes/) cannot be run here:
 * no container engine, no cluster. These tests check what can be checked without one: that the
 * manifests agree with each other and with the code (the environment variables the config reads,
 * the paths the auth middleware leaves open, where the database lives), and that the build
 * context keeps what the Dockerfile copies.
 */

const root = packageRoot();
const kubeDir = join(root, 'deploy', 'kubernetes');
const dockerfile = readFileSync(join(root, 'deploy', 'Dockerfile'), 'utf8');
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;

interface SecretKeyRef {
  name: string;
  key: string;
  optional?: boolean;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: SecretKeyRef; configMapKeyRef?: unknown; fieldRef?: unknown };
}
interface Probe {
  httpGet?: { path: string; port: string | number };
}
interface Container {
  name: string;
  image?: string;
  imagePullPolicy?: string;
  env?: EnvVar[];
  envFrom?: Array<{ secretRef?: { name: string }; configMapRef?: { name: string } }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean; subPath?: string }>;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
}
interface Volume {
  name: string;
  configMap?: { name: string };
  secret?: { secretName: string };
  persistentVolumeClaim?: { claimName: string };
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: Volume[];
  securityContext?: { runAsUser?: number; runAsGroup?: number; runAsNonRoot?: boolean; fsGroup?: number };
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  // Deployment, Service, PersistentVolumeClaim: only the fields read below.
  spec?: {
    replicas?: number;
    strategy?: { type?: string; rollingUpdate?: unknown };
    selector?: Record<string, unknown>;
    template?: { metadata?: { labels?: Record<string, string> }; spec: PodSpec };
    accessModes?: string[];
    ports?: Array<{ name?: string; port: number; targetPort?: string | number }>;
  };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

interface Manifest {
  /** Path relative to deploy/kubernetes, with forward slashes. */
  file: string;
  objects: K8sObject[];
}

function yamlFiles(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
    if (entry.isDirectory()) out.push(...yamlFiles(dir, path));
    else if (/\.ya?ml$/.test(entry.name)) out.push(path);
  }
  return out.sort();
}

const manifests: Manifest[] = yamlFiles(kubeDir).map((file) => {
  const docs = parseAllDocuments(readFileSync(join(kubeDir, file), 'utf8'));
  const list = Array.isArray(docs) ? docs : [docs];
  for (const d of list) if (d.errors.length > 0) throw new Error(`deploy/kubernetes/${file}: ${d.errors.map((e) => e.message).join('; ')}`);
  return { file, objects: list.map((d) => d.toJS() as K8sObject).filter((o) => o !== null) };
});

const all = manifests.flatMap((m) => m.objects.map((o) => ({ file: m.file, o })));
/** A patch applied to the Deployments (kubectl patch), not a manifest of its own: checked apart. */
const PATCH_FILE = 'executor/deployment-patch.yaml';
const workloads = all.filter(({ file, o }) => o.spec?.template?.spec !== undefined && file !== PATCH_FILE);
const containersOf = (spec: PodSpec): Container[] => [...(spec.initContainers ?? []), ...spec.containers];
const containers = workloads.flatMap(({ file, o }) => containersOf(o.spec?.template?.spec as PodSpec).map((c) => ({ file, workload: o, c })));

function only<T>(items: T[], what: string): T {
  if (items.length !== 1) throw new Error(`expected exactly one ${what}, found ${items.length}`);
  return items[0] as T;
}

const secretFile = 'secret.example.yaml';
const exampleSecret = only(
  all.filter(({ file, o }) => file === secretFile && o.kind === 'Secret').map(({ o }) => o),
  `Secret in deploy/kubernetes/${secretFile}`,
);
const exampleValues: Record<string, string> = {
  ...Object.fromEntries(Object.entries(exampleSecret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')])),
  ...(exampleSecret.stringData ?? {}),
};

/** Each instruction of a Dockerfile as [keyword, arguments], with line continuations joined. */
function instructions(text: string): Array<[string, string]> {
  const joined = text.replace(/\\\r?\n/g, ' ');
  const out: Array<[string, string]> = [];
  for (const raw of joined.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+)\s+(.*)$/.exec(line);
    if (m !== null) out.push([(m[1] as string).toUpperCase(), m[2] as string]);
  }
  return out;
}

/** The image's ENV: names and values (`ENV a=b c=d` and `ENV a b`). */
const imageEnv: Record<string, string> = {};
for (const [kw, args] of instructions(dockerfile)) {
  if (kw !== 'ENV') continue;
  const parts = args.split(/\s+/);
  if (!(parts[0] as string).includes('=')) imageEnv[parts[0] as string] = parts.slice(1).join(' ');
  else for (const p of parts) imageEnv[p.slice(0, p.indexOf('='))] = p.slice(p.indexOf('=') + 1).replace(/^"(.*)"$/, '$1');
}

/** The sources of the Dockerfile's COPY instructions that read the build context (not --from). */
const copySources: string[] = instructions(dockerfile)
  .filter(([kw, args]) => kw === 'COPY' && !/(^|\s)--from=/.test(args))
  .flatMap(([, args]) => {
    const operands = args.trim().startsWith('[') ? (JSON.parse(args) as string[]) : args.split(/\s+/).filter((a) => !a.startsWith('--'));
    return operands.slice(0, -1);
  });

/** The value a container sees for an environment variable: its own env, else the image's ENV. */
function envValue(c: Container, name: string): string | undefined {
  const e = c.env?.find((v) => v.name === name);
  if (e !== undefined) return e.value;
  return imageEnv[name];
}

t.test('every manifest is Kubernetes YAML with apiVersion, kind and a name', async (t) => {
  t.ok(manifests.length >= 5, `found ${manifests.map((m) => m.file).join(', ')}`);
  for (const { file, o } of all) {
    t.ok(typeof o.apiVersion === 'string' && typeof o.kind === 'string' && typeof o.metadata?.name === 'string', `${file}: ${o.kind}/${o.metadata?.name}`);
  }
  t.ok(workloads.length >= 2, 'a PostgreSQL and a SQLite Deployment');
});

t.test('every container has an explicit imagePullPolicy and a pinned image tag: the package version', async (t) => {
  for (const { file, c } of containers) {
    t.ok(['Always', 'IfNotPresent', 'Never'].includes(c.imagePullPolicy ?? ''), `${file} ${c.name}: imagePullPolicy ${c.imagePullPolicy}`);
    const image = c.image ?? '';
    const digest = image.includes('@sha256:');
    const tag = /:([^/:@]+)$/.exec(image)?.[1];
    t.ok(digest || (tag !== undefined && tag !== 'latest'), `${file} ${c.name}: ${image} names a fixed build`);
    // IfNotPresent with a tag that moves would keep whatever build a node pulled first.
    if (c.imagePullPolicy === 'IfNotPresent' && !digest) t.equal(tag, version, `${file} ${c.name}: the tag is the package version, as the README builds it`);
  }
});

t.test('every secretKeyRef names the Secret and a key of secret.example.yaml', async (t) => {
  let refs = 0;
  for (const { file, c } of containers) {
    for (const e of c.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      if (ref === undefined) continue;
      refs++;
      t.equal(ref.name, exampleSecret.metadata.name, `${file} ${e.name}: Secret ${ref.name}`);
      t.ok(Object.hasOwn(exampleValues, ref.key), `${file} ${e.name}: key ${ref.key} is in the example`);
    }
    for (const from of c.envFrom ?? []) {
      if (from.secretRef !== undefined) t.equal(from.secretRef.name, exampleSecret.metadata.name, `${file} envFrom: Secret ${from.secretRef.name}`);
    }
  }
  t.ok(refs >= 5, `${refs} references`);
  // Each variable reads the same key everywhere, so one Secret serves both variants.
  const keyOf = new Map<string, string>();
  for (const { file, c } of containers) {
    for (const e of c.env ?? []) {
      const key = e.valueFrom?.secretKeyRef?.key;
      if (key === undefined) continue;
      const seen = keyOf.get(e.name);
      if (seen === undefined) keyOf.set(e.name, key);
      else t.equal(key, seen, `${file} ${e.name}: the same key as elsewhere`);
    }
  }
});

t.test('the manifests and the image set only variables the config reads', async (t) => {
  for (const { file, c } of containers) {
    for (const e of c.env ?? []) t.ok(Object.hasOwn(ENV_KEYS, e.name), `${file} ${c.name}: ${e.name} is read by src/config/config.ts`);
  }
  // NODE_ENV is not configuration of the daemon; Node.js libraries read it.
  for (const name of Object.keys(imageEnv)) {
    if (name !== 'NODE_ENV') t.ok(Object.hasOwn(ENV_KEYS, name), `Dockerfile ENV ${name} is read by src/config/config.ts`);
  }
});

t.test('tokens and DATABASE_URL come from the Secret, never from a literal in a manifest', async (t) => {
  const secretVars = ['DATABASE_URL', 'PHILOTES_SCALING_API_TOKEN', 'PHILOTES_SCALING_API_READ_TOKEN'];
  for (const name of secretVars) t.ok(Object.hasOwn(ENV_KEYS, name), `${name} is a config variable`);
  for (const { file, c } of containers) {
    for (const e of c.env ?? []) {
      if (secretVars.includes(e.name)) t.ok(e.value === undefined && e.valueFrom?.secretKeyRef !== undefined, `${file} ${e.name}: from a secretKeyRef`);
    }
    const token = c.env?.find((e) => e.name === 'PHILOTES_SCALING_API_TOKEN');
    t.ok(token !== undefined && token.valueFrom?.secretKeyRef?.optional !== true, `${file} ${c.name}: the read-write token is required, so the API is never open by mistake`);
  }
});

t.test('the example Secret\'s placeholder tokens stop the daemon at start', async (t) => {
  // Applied unchanged, the example must not leave a daemon running with a published token.
  const cwd = mkdtempSync(join(tmpdir(), 'deploy-test-'));
  t.teardown(() => rmSync(cwd, { recursive: true, force: true }));
  let checked = 0;
  for (const { file, c } of containers) {
    for (const e of c.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      const mapping = ENV_KEYS[e.name];
      if (ref === undefined || mapping === undefined || !['api_token', 'api_read_token'].includes(mapping.key)) continue;
      const placeholder = exampleValues[ref.key] as string;
      checked++;
      let error: unknown;
      try {
        loadConfig({ env: { [e.name]: placeholder }, cwd });
      } catch (err) {
        error = err;
      }
      t.ok(error instanceof ConfigError && error.errors.some((fe) => fe.field === `/${mapping.key}`), `${file} ${e.name}: refused at start, naming /${mapping.key}`);
    }
  }
  t.ok(checked >= 2, `${checked} token variables checked`);
});

t.test('the SQLite variant: one replica, Recreate, its database folder on a claimed volume', async (t) => {
  const sqlite = manifests.filter((m) => m.file.startsWith('sqlite/')).flatMap((m) => m.objects);
  const deployment = only(sqlite.filter((o) => o.kind === 'Deployment'), 'Deployment in deploy/kubernetes/sqlite/');
  const spec = deployment.spec ?? {};
  t.equal(spec.replicas, 1, 'replicas: 1 (a SQLite file belongs to one daemon)');
  t.equal(spec.strategy?.type, 'Recreate', 'strategy Recreate: the old pod stops before the new one starts');
  t.equal(spec.strategy?.rollingUpdate, undefined);
  const pod = spec.template?.spec as PodSpec;
  const c = only(pod.containers, 'container in the SQLite Deployment');
  t.notOk(c.env?.some((e) => e.name === 'DATABASE_URL'), 'no DATABASE_URL: it would select PostgreSQL');
  const dbPath = envValue(c, 'PHILOTES_SCALING_DATABASE_PATH');
  t.ok(dbPath !== undefined && posix.isAbsolute(dbPath), `database path ${dbPath}`);
  const dir = posix.dirname(dbPath as string);
  const mount = only((c.volumeMounts ?? []).filter((m) => posix.normalize(m.mountPath) === dir), `volume mounted at ${dir}`);
  t.equal(mount.subPath, undefined, 'the whole folder: SQLite keeps -wal and -shm files beside the database');
  t.not(mount.readOnly, true);
  const volume = only((pod.volumes ?? []).filter((v) => v.name === mount.name), `volume ${mount.name}`);
  const claim = volume.persistentVolumeClaim?.claimName;
  t.ok(claim !== undefined, `volume ${mount.name} is a persistentVolumeClaim`);
  const pvc = only(sqlite.filter((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === claim), `PersistentVolumeClaim ${claim} in deploy/kubernetes/sqlite/`);
  t.ok(pvc.spec?.accessModes?.every((m) => m === 'ReadWriteOnce' || m === 'ReadWriteOncePod'), `access modes ${pvc.spec?.accessModes?.join(', ')}: never shared between nodes`);
  // The image runs as the user "node" (uid and gid 1000 in the node images): the volume must be
  // writable by it.
  t.match(dockerfile, /^USER node$/m);
  t.equal(pod.securityContext?.runAsUser, 1000);
  t.equal(pod.securityContext?.fsGroup, 1000, 'fsGroup makes the volume writable by the image\'s user');
});

t.test('the PostgreSQL variant: several replicas on DATABASE_URL', async (t) => {
  const deployment = only(all.filter(({ file, o }) => file === 'deployment.yaml' && o.kind === 'Deployment').map(({ o }) => o), 'Deployment in deploy/kubernetes/deployment.yaml');
  t.ok((deployment.spec?.replicas ?? 1) >= 2, 'more than one replica: one leads, the others take over');
  const c = only(deployment.spec?.template?.spec.containers ?? [], 'container in the PostgreSQL Deployment');
  t.ok(c.env?.some((e) => e.name === 'DATABASE_URL' && e.valueFrom?.secretKeyRef !== undefined), 'DATABASE_URL from the Secret');
});

t.test('volumes, ConfigMaps, the Service and the probes fit together', async (t) => {
  const configMaps = new Set(all.filter(({ o }) => o.kind === 'ConfigMap').map(({ o }) => o.metadata.name));
  const policyDirs = (imageEnv['PHILOTES_SCALING_POLICY_DIRS'] ?? '').split(',').map((s) => s.trim());
  const service = only(all.filter(({ o }) => o.kind === 'Service').map(({ o }) => o), 'Service');
  const selector = (service.spec?.selector ?? {}) as Record<string, string>;
  // The paths the auth middleware lets through without a token, asked of the middleware itself.
  const open = authMiddleware(tokensFrom({ api_token: 'a-token-of-at-least-16-chars', api_read_token: null, auth: { tokens: [], open_probes: true } }), { openProbes: true });
  const passes = async (path: string): Promise<boolean> => {
    const ctx = { path, method: 'GET', get: () => '', set: () => undefined, state: {} } as unknown as Context;
    try {
      await open(ctx, async () => undefined);
      return true;
    } catch (err) {
      if (err instanceof ScalerError && err.code === 'UNAUTHORIZED') return false;
      throw err;
    }
  };
  for (const { file, o } of workloads) {
    const pod = o.spec?.template?.spec as PodSpec;
    const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
    for (const v of pod.volumes ?? []) if (v.configMap !== undefined) t.ok(configMaps.has(v.configMap.name), `${file}: ConfigMap ${v.configMap.name} is defined`);
    for (const [k, v] of Object.entries(selector)) t.equal(o.spec?.template?.metadata?.labels?.[k], v, `${file}: the Service selects its pods (${k})`);
    for (const c of containersOf(pod)) {
      for (const m of c.volumeMounts ?? []) {
        const v = volumes.get(m.name);
        t.ok(v !== undefined, `${file} ${c.name}: mount ${m.name} names a volume of the pod`);
        if (v?.configMap !== undefined) t.ok(policyDirs.includes(m.mountPath), `${file}: ConfigMap ${v.configMap.name} at ${m.mountPath}, a folder of PHILOTES_SCALING_POLICY_DIRS (${policyDirs.join(',')})`);
      }
      for (const p of service.spec?.ports ?? []) {
        if (typeof p.targetPort === 'string') t.ok(c.ports?.some((cp) => cp.name === p.targetPort), `${file} ${c.name}: declares the port ${p.targetPort} the Service targets`);
      }
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
        const path = probe?.httpGet?.path;
        if (path !== undefined) t.ok(await passes(path), `${file} ${c.name}: probe ${path} needs no token`);
      }
    }
  }
  t.notOk(await passes('/api/v1/openapi.json'), 'the OpenAPI document is not an open path');
});

t.test('deploy/README.md documents the OpenAPI path the daemon serves, and the read scope it needs', async (t) => {
  const main = readFileSync(join(root, 'src', 'main.ts'), 'utf8');
  const path = /\.get\('(\/[^']*openapi[^']*)'/.exec(main)?.[1];
  t.ok(path !== undefined, `src/main.ts serves ${path}`);
  const readme = readFileSync(join(root, 'deploy', 'README.md'), 'utf8');
  t.ok(readme.includes(`GET ${path}`), 'README names the path');
  t.match(readme, /^## OpenAPI and the read token$/m);
  // What the README says about it, asked of the middleware with both kinds of token configured.
  const tokens = tokensFrom({ api_token: 'read-write-token-0123456789', api_read_token: 'read-only-token-0123456789', auth: { tokens: [], open_probes: true } });
  const mw = authMiddleware(tokens, { openProbes: true });
  const call = async (method: string, token?: string): Promise<number> => {
    const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
    const ctx = { path, method, get: (h: string) => headers[h.toLowerCase()] ?? '', set: () => undefined, state: {} } as unknown as Context;
    try {
      await mw(ctx, async () => undefined);
      return 200;
    } catch (err) {
      if (err instanceof ScalerError) return err.status;
      throw err;
    }
  };
  t.equal(await call('GET'), 401, 'no token: 401');
  t.equal(await call('HEAD'), 401, 'HEAD, no token: 401');
  t.equal(await call('GET', 'not-a-configured-token'), 401, 'unknown token: 401');
  t.equal(await call('GET', 'read-only-token-0123456789'), 200, 'read token: allowed');
  t.equal(await call('GET', 'read-write-token-0123456789'), 200, 'read-write token: allowed');
  t.match(readme, /401/);
});

/**
 * Whether Docker leaves `file` (relative to the build context, forward slashes) out of the
 * context: the rules of .dockerignore (moby/patternmatcher). Patterns are cleaned and anchored at
 * the context root; `*` and `?` stay within one path segment, `**` spans any number of them; a
 * pattern that matches a parent folder excludes everything under it; `!` re-includes; the last
 * matching pattern wins.
 */
function dockerIgnored(patterns: string[], file: string): boolean {
  const parents: string[] = [];
  const parts = file.split('/');
  for (let i = 1; i < parts.length; i++) parents.push(parts.slice(0, i).join('/'));
  let excluded = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    let p = posix.normalize(negate ? raw.slice(1).trim() : raw);
    if (p.length > 1 && p.startsWith('/')) p = p.slice(1);
    if (p.endsWith('/')) p = p.slice(0, -1);
    let re = '';
    for (let i = 0; i < p.length; i++) {
      const ch = p[i] as string;
      if (ch === '*' && p[i + 1] === '*') {
        i++;
        if (p[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else if (ch === '*') re += '[^/]*';
      else if (ch === '?') re += '[^/]';
      else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
    const rx = new RegExp(`^${re}$`);
    if ([file, ...parents].some((f) => rx.test(f))) excluded = !negate;
  }
  return excluded;
}

function filesUnder(rel: string): string[] {
  const abs = join(root, rel);
  if (!statSync(abs).isDirectory()) return [rel];
  return readdirSync(abs).flatMap((name) => filesUnder(`${rel}/${name}`));
}

t.test('.dockerignore: at the build context root; keeps out dependencies, git, databases and local config; keeps what the Dockerfile copies', async (t) => {
  t.match(dockerfile, /docker build -f deploy\/Dockerfile .* \.\s*$/m, 'the Dockerfile is built with the repository root as context');
  const patterns = readFileSync(join(root, '.dockerignore'), 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  for (const f of [
    'node_modules/koa/package.json',
    'plugins/keda/node_modules/x/index.js',
    '.git/config',
    'dist/src/cli.js',
    'coverage/lcov.info',
    '.tap/processinfo/x.json',
    'test/cli.test.ts',
    'data/philotes-scaler.db',
    'data/philotes-scaler.db-wal',
    'philotes-scaler.db',
    'philotes-scaler.db-wal',
    'philotes-scaler.db-shm',
    'philotes-scaler.db.leader',
    'philotes-scaler.yaml',
    '.env',
    'deploy/kubernetes/secret.yaml',
  ]) {
    t.ok(dockerIgnored(patterns, f), `${f} is left out`);
  }
  t.ok(copySources.length >= 8, `COPY sources: ${copySources.join(' ')}`);
  // npm run build bundles the web console: the script it runs and the console's sources are copied.
  const build = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['build'] ?? '';
  for (const script of build.match(/(?<=node )\S+/g) ?? []) t.ok(copySources.includes(script), `the build's ${script} is copied`);
  t.ok(copySources.includes('ui'), 'the console\'s sources (ui/) are copied');
  for (const src of copySources) {
    let files: string[];
    try {
      files = filesUnder(src.replace(/\/$/, ''));
    } catch {
      t.fail(`COPY ${src}: not in the repository`);
      continue;
    }
    t.same(files.filter((f) => dockerIgnored(patterns, f)), [], `COPY ${src}: none of its ${files.length} files is left out`);
  }
});

t.test('executor/: the patch runs either Deployment as the RBAC service account with a config the daemon and the kubernetes executor accept', async (t) => {
  const patch = only(all.filter(({ file }) => file === PATCH_FILE).map(({ o }) => o), 'the patch');
  const pod = patch.spec?.template?.spec as PodSpec & { serviceAccountName?: string };
  const account = only(all.filter(({ o }) => o.kind === 'ServiceAccount').map(({ o }) => o), 'ServiceAccount');
  t.equal(pod.serviceAccountName, account.metadata.name, 'the service account of rbac.yaml');
  const binding = only(all.filter(({ o }) => o.kind === 'RoleBinding').map(({ o }) => o), 'RoleBinding') as unknown as { roleRef: { kind: string; name: string }; subjects: Array<{ kind: string; name: string }> };
  const role = only(all.filter(({ o }) => o.kind === 'ClusterRole').map(({ o }) => o), 'ClusterRole');
  t.same([binding.roleRef.kind, binding.roleRef.name], ['ClusterRole', role.metadata.name], 'the RoleBinding grants the ClusterRole');
  t.same(binding.subjects.map((x) => [x.kind, x.name]), [['ServiceAccount', account.metadata.name]]);
  const container = pod.containers[0] as Container & { args?: string[] };
  const configPath = container.args?.[(container.args?.indexOf('--config') ?? -2) + 1] ?? '';
  const mount = container.volumeMounts?.find((m) => configPath.startsWith(`${m.mountPath}/`));
  t.ok(mount, `--config ${configPath} is in a mounted volume`);
  const volume = pod.volumes?.find((v) => v.name === mount?.name);
  const configMap = all.find(({ o }) => o.kind === 'ConfigMap' && o.metadata.name === volume?.configMap?.name)?.o as unknown as { data: Record<string, string> } | undefined;
  const text = configMap?.data[configPath.slice((mount?.mountPath.length ?? 0) + 1)];
  t.type(text, 'string', 'the ConfigMap holds the file --config names');
  const dir = mkdtempSync(join(tmpdir(), 'philotes-deploy-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'philotes-scaler.yaml'), text ?? '');
  const config = loadConfig({ env: {}, cwd: dir, file: join(dir, 'philotes-scaler.yaml') });
  t.equal(config.executors['cdc-worker'], 'kubernetes', 'the daemon reads it: cdc-worker goes to the kubernetes executor');
  const schema = JSON.parse(readFileSync(join(root, 'plugins', 'kubernetes', 'config.schema.json'), 'utf8')) as object;
  const validate = createAjv({ useDefaults: true }).compile({ ...schema, $schema: undefined });
  t.ok(validate(structuredClone(config.plugins['kubernetes'])), `plugins.kubernetes is valid: ${JSON.stringify(validate.errors)}`);
});
