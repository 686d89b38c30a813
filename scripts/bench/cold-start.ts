// Cold start: from spawning `node bin/tiergate.js serve` on the shipped gateway.yaml to
// its first 200 on GET /readyz, then to the first 200 of a chat request (route
// `support`). Several runs per checkout, interleaved (A, B, A, B, …) so that a shared
// machine's drift falls on every checkout alike; reports the median and p90 of each.
// Node's own start (`node -e 0`, to exit) is measured in the same rounds as the floor.
//
//   node --import tsx scripts/bench/cold-start.ts [--root DIR]… [--runs 10] [--tsx-cache off] [--json]
//
// --root: a tiergate checkout, installed and (from the compiled build on) built; give it
// more than once to compare checkouts (default: this one). --tsx-cache off starts every
// run with an empty tsx cache, as a fresh container does (TSX_DISABLE_CACHE). The policy
// is each checkout's own gateway.yaml, copied to a temporary folder (its decision log
// goes there), with the simulator's delays off (SIMULATOR_TIME_SCALE=0) so that the
// first answer times the gateway, not a simulated model. The gateway gets the
// deployment's node flags (GATEWAY_NODE_FLAGS).
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { GATEWAY_NODE_FLAGS, cpuMicros, freePort } from './processes.ts';
import type { ColdStartResults, ColdStartTarget } from './results.ts';
import { median, quantile } from './stats.ts';

const POLL_INTERVAL_MS = 5;
const START_TIMEOUT_MS = 60_000;
const CHAT_BODY = JSON.stringify({ model: 'support', messages: [{ role: 'user', content: 'Where is my order? It was due on Monday.' }] });

export interface ColdStartSettings {
  roots: readonly string[];
  runs: number;
  tsxCache: boolean;
  log?: (line: string) => void;
}

interface Run {
  ready_ms: number;
  first_chat_ms: number;
  ready_cpu_ms: number;
}

function request(port: number, method: 'GET' | 'POST', pathname: string, body?: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: pathname, agent: false, headers: body ? { 'content-type': 'application/json' } : {} },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', () => resolve(0));
      },
    );
    req.on('error', () => resolve(0));
    req.setTimeout(10_000, () => req.destroy());
    req.end(body);
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One start of one checkout: spawn, poll /readyz to its first 200, send one chat request, stop. */
async function startOnce(root: string, tsxCache: boolean): Promise<Run> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'tiergate-cold-start-'));
  const policy = path.join(folder, 'gateway.yaml');
  copyFileSync(path.join(root, 'gateway.yaml'), policy);
  const port = await freePort();
  const env = {
    ...process.env,
    SIMULATOR_TIME_SCALE: '0',
    TIERGATE_LOG_LEVEL: 'warn',
    TIERGATE_LOG_FORMAT: 'json',
    ...(tsxCache ? {} : { TSX_DISABLE_CACHE: '1' }),
  };
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [...GATEWAY_NODE_FLAGS, path.join(root, 'bin/tiergate.js'), 'serve', '--config', policy, '--port', String(port), '--host', '127.0.0.1'],
    {
      cwd: folder,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr.on('data', (data: Buffer) => (stderr = (stderr + data.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    let ready_ms = Number.NaN;
    while (Number.isNaN(ready_ms)) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`tiergate in ${root} exited before it was ready:\n${stderr}`);
      if (performance.now() - started > START_TIMEOUT_MS) throw new Error(`tiergate in ${root} was not ready after ${START_TIMEOUT_MS} ms:\n${stderr}`);
      if ((await request(port, 'GET', '/readyz')) === 200) ready_ms = performance.now() - started;
      else await sleep(POLL_INTERVAL_MS);
    }
    // The CPU the process used to get there (all its threads), which a busy machine's
    // other load stretches far less than the wall-clock time.
    const ready_cpu_ms = child.pid === undefined ? Number.NaN : cpuMicros(child.pid) / 1000;
    const status = await request(port, 'POST', '/v1/chat/completions', CHAT_BODY);
    if (status !== 200) throw new Error(`tiergate in ${root}: the first chat request answered HTTP ${status}:\n${stderr}`);
    return { ready_ms, first_chat_ms: performance.now() - started, ready_cpu_ms };
  } finally {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    rmSync(folder, { recursive: true, force: true });
  }
}

/** Node's own start and exit: the floor under any cold start on this machine. */
async function nodeAlone(): Promise<number> {
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', () => resolve());
  });
  return performance.now() - started;
}

function summarise(label: string, root: string, runs: readonly Run[]): ColdStartTarget {
  const ready = runs.map((r) => r.ready_ms);
  const chat = runs.map((r) => r.first_chat_ms);
  const cpu = runs.map((r) => r.ready_cpu_ms);
  return {
    label,
    root,
    ready_ms: ready,
    first_chat_ms: chat,
    ready_cpu_ms: cpu,
    ready_cpu_p50_ms: median(cpu),
    ready_p50_ms: median(ready),
    ready_p90_ms: quantile(ready, 0.9),
    first_chat_p50_ms: median(chat),
    first_chat_p90_ms: quantile(chat, 0.9),
  };
}

function displayRoot(root: string): string {
  return path.relative(process.cwd(), root) || '.';
}

export async function measureColdStart(settings: ColdStartSettings): Promise<ColdStartResults> {
  const log = settings.log ?? (() => undefined);
  const runs = settings.roots.map(() => [] as Run[]);
  const floor: number[] = [];
  const loadAverage = os.loadavg().map((x) => Math.round(x * 100) / 100);
  // One unmeasured start of each checkout first: the OS's file cache (and, unless it is
  // off, tsx's) then holds what a restart on a running machine finds there.
  for (const root of settings.roots) await startOnce(root, settings.tsxCache);
  for (let round = 1; round <= settings.runs; round++) {
    floor.push(await nodeAlone());
    for (const [i, root] of settings.roots.entries()) {
      const run = await startOnce(root, settings.tsxCache);
      runs[i].push(run);
      log(
        `cold start  round ${round}  ${displayRoot(root).padEnd(24)} ready ${run.ready_ms.toFixed(0).padStart(5)} ms  first chat ${run.first_chat_ms.toFixed(0).padStart(5)} ms  CPU to ready ${run.ready_cpu_ms.toFixed(0).padStart(5)} ms`,
      );
    }
  }
  return {
    runs: settings.runs,
    tsx_cache: settings.tsxCache,
    node_flags: [...GATEWAY_NODE_FLAGS],
    load_average_at_start: loadAverage,
    node_alone_ms: floor,
    node_alone_p50_ms: median(floor),
    targets: settings.roots.map((root, i) => summarise(displayRoot(root), root, runs[i])),
  };
}

export const COLD_START_HEAD = ['', 'ready p50 ms', 'ready p90 ms', 'first chat p50 ms', 'first chat p90 ms', 'CPU to ready p50 ms'];

export function coldStartTable(results: ColdStartResults): string[][] {
  return [
    ['node alone (`node -e 0`, start to exit)', '–', '–', results.node_alone_p50_ms.toFixed(0), '–', '–'],
    ...results.targets.map((t) => [
      t.label,
      t.ready_p50_ms.toFixed(0),
      t.ready_p90_ms.toFixed(0),
      t.first_chat_p50_ms.toFixed(0),
      t.first_chat_p90_ms.toFixed(0),
      t.ready_cpu_p50_ms.toFixed(0),
    ]),
  ];
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const repo = path.resolve(import.meta.dirname, '../..');
  const { values: flags } = parseArgs({
    options: {
      root: { type: 'string', multiple: true },
      runs: { type: 'string', default: '10' },
      'tsx-cache': { type: 'string', default: 'on' },
      json: { type: 'boolean', default: false },
    },
  });
  const roots = (flags.root?.length ? flags.root : [repo]).map((root) => path.resolve(root));
  const runs = Number(flags.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, not ${flags.runs}`);
  if (flags['tsx-cache'] !== 'on' && flags['tsx-cache'] !== 'off') throw new Error(`--tsx-cache is on or off, not ${flags['tsx-cache']}`);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const results = await measureColdStart({ roots, runs, tsxCache: flags['tsx-cache'] === 'on', log });
  if (flags.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else {
    const head = COLD_START_HEAD;
    const rows = [head, ...coldStartTable(results)];
    const widths = head.map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    for (const row of rows) process.stdout.write(`${row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ')}\n`);
    process.stdout.write(
      `${runs} runs each, interleaved; tsx cache ${results.tsx_cache ? 'on' : 'off'}; load average at start ${results.load_average_at_start.join(', ')}\n`,
    );
  }
}
