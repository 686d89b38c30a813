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
  /** Resolves when the server has closed the connection. */
  closed: Promise<void>;
  /** Whether the server has closed the connection yet. */
  isClosed(): boolean;
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
  const answer = new Promise<RawAnswer>((resolve, reject) => {
    let received = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [statusLine, ...lines] = received.subarray(0, end).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const body = received.subarray(end + 4);
      if (body.length < Number(headers['content-length'] ?? 0)) return;
      socket.off('data', onData);
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: body.toString('utf8') });
    };
    socket.on('data', onData);
    void closed.then(() => reject(new Error(`the server closed the connection without a whole answer (${received.length} bytes)`)));
  });
  // Unhandled when a test only watches the close.
  answer.catch(() => {});
  if (text) socket.write(text);
  return { socket, answer, closed, isClosed: () => closedYet };
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
