// The clients teams already use, over real HTTP: the official openai SDK and LangChain
// JS's ChatOpenAI talk to tiergate; tiergate's openai provider talks to fake-openai.
// Each test records the exact request the client put on the wire (a recording fetch
// given to the client) and the request the upstream received, and checks that every
// field arrived untouched except `model` (route → upstream model name) and `metadata`
// (tiergate's routing input, documented as not forwarded); then that what the upstream
// answered (tool_calls with ids and arguments, finish_reason, usage with its token
// details, system_fingerprint, logprobs, several choices) reached the client untouched
// except `model` (the policy model that answered).
// This file: LangChain JS. The openai SDK: clients.test.ts. The gateway, the upstream's
// answers and the checks they share: test/support/clients.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatOpenAI } from '@langchain/openai';
import { type AIMessageChunk, HumanMessage, SystemMessage, ToolMessage } from '@langchain/core/messages';
import type { TestGateway } from '../support/gateway.ts';
import type { FakeOpenAI } from '../support/fake-openai.ts';
import {
  assertForwardedAsSent,
  GATEWAY_KEY,
  LARGE_MODEL,
  LARGE_UPSTREAM,
  marker,
  recordingFetch,
  SERVED_MODEL,
  startClientsGateway,
  timeTool,
  TOOL_CALLS,
  USAGE,
  USAGE_OUT,
  weatherTool,
  type ClientsGateway,
} from '../support/clients.ts';

describe('clients → tiergate → an OpenAI-format upstream', () => {
  let gateway: ClientsGateway | undefined;
  let fake: FakeOpenAI;
  let tg: TestGateway;
  /** JSON bodies the clients put on the wire, in order. */
  let sent: any[];

  before(async () => {
    gateway = await startClientsGateway();
    ({ fake, tg, sent } = gateway);
  });
  after(async () => {
    await gateway?.close();
  });

  const upstreamWith = (mark: string, expected = 1) => gateway!.upstreamWith(mark, expected);
  const sentWith = (mark: string) => gateway!.sentWith(mark);

  describe('LangChain JS ChatOpenAI', () => {
    function chatModel(fields: ConstructorParameters<typeof ChatOpenAI>[0] = {}): ChatOpenAI {
      return new ChatOpenAI({
        model: 'assistant',
        apiKey: GATEWAY_KEY,
        configuration: { baseURL: tg.baseURL, fetch: recordingFetch(sent) },
        maxRetries: 0,
        ...fields,
      });
    }

    test('invoke: the request arrives as LangChain sent it; content, finish_reason, system_fingerprint and usage come back', async () => {
      const mark = marker();
      fake.behave(() => ({ kind: 'reply', content: 'Your parcel is in transit.', usage: USAGE, system_fingerprint: 'fp_lc0001' }));
      const llm = chatModel({ temperature: 0.2, topP: 0.9, maxTokens: 80, stop: ['END'] });
      const reply = await llm.invoke([new SystemMessage('You are a support agent.'), new HumanMessage(`Where is order 12345? ${mark}`)], { seed: 7 });
      const [up] = upstreamWith(mark);
      const wire = sentWith(mark);
      assertForwardedAsSent(up, wire);
      assert.deepEqual(up.body.messages, [
        { role: 'system', content: 'You are a support agent.' },
        { role: 'user', content: `Where is order 12345? ${mark}` },
      ]);
      assert.equal(up.body.temperature, 0.2);
      assert.equal(up.body.top_p, 0.9);
      assert.deepEqual(up.body.stop, ['END']);
      assert.equal(up.body.seed, 7);

      const answer = up.answer as { id: string };
      assert.equal(reply.content, 'Your parcel is in transit.');
      assert.equal(reply.id, answer.id);
      assert.equal(reply.response_metadata.finish_reason, 'stop');
      assert.equal(reply.response_metadata.system_fingerprint, 'fp_lc0001');
      assert.equal(reply.response_metadata.model_name, SERVED_MODEL);
      assert.deepEqual(reply.response_metadata.usage, USAGE_OUT);
      assert.equal(reply.usage_metadata?.input_tokens, USAGE.prompt_tokens);
      assert.equal(reply.usage_metadata?.output_tokens, USAGE.completion_tokens);
      assert.equal(reply.usage_metadata?.total_tokens, USAGE_OUT.total_tokens);
      assert.equal(
        reply.usage_metadata?.input_token_details?.cache_read,
        USAGE.prompt_tokens_details.cached_tokens,
        'usage token details survived the gateway',
      );
    });

    test('routing metadata from LangChain (modelKwargs.metadata) reaches the rules; it is not forwarded upstream', async () => {
      const mark = marker();
      fake.behave(() => ({ kind: 'reply', content: 'A hard answer.', usage: USAGE }));
      const reply = await chatModel({ modelKwargs: { metadata: { task_type: 'hard' } } }).invoke(`Prove it ${mark}`);
      assert.deepEqual(sentWith(mark).metadata, { task_type: 'hard' }, 'LangChain sent the metadata');
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark), LARGE_UPSTREAM);
      assert.equal(reply.response_metadata.model_name, LARGE_MODEL, 'the rule sent it to the large tier');
      assert.equal(reply.content, 'A hard answer.');
    });

    test('stream: chunks concatenate to the answer; LangChain asks for usage and gets it', async () => {
      const mark = marker();
      fake.behave(() => ({ kind: 'reply', content: 'Streaming through tiergate works.', usage: USAGE }));
      let acc: AIMessageChunk | undefined;
      let count = 0;
      for await (const chunk of await chatModel().stream(`Stream something ${mark}`)) {
        count++;
        acc = acc ? acc.concat(chunk) : chunk;
      }
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark));
      assert.equal(up.body.stream, true);
      assert.deepEqual(sentWith(mark).stream_options, { include_usage: true }, 'LangChain streams with include_usage');
      assert.ok(count > 2, `expected several chunks, got ${count}`);
      assert.equal(acc?.content, 'Streaming through tiergate works.');
      assert.equal(acc?.response_metadata.finish_reason, 'stop');
      assert.equal(acc?.response_metadata.system_fingerprint, 'fp_fake');
      assert.equal(acc?.usage_metadata?.input_tokens, USAGE.prompt_tokens);
      assert.equal(acc?.usage_metadata?.output_tokens, USAGE.completion_tokens);
      assert.equal(acc?.usage_metadata?.total_tokens, USAGE_OUT.total_tokens);
    });

    test('bindTools: tools and tool_choice go out, tool_calls (ids, parsed arguments) come back, invoked and streamed; ToolMessages go back as role "tool"', async () => {
      const mark = marker();
      fake.behave(() => ({ kind: 'reply', tool_calls: TOOL_CALLS, usage: USAGE }));
      const bound = chatModel().bindTools([weatherTool, timeTool], { tool_choice: 'required', parallel_tool_calls: true });
      const question = new HumanMessage(`Weather in Zürich, time in São Paulo? ${mark}`);
      const ai = await bound.invoke([question]);
      const [up] = upstreamWith(mark);
      assertForwardedAsSent(up, sentWith(mark));
      assert.deepEqual(up.body.tools, [weatherTool, timeTool]);
      assert.equal(up.body.tool_choice, 'required');
      assert.equal(up.body.parallel_tool_calls, true);
      assert.deepEqual(
        ai.tool_calls?.map(({ id, name, args }) => ({ id, name, args })),
        [
          { id: TOOL_CALLS[0].id, name: 'get_weather', args: { city: 'Zürich', unit: 'c' } },
          { id: TOOL_CALLS[1].id, name: 'get_time', args: { city: 'São Paulo "SP"' } },
        ],
      );
      assert.equal(ai.response_metadata.finish_reason, 'tool_calls');

      // Streamed the way OpenAI streams tool calls: LangChain's chunks reassemble them.
      const streamMark = marker();
      fake.behave(() => ({ kind: 'reply', tool_calls: TOOL_CALLS, tool_call_deltas: 'split', usage: USAGE }));
      let acc: AIMessageChunk | undefined;
      for await (const chunk of await bound.stream([new HumanMessage(`Again ${streamMark}`)])) acc = acc ? acc.concat(chunk) : chunk;
      assertForwardedAsSent(upstreamWith(streamMark)[0], sentWith(streamMark));
      assert.deepEqual(
        acc?.tool_calls?.map(({ id, name, args }) => ({ id, name, args })),
        ai.tool_calls?.map(({ id, name, args }) => ({ id, name, args })),
      );

      // The results go back as ToolMessages: the upstream sees role "tool" with the call ids.
      fake.behave(() => ({ kind: 'reply', content: 'Zürich: 12 °C; São Paulo: 14:05.', usage: USAGE }));
      const final = await bound.invoke([
        question,
        ai,
        new ToolMessage({ tool_call_id: TOOL_CALLS[0].id, content: '{"temp_c":12}' }),
        new ToolMessage({ tool_call_id: TOOL_CALLS[1].id, content: '14:05' }),
      ]);
      const up2 = upstreamWith(mark, 2)[1];
      assertForwardedAsSent(up2, sentWith(mark));
      const [, assistant, tool1, tool2] = up2.body.messages;
      assert.equal(assistant.role, 'assistant');
      assert.deepEqual(assistant.tool_calls, TOOL_CALLS, 'the tool calls go back with their ids and argument strings');
      assert.deepEqual(tool1, { role: 'tool', tool_call_id: TOOL_CALLS[0].id, content: '{"temp_c":12}' });
      assert.deepEqual(tool2, { role: 'tool', tool_call_id: TOOL_CALLS[1].id, content: '14:05' });
      assert.equal(final.content, 'Zürich: 12 °C; São Paulo: 14:05.');
    });

    test('withStructuredOutput: jsonSchema → response_format json_schema, jsonMode → json_object, functionCalling → a forced tool; each parsed', async () => {
      const schema = {
        type: 'object',
        title: 'verdict',
        description: 'A classification',
        properties: { category: { type: 'string' }, confidence: { type: 'number' } },
        required: ['category', 'confidence'],
        additionalProperties: false,
      };
      const expected = { category: 'billing', confidence: 0.93 };

      const jsonSchemaMark = marker();
      fake.behave(() => ({ kind: 'reply', content: JSON.stringify(expected), usage: USAGE }));
      const viaSchema = await chatModel()
        .withStructuredOutput(schema, { method: 'jsonSchema', name: 'verdict', strict: true })
        .invoke(`Classify: charged twice ${jsonSchemaMark}`);
      const [schemaUp] = upstreamWith(jsonSchemaMark);
      assertForwardedAsSent(schemaUp, sentWith(jsonSchemaMark));
      assert.equal(schemaUp.body.response_format.type, 'json_schema');
      assert.equal(schemaUp.body.response_format.json_schema.name, 'verdict');
      assert.equal(schemaUp.body.response_format.json_schema.strict, true);
      assert.deepEqual(schemaUp.body.response_format.json_schema.schema.properties, schema.properties);
      assert.deepEqual(viaSchema, expected);

      const jsonModeMark = marker();
      const viaJsonMode = await chatModel().withStructuredOutput(schema, { method: 'jsonMode' }).invoke(`Classify as JSON: charged twice ${jsonModeMark}`);
      const [modeUp] = upstreamWith(jsonModeMark);
      assertForwardedAsSent(modeUp, sentWith(jsonModeMark));
      assert.deepEqual(modeUp.body.response_format, { type: 'json_object' });
      assert.deepEqual(viaJsonMode, expected);

      const toolMark = marker();
      fake.behave(() => ({
        kind: 'reply',
        tool_calls: [{ id: 'call_Vx81', type: 'function', function: { name: 'verdict', arguments: JSON.stringify(expected) } }],
        usage: USAGE,
      }));
      const viaTool = await chatModel()
        .withStructuredOutput(schema, { method: 'functionCalling', name: 'verdict' })
        .invoke(`Classify with a tool: charged twice ${toolMark}`);
      const [toolUp] = upstreamWith(toolMark);
      assertForwardedAsSent(toolUp, sentWith(toolMark));
      assert.equal(toolUp.body.tools[0].function.name, 'verdict');
      assert.deepEqual(toolUp.body.tool_choice, { type: 'function', function: { name: 'verdict' } });
      assert.deepEqual(viaTool, expected);
    });
  });
});
