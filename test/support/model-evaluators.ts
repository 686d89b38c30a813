// For test/plugins/evaluators-judge.test.ts and evaluators-model.test.ts, the evaluators
// that read a model (llm_judge, logprob) and the team example (order_status): a policy
// model, a request and an answer built by hand, and the input an evaluator sees for them.
import type { ChatMessage, ChatResult, EvalInput, ModelSpec, RequestView } from '../../src/plugin-contract/plugin-api.ts';

export function spec(name: string, upstream = name, provider = 'p'): ModelSpec {
  return { name, provider, upstream, price: { input_per_mtok: 1, output_per_mtok: 2 }, timeout_ms: 5000 };
}

export function view(messages: ChatMessage[], parameters: Record<string, unknown> = {}): RequestView {
  return { model: 'support', messages, parameters, metadata: {}, headers: {}, stream: false };
}

export function result(content: string | null, extra: Partial<ChatResult['choices'][number]> = {}): ChatResult {
  return {
    id: 'r1',
    object: 'chat.completion',
    created: 0,
    model: 'm',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop', ...extra }],
  };
}

export function input(messages: ChatMessage[], response: ChatResult, model: ModelSpec = spec('small-model')): EvalInput {
  return { request: view(messages), response, features: {}, model };
}

export function ask(question: string, system?: string): ChatMessage[] {
  return system
    ? [
        { role: 'system', content: system },
        { role: 'user', content: question },
      ]
    : [{ role: 'user', content: question }];
}

/** A signal that never aborts. */
export const never = () => new AbortController().signal;
