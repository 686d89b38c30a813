// The learned router: shared feature extraction, logistic regression, training (on a
// slice of the real RouteLLM data when ../shared/data is present), the artifact, and the
// classifier router plugin through buildRuntime + routeRequest, including hot reload of
// a changed model file.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildRuntime } from '../../src/policy/compile.ts';
import type { Runtime } from '../../src/policy/runtime.ts';
import { RuntimeManager } from '../../src/policy/reload.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { PolicyErrors } from '../../src/common/errors.ts';
import { requestView, routeRequest, type ChatBody } from '../../src/pipeline/route.ts';
import { compileExtractor, defaultFeatureSpec, specHash, specProblems } from '../../src/analysis/learn/features.ts';
import { auc, trainLogistic, predict } from '../../src/analysis/learn/logistic.ts';
import { artifactProblems, compileClassifier, type ClassifierArtifact } from '../../src/analysis/learn/artifact.ts';
import { trainClassifier, type TrainingRow } from '../../src/analysis/learn/train.ts';
import { loadTrainingRows } from '../../src/cli/commands/train.ts';
import type { ChatMessage } from '../../src/plugin-contract/plugin-api.ts';

const logger = createLogger({ level: 'silent' });
const DATA = path.resolve(import.meta.dirname, '../../../shared/data/routellm_gpt4_vs_mixtral.jsonl');
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
    return {
      id: String(i),
      messages: user(`${filler} ${(tiers.length === 2 ? ['easy', 'hard'] : ['easy', 'medium', 'hard'])[tier]} ${filler}`),
      quality: null,
      cost: tiers.map((_, t) => 10 ** t),
      labelTier: tier,
    };
  });
}

async function trainedArtifact(tiers: string[], rows = 120): Promise<ClassifierArtifact> {
  const { artifact } = await trainClassifier(labelledRows(tiers, rows), {
    tiers: tiers.map((name) => ({ name })),
    folds: 3,
    epochs: 8,
    dataHash: 'test',
    spec: defaultFeatureSpec({ ngrams: { n: [1, 2], buckets: 1 << 10, hash: 'fnv1a' } }),
  });
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
  const messages: ChatMessage[] = [
    { role: 'system', content: 'Be brief.' },
    ...user('Why does the river flow? Explain step by step.\n- one\n- two\n```js\nconst x = 1;\n```'),
  ];
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
  const dir = folder({
    'model.json': JSON.stringify(artifact),
    'default.yaml': policy(['small', 'large'], router()),
    'gateway.yaml': policy(['small', 'large'], router('\n      threshold: 0.5')),
    'strict.yaml': policy(['small', 'large'], router('\n      threshold: 1')),
  });
  const byDefault = await load(path.join(dir, 'default.yaml'));
  assert.equal(
    (byDefault.routes.get('qa')?.router.describe?.() as { threshold: number }).threshold,
    artifact.recommended_threshold,
    "no threshold in the policy: the artifact's recommended one",
  );
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
    'mapped.yaml': policy(
      ['s', 'm', 'l'],
      '      plugin: classifier\n      model_path: model.json\n      threshold: 0.5\n      tiers: { small: s, medium: m, large: l }',
    ),
  });
  const runtime = await load(path.join(dir, 'gateway.yaml'));
  assert.deepEqual(
    [
      (await routeText(runtime, 'cloud easy paper')).tier,
      (await routeText(runtime, 'cloud medium paper')).tier,
      (await routeText(runtime, 'cloud hard paper')).tier,
    ],
    ['small', 'medium', 'large'],
  );
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
  const modelPathLine =
    policy(['small', 'large'], router('x'))
      .split('\n')
      .findIndex((l) => l.includes('model_path')) + 1;
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
  const flipped: ClassifierArtifact = {
    ...artifact,
    models: artifact.models.map((m) => ({ ...m, bias: -m.bias, weights: { indices: m.weights.indices, values: m.weights.values.map((v) => -v) } })),
  };
  const dir = folder({
    'model.json': JSON.stringify(artifact),
    'gateway.yaml': policy(['small', 'large'], '      plugin: classifier\n      model_path: model.json\n      threshold: 0.5'),
  });
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

/** Outcome rows in two hidden groups told apart only by vocabulary: in "dense" prompts the strong tier wins 60 % of the time, in "plain" ones 10 %. */
function groupedRows(n: number): TrainingRow[] {
  const dense = ['integral', 'theorem', 'lemma', 'matrix', 'tensor'];
  const plain = ['lunch', 'garden', 'holiday', 'kitten', 'sunday'];
  return Array.from({ length: n }, (_, i) => {
    const group = i % 2 === 0 ? 'dense' : 'plain';
    const words = group === 'dense' ? dense : plain;
    const text = Array.from({ length: 5 }, (_, k) => (k % 2 ? WORDS[(i * 3 + k) % WORDS.length] : words[(i * 7 + k) % words.length])).join(' ');
    // A deterministic pseudo-random draw per row: the group sets the odds, not the words.
    const draw = ((i * 2654435761) >>> 0) / 2 ** 32;
    const strongWins = draw < (group === 'dense' ? 0.6 : 0.1);
    return { id: String(i), messages: user(text), quality: strongWins ? [0, 1] : [1, 1], cost: [1, 20], labelTier: null, group };
  });
}

test('rankingTargets: gain is 1 when the tier wins, ½ on a tie, 0 when a higher tier does better; label keeps 0/1', async () => {
  const { labelsOf, rankingTargets } = await import('../../src/analysis/learn/train.ts');
  const rows: TrainingRow[] = [
    { id: 'a', messages: user('a'), quality: [1, 0, 0], cost: [1, 2, 3], labelTier: null },
    { id: 'b', messages: user('b'), quality: [1, 1, 1], cost: [1, 2, 3], labelTier: null },
    { id: 'c', messages: user('c'), quality: [0, 0, 1], cost: [1, 2, 3], labelTier: null },
    { id: 'd', messages: user('d'), quality: [0.2, 0.9, 0.5], cost: [1, 2, 3], labelTier: null },
  ];
  const labels = labelsOf(rows, 3, 'no-loss', 0.5);
  const gain = rankingTargets(rows, labels, 'gain');
  assert.deepEqual([...gain[0]], [1, 0.5, 0, (1 + 0.2 - 0.9) / 2]);
  assert.deepEqual([...gain[1]], [0.5, 0.5, 0, 0.7]);
  assert.deepEqual([...rankingTargets(rows, labels, 'label')[0]], [...labels[0]]);
});

test('group prior: P(group | prompt) is learned from a training-only label, stacked into the calibration, and survives the JSON round trip', async () => {
  const rows = groupedRows(400);
  const spec = defaultFeatureSpec({ ngrams: { n: [1], buckets: 1 << 10, hash: 'fnv1a' } });
  const settings = { tiers: [{ name: 'small' }, { name: 'large' }], folds: 4, epochs: 6, dataHash: 'test', spec };
  const { artifact } = await trainClassifier(rows, { ...settings, groupPrior: { expression: 'group' } });
  const prior = artifact.group_prior;
  assert.ok(prior, 'the artifact carries the group prior');
  assert.deepEqual(prior.names, ['dense', 'plain']);
  const metrics = artifact.metrics as { group_prior: { held_out_group_accuracy: number; prior_weight: number[] } };
  assert.ok(metrics.group_prior.held_out_group_accuracy > 0.95, `held-out group accuracy ${metrics.group_prior.held_out_group_accuracy}`);
  assert.ok(metrics.group_prior.prior_weight[0] > 0, 'the calibration gives the prior positive weight');
  // P(small suffices): about 0.4 for dense prompts, 0.9 for plain ones, the group being read from the words alone.
  const model = compileClassifier(JSON.parse(JSON.stringify(artifact)) as ClassifierArtifact);
  const pDense = model.probabilities(user('theorem river matrix stone lemma'))[0];
  const pPlain = model.probabilities(user('garden river kitten stone lunch'))[0];
  assert.ok(pDense < 0.6 && pPlain > 0.8, `P(dense) ${pDense}, P(plain) ${pPlain}`);
  assert.deepEqual([...compileClassifier(artifact).probabilities(user('theorem lunch'))], [...model.probabilities(user('theorem lunch'))]);
  // A truncated weight blob is a located problem, not a silent misprediction.
  const broken = { ...artifact, group_prior: { ...prior, weights: { ...prior.weights, data: prior.weights.data.slice(0, 40) } } };
  assert.match(
    artifactProblems(broken)
      .map((p) => `${p.field}: ${p.message}`)
      .join('\n'),
    /group_prior\.weights\.data: .*must hold 1034 × 2 weights/,
  );
  // Without any group the prior cannot be learned: a clear error.
  await assert.rejects(
    trainClassifier(
      rows.map((r) => ({ ...r, group: 'same' })),
      { ...settings, groupPrior: { expression: 'group' } },
    ),
    /at least two groups.*only "same"/,
  );
});

test('int8 weights: encoding keeps each weight within half a quantisation step', async () => {
  const { encodeInt8, decodeInt8 } = await import('../../src/analysis/learn/artifact.ts');
  const K = 3;
  const weights = Float32Array.from({ length: 30 }, (_, i) => Math.sin(i * 1.7) * (1 + (i % K)));
  const encoded = encodeInt8(weights, K);
  const decoded = decodeInt8(encoded, K, 10);
  weights.forEach((w, i) => assert.ok(Math.abs(decoded[i] - w) <= encoded.scales[i % K] / 2 + 1e-6, `weight ${i}: ${w} → ${decoded[i]}`));
});

test('L2 candidates: the one with the best held-out APGR is trained on every row, and all are reported', async () => {
  const rows = groupedRows(300);
  const spec = defaultFeatureSpec({ ngrams: { n: [1], buckets: 1 << 10, hash: 'fnv1a' } });
  const { artifact } = await trainClassifier(rows, {
    tiers: [{ name: 'small' }, { name: 'large' }],
    folds: 3,
    epochs: 6,
    dataHash: 'test',
    spec,
    l2: [1e-4, 5],
  });
  const metrics = artifact.metrics as { l2: number; held_out_apgr: number; l2_candidates: Array<{ l2: number; held_out_apgr: number }> };
  assert.deepEqual(
    metrics.l2_candidates.map((c) => c.l2),
    [1e-4, 5],
  );
  const best = metrics.l2_candidates.reduce((a, b) => (b.held_out_apgr > a.held_out_apgr ? b : a));
  assert.equal(metrics.l2, best.l2);
  assert.equal(metrics.held_out_apgr, best.held_out_apgr);
  // A strength of 5 flattens the text model: the words' signal is lost.
  assert.equal(metrics.l2, 1e-4, JSON.stringify(metrics.l2_candidates));
});

test('quantileThresholds: both ends and the values at evenly spaced ranks, ascending', async () => {
  const { quantileThresholds } = await import('../../src/analysis/metrics.ts');
  const values = Array.from({ length: 1000 }, (_, i) => 0.7 + (i / 1000) * 0.2);
  const t = quantileThresholds(values, 11);
  assert.equal(t.length, 11);
  assert.equal(t[0], 0);
  assert.equal(t[10], 1);
  for (let i = 1; i < t.length; i++) assert.ok(t[i] > t[i - 1]);
  assert.ok(Math.abs(t[5] - 0.8) < 0.01, `median threshold ${t[5]}`);
});
