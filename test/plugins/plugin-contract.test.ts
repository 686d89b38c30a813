// One contract test over every discovered plugin (DESIGN.md §7.7): its options schema
// compiles and accepts its own example, create then dispose works, dispose is
// idempotent, and dispose after a failed build (another plugin's create threw) is safe.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import winston from 'winston';
import { stringify } from 'yaml';
import { BUILTIN_PLUGIN_ROOT, discoverPlugins, loadPlugin, type LoadedPlugin } from '../../src/policy/plugins.ts';
import { buildRuntime } from '../../src/policy/runtime.ts';
import { PolicyErrors } from '../../src/common/errors.ts';
import { testPluginContext } from '../support/plugin-context.ts';
import type { Disposable, ModelSpec, PluginContext, PolicyView } from '../../src/plugin-sdk/plugin-api.ts';

const CONTRACT_FIXTURES = path.resolve(import.meta.dirname, '../fixtures/contract-plugins');
const catalogue = discoverPlugins([BUILTIN_PLUGIN_ROOT]);

/** A logger that keeps what it is told, so a test can assert nothing went wrong quietly. */
function recordingLogger(): { logger: winston.Logger; lines: Array<{ level: string; message: string }> } {
  const lines: Array<{ level: string; message: string }> = [];
  const logger = winston.createLogger({ level: 'debug', transports: [new winston.transports.Console({ silent: true })] });
  logger.on('data', (info: { level: string; message: string }) => lines.push({ level: info.level, message: info.message }));
  return { logger, lines };
}

const policyView: PolicyView = {
  models: new Map<string, ModelSpec>([['m', { name: 'm', provider: 'p', upstream: 'm', price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 1000 }]]),
  tiers: [
    { name: 'small', models: ['m'] },
    { name: 'large', models: ['m'] },
  ],
  featureNames: [],
};

function directContext(plugin: LoadedPlugin): PluginContext {
  return testPluginContext({ at: `test.${plugin.discovered.name}`, policy: policyView });
}

test('discovery finds the built-in plugins of every kind in plugins/', () => {
  const names = [...catalogue.plugins.values()].map((p) => `${p.kind}:${p.name}`);
  for (const expected of ['router:rules', 'provider:openai', 'provider:anthropic', 'provider:simulator']) assert.ok(names.includes(expected), `${expected} discovered (found ${names.join(', ')})`);
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
      const code = readFileSync(file, 'utf8').replace(/\/\/.*$/gm, '').replace(/\bfrom\s+(['"])[^'"\n]+\1/g, 'from <module>');
      assert.ok(!new RegExp(`['"\`]${plugin.name}['"\`]`).test(code), `${path.relative(process.cwd(), file)} names the ${plugin.kind} plugin "${plugin.name}"`);
    }
  }
});

for (const discovered of catalogue.plugins.values()) {
  const label = `${discovered.kind} plugin "${discovered.name}"`;

  test(`${label}: loads, its options schema compiles and accepts its example`, async () => {
    const plugin = await loadPlugin(discovered);
    assert.equal(plugin.module.meta.id, discovered.name);
    assert.equal(plugin.module.meta.kind, discovered.kind);
    const example = structuredClone(plugin.module.meta.example);
    assert.ok(plugin.validateOptions(example), `example rejected by its own schema: ${JSON.stringify(plugin.validateOptions.errors)}`);
    assert.equal(plugin.validateOptions({ surely_not_an_option: true, ...(example as object) }), false, 'unknown option keys are rejected');
  });

  test(`${label}: create then dispose works, and dispose is idempotent`, async () => {
    const plugin = await loadPlugin(discovered);
    const options = structuredClone(plugin.module.meta.example);
    plugin.validateOptions(options);
    const instance: Disposable = await plugin.module.create(options as object, directContext(plugin));
    assert.equal(typeof instance.dispose, 'function');
    await instance.dispose();
    await instance.dispose();
  });

  test(`${label}: dispose after a failed build is safe`, async () => {
    const plugin = await loadPlugin(discovered);
    const example = plugin.module.meta.example as Record<string, unknown>;
    // A policy that creates this plugin, then a router whose create throws: the build
    // must fail with a located create error and dispose what it had created, cleanly.
    const providerEntry: Record<string, unknown> | null = discovered.kind === 'provider' ? { plugin: discovered.name, ...example } : null;
    const simulatorExample = (await loadPlugin(catalogue.get('provider', 'simulator')!)).module.meta.example as { profiles: Record<string, unknown> };
    const upstream = Object.keys((providerEntry?.profiles as Record<string, unknown> | undefined) ?? simulatorExample.profiles)[0] ?? 'm';
    const policy = {
      version: 1,
      plugins: { paths: [CONTRACT_FIXTURES] },
      providers: { p: providerEntry ?? { plugin: 'simulator', ...simulatorExample } },
      models: { m: { provider: 'p', upstream, price: { input_per_mtok: 1, output_per_mtok: 2 } } },
      tiers: [
        { name: 'small', models: ['m'] },
        { name: 'large', models: ['m2'] },
      ],
      routes: {
        ...(discovered.kind === 'router' ? { a: { router: { plugin: discovered.name, ...example }, default: 'large' } } : {}),
        z: { router: { plugin: 'explodes' }, default: 'large' },
      },
    };
    (policy.models as Record<string, unknown>).m2 = { provider: 'p', upstream, price: { input_per_mtok: 2, output_per_mtok: 4 } };
    const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-contract-'));
    try {
      const file = path.join(dir, 'gateway.yaml');
      writeFileSync(file, stringify(policy));
      const { logger, lines } = recordingLogger();
      await assert.rejects(buildRuntime(file, { logger, mode: 'validate' }), (err: unknown) => {
        assert.ok(err instanceof PolicyErrors, String(err));
        assert.deepEqual(err.errors.map((e) => e.code), ['TG_ERR_PLUGIN_CREATE'], err.message);
        assert.match(err.errors[0].located(), /gateway\.yaml:\d+:\d+ routes\.z\.router\.plugin: plugin failed to start: explodes on purpose/);
        return true;
      });
      assert.deepEqual(lines.filter((l) => /dispose failed/.test(l.message)), [], 'every created instance disposed without error');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
