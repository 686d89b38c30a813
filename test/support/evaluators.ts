// For test/plugins/evaluators-crafted.test.ts and evaluators.test.ts, which call the
// built-in evaluators directly: the model an answer comes from, the input an evaluator
// sees for one answer (crafted or recorded), and the plugin context they are created in.
import type { ChatChoice, ChatMessage, ChatResult, EvalInput, FinishReason, ModelSpec, PluginContext } from '../../src/plugin-contract/plugin-api.ts';
import { testPluginContext } from './plugin-context.ts';

/** The usual gate threshold: an answer "passes" an evaluator at or above it. */
export const PASS = 0.5;

export const model: ModelSpec = {
  name: 'small',
  provider: 'sim',
  upstream: 'sim-small',
  price: { input_per_mtok: 0.15, output_per_mtok: 0.6 },
  timeout_ms: 5000,
};
export const signal = new AbortController().signal;

export function ctx(): PluginContext {
  return testPluginContext({ at: 'routes.r.gate.evaluators[0]' });
}

/** One answer to evaluate and what came with it. */
export interface Case {
  answer: string | null;
  finish?: FinishReason | null;
  messages?: ChatMessage[];
  metadata?: Record<string, unknown>;
  features?: Record<string, unknown>;
  message?: Partial<ChatChoice['message']>;
}

export function input(c: Case): EvalInput {
  const response: ChatResult = {
    id: 'chatcmpl-test',
    object: 'chat.completion',
    created: 0,
    model: model.upstream,
    choices: [{ index: 0, message: { role: 'assistant', content: c.answer, ...c.message }, finish_reason: c.finish === undefined ? 'stop' : c.finish }],
    usage: { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 },
  };
  return {
    request: {
      model: 'support',
      messages: c.messages ?? [{ role: 'user', content: 'Tell me about the weather in Lisbon in spring.' }],
      parameters: {},
      metadata: c.metadata ?? {},
      headers: {},
      stream: false,
    },
    response,
    features: c.features ?? {},
    model,
  };
}
