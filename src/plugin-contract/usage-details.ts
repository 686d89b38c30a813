// The token counts that prices depend on, in one shape whatever the provider. Inside
// tiergate, usage is OpenAI's: prompt_tokens counts every input token (cached or not),
// completion_tokens every output token (reasoning included), and the details say how many
// of them were read from the prompt cache, written to it, or spent reasoning. Providers
// that report these another way (Anthropic leaves cached tokens out of input_tokens,
// Gemini leaves thinking tokens out of candidatesTokenCount) build their usage with
// `tokenUsage` so that nothing is counted twice or priced at zero.
import type { Usage } from './plugin-api.ts';

/** A provider's token counts, each counted once. */
export interface TokenCounts {
  /** Input tokens neither read from nor written to the prompt cache. */
  uncachedInput: number;
  /** Input tokens read from the prompt cache (priced at cached_input_per_mtok). */
  cachedInput?: number;
  /** Input tokens written to the prompt cache (priced at cache_write_input_per_mtok). */
  cacheWriteInput?: number;
  /** Output tokens other than reasoning. */
  visibleOutput: number;
  /** Reasoning (thinking) tokens: output, priced as such. */
  reasoningOutput?: number;
}

/** OpenAI-shaped usage from counts that do not overlap; details only for what is there. */
export function tokenUsage(counts: TokenCounts): Usage {
  const cached = whole(counts.cachedInput);
  const cacheWrite = whole(counts.cacheWriteInput);
  const reasoning = whole(counts.reasoningOutput);
  const prompt = whole(counts.uncachedInput) + cached + cacheWrite;
  const completion = whole(counts.visibleOutput) + reasoning;
  const usage: Usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  if (cached > 0 || cacheWrite > 0) {
    usage.prompt_tokens_details = { cached_tokens: cached, ...(cacheWrite > 0 ? { cache_write_tokens: cacheWrite } : {}) };
  }
  if (reasoning > 0) usage.completion_tokens_details = { reasoning_tokens: reasoning };
  return usage;
}

/** Prompt tokens read from the cache, never more than the prompt (an upstream's details can disagree with its totals). */
export function cachedInputTokens(usage: Usage): number {
  return Math.min(detail(usage.prompt_tokens_details, 'cached_tokens'), whole(usage.prompt_tokens));
}

/** Prompt tokens written to the cache, never more than the prompt tokens left after the cached ones. */
export function cacheWriteInputTokens(usage: Usage): number {
  return Math.min(detail(usage.prompt_tokens_details, 'cache_write_tokens'), whole(usage.prompt_tokens) - cachedInputTokens(usage));
}

/** Completion tokens spent reasoning (already inside completion_tokens). */
export function reasoningTokens(usage: Usage): number {
  return Math.min(detail(usage.completion_tokens_details, 'reasoning_tokens'), whole(usage.completion_tokens));
}

function detail(details: unknown, key: string): number {
  return typeof details === 'object' && details !== null ? whole((details as Record<string, unknown>)[key]) : 0;
}

/** A count an upstream reported; anything that is not a non-negative number counts as 0. */
function whole(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}
