// The synchronous fast path for simple JSONata shapes (src/expressions/fast-path.ts)
// against JSONata itself: fast-check builds expressions of the handled shapes and inputs
// with every kind of value at the paths they read (missing, null, booleans, numbers,
// strings, objects, arrays, mixed types), and each evaluation must agree — the same
// value, or JSONata failing where the fast path stands aside (UNDECIDED).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import jsonata from 'jsonata';
import fc from 'fast-check';
import { compileFast, UNDECIDED } from '../../src/expressions/fast-path.ts';
import { compileExpression } from '../../src/expressions/compile.ts';
import { CUSTOM_FUNCTIONS } from '../../src/expressions/functions.ts';

const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
const NAMES = ['a', 'b', 'task_type', 'x-team'];

const name = fc.constantFrom(...NAMES).map((n) => (/^[a-z_]+$/.test(n) ? n : `\`${n}\``));
const path = fc.array(name, { minLength: 1, maxLength: 3 }).map((steps) => steps.join('.'));
const literalText = fc.oneof(
  fc.constantFrom("'x'", "''", "'1'", '0', '1', '-2.5', '100', 'true', 'false', 'null'),
  fc.integer({ min: -5, max: 5 }).map(String),
);
const comparison = fc
  .tuple(fc.constantFrom('=', '!=', '<', '<=', '>', '>='), path, literalText, fc.boolean())
  .map(([op, p, lit, flip]) => (flip ? `${lit} ${op} ${p}` : `${p} ${op} ${lit}`));
const membership = fc.tuple(path, fc.array(literalText, { maxLength: 4 })).map(([p, items]) => `${p} in [${items.join(', ')}]`);
const atom = fc.oneof(
  comparison,
  membership,
  path,
  fc.constant('$estimateTokens() > 3'),
  path.map((p) => `$exists(${p})`),
);
const expression: fc.Arbitrary<string> = fc.letrec((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    atom,
    atom,
    fc.tuple(tie('node'), fc.constantFrom('and', 'or'), tie('node')).map(([l, op, r]) => `(${l}) ${op} (${r})`),
    tie('node').map((e) => `$not(${e})`),
  ),
})).node as fc.Arbitrary<string>;

const leaf = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.boolean(),
  fc.constantFrom('x', '', '1', 'abc'),
  fc.constantFrom(0, 1, -2.5, 100, 3),
  fc.constant({}),
  fc.constant([]),
  fc.constant(['x']),
  fc.constant([1, 2]),
);
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof({ depthSize: 'small' }, leaf, leaf, fc.dictionary(fc.constantFrom(...NAMES), tie('v'), { maxKeys: 3 }), fc.array(tie('v'), { maxLength: 2 })),
})).v;
const input = fc.record(
  { a: value, b: value, task_type: value, 'x-team': value, messages: fc.constant([{ role: 'user', content: 'hello there, how are you?' }]) },
  { requiredKeys: ['messages'] },
);

async function viaJsonata(source: string, data: unknown): Promise<{ value: unknown } | { error: string }> {
  const compiled = jsonata(source);
  for (const [n, fn] of Object.entries(CUSTOM_FUNCTIONS)) compiled.registerFunction(n, fn.implementation as (...args: unknown[]) => unknown, fn.signature);
  try {
    return { value: await compiled.evaluate(data) };
  } catch (err) {
    return { error: String((err as { code?: string }).code ?? err) };
  }
}

describe('JSONata fast path', () => {
  test('the shapes routing policies use compile to closures; others do not', () => {
    for (const source of [
      "task_type = 'kind_1'",
      "domain in ['a', 'b']",
      'prompt_tokens > 100001',
      "task_type = 'x' and prompt_tokens < 3",
      "headers.`x-team` = 't'",
      '$not(a) or $exists(b.c)',
      '$estimateTokens()',
      'metadata.task_type',
    ]) {
      assert.ok(compileFast(jsonata(source).ast() as never), source);
    }
    for (const source of [
      'messages[role = "user"]',
      '$count(messages)',
      'a + 1 > 2',
      '$x = 1',
      'a.b[0]',
      '$lowercase(a) = "x"',
      '$estimateTokens(a)',
      'a ? 1 : 2',
      '**.a',
    ]) {
      assert.equal(compileFast(jsonata(source).ast() as never), null, source);
    }
  });

  test('agrees with JSONata on generated expressions and inputs', async () => {
    let decided = 0;
    let total = 0;
    await fc.assert(
      fc.asyncProperty(expression, input, async (source, data) => {
        const fast = compileFast(jsonata(source).ast() as never);
        assert.ok(fast, `compiles: ${source}`);
        const got = fast(data);
        const want = await viaJsonata(source, data);
        total++;
        if (got === UNDECIDED) return;
        decided++;
        assert.ok(
          'value' in want,
          `${source} on ${JSON.stringify(data)}: the fast path says ${String(got)}, JSONata fails with ${'error' in want ? want.error : ''}`,
        );
        assert.deepEqual(got, want.value, `${source} on ${JSON.stringify(data)}`);
      }),
      { numRuns: 3000, seed },
    );
    // The fast path must decide most of them, or it is no fast path.
    assert.ok(decided > total / 2, `decided ${decided} of ${total}`);
  });

  test('compiled expressions answer the same through evaluate, with the fast path or without', async () => {
    const compiled = compileExpression("task_type = 'x' and b > 2");
    assert.ok('expression' in compiled);
    assert.equal(await compiled.expression.evaluate({ task_type: 'x', b: 3 }), true);
    // An array is JSONata's business (here: its short-circuit, then its own answer).
    assert.equal(await compiled.expression.evaluate({ task_type: 'y', b: [3, 4] }), false);
    assert.equal(compiled.expression.evaluateSync?.({ task_type: 'x', b: [3, 4] }), UNDECIDED);
    // A type error is JSONata's own, through the catalogue.
    await assert.rejects(compiled.expression.evaluate({ task_type: 'x', b: 'three' }), (err: Error & { code?: string }) => err.code === 'TG_ERR_ROUTING');
    assert.equal(compiled.expression.evaluateSync?.({ task_type: 'x', b: 'three' }), UNDECIDED);
  });
});
