import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ResolvedConfig } from '../config/config.js';
import type { Logger } from 'pino';
import { withPlugins } from '../plugins/load-plugins.js';
import { API_SOURCE } from '../policy/policy-model.js';
import { validatePolicyInput } from '../policy/policy-validation.js';
import { normalizePolicy } from '../policy/policy-normalize.js';
import type { Policy } from '../policy/policy-model.js';
import { createValidationContext, namesFromPlugins, type KnownNames } from '../policy/validation-context.js';
import { validationError } from '../errors.js';
import { fileProblem, formatProblem, parsePolicyFile, type FileProblem } from './policy-file.js';
import { scanPolicyFolder } from './policy-folder-scan.js';

/**
 * The policy parser of the commands that run without a daemon (validate, policy tests): the
 * daemon's schema and semantic checks against the names of the plugins the command loaded, as
 * the daemon loads them (createPluginManager), so a target type a third-party executor declares,
 * or a source that speaks PromQL, is known to both alike.
 */
export function commandPolicyParser(config: ResolvedConfig, known: KnownNames, now: () => Date = () => new Date()): (input: unknown, source: string) => Policy {
  const ctx = createValidationContext(config, known);
  return (input, source) => {
    const r = validatePolicyInput(input, ctx);
    if (!r.ok) throw validationError(r.errors);
    return normalizePolicy(r.value, { source: source || API_SOURCE, now: now() });
  };
}

/**
 * Expands files and folders into policy files, by the daemon's rules (scanPolicyFolder): hidden
 * entries skipped, symlinks followed only inside the folder. A file named explicitly is taken as
 * it is. `refused` holds the entries the daemon would report (loops, links out of the folder).
 */
export function collectPolicyFiles(paths: string[]): { files: string[]; missing: string[]; refused: FileProblem[] } {
  const files: string[] = [];
  const missing: string[] = [];
  const refused: FileProblem[] = [];
  for (const p of paths) {
    if (!existsSync(p)) missing.push(p);
    else if (statSync(p).isFile()) files.push(p);
    else {
      const scan = scanPolicyFolder(p);
      if (scan.unavailable !== null) refused.push(fileProblem(p, `the folder is ${scan.unavailable}`));
      for (const u of scan.unreadable) refused.push(fileProblem(u, 'the folder cannot be read'));
      for (const r of scan.refused) refused.push(fileProblem(r.path, r.message));
      files.push(...scan.files.map((f) => f.path));
    }
  }
  return { files, missing, refused };
}

export interface ValidateResult {
  files: Array<{ file: string; policies: string[]; problems: FileProblem[] }>;
  problems: FileProblem[];
  /** Paths given that do not exist (each is also a problem). */
  missing: string[];
}

/**
 * `philotes-scaler validate`: the same folder rules, size limit, parsing and validation the daemon
 * applies to policy files, without a database or a network; names must also be unique across the
 * files given. Plugins are loaded as the daemon loads them (logs go to `logger`, silent when absent).
 */
export async function validatePaths(paths: string[], config: ResolvedConfig, logger?: Logger): Promise<ValidateResult> {
  return withPlugins(config, logger, (plugins) => validateWith(paths, config, commandPolicyParser(config, namesFromPlugins(plugins))));
}

async function validateWith(paths: string[], config: ResolvedConfig, parse: (input: unknown, source: string) => Policy): Promise<ValidateResult> {
  const { files, missing, refused } = collectPolicyFiles(paths);
  const result: ValidateResult = { files: [], problems: missing.map((m) => fileProblem(m, 'no such file or folder')), missing };
  result.problems.push(...refused);
  const owner = new Map<string, string>();
  for (const f of files) {
    const parsed = await parsePolicyFile(resolve(f), parse, f, { maxBytes: config.max_policy_file_bytes });
    for (const p of parsed.policies) {
      const other = owner.get(p.name);
      if (other !== undefined) {
        parsed.problems.push(fileProblem(f, `"${p.name}" is also defined in ${other}`, '/name'));
      } else owner.set(p.name, f);
    }
    result.files.push({ file: f, policies: parsed.policies.map((p) => p.name), problems: parsed.problems });
    result.problems.push(...parsed.problems);
  }
  return result;
}

/** Text output: one line per problem (`file:line:col field message`), then a summary line. */
export function formatValidateText(r: ValidateResult): string {
  const lines = r.problems.map(formatProblem);
  const policies = r.files.reduce((n, f) => n + f.policies.length, 0);
  if (r.problems.length === 0) {
    lines.push(`ok: ${r.files.length} file(s), ${policies} policies valid`);
  } else {
    // Problems of files read, and paths that were not there, counted apart: "1 problem in 1 of 0 files" helps no one.
    const missing = new Set(r.missing ?? []);
    const inFiles = r.problems.filter((p) => !missing.has(p.file));
    const parts: string[] = [];
    if (inFiles.length > 0 || missing.size === 0) {
      parts.push(`${inFiles.length} problem(s) in ${new Set(inFiles.map((p) => p.file)).size} of ${r.files.length} file(s) read`);
    } else {
      parts.push(`${r.files.length} file(s) read`);
    }
    if (missing.size > 0) parts.push(`${missing.size} path(s) not found (${[...missing].join(', ')})`);
    lines.push(parts.join('; '));
  }
  return `${lines.join('\n')}\n`;
}
