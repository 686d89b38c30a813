// The classifier router over real HTTP: a gateway serving a policy whose route uses a
// model trained here (src/analysis/learn/train.ts on a few synthetic rows), the official openai
// SDK as the client, the offline simulator as the upstream. A short easy prompt and a
// long reasoning-heavy one must land on different tiers, visible in the x-tiergate-*
// headers and in the decision log's reason; editing the model file hot-reloads it.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { trainClassifier, type TrainingRow } from '../../src/analysis/learn/train.ts';
import { defaultFeatureSpec } from '../../src/analysis/learn/features.ts';
import type { ClassifierArtifact } from '../../src/analysis/learn/artifact.ts';
import { simulatorPolicy, startTestGateway, type TestGateway } from '../support/gateway.ts';

const gateways: TestGateway[] = [];
after(async () => {
  for (const tg of gateways) await tg.close();
});

const EASY = ['Hi there!', 'What is the capital of France?', 'Say hello.', 'Translate "cat" to Spanish.', 'What day comes after Monday?', 'Name a colour.'];
const STEPS = [
  'First, define the terms carefully.',
  'Then prove each lemma and explain why it holds.',
  'Calculate the bound and justify every step.',
  'Finally derive the result and check it against a counterexample.',
];
const HARD_TOPICS = [
  'the convergence of the series',
  'the correctness of Dijkstra on graphs with zero-weight edges',
  'why the Bellman equation has a unique fixed point',
  'the expected number of coin flips before two heads in a row',
  'the time complexity of the sieve of Eratosthenes',
];

/** A long, reasoning-heavy prompt: many words, many why/prove/calculate/step cues. */
function hardPrompt(i: number): string {
  const topic = HARD_TOPICS[i % HARD_TOPICS.length];
  return `Explain step by step, and prove rigorously, ${topic}. ${Array.from({ length: 6 }, (_, k) => STEPS[(i + k) % STEPS.length]).join(' ')} Why does the argument fail if an assumption is dropped? Reason carefully through each case before answering.`;
}

/** Rows where the short easy prompts were fine on the small tier and the long reasoning ones needed the large. */
function rows(): TrainingRow[] {
  return Array.from({ length: 80 }, (_, i) => {
    const easy = i % 2 === 0;
    const content = easy ? EASY[(i / 2) % EASY.length] : hardPrompt(i);
    return { id: String(i), messages: [{ role: 'user', content }], quality: null, cost: [1, 20], labelTier: easy ? 0 : 1 };
  });
}

/** The same model upside down: what it sent small now goes large. */
function flipped(artifact: ClassifierArtifact): ClassifierArtifact {
  return {
    ...artifact,
    models: artifact.models.map((m) => ({ ...m, bias: -m.bias, weights: { indices: m.weights.indices, values: m.weights.values.map((v) => -v) } })),
  };
}

function policy(): string {
  return simulatorPolicy({
    routes: `  qa:
    router:
      plugin: classifier
      model_path: models/router.json
      threshold: 0.5
    default: large`,
  });
}

async function ask(openai: OpenAI, content: string) {
  const { data, response } = await openai.chat.completions.create({ model: 'qa', messages: [{ role: 'user', content }] }).withResponse();
  return {
    text: data.choices[0].message.content,
    tier: response.headers.get('x-tiergate-tier'),
    model: response.headers.get('x-tiergate-model'),
    route: response.headers.get('x-tiergate-route'),
    decisionId: response.headers.get('x-tiergate-decision-id'),
    version: response.headers.get('x-tiergate-policy-version'),
  };
}

const EASY_PROMPT = 'What is the capital of Italy?';
const HARD_PROMPT = hardPrompt(3);

test('classifier router over HTTP: an easy prompt goes small, a reasoning-heavy one large, with the reason in the decision log; a new model file hot-reloads', async () => {
  const { artifact } = await trainClassifier(rows(), {
    tiers: [{ name: 'small' }, { name: 'large' }],
    folds: 3,
    epochs: 8,
    dataHash: 'test',
    spec: defaultFeatureSpec({ ngrams: { n: [1], buckets: 1 << 10, hash: 'fnv1a' } }),
  });
  const tg = await startTestGateway(policy(), { watch: true, debounceMs: 40, files: { 'models/router.json': JSON.stringify(artifact) } });
  gateways.push(tg);
  const openai = new OpenAI({ baseURL: tg.baseURL, apiKey: 'x', maxRetries: 0, timeout: 15_000 });

  const easy = await ask(openai, EASY_PROMPT);
  assert.deepEqual({ route: easy.route, tier: easy.tier, model: easy.model }, { route: 'qa', tier: 'small', model: 'small-model' });
  assert.ok(easy.text, 'the simulator answered');
  const hard = await ask(openai, HARD_PROMPT);
  assert.deepEqual({ route: hard.route, tier: hard.tier, model: hard.model }, { route: 'qa', tier: 'large', model: 'large-model' });

  const [easyLine, hardLine] = [await tg.waitForDecision(easy.decisionId), await tg.waitForDecision(hard.decisionId)];
  assert.match(easyLine.routing_reason, /^classifier: small at [01]\.\d\d \(P\(small suffices\) [01]\.\d\d ≥ 0\.5\)$/);
  assert.match(hardLine.routing_reason, /^classifier: large at [01]\.\d\d \(P\(small suffices\) [01]\.\d\d < 0\.5\)$/);
  assert.deepEqual([easyLine.routed_tier, hardLine.routed_tier], ['small', 'large']);

  // Editing the model file (the policy untouched) reloads it; the served tiers follow the new model.
  const before = easy.version;
  writeFileSync(path.join(tg.dir, 'models/router.json'), JSON.stringify(flipped(artifact)));
  const deadline = Date.now() + 5000;
  let after = await ask(openai, EASY_PROMPT);
  while (after.version === before && Date.now() < deadline) {
    await sleep(20);
    after = await ask(openai, EASY_PROMPT);
  }
  assert.notEqual(after.version, before, 'no reload within 5 s of the model file changing');
  assert.deepEqual({ tier: after.tier, model: after.model }, { tier: 'large', model: 'large-model' });
  assert.equal((await ask(openai, HARD_PROMPT)).tier, 'small');
  const reloaded = await tg.waitForDecision(after.decisionId);
  assert.match(reloaded.routing_reason, /^classifier: large at [01]\.\d\d /);
  assert.equal(reloaded.policy_version, after.version);
});
