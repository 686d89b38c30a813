// Streams the client abandons, over real HTTP: the official openai and Anthropic SDKs
// read part of a stream and abort, in front of a fake-openai upstream on a $1,000/Mtok
// model. What the upstream produced is paid for all the same: the abandoned call's
// usage is the estimate of the prompt and of the tokens streamed so far (usage_estimated),
// its cost is on the decision line, and it is charged to the key's budget.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { APIUserAbortError } from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';
import { apiError } from '../support/http.ts';
import { close } from '../support/metrics.ts';
import { until } from '../support/wait.ts';
import { estimateMessagesTokens, estimateTextTokens } from '../../src/plugin-contract/tokens.ts';
import type { AttemptRecord, DecisionRecord } from '../../src/observe/decision-log.ts';

const READER_KEY = 'tg-abandon-reader-key-0123456789';
const THRIFTY_KEY = 'tg-abandon-thrifty-key-012345678';
const PRICE_PER_MTOK = 1000;
/** Long enough that each of the three pieces fake-openai streams it in is tens of tokens. */
const ANSWER = 'The parcel left the depot this morning and should reach you by Thursday afternoon. '.repeat(4);
const messages = [{ role: 'user' as const, content: 'Where is my parcel? Order 12345, sent last week.' }];

describe('a stream the client abandons', () => {
  let fake: FakeOpenAI;
  let tg: TestGateway;

  before(async () => {
    fake = await startFakeOpenAI();
    tg = await startTestGateway(`version: 1
server:
  auth:
    keys:
      - { name: reader, key: ${READER_KEY}, routes: '*' }
      - { name: thrifty, key: ${THRIFTY_KEY}, routes: '*', limits: { usd_per_day: 0.02 } }
providers:
  up: { plugin: openai, base_url: "${fake.baseURL}", api_key: test-key }
models:
  pricey: { provider: up, upstream: fake-pricey, price: { input_per_mtok: ${PRICE_PER_MTOK}, output_per_mtok: ${PRICE_PER_MTOK} }, timeout_ms: 10000 }
tiers:
  - { name: only, models: [pricey] }
routes:
  support:
    router: { plugin: rules, rules: [] }
    default: only
analytics:
  decision_log: { file: decisions.jsonl }
`);
  });

  after(async () => {
    await tg?.close();
    await fake?.close();
  });

  const openai = (key: string) => new OpenAI({ baseURL: tg.baseURL, apiKey: key, maxRetries: 0 });
  const costOf = (usage: { prompt_tokens: number; completion_tokens: number }) => ((usage.prompt_tokens + usage.completion_tokens) * PRICE_PER_MTOK) / 1e6;

  /** Streams through the openai SDK, aborting once some answer text has arrived; the text read and the decision line. */
  async function abandonAfterFirstText(key: string): Promise<{ received: string; line: DecisionRecord }> {
    const controller = new AbortController();
    const { data: stream, response } = await openai(key)
      .chat.completions.create({ model: 'support', messages, stream: true }, { signal: controller.signal })
      .withResponse();
    let received = '';
    try {
      for await (const chunk of stream) {
        received += chunk.choices[0]?.delta?.content ?? '';
        if (received !== '') controller.abort();
      }
    } catch (err) {
      assert.ok(err instanceof APIUserAbortError, `the SDK reports the abort, got ${String(err)}`);
    }
    return { received, line: await tg.waitForDecision(response.headers.get('x-tiergate-decision-id')) };
  }

  /** The abandoned call's attempt: aborted, its usage estimated from the prompt and the text streamed, and priced. */
  function assertCharged(line: DecisionRecord, received: string): AttemptRecord {
    assert.equal(line.status, 'client_closed');
    assert.equal(line.attempts.length, 1);
    const [attempt] = line.attempts;
    assert.equal(attempt.outcome, 'aborted');
    assert.equal(attempt.usage_estimated, true);
    assert.ok(attempt.usage, 'the abandoned call has its usage');
    assert.equal(attempt.usage.prompt_tokens, estimateMessagesTokens(messages));
    assert.ok(attempt.usage.completion_tokens >= estimateTextTokens(received), 'at least the tokens the client read');
    assert.ok(attempt.usage.completion_tokens < estimateTextTokens(ANSWER), 'not the tokens never streamed');
    close(attempt.cost_usd, costOf(attempt.usage), 1e-12, 'the attempt is priced by its usage');
    close(line.cost_usd ?? 0, attempt.cost_usd, 1e-12, "the line's cost");
    return attempt;
  }

  test('openai SDK, mid-stream: the tokens streamed so far are estimated, priced and on the decision line', async () => {
    fake.behave(() => ({ kind: 'reply', content: ANSWER, chunkDelayMs: 300 }));
    const aborted = fake.abortedCount();
    const { received, line } = await abandonAfterFirstText(READER_KEY);
    assert.ok(received.length > 0 && received.length < ANSWER.length, 'the client read part of the answer');
    await fake.waitForAborted(aborted + 1);
    const attempt = assertCharged(line, received);
    assert.ok(attempt.usage!.completion_tokens > 0);
    assert.equal(line.api_key_name, 'reader');
  });

  test('before the first chunk: the prompt the upstream was sent is estimated and priced', async () => {
    fake.behave(() => ({ kind: 'hang' }));
    const seen = fake.requests.length;
    const controller = new AbortController();
    const pending = openai(READER_KEY).chat.completions.create({ model: 'support', messages, stream: true }, { signal: controller.signal });
    const outcome = pending.then(
      () => assert.fail('an abandoned request has no answer'),
      (err: unknown) => err,
    );
    await until(() => fake.requests.length > seen, 'the request to reach the upstream');
    const linesBefore = tg.decisions().length;
    controller.abort();
    assert.ok((await outcome) instanceof APIUserAbortError);
    const line = (await tg.waitForDecisions(linesBefore + 1)).at(-1) as DecisionRecord;
    assert.equal(line.status, 'client_closed');
    const [attempt] = line.attempts;
    assert.equal(attempt.outcome, 'aborted');
    assert.equal(attempt.usage_estimated, true);
    assert.deepEqual(attempt.usage, { prompt_tokens: estimateMessagesTokens(messages), completion_tokens: 0, total_tokens: estimateMessagesTokens(messages) });
    close(line.cost_usd ?? 0, costOf(attempt.usage!), 1e-12);
    assert.ok((line.cost_usd ?? 0) > 0);
  });

  test('Anthropic SDK on /v1/messages, mid-stream: the same accounting', async () => {
    fake.behave(() => ({ kind: 'reply', content: ANSWER, chunkDelayMs: 300 }));
    const controller = new AbortController();
    const anthropic = new Anthropic({ baseURL: tg.url, apiKey: READER_KEY, maxRetries: 0 });
    const { data: stream, response } = await anthropic.messages
      .create({ model: 'support', max_tokens: 256, messages, stream: true }, { signal: controller.signal })
      .withResponse();
    let received = '';
    try {
      for await (const event of stream) {
        if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') received += event.delta.text;
        if (received !== '') controller.abort();
      }
    } catch (err) {
      assert.equal((err as Error).name, 'APIUserAbortError', `the SDK reports the abort, got ${String(err)}`);
    }
    assert.ok(received.length > 0 && received.length < ANSWER.length);
    assertCharged(await tg.waitForDecision(response.headers.get('x-tiergate-decision-id')), received);
  });

  test("an abandoned stream is charged to the key's budget: the next request is over it", async () => {
    fake.behave(() => ({ kind: 'reply', content: ANSWER, chunkDelayMs: 300 }));
    const { received, line } = await abandonAfterFirstText(THRIFTY_KEY);
    assertCharged(line, received);
    assert.ok((line.cost_usd ?? 0) > 0.02, `the abandoned stream cost $${line.cost_usd}, over the $0.02 budget`);
    fake.behave(() => ({ kind: 'reply', content: 'short' }));
    const refused = await apiError(openai(THRIFTY_KEY).chat.completions.create({ model: 'support', messages }));
    assert.equal(refused.status, 429);
    assert.equal((refused.error as { code?: string }).code, 'TG_ERR_LIMIT_SPEND');
  });
});
