// The plugin contract test, published as `tiergate/testing` (DESIGN.md §7.7): the checks
// tiergate runs over every built-in plugin, for a team to run over its own plugin
// folder, wherever it lives. A plugin passes when
// - it loads: default-exports { meta, create }, declares the contract version this
//   tiergate speaks, its id and kind match its folder, its options schema is closed and
//   compiles;
// - the schema accepts the plugin's own example and rejects an unknown option key;
// - create is cheap and returns an instance whose dispose works and is idempotent;
// - dispose is safe after a failed build: a policy that creates the plugin and then a
//   router whose create throws fails with a located create error, and every instance
//   created before is disposed without error.
//
//   import { describePluginContract } from 'tiergate/testing';
//   describePluginContract(new URL('../team-plugins', import.meta.url).pathname);
import { describe, test } from 'node:test';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import winston from 'winston';
import { stringify } from 'yaml';
import { PolicyErrors, TiergateError, errorMessage } from '../common/errors.ts';
import { compileExpression } from '../expressions/compile.ts';
import {
  BUILTIN_PLUGIN_ROOT,
  PLUGIN_ENTRY_FILES,
  PLUGIN_KINDS,
  discoverPlugins,
  hashFolder,
  kindFolder,
  loadPlugin,
  shareWithCommonJsPlugins,
  type DiscoveredPlugin,
  type LoadedPlugin,
} from '../policy/plugins.ts';
import { buildRuntime } from '../policy/compile.ts';
import {
  PLUGIN_CONTRACT_VERSION,
  type Disposable,
  type ModelSpec,
  type PluginContext,
  type PluginKind,
  type PolicyView,
} from '../plugin-contract/plugin-api.ts';
import * as thisEntry from './testing.ts';

export type { DiscoveredPlugin };

// A CommonJS test file of a team, run in a process that already loaded tiergate, gets this module too.
shareWithCommonJsPlugins('tiergate/testing', thisEntry);

export interface ContractOptions {
  /** Options to create the plugin with, in place of its `meta.example` (which is checked too). */
  readonly options?: Readonly<Record<string, unknown>>;
  /** Only plugins of this kind (for a folder of plugins); for one plugin folder, the kind it must be. */
  readonly kind?: PluginKind;
  /** The longest `create` may take, in ms (default 5000: far above a cheap create even on a loaded machine, far below a network timeout). */
  readonly createBudgetMs?: number;
}

/** One check of the contract, run over one discovered plugin. */
export interface ContractCheck {
  readonly name: string;
  run(plugin: DiscoveredPlugin, options: ContractOptions): Promise<void>;
}

export class PluginContractError extends Error {
  constructor(
    readonly plugin: DiscoveredPlugin,
    readonly failures: ReadonlyArray<{ check: string; message: string }>,
  ) {
    super(
      `${plugin.kind} plugin "${plugin.name}" (${plugin.folder}) breaks the plugin contract:\n${failures.map((f) => `- ${f.check}: ${f.message}`).join('\n')}`,
    );
    this.name = 'PluginContractError';
  }
}

export interface LogLine {
  level: string;
  message: string;
  meta?: Record<string, unknown>;
}

/**
 * A PluginContext for calling a plugin directly, as a unit test does: expressions are
 * compiled for real, log lines are kept in `logs`, and `callModel` fails unless given.
 */
export function testPluginContext(options: { at: string; logs?: LogLine[]; policy?: PolicyView; callModel?: PluginContext['callModel'] }): PluginContext {
  const logs = options.logs ?? [];
  const record = (level: string) => (message: string, meta?: Record<string, unknown>) => void logs.push({ level, message, meta });
  return {
    at: options.at,
    baseDir: process.cwd(),
    policy: options.policy ?? { models: new Map(), tiers: [], featureNames: [] },
    logger: { error: record('error'), warn: record('warn'), info: record('info'), debug: record('debug') },
    expression(source) {
      const compiled = compileExpression(source);
      if ('problem' in compiled) throw new Error(compiled.problem.message);
      return compiled.expression;
    },
    optionError: (optionPath, message) => new Error(`${optionPath.join('.')}: ${message}`),
    callModel:
      options.callModel ??
      (async () => {
        throw new Error('this test gives the plugin no models to call');
      }),
  };
}

/** The policy a directly created plugin sees: one model, two tiers named as in the examples. */
const CONTRACT_POLICY: PolicyView = {
  models: new Map<string, ModelSpec>([['m', { name: 'm', provider: 'p', upstream: 'm', price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 1000 }]]),
  tiers: [
    { name: 'small', models: ['m'] },
    { name: 'large', models: ['m'] },
  ],
  featureNames: [],
};

/** A thrown error, a list of them (discovery) or PolicyErrors, each with its location. */
function located(err: unknown): string {
  const errors: unknown[] = err instanceof PolicyErrors ? [...err.errors] : Array.isArray(err) ? err : [err];
  return errors.map((e) => (e instanceof TiergateError ? e.located() : errorMessage(e))).join('\n');
}

function fail(message: string): never {
  throw new Error(message);
}

async function loadOrFail(plugin: DiscoveredPlugin): Promise<LoadedPlugin> {
  try {
    return await loadPlugin(plugin);
  } catch (err) {
    return fail(located(err));
  }
}

function createOptions(plugin: LoadedPlugin, options: ContractOptions): Record<string, unknown> {
  return structuredClone((options.options ?? plugin.module.meta.example) as Record<string, unknown>);
}

// Plugins the failed-build check writes into a folder of its own: a router whose create
// always throws, and (for a plugin that is not a provider) a provider for the models.
const EXPLODING_ROUTER = 'tiergate_contract_explodes';
const STAND_IN_PROVIDER = 'tiergate_contract_provider';
const CONTRACT_FIXTURES: Record<string, string> = {
  [`routers/${EXPLODING_ROUTER}/index.mjs`]: `export default {
  meta: { id: '${EXPLODING_ROUTER}', kind: 'router', contract: ${PLUGIN_CONTRACT_VERSION}, description: 'Contract test: create() always throws.', options: { type: 'object', additionalProperties: false, properties: {} }, example: {} },
  async create() { throw new Error('explodes on purpose'); },
};
`,
  [`providers/${STAND_IN_PROVIDER}/index.mjs`]: `export default {
  meta: { id: '${STAND_IN_PROVIDER}', kind: 'provider', contract: ${PLUGIN_CONTRACT_VERSION}, description: 'Contract test: a provider never called.', options: { type: 'object', additionalProperties: false, properties: {} }, example: {} },
  async create() {
    return { async complete() { throw new Error('not called'); }, async *stream() { throw new Error('not called'); }, async dispose() {} };
  },
};
`,
};

/** A logger that keeps what it is told, so a check can assert nothing went wrong quietly. */
function recordingLogger(): { logger: winston.Logger; lines: Array<{ level: string; message: string }> } {
  const lines: Array<{ level: string; message: string }> = [];
  const logger = winston.createLogger({ level: 'debug', transports: [new winston.transports.Console({ silent: true })] });
  logger.on('data', (info: { level: string; message: string }) => lines.push({ level: info.level, message: info.message }));
  return { logger, lines };
}

/** The folder holding the plugin's kind folder, i.e. what a policy lists in plugins.paths. */
function pluginRoot(plugin: DiscoveredPlugin): string {
  return path.dirname(path.dirname(plugin.folder));
}

function isBuiltin(plugin: DiscoveredPlugin): boolean {
  return realpathSync(pluginRoot(plugin)) === realpathSync(BUILTIN_PLUGIN_ROOT);
}

export const CONTRACT_CHECKS: readonly ContractCheck[] = [
  {
    name: 'loads, declares the contract version, its options schema compiles and accepts its example',
    async run(discovered, options) {
      const plugin = await loadOrFail(discovered);
      const meta = plugin.module.meta;
      if (meta.id !== discovered.name) fail(`meta.id is ${JSON.stringify(meta.id)}, the folder "${discovered.name}"`);
      if (meta.kind !== discovered.kind) fail(`meta.kind is ${JSON.stringify(meta.kind)}, the folder's kind ${discovered.kind}`);
      if (meta.contract !== PLUGIN_CONTRACT_VERSION) fail(`meta.contract is ${JSON.stringify(meta.contract)}, not ${PLUGIN_CONTRACT_VERSION}`);
      const example = structuredClone(meta.example);
      if (!plugin.validateOptions(example)) fail(`example rejected by its own schema: ${JSON.stringify(plugin.validateOptions.errors)}`);
      if (plugin.validateOptions({ surely_not_an_option: true, ...(example as object) }))
        fail('an unknown option key is accepted: the options schema must reject it');
      if (options.options && !plugin.validateOptions(structuredClone(options.options)))
        fail(`the options given to the contract test are rejected by the schema: ${JSON.stringify(plugin.validateOptions.errors)}`);
    },
  },
  {
    name: 'create is cheap, then dispose works, and dispose is idempotent',
    async run(discovered, options) {
      const plugin = await loadOrFail(discovered);
      const createOptionsValue = createOptions(plugin, options);
      plugin.validateOptions(createOptionsValue);
      const budgetMs = options.createBudgetMs ?? 5000;
      const started = performance.now();
      const instance: Disposable = await plugin.module.create(
        createOptionsValue,
        testPluginContext({ at: `test.${discovered.name}`, policy: CONTRACT_POLICY }),
      );
      const tookMs = performance.now() - started;
      if (typeof instance?.dispose !== 'function') fail('create() returned no instance with dispose()');
      // A policy may list the evaluator as an input check on the strength of its declaration alone.
      if (plugin.module.meta.capabilities?.includes('checks-input') && typeof (instance as { checkInput?: unknown }).checkInput !== 'function')
        fail('meta.capabilities declares "checks-input" but the instance has no checkInput()');
      await instance.dispose();
      await instance.dispose();
      if (tookMs > budgetMs) fail(`create took ${Math.round(tookMs)} ms (budget ${budgetMs} ms): create must be cheap; connect or load lazily`);
    },
  },
  {
    name: 'dispose after a failed build is safe',
    async run(discovered, options) {
      const plugin = await loadOrFail(discovered);
      const pluginOptions = createOptions(plugin, options);
      const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-contract-'));
      try {
        for (const [file, text] of Object.entries(CONTRACT_FIXTURES)) {
          mkdirSync(path.dirname(path.join(dir, 'fixtures', file)), { recursive: true });
          writeFileSync(path.join(dir, 'fixtures', file), text);
        }
        // A policy that creates this plugin, then a router whose create throws: the build
        // must fail with a located create error and dispose what it had created, cleanly.
        const provider = discovered.kind === 'provider' ? { plugin: discovered.name, ...pluginOptions } : { plugin: STAND_IN_PROVIDER };
        const policy = {
          version: 1,
          plugins: { paths: [path.join(dir, 'fixtures'), ...(isBuiltin(discovered) ? [] : [pluginRoot(discovered)])] },
          providers: { p: provider },
          models: {
            m: { provider: 'p', upstream: 'm', price: { input_per_mtok: 1, output_per_mtok: 2 } },
            m2: { provider: 'p', upstream: 'm', price: { input_per_mtok: 2, output_per_mtok: 4 } },
          },
          tiers: [
            { name: 'small', models: ['m'] },
            { name: 'large', models: ['m2'] },
          ],
          routes: {
            ...(discovered.kind === 'router' ? { a: { router: { plugin: discovered.name, ...pluginOptions }, default: 'large' } } : {}),
            z: { router: { plugin: EXPLODING_ROUTER }, default: 'large' },
          },
        };
        const file = path.join(dir, 'gateway.yaml');
        writeFileSync(file, stringify(policy));
        const { logger, lines } = recordingLogger();
        let built: Awaited<ReturnType<typeof buildRuntime>> | null = null;
        try {
          built = await buildRuntime(file, { logger, mode: 'validate' });
        } catch (err) {
          if (!(err instanceof PolicyErrors)) fail(`the build failed with ${errorMessage(err)}, not with a policy error`);
          const codes = err.errors.map((e) => e.code);
          if (codes.length !== 1 || codes[0] !== 'TG_ERR_PLUGIN_CREATE')
            fail(`the build failed with ${JSON.stringify(codes)}, not with one TG_ERR_PLUGIN_CREATE: ${err.message}`);
          const located = err.errors[0].located();
          if (!/gateway\.yaml:\d+:\d+ routes\.z\.router\.plugin: plugin failed to start: explodes on purpose/.test(located))
            fail(`the create error is not located at the router that threw: ${located}`);
        }
        if (built) {
          await built.dispose();
          fail('the build succeeded although a router of it throws in create');
        }
        const disposeFailures = lines.filter((l) => /dispose failed/.test(l.message));
        if (disposeFailures.length > 0) fail(`dispose failed after the failed build: ${disposeFailures.map((l) => l.message).join('; ')}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
];

/**
 * The plugins in a folder: one plugin folder (`<root>/evaluators/my_eval`, holding its
 * index.ts or index.js) or a folder of plugins as `plugins.paths` lists it (holding
 * routers/, evaluators/, providers/).
 */
export function discoverContractPlugins(folder: string, kind?: PluginKind): DiscoveredPlugin[] {
  const absolute = path.resolve(folder);
  const entry = PLUGIN_ENTRY_FILES.find((name) => existsSync(path.join(absolute, name)));
  if (entry) {
    const folderKind = PLUGIN_KINDS.find((k) => kindFolder(k) === path.basename(path.dirname(absolute)));
    if (!folderKind)
      throw new Error(
        `${absolute} is not inside a routers/, evaluators/ or providers/ folder: tiergate discovers a plugin only at <plugins.paths entry>/<kind>s/<name>/`,
      );
    if (kind && kind !== folderKind)
      throw new Error(`${absolute} sits in the ${kindFolder(folderKind)} folder, so it is a ${folderKind} plugin, not a ${kind} plugin`);
    return [{ kind: folderKind, name: path.basename(absolute), folder: absolute, entry: path.join(absolute, entry), hash: hashFolder(absolute) }];
  }
  let catalogue;
  try {
    catalogue = discoverPlugins([absolute]);
  } catch (err) {
    throw new Error(located(err));
  }
  const plugins = [...catalogue.plugins.values()].filter((p) => !kind || p.kind === kind);
  if (plugins.length === 0)
    throw new Error(`no ${kind ? `${kind} ` : ''}plugin found in ${absolute}: a plugin is a folder <kind>s/<name>/ with an index.ts or index.js`);
  return plugins;
}

/** Runs every contract check over the plugin(s) in the folder; rejects with a PluginContractError listing what failed. */
export async function checkPluginContract(folder: string, options: ContractOptions = {}): Promise<void> {
  for (const plugin of discoverContractPlugins(folder, options.kind)) {
    const failures: Array<{ check: string; message: string }> = [];
    for (const check of CONTRACT_CHECKS) {
      try {
        await check.run(plugin, options);
      } catch (err) {
        failures.push({ check: check.name, message: errorMessage(err) });
      }
    }
    if (failures.length > 0) throw new PluginContractError(plugin, failures);
  }
}

/** Registers the contract checks as node:test cases: one suite per plugin in the folder, one test per check. */
export function describePluginContract(folder: string, options: ContractOptions = {}): void {
  for (const plugin of discoverContractPlugins(folder, options.kind)) {
    describe(`${plugin.kind} plugin "${plugin.name}" keeps the plugin contract`, () => {
      for (const check of CONTRACT_CHECKS) test(check.name, () => check.run(plugin, options));
    });
  }
}
