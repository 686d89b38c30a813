// A Runtime is one compiled policy: validated, every expression compiled, every plugin
// created. It is immutable; a request holds the one it started with until it ends, and
// a reload builds a new one aside and swaps a single reference (see reload.ts). A
// retired runtime disposes its plugins once its last request has finished.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import express, { type RequestHandler } from 'express';
import type winston from 'winston';
import { PolicyErrors, TiergateError, errorMessage, type SourceLocation } from '../common/errors.ts';
import { DEFAULT_EXPRESSION_LIMITS, compileExpression, type ExpressionLimits } from '../expressions/compile.ts';
import { childLogger } from '../observe/logger.ts';
import { DecisionLog, type DecisionLogSettings } from '../observe/decision-log.ts';
import { ModelHealth, type Resilience } from '../state/health.ts';
import { BUILTIN_PLUGIN_ROOT, discoverPlugins, loadPlugin, type LoadedPlugin, type PluginCatalogue } from './plugins.ts';
import type { ChatRequest, ChatResult, CompiledExpression, Disposable, Evaluator, ModelSpec, PluginContext, PluginKind, PolicyView, Provider, Router, TierSpec } from '../plugin-sdk/plugin-api.ts';
import { readPolicySource, formatPath, type Path, type PolicySource } from './source.ts';
import { expressionKey, validateOptions, validatePolicyDocument, type ValidationSession } from './schema.ts';
import { GatewayAuth, validateAuth, type AuthData } from '../faces/auth.ts';
import { KeyLimits, LocalCounters, validateSharedState } from '../state/limits.ts';
import { SharedState, type RedisStateData } from '../state/shared-state.ts';
import { targetNamed, type Target } from './targets.ts';

// body-parser's own size parser (a dependency of express, untyped): "1mb" means what it means to express.json.
const parseBytes = (createRequire(import.meta.url)('bytes') as { parse(value: string | number): number | null }).parse;

/** Keys of the request view that a feature may not shadow. */
export const RESERVED_INPUT_NAMES = ['model', 'messages', 'parameters', 'metadata', 'headers', 'stream', 'features'];

// The shape of a policy once it has passed schemas/gateway.schema.json.
interface PolicyData {
  version: 1;
  server?: { port?: number; host?: string; body_limit?: string; header_allowlist?: string[]; upstream_timeout_ms?: number; shutdown_timeout_ms?: number; auth?: AuthData };
  plugins?: { paths?: string[] };
  providers: Record<string, { plugin: string; timeout_ms?: number; [option: string]: unknown }>;
  models: Record<string, { provider: string; upstream?: string; price: { input_per_mtok: number; output_per_mtok: number }; timeout_ms?: number }>;
  tiers: Array<{ name: string; models: string[] }>;
  features?: Record<string, string>;
  expressions?: Partial<ExpressionLimits>;
  routes: Record<string, RouteData>;
  analytics?: { decision_log?: { file?: string | null; console?: boolean; log_prompts?: boolean; flush_ms?: number } };
  resilience?: Partial<Resilience>;
  state?: { redis?: RedisStateData };
}

interface RouteData {
  description?: string;
  router: { plugin: string; [option: string]: unknown };
  default: string;
  fallback?: string;
  gate?: {
    evaluators: Array<{ plugin: string; name?: string; weight?: number; threshold?: number; when?: string; [option: string]: unknown }>;
    combine?: GateCombine;
    threshold?: number;
    max_escalations?: number;
    streaming?: 'buffer' | 'bypass';
  };
  speculate?: { when: string };
  shadow?: { sample: number };
  costs?: { under_routing: number; over_routing: number };
}

export type GateCombine = 'min' | 'mean' | 'weighted';

export interface GateEvaluator {
  /** Name in logs and headers. */
  readonly name: string;
  readonly evaluator: Evaluator;
  readonly weight: number;
  readonly threshold: number | null;
  readonly when: CompiledExpression | null;
}

export interface Gate {
  readonly evaluators: readonly GateEvaluator[];
  readonly combine: GateCombine;
  /** The combined score at or above which an answer passes. */
  readonly threshold: number;
  /** Where the threshold came from, for logs and `tiergate validate`. */
  readonly thresholdSource: 'policy' | 'costs' | 'default';
  readonly maxEscalations: number;
  readonly streaming: 'buffer' | 'bypass';
}

export interface RoutingCosts {
  readonly underRouting: number;
  readonly overRouting: number;
  /** u / (u + o): below this confidence, a cheaper tier is not worth the risk. */
  readonly breakEven: number;
}

export type { Target };

export interface RouteRuntime {
  readonly name: string;
  readonly description: string | undefined;
  readonly routerPlugin: string;
  readonly router: Router;
  readonly defaultTarget: Target;
  readonly fallback: Target;
  /** The route's always-best model: first model of the top tier. */
  readonly bestModel: string;
  readonly gate: Gate | null;
  /** When it holds for a decision, the routed tier and the next are called at once. */
  readonly speculate: CompiledExpression | null;
  readonly costs: RoutingCosts | null;
  /** Shadow evaluation (src/pipeline/shadow.ts): this share of eligible requests is also sent to bestModel, off the client's path. */
  readonly shadow: { readonly sample: number } | null;
  /** Fields the gate's evaluators need from every upstream call (e.g. logprobs). */
  readonly upstreamParameters: Readonly<Record<string, unknown>>;
}

export interface ModelRuntime {
  readonly spec: ModelSpec;
  readonly provider: Provider;
  readonly providerPlugin: string;
  /** Index of the tier holding the model, or null when it is in none. */
  readonly tier: number | null;
}

export interface ServerSettings {
  readonly port: number;
  readonly host: string;
  readonly bodyLimit: string;
  readonly headerAllowlist: readonly string[];
  readonly upstreamTimeoutMs: number;
  /** How long a SIGTERM waits for requests in flight before stopping them (server.shutdown_timeout_ms). */
  readonly shutdownTimeoutMs: number;
  /** Gateway keys and the admin token (server.auth); reloads with the policy. */
  readonly auth: GatewayAuth;
}

export interface BuildOptions {
  logger: winston.Logger;
  /** 'validate' creates and disposes plugins but opens no decision log. */
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
  /** Model health to share across reloads (the manager keeps one). */
  health?: ModelHealth;
  /** Per-key limit counts of this process, kept across reloads like health (the manager keeps one). */
  limitCounters?: LocalCounters;
  /**
   * Edits the policy data as read (interpolated, not yet validated) before anything
   * else sees it; errors still point into the file. `tiergate eval` swaps in recorded
   * answers this way.
   */
  rewrite?: (data: unknown) => unknown;
}

interface PluginSite {
  kind: PluginKind;
  /** Where the plugin's entry sits: providers.openai, routes.support.router. */
  at: Path;
  plugin: LoadedPlugin;
  options: Record<string, unknown>;
}

interface Instance {
  site: PluginSite;
  instance: Disposable;
}

const HOST_KEYS: Record<PluginKind, readonly string[]> = { provider: ['plugin', 'timeout_ms'], router: ['plugin'], evaluator: ['plugin', 'name', 'weight', 'threshold', 'when'] };

export const DEFAULT_RESILIENCE: Resilience = Object.freeze({ retries: 1, backoff_ms: 100, max_backoff_ms: 2000, failure_threshold: 3, cooldown_ms: 30_000 });
const DEFAULT_GATE_THRESHOLD = 0.5;

/** Everything a Runtime is made of. */
export interface RuntimeParts {
  version: string;
  file: string;
  policy: PolicyView;
  routes: ReadonlyMap<string, RouteRuntime>;
  models: ReadonlyMap<string, ModelRuntime>;
  features: ReadonlyArray<readonly [string, CompiledExpression]>;
  server: ServerSettings;
  resilience: Resilience;
  health: ModelHealth;
  /** Per-key request and spend limits (server.auth.keys[].limits). */
  limits: KeyLimits;
  /** The Redis connection of state.redis, when the policy has one. */
  shared: SharedState | null;
  decisionLog: DecisionLog | null;
  logPrompts: boolean;
  plugins: ReadonlyArray<{ kind: PluginKind; name: string; at: string }>;
  watchPaths: readonly string[];
  /** Files plugins read their configuration from (PluginContext.watchFile): a change reloads. */
  watchFiles: readonly string[];
}

export class Runtime {
  private inflight = 0;
  private retired = false;
  private disposal: Promise<void> | null = null;
  private retiredResolve: (() => void) | null = null;
  readonly loadedAt = new Date();
  readonly parseJson: RequestHandler;
  /** server.body_limit in bytes, as body-parser reads it (the chat path's own reader, src/faces/openai-chat/handler.ts). */
  readonly bodyLimitBytes: number;

  readonly version: string;
  readonly file: string;
  readonly policy: PolicyView;
  readonly routes: ReadonlyMap<string, RouteRuntime>;
  readonly models: ReadonlyMap<string, ModelRuntime>;
  readonly features: ReadonlyArray<readonly [string, CompiledExpression]>;
  readonly server: ServerSettings;
  readonly resilience: Resilience;
  /** Shared with the runtimes before and after this one: cooldowns survive reloads. */
  readonly health: ModelHealth;
  readonly limits: KeyLimits;
  readonly shared: SharedState | null;
  readonly decisionLog: DecisionLog | null;
  readonly logPrompts: boolean;
  readonly plugins: ReadonlyArray<{ kind: PluginKind; name: string; at: string }>;
  readonly watchPaths: readonly string[];
  readonly watchFiles: readonly string[];

  constructor(
    parts: RuntimeParts,
    private readonly instances: readonly Instance[],
    private readonly logger: winston.Logger,
  ) {
    this.version = parts.version;
    this.file = parts.file;
    this.policy = parts.policy;
    this.routes = parts.routes;
    this.models = parts.models;
    this.features = parts.features;
    this.server = parts.server;
    this.resilience = parts.resilience;
    this.health = parts.health;
    this.limits = parts.limits;
    this.shared = parts.shared;
    this.decisionLog = parts.decisionLog;
    this.logPrompts = parts.logPrompts;
    this.plugins = Object.freeze([...parts.plugins]);
    this.watchPaths = parts.watchPaths;
    this.watchFiles = Object.freeze([...parts.watchFiles]);
    // Any content type is read as JSON: curl -d sends form encoding by default, and a
    // clear JSON error beats a confusing "missing messages". Not strict: valid JSON that
    // is not an object ("hi", 42) is a shape error checkChatBody reports, not a syntax error.
    this.parseJson = express.json({ limit: parts.server.bodyLimit, type: () => true, strict: false });
    this.bodyLimitBytes = parseBytes(parts.server.bodyLimit) ?? 100 * 1024;
  }

  get tiers(): readonly TierSpec[] {
    return this.policy.tiers;
  }

  get inflightRequests(): number {
    return this.inflight;
  }

  /** A request starts using this runtime. */
  enter(): void {
    this.inflight++;
  }

  /** A request stops using this runtime. */
  leave(): void {
    this.inflight--;
    if (this.inflight === 0 && this.retired) void this.dispose();
  }

  /** No new requests will start here; dispose once the in-flight ones end. */
  retire(): Promise<void> {
    this.retired = true;
    if (this.inflight === 0) return this.dispose();
    return new Promise((resolve) => {
      this.retiredResolve = resolve;
    });
  }

  /** Disposes every plugin instance and closes the decision log. Idempotent. */
  dispose(): Promise<void> {
    if (!this.disposal) {
      this.disposal = (async () => {
        await disposeAll(this.instances, this.logger);
        this.shared?.dispose();
        await this.decisionLog?.close();
      })();
      void this.disposal.then(() => this.retiredResolve?.());
    }
    return this.disposal;
  }
}

async function disposeAll(instances: readonly Instance[], logger: winston.Logger): Promise<void> {
  // Routers before providers: the reverse of creation.
  for (const { site, instance } of [...instances].reverse()) {
    try {
      await instance.dispose();
    } catch (err) {
      logger.warn('plugin dispose failed', { plugin: `${site.kind}:${site.plugin.discovered.name}`, at: formatPath(site.at), error: errorMessage(err) });
    }
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
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

/** Errors with the environment's values replaced by their ${NAME}: some messages quote what they found. */
function redacted(errors: TiergateError[], source: PolicySource): TiergateError[] {
  for (const error of errors) {
    error.message = source.redact(error.message);
    for (const [name, value] of Object.entries(error.params)) if (typeof value === 'string') error.params[name] = source.redact(value);
    if (error.location?.path) error.location = { ...error.location, path: source.redact(error.location.path) };
  }
  return errors;
}

function collectErrors(caught: unknown): TiergateError[] {
  if (Array.isArray(caught)) return caught as TiergateError[];
  if (caught instanceof PolicyErrors) return [...caught.errors];
  if (caught instanceof TiergateError) return [caught];
  throw caught;
}

/** Parses, validates, compiles and creates a policy. Throws PolicyErrors with every problem found. */
export async function buildRuntime(configFile: string, options: BuildOptions): Promise<Runtime> {
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
  const data = (isRecord(raw) ? raw : {}) as unknown as PolicyData;

  const session: ValidationSession = {
    names: { models: namesOf(data.models), tiers: tierNamesOf(data.tiers), providers: namesOf(data.providers), routes: namesOf(data.routes) },
    expressions: new Map(),
    files: { baseDir: source.directory, folders: [source.directory, ...(options.allowedPaths ?? []).map((p) => path.resolve(p))] },
    limits: expressionLimitsOf(raw),
  };
  errors.push(...validatePolicyDocument(source, session));
  const shapeIsValid = errors.length === 0;

  // Plugin folders: the built-ins, then any the policy lists.
  const { roots, missing } = pluginRoots(raw, source, options.builtinPluginRoot);
  for (const { index, folder } of missing) errors.push(new TiergateError('TG_ERR_PLUGIN_PATH', { reason: `plugin folder ${folder} does not exist` }, { location: at(['plugins', 'paths', index]) }));
  let catalogue: PluginCatalogue | null = null;
  try {
    catalogue = discoverPlugins(roots);
  } catch (caught) {
    errors.push(...collectErrors(caught));
  }

  const policyView = shapeIsValid ? makePolicyView(data) : null;
  const sites: PluginSite[] = [];
  if (catalogue) {
    const candidates: Array<{ kind: PluginKind; at: Path; entry: unknown }> = [
      ...Object.entries(isRecord(data.providers) ? data.providers : {}).map(([name, entry]) => ({ kind: 'provider' as const, at: ['providers', name], entry })),
      ...Object.entries(isRecord(data.routes) ? data.routes : {}).map(([name, route]) => ({ kind: 'router' as const, at: ['routes', name, 'router'], entry: isRecord(route) ? route.router : undefined })),
      ...Object.entries(isRecord(data.routes) ? data.routes : {}).flatMap(([name, route]) => {
        const evaluators = isRecord(route) && isRecord(route.gate) && Array.isArray(route.gate.evaluators) ? route.gate.evaluators : [];
        return evaluators.map((entry: unknown, i: number) => ({ kind: 'evaluator' as const, at: ['routes', name, 'gate', 'evaluators', i], entry }));
      }),
    ];
    for (const candidate of candidates) {
      const site = await checkPluginSite(candidate, catalogue, source, session, policyView, errors);
      if (site) sites.push(site);
    }
  }

  if (shapeIsValid) errors.push(...checkCrossReferences(data, source), ...validateAuth(data.server, source, options.listenHost), ...validateSharedState(data, source));
  if (shapeIsValid && options.mode !== 'validate') errors.push(...checkDecisionLogFile(data, source));
  if (errors.length > 0) throw new PolicyErrors(redacted(errors, source));
  const view = policyView as PolicyView;

  // Create aside. On any failure, dispose whatever was created and keep nothing. A
  // provider no model uses is validated but not started (no idle clients, no warnings
  // about keys it will never send).
  const usedProviders = new Set([...view.models.values()].map((m) => m.provider));
  const instances: Instance[] = [];
  const createErrors: TiergateError[] = [];
  const built: { runtime: Runtime | null; watchFiles: Set<string> } = { runtime: null, watchFiles: new Set() };
  for (const site of sites) {
    if (site.kind === 'provider' && !usedProviders.has(String(site.at[1]))) continue;
    const ctx = pluginContext(site, source, session, view, options.logger, built);
    try {
      const instance = await site.plugin.module.create(site.options, ctx);
      if (!instance || typeof instance.dispose !== 'function') throw new TiergateError('TG_ERR_PLUGIN_INVALID', { reason: `create() of ${site.kind} plugin "${site.plugin.discovered.name}" did not return an instance with dispose()` }, { location: at(site.at) });
      instances.push({ site, instance });
    } catch (err) {
      createErrors.push(
        err instanceof TiergateError
          ? Object.assign(err, { location: err.location ?? at(site.at) })
          : new TiergateError('TG_ERR_PLUGIN_CREATE', { reason: errorMessage(err) }, { location: at([...site.at, 'plugin']), cause: err }),
      );
    }
  }
  if (createErrors.length > 0) {
    await disposeAll(instances, options.logger);
    throw new PolicyErrors(redacted(createErrors, source));
  }

  let shared: SharedState | null = null;
  try {
    if (data.state?.redis && options.mode !== 'validate') shared = await SharedState.open(data.state.redis, at(['state', 'redis']), options.logger);
    const watchFiles = [...built.watchFiles].sort();
    built.runtime = assemble(data, source, view, session, instances, withFiles(versionOf(source, dataAsRead, catalogue as PluginCatalogue), watchFiles), roots, watchFiles, options, shared);
    // The newest policy decides whether cooldowns are shared between replicas.
    if (options.mode !== 'validate') {
      if (shared) shared.shareCooldowns(built.runtime.health);
      else built.runtime.health.share(null);
    }
    return built.runtime;
  } catch (err) {
    shared?.dispose();
    await disposeAll(instances, options.logger);
    throw err;
  }
}

async function checkPluginSite(
  candidate: { kind: PluginKind; at: Path; entry: unknown },
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
    errors.push(new TiergateError('TG_ERR_PLUGIN_UNKNOWN', { kind, name, hint: known.length ? ` (available: ${known.join(', ')})` : ' (none installed)' }, { location: source.locate([...at, 'plugin']) }));
    return null;
  }
  let plugin: LoadedPlugin;
  try {
    plugin = await loadPlugin(discovered);
  } catch (caught) {
    errors.push(...collectErrors(caught));
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

/** The policy version: a content hash of the file, its interpolated values and every plugin. */
function versionOf(source: PolicySource, dataAsRead: string, catalogue: PluginCatalogue): string {
  return createHash('sha256').update(source.text).update('\0').update(dataAsRead).update('\0').update(catalogue.hash).digest('hex').slice(0, 12);
}

/** The version extended by the content of the files plugins read (model artifacts), when there are any. */
function withFiles(version: string, files: readonly string[]): string {
  if (files.length === 0) return version;
  const hash = createHash('sha256').update(version);
  for (const file of files) {
    hash.update('\0').update(file).update('\0');
    try {
      hash.update(readFileSync(file));
    } catch {
      hash.update('(unreadable)');
    }
  }
  return hash.digest('hex').slice(0, 12);
}

function pluginRoots(data: unknown, source: PolicySource, builtinRoot: string | undefined): { roots: string[]; missing: Array<{ index: number; folder: string }> } {
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

/**
 * The version the policy on disk would have, without building it: lets a reload with
 * nothing changed be skipped. null when the policy cannot even be read.
 */
export function policyFingerprint(configFile: string, options: Pick<BuildOptions, 'env' | 'builtinPluginRoot'>, watchFiles: readonly string[] = []): string | null {
  try {
    const source = readPolicySource(configFile, options.env);
    return withFiles(versionOf(source, JSON.stringify(source.data), discoverPlugins(pluginRoots(source.data, source, options.builtinPluginRoot).roots)), watchFiles);
  } catch {
    return null;
  }
}

function makePolicyView(data: PolicyData): PolicyView {
  const upstreamTimeout = data.server?.upstream_timeout_ms ?? 60_000;
  const models = new Map<string, ModelSpec>();
  for (const [name, model] of Object.entries(data.models)) {
    models.set(name, Object.freeze({
      name,
      provider: model.provider,
      upstream: model.upstream ?? name,
      price: Object.freeze({ ...model.price }),
      timeout_ms: model.timeout_ms ?? data.providers[model.provider]?.timeout_ms ?? upstreamTimeout,
    }));
  }
  return Object.freeze({
    models,
    tiers: Object.freeze(data.tiers.map((t) => Object.freeze({ name: t.name, models: Object.freeze([...t.models]) }))),
    featureNames: Object.freeze(Object.keys(data.features ?? {})),
  });
}

/**
 * The decision log must open before the policy goes live: a path that cannot (a folder,
 * a name too long, a file where a folder should be) would otherwise fail inside the
 * log's stream once the policy serves, taking the process down.
 */
function checkDecisionLogFile(data: PolicyData, source: PolicySource): TiergateError[] {
  const file = data.analytics?.decision_log?.file === undefined ? 'logs/decisions.jsonl' : data.analytics.decision_log.file;
  if (!file) return [];
  const filename = path.resolve(source.directory, file);
  try {
    mkdirSync(path.dirname(filename), { recursive: true });
    closeSync(openSync(filename, 'a'));
    return [];
  } catch (err) {
    const reason = `the decision log ${filename} cannot be opened for writing: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`;
    return [new TiergateError('TG_ERR_CONFIG_PATH', { reason }, { location: source.locate(['analytics', 'decision_log', 'file']) })];
  }
}

/** Rules between sections that the schema cannot express. */
function checkCrossReferences(data: PolicyData, source: PolicySource): TiergateError[] {
  const errors: TiergateError[] = [];
  const reference = (reason: string, p: Path, key = false) => errors.push(new TiergateError('TG_ERR_CONFIG_REFERENCE', { reason }, { location: source.locate(p, { key }) }));
  const tierOfModel = new Map<string, string>();
  const tierNames = new Set<string>();
  data.tiers.forEach((tier, i) => {
    if (tierNames.has(tier.name)) reference(`tier "${tier.name}" is declared twice; tier names must be unique`, ['tiers', i, 'name']);
    tierNames.add(tier.name);
    if (tier.name in data.models) reference(`tier "${tier.name}" has the same name as a model; routes could not tell them apart`, ['tiers', i, 'name']);
    tier.models.forEach((model, j) => {
      const earlier = tierOfModel.get(model);
      if (earlier !== undefined && earlier !== tier.name) reference(`model "${model}" is already in tier "${earlier}"; a model belongs to one tier`, ['tiers', i, 'models', j]);
      tierOfModel.set(model, tier.name);
    });
  });
  for (const [name, route] of Object.entries(data.routes)) {
    if (route.speculate && !route.gate) errors.push(new TiergateError('TG_ERR_CONFIG_RULE', { reason: 'speculate needs a gate: the cheap answer is served only when it passes one' }, { location: source.locate(['routes', name, 'speculate'], { key: true }) }));
    if (route.shadow && !route.gate) errors.push(new TiergateError('TG_ERR_CONFIG_RULE', { reason: 'shadow needs a gate to compare answers: both are scored by the route\'s gate evaluators' }, { location: source.locate(['routes', name, 'shadow'], { key: true }) }));
  }
  for (const name of Object.keys(data.routes)) {
    if (name in data.models) reference(`route "${name}" has the same name as a model; "model": "${name}" in a request would be ambiguous`, ['routes', name], true);
  }
  for (const name of Object.keys(data.features ?? {})) {
    if (RESERVED_INPUT_NAMES.includes(name)) errors.push(new TiergateError('TG_ERR_CONFIG_FEATURE_NAME', { reason: `feature name "${name}" is reserved for the request itself (${RESERVED_INPUT_NAMES.join(', ')})` }, { location: source.locate(['features', name], { key: true }) }));
  }
  return errors;
}

function pluginContext(site: PluginSite, source: PolicySource, session: ValidationSession, view: PolicyView, logger: winston.Logger, built: { runtime: Runtime | null; watchFiles: Set<string> }): PluginContext {
  const atText = formatPath(site.at);
  return {
    at: atText,
    baseDir: source.directory,
    policy: view,
    logger: childLogger(logger, { plugin: `${site.kind}:${site.plugin.discovered.name}`, at: atText }),
    expression(expressionSource: string, optionPath: ReadonlyArray<string | number>): CompiledExpression {
      const key = expressionKey(expressionSource, [...site.at, ...optionPath]);
      const compiled = session.expressions.get(key);
      if (compiled) return compiled;
      // Not declared with "x-jsonata" in the plugin's schema: compile now, still located.
      const result = compileExpression(expressionSource, { limits: session.limits, location: source.locate([...site.at, ...optionPath]) });
      if ('expression' in result) {
        session.expressions.set(key, result.expression);
        return result.expression;
      }
      throw new TiergateError('TG_ERR_CONFIG_JSONATA', { reason: result.problem.message }, { location: source.locate([...site.at, ...optionPath], { offsetInScalar: result.problem.offset }) });
    },
    optionError(optionPath: ReadonlyArray<string | number>, message: string): Error {
      return new TiergateError('TG_ERR_PLUGIN_OPTIONS', { reason: message }, { location: source.locate([...site.at, ...optionPath]) });
    },
    watchFile(file: string): void {
      built.watchFiles.add(path.resolve(source.directory, file));
    },
    async callModel(model: string, request: Omit<ChatRequest, 'model'>, signal: AbortSignal): Promise<ChatResult> {
      const runtime = built.runtime;
      if (!runtime) throw new Error(`${atText}: callModel is available once the policy is built, not inside create()`);
      const target = runtime.models.get(model);
      if (!target) throw new Error(`${atText}: no model named "${model}"`);
      const timeout = AbortSignal.timeout(target.spec.timeout_ms);
      return target.provider.complete({ ...request, model: target.spec.upstream } as ChatRequest, { model: target.spec, signal: AbortSignal.any([signal, timeout]) });
    },
  };
}

function targetOf(name: string, view: PolicyView): Target {
  return targetNamed(name, view.tiers);
}

function assemble(data: PolicyData, source: PolicySource, view: PolicyView, session: ValidationSession, instances: Instance[], version: string, roots: string[], watchFiles: readonly string[], options: BuildOptions, shared: SharedState | null): Runtime {
  const instanceAt = (p: Path) => instances.find((i) => formatPath(i.site.at) === formatPath(p));
  const tierOf = new Map<string, number>();
  view.tiers.forEach((tier, i) => tier.models.forEach((m) => tierOf.set(m, i)));

  const models = new Map<string, ModelRuntime>();
  for (const [name, spec] of view.models) {
    const provider = instanceAt(['providers', spec.provider]) as Instance;
    models.set(name, Object.freeze({ spec, provider: provider.instance as Provider, providerPlugin: provider.site.plugin.discovered.name, tier: tierOf.get(name) ?? null }));
  }
  const topTier = view.tiers[view.tiers.length - 1];
  const routes = new Map<string, RouteRuntime>();
  for (const [name, route] of Object.entries(data.routes)) {
    const router = instanceAt(['routes', name, 'router']) as Instance;
    routes.set(name, Object.freeze({
      name,
      description: route.description,
      routerPlugin: route.router.plugin,
      router: router.instance as Router,
      defaultTarget: targetOf(route.default, view),
      fallback: route.fallback ? targetOf(route.fallback, view) : ({ kind: 'tier', tier: view.tiers.length - 1 } as const),
      bestModel: topTier.models[0],
      shadow: route.shadow ? Object.freeze({ sample: route.shadow.sample }) : null,
      ...compileGate(name, route, instanceAt, session),
    }));
  }
  const features = Object.entries(data.features ?? {}).map(([name, expr]) => Object.freeze([name, session.expressions.get(expressionKey(expr, ['features', name])) as CompiledExpression] as const));
  const auth = new GatewayAuth(data.server?.auth);
  const server: ServerSettings = Object.freeze({
    port: data.server?.port ?? 8080,
    // Without keys, loopback only (validateAuth refuses any other host).
    host: data.server?.host ?? (auth.hasKeys || auth.allowUnauthenticated ? '0.0.0.0' : '127.0.0.1'),
    bodyLimit: data.server?.body_limit ?? '1mb',
    headerAllowlist: Object.freeze((data.server?.header_allowlist ?? []).map((h) => h.toLowerCase())),
    upstreamTimeoutMs: data.server?.upstream_timeout_ms ?? 60_000,
    shutdownTimeoutMs: data.server?.shutdown_timeout_ms ?? 25_000,
    auth,
  });
  const logSettings: DecisionLogSettings = { file: data.analytics?.decision_log?.file === undefined ? 'logs/decisions.jsonl' : data.analytics.decision_log.file, console: data.analytics?.decision_log?.console ?? false, flushMs: data.analytics?.decision_log?.flush_ms };
  const decisionLog = options.mode === 'validate' ? null : new DecisionLog(logSettings, source.directory, (err) => options.logger.error('decision log write failed', { file: logSettings.file, error: errorMessage(err) }));
  return new Runtime(
    {
      version,
      file: source.displayName,
      policy: view,
      routes,
      models,
      features,
      server,
      resilience: Object.freeze({ ...DEFAULT_RESILIENCE, ...data.resilience }),
      health: options.health ?? new ModelHealth(),
      limits: new KeyLimits(data.server?.auth?.keys ?? [], data.server?.auth?.limits_when_redis_down ?? 'per_replica', options.limitCounters ?? new LocalCounters(), shared),
      shared,
      decisionLog,
      logPrompts: data.analytics?.decision_log?.log_prompts ?? false,
      plugins: instances.map(({ site }) => ({ kind: site.kind, name: site.plugin.discovered.name, at: formatPath(site.at) })),
      watchPaths: [source.absolutePath, ...roots],
      watchFiles,
    },
    instances,
    options.logger,
  );
}

/** The gate, speculation and costs of a route, compiled. */
function compileGate(
  routeName: string,
  route: RouteData,
  instanceAt: (p: Path) => Instance | undefined,
  session: ValidationSession,
): Pick<RouteRuntime, 'gate' | 'speculate' | 'costs' | 'upstreamParameters'> {
  const costs: RoutingCosts | null = route.costs
    ? Object.freeze({ underRouting: route.costs.under_routing, overRouting: route.costs.over_routing, breakEven: route.costs.under_routing / (route.costs.under_routing + route.costs.over_routing) })
    : null;
  const upstreamParameters: Record<string, unknown> = {};
  let gate: Gate | null = null;
  if (route.gate) {
    const evaluators = route.gate.evaluators.map((entry, i): GateEvaluator => {
      const at = ['routes', routeName, 'gate', 'evaluators', i];
      const evaluator = (instanceAt(at) as Instance).instance as Evaluator;
      Object.assign(upstreamParameters, evaluator.upstreamParameters ?? {});
      return Object.freeze({
        name: entry.name ?? entry.plugin,
        evaluator,
        weight: entry.weight ?? 1,
        threshold: entry.threshold ?? null,
        when: entry.when ? (session.expressions.get(expressionKey(entry.when, [...at, 'when'])) as CompiledExpression) : null,
      });
    });
    const threshold = route.gate.threshold ?? costs?.breakEven ?? DEFAULT_GATE_THRESHOLD;
    gate = Object.freeze({
      evaluators: Object.freeze(evaluators),
      combine: route.gate.combine ?? 'min',
      threshold,
      thresholdSource: route.gate.threshold !== undefined ? 'policy' : costs ? 'costs' : 'default',
      maxEscalations: route.gate.max_escalations ?? 1,
      streaming: route.gate.streaming ?? 'buffer',
    });
  }
  return {
    gate,
    speculate: route.speculate ? (session.expressions.get(expressionKey(route.speculate.when, ['routes', routeName, 'speculate', 'when'])) as CompiledExpression) : null,
    costs,
    upstreamParameters: Object.freeze(upstreamParameters),
  };
}
