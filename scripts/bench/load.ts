// Load runs: autocannon drives the load; latencies come from its per-response event
// (float milliseconds: its own histogram keeps whole milliseconds only, too coarse for
// sub-millisecond latencies). CPU and memory of the server process are read from /proc
// around and during the run.
import http from 'node:http';
import autocannon from 'autocannon';
import { cpuMicros, machineMicros, ownCpuMicros, rssBytes } from './processes.ts';
import { Samples, quantile } from './stats.ts';

export interface LoadResult {
  /** 2xx responses per second over the run. */
  rps: number;
  p50_ms: number;
  p99_ms: number;
  requests: number;
  errors: number;
  non2xx: number;
  /** CPU time (user + system) the server process spent per 2xx response. */
  cpu_us_per_request: number;
  /** Share of one CPU the server process used during the run. */
  cpu_utilisation: number;
  /** Largest resident set size of the server process seen during the run. */
  rss_max_mb: number;
  /** Cores' worth of CPU that processes other than the benchmark's used meanwhile: noise from a shared machine. */
  foreign_cpu: number;
  /** Cores' worth of CPU time the hypervisor took from this machine meanwhile (/proc/stat steal). */
  stolen_cpu: number;
}

export interface LoadOptions {
  url: string;
  body: string;
  connections: number;
  durationSeconds: number;
  /** The server process to account CPU and memory to. */
  serverPid: number;
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const latencies = new Samples();
  let ok = 0;
  let non2xx = 0;
  let rssMax = rssBytes(options.serverPid);
  const sampler = setInterval(() => {
    rssMax = Math.max(rssMax, rssBytes(options.serverPid));
  }, 200);
  const cpuBefore = cpuMicros(options.serverPid);
  const machine = watchMachine();
  const started = performance.now();
  let result: autocannon.Result;
  try {
    result = await new Promise<autocannon.Result>((resolve, reject) => {
      const instance = autocannon(
        {
          url: options.url,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: options.body,
          connections: options.connections,
          duration: options.durationSeconds,
          timeout: 10,
        },
        (err: unknown, done: autocannon.Result) => (err ? reject(err) : resolve(done)),
      );
      instance.on('response', (_client, statusCode, _bytes, responseTime) => {
        if (statusCode >= 200 && statusCode < 300) {
          ok++;
          latencies.push(responseTime);
        } else {
          non2xx++;
        }
      });
    });
  } finally {
    clearInterval(sampler);
  }
  const elapsedS = (performance.now() - started) / 1000;
  const cpuUs = cpuMicros(options.serverPid) - cpuBefore;
  const others = machine.stop();
  rssMax = Math.max(rssMax, rssBytes(options.serverPid));
  const values = latencies.values();
  await settle(options.serverPid);
  return {
    rps: ok / elapsedS,
    p50_ms: quantile(values, 0.5),
    p99_ms: quantile(values, 0.99),
    requests: ok,
    errors: result.errors,
    non2xx,
    cpu_us_per_request: ok > 0 ? cpuUs / ok : Number.NaN,
    cpu_utilisation: cpuUs / 1e6 / elapsedS,
    rss_max_mb: rssMax / (1024 * 1024),
    ...others,
  };
}

/**
 * Starts watching the machine; stop() gives the cores' worth of CPU that processes other
 * than the benchmark's used meanwhile, and that the hypervisor stole (/proc/stat).
 */
function watchMachine(): { stop(): { foreign_cpu: number; stolen_cpu: number } } {
  const ownBefore = ownCpuMicros();
  const before = machineMicros();
  const started = performance.now();
  return {
    stop() {
      const elapsedS = (performance.now() - started) / 1000;
      const after = machineMicros();
      const foreignUs = after.busy - before.busy - (ownCpuMicros() - ownBefore);
      return { foreign_cpu: Math.max(0, foreignUs / 1e6 / elapsedS), stolen_cpu: (after.stolen - before.stolen) / 1e6 / elapsedS };
    },
  };
}

/**
 * Waits until the server has worked off what autocannon left in flight when it stopped
 * (a slow gateway keeps computing for a while), so that the next run, on another
 * server on the same CPU, does not share the core with it.
 */
async function settle(pid: number, maxMs = 5000): Promise<void> {
  const deadline = performance.now() + maxMs;
  let before = cpuMicros(pid);
  while (performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = cpuMicros(pid);
    // /proc counts in 10 ms ticks: at most one tick in 50 ms is idle.
    if (now - before <= 10_000) return;
    before = now;
  }
}

export interface TtfbResult {
  /** Time from sending the request to the first byte of the streamed body (the first SSE event). */
  ttfb_p50_ms: number;
  ttfb_p99_ms: number;
  /** Time to the whole stream. */
  total_p50_ms: number;
  requests: number;
  errors: number;
  /** As in LoadResult: cores other processes and the hypervisor's steal took meanwhile. */
  foreign_cpu: number;
  stolen_cpu: number;
}

/** Sequential streamed requests over one kept-alive connection, timed to the first body byte. */
export async function measureTtfb(url: string, body: string, count: number): Promise<TtfbResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const target = new URL(url);
  const payload = Buffer.from(body);
  const first = new Samples();
  const total = new Samples();
  let errors = 0;
  const machine = watchMachine();
  try {
    for (let i = 0; i < count; i++) {
      try {
        const [ttfb, all] = await new Promise<[number, number]>((resolve, reject) => {
          const t0 = performance.now();
          let firstByte = Number.NaN;
          const req = http.request(
            {
              host: target.hostname,
              port: target.port,
              path: target.pathname,
              method: 'POST',
              agent,
              headers: { 'content-type': 'application/json', 'content-length': payload.length },
            },
            (res) => {
              if (res.statusCode !== 200) {
                res.resume();
                reject(new Error(`HTTP ${res.statusCode}`));
                return;
              }
              res.on('data', () => {
                if (Number.isNaN(firstByte)) firstByte = performance.now() - t0;
              });
              res.on('end', () => resolve([firstByte, performance.now() - t0]));
              res.on('error', reject);
            },
          );
          req.on('error', reject);
          req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
          req.end(payload);
        });
        first.push(ttfb);
        total.push(all);
      } catch {
        errors++;
      }
    }
  } finally {
    agent.destroy();
  }
  return {
    ...machine.stop(),
    ttfb_p50_ms: quantile(first.values(), 0.5),
    ttfb_p99_ms: quantile(first.values(), 0.99),
    total_p50_ms: quantile(total.values(), 0.5),
    requests: first.length,
    errors,
  };
}
