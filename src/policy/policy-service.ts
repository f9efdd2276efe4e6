import { ScalerError, validationError, type FieldError } from '../errors.js';
import type { PolicyListQuery, Storage } from '../storage/storage.js';
import { applyMergePatch } from '../util/merge-patch.js';
import { policyInputOf } from './policy-identity.js';
import { API_SOURCE, PAUSE_FIELDS, type Policy } from './policy-model.js';
import { normalizePolicy, type NormalizeOptions } from './policy-normalize.js';
import { validatePolicyInput, type ValidationContext } from './policy-validation.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** How a path names a policy: by its UUID (compared lowercased) or by its name; 400 for neither. */
export function policyKey(idOrName: string): { by: 'id' | 'name'; value: string } {
  if (UUID_RE.test(idOrName)) return { by: 'id', value: idOrName.toLowerCase() };
  if (NAME_RE.test(idOrName)) return { by: 'name', value: idOrName };
  throw new ScalerError('BAD_REQUEST', `"${idOrName.slice(0, 100)}" is neither a policy id (UUID) nor a policy name`, [
    { field: '/path/id', message: 'must be a UUID or a policy name' },
  ]);
}

const notFound = (idOrName: string): ScalerError => new ScalerError('NOT_FOUND', `no policy with id or name "${idOrName}"`);

export interface PolicyServiceDeps {
  storage: Storage;
  validation: ValidationContext;
  /** Seconds of cooldown for policies that set none (the config's default_cooldown). */
  defaultCooldown: number;
  now?: () => Date;
}

/** A policy as the API answers it: stored fields, with the effective cooldown filled in and whether it is paused. */
export type PolicyView = Omit<Policy, 'cooldown_seconds'> & { cooldown_seconds: number; paused: boolean };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Takes the pause fields out of a request body. Answers carry them, so they may be sent back (a
 * GET answer is a valid PUT body), but only as they are: a pause is set by POST .../pause and
 * lifted by POST .../enable, so a value that differs from the policy's (a new policy is not
 * paused) is a field error rather than silently ignored.
 */
function takePauseFields(input: unknown, current: Policy | undefined): { body: unknown; errors: FieldError[] } {
  if (!isObject(input) || !PAUSE_FIELDS.some((k) => Object.hasOwn(input, k))) return { body: input, errors: [] };
  const body = { ...input };
  const pausedAt = current?.paused_at ?? null;
  const errors: FieldError[] = [];
  for (const field of PAUSE_FIELDS) {
    if (!Object.hasOwn(input, field)) continue;
    delete body[field];
    const v = input[field];
    const same =
      field === 'paused'
        ? v === (pausedAt !== null)
        : field === 'paused_at'
          ? v === pausedAt || (typeof v === 'string' && pausedAt !== null && Date.parse(v) === Date.parse(pausedAt))
          : v === (current?.paused_reason ?? null);
    if (!same) {
      const how = current === undefined ? 'a new policy is not paused; pause it with POST /policies/{id}/pause' : 'a pause is set by POST /policies/{id}/pause and lifted by POST /policies/{id}/enable';
      errors.push({ field: `/${field}`, message: `cannot be changed in a policy body (${how}); send it as answered, or leave it out` });
    }
  }
  return { body, errors };
}

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
    const { paused_at, paused_reason, ...rest } = p;
    return { ...rest, cooldown_seconds: p.cooldown_seconds ?? this.#defaultCooldown, paused: paused_at !== null, paused_at, paused_reason };
  }

  /** Validates and normalises input without storing it (also used by files and `validate`). */
  parse(input: unknown, opts: { source: string; id?: string; createdAt?: string }): Policy {
    const result = validatePolicyInput(input, this.#validation);
    if (!result.ok) throw validationError(result.errors);
    return normalizePolicy(result.value, { ...opts, now: this.#now() });
  }

  /**
   * parse() for a REST body: the pause fields an answer carries are taken out first, and refused
   * when they differ from `current`'s pause (see takePauseFields), with the other problems.
   */
  #parseBody(input: unknown, current: Policy | undefined, opts: Omit<NormalizeOptions, 'now'>): Policy {
    const { body, errors } = takePauseFields(input, current);
    const result = validatePolicyInput(body, this.#validation);
    if (!result.ok) throw validationError([...result.errors, ...errors]);
    if (errors.length > 0) throw validationError(errors);
    return normalizePolicy(result.value, { ...opts, now: this.#now() });
  }

  /** Validates a body as create() would, storing nothing (POST /validate). */
  check(input: unknown): Policy {
    return this.#parseBody(input, undefined, { source: API_SOURCE });
  }

  async create(input: unknown): Promise<Policy> {
    const policy = this.#parseBody(input, undefined, { source: API_SOURCE });
    return this.#storage.createPolicy(policy);
  }

  /** Finds a policy by UUID or by name; 400 for a string that can be neither, 404 when absent. */
  async get(idOrName: string): Promise<Policy> {
    const { by, value } = policyKey(idOrName);
    const found = by === 'id' ? await this.#storage.getPolicy(value) : await this.#storage.getPolicyByName(value);
    if (found === undefined) throw notFound(idOrName);
    return found;
  }

  /**
   * The id of the policy a path names, found as get() finds it (the same 400 and 404) without
   * reading the policy itself: its history's routes need no more, and reading a policy with its
   * rules and schedules took three statements per page on PostgreSQL.
   */
  async idOf(idOrName: string): Promise<string> {
    const { by, value } = policyKey(idOrName);
    const id = await this.#storage.policyId(by, value);
    if (id === undefined) throw notFound(idOrName);
    return id;
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

  /**
   * PUT: the whole policy. Unchanged rules and schedules keep their ids, and a body that changes
   * nothing writes nothing (updated_at stays); a pause stays as it is.
   */
  async replace(idOrName: string, input: unknown): Promise<Policy> {
    const current = await this.get(idOrName);
    this.#assertApiManaged(current);
    return this.#replaceWith(current, input, idOrName);
  }

  /**
   * PATCH: a JSON Merge Patch (RFC 7396) applied to the policy's request form (policyInputOf),
   * and the result validated and stored as a PUT body would be. Problems are located by JSON
   * pointers into that result, which are the patch's own for the members it sets.
   */
  async patch(idOrName: string, patch: unknown): Promise<Policy> {
    const current = await this.get(idOrName);
    this.#assertApiManaged(current);
    if (!isObject(patch)) {
      throw validationError(
        [{ field: '', message: 'must be a JSON object: a merge patch (RFC 7396) lists the members to change, null removing one; a JSON Patch (RFC 6902) array is not taken' }],
        'patch',
      );
    }
    return this.#replaceWith(current, applyMergePatch(policyInputOf(current, patch), patch), idOrName);
  }

  async #replaceWith(current: Policy, input: unknown, idOrName: string): Promise<Policy> {
    const next = this.#parseBody(input, current, { source: API_SOURCE, id: current.id, createdAt: current.created_at });
    return this.#found(await this.#storage.replacePolicy(next), idOrName);
  }

  #found(p: Policy | undefined, idOrName: string): Policy {
    if (p === undefined) throw new ScalerError('NOT_FOUND', `no policy with id or name "${idOrName}"`);
    return p;
  }

  setEnabled(idOrName: string, enabled: boolean): Promise<Policy> {
    return enabled ? this.enable(idOrName) : this.disable(idOrName);
  }

  /**
   * POST .../enable: enables the policy and lifts its pause, in one write. A file-managed policy
   * is enabled or not by its file: for it this lifts a pause (or, with none, confirms a policy its
   * file enables), and is refused only when there is no pause and its file disables it.
   */
  async enable(idOrName: string): Promise<Policy> {
    const current = await this.get(idOrName);
    if (current.source === API_SOURCE) {
      return this.#found(await this.#storage.setEnabled(current.id, true, this.#now().toISOString(), { liftPause: true }), idOrName);
    }
    if (current.paused_at !== null) return this.#found(await this.#storage.setPaused(current.id, null), idOrName);
    if (current.enabled) return current;
    throw new ScalerError(
      'FILE_MANAGED',
      `policy "${current.name}" is disabled by its policy file ${current.source}; set enabled: true there instead`,
    );
  }

  /** POST .../disable: API policies only; a file-managed policy is disabled in its file, or paused. */
  async disable(idOrName: string): Promise<Policy> {
    const current = await this.get(idOrName);
    if (current.source !== API_SOURCE) {
      throw new ScalerError(
        'FILE_MANAGED',
        `policy "${current.name}" is managed by the policy file ${current.source}; set enabled: false there to disable it, ` +
          `or POST /policies/${current.name}/pause to stop it acting now (POST /policies/${current.name}/enable lifts the pause)`,
      );
    }
    return this.#found(await this.#storage.setEnabled(current.id, false, this.#now().toISOString()), idOrName);
  }

  /**
   * POST .../pause: the loop stops evaluating and executing the policy until POST .../enable,
   * whoever manages it (a file-managed policy included). Its content and updated_at do not
   * change. A paused policy stays paused as it was: its pause time and reason are kept.
   */
  async pause(idOrName: string, reason: string | null): Promise<Policy> {
    const current = await this.get(idOrName);
    return this.#found(await this.#storage.setPaused(current.id, { at: this.#now().toISOString(), reason }), idOrName);
  }

  async delete(idOrName: string): Promise<void> {
    const current = await this.get(idOrName);
    this.#assertApiManaged(current);
    await this.#storage.deletePolicy(current.id);
  }
}
