// The pipeline without HTTP: a runtime built from a small policy, whose providers (and a
// route's gate evaluators) are replaced by instances a test writes, so a test drives the
// stages (src/pipeline/) directly and sees exactly which models were called, in what
// order, with which AbortSignal. Nothing of tiergate's own is mocked: the test's
// instances implement the plugin interfaces (src/plugin-contract/plugin-api.ts).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/observe/logger.ts';
import type { AttemptRecord } from '../../src/observe/decision-log.ts';
import { Runtime, type GateEvaluator, type ModelRuntime, type RouteRuntime } from '../../src/policy/runtime.ts';
import { buildRuntime } from '../../src/policy/compile.ts';
import { ClientLink } from '../../src/pipeline/cancellation.ts';
import type { ExecutionContext } from '../../src/pipeline/execution-context.ts';
import { requestView, routeRequest, type ChatBody } from '../../src/pipeline/route.ts';
import type { CallOptions, ChatChunk, ChatRequest, ChatResult, EvalInput, Evaluation, Evaluator, Provider } from '../../src/plugin-contract/plugin-api.ts';

export const logger = createLogger({ level: 'error' });

/** Three tiers of two, one and one models, and a route whose rules pick the tier from metadata.tier. */
export function ladderPolicy(route = '', options: { timeoutMs?: number } = {}): string {
  return `version: 1
providers:
  sim: { plugin: simulator, time_scale: 0, default_profile: { capability: 0.5, first_token_ms: 1, tokens_per_second: 1000 }${options.timeoutMs ? `, timeout_ms: ${options.timeoutMs}` : ''} }
models:
  small-a: { provider: sim, upstream: a, price: { input_per_mtok: 1, output_per_mtok: 1 } }
  small-b: { provider: sim, upstream: b, price: { input_per_mtok: 1, output_per_mtok: 1 } }
  medium-m: { provider: sim, upstream: m, price: { input_per_mtok: 5, output_per_mtok: 5 } }
  large-l: { provider: sim, upstream: l, price: { input_per_mtok: 20, output_per_mtok: 20 } }
tiers:
  - { name: small, models: [small-a, small-b] }
  - { name: medium, models: [medium-m] }
  - { name: large, models: [large-l] }
features:
  tier: metadata.tier
resilience: { retries: 1, backoff_ms: 1, max_backoff_ms: 5, failure_threshold: 100 }
routes:
  support:
    router:
      plugin: rules
      rules:
        - { when: "tier = 'small'", tier: small, confidence: 0.9, reason: asked small }
        - { when: "tier = 'unsure'", tier: small, confidence: 0.3, reason: unsure }
    default: large
${route}`;
}

/** One call a test provider saw. */
export interface SeenCall {
  model: string;
  signal: AbortSignal;
  stream: boolean;
}

/** What a test provider does with a call: answer with text, or throw. */
export type Behaviour = (call: SeenCall, request: ChatRequest) => Promise<string> | string;

/** A Provider that records every call (in `calls`, shared by all of one test's providers) and behaves as told. */
export class ScriptedProvider implements Provider {
  constructor(
    private readonly name: string,
    private readonly calls: SeenCall[],
    private readonly behaviour: Behaviour,
  ) {}

  async complete(request: ChatRequest, call: CallOptions): Promise<ChatResult> {
    const seen: SeenCall = { model: this.name, signal: call.signal, stream: false };
    this.calls.push(seen);
    const content = await this.behaviour(seen, request);
    return {
      id: `r-${this.name}`,
      object: 'chat.completion',
      created: 1,
      model: request.model,
      choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
    };
  }

  async *stream(request: ChatRequest, call: CallOptions): AsyncIterable<ChatChunk> {
    const seen: SeenCall = { model: this.name, signal: call.signal, stream: true };
    this.calls.push(seen);
    const content = await this.behaviour(seen, request);
    for (const word of content.split(' ')) {
      yield {
        id: `s-${this.name}`,
        object: 'chat.completion.chunk',
        created: 1,
        model: request.model,
        choices: [{ index: 0, delta: { content: word }, finish_reason: null }],
      };
    }
    yield {
      id: `s-${this.name}`,
      object: 'chat.completion.chunk',
      created: 1,
      model: request.model,
      choices: [{ index: 0, delta: {}, finish_reason: 'stop' }],
    };
  }

  async dispose(): Promise<void> {}
}

/** An Evaluator that scores an answer by a function of its text. */
export class ScoringEvaluator implements Evaluator {
  readonly signals: AbortSignal[] = [];
  constructor(private readonly score: (text: string, input: EvalInput) => number | Promise<number>) {}

  async evaluate(input: EvalInput, signal: AbortSignal): Promise<Evaluation> {
    this.signals.push(signal);
    const content = input.response.choices[0].message.content;
    return { score: await this.score(typeof content === 'string' ? content : '', input) };
  }

  async dispose(): Promise<void> {}
}

/** Waits `ms`, or rejects when the call's signal aborts first (as a well-behaved provider does). */
export function slowly(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

export interface TestPipeline {
  runtime: Runtime;
  /** Every provider call, in the order made. */
  calls: SeenCall[];
  /** A context for `body`, routed as the pipeline would route it. */
  context(body: Partial<ChatBody>, client?: ClientLink): Promise<ExecutionContext>;
  close(): void;
}

export interface TestPipelineOptions {
  /** How each model's provider behaves (a model not named answers "ok"). */
  behaviours?: Record<string, Behaviour>;
  /** A model's provider outright, in place of a ScriptedProvider (its calls are its own to record). */
  providers?: Record<string, Provider>;
  /** The gate evaluators of route `support`, in place of the policy's. */
  evaluators?: Evaluator[];
  /** Gate settings of route `support` when evaluators are given. */
  gate?: { threshold?: number; maxEscalations?: number; streaming?: 'buffer' | 'bypass'; decide?: 'threshold' | 'cascade'; onFail?: 'serve' | 'refuse' };
}

/** Builds the policy, then puts the test's provider (and evaluator) instances in its runtime. */
export async function testPipeline(policy: string, options: TestPipelineOptions = {}): Promise<TestPipeline> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-pipeline-'));
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, policy);
  const built = await buildRuntime(file, { logger, mode: 'validate', env: {} });
  const calls: SeenCall[] = [];
  const models = new Map<string, ModelRuntime>();
  for (const [name, model] of built.models) {
    const provider = options.providers?.[name] ?? new ScriptedProvider(name, calls, options.behaviours?.[name] ?? (() => 'ok'));
    models.set(name, Object.freeze({ ...model, provider }));
  }
  const routes = new Map<string, RouteRuntime>();
  for (const [name, route] of built.routes) {
    if (!options.evaluators || name !== 'support') {
      routes.set(name, route);
      continue;
    }
    const evaluators: GateEvaluator[] = options.evaluators.map((evaluator, i) => ({ name: `e${i}`, evaluator, weight: 1, threshold: null, when: null }));
    const gate = options.gate ?? {};
    routes.set(name, {
      ...route,
      // As compile.ts does for a gated route: without a declared fallback, its ladder ends at the top tier.
      fallback: route.fallback ?? { kind: 'tier', tier: built.tiers.length - 1 },
      gate: {
        evaluators,
        combine: 'weighted',
        threshold: gate.threshold ?? 0.5,
        thresholdSource: 'policy',
        decide: gate.decide ?? 'threshold',
        maxEscalations: gate.maxEscalations ?? 2,
        streaming: gate.streaming ?? 'buffer',
        onFail: gate.onFail ?? 'serve',
        inputChecks: null,
      },
    });
  }
  const runtime = new Runtime(
    {
      version: built.version,
      file: built.file,
      policy: built.policy,
      routes,
      models,
      features: built.features,
      server: built.server,
      resilience: built.resilience,
      health: built.health,
      limits: built.limits,
      shared: built.shared,
      decisionLog: null,
      logPrompts: false,
      plugins: built.plugins,
      watchPaths: built.watchPaths,
      watchFiles: built.watchFiles,
    },
    [],
    logger,
  );
  return {
    runtime,
    calls,
    async context(partial, client = new ClientLink()) {
      const body = { model: 'support', messages: [{ role: 'user' as const, content: 'hello there' }], ...partial } as ChatBody;
      const routed = await routeRequest(runtime, body, requestView(body, {}, runtime.server.headerAllowlist));
      const attempts: AttemptRecord[] = [];
      return { runtime, routed, body, client, startedAt: performance.now(), attempts };
    },
    close() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
