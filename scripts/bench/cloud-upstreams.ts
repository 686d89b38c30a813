// Minimal, fast upstreams for the soak's cloud providers, in the wire formats their
// official SDKs speak: Google's Gemini API (generateContent, and streamGenerateContent as
// SSE) over HTTP/1.1, and Amazon Bedrock's Converse and ConverseStream (AWS event-stream
// binary frames, encoded by the AWS SDK's own codec) over cleartext HTTP/2, as the
// Bedrock runtime client asks for. Azure OpenAI needs no server of its own: it is
// OpenAI's wire format under /openai/deployments/…, which scripts/bench/upstream.ts
// serves. Every response is prebuilt and nothing is recorded, so 300,000 requests cost
// the soak's client process little CPU and no memory; the test suite's fakes
// (test/support/fake-gemini.ts, fake-bedrock.ts) are the ones that check requests.
import http from 'node:http';
import http2 from 'node:http2';
import { EventStreamCodec } from '@smithy/core/event-streams';

const TEXT = ['Your parcel ', 'is in transit ', 'and arrives tomorrow.'];

const GEMINI_USAGE = { promptTokenCount: 12, candidatesTokenCount: 9, totalTokenCount: 21 };
const GEMINI_REPLY = Buffer.from(
  JSON.stringify({
    candidates: [{ content: { role: 'model', parts: [{ text: TEXT.join('') }] }, finishReason: 'STOP', index: 0 }],
    usageMetadata: GEMINI_USAGE,
    modelVersion: 'bench-gemini',
    responseId: 'resp-bench',
  }),
);
/** One SSE event per text piece; the last carries the finish reason and the usage, as Gemini sends them. */
const GEMINI_EVENTS = TEXT.map((text, i) => {
  const last = i === TEXT.length - 1;
  const event = {
    candidates: [{ content: { role: 'model', parts: [{ text }] }, index: 0, ...(last ? { finishReason: 'STOP' } : {}) }],
    ...(last ? { usageMetadata: GEMINI_USAGE } : {}),
    modelVersion: 'bench-gemini',
    responseId: 'resp-bench',
  };
  return Buffer.from(`data: ${JSON.stringify(event)}\r\n\r\n`);
});
const GEMINI_ROUTE = /^\/v1beta\/models\/[^/:]+:(generateContent|streamGenerateContent)(\?alt=sse)?$/;

/** Gemini's API on POST /v1beta/models/<model>:generateContent and :streamGenerateContent?alt=sse. */
export function createGeminiUpstream(): http.Server {
  const server = http.createServer((req, res) => {
    const route = req.method === 'POST' ? GEMINI_ROUTE.exec(req.url ?? '') : null;
    req.resume();
    req.on('end', () => {
      if (!route) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":404,"message":"not found","status":"NOT_FOUND"}}');
        return;
      }
      if (route[1] === 'generateContent') {
        res.writeHead(200, { 'content-type': 'application/json; charset=UTF-8', 'content-length': GEMINI_REPLY.length });
        res.end(GEMINI_REPLY);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const event of GEMINI_EVENTS) res.write(event);
      res.end();
    });
  });
  server.keepAliveTimeout = 65_000;
  return server;
}

const codec = new EventStreamCodec(
  (bytes) => Buffer.from(bytes).toString('utf8'),
  (text) => new Uint8Array(Buffer.from(text, 'utf8')),
);
const bedrockEvent = (type: string, payload: unknown): Uint8Array =>
  codec.encode({
    headers: {
      ':message-type': { type: 'string', value: 'event' },
      ':event-type': { type: 'string', value: type },
      ':content-type': { type: 'string', value: 'application/json' },
    },
    body: new Uint8Array(Buffer.from(JSON.stringify(payload), 'utf8')),
  });

const BEDROCK_USAGE = { inputTokens: 12, outputTokens: 9, totalTokens: 21 };
const BEDROCK_REPLY = Buffer.from(
  JSON.stringify({
    output: { message: { role: 'assistant', content: [{ text: TEXT.join('') }] } },
    stopReason: 'end_turn',
    usage: BEDROCK_USAGE,
    metrics: { latencyMs: 1 },
  }),
);
const BEDROCK_EVENTS = [
  bedrockEvent('messageStart', { role: 'assistant' }),
  ...TEXT.map((text) => bedrockEvent('contentBlockDelta', { contentBlockIndex: 0, delta: { text } })),
  bedrockEvent('contentBlockStop', { contentBlockIndex: 0 }),
  bedrockEvent('messageStop', { stopReason: 'end_turn' }),
  bedrockEvent('metadata', { usage: BEDROCK_USAGE, metrics: { latencyMs: 1 } }),
];
const BEDROCK_ROUTE = /^\/model\/[^/]+\/(converse|converse-stream)$/;

/** Bedrock's runtime on POST /model/<id>/converse and /model/<id>/converse-stream, over h2c. */
export function createBedrockUpstream(): http2.Http2Server {
  const server = http2.createServer((req, res) => {
    const route = req.method === 'POST' ? BEDROCK_ROUTE.exec(req.url ?? '') : null;
    req.resume();
    req.on('end', () => {
      if (!route) {
        res.writeHead(404, { 'content-type': 'application/json', 'x-amzn-errortype': 'UnknownOperationException' }).end('{"message":"not found"}');
        return;
      }
      if (route[1] === 'converse') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': BEDROCK_REPLY.length, 'x-amzn-requestid': 'req-bench' });
        res.end(BEDROCK_REPLY);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': 'req-bench' });
      for (const event of BEDROCK_EVENTS) res.write(event);
      res.end();
    });
  });
  return server;
}
