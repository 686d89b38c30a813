// Warm-up until the JIT has settled, measured rather than assumed.
//
// A target is warmed in every cell it will be measured in (JSON and SSE, 1 and 50
// connections), in turn, one short run each: a pass. V8 optimises for what it has seen,
// so a cell first met in the measured rounds would be measured while its functions are
// compiled afresh (the compiler thread shares the pinned core). Passes repeat until
// `patience` passes in a row bring no cell's CPU per request more than `tolerance` below
// that cell's lowest so far, or the time is up. "Stopped getting cheaper" rather than
// "the same as last time": on a shared host a pass's figure jumps up and down by 20 % or
// more with other load, which would keep a same-as-before test from ever passing, while
// warming up only ever makes a request cheaper.
//
// Traced with --trace-opt (round 6 of docs/bench/profile-findings.md): a fresh tiergate
// compiled ~270 functions in its first 3 s, and ~120 more on meeting one connection
// after 15 s at ten; one connection's p50 kept falling for ~25 s of load.
import { runLoad } from './load.ts';

export interface WarmCell {
  label: string;
  body: string;
  connections: number;
}

export interface WarmSettings {
  /** Seconds of load per cell per pass. */
  stepSeconds: number;
  minPasses: number;
  /** Passes in a row that must lower no cell's figure (one pass can miss a late compile). */
  patience: number;
  maxSeconds: number;
  /** A pass that lowers a cell's CPU per request by more than this share of its lowest so far is still warming up. */
  tolerance: number;
}

export interface WarmReport {
  seconds: number;
  requests: number;
  passes: number;
  /** False when the time ran out first. */
  settled: boolean;
  /** CPU µs per request of each cell, pass by pass (the cells in the order given). */
  cpu_us_per_request: number[][];
}

export async function warmUntilSettled(url: string, serverPid: number, cells: readonly WarmCell[], settings: WarmSettings): Promise<WarmReport> {
  const started = performance.now();
  const passes: number[][] = [];
  let requests = 0;
  let settled = false;
  const until = started + settings.maxSeconds * 1000;
  while (!settled && performance.now() < until) {
    const pass: number[] = [];
    for (const cell of cells) {
      const result = await runLoad({ url, body: cell.body, connections: cell.connections, durationSeconds: settings.stepSeconds, serverPid });
      requests += result.requests;
      pass.push(result.cpu_us_per_request);
    }
    passes.push(pass);
    settled = hasSettled(passes, settings);
  }
  return { seconds: (performance.now() - started) / 1000, requests, passes: passes.length, settled, cpu_us_per_request: passes };
}

/**
 * Whether passes so far (each cell's CPU µs per request, pass by pass) show a settled
 * target: at least `minPasses`, and the last `patience` of them each lowered no cell's
 * figure more than `tolerance` below that cell's lowest before it. The first pass only
 * sets the lowest figures; a NaN (no 2xx answers) never settles.
 */
export function hasSettled(passes: readonly (readonly number[])[], settings: Pick<WarmSettings, 'minPasses' | 'patience' | 'tolerance'>): boolean {
  if (passes.length < settings.minPasses || passes.length <= settings.patience) return false;
  for (let k = passes.length - settings.patience; k < passes.length; k++) {
    const cheaper = passes[k].some((cpu, i) => {
      const lowest = Math.min(...passes.slice(0, k).map((pass) => pass[i]));
      return !(cpu >= lowest * (1 - settings.tolerance));
    });
    if (cheaper) return false;
  }
  return true;
}

export function describeWarm(report: WarmReport): string {
  const passes = report.cpu_us_per_request.map((pass) => pass.map((x) => x.toFixed(0)).join('/')).join(', ');
  return `${report.passes} passes, ${report.seconds.toFixed(0)} s, ${report.requests} requests, ${report.settled ? 'settled' : 'not settled (time up)'}; CPU µs/req pass by pass: ${passes}`;
}
