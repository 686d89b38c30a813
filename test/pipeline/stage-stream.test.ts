// A stream read through the pipeline into a face's ChunkSink (src/pipeline/stream.ts,
// src/pipeline/exchange.ts), without HTTP: the chunks as the client gets them, no more
// upstream reading while the sink needs to drain, a failure after the first chunk as the
// stream's last word, a bypass gate judging the assembled answer, and one decision line.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { TiergateError } from '../../src/common/errors.ts';
import type { DecisionRecord, ShadowRecord } from '../../src/observe/decision-log.ts';
import type { CallOptions, ChatChunk, ChatRequest, ChatResult, Provider } from '../../src/plugin-contract/plugin-api.ts';
import { UpstreamError } from '../../src/plugin-contract/plugin-api.ts';
import { ChatExchange } from '../../src/pipeline/exchange.ts';
import type { ChunkSink } from '../../src/pipeline/stream.ts';
import { checkChatBody } from '../../src/faces/openai-chat/request-schema.ts';
import { ScoringEvaluator, ladderPolicy, logger, testPipeline, type TestPipeline, type TestPipelineOptions } from '../support/pipeline.ts';

/** Streams `words`, logging each read; throws after `failAfter` chunks when given. */
class WordStream implements Provider {
  constructor(
    private readonly words: string[],
    private readonly log: string[],
    private readonly failAfter: number | null = null,
  ) {}

  async complete(_request: ChatRequest, _call: CallOptions): Promise<ChatResult> {
    throw new Error('streams only');
  }

  async *stream(request: ChatRequest): AsyncIterable<ChatChunk & { simulated?: boolean }> {
    for (let i = 0; i < this.words.length; i++) {
      if (this.failAfter !== null && i === this.failAfter) throw new UpstreamError('connection', 'socket hang up');
      this.log.push(`read ${this.words[i]}`);
      yield {
        id: 'w',
        object: 'chat.completion.chunk',
        created: 1,
        model: request.model,
        simulated: true,
        choices: [{ index: 0, delta: { content: this.words[i] }, finish_reason: null }],
      };
    }
    this.log.push('read usage');
    yield {
      id: 'w',
      object: 'chat.completion.chunk',
      created: 1,
      model: request.model,
      choices: [],
      usage: { prompt_tokens: 3, completion_tokens: this.words.length, total_tokens: 3 + this.words.length },
    };
  }

  async dispose(): Promise<void> {}
}

/** A sink that logs what it is given, and is full (needs to drain) after every `fullEvery` chunks. */
class LoggingSink implements ChunkSink {
  readonly chunks: ChatChunk[] = [];
  ended = false;
  failure: TiergateError | null = null;
  private full = false;

  constructor(
    private readonly log: string[],
    private readonly fullEvery = 0,
  ) {}

  write(chunk: ChatChunk): void {
    this.chunks.push(chunk);
    this.log.push(`write ${chunk.choices[0]?.delta.content ?? 'usage'}`);
    if (this.fullEvery > 0 && this.chunks.length % this.fullEvery === 0) this.full = true;
  }

  get needsDrain(): boolean {
    return this.full;
  }

  async drained(): Promise<void> {
    this.log.push('drain wait');
    await new Promise((resolve) => setTimeout(resolve, 10));
    this.full = false;
    this.log.push('drained');
  }

  end(): void {
    this.ended = true;
  }

  fail(error: TiergateError): void {
    this.failure = error;
  }
}

const pipelines: TestPipeline[] = [];
after(() => pipelines.forEach((p) => p.close()));
async function streamed(provider: Provider, body: Record<string, unknown>, sink: ChunkSink, options: TestPipelineOptions = {}) {
  const p = await testPipeline(ladderPolicy(), { ...options, providers: { 'large-l': provider } });
  pipelines.push(p);
  const lines: Array<DecisionRecord | ShadowRecord> = [];
  const exchange = new ChatExchange(p.runtime, { logger, observers: new Set([(line) => lines.push(line)]) }, undefined);
  exchange.received(checkChatBody({ model: 'support', messages: [{ role: 'user', content: 'hi' }], stream: true, ...body }));
  const response = await exchange.run({});
  assert.equal(response.kind, 'stream');
  if (response.kind === 'stream') await exchange.stream(response, sink);
  return lines as DecisionRecord[];
}

describe('a stream read through into a sink', () => {
  test("the client gets each chunk with the served model's name, without the marker or the usage it did not ask for", async () => {
    const log: string[] = [];
    const sink = new LoggingSink(log);
    const lines = await streamed(new WordStream(['one', 'two'], log), {}, sink);
    assert.deepEqual(
      sink.chunks.map((c) => c.choices[0].delta.content),
      ['one', 'two'],
    );
    assert.ok(sink.chunks.every((c) => c.model === 'large-l' && !('simulated' in c) && !('usage' in c)));
    assert.equal(sink.ended, true);
    assert.equal(lines.length, 1);
    assert.equal(lines[0].status, 'ok');
    assert.equal(lines[0].stream, true);
    assert.deepEqual(lines[0].usage, { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
  });

  test('with include_usage the usage chunk reaches the client too', async () => {
    const sink = new LoggingSink([]);
    await streamed(new WordStream(['one'], []), { stream_options: { include_usage: true } }, sink);
    assert.deepEqual(sink.chunks.at(-1)?.usage, { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 });
  });

  test('while the sink needs to drain, nothing more is read upstream', async () => {
    const log: string[] = [];
    await streamed(new WordStream(['a', 'b', 'c', 'd'], log), {}, new LoggingSink(log, 2));
    // Full after its second chunk: the read after it has happened, the next waits for the drain.
    const waited = log.indexOf('drain wait');
    assert.ok(waited > 0, log.join(', '));
    assert.deepEqual(log.slice(waited, waited + 3), ['drain wait', 'drained', 'write c']);
    assert.deepEqual(log.slice(0, waited), ['read a', 'write a', 'read b', 'write b', 'read c']);
  });

  test("a failure after the first chunk is the stream's last word, and its line says error", async () => {
    const log: string[] = [];
    const sink = new LoggingSink(log);
    const lines = await streamed(new WordStream(['one', 'two', 'three'], log, 2), {}, sink);
    assert.equal(sink.ended, false);
    assert.equal(sink.failure?.code, 'TG_ERR_UPSTREAM');
    assert.deepEqual(
      sink.chunks.map((c) => c.choices[0].delta.content),
      ['one', 'two'],
    );
    assert.equal(lines.length, 1);
    assert.equal(lines[0].status, 'error');
    assert.equal(lines[0].error_code, 'TG_ERR_UPSTREAM');
    assert.equal(lines[0].attempts[0].outcome, 'failed');
  });

  test('gate "bypass": streamed as it comes, the assembled answer scored afterwards for the line only', async () => {
    const texts: string[] = [];
    const evaluator = new ScoringEvaluator((text) => {
      texts.push(text);
      return 0.25;
    });
    const sink = new LoggingSink([]);
    const lines = await streamed(new WordStream(['x', 'y'], []), {}, sink, { evaluators: [evaluator], gate: { streaming: 'bypass' } });
    assert.deepEqual(texts, ['xy']);
    assert.equal(sink.chunks.length, 2);
    assert.equal(lines[0].gate, 'bypass');
    assert.equal(lines[0].quality_score, 0.25);
    assert.equal(lines[0].escalations, 0);
  });
});
