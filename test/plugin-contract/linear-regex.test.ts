// Policy regexes run on RE2 (src/plugin-contract/linear-regex.ts): a pattern that backtracks
// catastrophically on V8's RegExp, such as ^(a+)+$ on "aaa…a!", would hold the event
// loop inside one JSONata step, beyond the reach of expressions.timeout_ms. On RE2 it
// takes time linear in the input.
//
// The near misses here are 28 characters: V8 needs ~13 s for one on the benchmark
// machine (measured: 3.4 s at 26; each character doubles it), so a gateway that matched
// on RegExp fails the time bounds below instead of hanging the run.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { simulatorLadder, startTestGateway, type TestGateway } from '../support/gateway.ts';
import jsonata from 'jsonata';
import { LinearRegExp, linearRegExpProblem } from '../../src/plugin-contract/linear-regex.ts';
import { compileExpression } from '../../src/expressions/compile.ts';
import { buildRuntime } from '../../src/policy/compile.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { PolicyErrors } from '../../src/common/errors.ts';
import regexEvaluator from '../../plugins/evaluators/regex/index.ts';
import heuristicsEvaluator from '../../plugins/evaluators/heuristics/index.ts';
import type { EvalInput, PluginContext } from '../../src/plugin-contract/plugin-api.ts';

const NEAR_MISS = `${'a'.repeat(28)}!`;
const BACKTRACKING = '^(a+)+$';

describe('LinearRegExp matches as RegExp does', () => {
  const cases: Array<[pattern: string, flags: string, input: string]> = [
    ['\\border\\s+#?\\d+', 'i', 'Where is ORDER #4521 now?'],
    ['(?<id>\\d{3})-(\\d+)', 'g', 'tickets 123-45 and 678-9'],
    ['^(?:yes|no)$', 'im', 'Answer:\nYES\nthanks'],
    ['refund|chargeback', 'gi', 'A Refund, then a chargeback'],
    ['(a)|(b)', 'g', 'cab'],
    ['', 'g', 'ab'],
    ['café', 'i', 'CAFÉ au lait'],
    ['b', 'g', '😀ab'],
    ['.+', 's', 'two\nlines'],
    ['x*', '', 'yyy'],
    ['\\p{Lu}+', 'u', 'abcDEF'],
  ];
  for (const [pattern, flags, input] of cases) {
    test(`/${pattern}/${flags} on ${JSON.stringify(input)}`, () => {
      const native = new RegExp(pattern, flags);
      const linear = new LinearRegExp(pattern, flags);
      // Every match of a global search, with its index, groups and lastIndex; one for the others.
      for (let i = 0; i < 10; i++) {
        const a = native.exec(input);
        const b = linear.exec(input);
        assert.deepEqual(
          b && { match: [...b], index: b.index, groups: b.groups, lastIndex: linear.lastIndex },
          a && { match: [...a], index: a.index, groups: a.groups, lastIndex: native.lastIndex },
        );
        if (!a || !native.global) break;
        if (a[0] === '') {
          native.lastIndex++;
          linear.lastIndex++;
        }
      }
      assert.equal(new LinearRegExp(pattern, flags.replace('g', '')).test(input), new RegExp(pattern, flags.replace('g', '')).test(input));
    });
  }

  test("JSONata's regex functions give what they give on RegExp, through the gateway's compiler", async () => {
    const input = { s: 'foo, bar; 12-ab baz@qux 34-cd fooo' };
    for (const source of [
      '$match(s, /(\\d+)-(\\w+)/)',
      '$replace(s, /o+/, "0")',
      '$split(s, /[,;]\\s*/)',
      '$contains(s, /FOO/i)',
      '$match(s, /o/).index',
      '$replace(s, /(\\w+)@(\\w+)/, "$2 at $1")',
    ]) {
      const compiled = compileExpression(source);
      assert.ok('expression' in compiled, source);
      // As JSON: JSONata marks its result sequences with properties of its own.
      const plain = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown;
      assert.deepEqual(plain(await compiled.expression.evaluate(input)), plain(await jsonata(source).evaluate(input)), source);
    }
  });

  test('a catastrophic pattern takes time linear in the input', () => {
    const re = new LinearRegExp(BACKTRACKING);
    const started = performance.now();
    assert.equal(re.test(NEAR_MISS), false);
    assert.equal(re.test(`${'a'.repeat(200_000)}!`), false);
    assert.equal(re.test('a'.repeat(200_000)), true);
    const ms = performance.now() - started;
    assert.ok(ms < 2000, `three matches took ${ms.toFixed(0)} ms`);
  });

  test('what only backtracking can do is refused, saying why', () => {
    assert.match(linearRegExpProblem('(?=total)\\w+') ?? '', /lookahead and lookbehind need a backtracking engine/);
    assert.match(linearRegExpProblem('(?<!not )ok') ?? '', /lookahead and lookbehind need a backtracking engine/);
    assert.match(linearRegExpProblem('(\\w)\\1') ?? '', /backreferences need a backtracking engine/);
    assert.match(linearRegExpProblem('(?<w>\\w)\\k<w>') ?? '', /backreference/);
    assert.match(linearRegExpProblem('a{1,5000}') ?? '', /at most 1,000/);
    assert.match(linearRegExpProblem('a', 'y') ?? '', /sticky/);
    assert.equal(linearRegExpProblem('\\\\k<w>'), null, 'an escaped backslash before k is text, not a backreference');
    assert.equal(linearRegExpProblem('(?<w>\\w+)-\\d{2,4}', 'i'), null);
  });
});

describe('policy regexes cannot hang the gateway', () => {
  let dir: string;
  let tg: TestGateway;
  let client: OpenAI;
  const yaml = `version: 1
expressions: { timeout_ms: 60 }
${simulatorLadder({ smallCapability: 0.9 })}routes:
  support:
    router:
      plugin: rules
      rules:
        - { when: "$contains($lastUserMessage(), /${BACKTRACKING}/)", tier: small, reason: all a }
    default: large
analytics:
  decision_log: { file: decisions.jsonl }
`;

  before(async () => {
    tg = await startTestGateway(yaml);
    client = new OpenAI({ baseURL: tg.baseURL, apiKey: 'x', maxRetries: 0, timeout: 20_000 });
    dir = mkdtempSync(path.join(tmpdir(), 'tiergate-regex-'));
  });

  after(async () => {
    await tg?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function tierFor(content: string): Promise<{ tier: string | null; ms: number }> {
    const started = performance.now();
    const { response } = await client.chat.completions.create({ model: 'support', messages: [{ role: 'user', content }] }).withResponse();
    return { tier: response.headers.get('x-tiergate-tier'), ms: performance.now() - started };
  }

  test('a rule with a backtracking pattern answers a near miss at once, and still matches what it should', async () => {
    const miss = await tierFor(NEAR_MISS);
    assert.equal(miss.tier, 'large', 'no match: the route default');
    assert.ok(miss.ms < 1500, `answered in ${miss.ms.toFixed(0)} ms (V8's RegExp needs seconds)`);
    const long = await tierFor(`${'a'.repeat(100_000)}!`);
    assert.equal(long.tier, 'large');
    assert.ok(long.ms < 1500, `a 100,000-character near miss answered in ${long.ms.toFixed(0)} ms`);
    assert.equal((await tierFor('aaaa')).tier, 'small', 'a match routes by the rule');
    assert.equal((await tierFor('aaaa!')).tier, 'large');
  });

  function policyFile(rule: string): string {
    const file = path.join(dir, `gateway-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(
      file,
      `version: 1
${simulatorLadder()}routes:
  support:
    router:
      plugin: rules
      rules:
        - { when: "${rule}", tier: small }
    default: large
`,
    );
    return file;
  }

  test('a lookahead in a rule is refused when the policy loads, at the literal, saying why', async () => {
    const rule = '$contains($lastUserMessage(), /(?=refund)\\\\w+/i)';
    const file = policyFile(rule);
    const lines = readFileSync(file, 'utf8').split('\n');
    const line = lines.findIndex((l) => l.includes('when:')) + 1;
    // The literal starts 30 characters into the expression ("$contains($lastUserMessage(), ").
    const column = lines[line - 1].indexOf('$contains') + 1 + 30;
    await assert.rejects(buildRuntime(file, { logger: createLogger({ level: 'error' }), mode: 'validate' }), (err: unknown) => {
      assert.ok(err instanceof PolicyErrors, String(err));
      assert.equal(err.errors.length, 1, err.message);
      const located = err.errors[0].located();
      assert.ok(located.startsWith(`${file}:${line}:${column} routes.support.router.rules[0].when: `), located);
      assert.ok(located.includes('regular expression "(?=refund)\\\\w+": '), located);
      assert.match(located, /lookahead and lookbehind need a backtracking engine/);
      return true;
    });
  });

  test('the regex and heuristics evaluators refuse such patterns as option errors, and match in linear time', async () => {
    const gate = (evaluator: string) => `    gate: { threshold: 0.5, evaluators: [ ${evaluator} ] }\n`;
    for (const [evaluator, at] of [
      ['{ plugin: regex, must_match: ["(\\\\w+) \\\\1"] }', /evaluators\[0\]\.must_match\[0\]: not supported: .*backreferences need a backtracking engine/],
      ['{ plugin: heuristics, hedge_patterns: ["(?<!not )sure"] }', /evaluators\[0\]\.hedge_patterns\[0\]: not supported: .*lookahead and lookbehind/],
    ] as const) {
      const gated = path.join(dir, `gated-${Math.random().toString(36).slice(2)}.yaml`);
      writeFileSync(
        gated,
        `version: 1
${simulatorLadder()}features:
  task_type: metadata.task_type
routes:
  support:
    router: { plugin: rules, rules: [ { when: "task_type = 'x'", tier: small } ] }
    default: large
${gate(evaluator)}`,
      );
      await assert.rejects(buildRuntime(gated, { logger: createLogger({ level: 'error' }), mode: 'validate' }), (err: unknown) => {
        assert.ok(err instanceof PolicyErrors, String(err));
        assert.match(err.message, at);
        return true;
      });
    }

    const context = {
      optionError: (at: ReadonlyArray<string | number>, message: string) => new Error(`${at.join('.')}: ${message}`),
    } as unknown as PluginContext;
    const input = {
      response: { choices: [{ index: 0, message: { role: 'assistant', content: NEAR_MISS }, finish_reason: 'stop' }] },
      request: { model: 'x', messages: [{ role: 'user', content: 'hi' }] },
      features: {},
      model: 'small-model',
    } as unknown as EvalInput;
    const regex = await regexEvaluator.create({ must_match: [BACKTRACKING] }, context);
    let started = performance.now();
    assert.equal((await regex.evaluate(input, new AbortController().signal)).score, 0);
    assert.ok(performance.now() - started < 1500, 'the regex evaluator matched a near miss at once');
    const heuristics = await heuristicsEvaluator.create({ hedge_patterns: [BACKTRACKING] }, context);
    started = performance.now();
    await heuristics.evaluate(input, new AbortController().signal);
    assert.ok(performance.now() - started < 1500, 'the heuristics evaluator matched a near miss at once');
  });
});
