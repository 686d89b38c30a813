// A local stand-in for an OpenAI-compatible upstream, speaking the real wire format over
// real HTTP so that provider, gateway and failure tests exercise the same code paths
// (SDK, fetch, sockets, SSE parsing) that production does. Each request's answer is
// chosen by a `behave` function, which lets a test script failures (status codes,
// hangs, socket resets, garbage) that a real upstream produces only rarely. Requests
// are recorded, including whether the client went away early, so tests can prove that
// cancellation really reached the upstream. A reply can carry token logprobs, sent
// (in OpenAI's shape) only when the request asks for them with `logprobs: true`, tool
// calls (streamed whole, or the way OpenAI streams them: id and name first, then the
// arguments in fragments), usage with OpenAI's token details, a system_fingerprint, and
// several choices (`n` in the request, or `choices` in the behaviour). POST /v1/embeddings
// answers with fakeVector()s (a `status` behaviour fails it, as it fails a chat call). It
// also answers Azure OpenAI's paths for the same calls
// (/openai/deployments/<name>/chat/completions or …/embeddings, ?api-version=…).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { ToolCall } from '../../src/plugin-contract/plugin-api.ts';
import { estimateMessagesTokens, estimateTextTokens, lastUserMessage } from '../../src/plugin-contract/tokens.ts';

export type Behaviour =
  | {
      kind: 'reply';
      /** Defaults to `echo: <text of the last user message>` ('' when tool_calls are given). */
      content?: string;
      /** Defaults to 'stop' ('tool_calls' when tool_calls are given). */
      finish_reason?: 'stop' | 'length' | 'tool_calls';
      /**
       * Defaults to an estimate from the request's messages and the content. Extra fields
       * (prompt_tokens_details, completion_tokens_details, ...) are sent as given;
       * total_tokens is always prompt + completion.
       */
      usage?: FakeUsage;
      /** Optional tool calls for the assistant message (streamed as `tool_call_deltas` says). */
      tool_calls?: ToolCall[];
      /**
       * How a stream carries tool calls: 'whole' (default) sends each call complete in one
       * delta; 'split' streams them as OpenAI does: a first delta with index, id, type,
       * name and empty arguments, then the arguments in fragments carrying only the index.
       */
      tool_call_deltas?: 'whole' | 'split';
      /** Defaults to 'fp_fake'; null sends `system_fingerprint: null`. */
      system_fingerprint?: string | null;
      /** Sent as `service_tier` on the answer and on every chunk, as OpenAI does; absent by default. */
      service_tier?: string;
      /**
       * The choices of the answer, each like the fields above (and defaulting the same
       * way). Without it the answer has one choice from the fields above, repeated `n`
       * times when the request asks for `n` > 1.
       */
      choices?: FakeChoice[];
      /**
       * Per-token log-probabilities, returned as `choices[0].logprobs.content` only when
       * the request has `logprobs: true` (otherwise `logprobs: null`, as OpenAI does). In
       * a stream they are spread over the content chunks in order.
       */
      logprobs?: FakeTokenLogprob[];
      /** Wait before sending the response headers. */
      delayMs?: number;
      /** Wait between SSE chunks (streams only). */
      chunkDelayMs?: number;
    }
  /** A non-2xx answer; the body defaults to OpenAI's error shape. A string body is sent as-is. */
  | { kind: 'status'; status: number; body?: unknown; headers?: Record<string, string> }
  /** Accept the request and never answer (until the client goes away or the server closes). */
  | { kind: 'hang' }
  /** Destroy the socket before any response. */
  | { kind: 'reset' }
  /** Send headers and the first chunks (or half the JSON body), then destroy the socket. */
  | { kind: 'reset-mid-stream' }
  /** 200 with a body that is not JSON (or a broken SSE data line for streams). */
  | { kind: 'malformed' }
  /**
   * A slow drip: the headers at once, then the whole reply (JSON, or SSE for streams)
   * in slices of `bytes` bytes, one every `intervalMs`.
   */
  | { kind: 'drip'; content?: string; bytes: number; intervalMs: number };

/** A token and its log-probability; the fake fills in `bytes` and (unless given) `top_logprobs`. */
export interface FakeTokenLogprob {
  token: string;
  logprob: number;
  /** Alternatives at this position; defaults to none. */
  top_logprobs?: Array<{ token: string; logprob: number }>;
}

export interface FakeUsage {
  prompt_tokens: number;
  completion_tokens: number;
  [extra: string]: unknown;
}

/** One choice of a reply (see the reply behaviour's fields of the same names). */
export interface FakeChoice {
  content?: string;
  finish_reason?: 'stop' | 'length' | 'tool_calls' | 'content_filter';
  tool_calls?: ToolCall[];
  logprobs?: FakeTokenLogprob[];
}

export interface RecordedRequest {
  method: string;
  /** The request path including any query string, e.g. /v1/chat/completions. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body; the raw text when it is not JSON; undefined when empty. */
  body: any;
  /** The client went away before the response finished. */
  aborted: boolean;
  /**
   * What a `reply` behaviour answered, for tests that compare it with what their client
   * got: the chat completion, or (streams) the SSE events' objects in order, [DONE] left out.
   */
  answer?: object | object[];
}

export type BehaveFn = (body: any, req: RecordedRequest) => Behaviour;

export interface FakeOpenAI {
  /** e.g. http://127.0.0.1:PORT/v1 */
  baseURL: string;
  requests: RecordedRequest[];
  /** Replaces the behaviour for subsequent requests. */
  behave(fn: BehaveFn): void;
  abortedCount(): number;
  /** Requests whose response has neither finished nor been closed: upstream calls still open. */
  activeRequests(): number;
  /** Resolves once at least `n` requests were aborted by their client (default timeout 2000 ms). */
  waitForAborted(n: number, timeoutMs?: number): Promise<void>;
  /** Stops listening and destroys every open socket. */
  close(): Promise<void>;
}

export const FAKE_MODEL_ID = 'fake-model';
/** The system_fingerprint of every answer unless a behaviour says otherwise. */
export const FAKE_FINGERPRINT = 'fp_fake';

const defaultBehave: BehaveFn = () => ({ kind: 'reply' });

export async function startFakeOpenAI(options: { behave?: BehaveFn; port?: number } = {}): Promise<FakeOpenAI> {
  let behave = options.behave ?? defaultBehave;
  let closing = false;
  let nextId = 1;
  const requests: RecordedRequest[] = [];
  const abortWaiters = new Set<() => void>();
  const sockets = new Set<Socket>();
  let active = 0;

  const notifyAborted = () => {
    for (const check of [...abortWaiters]) check();
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent && !res.destroyed) sendError(res, 500, `fake-openai crashed: ${String(err)}`, 'server_error');
      else res.destroy();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const record: RecordedRequest = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: { ...req.headers },
      body: parseBody(raw),
      aborted: false,
    };
    requests.push(record);
    active++;
    // Set when the server itself kills the socket, which is not the client going away.
    let killedByServer = false;
    res.on('close', () => {
      active--;
      if (!res.writableFinished && !killedByServer && !closing) {
        record.aborted = true;
        notifyAborted();
      }
    });
    const kill = () => {
      killedByServer = true;
      req.socket.destroy();
    };

    const pathname = record.path.split('?')[0];
    if (record.method === 'GET' && pathname === '/v1/models') {
      sendJson(res, 200, { object: 'list', data: [{ id: FAKE_MODEL_ID, object: 'model', created: 0, owned_by: 'fake-openai' }] });
      return;
    }
    // Azure OpenAI's form of the same calls: the deployment in the path, api-version in the query.
    const azure = /^\/openai\/deployments\/[^/]+\/(chat\/completions|embeddings)$/.exec(pathname);
    if (azure && !new URLSearchParams(record.path.split('?')[1] ?? '').get('api-version')) {
      sendError(res, 404, 'Resource not found: the api-version query parameter is missing', 'invalid_request_error');
      return;
    }
    if (record.method === 'POST' && (pathname === '/v1/embeddings' || azure?.[1] === 'embeddings')) {
      const behaviour = behave(record.body, record);
      if (behaviour.kind === 'status') {
        sendStatus(res, behaviour);
        return;
      }
      const answer = embeddings(record.body);
      record.answer = answer;
      sendJson(res, 200, answer);
      return;
    }
    if (pathname !== '/v1/chat/completions' && azure?.[1] !== 'chat/completions') {
      sendError(res, 404, `Unknown request URL: ${record.method} ${pathname}`, 'invalid_request_error', 'unknown_url');
      return;
    }
    if (record.method !== 'POST') {
      sendError(res, 405, `Method ${record.method} not allowed`, 'invalid_request_error');
      return;
    }
    const body = record.body;
    if (typeof body !== 'object' || body === null || !Array.isArray(body.messages)) {
      sendError(res, 400, 'request body must be a JSON object with messages', 'invalid_request_error');
      return;
    }

    const behaviour = behave(body, record);
    const stream = body.stream === true;
    const id = `chatcmpl-fake${nextId++}`;
    const created = Math.floor(Date.now() / 1000);
    const model = typeof body.model === 'string' ? body.model : FAKE_MODEL_ID;

    switch (behaviour.kind) {
      case 'status':
        sendStatus(res, behaviour);
        return;
      case 'hang':
        return; // never answer; close() or the client going away ends it
      case 'reset':
        kill();
        return;
      case 'malformed':
        if (stream) {
          startSse(res);
          res.write(sse(chunk(id, created, model, { role: 'assistant', content: '' }, null)));
          res.end('data: {"id": "broken\n\n');
        } else {
          res.writeHead(200, { 'content-type': 'application/json' }).end('<html>this is not JSON</html>');
        }
        return;
      case 'reset-mid-stream':
        if (stream) {
          startSse(res);
          res.write(sse(chunk(id, created, model, { role: 'assistant', content: '' }, null)));
          res.write(sse(chunk(id, created, model, { content: 'partial ' }, null)));
        } else {
          const full = JSON.stringify(completion(id, created, model, 'partial answer', 'stop', undefined, { prompt_tokens: 1, completion_tokens: 1 }));
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(full)) });
          res.write(full.slice(0, Math.floor(full.length / 2)));
        }
        // Give the bytes a moment to reach the client so it sees them before the reset.
        await sleep(25, res);
        kill();
        return;
      case 'drip': {
        const content = behaviour.content ?? `echo: ${lastUserMessage(body.messages)}`;
        const usage = { prompt_tokens: estimateMessagesTokens(body.messages), completion_tokens: Math.max(1, estimateTextTokens(content)) };
        let text: string;
        if (stream) {
          const events: object[] = [
            chunk(id, created, model, { role: 'assistant', content: '' }, null),
            ...split(content).map((piece) => chunk(id, created, model, { content: piece }, null)),
            chunk(id, created, model, {}, 'stop'),
          ];
          if (body.stream_options?.include_usage === true) events.push({ ...chunk(id, created, model, {}, null), choices: [], usage: withTotal(usage) });
          text = events.map(sse).join('') + 'data: [DONE]\n\n';
          startSse(res);
        } else {
          text = JSON.stringify(completion(id, created, model, content, 'stop', undefined, usage));
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
          res.flushHeaders();
        }
        const bytes = Buffer.from(text, 'utf8');
        for (let at = 0; at < bytes.length; at += behaviour.bytes) {
          if (at > 0) await sleep(behaviour.intervalMs, res);
          if (res.destroyed) return;
          res.write(bytes.subarray(at, at + behaviour.bytes));
        }
        res.end();
        return;
      }
      case 'reply': {
        const fingerprint = behaviour.system_fingerprint === undefined ? FAKE_FINGERPRINT : behaviour.system_fingerprint;
        const serviceTier = behaviour.service_tier === undefined ? {} : { service_tier: behaviour.service_tier };
        const requested = Number.isInteger(body.n) && body.n > 1 ? (body.n as number) : 1;
        const specs: FakeChoice[] = behaviour.choices ?? Array.from({ length: requested }, () => behaviour);
        const choices = specs.map((spec, index) => {
          const toolCalls = spec.tool_calls;
          const content = spec.content ?? (toolCalls?.length ? '' : `echo: ${lastUserMessage(body.messages)}`);
          // Only sent when asked for, like OpenAI; a reply without them is a provider that has none.
          const logprobs = body.logprobs === true && spec.logprobs ? spec.logprobs.map(logprobEntry) : null;
          return { index, content, toolCalls, logprobs, finish: spec.finish_reason ?? (toolCalls?.length ? 'tool_calls' : 'stop') };
        });
        const usage = behaviour.usage ?? {
          prompt_tokens: estimateMessagesTokens(body.messages),
          completion_tokens: choices.reduce((sum, c) => sum + Math.max(1, estimateTextTokens(c.content)), 0),
        };
        if (behaviour.delayMs) await sleep(behaviour.delayMs, res);
        if (res.destroyed) return;
        if (!stream) {
          const answer = {
            ...completion(id, created, model, choices[0].content, choices[0].finish, choices[0].toolCalls, usage, choices[0].logprobs, fingerprint),
            ...serviceTier,
            choices: choices.map((c) => completionChoice(c.index, c.content, c.finish, c.toolCalls, c.logprobs)),
          };
          record.answer = answer;
          sendJson(res, 200, answer);
          return;
        }
        const includeUsage = body.stream_options?.include_usage === true;
        const extra = { ...(includeUsage ? { usage: null } : {}), ...serviceTier };
        const event = (index: number, delta: object, finish: string | null, logprobs: object | null = null) =>
          chunk(id, created, model, delta, finish, extra, logprobs, fingerprint, index);
        const events: object[] = [];
        for (const { index, content, toolCalls, logprobs, finish } of choices) {
          events.push(event(index, { role: 'assistant', content: '', refusal: null }, null));
          const contentPieces = split(content);
          // Each content chunk carries the next share of the tokens; the last takes the rest.
          const perPiece = logprobs ? Math.ceil(logprobs.length / Math.max(1, contentPieces.length)) : 0;
          for (const [i, piece] of contentPieces.entries()) {
            const pieceLogprobs = logprobs
              ? { content: logprobs.slice(i * perPiece, i === contentPieces.length - 1 ? undefined : (i + 1) * perPiece), refusal: null }
              : null;
            events.push(event(index, { content: piece }, null, pieceLogprobs));
          }
          if (toolCalls?.length && behaviour.tool_call_deltas === 'split') {
            for (const [callIndex, call] of toolCalls.entries()) {
              events.push(
                event(index, { tool_calls: [{ index: callIndex, id: call.id, type: call.type, function: { name: call.function.name, arguments: '' } }] }, null),
              );
              for (const fragment of split(call.function.arguments))
                events.push(event(index, { tool_calls: [{ index: callIndex, function: { arguments: fragment } }] }, null));
            }
          } else if (toolCalls?.length) {
            const deltas = toolCalls.map((call, callIndex) => ({ index: callIndex, ...call }));
            events.push(event(index, { tool_calls: deltas }, null));
          }
          events.push(event(index, {}, finish));
        }
        if (includeUsage) events.push({ ...chunk(id, created, model, {}, null, serviceTier, null, fingerprint), choices: [], usage: withTotal(usage) });
        record.answer = events;
        startSse(res);
        for (const [i, ev] of events.entries()) {
          if (i > 0 && behaviour.chunkDelayMs) await sleep(behaviour.chunkDelayMs, res);
          if (res.destroyed) return;
          res.write(sse(ev));
        }
        res.end('data: [DONE]\n\n');
        return;
      }
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    behave(fn) {
      behave = fn;
    },
    abortedCount: () => requests.filter((r) => r.aborted).length,
    activeRequests: () => active,
    waitForAborted(n, timeoutMs = 2000) {
      return new Promise<void>((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          abortWaiters.delete(check);
        };
        const check = () => {
          if (requests.filter((r) => r.aborted).length >= n) {
            done();
            resolve();
          }
        };
        const timer = setTimeout(() => {
          done();
          const seen = requests.filter((r) => r.aborted).length;
          reject(new Error(`fake-openai: expected ${n} aborted request(s) within ${timeoutMs} ms, saw ${seen} of ${requests.length}`));
        }, timeoutMs);
        abortWaiters.add(check);
        check();
      });
    },
    async close() {
      if (closing) return;
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

// ---------------------------------------------------------------------------------

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

function parseBody(raw: string): any {
  if (raw === '') return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** Resolves after `ms`, or as soon as the response closes (so a gone client ends waits early). */
function sleep(ms: number, res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      res.off('close', finish);
      resolve();
    };
    const timer = setTimeout(finish, ms);
    res.on('close', finish);
  });
}

/** The vector fake-openai gives input `index` of a request (as floats), `dimensions` long (4 by default). */
export function fakeVector(index: number, dimensions = 4): number[] {
  return Array.from({ length: dimensions }, (_, j) => (index + 1) / (j + 2));
}

/**
 * POST /v1/embeddings as OpenAI answers it: a vector per input (fakeVector), encoded as
 * asked (float, or base64 little-endian float32s), and a usage that counts one token per
 * character of text (a count no client estimate would give, so a test sees whose it is).
 */
function embeddings(body: any): object {
  const input: unknown[] = typeof body?.input === 'string' ? [body.input] : typeof body?.input?.[0] === 'number' ? [body.input] : (body?.input ?? []);
  const tokens = input.reduce((sum: number, item) => sum + (typeof item === 'string' ? item.length : (item as unknown[]).length), 0);
  const data = input.map((_, index) => {
    const vector = fakeVector(index, body.dimensions);
    const embedding = body.encoding_format === 'base64' ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector;
    return { object: 'embedding', index, embedding };
  });
  return { object: 'list', data, model: body.model, usage: { prompt_tokens: tokens, total_tokens: tokens } };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) }).end(text);
}

/** A `status` behaviour's answer: its headers, and its body or OpenAI's error shape. */
function sendStatus(res: ServerResponse, behaviour: Extract<Behaviour, { kind: 'status' }>): void {
  for (const [name, value] of Object.entries(behaviour.headers ?? {})) res.setHeader(name, value);
  if (typeof behaviour.body === 'string') {
    res.writeHead(behaviour.status, { 'content-type': 'text/plain' }).end(behaviour.body);
  } else if (behaviour.body !== undefined) {
    sendJson(res, behaviour.status, behaviour.body);
  } else {
    const type = behaviour.status === 429 ? 'rate_limit_error' : behaviour.status >= 500 ? 'server_error' : 'invalid_request_error';
    sendError(res, behaviour.status, `fake upstream answered ${behaviour.status}`, type);
  }
}

function sendError(res: ServerResponse, status: number, message: string, type: string, code: string | null = null): void {
  sendJson(res, status, { error: { message, type, param: null, code } });
}

function startSse(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
  res.flushHeaders();
}

function sse(event: object): string {
  return `data: ${JSON.stringify(event)}\n\n`;
}

function withTotal(usage: FakeUsage) {
  return {
    ...usage,
    prompt_tokens: usage.prompt_tokens,
    completion_tokens: usage.completion_tokens,
    total_tokens: usage.prompt_tokens + usage.completion_tokens,
  };
}

function completion(
  id: string,
  created: number,
  model: string,
  content: string,
  finish: string,
  toolCalls: ToolCall[] | undefined,
  usage: FakeUsage,
  logprobs: object[] | null = null,
  fingerprint: string | null = FAKE_FINGERPRINT,
) {
  return {
    id,
    object: 'chat.completion',
    created,
    model,
    system_fingerprint: fingerprint,
    choices: [completionChoice(0, content, finish, toolCalls, logprobs)],
    usage: withTotal(usage),
  };
}

function completionChoice(index: number, content: string, finish: string, toolCalls: ToolCall[] | undefined, logprobs: object[] | null) {
  const message: Record<string, unknown> = { role: 'assistant', content: toolCalls?.length && content === '' ? null : content, refusal: null };
  if (toolCalls?.length) message.tool_calls = toolCalls;
  return { index, message, logprobs: logprobs ? { content: logprobs, refusal: null } : null, finish_reason: finish };
}

function chunk(
  id: string,
  created: number,
  model: string,
  delta: object,
  finish: string | null,
  extra: object = {},
  logprobs: object | null = null,
  fingerprint: string | null = FAKE_FINGERPRINT,
  index = 0,
) {
  return {
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    system_fingerprint: fingerprint,
    choices: [{ index, delta, logprobs, finish_reason: finish }],
    ...extra,
  };
}

/** OpenAI's entry shape: `bytes` are the token's UTF-8 bytes; alternatives only when the behaviour gives them. */
function logprobEntry(entry: FakeTokenLogprob) {
  const bytes = (token: string) => [...Buffer.from(token, 'utf8')];
  return {
    token: entry.token,
    logprob: entry.logprob,
    bytes: bytes(entry.token),
    top_logprobs: (entry.top_logprobs ?? []).map((alt) => ({ ...alt, bytes: bytes(alt.token) })),
  };
}

/** Splits content into up to three pieces (by code point, so surrogate pairs stay whole). */
function split(content: string): string[] {
  const chars = Array.from(content);
  if (chars.length === 0) return [];
  const size = Math.ceil(chars.length / 3);
  const pieces: string[] = [];
  for (let i = 0; i < chars.length; i += size) pieces.push(chars.slice(i, i + size).join(''));
  return pieces;
}
