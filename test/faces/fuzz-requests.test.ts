// Bad requests, generated: fast-check builds request bodies and headers and sends them
// to a real gateway over HTTP (node:http, so any header can be sent). A body that breaks
// the request contract always gets a 4xx in the OpenAI error shape with a catalogue
// code; whatever is sent (random JSON anywhere in the body, odd content types and
// encodings, malformed HTTP), the answer is never a 5xx and the process never falls
// over: after every run the gateway still answers a normal request.
// Bounded: a fixed number of runs, each one small request. FC_SEED=<n> replays a run.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { simulatorLadder, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { ERRORS } from '../../src/common/errors.ts';

const INVALID_RUNS = 300;
const ANY_BODY_RUNS = 200;
const HEADER_RUNS = 150;
const RAW_RUNS = 60;
const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
const BODY_LIMIT = 16 * 1024;

const POLICY = `version: 1
server:
  body_limit: 16kb
  header_allowlist: [x-team, x-priority]
${simulatorLadder()}features:
  task_type: metadata.task_type
  team: headers.\`x-team\`
  turns: $count(messages[role = 'user'])
  tokens: $estimateTokens()
  code: $hasCode()
  last: $lastUserMessage()
  fields: $count($keys(parameters.response_format.json_schema.schema.properties))
routes:
  support:
    router:
      plugin: rules
      rules:
        - { when: "task_type = 'classification'", tier: small }
        - { when: "team = 'billing'", tier: small }
        - { when: "tokens > 1000 or code", tier: large }
        - { when: "$containsAny(last, ['refund', 'order'])", tier: small }
        - { when: "fields > 3", tier: large }
    default: large
    gate: { evaluators: [ { plugin: heuristics } ], max_escalations: 1 }
  plain:
    router: { plugin: rules, rules: [] }
    default: small
analytics:
  decision_log: { file: decisions.jsonl }
`;

const KNOWN_NAMES = new Set(['support', 'plain', 'small-model', 'large-model']);

// ---------------------------------------------------------------------------------
// Generators

type Body = Record<string, unknown>;
const validBody = (): Body => ({
  model: 'support',
  messages: [{ role: 'user', content: 'Where is my order 12345?' }],
  metadata: { task_type: 'classification' },
});

const notString = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }),
);
const notBoolean = fc.oneof(
  fc.string({ maxLength: 10 }),
  fc.integer(),
  fc.array(fc.boolean(), { maxLength: 2 }),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.boolean(), { maxKeys: 2 }),
);
const notObject = fc.oneof(fc.string({ maxLength: 10 }), fc.integer(), fc.boolean(), fc.array(fc.integer(), { maxLength: 3 }));
const notArray = fc.oneof(fc.string({ maxLength: 10 }), fc.integer(), fc.boolean(), fc.dictionary(fc.string({ maxLength: 3 }), fc.integer(), { maxKeys: 2 }));
const ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'function'];

/** One way to break the request contract; each yields a body tiergate must refuse with a 4xx. */
const violation: fc.Arbitrary<{ name: string; apply: (body: Body) => void; status?: number }> = fc.oneof(
  fc.constant({ name: 'no model', apply: (b: Body) => void delete b.model }),
  notString.map((v) => ({ name: `model ${JSON.stringify(v)}`, apply: (b: Body) => void (b.model = v) })),
  fc.constant({ name: 'empty model', apply: (b: Body) => void (b.model = '') }),
  fc
    .string({ minLength: 1, maxLength: 40 })
    .filter((s) => !KNOWN_NAMES.has(s))
    .map((v) => ({ name: `unknown model ${JSON.stringify(v)}`, apply: (b: Body) => void (b.model = v), status: 404 })),
  fc.constant({ name: 'no messages', apply: (b: Body) => void delete b.messages }),
  notArray.map((v) => ({ name: `messages ${JSON.stringify(v)}`, apply: (b: Body) => void (b.messages = v) })),
  fc.constant({ name: 'no message', apply: (b: Body) => void (b.messages = []) }),
  fc
    .oneof(fc.string(), fc.integer(), fc.constant(null), fc.array(fc.integer()))
    .map((v) => ({ name: `message ${JSON.stringify(v)}`, apply: (b: Body) => void (b.messages = [v]) })),
  fc.constant({ name: 'message without role', apply: (b: Body) => void (b.messages = [{ content: 'hi' }]) }),
  fc
    .string({ maxLength: 12 })
    .filter((s) => !ROLES.includes(s))
    .map((v) => ({ name: `role ${JSON.stringify(v)}`, apply: (b: Body) => void (b.messages = [{ role: v, content: 'hi' }]) })),
  fc
    .oneof(fc.integer(), fc.boolean(), fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 4 }), { maxKeys: 2 }))
    .map((v) => ({ name: `content ${JSON.stringify(v)}`, apply: (b: Body) => void (b.messages = [{ role: 'user', content: v }]) })),
  fc
    .oneof(fc.string({ maxLength: 5 }), fc.integer(), fc.constant({ text: 'no type' }))
    .map((v) => ({ name: `content part ${JSON.stringify(v)}`, apply: (b: Body) => void (b.messages = [{ role: 'user', content: [v] }]) })),
  notString
    .filter((v) => v !== null)
    .map((v) => ({ name: `message name ${JSON.stringify(v)}`, apply: (b: Body) => void (b.messages = [{ role: 'user', content: 'hi', name: v }]) })),
  notArray.map((v) => ({
    name: `tool_calls ${JSON.stringify(v)}`,
    apply: (b: Body) =>
      void (b.messages = [
        { role: 'assistant', content: null, tool_calls: v },
        { role: 'user', content: 'hi' },
      ]),
  })),
  notBoolean.map((v) => ({ name: `stream ${JSON.stringify(v)}`, apply: (b: Body) => void (b.stream = v) })),
  notObject.map((v) => ({ name: `stream_options ${JSON.stringify(v)}`, apply: (b: Body) => void (b.stream_options = v) })),
  notBoolean.map((v) => ({
    name: `include_usage ${JSON.stringify(v)}`,
    apply: (b: Body) => void ((b.stream = true), (b.stream_options = { include_usage: v })),
  })),
  notObject.map((v) => ({ name: `metadata ${JSON.stringify(v)}`, apply: (b: Body) => void (b.metadata = v) })),
  fc
    .oneof(fc.integer({ max: 0 }), fc.constant(1.5), fc.constant('10'))
    .map((v) => ({ name: `max_tokens ${JSON.stringify(v)}`, apply: (b: Body) => void (b.max_tokens = v) })),
  fc
    .oneof(fc.double({ min: 2.0001, max: 1e6, noNaN: true }), fc.double({ min: -1e6, max: -0.0001, noNaN: true }), fc.constant('hot'))
    .map((v) => ({ name: `temperature ${JSON.stringify(v)}`, apply: (b: Body) => void (b.temperature = v) })),
  fc.oneof(fc.double({ min: 1.0001, max: 10, noNaN: true }), fc.constant(-1)).map((v) => ({ name: `top_p ${v}`, apply: (b: Body) => void (b.top_p = v) })),
  fc
    .oneof(fc.constant(0), fc.constant(129), fc.constant(1.5), fc.constant('2'))
    .map((v) => ({ name: `n ${JSON.stringify(v)}`, apply: (b: Body) => void (b.n = v) })),
  fc
    .oneof(fc.array(fc.string(), { minLength: 5, maxLength: 8 }), fc.array(fc.integer(), { minLength: 1, maxLength: 3 }), fc.integer())
    .map((v) => ({ name: `stop ${JSON.stringify(v)}`, apply: (b: Body) => void (b.stop = v) })),
  fc
    .oneof(fc.string({ maxLength: 5 }), fc.integer(), fc.boolean())
    .map((v) => ({ name: `tools ${JSON.stringify(v)}`, apply: (b: Body) => void (b.tools = v) })),
  fc.oneof(fc.integer(), fc.boolean(), fc.constant(null)).map((v) => ({ name: `user ${JSON.stringify(v)}`, apply: (b: Body) => void (b.user = v) })),
  fc
    .integer({ min: BODY_LIMIT + 1, max: BODY_LIMIT * 4 })
    .map((n) => ({ name: `a body of ${n} characters`, apply: (b: Body) => void (b.messages = [{ role: 'user', content: 'x'.repeat(n) }]), status: 413 })),
);

/** Extra fields tiergate passes through: never the reason for a refusal, and never a crash. */
const extraFields = fc.dictionary(
  fc
    .string({ minLength: 1, maxLength: 12 })
    .filter(
      (k) =>
        ![
          'model',
          'messages',
          'stream',
          'stream_options',
          'metadata',
          'max_tokens',
          'max_completion_tokens',
          'temperature',
          'top_p',
          'n',
          'stop',
          'tools',
          'user',
        ].includes(k),
    ),
  fc.jsonValue({ maxDepth: 2 }),
  { maxKeys: 3 },
);

/** How the body travels: JSON, or text that is not (quite) JSON. */
const badText = fc.oneof(
  fc.string({ maxLength: 40 }).filter((s) => {
    try {
      JSON.parse(s);
      return false;
    } catch {
      return true;
    }
  }),
  fc.constant('{"model": "support", "messages": [{"role": "user", "content": "hi"}]'),
  fc.constant('{"model": "support",}'),
  fc.constant('\u00ef\u00bb\u00bf{"model": 1}'),
  fc.constant('{"model": "support", "messages": [] } trailing'),
  fc.constant('['.repeat(5000)),
  fc.constant('{"a":'.repeat(2000)),
  fc.constant('{"__proto__": {"polluted": true}, "model": "support"}'),
);

// Header values http.request accepts (visible ASCII and spaces).
const headerValue = fc.stringMatching(/^[\x20-\x7E]{0,40}$/);
const contentType = fc.oneof(
  fc.constantFrom(
    'application/json',
    'application/json; charset=utf-8',
    'text/plain',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/json; charset=utf-16',
    'application/json; charset=latin1',
    'application/json; charset=nope',
    'application/xml',
    '',
  ),
  headerValue,
);
const contentEncoding = fc.constantFrom(undefined, 'identity', 'gzip', 'deflate', 'br', 'x-unknown', 'gzip, gzip');

// ---------------------------------------------------------------------------------

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

function send(url: string, options: { body: Buffer | string; headers?: Record<string, string>; path?: string; method?: string }): Promise<Answer> {
  const target = new URL(options.path ?? '/v1/chat/completions', url);
  const body = typeof options.body === 'string' ? Buffer.from(options.body, 'utf8') : options.body;
  return new Promise((resolve, reject) => {
    const req = http.request(
      target,
      { method: options.method ?? 'POST', agent, headers: { 'content-length': String(body.length), ...options.headers }, timeout: 10_000 },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (part: Buffer) => parts.push(part));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), text: Buffer.concat(parts).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', reject);
    req.end(body);
  });
}

/** A 4xx in OpenAI's shape with a code from the catalogue (and that code's status). */
function assertOpenAIError(answer: Answer, context: string): { code: string } {
  assert.ok(answer.status >= 400 && answer.status < 500, `${context}: expected a 4xx, got ${answer.status}: ${answer.text.slice(0, 300)}`);
  assert.match(answer.contentType, /^application\/json/, `${context}: a JSON error (${answer.contentType})`);
  const body = JSON.parse(answer.text) as { error?: { message?: unknown; type?: unknown; param?: unknown; code?: unknown } };
  const error = body.error;
  assert.ok(error && typeof error === 'object', `${context}: an "error" object: ${answer.text.slice(0, 200)}`);
  assert.equal(typeof error.message, 'string', context);
  assert.ok((error.message as string).length > 0, context);
  assert.equal(typeof error.type, 'string', context);
  assert.ok(error.param === null || typeof error.param === 'string', `${context}: param is a string or null`);
  assert.equal(typeof error.code, 'string', context);
  const entry = ERRORS[error.code as keyof typeof ERRORS];
  assert.ok(entry, `${context}: ${String(error.code)} is in the catalogue`);
  assert.equal(entry.status, answer.status, `${context}: the status is the code's`);
  assert.equal(entry.type, error.type, `${context}: the type is the code's`);
  return { code: error.code as string };
}

/** Anything goes, but never a 5xx: a 200 is a chat completion (or an event stream), a 4xx is an OpenAI error. */
function assertNoServerError(answer: Answer, context: string): void {
  assert.ok(answer.status < 500, `${context}: got ${answer.status}: ${answer.text.slice(0, 300)}`);
  if (answer.status >= 400) assertOpenAIError(answer, context);
  else if (answer.contentType.startsWith('text/event-stream')) assert.match(answer.text, /data: \[DONE\]\n\n$/, `${context}: a complete stream`);
  else assert.equal((JSON.parse(answer.text) as { object?: string }).object, 'chat.completion', context);
}

describe('request fuzz over HTTP', () => {
  let tg: TestGateway;

  before(async () => {
    tg = await startTestGateway(POLICY);
  });
  after(async () => {
    agent.destroy();
    await tg?.close();
  });

  async function stillServing(): Promise<void> {
    const answer = await send(tg.url, { body: JSON.stringify(validBody()), headers: { 'content-type': 'application/json' } });
    assert.equal(answer.status, 200, `a normal request still works: ${answer.text.slice(0, 200)}`);
    assert.equal(tg.gateway.manager.runtime.inflightRequests, 0, 'no request is stuck in the gateway');
  }

  test(`${INVALID_RUNS} bodies that break the contract: each a 4xx in the OpenAI error shape`, async (t) => {
    const codes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.array(violation, { minLength: 1, maxLength: 3 }), extraFields, fc.boolean(), async (violations, extra, stream) => {
        const body: Body = { ...validBody(), ...extra, ...(stream ? { stream: true } : {}) };
        for (const v of violations) v.apply(body);
        const context = violations.map((v) => v.name).join(' + ');
        const answer = await send(tg.url, { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
        const { code } = assertOpenAIError(answer, context);
        // A violation that decides the status alone (404, 413) is the only one in play.
        if (violations.length === 1 && violations[0].status) assert.equal(answer.status, violations[0].status, context);
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }),
      { numRuns: INVALID_RUNS, seed, endOnFailure: true, includeErrorInReport: true },
    );
    t.diagnostic(`codes: ${[...codes].map(([c, n]) => `${c} ${n}`).join(', ')}`);
    assert.ok(codes.has('TG_ERR_REQUEST_INVALID'));
    await stillServing();
  });

  test(`${ANY_BODY_RUNS} bodies of any JSON (random values anywhere, or not JSON at all): never a 5xx`, async () => {
    const anywhere = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }).map((v) => ({ name: 'a JSON value', text: JSON.stringify(v) })),
      badText.map((text) => ({ name: 'not JSON', text })),
      // Random values in the places routing reads: metadata, messages, content, parameters.
      fc
        .record({
          metadata: fc.jsonValue({ maxDepth: 3 }),
          content: fc.jsonValue({ maxDepth: 2 }),
          role: fc.constantFrom(...ROLES),
          extra: extraFields,
          model: fc.constantFrom('support', 'plain', 'small-model'),
        })
        .map((r) => ({
          name: 'random values inside a request',
          text: JSON.stringify({ model: r.model, messages: [{ role: r.role, content: r.content }], metadata: r.metadata, ...r.extra }),
        })),
      fc
        .record({ content: fc.string({ maxLength: 200 }), unicode: fc.string({ unit: 'binary', maxLength: 50 }), task: fc.string({ maxLength: 20 }) })
        .map((r) => ({
          name: 'valid shape, odd text',
          text: JSON.stringify({
            model: 'support',
            messages: [
              { role: 'system', content: r.unicode },
              { role: 'user', content: r.content },
            ],
            metadata: { task_type: r.task },
          }),
        })),
    );
    await fc.assert(
      fc.asyncProperty(anywhere, fc.boolean(), async ({ name, text }, stream) => {
        const body = stream && text.startsWith('{"model"') ? text.replace(/^\{/, '{"stream": true, ') : text;
        const answer = await send(tg.url, { body, headers: { 'content-type': 'application/json' } });
        assertNoServerError(answer, `${name}: ${body.slice(0, 120)}`);
      }),
      { numRuns: ANY_BODY_RUNS, seed, endOnFailure: true, includeErrorInReport: true },
    );
    await stillServing();
  });

  test(`${ANY_BODY_RUNS} Responses API bodies of any JSON (random input items, tools, formats): never a 5xx`, async () => {
    const part = fc.record({ type: fc.constantFrom('input_text', 'output_text', 'input_image', 'input_file'), text: fc.jsonValue({ maxDepth: 1 }) });
    const item = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      fc.record({ role: fc.constantFrom(...ROLES), content: fc.oneof(fc.string({ maxLength: 80 }), fc.array(part, { maxLength: 3 })) }),
      fc.record(
        {
          type: fc.constantFrom('function_call', 'function_call_output', 'item_reference'),
          call_id: fc.jsonValue(),
          name: fc.jsonValue(),
          output: fc.jsonValue(),
        },
        { requiredKeys: ['type'] },
      ),
    );
    const body = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
      fc
        .record(
          {
            model: fc.constantFrom('support', 'plain', 'small-model', 'nope'),
            input: fc.oneof(fc.string({ maxLength: 100 }), fc.array(item, { maxLength: 4 }), fc.jsonValue({ maxDepth: 1 })),
            instructions: fc.jsonValue({ maxDepth: 1 }),
            tools: fc.jsonValue({ maxDepth: 3 }),
            tool_choice: fc.jsonValue({ maxDepth: 2 }),
            text: fc.jsonValue({ maxDepth: 3 }),
            max_output_tokens: fc.jsonValue({ maxDepth: 0 }),
            stream: fc.boolean(),
            metadata: fc.jsonValue({ maxDepth: 2 }),
          },
          { requiredKeys: ['model', 'input'] },
        )
        .map((r) => JSON.stringify(r)),
    );
    await fc.assert(
      fc.asyncProperty(body, async (text) => {
        const answer = await send(tg.url, { body: text, path: '/v1/responses', headers: { 'content-type': 'application/json' } });
        const context = `/v1/responses ${text.slice(0, 160)}`;
        assert.ok(answer.status < 500, `${context}: got ${answer.status}: ${answer.text.slice(0, 300)}`);
        if (answer.status >= 400) assertOpenAIError(answer, context);
        else if (answer.contentType.startsWith('text/event-stream'))
          assert.match(answer.text, /event: response\.(completed|incomplete)\ndata: [^\n]+\n\n$/, `${context}: a complete stream`);
        else assert.equal((JSON.parse(answer.text) as { object?: string }).object, 'response', context);
      }),
      { numRuns: ANY_BODY_RUNS, seed, endOnFailure: true, includeErrorInReport: true },
    );
    await stillServing();
  });

  test(`${HEADER_RUNS} requests with odd headers (content type, encoding, charset, allow-listed headers): never a 5xx`, async () => {
    await fc.assert(
      fc.asyncProperty(
        contentType,
        contentEncoding,
        fc.record({
          team: headerValue,
          priority: headerValue,
          accept: fc.constantFrom('application/json', 'text/event-stream', '*/*', 'image/png', ''),
          authorization: fc.constantFrom(undefined, 'Bearer nope', 'Basic Zm9vOmJhcg==', 'garbage'),
        }),
        fc.boolean(),
        async (type, encoding, extra, valid) => {
          const json = JSON.stringify(valid ? validBody() : { ...validBody(), messages: 'nope' });
          // An encoding header with a body that is, or is not, encoded that way.
          const payload = encoding === 'gzip' && valid ? gzipSync(json) : Buffer.from(json);
          const headers: Record<string, string> = { 'x-team': extra.team, 'x-priority': extra.priority, accept: extra.accept };
          if (type !== '') headers['content-type'] = type;
          if (encoding) headers['content-encoding'] = encoding;
          if (extra.authorization) headers.authorization = extra.authorization;
          const answer = await send(tg.url, { body: payload, headers });
          assertNoServerError(answer, JSON.stringify(headers));
        },
      ),
      { numRuns: HEADER_RUNS, seed, endOnFailure: true, includeErrorInReport: true },
    );
    await stillServing();
  });

  test(`${RAW_RUNS} malformed HTTP requests: a 4xx in the OpenAI error shape (or a closed connection), and the gateway keeps serving`, async () => {
    const { port } = new URL(tg.url);
    const raw = (text: string) =>
      new Promise<string>((resolve) => {
        const socket = net.connect(Number(port), '127.0.0.1');
        let got = '';
        socket.setEncoding('utf8');
        socket.on('data', (part: string) => (got += part));
        socket.on('close', () => resolve(got));
        socket.on('error', () => resolve(got));
        socket.setTimeout(5000, () => socket.destroy());
        socket.end(text);
      });
    const badLines = fc.oneof(
      fc.stringMatching(/^[\x20-\x7E]{1,60}$/).map((s) => `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n${s}\r\n\r\n`),
      fc.constantFrom(
        'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}',
        'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
        'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
        'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n',
        'GARBAGE\r\n\r\n',
        'POST /v1/chat/completions HTTP/9.9\r\n\r\n',
        `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
        'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n',
        'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}',
      ),
    );
    await fc.assert(
      fc.asyncProperty(badLines, async (request) => {
        const response = await raw(request);
        if (response === '') return; // the gateway may just close a connection it cannot parse
        const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(response)?.[1]);
        assert.ok((status >= 400 && status < 500) || status === 200, `${JSON.stringify(request.slice(0, 100))}: ${response.slice(0, 200)}`);
        const [head, ...rest] = response.split('\r\n\r\n');
        const text = rest.join('\r\n\r\n');
        const type = /content-type: ([^\r\n]*)/i.exec(head)?.[1] ?? '';
        if (status >= 400) assertOpenAIError({ status, contentType: type, text }, JSON.stringify(request.slice(0, 100)));
      }),
      { numRuns: RAW_RUNS, seed, endOnFailure: true, includeErrorInReport: true },
    );
    await stillServing();
  });
});
