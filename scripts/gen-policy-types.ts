// Writes src/policy-shape/policy-data.ts, the TypeScript shape of a policy, from
// schemas/gateway.schema.json: the schema is the one source of truth, and a test
// (test/policy-types.test.ts) regenerates the file to prove the two agree.
//
// The types describe the data the compiler reads, i.e. after schema validation with
// ajv's useDefaults: a property the schema gives a `default` is always present, so it
// is required here. The schema itself stays as users read it.
//
//   npm run gen:policy-types
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile, type JSONSchema } from 'json-schema-to-typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SCHEMA_FILE = path.join(root, 'schemas', 'gateway.schema.json');
export const TYPES_FILE = path.join(root, 'src', 'policy-shape', 'policy-data.ts');

type SchemaNode = Record<string, unknown>;

// Names for the parts other modules import; every other part stays inline. A pointer
// that no longer leads anywhere fails the generation, so a schema change cannot drop a name.
const NAMES: Record<string, string> = {
  '': 'PolicyData',
  '/properties/server': 'ServerData',
  '/properties/server/properties/auth': 'AuthData',
  '/properties/server/properties/auth/properties/keys/items': 'GatewayKeyData',
  '/properties/server/properties/auth/properties/keys/items/properties/limits': 'KeyLimitsData',
  '/properties/providers/additionalProperties': 'ProviderData',
  '/properties/models/additionalProperties': 'ModelData',
  '/properties/tiers/items': 'TierData',
  '/properties/expressions': 'ExpressionLimitsData',
  '/properties/routes/additionalProperties': 'RouteData',
  '/properties/routes/additionalProperties/properties/gate': 'GateData',
  '/definitions/gateEvaluator': 'GateEvaluatorData',
  '/properties/routes/additionalProperties/properties/gate/properties/input_checks': 'InputChecksData',
  '/properties/analytics/properties/decision_log': 'DecisionLogData',
  '/properties/resilience': 'ResilienceData',
  '/properties/state/properties/redis': 'RedisStateData',
};

// "'*' or a list" is written as type [string, array] with if/then const "*", which the
// generator reads as string | string[]; the allow-lists mean exactly '*' | string[].
const TS_TYPES: Record<string, string> = {
  '/properties/server/properties/auth/properties/keys/items/properties/routes': "'*' | string[]",
  '/properties/server/properties/auth/properties/keys/items/properties/models': "'*' | string[]",
};

function at(schema: SchemaNode, pointer: string): SchemaNode {
  let node: unknown = schema;
  for (const segment of pointer.split('/').slice(1)) {
    node = node !== null && typeof node === 'object' ? (node as SchemaNode)[segment] : undefined;
    if (node === undefined) throw new Error(`${SCHEMA_FILE}: no schema at ${pointer}; update NAMES or TS_TYPES in scripts/gen-policy-types.ts`);
  }
  return node as SchemaNode;
}

/** Every property with a default is required: ajv has filled it in by the time the compiler reads the data. */
function requireDefaulted(node: unknown): void {
  if (node === null || typeof node !== 'object') return;
  if (Array.isArray(node)) return node.forEach(requireDefaulted);
  const schema = node as SchemaNode;
  const properties = schema.properties as Record<string, SchemaNode> | undefined;
  if (properties) {
    const defaulted = Object.keys(properties).filter((key) => 'default' in properties[key]);
    const required = new Set([...((schema.required as string[] | undefined) ?? []), ...defaulted]);
    if (required.size > 0) schema.required = [...required];
  }
  for (const value of Object.values(schema)) requireDefaulted(value);
}

export async function generatePolicyTypes(): Promise<string> {
  const schema = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as SchemaNode;
  delete schema.$id;
  for (const [pointer, name] of Object.entries(NAMES)) at(schema, pointer).title = name;
  for (const [pointer, tsType] of Object.entries(TS_TYPES)) at(schema, pointer).tsType = tsType;
  requireDefaulted(schema);
  return compile(schema as JSONSchema, 'PolicyData', {
    bannerComment:
      '// Generated from schemas/gateway.schema.json by `npm run gen:policy-types` (scripts/gen-policy-types.ts): do not edit.\n// The shape of a policy after schema validation, defaults filled in (the compiler reads this).',
    ignoreMinAndMaxItems: true,
    unknownAny: true,
    strictIndexSignatures: false,
    format: true,
    style: { singleQuote: true, printWidth: 160 },
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeFileSync(TYPES_FILE, await generatePolicyTypes());
  process.stdout.write(`wrote ${path.relative(process.cwd(), TYPES_FILE)}\n`);
}
