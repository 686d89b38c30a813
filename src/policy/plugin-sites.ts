// Stages 2 and 3 for plugin entries: every place the policy names a plugin (a provider,
// a route's router, a gate's evaluator) is a site. Before: source.ts read the file and
// schema.ts checked the policy's own shape. Here each site's plugin is found in the
// plugin folders (plugins.ts), its options are checked against the schema the plugin
// declares (schema.ts) and then by the plugin's own validate(). After: compile.ts
// creates one instance per site once the whole policy is valid.
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { PolicyErrors, TiergateError, errorMessage } from '../common/errors.ts';
import type { PluginKind, PolicyView } from '../plugin-contract/plugin-api.ts';
import type { PolicyData } from '../policy-shape/policy-data.ts';
import { BUILTIN_PLUGIN_ROOT, loadPlugin, type LoadedPlugin, type PluginCatalogue } from './plugins.ts';
import { validateOptions, type ValidationSession } from './schema.ts';
import type { Path, PolicySource } from './source.ts';

export interface PluginSite {
  kind: PluginKind;
  /** Where the plugin's entry sits: providers.openai, routes.support.router. */
  at: Path;
  plugin: LoadedPlugin;
  options: Record<string, unknown>;
}

/** Keys of a plugin entry that the gateway reads; every other key is the plugin's option. */
const HOST_KEYS: Record<PluginKind, readonly string[]> = {
  provider: ['plugin', 'timeout_ms'],
  router: ['plugin'],
  evaluator: ['plugin', 'name', 'weight', 'threshold', 'when'],
};

export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The located errors a stage threw, whichever way it threw them; anything else is a bug and rethrown. */
export function collectErrors(caught: unknown): TiergateError[] {
  if (Array.isArray(caught)) return caught as TiergateError[];
  if (caught instanceof PolicyErrors) return [...caught.errors];
  if (caught instanceof TiergateError) return [caught];
  throw caught;
}

/** Plugin folders: the built-ins, then any the policy lists (read before validation: plugins decide what is valid). */
export function pluginRoots(
  data: unknown,
  source: PolicySource,
  builtinRoot: string | undefined,
): { roots: string[]; missing: Array<{ index: number; folder: string }> } {
  const roots = [builtinRoot ?? BUILTIN_PLUGIN_ROOT];
  const missing: Array<{ index: number; folder: string }> = [];
  const paths = isRecord(data) && isRecord(data.plugins) && Array.isArray(data.plugins.paths) ? data.plugins.paths : [];
  paths.forEach((entry: unknown, index: number) => {
    if (typeof entry !== 'string') return;
    const folder = path.resolve(source.directory, entry);
    if (!existsSync(folder) || !statSync(folder).isDirectory()) missing.push({ index, folder });
    else roots.push(folder);
  });
  return { roots, missing };
}

/** A plugin entry as written; `checksInput` for a gate's input check, which needs an evaluator that can judge a request alone. */
export interface PluginEntry {
  kind: PluginKind;
  at: Path;
  entry: unknown;
  checksInput?: boolean;
}

/**
 * Every plugin entry of the policy, providers first, then each route's router, then its
 * evaluators: the order plugins are created in. Read from the data as written, so that a
 * plugin's options are checked even when the policy's own shape is not valid.
 */
export function pluginEntries(data: unknown): PluginEntry[] {
  const policy = isRecord(data) ? data : {};
  const routes = Object.entries(isRecord(policy.routes) ? policy.routes : {});
  return [
    ...Object.entries(isRecord(policy.providers) ? policy.providers : {}).map(([name, entry]) => ({
      kind: 'provider' as const,
      at: ['providers', name],
      entry,
    })),
    ...routes.map(([name, route]) => ({ kind: 'router' as const, at: ['routes', name, 'router'], entry: isRecord(route) ? route.router : undefined })),
    ...routes.flatMap(([name, route]) => {
      const gate = isRecord(route) && isRecord(route.gate) ? route.gate : {};
      const evaluators = Array.isArray(gate.evaluators) ? gate.evaluators : [];
      const inputChecks = isRecord(gate.input_checks) && Array.isArray(gate.input_checks.evaluators) ? gate.input_checks.evaluators : [];
      return [
        ...evaluators.map((entry: unknown, i: number) => ({ kind: 'evaluator' as const, at: ['routes', name, 'gate', 'evaluators', i], entry })),
        ...inputChecks.map((entry: unknown, i: number) => ({
          kind: 'evaluator' as const,
          at: ['routes', name, 'gate', 'input_checks', 'evaluators', i],
          entry,
          checksInput: true,
        })),
      ];
    }),
  ];
}

/**
 * Loads the plugin an entry names and checks its options: the plugin's schema (which
 * fills in its defaults), then, when the policy's own shape is valid (`policyView`), the
 * plugin's validate(). Problems go to `errors`; null when there is no plugin to create.
 */
export async function checkPluginSite(
  candidate: PluginEntry,
  catalogue: PluginCatalogue,
  source: PolicySource,
  session: ValidationSession,
  policyView: PolicyView | null,
  errors: TiergateError[],
): Promise<PluginSite | null> {
  const { kind, at, entry } = candidate;
  if (!isRecord(entry) || typeof entry.plugin !== 'string') return null;
  const name = entry.plugin;
  const discovered = catalogue.get(kind, name);
  if (!discovered) {
    const known = catalogue.names(kind);
    errors.push(
      new TiergateError(
        'TG_ERR_PLUGIN_UNKNOWN',
        { kind, name, hint: known.length ? ` (available: ${known.join(', ')})` : ' (none installed)' },
        { location: source.locate([...at, 'plugin']) },
      ),
    );
    return null;
  }
  let plugin: LoadedPlugin;
  try {
    plugin = await loadPlugin(discovered, source.locate([...at, 'plugin']));
  } catch (caught) {
    errors.push(...collectErrors(caught));
    return null;
  }
  if (candidate.checksInput && !plugin.module.meta.capabilities?.includes('checks-input')) {
    errors.push(
      new TiergateError(
        'TG_ERR_CONFIG_RULE',
        { reason: `evaluator "${name}" cannot be an input check: it judges answers only (its meta.capabilities has no "checks-input")` },
        { location: source.locate([...at, 'plugin']) },
      ),
    );
    return null;
  }
  const options: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(entry)) if (!HOST_KEYS[kind].includes(key)) options[key] = structuredClone(value);
  const optionErrors = validateOptions(plugin.validateOptions, options, source, at, session);
  errors.push(...optionErrors);
  if (optionErrors.length === 0 && policyView && plugin.module.validate) {
    try {
      for (const issue of plugin.module.validate(options, { policy: policyView })) {
        errors.push(new TiergateError('TG_ERR_PLUGIN_OPTIONS', { reason: issue.message }, { location: source.locate([...at, ...issue.path]) }));
      }
    } catch (err) {
      errors.push(new TiergateError('TG_ERR_PLUGIN_INVALID', { reason: `validate() threw: ${errorMessage(err)}` }, { location: { file: discovered.entry } }));
    }
  }
  return { kind, at, plugin, options: Object.freeze(options) as Record<string, unknown> };
}

/** A model of kind: embedding needs a provider whose plugin can embed (meta.capabilities has "embeds"). */
export function checkEmbeddingProviders(data: PolicyData, sites: readonly PluginSite[], source: PolicySource): TiergateError[] {
  const errors: TiergateError[] = [];
  for (const [name, model] of Object.entries(data.models)) {
    if (model.kind !== 'embedding') continue;
    const site = sites.find((s) => s.kind === 'provider' && s.at[1] === model.provider);
    if (!site || site.plugin.module.meta.capabilities?.includes('embeds')) continue;
    errors.push(
      new TiergateError(
        'TG_ERR_CONFIG_RULE',
        {
          reason: `embedding model "${name}" uses provider "${model.provider}", whose plugin "${site.plugin.discovered.name}" cannot embed (its meta.capabilities has no "embeds")`,
        },
        { location: source.locate(['models', name, 'provider']) },
      ),
    );
  }
  return errors;
}
