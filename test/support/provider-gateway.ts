// The gateway in front of local upstreams through the real provider plugins (openai →
// fake-openai, anthropic → fake-anthropic), for test/pipeline/upstream*.test.ts: the
// policy, request shapes, a marker unique to one test to find its upstream request and
// its decision line (log_prompts is on), and the check that the gateway still serves
// normally after everything a file did to it.
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionCreateParamsStreaming } from 'openai/resources/chat/completions';
import { startTestGateway, type TestGateway } from './gateway.ts';
import { startFakeOpenAI, type FakeOpenAI } from './fake-openai.ts';
import { startFakeAnthropic, type FakeAnthropic } from './fake-anthropic.ts';
import { until } from './wait.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';

export const TIMEOUT_MS = 400;
export const PRICE = { input_per_mtok: 1.25, output_per_mtok: 5 };

export function policy(openaiBaseURL: string, anthropicBaseURL: string): string {
  return `version: 1
providers:
  up: { plugin: openai, base_url: "${openaiBaseURL}", api_key: test-key }
  claude: { plugin: anthropic, base_url: "${anthropicBaseURL}", api_key: test-key }
models:
  oa-fast: { provider: up, upstream: fake-gpt, price: { input_per_mtok: ${PRICE.input_per_mtok}, output_per_mtok: ${PRICE.output_per_mtok} }, timeout_ms: ${TIMEOUT_MS} }
  oa-patient: { provider: up, upstream: fake-gpt-patient, price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 10000 }
  claude-model: { provider: claude, upstream: claude-fake-1, price: { input_per_mtok: 3, output_per_mtok: 15 }, timeout_ms: 5000 }
tiers:
  - { name: small, models: [oa-fast] }
  - { name: large, models: [claude-model] }
features:
  task_type: metadata.task_type
routes:
  chat:
    router:
      plugin: rules
      rules:
        - { when: "task_type = 'hard'", tier: large, reason: hard }
    default: small
analytics:
  decision_log: { file: decisions.jsonl, log_prompts: true }
`;
}

let markers = 0;
/** A string unique to one test, to find its request upstream and its decision line. */
export function marker(): string {
  return `mk-${process.pid}-${++markers}-${Math.random().toString(36).slice(2, 8)}`;
}

export function body(model: string, content: string, extra: Record<string, unknown> = {}): ChatCompletionCreateParamsNonStreaming {
  return { model, messages: [{ role: 'user', content }], ...extra } as ChatCompletionCreateParamsNonStreaming;
}

export function streamBody(model: string, content: string, extra: Record<string, unknown> = {}): ChatCompletionCreateParamsStreaming {
  return { model, messages: [{ role: 'user', content }], stream: true, ...extra } as ChatCompletionCreateParamsStreaming;
}

export interface ProviderGateway {
  openai: FakeOpenAI;
  anthropic: FakeAnthropic;
  tg: TestGateway;
  client: OpenAI;
  /** The decision line whose logged prompt contains `mark` (log_prompts is on in this policy). */
  decisionFor(mark: string): Promise<DecisionRecord>;
  /** The one request fake-openai received that carries `mark`. */
  upstreamRequestFor(mark: string): FakeOpenAI['requests'][number];
  /** The gateway still serves a normal request, is ready, and holds no request in flight. */
  assertStillServes(): Promise<void>;
  close(): Promise<void>;
}

export async function startProviderGateway(): Promise<ProviderGateway> {
  const openai = await startFakeOpenAI();
  let anthropic: FakeAnthropic | undefined;
  let tg: TestGateway;
  try {
    anthropic = await startFakeAnthropic();
    tg = await startTestGateway(policy(openai.baseURL, anthropic.baseURL));
  } catch (err) {
    await anthropic?.close();
    await openai.close();
    throw err;
  }
  const client = new OpenAI({ baseURL: tg.baseURL, apiKey: 'client-key', maxRetries: 0, timeout: 10_000 });
  return {
    openai,
    anthropic,
    tg,
    client,
    async decisionFor(mark: string): Promise<DecisionRecord> {
      let found: DecisionRecord | undefined;
      await until(() => {
        found = tg.decisions().find((d) => JSON.stringify(d.prompt ?? null).includes(mark));
        return found !== undefined;
      }, `the decision line of ${mark}`);
      return found as DecisionRecord;
    },
    upstreamRequestFor(mark: string) {
      const found = openai.requests.filter((r) => JSON.stringify(r.body ?? null).includes(mark));
      assert.equal(found.length, 1, `exactly one upstream request carries ${mark}`);
      return found[0];
    },
    async assertStillServes() {
      openai.behave(() => ({ kind: 'reply' }));
      const mark = marker();
      const data = await client.chat.completions.create(body('chat', `ping ${mark}`));
      assert.equal(data.choices[0].message.content, `echo: ping ${mark}`);
      const ready = await fetch(`${tg.url}/readyz`);
      assert.equal(ready.status, 200);
      assert.equal(tg.gateway.manager.runtime.inflightRequests, 0, 'no request is left hanging in the gateway');
    },
    async close() {
      await tg.close();
      await openai.close();
      await anthropic.close();
    },
  };
}
