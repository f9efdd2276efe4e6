// Generates src/policy/policy-input.generated.ts from schemas/policy.schema.json so the
// TypeScript types of a policy are never written by hand. test/schema-types.test.ts fails when
// the generated file is stale.
import { readFile, writeFile } from 'node:fs/promises';
import { compile } from 'json-schema-to-typescript';

export async function generatePolicyTypes() {
  const schema = JSON.parse(await readFile(new URL('../schemas/policy.schema.json', import.meta.url), 'utf8'));
  return compile(schema, 'PolicyInput', {
    bannerComment:
      '/* Generated from schemas/policy.schema.json by `npm run gen:types`. Do not edit by hand. */',
    additionalProperties: false,
    declareExternallyReferenced: true,
    style: { singleQuote: true, printWidth: 120 },
    format: true,
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const out = await generatePolicyTypes();
  await writeFile(new URL('../src/policy/policy-input.generated.ts', import.meta.url), out);
  console.log('wrote src/policy/policy-input.generated.ts');
}
