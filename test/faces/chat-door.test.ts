// One front door for chat (src/faces/openai-chat/handler.ts, chatDoor): every spelling of
// POST /v1/chat/completions that express would route there is served by the same door,
// key check included; other methods and paths are not.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { simulatorPolicy, startTestGateway, type TestGateway } from '../support/gateway.ts';

const KEY = 'tg-door-key-0123456789abcdef';
const keyed = simulatorPolicy({ extra: `server:\n  auth:\n    keys:\n      - { name: door, key: ${KEY}, routes: '*' }\n` });
const body = JSON.stringify({ model: 'support', messages: [{ role: 'user', content: 'hi' }] });

describe('the chat face has one door', () => {
  let tg: TestGateway;
  before(async () => {
    tg = await startTestGateway(keyed);
  });
  after(async () => {
    await tg.close();
  });

  for (const path of ['/v1/chat/completions', '/v1/chat/completions/', '/V1/Chat/Completions', '/v1/chat/completions?x=1', '/v1/chat/completions/?x=1']) {
    test(`POST ${path} is answered by the chat door, with the decision headers`, async () => {
      const res = await fetch(`${tg.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('x-tiergate-decision-id') ?? '', /^tg-/);
      assert.equal(((await res.json()) as { object: string }).object, 'chat.completion');
    });
  }

  test('every spelling checks the key the same way', async () => {
    for (const path of ['/v1/chat/completions', '/V1/chat/completions/']) {
      const res = await fetch(`${tg.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      assert.equal(res.status, 401, path);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="tiergate"');
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'TG_ERR_AUTH_MISSING');
    }
  });

  test('other methods and longer paths are not chat', async () => {
    for (const [method, path] of [
      ['GET', '/v1/chat/completions'],
      ['POST', '/v1/chat/completions//'],
      ['POST', '/v1/chat/completionsx'],
    ]) {
      const res = await fetch(`${tg.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: method === 'GET' ? undefined : body,
      });
      assert.equal(res.status, 404, `${method} ${path}`);
    }
  });
});
