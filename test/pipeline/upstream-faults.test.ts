// Upstream faults against a two-model tier, over real HTTP: the official openai SDK
// talks to tiergate, tiergate's openai provider (and, in a second round, its
// openai_compatible provider) talks to fake-openai. Where
// upstream-errors.test.ts checks that each fault of a lone model becomes the right
// catalogue error, this file checks what a tier makes of it: every fault that happens
// before the first byte reaches the client (500, 429, a hang, a reset, garbage, a reply
// dripping slower than the deadline) fails over cleanly to the next model of the tier;
// a short retry-after is waited out on the same model; a slow stream whose chunks each
// arrive in time is not cut; when every model fails the client gets one 502 in the
// OpenAI error shape. After every request nothing is left open: no upstream call, no
// request in the gateway, no timer; at the end, no socket, no unhandled rejection and
// no listener-leak warning.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { APIError } from 'openai';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startFakeOpenAI, type Behaviour, type FakeOpenAI } from '../support/fake-openai.ts';
import { apiError } from '../support/http.ts';
import { sleep } from '../support/wait.ts';

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
process.on('unhandledRejection', onUnhandled);
const warnings: Error[] = [];
const onWarning = (warning: Error) => warnings.push(warning);
process.on('warning', onWarning);

const TIMEOUT_MS = 300;
const RETRY_AFTER_MS = 150;

function policy(baseURL: string, provider: string): string {
  const price = '{ input_per_mtok: 1, output_per_mtok: 2 }';
  return `version: 1
providers:
  up: { plugin: ${provider}, base_url: "${baseURL}", api_key: test-key }
models:
  primary: { provider: up, upstream: fo-primary, price: ${price}, timeout_ms: ${TIMEOUT_MS} }
  secondary: { provider: up, upstream: fo-secondary, price: ${price}, timeout_ms: ${TIMEOUT_MS} }
  strong: { provider: up, upstream: fo-strong, price: ${price}, timeout_ms: ${TIMEOUT_MS} }
tiers:
  - { name: small, models: [primary, secondary] }
  - { name: large, models: [strong] }
routes:
  chat:
    router: { plugin: rules, rules: [] }
    default: small
# One retry, quick backoff; no cooldown, so each test sees the tier afresh.
resilience: { retries: 1, backoff_ms: 10, max_backoff_ms: 200, failure_threshold: 1000, cooldown_ms: 0 }
analytics:
  decision_log: { file: decisions.jsonl, log_prompts: true }
`;
}

/** Resource types keeping the event loop alive, counted ('Timeout', 'TCPSocketWrap', …). */
function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1;
  return counts;
}

let markers = 0;
const marker = () => `fault-${process.pid}-${++markers}`;

interface Reply {
  status: number;
  model: string | null;
  content: string;
  id: string;
  ms: number;
}

interface Fault {
  name: string;
  behaviour: Behaviour;
  /** The primary's attempt in the decision log. */
  code: string;
  /** Retries of the primary before failing over (a long retry-after fails over at once). */
  retries: number;
  /** Only before the first byte can a stream fail over; some faults come after it. */
  stream: boolean;
  /** Least time the request must take (the deadline is honoured, not cut short). */
  atLeastMs?: number;
}

const FAULTS: Fault[] = [
  { name: 'HTTP 500', behaviour: { kind: 'status', status: 500 }, code: 'TG_ERR_UPSTREAM', retries: 1, stream: true },
  {
    name: 'HTTP 503 with an HTML body',
    behaviour: { kind: 'status', status: 503, body: '<html>Service Unavailable</html>' },
    code: 'TG_ERR_UPSTREAM',
    retries: 1,
    stream: true,
  },
  // retry-after 2 s is beyond max_backoff_ms: fail over at once instead of waiting.
  {
    name: '429 with a long retry-after',
    behaviour: { kind: 'status', status: 429, headers: { 'retry-after': '2' } },
    code: 'TG_ERR_UPSTREAM_RATE_LIMITED',
    retries: 0,
    stream: true,
  },
  { name: 'a hang past the timeout', behaviour: { kind: 'hang' }, code: 'TG_ERR_UPSTREAM_TIMEOUT', retries: 1, stream: true, atLeastMs: 2 * TIMEOUT_MS - 50 },
  { name: 'a connection reset before the response', behaviour: { kind: 'reset' }, code: 'TG_ERR_UPSTREAM', retries: 1, stream: true },
  { name: 'a body that is not JSON', behaviour: { kind: 'malformed' }, code: 'TG_ERR_UPSTREAM_REPLY', retries: 1, stream: false },
  { name: 'a reset halfway through the JSON body', behaviour: { kind: 'reset-mid-stream' }, code: 'TG_ERR_UPSTREAM', retries: 1, stream: false },
  // 8 bytes every 50 ms: a JSON body of ~400 bytes needs 2.5 s, a first SSE event ~1.2 s.
  {
    name: 'a reply dripping slower than the deadline',
    behaviour: { kind: 'drip', bytes: 8, intervalMs: 50 },
    code: 'TG_ERR_UPSTREAM_TIMEOUT',
    retries: 1,
    stream: true,
    atLeastMs: 2 * TIMEOUT_MS - 50,
  },
];

const PROVIDERS = ['openai', 'openai_compatible'];
let rounds = 0;

for (const provider of PROVIDERS)
  describe(`upstream faults in a two-model tier (${provider} provider)`, () => {
    let openai: FakeOpenAI;
    let tg: TestGateway;
    let client: OpenAI;
    let baseline: Record<string, number>;
    let closed = false;

    before(async () => {
      baseline = resources();
      openai = await startFakeOpenAI();
      tg = await startTestGateway(policy(openai.baseURL, provider));
      client = new OpenAI({ baseURL: tg.baseURL, apiKey: 'client-key', maxRetries: 0, timeout: 15_000 });
    });

    after(async () => {
      if (closed) return;
      await tg?.close();
      await openai?.close();
    });

    /** primary and secondary (and strong) behave as given; anything else replies normally. */
    function script(behaviours: { primary?: (n: number) => Behaviour; secondary?: (n: number) => Behaviour }): void {
      const calls = { 'fo-primary': 0, 'fo-secondary': 0 };
      openai.behave((body) => {
        if (body.model === 'fo-primary' && behaviours.primary) return behaviours.primary(++calls['fo-primary']);
        if (body.model === 'fo-secondary' && behaviours.secondary) return behaviours.secondary(++calls['fo-secondary']);
        return { kind: 'reply', content: `answer from ${body.model}` };
      });
    }

    async function send(stream: boolean, mark: string, model = 'chat'): Promise<Reply> {
      const started = performance.now();
      const params = { model, messages: [{ role: 'user' as const, content: `Where is my order? ${mark}` }] };
      if (!stream) {
        const { data, response } = await client.chat.completions.create(params).withResponse();
        return {
          status: response.status,
          model: response.headers.get('x-tiergate-model'),
          content: data.choices[0].message.content ?? '',
          id: response.headers.get('x-tiergate-decision-id') ?? '',
          ms: performance.now() - started,
        };
      }
      const { data, response } = await client.chat.completions.create({ ...params, stream: true }).withResponse();
      let content = '';
      for await (const chunk of data) content += chunk.choices[0]?.delta.content ?? '';
      return {
        status: response.status,
        model: response.headers.get('x-tiergate-model'),
        content,
        id: response.headers.get('x-tiergate-decision-id') ?? '',
        ms: performance.now() - started,
      };
    }

    /**
     * Once the client has its whole answer, everything the request opened must close
     * promptly: its upstream calls, its place in the runtime, its timers (deadlines,
     * backoffs). 200 ms is shorter than any deadline, so a deadline timer left running
     * would still be there.
     */
    async function assertSettled(what: string): Promise<void> {
      const deadline = performance.now() + 200;
      for (;;) {
        const now = resources();
        const timers = (now.Timeout ?? 0) - (baseline.Timeout ?? 0);
        const state = { upstream_calls_open: openai.activeRequests(), gateway_inflight: tg.gateway.manager.runtime.inflightRequests, extra_timers: timers };
        if (state.upstream_calls_open === 0 && state.gateway_inflight === 0 && state.extra_timers <= 0) return;
        if (performance.now() > deadline) assert.fail(`${what}: not settled 200 ms after the answer: ${JSON.stringify(state)}`);
        await sleep(5);
      }
    }

    for (const stream of [false, true]) {
      for (const fault of FAULTS.filter((f) => !stream || f.stream)) {
        test(`${stream ? 'stream' : 'JSON'}: ${fault.name} on the first model → the second model answers`, async () => {
          script({ primary: () => fault.behaviour });
          const mark = marker();
          const reply = await send(stream, mark);
          assert.equal(reply.status, 200);
          assert.equal(reply.model, 'secondary');
          assert.equal(reply.content, 'answer from fo-secondary');
          if (fault.atLeastMs) assert.ok(reply.ms >= fault.atLeastMs, `the deadline was honoured (${reply.ms.toFixed(0)} ms)`);
          assert.ok(reply.ms < 5000, `bounded (${reply.ms.toFixed(0)} ms)`);
          const line = await tg.waitForDecision(reply.id);
          assert.equal(line.status, 'ok');
          assert.equal(line.selected_model, 'secondary');
          assert.equal(line.stream, stream);
          assert.deepEqual(
            line.attempts.map((a) => ({ model: a.model, outcome: a.outcome, error_code: a.error_code, retries: a.retries })),
            [
              { model: 'primary', outcome: 'failed', error_code: fault.code, retries: fault.retries },
              { model: 'secondary', outcome: 'ok', error_code: undefined, retries: 0 },
            ],
          );
          assert.equal(
            openai.requests.filter((r) => JSON.stringify(r.body).includes(mark) && r.body.model === 'fo-primary').length,
            fault.retries + 1,
            'the first model was called once, plus its retries',
          );
          await assertSettled(fault.name);
        });
      }
    }

    test('a short retry-after is waited out on the same model, which then answers', async () => {
      script({
        primary: (n) =>
          n === 1 ? { kind: 'status', status: 429, headers: { 'retry-after-ms': String(RETRY_AFTER_MS) } } : { kind: 'reply', content: 'answer after waiting' },
      });
      const reply = await send(false, marker());
      assert.equal(reply.model, 'primary');
      assert.equal(reply.content, 'answer after waiting');
      assert.ok(reply.ms >= RETRY_AFTER_MS - 5, `waited for retry-after (${reply.ms.toFixed(0)} ms)`);
      const [attempt] = (await tg.waitForDecision(reply.id)).attempts;
      assert.equal(attempt.outcome, 'ok');
      assert.equal(attempt.retries, 1);
      await assertSettled('short retry-after');
    });

    test('a slow-drip stream whose chunks each arrive within the timeout completes, though it takes longer than the timeout', async () => {
      // 64 bytes every 40 ms: each SSE event (~200 bytes) takes ~150 ms, the whole stream ~1 s.
      const content = 'a slowly streamed answer, one piece at a time';
      script({ primary: () => ({ kind: 'drip', content, bytes: 64, intervalMs: 40 }) });
      const reply = await send(true, marker());
      assert.equal(reply.model, 'primary');
      assert.equal(reply.content, content);
      assert.ok(reply.ms > TIMEOUT_MS, `the stream outlasted one timeout (${reply.ms.toFixed(0)} ms)`);
      const line = await tg.waitForDecision(reply.id);
      assert.equal(line.status, 'ok');
      assert.deepEqual(
        line.attempts.map((a) => a.outcome),
        ['ok'],
      );
      await assertSettled('slow-drip stream');
    });

    test('every model of the tier fails: one clean 502 TG_ERR_ALL_FAILED in the OpenAI error shape, listing the attempts', async () => {
      for (const [behaviour, code] of [
        [{ kind: 'status', status: 500 }, 'TG_ERR_UPSTREAM'],
        [{ kind: 'hang' }, 'TG_ERR_UPSTREAM_TIMEOUT'],
        [{ kind: 'reset' }, 'TG_ERR_UPSTREAM'],
      ] as Array<[Behaviour, string]>) {
        script({ primary: () => behaviour, secondary: () => behaviour });
        for (const stream of [false, true]) {
          const mark = marker();
          const started = performance.now();
          const res = await fetch(`${tg.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'chat', stream, messages: [{ role: 'user', content: mark }] }),
          });
          const elapsed = performance.now() - started;
          assert.equal(res.status, 502, `${behaviour.kind}, ${stream ? 'stream' : 'JSON'}`);
          assert.match(res.headers.get('content-type') ?? '', /^application\/json/, 'a failure before the first byte is a JSON error, even for a stream');
          const body = (await res.json()) as {
            error: { message: string; type: string; param: null; code: string; attempts: Array<{ model: string; error_code: string; retries: number }> };
          };
          assert.equal(body.error.code, 'TG_ERR_ALL_FAILED');
          assert.equal(body.error.type, 'api_error');
          assert.equal(typeof body.error.message, 'string');
          assert.equal(body.error.param, null);
          assert.ok(!body.error.message.includes('test-key'), 'the upstream key never leaks');
          assert.deepEqual(
            body.error.attempts.map((a) => [a.model, a.error_code, a.retries]),
            [
              ['primary', code, 1],
              ['secondary', code, 1],
            ],
          );
          assert.ok(elapsed < 5000, `bounded (${elapsed.toFixed(0)} ms)`);
          const line = await tg.waitForDecision(res.headers.get('x-tiergate-decision-id') ?? '');
          assert.equal(line.status, 'error');
          assert.equal(line.error_code, 'TG_ERR_ALL_FAILED');
          await assertSettled(`all failed: ${behaviour.kind}`);
        }
      }
    });

    test('faults after the first byte end the stream with an error event (no failover once bytes are sent), and leave nothing open', async () => {
      for (const [behaviour, code] of [
        [{ kind: 'reset-mid-stream' }, 'TG_ERR_UPSTREAM'],
        [{ kind: 'malformed' }, 'TG_ERR_UPSTREAM_REPLY'],
        [{ kind: 'reply', content: 'one two three four five six', chunkDelayMs: 2 * TIMEOUT_MS }, 'TG_ERR_UPSTREAM_TIMEOUT'],
      ] as Array<[Behaviour, string]>) {
        script({ primary: () => behaviour });
        const mark = marker();
        const stream = await client.chat.completions.create({ model: 'chat', stream: true, messages: [{ role: 'user', content: mark }] });
        let caught: unknown;
        try {
          for await (const _chunk of stream) {
            // drain
          }
        } catch (err) {
          caught = err;
        }
        assert.ok(caught instanceof APIError, `${behaviour.kind}: the stream ends with an error event, got ${String(caught)}`);
        assert.equal(caught.code, code);
        assert.equal(
          openai.requests.filter((r) => r.body?.model === 'fo-secondary' && JSON.stringify(r.body).includes(mark)).length,
          0,
          'no failover after the first byte',
        );
        await assertSettled(`mid-stream ${behaviour.kind}`);
      }
    });

    test('a client that gives up while the upstream hangs: the upstream call is cancelled and nothing is left open', async () => {
      script({ primary: () => ({ kind: 'hang' }), secondary: () => ({ kind: 'hang' }) });
      const seen = openai.requests.length;
      const controller = new AbortController();
      const pending = client.chat.completions
        .create({ model: 'chat', messages: [{ role: 'user', content: marker() }] }, { signal: controller.signal })
        .catch((err: unknown) => err);
      const deadline = Date.now() + 2000;
      while (openai.requests.length === seen && Date.now() < deadline) await sleep(5);
      // The check below can see a deadline timer: here one is running.
      assert.ok((resources().Timeout ?? 0) > (baseline.Timeout ?? 0), 'a running upstream deadline shows as a Timeout resource');
      controller.abort();
      await pending;
      await assertSettled('client abort');
    });

    test('the gateway still serves normally after every fault', async () => {
      script({});
      const reply = await send(false, marker());
      assert.equal(reply.model, 'primary');
      const err = await apiError(client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }));
      assert.equal(err.status, 404);
    });

    test('nothing leaked: no unhandled rejection, no listener-leak warning, sockets and timers back to where they were', async () => {
      await tg.close();
      await openai.close();
      closed = true;
      const deadline = performance.now() + 3000;
      let now = resources();
      const grown = () => Object.entries(now).filter(([type, n]) => n > (baseline[type] ?? 0));
      while (grown().length > 0 && performance.now() < deadline) {
        await sleep(20);
        now = resources();
      }
      assert.deepEqual(grown(), [], `resources left after closing (before: ${JSON.stringify(baseline)})`);
      if (++rounds === PROVIDERS.length) {
        process.off('unhandledRejection', onUnhandled);
        process.off('warning', onWarning);
      }
      assert.deepEqual(unhandled.map(String), [], 'no promise rejection went unhandled');
      assert.deepEqual(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map(String), [], 'no abort-listener leak');
    });
  });
