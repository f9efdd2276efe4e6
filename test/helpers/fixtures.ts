/**
 * Set-up shared by the engine tests: a SQLite store in a temp folder, and a PluginManager whose
 * plugins must all load, each removed or closed when the test ends.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { PluginManager, type PluginManagerOptions } from '../../src/plugins/plugin-manager.js';
import type { SqlStorage } from '../../src/storage/sql-storage.js';
import { createSqliteStorage } from '../../src/storage/sqlite-storage.js';

/** A migrated SQLite store in its own temp folder, closed and removed at teardown. */
export async function tempSqliteStorage(t: Test, prefix: string): Promise<SqlStorage> {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const storage = createSqliteStorage(join(dir, 'db.sqlite'));
  await storage.migrate();
  t.teardown(async () => {
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return storage;
}

/** Loads plugins, asserting that every one of them loaded; closed at teardown. */
export async function loadedPlugins(t: Test, opts: PluginManagerOptions, label: string): Promise<PluginManager> {
  const plugins = new PluginManager(opts);
  await plugins.loadAll();
  t.teardown(() => plugins.close());
  t.same(
    plugins.statuses.filter((s) => s.status !== 'loaded').map((s) => `${s.name}: ${s.error}`),
    [],
    label,
  );
  return plugins;
}
