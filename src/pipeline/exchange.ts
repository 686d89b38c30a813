// One chat request's way through the pipeline, for a face that has parsed it:
//
//   admit    per-key limits (src/state/limits.ts)
//   route    context → router → decision (src/pipeline/route.ts)
//   check    the route's input checks, before any model is called (gate.ts)
//   execute  the ladder to a complete answer (execute.ts), or a stream opened with
//            failover before its first chunk (stream.ts)
//   record   one decision line (record.ts), then shadow (shadow.ts); observers (metrics,
//            the dashboard, learning, spend limits) see every line
//
// The face renders what run() gives it (a complete answer, or an open stream it reads
// through a ChunkSink) and says how the response ended: answered(), stream() (which
// reads to the end), or failed() (an error, or the client gone). Exactly one decision
// line is written, whichever way the request ends. Nothing here touches a response.
import { randomUUID } from 'node:crypto';
import type winston from 'winston';
import { TiergateError } from '../common/errors.ts';
import type { AttemptRecord, DecisionRecord, ShadowRecord } from '../observe/decision-log.ts';
import type { LogThrottle } from '../observe/log-throttle.ts';
import type { Runtime } from '../policy/runtime.ts';
import { ClientLink, failureOf, type InFlightRequests } from './cancellation.ts';
import { execute } from './execute.ts';
import { GATE_REFUSALS, checkInput } from './gate.ts';
import type { Execution, ExecutionContext } from './execution-context.ts';
import { TierFailure, allFailed, routedOrFallback } from './failover.ts';
import { decisionLine, publishLine, servedOutcome, type DecisionObserver, type RequestOutcome } from './record.ts';
import { requestView, routeRequest, type ChatBody } from './route.ts';
import { shadowAfterResponse } from './shadow.ts';
import { openStream, streamThrough, type ChunkSink, type OpenStream } from './stream.ts';

/** What the pipeline needs from the gateway around it; one for the life of the server. */
export interface PipelineServices {
  readonly logger: winston.Logger;
  /** See every decision line (and shadow line) as it is written. */
  readonly observers: ReadonlySet<DecisionObserver>;
  /** The requests a shutdown may stop. */
  readonly inFlight?: InFlightRequests;
  /**
   * Where failed requests are logged: the first of each error code at once, then a bounded
   * number (every request has its decision line anyway). Without it, each one is logged.
   */
  readonly failureLog?: LogThrottle;
}

/** What run() gives the face: a complete answer, or a stream that has begun. */
export type ChatResponse = Execution | OpenStream;

/** Request headers, lower-cased, as node:http gives them. */
export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

/**
 * What every request the pipeline runs has, whichever API it came through (chat,
 * embeddings): a decision id, its client's side, the runtime it holds, who calls, and a
 * place among the requests a shutdown may stop.
 */
export abstract class PipelineRequest {
  readonly startedAt = performance.now();
  /** The decision id: x-tiergate-decision-id, and request_id on the decision line. */
  readonly requestId = `tg-${randomUUID()}`;
  /** The face aborts it with ClientGone when the client goes away. */
  readonly client = new ClientLink();

  /**
   * `runtime`: the policy in force when the request arrived, held (acquired) by the face
   * to the end. `callerName`: the gateway key's name (never the key), on every decision
   * line: who spent what; per-key limits count by it.
   */
  constructor(
    readonly runtime: Runtime,
    protected readonly services: PipelineServices,
    readonly callerName: string | undefined,
  ) {
    services.inFlight?.add(this.client);
  }
}

export class ChatExchange extends PipelineRequest {
  private body: ChatBody | null = null;
  private readonly attempts: AttemptRecord[] = [];
  private context: ExecutionContext | null = null;
  private recorded = false;

  /** The checked body: from now on a failure is recorded with it. */
  received(body: ChatBody): void {
    this.body = body;
  }

  /** Admits, routes and executes the received body. Rejects with a TiergateError, ClientGone, or TG_ERR_ALL_FAILED. */
  async run(headers: RequestHeaders): Promise<ChatResponse> {
    const { runtime, callerName } = this;
    const body = this.body;
    if (body === null) throw new TiergateError('TG_ERR_INTERNAL', { reason: 'a face ran a chat request before it received its body' });
    // Counted once the request is known to be valid and allowed.
    if (runtime.limits.has(callerName)) await runtime.limits.admit(callerName);
    const routed = await routeRequest(runtime, body, requestView(body, headers, runtime.server.headerAllowlist));
    const ctx: ExecutionContext = { runtime, routed, body, client: this.client, startedAt: this.startedAt, attempts: this.attempts };
    this.context = ctx;
    if (routed.reason.startsWith('routing error'))
      this.services.logger.warn('routing failed; route default applied', { request_id: this.requestId, route: routed.route?.name, reason: routed.reason });
    // Only a route with input checks pays for the await (most have none).
    if (routed.route?.gate?.inputChecks) await checkInput(ctx);
    const gate = routed.route?.gate ?? null;
    if (body.stream === true && !(gate && gate.streaming === 'buffer')) {
      try {
        return await routedOrFallback(ctx, (models, role) => openStream(ctx, models, role));
      } catch (err) {
        if (err instanceof TierFailure) throw allFailed(ctx.attempts, err.lastError);
        throw err;
      }
    }
    return execute(ctx);
  }

  /** The context the stages ran in (after run()): a face shapes the answer with it (src/pipeline/wire.ts). */
  get executionContext(): ExecutionContext {
    return this.context as ExecutionContext;
  }

  /** The route the request was routed through, once routed. */
  get routeName(): string | null {
    return this.context?.routed.route?.name ?? null;
  }

  /** The face has sent the complete answer. */
  answered(executed: Execution): void {
    this.finish(servedOutcome(executed));
  }

  /**
   * Reads an open stream to its end into the face's sink, then records it. Rejects with
   * ClientGone when the client went away (the face then calls failed()).
   */
  async stream(opened: OpenStream, sink: ChunkSink): Promise<void> {
    this.finish(await streamThrough(this.executionContext, opened, sink));
  }

  /**
   * The request failed (before or while answering). Records it and returns the error the
   * client is to get, or null when the client went away and gets nothing.
   */
  failed(err: unknown): TiergateError | null {
    const { stopped, clientClosed, error } = failureOf(this.client, err);
    // A stop at shutdown is logged once, by the shutdown, not per request.
    if (!clientClosed && error.status >= 500 && !stopped) this.logFailure('error', 'chat completion failed', error);
    // The client's 400, but also how a provider plugin that fails on its own (not through an UpstreamError) shows: the operator should see it.
    else if (error.code === 'TG_ERR_REQUEST_UNSENDABLE') this.logFailure('warn', 'a request could not be sent to its model', error);
    this.finish({
      status: clientClosed ? 'client_closed' : 'error',
      attempts: this.attempts,
      errorCode: clientClosed ? undefined : error.code,
      ...(GATE_REFUSALS.has(error.code) ? { gate: 'refused' as const } : {}),
    });
    return clientClosed ? null : error;
  }

  /** Through failureLog when there is one: a line per error code and interval, not per request. */
  private logFailure(level: 'error' | 'warn', message: string, error: TiergateError): void {
    const meta = { request_id: this.requestId, code: error.code, error: error.message };
    if (this.services.failureLog) this.services.failureLog.log(level, error.code, message, meta);
    else this.services.logger.log(level, message, meta);
  }

  /** Writes a line of the decision log and shows it to the observers. */
  publish(line: DecisionRecord | ShadowRecord): void {
    publishLine(this.runtime, this.services, this.callerName, line);
  }

  private finish(outcome: RequestOutcome): void {
    if (this.recorded) return;
    this.recorded = true;
    this.services.inFlight?.delete(this.client);
    // Routed once the context exists: a request that failed before has no routing to record.
    const routed = this.context?.routed ?? null;
    const line = decisionLine(this.runtime, this.requestId, this.startedAt, this.body, routed, outcome, this.context?.inputCheck);
    // The response has been ended: a sampled request is marked and shadowed off the client's path.
    if (outcome.status === 'ok' && routed) shadowAfterResponse(this.runtime, routed, this.body, line, this.services.logger, this);
    this.publish(line);
  }
}
