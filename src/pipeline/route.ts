// Context → router → decision. Turns a chat request into the model to call and the
// reason why, using the runtime the request started with. A router that fails (or
// returns something that does not exist) never fails the request: the route's default
// applies and the reason says what went wrong.
import { TiergateError, errorMessage } from '../common/errors.ts';
import { evaluateNow } from '../expressions/compile.ts';
import type { ChatMessage, RequestView, RoutingDecision } from '../plugin-contract/plugin-api.ts';
import type { ModelRuntime, RouteRuntime, Runtime, Target } from '../policy/runtime.ts';
import { resolveTarget, targetName, tierName } from '../policy/targets.ts';

export interface ChatBody {
  model: string;
  messages: ChatMessage[];
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  metadata?: Record<string, unknown> | null;
  [extra: string]: unknown;
}

export interface RoutedRequest {
  readonly route: RouteRuntime | null;
  readonly view: RequestView;
  readonly features: Record<string, unknown>;
  /** What the policy's JSONata sees: request fields and features (gate `when`, speculate reuse it). */
  readonly input: Readonly<Record<string, unknown>>;
  readonly model: ModelRuntime;
  readonly tier: string | null;
  readonly confidence: number | null;
  readonly reason: string;
  /** The catalogue code of the failure when routing failed and the route default applied (counted in metrics). */
  readonly routingError?: string;
  /**
   * With gate.decide: cascade only: the router's confidence as the gate's prior that the
   * routed tier's answer is good; 0.5 (neutral) when the router gave none (no rule
   * matched, no confidence in the decision, a routing error).
   */
  readonly prior?: number | undefined;
  /** RoutingDecision.thresholds, when the router gave them. */
  readonly thresholds: readonly number[] | null;
  readonly alternatives: string[];
  /** The model "always-best" would have used: the basis of cost_saved. */
  readonly bestModel: ModelRuntime;
}

/**
 * Body fields that are tiergate's or the transport's, not parameters for the model: the
 * one filter between the client's body and the provider's request (src/pipeline/wire.ts,
 * upstreamBody, sends the view's parameters). metadata is tiergate's routing input, and
 * OpenAI rejects it unless `store` is set; the provider decides stream and its options.
 */
const NOT_PARAMETERS = new Set(['model', 'messages', 'metadata', 'stream', 'stream_options']);

export function requestView(body: ChatBody, headers: Record<string, string | string[] | undefined>, allowlist: readonly string[]): RequestView {
  const parameters: Record<string, unknown> = {};
  for (const key in body) if (!NOT_PARAMETERS.has(key)) parameters[key] = body[key];
  const visibleHeaders: Record<string, string> = {};
  for (const name of allowlist) {
    const value = headers[name];
    if (value !== undefined) visibleHeaders[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return {
    model: body.model,
    messages: body.messages,
    parameters,
    metadata: body.metadata ?? {},
    headers: visibleHeaders,
    stream: body.stream === true,
  };
}

/** Everything on the ladder other than the chosen model, cheapest first. */
function alternativesTo(runtime: Runtime, chosen: string): string[] {
  const out: string[] = [];
  for (const tier of runtime.tiers) for (const m of tier.models) if (m !== chosen) out.push(m);
  return out;
}

function checkDecision(runtime: Runtime, decision: RoutingDecision): Target {
  if ((decision.tier === undefined) === (decision.model === undefined)) throw new Error('the router must name exactly one of tier or model');
  if (decision.confidence !== undefined && !(decision.confidence >= 0 && decision.confidence <= 1))
    throw new Error(`confidence ${decision.confidence} is outside [0, 1]`);
  if (decision.tier !== undefined) {
    const tier = runtime.tiers.findIndex((t) => t.name === decision.tier);
    if (tier < 0) throw new Error(`the router chose tier "${decision.tier}", which the policy does not declare`);
    return { kind: 'tier', tier };
  }
  if (!runtime.models.has(decision.model as string)) throw new Error(`the router chose model "${decision.model}", which the policy does not declare`);
  return { kind: 'model', model: decision.model as string };
}

/**
 * Empty objects with the policy's feature names, cloned per request and then filled in.
 * The names differ per policy, so adding them one by one (or spreading the features into
 * the input) sends every store through V8's generic path, a property transition at a
 * time; a clone of a template has them all already, and filling it is a plain store
 * (docs/bench/profile-findings.md, round 4). Feature names never clash with the request's
 * own fields (RESERVED_INPUT_NAMES).
 */
interface Templates {
  features: Record<string, unknown>;
  input: Record<string, unknown>;
}

const templates = new WeakMap<Runtime['features'], Templates>();

function templatesOf(runtime: Runtime): Templates {
  let found = templates.get(runtime.features);
  if (!found) {
    const features: Record<string, unknown> = {};
    for (const [name] of runtime.features) features[name] = undefined;
    // The input's keys in the order {...view, ...features, features} gives them.
    const input: Record<string, unknown> = {
      model: undefined,
      messages: undefined,
      parameters: undefined,
      metadata: undefined,
      headers: undefined,
      stream: undefined,
      ...features,
      features: undefined,
    };
    found = { features, input };
    templates.set(runtime.features, found);
  }
  return found;
}

/** The features computed so far: a feature that failed, and those after it, are left out. */
function withoutMissing(features: Record<string, unknown>): Record<string, unknown> {
  const present: Record<string, unknown> = {};
  for (const name in features) if (features[name] !== undefined) present[name] = features[name];
  return present;
}

/** What the policy's JSONata sees: the request view's fields, each feature by name, and `features` itself. */
function inputOf(runtime: Runtime, template: Record<string, unknown>, view: RequestView, features: Record<string, unknown>): Record<string, unknown> {
  const input = { ...template };
  input.model = view.model;
  input.messages = view.messages;
  input.parameters = view.parameters;
  input.metadata = view.metadata;
  input.headers = view.headers;
  input.stream = view.stream;
  const names = runtime.features;
  for (let i = 0; i < names.length; i++) input[names[i][0]] = features[names[i][0]];
  input.features = features;
  return input;
}

/**
 * Decides where a request goes. Rejects only for an unknown `model` (a client error).
 * `routeOverride` stands in for the route the body names (`tiergate eval` sweeping a
 * router's threshold).
 */
export async function routeRequest(runtime: Runtime, body: ChatBody, view: RequestView, routeOverride?: RouteRuntime): Promise<RoutedRequest> {
  const route = routeOverride ?? runtime.routes.get(body.model) ?? null;
  const topTier = runtime.tiers[runtime.tiers.length - 1];
  if (!route) {
    const model = runtime.models.get(body.model);
    if (!model) throw new TiergateError('TG_ERR_REQUEST_UNKNOWN_MODEL', { model: body.model }, { param: 'model' });
    if (model.spec.kind === 'embedding') throw new TiergateError('TG_ERR_REQUEST_EMBEDDING_MODEL', { model: body.model }, { param: 'model' });
    return {
      route: null,
      view,
      features: {},
      input: { ...view, features: {} },
      model,
      tier: tierName(runtime, model.tier),
      confidence: null,
      reason: 'model requested by name: no routing',
      thresholds: null,
      alternatives: [],
      bestModel: runtime.models.get(topTier.models[0]) as ModelRuntime,
    };
  }

  const template = templatesOf(runtime);
  let features: Record<string, unknown> = { ...template.features };
  let input: Record<string, unknown> | null = null;
  let target: Target;
  let confidence: number;
  let reason: string;
  let thresholds: readonly number[] | null = null;
  let routingError: string | undefined;
  let given: number | undefined;
  try {
    for (let i = 0; i < runtime.features.length; i++) {
      const [name, expression] = runtime.features[i];
      const value = evaluateNow(expression, view);
      features[name] = value instanceof Promise ? await value : value;
    }
    input = inputOf(runtime, template.input, view, features);
    const decision = await route.router.route({ route: route.name, request: view, features, input });
    if (decision === null) {
      target = route.defaultTarget;
      confidence = 0.5;
      reason = `no rule matched; route default ${targetName(runtime, target)}`;
    } else {
      target = checkDecision(runtime, decision);
      given = decision.confidence;
      confidence = decision.confidence ?? 1;
      reason = decision.reason;
      thresholds = decision.thresholds ?? null;
    }
  } catch (err) {
    if (input === null) features = withoutMissing(features);
    target = route.defaultTarget;
    confidence = 0;
    // Located when the failure is an expression of the policy (say, one stopped by the
    // expressions limits): gateway.yaml:LINE:COL path: message [CODE].
    reason = `routing error (${err instanceof TiergateError ? err.located() : errorMessage(err)}); route default ${targetName(runtime, target)}`;
    routingError = err instanceof TiergateError ? err.code : 'TG_ERR_ROUTING';
  }
  // Asymmetric error costs: sending a request down to a cheaper tier is worth it only
  // when the router is surer than u / (u + o). Below that, start one tier up, unless
  // the route speculates (then both tiers run and the gate decides), or its gate decides
  // by cascade: then the cheap tier is tried and the confidence becomes the gate's prior,
  // one break-even for both rather than two thresholds that ignore each other.
  const costs = route.costs;
  const cascade = costs !== null && route.gate?.decide === 'cascade';
  if (costs && !route.speculate && !cascade && target.kind === 'tier' && target.tier < runtime.tiers.length - 1 && confidence < costs.breakEven) {
    const from = runtime.tiers[target.tier].name;
    target = { kind: 'tier', tier: target.tier + 1 };
    reason += `; confidence ${confidence.toFixed(2)} is below the break-even ${costs.breakEven.toFixed(2)} of under:over routing costs ${costs.underRouting}:${costs.overRouting}, so ${from} → ${runtime.tiers[target.tier].name}`;
  }
  // The target's first model is the one it routes to; the rest are its failover.
  const model = resolveTarget(runtime, target)[0];
  const tier = tierName(runtime, model.tier);
  return {
    route,
    view,
    features,
    // A feature that failed leaves the ones before it: the input is built from what there is.
    input: input ?? { ...view, ...features, features },
    model,
    tier,
    confidence,
    reason,
    ...(routingError ? { routingError } : {}),
    // Always present (undefined outside cascade): one object shape on the hot path, no extra spread.
    prior: cascade ? (given ?? 0.5) : undefined,
    thresholds,
    alternatives: alternativesTo(runtime, model.spec.name),
    bestModel: runtime.models.get(route.bestModel) as ModelRuntime,
  };
}
