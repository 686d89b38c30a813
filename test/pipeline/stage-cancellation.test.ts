// Cancellation (src/pipeline/cancellation.ts) through the stages, without HTTP: a client
// that goes away aborts the call under way and stops the ladder; a call past its
// deadline is aborted and counted as a timeout; a request stopped at shutdown ends with
// the gateway's error and one decision line.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { TiergateError } from '../../src/common/errors.ts';
import type { DecisionRecord, ShadowRecord } from '../../src/observe/decision-log.ts';
import { ClientGone, ClientLink, InFlightRequests } from '../../src/pipeline/cancellation.ts';
import { ChatExchange } from '../../src/pipeline/exchange.ts';
import { execute } from '../../src/pipeline/execute.ts';
import { checkChatBody } from '../../src/faces/openai-chat/request-schema.ts';
import { ScoringEvaluator, ladderPolicy, logger, slowly, testPipeline, type TestPipeline } from '../support/pipeline.ts';

const pipelines: TestPipeline[] = [];
after(() => pipelines.forEach((p) => p.close()));
async function pipeline(...args: Parameters<typeof testPipeline>) {
  const made = await testPipeline(...args);
  pipelines.push(made);
  return made;
}
const hanging = async (call: { signal: AbortSignal }) => {
  await slowly(10_000, call.signal);
  return 'too late';
};

describe('cancellation', () => {
  test('the client going away aborts the call under way with ClientGone, and nothing climbs', async () => {
    const p = await pipeline(ladderPolicy(), { behaviours: { 'small-a': hanging }, evaluators: [new ScoringEvaluator(() => 0)] });
    const client = new ClientLink();
    const ctx = await p.context({ metadata: { tier: 'small' } }, client);
    const running = execute(ctx);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const gone = new ClientGone();
    client.abort(gone);
    await assert.rejects(running, (err: unknown) => err instanceof ClientGone);
    assert.deepEqual(
      p.calls.map((c) => c.model),
      ['small-a'],
    );
    assert.equal(p.calls[0].signal.aborted, true);
    assert.equal(p.calls[0].signal.reason, gone);
    assert.deepEqual(
      ctx.attempts.map((a) => [a.model, a.outcome]),
      [['small-a', 'aborted']],
    );
  });

  test('a call past its deadline is aborted and recorded as a timeout; failover goes on', async () => {
    const p = await pipeline(ladderPolicy('', { timeoutMs: 40 }), { behaviours: { 'small-a': hanging, 'small-b': () => 'b in time' } });
    const ctx = await p.context({ metadata: { tier: 'small' } });
    const executed = await execute(ctx);
    assert.equal(executed.answer.model.spec.name, 'small-b');
    const timedOut = p.calls.filter((c) => c.model === 'small-a');
    assert.equal(timedOut.length, 2, 'retried once');
    assert.ok(timedOut.every((c) => c.signal.aborted));
    assert.equal(ctx.attempts[0].error_code, 'TG_ERR_UPSTREAM_TIMEOUT');
  });

  test("a request stopped at shutdown answers with the gateway's error and writes one decision line", async () => {
    const p = await pipeline(ladderPolicy(), { behaviours: { 'large-l': hanging } });
    const lines: Array<DecisionRecord | ShadowRecord> = [];
    const inFlight = new InFlightRequests();
    const exchange = new ChatExchange(p.runtime, { logger, observers: new Set([(line) => lines.push(line)]), inFlight }, 'team-a');
    assert.equal(inFlight.size, 1);
    exchange.received(checkChatBody({ model: 'support', messages: [{ role: 'user', content: 'hi' }] }));
    const running = exchange.run({});
    await new Promise((resolve) => setTimeout(resolve, 20));
    const stop = new TiergateError('TG_ERR_SHUTTING_DOWN', { timeout_ms: 0 });
    inFlight.stopAll(stop);
    const error = await running.then(
      () => assert.fail('a stopped request does not answer'),
      (err: unknown) => exchange.failed(err),
    );
    assert.equal(error, stop);
    assert.equal(inFlight.size, 0);
    // failed() again (a face that reports twice) writes nothing more.
    exchange.failed(new Error('again'));
    assert.equal(lines.length, 1);
    const line = lines[0] as DecisionRecord;
    assert.equal(line.status, 'error');
    assert.equal(line.error_code, 'TG_ERR_SHUTTING_DOWN');
    assert.equal(line.api_key_name, 'team-a');
    assert.equal(line.request_id, exchange.requestId);
    assert.deepEqual(
      line.attempts.map((a) => [a.model, a.outcome]),
      [['large-l', 'aborted']],
    );
  });

  test('a client that went away gets nothing, and its line says client_closed', async () => {
    const p = await pipeline(ladderPolicy(), { behaviours: { 'large-l': hanging } });
    const lines: Array<DecisionRecord | ShadowRecord> = [];
    const exchange = new ChatExchange(p.runtime, { logger, observers: new Set([(line) => lines.push(line)]) }, undefined);
    exchange.received(checkChatBody({ model: 'support', messages: [{ role: 'user', content: 'hi' }] }));
    const running = exchange.run({});
    await new Promise((resolve) => setTimeout(resolve, 20));
    exchange.client.abort(new ClientGone());
    const error = await running.then(
      () => assert.fail('nobody to answer'),
      (err: unknown) => exchange.failed(err),
    );
    assert.equal(error, null);
    assert.equal(lines.length, 1);
    assert.equal((lines[0] as DecisionRecord).status, 'client_closed');
    assert.equal((lines[0] as DecisionRecord).error_code, undefined);
    assert.equal('api_key_name' in lines[0], false);
  });
});
