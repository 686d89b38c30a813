// Stage 4 of the policy compiler: buildRuntime turns one policy file into a Runtime
// (runtime.ts), or throws every problem found, located. Before: validate.ts runs stages
// 1 to 3 (source.ts, schema.ts, plugin-sites.ts, semantic.ts) and returns the valid
// policy. Here: its secrets are registered, its plugins created aside, and its routes,
// gates, models and settings assembled. After: reload.ts swaps the runtime in.
//
// Nothing before this stage has side effects: the policy's secrets are registered for
// redaction here, once the policy is valid, before any plugin is created.
import path from 'node:path';
import type winston from 'winston';
import { PolicyErrors, TiergateError, errorMessage, type SourceLocation } from '../common/errors.ts';
import { registerSecret } from '../common/secrets.ts';
import { compileExpression } from '../expressions/compile.ts';
import { childLogger } from '../observe/logger.ts';
import { DecisionLog, type DecisionLogSettings } from '../observe/decision-log.ts';
import { ModelHealth } from '../state/health.ts';
import { GatewayAuth } from './gateway-auth.ts';
import { KeyLimits, LocalCounters } from '../state/limits.ts';
import { SharedState } from '../state/shared-state.ts';
import type { ChatRequest, ChatResult, CompiledExpression, Evaluator, PluginContext, PolicyView, Provider, Router } from '../plugin-contract/plugin-api.ts';
import type { GateEvaluatorData, PolicyData, RouteData } from '../policy-shape/policy-data.ts';
import type { PluginSite } from './plugin-sites.ts';
import {
  Runtime,
  disposeAll,
  type Gate,
  type GateEvaluator,
  type InputChecks,
  type ModelRuntime,
  type PluginInstance,
  type RouteRuntime,
  type RoutingCosts,
  type ServerSettings,
  type Target,
} from './runtime.ts';
import { expressionKey, type ValidationSession } from './schema.ts';
import { formatPath, type Path, type PolicySource } from './source.ts';
import { redacted, validatePolicy, type ValidateOptions } from './validate.ts';
import { withFiles } from './version.ts';
import { targetNamed } from './targets.ts';

export interface BuildOptions extends ValidateOptions {
  logger: winston.Logger;
  /** 'validate' creates and disposes plugins but opens no decision log. */
  mode?: 'serve' | 'validate';
  /** Model health to share across reloads (the manager keeps one). */
  health?: ModelHealth;
  /** Per-key limit counts of this process, kept across reloads like health (the manager keeps one). */
  limitCounters?: LocalCounters;
}

// A gate's threshold when the policy sets none and has no costs to derive one from: not
// a schema default, since whether the policy wrote a threshold decides where it comes from.
const DEFAULT_GATE_THRESHOLD = 0.5;

/** Parses, validates, compiles and creates a policy. Throws PolicyErrors with every problem found. */
export async function buildRuntime(configFile: string, options: BuildOptions): Promise<Runtime> {
  const valid = await validatePolicy(configFile, options);
  const { source, data, view, session, sites, secrets } = valid;
  const at = (p: Path, key = false): SourceLocation => source.locate(p, { key });
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
      if (!instance || typeof instance.dispose !== 'function')
        throw new TiergateError(
          'TG_ERR_PLUGIN_INVALID',
          { reason: `create() of ${site.kind} plugin "${site.plugin.discovered.name}" did not return an instance with dispose()` },
          { location: at(site.at) },
        );
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
    built.runtime = assemble(data, source, view, session, instances, withFiles(valid.version, watchFiles), valid.pluginRoots, watchFiles, options, shared);
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

function pluginContext(
  site: PluginSite,
  source: PolicySource,
  session: ValidationSession,
  view: PolicyView,
  logger: winston.Logger,
  built: { runtime: Runtime | null; watchFiles: Set<string> },
): PluginContext {
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
      throw new TiergateError(
        'TG_ERR_CONFIG_JSONATA',
        { reason: result.problem.message },
        { location: source.locate([...site.at, ...optionPath], { offsetInScalar: result.problem.offset }) },
      );
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
      return target.provider.complete({ ...request, model: target.spec.upstream } as ChatRequest, {
        model: target.spec,
        signal: AbortSignal.any([signal, timeout]),
      });
    },
  };
}

function targetOf(name: string, view: PolicyView): Target {
  return targetNamed(name, view.tiers);
}

function assemble(
  data: PolicyData,
  source: PolicySource,
  view: PolicyView,
  session: ValidationSession,
  instances: PluginInstance[],
  version: string,
  roots: string[],
  watchFiles: readonly string[],
  options: BuildOptions,
  shared: SharedState | null,
): Runtime {
  const instanceAt = (p: Path) => instances.find((i) => formatPath(i.site.at) === formatPath(p));
  const tierOf = new Map<string, number>();
  view.tiers.forEach((tier, i) => tier.models.forEach((m) => tierOf.set(m, i)));

  const models = new Map<string, ModelRuntime>();
  for (const [name, spec] of view.models) {
    const provider = instanceAt(['providers', spec.provider]) as PluginInstance;
    models.set(
      name,
      Object.freeze({ spec, provider: provider.instance as Provider, providerPlugin: provider.site.plugin.discovered.name, tier: tierOf.get(name) ?? null }),
    );
  }
  const topTier = view.tiers[view.tiers.length - 1];
  const routes = new Map<string, RouteRuntime>();
  for (const [name, route] of Object.entries(data.routes)) {
    const router = instanceAt(['routes', name, 'router']) as PluginInstance;
    routes.set(
      name,
      Object.freeze({
        name,
        description: route.description,
        routerPlugin: route.router.plugin,
        router: router.instance as Router,
        defaultTarget: targetOf(route.default, view),
        fallback: route.fallback ? targetOf(route.fallback, view) : route.gate ? ({ kind: 'tier', tier: view.tiers.length - 1 } as const) : null,
        bestModel: topTier.models[0],
        embeddings: route.embeddings ?? null,
        shadow: route.shadow ? Object.freeze({ sample: route.shadow.sample }) : null,
        ...compileGate(name, route, instanceAt, session),
      }),
    );
  }
  const features = Object.entries(data.features).map(([name, expr]) =>
    Object.freeze([name, session.expressions.get(expressionKey(expr, ['features', name])) as CompiledExpression] as const),
  );
  const auth = new GatewayAuth(data.server.auth);
  const server: ServerSettings = Object.freeze({
    port: data.server.port,
    // Without keys, loopback only (checkAuth in semantic.ts refuses any other host).
    host: data.server.host ?? (auth.hasKeys || auth.allowUnauthenticated ? '0.0.0.0' : '127.0.0.1'),
    bodyLimit: data.server.body_limit,
    headerAllowlist: Object.freeze(data.server.header_allowlist.map((h) => h.toLowerCase())),
    upstreamTimeoutMs: data.server.upstream_timeout_ms,
    shutdownTimeoutMs: data.server.shutdown_timeout_ms,
    requestTimeoutMs: data.server.request_timeout_ms,
    maxConnections: data.server.max_connections,
    auth,
  });
  const decisionLogData = data.analytics.decision_log;
  const logSettings: DecisionLogSettings = { file: decisionLogData.file, console: decisionLogData.console, flushMs: decisionLogData.flush_ms };
  const decisionLog =
    options.mode === 'validate'
      ? null
      : new DecisionLog(logSettings, source.directory, (err) =>
          options.logger.error('decision log write failed', { file: logSettings.file, error: errorMessage(err) }),
        );
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
      limits: new KeyLimits(
        data.server.auth?.keys ?? [],
        data.server.auth?.limits_when_redis_down ?? 'per_replica',
        options.limitCounters ?? new LocalCounters(),
        shared,
      ),
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
    ? Object.freeze({
        underRouting: route.costs.under_routing,
        overRouting: route.costs.over_routing,
        breakEven: route.costs.under_routing / (route.costs.under_routing + route.costs.over_routing),
      })
    : null;
  const upstreamParameters: Record<string, unknown> = {};
  let gate: Gate | null = null;
  const gateEvaluator = (entry: GateEvaluatorData, at: Path): GateEvaluator => {
    const evaluator = (instanceAt(at) as PluginInstance).instance as Evaluator;
    return Object.freeze({
      name: entry.name ?? entry.plugin,
      evaluator,
      weight: entry.weight,
      threshold: entry.threshold ?? null,
      when: entry.when ? (session.expressions.get(expressionKey(entry.when, [...at, 'when'])) as CompiledExpression) : null,
    });
  };
  if (route.gate) {
    const evaluators = route.gate.evaluators.map((entry, i): GateEvaluator => {
      const compiled = gateEvaluator(entry, ['routes', routeName, 'gate', 'evaluators', i]);
      Object.assign(upstreamParameters, compiled.evaluator.upstreamParameters ?? {});
      return compiled;
    });
    const checks = route.gate.input_checks;
    const inputChecks: InputChecks | null = checks
      ? Object.freeze({
          evaluators: Object.freeze(checks.evaluators.map((entry, i) => gateEvaluator(entry, ['routes', routeName, 'gate', 'input_checks', 'evaluators', i]))),
          threshold: checks.threshold,
          onFail: checks.on_fail,
        })
      : null;
    const threshold = route.gate.threshold ?? costs?.breakEven ?? DEFAULT_GATE_THRESHOLD;
    gate = Object.freeze({
      evaluators: Object.freeze(evaluators),
      combine: route.gate.combine,
      threshold,
      thresholdSource: route.gate.threshold !== undefined ? 'policy' : costs ? 'costs' : 'default',
      decide: route.gate.decide,
      maxEscalations: route.gate.max_escalations,
      streaming: route.gate.streaming,
      onFail: route.gate.on_fail,
      inputChecks,
    });
  }
  return {
    gate,
    speculate: route.speculate
      ? (session.expressions.get(expressionKey(route.speculate.when, ['routes', routeName, 'speculate', 'when'])) as CompiledExpression)
      : null,
    costs,
    upstreamParameters: Object.freeze(upstreamParameters),
  };
}
