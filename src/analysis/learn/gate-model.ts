// The learned gate: P(this answer is good enough), from the answer's measures
// (answer-features.ts), fitted by `tiergate train --gate` on recorded answers of the
// cheap tiers with their recorded scores, and served by the `learned` evaluator.
//
// Why it is built this way:
// - The score is a calibrated probability (Platt scaling fitted on held-out folds), so a
//   gate threshold of 0.7 means "pass answers that are good at least 70 % of the time",
//   and `gate.decide: cascade` can add its log-odds to the router's prior.
// - The served weights are the mean of the fold models, the scale the calibration was
//   fitted on (a model refitted on every row would score on a slightly different scale).
// - The artifact is versioned and carries its feature spec and its hash: an artifact made
//   by another version of the measures is refused at load, with the reason, instead of
//   scoring answers by weights that mean something else.
import { createHash } from 'node:crypto';
import type { ChatMessage } from '../../plugin-contract/plugin-api.ts';
import { messageText } from '../../plugin-contract/tokens.ts';
import {
  answerDimension,
  answerSpecHash,
  answerVector,
  defaultAnswerFeatureSpec,
  measureAnswer,
  vectorOfMeasures,
  type AnswerFeatureSpec,
} from './answer-features.ts';
import { applyPlatt, auc, calibration, fitPlatt, foldsOf, logLoss, round, score, trainLogistic, type Platt } from './logistic.ts';

export const GATE_ARTIFACT_FORMAT = 'tiergate-gate';
export const GATE_ARTIFACT_VERSION = 1;

export interface GateArtifact {
  format: typeof GATE_ARTIFACT_FORMAT;
  version: number;
  created: string;
  feature_spec: AnswerFeatureSpec;
  feature_spec_hash: string;
  /** The dataset models whose answers it was trained on. */
  answered_by: string[];
  /** A recorded score at or above this was a good answer. */
  quality_target: number;
  bias: number;
  /** Non-zero weights only. */
  weights: { indices: number[]; values: number[] };
  platt: Platt;
  calibration: 'platt';
  training_data_sha256: string;
  training_rows: number;
  metrics: GateMetrics;
}

export interface GateExample {
  prompt: string;
  reply: string;
  /** 1 when the recorded score met the quality target. */
  good: 0 | 1;
  /** Where the example came from (a benchmark, a model): metrics are broken down by it. */
  group: string;
}

/** One threshold of the held-out table: what gating at it would have done. */
export interface GateOperatingPoint {
  threshold: number;
  /** Share of answers the gate fails (sends up the ladder). */
  escalated: number;
  /** Of the answers it fails, the share that were bad. */
  precision: number | null;
  /** Of the bad answers, the share it fails. */
  recall: number | null;
  /** Of the good answers, the share it fails: the false-escalation rate. */
  false_escalation: number | null;
}

export interface GateMetrics {
  folds: number;
  good_rate: number;
  auc: number | null;
  log_loss: number;
  ece: number;
  by_group: Array<{ group: string; rows: number; good_rate: number; auc: number | null }>;
  operating_points: GateOperatingPoint[];
}

/** The conversation as one text, the way both training rows and requests are read. */
export function conversationText(messages: readonly ChatMessage[]): string {
  return messages.map((m) => messageText(m.content)).join('\n');
}

export function operatingPoint(probabilities: ArrayLike<number>, good: ArrayLike<number>, threshold: number): GateOperatingPoint {
  let failed = 0;
  let failedBad = 0;
  let bad = 0;
  let failedGood = 0;
  for (let i = 0; i < probabilities.length; i++) {
    const fails = probabilities[i] < threshold;
    if (good[i] >= 0.5) {
      if (fails) failedGood++;
    } else {
      bad++;
      if (fails) failedBad++;
    }
    if (fails) failed++;
  }
  const n = probabilities.length;
  const goods = n - bad;
  return {
    threshold,
    escalated: n ? round(failed / n) : 0,
    precision: failed ? round(failedBad / failed) : null,
    recall: bad ? round(failedBad / bad) : null,
    false_escalation: goods ? round(failedGood / goods) : null,
  };
}

export interface GateTrainSettings {
  answeredBy: string[];
  qualityTarget: number;
  folds?: number;
  epochs?: number;
  l2?: number;
  seed?: number;
  dataHash: string;
}

/** Fits the gate: k-fold out-of-fold scores give the calibration and the metrics; the served model is the folds' mean. */
export function trainGate(examples: readonly GateExample[], settings: GateTrainSettings): GateArtifact {
  const spec = defaultAnswerFeatureSpec();
  const dimension = answerDimension(spec);
  const folds = settings.folds ?? 5;
  const epochs = settings.epochs ?? 30;
  const l2 = settings.l2 ?? 1e-3;
  const seed = settings.seed ?? 1;
  if (examples.length < folds * 2) throw new Error(`${examples.length} answers are too few to train on with ${folds} folds`);
  const xs = examples.map((e) => answerVector(spec, e.prompt, e.reply));
  const ys = Float64Array.from(examples, (e) => e.good);
  const foldOf = foldsOf(xs.length, folds, seed);
  const heldOut = new Float64Array(xs.length);
  const mean = { bias: 0, weights: new Float64Array(dimension) };
  for (let f = 0; f < folds; f++) {
    const train = xs.flatMap((x, i) => (foldOf[i] === f ? [] : [i]));
    const model = trainLogistic(
      train.map((i) => xs[i]),
      Float64Array.from(train, (i) => ys[i]),
      { dimension, l2, epochs, seed: seed + f },
    );
    xs.forEach((x, i) => {
      if (foldOf[i] === f) heldOut[i] = score(model, x);
    });
    mean.bias += model.bias / folds;
    for (let j = 0; j < dimension; j++) mean.weights[j] += model.weights[j] / folds;
  }
  const platt = fitPlatt(heldOut, ys);
  const probabilities = heldOut.map((z) => applyPlatt(platt, z));
  const groups = [...new Set(examples.map((e) => e.group))].sort();
  const indices: number[] = [];
  const values: number[] = [];
  mean.weights.forEach((w, j) => {
    if (w !== 0) {
      indices.push(j);
      values.push(round(w, 6));
    }
  });
  const goodRate = ys.reduce((sum, y) => sum + y, 0) / ys.length;
  return {
    format: GATE_ARTIFACT_FORMAT,
    version: GATE_ARTIFACT_VERSION,
    created: new Date().toISOString(),
    feature_spec: spec,
    feature_spec_hash: answerSpecHash(spec),
    answered_by: settings.answeredBy,
    quality_target: settings.qualityTarget,
    bias: round(mean.bias, 6),
    weights: { indices, values },
    platt: { a: round(platt.a, 6), b: round(platt.b, 6) },
    calibration: 'platt',
    training_data_sha256: settings.dataHash,
    training_rows: examples.length,
    metrics: {
      folds,
      good_rate: round(goodRate),
      auc: nullableRound(auc(probabilities, ys)),
      log_loss: round(logLoss(probabilities, ys)),
      ece: round(calibration(probabilities, ys).ece),
      by_group: groups.map((group) => {
        const at = examples.flatMap((e, i) => (e.group === group ? [i] : []));
        const labels = at.map((i) => ys[i]);
        return {
          group,
          rows: at.length,
          good_rate: round(labels.reduce((s, y) => s + y, 0) / at.length),
          auc: nullableRound(
            auc(
              at.map((i) => probabilities[i]),
              labels,
            ),
          ),
        };
      }),
      operating_points: [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9].map((t) => operatingPoint(probabilities, ys, t)),
    },
  };
}

const nullableRound = (x: number | null) => (x === null ? null : round(x));

export function hashExamples(examples: readonly GateExample[]): string {
  const hash = createHash('sha256');
  for (const e of examples) hash.update(`${e.group}\u0000${e.prompt}\u0000${e.reply}\u0000${e.good}\n`);
  return hash.digest('hex');
}

/** Problems of a gate artifact, each with the field it is about. */
export function gateArtifactProblems(data: unknown): Array<{ field: string; message: string }> {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return [{ field: '', message: 'the model is not a JSON object' }];
  const a = data as Partial<GateArtifact>;
  if (a.format !== GATE_ARTIFACT_FORMAT)
    return [{ field: 'format', message: `not a ${GATE_ARTIFACT_FORMAT} artifact (format ${JSON.stringify(a.format)}); make one with tiergate train --gate` }];
  if (a.version !== GATE_ARTIFACT_VERSION)
    return [{ field: 'version', message: `artifact version ${JSON.stringify(a.version)} is not supported (${GATE_ARTIFACT_VERSION})` }];
  const spec = a.feature_spec;
  const current = defaultAnswerFeatureSpec();
  if (!spec || spec.version !== current.version || answerSpecHash(spec) !== answerSpecHash(current))
    return [
      {
        field: 'feature_spec',
        message: `the artifact measures answers with feature spec version ${JSON.stringify(spec?.version)} (${spec ? answerSpecHash(spec).slice(0, 12) : 'none'}), this gateway with version ${current.version} (${answerSpecHash(current).slice(0, 12)}): train it again`,
      },
    ];
  if (a.feature_spec_hash !== answerSpecHash(spec))
    return [{ field: 'feature_spec_hash', message: 'feature_spec_hash does not match the feature spec: the artifact was edited or is corrupt' }];
  const dimension = answerDimension(spec);
  const w = a.weights;
  if (
    typeof a.bias !== 'number' ||
    !w ||
    !Array.isArray(w.indices) ||
    !Array.isArray(w.values) ||
    w.indices.length !== w.values.length ||
    !w.indices.every((i) => Number.isInteger(i) && i >= 0 && i < dimension) ||
    !w.values.every(Number.isFinite)
  )
    return [{ field: 'weights', message: `the model needs a bias and weights {indices, values} with indices below ${dimension}` }];
  if (!a.platt || !Number.isFinite(a.platt.a) || !Number.isFinite(a.platt.b)) return [{ field: 'platt', message: 'platt {a, b} must be numbers' }];
  return [];
}

/** A loaded gate model, ready to score. */
export interface CompiledGate {
  readonly artifact: GateArtifact;
  /** Calibrated P(the reply is good enough), with the answer kind the prompt asked for. */
  judge(prompt: string, reply: string): { probability: number; kind: string };
}

/** Compiles an artifact that passed gateArtifactProblems. */
export function compileGate(artifact: GateArtifact): CompiledGate {
  const spec = artifact.feature_spec;
  const weights = new Float64Array(answerDimension(spec));
  artifact.weights.indices.forEach((index, k) => (weights[index] = artifact.weights.values[k]));
  const model = { bias: artifact.bias, weights };
  return {
    artifact,
    judge(prompt, reply) {
      const measured = measureAnswer(prompt, reply);
      return { probability: applyPlatt(artifact.platt, score(model, vectorOfMeasures(spec, measured))), kind: measured.kind };
    },
  };
}
