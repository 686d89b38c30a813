// The request body of every face that takes JSON, read with the runtime's limits.
import type http from 'node:http';
import type { Request, Response } from 'express';
import { TiergateError } from '../common/errors.ts';
import type { Runtime } from '../policy/runtime.ts';

/**
 * How deep a request body may nest objects and arrays (the body itself is level 1).
 * JSON.parse reads any depth, but JSON.stringify, which every provider and the decision
 * log use, recurses and overflows the stack some thousands of levels down: a body it
 * cannot write must be refused here, as the client's error, rather than fail inside a
 * provider and count against the model. Real requests (JSON Schemas in tools and
 * response_format included) stay far below 128, the limit serde_json also uses.
 */
export const MAX_BODY_DEPTH = 128;

/** Path segments shown of a body that nests too deep: where it starts to, not all 128 levels. */
const SHOWN_SEGMENTS = 8;

/**
 * Parses the body with the runtime's limits; resolves to the parsed body or rejects with
 * a client error (TG_ERR_REQUEST_TOO_DEEP for a body nested deeper than MAX_BODY_DEPTH). The common request (no content-encoding, no charset other than UTF-8)
 * is read here with a byte limit and JSON.parse, as body-parser would read it but without
 * its per-request cost (docs/bench/profile-findings.md, item 2); anything else (gzip, a
 * charset to decode or refuse) goes through express.json (runtime.parseJson) as before.
 */
export function readBody(runtime: Runtime, req: http.IncomingMessage, res: http.ServerResponse): Promise<unknown> {
  const encoding = req.headers['content-encoding'];
  const type = req.headers['content-type'];
  const plain = (encoding === undefined || encoding.toLowerCase() === 'identity') && (type === undefined || !/charset/i.test(type));
  if (plain) return readJsonBody(req, runtime.bodyLimitBytes, runtime.server.bodyLimit);
  return new Promise((resolve, reject) => {
    runtime.parseJson(req as Request, res as Response, (err?: unknown) => {
      if (err) return reject(bodyError(err, runtime.server.bodyLimit));
      const body: unknown = (req as Request).body;
      const tooDeep = tooDeepError(body);
      if (tooDeep) reject(tooDeep);
      else resolve(body);
    });
  });
}

/** TG_ERR_REQUEST_TOO_DEEP, naming where `body` nests deeper than MAX_BODY_DEPTH; null when it does not. */
function tooDeepError(body: unknown): TiergateError | null {
  const path = pathBelowLimit(body, 1);
  if (path === null) return null;
  let param = '';
  for (const segment of path.slice(0, SHOWN_SEGMENTS)) param += typeof segment === 'number' ? `[${segment}]` : (param ? '.' : '') + segment;
  if (path.length > SHOWN_SEGMENTS) param += '…';
  return new TiergateError('TG_ERR_REQUEST_TOO_DEEP', { param, limit: MAX_BODY_DEPTH }, { param });
}

/**
 * The path to the first container of `value` deeper than MAX_BODY_DEPTH (`depth` is
 * value's own level), or null. Recursive, but never deeper than the limit itself; the
 * path is built only for a body that fails.
 */
function pathBelowLimit(value: unknown, depth: number): Array<string | number> | null {
  if (typeof value !== 'object' || value === null) return null;
  if (depth > MAX_BODY_DEPTH) return [];
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const below = pathBelowLimit(value[i], depth + 1);
      if (below) return [i, ...below];
    }
    return null;
  }
  for (const key in value) {
    const below = pathBelowLimit((value as Record<string, unknown>)[key], depth + 1);
    if (below) return [key, ...below];
  }
  return null;
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
      if (length !== null && received !== length)
        return reject(new TiergateError('TG_ERR_REQUEST_INVALID', { reason: 'request size did not match content length' }));
      let text = (parts.length === 1 ? parts[0] : Buffer.concat(parts)).toString('utf8');
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      if (text.length === 0) return resolve({});
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (err) {
        return reject(new TiergateError('TG_ERR_REQUEST_JSON', { reason: (err as Error).message }));
      }
      const tooDeep = tooDeepError(body);
      if (tooDeep) reject(tooDeep);
      else resolve(body);
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
