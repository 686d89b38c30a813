// What an answer cost, and its text. Token estimates for an answer whose provider
// reported no usage are src/plugin-contract/tokens.ts's estimatedUsage.
import type { ChatResult, Usage } from '../plugin-contract/plugin-api.ts';
import { messageText } from '../plugin-contract/tokens.ts';
import type { ModelRuntime } from '../policy/runtime.ts';

export function costOf(model: ModelRuntime, usage: Usage): number {
  return (usage.prompt_tokens * model.spec.price.input_per_mtok + usage.completion_tokens * model.spec.price.output_per_mtok) / 1e6;
}

export function answerText(result: ChatResult): string {
  return result.choices.map((c) => messageText(c.message?.content ?? '')).join('');
}
