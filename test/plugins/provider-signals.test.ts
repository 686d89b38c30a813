// What a provider's calls leave behind once they are over: nothing. A provider that
// combined each call's signal with a signal of its own lifetime (AbortSignal.any) left a
// WeakRef on the long-lived signal per call, and Node 20 never drops them: the heap grew
// with traffic (about 1.7 MB per 30,000 calls). Counted here, not timed: the live WeakRefs
// Node's abort signals keep, before and after a few hundred calls of each provider (the
// soak, `npm run soak`, shows the heap over hundreds of thousands of requests).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import anthropic from '../../plugins/providers/anthropic/index.ts';
import azureOpenAI from '../../plugins/providers/azure_openai/index.ts';
import bedrock from '../../plugins/providers/bedrock/index.ts';
import gemini from '../../plugins/providers/gemini/index.ts';
import openai from '../../plugins/providers/openai/index.ts';
import openaiCompatible from '../../plugins/providers/openai_compatible/index.ts';
import simulator from '../../plugins/providers/simulator/index.ts';
import { isUpstreamError, type ChatRequest, type ModelSpec, type Provider } from '../../src/plugin-contract/plugin-api.ts';
import { collect, testPluginContext } from '../support/plugin-context.ts';
import { startFakeAnthropic, type FakeAnthropic } from '../support/fake-anthropic.ts';
import { startFakeBedrock, type FakeBedrock } from '../support/fake-bedrock.ts';
import { startFakeGemini, type FakeGemini } from '../support/fake-gemini.ts';
import { startFakeOpenAI, type FakeOpenAI } from '../support/fake-openai.ts';

const CALLS = 150;

/**
 * The constructor of the WeakRefs an AbortSignal keeps to the signals made from it: Node's
 * internal subclass of WeakRef, found on a signal it has just been given one.
 */
function signalWeakRefClass(): new (...args: never[]) => object {
  const source = new AbortController().signal;
  AbortSignal.any([source]);
  const dependants = Object.getOwnPropertySymbols(source).find((s) => s.description === 'kDependantSignals');
  assert.ok(dependants, "this Node keeps a signal's dependants where the test looks for them");
  const first = [...(source as unknown as Record<symbol, Set<object>>)[dependants]][0];
  return first.constructor as new (...args: never[]) => object;
}

/** Live objects of that class (queryObjects collects garbage first). */
function liveSignalWeakRefs(): number {
  return v8.queryObjects(signalWeakRefClass(), { format: 'count' }) as number;
}

const model = (upstream: string): ModelSpec => ({
  name: upstream,
  provider: 'p',
  upstream,
  price: { input_per_mtok: 1, output_per_mtok: 2 },
  timeout_ms: 5000,
});
const chat = (upstream: string): ChatRequest => ({ model: upstream, messages: [{ role: 'user', content: 'where is my parcel?' }] });

/**
 * CALLS calls, two in three complete and one in three streamed, each with a signal of its
 * own as the host gives it. A call that finds its kept-alive connection closed is made
 * again, as the host's failover would: counting walks the heap, and on a loaded machine the
 * fake upstream may close an idle connection meanwhile.
 */
async function exercise(provider: Provider, upstream: string): Promise<void> {
  for (let i = 0; i < CALLS; i++) {
    for (let attempt = 1; ; attempt++) {
      const call = { model: model(upstream), signal: new AbortController().signal };
      try {
        if (i % 3 === 2) assert.ok((await collect(provider.stream(chat(upstream), call))).length > 0);
        else assert.ok((await provider.complete(chat(upstream), call)).choices.length > 0);
        break;
      } catch (err) {
        if (attempt > 1 || !isUpstreamError(err) || err.failure !== 'connection') throw err;
      }
    }
  }
}

describe('provider calls leave nothing on a signal that outlives them', () => {
  let fakeAnthropic: FakeAnthropic;
  let fakeOpenAI: FakeOpenAI;
  let fakeGemini: FakeGemini;
  let fakeBedrock: FakeBedrock;
  before(async () => {
    fakeAnthropic = await startFakeAnthropic();
    fakeOpenAI = await startFakeOpenAI();
    fakeGemini = await startFakeGemini();
    fakeBedrock = await startFakeBedrock();
  });
  after(async () => {
    await fakeAnthropic.close();
    await fakeOpenAI.close();
    await fakeGemini.close();
    await fakeBedrock.close();
  });

  const ctx = testPluginContext({ at: 'providers.p' });
  const providers: Array<[string, () => Promise<Provider>, string]> = [
    ['anthropic', () => anthropic.create({ api_key: 'sk-ant-0123456789', base_url: fakeAnthropic.baseURL }, ctx), 'claude-x'],
    ['openai', () => openai.create({ api_key: 'sk-0123456789', base_url: fakeOpenAI.baseURL }, ctx), 'gpt-x'],
    ['openai_compatible', () => openaiCompatible.create({ base_url: fakeOpenAI.baseURL }, ctx), 'gpt-x'],
    ['azure_openai', () => azureOpenAI.create({ endpoint: fakeOpenAI.baseURL.replace(/\/v1$/, ''), api_key: 'azure-key-0123456789' }), 'gpt-x'],
    // Before each call had a signal of its own, gemini and bedrock combined it with one of the provider's lifetime (AbortSignal.any).
    ['gemini', () => gemini.create({ api_key: 'gemini-key-0123456789', base_url: fakeGemini.baseURL }, ctx), 'gemini-x'],
    [
      'bedrock',
      () => bedrock.create({ region: 'us-east-1', endpoint: fakeBedrock.endpoint, access_key_id: 'AKIDTEST', secret_access_key: 'test-secret-0123456789' }),
      'bedrock.x-v1',
    ],
    [
      'simulator',
      () => simulator.create({ time_scale: 0, profiles: { 'sim-x': { capability: 0.9, first_token_ms: 1, tokens_per_second: 100 } } }, ctx),
      'sim-x',
    ],
  ];

  for (const [id, create, upstream] of providers)
    test(`${id}: ${CALLS} calls, and no more live WeakRefs than before`, async () => {
      const provider = await create();
      try {
        await exercise(provider, upstream); // warm-up: pools, SDK state, lazily built things
        const before = liveSignalWeakRefs();
        await exercise(provider, upstream);
        const grown = liveSignalWeakRefs() - before;
        assert.ok(grown < CALLS / 10, `${grown} WeakRefs still live after ${CALLS} calls`);
      } finally {
        await provider.dispose();
      }
    });
});
