// npm run bench [-- --quick] [--out DIR] [--no-profile] [--keep-profile] [--render-only] [--cold-start-runs N]
//
// --render-only rewrites DIR/report.md from DIR/results.json (and DIR/profile-findings.md,
// the hand-written profile findings the report includes) without measuring.
//
// The gateway against a do-nothing pass-through proxy and against the upstream called
// directly, in one run (docs/DESIGN §8): JSON and SSE, 1 and 50 connections, each
// figure the median of interleaved rounds (direct, proxy, tiergate, direct, …). Then
// time to first streamed byte, scale (rules, routes), the routing decision in-process,
// a CPU profile of tiergate under the 50-connection JSON load, and the cold start
// (scripts/bench/cold-start.ts: process start to the first 200). Writes DIR/report.md
// and DIR/results.json. A script with a report, not a test.
//
// Placement on a 2-core machine: the server under test (upstream when called directly,
// proxy, or tiergate) runs alone on CPU 0; the load generator (this process) and the
// upstream behind the proxy or tiergate share CPU 1.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { DecisionTiming } from './decision.ts';
import { measureTtfb, runLoad, type LoadResult } from './load.ts';
import { BASE_SHAPE, chatBody, routeName, writePolicy, type PolicyShape } from './policy.ts';
import { CPU_COUNT, GATEWAY_NODE_FLAGS, HAS_TASKSET, freePort, killAll, pinSelf, startChild, stopAll, waitReady, type Child } from './processes.ts';
import { summariseProfile } from './profile.ts';
import { renderReport } from './report.ts';
import { describeWarm, warmUntilSettled, type WarmCell, type WarmReport, type WarmSettings } from './warm.ts';
import {
  DISTURBED_CORES,
  TARGETS,
  leastDisturbed,
  medianOf,
  mediansOver,
  setDisturbance,
  type Disturbable,
  type BenchResults,
  type LoadCell,
  type Mode,
  type Piece,
  type ScaleRow,
  type TargetName,
  type TtfbCell,
} from './results.ts';

const root = path.resolve(import.meta.dirname, '../..');
const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: path.join(root, 'docs/bench') },
    'no-profile': { type: 'boolean', default: false },
    'keep-profile': { type: 'boolean', default: false },
    'render-only': { type: 'boolean', default: false },
    'cold-start-runs': { type: 'string' },
  },
});
const quick = flags.quick === true;
const settings = quick
  ? {
      duration: 1,
      scaleDuration: 1,
      rounds: 3,
      extraRounds: 3,
      warm: 0.5,
      ttfbRequests: 200,
      decisionBudgetMs: 300,
      profileS: 2,
      pieceCalls: 1000,
      coldStartRuns: 5,
    }
  : {
      duration: 2.5,
      scaleDuration: 2,
      rounds: 3,
      extraRounds: 3,
      warm: 0.5,
      ttfbRequests: 500,
      decisionBudgetMs: 1000,
      profileS: 5,
      pieceCalls: 2000,
      coldStartRuns: 10,
    };
if (flags['cold-start-runs'] !== undefined) settings.coldStartRuns = Number(flags['cold-start-runs']);
if (!Number.isInteger(settings.coldStartRuns) || settings.coldStartRuns < 1)
  throw new Error(`--cold-start-runs must be a positive integer, not ${flags['cold-start-runs']}`);
/** Every target's warm-up in the cells it is measured in (scripts/bench/warm.ts); the same for all three. */
const targetWarm: WarmSettings = quick
  ? { stepSeconds: 0.5, minPasses: 2, patience: 1, maxSeconds: 12, tolerance: 0.05 }
  : { stepSeconds: 1, minPasses: 3, patience: 2, maxSeconds: 45, tolerance: 0.05 };
/** A gateway or echo server measured in one cell only (scale, the HTTP layer, the profile). */
const oneCellWarm: WarmSettings = quick
  ? { stepSeconds: 0.5, minPasses: 2, patience: 1, maxSeconds: 4, tolerance: 0.05 }
  : { stepSeconds: 1, minPasses: 4, patience: 2, maxSeconds: 15, tolerance: 0.05 };
const SERVER_CPU = 0;
const CLIENT_CPU = 1;
const TSX = ['--import', 'tsx'];
const GATEWAY_ENV = { TIERGATE_LOG_LEVEL: 'warn', TIERGATE_LOG_FORMAT: 'json' };
const CHAT_PATH = '/v1/chat/completions';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tiergate-bench-'));
const cleanUp = () => {
  killAll();
  rmSync(tmp, { recursive: true, force: true });
};
process.on('exit', cleanUp);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    process.stderr.write(`\n${signal}: stopping every child process\n`);
    process.exit(130);
  });
}

const log = (line: string) => process.stderr.write(`${line}\n`);
const wallStart = performance.now();
const phase = (name: string) => log(`== ${name} (at ${((performance.now() - wallStart) / 1000).toFixed(0)} s)`);

interface Server {
  child: Child;
  url: string;
}

async function startScript(name: string, script: string, args: string[], cpu: number): Promise<Server & { port: number }> {
  const port = await freePort();
  const child = startChild(name, [...TSX, path.join(import.meta.dirname, script), String(port), ...args], { cpu, cwd: root });
  const url = `http://127.0.0.1:${port}`;
  await waitReady(child, url);
  return { child, url, port };
}

async function startGateway(shape: PolicyShape, upstreamPort: number, nodeArgs: string[] = []): Promise<Server> {
  const file = writePolicy(tmp, shape, upstreamPort);
  const port = await freePort();
  const child = startChild(
    `tiergate (${shape.rules} rules, ${shape.routes} routes)`,
    [...GATEWAY_NODE_FLAGS, ...nodeArgs, path.join(root, 'bin/tiergate.js'), 'serve', '-c', file, '--port', String(port), '--host', '127.0.0.1', '--no-watch'],
    {
      cpu: SERVER_CPU,
      cwd: root,
      env: GATEWAY_ENV,
    },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitReady(child, `${url}/readyz`);
  return { child, url };
}

/** One request, to fail fast when a target does not answer as expected. */
function probe(url: string, body: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`${url}: no answer`)));
    req.end(body);
  });
}

async function checkTarget(name: string, server: Server, body: string, stream: boolean, expectTier?: string): Promise<void> {
  const reply = await probe(server.url + CHAT_PATH, body);
  const ok = reply.status === 200 && (stream ? reply.text.includes('data: [DONE]') : reply.text.includes('"chat.completion"'));
  if (!ok) throw new Error(`${name} answered HTTP ${reply.status}: ${reply.text.slice(0, 300)}`);
  if (expectTier && reply.headers['x-tiergate-tier'] !== expectTier)
    throw new Error(`${name} routed to tier ${String(reply.headers['x-tiergate-tier'])}, not ${expectTier}`);
}

function describeLoad(r: LoadResult): string {
  return `${r.rps.toFixed(0).padStart(6)} req/s  p50 ${r.p50_ms.toFixed(3)} ms  p99 ${r.p99_ms.toFixed(3)} ms  cpu ${r.cpu_us_per_request.toFixed(0)} µs/req (${(r.cpu_utilisation * 100).toFixed(0)} %)  rss ${r.rss_max_mb.toFixed(0)} MB  others ${r.foreign_cpu.toFixed(2)} cores${r.errors || r.non2xx ? `  errors ${r.errors} non-2xx ${r.non2xx}` : ''}`;
}

/**
 * Interleaved round sets (direct, proxy, tiergate, direct, …) until `settings.rounds`
 * of them ran on a quiet machine (at most DISTURBED_CORES of other load and steal), or
 * `settings.extraRounds` more than that were run; the medians are then of the
 * `settings.rounds` least disturbed sets. Every set stays in the results.
 */
async function roundSets<R extends Disturbable>(
  label: string,
  measure: (target: TargetName, round: number) => Promise<R>,
): Promise<{ rounds: Record<TargetName, R[]>; used: number[] }> {
  const rounds = { direct: [], proxy: [], tiergate: [] } as Record<TargetName, R[]>;
  let quiet = 0;
  for (let set = 0; quiet < settings.rounds && set < settings.rounds + settings.extraRounds; set++) {
    for (const target of TARGETS) rounds[target].push(await measure(target, set + 1));
    const disturbance = setDisturbance(rounds, set);
    if (disturbance <= DISTURBED_CORES) quiet++;
    else
      log(
        `${label}  round ${set + 1} disturbed (${disturbance.toFixed(2)} cores of other load and steal): ${quiet < settings.rounds && set + 1 < settings.rounds + settings.extraRounds ? 'one more round' : 'no rounds left'}`,
      );
  }
  return { rounds, used: leastDisturbed(rounds, settings.rounds) };
}

async function main(): Promise<void> {
  const pinned = HAS_TASKSET && CPU_COUNT >= 2 && pinSelf(CLIENT_CPU);
  log(
    `tiergate bench${quick ? ' (quick)' : ''}: ${settings.rounds} rounds of ${settings.duration} s; ${pinned ? `servers on CPU ${SERVER_CPU}, load generator on CPU ${CLIENT_CPU}` : 'not pinned (no taskset or a single CPU)'}`,
  );
  const loadAverage = os.loadavg().map((x) => Math.round(x * 100) / 100);

  // The upstream twice: alone on the server CPU when it is the server under test, and
  // on the client CPU behind the proxy and tiergate.
  const [direct, behind] = await Promise.all([
    startScript('upstream (direct)', 'upstream.ts', [], SERVER_CPU),
    startScript('upstream (behind)', 'upstream.ts', [], CLIENT_CPU),
  ]);
  const proxy = await startScript('pass-through proxy', 'proxy.ts', [String(behind.port)], SERVER_CPU);
  const gateway = await startGateway(BASE_SHAPE, behind.port);
  const servers: Record<TargetName, Server> = { direct, proxy, tiergate: gateway };
  const bodies = { json: chatBody(routeName(BASE_SHAPE), false), sse: chatBody(routeName(BASE_SHAPE), true) };
  for (const target of TARGETS) {
    await checkTarget(target, servers[target], bodies.json, false, target === 'tiergate' ? 'small' : undefined);
    await checkTarget(target, servers[target], bodies.sse, true, target === 'tiergate' ? 'small' : undefined);
  }

  phase('warm-up');
  // Every target warmed alike, in the four cells it is measured in, until its CPU per
  // request has settled (scripts/bench/warm.ts): a fresh tiergate's JIT goes on
  // compiling for tens of seconds, and again whenever it meets a cell it has not seen.
  const cells: WarmCell[] = (['json', 'sse'] as Mode[]).flatMap((mode) =>
    [1, 50].map((connections) => ({ label: `${mode} ${connections}`, body: bodies[mode], connections })),
  );
  const warmed = {} as Record<TargetName, WarmReport>;
  for (const target of TARGETS) {
    warmed[target] = await warmUntilSettled(servers[target].url + CHAT_PATH, servers[target].child.pid, cells, targetWarm);
    log(`warm  ${target.padEnd(8)} ${describeWarm(warmed[target])}`);
  }
  const warmOne = (server: Server, body: string) =>
    warmUntilSettled(server.url + CHAT_PATH, server.child.pid, [{ label: 'json 50', body, connections: 50 }], oneCellWarm);

  phase('throughput and latency');
  // Throughput and latency: interleaved rounds.
  const load: LoadCell[] = [];
  for (const mode of ['json', 'sse'] as Mode[]) {
    for (const connections of [1, 50]) {
      for (const target of TARGETS)
        await runLoad({
          url: servers[target].url + CHAT_PATH,
          body: bodies[mode],
          connections,
          durationSeconds: settings.warm,
          serverPid: servers[target].child.pid,
        });
      const { rounds, used } = await roundSets(`${mode.padEnd(4)} ${String(connections).padStart(2)} conn`, async (target, round) => {
        const result = await runLoad({
          url: servers[target].url + CHAT_PATH,
          body: bodies[mode],
          connections,
          durationSeconds: settings.duration,
          serverPid: servers[target].child.pid,
        });
        log(
          `${mode.padEnd(4)} ${String(connections).padStart(2)} conn  round ${round}  ${target.padEnd(8)} ${describeLoad(result)}  stolen ${result.stolen_cpu.toFixed(2)}`,
        );
        return result;
      });
      load.push({ mode, connections, rounds, used, median: mediansOver(rounds, used) });
    }
  }

  phase('time to first streamed byte');
  // Time to first streamed byte, one connection, sequential requests.
  for (const target of TARGETS) await measureTtfb(servers[target].url + CHAT_PATH, bodies.sse, 100);
  const ttfbSets = await roundSets('ttfb', async (target, round) => {
    const result = await measureTtfb(servers[target].url + CHAT_PATH, bodies.sse, settings.ttfbRequests);
    log(
      `ttfb         round ${round}  ${target.padEnd(8)} first byte p50 ${result.ttfb_p50_ms.toFixed(3)} ms  p99 ${result.ttfb_p99_ms.toFixed(3)} ms  whole ${result.total_p50_ms.toFixed(3)} ms  others ${result.foreign_cpu.toFixed(2)}  stolen ${result.stolen_cpu.toFixed(2)}`,
    );
    return result;
  });
  const ttfb: TtfbCell = { ...ttfbSets, median: mediansOver(ttfbSets.rounds, ttfbSets.used) };
  await direct.child.stop();

  phase('scale');
  // Scale: 50 connections, JSON, interleaved with the proxy as reference.
  const shapes: Array<{ label: string; shape: PolicyShape }> = [
    { label: '100 rules, 1 route', shape: { ...BASE_SHAPE, rules: 100 } },
    { label: '1,000 rules, 1 route', shape: { ...BASE_SHAPE, rules: 1000 } },
    { label: '10 rules, 10 routes', shape: { ...BASE_SHAPE, routes: 10 } },
    { label: '10 rules, 100 routes', shape: { ...BASE_SHAPE, routes: 100 } },
    { label: '10 rules, 1 route, decision log off', shape: { ...BASE_SHAPE, decisionLog: false } },
    { label: '10 rules, 1 route, openai provider (the official SDK)', shape: { ...BASE_SHAPE, provider: 'openai' } },
  ];
  const scaleGateways = await Promise.all(shapes.map(({ shape }) => startGateway(shape, behind.port)));
  const scaleTargets: Array<{ label: string; rules: number | null; routes: number | null; server: Server; body: string }> = [
    { label: 'pass-through proxy', rules: null, routes: null, server: proxy, body: bodies.json },
    { label: 'tiergate: 10 rules, 1 route (as above)', rules: 10, routes: 1, server: gateway, body: bodies.json },
    ...shapes.map(({ label, shape }, i) => ({
      label: `tiergate: ${label}`,
      rules: shape.rules,
      routes: shape.routes,
      server: scaleGateways[i],
      body: chatBody(routeName(shape), false),
    })),
    { label: 'tiergate: a model by name (no routing)', rules: null, routes: null, server: gateway, body: chatBody('small-model', false) },
  ];
  for (const [i, target] of scaleTargets.entries()) await checkTarget(target.label, target.server, target.body, false, i > 0 ? 'small' : undefined);
  const scaleRounds = scaleTargets.map(() => [] as LoadResult[]);
  const scaleWarmed: Array<WarmReport | null> = [];
  for (const [i, target] of scaleTargets.entries()) {
    // The proxy and the first gateway are warm already; the named-model row is that
    // gateway, on a path (no routing) its warm-up did not take.
    const fresh = i >= 2;
    scaleWarmed.push(fresh ? await warmOne(target.server, target.body) : null);
    if (fresh) log(`warm  ${target.label.padEnd(48)} ${describeWarm(scaleWarmed.at(-1) as WarmReport)}`);
  }
  for (let round = 1; round <= settings.rounds; round++) {
    for (const [i, target] of scaleTargets.entries()) {
      const result = await runLoad({
        url: target.server.url + CHAT_PATH,
        body: target.body,
        connections: 50,
        durationSeconds: settings.scaleDuration,
        serverPid: target.server.child.pid,
      });
      scaleRounds[i].push(result);
      log(`scale  round ${round}  ${target.label.padEnd(48)} ${describeLoad(result)}`);
    }
  }
  const scale: ScaleRow[] = scaleTargets.map((t, i) => ({
    label: t.label,
    rules: t.rules,
    routes: t.routes,
    rounds: scaleRounds[i],
    median: medianOf(scaleRounds[i]),
    warm: scaleWarmed[i],
  }));
  await Promise.all(scaleGateways.map((g) => g.child.stop()));

  phase('HTTP layer alone');
  // The HTTP layer alone (no upstream): node:http against express as tiergate uses it.
  const echoes = await Promise.all((['http', 'express'] as const).map((kind) => startScript(`echo (${kind})`, 'echo.ts', [kind], SERVER_CPU)));
  const layerLabels = [
    'node:http: parse the JSON body, answer a fixed completion',
    'express + express.json + res.json, as src/faces/server.ts and src/faces/openai-chat/handler.ts use them',
  ];
  const layerRounds = echoes.map(() => [] as LoadResult[]);
  const layerWarmed: WarmReport[] = [];
  for (const echo of echoes) layerWarmed.push(await warmOne(echo, bodies.json));
  for (let round = 1; round <= settings.rounds; round++) {
    for (const [i, echo] of echoes.entries()) {
      const result = await runLoad({
        url: echo.url + CHAT_PATH,
        body: bodies.json,
        connections: 50,
        durationSeconds: settings.scaleDuration,
        serverPid: echo.child.pid,
      });
      layerRounds[i].push(result);
      log(`layer  round ${round}  ${layerLabels[i].slice(0, 48).padEnd(48)} ${describeLoad(result)}`);
    }
  }
  const layers: ScaleRow[] = echoes.map((_, i) => ({
    label: layerLabels[i],
    rules: null,
    routes: null,
    rounds: layerRounds[i],
    median: medianOf(layerRounds[i]),
    warm: layerWarmed[i],
  }));
  await Promise.all(echoes.map((e) => e.child.stop()));

  phase('pieces');
  // Pieces of the request path, in a process of their own on the server CPU.
  const piecesChild = startChild(
    'pieces',
    [
      ...TSX,
      path.join(import.meta.dirname, 'pieces.ts'),
      writePolicy(tmp, BASE_SHAPE, behind.port),
      writePolicy(tmp, { ...BASE_SHAPE, provider: 'openai' }, behind.port),
      String(behind.port),
      String(settings.pieceCalls),
    ],
    { cpu: SERVER_CPU, cwd: root },
  );
  const piecesExit = await piecesChild.exited();
  if (piecesExit !== 0) throw new Error(`scripts/bench/pieces.ts failed (exit ${piecesExit}):\n${piecesChild.stderr()}`);
  const pieces = JSON.parse(piecesChild.stdout().trim().split('\n').pop() as string) as Piece[];
  for (const piece of pieces) log(`piece  ${piece.name.padEnd(80)} ${piece.cpu_us_per_call.toFixed(2)} µs CPU/call`);

  phase('routing decision in-process');
  // The routing decision in-process (nothing else is under load now). Imported here, so
  // that --render-only needs none of the gateway's code.
  const { measureDecision } = await import('./decision.ts');
  const decisions: DecisionTiming[] = [];
  for (const shape of [
    BASE_SHAPE,
    { ...BASE_SHAPE, rules: 100 },
    { ...BASE_SHAPE, rules: 1000 },
    { ...BASE_SHAPE, routes: 10 },
    { ...BASE_SHAPE, routes: 100 },
  ]) {
    const timing = await measureDecision(writePolicy(tmp, shape, behind.port), shape, settings.decisionBudgetMs);
    decisions.push(timing);
    log(
      `decision  ${String(shape.rules).padStart(4)} rules ${String(shape.routes).padStart(3)} routes  p50 ${timing.p50_us.toFixed(1)} µs  p99 ${timing.p99_us.toFixed(1)} µs  router alone p50 ${timing.router_p50_us.toFixed(1)} µs  (${timing.calls} calls)`,
    );
  }

  phase('profile');
  // A CPU profile of tiergate under the 50-connection JSON load.
  let profile: BenchResults['profile'] = null;
  if (!flags['no-profile']) {
    await gateway.child.stop();
    const profileDir = path.join(tmp, 'profile');
    mkdirSync(profileDir, { recursive: true });
    const profiled = await startGateway(BASE_SHAPE, behind.port, ['--cpu-prof', '--cpu-prof-interval', '250', '--cpu-prof-dir', profileDir]);
    const profileWarmed = await warmOne(profiled, bodies.json);
    log(`warm  profiled gateway ${describeWarm(profileWarmed)}`);
    const loadStart = performance.now();
    const result = await runLoad({
      url: profiled.url + CHAT_PATH,
      body: bodies.json,
      connections: 50,
      durationSeconds: settings.profileS,
      serverPid: profiled.child.pid,
    });
    const loadEnd = performance.now();
    await profiled.child.stop();
    const exited = performance.now();
    log(`profile  50 conn json (under --cpu-prof)  ${describeLoad(result)}`);
    const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error('the profiled gateway wrote no .cpuprofile');
    // The load window, as offsets back from the profile's end (≈ when the child exited).
    const summary = summariseProfile(path.join(profileDir, file), root, { fromEndUs: (exited - loadStart) * 1000, toEndUs: (exited - loadEnd) * 1000 }, 25);
    let kept = path.join(profileDir, file);
    if (flags['keep-profile']) {
      kept = path.join(flags.out as string, 'tiergate-50c-json.cpuprofile');
      mkdirSync(flags.out as string, { recursive: true });
      copyFileSync(path.join(profileDir, file), kept);
    }
    profile = { ...summary, load: result, file: flags['keep-profile'] ? path.relative(root, kept) : '(not kept; --keep-profile keeps it)' };
  }
  await stopAll();

  phase('cold start');
  // Last, with every other process of the benchmark stopped: process start to the first
  // 200 on /readyz and on a chat request, of this checkout (the shipped gateway.yaml).
  // Imported here, like the decision timing.
  const { measureColdStart } = await import('./cold-start.ts');
  const coldStart = await measureColdStart({ roots: [root], runs: settings.coldStartRuns, tsxCache: true, log });

  const results: BenchResults = {
    meta: {
      date: new Date().toISOString(),
      commit: gitText(['rev-parse', '--short', 'HEAD']),
      dirty: gitText(['status', '--porcelain']) !== '',
      node: process.version,
      autocannon: (JSON.parse(readFileSync(path.join(root, 'node_modules/autocannon/package.json'), 'utf8')) as { version: string }).version,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cpus: CPU_COUNT,
      pinned,
      placement: pinned
        ? `server under test alone on CPU ${SERVER_CPU}; load generator and the upstream behind proxy/tiergate on CPU ${CLIENT_CPU}`
        : 'not pinned',
      load_average_at_start: loadAverage,
      quick,
      duration_s: settings.duration,
      scale_duration_s: settings.scaleDuration,
      warm: { targets: targetWarm, one_cell: oneCellWarm, cells: cells.map((c) => c.label), warmed },
      rounds: settings.rounds,
      extra_rounds: settings.extraRounds,
      ttfb_requests: settings.ttfbRequests,
      wall_s: Math.round((performance.now() - wallStart) / 1000),
    },
    load,
    ttfb,
    scale,
    decisions,
    layers,
    pieces,
    profile,
    cold_start: coldStart,
    targets: [],
  };
  results.targets = checkTargets(results);
  const out = flags.out as string;
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  writeReport(results, out);
}

function writeReport(results: BenchResults, out: string): void {
  let findings: string | null = null;
  try {
    findings = readFileSync(path.join(out, 'profile-findings.md'), 'utf8');
  } catch {
    findings = null;
  }
  writeFileSync(path.join(out, 'report.md'), renderReport(results, findings));
  log(`\nwrote ${path.relative(process.cwd(), path.join(out, 'report.md'))} and results.json (measured in ${results.meta.wall_s} s)`);
  for (const t of results.targets) log(`  ${t.pass ? 'PASS' : 'FAIL'}  ${t.name}: ${t.measured} (target ${t.target})`);
}

function gitText(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

export function checkTargets(r: BenchResults): BenchResults['targets'] {
  const cell = (mode: Mode, connections: number) => r.load.find((c) => c.mode === mode && c.connections === connections)!.median;
  const checks: BenchResults['targets'] = [];
  for (const mode of ['json', 'sse'] as Mode[]) {
    const m = cell(mode, 50);
    const ratio = m.tiergate.rps / m.proxy.rps;
    checks.push({
      name: `throughput at 50 connections, ${mode.toUpperCase()}`,
      target: '≥ 0.35× pass-through proxy',
      measured: `${ratio.toFixed(2)}× (${m.tiergate.rps.toFixed(0)} vs ${m.proxy.rps.toFixed(0)} req/s)`,
      pass: ratio >= 0.35,
    });
  }
  for (const mode of ['json', 'sse'] as Mode[]) {
    const m = cell(mode, 1);
    const added = m.tiergate.p50_ms - m.direct.p50_ms;
    checks.push({
      name: `added p50 latency at 1 connection, ${mode.toUpperCase()}`,
      target: '≤ 0.5 ms over direct',
      measured: `+${added.toFixed(3)} ms (${m.tiergate.p50_ms.toFixed(3)} vs ${m.direct.p50_ms.toFixed(3)} ms)`,
      pass: added <= 0.5,
    });
  }
  const t = r.ttfb.median;
  const addedTtfb = t.tiergate.ttfb_p50_ms - t.direct.ttfb_p50_ms;
  checks.push({
    name: 'added time to first streamed byte (p50, 1 connection)',
    target: '≤ 1 ms over direct',
    measured: `+${addedTtfb.toFixed(3)} ms (${t.tiergate.ttfb_p50_ms.toFixed(3)} vs ${t.direct.ttfb_p50_ms.toFixed(3)} ms)`,
    pass: addedTtfb <= 1,
  });
  const rss = Math.max(...r.load.flatMap((c) => c.rounds.tiergate.map((x) => x.rss_max_mb)));
  checks.push({ name: 'RSS of tiergate under load (largest seen)', target: '≤ 200 MB', measured: `${rss.toFixed(0)} MB`, pass: rss <= 200 });
  const decision = r.decisions.find((d) => d.rules === 10 && d.routes === 1)!;
  checks.push({
    name: 'routing decision, 10 JSONata rules (p50, in-process)',
    target: '≤ 20 µs',
    measured: `${decision.p50_us.toFixed(1)} µs (rules router alone ${decision.router_p50_us.toFixed(1)} µs)`,
    pass: decision.p50_us <= 20,
  });
  return checks;
}

const job = flags['render-only']
  ? async () => writeReport(JSON.parse(readFileSync(path.join(flags.out as string, 'results.json'), 'utf8')) as BenchResults, flags.out as string)
  : main;
job().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    // The exit handler ends every child process still running.
    process.exit(1);
  },
);
