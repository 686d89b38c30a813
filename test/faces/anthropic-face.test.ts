// The Anthropic face (src/faces/anthropic-messages/router.ts) calls the pipeline itself:
// the caller is authenticated before the body is read, a request is one decision line
// with the key's name (no second request over loopback; a body it cannot read included),
// and the answer carries the same x-tiergate-* headers as a chat answer, whose model it
// names; other methods and paths under /v1/messages are refused in Anthropic's error shape.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { simulatorPolicy, startTestGateway, type TestGateway } from '../support/gateway.ts';

const KEY = 'tg-anthropic-face-key-0123456789';
const keyed = simulatorPolicy({ extra: `server:\n  body_limit: 1kb\n  auth:\n    keys:\n      - { name: face-team, key: ${KEY}, routes: '*' }\n` });
const message = JSON.stringify({ model: 'support', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });

describe('POST /v1/messages', () => {
  let tg: TestGateway;
  before(async () => {
    tg = await startTestGateway(keyed);
  });
  after(async () => {
    await tg.close();
  });

  test('the caller is authenticated before the body is read: no key, no parse error, whatever the body', async () => {
    for (const body of ['{not json', 'x'.repeat(4000), message]) {
      const res = await fetch(`${tg.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      assert.equal(res.status, 401, body.slice(0, 20));
      const answer = (await res.json()) as { type: string; error: { type: string; code: string } };
      assert.equal(answer.type, 'error');
      assert.equal(answer.error.type, 'authentication_error');
      assert.equal(answer.error.code, 'TG_ERR_AUTH_MISSING');
    }
    const wrong = await fetch(`${tg.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': 'not-a-key-of-this-gateway' },
      body: '{not json',
    });
    assert.equal(wrong.status, 401);
    assert.equal(((await wrong.json()) as { error: { code: string } }).error.code, 'TG_ERR_AUTH_INVALID');
  });

  test("with the key (x-api-key), a body the face cannot read is its own 4xx in Anthropic's shape", async () => {
    const bad = await fetch(`${tg.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': KEY }, body: '{not json' });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { type: string; code: string } }).error.code, 'TG_ERR_REQUEST_JSON');
    const big = await fetch(`${tg.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': KEY },
      body: JSON.stringify({ model: 'support', max_tokens: 16, messages: [{ role: 'user', content: 'y'.repeat(4000) }] }),
    });
    assert.equal(big.status, 413);
    assert.equal(((await big.json()) as { error: { type: string } }).error.type, 'request_too_large');
    // Each is a request all the same: one decision line, with the key's name and the code.
    for (const [res, code] of [
      [bad, 'TG_ERR_REQUEST_JSON'],
      [big, 'TG_ERR_REQUEST_TOO_LARGE'],
    ] as const) {
      const line = await tg.waitForDecision(res.headers.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, code);
      assert.equal(line.api_key_name, 'face-team');
    }
  });

  test("one request, one decision line, with the key's name and the decision headers", async () => {
    const before = tg.decisions().length;
    const res = await fetch(`${tg.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: message,
    });
    assert.equal(res.status, 200);
    const id = res.headers.get('x-tiergate-decision-id');
    assert.match(id ?? '', /^tg-/);
    assert.equal(res.headers.get('x-tiergate-route'), 'support');
    assert.equal(res.headers.get('x-tiergate-policy-version'), tg.gateway.manager.runtime.version);
    assert.equal(((await res.json()) as { type: string }).type, 'message');
    const lines = await tg.waitForDecisions(before + 1);
    // Give a second (loopback) line the time to appear, were there one.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const mine = tg.decisions().slice(before);
    assert.equal(mine.length, 1, JSON.stringify(lines.slice(before)));
    assert.equal(mine[0].request_id, id);
    assert.equal(mine[0].api_key_name, 'face-team');
    assert.equal(mine[0].status, 'ok');
  });

  test("other methods and paths under /v1/messages answer in Anthropic's error shape, the caller checked first", async () => {
    const sdk = new Anthropic({ baseURL: tg.url, apiKey: KEY, maxRetries: 0 });
    const tokens = await sdk.messages.countTokens({ model: 'support', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    assert.ok(tokens instanceof Anthropic.NotFoundError, String(tokens));
    assert.deepEqual(tokens.error, {
      type: 'error',
      error: { type: 'not_found_error', message: 'no such endpoint: POST /v1/messages/count_tokens', code: 'TG_ERR_NOT_FOUND' },
    });
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const res = await fetch(`${tg.url}/v1/messages`, { method, headers: { 'x-api-key': KEY } });
      assert.equal(res.status, 404, method);
      assert.deepEqual(await res.json(), {
        type: 'error',
        error: { type: 'not_found_error', message: `no such endpoint: ${method} /v1/messages`, code: 'TG_ERR_NOT_FOUND' },
      });
    }
    const anonymous = await fetch(`${tg.url}/v1/messages`);
    assert.equal(anonymous.status, 401);
    assert.deepEqual(Object.keys((await anonymous.json()) as object).sort(), ['error', 'type']);
  });

  test('the answer and its stream name the model that served, as x-tiergate-model does', async () => {
    const sdk = new Anthropic({ baseURL: tg.url, apiKey: KEY, maxRetries: 0 });
    const lines = tg.decisions().length;
    const { data, response } = await sdk.messages.create({ model: 'support', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    // The simulator policy's support route sends this request to its default, the large tier.
    assert.equal(response.headers.get('x-tiergate-model'), 'large-model');
    assert.equal(data.model, 'large-model');
    const stream = sdk.messages.stream({ model: 'support', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
    let started = '';
    for await (const event of stream) if (event.type === 'message_start') started = event.message.model;
    assert.equal(started, 'large-model');
    await tg.waitForDecisions(lines + 2);
  });
});
