// Upstream failures through the real openai provider plugin, over real HTTP: the openai
// SDK talks to tiergate, tiergate to fake-openai. Each failure of a lone model (status
// codes, hangs past timeout_ms, resets, malformed replies and SSE, broken streams)
// becomes the right catalogue error, JSON or as a stream's error event; a client that
// goes away cancels the upstream call. After the file, the gateway still serves normally
// and no promise rejection went unhandled (a top-level after hook).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { APIError, APIUserAbortError } from 'openai';
import type { TestGateway } from '../support/gateway.ts';
import { apiError } from '../support/http.ts';
import type { FakeOpenAI } from '../support/fake-openai.ts';
import { body, marker, startProviderGateway, streamBody, TIMEOUT_MS, type ProviderGateway } from '../support/provider-gateway.ts';
import { watchUnhandledRejections } from '../support/unhandled.ts';
import { until } from '../support/wait.ts';

const rejections = watchUnhandledRejections();
after(() => rejections.assertNone());

describe('gateway in front of real provider plugins', () => {
  let gateway: ProviderGateway | undefined;
  let openai: FakeOpenAI;
  let tg: TestGateway;
  let client: OpenAI;

  before(async () => {
    gateway = await startProviderGateway();
    ({ openai, tg, client } = gateway);
  });

  after(async () => {
    try {
      await gateway?.assertStillServes();
    } finally {
      await gateway?.close();
    }
  });

  const decisionFor = (mark: string) => gateway!.decisionFor(mark);
  const upstreamRequestFor = (mark: string) => gateway!.upstreamRequestFor(mark);

  describe('upstream failures become catalogue errors', () => {
    test('upstream 500 → 502 TG_ERR_UPSTREAM', async () => {
      openai.behave(() => ({ kind: 'status', status: 500 }));
      const mark = marker();
      const err = await apiError(client.chat.completions.create(body('oa-fast', mark)));
      assert.equal(err.status, 502);
      assert.equal(err.code, 'TG_ERR_UPSTREAM');
      assert.equal(err.type, 'api_error');
      assert.ok(!err.message.includes('test-key'), 'the upstream key never leaks');
      const line = await decisionFor(mark);
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, 'TG_ERR_UPSTREAM');
      assert.equal(line.selected_model, 'oa-fast');
    });

    test('upstream 429 with retry-after → 429 TG_ERR_UPSTREAM_RATE_LIMITED with retry-after', async () => {
      openai.behave(() => ({ kind: 'status', status: 429, headers: { 'retry-after': '2' } }));
      const err = await apiError(client.chat.completions.create(body('oa-fast', marker())));
      assert.ok(err instanceof OpenAI.RateLimitError);
      assert.equal(err.status, 429);
      assert.equal(err.code, 'TG_ERR_UPSTREAM_RATE_LIMITED');
      assert.equal(err.type, 'rate_limit_error');
      assert.equal(err.headers?.get('retry-after'), '2');
    });

    test('upstream 400 → 400 TG_ERR_UPSTREAM_REJECTED (the client can fix it)', async () => {
      openai.behave(() => ({ kind: 'status', status: 400 }));
      const err = await apiError(client.chat.completions.create(body('oa-fast', marker())));
      assert.equal(err.status, 400);
      assert.equal(err.code, 'TG_ERR_UPSTREAM_REJECTED');
    });

    test('an upstream that hangs past timeout_ms → 504 TG_ERR_UPSTREAM_TIMEOUT, and the upstream call is aborted', async () => {
      openai.behave(() => ({ kind: 'hang' }));
      const aborted = openai.abortedCount();
      const mark = marker();
      const started = performance.now();
      const err = await apiError(client.chat.completions.create(body('oa-fast', mark)));
      const elapsed = performance.now() - started;
      assert.equal(err.status, 504);
      assert.equal(err.code, 'TG_ERR_UPSTREAM_TIMEOUT');
      assert.equal(err.type, 'timeout_error');
      assert.ok(elapsed >= TIMEOUT_MS - 50, `the deadline was honoured, not cut short (${elapsed} ms)`);
      assert.ok(elapsed < 3000, `bounded time (${elapsed} ms)`);
      await openai.waitForAborted(aborted + 1);
      assert.equal(upstreamRequestFor(mark).aborted, true);
      const line = await decisionFor(mark);
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, 'TG_ERR_UPSTREAM_TIMEOUT');
    });

    test('a streaming request whose upstream hangs before the first chunk → a clean 504 JSON error', async () => {
      openai.behave(() => ({ kind: 'hang' }));
      const aborted = openai.abortedCount();
      const started = performance.now();
      const err = await apiError(client.chat.completions.create(streamBody('oa-fast', marker())));
      assert.ok(performance.now() - started < 3000);
      assert.equal(err.status, 504);
      assert.equal(err.code, 'TG_ERR_UPSTREAM_TIMEOUT');
      await openai.waitForAborted(aborted + 1);
    });

    test('a stream that stalls between chunks longer than timeout_ms ends with a timeout error event', async () => {
      openai.behave(() => ({ kind: 'reply', content: 'one two three four five six', chunkDelayMs: 1500 }));
      const aborted = openai.abortedCount();
      const mark = marker();
      const started = performance.now();
      const stream = await client.chat.completions.create(streamBody('oa-fast', mark));
      let caught: unknown;
      try {
        for await (const _chunk of stream) {
          // drain
        }
      } catch (err) {
        caught = err;
      }
      assert.ok(performance.now() - started < 3000);
      assert.ok(caught instanceof APIError, `the stream ends with an error, got ${String(caught)}`);
      assert.equal(caught.code, 'TG_ERR_UPSTREAM_TIMEOUT');
      await openai.waitForAborted(aborted + 1);
      const line = await decisionFor(mark);
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, 'TG_ERR_UPSTREAM_TIMEOUT');
    });

    test('a connection reset before any response → 502 TG_ERR_UPSTREAM', async () => {
      openai.behave(() => ({ kind: 'reset' }));
      const err = await apiError(client.chat.completions.create(body('oa-fast', marker())));
      assert.equal(err.status, 502);
      assert.equal(err.code, 'TG_ERR_UPSTREAM');
      const streamed = await apiError(client.chat.completions.create(streamBody('oa-fast', marker())));
      assert.equal(streamed.status, 502);
      assert.equal(streamed.code, 'TG_ERR_UPSTREAM');
    });

    test('a reset halfway through a JSON body → 502', async () => {
      openai.behave(() => ({ kind: 'reset-mid-stream' }));
      const err = await apiError(client.chat.completions.create(body('oa-fast', marker())));
      assert.equal(err.status, 502);
      assert.ok(err.code === 'TG_ERR_UPSTREAM' || err.code === 'TG_ERR_UPSTREAM_REPLY', String(err.code));
    });

    test('a malformed reply → 502 TG_ERR_UPSTREAM_REPLY', async () => {
      openai.behave(() => ({ kind: 'malformed' }));
      const mark = marker();
      const err = await apiError(client.chat.completions.create(body('oa-fast', mark)));
      assert.equal(err.status, 502);
      assert.equal(err.code, 'TG_ERR_UPSTREAM_REPLY');
      const line = await decisionFor(mark);
      assert.equal(line.error_code, 'TG_ERR_UPSTREAM_REPLY');
    });

    test('a malformed SSE line mid-stream ends the stream with a TG_ERR_UPSTREAM_REPLY error event', async () => {
      openai.behave(() => ({ kind: 'malformed' }));
      const stream = await client.chat.completions.create(streamBody('oa-fast', marker()));
      let caught: unknown;
      try {
        for await (const _chunk of stream) {
          // drain
        }
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof APIError, `expected an APIError, got ${String(caught)}`);
      assert.equal(caught.code, 'TG_ERR_UPSTREAM_REPLY');
    });

    test('a stream reset mid-stream → the client sees the partial text, then an error; the decision says error', async () => {
      openai.behave(() => ({ kind: 'reset-mid-stream' }));
      const mark = marker();
      const { data: stream, response } = await client.chat.completions.create(streamBody('oa-fast', mark)).withResponse();
      assert.equal(response.status, 200, 'the stream had started');
      let text = '';
      let caught: unknown;
      try {
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      } catch (err) {
        caught = err;
      }
      assert.equal(text, 'partial ');
      assert.ok(caught instanceof APIError, `the stream must end with an error, got ${String(caught)}`);
      assert.equal(caught.code, 'TG_ERR_UPSTREAM');
      const line = await decisionFor(mark);
      assert.equal(line.request_id, response.headers.get('x-tiergate-decision-id'));
      assert.equal(line.status, 'error');
      assert.equal(line.error_code, 'TG_ERR_UPSTREAM');
      assert.equal(line.stream, true);
    });

    test('the raw SSE of a broken stream ends with an OpenAI-shaped error event and no [DONE]', async () => {
      openai.behave(() => ({ kind: 'reset-mid-stream' }));
      const res = await fetch(`${tg.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(streamBody('oa-fast', marker())),
      });
      assert.equal(res.status, 200);
      const text = await res.text();
      const events = text.split('\n\n').filter(Boolean);
      const last = JSON.parse(events[events.length - 1].replace(/^data: /, ''));
      assert.equal(last.error.code, 'TG_ERR_UPSTREAM');
      assert.equal(typeof last.error.message, 'string');
      assert.equal(text.includes('[DONE]'), false);
    });
  });

  describe('cancellation reaches the upstream', () => {
    async function abortWhileUpstreamHangs(stream: boolean): Promise<void> {
      openai.behave(() => ({ kind: 'hang' }));
      const aborted = openai.abortedCount();
      const mark = marker();
      const seen = openai.requests.length;
      const controller = new AbortController();
      const pending = stream
        ? client.chat.completions.create(streamBody('oa-patient', mark), { signal: controller.signal })
        : client.chat.completions.create(body('oa-patient', mark), { signal: controller.signal });
      const outcome = pending.then(
        () => assert.fail('the aborted request must not succeed'),
        (err: unknown) => err,
      );
      await until(() => openai.requests.length > seen, 'the request to reach the upstream');
      controller.abort();
      const err = await outcome;
      assert.ok(err instanceof APIUserAbortError, `the SDK reports the abort, got ${String(err)}`);
      await openai.waitForAborted(aborted + 1);
      assert.equal(upstreamRequestFor(mark).aborted, true);
      const line = await decisionFor(mark);
      assert.equal(line.status, 'client_closed');
      assert.equal(line.error_code, undefined);
      assert.equal(line.stream, stream);
    }

    test('non-streaming: the client aborts, the gateway cancels the upstream call', async () => {
      await abortWhileUpstreamHangs(false);
    });

    test('streaming, before the first chunk: the client aborts, the gateway cancels the upstream call', async () => {
      await abortWhileUpstreamHangs(true);
    });

    test('streaming, mid-stream: the client stops reading, the gateway cancels the upstream stream', async () => {
      openai.behave(() => ({ kind: 'reply', content: 'a slow answer in several parts', chunkDelayMs: 5000 }));
      const aborted = openai.abortedCount();
      const mark = marker();
      const controller = new AbortController();
      const stream = await client.chat.completions.create(streamBody('oa-patient', mark), { signal: controller.signal });
      let chunks = 0;
      let caught: unknown;
      try {
        for await (const _chunk of stream) {
          chunks++;
          controller.abort();
        }
      } catch (err) {
        caught = err;
      }
      assert.equal(chunks, 1, 'one chunk arrived before the abort');
      assert.ok(caught === undefined || caught instanceof APIUserAbortError, `unexpected ${String(caught)}`);
      await openai.waitForAborted(aborted + 1);
      assert.equal(upstreamRequestFor(mark).aborted, true);
      const line = await decisionFor(mark);
      assert.equal(line.status, 'client_closed');
      assert.equal(line.stream, true);
    });
  });
});
