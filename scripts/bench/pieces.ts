// Pieces of the request path measured on their own, in a process of their own on the
// server CPU, for the report's profile findings: what one upstream call costs through
// the openai_compatible provider (undici) and the openai provider (the official SDK
// over a node:http fetch) against bare fetch and node:http, what one JSONata
// condition costs against a plain predicate, remembering a decision for feedback against
// the Map idiom it replaced, and a policy regex on RE2 against V8's RegExp. CPU time per call from process.cpuUsage();
// prints one JSON object.
//
//   node --import tsx scripts/bench/pieces.ts POLICY_FILE SDK_POLICY_FILE UPSTREAM_PORT CALLS
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import jsonata from 'jsonata';
import { compileExpression } from '../../src/expressions/compile.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { RecentMap } from '../../src/common/recent-map.ts';
import type { ChatRequest } from '../../src/plugin-contract/plugin-api.ts';
import { buildRuntime } from '../../src/policy/compile.ts';

import type { Piece } from './results.ts';

const [policyFile, sdkPolicyFile, upstreamPort, callsText] = process.argv.slice(2);
const calls = Number(callsText);
const CONCURRENCY = 50;
const base = `http://127.0.0.1:${upstreamPort}/v1`;
const request = {
  model: 'bench-small',
  messages: [
    { role: 'system', content: 'You are a support assistant for a parcel delivery company.' },
    { role: 'user', content: 'Classify this message: "my parcel never arrived, order 12345"' },
  ],
} as ChatRequest;
const payload = JSON.stringify(request);
const streamPayload = JSON.stringify({ ...request, stream: true, stream_options: { include_usage: true } });

async function concurrent(name: string, n: number, call: () => Promise<unknown>): Promise<Piece> {
  const run = (count: number) =>
    Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let i = 0; i < count / CONCURRENCY; i++) await call();
      }),
    );
  await run(n);
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  await run(n);
  const used = process.cpuUsage(cpu);
  return { name, cpu_us_per_call: (used.user + used.system) / n, calls_per_s: (n / (performance.now() - t0)) * 1000 };
}

async function sequential(name: string, n: number, call: () => unknown): Promise<Piece> {
  for (let i = 0; i < n; i++) await call();
  const cpu = process.cpuUsage();
  for (let i = 0; i < n; i++) await call();
  const used = process.cpuUsage(cpu);
  return { name, cpu_us_per_call: (used.user + used.system) / n, calls_per_s: null };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
function httpCall(body: string, stream: boolean): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${base}/chat/completions`,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (part: Buffer) => parts.push(part));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          if (!stream) return resolve(JSON.parse(text));
          const chunks: unknown[] = [];
          for (const line of text.split('\n')) if (line.startsWith('data: ') && line !== 'data: [DONE]') chunks.push(JSON.parse(line.slice(6)));
          resolve(chunks);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const runtime = await buildRuntime(policyFile, { logger: createLogger({ level: 'silent' }), mode: 'validate' });
const model = runtime.models.get('small-model')!;
const sdkRuntime = await buildRuntime(sdkPolicyFile, { logger: createLogger({ level: 'silent' }), mode: 'validate' });
const sdkModel = sdkRuntime.models.get('small-model')!;
const readStream = async (m: typeof model) => {
  for await (const _chunk of m.provider.stream({ ...request, stream: true }, { model: m.spec, signal: new AbortController().signal })) {
    // read every chunk
  }
};
const pieces: Piece[] = [];
try {
  pieces.push(
    await concurrent('upstream call, JSON: openai_compatible provider complete() (undici)', calls, () =>
      model.provider.complete(request, { model: model.spec, signal: new AbortController().signal }),
    ),
  );
  pieces.push(
    await concurrent('upstream call, JSON: openai provider complete() (the SDK over a node:http fetch)', calls, () =>
      sdkModel.provider.complete(request, { model: sdkModel.spec, signal: new AbortController().signal }),
    ),
  );
  pieces.push(
    await concurrent('upstream call, JSON: global fetch + res.json()', calls, async () =>
      (await fetch(`${base}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: payload })).json(),
    ),
  );
  pieces.push(await concurrent('upstream call, JSON: node:http (keep-alive agent) + JSON.parse', calls, () => httpCall(payload, false)));
  pieces.push(await concurrent('upstream call, SSE: openai_compatible provider stream() read to the end', calls, () => readStream(model)));
  pieces.push(await concurrent('upstream call, SSE: openai provider stream() (the SDK) read to the end', calls, () => readStream(sdkModel)));
  pieces.push(await concurrent('upstream call, SSE: node:http + split lines + JSON.parse', calls, () => httpCall(streamPayload, true)));

  const input = {
    ...request,
    parameters: {},
    metadata: { task_type: 'classification', domain: 'logistics' },
    headers: { 'x-team': 'support' },
    stream: false,
    task_type: 'classification',
    domain: 'logistics',
    prompt_tokens: 30,
    features: {},
  };
  const condition = compileExpression("task_type = 'kind_1'");
  const tokens = compileExpression('$estimateTokens()');
  if (!('expression' in condition) || !('expression' in tokens)) throw new Error('the pieces expressions do not compile');
  const bare = jsonata("task_type = 'kind_1'");
  const predicate = (x: typeof input) => x.task_type === 'kind_1';
  const n = calls * 10;
  pieces.push(
    await sequential("JSONata condition task_type = 'kind_1' (as compiled by src/expressions/compile.ts)", n, () => condition.expression.evaluate(input)),
  );
  pieces.push(await sequential('the same condition, plain jsonata() without the custom functions registered', n, () => bare.evaluate(input)));
  pieces.push(await sequential('the same condition as a JS predicate', n, () => predicate(input)));
  pieces.push(await sequential('feature $estimateTokens()', n, () => tokens.expression.evaluate(input)));
  pieces.push(await sequential('new AbortController() (Node 20: makeTransferable)', n, () => new AbortController().signal));

  // Remembering a decision for feedback (src/pipeline/feedback.ts), one per request: 10,000 kept.
  const ids = Array.from({ length: 2 * n + 10_000 }, (_, i) => `tg-${i.toString(36)}-${randomUUID()}`);
  const recent = new RecentMap<string, number>(10_000);
  const idiom = new Map<string, number>();
  for (let i = 0; i < 10_000; i++) {
    recent.set(ids[i], i);
    idiom.set(ids[i], i);
  }
  let next = 10_000;
  pieces.push(await sequential('remember a decision, 10,000 kept: RecentMap.set (src/common/recent-map.ts)', n, () => recent.set(ids[next], next++)));
  next = 10_000;
  pieces.push(
    await sequential('the same with a Map and map.delete(map.keys().next().value), the idiom RecentMap replaced', n, () => {
      idiom.set(ids[next], next++);
      if (idiom.size > 10_000) idiom.delete(idiom.keys().next().value as string);
    }),
  );

  // A policy regex runs on RE2 (src/plugin-contract/linear-regex.ts), against V8's backtracking RegExp.
  const prompt = { ...input, prompt: `${'I was charged twice for my order last week and would like to know what happened. '.repeat(6)}Please refund me.` };
  const onRe2 = compileExpression('$contains(prompt, /refund|chargeback|invoice/i)');
  if (!('expression' in onRe2)) throw new Error('the pieces regex does not compile');
  const onRegExp = jsonata('$contains(prompt, /refund|chargeback|invoice/i)');
  const missing = { ...prompt, prompt: prompt.prompt.replace('refund', 'reply') };
  pieces.push(
    await sequential(
      'JSONata $contains(prompt, /refund|chargeback|invoice/i), 500-character prompt, no match, on RE2 (as compiled by src/expressions/compile.ts)',
      n,
      () => onRe2.expression.evaluate(missing),
    ),
  );
  pieces.push(await sequential("the same on V8's RegExp (plain jsonata(), backtracking)", n, () => onRegExp.evaluate(missing)));
  pieces.push(await sequential('the same, a match near the end of the prompt, on RE2', n, () => onRe2.expression.evaluate(prompt)));
  pieces.push(await sequential("the same match on V8's RegExp", n, () => onRegExp.evaluate(prompt)));
} finally {
  agent.destroy();
  await runtime.dispose();
  await sdkRuntime.dispose();
}
process.stdout.write(JSON.stringify(pieces) + '\n');
process.exit(0);
