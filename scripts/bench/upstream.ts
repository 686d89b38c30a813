// A minimal, fast upstream that speaks OpenAI's chat completions wire format: a fixed
// chat.completion for JSON requests, and a short SSE stream (role, three content
// deltas, finish, usage when asked, [DONE]) for `stream: true`. It speaks Anthropic's
// Messages API the same way on POST /v1/messages (a fixed message, or the named SSE
// events), for the soak's anthropic provider, and OpenAI's format under Azure's
// /openai/deployments/<deployment>/… paths for its azure_openai provider. Every response is prebuilt, so the
// upstream costs as little CPU as a Node HTTP server can.
//
//   node --import tsx scripts/bench/upstream.ts PORT
import http from 'node:http';

const CREATED = 1_700_000_000;
const USAGE = { prompt_tokens: 12, completion_tokens: 9, total_tokens: 21 };

const COMPLETION = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: CREATED,
    model: 'bench-model',
    choices: [
      { index: 0, message: { role: 'assistant', content: 'Your parcel is in transit and should arrive tomorrow.' }, logprobs: null, finish_reason: 'stop' },
    ],
    usage: USAGE,
  }),
);

function chunk(delta: Record<string, unknown>, finish: string | null, usage?: typeof USAGE): string {
  const choices = usage ? [] : [{ index: 0, delta, logprobs: null, finish_reason: finish }];
  return `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: CREATED, model: 'bench-model', choices, ...(usage ? { usage } : {}) })}\n\n`;
}

/** The stream's events, each written on its own (a real upstream sends them as they are generated). */
const EVENTS = [
  chunk({ role: 'assistant', content: '' }, null),
  chunk({ content: 'Your parcel ' }, null),
  chunk({ content: 'is in transit ' }, null),
  chunk({ content: 'and arrives tomorrow.' }, null),
  chunk({}, 'stop'),
].map((e) => Buffer.from(e));
const USAGE_EVENT = Buffer.from(chunk({}, null, USAGE));
const DONE = Buffer.from('data: [DONE]\n\n');

const ANTHROPIC_MESSAGE = Buffer.from(
  JSON.stringify({
    id: 'msg_bench',
    type: 'message',
    role: 'assistant',
    model: 'bench-model',
    content: [{ type: 'text', text: 'Your parcel is in transit and should arrive tomorrow.' }],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: 12, output_tokens: 9 },
  }),
);

const anthropicEvent = (type: string, data: Record<string, unknown>) => Buffer.from(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
const ANTHROPIC_EVENTS = [
  anthropicEvent('message_start', {
    message: {
      id: 'msg_bench',
      type: 'message',
      role: 'assistant',
      model: 'bench-model',
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 12, output_tokens: 1 },
    },
  }),
  anthropicEvent('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
  ...['Your parcel ', 'is in transit ', 'and arrives tomorrow.'].map((text) =>
    anthropicEvent('content_block_delta', { index: 0, delta: { type: 'text_delta', text } }),
  ),
  anthropicEvent('content_block_stop', { index: 0 }),
  anthropicEvent('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 9 } }),
  anthropicEvent('message_stop', {}),
];

const STREAM_PATTERN = /"stream"\s*:\s*true/;
const USAGE_PATTERN = /"include_usage"\s*:\s*true/;

export function createUpstream(): http.Server {
  const server = http.createServer((req, res) => {
    // Azure OpenAI's client puts the API version in the query: /openai/deployments/<d>/chat/completions?api-version=…
    const path = req.url?.split('?', 1)[0] ?? '';
    const anthropic = path.endsWith('/v1/messages');
    if (req.method !== 'POST' || !(anthropic || path.endsWith('/chat/completions'))) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}');
      return;
    }
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const body = Buffer.concat(parts).toString('utf8');
      if (!STREAM_PATTERN.test(body)) {
        const answer = anthropic ? ANTHROPIC_MESSAGE : COMPLETION;
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length });
        res.end(answer);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      if (anthropic) {
        for (const event of ANTHROPIC_EVENTS) res.write(event);
        res.end();
        return;
      }
      for (const event of EVENTS) res.write(event);
      if (USAGE_PATTERN.test(body)) res.write(USAGE_EVENT);
      res.end(DONE);
    });
  });
  server.keepAliveTimeout = 65_000;
  return server;
}

if (import.meta.filename === process.argv[1]) {
  const port = Number(process.argv[2]);
  createUpstream().listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
}
