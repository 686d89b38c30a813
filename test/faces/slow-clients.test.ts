// Clients that hold the gateway's connections: a body that stops half-way (a slow or
// hostile client) is cut at server.request_timeout_ms with 408, while answers that take
// far longer than that, JSON or streamed, arrive whole; connections beyond
// server.max_connections are refused with 503 and closed. Over real HTTP: raw sockets for
// what no client library does on purpose, the openai SDK for the answers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { simulatorPolicy, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { drain } from '../support/http.ts';
import { adminReload } from '../support/reload.ts';
import { rawConnection, rawRequest, unfinishedPost, type RawConnection } from '../support/raw-http.ts';
import { waitFor } from '../support/wait.ts';

const REQUEST_TIMEOUT_MS = 300;
const HELD_CLIENTS = 20;
const RELOADED_TIMEOUT_MS = 500;

/** A GET /healthz on a kept-alive connection: once answered, the server holds the connection. */
const HEALTH_CHECK = rawRequest('GET', '/healthz');

function assertApiHeaders(headers: { get(name: string): string | null | undefined }, what: string): void {
  assert.equal(headers.get('x-content-type-options'), 'nosniff', `${what}: x-content-type-options`);
  assert.equal(headers.get('cache-control'), 'no-store', `${what}: cache-control`);
}
const rawHeaders = (headers: Record<string, string>) => ({ get: (name: string) => headers[name] });

describe('server.request_timeout_ms', () => {
  let tg: TestGateway;
  // The simulator in real time: every answer takes several times the request timeout.
  before(async () => {
    tg = await startTestGateway(simulatorPolicy({ timeScale: 1, extra: `server: { request_timeout_ms: ${REQUEST_TIMEOUT_MS} }\n` }));
  });
  after(() => tg.close());

  test('bodies that stop half-way get 408 TG_ERR_REQUEST_TIMEOUT and their connections close; /healthz answers meanwhile', async () => {
    const held: RawConnection[] = [];
    for (let i = 0; i < HELD_CLIENTS; i++) held.push(await unfinishedPost(tg.url, i % 2 ? '/v1/chat/completions' : '/v1/messages'));
    const health = await fetch(`${tg.url}/healthz`);
    assert.equal(health.status, 200, 'the gateway answers others while the bodies drip');
    for (const [i, connection] of held.entries()) {
      const answer = await connection.answer;
      assert.equal(answer.status, 408, `client ${i}: ${answer.body}`);
      const { error } = JSON.parse(answer.body) as { error: { code: string; message: string } };
      assert.equal(error.code, 'TG_ERR_REQUEST_TIMEOUT');
      assert.match(error.message, new RegExp(`${REQUEST_TIMEOUT_MS} ms \\(server.request_timeout_ms\\)`));
      assert.equal(answer.headers.connection, 'close');
      assertApiHeaders(rawHeaders(answer.headers), `client ${i}'s 408`);
      await waitFor(`client ${i}'s connection to be closed`, () => connection.isClosed(), 5000);
    }
    assert.equal((await fetch(`${tg.url}/healthz`)).status, 200);
  });

  test('a whole request is not cut, however long its answer takes: JSON and streamed answers arrive whole', async () => {
    const client = new OpenAI({ baseURL: tg.baseURL, apiKey: 'unused', maxRetries: 0, timeout: 20_000 });
    const ask = { model: 'support', messages: [{ role: 'user' as const, content: 'Explain step by step why the sky is blue, in detail' }] };
    const startedAt = performance.now();
    const [json, streamed] = await Promise.all([
      client.chat.completions.create(ask).withResponse(),
      client.chat.completions
        .create({ ...ask, stream: true })
        .withResponse()
        .then(async ({ data, response }) => ({ response, ...(await drain(data)) })),
    ]);
    const tookMs = performance.now() - startedAt;
    assert.ok(tookMs > 2 * REQUEST_TIMEOUT_MS, `the answers outlast the request timeout (${tookMs.toFixed(0)} ms), or this proves nothing`);
    assert.ok((json.data.choices[0].message.content ?? '').length > 20, 'a whole JSON answer');
    assertApiHeaders(json.response.headers, 'a JSON answer');
    assert.equal(streamed.error, undefined, `the stream ended without an error: ${String(streamed.error)}`);
    assert.equal(streamed.finish, 'stop');
    assert.ok(streamed.text.length > 20, 'a whole streamed answer');
    assertApiHeaders(streamed.response.headers, 'a stream');
  });

  test('a reload changes the timeout', async () => {
    tg.writePolicy(simulatorPolicy({ timeScale: 1, extra: `server: { request_timeout_ms: ${RELOADED_TIMEOUT_MS} }\n` }));
    assert.equal((await adminReload(tg.url)).http, 200);
    assert.equal(tg.gateway.server.requestTimeout, RELOADED_TIMEOUT_MS, 'the server times requests by the reloaded policy');
    const answer = await (await unfinishedPost(tg.url, '/v1/chat/completions')).answer;
    assert.equal(answer.status, 408);
    assert.match((JSON.parse(answer.body) as { error: { message: string } }).error.message, new RegExp(`within ${RELOADED_TIMEOUT_MS} ms`));
  });

  test('the default is 60 s, enforced by the server (no longer 0, which meant never)', async () => {
    const plain = await startTestGateway(simulatorPolicy());
    try {
      assert.equal(plain.gateway.manager.runtime.server.requestTimeoutMs, 60_000);
      assert.equal(plain.gateway.server.requestTimeout, 60_000);
    } finally {
      await plain.close();
    }
  });
});

describe('server.max_connections', () => {
  const MAX = 3;
  let tg: TestGateway;
  before(async () => {
    tg = await startTestGateway(simulatorPolicy({ extra: `server: { max_connections: ${MAX} }\n` }));
  });
  after(() => tg.close());

  test('a connection beyond the limit gets 503 TG_ERR_SERVER_BUSY and is closed; once one closes, a new one is served', async () => {
    const held: RawConnection[] = [];
    for (let i = 0; i < MAX; i++) {
      const connection = await rawConnection(tg.url, HEALTH_CHECK);
      assert.equal((await connection.answer).status, 200, `connection ${i} is served`);
      held.push(connection);
    }
    const refused = await rawConnection(tg.url, HEALTH_CHECK);
    const answer = await refused.answer;
    assert.equal(answer.status, 503, answer.body);
    assert.equal((JSON.parse(answer.body) as { error: { code: string } }).error.code, 'TG_ERR_SERVER_BUSY');
    assert.equal(answer.headers.connection, 'close');
    assert.equal(answer.headers['retry-after'], '1');
    assertApiHeaders(rawHeaders(answer.headers), 'the refusal');
    await waitFor('the refused connection to be closed', () => refused.isClosed(), 5000);

    held.pop()!.socket.destroy();
    const served = await waitFor(
      'a new connection to be served',
      async () => {
        const connection = await rawConnection(tg.url, HEALTH_CHECK);
        const status = (await connection.answer).status;
        connection.socket.destroy();
        return status === 200 ? status : null;
      },
      5000,
    );
    assert.equal(served, 200);
    for (const connection of held) connection.socket.destroy();
  });

  test('a reload changes the limit for new connections', async () => {
    const reloaded = await startTestGateway(simulatorPolicy({ extra: `server: { max_connections: ${MAX} }\n` }));
    try {
      reloaded.writePolicy(simulatorPolicy({ extra: 'server: { max_connections: 1 }\n' }));
      // The reload's own connection stays open: it is the one connection the new limit allows.
      const reloader = await rawConnection(reloaded.url, rawRequest('POST', '/admin/reload'));
      assert.equal((await reloader.answer).status, 200);
      const answer = await (await rawConnection(reloaded.url, HEALTH_CHECK)).answer;
      assert.equal(answer.status, 503);
      assert.match((JSON.parse(answer.body) as { error: { message: string } }).error.message, /limit of 1 open connections/);
      reloader.socket.destroy();
    } finally {
      await reloaded.close();
    }
  });

  test('the default allows 1000 connections', async () => {
    const plain = await startTestGateway(simulatorPolicy());
    try {
      assert.equal(plain.gateway.manager.runtime.server.maxConnections, 1000);
    } finally {
      await plain.close();
    }
  });
});

describe('API answers are neither sniffed nor stored', () => {
  test('x-content-type-options: nosniff and cache-control: no-store on answers, errors and other endpoints', async () => {
    const tg = await startTestGateway(simulatorPolicy());
    try {
      const chat = (body: string) => fetch(`${tg.baseURL}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      const answers: Array<[string, Response]> = [
        ['a chat answer', await chat(JSON.stringify({ model: 'support', messages: [{ role: 'user', content: 'hi' }] }))],
        ['a chat error', await chat('{not json')],
        [
          'a Messages answer',
          await fetch(`${tg.baseURL}/messages`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'support', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] }),
          }),
        ],
        ['GET /v1/models', await fetch(`${tg.baseURL}/models`)],
        ['a 404', await fetch(`${tg.url}/v1/nothing-here`)],
        ['GET /admin/status', await fetch(`${tg.url}/admin/status`)],
      ];
      for (const [what, res] of answers) {
        await res.arrayBuffer();
        assert.ok(res.status < 500, `${what}: ${res.status}`);
        assertApiHeaders(res.headers, what);
      }
      assert.equal(answers[0][1].status, 200);
      assert.equal(answers[1][1].status, 400);
      assert.equal(answers[2][1].status, 200);
    } finally {
      await tg.close();
    }
  });
});
