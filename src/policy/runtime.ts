// Stage 5 of the policy compiler: the Runtime, one compiled policy: validated, every
// expression compiled, every plugin created. Before: compile.ts built it (after source.ts,
// schema.ts, plugin-sites.ts and semantic.ts found nothing wrong). After: reload.ts swaps
// it in. It is immutable; a request holds the one it started with until it ends, and a
// reload builds a new one aside and swaps a single reference. A retired runtime disposes
// its plugins once its last request has finished.
import { createRequire } from 'node:module';
import express, { type RequestHandler } from 'express';
import type winston from 'winston';
import { errorMessage } from '../common/errors.ts';
import type { DecisionLog } from '../observe/decision-log.ts';
import type { ModelHealth, Resilience } from '../state/health.ts';
import type {
  CompiledExpression,
  Disposable,
  Evaluator,
  ModelSpec,
  PluginKind,
  PolicyView,
  Provider,
  Router,
  TierSpec,
} from '../plugin-contract/plugin-api.ts';
import { formatPath } from './source.ts';
import type { GatewayAuth } from './gateway-auth.ts';
import type { KeyLimits } from '../state/limits.ts';
import type { SharedState } from '../state/shared-state.ts';
import type { GateData } from '../policy-shape/policy-data.ts';
import type { PluginSite } from './plugin-sites.ts';
import type { Target } from './targets.ts';

// body-parser's own size parser (a dependency of express, untyped): "1mb" means what it means to express.json.
const parseBytes = (createRequire(import.meta.url)('bytes') as { parse(value: string | number): number | null }).parse;

export type GateCombine = GateData['combine'];
export type GateDecide = GateData['decide'];

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
  /**
   * threshold: the combined score against `threshold`. cascade: below the top tier, the
   * router's confidence and the score are one posterior, held against the route's
   * break-even (src/pipeline/gate.ts); semantic.ts makes sure the route has costs.
   */
  readonly decide: GateDecide;
  readonly maxEscalations: number;
  readonly streaming: 'buffer' | 'bypass';
  /** When no answer passes: serve the best one (flagged failed), or refuse (TG_ERR_GATE_ANSWER_REFUSED). */
  readonly onFail: GateOnFail;
  /** Evaluators that judge the request before any model is called; null without gate.input_checks. */
  readonly inputChecks: InputChecks | null;
}

export type GateOnFail = GateData['on_fail'];

export interface InputChecks {
  /** Each an evaluator with checkInput (plugin-sites.ts checks its 'checks-input' capability). */
  readonly evaluators: readonly GateEvaluator[];
  /** Every check that applies must reach it (combine min), and its own threshold. */
  readonly threshold: number;
  /** serve: the request goes on, the failure recorded; refuse: TG_ERR_GATE_INPUT_REFUSED, no model called. */
  readonly onFail: GateOnFail;
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
  /**
   * The last resort once the routed models (and, with a gate, the ladder) are exhausted:
   * the declared fallback, else for a gated route the top tier, where its ladder ends.
   * Null for a route without a gate that declares none: it has no ladder to end.
   */
  readonly fallback: Target | null;
  /** The route's always-best model: first model of the top tier. */
  readonly bestModel: string;
  /** The embedding model that answers embeddings requests naming the route (routes.<name>.embeddings); null: the route cannot embed. */
  readonly embeddings: string | null;
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
  /** How long a client has to send a whole request (server.request_timeout_ms). */
  readonly requestTimeoutMs: number;
  /** Most client connections open at once (server.max_connections). */
  readonly maxConnections: number;
  /** Gateway keys and the admin token (server.auth); reloads with the policy. */
  readonly auth: GatewayAuth;
}

/** A created plugin and the site in the policy it was created for. */
export interface PluginInstance {
  site: PluginSite;
  instance: Disposable;
}

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
    private readonly instances: readonly PluginInstance[],
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

/** Disposes instances, the last created first; a failure is logged, never thrown. */
export async function disposeAll(instances: readonly PluginInstance[], logger: winston.Logger): Promise<void> {
  // Routers before providers: the reverse of creation.
  for (const { site, instance } of [...instances].reverse()) {
    try {
      await instance.dispose();
    } catch (err) {
      logger.warn('plugin dispose failed', { plugin: `${site.kind}:${site.plugin.discovered.name}`, at: formatPath(site.at), error: errorMessage(err) });
    }
  }
}
