// Answers written on a plain node:http ServerResponse, for the paths that run without
// express (POST /v1/chat/completions and its auth, src/server.ts); an express response
// is one too, so the same function serves both.
import type http from 'node:http';

/** What express's res.status(n).json(value) sends (with etag off); headers set before (x-tiergate-*) are kept. */
export function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const json = JSON.stringify(value);
  res.statusCode = status;
  if (!res.hasHeader('content-type')) res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(json));
  res.end(json);
}
