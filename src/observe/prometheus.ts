// Prometheus metrics, served at GET /metrics by src/faces/metrics.ts. Fed only from
// decision records (one call per request, after the answer is sent) and reload results:
// nothing here runs on the request path beyond that observer call, which only bumps counters.
//
// Every gateway has its own registry (tests run many gateways in one process, and a
// team may embed two). The process metrics (CPU, memory, event loop, GC) describe the
// process, not a gateway, so they are collected once per process into a registry of
// their own and exposed by every gateway next to its tiergate_* metrics. Neither is
// prom-client's global default registry.
//
// Label values are bounded by the policy: route, model, tier and evaluator names come
// from gateway.yaml; status, gate, kind and outcome are fixed sets. No request ids, no
// prompts, no client-supplied strings (a request for an unknown model has model="").
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DecisionRecord, ShadowRecord } from './decision-log.ts';
import { cachedInputTokens, cacheWriteInputTokens, reasoningTokens } from '../plugin-contract/usage-details.ts';

/** Seconds. LLM calls run from milliseconds (simulator, cache) to minutes (long generations). */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120];
const SCORE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1];

let processRegistry: Registry | null = null;

/** The process-wide default metrics (process_*, nodejs_*), collected once per process. */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

const label = (value: string | null | undefined): string => value ?? '';

interface PendingSeries {
  readonly labels: Record<string, string>;
  amount: number;
  /** Added to since the last collect (an addition of 0 still creates the series, as prom-client's inc does). */
  dirty: boolean;
}

/**
 * Sums for a prom-client counter (or gauge) kept by label values and handed over when
 * prom-client collects (every scrape calls the metric's collect() first), so a request
 * costs a few Map lookups instead of prom-client's per-call label hash: a string built
 * from every label and looked up afresh, seven times a request. prom-client stays the
 * registry and the exposition. Label values come from the policy, so the series are few.
 */
class Pending<T extends string> {
  private readonly root = new Map<string, unknown>();
  private readonly series: PendingSeries[] = [];

  constructor(
    readonly labelNames: T[],
    /** A counter's: a negative amount is refused (prom-client would throw at scrape). */
    private readonly monotonic: boolean,
  ) {}

  /** Adds `amount` to the series of these label values (in labelNames order). A non-finite amount is dropped, as prom-client would refuse it. */
  add(amount: number, ...values: string[]): void {
    if (!Number.isFinite(amount) || (this.monotonic && amount < 0)) return;
    let node = this.root;
    const last = values.length - 1;
    for (let i = 0; i < last; i++) {
      let next = node.get(values[i]) as Map<string, unknown> | undefined;
      if (!next) {
        next = new Map();
        node.set(values[i], next);
      }
      node = next;
    }
    let leaf = node.get(values[last]) as PendingSeries | undefined;
    if (!leaf) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((name, i) => (labels[name] = values[i]));
      leaf = { labels, amount: 0, dirty: false };
      node.set(values[last], leaf);
      this.series.push(leaf);
    }
    leaf.amount += amount;
    leaf.dirty = true;
  }

  /** Hands the sums to the metric (prom-client's collect hook). */
  flushInto(metric: { inc(labels: Record<string, string>, value: number): void }): void {
    for (const leaf of this.series) {
      if (!leaf.dirty) continue;
      metric.inc(leaf.labels, leaf.amount);
      leaf.amount = 0;
      leaf.dirty = false;
    }
  }
}

/** prom-client options for a counter or gauge fed through `pending`. */
function batched<T extends string>(pending: Pending<T>) {
  return {
    labelNames: pending.labelNames,
    collect(this: { inc(labels: Record<string, string>, value: number): void }) {
      pending.flushInto(this);
    },
  };
}

/** What a reload reports to the metrics (src/policy/reload.ts's ReloadResult has it). */
export interface ReloadOutcome {
  readonly outcome: 'applied' | 'unchanged' | 'rejected';
  readonly policy_version: string;
}

export class GatewayMetrics {
  /** This gateway's tiergate_* metrics only. */
  readonly registry = new Registry();
  /** What GET /metrics shows: this gateway's metrics and the process metrics. */
  private readonly exposed: Registry;

  /** Sums not yet handed to prom-client (see Pending): one per batched metric. */
  private readonly pending = {
    requests: new Pending(['route', 'model', 'tier', 'status', 'gate'], true),
    tokens: new Pending(['model', 'kind'], true),
    cost: new Pending(['route', 'model'], true),
    bestCost: new Pending(['route'], true),
    costSaved: new Pending(['route'], false),
    escalations: new Pending(['route'], true),
    escalatedRequests: new Pending(['route'], true),
    decisions: new Pending(['route', 'tier', 'model'], true),
    routingErrors: new Pending(['route', 'code'], true),
  };
  private readonly requests: Counter<'route' | 'model' | 'tier' | 'status' | 'gate'>;
  private readonly duration: Histogram<'route'>;
  private readonly upstreamDuration: Histogram<'model'>;
  private readonly tokens: Counter<'model' | 'kind'>;
  private readonly cost: Counter<'route' | 'model'>;
  private readonly bestCost: Counter<'route'>;
  private readonly costSaved: Gauge<'route'>;
  private readonly escalations: Counter<'route'>;
  private readonly escalatedRequests: Counter<'route'>;
  private readonly gateScore: Histogram<'route' | 'evaluator'>;
  private readonly decisions: Counter<'route' | 'tier' | 'model'>;
  private readonly routingErrors: Counter<'route' | 'code'>;
  private readonly reloads: Counter<'outcome'>;
  private readonly reloadError: Gauge;
  private readonly policyInfo: Gauge<'version'>;

  constructor(policyVersion: string) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'tiergate_requests_total',
      help: 'Chat completion requests, by route, served model and tier, status (ok, error, client_closed) and gate outcome (passed, failed, none, bypass).',
      ...batched(this.pending.requests),
      registers,
    });
    this.duration = new Histogram({
      name: 'tiergate_request_duration_seconds',
      help: 'Time from request arrival to the decision record (whole request: routing, every model call, gates).',
      labelNames: ['route'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.upstreamDuration = new Histogram({
      name: 'tiergate_upstream_duration_seconds',
      help: 'Duration of the upstream call whose answer was served, by model.',
      labelNames: ['model'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.tokens = new Counter({
      name: 'tiergate_tokens_total',
      help: 'Tokens of every model call the gateway paid for (escalated, aborted speculative and served calls), by model and kind (prompt, completion; cached_prompt, cache_write_prompt and reasoning are parts of those two).',
      ...batched(this.pending.tokens),
      registers,
    });
    this.cost = new Counter({
      name: 'tiergate_cost_usd_total',
      help: 'What requests cost in USD, by route and by the model of each call; the gates\' own model calls (LLM judge) count under model="(gate)".',
      ...batched(this.pending.cost),
      registers,
    });
    this.bestCost = new Counter({
      name: 'tiergate_best_cost_usd_total',
      help: "What the answered requests would have cost on the route's always-best model, in USD. Savings: 1 - cost / best cost.",
      ...batched(this.pending.bestCost),
      registers,
    });
    // A gauge, not a counter: an escalated request costs more than always-best would
    // have, so the running sum of savings can fall, which a counter may not.
    this.costSaved = new Gauge({
      name: 'tiergate_cost_saved_usd',
      help: 'Running sum of always-best cost minus actual cost of answered requests, in USD (falls when escalations cost more than they save).',
      ...batched(this.pending.costSaved),
      registers,
    });
    this.escalations = new Counter({
      name: 'tiergate_escalations_total',
      help: 'Tier climbs after a failed gate or a failed tier (a request may climb more than once).',
      ...batched(this.pending.escalations),
      registers,
    });
    this.escalatedRequests = new Counter({
      name: 'tiergate_escalated_requests_total',
      help: 'Requests that climbed at least once. Escalation rate: this over tiergate_requests_total.',
      ...batched(this.pending.escalatedRequests),
      registers,
    });
    this.gateScore = new Histogram({
      name: 'tiergate_gate_score',
      help: 'Scores (0..1) given by each gate evaluator to each gated answer, escalated ones included.',
      labelNames: ['route', 'evaluator'],
      buckets: SCORE_BUCKETS,
      registers,
    });
    this.decisions = new Counter({
      name: 'tiergate_decisions_total',
      help: 'Routing decisions: the tier and model the request was sent to first, before any escalation.',
      ...batched(this.pending.decisions),
      registers,
    });
    this.routingErrors = new Counter({
      name: 'tiergate_routing_errors_total',
      help: 'Requests whose routing failed (an expression stopped by the expressions limits, a router that threw), so the route default applied; by route and error code.',
      ...batched(this.pending.routingErrors),
      registers,
    });
    this.reloads = new Counter({
      name: 'tiergate_reloads_total',
      help: 'Policy reloads by outcome (applied, unchanged, rejected).',
      labelNames: ['outcome'],
      registers,
    });
    this.reloadError = new Gauge({
      name: 'tiergate_reload_error',
      help: '1 while the last reload was rejected (the previous policy keeps serving), else 0.',
      registers,
    });
    this.policyInfo = new Gauge({
      name: 'tiergate_policy_info',
      help: 'The policy version (content hash) in force: 1 for the active version.',
      labelNames: ['version'],
      registers,
    });
    for (const outcome of ['applied', 'unchanged', 'rejected'] as const) this.reloads.inc({ outcome }, 0);
    this.reloadError.set(0);
    this.policyInfo.set({ version: policyVersion }, 1);
    this.exposed = Registry.merge([this.registry, processMetrics()]);
  }

  /** A decision observer: cheap, synchronous, never throws on a well-formed record. */
  observe(line: DecisionRecord | ShadowRecord): void {
    // Shadow lines (kind "shadow") are evaluations, not requests: nothing to count here.
    if ('kind' in line) return;
    const record = line;
    const route = label(record.route);
    this.pending.requests.add(1, route, label(record.selected_model), label(record.tier), record.status, record.gate);
    this.duration.observe({ route }, record.latency_ms / 1000);
    if (record.upstream_latency_ms !== null && record.selected_model)
      this.upstreamDuration.observe({ model: record.selected_model }, record.upstream_latency_ms / 1000);
    if (record.routed_model !== null) this.pending.decisions.add(1, route, label(record.routed_tier), record.routed_model);
    if (record.routing_error) this.pending.routingErrors.add(1, route, record.routing_error);
    for (const attempt of record.attempts) {
      if (attempt.usage) {
        this.pending.tokens.add(attempt.usage.prompt_tokens, attempt.model, 'prompt');
        this.pending.tokens.add(attempt.usage.completion_tokens, attempt.model, 'completion');
        // Parts of the two above, priced apart: what makes a cost differ from tokens × price.
        const cached = cachedInputTokens(attempt.usage);
        if (cached > 0) this.pending.tokens.add(cached, attempt.model, 'cached_prompt');
        const cacheWrite = cacheWriteInputTokens(attempt.usage);
        if (cacheWrite > 0) this.pending.tokens.add(cacheWrite, attempt.model, 'cache_write_prompt');
        const reasoning = reasoningTokens(attempt.usage);
        if (reasoning > 0) this.pending.tokens.add(reasoning, attempt.model, 'reasoning');
      }
      if (attempt.cost_usd > 0) this.pending.cost.add(attempt.cost_usd, route, attempt.model);
      const gate = attempt.gate;
      if (!gate) continue;
      if (gate.cost_usd > 0) this.pending.cost.add(gate.cost_usd, route, '(gate)');
      for (const evaluator of gate.evaluators) {
        if (!evaluator.skipped && evaluator.score !== null) this.gateScore.observe({ route, evaluator: evaluator.name }, evaluator.score);
      }
    }
    if (record.best_cost_usd !== null && record.cost_usd !== null) this.pending.bestCost.add(record.best_cost_usd, route);
    if (record.cost_saved_usd !== null) this.pending.costSaved.add(record.cost_saved_usd, route);
    if (record.escalations > 0) {
      this.pending.escalations.add(record.escalations, route);
      this.pending.escalatedRequests.add(1, route);
    }
  }

  /** A reload listener. */
  reloaded(result: ReloadOutcome): void {
    this.reloads.inc({ outcome: result.outcome });
    this.reloadError.set(result.outcome === 'rejected' ? 1 : 0);
    this.policyInfo.reset();
    this.policyInfo.set({ version: result.policy_version }, 1);
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.exposed.contentType, body: await this.exposed.metrics() };
  }
}
