// The dashboard's numbers: an in-memory time series fed by the decision observer.
// Fixed time buckets (10 s by default, the last 60 kept: ten minutes), each a handful of
// sums, plus the same sums since the gateway started. Memory is bounded whatever the
// traffic: latency percentiles come from a fixed-size reservoir sample per bucket (exact
// up to RESERVOIR requests in a bucket, a uniform sample beyond).
//
// Definitions (DESIGN §5; the README's dashboard section says the same):
// - requests: decision records (every chat completion request, errors included).
// - routing mix: answered requests by the tier (and model) that served them; failed
//   requests count as errors, not under a tier.
// - cost: Σ cost_usd of every request (every model call, judge calls included).
// - cost saved: Σ cost_saved_usd = Σ (best_cost_usd − cost_usd) over answered requests;
//   cost saved % = that over Σ best_cost_usd, i.e. 1 − cost(policy) / cost(always-best)
//   on the same requests. A failed request has no always-best cost and is left out of
//   both (its spend still shows in cost).
// - escalation rate: requests that climbed at least one tier / requests.
// - quality score: mean quality_score (the gate's score) of answered requests that were
//   scored. It is an absolute score, not quality retention.
// - gate-passed share: answered requests whose served answer passed the gate / answered
//   requests the gate decided on (gate passed or failed; no gate and bypass left out).
// - quality retention = mean quality(policy) / mean quality(always-best). Only a shadow
//   comparison knows the always-best answer's quality: a `kind: "shadow"` line (see
//   src/pipeline/shadow.ts: the always-best model's answer to a sampled request that a cheaper
//   model served, scored by the same gate) counts when both scores are known; retention
//   is Σ served_quality / Σ best_quality over those comparisons, so it covers the
//   requests routed below always-best (requests the best model served retain 100 % by
//   definition). Null (shown as "needs shadow data") when there are none.
// - latency: latency_ms of every request (whole request, errors included), p50 and p95.
import type { DecisionRecord } from './decision-log.ts';

const RESERVOIR = 512;

/** Uniform sample of at most `capacity` values (Vitter's algorithm R). */
class Reservoir {
  private readonly samples: number[] = [];
  private seen = 0;

  constructor(private readonly capacity: number) {}

  add(value: number): void {
    this.seen++;
    if (this.samples.length < this.capacity) this.samples.push(value);
    else {
      const j = Math.floor(Math.random() * this.seen);
      if (j < this.capacity) this.samples[j] = value;
    }
  }

  /** Nearest-rank quantiles; null when empty. */
  quantiles(qs: readonly number[]): Array<number | null> {
    if (this.samples.length === 0) return qs.map(() => null);
    const sorted = [...this.samples].sort((a, b) => a - b);
    return qs.map((q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]);
  }
}

/** What the dashboard reads of a shadow line (a subset of ShadowRecord, src/observe/decision-log.ts). */
export interface ShadowComparison {
  kind: 'shadow';
  served_quality: number | null;
  best_quality: number | null;
  status: 'ok' | 'error';
}

function isShadow(line: DecisionRecord | ShadowComparison): line is ShadowComparison {
  return (line as { kind?: unknown }).kind === 'shadow';
}

export interface StatsView {
  requests: number;
  errors: number;
  /** Answered requests by serving tier ("" for a model outside the ladder). */
  by_tier: Record<string, number>;
  by_model: Record<string, number>;
  cost_usd: number;
  best_cost_usd: number;
  cost_saved_usd: number;
  /** cost_saved_usd / best_cost_usd; null without answered requests. */
  cost_saved_pct: number | null;
  escalated: number;
  escalation_rate: number | null;
  quality_mean: number | null;
  quality_count: number;
  gate_passed_share: number | null;
  quality_retention: number | null;
  retention_count: number;
  latency_ms: { p50: number | null; p95: number | null };
}

class Stats {
  requests = 0;
  errors = 0;
  byTier = new Map<string, number>();
  byModel = new Map<string, number>();
  cost = 0;
  bestCost = 0;
  costSaved = 0;
  escalated = 0;
  qualitySum = 0;
  qualityCount = 0;
  gatePassed = 0;
  gateDecided = 0;
  retentionServed = 0;
  retentionBest = 0;
  retentionCount = 0;
  latency = new Reservoir(RESERVOIR);

  add(record: DecisionRecord): void {
    this.requests++;
    if (record.cost_usd !== null) this.cost += record.cost_usd;
    if (record.was_escalated) this.escalated++;
    this.latency.add(record.latency_ms);
    if (record.status !== 'ok') {
      this.errors++;
      return;
    }
    const tier = record.tier ?? '';
    this.byTier.set(tier, (this.byTier.get(tier) ?? 0) + 1);
    if (record.selected_model) this.byModel.set(record.selected_model, (this.byModel.get(record.selected_model) ?? 0) + 1);
    if (record.cost_saved_usd !== null && record.best_cost_usd !== null) {
      this.bestCost += record.best_cost_usd;
      this.costSaved += record.cost_saved_usd;
    }
    if (record.quality_score !== null) {
      this.qualitySum += record.quality_score;
      this.qualityCount++;
    }
    if (record.gate === 'passed' || record.gate === 'failed') {
      this.gateDecided++;
      if (record.gate === 'passed') this.gatePassed++;
    }
  }

  addShadow(shadow: ShadowComparison): void {
    if (shadow.status !== 'ok' || shadow.served_quality === null || shadow.best_quality === null) return;
    this.retentionServed += shadow.served_quality;
    this.retentionBest += shadow.best_quality;
    this.retentionCount++;
  }

  view(): StatsView {
    const [p50, p95] = this.latency.quantiles([0.5, 0.95]);
    const ratio = (a: number, b: number) => (b > 0 ? a / b : null);
    return {
      requests: this.requests,
      errors: this.errors,
      by_tier: Object.fromEntries(this.byTier),
      by_model: Object.fromEntries(this.byModel),
      cost_usd: this.cost,
      best_cost_usd: this.bestCost,
      cost_saved_usd: this.costSaved,
      cost_saved_pct: ratio(this.costSaved, this.bestCost),
      escalated: this.escalated,
      escalation_rate: ratio(this.escalated, this.requests),
      quality_mean: ratio(this.qualitySum, this.qualityCount),
      quality_count: this.qualityCount,
      gate_passed_share: ratio(this.gatePassed, this.gateDecided),
      quality_retention: ratio(this.retentionServed, this.retentionBest),
      retention_count: this.retentionCount,
      latency_ms: { p50, p95 },
    };
  }
}

export interface AggregatorOptions {
  /** Width of one bucket (default 10 s). */
  bucketSeconds?: number;
  /** Buckets kept (default 60). */
  buckets?: number;
  /** Clock in ms since the epoch (tests). */
  now?: () => number;
}

export interface SeriesView {
  bucket_seconds: number;
  since: string;
  totals: StatsView;
  /** Oldest first, one per bucket (empty ones included), the last ending now. */
  buckets: Array<StatsView & { start: string }>;
}

export class DashboardAggregator {
  private readonly bucketMs: number;
  private readonly count: number;
  private readonly now: () => number;
  private readonly started: number;
  private readonly totals = new Stats();
  /** Bucket index (ms since the epoch / bucketMs) → its sums; at most `count` entries. */
  private readonly series = new Map<number, Stats>();

  constructor(options: AggregatorOptions = {}) {
    this.bucketMs = (options.bucketSeconds ?? 10) * 1000;
    this.count = options.buckets ?? 60;
    this.now = options.now ?? Date.now;
    this.started = this.now();
  }

  /**
   * A decision observer: a few additions, no I/O. Also takes shadow lines, which count
   * toward quality retention only (in the bucket they arrive in).
   */
  observe(line: DecisionRecord | ShadowComparison): void {
    const index = Math.floor(this.now() / this.bucketMs);
    let bucket = this.series.get(index);
    if (!bucket) {
      bucket = new Stats();
      this.series.set(index, bucket);
      for (const old of this.series.keys()) if (old <= index - this.count) this.series.delete(old);
    }
    if (isShadow(line)) {
      bucket.addShadow(line);
      this.totals.addShadow(line);
    } else {
      bucket.add(line);
      this.totals.add(line);
    }
  }

  view(): SeriesView {
    const last = Math.floor(this.now() / this.bucketMs);
    const empty = new Stats().view();
    const buckets: SeriesView['buckets'] = [];
    for (let index = last - this.count + 1; index <= last; index++) {
      buckets.push({ start: new Date(index * this.bucketMs).toISOString(), ...(this.series.get(index)?.view() ?? empty) });
    }
    return { bucket_seconds: this.bucketMs / 1000, since: new Date(this.started).toISOString(), totals: this.totals.view(), buckets };
  }
}
