// Answers written on a plain node:http ServerResponse, for the paths that run without
// express (POST /v1/chat/completions and its auth, src/faces/server.ts); an express response
// is one too, so the same function serves both.
import type http from 'node:http';

/**
 * What express's res.status(n).json(value) sends (with etag off); headers set before are
 * kept. `headers`, a flat [name, value, …] list, goes out with the status line in one
 * writeHead: node:http writes such a list as given, where a setHeader per header stores
 * and looks up each first (the chat answer's x-tiergate-* headers; profile-findings, round 4).
 */
export function sendJson(res: http.ServerResponse, status: number, value: unknown, headers: string[] = []): void {
  const json = JSON.stringify(value);
  if (!res.hasHeader('content-type')) headers.push('content-type', 'application/json; charset=utf-8');
  headers.push('content-length', String(Buffer.byteLength(json)));
  res.writeHead(status, headers);
  res.end(json);
}
