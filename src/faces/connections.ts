// The server's connections: how many may be open (server.max_connections), how long a
// request may take to arrive (server.request_timeout_ms), and how they end on shutdown.
// Every face sits behind this; none of it knows which API a request speaks.
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { TiergateError } from '../common/errors.ts';
import type { ServerSettings } from '../policy/runtime.ts';
import { API_RESPONSE_HEADERS, sendError } from './respond.ts';

/**
 * The node:http server. Node checks its request timeout on an interval, not per request
 * (no timer per request); a quarter of the timeout at start keeps the cut within 25% of
 * it, and a second at most keeps a long timeout's cut close to its word.
 */
export function createNodeServer(settings: ServerSettings): http.Server {
  const server = http.createServer({ connectionsCheckingInterval: Math.min(1000, Math.ceil(settings.requestTimeoutMs / 4)) });
  applyRequestTimeout(server, settings);
  return server;
}

/**
 * server.request_timeout_ms, at start and on every reload. Node's request timeout covers
 * headers and body from the request's first byte and ends once the request has arrived,
 * so an answer that streams for minutes is never cut by it.
 */
export function applyRequestTimeout(server: http.Server, settings: ServerSettings): void {
  server.requestTimeout = settings.requestTimeoutMs;
  // The headers are part of the request: they have the same time, not Node's own 60 s.
  server.headersTimeout = settings.requestTimeoutMs;
}

/**
 * After SIGTERM, how long a kept-alive connection that was idle may still bring a
 * request: one the client sent just before may be on its way, and closing the connection
 * under it would reset it unanswered.
 */
export const IDLE_CONNECTION_GRACE_MS = 200;

/** A server socket as node:http keeps it: the response it is writing now, if any. */
type ServerSocket = net.Socket & { _httpMessage?: http.ServerResponse | null };

export class ConnectionGuard {
  /**
   * The open connections, tracked per connection rather than per request: what a drain
   * must reach is the answer each is writing (its `_httpMessage`). Holding every response
   * in a set until its 'close' kept it, its request and body, alive across garbage
   * collections: four times the bytes promoted to the old generation per request, and a
   * twentieth more instructions per request (docs/bench/profile-findings.md, items 27 and 28).
   */
  private readonly sockets = new Set<ServerSocket>();
  /** Connections accepted beyond max_connections: their request is refused, then they close. */
  private readonly overLimit = new WeakSet<Duplex>();
  private draining = false;

  /** `current` gives the settings of the policy in force: a reload changes the limit for new connections. */
  constructor(
    private readonly server: http.Server,
    private readonly current: () => ServerSettings,
  ) {
    server.on('connection', (socket: ServerSocket) => {
      this.sockets.add(socket);
      if (this.sockets.size > current().maxConnections) this.overLimit.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  /**
   * Whether the request may go on to a face. A connection beyond the limit gets 503 and
   * is closed; during the drain every answer says `connection: close`, so that no client
   * sends another request on a connection about to close.
   */
  admit(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (this.overLimit.has(req.socket)) {
      res.setHeader('connection', 'close');
      sendError(res, new TiergateError('TG_ERR_SERVER_BUSY', { max_connections: this.current().maxConnections }, { retryAfterMs: 1000 }));
      return false;
    }
    if (this.draining) res.setHeader('connection', 'close');
    return true;
  }

  /**
   * Stops accepting connections and resolves once every open one has closed. Requests
   * already received are answered, each with `connection: close`; connections idle now
   * are closed after IDLE_CONNECTION_GRACE_MS, unless a request arrives on them first.
   */
  drain(): Promise<void> {
    this.draining = true;
    // A connection that falls idle from now on (one whose answer went out before the drain
    // could mark it, a pipelined request's) closes after the same grace.
    this.server.keepAliveTimeout = IDLE_CONNECTION_GRACE_MS;
    for (const socket of this.sockets) {
      const res = socket._httpMessage;
      if (!res) continue;
      if (!res.headersSent) res.setHeader('connection', 'close');
      // Its header already said keep-alive (a stream under way): close the connection once the answer is out.
      else res.once('finish', () => socket.destroySoon());
    }
    // http.Server's own close() would also close the idle connections at once, resetting a
    // request already on its way; net.Server's stops accepting and waits for every connection.
    const closed = new Promise<void>((resolve) => net.Server.prototype.close.call(this.server, () => resolve()));
    const grace = setTimeout(
      // After the reads due now (setImmediate runs after the poll phase): a request that has
      // arrived makes its connection busy, and busy connections are not cut.
      () => setImmediate(() => this.server.closeIdleConnections()),
      IDLE_CONNECTION_GRACE_MS,
    );
    return closed.finally(() => {
      clearTimeout(grace);
      // Node's timeout checker would otherwise keep running on the closed server's empty list.
      this.server.requestTimeout = 0;
      this.server.headersTimeout = 0;
    });
  }
}

/**
 * Requests Node's HTTP parser rejects before any face sees them (a bad header, a broken
 * chunked body, headers over the size limit, a request slower than
 * server.request_timeout_ms) get the OpenAI error shape too, not Node's bare status line.
 */
export function malformedRequestAnswerer(current: () => ServerSettings): (err: NodeJS.ErrnoException, socket: Duplex) => void {
  return (err, socket) => {
    // As Node's own handler: write only where no answer has begun, or the client would read a corrupt one.
    const answer = (socket as Duplex & { _httpMessage?: http.ServerResponse | null })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || (answer && answer.headersSent)) {
      socket.destroy();
      return;
    }
    const error =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? new TiergateError('TG_ERR_REQUEST_HEADERS_TOO_LARGE')
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? new TiergateError('TG_ERR_REQUEST_TIMEOUT', { timeout_ms: current().requestTimeoutMs })
          : new TiergateError('TG_ERR_REQUEST_HTTP', { reason: err.code ?? 'unreadable' });
    const body = JSON.stringify(error.toOpenAI());
    const headers = [
      'content-type',
      'application/json; charset=utf-8',
      'content-length',
      String(Buffer.byteLength(body)),
      ...API_RESPONSE_HEADERS,
      'connection',
      'close',
    ];
    let head = `HTTP/1.1 ${error.status} ${http.STATUS_CODES[error.status] ?? ''}\r\n`;
    for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
    // Closed once the answer is out, not when the client ends its side: a client dripping a body never would.
    socket.end(`${head}\r\n${body}`, () => socket.destroy());
  };
}
