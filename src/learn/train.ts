// Training the classifier router: rows (recorded per-model outcomes, or prompts labelled
// with the tier that sufficed) → one-vs-rest logistic models over the shared features,
// k-fold cross-validated; the held-out predictions give the metrics, the Platt
// calibration and the recommended threshold, then the final models are fitted on all
// rows. Pure: the command (src/commands/train.ts) reads files and prints.
import { createHash } from 'node:crypto';
import type { ChatMessage } from '../plugin-api.ts';
import { apgr, type CurvePoint } from '../analytics/metrics.ts';
import { compileExtractor, defaultFeatureSpec, specHash, type FeatureSpec, type SparseVector } from './features.ts';
import { ARTIFACT_FORMAT, ARTIFACT_VERSION, chooseTier, type ClassifierArtifact, type TierModel } from './artifact.ts';
import { accuracy, applyPlatt, auc, calibration, fitPlatt, foldsOf, logLoss, round, score, trainLogistic, type LogisticModel } from './logistic.ts';

export interface TrainingRow {
  id: string;
  messages: ChatMessage[];
  /** Quality of each tier's answer (cheapest first), for outcome rows. */
  quality: number[] | null;
  /** Cost of each tier's call, where known (else relative costs). */
  cost: number[];
  /** For labelled rows: index of the cheapest tier that sufficed. */
  labelTier: number | null;
}

/**
 * no-loss: tier t "suffices" when its answer meets the quality target or no higher tier's
 * does (sending a prompt nobody answers well to the cheap tier loses nothing).
 * meets-target: only when its answer meets the target (the oracle tier of DESIGN §5).
 */
export type LabelRule = 'no-loss' | 'meets-target';

export type Target = { kind: 'retention'; value: number } | { kind: 'strong-share'; value: number } | { kind: 'costs'; value: [number, number] };

export interface TrainSettings {
  tiers: Array<{ name: string; dataset_model?: string | null }>;
  qualityTarget?: number;
  label?: LabelRule;
  folds?: number;
  epochs?: number;
  l2?: number;
  seed?: number;
  target?: Target;
  spec?: FeatureSpec;
  /** sha256 of the training data as read. */
  dataHash: string;
  onProgress?: (done: number, total: number, phase: string) => void;
}

export interface ThresholdRow {
  threshold: number;
  strong_share: number;
  tier_shares: number[];
  mean_quality: number;
  total_cost: number;
  quality_retention: number;
  cost_savings: number;
}

export interface TrainResult {
  artifact: ClassifierArtifact;
  table: ThresholdRow[];
}

export function parseTarget(text: string): Target {
  const [kind, ...rest] = text.split(':');
  const nums = rest.map(Number);
  if (kind === 'retention' && nums.length === 1 && nums[0] > 0 && nums[0] <= 2) return { kind, value: nums[0] };
  if (kind === 'strong-share' && nums.length === 1 && nums[0] >= 0 && nums[0] <= 1) return { kind, value: nums[0] };
  if (kind === 'costs' && nums.length === 2 && nums.every((n) => n > 0)) return { kind, value: [nums[0], nums[1]] };
  throw new Error(`--target is retention:R (e.g. retention:0.98), strong-share:S (e.g. strong-share:0.3) or costs:UNDER:OVER (e.g. costs:4:1), not ${JSON.stringify(text)}`);
}

/** y[t][i]: does tier t suffice on row i. */
export function labelsOf(rows: readonly TrainingRow[], tiers: number, rule: LabelRule, qualityTarget: number): Float64Array[] {
  const meets = (q: number) => q >= qualityTarget - 1e-9;
  return Array.from({ length: tiers - 1 }, (_, t) => {
    const y = new Float64Array(rows.length);
    rows.forEach((row, i) => {
      if (row.quality) {
        const higherMeets = row.quality.slice(t + 1).some(meets);
        y[i] = meets(row.quality[t]) || (rule === 'no-loss' && !higherMeets) ? 1 : 0;
      } else y[i] = (row.labelTier as number) <= t ? 1 : 0;
    });
    return y;
  });
}

function qualityOf(row: TrainingRow, tier: number): number {
  return row.quality ? row.quality[tier] : tier >= (row.labelTier as number) ? 1 : 0;
}

/** The cost–quality outcome of routing every row by `probabilities` at `threshold`. */
export function evaluateThreshold(rows: readonly TrainingRow[], probabilities: readonly Float64Array[], threshold: number): ThresholdRow {
  const tiers = probabilities.length + 1;
  const shares = new Array<number>(tiers).fill(0);
  let quality = 0, cost = 0, bestQuality = 0, bestCost = 0;
  const p = new Float64Array(tiers - 1);
  rows.forEach((row, i) => {
    for (let t = 0; t < tiers - 1; t++) p[t] = probabilities[t][i];
    const tier = chooseTier(p, threshold);
    shares[tier]++;
    quality += qualityOf(row, tier);
    cost += row.cost[tier];
    bestQuality += qualityOf(row, tiers - 1);
    bestCost += row.cost[tiers - 1];
  });
  const n = Math.max(rows.length, 1);
  return {
    threshold,
    strong_share: shares[tiers - 1] / n,
    tier_shares: shares.map((s) => s / n),
    mean_quality: quality / n,
    total_cost: cost,
    quality_retention: bestQuality > 0 ? quality / bestQuality : 1,
    cost_savings: bestCost > 0 ? 1 - cost / bestCost : 0,
  };
}

export function recommendThreshold(rows: readonly TrainingRow[], probabilities: readonly Float64Array[], target: Target): number {
  if (target.kind === 'costs') {
    // Calibrated: routing down is worth it when p·0 + (1 − p)·under < p·over.
    const [under, over] = target.value;
    return round(under / (under + over), 4);
  }
  const grid = Array.from({ length: 201 }, (_, i) => i / 200).map((t) => evaluateThreshold(rows, probabilities, t));
  if (target.kind === 'retention') {
    const ok = grid.filter((g) => g.quality_retention >= target.value - 1e-12);
    if (ok.length === 0) return 1;
    ok.sort((a, b) => a.total_cost - b.total_cost || b.mean_quality - a.mean_quality || a.threshold - b.threshold);
    return ok[0].threshold;
  }
  const ok = grid.filter((g) => g.strong_share <= target.value + 1e-12);
  if (ok.length === 0) return 0;
  ok.sort((a, b) => b.mean_quality - a.mean_quality || a.total_cost - b.total_cost || a.threshold - b.threshold);
  return ok[0].threshold;
}

function sparseWeights(model: LogisticModel): TierModel['weights'] {
  const indices: number[] = [];
  const values: number[] = [];
  model.weights.forEach((w, i) => {
    const r = Math.round(w * 1e5) / 1e5;
    if (r !== 0) {
      indices.push(i);
      values.push(r);
    }
  });
  return { indices, values };
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function hashRows(lines: readonly string[]): string {
  return sha256(lines.join('\n'));
}

export async function trainClassifier(rows: readonly TrainingRow[], settings: TrainSettings): Promise<TrainResult> {
  const tiers = settings.tiers.length;
  if (tiers < 2) throw new Error('training needs at least two tiers');
  const k = settings.folds ?? 5;
  if (!Number.isInteger(k) || k < 2) throw new Error(`--folds must be a whole number ≥ 2, not ${k}`);
  if (rows.length < k * 2) throw new Error(`${rows.length} rows are too few for ${k}-fold cross-validation`);
  const qualityTarget = settings.qualityTarget ?? 0.5;
  const rule = settings.label ?? 'no-loss';
  const epochs = settings.epochs ?? 12;
  const l2 = settings.l2 ?? 1e-4;
  const seed = settings.seed ?? 1;
  const target: Target = settings.target ?? { kind: 'retention', value: 0.98 };
  const spec = settings.spec ?? defaultFeatureSpec();
  const extractor = compileExtractor(spec);
  const xs: SparseVector[] = rows.map((r) => extractor.extract(r.messages));
  const ys = labelsOf(rows, tiers, rule, qualityTarget);
  const fold = foldsOf(rows.length, k, seed);

  const totalSteps = (k + 1) * (tiers - 1) * epochs;
  let done = 0;
  const tick = (phase: string) => () => settings.onProgress?.(++done, totalSteps, phase);
  const yieldNow = () => new Promise<void>((resolve) => setImmediate(resolve));

  // Held-out raw scores: each row scored by the model trained without its fold.
  const oofScores = ys.map(() => new Float64Array(rows.length));
  for (let f = 0; f < k; f++) {
    const trainIdx: number[] = [];
    const testIdx: number[] = [];
    for (let i = 0; i < rows.length; i++) (fold[i] === f ? testIdx : trainIdx).push(i);
    for (let t = 0; t < tiers - 1; t++) {
      const model = trainLogistic(trainIdx.map((i) => xs[i]), trainIdx.map((i) => ys[t][i]), { dimension: extractor.dimension, epochs, l2, seed: seed + f, onEpoch: tick(`fold ${f + 1}/${k}, tier ${settings.tiers[t].name}`) });
      for (const i of testIdx) oofScores[t][i] = score(model, xs[i]);
      await yieldNow();
    }
  }
  const platts = oofScores.map((z, t) => fitPlatt(z, ys[t]));
  const oofProbabilities = oofScores.map((z, t) => Float64Array.from(z, (v) => applyPlatt(platts[t], v)));

  const perTier = settings.tiers.slice(0, -1).map((tier, t) => {
    const cal = calibration(oofProbabilities[t], ys[t]);
    const positives = ys[t].reduce((a, b) => a + b, 0);
    return {
      tier: tier.name,
      positive_rate: round(positives / rows.length),
      auc: auc(oofScores[t], ys[t]) === null ? null : round(auc(oofScores[t], ys[t]) as number),
      accuracy: round(accuracy(oofProbabilities[t], ys[t])),
      majority_accuracy: round(Math.max(positives, rows.length - positives) / rows.length),
      log_loss: round(logLoss(oofProbabilities[t], ys[t])),
      ece: round(cal.ece),
      reliability: cal.bins.filter((b) => b.count > 0),
    };
  });

  const recommended = recommendThreshold(rows, oofProbabilities, target);
  const table = [...Array.from({ length: 11 }, (_, i) => i / 10), recommended]
    .filter((t, i, all) => all.indexOf(t) === i)
    .sort((a, b) => a - b)
    .map((t) => evaluateThreshold(rows, oofProbabilities, t));
  // The held-out cost–quality curve's APGR (two-tier sense: strong share vs quality).
  const fine = Array.from({ length: 101 }, (_, i) => evaluateThreshold(rows, oofProbabilities, i / 100));
  const weak = evaluateThreshold(rows, oofProbabilities, 0);
  const strong = evaluateThreshold(rows, oofProbabilities, 1.0000001);
  const curve: CurvePoint[] = fine.map((g) => ({ strong_share: g.strong_share, cost: g.total_cost, quality: g.mean_quality }));
  const heldOutApgr = Math.abs(strong.mean_quality - weak.mean_quality) > 1e-9 ? round(apgr(curve, weak.mean_quality, strong.mean_quality)) : null;

  // Final models on every row.
  const models: TierModel[] = [];
  for (let t = 0; t < tiers - 1; t++) {
    const model = trainLogistic(xs, ys[t], { dimension: extractor.dimension, epochs, l2, seed, onEpoch: tick(`final model, tier ${settings.tiers[t].name}`) });
    models.push({ tier: settings.tiers[t].name, bias: round(model.bias, 6), weights: sparseWeights(model), platt: { a: round(platts[t].a, 6), b: round(platts[t].b, 6) } });
    await yieldNow();
  }

  const meanCost = (t: number) => rows.reduce((sum, r) => sum + r.cost[t], 0) / rows.length;
  const artifact: ClassifierArtifact = {
    format: ARTIFACT_FORMAT,
    version: ARTIFACT_VERSION,
    created: new Date().toISOString(),
    feature_spec: spec,
    feature_spec_hash: specHash(spec),
    tiers: settings.tiers.map((t, i) => ({ name: t.name, dataset_model: t.dataset_model ?? null, mean_cost: Number(meanCost(i).toPrecision(4)) })),
    models,
    calibration: 'platt',
    label: rows.some((r) => r.quality) ? rule : 'labelled-tier',
    quality_target: rows.some((r) => r.quality) ? qualityTarget : null,
    training_data_sha256: settings.dataHash,
    training_rows: rows.length,
    metrics: { folds: k, epochs, l2, seed, per_tier: perTier, held_out_apgr: heldOutApgr, at_recommended: roundRow(evaluateThreshold(rows, oofProbabilities, recommended)) },
    recommended_threshold: recommended,
    target: target.kind === 'costs' ? { kind: target.kind, value: target.value } : { kind: target.kind, value: target.value },
    cost_quality: table.map(roundRow),
  };
  return { artifact, table };
}

function roundRow(r: ThresholdRow): ThresholdRow {
  return { ...r, strong_share: round(r.strong_share), tier_shares: r.tier_shares.map((s) => round(s)), mean_quality: round(r.mean_quality), total_cost: Number(r.total_cost.toPrecision(5)), quality_retention: round(r.quality_retention), cost_savings: round(r.cost_savings) };
}
