// What the providers that translate OpenAI chat to another API share (gemini, bedrock):
// OpenAI's function tools read once, a tool call's arguments as the object the other API
// wants, the words for a reply that is not what was expected, and embeddings inputs cut
// into the calls such an API takes.
import { clip } from './openai-wire.ts';
import type { ChatChunk, ChatMessage, EmbeddingInput, FinishReason, ToolCall, Usage } from './plugin-api.ts';
import { embeddingInputs, messageText } from './tokens.ts';

/** An OpenAI function tool, read: its JSON Schema parameters always an object schema. */
export interface ToolDefinition {
  name: string;
  description?: string;
  parameters: Record<string, unknown>;
}

/** The request's function tools (other tool types have no equivalent upstream and are not sent). */
export function openAIToolDefinitions(tools: unknown): ToolDefinition[] {
  if (!Array.isArray(tools)) return [];
  const out: ToolDefinition[] = [];
  for (const tool of tools) {
    if (!isRecord(tool) || tool.type !== 'function' || !isRecord(tool.function) || typeof tool.function.name !== 'string') continue;
    const fn = tool.function;
    out.push({
      name: fn.name as string,
      ...(typeof fn.description === 'string' ? { description: fn.description } : {}),
      parameters: { type: 'object', properties: {}, ...(isRecord(fn.parameters) ? fn.parameters : {}) },
    });
  }
  return out;
}

/** OpenAI carries a tool call's arguments as a JSON string; other APIs want the object. Unparseable or non-object arguments become `{}`. */
export function toolCallArguments(call: ToolCall): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(call.function.arguments);
    return isRecord(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

/** A short description of an unexpected value, for an error message. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (isRecord(value)) return `an object with keys ${Object.keys(value).slice(0, 8).join(', ') || '(none)'}`;
  return typeof value === 'string' ? `text: ${clip(value)}` : typeof value;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A token count an upstream reported; anything but a positive finite number counts as 0. */
export function tokenCount(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}

/** One turn of a conversation in an API where turns alternate between the user and the assistant. */
export interface Turn<Block> {
  role: 'user' | 'assistant';
  blocks: Block[];
}

/** How one provider's content blocks are made from each kind of OpenAI message. */
export interface TurnBlocks<Block> {
  user(message: ChatMessage): Block[];
  assistant(message: ChatMessage): Block[];
  /** A tool's result: it goes in a user turn. */
  tool(message: ChatMessage): Block[];
}

/**
 * OpenAI messages as alternating turns: system and developer messages are taken out as
 * the system prompt (wherever they appear), tool results join the user's turn, and
 * consecutive messages of one role are merged, which APIs that want user/assistant
 * alternation (Gemini, Converse) require. Messages with no blocks are left out.
 */
export function alternatingTurns<Block>(messages: readonly ChatMessage[], blocks: TurnBlocks<Block>): { system: string[]; turns: Turn<Block>[] } {
  const system: string[] = [];
  const turns: Turn<Block>[] = [];
  const push = (role: Turn<Block>['role'], made: Block[]) => {
    if (made.length === 0) return;
    const last = turns[turns.length - 1];
    if (last && last.role === role) last.blocks.push(...made);
    else turns.push({ role, blocks: made });
  };
  for (const m of messages) {
    if (m.role === 'system' || m.role === 'developer') {
      const text = messageText(m.content);
      if (text !== '') system.push(text);
    } else if (m.role === 'assistant') push('assistant', blocks.assistant(m));
    else if (m.role === 'tool') push('user', blocks.tool(m));
    else push('user', blocks.user(m));
  }
  return { system, turns };
}

/**
 * The events of an upstream stream, each failure to read one mapped by `fail`. Read it
 * with for await: when the consumer stops early the upstream iterator is ended, which
 * closes the response.
 */
export async function* upstreamEvents<Event>(events: AsyncIterator<Event>, fail: (err: unknown) => Error): AsyncGenerator<Event> {
  try {
    for (;;) {
      let next: IteratorResult<Event>;
      try {
        next = await events.next();
      } catch (err) {
        throw fail(err);
      }
      if (next.done) return;
      yield next.value;
    }
  } finally {
    await events.return?.();
  }
}

/** What every chunk of one streamed answer repeats. */
export interface ChunkHead {
  id: string;
  created: number;
  model: string;
}

/** A chunk of the answer's one choice. */
export function deltaChunk(head: ChunkHead, delta: ChatChunk['choices'][number]['delta'], finish: FinishReason | null = null): ChatChunk {
  return { id: head.id, object: 'chat.completion.chunk', created: head.created, model: head.model, choices: [{ index: 0, delta, finish_reason: finish }] };
}

/** The last chunk of a stream: no choices, the usage (when the upstream reported any). */
export function usageChunk(head: ChunkHead, usage: Usage | undefined): ChatChunk {
  return { id: head.id, object: 'chat.completion.chunk', created: head.created, model: head.model, choices: [], ...(usage ? { usage } : {}) };
}

/**
 * The texts of an embeddings request, one per vector, for an API that embeds text only.
 * Token ids mean something only to OpenAI's tokenizers, so a request with them cannot be
 * sent: the error (the client's 400, TG_ERR_REQUEST_UNSENDABLE) names the input and `api`.
 */
export function embeddingTexts(input: EmbeddingInput, api: string): string[] {
  const inputs = embeddingInputs(input);
  const tokenIds = inputs.findIndex((item) => typeof item !== 'string');
  if (tokenIds >= 0) {
    const which = typeof input === 'string' || typeof input[0] === 'number' ? 'input' : `input[${tokenIds}]`;
    throw new Error(`${which} is an array of token ids, and ${api} embeds text only: send the text instead`);
  }
  return inputs as string[];
}

/**
 * `call` on every item, at most `limit` at a time, the results in the items' order: for
 * an upstream that takes fewer inputs per call than a client may send (Titan embeds one
 * text a call, Gemini's batchEmbedContents 100). The first failure aborts the calls still
 * running, through the signal each call is given, and is what rejects: a failed request
 * leaves no call behind it, and its error is the one that caused it, not a sibling's abort.
 */
export async function mapConcurrently<Item, Result>(
  items: readonly Item[],
  limit: number,
  signal: AbortSignal,
  call: (item: Item, index: number, signal: AbortSignal) => Promise<Result>,
): Promise<Result[]> {
  const siblings = new AbortController();
  const shared = AbortSignal.any([signal, siblings.signal]);
  const results = new Array<Result>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && failure === undefined) {
      const index = next++;
      try {
        results[index] = await call(items[index], index, shared);
      } catch (error) {
        if (failure === undefined) {
          failure = { error };
          siblings.abort(error);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure !== undefined) throw failure.error;
  return results;
}
