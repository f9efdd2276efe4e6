import type { HistoryQuery, Storage } from '../storage/storage.js';

/** The most bytes of history answers kept in memory by default (about 17,000 rows of 1.9 KB). */
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
 * Pages of history as the API answers them, built from each row's answer bytes. History rows
 * never change once written (retention only deletes them), so the bytes of a row already answered
 * are kept, up to `maxBytes`, and a page whose rows are all kept reads only its keys from storage
 * (an index, not the rows). Which rows are on a page, and its cursor, always come from storage: a
 * row appended or pruned by this daemon or by another sharing the database is on the next page
 * listed, or gone from it, exactly as without the kept bytes.
 *
 * A page's rows are kept only when the page is asked for again (the same query, with at most
 * #seenQueries other distinct ones asked between) or has rows kept already: rows read once, such
 * as a single walk through every policy's history, would otherwise replace the rows that are read
 * again and again at the cost of reading them (keeping and dropping bytes costs collections; at
 * 1,000 policies' pages in turn it cost a third of the throughput and tripled the slowest answers).
 *
 * The rows are kept in two generations of at most half the bytes each: rows listed go into the
 * young one (a row found in the old one moves up); when the young one is full it becomes the old
 * one and the old one is dropped. Rows not listed for a generation are dropped first, every step
 * O(1) (a Map dropping its oldest entry one at a time rescans the holes left at its front).
 */
export class HistoryPages {
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
    this.#seenQueries = Math.max(SEEN_QUERIES_AT_LEAST, Math.ceil(maxBytes / 2 / SEEN_PAGE_BYTES));
  }

  /** The page's answer: `{"history":[…],"next_cursor":…}` as UTF-8 bytes. */
  async page(query: HistoryQuery): Promise<Buffer> {
    const { parts, bytes } = await this.parts(query);
    return Buffer.concat(parts, bytes);
  }

  /**
   * The page's answer in pieces, in order (the opening, each row's bytes with the commas between,
   * the cursor), and their total length: written to a socket as they are, a page is never copied
   * into one buffer (joining 190 KB per answer halved what a plain Node server answered a second).
   */
  async parts(query: HistoryQuery): Promise<{ parts: Buffer[]; bytes: number }> {
    // The buffers of the rows known when storage asks: taken then, so that other pages dropping
    // them meanwhile cannot take them from this one.
    const held = new Map<string, Buffer>();
    const page = await this.storage.listHistoryJson(query, (id) => {
      const b = this.#take(id);
      if (b !== undefined) held.set(id, b);
      return b !== undefined;
    });
    const keep = held.size > 0 || this.#askedBefore(query);
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
    return { parts, bytes: bytes + end.length };
  }

  /** Rows kept, and their bytes. */
  get size(): { rows: number; bytes: number } {
    return { rows: this.#young.size + this.#old.size, bytes: this.#youngBytes + this.#oldBytes };
  }

  /** Whether this query was asked for lately; it is remembered as asked now. */
  #askedBefore(query: HistoryQuery): boolean {
    const key = JSON.stringify(query);
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
    const half = this.maxBytes / 2;
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
