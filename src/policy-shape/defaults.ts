// Every default a policy may leave out is the schema's `default` (schemas/gateway.schema.json):
// ajv fills it in during schema validation (schema.ts, useDefaults), so `tiergate validate`,
// the docs and the compiler all see the same value. Code that needs a default outside a
// validated policy (an expression compiled with no policy, a decision log opened by a
// test, the Redis connection) reads it here, from the schema, rather than repeating it.
//
// Imports nothing from the rest of tiergate at run time (types only): expressions,
// observability and state read it without depending on the compiler.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { JsonSchema } from '../plugin-contract/plugin-api.ts';
import type { DecisionLogData, ExpressionLimitsData, RedisStateData } from './policy-data.ts';

const schemaPath = fileURLToPath(new URL('../../schemas/gateway.schema.json', import.meta.url));

/** schemas/gateway.schema.json, read once. */
export const policySchema = JSON.parse(readFileSync(schemaPath, 'utf8')) as JsonSchema;

interface SchemaNode {
  properties?: Record<string, SchemaNode>;
  default?: unknown;
}

/** The `default` the schema gives the property at `path` (keys of nested `properties`). */
export function schemaDefault(...path: string[]): unknown {
  let node = policySchema as SchemaNode;
  for (const key of path) {
    const next = node.properties?.[key];
    if (!next) throw new Error(`schemas/gateway.schema.json has no property ${path.join('.')}`);
    node = next;
  }
  if (!('default' in node)) throw new Error(`schemas/gateway.schema.json gives ${path.join('.')} no default`);
  return node.default;
}

function numberDefault(...path: string[]): number {
  const value = schemaDefault(...path);
  if (typeof value !== 'number') throw new Error(`the default of ${path.join('.')} in schemas/gateway.schema.json is not a number`);
  return value;
}

function stringDefault(...path: string[]): string {
  const value = schemaDefault(...path);
  if (typeof value !== 'string') throw new Error(`the default of ${path.join('.')} in schemas/gateway.schema.json is not a string`);
  return value;
}

/** The limits of a JSONata evaluation when the policy sets none (expressions.*). */
export const DEFAULT_EXPRESSION_LIMITS: Readonly<ExpressionLimitsData> = Object.freeze({
  timeout_ms: numberDefault('expressions', 'timeout_ms'),
  max_depth: numberDefault('expressions', 'max_depth'),
  max_sequence: numberDefault('expressions', 'max_sequence'),
});

/** analytics.decision_log.file and .flush_ms when the policy leaves them out. */
export const DEFAULT_DECISION_LOG: Readonly<Pick<DecisionLogData, 'file' | 'flush_ms'>> = Object.freeze({
  file: stringDefault('analytics', 'decision_log', 'file'),
  flush_ms: numberDefault('analytics', 'decision_log', 'flush_ms'),
});

/** state.redis settings other than the URL, when the policy leaves them out. */
export const DEFAULT_REDIS: Readonly<Omit<RedisStateData, 'url'>> = Object.freeze({
  prefix: stringDefault('state', 'redis', 'prefix'),
  timeout_ms: numberDefault('state', 'redis', 'timeout_ms'),
  refresh_ms: numberDefault('state', 'redis', 'refresh_ms'),
});
