// The floor for any Node gateway: a do-nothing pass-through proxy. The `http` module
// pipes the request to the upstream and the response back, over kept-alive
// connections, and looks at nothing.
//
//   node --import tsx scripts/bench/proxy.ts PORT UPSTREAM_PORT
import http from 'node:http';

export function createProxy(upstreamPort: number): http.Server {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256 });
  const server = http.createServer((req, res) => {
    const upstream = http.request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers, agent }, (reply) => {
      res.writeHead(reply.statusCode ?? 502, reply.headers);
      reply.pipe(res);
    });
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 65_000;
  return server;
}

if (import.meta.filename === process.argv[1]) {
  const port = Number(process.argv[2]);
  createProxy(Number(process.argv[3])).listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
}
