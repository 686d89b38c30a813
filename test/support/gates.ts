// The gate tests' shared ground: the fixture evaluators (test/fixtures/gate-plugins) whose
// verdict is written in the answer text ("[q=0.9] …"), the two-tier gateway most of them
// stand on (two fake-openai models in the small tier for failover, one in the large, and
// a route per behaviour: gated, bypass, plain, plain-fallback, spec, nospec, asym,
// asym-spec, solo), the documented cost arithmetic, and request shapes for the openai SDK.
import path from 'node:path';
import OpenAI from 'openai';
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionCreateParamsStreaming } from 'openai/resources/chat/completions';
import type { AttemptRecord } from '../../src/observe/decision-log.ts';
import { startFakeOpenAI, type FakeOpenAI } from './fake-openai.ts';
import { startTestGateway, type TestGateway } from './gateway.ts';
import { ScriptedUpstreams } from './scripted-upstream.ts';

export const GATE_PLUGINS = path.resolve(import.meta.dirname, '../fixtures/gate-plugins');

export function client(tg: TestGateway): OpenAI {
  return new OpenAI({ baseURL: tg.baseURL, apiKey: 'client-key', maxRetries: 0, timeout: 15_000 });
}

export function ask(model: string, content: string, metadata: Record<string, unknown> = {}): ChatCompletionCreateParamsNonStreaming {
  return { model, messages: [{ role: 'user', content }], metadata } as unknown as ChatCompletionCreateParamsNonStreaming;
}

export function askStream(model: string, content: string, extra: Record<string, unknown> = {}): ChatCompletionCreateParamsStreaming {
  return { model, messages: [{ role: 'user', content }], stream: true, ...extra } as unknown as ChatCompletionCreateParamsStreaming;
}

export function price(input: number, output: number) {
  return { input, output };
}

/** What a call costs, computed the documented way: tokens × price per million. */
export function cost(p: { input: number; output: number }, usage: { prompt_tokens: number; completion_tokens: number }): number {
  return (usage.prompt_tokens * p.input + usage.completion_tokens * p.output) / 1e6;
}

/** The attempts' own costs plus their judges', summed in the order logged (what cost_usd must be). */
export function sumOfAttempts(attempts: AttemptRecord[]): number {
  return attempts.reduce((sum, a) => sum + a.cost_usd + (a.gate?.cost_usd ?? 0), 0);
}

/** The fields of an attempt a test pins down. */
export function brief(a: AttemptRecord) {
  return { model: a.model, role: a.role, outcome: a.outcome, retries: a.retries, error_code: a.error_code };
}

// ---------------------------------------------------------------------------------
// The two-tier gateway: two tiers of fake-openai models (two in the small tier, for failover).

export const SMALL = price(1, 2);
export const LARGE = price(10, 30);
export const SMALL_TIMEOUT_MS = 600;

export function twoTierPolicy(baseURL: string): string {
  const gate = (extra = '') => `gate: { evaluators: [ { plugin: answer_score } ], threshold: 0.7${extra} }`;
  const toSmall = (confidence: number) => `router: { plugin: rules, rules: [ { when: "true", tier: small, confidence: ${confidence}, reason: cheap first } ] }`;
  return `version: 1
plugins: { paths: [${JSON.stringify(GATE_PLUGINS)}] }
providers:
  up: { plugin: openai, base_url: "${baseURL}", api_key: test-key }
models:
  small-a: { provider: up, upstream: up-small-a, price: { input_per_mtok: ${SMALL.input}, output_per_mtok: ${SMALL.output} }, timeout_ms: ${SMALL_TIMEOUT_MS} }
  small-b: { provider: up, upstream: up-small-b, price: { input_per_mtok: ${SMALL.input}, output_per_mtok: ${SMALL.output} }, timeout_ms: ${SMALL_TIMEOUT_MS} }
  large-l: { provider: up, upstream: up-large-l, price: { input_per_mtok: ${LARGE.input}, output_per_mtok: ${LARGE.output} }, timeout_ms: 3000 }
  solo: { provider: up, upstream: up-solo, price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 300 }
tiers:
  - { name: small, models: [small-a, small-b] }
  - { name: large, models: [large-l] }
features:
  kind: metadata.kind
resilience: { retries: 1, backoff_ms: 20, max_backoff_ms: 1500, failure_threshold: 1000, cooldown_ms: 1000 }
routes:
  gated:
    ${toSmall(0.8)}
    default: small
    ${gate()}
  bypass:
    ${toSmall(0.8)}
    default: small
    ${gate(', streaming: bypass')}
  plain:
    ${toSmall(1)}
    default: small
  plain-fallback:
    ${toSmall(1)}
    default: small
    fallback: large-l
  spec:
    ${toSmall(0.5)}
    default: small
    ${gate()}
    speculate: { when: "decision.confidence < 0.6" }
  nospec:
    ${toSmall(0.5)}
    default: small
    ${gate()}
  asym:
    router:
      plugin: rules
      rules:
        - { when: "kind = 'unsure'", tier: small, confidence: 0.7, reason: probably easy }
        - { when: "kind = 'sure'", tier: small, confidence: 0.9, reason: surely easy }
    default: large
    gate: { evaluators: [ { plugin: answer_score } ] }
    costs: { under_routing: 4, over_routing: 1 }
  asym-spec:
    router:
      plugin: rules
      rules:
        - { when: "kind = 'unsure'", tier: small, confidence: 0.7, reason: probably easy }
    default: large
    gate: { evaluators: [ { plugin: answer_score } ] }
    costs: { under_routing: 4, over_routing: 1 }
    speculate: { when: "decision.confidence < 0.75" }
analytics:
  decision_log: { file: decisions.jsonl }
`;
}

export interface TwoTierGateway {
  fake: FakeOpenAI;
  up: ScriptedUpstreams;
  tg: TestGateway;
  sdk: OpenAI;
  close(): Promise<void>;
}

/** The two-tier gateway on its own fake-openai server, with an SDK client. */
export async function startTwoTierGateway(): Promise<TwoTierGateway> {
  const fake = await startFakeOpenAI();
  const up = new ScriptedUpstreams(fake);
  let tg: TestGateway;
  try {
    tg = await startTestGateway(twoTierPolicy(fake.baseURL));
  } catch (err) {
    await fake.close();
    throw err;
  }
  return {
    fake,
    up,
    tg,
    sdk: client(tg),
    async close() {
      await tg.close();
      await fake.close();
    },
  };
}
