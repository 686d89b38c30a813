// Training the classifier router: rows (recorded per-model outcomes, or prompts labelled
// with the tier that sufficed) → one-vs-rest logistic models over the shared features,
// k-fold cross-validated; the held-out predictions give the metrics, the Platt
// calibration and the recommended threshold, then the final models are fitted on all
// rows. Pure: the command (src/cli/commands/train.ts) reads files and prints.
import { createHash } from 'node:crypto';
import type { ChatMessage } from '../../plugin-contract/plugin-api.ts';
import { apgr, quantileThresholds, type CurvePoint } from '../metrics.ts';
import { compileExtractor, defaultFeatureSpec, specHash, type FeatureSpec, type SparseVector } from './features.ts';
import { ARTIFACT_FORMAT, ARTIFACT_VERSION, chooseTier, encodeInt8, priorOf, type ClassifierArtifact, type GroupPrior, type TierModel } from './artifact.ts';
import {
  accuracy,
  applyPlatt,
  auc,
  calibration,
  fitPlatt,
  fitStackedPlatt,
  foldsOf,
  logLoss,
  logit,
  round,
  score,
  softmaxScores,
  trainLogistic,
  trainSoftmax,
  type LogisticModel,
  type Platt,
  type SoftmaxModel,
} from './logistic.ts';

export interface TrainingRow {
  id: string;
  messages: ChatMessage[];
  /** Quality of each tier's answer (cheapest first), for outcome rows. */
  quality: number[] | null;
  /** Cost of each tier's call, where known (else relative costs). */
  cost: number[];
  /** For labelled rows: index of the cheapest tier that sufficed. */
  labelTier: number | null;
  /** A training-only group (e.g. the MMLU subject) for the group prior; never needed at serving time. */
  group?: string | null;
}

/**
 * What the text model is fitted to. `label`: the 0/1 "tier suffices" label. `gain`: the
 * soft target (1 + q_tier − q_best_above) / 2 — 1 when the tier wins, ½ on a tie, 0 when
 * a higher tier would have done better — which ranks prompts by how much moving up gains,
 * the quantity a cost–quality curve (and APGR) rewards. Either way the calibration is to
 * the 0/1 label, so thresholds keep meaning P(tier suffices).
 */
export type Objective = 'gain' | 'label';

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
  /** The served model: the mean of the fold models (default), or one refitted on every row. */
  final?: 'fold-average' | 'refit';
  /** One strength, or candidates to choose from by held-out APGR. */
  l2?: number | number[];
  seed?: number;
  target?: Target;
  objective?: Objective;
  /** Learn a group prior from rows' `group` (needs ≥ 2 groups). */
  groupPrior?: { expression: string; epochs?: number; l2?: number; smoothing?: number };
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
  throw new Error(
    `--target is retention:R (e.g. retention:0.98), strong-share:S (e.g. strong-share:0.3) or costs:UNDER:OVER (e.g. costs:4:1), not ${JSON.stringify(text)}`,
  );
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

/** The text model's targets: the 0/1 labels, or the soft gain of staying on each tier. */
export function rankingTargets(rows: readonly TrainingRow[], labels: readonly Float64Array[], objective: Objective): Float64Array[] {
  if (objective === 'label') return labels.map((y) => y.slice());
  return labels.map((y, t) =>
    Float64Array.from(rows, (row, i) => {
      if (!row.quality) return y[i];
      const above = Math.max(...row.quality.slice(t + 1));
      return Math.min(1, Math.max(0, (1 + row.quality[t] - above) / 2));
    }),
  );
}

interface GroupFit {
  model: SoftmaxModel;
  /** [tier][group] */
  rates: Float64Array[];
}

/** Trains P(group | prompt) and the per-group mean target of each tier, on the rows `idx`. */
function fitGroupPrior(
  xs: readonly SparseVector[],
  groupIds: Int32Array,
  groups: number,
  targets: readonly Float64Array[],
  idx: readonly number[],
  options: { dimension: number; epochs: number; l2: number; smoothing: number; seed: number; onEpoch?: () => void },
): GroupFit {
  const model = trainSoftmax(
    idx.map((i) => xs[i]),
    idx.map((i) => groupIds[i]),
    groups,
    { dimension: options.dimension, epochs: options.epochs, l2: options.l2, seed: options.seed, onEpoch: options.onEpoch },
  );
  return { model, rates: groupRatesOf(groupIds, groups, targets, idx, options.smoothing) };
}

/** Per tier, the mean target in each group over the rows `idx`, shrunk toward the overall mean. */
function groupRatesOf(groupIds: Int32Array, groups: number, targets: readonly Float64Array[], idx: readonly number[], smoothing: number): Float64Array[] {
  return targets.map((y) => {
    let total = 0;
    for (const i of idx) total += y[i];
    const overall = total / Math.max(idx.length, 1);
    const sum = new Float64Array(groups);
    const count = new Float64Array(groups);
    for (const i of idx) {
      sum[groupIds[i]] += y[i];
      count[groupIds[i]]++;
    }
    // Shrunk toward the overall mean: a group seen a few times says little.
    return Float64Array.from(sum, (s, g) => Math.min(0.999, Math.max(0.001, (s + smoothing * overall) / (count[g] + smoothing))));
  });
}

function groupLogits(fit: GroupFit, x: SparseVector): number[] {
  const p = softmaxScores(fit.model, x, new Float64Array(fit.model.classes));
  return fit.rates.map((r) => logit(priorOf(p, r)));
}

/**
 * APGR of held-out predictions (the two-tier sense: strong-call share swept 0 → 1), with
 * thresholds at the probabilities' quantiles: evenly spaced ones bunch where they are dense.
 */
function heldOutApgrOf(rows: readonly TrainingRow[], probabilities: readonly Float64Array[]): number | null {
  const weak = evaluateThreshold(rows, probabilities, 0);
  const strong = evaluateThreshold(rows, probabilities, 1.0000001);
  if (Math.abs(strong.mean_quality - weak.mean_quality) <= 1e-9) return null;
  const curve: CurvePoint[] = quantileThresholds(
    probabilities.flatMap((p) => Array.from(p)),
    101,
  )
    .map((t) => evaluateThreshold(rows, probabilities, t))
    .map((g) => ({ strong_share: g.strong_share, cost: g.total_cost, quality: g.mean_quality }));
  return apgr(curve, weak.mean_quality, strong.mean_quality);
}

function qualityOf(row: TrainingRow, tier: number): number {
  return row.quality ? row.quality[tier] : tier >= (row.labelTier as number) ? 1 : 0;
}

/** The cost–quality outcome of routing every row by `probabilities` at `threshold`. */
export function evaluateThreshold(rows: readonly TrainingRow[], probabilities: readonly Float64Array[], threshold: number): ThresholdRow {
  const tiers = probabilities.length + 1;
  const shares = new Array<number>(tiers).fill(0);
  let quality = 0,
    cost = 0,
    bestQuality = 0,
    bestCost = 0;
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
  const l2s = Array.isArray(settings.l2) ? settings.l2 : [settings.l2 ?? 1e-4];
  if (l2s.length === 0 || !l2s.every((v) => Number.isFinite(v) && v >= 0))
    throw new Error(`L2 strengths must be numbers ≥ 0, not ${JSON.stringify(settings.l2)}`);
  const seed = settings.seed ?? 1;
  const target: Target = settings.target ?? { kind: 'retention', value: 0.98 };
  const spec = settings.spec ?? defaultFeatureSpec();
  const extractor = compileExtractor(spec);
  const objective: Objective = settings.objective ?? 'gain';
  const xs: SparseVector[] = rows.map((r) => extractor.extract(r.messages));
  const ys = labelsOf(rows, tiers, rule, qualityTarget);
  const targets = rankingTargets(rows, ys, objective);
  const fold = foldsOf(rows.length, k, seed);

  // The group prior: rows without a group form one group of their own.
  const groupNames = settings.groupPrior ? [...new Set(rows.map((r) => r.group ?? '(none)'))].sort() : [];
  if (settings.groupPrior && groupNames.length < 2)
    throw new Error(
      `the group prior needs at least two groups; ${settings.groupPrior.expression} gave ${groupNames.length === 1 ? `only ${JSON.stringify(groupNames[0])}` : 'none'}`,
    );
  const groupIds = Int32Array.from(rows, (r) => groupNames.indexOf(r.group ?? '(none)'));
  const groupSettings = settings.groupPrior
    ? {
        dimension: extractor.dimension,
        epochs: settings.groupPrior.epochs ?? 8,
        l2: settings.groupPrior.l2 ?? 1e-5,
        smoothing: settings.groupPrior.smoothing ?? 10,
      }
    : null;

  const candidates = l2s;
  const finalMode = settings.final ?? 'fold-average';
  const refits = finalMode === 'refit' ? 1 : 0;
  const totalSteps = (k * candidates.length + refits) * (tiers - 1) * epochs + (k + refits) * (groupSettings?.epochs ?? 0);
  let done = 0;
  const tick = (phase: string) => () => settings.onProgress?.(++done, totalSteps, phase);
  const yieldNow = () => new Promise<void>((resolve) => setImmediate(resolve));
  const foldRows = Array.from({ length: k }, (_, f) => {
    const trainIdx: number[] = [];
    const testIdx: number[] = [];
    for (let i = 0; i < rows.length; i++) (fold[i] === f ? testIdx : trainIdx).push(i);
    return { trainIdx, testIdx };
  });

  // Held-out group priors: each row's from the topic model trained without its fold.
  const oofGroupLogits = ys.map(() => new Float64Array(rows.length));
  let groupHits = 0;
  let averagedGroup: SoftmaxModel | null = null;
  if (groupSettings) {
    for (const [f, { trainIdx, testIdx }] of foldRows.entries()) {
      const fit = fitGroupPrior(xs, groupIds, groupNames.length, targets, trainIdx, {
        ...groupSettings,
        seed: seed + f,
        onEpoch: tick(`fold ${f + 1}/${k}, group prior`),
      });
      averagedGroup ??= { classes: groupNames.length, bias: new Float64Array(groupNames.length), weights: new Float32Array(fit.model.weights.length) };
      for (let c = 0; c < groupNames.length; c++) averagedGroup.bias[c] += fit.model.bias[c] / k;
      for (let j = 0; j < fit.model.weights.length; j++) averagedGroup.weights[j] += fit.model.weights[j] / k;
      const p = new Float64Array(groupNames.length);
      for (const i of testIdx) {
        groupLogits(fit, xs[i]).forEach((g, t) => (oofGroupLogits[t][i] = g));
        softmaxScores(fit.model, xs[i], p);
        if (p.indexOf(Math.max(...p)) === groupIds[i]) groupHits++;
      }
      await yieldNow();
    }
  }

  // Held-out text scores for each L2 candidate; the candidate with the best held-out APGR
  // (log loss when APGR is undefined) is the one trained on every row.
  const heldOut = [];
  for (const candidate of candidates) {
    const oofScores = ys.map(() => new Float64Array(rows.length));
    const averaged: LogisticModel[] = ys.map(() => ({ bias: 0, weights: new Float64Array(extractor.dimension) }));
    for (const [f, { trainIdx, testIdx }] of foldRows.entries()) {
      for (let t = 0; t < tiers - 1; t++) {
        const model = trainLogistic(
          trainIdx.map((i) => xs[i]),
          trainIdx.map((i) => targets[t][i]),
          {
            dimension: extractor.dimension,
            epochs,
            l2: candidate,
            seed: seed + f,
            onEpoch: tick(`${candidates.length > 1 ? `l2 ${candidate}, ` : ''}fold ${f + 1}/${k}, tier ${settings.tiers[t].name}`),
          },
        );
        for (const i of testIdx) oofScores[t][i] = score(model, xs[i]);
        averaged[t].bias += model.bias / k;
        for (let j = 0; j < model.weights.length; j++) averaged[t].weights[j] += model.weights[j] / k;
        await yieldNow();
      }
    }
    const platts: Platt[] = oofScores.map((z, t) => (groupSettings ? fitStackedPlatt(z, oofGroupLogits[t], ys[t]) : fitPlatt(z, ys[t])));
    const oofProbabilities = oofScores.map((z, t) => Float64Array.from(z, (v, i) => applyPlatt(platts[t], v, oofGroupLogits[t][i])));
    const meanLogLoss = oofProbabilities.reduce((sum, p, t) => sum + logLoss(p, ys[t]), 0) / oofProbabilities.length;
    heldOut.push({ l2: candidate, platts, oofProbabilities, averaged, apgr: heldOutApgrOf(rows, oofProbabilities), logLoss: meanLogLoss });
  }
  const chosen = heldOut.reduce((best, c) =>
    c.apgr !== null && best.apgr !== null ? (c.apgr > best.apgr + 1e-12 ? c : best) : c.logLoss < best.logLoss - 1e-12 ? c : best,
  );
  const { platts, oofProbabilities, l2, averaged } = chosen;
  const heldOutApgr = chosen.apgr === null ? null : round(chosen.apgr);

  const perTier = settings.tiers.slice(0, -1).map((tier, t) => {
    const cal = calibration(oofProbabilities[t], ys[t]);
    const positives = ys[t].reduce((a, b) => a + b, 0);
    return {
      tier: tier.name,
      positive_rate: round(positives / rows.length),
      auc: auc(oofProbabilities[t], ys[t]) === null ? null : round(auc(oofProbabilities[t], ys[t]) as number),
      accuracy: round(accuracy(oofProbabilities[t], ys[t])),
      majority_accuracy: round(Math.max(positives, rows.length - positives) / rows.length),
      log_loss: round(logLoss(oofProbabilities[t], ys[t])),
      ece: round(cal.ece),
      reliability: cal.bins.filter((b) => b.count > 0),
    };
  });

  const recommended = recommendThreshold(rows, oofProbabilities, target);
  // Rows at the probabilities' deciles (so each step moves about a tenth of the traffic), plus the recommendation.
  const table = [
    ...quantileThresholds(
      oofProbabilities.flatMap((p) => Array.from(p)),
      11,
    ).map((t) => round(t, 4)),
    recommended,
  ]
    .filter((t, i, all) => all.indexOf(t) === i)
    .sort((a, b) => a - b)
    .map((t) => evaluateThreshold(rows, oofProbabilities, t));
  // The served models. fold-average: the mean of the k fold models (one linear model), whose
  // scores are on the scale the calibration and the recommended threshold were fitted on;
  // a model refitted on every row is more confident than its folds were, which moves a
  // threshold chosen on held-out data. refit: trained again on every row.
  const models: TierModel[] = [];
  for (let t = 0; t < tiers - 1; t++) {
    const model =
      finalMode === 'refit'
        ? trainLogistic(xs, targets[t], { dimension: extractor.dimension, epochs, l2, seed, onEpoch: tick(`final model, tier ${settings.tiers[t].name}`) })
        : averaged[t];
    const platt: Platt = { a: round(platts[t].a, 6), b: round(platts[t].b, 6), ...(platts[t].c !== undefined ? { c: round(platts[t].c as number, 6) } : {}) };
    models.push({ tier: settings.tiers[t].name, bias: round(model.bias, 6), weights: sparseWeights(model), platt });
    await yieldNow();
  }
  let groupPrior: GroupPrior | undefined;
  if (groupSettings && settings.groupPrior) {
    const fit =
      finalMode === 'refit' || !averagedGroup
        ? fitGroupPrior(
            xs,
            groupIds,
            groupNames.length,
            targets,
            rows.map((_, i) => i),
            { ...groupSettings, seed, onEpoch: tick('final group prior') },
          )
        : {
            model: averagedGroup,
            rates: groupRatesOf(
              groupIds,
              groupNames.length,
              targets,
              rows.map((_, i) => i),
              groupSettings.smoothing,
            ),
          };
    groupPrior = {
      expression: settings.groupPrior.expression,
      names: groupNames,
      bias: Array.from(fit.model.bias, (b) => round(b, 5)),
      weights: encodeInt8(fit.model.weights, groupNames.length),
      rates: fit.rates.map((r) => Array.from(r, (x) => round(x, 5))),
    };
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
    ...(groupPrior ? { group_prior: groupPrior } : {}),
    calibration: 'platt',
    objective,
    label: rows.some((r) => r.quality) ? rule : 'labelled-tier',
    quality_target: rows.some((r) => r.quality) ? qualityTarget : null,
    training_data_sha256: settings.dataHash,
    training_rows: rows.length,
    metrics: {
      folds: k,
      epochs,
      l2,
      final: finalMode,
      ...(candidates.length > 1
        ? { l2_candidates: heldOut.map((c) => ({ l2: c.l2, held_out_apgr: c.apgr === null ? null : round(c.apgr), log_loss: round(c.logLoss) })) }
        : {}),
      seed,
      objective,
      per_tier: perTier,
      held_out_apgr: heldOutApgr,
      ...(groupSettings
        ? {
            group_prior: {
              groups: groupNames.length,
              held_out_group_accuracy: round(groupHits / rows.length),
              prior_weight: platts.map((p) => round(p.c ?? 0)),
              score_weight: platts.map((p) => round(p.a)),
            },
          }
        : {}),
      at_recommended: roundRow(evaluateThreshold(rows, oofProbabilities, recommended)),
    },
    recommended_threshold: recommended,
    target: target.kind === 'costs' ? { kind: target.kind, value: target.value } : { kind: target.kind, value: target.value },
    cost_quality: table.map(roundRow),
  };
  return { artifact, table };
}

function roundRow(r: ThresholdRow): ThresholdRow {
  return {
    ...r,
    strong_share: round(r.strong_share),
    tier_shares: r.tier_shares.map((s) => round(s)),
    mean_quality: round(r.mean_quality),
    total_cost: Number(r.total_cost.toPrecision(5)),
    quality_retention: round(r.quality_retention),
    cost_savings: round(r.cost_savings),
  };
}
