// The classifier router's model artifact: what `tiergate train` writes and the
// classifier plugin loads. One-vs-rest over the ladder: for every tier but the top, a
// logistic model of "this tier's answer suffices", Platt-calibrated on held-out folds.
// A request goes to the cheapest tier whose calibrated probability reaches the threshold,
// else to the top tier.
//
// Optionally a group prior: a softmax topic model P(group | prompt), trained on a label
// the training rows carry (an MMLU subject, a product area) but requests do not, and per
// tier the mean outcome in each group. Its logit enters the calibration next to the text
// model's score, weighted as the held-out folds say. Serving needs only the prompt.
import type { ChatMessage } from '../../plugin-contract/plugin-api.ts';
import { compileExtractor, dimensionOf, specHash, specProblems, type Extractor, type FeatureSpec } from './features.ts';
import { applyPlatt, logit, softmaxScores, type Platt, type SoftmaxModel } from './logistic.ts';

export const ARTIFACT_FORMAT = 'tiergate-classifier';
export const ARTIFACT_VERSION = 1;

export interface TierModel {
  /** The tier this model judges: P(its answer suffices). */
  tier: string;
  bias: number;
  /** Non-zero weights only. */
  weights: { indices: number[]; values: number[] };
  platt: Platt;
}

export interface GroupPrior {
  /** The training rows' expression the groups came from (for the record). */
  expression: string;
  names: string[];
  bias: number[];
  /**
   * Dense weights (feature-major: index = feature × groups + group), quantised to int8 with
   * one scale per group and base64-encoded: a softmax touches every group for every
   * feature seen, so nearly all weights are non-zero and a JSON list would be ten times larger.
   */
  weights: { encoding: 'int8-base64'; scales: number[]; data: string };
  /** rates[t][g]: the mean training outcome of tier t in group g (smoothed toward the tier's overall mean). */
  rates: number[][];
}

export interface ClassifierArtifact {
  format: typeof ARTIFACT_FORMAT;
  version: number;
  created: string;
  feature_spec: FeatureSpec;
  feature_spec_hash: string;
  /** The ladder, cheapest first, as trained. */
  tiers: Array<{ name: string; dataset_model?: string | null; mean_cost?: number | null }>;
  models: TierModel[];
  group_prior?: GroupPrior;
  calibration: 'platt';
  /** What the text models were fitted to: `gain` (soft: (1 + q_tier − q_best_above) / 2) or `label` (the 0/1 label). */
  objective?: string;
  label: string;
  quality_target: number | null;
  training_data_sha256: string;
  training_rows: number;
  metrics: Record<string, unknown>;
  recommended_threshold: number;
  target: { kind: string; value: number | number[] } | null;
  cost_quality?: unknown[];
}

/** Problems of an artifact, each with the field it is about (relative to the artifact). */
export function artifactProblems(data: unknown): Array<{ field: string; message: string }> {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return [{ field: '', message: 'the model is not a JSON object' }];
  const a = data as Partial<ClassifierArtifact>;
  if (a.format !== ARTIFACT_FORMAT) return [{ field: 'format', message: `not a ${ARTIFACT_FORMAT} artifact (format ${JSON.stringify(a.format)})` }];
  if (a.version !== ARTIFACT_VERSION)
    return [{ field: 'version', message: `artifact version ${JSON.stringify(a.version)} is not supported (${ARTIFACT_VERSION})` }];
  const problems = specProblems(a.feature_spec);
  if (problems.length === 0 && a.feature_spec_hash !== undefined && a.feature_spec_hash !== specHash(a.feature_spec as FeatureSpec)) {
    problems.push({
      field: 'feature_spec_hash',
      message: `feature_spec_hash ${a.feature_spec_hash} does not match the feature spec (${specHash(a.feature_spec as FeatureSpec)}): the artifact was edited or is corrupt`,
    });
  }
  if (!Array.isArray(a.tiers) || a.tiers.length < 2 || !a.tiers.every((t) => t && typeof t.name === 'string'))
    problems.push({ field: 'tiers', message: 'tiers must list at least two named tiers, cheapest first' });
  else if (!Array.isArray(a.models) || a.models.length !== a.tiers.length - 1)
    problems.push({
      field: 'models',
      message: `expected one model per tier below the top (${a.tiers.length - 1}), found ${Array.isArray(a.models) ? a.models.length : 'none'}`,
    });
  else {
    a.models.forEach((m, i) => {
      if (!m || m.tier !== a.tiers![i].name) problems.push({ field: `models.${i}.tier`, message: `model ${i} must be for tier "${a.tiers![i].name}"` });
      else if (
        !m.weights ||
        !Array.isArray(m.weights.indices) ||
        !Array.isArray(m.weights.values) ||
        m.weights.indices.length !== m.weights.values.length ||
        typeof m.bias !== 'number' ||
        !m.platt ||
        typeof m.platt.a !== 'number'
      )
        problems.push({ field: `models.${i}`, message: 'model needs bias, weights {indices, values} and platt {a, b}' });
    });
  }
  if (a.group_prior !== undefined)
    problems.push(
      ...groupPriorProblems(
        a.group_prior,
        Array.isArray(a.tiers) ? a.tiers.length - 1 : 0,
        problems.length === 0 ? dimensionOf(a.feature_spec as FeatureSpec) : null,
      ),
    );
  if (typeof a.recommended_threshold !== 'number' || !(a.recommended_threshold >= 0 && a.recommended_threshold <= 1))
    problems.push({ field: 'recommended_threshold', message: 'recommended_threshold must be a number in [0, 1]' });
  return problems;
}

function groupPriorProblems(g: unknown, tiersBelowTop: number, dimension: number | null): Array<{ field: string; message: string }> {
  const at = 'group_prior';
  if (g === null || typeof g !== 'object') return [{ field: at, message: 'group_prior must be an object' }];
  const p = g as Partial<GroupPrior>;
  const K = Array.isArray(p.names) ? p.names.length : 0;
  if (K < 2 || !p.names!.every((n) => typeof n === 'string'))
    return [{ field: `${at}.names`, message: 'group_prior.names must list at least two group names' }];
  if (!Array.isArray(p.bias) || p.bias.length !== K || !p.bias.every(Number.isFinite))
    return [{ field: `${at}.bias`, message: `group_prior.bias must hold ${K} numbers, one per group` }];
  const w = p.weights;
  if (!w || w.encoding !== 'int8-base64' || !Array.isArray(w.scales) || w.scales.length !== K || !w.scales.every(Number.isFinite) || typeof w.data !== 'string')
    return [{ field: `${at}.weights`, message: `group_prior.weights needs encoding "int8-base64", ${K} scales and data` }];
  if (dimension !== null && Buffer.byteLength(w.data, 'base64') !== dimension * K)
    return [
      { field: `${at}.weights.data`, message: `group_prior.weights.data must hold ${dimension} × ${K} weights, found ${Buffer.byteLength(w.data, 'base64')}` },
    ];
  if (
    !Array.isArray(p.rates) ||
    p.rates.length !== tiersBelowTop ||
    !p.rates.every((r) => Array.isArray(r) && r.length === K && r.every((x) => typeof x === 'number' && x > 0 && x < 1))
  )
    return [
      {
        field: `${at}.rates`,
        message: `group_prior.rates must hold, for each of the ${tiersBelowTop} tiers below the top, ${K} rates strictly between 0 and 1`,
      },
    ];
  return [];
}

/** A loaded artifact, ready to predict. */
export interface CompiledClassifier {
  readonly artifact: ClassifierArtifact;
  readonly extractor: Extractor;
  readonly tierNames: readonly string[];
  /** Calibrated P(tier t suffices) for every tier below the top. */
  probabilities(messages: readonly ChatMessage[], policyFeatures?: Readonly<Record<string, unknown>>): Float64Array;
}

/** Compiles an artifact that passed artifactProblems. */
export function compileClassifier(artifact: ClassifierArtifact): CompiledClassifier {
  const extractor = compileExtractor(artifact.feature_spec);
  const dense = artifact.models.map((m) => {
    const w = new Float64Array(extractor.dimension);
    m.weights.indices.forEach((index, k) => {
      if (index >= 0 && index < w.length) w[index] = m.weights.values[k];
    });
    return { w, bias: m.bias, platt: m.platt };
  });
  const prior = artifact.group_prior ? compileGroupPrior(artifact.group_prior, extractor.dimension) : null;
  return {
    artifact,
    extractor,
    tierNames: artifact.tiers.map((t) => t.name),
    probabilities(messages, policyFeatures) {
      const x = extractor.extract(messages, policyFeatures);
      const out = new Float64Array(dense.length);
      const groups = prior ? softmaxScores(prior.model, x, new Float64Array(prior.model.classes)) : null;
      for (let t = 0; t < dense.length; t++) {
        const { w, bias, platt } = dense[t];
        let z = bias;
        for (let k = 0; k < x.indices.length; k++) z += w[x.indices[k]] * x.values[k];
        out[t] = applyPlatt(platt, z, groups && prior ? logit(priorOf(groups, prior.rates[t])) : 0);
      }
      return out;
    },
  };
}

function compileGroupPrior(g: GroupPrior, dimension: number): { model: SoftmaxModel; rates: Float64Array[] } {
  const K = g.names.length;
  const weights = decodeInt8(g.weights, K, dimension);
  return { model: { classes: K, bias: Float64Array.from(g.bias), weights }, rates: g.rates.map((r) => Float64Array.from(r)) };
}

/** int8 quantisation with one scale per group (column): w ≈ q · scale. */
export function encodeInt8(weights: Float32Array, K: number): GroupPrior['weights'] {
  const scales = new Array<number>(K).fill(0);
  for (let i = 0; i < weights.length; i++) scales[i % K] = Math.max(scales[i % K], Math.abs(weights[i]));
  for (let c = 0; c < K; c++) scales[c] = scales[c] > 0 ? scales[c] / 127 : 1;
  const bytes = new Int8Array(weights.length);
  for (let i = 0; i < weights.length; i++) bytes[i] = Math.round(weights[i] / scales[i % K]);
  return { encoding: 'int8-base64', scales, data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64') };
}

export function decodeInt8(encoded: GroupPrior['weights'], K: number, dimension: number): Float32Array {
  const raw = Buffer.from(encoded.data, 'base64');
  const bytes = new Int8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  const weights = new Float32Array(dimension * K);
  for (let i = 0; i < weights.length && i < bytes.length; i++) weights[i] = bytes[i] * encoded.scales[i % K];
  return weights;
}

/** Σ_g P(g | prompt) · rate(g). */
export function priorOf(groupProbabilities: ArrayLike<number>, rates: ArrayLike<number>): number {
  let p = 0;
  for (let g = 0; g < rates.length; g++) p += groupProbabilities[g] * rates[g];
  return p;
}

/** The tier index for these probabilities: the cheapest whose P(suffices) ≥ threshold, else the top. */
export function chooseTier(probabilities: ArrayLike<number>, threshold: number): number {
  for (let t = 0; t < probabilities.length; t++) if (probabilities[t] >= threshold) return t;
  return probabilities.length;
}
