import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../src/util/package-root.js';

const cli = join(packageRoot(), 'src', 'cli.ts');

/**
 * The variables that set a process's clock and zone (TZ; libfaketime's, when the suite runs under
 * scripts/clock-matrix.sh): passed on, so the CLI sees the same date and time as the test.
 */
export function clockEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && /^(TZ|LD_PRELOAD|FAKETIME\w*)$/.test(k)) env[k] = v;
  return env;
}

/**
 * Runs the CLI from source (through tsx) with a clean environment, in `cwd` (the package root
 * unless given). tap follows child processes and records their coverage; tsx's maps of a file
 * differ from those of tap's own TypeScript loader and do not merge with them (the report then
 * counted most files as one statement), so these processes record none. (tap's loader itself
 * starts too slowly for the many runs the tests make.)
 */
export function runCli(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // tsx is resolved from this package, so the CLI runs from any working directory.
    const c = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), cli, ...args], {
      cwd: opts.cwd ?? packageRoot(),
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', _TAPJS_PROCESSINFO_COVERAGE_: '0', ...clockEnv(), ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
    c.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    c.once('error', reject);
    c.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
