// Policy loading, fixture by fixture. Every file in test/fixtures/policies/valid must
// build (then is disposed); every file in test/fixtures/policies/invalid must be
// rejected with exactly the errors it declares at its top:
//
//   # expect: CODE LINE:COL [PATH] [~ text the message contains ~ more text]
//   # expect: CODE FILE [~ ...]          (an error located in another file, e.g. a plugin)
//   # env: NAME=value                    (environment for the fixture; default: none)
//
// The set of (code, file, line, column, path) must equal the declared set: a missing,
// extra or misplaced error fails. Each location was checked by hand to be where a
// person would look.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { buildRuntime } from '../../src/policy/compile.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { PolicyErrors, TiergateError } from '../../src/common/errors.ts';

const repoRoot = path.resolve(import.meta.dirname, '../..');
const fixtures = path.join(repoRoot, 'test/fixtures/policies');
const logger = createLogger({ level: 'silent' });

interface Expected {
  code: string;
  file: string;
  line?: number;
  column?: number;
  path?: string;
  contains: string[];
  raw: string;
}

function fixtureFiles(kind: 'valid' | 'invalid'): string[] {
  return readdirSync(path.join(fixtures, kind))
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => path.join(fixtures, kind, f));
}

function fixtureEnv(text: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const match of text.matchAll(/^# env: ([A-Za-z_][A-Za-z0-9_]*)=(.*)$/gm)) env[match[1]] = match[2];
  return env;
}

function expectations(file: string, text: string): Expected[] {
  const out: Expected[] = [];
  for (const match of text.matchAll(/^# expect: (.*)$/gm)) {
    const [head, ...contains] = match[1].split(' ~ ');
    const [code, where, errorPath, ...rest] = head.trim().split(/\s+/);
    assert.equal(rest.length, 0, `${path.basename(file)}: cannot read "# expect: ${match[1]}"`);
    assert.match(code, /^TG_ERR_[A-Z_]+$/, `${path.basename(file)}: bad code in "# expect: ${match[1]}"`);
    assert.ok(where, `${path.basename(file)}: no location in "# expect: ${match[1]}"`);
    const lineCol = /^(\d+):(\d+)$/.exec(where);
    out.push({
      code,
      file: lineCol ? file : path.resolve(repoRoot, where),
      line: lineCol ? Number(lineCol[1]) : undefined,
      column: lineCol ? Number(lineCol[2]) : undefined,
      path: errorPath,
      contains: contains.map((c) => c.trim()),
      raw: match[1],
    });
  }
  return out;
}

const key = (e: { code: string; file: string; line?: number; column?: number; path?: string }) =>
  `${e.code} ${path.relative(repoRoot, e.file)}${e.line !== undefined ? `:${e.line}:${e.column}` : ''} ${e.path ?? '-'}`;

const validFiles = [path.join(repoRoot, 'gateway.yaml'), ...fixtureFiles('valid')];

test('there are fixtures to check', () => {
  assert.ok(fixtureFiles('valid').length >= 4);
  assert.ok(fixtureFiles('invalid').length >= 15);
});

for (const file of validFiles) {
  test(`valid: ${path.relative(repoRoot, file)} builds`, async () => {
    const text = readFileSync(file, 'utf8');
    const env = fixtureEnv(text);
    const runtime = await buildRuntime(file, { logger, mode: 'validate', env });
    try {
      // The runtime holds what the file declares (names only, so a plain substitution does).
      const substituted = text.replace(/\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}\n]*))?\}/g, (whole, escaped?: string, name?: string, fallback?: string) =>
        escaped ? whole.slice(1) : env[name!] || fallback || '',
      );
      const data = parseYaml(substituted) as {
        routes: Record<string, unknown>;
        tiers: Array<{ name: string; models: string[] }>;
        models: Record<string, unknown>;
        features?: Record<string, unknown>;
      };
      assert.deepEqual([...runtime.routes.keys()].sort(), Object.keys(data.routes).sort());
      assert.deepEqual(
        runtime.tiers.map((t) => [t.name, [...t.models]]),
        data.tiers.map((t) => [t.name, t.models]),
      );
      assert.deepEqual([...runtime.models.keys()].sort(), Object.keys(data.models).sort());
      assert.deepEqual(
        runtime.features.map(([name]) => name),
        Object.keys(data.features ?? {}),
      );
      assert.equal(runtime.decisionLog, null, 'validate mode opens no decision log');
      for (const route of runtime.routes.values()) assert.equal(typeof route.router.route, 'function');
    } finally {
      await runtime.dispose();
    }
  });
}

for (const file of fixtureFiles('invalid')) {
  test(`invalid: ${path.basename(file)} reports exactly its declared errors`, async () => {
    const text = readFileSync(file, 'utf8');
    const expected = expectations(file, text);
    assert.ok(expected.length > 0, 'an invalid fixture declares its errors with "# expect:" lines');

    let caught: unknown;
    try {
      const runtime = await buildRuntime(file, { logger, mode: 'validate', env: fixtureEnv(text) });
      await runtime.dispose();
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof PolicyErrors, `expected PolicyErrors, got ${caught === undefined ? 'a runtime' : String(caught)}`);

    const actual = caught.errors.map((e) => {
      assert.ok(e instanceof TiergateError);
      assert.ok(e.location, `every policy error has a location: ${e.message}`);
      return {
        code: e.code,
        file: path.resolve(repoRoot, e.location.file),
        line: e.location.line,
        column: e.location.column,
        path: e.location.path || undefined,
        error: e,
      };
    });
    assert.deepEqual(actual.map(key).sort(), expected.map(key).sort(), `errors reported:\n${caught.message}`);

    for (const want of expected) {
      const got = actual.find((a) => key(a) === key(want))!;
      for (const text of want.contains)
        assert.ok(got.error.message.includes(text), `message of "${want.raw}" should contain ${JSON.stringify(text)}: ${got.error.message}`);
      // The located form is FILE:LINE:COL PATH: message [CODE].
      const where = `${got.error.location!.file}${want.line !== undefined ? `:${want.line}:${want.column}` : ''}${want.path ? ` ${want.path}` : ''}`;
      assert.equal(got.error.located(), `${where}: ${got.error.message} [${want.code}]`);
    }
    // The PolicyErrors message is every located error, one per line.
    assert.equal(caught.message, caught.errors.map((e) => e.located()).join('\n'));
  });
}

test('several-errors.yaml: problems of different kinds are all reported in one run', async () => {
  const file = path.join(fixtures, 'invalid/several-errors.yaml');
  await assert.rejects(buildRuntime(file, { logger, mode: 'validate', env: {} }), (err: unknown) => {
    assert.ok(err instanceof PolicyErrors);
    const codes = new Set(err.errors.map((e) => e.code));
    assert.ok(codes.size >= 5, `only ${[...codes].join(', ')}`);
    return true;
  });
});

test('a policy file that does not exist: TG_ERR_CONFIG_READ naming the file', async () => {
  const file = path.join(fixtures, 'no-such-policy.yaml');
  await assert.rejects(buildRuntime(file, { logger, mode: 'validate', env: {} }), (err: unknown) => {
    assert.ok(err instanceof PolicyErrors);
    assert.equal(err.errors.length, 1);
    assert.equal(err.errors[0].code, 'TG_ERR_CONFIG_READ');
    assert.equal(path.resolve(repoRoot, err.errors[0].location!.file), file);
    assert.match(err.errors[0].message, /no such file/);
    return true;
  });
});
