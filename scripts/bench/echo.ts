// What the HTTP layer alone costs: a server that parses the chat request's JSON body
// and answers a fixed chat.completion, with no upstream: `http` on node:http alone, or
// `express` the way src/faces/server.ts and src/faces/openai-chat/handler.ts do it (express.json with the
// runtime's options, res.status().json()).
//
//   node --import tsx scripts/bench/echo.ts PORT http|express
import http from 'node:http';
import express from 'express';

const ANSWER = {
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1_700_000_000,
  model: 'bench-model',
  choices: [
    { index: 0, message: { role: 'assistant', content: 'Your parcel is in transit and should arrive tomorrow.' }, logprobs: null, finish_reason: 'stop' },
  ],
  usage: { prompt_tokens: 12, completion_tokens: 9, total_tokens: 21 },
};

function modelOf(body: unknown): string {
  return typeof body === 'object' && body !== null && typeof (body as { model?: unknown }).model === 'string' ? (body as { model: string }).model : '';
}

export function createEcho(kind: 'http' | 'express'): http.Server {
  if (kind === 'express') {
    const app = express();
    app.disable('x-powered-by');
    app.set('etag', false);
    const parseJson = express.json({ limit: '1mb', type: () => true, strict: false });
    app.post('/v1/chat/completions', (req, res) => {
      parseJson(req, res, () => {
        res.setHeader('x-echo-model', modelOf(req.body));
        res.status(200).json(ANSWER);
      });
    });
    return http.createServer(app);
  }
  return http.createServer((req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(404).end();
      return;
    }
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const body: unknown = JSON.parse(Buffer.concat(parts).toString('utf8'));
      const text = JSON.stringify(ANSWER);
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'x-echo-model': modelOf(body) });
      res.end(text);
    });
  });
}

if (import.meta.filename === process.argv[1]) {
  const port = Number(process.argv[2]);
  createEcho(process.argv[3] === 'express' ? 'express' : 'http').listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
}
