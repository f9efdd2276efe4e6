import type { LeaderFence, PolicyState, RecordedChange, Storage } from '../storage/storage.js';

/** The most writes one transaction carries; more wait for the next. */
export const MAX_GROUP = 1000;
/** The longest a write waits for others to join its transaction. */
export const MAX_WAIT_MS = 10;

interface Waiting<T> {
  item: T;
  policyId: string;
  fence: LeaderFence | undefined;
  resolve: (written: boolean) => void;
  reject: (err: unknown) => void;
}

/**
 * One kind of write, grouped: the writes asked for while the previous group is being committed (or
 * in the same turn of the event loop) go into the next transaction together. Each caller still
 * learns whether its own compare-and-set was written, or the error that failed its group.
 */
class Group<T> {
  #queue: Array<Waiting<T>> = [];
  #busy = false;

  constructor(private readonly write: (items: T[], fence: LeaderFence | undefined) => Promise<string[]>) {}

  add(item: T, policyId: string, fence: LeaderFence | undefined): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.#queue.push({ item, policyId, fence, resolve, reject });
      if (!this.#busy) {
        this.#busy = true;
        this.#since = performance.now();
        this.#seen = 0;
        setImmediate(this.#gather);
      }
    });
  }

  /** When the first write of the next group was asked for, and how many were waiting at the last look. */
  #since = 0;
  #seen = 0;

  /**
   * Waits, a turn of the event loop at a time, while more writes keep coming (the loop evaluates
   * in slices with a turn between them) and the group is not full, for at most MAX_WAIT_MS: one
   * transaction for a cycle's changes rather than one per slice.
   */
  readonly #gather = (): void => {
    const n = this.#queue.length;
    if (n > this.#seen && n < MAX_GROUP && performance.now() - this.#since < MAX_WAIT_MS) {
      this.#seen = n;
      setImmediate(this.#gather);
      return;
    }
    void this.#flush();
  };

  async #flush(): Promise<void> {
    while (this.#queue.length > 0) {
      const group = this.#take();
      try {
        const refused = new Set(await this.write(group.map((w) => w.item), group[0]?.fence));
        for (const w of group) w.resolve(!refused.has(w.policyId));
      } catch (err) {
        for (const w of group) w.reject(err);
      }
    }
    this.#busy = false;
  }

  /** The next group: one fence, each policy at most once, at most MAX_GROUP writes. */
  #take(): Array<Waiting<T>> {
    const first = this.#queue[0] as Waiting<T>;
    const group: Array<Waiting<T>> = [];
    const rest: Array<Waiting<T>> = [];
    const policies = new Set<string>();
    for (const w of this.#queue) {
      if (group.length < MAX_GROUP && w.fence === first.fence && !policies.has(w.policyId)) {
        policies.add(w.policyId);
        group.push(w);
      } else rest.push(w);
    }
    this.#queue = rest;
    return group;
  }
}

/**
 * The state and history writes that evaluations make at once (claims of changes before their
 * executor call, executed changes with their history rows, manual evaluations' states), grouped
 * into few transactions: at 2,000 changes a cycle, one transaction per write cost seconds on
 * PostgreSQL (a commit each). Every write keeps its own compare-and-set and its own answer; what a
 * write waits for is the transaction of its group, so nothing is reported written before it is
 * committed.
 */
export class StateWrites {
  readonly #claims: Group<PolicyState>;
  readonly #states: Group<PolicyState>;
  readonly #changes: Group<RecordedChange>;

  constructor(storage: Storage) {
    this.#claims = new Group((states, fence) => storage.putStates(states, { ...(fence === undefined ? {} : { fence }), unlessPaused: true }));
    this.#states = new Group((states, fence) => storage.putStates(states, fence === undefined ? {} : { fence }));
    this.#changes = new Group((changes, fence) => storage.recordChanges(changes, fence === undefined ? {} : { fence }));
  }

  /** Stores the intent of a change before it is executed; false when the state moved or the policy is paused. */
  claim(state: PolicyState, fence: LeaderFence | undefined): Promise<boolean> {
    return this.#claims.add(state, state.policy_id, fence);
  }

  /** Writes a state; false when its version moved (or the fence failed). */
  put(state: PolicyState, fence: LeaderFence | undefined): Promise<boolean> {
    return this.#states.add(state, state.policy_id, fence);
  }

  /** Appends a history row and writes the state that goes with it; false when the state was not written (the row is). */
  record(change: RecordedChange, fence: LeaderFence | undefined): Promise<boolean> {
    return this.#changes.add(change, change.state.policy_id, fence);
  }
}

/**
 * The states a cycle's evaluations leave to be written later (nothing about them is urgent: no
 * change was made), written in transactions of `chunk` as they come rather than all at the end, so
 * that a cycle evaluating every policy anew (the first one, at 100,000 policies) never holds all
 * its states and their decision records at once.
 */
export class StateBatch {
  #pending: Array<{ state: PolicyState; written?: () => void }> = [];
  readonly #writing: Array<Promise<void>> = [];
  /** States handed to storage so far. */
  count = 0;

  constructor(
    private readonly storage: Storage,
    private readonly opts: {
      /** The fence of the writes; false when this daemon no longer leads (nothing is written). */
      fence: () => LeaderFence | undefined | false;
      /** States that were not written (the version moved, or leadership was lost). */
      refused: (policyIds: readonly string[]) => void;
      /** A transaction that failed: none of its states was written. */
      failed: (states: readonly PolicyState[], err: unknown) => void;
      chunk?: number;
    },
  ) {}

  /** Adds a state; `written` is called once it is stored. */
  add(state: PolicyState, written?: () => void): void {
    this.#pending.push(written === undefined ? { state } : { state, written });
    this.count++;
    if (this.#pending.length >= (this.opts.chunk ?? MAX_GROUP)) this.#flush();
  }

  /** Writes what is left and waits for every write of the batch. */
  async done(): Promise<void> {
    this.#flush();
    await Promise.all(this.#writing);
  }

  #flush(): void {
    if (this.#pending.length === 0) return;
    const items = this.#pending;
    this.#pending = [];
    this.#writing.push(this.#write(items));
  }

  async #write(items: Array<{ state: PolicyState; written?: () => void }>): Promise<void> {
    const states = items.map((i) => i.state);
    try {
      const fence = this.opts.fence();
      const refused = fence === false ? states.map((s) => s.policy_id) : await this.storage.putStates(states, fence === undefined ? {} : { fence });
      const not = new Set(refused);
      for (const i of items) if (!not.has(i.state.policy_id)) i.written?.();
      if (refused.length > 0) this.opts.refused(refused);
    } catch (err) {
      this.opts.failed(states, err);
    }
  }
}
