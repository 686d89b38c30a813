// A fast token estimate for routing features, cost estimates and the simulator. Real
// tokenizers are model-specific and slow to load; ~4 characters per token is the
// usual rule of thumb for English with the GPT and Claude tokenizers, and routing only
// needs the order of magnitude.
import type { ChatMessage, ChatResult, ContentPart, EmbeddingInput, Usage } from './plugin-api.ts';

const CHARS_PER_TOKEN = 4;
/** Per-message overhead of the chat format (role markers and separators). */
const TOKENS_PER_MESSAGE = 4;

export function estimateTextTokens(text: string): number {
  return text.length === 0 ? 0 : Math.ceil(text.length / CHARS_PER_TOKEN);
}

export function messageText(content: ChatMessage['content'] | undefined): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let text = '';
  for (const part of content as ContentPart[]) {
    if (part && part.type === 'text' && typeof (part as { text?: unknown }).text === 'string') {
      text += (text ? '\n' : '') + (part as { text: string }).text;
    }
  }
  return text;
}

export function estimateMessagesTokens(messages: readonly ChatMessage[]): number {
  let total = 0;
  for (const m of messages) total += TOKENS_PER_MESSAGE + estimateTextTokens(messageText(m.content));
  return total;
}

export function lastUserMessage(messages: readonly ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i].role === 'user') return messageText(messages[i].content);
  }
  return '';
}

/** Token counts estimated from the texts: for an answer whose provider reported none, so that its cost is never silently 0. */
export function estimatedUsage(messages: readonly ChatMessage[], completionText: string): Usage {
  const prompt = estimateMessagesTokens(messages);
  const completion = estimateTextTokens(completionText);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** The reply's usage as the provider reported it, or else the estimate for `messages` and the reply's `text`. */
export function reportedOrEstimatedUsage(reply: ChatResult, messages: readonly ChatMessage[], text: string): { usage: Usage; estimated: boolean } {
  const usage = reply.usage;
  if (usage && typeof usage.prompt_tokens === 'number' && typeof usage.completion_tokens === 'number') return { usage, estimated: false };
  return { usage: estimatedUsage(messages, text), estimated: true };
}

/** The inputs of an embeddings request, one per vector: a single text, or a single token array, is one. */
export function embeddingInputs(input: EmbeddingInput): Array<string | number[]> {
  if (typeof input === 'string') return [input];
  if (input.length > 0 && typeof input[0] === 'number') return [input as number[]];
  return input as Array<string | number[]>;
}

/** Tokens of one embeddings input, as the gateway counts a prompt; a token array counts its ids. */
export function estimateEmbeddingTokens(item: string | number[]): number {
  return typeof item === 'string' ? estimateTextTokens(item) : item.length;
}
