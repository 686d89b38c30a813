// The learned router: shared feature extraction, logistic regression, training (on a
// slice of the real RouteLLM data when ../shared/data is present), the artifact, and the
// classifier router plugin through buildRuntime + routeRequest, including hot reload of
// a changed model file.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildRuntime, type Runtime } from '../src/runtime.ts';
import { RuntimeManager } from '../src/reload.ts';
import { createLogger } from '../src/logger.ts';
import { PolicyErrors } from '../src/errors.ts';
import { requestView, routeRequest, type ChatBody } from '../src/routing.ts';
import { compileExtractor, defaultFeatureSpec, specHash, specProblems } from '../src/learn/features.ts';
import { auc, trainLogistic, predict } from '../src/learn/logistic.ts';
import { artifactProblems, compileClassifier, type ClassifierArtifact } from '../src/learn/artifact.ts';
import { trainClassifier, type TrainingRow } from '../src/learn/train.ts';
import { loadTrainingRows } from '../src/commands/train.ts';
import type { ChatMessage } from '../src/plugin-api.ts';

const logger = createLogger({ level: 'silent' });
const DATA = path.resolve(import.meta.dirname, '../../shared/data/routellm_gpt4_vs_mixtral.jsonl');
const dirs: string[] = [];
const runtimes: Runtime[] = [];
after(async () => {
  for (const r of runtimes) await r.dispose();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const user = (content: string): ChatMessage[] => [{ role: 'user', content }];
const WORDS = ['apple', 'river', 'stone', 'cloud', 'paper', 'light', 'green', 'table', 'music', 'horse'];

/** Labelled rows: the tier word decides, the filler words are noise. */
function labelledRows(tiers: string[], n: number): TrainingRow[] {
  return Array.from({ length: n }, (_, i) => {
    const tier = i % tiers.length;
    const filler = Array.from({ length: 6 }, (_, k) => WORDS[(i * 7 + k * 3) % WORDS.length]).join(' ');
    return { id: String(i), messages: user(`${filler} ${(tiers.length === 2 ? ['easy', 'hard'] : ['easy', 'medium', 'hard'])[tier]} ${filler}`), quality: null, cost: tiers.map((_, t) => 10 ** t), labelTier: tier };
  });
}

async function trainedArtifact(tiers: string[], rows = 120): Promise<ClassifierArtifact> {
  const { artifact } = await trainClassifier(labelledRows(tiers, rows), { tiers: tiers.map((name) => ({ name })), folds: 3, epochs: 8, dataHash: 'test', spec: defaultFeatureSpec({ ngrams: { n: [1, 2], buckets: 1 << 10, hash: 'fnv1a' } }) });
  return artifact;
}

function policy(tiers: string[], router: string): string {
  return `version: 1
providers:
  sim:
    plugin: simulator
    time_scale: 0
    default_profile: { capability: 0.8, first_token_ms: 1, tokens_per_second: 1000 }
models:
${tiers.map((t) => `  ${t}-model: { provider: sim, upstream: sim-${t}, price: { input_per_mtok: 1, output_per_mtok: 1 } }`).join('\n')}
tiers:
${tiers.map((t) => `  - { name: ${t}, models: [${t}-model] }`).join('\n')}
routes:
  qa:
    router:
${router}
    default: ${tiers[tiers.length - 1]}
analytics:
  decision_log: { file: null }
`;
}

function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-classifier-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

async function load(file: string): Promise<Runtime> {
  const runtime = await buildRuntime(file, { logger, mode: 'validate' });
  runtimes.push(runtime);
  return runtime;
}

async function routeText(runtime: Runtime, text: string) {
  const body = { model: 'qa', messages: user(text) } as ChatBody;
  return routeRequest(runtime, body, requestView(body, {}, []));
}

async function policyErrors(file: string): Promise<PolicyErrors> {
  try {
    await load(file);
  } catch (err) {
    assert.ok(err instanceof PolicyErrors, String(err));
    return err;
  }
  assert.fail('the policy loaded');
}

test('features: extraction is deterministic and sparse; the spec hash is stable and sensitive', () => {
  const spec = defaultFeatureSpec();
  const extractor = compileExtractor(spec);
  const messages: ChatMessage[] = [{ role: 'system', content: 'Be brief.' }, ...user('Why does the river flow? Explain step by step.\n- one\n- two\n```js\nconst x = 1;\n```')];
  const a = extractor.extract(messages);
  const b = compileExtractor(defaultFeatureSpec()).extract(messages);
  assert.deepEqual([...a.indices], [...b.indices]);
  assert.deepEqual([...a.values], [...b.values]);
  assert.equal(new Set(a.indices).size, a.indices.length, 'each index once');
  const builtin = (name: string) => a.values[[...a.indices].indexOf(spec.ngrams.buckets + spec.builtins.indexOf(name))];
  assert.equal(builtin('has_code'), 1);
  assert.ok(builtin('reasoning_cues') > 0);
  assert.ok(builtin('question_marks') > 0);
  assert.ok(builtin('list_structure') > 0);
  assert.notDeepEqual([...extractor.extract(user('something else entirely')).indices], [...a.indices]);
  assert.equal(specHash(spec), specHash(defaultFeatureSpec()));
  assert.notEqual(specHash(spec), specHash(defaultFeatureSpec({ ngrams: { n: [1, 2], buckets: 1 << 12, hash: 'fnv1a' } })));
  assert.match(specProblems({ ...spec, builtins: ['tokens', 'telepathy'] })[0].message, /unknown built-in feature "telepathy"/);
  assert.match(specProblems({ ...spec, version: 99 })[0].field, /feature_spec.version/);
});

test('logistic regression learns a separable problem (AUC ≈ 1)', () => {
  const extractor = compileExtractor(defaultFeatureSpec({ ngrams: { n: [1], buckets: 256, hash: 'fnv1a' } }));
  const xs = Array.from({ length: 200 }, (_, i) => extractor.extract(user(`${WORDS[i % 10]} ${i % 2 ? 'alpha' : 'beta'} ${WORDS[(i * 3) % 10]}`)));
  const ys = Array.from({ length: 200 }, (_, i) => i % 2);
  const model = trainLogistic(xs, ys, { dimension: extractor.dimension, epochs: 10 });
  const p = xs.map((x) => predict(model, x));
  assert.ok((auc(p, ys) as number) > 0.99, `AUC ${auc(p, ys)}`);
  // Deterministic: the same data and seed give the same weights.
  const again = trainLogistic(xs, ys, { dimension: extractor.dimension, epochs: 10 });
  assert.deepEqual([...again.weights], [...model.weights]);
});

test('training on a slice of real RouteLLM data beats random (held-out AUC > 0.55)', async (t) => {
  if (!existsSync(DATA)) {
    t.skip(`${DATA} is absent: the real-data part is skipped (see ../shared/data/README.md)`);
    return;
  }
  const ladder = [
    { name: 'small', dataset_model: 'mistralai/Mixtral-8x7B-Instruct-v0.1', relative_cost: 1 },
    { name: 'large', dataset_model: 'gpt-4-1106-preview', relative_cost: 20 },
  ];
  const loaded = await loadTrainingRows(DATA, ladder, { split: 'train', where: "source = 'mmlu' and meta.routellm_contaminated != true" });
  const slice = loaded.rows.filter((_, i) => i % 3 === 0);
  assert.ok(slice.length > 1500, `${slice.length} rows`);
  const { artifact } = await trainClassifier(slice, { tiers: loaded.tiers, folds: 3, epochs: 6, dataHash: loaded.dataHash });
  const m = (artifact.metrics as { per_tier: Array<{ auc: number; ece: number }> }).per_tier[0];
  assert.ok(m.auc > 0.55, `held-out AUC ${m.auc}`);
  assert.ok(m.ece < 0.1, `ECE ${m.ece}`);
  assert.equal(artifact.training_data_sha256.length, 64);
});

test('artifact: JSON round trip predicts the same; training reports metrics and a recommended threshold', async () => {
  const artifact = await trainedArtifact(['small', 'large']);
  const copy = JSON.parse(JSON.stringify(artifact)) as ClassifierArtifact;
  assert.deepEqual(artifactProblems(copy), []);
  const a = compileClassifier(artifact).probabilities(user('river easy stone'));
  const b = compileClassifier(copy).probabilities(user('river easy stone'));
  assert.deepEqual([...a], [...b]);
  assert.ok(a[0] > 0.5, `P(small suffices | easy) = ${a[0]}`);
  assert.ok(artifact.recommended_threshold >= 0 && artifact.recommended_threshold <= 1);
  assert.ok(Array.isArray(artifact.cost_quality) && artifact.cost_quality.length >= 11);
  assert.match(artifactProblems({ ...copy, feature_spec_hash: 'edited' })[0].message, /does not match/);
});

test('classifier router: routes by the model with a reason; the policy threshold overrides the artifact', async () => {
  const artifact = await trainedArtifact(['small', 'large']);
  const router = (extra = '') => `      plugin: classifier\n      model_path: model.json${extra}`;
  const dir = folder({ 'model.json': JSON.stringify(artifact), 'default.yaml': policy(['small', 'large'], router()), 'gateway.yaml': policy(['small', 'large'], router('\n      threshold: 0.5')), 'strict.yaml': policy(['small', 'large'], router('\n      threshold: 1')) });
  const byDefault = await load(path.join(dir, 'default.yaml'));
  assert.equal((byDefault.routes.get('qa')?.router.describe?.() as { threshold: number }).threshold, artifact.recommended_threshold, 'no threshold in the policy: the artifact\'s recommended one');
  const runtime = await load(path.join(dir, 'gateway.yaml'));
  assert.equal((runtime.routes.get('qa')?.router.describe?.() as { threshold: number }).threshold, 0.5);
  const easy = await routeText(runtime, 'apple easy river');
  assert.equal(easy.tier, 'small');
  assert.match(easy.reason, /^classifier: small at [01]\.\d\d/);
  assert.ok((easy.confidence as number) > 0.5);
  const hard = await routeText(runtime, 'apple hard river');
  assert.equal(hard.tier, 'large');
  assert.match(hard.reason, /^classifier: large at [01]\.\d\d/);
  const strict = await load(path.join(dir, 'strict.yaml'));
  assert.equal((await routeText(strict, 'apple easy river')).tier, 'large', 'threshold 1 from the policy sends everything up');
});

test('classifier router: a three-tier ladder, and tier names mapped onto the policy', async () => {
  const artifact = await trainedArtifact(['small', 'medium', 'large'], 180);
  const dir = folder({
    'model.json': JSON.stringify(artifact),
    'gateway.yaml': policy(['small', 'medium', 'large'], '      plugin: classifier\n      model_path: model.json\n      threshold: 0.5'),
    'mapped.yaml': policy(['s', 'm', 'l'], '      plugin: classifier\n      model_path: model.json\n      threshold: 0.5\n      tiers: { small: s, medium: m, large: l }'),
  });
  const runtime = await load(path.join(dir, 'gateway.yaml'));
  assert.deepEqual([(await routeText(runtime, 'cloud easy paper')).tier, (await routeText(runtime, 'cloud medium paper')).tier, (await routeText(runtime, 'cloud hard paper')).tier], ['small', 'medium', 'large']);
  const mapped = await load(path.join(dir, 'mapped.yaml'));
  assert.equal((await routeText(mapped, 'cloud medium paper')).tier, 'm');
});

test('classifier router: feature-spec mismatch, unknown tier and missing file are located errors', async () => {
  const artifact = await trainedArtifact(['small', 'large'], 60);
  const future = { ...artifact, feature_spec: { ...artifact.feature_spec, version: 2 } };
  const alien = { ...artifact, feature_spec: { ...artifact.feature_spec, builtins: [...artifact.feature_spec.builtins, 'sentiment'] } };
  const router = (file: string) => `      plugin: classifier\n      model_path: ${file}`;
  const dir = folder({
    'future.json': JSON.stringify(future),
    'alien.json': JSON.stringify(alien),
    'model.json': JSON.stringify(artifact),
    'future.yaml': policy(['small', 'large'], router('future.json')),
    'alien.yaml': policy(['small', 'large'], router('alien.json')),
    'tiers.yaml': policy(['cheap', 'large'], router('model.json')),
    'missing.yaml': policy(['small', 'large'], router('nowhere.json')),
  });
  const modelPathLine = policy(['small', 'large'], router('x')).split('\n').findIndex((l) => l.includes('model_path')) + 1;
  for (const [file, pattern] of [
    ['future.yaml', /feature spec version 2 is not one this tiergate computes/],
    ['alien.yaml', /unknown built-in feature "sentiment"/],
    ['tiers.yaml', /tier "small" is not in the policy/],
    ['missing.yaml', /cannot read the model/],
  ] as const) {
    const errors = await policyErrors(path.join(dir, file));
    assert.equal(errors.errors[0].code, 'TG_ERR_PLUGIN_OPTIONS', file);
    assert.match(errors.errors[0].message, pattern, file);
    assert.equal(errors.errors[0].location?.line, modelPathLine, `${file}: ${errors.errors[0].located()}`);
  }
});

test('classifier router: a changed model file reloads the policy (reload and watcher)', async () => {
  const artifact = await trainedArtifact(['small', 'large']);
  const flipped: ClassifierArtifact = { ...artifact, models: artifact.models.map((m) => ({ ...m, bias: -m.bias, weights: { indices: m.weights.indices, values: m.weights.values.map((v) => -v) } })) };
  const dir = folder({ 'model.json': JSON.stringify(artifact), 'gateway.yaml': policy(['small', 'large'], '      plugin: classifier\n      model_path: model.json\n      threshold: 0.5') });
  const manager = await RuntimeManager.start(path.join(dir, 'gateway.yaml'), { logger, mode: 'validate', debounceMs: 20 });
  try {
    assert.equal((await routeText(manager.runtime, 'apple easy river')).tier, 'small');
    assert.ok(manager.runtime.watchFiles.includes(path.join(dir, 'model.json')));
    assert.equal((await manager.reload('admin')).outcome, 'unchanged', 'nothing changed');
    writeFileSync(path.join(dir, 'model.json'), JSON.stringify(flipped));
    const result = await manager.reload('admin');
    assert.equal(result.outcome, 'applied');
    assert.equal((await routeText(manager.runtime, 'apple easy river')).tier, 'large', 'the new model decides');

    // The watcher: a changed model file alone (policy untouched) reloads by itself.
    manager.watch();
    const before = manager.runtime.version;
    const applied = new Promise<void>((resolve) => manager.onReload((r) => r.outcome === 'applied' && resolve()));
    writeFileSync(path.join(dir, 'model.json'), JSON.stringify(artifact));
    await Promise.race([applied, new Promise((_, reject) => setTimeout(() => reject(new Error('no reload within 5 s')), 5000))]);
    assert.notEqual(manager.runtime.version, before);
    assert.equal((await routeText(manager.runtime, 'apple easy river')).tier, 'small');

    // A broken model file is rejected and the previous model keeps serving.
    writeFileSync(path.join(dir, 'model.json'), '{ not json');
    const rejected = await manager.reload('admin');
    assert.equal(rejected.outcome, 'rejected');
    assert.match(rejected.errors?.[0] ?? '', /not JSON/);
    assert.equal((await routeText(manager.runtime, 'apple easy river')).tier, 'small');
  } finally {
    await manager.close();
  }
});
