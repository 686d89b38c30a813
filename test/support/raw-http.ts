// HTTP/1.1 by hand on a raw socket, for what no client library does on purpose: a
// request whose body stops half-way (a slow or hostile client), or a connection held
// open without a request.
import net from 'node:net';

export interface RawAnswer {
  status: number;
  /** Header names in lower case. */
  headers: Record<string, string>;
  body: string;
}

export interface RawConnection {
  socket: net.Socket;
  /** The first answer on the connection, once its content-length of body has arrived. */
  answer: Promise<RawAnswer>;
  /** The answer after the last one asked for (the first, then the second, ...); rejects when the server closes first. */
  nextAnswer(): Promise<RawAnswer>;
  /** Resolves when the server has closed the connection. */
  closed: Promise<void>;
  /** Whether the server has closed the connection yet. */
  isClosed(): boolean;
}

/** One request as HTTP/1.1 text, with a content-length when it has a body. */
export function rawRequest(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): string {
  const text = body === undefined ? '' : JSON.stringify(body);
  const all = {
    host: 'tiergate',
    ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) }),
    ...headers,
  };
  return `${method} ${path} HTTP/1.1\r\n${Object.entries(all)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')}\r\n${text}`;
}

/** Opens a connection to `url`'s host and port and writes `text` (nothing when omitted). */
export async function rawConnection(url: string, text = ''): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let closedYet = false;
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  void closed.then(() => (closedYet = true));
  // A reset after the answer is the server closing; the answer or the close tells the test what it needs.
  socket.on('error', () => {});
  let received = Buffer.alloc(0);
  const answers: RawAnswer[] = [];
  const waiting: Array<{ resolve(answer: RawAnswer): void; reject(err: Error): void }> = [];
  const settle = () => {
    while (answers.length > 0 && waiting.length > 0) waiting.shift()!.resolve(answers.shift()!);
    if (closedYet)
      for (const waiter of waiting.splice(0))
        waiter.reject(new Error(`the server closed the connection without a whole answer (${received.length} bytes left unread)`));
  };
  socket.on('data', (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    for (;;) {
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) break;
      const [statusLine, ...lines] = received.subarray(0, end).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const length = Number(headers['content-length'] ?? 0);
      if (received.length < end + 4 + length) break;
      answers.push({ status: Number(statusLine.split(' ')[1]), headers, body: received.subarray(end + 4, end + 4 + length).toString('utf8') });
      received = received.subarray(end + 4 + length);
    }
    settle();
  });
  void closed.then(settle);
  const nextAnswer = () => new Promise<RawAnswer>((resolve, reject) => (waiting.push({ resolve, reject }), settle()));
  const answer = nextAnswer();
  // Unhandled when a test only watches the close.
  answer.catch(() => {});
  if (text) socket.write(text);
  return { socket, answer, nextAnswer, closed, isClosed: () => closedYet };
}

/**
 * A POST whose headers promise `declaredBytes` of JSON body and whose body stops after
 * its first few bytes: the request never finishes arriving unless the test writes more.
 */
export function unfinishedPost(url: string, path: string, headers: Record<string, string> = {}, declaredBytes = 100_000): Promise<RawConnection> {
  const { host } = new URL(url);
  const head = Object.entries({ host, 'content-type': 'application/json', 'content-length': String(declaredBytes), ...headers })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  return rawConnection(url, `POST ${path} HTTP/1.1\r\n${head}\r\n{"model": "sup`);
}
