/**
 * One copy of strings (and parsed values) that thousands of objects repeat: the loop holds every
 * enabled policy, and 100,000 policies read from storage carried 300,000 copies of a few hundred
 * metric queries, operators and durations. A table that grows past `limit` entries starts again
 * (a value interned once more is only a copy more), so it never holds more than that.
 */
export class Interner<T> {
  #table = new Map<string, T>();

  constructor(readonly limit = 50_000) {}

  /** The value kept for `key`, made by `make` the first time (or after the table started again). */
  get(key: string, make: (key: string) => T): T {
    let v = this.#table.get(key);
    if (v === undefined) {
      if (this.#table.size >= this.limit) this.#table = new Map();
      v = make(key);
      this.#table.set(key, v);
    }
    return v;
  }
}

const strings = new Interner<string>();
const same = (s: string): string => s;

/** The one copy of a string kept in the shared table. */
export function intern(s: string): string {
  return strings.get(s, same);
}
