// The `bedrock` provider: models on Amazon Bedrock through the Converse and ConverseStream
// APIs of the official @aws-sdk/client-bedrock-runtime, speaking OpenAI chat shapes to the
// rest of tiergate.
//
// Why a translation layer: Converse is one shape for every model on Bedrock, but not
// OpenAI's. System prompts are a top-level `system`, content is a list of blocks (`text`,
// `toolUse`, `toolResult`), turns must alternate user/assistant, sampling sits in
// `inferenceConfig`, tools in `toolConfig`, and a stream is AWS event-stream frames
// (messageStart, contentBlockDelta, messageStop, metadata …) that the SDK decodes. The
// translation functions are pure and exported so that they can be tested on their own.
//
// Usage: like Anthropic's, Converse's inputTokens leaves out cacheReadInputTokens and
// cacheWriteInputTokens, which are priced apart (cached_input_per_mtok, cache_write_input_per_mtok).
//
// Embeddings (models of kind: embedding) go through InvokeModel with the body of Amazon
// Titan Text Embeddings V2 (amazon.titan-embed-text-v2:0), the one shape this provider
// speaks: other embedding models on Bedrock take other bodies and refuse this one with a
// 400. Titan embeds one text a call, so a request with several inputs makes a call per
// input (a few at a time, all under the request's signal, the first failure cancelling
// the rest) and its usage is the sum of their inputTextTokenCount.
//
// SDK choices (checked against @aws-sdk/client-bedrock-runtime 3.x):
// - maxAttempts 1: retries and failover are the host's, and the SDK's own retry would
//   sleep out a throttle the host could fail over from.
// - Region, endpoint and (when given) credentials come from the policy only. Without
//   access_key_id the SDK's default credential chain applies (environment, profile, an
//   instance or task role), which is how Bedrock is reached from inside AWS.
import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
  InvokeModelCommand,
  type ContentBlock,
  type ConverseCommandInput,
  type ConverseStreamOutput,
  type Message,
  type Tool,
  type ToolChoice,
} from '@aws-sdk/client-bedrock-runtime';
import {
  alternatingTurns,
  CallSignals,
  clip,
  deltaChunk,
  describeValue,
  embeddingTexts,
  isRecord,
  isUpstreamError,
  mapConcurrently,
  messageText,
  openAIToolDefinitions,
  parseRetryAfter,
  redactor,
  rootCause,
  tokenCount,
  tokenUsage,
  toolCallArguments,
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
  type OptionIssue,
  type OptionsFrom,
  type Provider,
  type ProviderModule,
  type ToolCall,
  type Usage,
} from 'tiergate/plugin';

// ---------------------------------------------------------------------------------
// Request translation (OpenAI chat → Converse)

export function toConverseInput(request: ChatRequest): ConverseCommandInput {
  const { system, messages } = toConverseMessages(request.messages);
  const input: ConverseCommandInput = { modelId: request.model, messages };
  if (system.length > 0) input.system = system.map((text) => ({ text }));
  const inference: NonNullable<ConverseCommandInput['inferenceConfig']> = {};
  const maxTokens = request.max_completion_tokens ?? request.max_tokens;
  if (typeof maxTokens === 'number') inference.maxTokens = maxTokens;
  if (typeof request.temperature === 'number') inference.temperature = request.temperature;
  if (typeof request.top_p === 'number') inference.topP = request.top_p;
  const stop = typeof request.stop === 'string' ? [request.stop] : Array.isArray(request.stop) ? request.stop : [];
  if (stop.length > 0) inference.stopSequences = stop;
  if (Object.keys(inference).length > 0) input.inferenceConfig = inference;

  const tools: Tool[] = openAIToolDefinitions(request.tools).map((t) => ({
    toolSpec: { name: t.name, ...(t.description !== undefined ? { description: t.description } : {}), inputSchema: { json: t.parameters as never } },
  }));
  // Converse has no "none": a request that forbids tools is sent without them.
  if (tools.length > 0 && request.tool_choice !== 'none') {
    const toolChoice = toToolChoice(request.tool_choice);
    input.toolConfig = { tools, ...(toolChoice ? { toolChoice } : {}) };
  }
  return input;
}

function toToolChoice(choice: unknown): ToolChoice | undefined {
  if (choice === 'auto') return { auto: {} };
  if (choice === 'required') return { any: {} };
  if (isRecord(choice) && isRecord(choice.function) && typeof choice.function.name === 'string') return { tool: { name: choice.function.name } };
  return undefined;
}

/** System and developer messages become `system`; tool results are user toolResult blocks; turns of one role are merged. */
export function toConverseMessages(messages: readonly ChatMessage[]): { system: string[]; messages: Message[] } {
  const { system, turns } = alternatingTurns<ContentBlock>(messages, {
    user: (m) => textBlocks(m.content),
    assistant: (m) => [
      ...textBlocks(m.content),
      ...(m.tool_calls ?? []).map((call): ContentBlock => ({
        toolUse: { toolUseId: call.id, name: call.function.name, input: toolCallArguments(call) as never },
      })),
    ],
    tool: (m) => [{ toolResult: { toolUseId: m.tool_call_id ?? '', content: [toolResultContent(messageText(m.content))] } }],
  });
  return { system, messages: turns.map(({ role, blocks }) => ({ role, content: blocks })) };
}

function textBlocks(content: ChatMessage['content']): ContentBlock[] {
  const text = messageText(content);
  return text === '' ? [] : [{ text }];
}

/** A JSON object result goes as `json`, anything else as `text`. */
function toolResultContent(text: string): { json: never } | { text: string } {
  try {
    const parsed: unknown = JSON.parse(text);
    if (isRecord(parsed)) return { json: parsed as never };
  } catch {
    // not JSON: sent as text
  }
  return { text };
}

// ---------------------------------------------------------------------------------
// Response translation (Converse → OpenAI chat)

export function toFinishReason(stopReason: unknown): FinishReason {
  switch (stopReason) {
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'guardrail_intervened':
    case 'content_filtered':
      return 'content_filter';
    default:
      return 'stop';
  }
}

type TokenUsageLike = { inputTokens?: number; outputTokens?: number; cacheReadInputTokens?: number; cacheWriteInputTokens?: number };

export function toUsage(usage: TokenUsageLike): Usage {
  return tokenUsage({
    uncachedInput: tokenCount(usage.inputTokens),
    cachedInput: tokenCount(usage.cacheReadInputTokens),
    cacheWriteInput: tokenCount(usage.cacheWriteInputTokens),
    visibleOutput: tokenCount(usage.outputTokens),
  });
}

/** A Converse response → a chat completion; anything that is not one is an UpstreamError of kind 'reply'. */
export function fromConverseOutput(output: unknown, model: string, where: string, nowMs: number = Date.now()): ChatResult {
  const message = isRecord(output) && isRecord(output.output) ? output.output.message : undefined;
  if (!isRecord(message) || !Array.isArray(message.content)) {
    throw new UpstreamError('reply', `${where} sent a reply that is not a Converse response (${describeValue(withoutMetadata(output))})`);
  }
  let text = '';
  const toolCalls: ToolCall[] = [];
  for (const block of message.content) {
    if (!isRecord(block)) continue;
    if (typeof block.text === 'string') text += block.text;
    const use = block.toolUse;
    if (isRecord(use) && typeof use.toolUseId === 'string' && typeof use.name === 'string') {
      toolCalls.push({ id: use.toolUseId, type: 'function', function: { name: use.name, arguments: JSON.stringify(use.input ?? {}) } });
    }
  }
  const reply = output as { stopReason?: unknown; usage?: unknown; $metadata?: { requestId?: string } };
  const result: ChatResult = {
    id: reply.$metadata?.requestId ?? `bedrock-${nowMs}`,
    object: 'chat.completion',
    created: Math.floor(nowMs / 1000),
    model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: text === '' && toolCalls.length > 0 ? null : text, ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}) },
        finish_reason: toFinishReason(reply.stopReason),
        logprobs: null,
      },
    ],
  };
  if (isRecord(reply.usage)) result.usage = toUsage(reply.usage);
  return result;
}

/** The SDK adds $metadata to whatever came: leave it out when describing what the upstream sent. */
function withoutMetadata(value: unknown): unknown {
  return isRecord(value) ? Object.fromEntries(Object.entries(value).filter(([key]) => key !== '$metadata')) : value;
}

/**
 * ConverseStream events → chat completion chunks: messageStart → a role chunk; text deltas
 * → content; a toolUse start and its input deltas → tool_calls deltas; messageStop → the
 * finish chunk; metadata → a last chunk with no choices and the usage.
 */
export class StreamTranslator {
  readonly #id: string;
  readonly #model: string;
  readonly #created: number;
  /** Converse content block index → OpenAI tool_calls index. */
  #toolIndex = new Map<number, number>();
  #stopped = false;
  #usage: Usage | undefined;

  constructor(id: string, model: string, nowMs: number = Date.now()) {
    this.#id = id;
    this.#model = model;
    this.#created = Math.floor(nowMs / 1000);
  }

  /** True once messageStop has been seen. */
  get stopped(): boolean {
    return this.#stopped;
  }

  translate(event: ConverseStreamOutput): ChatChunk[] {
    if (event.messageStart) return [this.#chunk({ role: 'assistant', content: '' })];
    if (event.contentBlockStart) {
      const use = event.contentBlockStart.start?.toolUse;
      if (!use?.toolUseId || !use.name) return [];
      const index = this.#toolIndex.size;
      this.#toolIndex.set(event.contentBlockStart.contentBlockIndex ?? 0, index);
      return [this.#chunk({ tool_calls: [{ index, id: use.toolUseId, type: 'function', function: { name: use.name, arguments: '' } }] })];
    }
    if (event.contentBlockDelta) {
      const delta = event.contentBlockDelta.delta;
      if (typeof delta?.text === 'string' && delta.text !== '') return [this.#chunk({ content: delta.text })];
      const index = this.#toolIndex.get(event.contentBlockDelta.contentBlockIndex ?? 0);
      const input = delta?.toolUse?.input;
      if (index !== undefined && input) return [this.#chunk({ tool_calls: [{ index, function: { arguments: input } }] })];
      return []; // reasoning and citation deltas have no chat-completions form
    }
    if (event.messageStop) {
      this.#stopped = true;
      return [this.#chunk({}, toFinishReason(event.messageStop.stopReason))];
    }
    if (event.metadata) {
      if (event.metadata.usage) this.#usage = toUsage(event.metadata.usage);
      return [];
    }
    // An exception event the SDK did not throw (it throws the modelled ones).
    const [kind, detail] = Object.entries(event).find(([key]) => key.endsWith('Exception')) ?? [];
    if (kind)
      throw new UpstreamError('http', `error during the stream (${kind}): ${describeValue(detail)}`, { status: kind === 'throttlingException' ? 429 : 500 });
    return [];
  }

  /** The usage chunk, after the stream has ended. */
  end(): ChatChunk {
    return usageChunk({ id: this.#id, created: this.#created, model: this.#model }, this.#usage);
  }

  #chunk(delta: ChatChunk['choices'][number]['delta'], finish: FinishReason | null = null): ChatChunk {
    return deltaChunk({ id: this.#id, created: this.#created, model: this.#model }, delta, finish);
  }
}

// ---------------------------------------------------------------------------------
// Embeddings (OpenAI embeddings → Titan Text Embeddings V2 through InvokeModel)

/** Titan calls of one embeddings request in flight at once: one per input, so a long input does not flood the account's quota. */
const EMBED_CONCURRENCY = 4;

/** A Titan Text Embeddings V2 request body: one text; `dimensions` (256, 512 or 1024) when asked; unit vectors, as OpenAI's are. */
export function toTitanEmbeddingBody(text: string, dimensions: number | undefined): { inputText: string; dimensions?: number; normalize: true } {
  return { inputText: text, ...(typeof dimensions === 'number' ? { dimensions } : {}), normalize: true };
}

/** A Titan reply body → its vector and token count; anything else is an UpstreamError of kind 'reply'. */
export function fromTitanEmbedding(body: unknown, where: string): { embedding: number[]; tokens: number | undefined } {
  const embedding = isRecord(body) ? body.embedding : undefined;
  if (!isRecord(body) || !Array.isArray(embedding) || !embedding.every((x) => typeof x === 'number')) {
    throw new UpstreamError('reply', `${where} sent a reply that is not a Titan embedding (${describeValue(body)})`);
  }
  return { embedding: embedding as number[], tokens: typeof body.inputTextTokenCount === 'number' ? body.inputTextTokenCount : undefined };
}

/** InvokeModel's body, bytes of JSON, parsed. */
function invokeReplyBody(output: { body?: Uint8Array }, where: string): unknown {
  const text = new TextDecoder().decode(output.body ?? new Uint8Array());
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UpstreamError('reply', wireFailure.notJson(where, err instanceof Error ? err.message : String(err)), { cause: err });
  }
}

// ---------------------------------------------------------------------------------
// Errors

/** HTTP status of the exceptions ConverseStream can send after the 200. */
const STREAM_EXCEPTION_STATUS: Record<string, number> = {
  ThrottlingException: 429,
  ValidationException: 400,
  ServiceUnavailableException: 503,
  ModelStreamErrorException: 502,
  InternalServerException: 500,
};

type SdkError = Error & { $metadata?: { httpStatusCode?: number }; $response?: { headers?: Record<string, string | undefined> } };

export function toUpstreamError(err: unknown, signal: AbortSignal, where: string, redact: (text: string) => string): UpstreamError {
  if (isUpstreamError(err)) return err;
  const make = (failure: UpstreamError['failure'], message: string, extra: { status?: number; retryAfterMs?: number } = {}) =>
    new UpstreamError(failure, redact(message), { ...extra, cause: err });
  if (signal.aborted || (err instanceof Error && err.name === 'AbortError')) return make('aborted', wireFailure.aborted());
  if (!(err instanceof Error)) return make('reply', `unexpected failure talking to ${where}: ${String(err)}`);
  const sdk = err as SdkError;
  const status = sdk.$metadata?.httpStatusCode;
  const detail = clip(`${err.name}: ${err.message}`);
  if (typeof status === 'number' && status >= 400) {
    const headers = sdk.$response?.headers ?? {};
    return make('http', wireFailure.status(where, status, detail), { status, retryAfterMs: parseRetryAfter((name) => headers[name]) });
  }
  const streamStatus = STREAM_EXCEPTION_STATUS[err.name];
  if (streamStatus !== undefined) return make('http', wireFailure.midStream(where, detail), { status: streamStatus });
  if (err instanceof SyntaxError) return make('reply', wireFailure.notJson(where, err.message));
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' || err.name === 'TimeoutError') return make('connection', wireFailure.unreachable(where, err));
  return make('reply', `unexpected failure talking to ${where}: ${rootCause(err)}`);
}

// ---------------------------------------------------------------------------------
// The provider

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['region'],
  properties: {
    region: { type: 'string', pattern: '^[a-z]{2}(-[a-z]+)+-\\d+$', description: 'The AWS region of the Bedrock runtime, e.g. us-east-1.' },
    endpoint: { type: 'string', minLength: 1, description: "The runtime's URL; default the region's (https://bedrock-runtime.<region>.amazonaws.com)." },
    access_key_id: {
      type: 'string',
      minLength: 1,
      'x-secret': true,
      description: "With secret_access_key: static credentials. Absent: the SDK's default chain (environment, profile, role).",
    },
    secret_access_key: { type: 'string', minLength: 1, 'x-secret': true, description: 'The secret of access_key_id.' },
    session_token: { type: 'string', minLength: 1, 'x-secret': true, description: 'For temporary credentials.' },
  },
} as const;

export type BedrockOptions = OptionsFrom<typeof optionsSchema>;

export default {
  meta: {
    id: 'bedrock',
    kind: 'provider',
    contract: 1,
    description:
      "Amazon Bedrock's Converse and ConverseStream APIs through the official AWS SDK, translated to and from OpenAI chat completions (streaming and tools included), and embeddings with Amazon Titan Text Embeddings V2 (InvokeModel).",
    options: optionsSchema,
    example: { region: 'us-east-1', access_key_id: 'AKIDEXAMPLE', secret_access_key: 'example-secret' },
    capabilities: ['embeds'],
  },

  validate(options): OptionIssue[] {
    const issues = validateBaseURL(options.endpoint).map((issue) => ({ ...issue, path: ['endpoint'] }));
    if ((options.access_key_id === undefined) !== (options.secret_access_key === undefined)) {
      issues.push({
        path: [options.access_key_id === undefined ? 'access_key_id' : 'secret_access_key'],
        message: 'access_key_id and secret_access_key go together',
      });
    }
    if (options.session_token !== undefined && options.access_key_id === undefined) {
      issues.push({ path: ['session_token'], message: 'needs access_key_id and secret_access_key' });
    }
    return issues;
  },

  async create(options) {
    const where = options.endpoint ?? `bedrock-runtime.${options.region}`;
    const redact = redactor(options.secret_access_key);
    const client = new BedrockRuntimeClient({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.access_key_id && options.secret_access_key
        ? { credentials: { accessKeyId: options.access_key_id, secretAccessKey: options.secret_access_key, sessionToken: options.session_token } }
        : {}),
      maxAttempts: 1,
    });
    // Each call's own abort signal, not AbortSignal.any with a provider-wide one (call-signals.ts says why).
    const calls = new CallSignals(`the bedrock provider for ${where}`);

    const provider: Provider = {
      async complete(request, call) {
        const { signal, end } = calls.begin(call);
        let output: unknown;
        try {
          output = await client.send(new ConverseCommand(toConverseInput(request)), { abortSignal: signal });
        } catch (err) {
          throw toUpstreamError(err, signal, where, redact);
        } finally {
          end();
        }
        return fromConverseOutput(output, request.model, where);
      },

      async *stream(request, call) {
        const { signal, end } = calls.begin(call);
        try {
          let events: AsyncIterator<ConverseStreamOutput>;
          let requestId: string | undefined;
          try {
            const output = await client.send(new ConverseStreamCommand(toConverseInput(request)), { abortSignal: signal });
            if (!output.stream) throw new UpstreamError('reply', wireFailure.noChunks(where));
            requestId = output.$metadata.requestId;
            events = output.stream[Symbol.asyncIterator]();
          } catch (err) {
            throw toUpstreamError(err, signal, where, redact);
          }
          const translator = new StreamTranslator(requestId ?? `bedrock-${Date.now()}`, request.model);
          for await (const event of upstreamEvents(events, (err) => toUpstreamError(err, signal, where, redact))) yield* translator.translate(event);
          if (signal.aborted) throw toUpstreamError(undefined, signal, where, redact);
          if (!translator.stopped) throw new UpstreamError('reply', `${where} ended the stream before messageStop`);
          yield translator.end();
        } finally {
          end();
        }
      },

      async embed(request: EmbeddingRequest, call: CallOptions): Promise<EmbeddingResult> {
        const { signal, end } = calls.begin(call);
        try {
          const texts = embeddingTexts(request.input, 'Titan');
          const replies = await mapConcurrently(texts, EMBED_CONCURRENCY, signal, async (text, _, textSignal) => {
            let output: { body?: Uint8Array };
            try {
              output = await client.send(
                new InvokeModelCommand({
                  modelId: request.model,
                  contentType: 'application/json',
                  accept: 'application/json',
                  body: JSON.stringify(toTitanEmbeddingBody(text, request.dimensions)),
                }),
                { abortSignal: textSignal },
              );
            } catch (err) {
              throw toUpstreamError(err, textSignal, where, redact);
            }
            return fromTitanEmbedding(invokeReplyBody(output, where), where);
          });
          const result: EmbeddingResult = {
            object: 'list',
            data: replies.map(({ embedding }, index) => ({ object: 'embedding', index, embedding })),
            model: request.model,
          };
          // A reply without its count leaves the usage to the gateway's estimate rather than undercount.
          if (replies.every((reply) => reply.tokens !== undefined)) {
            const tokens = replies.reduce((sum, reply) => sum + (reply.tokens ?? 0), 0);
            result.usage = { prompt_tokens: tokens, total_tokens: tokens };
          }
          return result;
        } finally {
          end();
        }
      },

      async dispose() {
        calls.abortAll();
        client.destroy();
      },
    };
    return provider;
  },
} satisfies ProviderModule<BedrockOptions>;
