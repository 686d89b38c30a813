// One contract test over every discovered plugin (DESIGN.md §7.7), run through the
// package's own testing entry (`tiergate/testing`), as a team runs it over its folder:
// each plugin declares the contract version, its options schema compiles and accepts its
// example, create is cheap, create then dispose works, dispose is idempotent, and dispose
// after a failed build (another plugin's create threw) is safe. Then the contract
// version itself: a plugin declaring none, or another, is refused with a located error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PLUGIN_CONTRACT_VERSION } from 'tiergate/plugin';
import { checkPluginContract, describePluginContract, PluginContractError } from 'tiergate/testing';
import { BUILTIN_PLUGIN_ROOT, discoverPlugins, loadPlugin } from '../../src/policy/plugins.ts';
import { buildRuntime } from '../../src/policy/compile.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { PolicyErrors, TiergateError } from '../../src/common/errors.ts';
import { simulatorPolicy } from '../support/gateway.ts';

const catalogue = discoverPlugins([BUILTIN_PLUGIN_ROOT]);

test('discovery finds the built-in plugins of every kind in plugins/', () => {
  const names = [...catalogue.plugins.values()].map((p) => `${p.kind}:${p.name}`);
  for (const expected of ['router:rules', 'provider:openai', 'provider:anthropic', 'provider:simulator'])
    assert.ok(names.includes(expected), `${expected} discovered (found ${names.join(', ')})`);
});

test('src/ names no particular plugin: discovery is the only registry', () => {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const full = path.join(dir, entry);
      if (statSync(full).isDirectory()) walk(full);
      else if (full.endsWith('.ts')) files.push(full);
    }
  };
  walk(path.resolve(import.meta.dirname, '../../src'));
  for (const plugin of catalogue.plugins.values()) {
    for (const file of files) {
      // Module specifiers are not plugin references: src/expressions/compile.ts imports the npm
      // package 'jsonata', which shares its name with the jsonata evaluator.
      const code = readFileSync(file, 'utf8')
        .replace(/\/\/.*$/gm, '')
        .replace(/\bfrom\s+(['"])[^'"\n]+\1/g, 'from <module>');
      assert.ok(!new RegExp(`['"\`]${plugin.name}['"\`]`).test(code), `${path.relative(process.cwd(), file)} names the ${plugin.kind} plugin "${plugin.name}"`);
    }
  }
});

test('src/ imports no plugin module, not even to read its id', () => {
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((entry) => {
      const full = path.join(dir, entry);
      return statSync(full).isDirectory() ? walk(full) : full.endsWith('.ts') ? [full] : [];
    });
  for (const file of walk(path.resolve(import.meta.dirname, '../../src'))) {
    assert.doesNotMatch(readFileSync(file, 'utf8'), /from\s+['"](?:\.\.\/)+plugins\//, `${path.relative(process.cwd(), file)} imports a plugin`);
  }
});

test('built-in plugins use only the SDK: no plugin imports from src/', () => {
  for (const plugin of catalogue.plugins.values()) {
    const code = readFileSync(plugin.entry, 'utf8');
    assert.doesNotMatch(
      code,
      /from\s+['"](?:\.\.\/)+src\//,
      `${plugin.kind} plugin "${plugin.name}" imports tiergate's internals; import from 'tiergate/plugin'`,
    );
  }
});

// Every built-in plugin, then a folder of plugins as plugins.paths lists it.
describePluginContract(BUILTIN_PLUGIN_ROOT);
describePluginContract(path.join(import.meta.dirname, '..', 'fixtures', 'gate-plugins'));

// ---------------------------------------------------------------------------------
// The contract version

function evaluatorSource(contract: string): string {
  return `export default {
  meta: {
    id: 'dated',
    kind: 'evaluator',${contract}
    description: 'Scores every answer 1.',
    options: { type: 'object', additionalProperties: false, properties: {} },
    example: {},
  },
  async create() {
    return { async evaluate() { return { score: 1 }; }, async dispose() {} };
  },
};
`;
}

/** A policy folder with a plugins.paths folder holding one evaluator, "dated", declaring `contract`. */
function datedPlugin(t: { after(fn: () => void): void }, contract: string): { dir: string; folder: string; entry: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-contract-version-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const folder = path.join(dir, 'team-plugins', 'evaluators', 'dated');
  mkdirSync(folder, { recursive: true });
  const entry = path.join(folder, 'index.mjs');
  writeFileSync(entry, evaluatorSource(contract));
  return { dir, folder, entry };
}

const CONTRACT_CASES = [
  {
    label: 'another contract version',
    contract: '\n    contract: 2,',
    says: /evaluator plugin "dated"(?: \([^)]*\))? was written for plugin contract 2, but this tiergate speaks plugin contract 1: port it to contract 1/,
  },
  {
    label: 'no contract version',
    contract: '',
    says: /evaluator plugin "dated"(?: \([^)]*\))? declares no contract version, but this tiergate speaks plugin contract 1: .*contract: 1/,
  },
];

for (const { label, contract, says } of CONTRACT_CASES) {
  test(`a plugin declaring ${label} is refused with a located error naming its file and the policy site`, async (t) => {
    const { dir, folder, entry } = datedPlugin(t, contract);
    const discovered = discoverPlugins([path.join(dir, 'team-plugins')]).get('evaluator', 'dated')!;

    // Loaded on its own: located at the plugin's file.
    await assert.rejects(loadPlugin(discovered), (err: unknown) => {
      assert.ok(err instanceof TiergateError, String(err));
      assert.equal(err.code, 'TG_ERR_PLUGIN_CONTRACT');
      assert.match(err.located(), /index\.mjs: /);
      assert.match(err.located(), says);
      return true;
    });

    // Used by a policy: located at the site that names it, and naming the plugin's file.
    const policyFile = path.join(dir, 'gateway.yaml');
    writeFileSync(
      policyFile,
      simulatorPolicy({
        extra: 'plugins: { paths: [team-plugins] }\n',
        routes: `  support:
    router: { plugin: rules, rules: [] }
    default: small
    gate:
      evaluators:
        - plugin: dated`,
      }),
    );
    await assert.rejects(
      loadPlugin(discovered, { file: 'gateway.yaml', line: 30, column: 11, path: 'routes.support.gate.evaluators[0].plugin' }),
      (err: unknown) => {
        assert.ok(err instanceof TiergateError, String(err));
        assert.equal(err.code, 'TG_ERR_PLUGIN_CONTRACT');
        assert.match(err.located(), /^gateway\.yaml:30:11 routes\.support\.gate\.evaluators\[0\]\.plugin: evaluator plugin "dated" \(.*index\.mjs\) /);
        assert.match(err.located(), says);
        return true;
      },
    );
    await assert.rejects(buildRuntime(policyFile, { logger: createLogger({ level: 'error' }), mode: 'validate' }), (err: unknown) => {
      assert.ok(err instanceof PolicyErrors, String(err));
      assert.deepEqual(
        err.errors.map((e) => e.code),
        ['TG_ERR_PLUGIN_CONTRACT'],
        err.message,
      );
      assert.match(err.errors[0].located(), says);
      return true;
    });

    // The exported contract test says the same.
    await assert.rejects(checkPluginContract(folder), (err: unknown) => {
      assert.ok(err instanceof PluginContractError, String(err));
      assert.match(err.message, /TG_ERR_PLUGIN_CONTRACT/);
      return true;
    });

    // Declaring the version this tiergate speaks fixes it.
    writeFileSync(entry, evaluatorSource(`\n    contract: ${PLUGIN_CONTRACT_VERSION},`));
    await checkPluginContract(folder);
  });
}

test('the exported contract test reports every broken check of a plugin, not only the first', async () => {
  await assert.rejects(
    checkPluginContract(path.join(import.meta.dirname, '..', 'fixtures', 'plugins-broken', 'id-mismatch', 'routers', 'smart')),
    (err: unknown) => {
      assert.ok(err instanceof PluginContractError, String(err));
      assert.equal(err.failures.length, 3, err.message);
      assert.match(err.message, /meta\.id is "clever" but the folder is "smart"/);
      return true;
    },
  );
});

test('the contract test refuses an evaluator that declares "checks-input" without a checkInput()', async (t) => {
  const { folder, entry } = datedPlugin(t, `\n    contract: ${PLUGIN_CONTRACT_VERSION},\n    capabilities: ['checks-input'],`);
  await assert.rejects(checkPluginContract(folder), (err: unknown) => {
    assert.ok(err instanceof PluginContractError, String(err));
    assert.match(err.message, /declares "checks-input" but the instance has no checkInput\(\)/);
    return true;
  });
  // The built-in input checks keep their word.
  for (const name of ['regex', 'jsonata']) await checkPluginContract(path.join(import.meta.dirname, '..', '..', 'plugins', 'evaluators', name));
  writeFileSync(entry, evaluatorSource(`\n    contract: ${PLUGIN_CONTRACT_VERSION},`));
  await checkPluginContract(folder);
});
