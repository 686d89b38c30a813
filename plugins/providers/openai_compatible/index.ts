// The `openai_compatible` provider: a server that speaks OpenAI's chat completions wire
// format — vLLM, Ollama, LM Studio, llama.cpp, TGI, a company's own model server —
// called with undici's connection pool directly, without an SDK.
//
// Why it exists beside `openai` (which calls the same wire format through the official
// SDK): a self-hosted model is usually the cheap tier, the one most requests go to, and
// it answers in milliseconds, so what the gateway spends per call shows. The SDK's own
// per-call work (its header building, debug-log formatting, abort and timeout plumbing
// and SSE decoding) costs about as much CPU as the rest of the gateway together
// (docs/bench/profile-findings.md); this provider sends the one request the gateway
// needs and parses the one reply, and nothing else. It uses undici's Pool rather than
// node:http: node:http's client (ClientRequest, the Agent's per-request option copy,
// IncomingMessage) cost a tenth of the gateway's CPU per request more than undici's for
// the same call (round 4 of the findings). Use `openai` for api.openai.com.
//
// Behaviour matches `openai` on purpose (test/plugins/provider-openai.test.ts runs both through
// the same cases): request bodies pass through untouched, streams always ask for usage,
// no retries (the host owns timeouts, retries and failover through the call's signal),
// and every failure becomes an UpstreamError worded as `openai` words it
// (src/plugin-contract/openai-wire.ts), so moving a model between the two changes no log or error.
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { Pool } from 'undici';
import {
  asChatResult,
  asEmbeddingResult,
  asRecord,
  clip,
  completionBody,
  configuredKey,
  describeURL,
  embeddingBody,
  isAbortError,
  isUpstreamError,
  parseRetryAfter,
  redactor,
  streamBody,
  UpstreamError,
  validateBaseURL,
  wireFailure,
  wireOptionProperties,
  type CallOptions,
  type CancellationEvents,
  type ChatChunk,
  type OptionsFrom,
  type OptionIssue,
  type Provider,
  type ProviderModule,
} from 'tiergate/plugin';

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['base_url'],
  properties: wireOptionProperties(
    'Base URL of the server, up to and including /v1 (e.g. http://127.0.0.1:8000/v1 for vLLM, http://127.0.0.1:11434/v1 for Ollama).',
  ),
} as const;

export type Options = OptionsFrom<typeof optionsSchema>;

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
    contract: 1,
    description:
      'Calls a server that speaks the OpenAI chat completions wire format (vLLM, Ollama, LM Studio, llama.cpp, TGI, …) ' +
      'over HTTP directly, with less overhead per call than the SDK-based openai provider. base_url is required.',
    options: optionsSchema,
    example: { base_url: 'http://127.0.0.1:8000/v1' },
    capabilities: ['embeds'],
  },

  validate,

  async create(options, _ctx) {
    const base = new URL(options.base_url);
    const url = new URL(`${base.pathname.replace(/\/$/, '')}/chat/completions`, base);
    const where = describeURL(options.base_url);
    const secret = configuredKey(options);
    const redact = redactor(secret);
    const path = url.pathname + url.search;
    const embeddingsURL = new URL(`${base.pathname.replace(/\/$/, '')}/embeddings`, base);
    const embeddingsPath = embeddingsURL.pathname + embeddingsURL.search;
    // Every call sends the same header block but for Accept: built once, as the flat list undici takes (it adds Host and content-length).
    const common: string[] = ['content-type', 'application/json', 'user-agent', USER_AGENT];
    if (secret !== undefined) common.push('authorization', `Bearer ${secret}`);
    if (options.organization !== undefined) common.push('openai-organization', options.organization);
    for (const [name, value] of Object.entries(options.headers ?? {})) common.push(name, value);
    const jsonHeaders = [...common, 'accept', 'application/json'];
    const streamHeaders = [...common, 'accept', 'text/event-stream'];
    // Timeouts are the host's (each call's signal carries its deadline), so undici's own
    // header and body timeouts are off: a long generation may pause longer than they allow.
    const pool = new Pool(url.origin, { headersTimeout: 0, bodyTimeout: 0 });
    let disposed = false;

    const fail = (failure: UpstreamError['failure'], message: string, extra: { status?: number; retryAfterMs?: number; cause?: unknown } = {}) =>
      new UpstreamError(failure, redact(message), extra);

    /** Sends the call; a non-2xx answer is thrown as failure "http" with the upstream's own message. */
    async function post(body: string, headers: string[], signal: Cancel, to = path): Promise<Reply> {
      if (disposed) throw new Error('the openai_compatible provider was used after dispose()');
      let reply: Reply;
      try {
        const answer = await pool.request({ path: to, method: 'POST', headers, body, signal });
        reply = { status: answer.statusCode, headers: answer.headers as IncomingHttpHeaders, body: answer.body };
      } catch (err) {
        if (signal.aborted || isAbortError(err)) throw fail('aborted', wireFailure.aborted(), { cause: err });
        throw fail('connection', wireFailure.unreachable(where, err), { cause: err });
      }
      const { status } = reply;
      if (status >= 200 && status < 300) return reply;
      const text = await readBody(reply.body, MAX_ERROR_BODY_BYTES).catch(() => '');
      throw fail('http', wireFailure.status(where, status, errorDetail(text)), {
        status,
        retryAfterMs: parseRetryAfter((name) => headerOf(reply.headers, name)),
      });
    }

    /** A JSON answer's body, parsed; a body not labelled JSON that does not parse is its text, as the SDK reports it. */
    async function replyJson(reply: Reply, signal: Cancel): Promise<unknown> {
      let text: string;
      try {
        text = await reply.body.text();
      } catch (err) {
        throw readFailure(err, signal);
      }
      try {
        return JSON.parse(text);
      } catch (err) {
        // What the SDK does: a body not labelled JSON is reported as text, a malformed JSON body as not valid JSON.
        if (!isJsonType(reply.headers)) return text;
        throw fail('reply', wireFailure.notJson(where, (err as Error).message), { cause: err });
      }
    }

    /** A failure while reading a body that had started to arrive. */
    function readFailure(err: unknown, signal: Cancel): UpstreamError {
      if (isUpstreamError(err)) return err;
      if (signal.aborted || isAbortError(err)) return fail('aborted', wireFailure.aborted(), { cause: err });
      return fail('connection', wireFailure.broken(where, err), { cause: err });
    }

    const provider: Provider = {
      async complete(request, call) {
        const signal = cancelOf(call);
        const reply = await post(JSON.stringify(completionBody(request)), jsonHeaders, signal);
        return asChatResult(await replyJson(reply, signal), where);
      },

      async embed(request, call) {
        const signal = cancelOf(call);
        const reply = await post(JSON.stringify(embeddingBody(request)), jsonHeaders, signal, embeddingsPath);
        return asEmbeddingResult(await replyJson(reply, signal), where);
      },

      async *stream(request, call) {
        const signal = cancelOf(call);
        const reply = await post(JSON.stringify(streamBody(request)), streamHeaders, signal);
        const response = reply.body;
        // undici's body yields Buffers whatever its encoding: decode here, keeping a character split across chunks whole.
        const decoder = new StringDecoder('utf8');
        const events: EventSourceMessage[] = [];
        let parseFailure: Error | null = null;
        const parser = createParser({
          maxBufferSize: MAX_EVENT_CHARS,
          onEvent: (event: EventSourceMessage) => {
            events.push(event);
          },
          onError: (err: Error & { type?: string }) => {
            // Unknown fields are allowed by the SSE format; only an overlong event stops the stream.
            if (err.type === 'max-buffer-size-exceeded') parseFailure = err;
          },
        });
        const pieces = new BodyPump(response);
        let count = 0;
        let done = false;
        try {
          for (;;) {
            let piece: Buffer | null;
            try {
              piece = await pieces.next();
            } catch (err) {
              throw readFailure(err, signal);
            }
            if (piece === null) break;
            if (done) continue; // after [DONE]: read to the end, so the connection can be kept
            parser.feed(decoder.write(piece));
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
          if (!response.readableEnded) response.destroy();
        }
        if (signal.aborted) throw fail('aborted', wireFailure.aborted());
        if (count === 0) throw fail('reply', wireFailure.noChunks(where));
      },

      async dispose() {
        disposed = true;
        // No call is in flight by now (a runtime is disposed once its requests are over): drop the idle connections.
        await pool.destroy().catch(() => undefined);
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

/**
 * How a call is cancelled: the host's emitter when it offers one (undici takes either, and
 * the emitter spares the host an AbortSignal per call), else the call's signal.
 */
type Cancel = AbortSignal | CancellationEvents;

function cancelOf(call: CallOptions): Cancel {
  return call.cancellation ?? call.signal;
}

/** A reply whose status line and headers have arrived; the body is still to be read. */
interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  /** undici's body stream (a Readable that also has text()). */
  body: Readable & { text(): Promise<string> };
}

function headerOf(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

function isJsonType(headers: IncomingHttpHeaders): boolean {
  const type = headerOf(headers, 'content-type');
  return /\bjson\b/i.test(type ?? '');
}

/**
 * A body read through its 'data' events, for a consumer that awaits one piece at a time.
 * Readable's async iterator does the same, but sets up end-of-stream tracking (half a
 * dozen listeners) per stream and a promise per chunk, which on a short stream costs more
 * than parsing it (docs/bench/profile-findings.md, round 4). Pieces the consumer has not
 * taken yet are held, up to HIGH_WATER of them: then the body is paused, so a slow client
 * still slows the upstream down.
 */
class BodyPump {
  private static readonly HIGH_WATER = 16;
  private readonly pieces: Buffer[] = [];
  private ended = false;
  private failure: unknown = null;
  private wake: (() => void) | null = null;

  constructor(private readonly body: Readable) {
    body.on('data', (piece: Buffer) => {
      this.pieces.push(piece);
      if (this.pieces.length >= BodyPump.HIGH_WATER) body.pause();
      this.notify();
    });
    body.on('end', () => {
      this.ended = true;
      this.notify();
    });
    body.on('error', (err: unknown) => {
      this.failure ??= err;
      this.notify();
    });
    // Destroyed without an error or an end: the body stopped short.
    body.on('close', () => {
      if (!this.ended) this.failure ??= new Error('the body ended before it was complete');
      this.notify();
    });
  }

  /** The next piece; null once the body has ended; rejects with what broke it. Pieces that arrived before a failure come first. */
  async next(): Promise<Buffer | null> {
    for (;;) {
      const piece = this.pieces.shift();
      if (piece !== undefined) {
        if (this.pieces.length === 0 && this.body.isPaused()) this.body.resume();
        return piece;
      }
      if (this.failure !== null) throw this.failure;
      if (this.ended) return null;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}

/** The body as text, at most `limit` bytes (then the connection is dropped); rejects when the connection breaks or the call is cancelled. */
async function readBody(body: Readable, limit: number): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of body as AsyncIterable<Buffer>) {
    size += part.length;
    if (size > limit) {
      body.destroy();
      break;
    }
    parts.push(part);
  }
  return (parts.length === 1 ? parts[0] : Buffer.concat(parts)).toString('utf8');
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
