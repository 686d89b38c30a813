// A local stand-in for Anthropic's Messages API (POST /v1/messages), built on node:http
// so that the anthropic provider is tested through the real @anthropic-ai/sdk over real
// HTTP: headers, SSE framing, status codes, resets and client aborts all take the same
// path they take against api.anthropic.com. It checks requests the way the real API
// does where that matters to a gateway (auth header present, anthropic-version present,
// model/max_tokens/messages required, sampling parameters refused on 2026-10-21 and
// later), and answers in Anthropic's shapes: a `message` object, the named SSE events
// (message_start, content_block_start, ping, content_block_delta, content_block_stop,
// message_delta, message_stop) and `{type:'error', error:{type, message}}` bodies.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type AnthropicStopReason = 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use';

export type AnthropicReplyBlock = { type: 'text'; text: string } | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> };

export type AnthropicBehaviour =
  | {
      kind: 'reply';
      /** The reply text (one text block). Defaults to `echo: <text of the last user message>`. */
      text?: string;
      /** Full control over the content blocks; wins over `text`. */
      content?: AnthropicReplyBlock[];
      /** Defaults to 'tool_use' when content has a tool_use block, else 'end_turn'. */
      stop_reason?: AnthropicStopReason;
      stop_sequence?: string | null;
      /** Cache reads and writes default to 0; input_tokens excludes them, as Anthropic's does. */
      usage?: { input_tokens: number; output_tokens: number; cache_creation_input_tokens?: number; cache_read_input_tokens?: number };
    }
  | { kind: 'status'; status: number; errorType?: string; message?: string; headers?: Record<string, string> }
  /** Streams: starts the message, sends one delta, then an SSE `error` event (as Anthropic does when overloaded mid-stream). Non-streaming: like `status` 529. */
  | { kind: 'error-mid-stream'; errorType?: string; message?: string }
  | { kind: 'hang' }
  | { kind: 'reset' }
  | { kind: 'reset-mid-stream' };

export interface FakeAnthropicRequest {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body (undefined when empty or not JSON), typed loosely for tests to inspect. */
  body: any;
  /** The client went away before the reply was finished. */
  aborted: boolean;
}

export interface FakeAnthropic {
  /** http://127.0.0.1:PORT (the SDK appends /v1/messages). */
  baseURL: string;
  requests: FakeAnthropicRequest[];
  behave(fn: (body: any) => AnthropicBehaviour): void;
  /** Resolves once at least `n` requests have been aborted by the client. */
  waitForAborted(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** The API version from which temperature, top_p and top_k are refused with a 400. */
const SAMPLING_REMOVED_IN = '2026-10-21';

const DEFAULT_ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  504: 'timeout_error',
  529: 'overloaded_error',
};

export async function startFakeAnthropic(options: { behave?: (body: any) => AnthropicBehaviour } = {}): Promise<FakeAnthropic> {
  let behaviour: (body: any) => AnthropicBehaviour = options.behave ?? (() => ({ kind: 'reply' }));
  const requests: FakeAnthropicRequest[] = [];
  const abortWaiters = new Set<() => void>();
  const sockets = new Set<Socket>();
  let closing = false;
  let messageCounter = 0;

  const abortedCount = () => requests.filter((r) => r.aborted).length;

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      let bodyError: string | undefined;
      try {
        body = raw === '' ? undefined : JSON.parse(raw);
      } catch (err) {
        bodyError = `request body is not valid JSON: ${(err as Error).message}`;
      }
      const entry: FakeAnthropicRequest = { path: req.url ?? '', headers: { ...req.headers }, body, aborted: false };
      requests.push(entry);

      let resetByServer = false;
      res.on('close', () => {
        if (closing || resetByServer || res.writableFinished) return;
        entry.aborted = true;
        for (const wake of [...abortWaiters]) wake();
      });

      const destroy = () => {
        resetByServer = true;
        req.socket.destroy();
      };
      void respond(req, res, entry, bodyError, destroy).catch(() => destroy());
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  async function respond(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    entry: FakeAnthropicRequest,
    bodyError: string | undefined,
    destroy: () => void,
  ): Promise<void> {
    const pathname = new URL(entry.path, 'http://fake').pathname;
    if (req.method !== 'POST' || pathname !== '/v1/messages')
      return sendError(res, 404, 'not_found_error', `${req.method} ${pathname} is not handled by this fake`);
    if (!req.headers['x-api-key'] && !req.headers['authorization'])
      return sendError(res, 401, 'authentication_error', 'x-api-key or authorization header is required');
    const version = header(req, 'anthropic-version');
    if (!version) return sendError(res, 400, 'invalid_request_error', 'anthropic-version: header is required');
    if (bodyError) return sendError(res, 400, 'invalid_request_error', bodyError);
    const problem = checkBody(entry.body, version);
    if (problem) return sendError(res, 400, 'invalid_request_error', problem);

    const body = entry.body as Record<string, unknown>;
    const streaming = body.stream === true;
    const plan = behaviour(body);
    switch (plan.kind) {
      case 'status': {
        const type = plan.errorType ?? DEFAULT_ERROR_TYPES[plan.status] ?? (plan.status >= 500 ? 'api_error' : 'invalid_request_error');
        return sendError(res, plan.status, type, plan.message ?? `fake ${type}`, plan.headers);
      }
      case 'hang':
        return; // never answer; the client's abort closes the socket
      case 'reset':
        return destroy();
      case 'reply':
      case 'error-mid-stream':
      case 'reset-mid-stream': {
        const message = buildMessage(body, plan.kind === 'reply' ? plan : { kind: 'reply' }, `msg_fake_${String(++messageCounter).padStart(6, '0')}`);
        if (!streaming) {
          if (plan.kind === 'error-mid-stream') return sendError(res, 529, plan.errorType ?? 'overloaded_error', plan.message ?? 'Overloaded');
          const json = JSON.stringify(message);
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json), 'request-id': `req_fake_${messageCounter}` });
          if (plan.kind === 'reset-mid-stream') {
            res.write(json.slice(0, Math.floor(json.length / 2)));
            await tick();
            return destroy();
          }
          res.end(json);
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'request-id': `req_fake_${messageCounter}` });
        const events = streamEvents(message);
        // message_start, content_block_start, ping and the first delta go out before a failure.
        const cut = plan.kind === 'reply' ? events.length : Math.min(4, events.length);
        for (const event of events.slice(0, cut)) {
          if (res.destroyed) return;
          res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
          await tick();
        }
        if (res.destroyed) return;
        if (plan.kind === 'reset-mid-stream') return destroy();
        if (plan.kind === 'error-mid-stream') {
          const error = { type: 'error', error: { type: plan.errorType ?? 'overloaded_error', message: plan.message ?? 'Overloaded' } };
          res.end(`event: error\ndata: ${JSON.stringify(error)}\n\n`);
          return;
        }
        res.end();
        return;
      }
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    baseURL: `http://127.0.0.1:${port}`,
    requests,
    behave(fn) {
      behaviour = fn;
    },
    waitForAborted(n, timeoutMs = 2000) {
      if (abortedCount() >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const wake = () => {
          if (abortedCount() < n) return;
          clearTimeout(timer);
          abortWaiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(() => {
          abortWaiters.delete(wake);
          reject(new Error(`fake anthropic: ${abortedCount()} aborted request(s) after ${timeoutMs} ms, wanted ${n}`));
        }, timeoutMs);
        abortWaiters.add(wake);
      });
    },
    close() {
      closing = true;
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
      });
    },
  };
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function sendError(res: http.ServerResponse, status: number, type: string, message: string, headers: Record<string, string> = {}): void {
  const json = JSON.stringify({ type: 'error', error: { type, message } });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json), 'request-id': 'req_fake_error', ...headers });
  res.end(json);
}

/** What the real API refuses with a 400 and a gateway could plausibly send. */
function checkBody(body: unknown, version: string): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'request body must be a JSON object';
  const b = body as Record<string, unknown>;
  if (typeof b.model !== 'string' || b.model === '') return 'model: Field required';
  if (typeof b.max_tokens !== 'number' || !Number.isInteger(b.max_tokens) || b.max_tokens < 0) return 'max_tokens: Field required';
  if (!Array.isArray(b.messages)) return 'messages: Field required';
  if (version >= SAMPLING_REMOVED_IN) {
    for (const key of ['temperature', 'top_p', 'top_k']) {
      if (key in b) return `${key}: Extra inputs are not permitted`;
    }
  }
  return undefined;
}

interface FakeMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: AnthropicReplyBlock[];
  stop_reason: AnthropicStopReason;
  stop_sequence: string | null;
  usage: { input_tokens: number; output_tokens: number; cache_creation_input_tokens: number; cache_read_input_tokens: number };
}

function buildMessage(body: Record<string, unknown>, plan: Extract<AnthropicBehaviour, { kind: 'reply' }>, id: string): FakeMessage {
  const content: AnthropicReplyBlock[] = plan.content ?? [{ type: 'text', text: plan.text ?? `echo: ${lastUserText(body.messages)}` }];
  const outputText = content.map((b) => (b.type === 'text' ? b.text : JSON.stringify(b.input))).join('');
  return {
    id,
    type: 'message',
    role: 'assistant',
    model: String(body.model),
    content,
    stop_reason: plan.stop_reason ?? (content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn'),
    stop_sequence: plan.stop_sequence ?? null,
    usage: {
      input_tokens: plan.usage?.input_tokens ?? estimateTokens(JSON.stringify([body.system ?? '', body.messages])),
      output_tokens: plan.usage?.output_tokens ?? estimateTokens(outputText),
      cache_creation_input_tokens: plan.usage?.cache_creation_input_tokens ?? 0,
      cache_read_input_tokens: plan.usage?.cache_read_input_tokens ?? 0,
    },
  };
}

/** The SSE events Anthropic sends for `message`, in order, with the text split into several deltas. */
function streamEvents(message: FakeMessage): Array<{ type: string; [key: string]: unknown }> {
  const events: Array<{ type: string; [key: string]: unknown }> = [
    { type: 'message_start', message: { ...message, content: [], stop_reason: null, stop_sequence: null, usage: { ...message.usage, output_tokens: 1 } } },
  ];
  message.content.forEach((block, index) => {
    if (block.type === 'text') {
      events.push({ type: 'content_block_start', index, content_block: { type: 'text', text: '' } });
      if (index === 0) events.push({ type: 'ping' });
      for (const piece of splitText(block.text)) events.push({ type: 'content_block_delta', index, delta: { type: 'text_delta', text: piece } });
    } else {
      events.push({ type: 'content_block_start', index, content_block: { type: 'tool_use', id: block.id, name: block.name, input: {} } });
      if (index === 0) events.push({ type: 'ping' });
      const json = JSON.stringify(block.input);
      const third = Math.ceil(json.length / 3);
      events.push({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: '' } });
      for (let i = 0; i < json.length; i += third)
        events.push({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: json.slice(i, i + third) } });
    }
    events.push({ type: 'content_block_stop', index });
  });
  events.push({
    type: 'message_delta',
    delta: { stop_reason: message.stop_reason, stop_sequence: message.stop_sequence },
    usage: { output_tokens: message.usage.output_tokens },
  });
  events.push({ type: 'message_stop' });
  return events;
}

/** Words with their trailing whitespace: "a b c" → ["a ", "b ", "c"]. Never empty. */
function splitText(text: string): string[] {
  const pieces = text.match(/\S+\s*|\s+/g);
  return pieces && pieces.length > 0 ? pieces : [''];
}

function lastUserText(messages: unknown): string {
  if (!Array.isArray(messages)) return '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as { role?: unknown; content?: unknown };
    if (m?.role === 'user') return blockText(m.content);
  }
  return '';
}

function blockText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((block: { type?: unknown; text?: unknown; content?: unknown }) => {
      if (block?.type === 'text' && typeof block.text === 'string') return block.text;
      if (block?.type === 'tool_result') return blockText(block.content);
      return '';
    })
    .filter((t) => t !== '')
    .join('\n');
}

function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}
