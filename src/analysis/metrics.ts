// The numbers `tiergate eval` and `tiergate report` print: the seed's four routing
// metrics, the always-best / always-cheapest / random-at-equal-cost (the tiers' hull) /
// oracle baselines, RouteLLM's
// PGR, APGR and CPT, RouterBench's AIQ, and the quality gate's precision and recall.
//
// Pure functions over plain data: no I/O, no clock, no global state, so the eval runner,
// the report and the tests all get the same number from the same input. Definitions
// follow ../shared/DESIGN.md §5; where a metric comes from a paper, the comment names the
// code it was checked against.
//
// Conventions used throughout:
// - quality is a score in [0, 1] (MT-Bench's 1–10 judge scores are divided by 10);
// - a row's tiers are ordered cheapest first, so tier 0 is the "weak" model and the last
//   tier the "strong" (top, always-best) one;
// - a share is a fraction in [0, 1], never a percentage;
// - a ratio whose denominator is zero is 1 when its numerator is zero too (the policy
//   behaves exactly like the baseline) and NaN otherwise (undefined; print it as "n/a").
import { mulberry32 } from '../common/random.ts';

/** One dataset row as the metrics see it: what each tier's answer scored and cost, cheapest tier first. */
export interface RowOutcomes {
  id: string;
  tiers: Array<{ quality: number; cost: number; costEstimated?: boolean }>;
}

/** What a policy did with one row. */
export interface PolicyRowResult {
  id: string;
  /** Tier the router sent it to first. */
  firstTier: number;
  /** Tier whose answer was served. */
  servedTier: number;
  /** Recorded quality (0..1) of the served answer. */
  quality: number;
  /** Everything the request cost: every attempt, aborted speculative calls, judge calls. */
  cost: number;
  /** The first answer failed the gate and the request went up. */
  escalated: boolean;
  /** Did the first answer pass the gate (null: no gate). */
  firstPassedGate: boolean | null;
}

/** The mission's targets: routing accuracy, cost savings and quality retention must exceed theirs; escalation rate must stay below its. */
export interface Targets {
  routing_accuracy: 0.9;
  cost_savings: 0.5;
  quality_retention: 0.98;
  escalation_rate: 0.25;
}

/** The seed's targets for a routing policy (DESIGN §5; seed "Key Routing Metrics"). */
export const TARGETS: Readonly<Targets> = Object.freeze({
  routing_accuracy: 0.9,
  cost_savings: 0.5,
  quality_retention: 0.98,
  escalation_rate: 0.25,
});

export interface PolicyMetrics {
  rows: number;
  /** Share of rows whose firstTier is the row's oracle tier (DESIGN §5). */
  routing_accuracy: number;
  /** 1 − Σcost / Σcost(always-best), gate and judge calls included. */
  cost_savings: number;
  /** mean quality / mean quality(always-best). */
  quality_retention: number;
  /** Share of rows whose first answer failed the gate and went up. */
  escalation_rate: number;
  /** Share of rows served by the top tier. */
  strong_call_share: number;
  mean_quality: number;
  total_cost: number;
  meets: { routing_accuracy: boolean; cost_savings: boolean; quality_retention: boolean; escalation_rate: boolean };
  // Additions beyond the agreed shape:
  /** total_cost / rows. */
  mean_cost: number;
  /** Σcost of always-best on the same rows (the cost_savings denominator). */
  always_best_cost: number;
  /** Mean quality of always-best on the same rows (the quality_retention denominator). */
  always_best_quality: number;
  /** Some always-best cost in the denominator was estimated rather than recorded (`costEstimated`). */
  costs_estimated: boolean;
  /** Rows (expected counts for the random baseline) first sent to each tier, index = tier. */
  first_tier_counts: number[];
  /** Rows (expected counts for the random baseline) served by each tier, index = tier. */
  served_tier_counts: number[];
  /** True when all four targets are met. */
  meets_all: boolean;
}

/** A point of a cost–quality curve: one policy (or one threshold of a policy) on a row set. */
export interface CurvePoint {
  label?: string;
  /** Share of rows served by the top tier, in [0, 1]. */
  strong_share: number;
  /** Total cost over the row set (same unit as PolicyMetrics.total_cost). */
  cost: number;
  /** Mean quality over the row set, in [0, 1]. */
  quality: number;
}

export type BaselineName = 'always_cheapest' | 'always_best' | 'random_equal_cost' | 'oracle';

/** Scores that close to the target count as meeting it (recorded scores such as 0.95 vs a 0.95 target). */
const EPS = 1e-9;

// ---------------------------------------------------------------------------
// Oracle tier and the per-policy summary
// ---------------------------------------------------------------------------

/** True when `quality` meets `target` (with a 1e-9 tolerance for float noise). NaN never meets. */
export function meetsTarget(quality: number, target: number): boolean {
  return Number.isFinite(quality) && quality >= target - EPS;
}

/** Index of the row's top (strongest, always-best) tier. */
export function topTier(row: RowOutcomes): number {
  if (row.tiers.length === 0) throw new Error(`row ${row.id} has no tiers`);
  return row.tiers.length - 1;
}

/**
 * The oracle tier of a row (DESIGN §5): the cheapest tier whose recorded quality meets
 * the quality target; the top tier when none does. "Cheapest" is tier order — rows list
 * their tiers cheapest first.
 */
export function oracleTier(row: RowOutcomes, qualityTarget: number): number {
  const top = topTier(row);
  for (let tier = 0; tier < top; tier++) if (meetsTarget(row.tiers[tier].quality, qualityTarget)) return tier;
  return top;
}

/** Accumulates (possibly probability-weighted) outcomes; each row's weights sum to 1. */
class Tally {
  private n = 0;
  private accurate = 0;
  private cost = 0;
  private quality = 0;
  private bestCost = 0;
  private bestQuality = 0;
  private escalated = 0;
  private strong = 0;
  private estimated = false;
  private readonly first: number[] = [];
  private readonly served: number[] = [];

  constructor(private readonly qualityTarget: number) {}

  /** Counts a row and its always-best denominators, once however many weighted outcomes it has. */
  row(row: RowOutcomes): void {
    this.n++;
    const best = row.tiers[topTier(row)];
    this.bestCost += best.cost;
    this.bestQuality += best.quality;
    if (best.costEstimated) this.estimated = true;
  }

  outcome(row: RowOutcomes, result: PolicyRowResult, weight: number): void {
    const top = topTier(row);
    checkTier(row, result.firstTier, 'firstTier');
    checkTier(row, result.servedTier, 'servedTier');
    if (result.firstTier === oracleTier(row, this.qualityTarget)) this.accurate += weight;
    this.cost += weight * result.cost;
    this.quality += weight * result.quality;
    if (result.escalated) this.escalated += weight;
    if (result.servedTier === top) this.strong += weight;
    this.first[result.firstTier] = (this.first[result.firstTier] ?? 0) + weight;
    this.served[result.servedTier] = (this.served[result.servedTier] ?? 0) + weight;
  }

  finish(): PolicyMetrics {
    const n = this.n;
    const share = (x: number) => (n === 0 ? Number.NaN : x / n);
    const routing_accuracy = share(this.accurate);
    const cost_savings = 1 - ratio(this.cost, this.bestCost);
    const quality_retention = ratio(this.quality, this.bestQuality);
    const escalation_rate = share(this.escalated);
    const meets = {
      routing_accuracy: routing_accuracy > TARGETS.routing_accuracy,
      cost_savings: cost_savings > TARGETS.cost_savings,
      quality_retention: quality_retention > TARGETS.quality_retention,
      escalation_rate: escalation_rate < TARGETS.escalation_rate,
    };
    const width = Math.max(this.first.length, this.served.length);
    const dense = (xs: number[]) => Array.from({ length: width }, (_, i) => xs[i] ?? 0);
    return {
      rows: n,
      routing_accuracy,
      cost_savings,
      quality_retention,
      escalation_rate,
      strong_call_share: share(this.strong),
      mean_quality: share(this.quality),
      total_cost: this.cost,
      meets,
      mean_cost: share(this.cost),
      always_best_cost: this.bestCost,
      always_best_quality: share(this.bestQuality),
      costs_estimated: this.estimated,
      first_tier_counts: dense(this.first),
      served_tier_counts: dense(this.served),
      meets_all: meets.routing_accuracy && meets.cost_savings && meets.quality_retention && meets.escalation_rate,
    };
  }
}

function checkTier(row: RowOutcomes, tier: number, field: string): void {
  if (!Number.isInteger(tier) || tier < 0 || tier >= row.tiers.length) {
    throw new Error(`result for row ${row.id}: ${field} ${tier} is not a tier of that row (0..${row.tiers.length - 1})`);
  }
}

/** a / b, with 0/0 = 1 (identical to the baseline) and x/0 = NaN (undefined). */
function ratio(a: number, b: number): number {
  if (b === 0) return a === 0 ? 1 : Number.NaN;
  return a / b;
}

function indexRows(rows: RowOutcomes[]): Map<string, RowOutcomes> {
  const index = new Map<string, RowOutcomes>();
  for (const row of rows) {
    if (index.has(row.id)) throw new Error(`duplicate row id ${row.id}`);
    index.set(row.id, row);
  }
  return index;
}

/**
 * The seed's four routing metrics (and the numbers behind them) for one policy's results.
 * Metrics are computed over the rows that have a result; every result must name a row.
 * The always-best baseline is the top tier of those same rows, so cost savings and
 * quality retention compare like with like. Targets are strict: > for accuracy, savings
 * and retention, < for escalation rate.
 */
export function summarize(rows: RowOutcomes[], results: PolicyRowResult[], qualityTarget: number): PolicyMetrics {
  const index = indexRows(rows);
  const seen = new Set<string>();
  const tally = new Tally(qualityTarget);
  for (const result of results) {
    const row = index.get(result.id);
    if (!row) throw new Error(`result for unknown row ${result.id}`);
    if (seen.has(row.id)) throw new Error(`row ${row.id} has more than one result`);
    seen.add(row.id);
    tally.row(row);
    tally.outcome(row, result, 1);
  }
  return tally.finish();
}

/** The result of sending a row to one tier and serving that tier's answer, no gate. */
export function fixedTierResult(row: RowOutcomes, tier: number): PolicyRowResult {
  checkTier(row, tier, 'tier');
  const { quality, cost } = row.tiers[tier];
  return { id: row.id, firstTier: tier, servedTier: tier, quality, cost, escalated: false, firstPassedGate: null };
}

/** A fixed policy's results: every row to `tier` ('top' = each row's last tier). */
export function fixedTierResults(rows: RowOutcomes[], tier: number | 'top'): PolicyRowResult[] {
  return rows.map((row) => fixedTierResult(row, tier === 'top' ? topTier(row) : tier));
}

/** A PolicyMetrics as a point of the cost–quality curve. */
export function toCurvePoint(metrics: PolicyMetrics, label?: string): CurvePoint {
  return { label, strong_share: metrics.strong_call_share, cost: metrics.total_cost, quality: metrics.mean_quality };
}

// ---------------------------------------------------------------------------
// Baselines
// ---------------------------------------------------------------------------

/**
 * The four reference policies on the same rows, as metrics and as curve points:
 * - always_cheapest: every row to tier 0;
 * - always_best: every row to the top tier (cost savings 0, quality retention 1);
 * - oracle: every row straight to its oracle tier (DESIGN §5), paying only that tier
 *   (routing accuracy 1). This is the only oracle the eval reports: table, chart and
 *   curve metrics all use it;
 * - random_equal_cost: the best mix of fixed tiers that spends `policyCost` (DESIGN §5,
 *   RouterBench's zero router): the point of the tiers' cost–quality hull at that cost
 *   (tierHull). Each row goes to one of the two hull tiers around that cost, with the
 *   probabilities that make the expected total cost `policyCost`; below the hull's
 *   cheapest point it is that point, beyond its best point it is that point (spending
 *   more never has to mean doing worse). With two tiers where the top one is dearer and
 *   better this is the old tier-0/top coin flip; with more tiers a middle tier on the
 *   hull makes it stronger, which is the point: mixing only the cheapest and the top
 *   tier flatters any router that uses the middle.
 *   Its metrics are exact expectations — every number is linear in the per-row
 *   probabilities — so no random numbers are drawn and `seed` is accepted only so
 *   callers that pass one keep working. For one sampled realisation use
 *   randomPolicyResults().
 */
export function baselines(rows: RowOutcomes[], qualityTarget: number, policyCost: number, seed?: number): Record<BaselineName, PolicyMetrics & CurvePoint> {
  void seed;
  const withPoint = (label: BaselineName, metrics: PolicyMetrics): PolicyMetrics & CurvePoint => ({
    ...metrics,
    ...toCurvePoint(metrics, label),
  });
  const mix = equalCostMix(rows, policyCost);
  // The rows are the policies' own input here, so no id matching is needed.
  const cheapest = new Tally(qualityTarget);
  const best = new Tally(qualityTarget);
  const random = new Tally(qualityTarget);
  const oracle = new Tally(qualityTarget);
  for (const row of rows) {
    const top = topTier(row);
    for (const tally of [cheapest, best, random, oracle]) tally.row(row);
    cheapest.outcome(row, fixedTierResult(row, 0), 1);
    best.outcome(row, fixedTierResult(row, top), 1);
    oracle.outcome(row, fixedTierResult(row, oracleTier(row, qualityTarget)), 1);
    for (const { tier, weight } of mix) if (weight > 0) random.outcome(row, fixedTierResult(row, tier), weight);
  }
  return {
    always_cheapest: withPoint('always_cheapest', cheapest.finish()),
    always_best: withPoint('always_best', best.finish()),
    random_equal_cost: withPoint('random_equal_cost', random.finish()),
    oracle: withPoint('oracle', oracle.finish()),
  };
}

/** A fixed tier on a row set: every row sent to it, totals over the rows. */
export interface TierPoint {
  tier: number;
  /** Σ cost of the tier over the rows. */
  cost: number;
  /** Mean quality of the tier over the rows. */
  quality: number;
}

/** Each fixed tier's (total cost, mean quality) on the rows, tier order. Rows must have the same number of tiers. */
export function tierPoints(rows: RowOutcomes[]): TierPoint[] {
  const width = rows.length === 0 ? 0 : rows[0].tiers.length;
  const points: TierPoint[] = Array.from({ length: width }, (_, tier) => ({ tier, cost: 0, quality: 0 }));
  for (const row of rows) {
    if (row.tiers.length !== width) throw new Error(`row ${row.id} has ${row.tiers.length} tiers, the others ${width}`);
    for (const [tier, t] of row.tiers.entries()) {
      points[tier].cost += t.cost;
      points[tier].quality += t.quality;
    }
  }
  for (const p of points) p.quality = rows.length === 0 ? Number.NaN : p.quality / rows.length;
  return points;
}

/**
 * The vertices of the fixed tiers' cost–quality hull (DESIGN §5 "random at equal cost"):
 * any mix of two tiers — each row to one of them at random — costs and scores the same
 * mix of their totals, so the best quality reachable at a cost is the upper concave hull
 * of the tiers' points, from the cheapest point (best quality among equally cheap ones)
 * up to the best one. A tier under a chord between two others, or dearer and no better
 * than one, is never part of the best mix. Sorted by cost.
 */
export function tierHull(rows: RowOutcomes[]): TierPoint[] {
  const points = tierPoints(rows)
    .filter((p) => Number.isFinite(p.cost) && Number.isFinite(p.quality))
    .sort((a, b) => a.cost - b.cost || b.quality - a.quality);
  const hull: TierPoint[] = [];
  for (const p of points) {
    const last = hull[hull.length - 1];
    if (last && p.quality <= last.quality + EPS) continue; // dearer (or as dear) and no better
    // Drop the last vertex while it lies on or under the chord to p.
    while (hull.length >= 2) {
      const o = hull[hull.length - 2];
      const a = hull[hull.length - 1];
      if ((a.cost - o.cost) * (p.quality - o.quality) - (a.quality - o.quality) * (p.cost - o.cost) >= 0) hull.pop();
      else break;
    }
    hull.push(p);
  }
  return hull;
}

/** The tiers (and their shares of rows) of the best mix of fixed tiers whose expected total cost is `cost`; weights sum to 1. */
export function equalCostMix(rows: RowOutcomes[], cost: number): Array<{ tier: number; weight: number }> {
  const hull = tierHull(rows);
  if (hull.length === 0) return [{ tier: 0, weight: 1 }];
  if (!(cost > hull[0].cost)) return [{ tier: hull[0].tier, weight: 1 }];
  for (let i = 1; i < hull.length; i++) {
    const a = hull[i - 1];
    const b = hull[i];
    if (cost >= b.cost) continue;
    const w = (cost - a.cost) / (b.cost - a.cost);
    return [
      { tier: a.tier, weight: 1 - w },
      { tier: b.tier, weight: w },
    ];
  }
  return [{ tier: hull[hull.length - 1].tier, weight: 1 }];
}

/** The hull of equalCostMix as curve points (one per vertex), for charts and AIQ. */
export function tierHullCurve(rows: RowOutcomes[], names: readonly string[] = []): CurvePoint[] {
  const n = rows.length;
  return tierHull(rows).map((p) => ({
    label: names[p.tier] ?? `tier ${p.tier}`,
    strong_share: n === 0 ? Number.NaN : p.tier === topTier(rows[0]) ? 1 : 0,
    cost: p.cost,
    quality: p.quality,
  }));
}

/**
 * The share p of rows a tier-0/top random router must send to the top tier for its
 * expected total cost to equal `cost`, clamped to [0, 1]. This is the two-tier mix the
 * eval used before the hull: kept for RouteLLM's two-model figures, where the hull is
 * this same line whenever the top tier is the dearer and better one.
 */
export function equalCostStrongShare(rows: RowOutcomes[], cost: number): number {
  let weak = 0;
  let strong = 0;
  for (const row of rows) {
    weak += row.tiers[0].cost;
    strong += row.tiers[topTier(row)].cost;
  }
  if (!(strong > weak)) return 0;
  return clamp01((cost - weak) / (strong - weak));
}

/**
 * One sampled realisation of the random router: each row goes to the top tier with
 * probability `p` and to tier 0 otherwise, using a seeded generator (mulberry32), so the
 * same seed gives the same results.
 */
export function randomPolicyResults(rows: RowOutcomes[], p: number, seed = 1): PolicyRowResult[] {
  const next = mulberry32(seed);
  return rows.map((row) => fixedTierResult(row, next() < p ? topTier(row) : 0));
}

// The PRNG lives in src/common/random.ts; re-exported because callers import it from here.
export { mulberry32 };

// ---------------------------------------------------------------------------
// RouteLLM: PGR, APGR, CPT (two models: weak = tier 0, strong = top)
// ---------------------------------------------------------------------------

/**
 * Performance gap recovered (RouteLLM): (quality − weak) / (strong − weak). 0 = as good as
 * the weak model, 1 = as good as the strong one; it exceeds 1 when the policy beats the
 * strong model (an oracle does). When strong and weak score the same there is no gap to
 * recover: PGR is 1 if the quality reaches that score and 0 if it falls short.
 */
export function pgr(quality: number, weakQuality: number, strongQuality: number): number {
  const gap = strongQuality - weakQuality;
  if (Math.abs(gap) <= EPS) return quality >= strongQuality - EPS ? 1 : 0;
  return (quality - weakQuality) / gap;
}

/** A point of a polyline: x is a share or a cost, y a quality. */
export interface XY {
  x: number;
  y: number;
}

/** Curve points on the strong-share axis, with the given anchors, sorted by share then quality. */
function shareCurve(curve: CurvePoint[], anchors: XY[]): XY[] {
  const points: XY[] = [...anchors];
  for (const p of curve) {
    if (Number.isFinite(p.strong_share) && Number.isFinite(p.quality)) points.push({ x: clamp01(p.strong_share), y: p.quality });
  }
  return points.sort((a, b) => a.x - b.x || a.y - b.y);
}

/**
 * The running maximum of the piecewise-linear curve through `points` (sorted by x):
 * q̃(x) = max of the curve over [x0, x]. Exact — it adds the points where a rising
 * segment climbs back over the running maximum.
 */
export function runningMaxPolyline(points: XY[]): XY[] {
  if (points.length === 0) return [];
  const out: XY[] = [{ ...points[0] }];
  let max = points[0].y;
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1];
    const b = points[i];
    if (b.y <= max) {
      out.push({ x: b.x, y: max });
      continue;
    }
    if (a.y < max && b.x > a.x) {
      const x = a.x + ((max - a.y) / (b.y - a.y)) * (b.x - a.x);
      if (x > out[out.length - 1].x) out.push({ x, y: max });
    }
    out.push({ x: b.x, y: b.y });
    max = b.y;
  }
  return out;
}

/** Trapezoid area under a polyline sorted by x. */
function trapezoid(points: XY[]): number {
  let area = 0;
  for (let i = 1; i < points.length; i++) area += ((points[i].y + points[i - 1].y) / 2) * (points[i].x - points[i - 1].x);
  return area;
}

/** Length of the part of [x0, xn] where the polyline is ≥ level. */
function lengthAtLeast(points: XY[], level: number): number {
  let total = 0;
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1];
    const b = points[i];
    const width = b.x - a.x;
    const aOk = a.y >= level - EPS;
    const bOk = b.y >= level - EPS;
    if (aOk && bOk) total += width;
    else if (aOk !== bOk) {
      const t = (level - a.y) / (b.y - a.y); // where the segment crosses the level
      total += aOk ? t * width : (1 - t) * width;
    }
  }
  return total;
}

/**
 * Average performance gap recovered (RouteLLM): the mean of PGR(c) over the strong-call
 * share c in [0, 1]. The curve is anchored at (0, weak) — route nothing to the strong
 * model — and (1, strong) — route everything — and interpolated linearly between points.
 *
 * By default (`monotone: true`) the curve is first made non-decreasing: q̃(c) is the best
 * quality reached with at most c strong calls (its running maximum), since a router never
 * has to spend a larger budget to do worse. RouteLLM's evaluate.py integrates its threshold
 * points as they come (np.trapz of accuracy over %strong, minus the weak and strong
 * constant areas); pass `monotone: false` for exactly that. Both agree when the curve is
 * already non-decreasing, and its CPT (np.interp over accuracy) presumes it is.
 *
 * A random router scores 0.5 (its expected curve is the straight anchor line); an oracle
 * scores above 1 because it beats the strong model (it takes the better answer per row).
 */
export function apgr(curve: CurvePoint[], weakQuality: number, strongQuality: number, options: { monotone?: boolean } = {}): number {
  const points = shareCurve(curve, [
    { x: 0, y: weakQuality },
    { x: 1, y: strongQuality },
  ]);
  const line = options.monotone === false ? points : runningMaxPolyline(points);
  if (Math.abs(strongQuality - weakQuality) <= EPS) return lengthAtLeast(line, strongQuality);
  // The mean of a linear function of q is that function of the mean of q.
  return pgr(trapezoid(line), weakQuality, strongQuality);
}

/**
 * Call-performance threshold (RouteLLM's CPT(x%)): the smallest strong-call share at which
 * the curve reaches PGR ≥ target (target as a fraction: 0.5 for CPT(50%)), interpolating
 * linearly between points; null when it never does. Only the (0, weak) anchor is added —
 * not (1, strong), which would make every target ≤ 1 trivially reachable at 100 % and say
 * nothing about the router measured.
 */
export function cpt(curve: CurvePoint[], weakQuality: number, strongQuality: number, target: number): number | null {
  const points = shareCurve(curve, [{ x: 0, y: weakQuality }]);
  const gap = strongQuality - weakQuality;
  const degenerate = Math.abs(gap) <= EPS;
  if (degenerate && target > 1) return null;
  // f ≥ 0 exactly where PGR ≥ target; f is linear in quality unless the gap is zero.
  const f = (q: number) => (degenerate ? (target <= 0 ? 0 : q - strongQuality) : pgr(q, weakQuality, strongQuality) - target);
  const reached = (q: number) => f(q) >= -EPS;
  if (reached(points[0].y)) return points[0].x;
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1];
    const b = points[i];
    if (!reached(b.y)) continue;
    const fa = f(a.y);
    const fb = f(b.y);
    const t = fb === fa ? 1 : fa / (fa - fb);
    return a.x + clamp01(t) * (b.x - a.x);
  }
  return null;
}

/**
 * Expected cost–quality curve of a random router between tier 0 (weak) and the top tier
 * (strong): at share p each row goes to the top tier with probability p. Quality and cost
 * are exact expectations, so the curve is the straight line between always-weak and
 * always-strong, and its APGR is 0.5. `steps` + 1 points, p = 0, 1/steps, …, 1.
 */
export function randomRouterCurve(rows: RowOutcomes[], steps = 10): CurvePoint[] {
  const n = rows.length;
  let weakQ = 0;
  let strongQ = 0;
  let weakC = 0;
  let strongC = 0;
  for (const row of rows) {
    const top = row.tiers[topTier(row)];
    weakQ += row.tiers[0].quality;
    strongQ += top.quality;
    weakC += row.tiers[0].cost;
    strongC += top.cost;
  }
  return Array.from({ length: steps + 1 }, (_, i) => {
    const p = i / steps;
    return {
      label: 'random',
      strong_share: p,
      cost: (1 - p) * weakC + p * strongC,
      quality: n === 0 ? Number.NaN : ((1 - p) * weakQ + p * strongQ) / n,
    };
  });
}

/**
 * Why PGR, APGR, CPT and "gap closed" mean nothing on these rows, or null when they do.
 * They measure the share of the weak–strong gap a policy recovers, which presumes the top
 * tier is the best (DESIGN §5): where a lower tier scores better on the data, "the gap"
 * is not what the policy has to close, and the same formula printed 2.08 for a policy
 * that did no better than that middle tier. `names` label the tiers in the reason.
 */
export function pgrRefusal(rows: RowOutcomes[], names: readonly string[] = []): string | null {
  const points = tierPoints(rows);
  if (points.length < 2) return 'one tier: there is no weak–strong gap';
  const top = points[points.length - 1];
  const name = (tier: number) => names[tier] ?? `tier ${tier}`;
  const better = points.filter((p) => p.tier !== top.tier && p.quality > top.quality + EPS).sort((a, b) => b.quality - a.quality);
  if (better.length === 0) return null;
  const b = better[0];
  return `the top tier is not the best on these rows (${name(b.tier)} scores ${b.quality.toFixed(3)}, the top tier ${name(top.tier)} ${top.quality.toFixed(3)}): PGR, APGR, CPT and gap closed assume it is, so they are not reported`;
}

/**
 * The best possible two-model router at each strong-call budget (RouteLLM's
 * get_optimal_accuracy). Not the eval's oracle: `tiergate eval` reports one oracle, the
 * per-row oracle tier of DESIGN §5 (baselines().oracle), in its table and its chart
 * alike. This curve is kept to check RouteLLM's published figures, whose "optimal"
 * router it is; with budget c it sends to the top tier the c·n rows where the top
 * tier gains most over tier 0 — only rows with a positive gain — and the rest to tier 0.
 * A fractional last row counts in proportion (the expectation of a random tie-break).
 * Points carry the share actually used, which stops growing once every row with a gain
 * is routed up. `steps` + 1 budgets, c = 0, 1/steps, …, 1.
 */
export function optimalBudgetCurve(rows: RowOutcomes[], steps = 10): CurvePoint[] {
  const n = rows.length;
  let weakQ = 0;
  let weakC = 0;
  const gains: Array<{ dq: number; dc: number }> = [];
  for (const row of rows) {
    const weak = row.tiers[0];
    const top = row.tiers[topTier(row)];
    weakQ += weak.quality;
    weakC += weak.cost;
    if (top.quality - weak.quality > EPS) gains.push({ dq: top.quality - weak.quality, dc: top.cost - weak.cost });
  }
  gains.sort((a, b) => b.dq - a.dq || a.dc - b.dc);
  return Array.from({ length: steps + 1 }, (_, i) => {
    const budget = Math.min((i / steps) * n, gains.length);
    let q = weakQ;
    let c = weakC;
    const whole = Math.floor(budget);
    for (let k = 0; k < whole; k++) {
      q += gains[k].dq;
      c += gains[k].dc;
    }
    const part = budget - whole;
    if (part > 0 && whole < gains.length) {
      q += part * gains[whole].dq;
      c += part * gains[whole].dc;
    }
    return { label: 'optimal budget', strong_share: n === 0 ? Number.NaN : budget / n, cost: c, quality: n === 0 ? Number.NaN : q / n };
  });
}

/** @deprecated the name of optimalBudgetCurve before the eval settled on one oracle (DESIGN §5); it is not that oracle. */
export const oracleCurve = optimalBudgetCurve;

// ---------------------------------------------------------------------------
// RouterBench: AIQ
// ---------------------------------------------------------------------------

/**
 * The non-decreasing convex hull of cost–quality points (RouterBench): the upper convex
 * hull of the points — any mix of two routers is a router whose cost and quality are the
 * same mix — cut at its highest point and continued flat from there to the largest cost,
 * since spending more never has to mean doing worse. Returns the hull's vertices, sorted by
 * cost; non-finite points are ignored.
 */
export function nonDecreasingHull(curve: CurvePoint[]): XY[] {
  const sorted = curve
    .filter((p) => Number.isFinite(p.cost) && Number.isFinite(p.quality))
    .map((p) => ({ x: p.cost, y: p.quality }))
    .sort((a, b) => a.x - b.x || b.y - a.y);
  const points: XY[] = [];
  for (const p of sorted) if (points.length === 0 || p.x !== points[points.length - 1].x) points.push(p); // best quality per cost
  if (points.length <= 1) return points;
  const hull: XY[] = [];
  for (const p of points) {
    // Drop the last vertex while it lies on or under the chord to p (not a right turn).
    while (hull.length >= 2) {
      const o = hull[hull.length - 2];
      const a = hull[hull.length - 1];
      if ((a.x - o.x) * (p.y - o.y) - (a.y - o.y) * (p.x - o.x) >= 0) hull.pop();
      else break;
    }
    hull.push(p);
  }
  let peak = 0;
  for (let i = 1; i < hull.length; i++) if (hull[i].y > hull[peak].y) peak = i;
  const out = hull.slice(0, peak + 1);
  const last = points[points.length - 1];
  if (last.x > out[out.length - 1].x) out.push({ x: last.x, y: hull[peak].y });
  return out;
}

/**
 * Average improvement in quality (RouterBench, Hu et al. 2024): the area under the
 * non-decreasing convex hull of the cost–quality points, divided by the cost range, i.e.
 * the hull's mean quality over costs. The range defaults to the points' own
 * [min cost, max cost]; pass `costRange` to compare several routers on one range (as
 * RouterBench's calc_AIQ does): beyond the curve's largest cost its best quality carries
 * on, below its smallest cost it scores 0 (it cannot run that cheaply). One point (or no
 * cost spread) gives that point's quality; no finite point gives NaN.
 */
export function aiq(curve: CurvePoint[], options: { costRange?: [number, number] } = {}): number {
  const hull = nonDecreasingHull(curve);
  if (hull.length === 0) return Number.NaN;
  const first = hull[0];
  const last = hull[hull.length - 1];
  const [lo, hi] = options.costRange ?? [first.x, last.x];
  if (!(hi > lo)) return last.y;
  const line: XY[] = [];
  if (lo < first.x) line.push({ x: lo, y: 0 }, { x: first.x, y: 0 });
  line.push(...hull);
  if (hi > last.x) line.push({ x: hi, y: last.y });
  return areaBetween(line, lo, hi) / (hi - lo);
}

/** Trapezoid area of a polyline (sorted by x, steps allowed) restricted to [lo, hi]. */
function areaBetween(points: XY[], lo: number, hi: number): number {
  let area = 0;
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1];
    const b = points[i];
    const x0 = Math.max(a.x, lo);
    const x1 = Math.min(b.x, hi);
    if (!(x1 > x0)) continue;
    const at = (x: number) => a.y + ((b.y - a.y) * (x - a.x)) / (b.x - a.x);
    area += ((at(x0) + at(x1)) / 2) * (x1 - x0);
  }
  return area;
}

// ---------------------------------------------------------------------------
// The quality gate
// ---------------------------------------------------------------------------

export interface GateConfusion {
  /** tp / (tp + fp): of the first answers the gate passed, the share that were good. NaN when it passed none. */
  precision: number;
  /** tp / (tp + fn): of the good first answers, the share the gate passed. NaN when there were none. */
  recall: number;
  tp: number;
  fp: number;
  fn: number;
  tn: number;
  /** Rows whose first answer went through a gate (results with firstPassedGate === null are left out). */
  gated: number;
}

/**
 * How well the gate judged first answers. "Positive" = the gate passed the first answer;
 * the truth is whether the first tier's recorded quality meets the quality target. A false
 * positive serves a bad answer; a false negative pays for an escalation that was not needed.
 */
export function gatePrecisionRecall(results: PolicyRowResult[], rows: RowOutcomes[], qualityTarget: number): GateConfusion {
  const index = indexRows(rows);
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let tn = 0;
  for (const result of results) {
    if (result.firstPassedGate === null) continue;
    const row = index.get(result.id);
    if (!row) throw new Error(`result for unknown row ${result.id}`);
    checkTier(row, result.firstTier, 'firstTier');
    const good = meetsTarget(row.tiers[result.firstTier].quality, qualityTarget);
    if (result.firstPassedGate) good ? tp++ : fp++;
    else good ? fn++ : tn++;
  }
  return {
    precision: tp + fp === 0 ? Number.NaN : tp / (tp + fp),
    recall: tp + fn === 0 ? Number.NaN : tp / (tp + fn),
    tp,
    fp,
    fn,
    tn,
    gated: tp + fp + fn + tn,
  };
}

// ---------------------------------------------------------------------------
// Small helpers for reports
// ---------------------------------------------------------------------------

/** Arithmetic mean; NaN for an empty list. */
export function mean(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/** The q-quantile (0..1) with linear interpolation between order statistics (numpy's default); NaN for an empty list. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = clamp01(q) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function clamp01(x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

/** n thresholds: 0, 1 and the values at evenly spaced ranks of `values` between them. */
export function quantileThresholds(values: readonly number[], n: number): number[] {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const inner = Array.from({ length: Math.max(n - 2, 0) }, (_, i) => sorted[Math.min(sorted.length - 1, Math.floor(((i + 1) / (n - 1)) * sorted.length))]);
  return [...new Set([0, ...inner.map((v) => Math.min(1, Math.max(0, v))), 1])].sort((a, b) => a - b);
}
