import { constants, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { LineCounter, isMap, isScalar, parseAllDocuments, type Document } from 'yaml';
import { ScalerError, type FieldError } from '../errors.js';
import type { Policy } from '../policy/policy-model.js';

/** One problem in a policy file, located as precisely as the parser allows. */
export interface FileProblem {
  file: string;
  /** 1-based; null when the problem has no place in the text (such as an unreadable file). */
  line: number | null;
  column: number | null;
  /** 0-based index of the YAML document in the file. */
  document: number | null;
  /** JSON pointer within the document's policy; "" for the document itself. */
  field: string;
  message: string;
}

export interface ParsedFile {
  file: string;
  policies: Policy[];
  problems: FileProblem[];
}

/** Turns one YAML document into a stored policy (validation + normalisation); throws ScalerError. */
export type PolicyParser = (input: unknown, source: string) => Policy;

function unescapePointer(seg: string): string {
  return seg.replaceAll('~1', '/').replaceAll('~0', '~');
}

/** Finds the line and column of a JSON pointer in a document, walking up to the nearest node that exists. */
function locate(doc: Document, lc: LineCounter, pointer: string, opts: { key?: boolean } = {}): { line: number; column: number } | null {
  const path = pointer
    .split('/')
    .slice(1)
    .map(unescapePointer)
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  if (opts.key === true && path.length > 0) {
    // An unknown property: point at its key as written, not at its value.
    const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true);
    const last = String(path.at(-1));
    if (isMap(parent)) {
      const pair = parent.items.find((it) => (isScalar(it.key) ? String(it.key.value) : String(it.key)) === last);
      const range = (pair?.key as { range?: [number, number, number] } | undefined)?.range;
      if (range !== undefined) {
        const pos = lc.linePos(range[0]);
        return { line: pos.line, column: pos.col };
      }
    }
  }
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    if (range !== undefined) {
      // For a key that exists, point at its key rather than its value when we can.
      const pos = lc.linePos(range[0]);
      return { line: pos.line, column: pos.col };
    }
  }
  return null;
}

/**
 * Parses a policy file: one policy per YAML document, several documents allowed. Reports every
 * problem with file, line, column and field; `policies` holds only what parsed cleanly, and a
 * caller must treat a file with problems as broken as a whole.
 */
export function parsePolicyText(file: string, text: string, parse: PolicyParser): ParsedFile {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const problems: FileProblem[] = [];
  const policies: Policy[] = [];
  const list = Array.isArray(docs) ? docs : [];
  if (!Array.isArray(docs)) {
    problems.push({ file, line: 1, column: 1, document: null, field: '', message: 'the file is not a YAML stream' });
  }
  const names = new Map<string, number>();
  list.forEach((doc, index) => {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const pos = lc.linePos(e.pos[0]);
        problems.push({
          file,
          line: pos.line,
          column: pos.col,
          document: index,
          field: '',
          message: `YAML syntax: ${e.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '')}`,
        });
      }
      return;
    }
    let input: unknown;
    try {
      input = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      problems.push({ file, line: 1, column: 1, document: index, field: '', message: `YAML: ${(err as Error).message}` });
      return;
    }
    // An empty document (a trailing ---, or a file of comments) is allowed and holds no policy.
    if (input === null || input === undefined) return;
    try {
      const policy = parse(input, file);
      const seen = names.get(policy.name);
      if (seen !== undefined) {
        const at = locate(doc, lc, '/name');
        problems.push({ file, line: at?.line ?? null, column: at?.column ?? null, document: index, field: '/name', message: `"${policy.name}" is already defined in document ${seen} of this file` });
        return;
      }
      names.set(policy.name, index);
      policies.push(policy);
    } catch (err) {
      if (!(err instanceof ScalerError)) throw err;
      const errors: FieldError[] = err.errors ?? [{ field: '', message: err.message }];
      for (const e of errors) {
        const at = locate(doc, lc, e.field, { key: e.message.startsWith('is not a known property') });
        problems.push({ file, line: at?.line ?? null, column: at?.column ?? null, document: index, field: e.field, message: e.message });
      }
    }
  });
  // In the order of the text, so a list of problems reads top to bottom (a problem without a place first).
  problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
  return { file, policies, problems };
}

/** The largest policy file read when no limit is given (the default of `max_policy_file_bytes`). */
export const DEFAULT_MAX_POLICY_FILE_BYTES = 1_048_576;

const READ_CHUNK = 64 * 1024;

/** A problem of a file as a whole (unreadable, too large): it has no line. */
export function fileProblem(file: string, message: string, field = ''): FileProblem {
  return { file, line: null, column: null, document: null, field, message };
}

/** The message of a file refused for its size, naming the size and the limit. */
export function tooLargeMessage(size: number, maxBytes: number, orMore = false): string {
  return `the file is ${orMore ? 'more than ' : ''}${size} bytes, over the limit of ${maxBytes} bytes (max_policy_file_bytes); not read`;
}

export type PolicyFileText =
  | {
      ok: true;
      text: string;
      /** The file as opened (before reading). */
      stat: Stats;
      /** It changed while it was read (size or times moved, or fewer bytes than its size): the text may be torn. */
      changedWhileReading: boolean;
    }
  | { ok: false; message: string; code: string | undefined };

export interface ReadPolicyFileOptions {
  /** Largest file read; a larger one is refused before any of it is parsed. */
  maxBytes?: number;
  /** Refuse to open the path if it is itself a symlink (the daemon reads real paths it resolved). */
  noFollow?: boolean;
}

/**
 * Reads a policy file without trusting it: opened without blocking (a FIFO would hang a thread),
 * refused unless it is a regular file no larger than the limit (checked on the open file, so on
 * the same inode), and read in chunks up to limit + 1 bytes, so a file that grows after its stat,
 * or whose stat lies (as /proc files do), is refused too instead of filling memory.
 */
export async function readPolicyFileText(file: string, opts: ReadPolicyFileOptions = {}): Promise<PolicyFileText> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_POLICY_FILE_BYTES;
  const flags = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (opts.noFollow === true ? (constants.O_NOFOLLOW ?? 0) : 0);
  let handle: FileHandle;
  try {
    handle = await open(file, flags);
  } catch (err) {
    return { ok: false, message: `cannot read the file: ${(err as Error).message}`, code: (err as NodeJS.ErrnoException).code };
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) return { ok: false, message: 'the file is not a regular file; not read', code: undefined };
    if (st.size > maxBytes) return { ok: false, message: tooLargeMessage(st.size, maxBytes), code: 'EFBIG' };
    const bytes = await readAtMost(handle, maxBytes + 1);
    if (bytes.length > maxBytes) return { ok: false, message: tooLargeMessage(maxBytes, maxBytes, true), code: 'EFBIG' };
    const after = await handle.stat();
    const changedWhileReading = after.size !== st.size || after.mtimeMs !== st.mtimeMs || after.ctimeMs !== st.ctimeMs || bytes.length !== st.size;
    return { ok: true, text: bytes.toString('utf8'), stat: st, changedWhileReading };
  } catch (err) {
    return { ok: false, message: `cannot read the file: ${(err as Error).message}`, code: (err as NodeJS.ErrnoException).code };
  } finally {
    await handle.close().catch(() => undefined);
  }
}

async function readAtMost(handle: FileHandle, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  while (total < limit) {
    const want = Math.min(READ_CHUNK, limit - total);
    const { bytesRead, buffer } = await handle.read(Buffer.allocUnsafe(want), 0, want, null);
    if (bytesRead === 0) break;
    chunks.push(buffer.subarray(0, bytesRead));
    total += bytesRead;
  }
  return Buffer.concat(chunks, total);
}

/** Reads (within the size limit) and parses a policy file; problems name `displayName`. */
export async function parsePolicyFile(file: string, parse: PolicyParser, displayName = file, opts: ReadPolicyFileOptions = {}): Promise<ParsedFile> {
  const read = await readPolicyFileText(file, opts);
  if (!read.ok) return { file: displayName, policies: [], problems: [fileProblem(displayName, read.message)] };
  return parsePolicyText(displayName, read.text, parse);
}

/** The `file:line:col field message` form of a problem, for logs and the validate command. */
export function formatProblem(p: FileProblem): string {
  const where = p.line !== null ? `${p.file}:${p.line}:${p.column ?? 1}` : p.file;
  return `${where} ${p.field === '' ? '/' : p.field} ${p.message}`;
}
