// ${VAR} interpolation in gateway.yaml: what a reference becomes, where a missing one is
// reported, and that values from the environment never reach an error message. The
// environment is always passed explicitly (the `env` option), never process.env.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parsePolicyText } from '../../src/policy/source.ts';
import { buildRuntime } from '../../src/policy/compile.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { PolicyErrors, TiergateError } from '../../src/common/errors.ts';
import { simulatorPolicy } from '../support/gateway.ts';

const logger = createLogger({ level: 'silent' });
const FILE = path.join(tmpdir(), 'interpolation-test', 'gateway.yaml');
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function parse(text: string, env: NodeJS.ProcessEnv = {}): Record<string, unknown> {
  return parsePolicyText(text, FILE, env).data as Record<string, unknown>;
}

/** The located errors parsePolicyText throws (it throws an array of TiergateErrors). */
function parseErrors(text: string, env: NodeJS.ProcessEnv = {}): TiergateError[] {
  try {
    parsePolicyText(text, FILE, env);
  } catch (err) {
    assert.ok(Array.isArray(err), `expected a list of errors, got ${String(err)}`);
    for (const e of err) assert.ok(e instanceof TiergateError);
    return err as TiergateError[];
  }
  assert.fail('expected the text to be rejected');
}

function writePolicy(yaml: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-interp-'));
  dirs.push(dir);
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, yaml);
  return file;
}

async function buildErrors(yaml: string, env: NodeJS.ProcessEnv): Promise<PolicyErrors> {
  const file = writePolicy(yaml);
  try {
    const runtime = await buildRuntime(file, { logger, mode: 'validate', env });
    await runtime.dispose();
  } catch (err) {
    assert.ok(err instanceof PolicyErrors, String(err));
    return err;
  }
  assert.fail('expected the policy to be rejected');
}

test('${VAR} is replaced by the variable', () => {
  assert.deepEqual(parse('a: ${A}\nb: x-${A}-y\n', { A: 'hello' }), { a: 'hello', b: 'x-hello-y' });
});

test('${VAR:-default}: the default when unset or empty, the value when set', () => {
  const text = 'a: ${A:-fallback}\nb: ${B:-fallback}\nc: ${C:-fallback}\nd: ${D:-}\n';
  assert.deepEqual(parse(text, { B: '', C: 'set' }), { a: 'fallback', b: 'fallback', c: 'set', d: '' });
  // A default may contain what a URL needs (colons, slashes).
  assert.deepEqual(parse('url: ${URL:-https://api.example.com:8443/v1}\n'), { url: 'https://api.example.com:8443/v1' });
});

test('${VAR} set to the empty string (no default) is the empty string, not an error', () => {
  assert.deepEqual(parse('a: ${A}\nb: "${A}"\n', { A: '' }), { a: '', b: '' });
});

test('$${VAR} is a literal ${VAR}, never resolved, never an error', () => {
  assert.deepEqual(parse('a: $${A}\nb: "cost in $${CURRENCY:-usd}"\n', { A: 'value' }), { a: '${A}', b: 'cost in ${CURRENCY:-usd}' });
});

test('a plain ${PORT:-8080} is the number 8080; a quoted one stays a string', () => {
  const text = 'plain: ${PORT:-8080}\ndouble: "${PORT:-8080}"\nsingle: \'${PORT:-8080}\'\nmixed: ${PORT:-8080}/tcp\n';
  const data = parse(text);
  assert.equal(data.plain, 8080);
  assert.equal(data.double, '8080');
  assert.equal(data.single, '8080');
  assert.equal(data.mixed, '8080/tcp');
  // From the environment too, and booleans the same way.
  assert.deepEqual(parse('port: ${PORT}\non: ${ON}\nname: ${NAME}\n', { PORT: '9090', ON: 'true', NAME: 'gpt-4o' }), { port: 9090, on: true, name: 'gpt-4o' });
});

test('a value is data, never YAML: it cannot add keys or structure', () => {
  const data = parse('a: ${A}\nb: ${B}\n', { A: 'x\nadmin: true', B: '[1, 2]' });
  assert.deepEqual(data, { a: 'x\nadmin: true', b: '[1, 2]' });
});

test('references work inside flow mappings and flow sequences', () => {
  const text = 'p: { api_key: ${KEY}, base_url: ${URL:-http://127.0.0.1:8000/v1}, n: ${N:-3} }\nlist: [${A}, "${B:-b}", c]\n';
  assert.deepEqual(parse(text, { KEY: 'sk-abc}{,', A: 'a' }), {
    p: { api_key: 'sk-abc}{,', base_url: 'http://127.0.0.1:8000/v1', n: 3 },
    list: ['a', 'b', 'c'],
  });
});

test('a reference in a comment is ignored', () => {
  const text = '# uses ${NOPE_NOT_SET} somewhere\na: 1 # or ${ALSO_NOT_SET}\nb: ${B:-2}\n';
  assert.deepEqual(parse(text), { a: 1, b: 2 });
});

test('the env option is used, not process.env', () => {
  assert.ok(process.env.PATH, 'PATH is set in the test process');
  const [error] = parseErrors('a: ${PATH}\n', {});
  assert.equal(error.code, 'TG_ERR_CONFIG_ENV_MISSING');
});

test('a missing variable is reported where it was written, every one at once', () => {
  const text = [
    'server:', //                                          1
    '  host: ${NOPE_HOST}', //                             2
    'providers:', //                                       3
    '  p: { plugin: openai, api_key: ${NOPE_KEY} }', //    4
    '  q:', //                                             5
    '    base_url: "https://${NOPE_DOMAIN}/v1"', //        6
    'list: [a, ${NOPE_ITEM}]', //                          7
    'fine: ${SET_ONE}', //                                 8
  ].join('\n');
  const errors = parseErrors(text, { SET_ONE: 'ok' });
  // Line and column of the `$` of each reference, as a person finds it in the text.
  const at = (name: string, line: number) => [line, text.split('\n')[line - 1].indexOf('${' + name) + 1];
  assert.deepEqual(
    errors.map((e) => [e.code, e.location?.line, e.location?.column, e.location?.path, e.params.name]),
    [
      ['TG_ERR_CONFIG_ENV_MISSING', ...at('NOPE_HOST', 2), 'server.host', 'NOPE_HOST'],
      ['TG_ERR_CONFIG_ENV_MISSING', ...at('NOPE_KEY', 4), 'providers.p.api_key', 'NOPE_KEY'],
      ['TG_ERR_CONFIG_ENV_MISSING', ...at('NOPE_DOMAIN', 6), 'providers.q.base_url', 'NOPE_DOMAIN'],
      ['TG_ERR_CONFIG_ENV_MISSING', ...at('NOPE_ITEM', 7), 'list[1]', 'NOPE_ITEM'],
    ],
  );
  assert.deepEqual(at('NOPE_HOST', 2), [2, 9]);
  for (const e of errors) {
    assert.equal(e.location?.file, FILE);
    assert.match(e.message, new RegExp(`${e.params.name} is not set`));
  }
});

test('locations after a long interpolated value are those of the file as written', async () => {
  // The provider name comes from a long variable on the same line as a schema error:
  // the column of "cheap" must not move by the difference in length.
  const yaml = simulatorPolicy().replace(
    'small-model: { provider: sim, upstream: sim-small, price: { input_per_mtok: 0.15,',
    'small-model: { provider: ${P}, upstream: ${UPSTREAM:-sim-small}, price: { input_per_mtok: cheap,',
  );
  const line = yaml.split('\n').findIndex((l) => l.includes('input_per_mtok: cheap')) + 1;
  const column = yaml.split('\n')[line - 1].indexOf('cheap') + 1;
  const err = await buildErrors(yaml, { P: 'sim', UPSTREAM: 'a-very-long-upstream-model-name-that-shifts-everything-after-it' });
  assert.deepEqual(
    err.errors.map((e) => [e.code, e.location?.line, e.location?.column, e.location?.path]),
    [['TG_ERR_CONFIG_SCHEMA', line, column, 'models.small-model.price.input_per_mtok']],
  );
});

test('the env-interpolated fixture: values, numbers and defaults reach the runtime', async () => {
  const file = path.resolve(import.meta.dirname, '../fixtures/policies/valid/env-interpolated.yaml');
  const runtime = await buildRuntime(file, { logger, mode: 'validate', env: { SIM_SCALE: '0', LOCAL_LLM_KEY: 'sk-local-test-key', LISTEN_PORT: '9191' } });
  try {
    assert.equal(runtime.server.port, 9191);
    assert.equal(runtime.server.host, '127.0.0.1');
    assert.equal(runtime.models.get('local-model')?.spec.upstream, 'qwen2.5');
    assert.equal(runtime.routes.get('support')?.description, 'Costs are shown as ${CURRENCY}');
  } finally {
    await runtime.dispose();
  }
});

test('values from the environment never appear in error messages', async () => {
  const secret = 'sk-live-9f8e7d6c5b4a3210';
  // The secret is put where errors quote what they found: a provider reference, an
  // option a plugin checks (base_url must be a URL), and a model a tier names.
  const yaml = simulatorPolicy({
    extra: '',
  })
    .replace(
      'models:\n',
      `  leaky:\n    plugin: openai\n    base_url: \${LEAKY}\nmodels:\n  leaky-model: { provider: leaky, price: { input_per_mtok: 1, output_per_mtok: 1 } }\n`,
    )
    .replace('{ provider: sim, upstream: sim-large,', '{ provider: ${LEAKY}, upstream: sim-large,')
    .replace('- { name: small, models: [small-model] }', '- { name: small, models: [small-model, leaky-model, "${LEAKY}"] }');
  const err = await buildErrors(yaml, { LEAKY: secret });
  const codes = err.errors.map((e) => e.code).sort();
  assert.deepEqual(codes, ['TG_ERR_CONFIG_REFERENCE', 'TG_ERR_CONFIG_REFERENCE'], err.message);
  for (const e of err.errors) {
    assert.ok(!e.message.includes(secret), `message leaks the value: ${e.message}`);
    assert.ok(!e.located().includes(secret), `located() leaks the value: ${e.located()}`);
    assert.ok(!JSON.stringify(e.toOpenAI()).includes(secret));
  }
  assert.ok(!err.message.includes(secret));

  // Once the references are right, the plugin's own check (base_url is not a URL) runs: no leak there either.
  const fixed = yaml.replace('{ provider: ${LEAKY}, upstream: sim-large,', '{ provider: sim, upstream: sim-large,').replace(', "${LEAKY}"]', ']');
  const err2 = await buildErrors(fixed, { LEAKY: secret });
  assert.deepEqual(
    err2.errors.map((e) => [e.code, e.location?.path]),
    [['TG_ERR_PLUGIN_OPTIONS', 'providers.leaky.base_url']],
    err2.message,
  );
  assert.ok(!err2.message.includes(secret), `message leaks the value: ${err2.message}`);
});
