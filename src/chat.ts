// POST /v1/chat/completions: route, call the provider under a deadline, answer in
// OpenAI's shape (JSON or SSE), and write one decision line. The upstream call is
// aborted when the client goes away, so nobody pays for an answer no one reads.
import { randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import type winston from 'winston';
import { TiergateError, errorMessage } from './errors.ts';
import type { ChatChunk, ChatRequest, ChatResult, Usage } from './plugin-api.ts';
import { isUpstreamError } from './plugin-api.ts';
import { estimateMessagesTokens, estimateTextTokens, messageText } from './tokens.ts';
import { requestView, routeRequest, type ChatBody, type RoutedRequest } from './routing.ts';
import type { DecisionRecord } from './decision-log.ts';
import type { ModelRuntime, Runtime } from './runtime.ts';
import { checkChatBody } from './request-schema.ts';

export const HEADER = {
  route: 'x-tiergate-route',
  model: 'x-tiergate-model',
  tier: 'x-tiergate-tier',
  decision: 'x-tiergate-decision-id',
  version: 'x-tiergate-policy-version',
  simulated: 'x-tiergate-simulated',
} as const;

/** Aborts the upstream call on timeout or client disconnect, and remembers which. */
class UpstreamDeadline {
  readonly controller = new AbortController();
  timedOut = false;
  clientClosed = false;
  private readonly timer: NodeJS.Timeout;

  constructor(readonly timeoutMs: number) {
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort(new Error('upstream timeout'));
    }, timeoutMs);
  }

  /** A streamed chunk arrived: the timeout now measures the gap to the next one. */
  refresh(): void {
    this.timer.refresh();
  }

  clientGone(): void {
    this.clientClosed = true;
    this.controller.abort(new Error('client closed the connection'));
  }

  clear(): void {
    clearTimeout(this.timer);
  }
}

function upstreamError(err: unknown, model: ModelRuntime, deadline: UpstreamDeadline): TiergateError {
  const name = model.spec.name;
  if (deadline.timedOut) return new TiergateError('TG_ERR_UPSTREAM_TIMEOUT', { model: name, timeout_ms: deadline.timeoutMs }, { cause: err });
  if (err instanceof TiergateError) return err;
  if (!isUpstreamError(err)) return new TiergateError('TG_ERR_UPSTREAM', { model: name, reason: errorMessage(err) }, { cause: err });
  switch (err.failure) {
    case 'timeout':
      return new TiergateError('TG_ERR_UPSTREAM_TIMEOUT', { model: name, timeout_ms: deadline.timeoutMs }, { cause: err });
    case 'reply':
      return new TiergateError('TG_ERR_UPSTREAM_REPLY', { model: name, reason: err.message }, { cause: err });
    case 'http':
      if (err.status === 429) return new TiergateError('TG_ERR_UPSTREAM_RATE_LIMITED', { model: name, reason: err.message }, { cause: err });
      // The upstream judged the request itself bad: the client can fix that, so say so.
      if (err.status === 400 || err.status === 404 || err.status === 413 || err.status === 422) return new TiergateError('TG_ERR_UPSTREAM_REJECTED', { model: name, status: err.status, reason: err.message }, { cause: err });
      return new TiergateError('TG_ERR_UPSTREAM', { model: name, reason: err.message }, { cause: err });
    default:
      return new TiergateError('TG_ERR_UPSTREAM', { model: name, reason: err.message }, { cause: err });
  }
}

export function sendError(res: Response, error: TiergateError): void {
  if (res.headersSent) return;
  const retryAfter = isUpstreamError(error.cause) ? error.cause.retryAfterMs : undefined;
  if (retryAfter !== undefined) res.setHeader('retry-after', String(Math.ceil(retryAfter / 1000)));
  res.status(error.status).json(error.toOpenAI());
}

function costOf(model: ModelRuntime, usage: Usage): number {
  return (usage.prompt_tokens * model.spec.price.input_per_mtok + usage.completion_tokens * model.spec.price.output_per_mtok) / 1e6;
}

function upstreamBody(body: ChatBody, model: ModelRuntime): ChatRequest {
  const out: ChatRequest = { model: model.spec.upstream, messages: body.messages };
  // metadata is tiergate's routing input; OpenAI rejects it unless `store` is set.
  for (const key in body) if (key !== 'model' && key !== 'messages' && key !== 'metadata' && key !== 'stream' && key !== 'stream_options') out[key] = body[key];
  return out;
}

function estimatedUsage(body: ChatBody, completionText: string): Usage {
  const prompt = estimateMessagesTokens(body.messages);
  const completion = estimateTextTokens(completionText);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function setDecisionHeaders(res: Response, runtime: Runtime, routed: RoutedRequest, requestId: string, simulated: boolean): void {
  if (routed.route) res.setHeader(HEADER.route, routed.route.name);
  res.setHeader(HEADER.model, routed.model.spec.name);
  if (routed.tier) res.setHeader(HEADER.tier, routed.tier);
  res.setHeader(HEADER.decision, requestId);
  res.setHeader(HEADER.version, runtime.version);
  if (simulated) res.setHeader(HEADER.simulated, 'true');
}

interface Outcome {
  status: DecisionRecord['status'];
  usage: Usage | null;
  usageEstimated?: boolean;
  upstreamMs: number | null;
  simulated: boolean;
  errorCode?: string;
}

function record(runtime: Runtime, requestId: string, started: number, body: ChatBody | null, routed: RoutedRequest | null, outcome: Outcome): DecisionRecord {
  const cost = routed && outcome.usage ? costOf(routed.model, outcome.usage) : null;
  const best = routed && outcome.usage ? costOf(routed.bestModel, outcome.usage) : null;
  const line: DecisionRecord = {
    request_id: requestId,
    timestamp: new Date().toISOString(),
    route: routed?.route?.name ?? null,
    request_features: routed?.features ?? {},
    selected_model: routed?.model.spec.name ?? null,
    tier: routed?.tier ?? null,
    alternative_models: routed?.alternatives ?? [],
    confidence: routed?.confidence ?? null,
    routing_reason: routed?.reason ?? 'not routed',
    latency_ms: Math.round((performance.now() - started) * 1000) / 1000,
    upstream_latency_ms: outcome.upstreamMs === null ? null : Math.round(outcome.upstreamMs * 1000) / 1000,
    stream: body?.stream === true,
    usage: outcome.usage,
    cost_usd: cost,
    best_model: routed?.bestModel.spec.name ?? null,
    best_cost_usd: best,
    cost_saved_usd: cost === null || best === null ? null : best - cost,
    policy_version: runtime.version,
    was_escalated: false,
    quality_score: null,
    simulated: outcome.simulated,
    status: outcome.status,
  };
  if (outcome.usageEstimated) (line as DecisionRecord & { usage_estimated: boolean }).usage_estimated = true;
  if (outcome.errorCode) line.error_code = outcome.errorCode;
  if (runtime.logPrompts && body) line.prompt = body.messages;
  return line;
}

/** Parses the body with the runtime's limits; resolves to the parsed body or rejects with a client error. */
function parseBody(runtime: Runtime, req: Request, res: Response): Promise<unknown> {
  return new Promise((resolve, reject) => {
    runtime.parseJson(req, res, (err?: unknown) => {
      if (!err) return resolve(req.body);
      const e = err as { type?: string; message?: string; limit?: number };
      if (e.type === 'entity.too.large') reject(new TiergateError('TG_ERR_REQUEST_TOO_LARGE', { limit: runtime.server.bodyLimit }));
      else if (e.type === 'entity.parse.failed') reject(new TiergateError('TG_ERR_REQUEST_JSON', { reason: e.message ?? 'parse error' }));
      else reject(new TiergateError('TG_ERR_REQUEST_INVALID', { reason: e.message ?? String(err) }));
    });
  });
}

export async function handleChatCompletion(runtime: Runtime, req: Request, res: Response, logger: winston.Logger): Promise<void> {
  const started = performance.now();
  const requestId = `tg-${randomUUID()}`;
  let body: ChatBody | null = null;
  let routed: RoutedRequest | null = null;
  try {
    body = checkChatBody(await parseBody(runtime, req, res));
    const view = requestView(body, req.headers, runtime.server.headerAllowlist);
    routed = await routeRequest(runtime, body, view);
    if (routed.reason.startsWith('routing error')) logger.warn('routing failed; route default applied', { request_id: requestId, route: routed.route?.name, reason: routed.reason });
    const outcome = body.stream === true ? await streamAnswer(runtime, body, routed, requestId, res) : await jsonAnswer(runtime, body, routed, requestId, res);
    runtime.decisionLog?.write(record(runtime, requestId, started, body, routed, outcome));
  } catch (err) {
    const error = err instanceof TiergateError ? err : new TiergateError('TG_ERR_INTERNAL', { reason: errorMessage(err) }, { cause: err });
    if (error.status >= 500) logger.error('chat completion failed', { request_id: requestId, code: error.code, error: error.message });
    const clientClosed = (err as { clientClosed?: boolean }).clientClosed === true;
    if (!clientClosed && !res.headersSent) {
      // A failed request is logged too; the id lets the client find its line.
      res.setHeader(HEADER.decision, requestId);
      res.setHeader(HEADER.version, runtime.version);
      sendError(res, error);
    }
    runtime.decisionLog?.write(record(runtime, requestId, started, body, routed, { status: clientClosed ? 'client_closed' : 'error', usage: null, upstreamMs: null, simulated: false, errorCode: clientClosed ? undefined : error.code }));
  }
}

/** Runs an upstream call with a deadline tied to the client connection. */
function withDeadline(res: Response, model: ModelRuntime): { deadline: UpstreamDeadline; done: () => void } {
  const deadline = new UpstreamDeadline(model.spec.timeout_ms);
  const onClose = () => {
    if (!res.writableFinished) deadline.clientGone();
  };
  res.on('close', onClose);
  return {
    deadline,
    done: () => {
      deadline.clear();
      res.off('close', onClose);
    },
  };
}

function failure(err: unknown, routed: RoutedRequest, deadline: UpstreamDeadline): TiergateError {
  const error = upstreamError(err, routed.model, deadline);
  if (deadline.clientClosed) Object.assign(error, { clientClosed: true });
  return error;
}

async function jsonAnswer(runtime: Runtime, body: ChatBody, routed: RoutedRequest, requestId: string, res: Response): Promise<Outcome> {
  const { deadline, done } = withDeadline(res, routed.model);
  const upstreamStart = performance.now();
  let result: ChatResult & { simulated?: boolean };
  try {
    result = await routed.model.provider.complete(upstreamBody(body, routed.model), { model: routed.model.spec, signal: deadline.controller.signal });
  } catch (err) {
    throw failure(err, routed, deadline);
  } finally {
    done();
  }
  const upstreamMs = performance.now() - upstreamStart;
  if (!result || !Array.isArray(result.choices)) throw new TiergateError('TG_ERR_UPSTREAM_REPLY', { model: routed.model.spec.name, reason: 'the reply has no choices' });
  const simulated = result.simulated === true;
  const usageEstimated = !result.usage;
  const usage = result.usage ?? estimatedUsage(body, result.choices.map((c) => messageText(c.message?.content ?? '')).join(''));
  const { simulated: _marker, ...clean } = result;
  clean.model = routed.model.spec.name;
  setDecisionHeaders(res, runtime, routed, requestId, simulated);
  res.status(200).json(clean);
  return { status: 'ok', usage, usageEstimated, upstreamMs, simulated };
}

async function streamAnswer(runtime: Runtime, body: ChatBody, routed: RoutedRequest, requestId: string, res: Response): Promise<Outcome> {
  const { deadline, done } = withDeadline(res, routed.model);
  const upstreamStart = performance.now();
  const wantsUsage = body.stream_options?.include_usage === true;
  let usage: Usage | null = null;
  let text = '';
  let simulated = false;
  let iterator: AsyncIterator<ChatChunk & { simulated?: boolean }> | null = null;
  try {
    iterator = routed.model.provider.stream(upstreamBody(body, routed.model), { model: routed.model.spec, signal: deadline.controller.signal })[Symbol.asyncIterator]();
    // Nothing is sent until the first chunk arrives, so an upstream that fails early
    // still gets a clean JSON error (and, with gates, a failover).
    let next = await iterator.next();
    deadline.refresh();
    simulated = next.done ? false : next.value.simulated === true;
    setDecisionHeaders(res, runtime, routed, requestId, simulated);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.flushHeaders();
    while (!next.done) {
      const chunk = next.value;
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) if (typeof choice.delta?.content === 'string') text += choice.delta.content;
      const forward = chunk.choices.length > 0 || wantsUsage;
      if (forward) {
        const { simulated: _marker, ...clean } = chunk;
        clean.model = routed.model.spec.name;
        if (!wantsUsage) delete clean.usage;
        if (!res.write(`data: ${JSON.stringify(clean)}\n\n`)) await drained(res, deadline.controller.signal);
      }
      next = await iterator.next();
      deadline.refresh();
    }
    res.end('data: [DONE]\n\n');
  } catch (err) {
    const error = failure(err, routed, deadline);
    if (!res.headersSent) throw error;
    // Mid-stream: the status line is gone, so the error travels as a final event.
    if (!deadline.clientClosed) res.end(`data: ${JSON.stringify(error.toOpenAI())}\n\n`);
    return { status: deadline.clientClosed ? 'client_closed' : 'error', usage: usage ?? estimatedUsage(body, text), usageEstimated: usage === null, upstreamMs: performance.now() - upstreamStart, simulated, errorCode: deadline.clientClosed ? undefined : error.code };
  } finally {
    done();
    // Leaving early (client gone mid-write) must still release the upstream stream.
    void iterator?.return?.(undefined)?.catch(() => undefined);
  }
  return { status: 'ok', usage: usage ?? estimatedUsage(body, text), usageEstimated: usage === null, upstreamMs: performance.now() - upstreamStart, simulated };
}

function drained(res: Response, signal: AbortSignal): Promise<void> {
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
