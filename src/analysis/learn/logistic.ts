// L2-regularised logistic regression over sparse vectors, with the measures `tiergate
// train` reports: AUC, accuracy, calibration (reliability bins, ECE) and Platt scaling
// fitted on held-out predictions. Deterministic: the same data and seed give the same
// weights (AdaGrad over a seeded shuffle).
import { mulberry32 } from '../../common/random.ts';
import type { SparseVector } from './features.ts';

export interface LogisticModel {
  bias: number;
  /** Dense weights over the feature dimension. */
  weights: Float64Array;
}

export interface TrainOptions {
  dimension: number;
  /** L2 strength (per example, scaled by 1/n). */
  l2?: number;
  epochs?: number;
  learningRate?: number;
  seed?: number;
  /** Called after each epoch. */
  onEpoch?: (epoch: number) => void;
}

export { mulberry32 };

export function shuffled(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  const random = mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

export function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

export function score(model: LogisticModel, x: SparseVector): number {
  let z = model.bias;
  const { indices, values } = x;
  for (let k = 0; k < indices.length; k++) z += model.weights[indices[k]] * values[k];
  return z;
}

export function predict(model: LogisticModel, x: SparseVector): number {
  return sigmoid(score(model, x));
}

/**
 * Fits by AdaGrad on the logistic loss + (l2/2)·|w|². The L2 term is applied lazily to
 * the coordinates an example touches (scaled by how often they occur), which keeps an
 * epoch O(non-zeros) instead of O(rows × dimension).
 */
export function trainLogistic(xs: readonly SparseVector[], ys: ArrayLike<number>, options: TrainOptions): LogisticModel {
  const { dimension } = options;
  const l2 = options.l2 ?? 1e-4;
  const epochs = options.epochs ?? 12;
  const eta = options.learningRate ?? 0.2;
  const seed = options.seed ?? 1;
  const n = xs.length;
  const w = new Float64Array(dimension);
  const g2 = new Float64Array(dimension).fill(1e-8);
  let bias = 0;
  let biasG2 = 1e-8;
  // How many rows touch each coordinate: L2 per touch is l2 / frequency, so the total
  // penalty per epoch matches the full-gradient one.
  const frequency = new Float64Array(dimension);
  for (const x of xs) for (let k = 0; k < x.indices.length; k++) frequency[x.indices[k]]++;
  // Class balance for the intercept start.
  let positives = 0;
  for (let i = 0; i < n; i++) positives += ys[i];
  if (positives > 0 && positives < n) bias = Math.log(positives / (n - positives));
  for (let epoch = 0; epoch < epochs; epoch++) {
    const order = shuffled(n, seed + epoch * 7919);
    for (const i of order) {
      const x = xs[i];
      const p = sigmoid(score({ bias, weights: w }, x));
      const err = p - ys[i];
      for (let k = 0; k < x.indices.length; k++) {
        const j = x.indices[k];
        const g = err * x.values[k] + (l2 * n * w[j]) / frequency[j];
        g2[j] += g * g;
        w[j] -= (eta * g) / Math.sqrt(g2[j]);
      }
      biasG2 += err * err;
      bias -= (eta * err) / Math.sqrt(biasG2);
    }
    options.onEpoch?.(epoch);
  }
  return { bias, weights: w };
}

// ---------------------------------------------------------------------------------
// Measures

/** Area under the ROC curve (rank statistic, ties averaged). null when one class is absent. */
export function auc(scores: ArrayLike<number>, labels: ArrayLike<number>): number | null {
  const n = scores.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let positives = 0;
  let rankSum = 0;
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]] === scores[order[i]]) j++;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++)
      if (labels[order[k]] >= 0.5) {
        positives++;
        rankSum += rank;
      }
    i = j + 1;
  }
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) return null;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

export function accuracy(probabilities: ArrayLike<number>, labels: ArrayLike<number>, threshold = 0.5): number {
  let right = 0;
  for (let i = 0; i < probabilities.length; i++) if ((probabilities[i] >= threshold ? 1 : 0) === (labels[i] >= 0.5 ? 1 : 0)) right++;
  return probabilities.length ? right / probabilities.length : 0;
}

export function logLoss(probabilities: ArrayLike<number>, labels: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < probabilities.length; i++) {
    const p = Math.min(1 - 1e-12, Math.max(1e-12, probabilities[i]));
    total -= labels[i] >= 0.5 ? Math.log(p) : Math.log(1 - p);
  }
  return probabilities.length ? total / probabilities.length : 0;
}

export interface ReliabilityBin {
  lo: number;
  hi: number;
  count: number;
  mean_predicted: number;
  observed: number;
}

/** Reliability bins and the expected calibration error over them. */
export function calibration(probabilities: ArrayLike<number>, labels: ArrayLike<number>, bins = 10): { ece: number; bins: ReliabilityBin[] } {
  const out: ReliabilityBin[] = Array.from({ length: bins }, (_, b) => ({ lo: b / bins, hi: (b + 1) / bins, count: 0, mean_predicted: 0, observed: 0 }));
  for (let i = 0; i < probabilities.length; i++) {
    const b = Math.min(bins - 1, Math.floor(probabilities[i] * bins));
    out[b].count++;
    out[b].mean_predicted += probabilities[i];
    out[b].observed += labels[i] >= 0.5 ? 1 : 0;
  }
  let ece = 0;
  for (const bin of out) {
    if (bin.count === 0) continue;
    bin.mean_predicted /= bin.count;
    bin.observed /= bin.count;
    ece += (bin.count / probabilities.length) * Math.abs(bin.mean_predicted - bin.observed);
    bin.mean_predicted = round(bin.mean_predicted);
    bin.observed = round(bin.observed);
  }
  return { ece, bins: out };
}

export interface Platt {
  a: number;
  b: number;
  /** Weight of the group prior's logit (stacked calibration); absent without a group prior. */
  c?: number;
}

/** Platt scaling: p' = σ(a·z + b) over raw scores z, fitted on held-out predictions by Newton steps. */
export function fitPlatt(scores: ArrayLike<number>, labels: ArrayLike<number>): Platt {
  let a = 1;
  let b = 0;
  const n = scores.length;
  // Platt's smoothed targets avoid overconfidence on small folds.
  let pos = 0;
  for (let i = 0; i < n; i++) pos += labels[i] >= 0.5 ? 1 : 0;
  const hi = (pos + 1) / (pos + 2);
  const lo = 1 / (n - pos + 2);
  for (let iter = 0; iter < 50; iter++) {
    let ga = 0,
      gb = 0,
      haa = 1e-9,
      hab = 0,
      hbb = 1e-9;
    for (let i = 0; i < n; i++) {
      const t = labels[i] >= 0.5 ? hi : lo;
      const p = sigmoid(a * scores[i] + b);
      const d = p - t;
      const h = p * (1 - p);
      ga += d * scores[i];
      gb += d;
      haa += h * scores[i] * scores[i];
      hab += h * scores[i];
      hbb += h;
    }
    const det = haa * hbb - hab * hab;
    if (Math.abs(det) < 1e-12) break;
    const da = (hbb * ga - hab * gb) / det;
    const db = (haa * gb - hab * ga) / det;
    a -= da;
    b -= db;
    if (Math.abs(da) < 1e-9 && Math.abs(db) < 1e-9) break;
  }
  return { a, b };
}

export function applyPlatt(platt: Platt, z: number, groupLogit = 0): number {
  return sigmoid(platt.a * z + (platt.c ?? 0) * groupLogit + platt.b);
}

/** Fold index of each row: a seeded shuffle dealt round-robin into k folds. */
export function foldsOf(n: number, k: number, seed: number): Int32Array {
  const fold = new Int32Array(n);
  shuffled(n, seed).forEach((row, i) => (fold[row] = i % k));
  return fold;
}

export function round(x: number, digits = 4): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

// ---------------------------------------------------------------------------------
// Multinomial logistic regression (softmax) over the same sparse vectors: the topic
// model of the classifier's group prior (src/analysis/learn/train.ts). Weights are stored
// feature-major ([feature][class]) so one request touches a few contiguous runs.

export interface SoftmaxModel {
  classes: number;
  bias: Float64Array;
  /** dimension × classes, feature-major. */
  weights: Float32Array;
}

export function trainSoftmax(xs: readonly SparseVector[], labels: ArrayLike<number>, classes: number, options: TrainOptions): SoftmaxModel {
  const { dimension } = options;
  const l2 = options.l2 ?? 1e-5;
  const epochs = options.epochs ?? 8;
  const eta = options.learningRate ?? 0.3;
  const seed = options.seed ?? 1;
  const n = xs.length;
  const K = classes;
  const w = new Float32Array(dimension * K);
  const g2 = new Float32Array(dimension * K).fill(1e-8);
  const bias = new Float64Array(K);
  const biasG2 = new Float64Array(K).fill(1e-8);
  const frequency = new Float64Array(dimension);
  for (const x of xs) for (let k = 0; k < x.indices.length; k++) frequency[x.indices[k]]++;
  // Start the intercepts at the log class frequencies.
  const counts = new Float64Array(K);
  for (let i = 0; i < n; i++) counts[labels[i]]++;
  for (let c = 0; c < K; c++) bias[c] = Math.log((counts[c] + 1) / (n + K));
  const z = new Float64Array(K);
  for (let epoch = 0; epoch < epochs; epoch++) {
    const order = shuffled(n, seed + epoch * 7919);
    for (const i of order) {
      const x = xs[i];
      softmaxScores({ classes: K, bias, weights: w }, x, z);
      const y = labels[i];
      for (let k = 0; k < x.indices.length; k++) {
        const j = x.indices[k];
        const v = x.values[k];
        const base = j * K;
        const decay = (l2 * n) / frequency[j];
        for (let c = 0; c < K; c++) {
          const g = (z[c] - (c === y ? 1 : 0)) * v + decay * w[base + c];
          g2[base + c] += g * g;
          w[base + c] -= (eta * g) / Math.sqrt(g2[base + c]);
        }
      }
      for (let c = 0; c < K; c++) {
        const g = z[c] - (c === y ? 1 : 0);
        biasG2[c] += g * g;
        bias[c] -= (eta * g) / Math.sqrt(biasG2[c]);
      }
    }
    options.onEpoch?.(epoch);
  }
  return { classes: K, bias, weights: w };
}

/** Class probabilities of x, written into `out` (length = classes). */
export function softmaxScores(model: SoftmaxModel, x: SparseVector, out: Float64Array): Float64Array {
  const K = model.classes;
  for (let c = 0; c < K; c++) out[c] = model.bias[c];
  const { indices, values } = x;
  for (let k = 0; k < indices.length; k++) {
    const base = indices[k] * K;
    const v = values[k];
    for (let c = 0; c < K; c++) out[c] += model.weights[base + c] * v;
  }
  let max = -Infinity;
  for (let c = 0; c < K; c++) if (out[c] > max) max = out[c];
  let total = 0;
  for (let c = 0; c < K; c++) total += out[c] = Math.exp(out[c] - max);
  for (let c = 0; c < K; c++) out[c] /= total;
  return out;
}

export function logit(p: number): number {
  const q = Math.min(1 - 1e-6, Math.max(1e-6, p));
  return Math.log(q / (1 - q));
}

/**
 * Platt scaling over two inputs: p' = σ(a·z + c·g + b), where z is the text model's raw
 * score and g the logit of the group prior; fitted on held-out predictions by Newton steps
 * (a stacked calibration: how much to trust each is learned, not guessed).
 */
export function fitStackedPlatt(scores: ArrayLike<number>, groupLogits: ArrayLike<number>, labels: ArrayLike<number>): Platt {
  const n = scores.length;
  let pos = 0;
  for (let i = 0; i < n; i++) pos += labels[i] >= 0.5 ? 1 : 0;
  const hi = (pos + 1) / (pos + 2);
  const lo = 1 / (n - pos + 2);
  // θ = [a, c, b] over inputs [z, g, 1].
  const theta = [1, 0, 0];
  for (let iter = 0; iter < 50; iter++) {
    const grad = [0, 0, 0];
    const H = [1e-9, 0, 0, 0, 1e-9, 0, 0, 0, 1e-9];
    for (let i = 0; i < n; i++) {
      const x = [scores[i], groupLogits[i], 1];
      const t = labels[i] >= 0.5 ? hi : lo;
      const p = sigmoid(theta[0] * x[0] + theta[1] * x[1] + theta[2]);
      const d = p - t;
      const h = p * (1 - p);
      for (let r = 0; r < 3; r++) {
        grad[r] += d * x[r];
        for (let c = 0; c < 3; c++) H[r * 3 + c] += h * x[r] * x[c];
      }
    }
    const step = solve3(H, grad);
    if (!step) break;
    for (let r = 0; r < 3; r++) theta[r] -= step[r];
    if (Math.max(...step.map(Math.abs)) < 1e-9) break;
  }
  return { a: theta[0], b: theta[2], c: theta[1] };
}

/** Solves the 3×3 system H·s = g by Cramer's rule; null when singular. */
function solve3(H: number[], g: number[]): number[] | null {
  const det = (m: number[]) => m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6]);
  const d = det(H);
  if (!Number.isFinite(d) || Math.abs(d) < 1e-12) return null;
  return [0, 1, 2].map((col) => {
    const m = H.slice();
    for (let r = 0; r < 3; r++) m[r * 3 + col] = g[r];
    return det(m) / d;
  });
}
