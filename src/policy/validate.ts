// Stages 1 to 3 of the policy compiler, in order, for one policy file: source.ts reads
// it, schema.ts checks its shape (filling in defaults), plugin-sites.ts checks each
// plugin entry, semantic.ts the rules between fields. After: compile.ts builds the
// runtime from the valid policy this returns.
//
// No side effects: a policy's secrets are collected here and only registered by
// compile.ts; the errors of an invalid policy are redacted with them instead.
import path from 'node:path';
import { PolicyErrors, TiergateError, type SourceLocation } from '../common/errors.ts';
import { redactValues } from '../common/secrets.ts';
import type { ExpressionLimits } from '../expressions/compile.ts';
import type { ModelSpec, PolicyView } from '../plugin-contract/plugin-api.ts';
import { DEFAULT_EXPRESSION_LIMITS } from '../policy-shape/defaults.ts';
import { discoverPlugins, type PluginCatalogue } from './plugins.ts';
import type { PolicyData } from '../policy-shape/policy-data.ts';
import { checkEmbeddingProviders, checkPluginSite, collectErrors, isRecord, pluginEntries, pluginRoots, type PluginSite } from './plugin-sites.ts';
import { validatePolicyDocument, type ValidationSession } from './schema.ts';
import { checkSemantics } from './semantic.ts';
import { readPolicySource, type Path, type PolicySource } from './source.ts';
import { versionOf } from './version.ts';

export interface ValidateOptions {
  /** 'validate' checks without serving: the decision log is not opened. */
  mode?: 'serve' | 'validate';
  builtinPluginRoot?: string;
  env?: NodeJS.ProcessEnv;
  /** The address the gateway listens on in place of server.host (--host): checked like server.host. */
  listenHost?: string;
  /**
   * Folders, besides the policy's own, that files named by the policy ("x-path" options:
   * model files, state files, datasets, the decision log) may be in. Granted by whoever
   * runs tiergate (`tiergate eval` grants its dataset's folder), never by the policy.
   */
  allowedPaths?: readonly string[];
  /**
   * Edits the policy data as read (interpolated, not yet validated) before anything
   * else sees it; errors still point into the file. `tiergate eval` swaps in recorded
   * answers this way.
   */
  rewrite?: (data: unknown) => unknown;
}

/** A policy that passed every check, and what compiling it needs. */
export interface ValidPolicy {
  source: PolicySource;
  /** The data after schema validation, every default filled in. */
  data: PolicyData;
  view: PolicyView;
  /** Expressions compiled while validating, by expressionKey; the secrets found. */
  session: ValidationSession;
  /** Plugin entries in creation order, their options checked and defaulted. */
  sites: PluginSite[];
  /** Every value to keep out of outputs once the policy is in force. */
  secrets: string[];
  /** The plugin folders, to watch for edits. */
  pluginRoots: string[];
  /** The content hash, before the files plugins read are added (version.ts). */
  version: string;
}

/**
 * The policy's `expressions` limits, read before validation because expressions are
 * compiled during it. A value the schema will reject falls back to its default here.
 */
function expressionLimitsOf(data: unknown): ExpressionLimits {
  const given = isRecord(data) && isRecord(data.expressions) ? data.expressions : {};
  const pick = (key: keyof ExpressionLimits) => {
    const value = given[key];
    return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : DEFAULT_EXPRESSION_LIMITS[key];
  };
  return Object.freeze({ timeout_ms: pick('timeout_ms'), max_depth: pick('max_depth'), max_sequence: pick('max_sequence') });
}

function namesOf(value: unknown): Set<string> {
  return new Set(isRecord(value) ? Object.keys(value) : []);
}

function tierNamesOf(value: unknown): Set<string> {
  const names = new Set<string>();
  if (Array.isArray(value)) for (const tier of value) if (isRecord(tier) && typeof tier.name === 'string') names.add(tier.name);
  return names;
}

/**
 * The policy's secrets: every value a schema marks "x-secret" (collected by schema
 * validation) and the password in state.redis.url, in both spellings (the URL carries
 * it percent-encoded, Redis receives it decoded).
 */
function policySecrets(session: ValidationSession, data: unknown): string[] {
  const secrets = [...session.secrets];
  const url = isRecord(data) && isRecord(data.state) && isRecord(data.state.redis) ? data.state.redis.url : undefined;
  const password = typeof url === 'string' && URL.canParse(url) ? new URL(url).password : '';
  if (password) {
    try {
      secrets.push(decodeURIComponent(password));
    } catch {
      // Not valid percent-encoding: Redis receives it as written.
    }
    secrets.push(password);
  }
  return secrets;
}

/**
 * Errors with the policy's secrets replaced (they are not registered while the policy is
 * not valid), then the environment's values by their ${NAME}: some messages quote what
 * they found.
 */
export function redacted(errors: TiergateError[], source: PolicySource, secrets: readonly string[]): TiergateError[] {
  const hide = (text: string) => source.redact(redactValues(text, secrets));
  for (const error of errors) {
    error.message = hide(error.message);
    for (const [name, value] of Object.entries(error.params)) if (typeof value === 'string') error.params[name] = hide(value);
    if (error.location?.path) error.location = { ...error.location, path: hide(error.location.path) };
  }
  return errors;
}

/**
 * Stages 1 to 3 on one policy file: the policy, valid, with what compile.ts needs to
 * build it; or PolicyErrors with every problem found, located and redacted. Registers,
 * creates and starts nothing: plugin modules are imported to read their schemas, and
 * when serving the decision log is opened once to prove it can be (semantic.ts).
 */
export async function validatePolicy(configFile: string, options: ValidateOptions): Promise<ValidPolicy> {
  let source: PolicySource;
  try {
    source = readPolicySource(configFile, options.env);
  } catch (caught) {
    throw new PolicyErrors(collectErrors(caught));
  }
  if (options.rewrite) source = { ...source, data: options.rewrite(source.data) };
  const errors: TiergateError[] = [];
  const at = (p: Path, key = false): SourceLocation => source.locate(p, { key });
  const raw = source.data;
  // Schema validation fills in defaults in place, so the version hashes the data as read
  // (what policyFingerprint sees too) or an unchanged file would never be recognised.
  const dataAsRead = JSON.stringify(raw);
  const declared = isRecord(raw) ? raw : {};

  const session: ValidationSession = {
    names: { models: namesOf(declared.models), tiers: tierNamesOf(declared.tiers), providers: namesOf(declared.providers), routes: namesOf(declared.routes) },
    expressions: new Map(),
    secrets: new Set(),
    files: { baseDir: source.directory, folders: [source.directory, ...(options.allowedPaths ?? []).map((p) => path.resolve(p))] },
    limits: expressionLimitsOf(raw),
  };
  errors.push(...validatePolicyDocument(source, session));
  // Past the schema, defaults filled in: the shape the rest of the compiler reads.
  const data = errors.length === 0 ? (raw as PolicyData) : null;

  const { roots, missing } = pluginRoots(raw, source, options.builtinPluginRoot);
  for (const { index, folder } of missing)
    errors.push(new TiergateError('TG_ERR_PLUGIN_PATH', { reason: `plugin folder ${folder} does not exist` }, { location: at(['plugins', 'paths', index]) }));
  let catalogue: PluginCatalogue | null = null;
  try {
    catalogue = discoverPlugins(roots);
  } catch (caught) {
    errors.push(...collectErrors(caught));
  }

  const policyView = data ? makePolicyView(data) : null;
  const sites: PluginSite[] = [];
  if (catalogue) {
    for (const candidate of pluginEntries(raw)) {
      const site = await checkPluginSite(candidate, catalogue, source, session, policyView, errors);
      if (site) sites.push(site);
    }
  }

  if (data) errors.push(...checkSemantics(data, source, { listenHost: options.listenHost, serving: options.mode !== 'validate' }));
  if (data) errors.push(...checkEmbeddingProviders(data, sites, source));
  const secrets = policySecrets(session, raw);
  if (errors.length > 0 || !data || !policyView || !catalogue) throw new PolicyErrors(redacted(errors, source, secrets));
  return { source, data, view: policyView, session, sites, secrets, pluginRoots: roots, version: versionOf(source, dataAsRead, catalogue) };
}

/** What plugins see of the policy: validate()'s ctx, then PluginContext.policy. */
function makePolicyView(data: PolicyData): PolicyView {
  const upstreamTimeout = data.server.upstream_timeout_ms;
  const models = new Map<string, ModelSpec>();
  for (const [name, model] of Object.entries(data.models)) {
    models.set(
      name,
      Object.freeze({
        name,
        provider: model.provider,
        upstream: model.upstream ?? name,
        // An embedding model has no output tokens, and may leave their price out.
        price: Object.freeze({ ...model.price, output_per_mtok: model.price.output_per_mtok ?? 0 }),
        timeout_ms: model.timeout_ms ?? data.providers[model.provider]?.timeout_ms ?? upstreamTimeout,
        kind: model.kind,
      }),
    );
  }
  return Object.freeze({
    models,
    tiers: Object.freeze(data.tiers.map((t) => Object.freeze({ name: t.name, models: Object.freeze([...t.models]) }))),
    featureNames: Object.freeze(Object.keys(data.features)),
  });
}
