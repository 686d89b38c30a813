// Whether a value validates against a JSON Schema, as a client that checks a structured
// answer would see it: ajv (draft-07 and 2020-12), all errors, the common string formats.
import assert from 'node:assert/strict';
import AjvModule from 'ajv';
import Ajv2020Module from 'ajv/dist/2020.js';

const Ajv = AjvModule.default ?? (AjvModule as unknown as typeof AjvModule.default);
const Ajv2020 = Ajv2020Module.default ?? (Ajv2020Module as unknown as typeof Ajv2020Module.default);

/** The formats the tests' schemas use, checked for real (ajv alone knows none). */
const FORMATS = {
  date: /^\d{4}-\d{2}-\d{2}$/,
  'date-time': /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/,
  email: /^[^\s@]+@[^\s@]+\.[^\s@]+$/,
  uri: /^[a-z][a-z0-9+.-]*:\/\/\S+$/i,
  uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i,
};

const options = { allErrors: true, strict: false, formats: FORMATS };
const draft07 = new Ajv(options);
const draft2020 = new Ajv2020(options);

/** Asserts that `value` validates against `schema` (2020-12 when the schema says so), with ajv's errors as the message. */
export function assertValid(schema: object, value: unknown, what = 'the value'): void {
  const is2020 = String((schema as { $schema?: unknown }).$schema ?? '').includes('2020-12');
  const validate = (is2020 ? draft2020 : draft07).compile(schema);
  assert.ok(validate(value), `${what} ${JSON.stringify(value)} does not validate: ${JSON.stringify(validate.errors)}`);
}
