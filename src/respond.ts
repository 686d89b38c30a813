// Answers written on a plain node:http ServerResponse, for the paths that run without
// express (POST /v1/chat/completions and its auth, src/server.ts).
import type http from 'node:http';

/**
 * res.status(n).json(value) on an express response — express middleware may wrap
 * res.json (the /v1/messages ingress reshapes errors that way) — and what it sends (with
 * etag off) on a plain ServerResponse: the chat path runs without express (server.ts).
 * Headers set before (x-tiergate-*) are kept either way.
 */
export function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const viaExpress = res as http.ServerResponse & { json?: (body: unknown) => unknown };
  if (typeof viaExpress.json === 'function') {
    res.statusCode = status;
    viaExpress.json(value);
    return;
  }
  const json = JSON.stringify(value);
  res.statusCode = status;
  if (!res.hasHeader('content-type')) res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(json));
  res.end(json);
}
