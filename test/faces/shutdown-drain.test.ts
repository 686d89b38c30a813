// The drain of a shutdown (what SIGTERM starts: Gateway.close) for clients on kept-alive
// connections: no request the gateway has received is reset; each is answered, with
// `connection: close`, so that the client sends its next request elsewhere instead of on
// a connection about to close. shutdown.test.ts runs the CLI's SIGTERM itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { simulatorPolicy, startTestGateway } from '../support/gateway.ts';
import { rawConnection, rawRequest } from '../support/raw-http.ts';
import { waitFor } from '../support/wait.ts';

const LOOPS = 8;
const ASK = { model: 'support', messages: [{ role: 'user', content: 'Explain step by step why the sky is blue' }] };

test('a request sent on an idle kept-alive connection as the shutdown begins is answered with connection: close, not reset', async () => {
  const tg = await startTestGateway(simulatorPolicy());
  let closing: Promise<void> | null = null;
  try {
    const connection = await rawConnection(tg.url, rawRequest('GET', '/healthz'));
    const first = await connection.answer;
    assert.equal(first.status, 200);
    assert.equal(first.headers.connection, 'keep-alive', 'before the shutdown the connection is kept alive');
    // The request is in the kernel's buffers, not yet read, when the shutdown begins.
    connection.socket.write(rawRequest('POST', '/v1/chat/completions', ASK));
    closing = tg.gateway.close();
    const second = await connection.nextAnswer();
    assert.equal(second.status, 200, second.body);
    assert.ok((JSON.parse(second.body) as { choices: unknown[] }).choices.length > 0, 'a chat answer');
    assert.equal(second.headers.connection, 'close');
    await waitFor('the gateway to close the connection after the answer', () => connection.isClosed(), 5000);
    await closing;
  } finally {
    await (closing ?? tg.close());
  }
});

interface Outcome {
  sentBeforeClose: boolean;
  status?: number;
  connection?: string;
  error?: string;
}

/** One POST through `agent`; what came back, or the error's code. */
function post(url: string, agent: http.Agent, closeStarted: () => boolean): Promise<Outcome> {
  const sentBeforeClose = !closeStarted();
  return new Promise((resolve) => {
    const body = JSON.stringify(ASK);
    const req = http.request(
      `${url}/v1/chat/completions`,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        res.resume();
        res.once('end', () => resolve({ sentBeforeClose, status: res.statusCode, connection: res.headers.connection }));
        res.once('error', (err: NodeJS.ErrnoException) => resolve({ sentBeforeClose, error: err.code ?? err.message }));
      },
    );
    req.once('error', (err: NodeJS.ErrnoException) => resolve({ sentBeforeClose, error: err.code ?? err.message }));
    req.end(body);
  });
}

test('under load on kept-alive connections: every request received is answered, those in flight with connection: close; new ones are refused, none reset', async () => {
  // In real time: each answer takes a few hundred ms, so every loop has one in flight at the shutdown.
  const tg = await startTestGateway(simulatorPolicy({ timeScale: 1 }));
  const agent = new http.Agent({ keepAlive: true, maxSockets: LOOPS });
  let closing: Promise<void> | null = null;
  try {
    const closeStarted = () => closing !== null;
    const outcomes: Outcome[][] = Array.from({ length: LOOPS }, () => []);
    const loops = outcomes.map(async (mine) => {
      // Until the gateway stops answering: a refused connection, or (the bug) a reset one.
      for (;;) {
        const outcome = await post(tg.url, agent, closeStarted);
        mine.push(outcome);
        if (outcome.error !== undefined || mine.length > 50) return;
      }
    });
    await waitFor(
      'every loop to have been answered once, on a kept-alive connection, and to be waiting again',
      async () => {
        if (!outcomes.every((mine) => mine.length >= 1)) return false;
        const status = (await (await fetch(`${tg.url}/admin/status`)).json()) as { inflight_requests: number };
        return status.inflight_requests === LOOPS;
      },
      15_000,
    );
    closing = tg.gateway.close();
    await Promise.all(loops);
    await closing;

    const all = outcomes.flat();
    for (const [i, mine] of outcomes.entries())
      assert.deepEqual([mine[0].status, mine[0].connection], [200, 'keep-alive'], `loop ${i}: served on a kept-alive connection before the shutdown`);
    const errors = all.filter((o) => o.error !== undefined).map((o) => o.error);
    assert.deepEqual(
      errors.filter((code) => code !== 'ECONNREFUSED'),
      [],
      'a request either reached the gateway and was answered, or found it no longer accepting connections',
    );
    for (const [i, mine] of outcomes.entries()) {
      const inFlight = mine.filter((o) => o.sentBeforeClose).at(-1);
      assert.equal(inFlight?.status, 200, `loop ${i}: its request in flight at the shutdown was answered`);
      assert.equal(inFlight?.connection, 'close', `loop ${i}: the answer during the drain says connection: close`);
      const after = mine.filter((o) => !o.sentBeforeClose);
      assert.ok(after.length > 0 && after.at(-1)!.error === 'ECONNREFUSED', `loop ${i}: its next request was refused a connection`);
      for (const o of after.slice(0, -1)) assert.equal(o.connection, 'close', `loop ${i}: answers during the drain say connection: close`);
    }
  } finally {
    agent.destroy();
    await (closing ?? tg.close());
  }
});
