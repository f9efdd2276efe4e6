/**
 * `npm start` as the README runs it: SIGTERM to the npm process (what a process manager or a
 * terminal sends) must stop the daemon too, gracefully, not leave it running without a parent.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { freePort, waitFor } from './helpers/prometheus.js';
import { packageRoot } from '../src/util/package-root.js';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

t.test('SIGTERM to the npm start process stops the daemon', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ps-npm-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const child = spawn('npm', ['start', '--silent'], {
    cwd: packageRoot(),
    env: { ...process.env, PORT: String(port), PHILOTES_SCALING_DATABASE_PATH: join(dir, 'db.sqlite'), LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr.on('data', (b: Buffer) => (out += b.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  // npm builds first (prestart), then the daemon listens.
  await waitFor('the daemon to listen', () => (/API listening on/.test(out) ? true : undefined), 120_000, 200);
  // The daemon is npm's child (npm runs the script through a shell, which the script replaces with node).
  const children = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).stdout.trim().split('\n').filter((l) => l !== '').map(Number);
  t.equal(children.length, 1, `npm has one child (${children.join(', ')})`);
  const pid = children[0] as number;
  t.match(spawnSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8' }).stdout, /node dist\/src\/cli\.js serve/, 'and it is the daemon itself, not a shell');
  t.ok((await fetch(`http://127.0.0.1:${port}/healthz`)).ok, '/healthz answers');
  child.kill('SIGTERM');
  await exited;
  await waitFor('the daemon process to end', () => (alive(pid) ? undefined : true), 15_000, 100);
  t.notOk(alive(pid), `the daemon (pid ${pid}) is gone`);
  t.match(out, /"signal":"SIGTERM"[^\n]*shutting down/, 'it shut down on the signal');
  t.match(out, /"msg":"stopped"/, 'and said it stopped');
});
