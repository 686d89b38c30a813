// A provider over the official openai SDK's client, shared by the providers that call an
// OpenAI chat completions API through it: `openai` (the OpenAI client) and `azure_openai`
// (its AzureOpenAI subclass, which differs only in URLs, the api-key header and the
// api-version query). Both must pass bodies through, stream, and map failures the same
// way, so the code lives here once.
//
// Why it is shaped like this:
// - Request bodies are already OpenAI-shaped, so they pass through untouched; fields
//   tiergate does not know about (tools, response_format, logprobs, ...) still reach
//   the upstream.
// - Every failure becomes an UpstreamError, because the executor decides between
//   retrying, failing over and giving up from `failure` and `status` alone. The SDK
//   lets some failures escape unwrapped (a socket reset while reading the body is a
//   bare TypeError, a malformed body a bare SyntaxError, and a cancelled stream just
//   ends), so each case is mapped here.
import type OpenAI from 'openai';
import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionCreateParamsStreaming } from 'openai/resources/chat/completions';
import type { EmbeddingCreateParams } from 'openai/resources/embeddings';
import { callerSignal } from './node-fetch.ts';
import {
  asChatResult,
  asEmbeddingResult,
  clip,
  completionBody,
  embeddingBody,
  parseRetryAfter,
  redactor,
  rootCause,
  streamBody,
  wireFailure,
} from './openai-wire.ts';
import { isUpstreamError, UpstreamError, type ChatChunk, type Provider } from './plugin-api.ts';

/** The SDK's own timeout only backs up the host's (the call's signal); an hour never fires first in practice. */
export const OPENAI_SDK_TIMEOUT_MS = 60 * 60 * 1000;

/**
 * The client options every provider over the openai SDK sets: retries off and a long
 * timeout (the host owns both, and a second layer would multiply latency and hide
 * failures), no organization or project read from the environment, the SDK's logging off
 * (failures reach the host as UpstreamErrors), and the given fetch.
 */
export function openAIClientDefaults(fetch: typeof globalThis.fetch) {
  return { maxRetries: 0, timeout: OPENAI_SDK_TIMEOUT_MS, organization: null, project: null, logLevel: 'off', fetch } as const;
}

export interface OpenAIClientProviderOptions {
  /** The provider's name, for the message of a call after dispose. */
  name: string;
  /** The upstream as messages show it (describeURL). */
  where: string;
  /** The configured key, scrubbed from upstream words. */
  secret?: string;
  /** Releases what the client was built on (its transport); called once, by dispose. */
  release?: () => void;
}

/** A Provider calling chat completions through an openai SDK client built with maxRetries 0 (the host retries). */
export function openAIClientProvider(client: OpenAI, options: OpenAIClientProviderOptions): Provider {
  const { where, secret } = options;
  const fail = (err: unknown, signal: AbortSignal) => openAISDKFailure(err, signal, { where, secret });
  let disposed = false;
  const checkOpen = () => {
    if (disposed) throw new Error(`the ${options.name} provider was used after dispose()`);
  };

  return {
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

    // Used only where the plugin's meta.capabilities lists 'embeds' (openai, azure_openai).
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
      if (disposed) return;
      disposed = true;
      options.release?.();
    },
  };
}

/** Maps anything the openai SDK (or fetch under it) throws to an UpstreamError. */
export function openAISDKFailure(err: unknown, signal: AbortSignal, context: { where: string; secret?: string }): UpstreamError {
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
