// What an answer used and what it cost: the provider's token counts when it gave them,
// an estimate when it did not.
import type { ChatResult, Usage } from '../plugin-contract/plugin-api.ts';
import { estimateMessagesTokens, estimateTextTokens, messageText } from '../plugin-contract/tokens.ts';
import type { ModelRuntime } from '../policy/runtime.ts';
import type { ChatBody } from './route.ts';

export function costOf(model: ModelRuntime, usage: Usage): number {
  return (usage.prompt_tokens * model.spec.price.input_per_mtok + usage.completion_tokens * model.spec.price.output_per_mtok) / 1e6;
}

export function estimatedUsage(body: ChatBody, completionText: string): Usage {
  const prompt = estimateMessagesTokens(body.messages);
  const completion = estimateTextTokens(completionText);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

export function answerText(result: ChatResult): string {
  return result.choices.map((c) => messageText(c.message?.content ?? '')).join('');
}
