import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { HistoryQuery, Storage } from '../storage/storage.js';

const gzipAsync = promisify(gzip);

/**
 * The most bytes of history answers kept in memory by default: half for rows (about 8,800 of
 * 1.9 KB), half for compressed pages (about 1,200 pages of 100 such rows).
 */
export const HISTORY_CACHE_BYTES = 32 * 1024 * 1024;

/**
 * Distinct queries remembered per generation, to tell a page asked for again from one read once:
 * at least 512, and as many as half the memory holds pages of 16 KiB (about 8 rows), so that a
 * walk through as many distinct pages as the newer half holds is remembered from one walk to the
 * next (with 512 only, a dashboard walking 1,000 policies' pages was never kept, whatever the
 * memory).
 */
const SEEN_QUERIES_AT_LEAST = 512;
const SEEN_PAGE_BYTES = 16 * 1024;
const OPEN = Buffer.from('{"history":[');
const COMMA = Buffer.from(',');

/**
 * zlib's level for compressed pages: on pages of 100 decision records, level 3 takes 0.4 ms for
 * 13.5 KB, as fast as level 1 (14.8 KB) and half the time of level 6 (0.9 ms for 10.9 KB), and the
 * pages of a thousand policies still fit the default memory. Off the event loop.
 */
const GZIP_LEVEL = 3;

/** A page compressed, with what it was built from: its rows' ids (as a digest) and its cursor. */
interface CompressedPage {
  rowIds: string;
  rows: number;
  cursor: string | null;
  gz: Buffer;
}

/**
 * The ids of a page's rows, in order, as one short string: kept instead of the ids themselves,
 * which took about 6 KB of heap a page of 100 (half as much again as the compressed page) outside
 * the memory's bound.
 */
function rowIdsOf(ids: readonly string[]): string {
  return createHash('sha256').update(ids.join('\n')).digest('base64');
}

/** What a kept page counts against the memory's bound. */
const keptBytes = (page: CompressedPage): number => page.gz.length + page.rowIds.length;

/**
 * Pages of history as the API answers them, built from each row's answer bytes. History rows
 * never change once written (retention only deletes them), so the bytes of a row already answered
 * are kept, up to half of `maxBytes`, and a page whose rows are all kept reads only its keys from
 * storage (an index, not the rows). Which rows are on a page, and its cursor, always come from
 * storage: a row appended or pruned by this daemon or by another sharing the database is on the
 * next page listed, or gone from it, exactly as without the kept bytes.
 *
 * A page's rows are kept only when the page is asked for again (the same query, with at most
 * #seenQueries other distinct ones asked between) or has rows kept already: rows read once, such
 * as a single walk through every policy's history, would otherwise replace the rows that are read
 * again and again at the cost of reading them (keeping and dropping bytes costs collections; at
 * 1,000 policies' pages in turn it cost a third of the throughput and tripled the slowest answers).
 *
 * The rows are kept in two generations of at most a quarter of the bytes each: rows listed go
 * into the young one (a row found in the old one moves up); when the young one is full it becomes
 * the old one and the old one is dropped. Rows not listed for a generation are dropped first,
 * every step O(1) (a Map dropping its oldest entry one at a time rescans the holes left at its
 * front).
 */
export class HistoryPages {
  /** Compressed pages by query, the one asked for longest ago first. */
  #compressed = new Map<string, CompressedPage>();
  #compressedBytes = 0;
  #young = new Map<string, Buffer>();
  #old = new Map<string, Buffer>();
  #youngBytes = 0;
  #oldBytes = 0;
  /** The queries asked for lately, in two generations of at most #seenQueries each. */
  #seen = new Set<string>();
  #seenBefore = new Set<string>();
  readonly #seenQueries: number;

  constructor(
    private readonly storage: Storage,
    readonly maxBytes: number = HISTORY_CACHE_BYTES,
  ) {
    this.#rowBytes = maxBytes / 2;
    this.#seenQueries = Math.max(SEEN_QUERIES_AT_LEAST, Math.ceil(this.#rowBytes / 2 / SEEN_PAGE_BYTES));
  }

  /** The rows' share of the memory (half; compressed pages have the other half). */
  readonly #rowBytes: number;

  /** The page's answer, as it is: `{"history":[…],"next_cursor":…}` as UTF-8 bytes. */
  async page(query: HistoryQuery): Promise<Buffer> {
    const { parts, bytes } = await this.answer(query, false);
    return Buffer.concat(parts, bytes);
  }

  /**
   * The page's answer as the route sends it, with the number of rows on it. As it is, it comes in
   * pieces, in order (the opening, each row's bytes with the commas between, the cursor), and their
   * total length: written to a socket as they are, a page is never copied into one buffer (joining
   * 190 KB per answer halved what a plain Node server answered a second).
   *
   * For a client that accepts gzip, a page asked for again is answered compressed, and kept so by
   * query with a digest of its rows' ids and the cursor it was built from, in the other half of the
   * memory: asked for once more, it reads only its keys from storage (never its rows) and, when
   * they are still the same rows in the same order with the same cursor, the bytes kept are the
   * answer; a page that changed (a row appended or pruned since) is built and compressed anew. A
   * page asked for once is sent as it is: compressing 190 KB costs more than answering it (a walk
   * through pages read once, such as deep cursors, answered at a third of the rate compressed).
   * "Again" is what it is for rows (see the class). Compressed, a page of 100 decision records (190
   * KB) takes about 14 KB, so the default memory keeps about 1,200 such pages (every first page of
   * a thousand policies).
   */
  async answer(query: HistoryQuery, acceptsGzip: boolean): Promise<{ parts: Buffer[]; bytes: number; rows: number; gzip: boolean }> {
    const key = JSON.stringify(query);
    // Left in place while its keys are read, so that the same page asked for meanwhile finds it.
    const kept = acceptsGzip ? this.#compressed.get(key) : undefined;
    if (kept !== undefined) {
      // Every row "known": storage reads the page's keys only (an index), no row's text.
      const now = await this.storage.listHistoryJson(query, () => true);
      if (now.next_cursor === kept.cursor && rowIdsOf(now.ids) === kept.rowIds) {
        this.#keepCompressed(key, kept);
        return { parts: [kept.gz], bytes: kept.gz.length, rows: kept.rows, gzip: true };
      }
    }
    // A page kept compressed that changed is asked for again by definition.
    const again = kept !== undefined || this.#askedBefore(key);
    const { parts, bytes, ids, cursor } = await this.#build(query, again);
    if (!acceptsGzip || !again) return { parts, bytes, rows: ids.length, gzip: false };
    const gz = await gzipAsync(Buffer.concat(parts, bytes), { level: GZIP_LEVEL });
    this.#keepCompressed(key, { rowIds: rowIdsOf(ids), rows: ids.length, cursor, gz });
    return { parts: [gz], bytes: gz.length, rows: ids.length, gzip: true };
  }

  /** The page in pieces; its rows are kept when it is asked for again, or when some are kept already. */
  async #build(query: HistoryQuery, again: boolean): Promise<{ parts: Buffer[]; bytes: number; ids: string[]; cursor: string | null }> {
    // The buffers of the rows known when storage asks: taken then, so that other pages dropping
    // them meanwhile cannot take them from this one.
    const held = new Map<string, Buffer>();
    const page = await this.storage.listHistoryJson(query, (id) => {
      const b = this.#take(id);
      if (b !== undefined) held.set(id, b);
      return b !== undefined;
    });
    const keep = again || held.size > 0;
    const parts: Buffer[] = [OPEN];
    let bytes = OPEN.length;
    page.ids.forEach((id, i) => {
      const text = page.rows[i];
      let row = held.get(id);
      if (text !== undefined) {
        row = typeof text === 'string' ? Buffer.from(text) : text;
        if (keep) this.#keep(id, row);
      }
      if (row === undefined) throw new Error(`history row ${id} came without its answer`);
      if (i > 0) {
        parts.push(COMMA);
        bytes += COMMA.length;
      }
      parts.push(row);
      bytes += row.length;
    });
    const end = Buffer.from(`],"next_cursor":${JSON.stringify(page.next_cursor)}}`);
    parts.push(end);
    return { parts, bytes: bytes + end.length, ids: page.ids, cursor: page.next_cursor };
  }

  /** Rows kept, and their bytes. */
  get size(): { rows: number; bytes: number } {
    return { rows: this.#young.size + this.#old.size, bytes: this.#youngBytes + this.#oldBytes };
  }

  /** Compressed pages kept, and their bytes. */
  get compressedSize(): { pages: number; bytes: number } {
    return { pages: this.#compressed.size, bytes: this.#compressedBytes };
  }

  /**
   * Keeps a compressed page as the newest, dropping the ones asked for longest ago while the
   * pages' half of the memory is exceeded. One Map in the order pages were asked for: at about
   * 14 KB a page, a few thousand entries, so dropping from its front stays cheap (unlike the
   * rows', tens of thousands of entries, hence their two generations).
   */
  #keepCompressed(key: string, page: CompressedPage): void {
    const bound = this.maxBytes - this.#rowBytes;
    if (keptBytes(page) > bound) return;
    const stale = this.#compressed.get(key);
    // The same query built twice at once: the later one stays.
    if (stale !== undefined && this.#compressed.delete(key)) this.#compressedBytes -= keptBytes(stale);
    this.#compressed.set(key, page);
    this.#compressedBytes += keptBytes(page);
    for (const [oldest, p] of this.#compressed) {
      if (this.#compressedBytes <= bound) break;
      this.#compressed.delete(oldest);
      this.#compressedBytes -= keptBytes(p);
    }
  }

  /** Whether this query (its JSON) was asked for lately; it is remembered as asked now. */
  #askedBefore(key: string): boolean {
    if (this.#seen.has(key)) return true;
    const before = this.#seenBefore.has(key);
    if (this.#seen.size >= this.#seenQueries) {
      this.#seenBefore = this.#seen;
      this.#seen = new Set();
    }
    this.#seen.add(key);
    return before;
  }

  /** A kept row's bytes; a row of the old generation moves to the young one. */
  #take(id: string): Buffer | undefined {
    const young = this.#young.get(id);
    if (young !== undefined) return young;
    const old = this.#old.get(id);
    if (old !== undefined) {
      this.#old.delete(id);
      this.#oldBytes -= old.length;
      this.#keep(id, old);
    }
    return old;
  }

  #keep(id: string, bytes: Buffer): void {
    const half = this.#rowBytes / 2;
    if (bytes.length > half || this.#young.has(id)) return;
    if (this.#youngBytes + bytes.length > half) {
      this.#old = this.#young;
      this.#oldBytes = this.#youngBytes;
      this.#young = new Map();
      this.#youngBytes = 0;
    }
    // A row moving up from the old generation is taken out of it before; one read again while
    // still there (two pages reading it at once) is dropped from it now.
    const stale = this.#old.get(id);
    if (stale !== undefined) {
      this.#old.delete(id);
      this.#oldBytes -= stale.length;
    }
    this.#young.set(id, bytes);
    this.#youngBytes += bytes.length;
  }
}
