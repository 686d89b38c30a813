// The `openai_compatible` provider: a server that speaks OpenAI's chat completions wire
// format — vLLM, Ollama, LM Studio, llama.cpp, TGI, a company's own model server —
// called over node:http directly, without an SDK.
//
// Why it exists beside `openai` (which calls the same wire format through the official
// SDK): a self-hosted model is usually the cheap tier, the one most requests go to, and
// it answers in milliseconds, so what the gateway spends per call shows. The SDK's own
// per-call work (its header building, debug-log formatting, abort and timeout plumbing
// and SSE decoding) costs about as much CPU as the rest of the gateway together
// (docs/bench/profile-findings.md); this provider sends the one request the gateway
// needs and parses the one reply, and nothing else. Use `openai` for api.openai.com.
//
// Behaviour matches `openai` on purpose (test/provider-openai.test.ts runs both through
// the same cases): request bodies pass through untouched, streams always ask for usage,
// no retries (the host owns timeouts, retries and failover through the call's signal),
// and every failure becomes an UpstreamError worded as `openai` words it
// (src/openai-wire.ts), so moving a model between the two changes no log or error.
import type http from 'node:http';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { createHttpPool, isAbortError, type HttpReply } from '../../../src/node-fetch.ts';
import { asChatResult, asRecord, clip, completionBody, configuredKey, streamBody, describeURL, parseRetryAfter, redactor, validateBaseURL, wireFailure, wireOptionProperties, type OpenAIWireOptions } from '../../../src/openai-wire.ts';
import { UpstreamError, isUpstreamError, type ChatChunk, type ChatRequest, type OptionIssue, type Provider, type ProviderModule } from '../../../src/plugin-api.ts';
import { unnamed } from '../../../src/unnamed.ts';

export type Options = OpenAIWireOptions & { base_url: string };

const USER_AGENT = 'tiergate';
/** An error body is read this far for its message; the rest is dropped with the connection. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
/** A single SSE event larger than this is not a chat chunk: the stream is refused rather than buffered without end. */
const MAX_EVENT_CHARS = 16 * 1024 * 1024;

function validate(options: Readonly<Options>): OptionIssue[] {
  return validateBaseURL(options.base_url);
}

export default {
  meta: {
    id: 'openai_compatible',
    kind: 'provider',
    description:
      'Calls a server that speaks the OpenAI chat completions wire format (vLLM, Ollama, LM Studio, llama.cpp, TGI, …) ' +
      'over HTTP directly, with less overhead per call than the SDK-based openai provider. base_url is required.',
    options: {
      type: 'object',
      additionalProperties: false,
      required: ['base_url'],
      properties: wireOptionProperties('Base URL of the server, up to and including /v1 (e.g. http://127.0.0.1:8000/v1 for vLLM, http://127.0.0.1:11434/v1 for Ollama).'),
    },
    example: { base_url: 'http://127.0.0.1:8000/v1' },
  },

  validate,

  async create(options, _ctx) {
    const base = new URL(options.base_url);
    const url = new URL(`${base.pathname.replace(/\/$/, '')}/chat/completions`, base);
    const where = describeURL(options.base_url);
    const secret = configuredKey(options);
    const redact = redactor(secret);
    // Every call sends the same header block but for Accept: built once, as the flat list node:http takes.
    const common: string[] = ['Host', url.host, 'content-type', 'application/json', 'user-agent', USER_AGENT];
    if (secret !== undefined) common.push('authorization', `Bearer ${secret}`);
    if (options.organization !== undefined) common.push('openai-organization', options.organization);
    for (const [name, value] of Object.entries(options.headers ?? {})) common.push(name, value);
    const jsonHeaders = [...common, 'accept', 'application/json'];
    const streamHeaders = [...common, 'accept', 'text/event-stream'];
    const pool = createHttpPool();
    let disposed = false;

    const fail = (failure: UpstreamError['failure'], message: string, extra: { status?: number; retryAfterMs?: number; cause?: unknown } = {}) => new UpstreamError(failure, redact(message), extra);

    /** Sends the call; a non-2xx answer is thrown as failure "http" with the upstream's own message. */
    async function post(body: string, headers: string[], signal: AbortSignal): Promise<HttpReply> {
      if (disposed) throw new Error('the openai_compatible provider was used after dispose()');
      let reply: HttpReply;
      try {
        reply = await pool.send({ url, method: 'POST', headers, body, signals: [signal] });
      } catch (err) {
        if (signal.aborted || isAbortError(err)) throw fail('aborted', wireFailure.aborted(), { cause: err });
        throw fail('connection', wireFailure.unreachable(where, err), { cause: err });
      }
      const { response } = reply;
      const status = response.statusCode ?? 0;
      if (status >= 200 && status < 300) return reply;
      const text = await readBody(reply, signal, MAX_ERROR_BODY_BYTES).catch(() => '');
      throw fail('http', wireFailure.status(where, status, errorDetail(text)), {
        status,
        retryAfterMs: parseRetryAfter((name) => headerOf(response, name)),
      });
    }

    /** A failure while reading a body that had started to arrive. */
    function readFailure(err: unknown, reply: HttpReply, signal: AbortSignal): UpstreamError {
      if (isUpstreamError(err)) return err;
      if (signal.aborted || reply.aborted() !== null) return fail('aborted', wireFailure.aborted(), { cause: err });
      return fail('connection', wireFailure.broken(where, err), { cause: err });
    }

    const provider: Provider = {
      async complete(request, { signal }) {
        const reply = await post(JSON.stringify(completionBody(request)), jsonHeaders, signal);
        let text: string;
        try {
          text = await readBody(reply, signal, Infinity);
        } catch (err) {
          throw readFailure(err, reply, signal);
        }
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch (err) {
          // What the SDK does: a body not labelled JSON is reported as text, a malformed JSON body as not valid JSON.
          if (!isJsonType(reply.response)) return asChatResult(text, where);
          throw fail('reply', wireFailure.notJson(where, (err as Error).message), { cause: err });
        }
        return asChatResult(parsed, where);
      },

      async *stream(request, { signal }) {
        const reply = await post(JSON.stringify(streamBody(request)), streamHeaders, signal);
        const { response } = reply;
        response.setEncoding('utf8');
        const events: EventSourceMessage[] = [];
        let parseFailure: Error | null = null;
        const parser = createParser({
          maxBufferSize: MAX_EVENT_CHARS,
          onEvent: unnamed((event: EventSourceMessage) => {
            events.push(event);
          }),
          onError: unnamed((err: Error & { type?: string }) => {
            // Unknown fields are allowed by the SSE format; only an overlong event stops the stream.
            if (err.type === 'max-buffer-size-exceeded') parseFailure = err;
          }),
        });
        const pieces = response[Symbol.asyncIterator]() as AsyncIterator<string>;
        let count = 0;
        let done = false;
        try {
          for (;;) {
            let piece: IteratorResult<string>;
            try {
              piece = await pieces.next();
            } catch (err) {
              throw readFailure(err, reply, signal);
            }
            if (piece.done) break;
            if (done) continue; // after [DONE]: read to the end, so the connection can be kept
            parser.feed(piece.value);
            if (parseFailure) throw fail('reply', `${where} sent a stream event longer than ${MAX_EVENT_CHARS} characters`);
            for (let i = 0; i < events.length; i++) {
              const chunk = chunkOf(events[i]);
              if (chunk === null) {
                done = true;
                break;
              }
              count++;
              yield chunk;
            }
            events.length = 0;
          }
        } finally {
          // A consumer that stops early cancels the upstream request; a whole stream keeps its connection.
          if (!response.complete) response.destroy();
          await pieces.return?.().catch(() => undefined);
        }
        if (signal.aborted) throw fail('aborted', wireFailure.aborted());
        if (count === 0) throw fail('reply', wireFailure.noChunks(where));
      },

      async dispose() {
        disposed = true;
        pool.close();
      },
    };

    /** The chunk an event carries, or null for the end of the stream ([DONE]). */
    function chunkOf(event: EventSourceMessage): ChatChunk | null {
      if (event.data === '[DONE]') return null;
      let data: unknown;
      try {
        data = JSON.parse(event.data);
      } catch (err) {
        throw fail('reply', wireFailure.notJson(where, (err as Error).message), { cause: err });
      }
      // OpenAI reports a failure after the status line as an event with an `error` object.
      const error = asRecord(data).error;
      if (event.event === 'error' || (error !== undefined && error !== null)) {
        throw fail('http', wireFailure.midStream(where, clip(errorText(error ?? data))));
      }
      if (!Array.isArray(asRecord(data).choices)) throw fail('reply', `${where} sent a stream event that is not a chat completion chunk (${clip(event.data)})`);
      return data as ChatChunk;
    }

    return provider;
  },
} satisfies ProviderModule<Options>;

// ---------------------------------------------------------------------------------

function headerOf(response: http.IncomingMessage, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

function isJsonType(response: http.IncomingMessage): boolean {
  return /\bjson\b/i.test(response.headers['content-type'] ?? '');
}

/** The body as text, at most `limit` bytes (then the connection is dropped); rejects when the connection breaks or the call is cancelled. */
function readBody(reply: HttpReply, signal: AbortSignal, limit: number): Promise<string> {
  const { response } = reply;
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    response.on('data', (part: Buffer) => {
      size += part.length;
      if (size <= limit) parts.push(part);
      else response.destroy();
    });
    const text = () => (parts.length === 1 ? parts[0] : Buffer.concat(parts)).toString('utf8');
    response.once('end', () => resolve(text()));
    response.once('error', (err) => reject(reply.aborted() ?? err));
    // A connection closed before the end of the body emits 'aborted' then 'close' (and, in Node 20, 'error').
    response.once('close', () => {
      if (response.complete) return;
      if (size > limit) resolve(text());
      else reject(reply.aborted() ?? (signal.aborted ? signal.reason : new Error('other side closed')));
    });
  });
}

/** The upstream's own words from an error body: OpenAI's `error.message`, else the text. */
function errorDetail(text: string): string {
  try {
    return clip(errorText(JSON.parse(text)));
  } catch {
    return clip(text);
  }
}

function errorText(value: unknown): string {
  const record = asRecord(value);
  const inner = asRecord(record.error);
  for (const candidate of [inner.message, record.message, record.error]) if (typeof candidate === 'string' && candidate !== '') return candidate;
  return JSON.stringify(value) ?? String(value);
}
