// A local stand-in for the Amazon Bedrock runtime's Converse and ConverseStream APIs, and
// InvokeModel as Amazon Titan Text Embeddings V2 answers it, speaking their wire format
// over real HTTP for the bedrock provider's tests: JSON for Converse and InvokeModel, AWS
// event-stream binary frames for ConverseStream (encoded by the AWS SDK's own codec,
// @smithy/core's EventStreamCodec, not by hand), and errors as restJson1 sends them (the
// status, x-amzn-errortype and a JSON message). It speaks HTTP/2, as the runtime does and
// as the SDK's client asks for by default (cleartext here). Requests are recorded, and the
// most InvokeModel calls open at once is kept (peakInvocations).
import { createServer, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { EventStreamCodec } from '@smithy/core/event-streams';

export interface BedrockUsage {
  inputTokens: number;
  outputTokens: number;
  totalTokens?: number;
  cacheReadInputTokens?: number;
  cacheWriteInputTokens?: number;
}

export type BedrockBehaviour =
  | {
      /** InvokeModel: Titan's answer for the body's inputText (fakeTitanVector, a token a character); the fields below are Converse's. */
      kind: 'reply';
      /** The assistant's content blocks; defaults to one text block, `echo: <last user text>`. */
      content?: Array<Record<string, unknown>>;
      stopReason?: string;
      usage?: BedrockUsage;
      /** Wait before answering. */
      delayMs?: number;
    }
  | { kind: 'status'; status: number; errorType: string; message?: string; headers?: Record<string, string> }
  /** Streams: messageStart and one text delta, then an exception frame (as Bedrock sends when throttled mid-stream). */
  | { kind: 'exception-mid-stream'; exceptionType: string; message?: string }
  /** A 200 with this JSON body, whatever it is. */
  | { kind: 'raw'; body: unknown };

export interface FakeBedrockRequest {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  /** The model id from the path, decoded. */
  modelId: string;
}

export interface FakeBedrock {
  endpoint: string;
  requests: FakeBedrockRequest[];
  /** The most InvokeModel calls that were open at once since the last reset. */
  peakInvocations(): number;
  resetPeakInvocations(): void;
  behave(fn: (body: any) => BedrockBehaviour): void;
  close(): Promise<void>;
}

/** The output lengths Titan Text Embeddings V2 can make. */
const TITAN_DIMENSIONS = [256, 512, 1024];

/**
 * The vector fake-bedrock's Titan gives a text, `dimensions` long (Titan's default 1024):
 * it depends on the text, so a test sees each vector in its input's place, and its values
 * are exact in float32, so a vector survives base64 unchanged.
 */
export function fakeTitanVector(text: string, dimensions = 1024): number[] {
  return Array.from({ length: dimensions }, (_, j) => (text.charCodeAt(j % text.length) + (j % 16)) / 256);
}

const codec = new EventStreamCodec(
  (bytes) => Buffer.from(bytes).toString('utf8'),
  (text) => new Uint8Array(Buffer.from(text, 'utf8')),
);

function frame(messageType: 'event' | 'exception', type: string, payload: unknown): Uint8Array {
  const typeHeader = messageType === 'event' ? ':event-type' : ':exception-type';
  return codec.encode({
    headers: {
      ':message-type': { type: 'string', value: messageType },
      [typeHeader]: { type: 'string', value: type },
      ':content-type': { type: 'string', value: 'application/json' },
    },
    body: new Uint8Array(Buffer.from(JSON.stringify(payload), 'utf8')),
  });
}

export async function startFakeBedrock(): Promise<FakeBedrock> {
  let behave: (body: any) => BedrockBehaviour = () => ({ kind: 'reply' });
  const requests: FakeBedrockRequest[] = [];
  const sessions = new Set<Http2Session>();
  let invocations = 0;
  let peakInvocations = 0;

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { message: `fake-bedrock crashed: ${String(err)}` }, { 'x-amzn-errortype': 'InternalServerException' });
      else res.destroy();
    });
  });
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });

  async function handle(req: Http2ServerRequest, res: Http2ServerResponse): Promise<void> {
    let raw = '';
    for await (const chunk of req) raw += String(chunk);
    const path = req.url ?? '/';
    const route = /^\/model\/([^/]+)\/(converse|converse-stream|invoke)$/.exec(path);
    const body: unknown = raw === '' ? undefined : JSON.parse(raw);
    requests.push({ path, headers: { ...req.headers }, body, modelId: route ? decodeURIComponent(route[1]) : '' });
    if (req.method !== 'POST' || !route) {
      sendJson(res, 404, { message: `no route ${req.method} ${path}` }, { 'x-amzn-errortype': 'UnknownOperationException' });
      return;
    }
    if (route[2] === 'invoke') {
      invocations++;
      peakInvocations = Math.max(peakInvocations, invocations);
      try {
        await invoke(res, behave(body), body);
      } finally {
        invocations--;
      }
      return;
    }
    const plan = behave(body);
    if (plan.kind === 'status') {
      sendJson(res, plan.status, { message: plan.message ?? `fake-bedrock says ${plan.status}` }, { 'x-amzn-errortype': plan.errorType, ...plan.headers });
      return;
    }
    if (plan.kind === 'raw') {
      sendJson(res, 200, plan.body);
      return;
    }
    const stream = route[2] === 'converse-stream';
    if (plan.kind === 'exception-mid-stream') {
      res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': 'req-stream-fail' });
      res.write(frame('event', 'messageStart', { role: 'assistant' }));
      res.write(frame('event', 'contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'partial ' } }));
      res.end(frame('exception', plan.exceptionType, { message: plan.message ?? 'failed mid-stream' }));
      return;
    }
    const content = plan.content ?? [{ text: `echo: ${lastUserText(body)}` }];
    const stopReason = plan.stopReason ?? (content.some((b) => b.toolUse) ? 'tool_use' : 'end_turn');
    const usage = plan.usage ?? { inputTokens: 9, outputTokens: 4 };
    const withTotal = {
      ...usage,
      totalTokens: usage.totalTokens ?? usage.inputTokens + usage.outputTokens + (usage.cacheReadInputTokens ?? 0) + (usage.cacheWriteInputTokens ?? 0),
    };
    if (!stream) {
      sendJson(
        res,
        200,
        { output: { message: { role: 'assistant', content } }, stopReason, usage: withTotal, metrics: { latencyMs: 1 } },
        { 'x-amzn-requestid': 'req-1' },
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': 'req-stream-1' });
    res.write(frame('event', 'messageStart', { role: 'assistant' }));
    content.forEach((block, index) => {
      const use = block.toolUse as { toolUseId: string; name: string; input: unknown } | undefined;
      if (use) {
        res.write(frame('event', 'contentBlockStart', { contentBlockIndex: index, start: { toolUse: { toolUseId: use.toolUseId, name: use.name } } }));
        const json = JSON.stringify(use.input);
        const half = Math.ceil(json.length / 2);
        for (const piece of [json.slice(0, half), json.slice(half)]) {
          res.write(frame('event', 'contentBlockDelta', { contentBlockIndex: index, delta: { toolUse: { input: piece } } }));
        }
      } else {
        for (const word of String(block.text).match(/\S+\s*|\s+/g) ?? ['']) {
          res.write(frame('event', 'contentBlockDelta', { contentBlockIndex: index, delta: { text: word } }));
        }
      }
      res.write(frame('event', 'contentBlockStop', { contentBlockIndex: index }));
    });
    res.write(frame('event', 'messageStop', { stopReason }));
    res.end(frame('event', 'metadata', { usage: withTotal, metrics: { latencyMs: 1 } }));
  }

  /** InvokeModel as Titan Text Embeddings V2 answers it, refusing a body Titan would refuse with its ValidationException. */
  async function invoke(res: Http2ServerResponse, plan: BedrockBehaviour, body: any): Promise<void> {
    if (plan.kind === 'reply' && plan.delayMs) await new Promise((resolve) => setTimeout(resolve, plan.delayMs));
    if (plan.kind === 'status') {
      sendJson(res, plan.status, { message: plan.message ?? `fake-bedrock says ${plan.status}` }, { 'x-amzn-errortype': plan.errorType, ...plan.headers });
      return;
    }
    if (plan.kind === 'raw') {
      sendJson(res, 200, plan.body);
      return;
    }
    const invalid =
      typeof body?.inputText !== 'string' || body.inputText === ''
        ? 'Malformed input request: #/inputText: expected minLength: 1'
        : body.dimensions !== undefined && !TITAN_DIMENSIONS.includes(body.dimensions)
          ? `Malformed input request: #/dimensions: ${body.dimensions} is not a valid enum value`
          : undefined;
    if (invalid) {
      sendJson(res, 400, { message: invalid }, { 'x-amzn-errortype': 'ValidationException' });
      return;
    }
    const embedding = fakeTitanVector(body.inputText, body.dimensions);
    sendJson(res, 200, { embedding, embeddingsByType: { float: embedding }, inputTextTokenCount: body.inputText.length }, { 'x-amzn-requestid': 'req-invoke' });
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    peakInvocations: () => peakInvocations,
    resetPeakInvocations() {
      peakInvocations = 0;
    },
    behave(fn) {
      behave = fn;
    },
    async close() {
      for (const session of sessions) session.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function sendJson(res: Http2ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function lastUserText(body: unknown): string {
  const messages = (body as { messages?: Array<{ role?: string; content?: Array<{ text?: string }> }> })?.messages ?? [];
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i].role === 'user') return (messages[i].content ?? []).map((b) => b.text ?? '').join('');
  }
  return '';
}
