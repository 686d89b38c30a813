// POST /v1/chat/completions: route, execute (ladder, gates, failover), answer in
// OpenAI's shape (JSON or SSE), and write one decision line. Upstream calls are aborted
// when the client goes away, so nobody pays for an answer no one reads.
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type { Request, Response } from 'express';
import type winston from 'winston';
import { TiergateError, errorMessage } from '../../common/errors.ts';
import type { ChatChunk, Usage } from '../../plugin-sdk/plugin-api.ts';
import { isUpstreamError } from '../../plugin-sdk/plugin-api.ts';
import { requestView, routeRequest, type ChatBody, type RoutedRequest } from '../../pipeline/route.ts';
import type { DecisionRecord, ShadowRecord } from '../../observe/decision-log.ts';
import type { Runtime } from '../../policy/runtime.ts';
import { checkChatBody } from './request-schema.ts';
import { shadowAfterResponse } from '../../pipeline/shadow.ts';
import { authorizeTarget, callerOf } from '../auth.ts';
import { sendJson } from '../respond.ts';
import {
  ClientGone,
  ClientLink,
  TierFailure,
  allFailed,
  chunksOf,
  costOf,
  estimatedUsage,
  execute,
  modelsFor,
  openStream,
  resultOf,
  runGate,
  upstreamError,
  type AttemptRecord,
  type Execution,
  type ExecutionContext,
  type GateResult,
} from '../../pipeline/execute.ts';

export const HEADER = {
  route: 'x-tiergate-route',
  model: 'x-tiergate-model',
  tier: 'x-tiergate-tier',
  decision: 'x-tiergate-decision-id',
  version: 'x-tiergate-policy-version',
  simulated: 'x-tiergate-simulated',
  escalations: 'x-tiergate-escalations',
  gate: 'x-tiergate-gate',
  quality: 'x-tiergate-quality-score',
  speculative: 'x-tiergate-speculative',
} as const;

export function sendError(res: http.ServerResponse, error: TiergateError): void {
  if (res.headersSent) return;
  const retryAfter = error.retryAfterMs ?? (isUpstreamError(error.cause) ? error.cause.retryAfterMs : undefined);
  if (retryAfter !== undefined) res.setHeader('retry-after', String(Math.ceil(retryAfter / 1000)));
  const body = error.toOpenAI();
  const attempts = (error as TiergateError & { attempts?: unknown }).attempts;
  sendJson(res, error.status, attempts ? { error: { ...body.error, attempts } } : body);
}

/** What the request ended with, for the decision line. */
interface Outcome {
  status: DecisionRecord['status'];
  attempts: AttemptRecord[];
  /** The answer served, when there was one. */
  served?: { model: string; tier: string | null; usage: Usage; usageEstimated: boolean; simulated: boolean; upstreamMs: number };
  totalCostUsd?: number;
  escalations?: number;
  gate?: DecisionRecord['gate'];
  qualityScore?: number | null;
  speculated?: boolean;
  errorCode?: string;
}

const round3 = (ms: number) => Math.round(ms * 1000) / 1000;

function record(runtime: Runtime, requestId: string, started: number, body: ChatBody | null, routed: RoutedRequest | null, outcome: Outcome): DecisionRecord {
  const served = outcome.served;
  const cost = served ? (outcome.totalCostUsd ?? null) : outcome.attempts.length ? outcome.attempts.reduce((sum, a) => sum + a.cost_usd, 0) : null;
  const best = routed && served ? costOf(routed.bestModel, served.usage) : null;
  const escalations = outcome.escalations ?? 0;
  const line: DecisionRecord = {
    request_id: requestId,
    timestamp: new Date().toISOString(),
    route: routed?.route?.name ?? null,
    request_features: routed?.features ?? {},
    routed_model: routed?.model.spec.name ?? null,
    routed_tier: routed?.tier ?? null,
    selected_model: served?.model ?? routed?.model.spec.name ?? null,
    tier: served ? served.tier : (routed?.tier ?? null),
    alternative_models: routed?.alternatives ?? [],
    // An escalation shows the router was wrong about this request: say so.
    confidence: routed?.confidence == null ? null : escalations > 0 ? routed.confidence * 0.5 ** escalations : routed.confidence,
    routing_reason: routed?.reason ?? 'not routed',
    latency_ms: round3(performance.now() - started),
    upstream_latency_ms: served ? round3(served.upstreamMs) : null,
    stream: body?.stream === true,
    usage: served?.usage ?? null,
    cost_usd: cost,
    best_model: routed?.bestModel.spec.name ?? null,
    best_cost_usd: best,
    cost_saved_usd: cost === null || best === null ? null : best - cost,
    policy_version: runtime.version,
    was_escalated: escalations > 0,
    escalations,
    gate: outcome.gate ?? 'none',
    quality_score: outcome.qualityScore ?? null,
    speculated: outcome.speculated ?? false,
    attempts: outcome.attempts.map((a) => ({ ...a, started_ms: round3(a.started_ms), latency_ms: round3(a.latency_ms), ...(a.gate ? { gate: { ...a.gate, latency_ms: round3(a.gate.latency_ms) } } : {}) })),
    simulated: served?.simulated ?? false,
    status: outcome.status,
  };
  if (served?.usageEstimated) line.usage_estimated = true;
  if (outcome.errorCode) line.error_code = outcome.errorCode;
  if (routed?.routingError) line.routing_error = routed.routingError;
  if (runtime.logPrompts && body) line.prompt = body.messages;
  return line;
}

/**
 * Parses the body with the runtime's limits; resolves to the parsed body or rejects with
 * a client error. The common request (no content-encoding, no charset other than UTF-8)
 * is read here with a byte limit and JSON.parse, as body-parser would read it but without
 * its per-request cost (docs/bench/profile-findings.md, item 2); anything else (gzip, a
 * charset to decode or refuse) goes through express.json (runtime.parseJson) as before.
 */
function parseBody(runtime: Runtime, req: http.IncomingMessage, res: http.ServerResponse): Promise<unknown> {
  const encoding = req.headers['content-encoding'];
  const type = req.headers['content-type'];
  const plain = (encoding === undefined || encoding.toLowerCase() === 'identity') && (type === undefined || !/charset/i.test(type));
  if (plain) return readJsonBody(req, runtime.bodyLimitBytes, runtime.server.bodyLimit);
  return new Promise((resolve, reject) => {
    runtime.parseJson(req as Request, res as Response, (err?: unknown) => {
      if (!err) return resolve((req as Request).body);
      reject(bodyError(err, runtime.server.bodyLimit));
    });
  });
}

/** body-parser's error (express.json) as the catalogue's client error. */
export function bodyError(err: unknown, limit: string): TiergateError {
  const e = err as { type?: string; message?: string };
  if (e.type === 'entity.too.large') return new TiergateError('TG_ERR_REQUEST_TOO_LARGE', { limit });
  if (e.type === 'entity.parse.failed') return new TiergateError('TG_ERR_REQUEST_JSON', { reason: e.message ?? 'parse error' });
  return new TiergateError('TG_ERR_REQUEST_INVALID', { reason: e.message ?? String(err) });
}

/**
 * body-parser's json (strict: false) for an identity-encoded UTF-8 body: no body
 * headers → undefined; an empty body → {}; a leading BOM is dropped; a declared or
 * received length over the limit → 413 once the rest of the request has been read off;
 * JSON.parse's own message for a syntax error.
 */
function readJsonBody(req: http.IncomingMessage, limitBytes: number, limit: string): Promise<unknown> {
  const declared = req.headers['content-length'];
  // type-is hasBody: a transfer-encoding, or a content-length that is a number.
  if (req.headers['transfer-encoding'] === undefined && isNaN(declared as unknown as number)) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const fail = (error: TiergateError) => {
      // Read off the rest of the request before answering, as body-parser does: the
      // client is still sending, and an early answer would reset its connection.
      req.removeListener('data', onData);
      if (req.complete || req.destroyed) return reject(error);
      req.once('end', () => reject(error));
      req.once('close', () => reject(error));
      req.resume();
    };
    const parts: Buffer[] = [];
    let received = 0;
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > limitBytes) {
        cleanup();
        return fail(new TiergateError('TG_ERR_REQUEST_TOO_LARGE', { limit }));
      }
      parts.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      if (length !== null && received !== length) return reject(new TiergateError('TG_ERR_REQUEST_INVALID', { reason: 'request size did not match content length' }));
      let text = (parts.length === 1 ? parts[0] : Buffer.concat(parts)).toString('utf8');
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      if (text.length === 0) return resolve({});
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(new TiergateError('TG_ERR_REQUEST_JSON', { reason: (err as Error).message }));
      }
    };
    const onAborted = () => {
      cleanup();
      reject(new TiergateError('TG_ERR_REQUEST_INVALID', { reason: 'request aborted' }));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new TiergateError('TG_ERR_REQUEST_INVALID', { reason: err.message }));
    };
    const cleanup = () => {
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      req.removeListener('aborted', onAborted);
      req.removeListener('error', onError);
    };
    const length = declared === undefined ? null : Number.parseInt(declared, 10);
    if (length !== null && length > limitBytes) return fail(new TiergateError('TG_ERR_REQUEST_TOO_LARGE', { limit }));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('aborted', onAborted);
    req.on('error', onError);
  });
}

/**
 * The x-tiergate-* headers of an answer, as the flat [name, value, …] list writeHead
 * takes: an answer's whole header block goes out in one writeHead call (sendJson,
 * startEventStream).
 */
function tiergateHeaders(runtime: Runtime, routed: RoutedRequest, requestId: string, served: { model: string; tier: string | null; simulated: boolean }, gate: { result: DecisionRecord['gate']; escalations: number; quality: number | null; speculated: boolean }): string[] {
  const headers: string[] = [];
  if (routed.route) headers.push(HEADER.route, routed.route.name);
  headers.push(HEADER.model, served.model);
  if (served.tier) headers.push(HEADER.tier, served.tier);
  headers.push(HEADER.decision, requestId, HEADER.version, runtime.version);
  if (served.simulated) headers.push(HEADER.simulated, 'true');
  headers.push(HEADER.gate, gate.result, HEADER.escalations, String(gate.escalations));
  if (gate.quality !== null) headers.push(HEADER.quality, gate.quality.toFixed(3));
  if (gate.speculated) headers.push(HEADER.speculative, 'true');
  return headers;
}

/**
 * The chat requests in flight, so that a shutdown past server.shutdown_timeout_ms can
 * stop them. A request is stopped through its ClientLink with a TiergateError as the
 * reason (a client that goes away aborts it with ClientGone): its upstream calls are
 * cancelled, and it answers with that error instead of going silent, so that it still
 * ends with a response and a decision line.
 */
export class InFlightRequests {
  private readonly links = new Set<ClientLink>();
  private stoppedWith: TiergateError | null = null;

  get size(): number {
    return this.links.size;
  }

  get stopped(): boolean {
    return this.stoppedWith !== null;
  }

  add(link: ClientLink): void {
    this.links.add(link);
    // A request that arrives on a kept-alive connection after the stop is stopped too.
    if (this.stoppedWith) link.abort(this.stoppedWith);
  }

  delete(link: ClientLink): void {
    this.links.delete(link);
  }

  stopAll(reason: TiergateError): void {
    this.stoppedWith = reason;
    for (const link of this.links) link.abort(reason);
  }
}

/** The gateway's error when the request was stopped by the gateway (InFlightRequests.stopAll), else null. */
function stoppedBy(client: ClientLink): TiergateError | null {
  return client.aborted && client.reason instanceof TiergateError ? client.reason : null;
}

/** Sees every line of the decision log as it is written: decisions, and shadow comparisons (kind "shadow"). */
export type DecisionObserver = (line: DecisionRecord | ShadowRecord, runtime: Runtime) => void;

export async function handleChatCompletion(runtime: Runtime, req: http.IncomingMessage, res: http.ServerResponse, logger: winston.Logger, observers: ReadonlySet<DecisionObserver> = new Set(), inFlight?: InFlightRequests): Promise<void> {
  // The gateway key's name (never the key) on every decision line: who spent what.
  const caller = callerOf(res);
  const apiKey = caller?.name;
  const publish = (line: DecisionRecord | ShadowRecord) => {
    if (apiKey !== undefined && !('kind' in line)) line.api_key_name = apiKey;
    runtime.decisionLog?.write(line);
    for (const observe of observers) {
      try {
        observe(line, runtime);
      } catch (err) {
        logger.warn('a decision observer failed', { error: errorMessage(err) });
      }
    }
  };
  const started = performance.now();
  const requestId = `tg-${randomUUID()}`;
  const client = new ClientLink();
  const onClose = () => {
    if (!res.writableFinished) client.abort(new ClientGone());
  };
  res.on('close', onClose);
  inFlight?.add(client);
  let body: ChatBody | null = null;
  let routed: RoutedRequest | null = null;
  const attempts: AttemptRecord[] = [];
  try {
    body = checkChatBody(await parseBody(runtime, req, res));
    if (caller) authorizeTarget(caller, body.model, runtime.routes.has(body.model) ? 'route' : runtime.models.has(body.model) ? 'model' : null);
    // Per-key limits (src/state/limits.ts): counted once the request is known to be valid and allowed.
    if (runtime.limits.has(apiKey)) await runtime.limits.admit(apiKey);
    routed = await routeRequest(runtime, body, requestView(body, req.headers, runtime.server.headerAllowlist));
    if (routed.reason.startsWith('routing error')) logger.warn('routing failed; route default applied', { request_id: requestId, route: routed.route?.name, reason: routed.reason });
    const ctx: ExecutionContext = { runtime, routed, body, client, startedAt: started, attempts };
    const gate = routed.route?.gate ?? null;
    let outcome: Outcome;
    if (body.stream === true && !(gate && gate.streaming === 'buffer')) {
      outcome = await streamThrough(ctx, requestId, res);
    } else {
      const executed = await execute(ctx);
      outcome = body.stream === true ? replayAsStream(ctx, executed, requestId, res) : answerJson(ctx, executed, requestId, res);
    }
    const line = record(runtime, requestId, started, body, routed, outcome);
    // The response has been ended: a sampled request is marked and shadowed off the client's path.
    shadowAfterResponse(runtime, routed, body, line, logger, publish);
    publish(line);
  } catch (err) {
    const stopped = stoppedBy(client);
    const clientClosed = stopped === null && (err instanceof ClientGone || client.aborted);
    const error = stopped ?? (err instanceof TiergateError ? err : new TiergateError('TG_ERR_INTERNAL', { reason: errorMessage(err) }, { cause: err }));
    if (!clientClosed) {
      // A stop at shutdown is logged once, by the shutdown, not per request.
      if (error.status >= 500 && !stopped) logger.error('chat completion failed', { request_id: requestId, code: error.code, error: error.message });
      if (!res.headersSent) {
        // A failed request is logged too; the id lets the client find its line.
        res.setHeader(HEADER.decision, requestId);
        res.setHeader(HEADER.version, runtime.version);
        sendError(res, error);
      }
    }
    publish(record(runtime, requestId, started, body, routed, { status: clientClosed ? 'client_closed' : 'error', attempts, errorCode: clientClosed ? undefined : error.code }));
  } finally {
    res.off('close', onClose);
    inFlight?.delete(client);
  }
}

function gateHeaderValues(executed: Execution) {
  return { result: executed.gate, escalations: executed.escalations, quality: executed.qualityScore, speculated: executed.speculated };
}

function outcomeOf(executed: Execution): Outcome {
  const { answer } = executed;
  return {
    status: 'ok',
    attempts: executed.attempts,
    served: { model: answer.model.spec.name, tier: answer.tier, usage: answer.usage, usageEstimated: answer.usageEstimated, simulated: answer.simulated, upstreamMs: answer.attempt.latency_ms },
    totalCostUsd: executed.totalCostUsd,
    escalations: executed.escalations,
    gate: executed.gate,
    qualityScore: executed.qualityScore,
    speculated: executed.speculated,
  };
}

/**
 * The gate may have asked the provider for fields the client did not (logprobs for a
 * logprob evaluator): the client gets the answer it asked for, not the gate's extras.
 */
function addedByGate(ctx: ExecutionContext): boolean {
  return ctx.routed.route?.upstreamParameters.logprobs === true && ctx.body.logprobs !== true;
}

function answerJson(ctx: ExecutionContext, executed: Execution, requestId: string, res: http.ServerResponse): Outcome {
  const { answer } = executed;
  const { simulated: _marker, ...clean } = answer.result as typeof answer.result & { simulated?: boolean };
  clean.model = answer.model.spec.name;
  if (addedByGate(ctx)) clean.choices = clean.choices.map((choice) => ({ ...choice, logprobs: null }));
  sendJson(res, 200, clean, tiergateHeaders(ctx.runtime, ctx.routed, requestId, { model: answer.model.spec.name, tier: answer.tier, simulated: answer.simulated }, gateHeaderValues(executed)));
  return outcomeOf(executed);
}

/**
 * The header block goes out with the first event, in one write: both callers write an
 * event straight after (and node:http corks the socket for the rest of the tick on
 * every write), so flushing it on its own would cost a syscall and gain no time.
 */
function startEventStream(res: http.ServerResponse, headers: string[]): void {
  headers.push('content-type', 'text/event-stream; charset=utf-8', 'cache-control', 'no-cache', 'connection', 'keep-alive', 'x-accel-buffering', 'no');
  res.writeHead(200, headers);
}


/** Gate "buffer": the gated answer is complete; send it as a stream. */
function replayAsStream(ctx: ExecutionContext, executed: Execution, requestId: string, res: http.ServerResponse): Outcome {
  const { answer } = executed;
  const wantsUsage = ctx.body.stream_options?.include_usage === true;
  startEventStream(res, tiergateHeaders(ctx.runtime, ctx.routed, requestId, { model: answer.model.spec.name, tier: answer.tier, simulated: answer.simulated }, gateHeaderValues(executed)));
  let events = '';
  const result = addedByGate(ctx) ? { ...answer.result, choices: answer.result.choices.map((c) => ({ ...c, logprobs: null })) } : answer.result;
  for (const chunk of chunksOf({ ...result, usage: answer.usage }, answer.model.spec.name)) {
    if (chunk.choices.length === 0 && !wantsUsage) continue;
    events += `data: ${JSON.stringify(chunk)}\n\n`;
  }
  res.end(events + 'data: [DONE]\n\n');
  return outcomeOf(executed);
}

/**
 * No gate, or gate "bypass": stream as the upstream produces, failing over between
 * models before the first byte. With bypass, the assembled answer is gated afterwards,
 * for the decision log only.
 */
async function streamThrough(ctx: ExecutionContext, requestId: string, res: http.ServerResponse): Promise<Outcome> {
  const { runtime, routed, body, attempts } = ctx;
  const wantsUsage = body.stream_options?.include_usage === true;
  const stripLogprobs = addedByGate(ctx);
  const gate = routed.route?.gate ?? null;
  const models = modelsFor(runtime, routed.model.tier === null ? { kind: 'model', model: routed.model.spec.name } : { kind: 'tier', tier: routed.model.tier }, routed.model);
  let opened;
  try {
    opened = await openStream(ctx, models);
  } catch (err) {
    if (err instanceof TierFailure) throw allFailed(ctx.attempts, err.lastError);
    throw err;
  }
  const { model, iterator, deadline, attempt } = opened;
  const upstreamStart = performance.now() - attempt.latency_ms;
  const simulated = opened.first.simulated === true;
  const kept: ChatChunk[] = [];
  let usage: Usage | null = null;
  startEventStream(res, tiergateHeaders(runtime, routed, requestId, { model: model.spec.name, tier: attempt.tier, simulated }, { result: gate ? 'bypass' : 'none', escalations: 0, quality: null, speculated: false }));
  let next: IteratorResult<ChatChunk & { simulated?: boolean }> = { done: false, value: opened.first };
  let failure: TiergateError | null = null;
  // The events of one upstream read leave in one write, on the next tick (after the
  // microtasks that hand over the read's other chunks): each res.write is a piece of the
  // chunked encoding, four writes to the socket, and a read usually carries several events.
  // A flush is due exactly while `unsent` holds something.
  let unsent = '';
  const flush = () => {
    if (unsent === '' || res.writableEnded || res.destroyed) return;
    const events = unsent;
    unsent = '';
    res.write(events);
  };
  try {
    while (!next.done) {
      const chunk = next.value;
      if (chunk.usage) usage = chunk.usage;
      kept.push(chunk);
      if (chunk.choices.length > 0 || wantsUsage) {
        // Copied without the marker, and without the usage the client did not ask for (not
        // deleted afterwards: a delete makes the copy a dictionary, slow to serialise).
        let clean: ChatChunk;
        if (wantsUsage) {
          const { simulated: _marker, ...rest } = chunk;
          clean = rest;
        } else {
          const { simulated: _marker, usage: _usage, ...rest } = chunk;
          clean = rest;
        }
        clean.model = model.spec.name;
        if (stripLogprobs) clean.choices = clean.choices.map((choice) => ({ ...choice, logprobs: null }));
        if (unsent === '') process.nextTick(flush);
        unsent += `data: ${JSON.stringify(clean)}\n\n`;
      }
      next = await iterator.next();
      deadline.refresh();
      // A slow client slows the upstream: no more reading while the socket's buffer is full.
      if (res.writableNeedDrain) await drained(res, ctx.client.signal);
    }
    res.end(`${unsent}data: [DONE]\n\n`);
  } catch (err) {
    const stopped = stoppedBy(ctx.client);
    if (ctx.client.aborted && !stopped) throw new ClientGone();
    failure = stopped ?? upstreamError(err, model, deadline);
    // Mid-stream: the status line is gone, so the error travels as a final event.
    res.end(`${unsent}data: ${JSON.stringify(failure.toOpenAI())}\n\n`);
  } finally {
    unsent = '';
    deadline.clear();
    void iterator.return?.(undefined)?.catch(() => undefined);
  }
  const result = resultOf(kept, usage);
  const finalUsage = usage ?? estimatedUsage(body, typeof result.choices[0].message.content === 'string' ? result.choices[0].message.content : '');
  Object.assign(attempt, { usage: finalUsage, cost_usd: costOf(model, finalUsage), latency_ms: performance.now() - upstreamStart }, usage ? {} : { usage_estimated: true });
  if (failure) Object.assign(attempt, { outcome: 'failed', error_code: failure.code, error: failure.message });
  let gated: GateResult | null = null;
  if (gate && !failure) {
    gated = await runGate(ctx, gate, { model, tier: attempt.tier, result, usage: finalUsage, usageEstimated: !usage, simulated, attempt });
    attempt.gate = gated;
  }
  return {
    status: failure ? 'error' : 'ok',
    attempts,
    served: { model: model.spec.name, tier: attempt.tier, usage: finalUsage, usageEstimated: !usage, simulated, upstreamMs: performance.now() - upstreamStart },
    totalCostUsd: attempts.reduce((sum, a) => sum + a.cost_usd + (a.gate?.cost_usd ?? 0), 0),
    gate: gate ? 'bypass' : 'none',
    qualityScore: gated?.score ?? null,
    ...(failure ? { errorCode: failure.code } : {}),
  };
}

function drained(res: http.ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    const onAbort = () => {
      res.off('drain', onDrain);
      reject(signal.reason);
    };
    res.once('drain', onDrain);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
