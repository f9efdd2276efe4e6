import type { HistoryQuery, Storage } from '../storage/storage.js';

/** The most bytes of history answers kept in memory by default (about 17,000 rows of 1.9 KB). */
export const HISTORY_CACHE_BYTES = 32 * 1024 * 1024;

const OPEN = Buffer.from('{"history":[');
const COMMA = Buffer.from(',');

/**
 * Pages of history as the API answers them, built from each row's answer bytes. History rows
 * never change once written (retention only deletes them), so the bytes of a row already answered
 * are kept, up to `maxBytes` with the least recently listed dropped first, and a page whose rows
 * are all kept reads only its keys from storage (an index, not the rows). Which rows are on a page,
 * and its cursor, always come from storage: a row appended or pruned by this daemon or by another
 * sharing the database is on the next page listed, or gone from it, exactly as without the cache.
 */
export class HistoryPages {
  readonly #rows = new Map<string, Buffer>();
  #bytes = 0;

  constructor(
    private readonly storage: Storage,
    readonly maxBytes: number = HISTORY_CACHE_BYTES,
  ) {}

  /** The page's answer: `{"history":[…],"next_cursor":…}` as UTF-8 bytes. */
  async page(query: HistoryQuery): Promise<Buffer> {
    // The buffers of the rows known when storage asks: taken then, so that other pages evicting
    // them meanwhile cannot take them from this one.
    const held = new Map<string, Buffer>();
    const page = await this.storage.listHistoryJson(query, (id) => {
      const b = this.#take(id);
      if (b !== undefined) held.set(id, b);
      return b !== undefined;
    });
    const parts: Buffer[] = [OPEN];
    page.ids.forEach((id, i) => {
      const text = page.rows[i];
      let bytes = held.get(id);
      if (text !== undefined) {
        bytes = Buffer.from(text);
        this.#keep(id, bytes);
      }
      if (bytes === undefined) throw new Error(`history row ${id} came without its answer`);
      if (i > 0) parts.push(COMMA);
      parts.push(bytes);
    });
    parts.push(Buffer.from(`],"next_cursor":${JSON.stringify(page.next_cursor)}}`));
    return Buffer.concat(parts);
  }

  /** Rows kept, and their bytes. */
  get size(): { rows: number; bytes: number } {
    return { rows: this.#rows.size, bytes: this.#bytes };
  }

  /** A kept row's bytes, now the most recently listed. */
  #take(id: string): Buffer | undefined {
    const b = this.#rows.get(id);
    if (b !== undefined) {
      this.#rows.delete(id);
      this.#rows.set(id, b);
    }
    return b;
  }

  #keep(id: string, bytes: Buffer): void {
    if (bytes.length > this.maxBytes) return;
    const old = this.#rows.get(id);
    if (old !== undefined) {
      this.#rows.delete(id);
      this.#bytes -= old.length;
    }
    this.#rows.set(id, bytes);
    this.#bytes += bytes.length;
    // A Map iterates in insertion order: the first keys are the least recently listed.
    for (const [oldest, b] of this.#rows) {
      if (this.#bytes <= this.maxBytes) break;
      this.#rows.delete(oldest);
      this.#bytes -= b.length;
    }
  }
}
