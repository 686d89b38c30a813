// Answers written on a plain node:http ServerResponse, for the paths that run without
// express (the chat door and its auth, src/faces/openai-chat/handler.ts); an express response
// is one too, so the same functions serve both.
import type http from 'node:http';
import type winston from 'winston';
import { TiergateError, errorMessage } from '../common/errors.ts';
import { isUpstreamError } from '../plugin-contract/plugin-api.ts';

/**
 * What express's res.status(n).json(value) sends (with etag off); headers set before are
 * kept. `headers`, a flat [name, value, …] list, goes out with the status line in one
 * writeHead: node:http writes such a list as given, where a setHeader per header stores
 * and looks up each first (the chat answer's x-tiergate-* headers; profile-findings, round 4).
 */
/**
 * On every answer: a browser must not read a JSON error as a page or script, and no cache
 * may keep an answer, which belongs to one caller and one request. A flat list, for writeHead.
 */
export const API_RESPONSE_HEADERS: readonly string[] = ['x-content-type-options', 'nosniff', 'cache-control', 'no-store'];

export function sendJson(res: http.ServerResponse, status: number, value: unknown, headers: string[] = []): void {
  const json = JSON.stringify(value);
  if (!res.hasHeader('content-type')) headers.push('content-type', 'application/json; charset=utf-8');
  headers.push('content-length', String(Buffer.byteLength(json)), ...API_RESPONSE_HEADERS);
  res.writeHead(status, headers);
  res.end(json);
}

/** A catalogue error in OpenAI's error shape (with the attempts, when nothing answered). */
export function sendError(res: http.ServerResponse, error: TiergateError): void {
  if (res.headersSent) return;
  setRetryHeaders(res, error);
  const body = error.toOpenAI();
  const attempts = (error as TiergateError & { attempts?: unknown }).attempts;
  sendJson(res, error.status, attempts ? { error: { ...body.error, attempts } } : body);
}

/**
 * Past a minute a retry is not worth waiting for: the official SDKs would sleep through
 * whatever retry-after says (an exhausted daily budget says hours) and clients that cap
 * the wait retry at once, in vain.
 */
const SOON_ENOUGH_TO_RETRY_MS = 60_000;

/**
 * retry-after when the error says when to come back; and x-should-retry: false (which the
 * official openai and Anthropic SDKs obey) when that is too far off for a retry to succeed.
 */
export function setRetryHeaders(res: http.ServerResponse, error: TiergateError): void {
  const retryAfter = retryAfterOf(error);
  if (retryAfter === undefined) return;
  res.setHeader('retry-after', String(Math.ceil(retryAfter / 1000)));
  if (retryAfter > SOON_ENOUGH_TO_RETRY_MS) res.setHeader('x-should-retry', 'false');
}

/** The head of a server-sent event stream, after the answer's own headers. */
export function eventStreamHeaders(headers: string[]): string[] {
  headers.push('content-type', 'text/event-stream; charset=utf-8', ...API_RESPONSE_HEADERS, 'x-accel-buffering', 'no');
  return headers;
}

/** How long the client should wait before trying again, when the error (or the upstream's) says. */
export function retryAfterOf(error: TiergateError): number | undefined {
  return error.retryAfterMs ?? (isUpstreamError(error.cause) ? error.cause.retryAfterMs : undefined);
}

/** Last line of defence: nothing a client sends may crash the process. */
export function lastResort(err: unknown, res: http.ServerResponse, logger: winston.Logger): void {
  const error = err instanceof TiergateError ? err : new TiergateError('TG_ERR_INTERNAL', { reason: errorMessage(err) }, { cause: err });
  logger.error('request failed', { code: error.code, error: error.message });
  if (res.headersSent) res.end();
  else sendError(res, error);
}

/** Resolves once the response's buffer has drained; rejects with the signal's reason when it aborts first. */
export function drained(res: http.ServerResponse, signal: AbortSignal): Promise<void> {
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
