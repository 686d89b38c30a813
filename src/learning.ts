// Outcomes back to the routers that learn (the "bandit reward" of the request path).
//
// A decision observer sees every decision line; for a route whose router has `learn`, it
// sends the outcome with the gate's score as quality. It also remembers recent decisions
// (a bounded LRU: request_id → route, first arm, features, cost, latency), so that a
// later POST /v1/feedback {request_id, score} — a human's or a downstream system's
// judgement — becomes a reward too. Feedback is appended to the decision log as
// {"kind":"feedback", request_id, route, score, timestamp}.
import express, { type NextFunction, type Request, type Response } from 'express';
import type winston from 'winston';
import { TiergateError, errorMessage } from './errors.ts';
import type { DecisionRecord, FeedbackRecord, ShadowRecord } from './decision-log.ts';
import type { RoutingOutcome } from './plugin-api.ts';
import type { Runtime } from './runtime.ts';
import { sendError } from './chat.ts';

interface Remembered {
  route: string | null;
  arm: string | null;
  features: Record<string, unknown>;
  cost_usd: number | null;
  latency_ms: number;
  at: number;
}

export interface LearningOptions {
  /** How many recent decisions feedback can refer to (default 10,000). */
  capacity?: number;
  /** How long feedback may arrive after the decision (default 24 h). */
  ttlMs?: number;
}

export class Learning {
  private readonly recent = new Map<string, Remembered>();
  readonly capacity: number;
  readonly ttlMs: number;

  constructor(
    private readonly logger: winston.Logger,
    options: LearningOptions = {},
  ) {
    this.capacity = options.capacity ?? 10_000;
    this.ttlMs = options.ttlMs ?? 24 * 3600_000;
  }

  /** A DecisionObserver. */
  observe(line: DecisionRecord | ShadowRecord, runtime: Runtime): void {
    if ('kind' in line || line.status !== 'ok') return;
    const remembered: Remembered = { route: line.route, arm: line.routed_tier ?? line.routed_model, features: line.request_features, cost_usd: line.cost_usd, latency_ms: line.latency_ms, at: Date.now() };
    this.recent.set(line.request_id, remembered);
    if (this.recent.size > this.capacity) this.recent.delete(this.recent.keys().next().value as string);
    if (line.quality_score !== null) this.teach(runtime, line.request_id, remembered, line.quality_score, 'gate');
  }

  /** The decision `requestId` refers to, when still remembered. */
  recall(requestId: string): Remembered | null {
    const found = this.recent.get(requestId);
    if (!found) return null;
    if (Date.now() - found.at > this.ttlMs) {
      this.recent.delete(requestId);
      return null;
    }
    return found;
  }

  private teach(runtime: Runtime, requestId: string, decision: Remembered, quality: number, source: RoutingOutcome['source']): boolean {
    const router = decision.route === null ? undefined : runtime.routes.get(decision.route)?.router;
    if (!router?.learn || decision.route === null || decision.arm === null) return false;
    const outcome: RoutingOutcome = { route: decision.route, request_id: requestId, arm: decision.arm, features: decision.features, quality, cost_usd: decision.cost_usd, latency_ms: decision.latency_ms, source };
    try {
      const done = router.learn(outcome);
      if (done) done.catch((err: unknown) => this.logger.warn('a router failed to learn', { route: decision.route, error: errorMessage(err) }));
    } catch (err) {
      this.logger.warn('a router failed to learn', { route: decision.route, error: errorMessage(err) });
    }
    return true;
  }

  /** POST /v1/feedback {request_id, score (0..1)}. `current` gives the runtime in force. */
  feedbackRouter(current: () => Runtime): express.Router {
    const router = express.Router();
    router.post('/v1/feedback', express.json({ limit: '16kb' }), (req: Request, res: Response) => {
      const body = req.body as unknown;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new TiergateError('TG_ERR_FEEDBACK_INVALID', { reason: 'the body must be a JSON object {request_id, score}' });
      const { request_id: requestId, score } = body as Record<string, unknown>;
      if (typeof requestId !== 'string' || requestId === '') throw new TiergateError('TG_ERR_FEEDBACK_INVALID', { reason: 'request_id must be a non-empty string (the x-tiergate-decision-id header of the answer)' }, { param: 'request_id' });
      if (typeof score !== 'number' || !(score >= 0 && score <= 1)) throw new TiergateError('TG_ERR_FEEDBACK_INVALID', { reason: 'score must be a number in [0, 1]' }, { param: 'score' });
      const decision = this.recall(requestId);
      if (!decision) throw new TiergateError('TG_ERR_FEEDBACK_UNKNOWN', { request_id: requestId, capacity: this.capacity, ttl_s: Math.round(this.ttlMs / 1000) }, { param: 'request_id' });
      const runtime = current();
      const learned = this.teach(runtime, requestId, decision, score, 'feedback');
      const line: FeedbackRecord = { kind: 'feedback', request_id: requestId, route: decision.route, score, timestamp: new Date().toISOString() };
      runtime.decisionLog?.write(line);
      res.json({ object: 'feedback', request_id: requestId, route: decision.route, arm: decision.arm, score, learned });
    });
    router.use('/v1/feedback', (err: unknown, _req: Request, res: Response, next: NextFunction) => {
      if (err instanceof TiergateError) return sendError(res, err);
      const e = err as { type?: string; message?: string };
      if (e.type === 'entity.parse.failed' || e.type === 'entity.too.large') return sendError(res, new TiergateError('TG_ERR_FEEDBACK_INVALID', { reason: e.message ?? 'unreadable body' }));
      next(err);
    });
    return router;
  }
}
