// The simulator's structured answers, called directly: for generated JSON Schemas (the
// keywords tool parameters and response formats use, nested), the value it makes
// validates (ajv); hostile schemas (a $ref cycle, a billion items, patterns it cannot
// read) get a bounded answer, without throwing. FC_SEED=<n> replays a run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { instanceOf } from '../../plugins/providers/simulator/structured.ts';
import { assertValid } from '../support/json-schema.ts';

const hints = { text: 'Where is order 12345? Mail me at jane@example.com', topic: 'order', state: 'in transit', label: 'negative' };
const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED);

const name = fc.constantFrom('order_number', 'state', 'status', 'email', 'id', 'items', 'tags', 'label', 'count', 'note', 'when', 'code');

/** A leaf schema: every keyword combination here is satisfiable. */
const leaf = fc.oneof(
  fc.record(
    { type: fc.constant('string'), minLength: fc.integer({ min: 0, max: 20 }), maxLength: fc.integer({ min: 20, max: 40 }) },
    { requiredKeys: ['type'] },
  ),
  fc.record({ type: fc.constant('string'), format: fc.constantFrom('date', 'date-time', 'email', 'uri', 'uuid') }),
  fc.record({ type: fc.constant('string'), pattern: fc.constantFrom('^[a-z]+$', '^[A-Z]{3}-[0-9]{2}$', '^\\d{4}$', '^(yes|no)$', '^ord_[0-9a-f]{6}$') }),
  fc.record(
    {
      type: fc.constantFrom('integer', 'number'),
      minimum: fc.integer({ min: -50, max: 50 }),
      maximum: fc.integer({ min: 60, max: 200 }),
      multipleOf: fc.constantFrom(1, 2, 5),
    },
    { requiredKeys: ['type'] },
  ),
  fc.record({ type: fc.constant('number'), exclusiveMinimum: fc.integer({ min: 0, max: 10 }), exclusiveMaximum: fc.integer({ min: 20, max: 30 }) }),
  fc.record({ enum: fc.uniqueArray(fc.oneof(fc.string(), fc.integer(), fc.boolean()), { minLength: 1, maxLength: 4 }) }),
  fc.record({ const: fc.oneof(fc.string(), fc.integer()) }),
  fc.constant({ type: 'boolean' }),
  fc.constant({ type: ['string', 'null'] }),
);

const schema = fc.letrec<{ node: object }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc
      .record({
        type: fc.constant('object'),
        properties: fc.dictionary(name, tie('node'), { maxKeys: 4 }),
        additionalProperties: fc.constant(false),
      })
      .map((o) => ({ ...o, required: Object.keys(o.properties as object) })),
    fc.record(
      { type: fc.constant('array'), items: tie('node'), minItems: fc.integer({ min: 0, max: 3 }), maxItems: fc.integer({ min: 3, max: 5 }) },
      { requiredKeys: ['type', 'items'] },
    ),
    fc.record({ anyOf: fc.tuple(tie('node'), fc.constant({ type: 'null' })) }),
  ),
})).node;

test('generated schemas: the value made for each validates, and the same schema gives the same value', () => {
  fc.assert(
    fc.property(schema, (s) => {
      const value = instanceOf(s, hints);
      assertValid(s, value, 'the generated value');
      assert.deepEqual(instanceOf(s, hints), value);
    }),
    { numRuns: 300, seed },
  );
});

test('arrays of unique items get distinct items, for strings, patterns, numbers, booleans and enums', () => {
  for (const items of [
    { type: 'string' },
    { type: 'string', pattern: '^[a-z]+$' },
    { type: 'integer', minimum: 3, multipleOf: 2 },
    { type: 'boolean' },
    { enum: ['a', 'b', 'c'] },
  ]) {
    const s = { type: 'array', items, minItems: 2, uniqueItems: true };
    assertValid(s, instanceOf(s, hints), JSON.stringify(items));
  }
});

test('hostile schemas get a bounded answer and never throw: a $ref cycle, a billion items, unreadable patterns, garbage', () => {
  const hostile: unknown[] = [
    { $ref: '#' },
    { type: 'object', required: ['next'], properties: { next: { $ref: '#' } } },
    { type: 'array', minItems: 1e9, items: { type: 'string', minLength: 1e9 } },
    { type: 'string', pattern: '(?<=a)b' },
    { type: 'string', pattern: '(a+)+$' },
    { $ref: 'https://example.com/elsewhere.json' },
    { allOf: [{ allOf: [{ $ref: '#' }] }] },
    null,
    42,
    'string',
    [],
  ];
  for (const s of hostile) {
    const value = instanceOf(s, hints);
    // Bounded: at most 64 items of about 4096 characters, whatever the schema asks.
    assert.ok((JSON.stringify(value) ?? '').length <= 64 * 4200, JSON.stringify(s));
  }
});
