// POST /v1/messages: Anthropic's Messages API in front of the same pipeline as
// /v1/chat/completions. The caller is authenticated first (the same gateway keys, sent
// as x-api-key or as a bearer token), before the body is read; the request is then
// translated (translate.ts) into the OpenAI-shaped chat body the pipeline speaks and
// handed to it directly (src/pipeline/exchange.ts), so per-key limits, routing, gates,
// ladders, failover, the decision log and metrics are exactly those of the OpenAI-shaped
// API. The answer, or its stream, is rendered in Anthropic's shape; every error leaves
// in Anthropic's error shape.
import type http from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { TiergateError, errorMessage } from '../../common/errors.ts';
import type { ChatChunk } from '../../plugin-contract/plugin-api.ts';
import type { RuntimeManager } from '../../policy/reload.ts';
import type { Runtime } from '../../policy/runtime.ts';
import { ClientGone } from '../../pipeline/cancellation.ts';
import { ChatExchange, type PipelineServices } from '../../pipeline/exchange.ts';
import type { Execution } from '../../pipeline/execution-context.ts';
import type { ChunkSink } from '../../pipeline/stream.ts';
import { clientResult, replayedChunks } from '../../pipeline/wire.ts';
import { authenticate, authorizeChatTarget, keylessAccepts, logRefusal } from '../auth.ts';
import type { GatewayKey } from '../../policy/gateway-auth.ts';
import { readBody } from '../read-body.ts';
import { drained, eventStreamHeaders, sendJson, setRetryHeaders } from '../respond.ts';
import { answerFailure, answerHeaders, streamHeaders } from '../tiergate-headers.ts';
import { checkChatBody } from '../openai-chat/request-schema.ts';
import { MessagesRequestError, MessagesStreamTranslator, sseEvent, toAnthropicError, toAnthropicMessage, toChatBody } from './translate.ts';

/** The request headers routing may read (server.header_allowlist): what a chat client would send, not the Anthropic SDK's own. */
function routingHeaders(req: http.IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value !== 'string') continue;
    if (name === 'user-agent' || name === 'x-request-id' || (name.startsWith('x-') && name !== 'x-api-key' && !name.startsWith('x-stainless')))
      out[name] = value;
  }
  return out;
}

/** A catalogue error in Anthropic's shape (the code kept). */
function sendError(res: http.ServerResponse, error: TiergateError): void {
  if (res.headersSent) return;
  setRetryHeaders(res, error);
  sendJson(res, error.status, toAnthropicError(error.status, error.toOpenAI()));
}

export function messagesRouter(manager: RuntimeManager, services: PipelineServices): express.Router {
  const { logger } = services;
  const router = express.Router();
  // Mounted before the /v1 key check, which would answer in OpenAI's shape.
  router.use('/v1/messages', (req: Request, res: Response, next: NextFunction) => {
    const current = manager.runtime.server.auth;
    if (current.hasKeys || keylessAccepts(current, req.socket.remoteAddress)) return next();
    const refusal = new TiergateError('TG_ERR_AUTH_LOOPBACK_ONLY');
    logRefusal(logger, req, refusal);
    sendError(res, refusal);
  });
  router.post('/v1/messages', async (req: Request, res: Response) => {
    const caller = authenticate(manager.runtime.server.auth, req);
    if (caller instanceof TiergateError) {
      logRefusal(logger, req, caller);
      return sendError(res, caller);
    }
    const runtime = manager.acquire();
    try {
      await handleMessages(runtime, req, res, services, caller);
    } finally {
      runtime.leave();
    }
  });
  // Last line of defence, in this face's shape.
  router.use('/v1/messages', (err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    const error = err instanceof TiergateError ? err : new TiergateError('TG_ERR_INTERNAL', { reason: errorMessage(err) }, { cause: err });
    logger.error('request failed', { code: error.code, error: error.message });
    sendError(res, error);
  });
  return router;
}

async function handleMessages(
  runtime: Runtime,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  services: PipelineServices,
  caller: GatewayKey | undefined,
): Promise<void> {
  // Made before the body is read: a body the face refuses is a request too, with its decision line, as on the chat face.
  const exchange = new ChatExchange(runtime, services, caller?.name);
  const client = exchange.client;
  const onClose = () => {
    if (!res.writableFinished) client.abort(new ClientGone());
  };
  res.on('close', onClose);
  let sink: MessagesStreamSink | null = null;
  try {
    const translated = translatedBody(await readBody(runtime, req, res));
    const { stopSequences } = translated;
    const requested = translated.body.model;
    const body = checkChatBody(translated.body);
    exchange.received(body);
    authorizeChatTarget(caller, runtime, body.model);
    const response = await exchange.run(routingHeaders(req));
    if (response.kind === 'stream') {
      startMessagesStream(res, streamHeaders(exchange, response));
      sink = new MessagesStreamSink(res, new MessagesStreamTranslator(requested, stopSequences));
      await exchange.stream(response, sink);
    } else {
      if (body.stream === true) replayAsMessagesStream(exchange, response, res, new MessagesStreamTranslator(requested, stopSequences));
      else
        sendJson(res, 200, toAnthropicMessage(clientResult(exchange.executionContext, response), requested, stopSequences), answerHeaders(exchange, response));
      exchange.answered(response);
    }
  } catch (err) {
    sink?.discard();
    answerFailure(exchange, err, res, sendError);
  } finally {
    res.off('close', onClose);
  }
}

/** The Messages body as the chat body the pipeline speaks; a body that does not translate is the catalogue's 400, naming the field. */
function translatedBody(request: unknown): ReturnType<typeof toChatBody> {
  try {
    return toChatBody(request);
  } catch (err) {
    if (err instanceof MessagesRequestError) throw new TiergateError('TG_ERR_REQUEST_INVALID', { reason: err.message }, { param: err.path });
    throw err;
  }
}

function startMessagesStream(res: http.ServerResponse, headers: string[]): void {
  res.writeHead(200, eventStreamHeaders(headers));
}

/** Gate "buffer": the gated answer is complete; send it as the Messages event sequence, in one write. */
function replayAsMessagesStream(exchange: ChatExchange, executed: Execution, res: http.ServerResponse, translator: MessagesStreamTranslator): void {
  startMessagesStream(res, answerHeaders(exchange, executed));
  let events = '';
  for (const chunk of replayedChunks(exchange.executionContext, executed)) for (const e of translator.push(chunk)) events += sseEvent(e);
  for (const e of translator.end()) events += sseEvent(e);
  res.end(events);
}

/** A stream read through, as the Messages API's events. */
class MessagesStreamSink implements ChunkSink {
  private gone = false;

  constructor(
    private readonly res: http.ServerResponse,
    private readonly translator: MessagesStreamTranslator,
  ) {}

  write(chunk: ChatChunk): void {
    let events = '';
    for (const e of this.translator.push(chunk)) events += sseEvent(e);
    if (events !== '' && !this.gone) this.res.write(events);
  }

  get needsDrain(): boolean {
    return this.res.writableNeedDrain;
  }

  drained(signal: AbortSignal): Promise<void> {
    return drained(this.res, signal);
  }

  end(): void {
    let events = '';
    for (const e of this.translator.end()) events += sseEvent(e);
    this.res.end(events);
  }

  fail(error: TiergateError): void {
    // A failure after the stream began: Anthropic's error event, then the end.
    this.res.end(sseEvent({ event: 'error', data: toAnthropicError(502, error.toOpenAI()) }));
  }

  /** The client went away: nothing more is written. */
  discard(): void {
    this.gone = true;
  }
}
