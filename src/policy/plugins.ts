// Plugin discovery: a plugin is a folder plugins/<kind>s/<name>/ with an index.ts or
// index.js. Reading the folders is the only registry; nothing here or elsewhere in
// src/ names a particular plugin. Modules are imported with their folder's content
// hash in the URL, so an edited plugin is imported afresh on reload while an
// unchanged one is reused. Code is imported only from inside the configured folders: a
// plugin folder or entry file whose symbolic link leads elsewhere is refused.
//
// A plugin imports the SDK as 'tiergate/plugin' (src/plugin-sdk/index.ts). Wherever the
// plugin lives, that specifier resolves to this gateway's own SDK module, for ES modules
// through the resolve hook and for plugins loaded as CommonJS through the require
// resolution below: one module instance, so the classes a plugin throws are the ones the
// gateway checks for, and a team's plugin folder needs no install of tiergate to load.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { Module, createRequire, register } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ValidateFunction } from 'ajv';
import { TiergateError, errorMessage, type SourceLocation } from '../common/errors.ts';
import {
  PLUGIN_CONTRACT_VERSION,
  type Disposable,
  type JsonSchema,
  type PluginCapability,
  type PluginKind,
  type PluginModule,
} from '../plugin-contract/plugin-api.ts';
import * as pluginSdk from '../plugin-sdk/index.ts';
import { compileOptionsSchema } from './schema.ts';
import { displayNameFor } from './source.ts';
import { escapesFolders } from './paths.ts';

export const PLUGIN_KINDS: readonly PluginKind[] = ['router', 'evaluator', 'provider'];
const KIND_FOLDERS: Record<PluginKind, string> = { router: 'routers', evaluator: 'evaluators', provider: 'providers' };
export const PLUGIN_ENTRY_FILES = ['index.ts', 'index.js', 'index.mjs'];

/** The package's SDK entries (package.json "exports"), by the specifier a plugin imports. */
export type SdkSpecifier = 'tiergate/plugin' | 'tiergate/testing';

// Beside this file, whether it runs from src/ (.ts) or compiled (.js).
const ownExtension = path.extname(fileURLToPath(import.meta.url));
const SDK_ENTRY_URLS: Record<SdkSpecifier, string> = {
  'tiergate/plugin': new URL(`../plugin-sdk/index${ownExtension}`, import.meta.url).href,
  'tiergate/testing': new URL(`../plugin-sdk/testing${ownExtension}`, import.meta.url).href,
};

// Every file of a plugin folder takes the folder's version, not only its entry, and the
// SDK specifiers resolve to this gateway's modules (see the hook). Registered again after
// tsx (loadTeamPluginLoader): the hook registered last runs first, and tsx would otherwise
// resolve 'tiergate/plugin' itself, through a tsconfig's paths, to a second copy.
function registerPluginHooks(): void {
  register(new URL('./plugin-version-hooks.mjs', import.meta.url), { data: { sdkEntries: SDK_ENTRY_URLS } });
}
registerPluginHooks();

/** The built-in plugins ship in the same layout as a team's own. */
export const BUILTIN_PLUGIN_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'plugins');

export interface DiscoveredPlugin {
  kind: PluginKind;
  name: string;
  folder: string;
  entry: string;
  /** sha256 over the folder's files: the module's version. */
  hash: string;
}

export interface LoadedPlugin {
  readonly discovered: DiscoveredPlugin;
  readonly module: PluginModule<unknown, Disposable>;
  readonly validateOptions: ValidateFunction;
}

export interface PluginCatalogue {
  readonly plugins: ReadonlyMap<string, DiscoveredPlugin>;
  /** Folders to watch for edits and new plugins. */
  readonly roots: readonly string[];
  /** A hash over every discovered plugin: part of the policy version. */
  readonly hash: string;
  get(kind: PluginKind, name: string): DiscoveredPlugin | undefined;
  names(kind: PluginKind): string[];
}

function folderFiles(folder: string, out: string[] = []): string[] {
  for (const entry of readdirSync(folder, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const full = path.join(folder, entry.name);
    if (entry.isDirectory()) folderFiles(full, out);
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

export function hashFolder(folder: string): string {
  const hash = createHash('sha256');
  for (const file of folderFiles(folder)) hash.update(path.relative(folder, file)).update('\0').update(readFileSync(file)).update('\0');
  return hash.digest('hex');
}

function isDirectory(folder: string): boolean {
  try {
    return statSync(folder).isDirectory();
  } catch {
    return false; // a dangling link
  }
}

/** Reads the plugin folders. Throws located errors for duplicate names and for folders that lead outside their root. */
export function discoverPlugins(roots: readonly string[]): PluginCatalogue {
  const plugins = new Map<string, DiscoveredPlugin>();
  const errors: TiergateError[] = [];
  for (const root of roots) {
    for (const kind of PLUGIN_KINDS) {
      const kindFolder = path.join(root, KIND_FOLDERS[kind]);
      if (!existsSync(kindFolder)) continue;
      for (const name of readdirSync(kindFolder).sort()) {
        const folder = path.join(kindFolder, name);
        if (name.startsWith('.') || !isDirectory(folder)) continue;
        const entryName = PLUGIN_ENTRY_FILES.find((file) => existsSync(path.join(folder, file)));
        if (!entryName) continue;
        const escape = escapesFolders(folder, [root]) ?? escapesFolders(path.join(folder, entryName), [root]);
        if (escape) {
          errors.push(
            new TiergateError(
              'TG_ERR_PLUGIN_PATH',
              { reason: `${kind} plugin "${name}" ${escape} its plugin folder ${displayNameFor(root)}; plugins load only from inside the configured folders` },
              { location: { file: displayNameFor(folder) } },
            ),
          );
          continue;
        }
        const key = `${kind}:${name}`;
        const earlier = plugins.get(key);
        if (earlier) {
          errors.push(
            new TiergateError(
              'TG_ERR_PLUGIN_INVALID',
              { reason: `${kind} plugin "${name}" is also defined in ${displayNameFor(earlier.folder)}; plugin names must be unique` },
              { location: { file: displayNameFor(folder) } },
            ),
          );
          continue;
        }
        plugins.set(key, { kind, name, folder, entry: path.join(folder, entryName), hash: hashFolder(folder) });
      }
    }
  }
  if (errors.length) throw errors;
  const hash = createHash('sha256');
  for (const [key, plugin] of [...plugins].sort(([a], [b]) => a.localeCompare(b))) hash.update(key).update(plugin.hash);
  return {
    plugins,
    roots,
    hash: hash.digest('hex'),
    get: (kind, name) => plugins.get(`${kind}:${name}`),
    names: (kind) => [...plugins.values()].filter((p) => p.kind === kind).map((p) => p.name),
  };
}

const loaded = new Map<string, Promise<LoadedPlugin>>();
/** The default export last imported for each entry file, and the folder hash it came from. */
const lastImported = new Map<string, { hash: string; exported: unknown }>();
// A plugin outside an ES-module package scope (no "type": "module" above it, as in a
// team's own plugin folder) is loaded as CommonJS, which is cached by file path
// whatever the URL's query says.
const requireCache = createRequire(import.meta.url).cache;

// What Node's CommonJS loader resolves a require() with; not in @types/node.
interface CommonJsResolution {
  _resolveFilename(request: string, parent: unknown, isMain: boolean, options?: unknown): string;
}
const commonJsEntries = new Map<SdkSpecifier, { file: string; namespace: object }>();

/**
 * Makes require(specifier) in a plugin loaded as CommonJS return the gateway's own ES
 * module namespace (tsx compiles the plugin's `import … from 'tiergate/plugin'` to such a
 * require). Without it, Node would look for tiergate in the plugin folder's node_modules,
 * and tsx would compile a second copy of the SDK when found.
 */
export function shareWithCommonJsPlugins(specifier: SdkSpecifier, namespace: object): void {
  commonJsEntries.set(specifier, { file: fileURLToPath(SDK_ENTRY_URLS[specifier]), namespace });
}

/** Puts the SDK's answer in front of require's resolution (again after tsx's, for the same reason as the hooks). */
function answerSdkRequires(): void {
  const resolution = Module as unknown as CommonJsResolution;
  const resolveFilename = resolution._resolveFilename;
  // Only the SDK specifiers are answered here; every other request goes on unchanged.
  resolution._resolveFilename = function (request, parent, isMain, options) {
    const entry = commonJsEntries.get(request as SdkSpecifier);
    if (!entry) return resolveFilename.call(this, request, parent, isMain, options);
    // Also over a copy compiled from the same file earlier: the gateway's instance is the one to share.
    if (requireCache[entry.file]?.exports !== entry.namespace) {
      const shared = new Module(entry.file);
      shared.filename = entry.file;
      shared.exports = entry.namespace;
      shared.loaded = true;
      requireCache[entry.file] = shared;
    }
    return entry.file;
  };
}
answerSdkRequires();
shareWithCommonJsPlugins('tiergate/plugin', pluginSdk);

/**
 * Imports a plugin (once per content version) and checks it against the contract. Rejects
 * with a located TiergateError. `usedAt` is the policy site that names the plugin: a
 * plugin written for another contract version is reported there, naming the plugin's file.
 */
export function loadPlugin(discovered: DiscoveredPlugin, usedAt?: SourceLocation): Promise<LoadedPlugin> {
  const cacheKey = `${discovered.entry}#${discovered.hash}`;
  let pending = loaded.get(cacheKey);
  if (!pending) {
    pending = importPlugin(discovered);
    loaded.set(cacheKey, pending);
    // A failed import is not cached: the user may fix the file and reload.
    pending.catch(() => loaded.delete(cacheKey));
  }
  if (!usedAt) return pending;
  return pending.catch((err: unknown) => {
    if (!(err instanceof TiergateError) || err.code !== 'TG_ERR_PLUGIN_CONTRACT') throw err;
    throw new TiergateError(
      'TG_ERR_PLUGIN_CONTRACT',
      { ...err.params, plugin: `${err.params.plugin} (${displayNameFor(discovered.entry)})` },
      { location: usedAt },
    );
  });
}

/** The contract version a plugin declares, checked before anything else of its meta (whose shape that version defines). */
function contractProblem(discovered: DiscoveredPlugin, declared: unknown): TiergateError | null {
  if (declared === PLUGIN_CONTRACT_VERSION) return null;
  const plugin = `${discovered.kind} plugin "${discovered.name}"`;
  const params =
    declared === undefined
      ? {
          plugin,
          declared: 'declares no contract version',
          fix: `write it against contract ${PLUGIN_CONTRACT_VERSION} and declare that in its meta as the number itself, contract: ${PLUGIN_CONTRACT_VERSION}`,
        }
      : {
          plugin,
          declared: `was written for plugin contract ${JSON.stringify(declared)}`,
          fix: `port it to contract ${PLUGIN_CONTRACT_VERSION} (the plugin guide in tiergate's README describes it), then set meta.contract to ${PLUGIN_CONTRACT_VERSION}`,
        };
  return new TiergateError('TG_ERR_PLUGIN_CONTRACT', { ...params, speaks: PLUGIN_CONTRACT_VERSION }, { location: { file: displayNameFor(discovered.entry) } });
}

/**
 * The name of the plugin of this kind that declares the capability, or null. For
 * tiergate's own tools, which must not name a plugin; a plugin that fails to load is
 * passed over (the policy build reports it where it is used).
 */
export async function pluginWithCapability(
  kind: PluginKind,
  capability: PluginCapability,
  roots: readonly string[] = [BUILTIN_PLUGIN_ROOT],
): Promise<string | null> {
  const catalogue = discoverPlugins(roots);
  for (const name of catalogue.names(kind)) {
    const plugin = await loadPlugin(catalogue.get(kind, name)!).catch(() => null);
    if (plugin?.module.meta.capabilities?.includes(capability)) return name;
  }
  return null;
}

// Compiled, the gateway's own modules and built-in plugins are plain JavaScript: tsx is
// needed only for a team's plugin (a .ts file, or a folder Node loads as CommonJS, whose
// edits only tsx's require hook lets load afresh). Registering it costs about a third of
// a start-up, so it happens the first time a plugin from outside the built-in folder is
// imported. Run from source, a TypeScript loader is already in place.
let teamPluginLoader: Promise<void> | null = ownExtension === '.ts' ? Promise.resolve() : null;

function loadTeamPluginLoader(): Promise<void> {
  teamPluginLoader ??= (async () => {
    const [esm, commonJs] = await Promise.all([import('tsx/esm/api'), import('tsx/cjs/api')]);
    esm.register();
    commonJs.register();
    registerPluginHooks();
    answerSdkRequires();
  })();
  return teamPluginLoader;
}

async function importPlugin(discovered: DiscoveredPlugin): Promise<LoadedPlugin> {
  const file = displayNameFor(discovered.entry);
  const invalid = (reason: string) => new TiergateError('TG_ERR_PLUGIN_INVALID', { reason }, { location: { file } });
  let namespace: { default?: unknown };
  if (!discovered.folder.startsWith(BUILTIN_PLUGIN_ROOT + path.sep)) await loadTeamPluginLoader();
  // Forget the folder's CommonJS-cached files so that an edit is really loaded afresh.
  const folderPrefix = discovered.folder + path.sep;
  for (const key of Object.keys(requireCache)) if (key.startsWith(folderPrefix)) delete requireCache[key];
  try {
    const version = new URLSearchParams({ 'tiergate-plugin': discovered.hash.slice(0, 16), 'tiergate-root': `${pathToFileURL(discovered.folder).href}/` });
    namespace = (await import(`${pathToFileURL(discovered.entry).href}?${version}`)) as { default?: unknown };
  } catch (err) {
    throw new TiergateError('TG_ERR_PLUGIN_LOAD', { reason: errorMessage(err) }, { location: { file }, cause: err });
  }
  // Never run stale code under a new version: if the module loader handed back the
  // previous version's export, say so rather than report the edit as applied.
  const previous = lastImported.get(discovered.entry);
  if (previous && previous.hash !== discovered.hash && previous.exported === namespace.default && namespace.default !== undefined) {
    throw new TiergateError(
      'TG_ERR_PLUGIN_LOAD',
      { reason: 'the edited plugin could not be imported afresh (the module loader returned the cached version); restart tiergate to load it' },
      { location: { file } },
    );
  }
  lastImported.set(discovered.entry, { hash: discovered.hash, exported: namespace.default });
  // A plugin compiled to CommonJS (tsc's `exports.default`, or tsx's when it compiles a
  // .ts plugin of a CommonJS folder) arrives as its module.exports: the plugin module is
  // under the `default` that the __esModule marker points at.
  const exported = namespace.default as { __esModule?: unknown; default?: unknown; meta?: unknown } | undefined;
  const candidate = (exported && typeof exported === 'object' && exported.meta === undefined && exported.__esModule === true ? exported.default : exported) as
    Partial<PluginModule<unknown, Disposable>> | undefined;
  if (!candidate || typeof candidate !== 'object') throw invalid('must default-export a plugin module: { meta, create }');
  const meta = candidate.meta;
  if (!meta || typeof meta !== 'object') throw invalid('the default export has no `meta` object');
  const contractError = contractProblem(discovered, (meta as { contract?: unknown }).contract);
  if (contractError) throw contractError;
  if (meta.id !== discovered.name) throw invalid(`meta.id is ${JSON.stringify(meta.id)} but the folder is "${discovered.name}"; they must match`);
  if (meta.kind !== discovered.kind)
    throw invalid(`meta.kind is ${JSON.stringify(meta.kind)} but the plugin sits in the ${KIND_FOLDERS[discovered.kind]} folder`);
  if (typeof meta.description !== 'string' || !meta.description) throw invalid('meta.description must be a non-empty string');
  if (!meta.options || typeof meta.options !== 'object') throw invalid('meta.options must be a JSON Schema object for the plugin options');
  if (typeof candidate.create !== 'function') throw invalid('create(options, ctx) must be a function');
  if (candidate.validate !== undefined && typeof candidate.validate !== 'function') throw invalid('validate, when present, must be a function');
  if (meta.capabilities !== undefined && !(Array.isArray(meta.capabilities) && meta.capabilities.every((c) => typeof c === 'string')))
    throw invalid('meta.capabilities, when present, must be an array of strings');
  const openObject = findOpenObject(meta.options, 'options');
  if (openObject) throw invalid(`${openObject} is an object schema without "additionalProperties": false; plugin options must reject unknown keys`);
  let validateOptions: ValidateFunction;
  try {
    validateOptions = compileOptionsSchema(meta.options);
  } catch (err) {
    throw invalid(`meta.options is not a valid JSON Schema: ${errorMessage(err)}`);
  }
  return { discovered, module: candidate as PluginModule<unknown, Disposable>, validateOptions };
}

/** Finds an object schema that allows unknown keys (silently ignored keys are the commonest gateway bug). */
function findOpenObject(schema: unknown, where: string): string | null {
  if (!schema || typeof schema !== 'object') return null;
  const s = schema as JsonSchema;
  const isObject = s.type === 'object' || (s.properties !== undefined && s.type === undefined);
  if (isObject && s.additionalProperties === undefined && s.patternProperties === undefined) return where;
  const children: Array<[string, unknown]> = [];
  for (const [key, value] of Object.entries((s.properties as Record<string, unknown> | undefined) ?? {})) children.push([`${where}.${key}`, value]);
  if (s.additionalProperties && typeof s.additionalProperties === 'object') children.push([`${where}.*`, s.additionalProperties]);
  if (s.items && typeof s.items === 'object') children.push([`${where}[]`, s.items]);
  for (const [label, child] of children) {
    const found = findOpenObject(child, label);
    if (found) return found;
  }
  return null;
}

export function kindFolder(kind: PluginKind): string {
  return KIND_FOLDERS[kind];
}
