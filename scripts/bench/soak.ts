// The soak: does the gateway's memory stay flat under sustained traffic? For each
// provider plugin, and for a gated route whose cheap answer always fails its gate and
// escalates, a fresh `tiergate serve` (from dist/, with the deployment's node flags)
// takes `--requests` requests (half JSON, half streamed) from autocannon, in chunks. After
// each chunk, with nothing in flight, the gateway collects garbage and reports its heap
// and RSS (scripts/bench/soak-probe.mjs). The growth per 100,000 requests is the slope of
// a least-squares line through the samples after the warm-up; a phase passes when its heap
// grows by less than HEAP_FLAT_BYTES per 100,000 requests. Each phase's result is kept in
// docs/bench/soak-results.json as soon as it ends, replacing that phase's earlier one, and
// docs/bench/soak.md is written from all kept results; exits 1 when a phase run now fails
// (or answers anything but 2xx).
//
//   npm run soak [-- --quick] [-- --requests N] [-- --phase NAME]   (NAME: a phase's name, to run it alone)
//   npm run soak -- --report                                       (rewrite the page from the kept results)
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import type http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import autocannon from 'autocannon';
import { chatBody } from './policy.ts';
import { GATEWAY_NODE_FLAGS, freePort, killAll, pinSelf, startChild, waitReady, type Child } from './processes.ts';
import { createBedrockUpstream, createGeminiUpstream } from './cloud-upstreams.ts';
import { createUpstream } from './upstream.ts';

const root = path.resolve(import.meta.dirname, '../..');
const REPORT = path.join(root, 'docs/bench/soak.md');
const RESULTS = path.join(root, 'docs/bench/soak-results.json');
const SERVER_CPU = 0;
const CLIENT_CPU = 1;
const CONNECTIONS = 16;
/** A heap that grows by less than this per 100,000 requests after the warm-up is flat: the samples' noise is a few hundred kB. */
const HEAP_FLAT_BYTES = 1024 * 1024;

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const requestsArg = argv.indexOf('--requests');
/** Per phase: nine phases of 300,000 take about an hour on two quiet cores; --quick's 20,000, about five minutes. */
const REQUESTS = requestsArg >= 0 ? Number(argv[requestsArg + 1]) : quick ? 20_000 : 300_000;
/** Only rewrite docs/bench/soak.md from docs/bench/soak-results.json (after editing the page's text). */
const reportOnly = argv.includes('--report');
const phaseArg = argv.indexOf('--phase');
const ONLY = phaseArg >= 0 ? argv[phaseArg + 1] : null;
const SAMPLE_EVERY = Math.max(1000, Math.round(REQUESTS / 15));
/** A third: the feedback window alone fills over the first 10,000 requests (src/pipeline/feedback.ts), and JIT and pools settle. */
const WARM_UP = Math.round(REQUESTS / 3);
if (!Number.isInteger(REQUESTS) || REQUESTS < 10 * 1000) throw new Error('--requests: a whole number of at least 10000');

interface Phase {
  name: string;
  route: string;
  what: string;
}

const PHASES: Phase[] = [
  { name: 'openai_compatible', route: 'via_openai_compatible', what: 'the openai_compatible provider (node:http) to the OpenAI-format upstream' },
  { name: 'openai', route: 'via_openai', what: 'the openai provider (the official openai SDK) to the same upstream' },
  { name: 'anthropic', route: 'via_anthropic', what: 'the anthropic provider (the official @anthropic-ai/sdk) to the Anthropic-format upstream' },
  { name: 'gemini', route: 'via_gemini', what: 'the gemini provider (the official @google/genai) to the Gemini-format upstream' },
  {
    name: 'bedrock',
    route: 'via_bedrock',
    what: 'the bedrock provider (the official @aws-sdk/client-bedrock-runtime, Converse and ConverseStream over HTTP/2, SigV4-signed) to the Bedrock-format upstream',
  },
  {
    name: 'azure_openai',
    route: 'via_azure_openai',
    what: "the azure_openai provider (the official openai SDK's AzureOpenAI client) to the OpenAI-format upstream under /openai/deployments/…",
  },
  { name: 'simulator', route: 'via_simulator', what: 'the simulator provider, answering at once (time_scale 0)' },
  { name: 'replay', route: 'via_replay', what: 'the replay provider, answering from an inline recorded row' },
  {
    name: 'gated, escalating',
    route: 'gated',
    what: 'openai_compatible small → jsonata gate fails it → escalation to large, which passes: two upstream calls and two gate runs per request',
  },
];

const BODY = (route: string, stream: boolean) => chatBody(route, stream);
const PROMPT = JSON.parse(chatBody('x', false)) as { messages: Array<{ role: string; content: string }> };

export interface UpstreamPorts {
  /** OpenAI's and Anthropic's formats (scripts/bench/upstream.ts), Azure's paths included. */
  openai: number;
  gemini: number;
  bedrock: number;
}

export function policyYaml(ports: UpstreamPorts): string {
  const upstream = `http://127.0.0.1:${ports.openai}`;
  const row = {
    id: 'soak-1',
    prompt: PROMPT.messages,
    outcomes: { 'recorded-model': { score: 1, response: 'Your parcel is in transit.', input_tokens: 12, output_tokens: 6 } },
  };
  const route = (name: string, tier: string, extra = '') => [
    `  ${name}:`,
    '    router: { plugin: rules, rules: [] }',
    `    default: ${tier}`,
    ...(extra ? [extra] : []),
  ];
  return [
    '# Generated by scripts/bench/soak.ts (npm run soak): a soak policy, not an example.',
    'version: 1',
    'server: { host: 127.0.0.1 }',
    'providers:',
    `  compat: { plugin: openai_compatible, base_url: ${upstream}/v1 }`,
    `  sdk: { plugin: openai, base_url: ${upstream}/v1 }`,
    `  claude: { plugin: anthropic, base_url: ${upstream} }`,
    `  google: { plugin: gemini, base_url: "http://127.0.0.1:${ports.gemini}", api_key: soak-key }`,
    `  aws: { plugin: bedrock, region: us-east-1, endpoint: "http://127.0.0.1:${ports.bedrock}", access_key_id: AKIDSOAK, secret_access_key: soak-secret }`,
    `  azure: { plugin: azure_openai, endpoint: "${upstream}", api_key: soak-key }`,
    '  sim: { plugin: simulator, time_scale: 0, profiles: { sim-model: { capability: 0.95, first_token_ms: 1, tokens_per_second: 1000 } } }',
    `  recorded: { plugin: replay, rows: [${JSON.stringify(row)}] }`,
    'models:',
    '  small-model: { provider: compat, upstream: bench-small, price: { input_per_mtok: 0.15, output_per_mtok: 0.6 } }',
    '  large-model: { provider: compat, upstream: bench-large, price: { input_per_mtok: 2.5, output_per_mtok: 10 } }',
    '  sdk-model: { provider: sdk, upstream: bench-sdk, price: { input_per_mtok: 1, output_per_mtok: 2 } }',
    '  claude-model: { provider: claude, upstream: bench-claude, price: { input_per_mtok: 1, output_per_mtok: 5 } }',
    '  gemini-model: { provider: google, upstream: bench-gemini, price: { input_per_mtok: 1, output_per_mtok: 2 } }',
    '  bedrock-model: { provider: aws, upstream: bench.bedrock-v1, price: { input_per_mtok: 1, output_per_mtok: 2 } }',
    '  azure-model: { provider: azure, upstream: bench-deployment, price: { input_per_mtok: 1, output_per_mtok: 2 } }',
    '  sim-model: { provider: sim, upstream: sim-model, price: { input_per_mtok: 1, output_per_mtok: 2 } }',
    '  recorded-model: { provider: recorded, upstream: recorded-model, price: { input_per_mtok: 1, output_per_mtok: 2 } }',
    'tiers:',
    '  - { name: small, models: [small-model] }',
    '  - { name: large, models: [large-model] }',
    '  - { name: sdk, models: [sdk-model] }',
    '  - { name: claude, models: [claude-model] }',
    '  - { name: gemini, models: [gemini-model] }',
    '  - { name: bedrock, models: [bedrock-model] }',
    '  - { name: azure, models: [azure-model] }',
    '  - { name: sim, models: [sim-model] }',
    '  - { name: recorded, models: [recorded-model] }',
    'routes:',
    ...route('via_openai_compatible', 'small'),
    ...route('via_openai', 'sdk'),
    ...route('via_anthropic', 'claude'),
    ...route('via_gemini', 'gemini'),
    ...route('via_bedrock', 'bedrock'),
    ...route('via_azure_openai', 'azure'),
    ...route('via_simulator', 'sim'),
    ...route('via_replay', 'recorded'),
    ...route(
      'gated',
      'small',
      '    gate: { evaluators: [ { plugin: jsonata, expression: "model.name = \'large-model\'" } ], threshold: 0.5, max_escalations: 1 }',
    ),
    'analytics:',
    '  decision_log: { file: logs/decisions.jsonl }',
    '',
  ].join('\n');
}

interface Sample {
  requests: number;
  heap_used: number;
  rss: number;
}

/** One phase's measurement, as kept in docs/bench/soak-results.json. */
interface PhaseResult {
  phase: Phase;
  /** The commit measured, and when: phases may be run (and re-run) on their own with --phase. */
  commit: string;
  date: string;
  minutes: number;
  requests: number;
  warmUp: number;
  samples: Sample[];
  rps: number;
  non2xx: number;
  errors: number;
  heapSlope: number;
  rssSlope: number;
}

/** Least-squares slope of y over x. */
function slope(points: Array<[number, number]>): number {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** Asks the gateway for a sample (SIGUSR2) and waits for its line on stdout. */
async function sample(gateway: Child, seen: number): Promise<Omit<Sample, 'requests'>> {
  gateway.process.kill('SIGUSR2');
  const deadline = Date.now() + 30_000;
  for (;;) {
    const lines = gateway.stdout().match(/^soak-sample .*$/gm) ?? [];
    if (lines.length > seen) return JSON.parse(lines[lines.length - 1].slice('soak-sample '.length)) as Omit<Sample, 'requests'>;
    if (Date.now() > deadline) throw new Error(`${gateway.name}: no memory sample within 30 s:\n${gateway.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** `amount` requests, alternating JSON and streamed, over CONNECTIONS connections. */
function load(url: string, route: string, amount: number): Promise<{ rps: number; non2xx: number; errors: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let non2xx = 0;
    const instance = autocannon(
      {
        url: `${url}/v1/chat/completions`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        requests: [{ body: BODY(route, false) }, { body: BODY(route, true) }],
        connections: CONNECTIONS,
        amount,
        timeout: 10,
      },
      (err: unknown, result: autocannon.Result) => {
        if (err) return reject(err);
        resolve({ rps: result.requests.total / ((performance.now() - started) / 1000), non2xx, errors: result.errors });
      },
    );
    instance.on('response', (_client: unknown, statusCode: number) => {
      if (statusCode < 200 || statusCode >= 300) non2xx++;
    });
  });
}

async function runPhase(phase: Phase, policyFile: string, decisionLog: string): Promise<PhaseResult> {
  const port = await freePort();
  const gateway = startChild(
    `tiergate (${phase.name})`,
    [
      ...GATEWAY_NODE_FLAGS,
      '--expose-gc',
      '--import',
      path.join(import.meta.dirname, 'soak-probe.mjs'),
      path.join(root, 'bin/tiergate.js'),
      'serve',
      '-c',
      policyFile,
      '--port',
      String(port),
      '--no-watch',
    ],
    { cpu: SERVER_CPU, cwd: root, env: { TIERGATE_LOG_LEVEL: 'warn', TIERGATE_LOG_FORMAT: 'json' } },
  );
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitReady(gateway, `${url}/readyz`);
    const samples: Sample[] = [];
    let done = 0;
    let non2xx = 0;
    let errors = 0;
    let busyMs = 0;
    while (done < REQUESTS) {
      const amount = Math.min(SAMPLE_EVERY, REQUESTS - done);
      const started = performance.now();
      const result = await load(url, phase.route, amount);
      busyMs += performance.now() - started;
      done += amount;
      non2xx += result.non2xx;
      errors += result.errors;
      // The decision log is part of the path under test, but 300,000 lines of it need not stay on disk (O_APPEND writes on at the new end).
      truncateSync(decisionLog, 0);
      samples.push({ requests: done, ...(await sample(gateway, samples.length)) });
      const last = samples[samples.length - 1];
      log(`  ${phase.name}: ${done} requests, heap ${mb(last.heap_used)}, rss ${mb(last.rss)}, ${Math.round(result.rps)} req/s`);
    }
    const steady = samples.filter((s) => s.requests > WARM_UP);
    return {
      phase,
      commit: currentCommit(),
      date: new Date().toISOString().slice(0, 10),
      minutes: busyMs / 60_000,
      requests: done,
      warmUp: WARM_UP,
      samples,
      rps: done / (busyMs / 1000),
      non2xx,
      errors,
      heapSlope: slope(steady.map((s) => [s.requests, s.heap_used])) * 100_000,
      rssSlope: slope(steady.map((s) => [s.requests, s.rss])) * 100_000,
    };
  } finally {
    await gateway.stop();
  }
}

const mb = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(2)} MB`;
const signedMb = (bytes: number) => `${bytes >= 0 ? '+' : '−'}${(Math.abs(bytes) / (1024 * 1024)).toFixed(2)} MB`;
const log = (line: string) => process.stderr.write(`${line}\n`);

function passed(result: PhaseResult): boolean {
  return result.heapSlope < HEAP_FLAT_BYTES && result.non2xx === 0 && result.errors === 0;
}

function currentCommit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'src', 'plugins', 'bin'], { cwd: root, encoding: 'utf8' }).trim();
    return dirty === '' ? head : `${head} with uncommitted changes`;
  } catch {
    return 'unknown';
  }
}

/** The results kept from earlier runs, by phase name; a phase run now replaces its own. */
function readKept(): Map<string, PhaseResult> {
  if (!existsSync(RESULTS)) return new Map();
  const kept = JSON.parse(readFileSync(RESULTS, 'utf8')) as { phases: PhaseResult[] };
  return new Map(kept.phases.filter((r) => PHASES.some((p) => p.name === r.phase.name)).map((r) => [r.phase.name, r]));
}

function report(results: PhaseResult[]): string {
  const steadyFirst = (r: PhaseResult) => r.samples.find((s) => s.requests > r.warmUp) ?? r.samples[0];
  const rows = results.map((r) => {
    const first = steadyFirst(r);
    const last = r.samples[r.samples.length - 1];
    return `| ${r.phase.name} | ${r.requests.toLocaleString('en')} | ${Math.round(r.rps)} | ${r.non2xx + r.errors} | ${mb(first.heap_used)} → ${mb(last.heap_used)} | **${signedMb(r.heapSlope)}** | ${mb(first.rss)} → ${mb(last.rss)} | ${signedMb(r.rssSlope)} | ${passed(r) ? 'flat' : '**grows**'} |`;
  });
  const total = results.reduce((sum, r) => sum + r.requests, 0);
  const minutes = results.reduce((sum, r) => sum + r.minutes, 0);
  const runs = [...new Set(results.map((r) => `${r.commit} on ${r.date}`))];
  const series = results.map((r) => `- ${r.phase.name}: ${r.samples.map((s) => (s.heap_used / (1024 * 1024)).toFixed(2)).join(', ')}`);
  return `# Soak: memory under sustained traffic

\`npm run soak\` (scripts/bench/soak.ts; every figure below is in [soak-results.json](soak-results.json)), Node ${process.version}, ${os.cpus().length} shared cores;
${total.toLocaleString('en')} requests in ${minutes.toFixed(0)} minutes of load. Commit measured: ${runs.join('; ')}.

Each phase is a fresh \`tiergate serve\` (from \`dist/\`, with the deployment's node flags) taking its
requests, half JSON and half streamed, over ${CONNECTIONS} connections (autocannon), from in-process local
upstreams in each provider's wire format (scripts/bench/upstream.ts: OpenAI's, Azure's paths and
Anthropic's; scripts/bench/cloud-upstreams.ts: Gemini's, and Bedrock's over HTTP/2). Fifteen times a phase,
with nothing in flight, the gateway collects garbage twice (\`--expose-gc\`) and reports its heap and RSS.
Growth is the slope of a least-squares line through the samples after the first third of the phase's
requests (the warm-up: JIT, pools, caches), per 100,000 requests. A phase is **flat** when its heap grows by
less than ${mb(HEAP_FLAT_BYTES)} per 100,000 requests and every request got a 2xx. RSS is shown, not judged: it
follows the allocator and the GC's heap sizing more than what is live.

| phase | requests | req/s | failed | heap after warm-up → end | heap / 100k | RSS after warm-up → end | RSS / 100k | verdict |
|:--|--:|--:|--:|:--|--:|:--|--:|:--|
${rows.join('\n')}

What each phase sends through:
${results.map((r) => `- **${r.phase.name}**: ${r.phase.what}.`).join('\n')}

Heap after each sample (MB):
${series.join('\n')}

What the soak has found. Before it existed, the anthropic provider combined each call's signal with
one of its own lifetime (\`AbortSignal.any\`); on Node 20 the long-lived signal keeps a WeakRef per
combined signal and never drops it, about 1.7 MB per 30,000 calls (≈ 5.7 MB per 100,000). When the
gemini and bedrock providers joined, its first short run (10,000 requests) found gemini's heap growing
by about 2 kB a request (39.8 MB → 59.8 MB), the same pattern at a larger scale: they too combined
signals, and the combined signal, which the SDK's fetch leaves an \`abort\` listener on, is kept alive
with all it holds. All three now give each call a controller of its own and let go of it when the call
ends (\`CallSignals\`, src/plugin-contract/call-signals.ts); \`test/plugins/provider-signals.test.ts\`
counts the WeakRefs every provider's calls leave behind.
A small rise that is smallest in the fastest phases follows time, not requests: the dashboard keeps ten
minutes of 10-second buckets, each with a latency reservoir of up to 512 samples
(src/observe/dashboard-aggregator.ts), and a phase of a few minutes fills part of that window.
`;
}

async function main(): Promise<void> {
  if (reportOnly) {
    writeFileSync(REPORT, report(PHASES.flatMap((p) => readKept().get(p.name) ?? [])));
    return;
  }
  pinSelf(CLIENT_CPU);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'tiergate-soak-'));
  process.on('exit', () => {
    killAll();
    rmSync(tmp, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
  const upstream: http.Server = createUpstream();
  const upstreams: Array<http.Server | http2.Http2Server> = [upstream, createGeminiUpstream(), createBedrockUpstream()];
  const [openai, gemini, bedrock] = await Promise.all(
    upstreams.map(
      (server) =>
        new Promise<number>((resolve) => {
          server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
        }),
    ),
  );
  const policyFile = path.join(tmp, 'gateway.yaml');
  writeFileSync(policyFile, policyYaml({ openai, gemini, bedrock }));
  mkdirSync(path.join(tmp, 'logs'), { recursive: true });
  const decisionLog = path.join(tmp, 'logs', 'decisions.jsonl');
  writeFileSync(decisionLog, '');

  const kept = readKept();
  const ran: PhaseResult[] = [];
  for (const phase of PHASES.filter((p) => ONLY === null || p.name === ONLY)) {
    log(`== ${phase.name}: ${REQUESTS} requests`);
    const result = await runPhase(phase, policyFile, decisionLog);
    log(`   heap ${signedMb(result.heapSlope)} / 100k, rss ${signedMb(result.rssSlope)} / 100k, ${passed(result) ? 'flat' : 'GROWS or failed'}`);
    ran.push(result);
    // Kept after every phase, so a long soak that is stopped keeps what it measured.
    kept.set(phase.name, result);
    const results = PHASES.flatMap((p) => kept.get(p.name) ?? []);
    writeFileSync(RESULTS, `${JSON.stringify({ phases: results }, null, 1)}\n`);
    writeFileSync(REPORT, report(results));
  }
  for (const server of upstreams) server.close();
  upstream.closeAllConnections();
  log(`report: ${path.relative(process.cwd(), REPORT)}`);
  if (!ran.every(passed)) process.exitCode = 1;
}

if (import.meta.filename === process.argv[1]) await main();
