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
import type { RuntimeManager } from '../../policy/reload.ts';
import type { PipelineServices } from '../../pipeline/exchange.ts';
import { authenticate, keylessAccepts, logRefusal } from '../auth.ts';
import { sendJson, setRetryHeaders } from '../respond.ts';
import { eventTranslatorOf, serveTranslatedChat, type ChatTranslation } from '../translated-chat.ts';
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
      await serveTranslatedChat(runtime, req, res, services, caller, routingHeaders(req), translate, sendError);
    } finally {
      runtime.leave();
    }
  });
  // Any other method or path under /v1/messages (GET, count_tokens, batches): a 404 in
  // this face's shape, for the caller the POST would accept; anyone else learns why not.
  router.use('/v1/messages', (req: Request, res: Response) => {
    const caller = authenticate(manager.runtime.server.auth, req);
    const error = caller instanceof TiergateError ? caller : new TiergateError('TG_ERR_NOT_FOUND', { method: req.method, path: req.originalUrl.split('?')[0] });
    if (caller instanceof TiergateError) logRefusal(logger, req, caller);
    sendError(res, error);
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

/** The request translated, or a located 400 in the catalogue. */
function translate(raw: unknown): ReturnType<ChatTranslation> {
  let translated;
  try {
    translated = toChatBody(raw);
  } catch (err) {
    if (err instanceof MessagesRequestError) throw new TiergateError('TG_ERR_REQUEST_INVALID', { reason: err.message }, { param: err.path });
    throw err;
  }
  const { stopSequences } = translated;
  return {
    chatBody: translated.body,
    // `model` names the model that served (as x-tiergate-model does), not the route asked for.
    renderer: {
      answer: (completion, served) => toAnthropicMessage(completion, served, stopSequences),
      events: (served) =>
        eventTranslatorOf(new MessagesStreamTranslator(served, stopSequences), sseEvent, (error) => [
          // A failure after the stream began: Anthropic's error event, then the end.
          { event: 'error', data: toAnthropicError(502, error.toOpenAI()) },
        ]),
    },
  };
}
