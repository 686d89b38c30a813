// Free ports for servers a test starts as child processes (tiergate serve, nginx), which
// cannot be given port 0 and tell the test what they got.
import { once } from 'node:events';
import net from 'node:net';

const portsHandedOut = new Set<number>();

/** A port nothing listens on right now (asked of the OS), never one given to another test of this file. */
export async function freePort(): Promise<number> {
  for (;;) {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as net.AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (!portsHandedOut.has(port)) {
      portsHandedOut.add(port);
      return port;
    }
  }
}
