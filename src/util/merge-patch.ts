type JsonObject = Record<string, unknown>;

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Applies a JSON Merge Patch (RFC 7396) to `target` and answers the result; neither is changed.
 * A member set to null is removed, an object merges into the member it names (recursively), and
 * anything else, arrays included, replaces the member whole. A patch that is not an object
 * replaces the whole target.
 */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete out[key];
      continue;
    }
    // Defined, not assigned: a member named "__proto__" stays a member (and is then refused as
    // an unknown property) instead of replacing the result's prototype.
    Object.defineProperty(out, key, { value: applyMergePatch(Object.hasOwn(out, key) ? out[key] : undefined, value), enumerable: true, writable: true, configurable: true });
  }
  return out;
}
