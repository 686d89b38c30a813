// The `anthropic` provider: calls Claude through the official @anthropic-ai/sdk and speaks
// OpenAI chat shapes to the rest of tiergate.
//
// Why a translation layer: Anthropic's Messages API is not OpenAI's. The system prompt is
// a top-level field, turns must alternate user/assistant, tool calls and tool results are
// content blocks (`tool_use`, `tool_result`), `max_tokens` is required, and streaming is a
// sequence of named SSE events rather than `chat.completion.chunk`s. The translation
// functions below are pure (no I/O, no clock unless given) and exported by name so they
// can be unit-tested on their own; the provider object only adds the SDK call, abort
// plumbing and error mapping.
//
// SDK choices (checked against @anthropic-ai/sdk 1.x):
// - `maxRetries: 0`: retrying and falling back to another model is the host's job, and a
//   hidden SDK retry would double the latency the host budgets for.
// - A long SDK timeout: the host enforces `timeout_ms` through the AbortSignal; the SDK
//   timeout only bounds time-to-headers, and would otherwise pick its own (or throw for
//   large non-streaming max_tokens).
// - SDK 1.x sends `anthropic-version: 2026-10-21`, on which the API refuses `temperature`,
//   `top_p` and `top_k` with a 400 even at default values. They are therefore dropped
//   unless `anthropic_version` (or a `headers` entry) pins an earlier API version.
// - SDK 1.x sends the key as `Authorization: Bearer <key>`, not `x-api-key`; a proxy that
//   wants `x-api-key` can be given one through `headers`.
// - An explicit `apiKey` and `baseURL` are always passed, so the SDK never falls back to
//   ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL or its profile/credential-file chain: the
//   policy file is the only source of configuration.
import Anthropic, { AnthropicError, APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError, type ClientOptions } from '@anthropic-ai/sdk';
import type {
  ContentBlockParam,
  ImageBlockParam,
  MessageCreateParamsBase,
  MessageParam,
  RawMessageStreamEvent,
  TextBlockParam,
  Tool,
  ToolChoice,
  ToolUseBlockParam,
} from '@anthropic-ai/sdk/resources/messages';
import {
  CallSignals,
  describeValue,
  isRecord,
  isUpstreamError,
  messageText,
  tokenUsage,
  UpstreamError,
  type CallOptions,
  type ChatChunk,
  type ChatMessage,
  type ChatRequest,
  type ChatResult,
  type FinishReason,
  type Logger,
  type OptionIssue,
  type OptionsFrom,
  type Provider,
  type ProviderModule,
  type ToolCall,
  type Usage,
} from 'tiergate/plugin';

const DEFAULT_BASE_URL = 'https://api.anthropic.com';
const DEFAULT_MAX_TOKENS = 1024;
/** The `anthropic-version` the installed SDK sends (hard-coded in its client, not exported). */
const SDK_API_VERSION = '2026-10-21';
/** From this API version on, temperature/top_p/top_k are refused. */
const SAMPLING_REMOVED_IN = '2026-10-21';
/** Sent when no key is configured: the SDK refuses to build a request without some credential. */
const PLACEHOLDER_KEY = 'tiergate-no-api-key';
/** Upstream error bodies can be whole HTML pages; keep messages readable. */
const MAX_MESSAGE_CHARS = 400;
/** Time-to-headers bound for the SDK; the host's signal is the real timeout. Below 2^31-1 ms so one timer holds it. */
const SDK_TIMEOUT_MS = 60 * 60 * 1000;

// ---------------------------------------------------------------------------------
// Request translation (OpenAI chat → Anthropic messages)

export interface TranslateOptions {
  /** max_tokens when the request sets neither max_tokens nor max_completion_tokens. */
  defaultMaxTokens: number;
  /** Forward temperature and top_p (API versions before 2026-10-21 accept them). */
  samplingParameters: boolean;
}

/** The request body sent upstream: the SDK's params plus the sampling fields older API versions take. */
export type AnthropicRequestBody = Omit<MessageCreateParamsBase, 'stream'> & { temperature?: number; top_p?: number };

type Turn = { role: 'user' | 'assistant'; blocks: ContentBlockParam[] };

export function toAnthropicRequest(request: ChatRequest, options: TranslateOptions): AnthropicRequestBody {
  const { system, messages } = toAnthropicMessages(request.messages);
  const body: AnthropicRequestBody = {
    model: request.model,
    max_tokens: positiveInteger(request.max_completion_tokens) ?? positiveInteger(request.max_tokens) ?? options.defaultMaxTokens,
    messages,
  };
  if (system !== undefined) body.system = system;

  const stop = toStopSequences(request.stop);
  if (stop.length > 0) body.stop_sequences = stop;

  if (options.samplingParameters) {
    if (typeof request.temperature === 'number') body.temperature = request.temperature;
    if (typeof request.top_p === 'number') body.top_p = request.top_p;
  }

  if (typeof request.user === 'string' && request.user !== '') body.metadata = { user_id: request.user };

  const tools = toAnthropicTools(request.tools);
  if (tools.length > 0) {
    body.tools = tools;
    const choice = toAnthropicToolChoice(request.tool_choice, request.parallel_tool_calls);
    if (choice) body.tool_choice = choice;
  }
  return body;
}

/** The OpenAI sampling fields the request sets that `toAnthropicRequest` would drop without `samplingParameters`. */
export function samplingFieldsIn(request: ChatRequest): string[] {
  return (['temperature', 'top_p'] as const).filter((key) => typeof request[key] === 'number');
}

/**
 * System and developer messages become the top-level `system` (joined by blank lines,
 * wherever they appear); tool results become user `tool_result` blocks; consecutive
 * turns of one role are merged, because Anthropic wants user/assistant alternation.
 */
export function toAnthropicMessages(messages: readonly ChatMessage[]): { system?: string; messages: MessageParam[] } {
  const system: string[] = [];
  const turns: Turn[] = [];
  const push = (role: Turn['role'], blocks: ContentBlockParam[]) => {
    if (blocks.length === 0) return;
    const last = turns[turns.length - 1];
    if (last && last.role === role) last.blocks.push(...blocks);
    else turns.push({ role, blocks });
  };

  for (const m of messages) {
    switch (m.role) {
      case 'system':
      case 'developer': {
        const text = messageText(m.content);
        if (text !== '') system.push(text);
        break;
      }
      case 'user':
        push('user', toContentBlocks(m.content, true));
        break;
      case 'assistant':
        push('assistant', [...toContentBlocks(m.content, false), ...(m.tool_calls ?? []).map(toToolUseBlock)]);
        break;
      case 'tool': {
        const text = messageText(m.content);
        push('user', [{ type: 'tool_result', tool_use_id: m.tool_call_id ?? '', ...(text !== '' ? { content: text } : {}) }]);
        break;
      }
      case 'function': // legacy OpenAI function result: no id to pair it with, so it goes in as text
        push('user', toContentBlocks(m.content, false));
        break;
    }
  }

  return {
    ...(system.length > 0 ? { system: system.join('\n\n') } : {}),
    messages: turns.map(({ role, blocks }) => ({ role, content: blocks.length === 1 && blocks[0].type === 'text' ? blocks[0].text : blocks })),
  };
}

/** Text parts map to text blocks; image_url parts (user turns only) to image blocks; other parts are not sent. Empty text is dropped (Anthropic refuses empty text blocks). */
function toContentBlocks(content: ChatMessage['content'], images: boolean): ContentBlockParam[] {
  if (typeof content === 'string') return content === '' ? [] : [{ type: 'text', text: content }];
  if (!Array.isArray(content)) return [];
  const blocks: ContentBlockParam[] = [];
  for (const part of content) {
    if (part.type === 'text' && typeof part.text === 'string') {
      if (part.text !== '') blocks.push({ type: 'text', text: part.text } satisfies TextBlockParam);
    } else if (part.type === 'image_url' && images) {
      const image = toImageBlock(part.image_url);
      if (image) blocks.push(image);
    }
  }
  return blocks;
}

const DATA_URL = /^data:(image\/(?:jpeg|png|gif|webp));base64,(.+)$/s;

function toImageBlock(imageUrl: unknown): ImageBlockParam | undefined {
  const url = typeof imageUrl === 'string' ? imageUrl : isRecord(imageUrl) && typeof imageUrl.url === 'string' ? imageUrl.url : undefined;
  if (!url) return undefined;
  const data = DATA_URL.exec(url);
  if (data) return { type: 'image', source: { type: 'base64', media_type: data[1] as 'image/jpeg' | 'image/png' | 'image/gif' | 'image/webp', data: data[2] } };
  return { type: 'image', source: { type: 'url', url } };
}

/** OpenAI carries tool arguments as a JSON string; Anthropic wants the object. Unparseable or non-object arguments become `{}`. */
function toToolUseBlock(call: ToolCall): ToolUseBlockParam {
  let input: unknown;
  try {
    input = JSON.parse(call.function.arguments);
  } catch {
    input = undefined;
  }
  return { type: 'tool_use', id: call.id, name: call.function.name, input: isRecord(input) ? input : {} };
}

function toStopSequences(stop: ChatRequest['stop']): string[] {
  const list = typeof stop === 'string' ? [stop] : Array.isArray(stop) ? stop : [];
  return list.filter((s): s is string => typeof s === 'string' && s !== '');
}

/** OpenAI function tools → Anthropic custom tools. Non-function tools have no Anthropic equivalent and are not sent. */
export function toAnthropicTools(tools: unknown): Tool[] {
  if (!Array.isArray(tools)) return [];
  const out: Tool[] = [];
  for (const tool of tools) {
    if (!isRecord(tool) || tool.type !== 'function' || !isRecord(tool.function) || typeof tool.function.name !== 'string') continue;
    const fn = tool.function;
    const parameters = isRecord(fn.parameters) ? fn.parameters : {};
    out.push({
      name: fn.name as string,
      ...(typeof fn.description === 'string' ? { description: fn.description } : {}),
      input_schema: { ...parameters, type: 'object' },
    });
  }
  return out;
}

export function toAnthropicToolChoice(choice: unknown, parallelToolCalls: unknown): ToolChoice | undefined {
  const disable = parallelToolCalls === false ? { disable_parallel_tool_use: true } : {};
  if (choice === 'none') return { type: 'none' };
  if (choice === 'required') return { type: 'any', ...disable };
  if (isRecord(choice) && choice.type === 'function' && isRecord(choice.function) && typeof choice.function.name === 'string') {
    return { type: 'tool', name: choice.function.name, ...disable };
  }
  if (choice === 'auto' || parallelToolCalls === false) return { type: 'auto', ...disable };
  return undefined;
}

// ---------------------------------------------------------------------------------
// Response translation (Anthropic → OpenAI chat)

export function toFinishReason(stopReason: unknown): FinishReason | null {
  switch (stopReason) {
    case null:
    case undefined:
      return null;
    case 'end_turn':
    case 'stop_sequence':
    case 'pause_turn':
      return 'stop';
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    default:
      return 'stop';
  }
}

type AnthropicUsageLike = {
  input_tokens?: number | null;
  output_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
};

/** Anthropic's input_tokens excludes cache writes and reads, and output_tokens includes thinking (reported with no separate count). */
export function toUsage(usage: AnthropicUsageLike): Usage {
  return tokenUsage({
    uncachedInput: count(usage.input_tokens),
    cachedInput: count(usage.cache_read_input_tokens),
    cacheWriteInput: count(usage.cache_creation_input_tokens),
    visibleOutput: count(usage.output_tokens),
  });
}

/**
 * An Anthropic `message` → an OpenAI `chat.completion`. Takes `unknown` because it is
 * also the check that the upstream reply is a message at all: anything else throws an
 * UpstreamError of kind 'reply'.
 */
export function fromAnthropicMessage(message: unknown, nowMs: number = Date.now()): ChatResult {
  if (!isRecord(message) || !Array.isArray(message.content) || typeof message.id !== 'string') {
    throw new UpstreamError('reply', `anthropic: the reply is not a message (${describeValue(message)})`);
  }
  let text = '';
  const toolCalls: ToolCall[] = [];
  for (const block of message.content) {
    if (!isRecord(block)) continue;
    if (block.type === 'text' && typeof block.text === 'string') text += block.text;
    else if (block.type === 'tool_use' && typeof block.id === 'string' && typeof block.name === 'string') {
      toolCalls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } });
    }
  }
  const result: ChatResult = {
    id: message.id,
    object: 'chat.completion',
    created: Math.floor(nowMs / 1000),
    model: typeof message.model === 'string' ? message.model : '',
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: text === '' && toolCalls.length > 0 ? null : text,
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
        },
        finish_reason: toFinishReason(message.stop_reason) ?? (toolCalls.length > 0 ? 'tool_calls' : 'stop'),
        logprobs: null,
      },
    ],
  };
  if (isRecord(message.usage)) result.usage = toUsage(message.usage as AnthropicUsageLike);
  return result;
}

/**
 * Turns Anthropic's raw stream events into `chat.completion.chunk`s, one event at a time:
 * message_start → a role chunk; text_delta → a content chunk; tool_use starts and
 * input_json_delta → tool_calls deltas; message_delta → a finish_reason chunk;
 * message_stop → a final chunk with no choices and the usage. Stateful but free of I/O.
 */
export class StreamTranslator {
  #id = '';
  #model: string;
  #created: number;
  #started = false;
  #finishSent = false;
  #usage: AnthropicUsageLike = {};
  /** Anthropic content block index → OpenAI tool_calls index. */
  #toolIndex = new Map<number, number>();
  #done = false;

  constructor(fallbackModel: string, nowMs: number = Date.now()) {
    this.#model = fallbackModel;
    this.#created = Math.floor(nowMs / 1000);
  }

  /** True once message_stop has been seen. */
  get done(): boolean {
    return this.#done;
  }

  translate(event: RawMessageStreamEvent): ChatChunk[] {
    if (event.type !== 'message_start' && !this.#started) {
      throw new UpstreamError('reply', `anthropic: stream event ${describeValue(event.type)} before message_start`);
    }
    switch (event.type) {
      case 'message_start': {
        const message = event.message;
        if (!isRecord(message) || typeof message.id !== 'string') throw new UpstreamError('reply', 'anthropic: message_start without a message');
        this.#started = true;
        this.#id = message.id;
        if (typeof message.model === 'string' && message.model !== '') this.#model = message.model;
        if (isRecord(message.usage)) this.#usage = { ...message.usage };
        return [this.#chunk({ role: 'assistant', content: '' })];
      }
      case 'content_block_start': {
        const block = event.content_block;
        if (block.type === 'text') return block.text ? [this.#chunk({ content: block.text })] : [];
        if (block.type === 'tool_use') {
          const index = this.#toolIndex.size;
          this.#toolIndex.set(event.index, index);
          const initial = isRecord(block.input) && Object.keys(block.input).length > 0 ? JSON.stringify(block.input) : '';
          return [this.#chunk({ tool_calls: [{ index, id: block.id, type: 'function', function: { name: block.name, arguments: initial } }] })];
        }
        return [];
      }
      case 'content_block_delta': {
        const delta = event.delta;
        if (delta.type === 'text_delta') return delta.text ? [this.#chunk({ content: delta.text })] : [];
        if (delta.type === 'input_json_delta') {
          const index = this.#toolIndex.get(event.index);
          if (index === undefined || !delta.partial_json) return [];
          return [this.#chunk({ tool_calls: [{ index, function: { arguments: delta.partial_json } }] })];
        }
        return []; // thinking, signature and citation deltas have no chat-completions form
      }
      case 'content_block_stop':
        return [];
      case 'message_delta': {
        const usage: AnthropicUsageLike = event.usage ?? {};
        for (const key of ['input_tokens', 'output_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens'] as const) {
          if (typeof usage[key] === 'number') this.#usage[key] = usage[key];
        }
        const finish = toFinishReason(event.delta?.stop_reason);
        if (finish === null || this.#finishSent) return [];
        this.#finishSent = true;
        return [this.#chunk({}, finish)];
      }
      case 'message_stop': {
        this.#done = true;
        const chunks: ChatChunk[] = [];
        if (!this.#finishSent) {
          this.#finishSent = true;
          chunks.push(this.#chunk({}, this.#toolIndex.size > 0 ? 'tool_calls' : 'stop'));
        }
        chunks.push({ id: this.#id, object: 'chat.completion.chunk', created: this.#created, model: this.#model, choices: [], usage: toUsage(this.#usage) });
        return chunks;
      }
      default:
        return []; // event types added after this was written
    }
  }

  #chunk(delta: ChatChunk['choices'][number]['delta'], finish: FinishReason | null = null): ChatChunk {
    return { id: this.#id, object: 'chat.completion.chunk', created: this.#created, model: this.#model, choices: [{ index: 0, delta, finish_reason: finish }] };
  }
}

// ---------------------------------------------------------------------------------
// Errors

/** HTTP status equivalent of an error `type` that arrives as an SSE `error` event, after the 200. */
const ERROR_TYPE_STATUS: Record<string, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
};

/** `retry-after-ms` (milliseconds), else `retry-after` (seconds or an HTTP date). Undefined when absent or unusable. */
export function parseRetryAfter(headers: Headers | undefined | null, nowMs: number = Date.now()): number | undefined {
  if (!headers) return undefined;
  const ms = headers.get('retry-after-ms');
  if (ms !== null && ms.trim() !== '') {
    const value = Number(ms);
    if (Number.isFinite(value) && value >= 0) return Math.round(value);
  }
  const after = headers.get('retry-after');
  if (after === null || after.trim() === '') return undefined;
  const seconds = Number(after);
  if (Number.isFinite(seconds)) return seconds >= 0 ? Math.round(seconds * 1000) : undefined;
  const date = Date.parse(after);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

/**
 * Any failure of an SDK call (or of reading its stream) → UpstreamError. `signal` is the
 * signal the call ran with: once it is aborted, whatever the SDK reports is an abort.
 * `secret` (the api key) is scrubbed from every message.
 */
export function toUpstreamError(err: unknown, signal?: AbortSignal, secret?: string): UpstreamError {
  const scrub = (text: string) => {
    const clean = secret && secret.length >= 4 ? text.split(secret).join('***') : text;
    return clean.length > MAX_MESSAGE_CHARS ? `${clean.slice(0, MAX_MESSAGE_CHARS)}…` : clean;
  };
  const make = (failure: UpstreamError['failure'], message: string, extra: { status?: number; retryAfterMs?: number } = {}) =>
    new UpstreamError(failure, scrub(`anthropic: ${message}`), { ...extra, cause: err });

  if (isUpstreamError(err)) return err;
  if (signal?.aborted || err instanceof APIUserAbortError || isAbortLike(err)) return make('aborted', 'the request was aborted');
  if (err instanceof APIConnectionTimeoutError) return make('timeout', 'the request timed out');
  if (err instanceof APIConnectionError) return make('connection', `connection failed: ${causeMessage(err)}`);
  if (err instanceof APIError) {
    const type = err.type ?? undefined;
    const detail = err.apiMessage ?? err.message;
    if (typeof err.status === 'number') {
      return make('http', `HTTP ${err.status}${type ? ` (${type})` : ''}: ${detail}`, { status: err.status, retryAfterMs: parseRetryAfter(err.headers) });
    }
    // An SSE `error` event after the 200 (overloaded mid-stream, ...): no HTTP status, so use the type's.
    const status = (type && ERROR_TYPE_STATUS[type]) || 500;
    return make('http', `error during the stream${type ? ` (${type})` : ''}: ${detail}`, { status });
  }
  if (err instanceof SyntaxError) return make('reply', `the reply is not valid JSON: ${err.message}`);
  if (isNetworkError(err)) return make('connection', `connection lost: ${causeMessage(err)}`);
  if (err instanceof AnthropicError) return make('reply', err.message);
  return make('reply', err instanceof Error ? err.message : String(err));
}

function isAbortLike(err: unknown): boolean {
  return isRecord(err) && err.name === 'AbortError';
}

/** undici reports a socket that dies while a body is read as `TypeError: terminated` (cause: SocketError), or a system error with a code. */
function isNetworkError(err: unknown): err is Error {
  if (!(err instanceof Error)) return false;
  if (err.name === 'TypeError' && (err.message === 'terminated' || err.message === 'fetch failed')) return true;
  const cause = (err as { cause?: unknown }).cause;
  return typeof (err as { code?: unknown }).code === 'string' || (isRecord(cause) && typeof cause.code === 'string');
}

function causeMessage(err: Error): string {
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const inner = (cause as { cause?: unknown }).cause;
    return inner instanceof Error ? `${cause.message} (${inner.message})` : cause.message;
  }
  return err.message;
}

// ---------------------------------------------------------------------------------
// The provider

class AnthropicProvider implements Provider {
  readonly #client: Anthropic;
  readonly #translate: TranslateOptions;
  readonly #secret: string | undefined;
  readonly #logger: Logger;
  /** Each call's own abort signal; dispose() aborts those in flight (src/plugin-contract/call-signals.ts says why not AbortSignal.any). */
  readonly #calls = new CallSignals('the anthropic provider');
  #warnedSampling = false;

  constructor(client: Anthropic, translate: TranslateOptions, secret: string | undefined, logger: Logger) {
    this.#client = client;
    this.#translate = translate;
    this.#secret = secret;
    this.#logger = logger;
  }

  async complete(request: ChatRequest, call: CallOptions): Promise<ChatResult> {
    const { signal, end } = this.#calls.begin(call);
    try {
      const body = this.#body(request);
      let message: unknown;
      try {
        message = await this.#client.messages.create({ ...body, stream: false }, { signal });
      } catch (err) {
        throw toUpstreamError(err, signal, this.#secret);
      }
      return fromAnthropicMessage(message);
    } finally {
      end();
    }
  }

  async *stream(request: ChatRequest, call: CallOptions): AsyncGenerator<ChatChunk> {
    const { signal, end } = this.#calls.begin(call);
    try {
      const body = this.#body(request);
      let events: AsyncIterable<RawMessageStreamEvent>;
      try {
        events = await this.#client.messages.create({ ...body, stream: true }, { signal });
      } catch (err) {
        throw toUpstreamError(err, signal, this.#secret);
      }

      const translator = new StreamTranslator(body.model);
      const iterator = events[Symbol.asyncIterator]();
      let exhausted = false;
      try {
        for (;;) {
          let next: IteratorResult<RawMessageStreamEvent>;
          try {
            next = await iterator.next();
          } catch (err) {
            exhausted = true;
            throw toUpstreamError(err, signal, this.#secret);
          }
          if (next.done) {
            exhausted = true;
            break;
          }
          let chunks: ChatChunk[];
          try {
            chunks = translator.translate(next.value);
          } catch (err) {
            throw isUpstreamError(err)
              ? err
              : new UpstreamError('reply', `anthropic: unreadable stream event: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
          }
          yield* chunks;
        }
      } finally {
        // The consumer stopped early (or translation failed): closing the SDK stream aborts the HTTP request.
        if (!exhausted) await iterator.return?.();
      }
      // The SDK ends a stream quietly when its request is aborted; the caller must hear about it.
      if (signal.aborted) throw toUpstreamError(new APIUserAbortError(), signal, this.#secret);
      if (!translator.done) throw new UpstreamError('reply', 'anthropic: the stream ended before message_stop');
    } finally {
      end();
    }
  }

  async dispose(): Promise<void> {
    this.#calls.abortAll();
  }

  #body(request: ChatRequest): AnthropicRequestBody {
    if (!this.#translate.samplingParameters && !this.#warnedSampling) {
      const dropped = samplingFieldsIn(request);
      if (dropped.length > 0) {
        this.#warnedSampling = true;
        this.#logger.warn(
          `anthropic: ${dropped.join(' and ')} not sent: API versions from ${SAMPLING_REMOVED_IN} refuse sampling parameters (set anthropic_version to an earlier version to send them)`,
        );
      }
    }
    return toAnthropicRequest(request, this.#translate);
  }
}

/** The SDK's own log lines go to tiergate's logger. */
function sdkLogger(logger: Logger): NonNullable<ClientOptions['logger']> {
  const forward =
    (level: keyof Logger) =>
    (message: string, ...rest: unknown[]) =>
      logger[level](
        `anthropic sdk: ${message}`,
        rest.length > 0 ? { detail: rest.map((r) => (r instanceof Error ? r.message : typeof r === 'string' ? r : describeValue(r))) } : undefined,
      );
  return { error: forward('error'), warn: forward('warn'), info: forward('info'), debug: forward('debug') };
}

function headerValue(headers: Record<string, string> | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === name) return value;
  return undefined;
}

// ---------------------------------------------------------------------------------
// Small helpers

function positiveInteger(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined;
}

function count(value: number | null | undefined): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

// ---------------------------------------------------------------------------------

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    api_key: {
      type: 'string',
      'x-secret': true,
      description: 'Anthropic API key (sent as Authorization: Bearer). Usually ${ANTHROPIC_API_KEY} in the policy; empty means not set.',
    },
    base_url: { type: 'string', pattern: '^https?://', description: `API root; the SDK appends /v1/messages. Default ${DEFAULT_BASE_URL}.` },
    default_max_tokens: {
      type: 'integer',
      minimum: 1,
      default: DEFAULT_MAX_TOKENS,
      description: 'max_tokens when a request sets neither max_tokens nor max_completion_tokens (Anthropic requires one).',
    },
    anthropic_version: {
      type: 'string',
      pattern: '^\\d{4}-\\d{2}-\\d{2}$',
      description: `anthropic-version header; default the SDK's (${SDK_API_VERSION}). temperature and top_p are forwarded only for versions before ${SAMPLING_REMOVED_IN}.`,
    },
    headers: {
      type: 'object',
      additionalProperties: { type: 'string', 'x-secret': true },
      description: 'Extra HTTP headers sent with every request (their values are treated as secrets).',
    },
  },
} as const;

/** api_key is optional so that the example creates without secrets; Anthropic itself answers 401 without one. */
export type AnthropicOptions = OptionsFrom<typeof optionsSchema>;

export default {
  meta: {
    id: 'anthropic',
    kind: 'provider',
    contract: 1,
    description: "Anthropic's Messages API through the official SDK, translated to and from OpenAI chat completions (streaming included).",
    options: optionsSchema,
    example: { default_max_tokens: DEFAULT_MAX_TOKENS },
  },
  validate(options) {
    const issues: OptionIssue[] = [];
    if (options.base_url !== undefined && !URL.canParse(options.base_url)) issues.push({ path: ['base_url'], message: `"${options.base_url}" is not a URL` });
    const headerVersion = headerValue(options.headers, 'anthropic-version');
    if (options.anthropic_version !== undefined && headerVersion !== undefined && headerVersion !== options.anthropic_version) {
      issues.push({ path: ['headers'], message: `sets anthropic-version to ${headerVersion}, but anthropic_version says ${options.anthropic_version}` });
    }
    return issues;
  },
  async create(options, ctx) {
    const baseURL = options.base_url ?? DEFAULT_BASE_URL;
    // An empty key is what `${ANTHROPIC_API_KEY:-}` gives when the variable is unset.
    const apiKey = options.api_key === '' ? undefined : options.api_key;
    if (apiKey === undefined && options.base_url === undefined) {
      ctx.logger.warn('anthropic: no api_key; api.anthropic.com will answer 401 until one is set');
    }
    const version = options.anthropic_version ?? headerValue(options.headers, 'anthropic-version') ?? SDK_API_VERSION;
    const client = new Anthropic({
      apiKey: apiKey ?? PLACEHOLDER_KEY,
      baseURL,
      maxRetries: 0,
      timeout: SDK_TIMEOUT_MS,
      defaultHeaders: { ...options.headers, ...(options.anthropic_version ? { 'anthropic-version': options.anthropic_version } : {}) },
      logger: sdkLogger(ctx.logger),
      logLevel: 'warn',
    });
    return new AnthropicProvider(
      client,
      { defaultMaxTokens: options.default_max_tokens ?? DEFAULT_MAX_TOKENS, samplingParameters: version < SAMPLING_REMOVED_IN },
      apiKey,
      ctx.logger,
    );
  },
} satisfies ProviderModule<AnthropicOptions>;
