// A client that stops reading a stream slows the upstream down: the gateway stops pulling
// from the upstream while the client's socket is full, instead of holding the rest of a
// long generation in memory. Real HTTP all the way: a local upstream that streams far
// more than the sockets can hold (and honours its own backpressure, counting what it got
// out), tiergate with the openai_compatible provider, and a node:http client that pauses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { startTestGateway } from '../support/gateway.ts';

const EVENTS = 15_000;
const PIECE = 'x'.repeat(4096);
const TOTAL_BYTES = EVENTS * (PIECE.length + 150);

function event(data: unknown): string {
  return `data: ${JSON.stringify(data)}\n\n`;
}

test('a client that stops reading a long stream stops the upstream too; once it reads again, it gets every event', { timeout: 60_000 }, async () => {
  let sent = 0;
  let finished = false;
  const upstream = http.createServer((req, res) => {
    req.resume();
    req.on('end', async () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (let i = 0; i < EVENTS; i++) {
        const text = event({
          id: 'c1',
          object: 'chat.completion.chunk',
          created: 1,
          model: 'up',
          choices: [{ index: 0, delta: { content: PIECE }, finish_reason: null }],
        });
        sent += text.length;
        if (!res.write(text)) await once(res, 'drain');
        if (res.destroyed) return;
      }
      res.write(event({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'up', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }));
      res.write(
        event({
          id: 'c1',
          object: 'chat.completion.chunk',
          created: 1,
          model: 'up',
          choices: [],
          usage: { prompt_tokens: 5, completion_tokens: EVENTS, total_tokens: EVENTS + 5 },
        }),
      );
      finished = true;
      res.end('data: [DONE]\n\n');
    });
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const port = (upstream.address() as AddressInfo).port;
  const tg = await startTestGateway(`version: 1
providers:
  local: { plugin: openai_compatible, base_url: "http://127.0.0.1:${port}/v1" }
models:
  long-model: { provider: local, upstream: up, price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 20000 }
tiers:
  - { name: only, models: [long-model] }
routes:
  chat:
    router: { plugin: rules, rules: [] }
    default: only
analytics:
  decision_log: { file: decisions.jsonl }
`);
  try {
    const body = JSON.stringify({ model: 'chat', stream: true, messages: [{ role: 'user', content: 'write a very long answer' }] });
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request(`${tg.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, resolve);
      req.on('error', reject);
      req.end(body);
    });
    assert.equal(response.statusCode, 200);
    // Take the first bytes, then stop reading.
    const parts: string[] = [];
    response.setEncoding('utf8');
    parts.push(String(await new Promise((resolve) => response.once('data', resolve))));
    response.pause();
    // Let every buffer on the way fill up.
    let before = -1;
    for (let i = 0; i < 40 && sent !== before; i++) {
      before = sent;
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    assert.equal(finished, false, 'the upstream could not finish while the client was not reading');
    assert.ok(
      sent < TOTAL_BYTES * 0.6,
      `the upstream got ${(sent / 1e6).toFixed(1)} MB of ${(TOTAL_BYTES / 1e6).toFixed(1)} MB out while the client read nothing`,
    );

    // Reading again: the rest arrives, whole.
    response.on('data', (text: string) => parts.push(text));
    response.resume();
    await once(response, 'end');
    const text = parts.join('');
    assert.ok(finished, 'the upstream finished');
    assert.ok(text.endsWith('data: [DONE]\n\n'), 'the stream ends with [DONE]');
    const events = text.split('\n\n').filter((e) => e.startsWith('data: {'));
    const content = events
      .map((e) => JSON.parse(e.slice(6)) as { choices: Array<{ delta: { content?: string } }> })
      .reduce((n, chunk) => n + (chunk.choices[0]?.delta.content?.length ?? 0), 0);
    assert.equal(content, EVENTS * PIECE.length, 'every event arrived');
    const [line] = await tg.waitForDecisions(1);
    assert.equal(line.status, 'ok');
    assert.equal(line.usage?.completion_tokens, EVENTS);
  } finally {
    await tg.close();
    upstream.closeAllConnections();
    upstream.close();
  }
});
