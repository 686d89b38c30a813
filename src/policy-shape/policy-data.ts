// Generated from schemas/gateway.schema.json by `npm run gen:policy-types` (scripts/gen-policy-types.ts): do not edit.
// The shape of a policy after schema validation, defaults filled in (the compiler reads this).

export type Name = string;

/**
 * Every object is closed: an unknown key is an error, never silently ignored. Plugin options (routers, providers) are validated against the schema each plugin declares.
 */
export interface PolicyData {
  /**
   * Policy format version.
   */
  version: 1;
  server: ServerData;
  plugins?: {
    /**
     * Extra plugin folders (relative to this file), each laid out like plugins/: routers/, evaluators/, providers/.
     */
    paths?: string[];
  };
  providers: {
    [k: string]: ProviderData;
  };
  models: {
    [k: string]: ModelData;
  };
  /**
   * The escalation ladder, cheapest first.
   *
   * @minItems 1
   */
  tiers: TierData[];
  /**
   * Named JSONata expressions over the request; routing expressions see them by name.
   */
  features: {
    [k: string]: string;
  };
  expressions: ExpressionLimitsData;
  routes: {
    [k: string]: RouteData;
  };
  analytics: {
    decision_log: DecisionLogData;
  };
  resilience: ResilienceData;
  /**
   * What the replicas of one gateway share. Without it, per-key limits and model cooldowns are per process.
   */
  state?: {
    redis?: RedisStateData;
  };
}
export interface ServerData {
  port: number;
  /**
   * Address to listen on. Default 0.0.0.0 when server.auth.keys are set, else 127.0.0.1: without keys only a loopback address is accepted (unless server.auth.allow_unauthenticated).
   */
  host?: string;
  auth?: AuthData;
  /**
   * Largest request body accepted, e.g. 512kb or 4mb.
   */
  body_limit: string;
  /**
   * Request headers that routing expressions may read (as headers.<lower-cased name>).
   */
  header_allowlist: string[];
  /**
   * Default time an upstream may take to answer (or between two streamed chunks).
   */
  upstream_timeout_ms: number;
  /**
   * On SIGTERM, how long requests in flight may take to finish. Past it they are stopped: an answer not yet started becomes a 503 TG_ERR_SHUTTING_DOWN, a stream ends with that error as its last event, and each still gets its decision line before the process exits. The default fits Kubernetes' 30 s grace period.
   */
  shutdown_timeout_ms: number;
  /**
   * How long a client has to send its whole request, headers and body, from its first byte. A request still arriving after it gets 408 TG_ERR_REQUEST_TIMEOUT and its connection is closed, so that clients dripping their bodies cannot hold connections for ever. Only the request is timed: an answer, however long it streams, is not. Checked every quarter of the value in force at start (every second at most).
   */
  request_timeout_ms: number;
  /**
   * Most client connections open at once. A connection beyond it gets 503 TG_ERR_SERVER_BUSY (retry-after: 1) for its request and is closed. Keep it below the process's file-descriptor limit (ulimit -n), leaving room for upstream connections and files. A reload applies to new connections.
   */
  max_connections: number;
}
/**
 * Who may call the gateway. Without keys, tiergate serves loopback clients only.
 */
export interface AuthData {
  /**
   * Gateway API keys, sent by clients as Authorization: Bearer <key>. Each key may call the routes (and concrete models) it lists; its name goes into the decision log, its value nowhere.
   *
   * @minItems 1
   */
  keys?: GatewayKeyData[];
  /**
   * Bearer token (or HTTP Basic password) for /admin/*, /metrics and /dashboard. Without it, those are served to loopback clients only when no keys are set, and disabled when keys are.
   */
  admin_token?: string;
  /**
   * Bearer token (or HTTP Basic password) that opens GET /metrics and nothing else: what a Prometheus scraper needs, without the power to reload the policy or read /admin/status. The admin token opens /metrics too.
   */
  metrics_token?: string;
  /**
   * Serve clients on any address without keys, because authentication happens in front of tiergate (a proxy or a service mesh). Cannot be combined with keys.
   */
  allow_unauthenticated: boolean;
  /**
   * What per-key limits do while Redis (state.redis) cannot be reached: per_replica (the default, failing open) counts on each replica alone, so a limit holds per replica; reject (failing closed) refuses requests of keys with limits with 503 TG_ERR_LIMIT_UNAVAILABLE.
   */
  limits_when_redis_down?: 'per_replica' | 'reject';
}
export interface GatewayKeyData {
  /**
   * Names the key in decision lines, errors and logs (the key itself is never shown).
   */
  name: string;
  /**
   * The secret, usually ${SOME_VAR} from the environment.
   */
  key: string;
  /**
   * Routes this key may call: "*" for every route, or a list of route names ([] for none).
   */
  routes: '*' | string[];
  /**
   * Concrete models this key may call by name, skipping routing: "*" for every model, or a list. Default: none.
   */
  models?: '*' | string[];
  limits?: KeyLimitsData;
}
/**
 * Requests and spend this key may use per fixed window (the minute, the UTC day). Over a limit, requests get 429 with retry-after until the window resets. Shared by every replica with state.redis, else counted per process.
 */
export interface KeyLimitsData {
  /**
   * Requests admitted per minute (refused requests do not count).
   */
  requests_per_minute?: number;
  /**
   * Requests admitted per UTC day.
   */
  requests_per_day?: number;
  /**
   * Spend per minute in USD, from the decisions' cost_usd (every attempt, gate and judge calls). Checked before a call, added after it.
   */
  usd_per_minute?: number;
  /**
   * Spend per UTC day in USD, like usd_per_minute.
   */
  usd_per_day?: number;
}
/**
 * A provider plugin and its options; keys other than plugin and timeout_ms are the plugin's own options.
 */
export interface ProviderData {
  plugin: Name;
  timeout_ms?: number;
  [k: string]: unknown;
}
export interface ModelData {
  provider: string;
  /**
   * Model name sent upstream; defaults to the key.
   */
  upstream?: string;
  /**
   * chat: answers POST /v1/chat/completions (and sits in tiers). embedding: answers POST /v1/embeddings only; its provider must be able to embed, it sits in no tier, and its price needs only input_per_mtok.
   */
  kind: 'chat' | 'embedding';
  price: {
    /**
     * USD per 1M input tokens.
     */
    input_per_mtok: number;
    /**
     * USD per 1M output tokens, reasoning (thinking) tokens included. Required for a chat model; an embedding model has no output tokens.
     */
    output_per_mtok?: number;
    /**
     * USD per 1M input tokens read from the provider's prompt cache; absent: priced as input_per_mtok.
     */
    cached_input_per_mtok?: number;
    /**
     * USD per 1M input tokens written to the provider's prompt cache (Anthropic and Bedrock charge more for them); absent: priced as input_per_mtok.
     */
    cache_write_input_per_mtok?: number;
  };
  timeout_ms?: number;
}
export interface TierData {
  name: Name;
  /**
   * Models of this tier, in order of preference.
   *
   * @minItems 1
   */
  models: string[];
}
/**
 * Limits on every JSONata evaluation (features, rules, gate and speculate conditions, jsonata evaluators). An evaluation that breaks one is stopped: a routing expression then falls back to the route's default with a located reason.
 */
export interface ExpressionLimitsData {
  /**
   * Longest one evaluation may run. JSONata runs on the event loop, so this also bounds how long one request's expression can hold up every other request. Routing expressions take microseconds; the default leaves room for garbage-collection pauses on a loaded host.
   */
  timeout_ms: number;
  /**
   * Deepest nesting of evaluation steps (recursion); a recursive function uses about 3 per call.
   */
  max_depth: number;
  /**
   * Longest sequence an evaluation may build (a range such as [1..n], a $map result).
   */
  max_sequence: number;
}
export interface RouteData {
  description?: string;
  /**
   * A router plugin and its options; keys other than plugin are the plugin's own options.
   */
  router: {
    plugin: Name;
    [k: string]: unknown;
  };
  /**
   * Tier or model used when the router has no opinion or fails.
   */
  default: string;
  /**
   * Last resort once the ladder is exhausted; defaults to the top tier.
   */
  fallback?: string;
  /**
   * The model of kind: embedding that answers POST /v1/embeddings naming this route ("model": "<route>"). Without it, the route answers embeddings requests with TG_ERR_REQUEST_CANNOT_EMBED.
   */
  embeddings?: string;
  gate?: GateData;
  /**
   * Call the routed tier and the next one at once when the routing decision is unsure.
   */
  speculate?: {
    /**
     * JSONata over {decision: {tier, model, confidence, reason}, costs: {under_routing, over_routing, break_even} | null, the request and the features}, e.g. decision.confidence < 0.6
     */
    when: string;
  };
  /**
   * Shadow evaluation: a share of requests not served by the always-best model is also sent to it after the client has its answer, both answers are scored by the route's gate, and the comparison is written to the decision log (kind: shadow). Needs a gate.
   */
  shadow?: {
    /**
     * Share of eligible requests shadowed, spread evenly and deterministically: of the first n, ceil(n × sample) (0.5 shadows the 1st, 3rd, 5th …).
     */
    sample: number;
  };
  /**
   * Relative cost of the two routing errors; sets the break-even confidence u / (u + o).
   */
  costs?: {
    /**
     * Cost of a weak answer served or retried (quality failure plus retry).
     */
    under_routing: number;
    /**
     * Cost of sending to a stronger tier a request the cheaper one could answer (wasted spend).
     */
    over_routing: number;
  };
}
/**
 * Quality gate: every answer is scored by the evaluators; a failed gate climbs the tier ladder.
 */
export interface GateData {
  /**
   * @minItems 1
   */
  evaluators: GateEvaluatorData[];
  /**
   * How evaluator scores combine into the gate score.
   */
  combine: 'min' | 'mean' | 'weighted';
  /**
   * The gate passes at or above this combined score (default: from costs, else 0.5).
   */
  threshold?: number;
  /**
   * threshold: an answer passes when its combined score reaches threshold. cascade (needs costs): an answer of a tier below the top is served when the posterior that it is good, logit(p) = logit(router confidence) + logit(gate score), reaches the break-even u/(u+o); the router's own break-even step up is skipped.
   */
  decide: 'threshold' | 'cascade';
  /**
   * How many tiers a failed gate may climb before the route's fallback.
   */
  max_escalations: number;
  /**
   * buffer: gate before streaming (escalation works); bypass: stream at once, gate for analytics only.
   */
  streaming: 'buffer' | 'bypass';
  /**
   * What a final failure does, once the ladder and the fallback are exhausted and no answer passed. serve: the best-scoring answer is served, flagged x-tiergate-gate: failed. refuse: no answer is served; the client gets TG_ERR_GATE_ANSWER_REFUSED (422). Either way the decision line records it (gate: failed or refused). refuse cannot be combined with streaming: bypass, whose answer is sent before it is gated.
   */
  on_fail: 'serve' | 'refuse';
  input_checks?: InputChecksData;
}
/**
 * An evaluator plugin and its options; keys other than plugin, name, weight, threshold and when are the plugin's own options.
 */
export interface GateEvaluatorData {
  plugin: Name;
  /**
   * Name in logs and headers (default: the plugin name).
   */
  name?: string;
  /**
   * Weight in combine: weighted (default 1).
   */
  weight: number;
  /**
   * This evaluator alone fails the gate below this score.
   */
  threshold?: number;
  /**
   * JSONata over the request and features: the evaluator runs only when it holds.
   */
  when?: string;
  [k: string]: unknown;
}
/**
 * Evaluators that judge the request itself, before any model is called (e.g. no personal data in the prompt). Each must be an evaluator that can check input (the regex and jsonata evaluators can). The request passes when every check that applies scores at or above threshold and its own threshold.
 */
export interface InputChecksData {
  /**
   * @minItems 1
   */
  evaluators: GateEvaluatorData[];
  /**
   * Every input check must score at or above this (and its own threshold, when it has one).
   */
  threshold: number;
  /**
   * What a failed input check does. serve: the request goes on and the decision line records the failure (input_check.passed: false). refuse: no model is called; the client gets TG_ERR_GATE_INPUT_REFUSED (400), and the decision line records it (gate: refused).
   */
  on_fail: 'serve' | 'refuse';
}
export interface DecisionLogData {
  /**
   * JSON-lines file, relative to this file and inside its folder; null for none.
   */
  file: string | null;
  /**
   * Also write decision lines to standard output.
   */
  console: boolean;
  /**
   * Include the prompt text in decision lines (off: prompts are never logged).
   */
  log_prompts: boolean;
  /**
   * How long a decision line may wait in memory to be written together with later ones (one write per interval instead of one per request; at once when 256 K characters wait). 0 writes each event-loop turn's lines at once. Reloads and graceful shutdowns write everything first; a killed process loses at most this many milliseconds of lines. Applies to the file when console is off.
   */
  flush_ms: number;
}
/**
 * Retries, failover and cooldown of failing models (applies to every model call).
 */
export interface ResilienceData {
  /**
   * Retries of the same model on 429, 5xx, timeouts and connection errors before failing over.
   */
  retries: number;
  /**
   * First retry delay; doubles each retry, with jitter.
   */
  backoff_ms: number;
  /**
   * Longest wait before a retry; a longer retry-after fails over instead.
   */
  max_backoff_ms: number;
  /**
   * Consecutive failures that put a model in cooldown.
   */
  failure_threshold: number;
  /**
   * How long a model in cooldown is skipped.
   */
  cooldown_ms: number;
}
/**
 * A Redis every replica reaches: per-key request and spend counters and the cooldowns of failing models live there.
 */
export interface RedisStateData {
  /**
   * redis://[:password@]host:port[/db], rediss:// for TLS; usually ${REDIS_URL}. A password in it is redacted from every output.
   */
  url: string;
  /**
   * Start of every key tiergate writes. Replicas of one gateway share it; another gateway on the same Redis needs its own.
   */
  prefix: string;
  /**
   * A Redis command slower than this counts as Redis being down (a request with limits waits on one check).
   */
  timeout_ms: number;
  /**
   * How often each replica reads the cooldowns the others started.
   */
  refresh_ms: number;
}
