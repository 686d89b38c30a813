// The classifier router's model artifact: what `tiergate train` writes and the
// classifier plugin loads. One-vs-rest over the ladder: for every tier but the top, a
// logistic model of "this tier's answer suffices", Platt-calibrated on held-out folds.
// A request goes to the cheapest tier whose calibrated probability reaches the threshold,
// else to the top tier.
import type { ChatMessage } from '../plugin-api.ts';
import { compileExtractor, specHash, specProblems, type Extractor, type FeatureSpec } from './features.ts';
import { applyPlatt, type Platt } from './logistic.ts';

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

export interface ClassifierArtifact {
  format: typeof ARTIFACT_FORMAT;
  version: number;
  created: string;
  feature_spec: FeatureSpec;
  feature_spec_hash: string;
  /** The ladder, cheapest first, as trained. */
  tiers: Array<{ name: string; dataset_model?: string | null; mean_cost?: number | null }>;
  models: TierModel[];
  calibration: 'platt';
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
  if (a.version !== ARTIFACT_VERSION) return [{ field: 'version', message: `artifact version ${JSON.stringify(a.version)} is not supported (${ARTIFACT_VERSION})` }];
  const problems = specProblems(a.feature_spec);
  if (problems.length === 0 && a.feature_spec_hash !== undefined && a.feature_spec_hash !== specHash(a.feature_spec as FeatureSpec)) {
    problems.push({ field: 'feature_spec_hash', message: `feature_spec_hash ${a.feature_spec_hash} does not match the feature spec (${specHash(a.feature_spec as FeatureSpec)}): the artifact was edited or is corrupt` });
  }
  if (!Array.isArray(a.tiers) || a.tiers.length < 2 || !a.tiers.every((t) => t && typeof t.name === 'string')) problems.push({ field: 'tiers', message: 'tiers must list at least two named tiers, cheapest first' });
  else if (!Array.isArray(a.models) || a.models.length !== a.tiers.length - 1) problems.push({ field: 'models', message: `expected one model per tier below the top (${a.tiers.length - 1}), found ${Array.isArray(a.models) ? a.models.length : 'none'}` });
  else {
    a.models.forEach((m, i) => {
      if (!m || m.tier !== a.tiers![i].name) problems.push({ field: `models.${i}.tier`, message: `model ${i} must be for tier "${a.tiers![i].name}"` });
      else if (!m.weights || !Array.isArray(m.weights.indices) || !Array.isArray(m.weights.values) || m.weights.indices.length !== m.weights.values.length || typeof m.bias !== 'number' || !m.platt || typeof m.platt.a !== 'number') problems.push({ field: `models.${i}`, message: 'model needs bias, weights {indices, values} and platt {a, b}' });
    });
  }
  if (typeof a.recommended_threshold !== 'number' || !(a.recommended_threshold >= 0 && a.recommended_threshold <= 1)) problems.push({ field: 'recommended_threshold', message: 'recommended_threshold must be a number in [0, 1]' });
  return problems;
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
  return {
    artifact,
    extractor,
    tierNames: artifact.tiers.map((t) => t.name),
    probabilities(messages, policyFeatures) {
      const x = extractor.extract(messages, policyFeatures);
      const out = new Float64Array(dense.length);
      for (let t = 0; t < dense.length; t++) {
        const { w, bias, platt } = dense[t];
        let z = bias;
        for (let k = 0; k < x.indices.length; k++) z += w[x.indices[k]] * x.values[k];
        out[t] = applyPlatt(platt, z);
      }
      return out;
    },
  };
}

/** The tier index for these probabilities: the cheapest whose P(suffices) ≥ threshold, else the top. */
export function chooseTier(probabilities: ArrayLike<number>, threshold: number): number {
  for (let t = 0; t < probabilities.length; t++) if (probabilities[t] >= threshold) return t;
  return probabilities.length;
}
