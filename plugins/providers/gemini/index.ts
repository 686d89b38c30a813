// The `gemini` provider: Google's Gemini API through the official @google/genai SDK,
// speaking OpenAI chat shapes to the rest of tiergate.
//
// Why a translation layer: Gemini's generateContent is not OpenAI's chat completions.
// System prompts are `systemInstruction`, the assistant's role is `model`, tool calls and
// tool results are `functionCall` / `functionResponse` parts (a result names its function,
// not a call id), sampling sits in `config`, and a stream is a series of whole
// GenerateContentResponses. The translation functions are pure and exported so that they
// can be tested on their own; the provider adds the SDK call, cancellation and errors.
//
// Embeddings (models of kind: embedding) go to batchEmbedContents, the call the SDK's
// embedContent makes on the Gemini API. Each text is sent as its own Content, never as a
// bare string: for a gemini-embedding-2 model the SDK would merge a list of strings into
// one content, and so one vector. A call takes at most 100 texts, so a longer input is cut
// into several calls. Gemini counts no tokens for embeddings: the result carries no usage,
// and the gateway prices the request on its own estimate (marked usage_estimated).
//
// Usage: Gemini's promptTokenCount includes cachedContentTokenCount, but
// candidatesTokenCount leaves out thoughtsTokenCount. Thinking tokens are billed as
// output, so they are added to completion_tokens (and shown as reasoning_tokens);
// tool-use prompt tokens are input.
//
// SDK choices (checked against @google/genai 2.x):
// - No retryOptions: the SDK then makes one attempt; retries and failover are the host's.
// - Explicit apiKey, baseUrl and vertexai: false, so the SDK never reads GOOGLE_API_KEY,
//   GEMINI_API_KEY, GOOGLE_GEMINI_BASE_URL or GOOGLE_GENAI_USE_VERTEXAI: the policy is the
//   only source of configuration.
// - The SDK's ApiError carries a status and the body, but not the response headers, so a
//   429's retry-after would be lost: the fetch given to the SDK turns a failed response
//   into an UpstreamError itself, with the header (or Google's RetryInfo retryDelay).
import {
  ApiError,
  GoogleGenAI,
  type Content,
  type EmbedContentParameters,
  type FunctionCallingConfigMode,
  type GenerateContentConfig,
  type Part,
} from '@google/genai';
import {
  alternatingTurns,
  CallSignals,
  clip,
  deltaChunk,
  describeValue,
  describeURL,
  embeddingTexts,
  EXTRA_HEADERS_OPTION,
  isRecord,
  isUpstreamError,
  mapConcurrently,
  messageText,
  openAIToolDefinitions,
  parseRetryAfter,
  redactor,
  rootCause,
  tokenCount,
  toolCallArguments,
  tokenUsage,
  UpstreamError,
  upstreamEvents,
  usageChunk,
  validateBaseURL,
  wireFailure,
  type CallOptions,
  type ChatChunk,
  type ChatMessage,
  type ChatRequest,
  type ChatResult,
  type EmbeddingRequest,
  type EmbeddingResult,
  type FinishReason,
  type OptionsFrom,
  type Provider,
  type ProviderModule,
  type ToolCall,
  type Usage,
} from 'tiergate/plugin';

const DEFAULT_BASE_URL = 'https://generativelanguage.googleapis.com';
/** Sent when no key is configured: the SDK refuses to build a client without one. */
const PLACEHOLDER_KEY = 'tiergate-no-api-key';

// ---------------------------------------------------------------------------------
// Request translation (OpenAI chat → Gemini generateContent)

export interface GeminiRequest {
  model: string;
  contents: Content[];
  config: GenerateContentConfig;
}

export function toGeminiRequest(request: ChatRequest): GeminiRequest {
  const { systemInstruction, contents } = toGeminiContents(request.messages);
  const config: GenerateContentConfig = {};
  if (systemInstruction !== undefined) config.systemInstruction = systemInstruction;
  if (typeof request.temperature === 'number') config.temperature = request.temperature;
  if (typeof request.top_p === 'number') config.topP = request.top_p;
  const maxTokens = request.max_completion_tokens ?? request.max_tokens;
  if (typeof maxTokens === 'number') config.maxOutputTokens = maxTokens;
  const stop = typeof request.stop === 'string' ? [request.stop] : Array.isArray(request.stop) ? request.stop : [];
  if (stop.length > 0) config.stopSequences = stop;
  if (typeof request.seed === 'number') config.seed = request.seed;
  Object.assign(config, toResponseFormat(request.response_format));

  const tools = openAIToolDefinitions(request.tools);
  if (tools.length > 0) {
    config.tools = [
      {
        functionDeclarations: tools.map((t) => ({
          name: t.name,
          ...(t.description !== undefined ? { description: t.description } : {}),
          parametersJsonSchema: t.parameters,
        })),
      },
    ];
    const mode = toFunctionCallingMode(request.tool_choice);
    if (mode) config.toolConfig = { functionCallingConfig: mode };
  }
  return { model: request.model, contents, config };
}

function toResponseFormat(format: unknown): Partial<GenerateContentConfig> {
  if (!isRecord(format)) return {};
  if (format.type === 'json_object') return { responseMimeType: 'application/json' };
  if (format.type === 'json_schema' && isRecord(format.json_schema)) {
    return { responseMimeType: 'application/json', ...(isRecord(format.json_schema.schema) ? { responseJsonSchema: format.json_schema.schema } : {}) };
  }
  return {};
}

function toFunctionCallingMode(choice: unknown): { mode: FunctionCallingConfigMode; allowedFunctionNames?: string[] } | undefined {
  if (choice === 'none') return { mode: 'NONE' as FunctionCallingConfigMode };
  if (choice === 'auto') return { mode: 'AUTO' as FunctionCallingConfigMode };
  if (choice === 'required') return { mode: 'ANY' as FunctionCallingConfigMode };
  if (isRecord(choice) && isRecord(choice.function) && typeof choice.function.name === 'string') {
    return { mode: 'ANY' as FunctionCallingConfigMode, allowedFunctionNames: [choice.function.name] };
  }
  return undefined;
}

/**
 * System and developer messages become `systemInstruction`; assistant turns are `model`
 * turns with their tool calls as functionCall parts; tool results are user turns with a
 * functionResponse named after the call they answer (found by the call's id). Consecutive
 * turns of one role are merged, as Gemini wants user/model alternation.
 */
export function toGeminiContents(messages: readonly ChatMessage[]): { systemInstruction?: string; contents: Content[] } {
  const callNames = new Map<string, string>();
  const { system, turns } = alternatingTurns<Part>(messages, {
    user: (m) => textParts(m.content),
    assistant: (m) => [
      ...textParts(m.content),
      ...(m.tool_calls ?? []).map((call): Part => {
        callNames.set(call.id, call.function.name);
        return { functionCall: { id: call.id, name: call.function.name, args: toolCallArguments(call) } };
      }),
    ],
    tool: (m) => [
      {
        functionResponse: { id: m.tool_call_id, name: callNames.get(m.tool_call_id ?? '') ?? m.name ?? 'tool', response: toolResponse(messageText(m.content)) },
      },
    ],
  });
  return {
    ...(system.length > 0 ? { systemInstruction: system.join('\n\n') } : {}),
    contents: turns.map(({ role, blocks }) => ({ role: role === 'assistant' ? 'model' : 'user', parts: blocks })),
  };
}

/** Text parts, and images given as data URLs (Gemini takes no image URL it has not uploaded). */
function textParts(content: ChatMessage['content']): Part[] {
  if (typeof content === 'string') return content === '' ? [] : [{ text: content }];
  if (!Array.isArray(content)) return [];
  const parts: Part[] = [];
  for (const part of content) {
    if (part.type === 'text' && typeof part.text === 'string' && part.text !== '') parts.push({ text: part.text });
    if (part.type === 'image_url') {
      const url = isRecord(part.image_url) ? part.image_url.url : undefined;
      const data = typeof url === 'string' ? /^data:([^;]+);base64,(.+)$/s.exec(url) : null;
      if (data) parts.push({ inlineData: { mimeType: data[1], data: data[2] } });
    }
  }
  return parts;
}

/** Gemini wants a function's response as an object: a JSON object result is sent as is, anything else under `result`. */
function toolResponse(text: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(text);
    if (isRecord(parsed)) return parsed;
  } catch {
    // not JSON: sent as text
  }
  return { result: text };
}

// ---------------------------------------------------------------------------------
// Response translation (Gemini → OpenAI chat)

export function toFinishReason(reason: unknown, hasToolCalls: boolean): FinishReason | null {
  if (reason === undefined || reason === null) return null;
  if (hasToolCalls) return 'tool_calls';
  switch (reason) {
    case 'MAX_TOKENS':
      return 'length';
    case 'SAFETY':
    case 'RECITATION':
    case 'BLOCKLIST':
    case 'PROHIBITED_CONTENT':
    case 'SPII':
    case 'IMAGE_SAFETY':
      return 'content_filter';
    default:
      return 'stop';
  }
}

type UsageMetadataLike = {
  promptTokenCount?: number;
  cachedContentTokenCount?: number;
  candidatesTokenCount?: number;
  thoughtsTokenCount?: number;
  toolUsePromptTokenCount?: number;
};

export function toUsage(metadata: UsageMetadataLike): Usage {
  const prompt = tokenCount(metadata.promptTokenCount);
  const cached = Math.min(tokenCount(metadata.cachedContentTokenCount), prompt);
  return tokenUsage({
    uncachedInput: prompt - cached + tokenCount(metadata.toolUsePromptTokenCount),
    cachedInput: cached,
    visibleOutput: tokenCount(metadata.candidatesTokenCount),
    reasoningOutput: tokenCount(metadata.thoughtsTokenCount),
  });
}

/** The first candidate's answer text (thought summaries left out) and its function calls as OpenAI tool calls. */
function readCandidate(reply: Record<string, unknown>, firstCallIndex: number, idPrefix: string): { text: string; toolCalls: ToolCall[]; finish: unknown } {
  const candidate = Array.isArray(reply.candidates) && isRecord(reply.candidates[0]) ? reply.candidates[0] : undefined;
  const parts = candidate && isRecord(candidate.content) && Array.isArray(candidate.content.parts) ? candidate.content.parts : [];
  let text = '';
  const toolCalls: ToolCall[] = [];
  for (const part of parts) {
    if (!isRecord(part) || part.thought === true) continue;
    if (typeof part.text === 'string') text += part.text;
    const call = part.functionCall;
    if (isRecord(call) && typeof call.name === 'string') {
      const id = typeof call.id === 'string' && call.id !== '' ? call.id : `call_${idPrefix}_${firstCallIndex + toolCalls.length}`;
      toolCalls.push({ id, type: 'function', function: { name: call.name, arguments: JSON.stringify(call.args ?? {}) } });
    }
  }
  // A prompt blocked before any candidate has promptFeedback.blockReason and no candidates.
  const blocked = !candidate && isRecord(reply.promptFeedback) && reply.promptFeedback.blockReason !== undefined;
  return { text, toolCalls, finish: candidate?.finishReason ?? (blocked ? 'SAFETY' : undefined) };
}

/** A GenerateContentResponse → a chat completion; anything that is not one is an UpstreamError of kind 'reply'. */
export function fromGeminiResponse(reply: unknown, where: string, nowMs: number = Date.now()): ChatResult {
  if (!isRecord(reply) || (!Array.isArray(reply.candidates) && !isRecord(reply.promptFeedback))) {
    // The SDK keeps only the fields it knows and adds sdkHttpResponse: leave that one out of the description.
    const sent = isRecord(reply) ? Object.fromEntries(Object.entries(reply).filter(([key]) => key !== 'sdkHttpResponse')) : reply;
    throw new UpstreamError('reply', `${where} sent a reply that is not a generateContent response (${describeValue(sent)})`);
  }
  const id = typeof reply.responseId === 'string' ? reply.responseId : `gemini-${nowMs}`;
  const { text, toolCalls, finish } = readCandidate(reply, 0, id);
  const result: ChatResult = {
    id,
    object: 'chat.completion',
    created: Math.floor(nowMs / 1000),
    model: typeof reply.modelVersion === 'string' ? reply.modelVersion : '',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: text === '' && toolCalls.length > 0 ? null : text, ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}) },
        finish_reason: toFinishReason(finish ?? 'STOP', toolCalls.length > 0),
        logprobs: null,
      },
    ],
  };
  if (isRecord(reply.usageMetadata)) result.usage = toUsage(reply.usageMetadata);
  return result;
}

/**
 * Gemini's stream (each event a GenerateContentResponse with the next parts) → chat
 * completion chunks: a role chunk first, text and whole function calls as deltas, a
 * finish chunk, and at the end one chunk with no choices and the last usage reported.
 */
export class StreamTranslator {
  #id = '';
  #model: string;
  readonly #created: number;
  #toolCalls = 0;
  #finish: FinishReason | null = null;
  #usage: Usage | undefined;

  constructor(fallbackModel: string, nowMs: number = Date.now()) {
    this.#model = fallbackModel;
    this.#created = Math.floor(nowMs / 1000);
  }

  translate(event: unknown, where: string): ChatChunk[] {
    if (!isRecord(event)) throw new UpstreamError('reply', `${where} sent a stream event that is not an object (${describeValue(event)})`);
    const chunks: ChatChunk[] = [];
    if (this.#id === '') {
      this.#id = typeof event.responseId === 'string' ? event.responseId : `gemini-${this.#created}`;
      if (typeof event.modelVersion === 'string') this.#model = event.modelVersion;
      chunks.push(this.#chunk({ role: 'assistant', content: '' }));
    }
    const { text, toolCalls, finish } = readCandidate(event, this.#toolCalls, this.#id);
    if (text !== '') chunks.push(this.#chunk({ content: text }));
    if (toolCalls.length > 0) {
      chunks.push(this.#chunk({ tool_calls: toolCalls.map((call, i) => ({ index: this.#toolCalls + i, ...call })) }));
      this.#toolCalls += toolCalls.length;
    }
    if (finish !== undefined && this.#finish === null) this.#finish = toFinishReason(finish, this.#toolCalls > 0);
    if (isRecord(event.usageMetadata)) this.#usage = toUsage(event.usageMetadata);
    return chunks;
  }

  /** The finish chunk and the usage chunk, once the stream has ended. */
  end(): ChatChunk[] {
    const finish = this.#finish ?? (this.#toolCalls > 0 ? 'tool_calls' : 'stop');
    return [this.#chunk({}, finish), usageChunk({ id: this.#id, created: this.#created, model: this.#model }, this.#usage)];
  }

  #chunk(delta: ChatChunk['choices'][number]['delta'], finish: FinishReason | null = null): ChatChunk {
    return deltaChunk({ id: this.#id, created: this.#created, model: this.#model }, delta, finish);
  }
}

// ---------------------------------------------------------------------------------
// Embeddings (OpenAI embeddings → Gemini batchEmbedContents)

/** The most texts batchEmbedContents takes in one call. */
export const EMBED_BATCH_SIZE = 100;
/** Calls of one embeddings request in flight at once, so a long input does not flood the API. */
const EMBED_CONCURRENCY = 4;

/** One batchEmbedContents call: each text its own Content; `dimensions` as outputDimensionality. */
export function toGeminiEmbedRequest(model: string, texts: readonly string[], dimensions: number | undefined): EmbedContentParameters {
  return {
    model,
    contents: texts.map((text): Content => ({ parts: [{ text }] })),
    config: typeof dimensions === 'number' ? { outputDimensionality: dimensions } : {},
  };
}

/** An EmbedContentResponse → its vectors, one per text sent; anything else is an UpstreamError of kind 'reply'. */
export function fromGeminiEmbeddings(reply: unknown, texts: number, where: string): number[][] {
  const embeddings = isRecord(reply) ? reply.embeddings : undefined;
  const vectors = Array.isArray(embeddings) ? embeddings.map((item) => (isRecord(item) ? item.values : undefined)) : [];
  if (vectors.length !== texts || !vectors.every((values) => Array.isArray(values) && values.every((x) => typeof x === 'number'))) {
    const sent = isRecord(reply) ? Object.fromEntries(Object.entries(reply).filter(([key]) => key !== 'sdkHttpResponse')) : reply;
    throw new UpstreamError('reply', `${where} sent a reply that is not ${texts} embeddings (${describeValue(sent)})`);
  }
  return vectors as number[][];
}

// ---------------------------------------------------------------------------------
// Errors

/** Google's RetryInfo in an error body: `"retryDelay": "7s"` (or "1.5s"). */
function retryDelayMs(body: string): number | undefined {
  const delay = /"retryDelay"\s*:\s*"(\d+(?:\.\d+)?)s"/.exec(body);
  return delay ? Number(delay[1]) * 1000 : undefined;
}

/** The upstream's own words from a Google error body ({error: {message}}), else the text. */
function errorDetail(body: string): string {
  try {
    const parsed: unknown = JSON.parse(body);
    if (isRecord(parsed) && isRecord(parsed.error) && typeof parsed.error.message === 'string') return clip(parsed.error.message);
  } catch {
    // not JSON
  }
  return clip(body);
}

/**
 * A fetch for the SDK that fails a non-2xx response itself, as an UpstreamError with the
 * status, the upstream's message and the retry-after header (or RetryInfo), which the
 * SDK's own ApiError would drop.
 */
function failingFetch(fetch: typeof globalThis.fetch, where: string, redact: (text: string) => string): typeof globalThis.fetch {
  return async (input, init) => {
    const response = await fetch(input, init);
    if (response.ok) return response;
    const body = await response.text().catch(() => '');
    throw new UpstreamError('http', redact(wireFailure.status(where, response.status, errorDetail(body))), {
      status: response.status,
      retryAfterMs: parseRetryAfter((name) => response.headers.get(name)) ?? retryDelayMs(body),
    });
  };
}

function toUpstreamError(err: unknown, signal: AbortSignal, where: string, redact: (text: string) => string): UpstreamError {
  if (isUpstreamError(err)) return err;
  const make = (failure: UpstreamError['failure'], message: string, extra: { status?: number; retryAfterMs?: number } = {}) =>
    new UpstreamError(failure, redact(message), { ...extra, cause: err });
  if (signal.aborted) return make('aborted', wireFailure.aborted());
  // An error event in a stream after the 200 (the SDK's "got status: …" ApiError).
  if (err instanceof ApiError) {
    return make('http', wireFailure.midStream(where, errorDetail(err.message.replace(/^got status: [^.]*\. /, ''))), {
      status: err.status,
      retryAfterMs: retryDelayMs(err.message),
    });
  }
  if (err instanceof SyntaxError) return make('reply', wireFailure.notJson(where, err.message));
  if (err instanceof TypeError) return make('connection', wireFailure.unreachable(where, err));
  return make('reply', `unexpected failure talking to ${where}: ${err instanceof Error ? rootCause(err) : String(err)}`);
}

// ---------------------------------------------------------------------------------
// The provider

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    api_key: {
      type: 'string',
      'x-secret': true,
      description: 'Gemini API key, sent as x-goog-api-key. Usually "${GEMINI_API_KEY}"; empty means not set.',
    },
    base_url: { type: 'string', minLength: 1, description: `API root; the SDK appends /v1beta/models/…. Default ${DEFAULT_BASE_URL}.` },
    api_version: { type: 'string', pattern: '^v[0-9a-z]+$', description: "The API version in the path (the SDK's default is v1beta)." },
    headers: EXTRA_HEADERS_OPTION,
  },
} as const;

export type GeminiOptions = OptionsFrom<typeof optionsSchema>;

export default {
  meta: {
    id: 'gemini',
    kind: 'provider',
    contract: 1,
    description:
      "Google's Gemini API through the official @google/genai SDK, translated to and from OpenAI chat completions (streaming and tools included) and embeddings (batchEmbedContents).",
    options: optionsSchema,
    example: { api_key: 'your-gemini-key' },
    capabilities: ['embeds'],
  },

  validate(options) {
    return validateBaseURL(options.base_url);
  },

  async create(options, ctx) {
    const baseUrl = options.base_url ?? DEFAULT_BASE_URL;
    const secret = options.api_key === '' ? undefined : options.api_key;
    if (secret === undefined && options.base_url === undefined) ctx.logger.warn(`${ctx.at}: no api_key is set, so Gemini will reject every request`);
    const where = describeURL(baseUrl);
    const redact = redactor(secret);
    const client = new GoogleGenAI({
      vertexai: false,
      apiKey: secret ?? PLACEHOLDER_KEY,
      httpOptions: {
        baseUrl,
        ...(options.api_version ? { apiVersion: options.api_version } : {}),
        ...(options.headers ? { headers: options.headers } : {}),
        // The SDK reads streamed bodies as web streams, which Node's own fetch gives.
        fetch: failingFetch(globalThis.fetch, where, redact),
      },
    });
    // Each call's own abort signal, not AbortSignal.any with a provider-wide one (call-signals.ts says why).
    const calls = new CallSignals(`the gemini provider at ${where}`);

    const provider: Provider = {
      async complete(request, call) {
        const { signal, end } = calls.begin(call);
        const { model, contents, config } = toGeminiRequest(request);
        let reply: unknown;
        try {
          reply = await client.models.generateContent({ model, contents, config: { ...config, abortSignal: signal } });
        } catch (err) {
          throw toUpstreamError(err, signal, where, redact);
        } finally {
          end();
        }
        return fromGeminiResponse(reply, where);
      },

      async *stream(request, call) {
        const { signal, end } = calls.begin(call);
        try {
          const { model, contents, config } = toGeminiRequest(request);
          let events: AsyncIterator<unknown>;
          try {
            events = (await client.models.generateContentStream({ model, contents, config: { ...config, abortSignal: signal } }))[Symbol.asyncIterator]();
          } catch (err) {
            throw toUpstreamError(err, signal, where, redact);
          }
          const translator = new StreamTranslator(model);
          let count = 0;
          for await (const event of upstreamEvents(events, (err) => toUpstreamError(err, signal, where, redact))) {
            count++;
            yield* translator.translate(event, where);
          }
          if (signal.aborted) throw toUpstreamError(undefined, signal, where, redact);
          if (count === 0) throw new UpstreamError('reply', wireFailure.noChunks(where));
          yield* translator.end();
        } finally {
          end();
        }
      },

      async embed(request: EmbeddingRequest, call: CallOptions): Promise<EmbeddingResult> {
        const { signal, end } = calls.begin(call);
        try {
          const texts = embeddingTexts(request.input, 'Gemini');
          const batches: string[][] = [];
          for (let i = 0; i < texts.length; i += EMBED_BATCH_SIZE) batches.push(texts.slice(i, i + EMBED_BATCH_SIZE));
          const vectors = await mapConcurrently(batches, EMBED_CONCURRENCY, signal, async (batch, _, batchSignal) => {
            const params = toGeminiEmbedRequest(request.model, batch, request.dimensions);
            let reply: unknown;
            try {
              reply = await client.models.embedContent({ ...params, config: { ...params.config, abortSignal: batchSignal } });
            } catch (err) {
              throw toUpstreamError(err, batchSignal, where, redact);
            }
            return fromGeminiEmbeddings(reply, batch.length, where);
          });
          // No usage: Gemini counts no tokens for embeddings, and the gateway estimates them as it does for any provider.
          return { object: 'list', data: vectors.flat().map((embedding, index) => ({ object: 'embedding', index, embedding })), model: request.model };
        } finally {
          end();
        }
      },

      async dispose() {
        calls.abortAll();
      },
    };
    return provider;
  },
} satisfies ProviderModule<GeminiOptions>;
