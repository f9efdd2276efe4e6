import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/**
 * The folder holding this package's package.json. Sources run from `src/` under the test loader
 * and from `dist/src/` when built, so fixed relative paths would differ; walking up does not.
 */
export function packageRoot(): string {
  if (cached !== undefined) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string };
      if (pkg.name === 'philotes-scaler') {
        cached = dir;
        return dir;
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('philotes-scaler: cannot find the package root (package.json)');
    dir = parent;
  }
}

/** Reads a JSON file shipped with the package, such as a schema. */
export function readPackageJson<T = unknown>(...parts: string[]): T {
  return JSON.parse(readFileSync(join(packageRoot(), ...parts), 'utf8')) as T;
}
