// A lean fetch for the providers' official SDKs, on node:http / node:https with one
// keep-alive Agent per provider instance.
//
// Why: Node 20's built-in fetch (undici + web streams + WHATWG Headers) cost ~0.3–0.5 ms
// of CPU per upstream call — more than the rest of the gateway together
// (docs/bench/profile-findings.md, item 1). The SDKs accept a `fetch` option; this
// implements the part of fetch they use and nothing else:
// - the request: a URL, a method, headers (Headers, pairs or a record), a string or
//   byte body, a signal. Anything else (a streamed request body) goes to the global
//   fetch, so nothing is silently dropped.
// - the response: status, ok, statusText, url, headers (get/has/entries/forEach/
//   iteration), text(), json(), arrayBuffer(), and `body` as an async-iterable of byte
//   chunks (both SDKs read a body through Symbol.asyncIterator when it has one).
// - failures as undici reports them, so the SDKs and the providers' error mapping see
//   what they saw before: an abort rejects with a DOMException named AbortError; a
//   connection that cannot be made rejects with TypeError("fetch failed", { cause });
//   a connection lost while reading the body rejects the read with
//   TypeError("terminated", { cause }).
// No redirects are followed (an API answering 3xx is reported as that status), and no
// compression is asked for (no accept-encoding), so bodies arrive as sent.
import http from 'node:http';
import https from 'node:https';

/** The caller's own signal, passed through the SDK's per-request `fetchOptions` (see callerSignal). */
export const CALLER_SIGNAL = 'tiergateCallerSignal';

export interface NodeFetch {
  readonly fetch: typeof globalThis.fetch;
  /** Closes the kept-alive connections. Calls after it still work (on new connections). */
  close(): void;
}

export interface NodeFetchOptions {
  /** Idle kept-alive sockets are closed after this long (default 30 s, under most servers' own timeouts). */
  idleTimeoutMs?: number;
}

/**
 * The per-call options that hand `signal` to the fetch without giving it to the SDK:
 * the SDK adds an abort listener to the signal it is given and never removes it, so a
 * long-lived signal would pile up listeners; the fetch removes its own when the call ends.
 */
export function callerSignal(signal: AbortSignal): { fetchOptions: Record<string, unknown> } {
  return { fetchOptions: { [CALLER_SIGNAL]: signal } };
}

type HeaderInit = Headers | ReadonlyArray<readonly [string, string]> | Record<string, string | readonly string[] | undefined> | undefined;

interface LeanInit {
  method?: string;
  headers?: HeaderInit;
  body?: unknown;
  signal?: AbortSignal | null;
  [CALLER_SIGNAL]?: AbortSignal;
}

function abortError(signal: AbortSignal): unknown {
  // What undici rejects with: the signal's reason when it is an AbortError-like value,
  // else a DOMException named AbortError (the SDKs test err.name === 'AbortError').
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  return new DOMException('This operation was aborted', 'AbortError');
}

function headerRecord(init: HeaderInit): Record<string, string> {
  const out: Record<string, string> = {};
  if (!init) return out;
  if (typeof (init as Headers).forEach === 'function' && !Array.isArray(init)) {
    (init as Headers).forEach((value, name) => {
      out[name] = value;
    });
  } else if (Array.isArray(init)) {
    for (const [name, value] of init as ReadonlyArray<readonly [string, string]>) out[name.toLowerCase()] = value;
  } else {
    for (const name in init as Record<string, unknown>) {
      const value = (init as Record<string, string | readonly string[] | undefined>)[name];
      if (value !== undefined) out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : (value as string);
    }
  }
  return out;
}

/** The response headers, read-only, with the WHATWG Headers methods the SDKs call. */
class ResponseHeaders {
  constructor(private readonly raw: http.IncomingHttpHeaders) {}

  get(name: string): string | null {
    const value = this.raw[name.toLowerCase()];
    if (value === undefined) return null;
    return Array.isArray(value) ? value.join(', ') : value;
  }

  has(name: string): boolean {
    return this.raw[name.toLowerCase()] !== undefined;
  }

  *entries(): IterableIterator<[string, string]> {
    for (const name of Object.keys(this.raw).sort()) {
      const value = this.get(name);
      if (value !== null) yield [name, value];
    }
  }

  *keys(): IterableIterator<string> {
    for (const [name] of this.entries()) yield name;
  }

  *values(): IterableIterator<string> {
    for (const [, value] of this.entries()) yield value;
  }

  forEach(callback: (value: string, name: string, headers: ResponseHeaders) => void): void {
    for (const [name, value] of this.entries()) callback(value, name, this);
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }
}

/**
 * The body of a response: read once, either whole (text/json/arrayBuffer) or as an
 * async iterable of chunks. Failures while reading come out as undici's would.
 */
class LeanResponse {
  readonly ok: boolean;
  readonly status: number;
  readonly statusText: string;
  readonly headers: ResponseHeaders;
  readonly redirected = false;
  readonly type = 'basic';
  bodyUsed = false;
  readonly body: AsyncIterable<Uint8Array>;

  constructor(
    readonly url: string,
    private readonly res: http.IncomingMessage,
    private readonly failure: () => unknown,
  ) {
    this.status = res.statusCode ?? 0;
    this.ok = this.status >= 200 && this.status < 300;
    this.statusText = res.statusMessage ?? '';
    this.headers = new ResponseHeaders(res.headers);
    this.body = { [Symbol.asyncIterator]: () => this.chunks() };
  }

  private chunks(): AsyncIterator<Uint8Array> {
    this.bodyUsed = true;
    const inner = this.res[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    return {
      next: () => inner.next().catch((err: unknown) => Promise.reject(this.failure() ?? terminated(err))),
      return: async (): Promise<IteratorResult<Uint8Array>> => {
        // The reader stopped early (a cancelled stream): drop the connection.
        if (!this.res.complete) this.res.destroy();
        await inner.return?.().catch(() => undefined);
        return { done: true, value: undefined };
      },
    };
  }

  private whole(): Promise<Buffer> {
    this.bodyUsed = true;
    const res = this.res;
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      res.on('data', (chunk: Buffer) => parts.push(chunk));
      res.once('end', () => resolve(parts.length === 1 ? parts[0] : Buffer.concat(parts)));
      res.once('error', (err) => reject(this.failure() ?? terminated(err)));
      // A connection closed before the end of the body emits 'aborted' then 'close' (and, in Node 20, 'error').
      res.once('close', () => {
        if (!res.complete) reject(this.failure() ?? terminated(new Error('other side closed')));
      });
    });
  }

  async text(): Promise<string> {
    return (await this.whole()).toString('utf8');
  }

  async json(): Promise<unknown> {
    return JSON.parse((await this.whole()).toString('utf8'));
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    const buffer = await this.whole();
    return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength) as ArrayBuffer;
  }
}

function terminated(cause: unknown): TypeError {
  return new TypeError('terminated', { cause });
}

/** One upstream request, as the pool sends it. */
interface HttpCall {
  readonly url: URL;
  readonly method: string;
  /** Names and values, flat ([name, value, …]); Host is added from the URL when absent. */
  readonly headers: string[];
  readonly body?: string | Uint8Array | null;
  /** Any of them aborting cancels the call, and the body being read. */
  readonly signals: readonly AbortSignal[];
}

interface HttpReply {
  readonly response: http.IncomingMessage;
  /** The AbortError once one of the call's signals fired (the body then fails too), else null. */
  aborted(): unknown;
}

interface HttpPool {
  /**
   * Sends the request; resolves once the response's headers arrive. Rejects with an
   * AbortError when a signal fires first, or with the socket's own error.
   */
  send(call: HttpCall): Promise<HttpReply>;
  /** Closes the kept-alive connections. Calls after it still work (on new connections). */
  close(): void;
}

/**
 * node:http / node:https with one keep-alive Agent per pool: the transport under the
 * SDK's fetch (createNodeFetch). openai_compatible calls through undici's Pool instead.
 */
function createHttpPool(options: NodeFetchOptions = {}): HttpPool {
  const idle = options.idleTimeoutMs ?? 30_000;
  // One pool per provider instance: its connections end with it (dispose), and one
  // provider's slow upstream never holds another's sockets.
  const agents = {
    'http:': new http.Agent({ keepAlive: true, timeout: idle, scheduling: 'lifo' }),
    'https:': new https.Agent({ keepAlive: true, timeout: idle, scheduling: 'lifo' }),
  };

  function send(call: HttpCall): Promise<HttpReply> {
    const { url, signals, body } = call;
    for (const signal of signals) if (signal.aborted) return Promise.reject(abortError(signal));
    return new Promise<HttpReply>((resolve, reject) => {
      // Handed over as a flat [name, value, …] list, node:http stores the header block in
      // one pass (each name and value still validated) instead of a setHeader per header;
      // the one thing it then does not add itself is Host, which is the URL's host (port
      // only when not the default, IPv6 in brackets) as node:http would write it.
      const headers = hasHost(call.headers) ? call.headers.slice() : ['Host', url.host, ...call.headers];
      if (body !== undefined && body !== null) headers.push('content-length', String(typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength));
      const transport = url.protocol === 'https:' ? https : http;
      const req = transport.request({
        agent: agents[url.protocol as 'http:' | 'https:'],
        protocol: url.protocol,
        hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
        port: url.port || undefined,
        path: url.pathname + url.search,
        method: call.method,
        headers,
      });
      let aborted: unknown = null;
      let settled = false;
      let response: http.IncomingMessage | null = null;
      const onAbort = function (this: AbortSignal) {
        if (aborted !== null) return;
        aborted = abortError(this);
        if (!settled) {
          settled = true;
          reject(aborted);
        }
        // Destroying the request also destroys its response: a body being read fails.
        req.destroy(aborted as Error);
        response?.destroy(aborted as Error);
      };
      for (const signal of signals) signal.addEventListener('abort', onAbort, { once: true });
      const release = () => {
        for (const signal of signals) signal.removeEventListener('abort', onAbort);
      };
      req.once('response', (res) => {
        response = res;
        // The listeners stay until the body is read or dropped: a stream is cancelled through them.
        res.once('close', release);
        if (settled) {
          res.destroy();
          return;
        }
        settled = true;
        resolve({ response: res, aborted: () => aborted });
      });
      req.once('error', (err) => {
        if (settled) return;
        settled = true;
        release();
        reject(aborted ?? err);
      });
      if (body !== undefined && body !== null) req.end(body);
      else req.end();
    });
  }

  return {
    send,
    close() {
      agents['http:'].destroy();
      agents['https:'].destroy();
    },
  };
}

function hasHost(flat: readonly string[]): boolean {
  for (let i = 0; i < flat.length; i += 2) if (flat[i].length === 4 && flat[i].toLowerCase() === 'host') return true;
  return false;
}

/** Whether `err` is what the pool rejects with when a signal fired (a DOMException or Error named AbortError). */
export function isAbortError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'AbortError';
}

export function createNodeFetch(options: NodeFetchOptions = {}): NodeFetch {
  const pool = createHttpPool(options);
  // The SDKs call a handful of fixed URLs; parsing each once is enough.
  const parsed = new Map<string, URL>();
  const urlOf = (input: string): URL => {
    let url = parsed.get(input);
    if (!url) {
      url = new URL(input);
      if (parsed.size > 100) parsed.clear();
      parsed.set(input, url);
    }
    return url;
  };

  async function leanFetch(input: string | URL | Request, init: LeanInit = {}): Promise<LeanResponse> {
    const href = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const body = init.body;
    const plainBody = body === undefined || body === null || typeof body === 'string' || body instanceof Uint8Array;
    if (typeof input === 'object' && !(input instanceof URL)) return globalThis.fetch(input, init as RequestInit) as unknown as Promise<LeanResponse>;
    const url = urlOf(href);
    if (!plainBody || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      const { [CALLER_SIGNAL]: _caller, ...rest } = init;
      return globalThis.fetch(href, rest as RequestInit) as unknown as Promise<LeanResponse>;
    }
    const signals = [init.signal, init[CALLER_SIGNAL]].filter((s): s is AbortSignal => s !== undefined && s !== null);
    const headers = headerRecord(init.headers);
    const flat: string[] = [];
    for (const name in headers) if (name !== 'content-length') flat.push(name, headers[name]);
    let reply: HttpReply;
    try {
      reply = await pool.send({
        url,
        method: (init.method ?? 'GET').toUpperCase(),
        headers: flat,
        body: body as string | Uint8Array | undefined | null,
        signals,
      });
    } catch (err) {
      // What undici rejects with: the AbortError, or TypeError("fetch failed") with the socket's error as cause.
      throw isAbortError(err) ? err : new TypeError('fetch failed', { cause: err });
    }
    return new LeanResponse(href, reply.response, reply.aborted);
  }

  return {
    fetch: leanFetch as unknown as typeof globalThis.fetch,
    close: () => pool.close(),
  };
}
