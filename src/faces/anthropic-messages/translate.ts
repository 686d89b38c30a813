// The Anthropic Messages API as a second way in (POST /v1/messages). A request is
// translated into the OpenAI-shaped chat body the rest of tiergate speaks, goes through
// the same routes, gates and ladders, and the answer (or its stream) is translated back.
// Pure functions and one stream translator: the HTTP face is router.ts beside it.
//
// Mapping, Anthropic → OpenAI:
//   system (string | text blocks)        → a leading system message
//   text / image blocks                  → content parts (text, image_url with a data: or https URL)
//   assistant tool_use blocks            → assistant tool_calls (arguments = JSON of input)
//   user tool_result blocks              → role "tool" messages, before the user's other blocks
//   tools {name, description, input_schema} → function tools; tool_choice auto/any/tool/none
//   max_tokens, temperature, top_p, stop_sequences, metadata.user_id → max_tokens, temperature, top_p, stop, user
// and back: stop → end_turn (OpenAI does not say whether a stop sequence ended the text),
// length → max_tokens, tool_calls → tool_use.
import { randomUUID } from 'node:crypto';
import type { ChatMessage, ContentPart, FinishReason, ToolCall } from '../../plugin-contract/plugin-api.ts';

/** A client error in the translation, with the JSON path it is about. */
export class MessagesRequestError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

type Json = Record<string, unknown>;

const isRecord = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Fields of a Messages request this translation understands; others are refused by name (never silently dropped). */
const KNOWN_FIELDS = new Set([
  'model',
  'messages',
  'system',
  'max_tokens',
  'temperature',
  'top_p',
  'stop_sequences',
  'stream',
  'tools',
  'tool_choice',
  'metadata',
]);

export interface TranslatedRequest {
  /** The OpenAI-shaped chat body (model = the route or model the client asked for). */
  body: Record<string, unknown> & { model: string; messages: ChatMessage[] };
  stopSequences: string[];
}

export function toChatBody(request: unknown): TranslatedRequest {
  if (!isRecord(request)) throw new MessagesRequestError('body', 'must be a JSON object');
  for (const key of Object.keys(request)) if (!KNOWN_FIELDS.has(key)) throw new MessagesRequestError(key, 'is not a Messages API field this gateway accepts');
  if (typeof request.model !== 'string' || request.model === '') throw new MessagesRequestError('model', 'is required: a route or model name');
  if (!Number.isInteger(request.max_tokens) || (request.max_tokens as number) < 1)
    throw new MessagesRequestError('max_tokens', 'is required: a whole number ≥ 1');
  if (!Array.isArray(request.messages) || request.messages.length === 0) throw new MessagesRequestError('messages', 'must be a non-empty list');

  const messages: ChatMessage[] = [];
  const system = systemText(request.system);
  if (system !== null) messages.push({ role: 'system', content: system });
  request.messages.forEach((m, i) => messages.push(...toChatMessages(m, `messages.${i}`)));

  const body: TranslatedRequest['body'] = { model: request.model, messages, max_tokens: request.max_tokens };
  for (const key of ['temperature', 'top_p'] as const) {
    if (request[key] === undefined) continue;
    if (typeof request[key] !== 'number') throw new MessagesRequestError(key, 'must be a number');
    body[key] = request[key];
  }
  const stopSequences: string[] = [];
  if (request.stop_sequences !== undefined) {
    if (!Array.isArray(request.stop_sequences) || !request.stop_sequences.every((s) => typeof s === 'string'))
      throw new MessagesRequestError('stop_sequences', 'must be a list of strings');
    stopSequences.push(...(request.stop_sequences as string[]));
    if (stopSequences.length) body.stop = stopSequences;
  }
  if (request.stream !== undefined) {
    if (typeof request.stream !== 'boolean') throw new MessagesRequestError('stream', 'must be true or false');
    if (request.stream) {
      body.stream = true;
      // The final usage chunk becomes message_delta.usage.
      body.stream_options = { include_usage: true };
    }
  }
  if (request.metadata !== undefined) {
    if (!isRecord(request.metadata)) throw new MessagesRequestError('metadata', 'must be an object');
    if (typeof request.metadata.user_id === 'string') body.user = request.metadata.user_id;
  }
  if (request.tools !== undefined) body.tools = toTools(request.tools);
  if (request.tool_choice !== undefined) Object.assign(body, toToolChoice(request.tool_choice));
  return { body, stopSequences };
}

function systemText(system: unknown): string | null {
  if (system === undefined || system === null) return null;
  if (typeof system === 'string') return system;
  if (Array.isArray(system)) {
    return system
      .map((block, i) => {
        if (!isRecord(block) || block.type !== 'text' || typeof block.text !== 'string')
          throw new MessagesRequestError(`system.${i}`, 'system blocks must be text blocks');
        return block.text;
      })
      .join('\n\n');
  }
  throw new MessagesRequestError('system', 'must be a string or a list of text blocks');
}

function toChatMessages(message: unknown, at: string): ChatMessage[] {
  if (!isRecord(message)) throw new MessagesRequestError(at, 'must be an object with role and content');
  const role = message.role;
  if (role !== 'user' && role !== 'assistant') throw new MessagesRequestError(`${at}.role`, 'must be "user" or "assistant"');
  if (typeof message.content === 'string') return [{ role, content: message.content }];
  if (!Array.isArray(message.content)) throw new MessagesRequestError(`${at}.content`, 'must be a string or a list of content blocks');
  const parts: ContentPart[] = [];
  const toolCalls: ToolCall[] = [];
  const toolResults: ChatMessage[] = [];
  message.content.forEach((block, i) => {
    const where = `${at}.content.${i}`;
    if (!isRecord(block) || typeof block.type !== 'string') throw new MessagesRequestError(where, 'must be a content block with a type');
    switch (block.type) {
      case 'text':
        if (typeof block.text !== 'string') throw new MessagesRequestError(`${where}.text`, 'must be a string');
        parts.push({ type: 'text', text: block.text });
        break;
      case 'image':
        parts.push({ type: 'image_url', image_url: { url: imageUrl(block.source, `${where}.source`) } });
        break;
      case 'tool_use':
        if (role !== 'assistant') throw new MessagesRequestError(where, 'tool_use blocks belong to assistant turns');
        if (typeof block.id !== 'string' || typeof block.name !== 'string') throw new MessagesRequestError(where, 'tool_use needs id and name');
        toolCalls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } });
        break;
      case 'tool_result':
        if (role !== 'user') throw new MessagesRequestError(where, 'tool_result blocks belong to user turns');
        if (typeof block.tool_use_id !== 'string') throw new MessagesRequestError(`${where}.tool_use_id`, 'must be a string');
        toolResults.push({
          role: 'tool',
          tool_call_id: block.tool_use_id,
          content: toolResultText(block.content, `${where}.content`) + (block.is_error === true ? '\n(the tool reported an error)' : ''),
        });
        break;
      default:
        throw new MessagesRequestError(`${where}.type`, `content block type "${block.type}" is not supported (text, image, tool_use, tool_result)`);
    }
  });
  if (role === 'assistant') {
    const text = parts
      .filter((p): p is { type: 'text'; text: string } => p.type === 'text')
      .map((p) => p.text)
      .join('');
    const out: ChatMessage = { role: 'assistant', content: text === '' && toolCalls.length ? null : text };
    if (toolCalls.length) out.tool_calls = toolCalls;
    return [out];
  }
  // Tool results answer the previous assistant turn, so they come first.
  return parts.length
    ? [...toolResults, { role: 'user', content: parts.length === 1 && parts[0].type === 'text' ? (parts[0] as { text: string }).text : parts }]
    : toolResults;
}

function toolResultText(content: unknown, at: string): string {
  if (content === undefined) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((block, i) => {
        if (isRecord(block) && block.type === 'text' && typeof block.text === 'string') return block.text;
        throw new MessagesRequestError(`${at}.${i}`, 'tool results must be text here');
      })
      .join('\n');
  }
  throw new MessagesRequestError(at, 'must be a string or a list of text blocks');
}

function imageUrl(source: unknown, at: string): string {
  if (!isRecord(source)) throw new MessagesRequestError(at, 'must be an object');
  if (source.type === 'base64' && typeof source.media_type === 'string' && typeof source.data === 'string')
    return `data:${source.media_type};base64,${source.data}`;
  if (source.type === 'url' && typeof source.url === 'string') return source.url;
  throw new MessagesRequestError(at, 'must be {type: "base64", media_type, data} or {type: "url", url}');
}

function toTools(tools: unknown): unknown[] {
  if (!Array.isArray(tools)) throw new MessagesRequestError('tools', 'must be a list');
  return tools.map((tool, i) => {
    if (!isRecord(tool) || typeof tool.name !== 'string') throw new MessagesRequestError(`tools.${i}`, 'needs a name');
    if (tool.input_schema !== undefined && !isRecord(tool.input_schema))
      throw new MessagesRequestError(`tools.${i}.input_schema`, 'must be a JSON Schema object');
    return {
      type: 'function',
      function: {
        name: tool.name,
        ...(typeof tool.description === 'string' ? { description: tool.description } : {}),
        parameters: tool.input_schema ?? { type: 'object', properties: {} },
      },
    };
  });
}

function toToolChoice(choice: unknown): Record<string, unknown> {
  if (!isRecord(choice) || typeof choice.type !== 'string') throw new MessagesRequestError('tool_choice', 'must be {type: auto | any | tool | none}');
  const parallel = choice.disable_parallel_tool_use === true ? { parallel_tool_calls: false } : {};
  switch (choice.type) {
    case 'auto':
      return { tool_choice: 'auto', ...parallel };
    case 'any':
      return { tool_choice: 'required', ...parallel };
    case 'none':
      return { tool_choice: 'none' };
    case 'tool':
      if (typeof choice.name !== 'string') throw new MessagesRequestError('tool_choice.name', 'is required for type "tool"');
      return { tool_choice: { type: 'function', function: { name: choice.name } }, ...parallel };
    default:
      throw new MessagesRequestError('tool_choice.type', `"${choice.type}" is not auto, any, tool or none`);
  }
}

// ---------------------------------------------------------------------------------
// Back: completions and chunks → Messages.

export type StopReason = 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use' | 'refusal';

function stopReasonOf(finish: FinishReason | string | null | undefined): { stop_reason: StopReason | null; stop_sequence: string | null } {
  switch (finish) {
    case 'length':
      return { stop_reason: 'max_tokens', stop_sequence: null };
    case 'tool_calls':
    case 'function_call':
      return { stop_reason: 'tool_use', stop_sequence: null };
    case 'content_filter':
      return { stop_reason: 'refusal', stop_sequence: null };
    case null:
    case undefined:
      return { stop_reason: null, stop_sequence: null };
    default:
      // OpenAI's "stop" does not say whether a stop sequence or the model ended the text,
      // so it is reported as the model's own end (end_turn), never as a guessed sequence.
      return { stop_reason: 'end_turn', stop_sequence: null };
  }
}

function parseArguments(text: string): unknown {
  try {
    const value = JSON.parse(text || '{}');
    return isRecord(value) ? value : { value };
  } catch {
    // A model's malformed arguments reach the client as they were, not as a gateway error.
    return { _raw_arguments: text };
  }
}

export function messageId(): string {
  return `msg_${randomUUID().replace(/-/g, '').slice(0, 24)}`;
}

/** A chat.completion → an Anthropic message; `servedModel` is the model that answered. */
export function toAnthropicMessage(completion: unknown, servedModel: string, _stopSequences: readonly string[] = [], id = messageId()): Json {
  const c = isRecord(completion) ? completion : {};
  const choice = Array.isArray(c.choices) && isRecord(c.choices[0]) ? c.choices[0] : {};
  const message = isRecord(choice.message) ? choice.message : {};
  const text = typeof message.content === 'string' ? message.content : '';
  const content: Json[] = [];
  if (text !== '') content.push({ type: 'text', text });
  for (const call of Array.isArray(message.tool_calls) ? message.tool_calls : []) {
    if (!isRecord(call) || !isRecord(call.function)) continue;
    content.push({
      type: 'tool_use',
      id: typeof call.id === 'string' ? call.id : `toolu_${randomUUID().slice(0, 8)}`,
      name: String(call.function.name ?? ''),
      input: parseArguments(String(call.function.arguments ?? '')),
    });
  }
  const usage = isRecord(c.usage) ? c.usage : {};
  return {
    id,
    type: 'message',
    role: 'assistant',
    model: servedModel,
    content,
    ...stopReasonOf(choice.finish_reason as FinishReason | null),
    usage: { input_tokens: Number(usage.prompt_tokens ?? 0), output_tokens: Number(usage.completion_tokens ?? 0) },
  };
}

export interface MessagesEvent {
  event: string;
  data: Json;
}

/**
 * chat.completion.chunk objects → the Messages event sequence: message_start, then per
 * content block content_block_start / content_block_delta… / content_block_stop (text as
 * text_delta, tool calls as input_json_delta), then message_delta (stop reason, usage) and
 * message_stop. Feed chunks with push(); end() closes open blocks and the message.
 */
export class MessagesStreamTranslator {
  private started = false;
  private ended = false;
  private block: { index: number; kind: 'text' | 'tool'; toolIndex?: number } | null = null;
  private nextIndex = 0;
  private text = '';
  private finish: string | null = null;
  private usage = { input_tokens: 0, output_tokens: 0 };

  constructor(
    private readonly servedModel: string,
    private readonly stopSequences: readonly string[] = [],
    readonly id = messageId(),
  ) {}

  private start(out: MessagesEvent[]): void {
    if (this.started) return;
    this.started = true;
    out.push({
      event: 'message_start',
      data: {
        type: 'message_start',
        message: {
          id: this.id,
          type: 'message',
          role: 'assistant',
          model: this.servedModel,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: 0, output_tokens: 0 },
        },
      },
    });
  }

  private closeBlock(out: MessagesEvent[]): void {
    if (!this.block) return;
    out.push({ event: 'content_block_stop', data: { type: 'content_block_stop', index: this.block.index } });
    this.block = null;
  }

  push(chunk: unknown): MessagesEvent[] {
    const out: MessagesEvent[] = [];
    if (this.ended || !isRecord(chunk)) return out;
    this.start(out);
    if (isRecord(chunk.usage)) this.usage = { input_tokens: Number(chunk.usage.prompt_tokens ?? 0), output_tokens: Number(chunk.usage.completion_tokens ?? 0) };
    const choice = Array.isArray(chunk.choices) && isRecord(chunk.choices[0]) ? chunk.choices[0] : null;
    if (!choice) return out;
    const delta = isRecord(choice.delta) ? choice.delta : {};
    if (typeof delta.content === 'string' && delta.content !== '') {
      if (this.block?.kind !== 'text') {
        this.closeBlock(out);
        this.block = { index: this.nextIndex++, kind: 'text' };
        out.push({ event: 'content_block_start', data: { type: 'content_block_start', index: this.block.index, content_block: { type: 'text', text: '' } } });
      }
      this.text += delta.content;
      out.push({
        event: 'content_block_delta',
        data: { type: 'content_block_delta', index: this.block.index, delta: { type: 'text_delta', text: delta.content } },
      });
    }
    for (const call of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
      if (!isRecord(call)) continue;
      const toolIndex = typeof call.index === 'number' ? call.index : 0;
      const fn = isRecord(call.function) ? call.function : {};
      if (this.block?.kind !== 'tool' || this.block.toolIndex !== toolIndex) {
        this.closeBlock(out);
        this.block = { index: this.nextIndex++, kind: 'tool', toolIndex };
        out.push({
          event: 'content_block_start',
          data: {
            type: 'content_block_start',
            index: this.block.index,
            content_block: {
              type: 'tool_use',
              id: typeof call.id === 'string' ? call.id : `toolu_${randomUUID().slice(0, 8)}`,
              name: String(fn.name ?? ''),
              input: {},
            },
          },
        });
      }
      if (typeof fn.arguments === 'string' && fn.arguments !== '')
        out.push({
          event: 'content_block_delta',
          data: { type: 'content_block_delta', index: this.block.index, delta: { type: 'input_json_delta', partial_json: fn.arguments } },
        });
    }
    if (typeof choice.finish_reason === 'string') this.finish = choice.finish_reason;
    return out;
  }

  end(): MessagesEvent[] {
    const out: MessagesEvent[] = [];
    if (this.ended) return out;
    this.start(out);
    this.closeBlock(out);
    this.ended = true;
    out.push({
      event: 'message_delta',
      data: {
        type: 'message_delta',
        delta: stopReasonOf((this.finish ?? 'stop') as FinishReason),
        usage: { output_tokens: this.usage.output_tokens, input_tokens: this.usage.input_tokens },
      },
    });
    out.push({ event: 'message_stop', data: { type: 'message_stop' } });
    return out;
  }
}

/** OpenAI error type / HTTP status → Anthropic's error type. */
export function anthropicErrorType(status: number): string {
  if (status === 400 || status === 413 || status === 422) return status === 413 ? 'request_too_large' : 'invalid_request_error';
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 529 || status === 503) return 'overloaded_error';
  return 'api_error';
}

/** An OpenAI-shaped error body → Anthropic's {type: "error", error: {type, message}}, keeping tiergate's code. */
export function toAnthropicError(status: number, openaiBody: unknown): Json {
  const error = isRecord(openaiBody) && isRecord(openaiBody.error) ? openaiBody.error : {};
  return {
    type: 'error',
    error: {
      type: anthropicErrorType(status),
      message: typeof error.message === 'string' ? error.message : `HTTP ${status}`,
      ...(typeof error.code === 'string' ? { code: error.code } : {}),
    },
  };
}

export function sseEvent(e: MessagesEvent): string {
  return `event: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`;
}
