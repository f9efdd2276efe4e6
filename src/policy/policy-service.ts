import { ScalerError, validationError } from '../errors.js';
import type { PolicyListQuery, Storage } from '../storage/storage.js';
import { API_SOURCE, type Policy } from './policy-model.js';
import { normalizePolicy } from './policy-normalize.js';
import { validatePolicyInput, type ValidationContext } from './policy-validation.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

export interface PolicyServiceDeps {
  storage: Storage;
  validation: ValidationContext;
  /** Seconds of cooldown for policies that set none (the config's default_cooldown). */
  defaultCooldown: number;
  now?: () => Date;
}

/** A policy as the API answers it: stored fields, with the effective cooldown filled in. */
export type PolicyView = Omit<Policy, 'cooldown_seconds'> & { cooldown_seconds: number };

/**
 * Policy use cases shared by the REST API and the policy-file loader: validation (schema, then
 * semantics), normalisation, the file-managed guard, and lookups by id or name.
 */
export class PolicyService {
  readonly #storage: Storage;
  readonly #validation: ValidationContext;
  readonly #defaultCooldown: number;
  readonly #now: () => Date;

  constructor(deps: PolicyServiceDeps) {
    this.#storage = deps.storage;
    this.#validation = deps.validation;
    this.#defaultCooldown = deps.defaultCooldown;
    this.#now = deps.now ?? (() => new Date());
  }

  view(p: Policy): PolicyView {
    return { ...p, cooldown_seconds: p.cooldown_seconds ?? this.#defaultCooldown };
  }

  /** Validates and normalises input without storing it (also used by files and `validate`). */
  parse(input: unknown, opts: { source: string; id?: string; createdAt?: string }): Policy {
    const result = validatePolicyInput(input, this.#validation);
    if (!result.ok) throw validationError(result.errors);
    return normalizePolicy(result.value, { ...opts, now: this.#now() });
  }

  async create(input: unknown): Promise<Policy> {
    const policy = this.parse(input, { source: API_SOURCE });
    return this.#storage.createPolicy(policy);
  }

  /** Finds a policy by UUID or by name; 400 for a string that can be neither, 404 when absent. */
  async get(idOrName: string): Promise<Policy> {
    let found: Policy | undefined;
    if (UUID_RE.test(idOrName)) found = await this.#storage.getPolicy(idOrName.toLowerCase());
    else if (NAME_RE.test(idOrName)) found = await this.#storage.getPolicyByName(idOrName);
    else {
      throw new ScalerError('BAD_REQUEST', `"${idOrName.slice(0, 100)}" is neither a policy id (UUID) nor a policy name`, [
        { field: '/path/id', message: 'must be a UUID or a policy name' },
      ]);
    }
    if (found === undefined) throw new ScalerError('NOT_FOUND', `no policy with id or name "${idOrName}"`);
    return found;
  }

  list(q: PolicyListQuery): Promise<{ policies: Policy[]; total: number }> {
    return this.#storage.listPolicies(q);
  }

  #assertApiManaged(p: Policy): void {
    if (p.source !== API_SOURCE) {
      throw new ScalerError(
        'FILE_MANAGED',
        `policy "${p.name}" is managed by the policy file ${p.source}; change that file instead`,
      );
    }
  }

  async replace(idOrName: string, input: unknown): Promise<Policy> {
    const current = await this.get(idOrName);
    this.#assertApiManaged(current);
    const next = this.parse(input, { source: API_SOURCE, id: current.id, createdAt: current.created_at });
    const stored = await this.#storage.replacePolicy(next);
    if (stored === undefined) throw new ScalerError('NOT_FOUND', `no policy with id or name "${idOrName}"`);
    return stored;
  }

  async setEnabled(idOrName: string, enabled: boolean): Promise<Policy> {
    const current = await this.get(idOrName);
    this.#assertApiManaged(current);
    const updated = await this.#storage.setEnabled(current.id, enabled, this.#now().toISOString());
    if (updated === undefined) throw new ScalerError('NOT_FOUND', `no policy with id or name "${idOrName}"`);
    return updated;
  }

  async delete(idOrName: string): Promise<void> {
    const current = await this.get(idOrName);
    this.#assertApiManaged(current);
    await this.#storage.deletePolicy(current.id);
  }
}
