// Outcomes back to the routers that learn (the "bandit reward" of the request path).
//
// A decision observer sees every decision line; for a route whose router has `learn`, it
// sends the outcome with the gate's score as quality. It also remembers recent decisions
// (a bounded LRU: request_id → route, first arm, features, cost, latency), so that a
// later POST /v1/feedback {request_id, score} (src/faces/feedback.ts) — a human's or a downstream system's
// judgement — becomes a reward too. A decision takes one score: a second is refused.
// Feedback is appended to the decision log as {"kind":"feedback", request_id, route,
// score, timestamp}.
//
// Replicas: a router whose statistics are shared (Router.sharedDecisions) also keeps the
// decision where every replica reaches it, so feedback posted to any replica is claimed
// there, atomically, once. The write happens after the response is sent and never
// waits; when the shared store is down, this replica's memory still answers for the
// requests it served.
import type winston from 'winston';
import { TiergateError, errorMessage } from '../common/errors.ts';
import type { DecisionRecord, FeedbackRecord, ShadowRecord } from '../observe/decision-log.ts';
import type { FeedbackClaim, FeedbackWindow, RoutedDecision, Router, RoutingOutcome, SharedDecisions } from '../plugin-contract/plugin-api.ts';
import type { Runtime } from '../policy/runtime.ts';
import { RecentMap } from '../common/recent-map.ts';

interface Remembered {
  route: string | null;
  arm: string | null;
  features: Record<string, unknown>;
  cost_usd: number | null;
  latency_ms: number;
  at: number;
  /** The score this decision took, once it has. */
  score: number | null;
  /** The gateway key the request came with, by name; null without keys. */
  apiKey: string | null;
}

/** The decision feedback applies to: from this replica's memory or from a shared store. */
interface Claimed {
  route: string | null;
  arm: string | null;
  features: Readonly<Record<string, unknown>>;
  cost_usd: number | null;
  latency_ms: number;
}

/** What a feedback did: the decision it scored, and whether a router learned from it. */
export interface FeedbackTaken {
  request_id: string;
  route: string | null;
  arm: string | null;
  score: number;
  learned: boolean;
}

export interface LearningOptions {
  /** How many recent decisions feedback can refer to (default 10,000). */
  capacity?: number;
  /** How long feedback may arrive after the decision (default 24 h). */
  ttlMs?: number;
}

export class Learning {
  private readonly recent: RecentMap<string, Remembered>;
  readonly capacity: number;
  readonly ttlMs: number;
  private readonly window: FeedbackWindow;

  constructor(
    private readonly logger: winston.Logger,
    options: LearningOptions = {},
  ) {
    this.capacity = options.capacity ?? 10_000;
    this.ttlMs = options.ttlMs ?? 24 * 3600_000;
    this.window = { ttl_ms: this.ttlMs, capacity: this.capacity };
    this.recent = new RecentMap(this.capacity);
  }

  /** A DecisionObserver. */
  observe(line: DecisionRecord | ShadowRecord, runtime: Runtime): void {
    if ('kind' in line || line.status !== 'ok') return;
    const remembered: Remembered = {
      route: line.route,
      arm: line.routed_tier ?? line.routed_model,
      features: line.request_features,
      cost_usd: line.cost_usd,
      latency_ms: line.latency_ms,
      at: Date.now(),
      score: null,
      apiKey: line.api_key_name ?? null,
    };
    this.recent.set(line.request_id, remembered);
    const shared = remembered.route === null ? undefined : runtime.routes.get(remembered.route)?.router.sharedDecisions;
    if (shared && remembered.route !== null && remembered.arm !== null) {
      const decision: RoutedDecision = {
        route: remembered.route,
        request_id: line.request_id,
        arm: remembered.arm,
        features: remembered.features,
        cost_usd: remembered.cost_usd,
        latency_ms: remembered.latency_ms,
        ...(remembered.apiKey === null ? {} : { api_key_name: remembered.apiKey }),
      };
      try {
        shared.remember(decision, this.window);
      } catch (err) {
        this.logger.warn('a router failed to share a decision; feedback for it is accepted by this replica only', {
          at: `routes.${remembered.route}.router`,
          request_id: line.request_id,
          error: errorMessage(err),
        });
      }
    }
    if (line.quality_score !== null) this.teach(runtime, line.request_id, remembered, line.quality_score, 'gate');
  }

  /** The decision `requestId` refers to, when this replica still remembers it. */
  recall(requestId: string): Remembered | null {
    const found = this.recent.get(requestId);
    if (!found) return null;
    if (Date.now() - found.at > this.ttlMs) {
      this.recent.delete(requestId);
      return null;
    }
    return found;
  }

  private teach(runtime: Runtime, requestId: string, decision: Claimed, quality: number, source: RoutingOutcome['source']): boolean {
    const router = decision.route === null ? undefined : runtime.routes.get(decision.route)?.router;
    if (!router?.learn || decision.route === null || decision.arm === null) return false;
    const outcome: RoutingOutcome = {
      route: decision.route,
      request_id: requestId,
      arm: decision.arm,
      features: decision.features,
      quality,
      cost_usd: decision.cost_usd,
      latency_ms: decision.latency_ms,
      source,
    };
    try {
      const done = router.learn(outcome);
      if (done) done.catch((err: unknown) => this.logger.warn('a router failed to learn', { route: decision.route, error: errorMessage(err) }));
    } catch (err) {
      this.logger.warn('a router failed to learn', { route: decision.route, error: errorMessage(err) });
    }
    return true;
  }

  /**
   * Takes the decision `requestId` for `score`, once: through the shared store of the
   * route that served it (of every route with one, when this replica did not serve it),
   * else from this replica's memory. Only the gateway key that made the request
   * (`caller`, by name) may: a decision made with a key is someone's traffic, and a
   * score from another team would teach their router.
   */
  private async claim(runtime: Runtime, requestId: string, score: number, caller: string | null): Promise<Claimed> {
    const duplicate = (earlier: number | null) =>
      new TiergateError('TG_ERR_FEEDBACK_DUPLICATE', { request_id: requestId, score: earlier ?? 'unknown' }, { param: 'request_id' });
    // The other key's name is not told: key names are the operator's, not the callers'.
    const forbidden = () =>
      new TiergateError('TG_ERR_FEEDBACK_FORBIDDEN', { request_id: requestId, key: caller === null ? 'no key' : `key "${caller}"` }, { param: 'request_id' });
    const local = this.recall(requestId);
    if (local && local.apiKey !== null && local.apiKey !== caller) throw forbidden();
    if (local && local.score !== null) throw duplicate(local.score);
    const stores = sharedStores(runtime, local ? local.route : undefined);
    if (stores.length > 0) {
      const results = await Promise.allSettled(stores.map(({ store }) => store.claim(requestId, score, this.window, caller)));
      const answers: FeedbackClaim[] = [];
      const failures: string[] = [];
      results.forEach((result, i) => {
        if (result.status === 'fulfilled') answers.push(result.value);
        else {
          failures.push(errorMessage(result.reason));
          this.logger.warn('feedback: a shared decision store cannot be reached; using what this replica remembers', {
            at: `routes.${stores[i].route}.router`,
            request_id: requestId,
            error: errorMessage(result.reason),
          });
        }
      });
      if (answers.some((a) => a.status === 'forbidden')) throw forbidden();
      const claimed = answers.find((a) => a.status === 'claimed');
      if (claimed) {
        if (local) local.score = score;
        return claimed.decision;
      }
      const taken = answers.find((a) => a.status === 'already_scored');
      if (taken) {
        if (local) local.score = taken.score;
        throw duplicate(taken.score);
      }
      // The decision may sit in a store that did not answer: say so rather than "unknown".
      if (!local && failures.length > 0) throw new TiergateError('TG_ERR_FEEDBACK_UNAVAILABLE', { request_id: requestId, reason: failures[0] });
      // Unknown to the stores (shared while they were down, or a route without one): this replica's memory decides.
    }
    if (!local)
      throw new TiergateError(
        'TG_ERR_FEEDBACK_UNKNOWN',
        { request_id: requestId, capacity: this.capacity, ttl_s: Math.round(this.ttlMs / 1000) },
        { param: 'request_id' },
      );
    // Another feedback for the same request may have been taken while the stores answered.
    if (local.score !== null) throw duplicate(local.score);
    local.score = score;
    return local;
  }

  /**
   * A score for an earlier decision (POST /v1/feedback, src/faces/feedback.ts): claimed
   * once, taught to the route's router when it learns, and appended to the decision log.
   * `caller`: the gateway key's name the feedback came with (null without keys).
   */
  async feedback(runtime: Runtime, requestId: string, score: number, caller: string | null): Promise<FeedbackTaken> {
    const decision = await this.claim(runtime, requestId, score, caller);
    const learned = this.teach(runtime, requestId, decision, score, 'feedback');
    const line: FeedbackRecord = { kind: 'feedback', request_id: requestId, route: decision.route, score, timestamp: new Date().toISOString() };
    runtime.decisionLog?.write(line);
    return { request_id: requestId, route: decision.route, arm: decision.arm, score, learned };
  }
}

/** The shared decision stores of the runtime's routes: of `route` only when given (null: none). */
function sharedStores(runtime: Runtime, route: string | null | undefined): Array<{ route: string; store: SharedDecisions }> {
  if (route === null) return [];
  const routers: Array<[string, Router | undefined]> =
    route === undefined ? [...runtime.routes.values()].map((r) => [r.name, r.router]) : [[route, runtime.routes.get(route)?.router]];
  return routers.flatMap(([name, router]) => (router?.sharedDecisions ? [{ route: name, store: router.sharedDecisions }] : []));
}
