// The Anthropic face (src/faces/anthropic-messages/router.ts) calls the pipeline itself:
// the caller is authenticated before the body is read, a request is one decision line
// with the key's name (no second request over loopback; a body it cannot read included),
// and the answer carries the same x-tiergate-* headers as a chat answer.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
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
});
