// What the official SDKs do with the gateway's 429s: an exhausted daily budget will not
// succeed for hours, so it says x-should-retry: false and the client asks once; a short
// rate limit says retry-after, and the client waits and asks again. Counted where the
// requests arrive, on the gateway's own server.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import type http from 'node:http';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { simulatorPolicy, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { apiError } from '../support/http.ts';
import { body, marker, startProviderGateway, type ProviderGateway } from '../support/provider-gateway.ts';
import { sleep } from '../support/wait.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const KEY = 'sk-budget-0123456789abcdef';
const DAY_MS = 86_400_000;
/** Far more than a client that gives up needs, far less than the hours a retry-after says. */
const CLIENT_DEADLINE_MS = 15_000;

/** Counts the requests for `path` that reach the gateway from now on. */
function countArrivals(server: http.Server, path: string): { readonly count: number } {
  const counter = { count: 0 };
  server.on('request', (req: http.IncomingMessage) => {
    if (req.url === path) counter.count++;
  });
  return counter;
}

describe('an exhausted daily budget', () => {
  let tg: TestGateway;
  before(async () => {
    // Within a minute of UTC midnight the budget would reset soon enough to retry: keep clear of it.
    const left = DAY_MS - (Date.now() % DAY_MS);
    if (left < 90_000) await sleep(left + 1000);
    tg = await startTestGateway(
      simulatorPolicy({ extra: `server:\n  auth:\n    keys:\n      - { name: metered, key: "${KEY}", routes: '*', limits: { usd_per_day: 0.000001 } }\n` }),
    );
    // The first request is admitted and spends more than the whole day's budget.
    const openai = new OpenAI({ baseURL: tg.baseURL, apiKey: KEY, maxRetries: 0 });
    const { response } = await openai.chat.completions
      .create({ model: 'support', messages: [{ role: 'user', content: 'Where is my parcel?' }] })
      .withResponse();
    await tg.waitForDecision(response.headers.get('x-tiergate-decision-id'));
  });
  after(() => tg.close());

  test('the openai SDK (default retries) asks exactly once: 429 with x-should-retry: false and the hours in retry-after', async () => {
    const arrivals = countArrivals(tg.gateway.server, '/v1/chat/completions');
    // In a child process: the SDK would sleep through retry-after (hours) before retrying, with no way to cancel the sleep.
    const client = `
      import OpenAI from 'openai';
      const openai = new OpenAI({ baseURL: process.argv[1], apiKey: process.argv[2], maxRetries: 2 });
      try {
        await openai.chat.completions.create({ model: 'support', messages: [{ role: 'user', content: 'And now?' }] });
      } catch (err) {
        console.log(JSON.stringify({ status: err.status, code: err.code, shouldRetry: err.headers?.get('x-should-retry'), retryAfter: err.headers?.get('retry-after') }));
      }`;
    const run = await new Promise<{ stdout: string; killed: boolean }>((resolve) =>
      execFile(process.execPath, ['--input-type=module', '-e', client, tg.baseURL, KEY], { cwd: REPO, timeout: CLIENT_DEADLINE_MS }, (err, stdout) =>
        resolve({ stdout, killed: err?.killed ?? false }),
      ),
    );
    assert.equal(run.killed, false, `the client gave up at once rather than waiting ${CLIENT_DEADLINE_MS / 1000} s and more to retry`);
    const outcome = JSON.parse(run.stdout) as { status: number; code: string; shouldRetry: string | null; retryAfter: string | null };
    assert.equal(outcome.status, 429);
    assert.equal(outcome.code, 'TG_ERR_LIMIT_SPEND');
    assert.equal(outcome.shouldRetry, 'false');
    assert.ok(Number(outcome.retryAfter) > 60, `retry-after says when the day's window resets: ${outcome.retryAfter} s`);
    assert.equal(arrivals.count, 1, 'one request, no retries');
  });

  test('the Anthropic SDK on /v1/messages asks exactly once too', async () => {
    const arrivals = countArrivals(tg.gateway.server, '/v1/messages');
    const anthropic = new Anthropic({ baseURL: tg.url, apiKey: KEY, maxRetries: 2 });
    const ask = { model: 'support', max_tokens: 50, messages: [{ role: 'user' as const, content: 'And now?' }] };
    // Its sleep before a retry ends with the signal: past the deadline the SDK was waiting to retry.
    const err = await anthropic.messages.create(ask, { signal: AbortSignal.timeout(CLIENT_DEADLINE_MS) }).then(
      () => assert.fail('expected a 429'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof Anthropic.RateLimitError, String(err));
    assert.equal(err.headers?.get('x-should-retry'), 'false');
    assert.equal(arrivals.count, 1, 'one request, no retries');
  });
});

describe('a short rate limit', () => {
  let gateway: ProviderGateway;
  before(async () => {
    gateway = await startProviderGateway();
  });
  after(() => gateway.close());

  test('the openai SDK still waits out retry-after and asks again (no x-should-retry)', async () => {
    gateway.openai.behave(() => ({ kind: 'status', status: 429, headers: { 'retry-after': '2' } }));
    try {
      const arrivals = countArrivals(gateway.tg.gateway.server, '/v1/chat/completions');
      const openai = new OpenAI({ baseURL: gateway.tg.baseURL, apiKey: 'unused', maxRetries: 1 });
      const err = await apiError(openai.chat.completions.create(body('oa-fast', marker())));
      assert.equal(err.code, 'TG_ERR_UPSTREAM_RATE_LIMITED');
      assert.equal(err.headers?.get('retry-after'), '2');
      assert.equal(err.headers?.get('x-should-retry'), null);
      assert.equal(arrivals.count, 2, 'the first request and one retry');
    } finally {
      gateway.openai.behave(() => ({ kind: 'reply' }));
    }
  });
});
