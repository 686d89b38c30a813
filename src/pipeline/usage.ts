// What an answer cost, and its text. Token estimates for an answer whose provider
// reported no usage are src/plugin-contract/tokens.ts's estimatedUsage.
import type { ChatResult, Usage } from '../plugin-contract/plugin-api.ts';
import { messageText } from '../plugin-contract/tokens.ts';
import { cachedInputTokens, cacheWriteInputTokens } from '../plugin-contract/usage-details.ts';
import type { ModelRuntime } from '../policy/runtime.ts';

/**
 * The one place usage becomes dollars; the decision line, budgets and metrics all read its
 * result. Cached and cache-written prompt tokens are priced at their own rates (input's
 * when the policy gives none); reasoning tokens are already inside completion_tokens, so
 * they are priced as output without being counted again.
 */
export function costOf(model: ModelRuntime, usage: Usage): number {
  const price = model.spec.price;
  const cached = cachedInputTokens(usage);
  const cacheWrite = cacheWriteInputTokens(usage);
  const uncached = usage.prompt_tokens - cached - cacheWrite;
  const input =
    uncached * price.input_per_mtok +
    cached * (price.cached_input_per_mtok ?? price.input_per_mtok) +
    cacheWrite * (price.cache_write_input_per_mtok ?? price.input_per_mtok);
  return (input + usage.completion_tokens * price.output_per_mtok) / 1e6;
}

export function answerText(result: ChatResult): string {
  return result.choices.map((c) => messageText(c.message?.content ?? '')).join('');
}
