// POST /v1/messages: Anthropic's Messages API in front of the same pipeline. The request is
// translated (src/faces/anthropic-messages/translate.ts) and sent to this gateway's own
// /v1/chat/completions over loopback with the client's key, so key checks, per-key
// limits, routing, gates, ladders, failover, the decision log and metrics are exactly
// those of the OpenAI-shaped API, with no second request path to keep in step. The answer,
// or its SSE stream, is translated back; every error leaves in Anthropic's error shape.
// Mounted before the /v1 key check: the inner call makes it (and its 401/403 come back
// translated); only the loopback-only rule of a keyless gateway is checked here, since the
// inner call itself always comes from loopback.
import http from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import type winston from 'winston';
import { keylessAccepts, type GatewayAuth } from '../auth.ts';
import { bodyError } from '../openai-chat/handler.ts';
import { TiergateError } from '../../common/errors.ts';
import { MessagesRequestError, MessagesStreamTranslator, sseEvent, toAnthropicError, toAnthropicMessage, toChatBody } from './translate.ts';

/** Request headers passed on to the inner call: credentials, and what routing may read. */
const FORWARDED = new Set(['authorization', 'user-agent', 'x-request-id']);

function forwardedHeaders(req: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value !== 'string') continue;
    if (FORWARDED.has(name) || (name.startsWith('x-') && name !== 'x-api-key' && !name.startsWith('x-stainless'))) out[name] = value;
  }
  // The Anthropic SDK sends its key as x-api-key; the gateway's keys are bearer tokens.
  if (out.authorization === undefined && typeof req.headers['x-api-key'] === 'string') out.authorization = `Bearer ${req.headers['x-api-key']}`;
  return out;
}


/** A catalogue error in Anthropic's shape (the code kept). */
function sendError(res: Response, error: TiergateError): void {
  res.status(error.status).json(toAnthropicError(error.status, error.toOpenAI()));
}

function copyTiergateHeaders(from: http.IncomingMessage, res: Response): void {
  for (const [name, value] of Object.entries(from.headers)) if ((name.startsWith('x-tiergate-') || name === 'retry-after') && value !== undefined) res.setHeader(name, value);
}

export function messagesRouter(logger: winston.Logger, bodyLimit: () => string | number, auth: () => GatewayAuth): express.Router {
  const router = express.Router();
  router.use('/v1/messages', (req: Request, res: Response, next: NextFunction) => {
    const current = auth();
    if (current.hasKeys || keylessAccepts(current, req.socket.remoteAddress)) return next();
    logger.warn('request refused', { code: 'TG_ERR_AUTH_LOOPBACK_ONLY', method: req.method, path: '/v1/messages', remote_address: req.socket.remoteAddress });
    sendError(res, new TiergateError('TG_ERR_AUTH_LOOPBACK_ONLY'));
  });
  router.post('/v1/messages', (req, res, next) => express.json({ limit: bodyLimit(), type: () => true })(req, res, next), (req: Request, res: Response) => {
    let translated;
    try {
      translated = toChatBody(req.body);
    } catch (err) {
      if (!(err instanceof MessagesRequestError)) throw err;
      return sendError(res, new TiergateError('TG_ERR_REQUEST_INVALID', { reason: err.message }, { param: err.path }));
    }
    const { body, stopSequences } = translated;
    const payload = Buffer.from(JSON.stringify(body));
    const inner = http.request(
      { host: req.socket.localAddress?.startsWith('::ffff:') ? req.socket.localAddress.slice(7) : (req.socket.localAddress ?? '127.0.0.1'), port: req.socket.localPort, path: '/v1/chat/completions', method: 'POST', headers: { ...forwardedHeaders(req), 'content-type': 'application/json', 'content-length': String(payload.length) } },
      (answer) => {
        copyTiergateHeaders(answer, res);
        const status = answer.statusCode ?? 502;
        const streaming = body.stream === true && status === 200 && String(answer.headers['content-type'] ?? '').startsWith('text/event-stream');
        if (!streaming) return relayJson(answer, res, status, body.model, stopSequences);
        relayStream(answer, res, body.model, stopSequences, logger);
      },
    );
    inner.on('error', (err) => {
      if (res.headersSent) return res.destroy(err);
      logger.error('messages ingress: the inner call failed', { error: err.message });
      sendError(res, new TiergateError('TG_ERR_INGRESS', { reason: err.message }));
    });
    // A client that goes away cancels the routed call (and so the upstream call).
    res.on('close', () => {
      if (!res.writableFinished) inner.destroy();
    });
    inner.end(payload);
  });
  // express.json's failures: the same catalogue errors as /v1/chat/completions gives.
  router.use('/v1/messages', (err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    sendError(res, bodyError(err, String(bodyLimit())));
  });
  return router;
}

function relayJson(answer: http.IncomingMessage, res: Response, status: number, model: string, stopSequences: readonly string[]): void {
  // Errors of the routed call arrive in OpenAI's shape, catalogue code included.
  const chunks: Buffer[] = [];
  answer.on('data', (c: Buffer) => chunks.push(c));
  answer.on('end', () => {
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      parsed = null;
    }
    if (status >= 400) return void res.status(status).json(toAnthropicError(status, parsed));
    if (parsed === null) return sendError(res, new TiergateError('TG_ERR_INGRESS', { reason: 'the routed call answered with something that is not JSON' }));
    res.status(200).json(toAnthropicMessage(parsed, model, stopSequences));
  });
  answer.on('error', () => res.destroy());
}

function relayStream(answer: http.IncomingMessage, res: Response, model: string, stopSequences: readonly string[], logger: winston.Logger): void {
  res.status(200);
  res.setHeader('content-type', 'text/event-stream; charset=utf-8');
  res.setHeader('cache-control', 'no-cache');
  res.flushHeaders();
  const translator = new MessagesStreamTranslator(model, stopSequences);
  let buffered = '';
  let ended = false;
  const finish = () => {
    if (ended) return;
    ended = true;
    for (const e of translator.end()) res.write(sseEvent(e));
    res.end();
  };
  answer.setEncoding('utf8');
  answer.on('data', (text: string) => {
    buffered += text;
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline).trimEnd();
      buffered = buffered.slice(newline + 1);
      if (!line.startsWith('data:')) continue;
      const data = line.slice(5).trim();
      if (data === '[DONE]') return finish();
      let chunk: unknown;
      try {
        chunk = JSON.parse(data);
      } catch {
        logger.warn('messages ingress: a stream line is not JSON', { line: data.slice(0, 200) });
        continue;
      }
      if (chunk !== null && typeof chunk === 'object' && 'error' in chunk) {
        // A failure after the stream began: Anthropic's error event, then the end.
        ended = true;
        res.write(sseEvent({ event: 'error', data: toAnthropicError(502, chunk) }));
        return void res.end();
      }
      for (const e of translator.push(chunk)) res.write(sseEvent(e));
    }
  });
  answer.on('end', finish);
  answer.on('error', () => res.destroy());
}
