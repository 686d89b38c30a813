// docs/bench/report.md from the results: targets first, then every figure with its
// ratio to the pass-through proxy.
import { COLD_START_HEAD, coldStartTable } from './cold-start.ts';
import type { LoadResult } from './load.ts';
import type { SelfTime } from './profile.ts';
import type { WarmReport } from './warm.ts';
import { DISTURBED_CORES, TARGETS, setDisturbance, type BenchResults, type Disturbable, type TargetName } from './results.ts';

const LABEL: Record<TargetName, string> = { direct: 'upstream, direct', proxy: 'pass-through proxy', tiergate: 'tiergate' };

const num = (x: number, digits = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '–');
const ms = (x: number) => num(x, 3);
const ratio = (x: number, reference: number) => (Number.isFinite(x) && Number.isFinite(reference) && reference !== 0 ? `${num(x / reference, 2)}×` : '–');
const pct = (x: number) => `${num(x * 100, 1)} %`;

/** A Markdown table; a | inside a cell (a regex in a piece's name) is escaped, or it would split the cell. */
function table(head: string[], rows: string[][], align?: string[]): string {
  const cells = (row: string[]) => `| ${row.map((cell) => cell.replaceAll('|', '\\|')).join(' | ')} |`;
  const lines = [cells(head), `|${head.map((_, i) => align?.[i] ?? (i === 0 ? ':--' : '--:')).join('|')}|`];
  for (const row of rows) lines.push(cells(row));
  return lines.join('\n');
}

function loadTable(median: Record<TargetName, LoadResult>): string {
  const proxy = median.proxy;
  const direct = median.direct;
  const rows = TARGETS.map((t) => {
    const m = median[t];
    return [
      LABEL[t],
      num(m.rps),
      ratio(m.rps, proxy.rps),
      ms(m.p50_ms),
      ratio(m.p50_ms, proxy.p50_ms),
      ms(m.p99_ms),
      ratio(m.p99_ms, proxy.p99_ms),
      t === 'direct' ? '–' : `+${ms(m.p50_ms - direct.p50_ms)}`,
      t === 'direct' ? '–' : ratio(m.p50_ms - direct.p50_ms, proxy.p50_ms - direct.p50_ms),
      num(m.cpu_us_per_request),
      ratio(m.cpu_us_per_request, proxy.cpu_us_per_request),
      pct(m.cpu_utilisation),
      num(m.rss_max_mb),
      ratio(m.rss_max_mb, proxy.rss_max_mb),
      num(m.foreign_cpu, 2),
      stolen(m),
    ];
  });
  return table(
    [
      '',
      'req/s',
      '×proxy',
      'p50 ms',
      '×proxy',
      'p99 ms',
      '×proxy',
      'added p50 ms (over direct)',
      '×proxy',
      'server CPU µs/req',
      '×proxy',
      'server CPU use',
      'server RSS MB',
      '×proxy',
      'other load (cores)',
      'stolen (cores)',
    ],
    rows,
  );
}

/** Results written before the steal column existed have no stolen_cpu. */
function stolen(m: LoadResult): string {
  return typeof m.stolen_cpu === 'number' && Number.isFinite(m.stolen_cpu) ? num(m.stolen_cpu, 2) : '–';
}

function selfTable(entries: SelfTime[], withWhere: boolean, column = 'self ms'): string {
  return table(
    withWhere ? ['function', 'where', column, 'share of busy'] : ['file or package', column, 'share of busy'],
    entries.map((e) =>
      withWhere ? [`\`${e.name}\``, e.where ? `\`${e.where}\`` : '', num(e.self_ms), pct(e.share)] : [`\`${e.name}\``, num(e.self_ms), pct(e.share)],
    ),
  );
}

/** Which round sets a cell's medians are of, and how disturbed each was; null for results from before round 6. */
function setsLine(cell: { rounds: Record<TargetName, Disturbable[]>; used?: number[] }): string | null {
  if (!cell.used) return null;
  const used = cell.used;
  const sets = cell.rounds.direct.map((_, set) => set);
  const cores = (list: number[]) => list.map((set) => num(setDisturbance(cell.rounds, set), 2)).join(', ');
  const left = sets.filter((set) => !used.includes(set));
  if (left.length === 0) return `Round sets: all ${sets.length} used (cores of other load and steal in each: ${cores(used)}).`;
  return `Round sets: ${sets.length} run; used ${used.map((s) => s + 1).join(', ')} (cores of other load and steal: ${cores(used)}); left out as disturbed: ${left.map((s) => s + 1).join(', ')} (${cores(left)}).`;
}

/** How the targets were warmed (scripts/bench/warm.ts), or, for a run before round 6, the fixed warm-up it had. */
function warmSentence(m: BenchResults['meta']): string {
  if (!m.warm)
    return `a warm-up of every target (a fresh tiergate needs a few thousand requests before its JIT settles; each gets ${m.warm_requests} requests of load, or ${m.gateway_warm_s} s when the machine is too busy for that).`;
  const w = m.warm.targets;
  const each = TARGETS.map((t) => `${t} ${warmCell(m.warm!.warmed[t])}`).join('; ');
  return (
    `a warm-up of every target alike: passes over the ${m.warm.cells.length} cells measured (${m.warm.cells.join(', ')}), ${w.stepSeconds} s each, until ${w.patience ?? 1} pass${(w.patience ?? 1) === 1 ? '' : 'es'} in a row lowered no cell's CPU per request more than ${pct(w.tolerance)} below that cell's lowest so far (at least ${w.minPasses} passes, at most ${w.maxSeconds} s): ${each}. ` +
    'A cell first met in the measured rounds would be measured while V8 compiles for it, on the same core (docs/bench/profile-findings.md, round 6).'
  );
}

function warmCell(w: WarmReport): string {
  return `${w.passes} passes, ${num(w.seconds)} s, ${w.settled ? 'settled' : 'not settled'}`;
}

export function renderReport(r: BenchResults, findings: string | null): string {
  const m = r.meta;
  const out: string[] = [];
  out.push('# tiergate benchmark');
  out.push('');
  out.push(
    `Generated by \`npm run bench${m.quick ? ' -- --quick' : ''}\` (scripts/bench/run.ts) on ${m.date.slice(0, 16).replace('T', ' ')} UTC, commit ${m.commit}${m.dirty ? ' with uncommitted changes' : ''}, in ${m.wall_s} s. ` +
      `Node ${m.node}, autocannon ${m.autocannon}, ${m.cpus} × ${m.cpu}; ${m.placement}. Load average at start: ${m.load_average_at_start.join(', ')}.`,
  );
  out.push('');
  out.push(
    `Each figure is the median of ${m.rounds} interleaved rounds (direct, proxy, tiergate, direct, …) of ${m.duration_s} s each, after ${warmSentence(m)} ` +
      (r.load.some((c) => c.used)
        ? `A round set during which other processes and the hypervisor's steal took more than ${num(DISTURBED_CORES, 2)} cores is run again, up to ${m.extra_rounds ?? 0} more sets; the medians are of the ${m.rounds} least disturbed sets (chosen by that figure alone), and every set is in results.json. `
        : '') +
      'Absolute numbers on these shared 2-core machines drift by about 20 % between runs; the ratios to the pass-through proxy, measured in the same run, are what to compare (DESIGN §8).',
  );
  out.push('');
  out.push(
    '- **upstream, direct**: a minimal node:http server speaking the OpenAI wire format (scripts/bench/upstream.ts): a fixed `chat.completion`, or for `stream: true` an SSE stream of 5 chunks (+ usage when asked) and `[DONE]`.',
  );
  out.push(
    '- **pass-through proxy**: node:http piping request and response to that upstream over kept-alive connections (scripts/bench/proxy.ts), the floor for any Node gateway.',
  );
  out.push(
    '- **tiergate**: `node bin/tiergate.js serve` with a generated policy: the `openai_compatible` provider (OpenAI’s wire format over undici, the provider for self-hosted servers) pointed at the upstream (`base_url`), 3 JSONata features, a `rules` route with 10 rules of which only the last matches, decision log to a file and Prometheus metrics on (scripts/bench/policy.ts). No gate.',
  );
  out.push('');
  out.push('## Targets');
  out.push('');
  out.push(
    table(
      ['', 'target', 'measured', ''],
      r.targets.map((t) => [t.name, t.target, t.measured, t.pass ? '**pass**' : '**FAIL**']),
    ),
  );
  out.push('');
  // The throughput ratio means "tiergate against the Node floor" only when the floor
  // was CPU-bound on its core; otherwise the proxy was held back and the ratio flatters.
  for (const cell of r.load.filter((c) => c.connections === 50)) {
    const proxy = cell.median.proxy;
    if (proxy.cpu_utilisation < 0.9) {
      out.push(
        `Note: at 50 connections (${cell.mode.toUpperCase()}) the pass-through proxy used only ${pct(proxy.cpu_utilisation)} of its core while other processes on the machine used ${num(proxy.foreign_cpu, 2)} cores: the floor was held back by the shared machine, so the ${cell.mode.toUpperCase()} throughput ratio is flattering to tiergate.`,
      );
      out.push('');
    }
  }
  for (const mode of ['json', 'sse'] as const) {
    out.push(`## ${mode === 'json' ? 'JSON' : 'SSE streaming'}`);
    out.push('');
    for (const cell of r.load.filter((c) => c.mode === mode)) {
      out.push(`### ${cell.connections} connection${cell.connections === 1 ? '' : 's'}`);
      out.push('');
      out.push(loadTable(cell.median));
      out.push('');
      const sets = setsLine(cell);
      if (sets) out.push(sets, '');
    }
  }
  out.push(
    'Latency is from autocannon\'s per-response times (float ms); "added" is the target\'s p50 minus the direct p50. Server CPU is user + system time of the server process from `/proc/<pid>/stat` over the run, divided by the 2xx responses; "CPU use" is the share of one core it used (100 % = the server\'s core is saturated). RSS is the largest `VmRSS` sampled every 200 ms. "Other load" is the CPU that processes outside the benchmark used meanwhile (from `/proc/stat`, in cores): on a shared machine it is the noise to read the row with. "Stolen" is the time the hypervisor ran something else while this machine\'s cores wanted to run (`steal` in `/proc/stat`, in cores): it slows every figure of the row and no process here accounts for it.',
  );
  out.push('');
  out.push('## Time to first streamed byte');
  out.push('');
  out.push(
    `${m.ttfb_requests} sequential \`stream: true\` requests per round over one kept-alive connection (node:http client), timed from sending the request to the first byte of the body (the first SSE event).`,
  );
  out.push('');
  const t = r.ttfb.median;
  out.push(
    table(
      ['', 'first byte p50 ms', '×proxy', 'first byte p99 ms', '×proxy', 'added p50 ms (over direct)', '×proxy', 'whole stream p50 ms', '×proxy'],
      TARGETS.map((name) => [
        LABEL[name],
        ms(t[name].ttfb_p50_ms),
        ratio(t[name].ttfb_p50_ms, t.proxy.ttfb_p50_ms),
        ms(t[name].ttfb_p99_ms),
        ratio(t[name].ttfb_p99_ms, t.proxy.ttfb_p99_ms),
        name === 'direct' ? '–' : `+${ms(t[name].ttfb_p50_ms - t.direct.ttfb_p50_ms)}`,
        name === 'direct' ? '–' : ratio(t[name].ttfb_p50_ms - t.direct.ttfb_p50_ms, t.proxy.ttfb_p50_ms - t.direct.ttfb_p50_ms),
        ms(t[name].total_p50_ms),
        ratio(t[name].total_p50_ms, t.proxy.total_p50_ms),
      ]),
    ),
  );
  out.push('');
  const ttfbSets = setsLine(r.ttfb);
  if (ttfbSets) out.push(ttfbSets, '');
  out.push('## Scale');
  out.push('');
  out.push(
    `Throughput at 50 connections, JSON, ${m.rounds} interleaved rounds of ${m.scale_duration_s} s after ${m.warm ? `warming each new gateway (and the named-model path) at 50 connections in runs of ${m.warm.one_cell.stepSeconds} s until ${m.warm.one_cell.patience ?? 1} run${(m.warm.one_cell.patience ?? 1) === 1 ? '' : 's'} in a row lowered its CPU per request no more than ${pct(m.warm.one_cell.tolerance)} below the lowest so far (at least ${m.warm.one_cell.minPasses} runs, at most ${m.warm.one_cell.maxSeconds} s; the last column)` : `warming each new gateway with ${m.warm_requests} requests (at most ${m.scale_warm_s} s)`}.` +
      " Every request matches only its route's last rule (all rules are evaluated) and names the last route. The last three rows are ablations: the decision log off; the upstream called through the SDK-based `openai` provider instead of `openai_compatible`; and a concrete model named in `model` (no features, no router).",
  );
  out.push('');
  const proxyRow = r.scale[0].median;
  const baseRow = r.scale[1].median;
  out.push(
    table(
      [
        'setup',
        'req/s',
        '×proxy',
        '×tiergate (10 rules)',
        'p50 ms',
        '×proxy',
        'p99 ms',
        'server CPU µs/req',
        '×proxy',
        'RSS MB',
        '×proxy',
        'other load (cores)',
        ...(m.warm ? ['warm-up'] : []),
      ],
      r.scale.map((row) => [
        row.label,
        num(row.median.rps),
        ratio(row.median.rps, proxyRow.rps),
        ratio(row.median.rps, baseRow.rps),
        ms(row.median.p50_ms),
        ratio(row.median.p50_ms, proxyRow.p50_ms),
        ms(row.median.p99_ms),
        num(row.median.cpu_us_per_request),
        ratio(row.median.cpu_us_per_request, proxyRow.cpu_us_per_request),
        num(row.median.rss_max_mb),
        ratio(row.median.rss_max_mb, proxyRow.rss_max_mb),
        num(row.median.foreign_cpu, 2),
        ...(m.warm ? [row.warm ? warmCell(row.warm) : 'warm already'] : []),
      ]),
    ),
  );
  out.push('');
  out.push(
    'Decision time in-process: the runtime built from the policy as `tiergate serve` builds it, `routeRequest` (src/pipeline/route.ts: features, the rules router, the decision checks) timed call by call after a warm-up; "router alone" is the rules router\'s `route()` with the features already evaluated.',
  );
  out.push('');
  out.push(
    table(
      ['rules', 'routes', 'routeRequest p50 µs', 'p99 µs', 'router alone p50 µs', 'router µs per rule', 'calls'],
      r.decisions.map((d) => [
        num(d.rules),
        num(d.routes),
        num(d.p50_us, 1),
        num(d.p99_us, 1),
        num(d.router_p50_us, 1),
        num(d.router_p50_us / d.rules, 2),
        num(d.calls),
      ]),
    ),
  );
  out.push('');
  if (r.layers?.length || r.pieces?.length) {
    out.push('## Pieces of the request path');
    out.push('');
    out.push('What single pieces cost on their own, as evidence for the profile findings below.');
    out.push('');
  }
  if (r.layers?.length) {
    out.push(
      `The HTTP layer alone, no upstream (scripts/bench/echo.ts): 50 connections, JSON, ${m.rounds} interleaved rounds; ratios to the pass-through proxy of the scale table.`,
    );
    out.push('');
    out.push(
      table(
        ['server', 'req/s', '×proxy', 'p50 ms', 'server CPU µs/req', '×proxy', 'RSS MB', 'other load (cores)'],
        r.layers.map((row) => [
          row.label,
          num(row.median.rps),
          ratio(row.median.rps, proxyRow.rps),
          ms(row.median.p50_ms),
          num(row.median.cpu_us_per_request),
          ratio(row.median.cpu_us_per_request, proxyRow.cpu_us_per_request),
          num(row.median.rss_max_mb),
          num(row.median.foreign_cpu, 2),
        ]),
      ),
    );
    out.push('');
  }
  if (r.pieces?.length) {
    out.push(
      'In-process (scripts/bench/pieces.ts, its own process on the server CPU, the upstream on the other): CPU time per call from `process.cpuUsage()`; upstream calls 50 at a time over kept-alive connections, the rest one after another.',
    );
    out.push('');
    out.push(
      table(
        ['piece', 'CPU µs per call', 'calls/s'],
        r.pieces.map((p) => [p.name, num(p.cpu_us_per_call, p.cpu_us_per_call < 20 ? 2 : 0), p.calls_per_s === null ? '–' : num(p.calls_per_s)]),
      ),
    );
    out.push('');
  }
  if (r.cold_start) {
    const c = r.cold_start;
    out.push('## Cold start');
    out.push('');
    out.push(
      `Process start to the first 200 (scripts/bench/cold-start.ts), measured after everything above had stopped: \`node ${c.node_flags.join(' ')} bin/tiergate.js serve\` on the shipped gateway.yaml (copied to a temporary folder; simulator delays off), \`GET /readyz\` polled every 5 ms until it answers 200, then one chat request to the \`support\` route; "CPU to ready" is the user + system time of the process (every thread) when \`/readyz\` first answered, which other load on the machine stretches far less than the wall-clock figures. ` +
        `${c.runs} runs after one unmeasured start (the OS's file cache warm${c.tsx_cache ? '' : "; tsx's cache off"}); milliseconds from spawning the process. Load average at its start: ${c.load_average_at_start.join(', ')}. Before and after a change: docs/bench/cold-start.md.`,
    );
    out.push('');
    out.push(table(COLD_START_HEAD, coldStartTable(c)));
    out.push('');
  }
  out.push('## Profile');
  out.push('');
  if (r.profile) {
    const p = r.profile;
    out.push(
      `\`node --cpu-prof\` on the tiergate serve process under the 50-connection JSON load (${num(p.load.rps)} req/s while profiled, ${pct(p.load.cpu_utilisation)} of its core). ` +
        `Only the samples inside the load window count: ${num(p.window_ms)} ms, ${num(p.busy_ms)} ms of it busy (not idle), ${num(p.samples)} samples. Frames of compiled code (tsc's output in dist/, or tsx's compilation of a .ts file) are reported as the .ts file, with the line found by function name (the profile's own line numbers are of the compiled code). Profile: ${p.file}.`,
    );
    out.push('');
    out.push('### Self time by file or package');
    out.push('');
    out.push(selfTable(p.groups, false));
    out.push('');
    out.push('### Top functions by self time');
    out.push('');
    out.push(selfTable(p.functions, true));
    out.push('');
    out.push('### Inclusive time (the function or package anywhere on the stack)');
    out.push('');
    out.push(
      'Synchronous callees included; work that resumes after an `await` is not under its caller, so async functions show only their synchronous slices.',
    );
    out.push('');
    out.push(selfTable(p.inclusive_groups, false, 'inclusive ms'));
    out.push('');
    out.push(selfTable(p.inclusive_repo, true, 'inclusive ms'));
    out.push('');
  } else {
    out.push('Not profiled in this run (`--no-profile`).');
    out.push('');
  }
  if (findings) {
    out.push(findings.trim());
    out.push('');
  }
  out.push('## Reproduce');
  out.push('');
  out.push('```sh');
  out.push('npm run bench              # about 5 minutes on the 2-core machine; --quick for about 2.5');
  out.push('npm run bench -- --quick --keep-profile   # also keeps the .cpuprofile next to the report');
  out.push('```');
  out.push('');
  out.push('Raw figures, every round included: [results.json](results.json).');
  out.push('');
  return out.join('\n');
}
