import type { Storage } from '../storage/storage.js';
import { Mutex } from '../util/async.js';
import { Slot } from './cycle-plan.js';

/**
 * The enabled policies the loop holds between cycles, by id: the version last loaded (only
 * changed versions are read again), the policy's lock, and what the manager knows of its state.
 * One entry per policy, so an evaluation looks its policy up once, not once per concern. The
 * known state is the stored one plus, after a steady-state evaluation (same memory, same outcome,
 * nothing written), that evaluation's inputs; the state route reads it first, so it shows the
 * latest decision.
 */
export class HeldPolicies {
  readonly slots = new Map<string, Slot>();
  readonly #locks = new Map<string, Mutex>();
  /** The policies revision of the last listing and the enabled policies it found. */
  #loaded: { revision: string; held: Slot[] } | undefined;
  /** Load counter; a slot not seen in the latest load is dropped. */
  #loads = 0;

  constructor(private readonly storage: Storage) {}

  /**
   * The lock of a policy: the loop and a manual evaluation never evaluate it at once. A held
   * policy's lives on its slot; a policy not held (disabled, paused) gets one here until the loop
   * holds it.
   */
  lock(policyId: string): Mutex {
    const slot = this.slots.get(policyId);
    if (slot !== undefined) return slot.lock;
    let m = this.#locks.get(policyId);
    if (m === undefined) {
      m = new Mutex();
      this.#locks.set(policyId, m);
    }
    return m;
  }

  /** A new slot's lock: the one a manual evaluation may hold already, else a new one. */
  #takeLock(policyId: string): Mutex {
    const m = this.#locks.get(policyId) ?? new Mutex();
    this.#locks.delete(policyId);
    return m;
  }

  /** Forgets every slot (the loop (re)starts: another daemon may have led meanwhile). */
  clear(): void {
    // A manual evaluation may be holding a lock: the next slots take the same ones.
    for (const [id, slot] of this.slots) this.#locks.set(id, slot.lock);
    this.slots.clear();
    this.#loaded = undefined;
  }

  /**
   * The enabled policies, reading again only those whose version changed since the last load;
   * `changed` when the policies' revision moved (so some may have no known state).
   */
  async load(): Promise<{ held: Slot[]; changed: boolean }> {
    const storage = this.storage;
    // Read before the listing: a change made between the two is listed again next cycle.
    const revision = await storage.policiesRevision();
    if (revision === this.#loaded?.revision) return { held: this.#loaded.held, changed: false };
    const versions = await storage.listEnabledPolicyVersions();
    const load = ++this.#loads;
    const held: Slot[] = [];
    const stale: string[] = [];
    for (const v of versions) {
      const slot = this.slots.get(v.id);
      if (slot !== undefined && slot.policy.updated_at === v.updated_at) {
        slot.seen = load;
        held.push(slot);
      } else stale.push(v.id);
    }
    if (stale.length > 0) {
      for (const p of await storage.getPolicies(stale)) {
        const slot = this.slots.get(p.id);
        if (slot !== undefined) {
          slot.policy = p;
          slot.seen = load;
          held.push(slot);
        } else {
          const fresh = new Slot(p, this.#takeLock(p.id), load);
          this.slots.set(p.id, fresh);
          held.push(fresh);
        }
      }
    }
    if (held.length !== this.slots.size) {
      for (const [id, slot] of this.slots) {
        if (slot.seen !== load) {
          this.slots.delete(id);
        }
      }
    }
    // Storage lists neither disabled nor paused policies; a version read as one is not held either.
    const enabled = held.filter((s) => s.policy.enabled && s.policy.paused_at === null);
    this.#loaded = { revision, held: enabled };
    return { held: enabled, changed: true };
  }
}
