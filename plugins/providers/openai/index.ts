// The `openai` provider: anything that speaks OpenAI's chat completions wire format —
// OpenAI itself, and local servers such as vLLM, Ollama or LM Studio — and its
// embeddings (POST /embeddings, for the policy's models of kind: embedding).
//
// Why it is shaped like this:
// - Request bodies are already OpenAI-shaped, so they pass through untouched; fields
//   tiergate does not know about (tools, response_format, logprobs, ...) still reach
//   the upstream.
// - The SDK is built with retries off and a very long timeout: the host owns timeouts
//   (through the call's signal), retries and failover, and a second layer of either
//   would multiply latency and hide failures from the executor.
// - Only explicit options configure the client. The SDK would otherwise pick up
//   OPENAI_BASE_URL, OPENAI_API_KEY, OPENAI_ORG_ID and OPENAI_PROJECT_ID from the
//   environment, which would make one policy behave differently on different hosts.
//   (The policy can still say `${OPENAI_API_KEY}` to read a key from the environment.)
// - Every failure becomes an UpstreamError, because the executor decides between
//   retrying, failing over and giving up from `failure` and `status` alone. The SDK
//   lets some failures escape unwrapped (a socket reset while reading the body is a
//   bare TypeError, a malformed body a bare SyntaxError, and a cancelled stream just
//   ends), so each case is mapped here.
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionCreateParamsStreaming } from 'openai/resources/chat/completions';
import type { EmbeddingCreateParams } from 'openai/resources/embeddings';
import {
  asChatResult,
  asEmbeddingResult,
  callerSignal,
  clip,
  completionBody,
  configuredKey,
  createNodeFetch,
  describeURL,
  embeddingBody,
  isUpstreamError,
  parseRetryAfter,
  redactor,
  rootCause,
  streamBody,
  UpstreamError,
  validateBaseURL,
  wireFailure,
  wireOptionProperties,
  type ChatChunk,
  type OptionsFrom,
  type OptionIssue,
  type Provider,
  type ProviderModule,
} from 'tiergate/plugin';

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: wireOptionProperties('Base URL of the API, up to and including /v1. Defaults to https://api.openai.com/v1.'),
} as const;

/** api_key is required by OpenAI; local OpenAI-compatible servers usually need none. base_url defaults to https://api.openai.com/v1. */
export type Options = OptionsFrom<typeof optionsSchema>;

const DEFAULT_BASE_URL = 'https://api.openai.com/v1';
/** Sent when no key is configured: the SDK insists on one, and local servers ignore it. */
const NO_KEY = 'not-needed';
/** The SDK's own timeout only backs up the host's; an hour never fires first in practice. */
const SDK_TIMEOUT_MS = 60 * 60 * 1000;

function validate(options: Readonly<Options>): OptionIssue[] {
  return validateBaseURL(options.base_url);
}

export default {
  meta: {
    id: 'openai',
    kind: 'provider',
    contract: 1,
    description:
      'Calls an OpenAI-compatible chat completions API: OpenAI, or a local server such as vLLM, Ollama or LM Studio. ' +
      'OpenAI needs api_key; local servers usually do not.',
    options: optionsSchema,
    example: { api_key: 'sk-your-key', base_url: DEFAULT_BASE_URL },
    capabilities: ['embeds'],
  },

  validate,

  async create(options, ctx) {
    const baseURL = options.base_url ?? DEFAULT_BASE_URL;
    const secret = configuredKey(options);
    const apiKey = secret ?? NO_KEY;
    if (secret === undefined && baseURL === DEFAULT_BASE_URL) {
      ctx.logger.warn(`${ctx.at}: no api_key is set, so OpenAI will reject every request with 401`);
    }
    // The SDK's transport, not the SDK: node:http with this instance's own keep-alive
    // pool costs a fraction of the built-in fetch per call (src/plugin-contract/node-fetch.ts).
    const transport = createNodeFetch();
    const client = new OpenAI({
      apiKey,
      baseURL,
      organization: options.organization ?? null,
      project: null,
      defaultHeaders: options.headers,
      maxRetries: 0,
      timeout: SDK_TIMEOUT_MS,
      // Failures reach the host as UpstreamErrors and are logged there.
      logLevel: 'off',
      fetch: transport.fetch,
    });
    const where = describeURL(baseURL);
    const fail = (err: unknown, signal: AbortSignal) => toUpstreamError(err, signal, { where, secret });
    let disposed = false;
    const checkOpen = () => {
      if (disposed) throw new Error('the openai provider was used after dispose()');
    };

    const provider: Provider = {
      async complete(request, { signal }) {
        checkOpen();
        try {
          const params = completionBody(request) as unknown as ChatCompletionCreateParamsNonStreaming;
          const reply: unknown = await client.chat.completions.create(params, callerSignal(signal));
          return asChatResult(reply, where);
        } catch (err) {
          throw fail(err, signal);
        }
      },

      async *stream(request, { signal }) {
        checkOpen();
        const params = streamBody(request) as unknown as ChatCompletionCreateParamsStreaming;
        let chunks: AsyncIterator<unknown>;
        try {
          chunks = (await client.chat.completions.create(params, callerSignal(signal)))[Symbol.asyncIterator]();
        } catch (err) {
          throw fail(err, signal);
        }
        let count = 0;
        try {
          for (;;) {
            let next: IteratorResult<unknown>;
            try {
              next = await chunks.next();
            } catch (err) {
              throw fail(err, signal);
            }
            if (next.done) break;
            count++;
            yield next.value as ChatChunk;
          }
        } finally {
          // When the consumer stops early this cancels the upstream request.
          await chunks.return?.();
        }
        // The SDK ends a cancelled stream quietly instead of throwing.
        if (signal.aborted) throw fail(undefined, signal);
        if (count === 0) throw new UpstreamError('reply', wireFailure.noChunks(where));
      },

      async embed(request, { signal }) {
        checkOpen();
        try {
          const params = embeddingBody(request) as unknown as EmbeddingCreateParams;
          return asEmbeddingResult(await client.embeddings.create(params, callerSignal(signal)), where);
        } catch (err) {
          throw fail(err, signal);
        }
      },

      async dispose() {
        disposed = true;
        transport.close();
      },
    };
    return provider;
  },
} satisfies ProviderModule<Options>;

// ---------------------------------------------------------------------------------

/** Maps anything the SDK (or fetch under it) throws to an UpstreamError. */
function toUpstreamError(err: unknown, signal: AbortSignal, context: { where: string; secret?: string }): UpstreamError {
  if (isUpstreamError(err)) return err;
  const { where, secret } = context;
  const redact = redactor(secret);
  const make = (failure: UpstreamError['failure'], message: string, extra: { status?: number; retryAfterMs?: number } = {}) =>
    new UpstreamError(failure, redact(message), { ...extra, cause: err });

  if (signal.aborted || err instanceof APIUserAbortError) return make('aborted', wireFailure.aborted());
  if (err instanceof APIConnectionTimeoutError) return make('timeout', wireFailure.timeout(where));
  if (err instanceof APIConnectionError) return make('connection', wireFailure.unreachable(where, err.cause ?? err));
  if (err instanceof APIError) {
    // The SDK prefixes its message with the status; the rest is the upstream's own words.
    const detail = clip(err.message.replace(/^\d+ /, ''));
    if (err.status === undefined) return make('http', wireFailure.midStream(where, detail));
    return make('http', wireFailure.status(where, err.status, detail), {
      status: err.status,
      retryAfterMs: parseRetryAfter((name) => err.headers?.get(name)),
    });
  }
  if (err instanceof SyntaxError) return make('reply', wireFailure.notJson(where, err.message));
  // Undici reports a connection lost while reading the body as TypeError("terminated").
  if (err instanceof TypeError) return make('connection', wireFailure.broken(where, err));
  return make('reply', `unexpected failure talking to ${where}: ${err instanceof Error ? rootCause(err) : String(err)}`);
}
