// A local stand-in for Google's Gemini API (generateContent, streamGenerateContent over
// SSE, and batchEmbedContents), speaking its wire format over real HTTP for the gemini
// provider's tests. Each request's answer is chosen by a `behave` function; requests are
// recorded. batchEmbedContents refuses what Google refuses (more than 100 requests, a
// request naming another model than the URL) and answers a `reply` with fakeGeminiVector()s.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface GeminiUsageMetadata {
  promptTokenCount?: number;
  cachedContentTokenCount?: number;
  candidatesTokenCount?: number;
  thoughtsTokenCount?: number;
  toolUsePromptTokenCount?: number;
  totalTokenCount?: number;
}

export type GeminiBehaviour =
  | {
      /** batchEmbedContents: a fakeGeminiVector() per request (the fields below are for generateContent). */
      kind: 'reply';
      /** The candidate's parts; defaults to one text part, `echo: <last user text>`. Streams send one part per event. */
      parts?: Array<Record<string, unknown>>;
      finishReason?: string;
      /** Defaults to small counts; sent on the last event of a stream. */
      usageMetadata?: GeminiUsageMetadata;
    }
  /** A non-2xx answer in Google's error shape; `retryDelay` ("7s") adds a RetryInfo detail. */
  | { kind: 'status'; status: number; message?: string; headers?: Record<string, string>; retryDelay?: string }
  /** A 200 with this JSON body, whatever it is. */
  | { kind: 'raw'; body: unknown }
  /** Streams: one event of text, then an error event (as Gemini sends when it fails after the 200). */
  | { kind: 'error-mid-stream'; status: number; message?: string };

export interface FakeGeminiRequest {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

export interface FakeGemini {
  /** The root the SDK's httpOptions.baseUrl takes. */
  baseURL: string;
  requests: FakeGeminiRequest[];
  behave(fn: (body: any) => GeminiBehaviour): void;
  close(): Promise<void>;
}

/** The most requests Google takes in one batchEmbedContents call. */
const EMBED_BATCH_LIMIT = 100;

/**
 * The vector fake-gemini gives a text, `dimensions` long (8 unless outputDimensionality
 * says): it depends on the text, so a test sees each vector in its text's place, and its
 * values are exact in float32, so a vector survives base64 unchanged.
 */
export function fakeGeminiVector(text: string, dimensions = 8): number[] {
  return Array.from({ length: dimensions }, (_, j) => (text.charCodeAt(j % text.length) + j) / 256);
}

const STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  403: 'PERMISSION_DENIED',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
};

export async function startFakeGemini(): Promise<FakeGemini> {
  let behave: (body: any) => GeminiBehaviour = () => ({ kind: 'reply' });
  const requests: FakeGeminiRequest[] = [];
  const sockets = new Set<Socket>();
  let nextId = 1;

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: { code: 500, message: `fake-gemini crashed: ${String(err)}`, status: 'INTERNAL' } });
      else res.destroy();
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = '';
    for await (const chunk of req) raw += String(chunk);
    const path = req.url ?? '/';
    const body: unknown = raw === '' ? undefined : JSON.parse(raw);
    requests.push({ path, headers: { ...req.headers }, body });
    const route = /^\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent|batchEmbedContents)(\?alt=sse)?$/.exec(path);
    if (req.method !== 'POST' || !route) {
      sendJson(res, 404, { error: { code: 404, message: `no route ${req.method} ${path}`, status: 'NOT_FOUND' } });
      return;
    }
    const model = route[1];
    const stream = route[2] === 'streamGenerateContent';
    const plan = behave(body);
    if (plan.kind === 'status') {
      sendError(res, plan.status, plan.message ?? `fake-gemini says ${plan.status}`, plan.retryDelay, plan.headers);
      return;
    }
    if (plan.kind === 'raw') {
      sendJson(res, 200, plan.body);
      return;
    }
    if (route[2] === 'batchEmbedContents') {
      embed(res, model, body);
      return;
    }
    const responseId = `resp-${nextId++}`;
    if (plan.kind === 'error-mid-stream') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        `data: ${JSON.stringify({ candidates: [{ content: { role: 'model', parts: [{ text: 'partial ' }] }, index: 0 }], responseId, modelVersion: model })}\r\n\r\n`,
      );
      res.end(
        `data: ${JSON.stringify({ error: { code: plan.status, message: plan.message ?? 'failed mid-stream', status: STATUS_NAMES[plan.status] ?? 'UNKNOWN' } })}\r\n\r\n`,
      );
      return;
    }
    const parts = plan.parts ?? [{ text: `echo: ${lastUserText(body)}` }];
    const finishReason = plan.finishReason ?? 'STOP';
    const usageMetadata = plan.usageMetadata ?? { promptTokenCount: 7, candidatesTokenCount: 5, totalTokenCount: 12 };
    if (!stream) {
      sendJson(res, 200, { candidates: [{ content: { role: 'model', parts }, finishReason, index: 0 }], usageMetadata, modelVersion: model, responseId });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    parts.forEach((part, i) => {
      const last = i === parts.length - 1;
      const event = {
        candidates: [{ content: { role: 'model', parts: [part] }, index: 0, ...(last ? { finishReason } : {}) }],
        ...(last ? { usageMetadata } : {}),
        modelVersion: model,
        responseId,
      };
      res.write(`data: ${JSON.stringify(event)}\r\n\r\n`);
    });
    res.end();
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseURL: `http://127.0.0.1:${port}`,
    requests,
    behave(fn) {
      behave = fn;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** batchEmbedContents as Google answers it: `{embeddings: [{values}]}`, one per request, in order; no token counts. */
function embed(res: ServerResponse, model: string, body: any): void {
  const requests: Array<{ model?: string; content?: { parts?: Array<{ text?: string }> }; outputDimensionality?: number }> = body?.requests ?? [];
  if (requests.length > EMBED_BATCH_LIMIT) {
    sendError(res, 400, `* BatchEmbedContentsRequest.requests: at most ${EMBED_BATCH_LIMIT} requests can be in one batch`);
    return;
  }
  const stray = requests.findIndex((r) => r.model !== `models/${model}`);
  if (stray >= 0) {
    sendError(res, 400, `* BatchEmbedContentsRequest.requests[${stray}].model: the model must be models/${model}, as in the URL`);
    return;
  }
  const embeddings = requests.map((r) => ({ values: fakeGeminiVector((r.content?.parts ?? []).map((p) => p.text ?? '').join(''), r.outputDimensionality) }));
  sendJson(res, 200, { embeddings });
}

/** A non-2xx answer in Google's error shape; `retryDelay` ("7s") adds a RetryInfo detail. */
function sendError(res: ServerResponse, status: number, message: string, retryDelay?: string, headers?: Record<string, string>): void {
  const details = retryDelay ? [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay }] : undefined;
  sendJson(res, status, { error: { code: status, message, status: STATUS_NAMES[status] ?? 'UNKNOWN', ...(details ? { details } : {}) } }, headers);
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function lastUserText(body: unknown): string {
  const contents = (body as { contents?: Array<{ role?: string; parts?: Array<{ text?: string }> }> })?.contents ?? [];
  for (let i = contents.length - 1; i >= 0; i--) {
    if (contents[i].role === 'user') return (contents[i].parts ?? []).map((p) => p.text ?? '').join('');
  }
  return '';
}
