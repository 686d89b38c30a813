// Stage 4 of the policy compiler, and its driver: buildRuntime runs every stage on one
// policy file and returns a Runtime (runtime.ts) or throws every problem found, located.
//
//   source.ts        read the file: YAML, ${VAR} interpolation, locations
//   schema.ts        the shape (schemas/gateway.schema.json): fills in defaults, compiles JSONata
//   plugin-sites.ts  each plugin entry: its plugin found, its options checked
//   semantic.ts      the rules between fields
//   compile.ts       (here) secrets registered, plugins created, expressions, gates and
//                    routes assembled into a Runtime
//   reload.ts        after: the atomic swap of the runtime in force
//
// Nothing before this stage has side effects: the policy's secrets are registered for
// redaction here, once the policy is valid, before any plugin is created.
import path from 'node:path';
import type winston from 'winston';
import { PolicyErrors, TiergateError, errorMessage, type SourceLocation } from '../common/errors.ts';
import { redactValues, registerSecret } from '../common/secrets.ts';
import { compileExpression, type ExpressionLimits } from '../expressions/compile.ts';
import { childLogger } from '../observe/logger.ts';
import { DecisionLog, type DecisionLogSettings } from '../observe/decision-log.ts';
import { ModelHealth } from '../state/health.ts';
import { GatewayAuth } from '../faces/auth.ts';
import { KeyLimits, LocalCounters } from '../state/limits.ts';
import { SharedState } from '../state/shared-state.ts';
import type { ChatRequest, ChatResult, CompiledExpression, Evaluator, ModelSpec, PluginContext, PolicyView, Provider, Router } from '../plugin-sdk/plugin-api.ts';
import { DEFAULT_EXPRESSION_LIMITS } from './defaults.ts';
import { discoverPlugins, type PluginCatalogue } from './plugins.ts';
import type { PolicyData, RouteData } from './policy-data.ts';
import { checkPluginSite, collectErrors, isRecord, pluginEntries, pluginRoots, type PluginSite } from './plugin-sites.ts';
import { Runtime, disposeAll, type Gate, type GateEvaluator, type ModelRuntime, type PluginInstance, type RouteRuntime, type RoutingCosts, type ServerSettings, type Target } from './runtime.ts';
import { expressionKey, validatePolicyDocument, type ValidationSession } from './schema.ts';
import { checkSemantics } from './semantic.ts';
import { readPolicySource, formatPath, type Path, type PolicySource } from './source.ts';
import { versionOf, withFiles } from './version.ts';

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

// A gate's threshold when the policy sets none and has no costs to derive one from: not
// a schema default, since whether the policy wrote a threshold decides where it comes from.
const DEFAULT_GATE_THRESHOLD = 0.5;

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
function redacted(errors: TiergateError[], source: PolicySource, secrets: readonly string[]): TiergateError[] {
  const hide = (text: string) => source.redact(redactValues(text, secrets));
  for (const error of errors) {
    error.message = hide(error.message);
    for (const [name, value] of Object.entries(error.params)) if (typeof value === 'string') error.params[name] = hide(value);
    if (error.location?.path) error.location = { ...error.location, path: hide(error.location.path) };
  }
  return errors;
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
  for (const { index, folder } of missing) errors.push(new TiergateError('TG_ERR_PLUGIN_PATH', { reason: `plugin folder ${folder} does not exist` }, { location: at(['plugins', 'paths', index]) }));
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
  const secrets = policySecrets(session, raw);
  if (errors.length > 0 || !data || !policyView || !catalogue) throw new PolicyErrors(redacted(errors, source, secrets));
  const view = policyView;
  // Valid: from here on the policy's secrets are kept out of every output, before any
  // plugin is created (a provider may log or throw its key).
  for (const secret of secrets) registerSecret(secret);

  // Create aside. On any failure, dispose whatever was created and keep nothing. A
  // provider no model uses is validated but not started (no idle clients, no warnings
  // about keys it will never send).
  const usedProviders = new Set([...view.models.values()].map((m) => m.provider));
  const instances: PluginInstance[] = [];
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
    throw new PolicyErrors(redacted(createErrors, source, secrets));
  }

  let shared: SharedState | null = null;
  try {
    if (data.state?.redis && options.mode !== 'validate') shared = await SharedState.open(data.state.redis, at(['state', 'redis']), options.logger);
    const watchFiles = [...built.watchFiles].sort();
    built.runtime = assemble(data, source, view, session, instances, withFiles(versionOf(source, dataAsRead, catalogue), watchFiles), roots, watchFiles, options, shared);
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

function makePolicyView(data: PolicyData): PolicyView {
  const upstreamTimeout = data.server.upstream_timeout_ms;
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
    featureNames: Object.freeze(Object.keys(data.features)),
  });
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
  const tier = view.tiers.findIndex((t) => t.name === name);
  return tier >= 0 ? { kind: 'tier', tier } : { kind: 'model', model: name };
}

function assemble(data: PolicyData, source: PolicySource, view: PolicyView, session: ValidationSession, instances: PluginInstance[], version: string, roots: string[], watchFiles: readonly string[], options: BuildOptions, shared: SharedState | null): Runtime {
  const instanceAt = (p: Path) => instances.find((i) => formatPath(i.site.at) === formatPath(p));
  const tierOf = new Map<string, number>();
  view.tiers.forEach((tier, i) => tier.models.forEach((m) => tierOf.set(m, i)));

  const models = new Map<string, ModelRuntime>();
  for (const [name, spec] of view.models) {
    const provider = instanceAt(['providers', spec.provider]) as PluginInstance;
    models.set(name, Object.freeze({ spec, provider: provider.instance as Provider, providerPlugin: provider.site.plugin.discovered.name, tier: tierOf.get(name) ?? null }));
  }
  const topTier = view.tiers[view.tiers.length - 1];
  const routes = new Map<string, RouteRuntime>();
  for (const [name, route] of Object.entries(data.routes)) {
    const router = instanceAt(['routes', name, 'router']) as PluginInstance;
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
  const features = Object.entries(data.features).map(([name, expr]) => Object.freeze([name, session.expressions.get(expressionKey(expr, ['features', name])) as CompiledExpression] as const));
  const auth = new GatewayAuth(data.server.auth);
  const server: ServerSettings = Object.freeze({
    port: data.server.port,
    // Without keys, loopback only (checkAuth in semantic.ts refuses any other host).
    host: data.server.host ?? (auth.hasKeys || auth.allowUnauthenticated ? '0.0.0.0' : '127.0.0.1'),
    bodyLimit: data.server.body_limit,
    headerAllowlist: Object.freeze(data.server.header_allowlist.map((h) => h.toLowerCase())),
    upstreamTimeoutMs: data.server.upstream_timeout_ms,
    shutdownTimeoutMs: data.server.shutdown_timeout_ms,
    auth,
  });
  const decisionLogData = data.analytics.decision_log;
  const logSettings: DecisionLogSettings = { file: decisionLogData.file, console: decisionLogData.console, flushMs: decisionLogData.flush_ms };
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
      resilience: Object.freeze({ ...data.resilience }),
      health: options.health ?? new ModelHealth(),
      // limits_when_redis_down has no schema default: semantic.ts must see whether the policy wrote it.
      limits: new KeyLimits(data.server.auth?.keys ?? [], data.server.auth?.limits_when_redis_down ?? 'per_replica', options.limitCounters ?? new LocalCounters(), shared),
      shared,
      decisionLog,
      logPrompts: decisionLogData.log_prompts,
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
  instanceAt: (p: Path) => PluginInstance | undefined,
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
      const evaluator = (instanceAt(at) as PluginInstance).instance as Evaluator;
      Object.assign(upstreamParameters, evaluator.upstreamParameters ?? {});
      return Object.freeze({
        name: entry.name ?? entry.plugin,
        evaluator,
        weight: entry.weight,
        threshold: entry.threshold ?? null,
        when: entry.when ? (session.expressions.get(expressionKey(entry.when, [...at, 'when'])) as CompiledExpression) : null,
      });
    });
    const threshold = route.gate.threshold ?? costs?.breakEven ?? DEFAULT_GATE_THRESHOLD;
    gate = Object.freeze({
      evaluators: Object.freeze(evaluators),
      combine: route.gate.combine,
      threshold,
      thresholdSource: route.gate.threshold !== undefined ? 'policy' : costs ? 'costs' : 'default',
      maxEscalations: route.gate.max_escalations,
      streaming: route.gate.streaming,
    });
  }
  return {
    gate,
    speculate: route.speculate ? (session.expressions.get(expressionKey(route.speculate.when, ['routes', routeName, 'speculate', 'when'])) as CompiledExpression) : null,
    costs,
    upstreamParameters: Object.freeze(upstreamParameters),
  };
}
