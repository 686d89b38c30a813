// The plugin contract. A plugin is one folder, plugins/<kind>s/<name>/, whose index.ts
// (or index.js) default-exports a PluginModule. The host discovers it by reading the
// folder, validates the plugin's options against the schema the plugin declares, calls
// the plugin's own cross-field `validate`, then `create`. Nothing in src/ names a
// particular plugin.
//
// This room (src/plugin-contract/) is the ground floor every other room and every plugin
// stands on: the contract's types and the helpers of the wire. Plugins reach it only
// through the package's entry, src/plugin-sdk/index.ts ('tiergate/plugin'), which sits
// on top of the house and re-exports it with the helpers other rooms own.
//
// Types here are the OpenAI chat shapes: they are the lingua franca between the server,
// the routers, the evaluators and every provider, so a provider that speaks OpenAI's
// wire format can pass bodies through with no translation on the request path.
import type { EventEmitter } from 'node:events';
import type { FromSchema, JSONSchema } from 'json-schema-to-ts';
import { redactSecrets } from '../common/secrets.ts';

/**
 * For patterns a policy gives a plugin: a RegExp look-alike that matches in linear time
 * (RE2), so that no pattern can hang the gateway. `policyPattern` compiles one and says,
 * as its error's message, why a pattern is refused (invalid, or lookaround and
 * backreferences), for the plugin's option error.
 */
export { LinearRegExp, linearRegExpProblem, policyPattern } from './linear-regex.ts';

export type PluginKind = 'router' | 'evaluator' | 'provider';

/**
 * The version of this contract. A plugin declares the version it was written for
 * (`meta.contract`); the host refuses a plugin that declares none or another one, with a
 * located error, rather than run it against shapes it was not written for. Raised only
 * when a change would break a plugin written for the previous version.
 */
export const PLUGIN_CONTRACT_VERSION = 1;

/**
 * The options type a plugin's options schema describes, so that the type is written
 * once: declare the schema `as const` and write `type MyOptions = OptionsFrom<typeof
 * optionsSchema>`. A property with a `default` stays optional: a plugin created directly
 * (in a unit test) gets no defaults filled in, so the plugin keeps its own fallback.
 */
export type OptionsFrom<Schema extends JSONSchema> = FromSchema<Schema, { keepDefaultedPropertiesOptional: true }>;

/**
 * What a plugin can do for tiergate's own tools, declared so that no tool names a plugin:
 * `tiergate eval` looks for the provider that replays recorded outcomes (its `dataset`
 * option names the JSONL file) and for the evaluator that scores an answer with its
 * recorded score. `checks-input`: the evaluator implements `checkInput`, so a policy may
 * list it in a gate's `input_checks` (checked at load, before any instance exists).
 * `embeds`: the provider implements `embed`, so a model of `kind: embedding` may use it
 * (checked at load).
 */
export type PluginCapability = 'replays-recorded-outcomes' | 'scores-recorded-outcomes' | 'checks-input' | 'embeds';

/** A JSON Schema (draft 2020-12 subset that ajv understands). Objects should be closed (`additionalProperties: false`). */
export type JsonSchema = Record<string, unknown>;

export interface PluginMeta<Options = unknown> {
  /** Must equal the plugin's folder name. */
  id: string;
  kind: PluginKind;
  /** The contract version the plugin was written for: PLUGIN_CONTRACT_VERSION. */
  contract: typeof PLUGIN_CONTRACT_VERSION;
  description: string;
  /**
   * JSON Schema of the options object. The host compiles it once and validates before
   * `create`, so a plugin never re-checks option types. Two tiergate keywords are
   * understood: `"x-jsonata": true` (the string is compiled as JSONata at load) and
   * `"x-ref": "model" | "tier" | "target" | "provider"` (the string must name one).
   */
  options: JsonSchema;
  /** Options that create successfully with no network and no files; used by the contract test and the docs. */
  example: Options;
  /** See PluginCapability. */
  capabilities?: readonly PluginCapability[];
}

/** A problem `validate` found, with a path relative to the plugin's options. */
export interface OptionIssue {
  path: ReadonlyArray<string | number>;
  message: string;
}

export interface Disposable {
  /** Releases everything the instance holds. Idempotent. */
  dispose(): Promise<void>;
}

export interface PluginModule<Options, Instance extends Disposable> {
  meta: PluginMeta<Options>;
  /** Rules between fields that the schema cannot say. Runs after schema validation. */
  validate?(options: Readonly<Options>, ctx: ValidationContext): OptionIssue[];
  /**
   * Builds an instance. Must be cheap; must clean up after itself when it throws (the
   * host never gets an instance to dispose in that case). Throw `ctx.optionError(...)`
   * to report a problem located in the policy.
   */
  create(options: Readonly<Options>, ctx: PluginContext): Promise<Instance>;
}

export interface ModelSpec {
  /** The name the policy gives the model (what clients and logs see). */
  readonly name: string;
  readonly provider: string;
  /** The name sent upstream (defaults to `name`). */
  readonly upstream: string;
  /** USD per million tokens; cached and cache-write input fall back to input_per_mtok when absent. */
  readonly price: {
    readonly input_per_mtok: number;
    readonly output_per_mtok: number;
    readonly cached_input_per_mtok?: number;
    readonly cache_write_input_per_mtok?: number;
  };
  readonly timeout_ms: number;
  /** chat (absent means chat too): answers chat requests; embedding: answers embeddings requests only. */
  readonly kind?: 'chat' | 'embedding';
}

export interface TierSpec {
  readonly name: string;
  readonly models: readonly string[];
}

/** The parts of the policy a plugin may look at. */
export interface PolicyView {
  readonly models: ReadonlyMap<string, ModelSpec>;
  /** The escalation ladder, cheapest first. */
  readonly tiers: readonly TierSpec[];
  readonly featureNames: readonly string[];
}

export interface ValidationContext {
  readonly policy: PolicyView;
}

export interface Logger {
  error(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
}

/** A JSONata expression compiled at load. `evaluate` rejects with a routing error on failure. */
export interface CompiledExpression {
  readonly source: string;
  evaluate(input: unknown, bindings?: Record<string, unknown>): Promise<unknown>;
  /**
   * Present when the expression has a shape tiergate runs synchronously (a path compared
   * with a literal, `in`, and/or, ...): the value `evaluate` would resolve to, or
   * UNDECIDED (src/expressions/fast-path.ts) when only `evaluate` can tell — call it then.
   * Lets a caller with many conditions skip an await per condition.
   */
  evaluateSync?(input: unknown): unknown;
}

export interface PluginContext extends ValidationContext {
  /** Where the plugin's options sit in the policy, e.g. routes.support.router. */
  readonly at: string;
  /** Folder of the policy file: relative paths in options resolve against it. */
  readonly baseDir: string;
  readonly logger: Logger;
  /**
   * The compiled form of an option declared with `"x-jsonata": true` (already compiled
   * and checked at load, so this does not fail for such options).
   */
  expression(source: string, optionPath: ReadonlyArray<string | number>): CompiledExpression;
  /** An error located at one of this plugin's options; throw it from `create`. */
  optionError(optionPath: ReadonlyArray<string | number>, message: string): Error;
  /**
   * Calls a model of the policy by name, as the gateway would but without routing or
   * gates (for an LLM judge). Usable once the runtime is built, i.e. not inside create.
   */
  callModel(model: string, request: Omit<ChatRequest, 'model'>, signal: AbortSignal): Promise<ChatResult>;
  /**
   * A file the plugin read its configuration from (a model artifact): a change to it
   * reloads the policy as a change to the policy does. Absent in contexts that never reload.
   */
  watchFile?(file: string): void;
}

// ---------------------------------------------------------------------------------
// Chat shapes (OpenAI wire format). Unknown fields pass through untouched.

export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool' | 'function';
  content: string | ContentPart[] | null;
  name?: string;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  [extra: string]: unknown;
}

export type ContentPart = { type: 'text'; text: string } | { type: string; [extra: string]: unknown };

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ChatRequest {
  /** The upstream model name. */
  model: string;
  messages: ChatMessage[];
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  stop?: string | string[] | null;
  stream?: boolean;
  [extra: string]: unknown;
}

/**
 * Token counts in OpenAI's shape: prompt_tokens includes cached (and cache-written) input,
 * completion_tokens includes reasoning. Build it with `tokenUsage` when the upstream counts
 * these apart (src/plugin-contract/usage-details.ts).
 */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number; cache_write_tokens?: number; [extra: string]: unknown } | null;
  completion_tokens_details?: { reasoning_tokens?: number; [extra: string]: unknown } | null;
  [extra: string]: unknown;
}

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'function_call';

export interface ChatChoice {
  index: number;
  message: { role: 'assistant'; content: string | null; tool_calls?: ToolCall[]; refusal?: string | null; [extra: string]: unknown };
  finish_reason: FinishReason | null;
  logprobs?: unknown;
}

export interface ChatResult {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: ChatChoice[];
  usage?: Usage;
  [extra: string]: unknown;
}

export interface ChatChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: 'assistant'; content?: string | null; tool_calls?: unknown[]; [extra: string]: unknown };
    finish_reason: FinishReason | null;
    logprobs?: unknown;
  }>;
  usage?: Usage | null;
  [extra: string]: unknown;
}

export interface CallOptions {
  /** The policy's model being called. */
  readonly model: ModelSpec;
  /** Aborted on client disconnect, on timeout, or when a speculative call loses. */
  readonly signal: AbortSignal;
  /**
   * The same cancellation as `signal`, as an EventEmitter that emits 'abort' once and has
   * `aborted` and `reason` as a signal does: what undici accepts in place of a signal.
   * The host makes `signal` only when a provider reads it, and an AbortSignal costs more
   * to make on Node 20 than anything else in a fast call (docs/bench/profile-findings.md,
   * round 4); a provider whose HTTP client takes an emitter can read this instead.
   * Absent when the host has only a signal.
   */
  readonly cancellation?: CancellationEvents;
}

/** An AbortSignal's cancellation as an EventEmitter: 'abort' is emitted once, with no arguments. */
export interface CancellationEvents extends EventEmitter {
  readonly aborted: boolean;
  readonly reason: unknown;
}

/**
 * A provider answers in OpenAI shape. `stream` yields chunks and ends with one carrying
 * `usage` (providers ask upstream for usage on every stream). Providers that are not
 * real models (a simulator, a replay) set `simulated` on the result or on chunks.
 */
export interface Provider extends Disposable, Partial<EmbeddingProvider> {
  complete(request: ChatRequest, call: CallOptions): Promise<ChatResult & { simulated?: boolean }>;
  stream(request: ChatRequest, call: CallOptions): AsyncIterable<ChatChunk & { simulated?: boolean }>;
}

// ---------------------------------------------------------------------------------
// Embeddings shapes (OpenAI wire format)

/**
 * What to embed: OpenAI's `input`, one text or several, or token ids (one array or
 * several) for a client that tokenised itself.
 */
export type EmbeddingInput = string | string[] | number[] | number[][];

export interface EmbeddingRequest {
  /** The upstream model name. */
  model: string;
  input: EmbeddingInput;
  /** Shorter vectors, for models that can make them. */
  dimensions?: number;
  user?: string;
  [extra: string]: unknown;
}

export interface EmbeddingResult {
  object: 'list';
  /** One vector per input, in the input's order: providers always answer in floats (the gateway encodes base64 for a client that asks). */
  data: Array<{ object: 'embedding'; index: number; embedding: number[] }>;
  model: string;
  /**
   * The upstream's count. Absent when the upstream reports none (Gemini's embeddings do
   * not): the gateway then counts the inputs as it estimates any prompt and marks the
   * decision line usage_estimated, so every provider's estimate is the same.
   */
  usage?: { prompt_tokens: number; total_tokens: number };
  [extra: string]: unknown;
}

/**
 * A provider whose meta.capabilities lists 'embeds' implements `embed`: the vectors of
 * an embeddings request, for the models of the policy declared `kind: embedding`.
 */
export interface EmbeddingProvider {
  embed(request: EmbeddingRequest, call: CallOptions): Promise<EmbeddingResult & { simulated?: boolean }>;
}

/** Why an upstream call failed, normalised so the executor can decide what to do next. */
export type UpstreamFailure = 'http' | 'timeout' | 'connection' | 'reply' | 'aborted';

/**
 * Providers throw this (or anything with the same fields and name) when the upstream
 * fails. `status` is the upstream HTTP status when there was one. The message is
 * redacted: upstreams quote the key they were sent ("Incorrect API key provided: sk-…").
 * Anything else a provider throws is taken to mean the request could not be sent (the
 * client's 400), never as a failure of the model: only these feed its cooldown.
 */
export class UpstreamError extends Error {
  readonly failure: UpstreamFailure;
  readonly status?: number;
  readonly retryAfterMs?: number;
  constructor(failure: UpstreamFailure, message: string, options: { status?: number; retryAfterMs?: number; cause?: unknown } = {}) {
    super(redactSecrets(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UpstreamError';
    this.failure = failure;
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export function isUpstreamError(err: unknown): err is UpstreamError {
  return (
    typeof err === 'object' &&
    err !== null &&
    (err as { name?: unknown }).name === 'UpstreamError' &&
    typeof (err as { failure?: unknown }).failure === 'string'
  );
}

// ---------------------------------------------------------------------------------
// Routers

/** What JSONata expressions and routers see of a request. */
export interface RequestView {
  readonly model: string;
  readonly messages: readonly ChatMessage[];
  /** Every body field other than model, messages, metadata and stream. */
  readonly parameters: Readonly<Record<string, unknown>>;
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Only the headers the policy allow-lists (server.header_allowlist), lower-cased. */
  readonly headers: Readonly<Record<string, string>>;
  readonly stream: boolean;
}

export interface RoutingContext {
  readonly route: string;
  readonly request: RequestView;
  /** The policy's declared features, evaluated for this request. */
  readonly features: Readonly<Record<string, unknown>>;
  /** request fields and features in one object: what the policy's JSONata sees. */
  readonly input: Readonly<Record<string, unknown>>;
}

export interface RoutingDecision {
  /** Exactly one of tier or model. */
  tier?: string;
  model?: string;
  /** 0..1; defaults to 1. */
  confidence?: number;
  /** Human-readable: why this tier. Logged with the decision. */
  reason: string;
  /**
   * For a router with a threshold (withThreshold): the threshold values at which this
   * request's decision changes (a classifier's probabilities). `tiergate eval` places its
   * sweep at their quantiles, so the curve has points where the router's scores lie.
   */
  thresholds?: readonly number[];
}

/** What the host keeps of a routed request, so that a later score can become a RoutingOutcome. */
export interface RoutedDecision {
  readonly route: string;
  readonly request_id: string;
  /** The tier (or, for a model decision, the model) the request was routed to first. */
  readonly arm: string;
  /** The features the router saw (RoutingContext.features), as evaluated for this request. */
  readonly features: Readonly<Record<string, unknown>>;
  /** Everything the request cost (escalations and judge calls included); null when unknown. */
  readonly cost_usd: number | null;
  readonly latency_ms: number;
  /** The gateway key the request came with (server.auth.keys), by name; absent without keys. Only that key may score it. */
  readonly api_key_name?: string;
}

/**
 * What became of a routed request, for routers that learn (a bandit). The host sends one
 * when the request's decision line is written (quality = the gate's score, null when the
 * route has no gate) and one per POST /v1/feedback (quality = the posted score).
 */
export interface RoutingOutcome extends RoutedDecision {
  /** 0..1; null when nothing judged the answer. */
  readonly quality: number | null;
  readonly source: 'gate' | 'feedback';
}

/** How long after a decision, and for how many recent decisions, feedback is accepted. */
export interface FeedbackWindow {
  readonly ttl_ms: number;
  readonly capacity: number;
}

export type FeedbackClaim =
  | { readonly status: 'claimed'; readonly decision: RoutedDecision }
  | { readonly status: 'already_scored'; readonly decision: RoutedDecision; readonly score: number | null }
  | { readonly status: 'unknown' }
  /** The decision was made with another gateway key (RoutedDecision.api_key_name): not claimed. */
  | { readonly status: 'forbidden' };

/**
 * Recent decisions kept where every replica reaches them (a router whose statistics are
 * shared, say through Redis), so that POST /v1/feedback sent to any replica finds the
 * decision and is applied once. Without it, only the replica that served a request
 * accepts feedback for it.
 */
export interface SharedDecisions {
  /**
   * Keeps a decision for the feedback window (and no more than `capacity` of them).
   * Called after the response has been sent; must not block or throw: a store that is
   * down is the router's to log.
   */
  remember(decision: RoutedDecision, window: FeedbackWindow): void;
  /**
   * Atomically takes the decision for one score: the first claim wins, later ones get
   * `already_scored`. `caller` is the name of the gateway key the feedback came with
   * (null without keys): a decision remembered with another api_key_name must answer
   * `forbidden` and stay unclaimed. Rejects when the store cannot be reached (the host
   * then falls back to what this replica remembers).
   */
  claim(requestId: string, score: number, window: FeedbackWindow, caller: string | null): Promise<FeedbackClaim>;
}

export interface Router extends Disposable {
  /** `null` means "no opinion": the route's default applies. */
  route(ctx: RoutingContext): RoutingDecision | null | Promise<RoutingDecision | null>;
  /** Learns from an outcome. Called off the request path; must not throw for bad luck (a store being down). */
  learn?(outcome: RoutingOutcome): void | Promise<void>;
  /** Where recent decisions wait for feedback beyond this process (see SharedDecisions). */
  readonly sharedDecisions?: SharedDecisions;
  /** A JSON-able picture of what the router has learned, shown at GET /admin/status. */
  describe?(): unknown;
  /**
   * The same router deciding at another threshold (a classifier's probability cut-off).
   * `tiergate eval` sweeps it to trace the router's cost–quality curve. Must be cheap.
   */
  withThreshold?(threshold: number): Router;
}

// ---------------------------------------------------------------------------------
// Evaluators (quality gates)

export interface EvalInput {
  readonly request: RequestView;
  /** The answer being judged (for a stream, the chunks assembled into one result). */
  readonly response: ChatResult;
  readonly features: Readonly<Record<string, unknown>>;
  /** The policy model that answered. */
  readonly model: ModelSpec;
}

/**
 * What an input check judges (gate.input_checks): the request alone, before any model is
 * called, so there is no answer and no answering model. A separate shape rather than an
 * EvalInput with an optional answer, so that no answer-judging evaluator has to guard
 * against a missing one.
 */
export interface InputCheckInput {
  readonly request: RequestView;
  readonly features: Readonly<Record<string, unknown>>;
}

/** A model call an evaluator made (an LLM judge): its tokens and cost count toward the request. */
export interface SpentCall {
  model: string;
  usage: Usage;
}

export interface Evaluation {
  /** 0..1: how good the answer is by this evaluator's measure. */
  score: number;
  /** Why: shown in the decision log next to the score. */
  details?: Record<string, unknown>;
  spent?: SpentCall[];
}

export interface Evaluator extends Disposable {
  evaluate(input: EvalInput, signal: AbortSignal): Promise<Evaluation>;
  /**
   * Scores the request before any model is called, on the same 0..1 scale as evaluate
   * (1: the request may go on). Implemented by an evaluator whose meta.capabilities lists
   * 'checks-input'; only those may be a gate's input check.
   */
  checkInput?(input: InputCheckInput, signal: AbortSignal): Promise<Evaluation>;
  /**
   * Request fields the evaluator needs from the provider, merged into every upstream
   * request of a gated route (e.g. `{ logprobs: true }`).
   */
  readonly upstreamParameters?: Readonly<Record<string, unknown>>;
}

export type RouterModule<O> = PluginModule<O, Router>;
export type ProviderModule<O> = PluginModule<O, Provider>;
export type EvaluatorModule<O> = PluginModule<O, Evaluator>;
