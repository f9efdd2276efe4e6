import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { FormatsPlugin } from 'ajv-formats';
import type { FieldError } from './errors.js';
import { readPackageJson } from './util/package-root.js';
import { nearestName } from './util/nearest.js';

// ajv-formats is CommonJS; under NodeNext its default export arrives as a namespace.
const addFormats = (addFormatsModule as unknown as { default: FormatsPlugin }).default;

export const POLICY_SCHEMA_ID = 'https://philotes.dev/schemas/policy.schema.json';
export const CONFIG_SCHEMA_ID = 'https://philotes.dev/schemas/config.schema.json';
export const PROBLEM_SCHEMA_ID = 'https://philotes.dev/schemas/problem.schema.json';
export const PLUGIN_MANIFEST_SCHEMA_ID = 'https://philotes.dev/schemas/plugin-manifest.schema.json';

/** Reads one of the package's JSON Schemas from `schemas/`. */
export function loadSchema(file: string): Record<string, unknown> {
  return readPackageJson<Record<string, unknown>>('schemas', file);
}

/** Creates an ajv instance with the package's settings; used for schemas and plugin configs. */
export function createAjv(opts: { useDefaults?: boolean } = {}): Ajv2020 {
  const ajv = new Ajv2020({ allErrors: true, verbose: true, strict: true, useDefaults: opts.useDefaults ?? false, strictTypes: false, allowUnionTypes: true });
  addFormats(ajv);
  return ajv;
}

let shared: Ajv2020 | undefined;

/** The one ajv instance; schemas are compiled once, at first use, never per request. */
export function ajv(): Ajv2020 {
  if (shared === undefined) {
    shared = createAjv();
    for (const file of ['policy.schema.json', 'config.schema.json', 'problem.schema.json', 'plugin-manifest.schema.json']) {
      shared.addSchema(loadSchema(file));
    }
  }
  return shared;
}

export function validator<T>(id: string): ValidateFunction<T> {
  const fn = ajv().getSchema<T>(id);
  if (fn === undefined) throw new Error(`schema ${id} is not registered`);
  return fn;
}

function pointerEscape(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1');
}

/**
 * Turns ajv errors into field errors: the pointer names the offending value itself, so a missing
 * or unknown property points at that property, not at its parent object.
 */
/** Whether another error (not a null-branch one) lies inside the value `e` is about. */
function explainedDeeper(e: ErrorObject, all: readonly ErrorObject[]): boolean {
  const inside = `${e.instancePath}/`;
  // Another error at the same place (an unknown or missing key is reported at the object) or inside it.
  return all.some(
    (o) => o !== e && o.keyword !== 'oneOf' && !(o.keyword === 'type' && (o.params as { type?: unknown }).type === 'null') && (o.instancePath === e.instancePath || o.instancePath.startsWith(inside)),
  );
}

export function toFieldErrors(errors: ErrorObject[] | null | undefined, prefix = ''): FieldError[] {
  const out: FieldError[] = [];
  const seen = new Set<string>();
  for (const e of errors ?? []) {
    let field = e.instancePath;
    let message = e.message ?? 'is not valid';
    if (e.keyword === 'required') {
      const p = (e.params as { missingProperty: string }).missingProperty;
      field = `${field}/${pointerEscape(p)}`;
      message = 'is required';
    } else if (e.keyword === 'additionalProperties') {
      const p = (e.params as { additionalProperty: string }).additionalProperty;
      field = `${field}/${pointerEscape(p)}`;
      const known = Object.keys((e.parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties ?? {});
      const near = nearestName(p, known);
      message = near === undefined ? 'is not a known property' : `is not a known property (did you mean ${near}?)`;
    } else if (e.keyword === 'enum') {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues;
      message = `must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`;
    } else if (e.keyword === 'oneOf' || e.keyword === 'if') {
      // The branch errors already say what is wrong; the summary adds nothing.
      continue;
    } else if (e.keyword === 'type' && (e.params as { type?: unknown }).type === 'null' && explainedDeeper(e, errors ?? [])) {
      // "must be null" from the null branch of a nullable object (null or {...}): the other
      // branch's errors inside the object say what is wrong with it.
      continue;
    }
    field = prefix + field;
    const key = `${field}\u0000${message}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push({ field, message });
    }
  }
  return out;
}
