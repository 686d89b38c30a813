// `tiergate eval`: replays a dataset of recorded outcomes through a route of the policy
// (its real router, gates and ladder) and prints the routing metrics next to the
// baselines; see src/analysis/eval/runner.ts.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { InvalidArgumentError, type Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { PolicyErrors, TiergateError, errorMessage } from '../../common/errors.ts';
import { createLogger } from '../../observe/logger.ts';
import { readPolicySource } from '../../policy/source.ts';
import type { GateMode, Split } from '../../analysis/eval/runner.ts';
import { DEFAULT_CONFIG, printErrors } from './common.ts';

interface EvalCommandOptions {
  config: string;
  data: string;
  route?: string;
  map?: Array<[string, string]>;
  mapFile?: string;
  split: Split;
  where?: string;
  gate: GateMode;
  qualityTarget: number;
  sweep: number;
  limit?: number;
  json?: string;
  markdown?: string;
  chart?: string;
  progress: boolean;
}

function choice<T extends string>(values: readonly T[]): (value: string) => T {
  return (value) => {
    if (!(values as readonly string[]).includes(value)) throw new InvalidArgumentError(`one of ${values.join(', ')}`);
    return value as T;
  };
}

/** real or recorded; the old default `auto` is refused with why, so a script that passed it does not silently change meaning. */
function gateMode(value: string): GateMode {
  if (value === 'auto')
    throw new InvalidArgumentError(
      'auto is gone: it gated the rows without answer texts on their recorded scores, an answer key no deployment has. Use real (the default) or recorded (the perfect judge, an upper bound)',
    );
  return choice(['real', 'recorded'] as const)(value);
}

function wholeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('a whole number ≥ 0');
  return n;
}

function sweepPoints(value: string): number {
  const n = wholeNumber(value);
  if (n === 1) throw new InvalidArgumentError('0 (no sweep) or at least 2 points: both ends of [0, 1] are swept');
  return n;
}

function share(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError('a number from 0 to 1');
  return n;
}

function mapping(value: string, previous: Array<[string, string]> = []): Array<[string, string]> {
  const at = value.indexOf('=');
  if (at <= 0 || at === value.length - 1) throw new InvalidArgumentError('write policyModel=datasetModel');
  return [...previous, [value.slice(0, at), value.slice(at + 1)]];
}

/** policyModel → datasetModel from a YAML or JSON file, then the --map flags (which win). */
function mappingOf(opts: EvalCommandOptions): Record<string, string> {
  const out: Record<string, string> = {};
  if (opts.mapFile) {
    let data: unknown;
    try {
      data = parseYaml(readFileSync(opts.mapFile, 'utf8'));
    } catch (err) {
      throw new TiergateError('TG_ERR_EVAL_MAPPING', { reason: `cannot read --map-file ${opts.mapFile}: ${errorMessage(err)}` });
    }
    if (data === null || typeof data !== 'object' || Array.isArray(data) || !Object.values(data).every((v) => typeof v === 'string')) {
      throw new TiergateError('TG_ERR_EVAL_MAPPING', { reason: `--map-file ${opts.mapFile} must be a mapping of policy model → dataset model name` });
    }
    Object.assign(out, data);
  }
  for (const [model, datasetModel] of opts.map ?? []) out[model] = datasetModel;
  return out;
}

/** The route to evaluate: the one named, or the policy's only route. */
function routeOf(opts: EvalCommandOptions): string {
  if (opts.route) return opts.route;
  let routes: string[] = [];
  try {
    const data = readPolicySource(opts.config).data as { routes?: unknown } | null;
    if (data && typeof data.routes === 'object' && data.routes !== null) routes = Object.keys(data.routes);
  } catch {
    // The eval reads the policy again and reports what is wrong with it, located.
  }
  if (routes.length === 1) return routes[0];
  throw new TiergateError('TG_ERR_EVAL_OPTIONS', {
    reason: `name the route to evaluate with --route${routes.length ? ` (routes: ${routes.join(', ')})` : ''}`,
  });
}

/** This invocation as a shell command (`tiergate eval …`), quoted where a word needs it. */
function commandLine(): string {
  const at = process.argv.indexOf('eval');
  const args = at >= 0 ? process.argv.slice(at) : ['eval'];
  const quote = (a: string) => (/^[\w./=:@%+,-]+$/.test(a) ? a : /^[^"$`\\!]*$/.test(a) ? `"${a}"` : `'${a.replace(/'/g, `'\\''`)}'`);
  return ['tiergate', ...args.map(quote)].join(' ');
}

function write(file: string, content: string): void {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileSync(file, content);
}

export function register(program: Command): void {
  program
    .command('eval')
    .description(
      'replay recorded model outcomes (a JSONL dataset) through a route of the policy and report routing accuracy, cost savings, quality retention and escalation rate against the baselines',
    )
    .option('-c, --config <file>', 'policy file', DEFAULT_CONFIG)
    .requiredOption('-d, --data <file>', 'dataset of recorded outcomes (JSONL; format in ../shared/data/README.md)')
    .option('-r, --route <name>', "route to evaluate (default: the policy's only route)")
    .option(
      '-m, --map <policyModel=datasetModel>',
      'which dataset model answers for a policy model (repeatable; models named like a dataset model map themselves)',
      mapping,
    )
    .option('--map-file <file>', 'the same mapping as a YAML or JSON object')
    .option('--split <split>', 'rows to evaluate: train, test or all', choice(['train', 'test', 'all'] as const), 'all')
    .option('--where <jsonata>', 'only rows for which this JSONata expression over the row holds, e.g. "source = \'gsm8k\'"')
    .option(
      '--gate <mode>',
      "real: the route's evaluators judge the recorded answer texts, rows without texts are left out and counted; recorded: the perfect judge (upper bound), the recorded scores gate every row",
      gateMode,
      'real',
    )
    .option('--quality-target <score>', 'recorded score at which an answer is good enough (oracle tier, gate precision/recall)', share, 0.5)
    .option('--sweep <n>', 'gate thresholds to sweep, evenly spaced over [0, 1], for the cost–quality curve (0: none)', sweepPoints, 11)
    .option('--limit <n>', 'evaluate at most this many rows', wholeNumber)
    .option('--json <file>', 'write the report as JSON (- for stdout, instead of the table)')
    .option('--markdown <file>', 'write the report as Markdown')
    .option('--chart <file.svg>', 'draw the cost–quality curve with the baselines as SVG')
    .option('--no-progress', 'no progress bar (there is none unless stderr is a terminal)')
    .action(async (opts: EvalCommandOptions) => {
      const logger = createLogger({ level: 'error' });
      let bar: cliProgress.SingleBar | null = null;
      try {
        if (opts.chart && path.extname(opts.chart).toLowerCase() !== '.svg')
          throw new TiergateError('TG_ERR_EVAL_OPTIONS', { reason: `--chart draws SVG: give a file ending in .svg, not ${opts.chart}` });
        const showProgress = opts.progress && process.stderr.isTTY === true;
        // Loaded here, not at startup: the charting library is heavy and only eval needs it.
        const { runEval } = await import('../../analysis/eval/runner.ts');
        const { chartSvg, markdownReport, terminalReport } = await import('../../analysis/eval/format.ts');
        const { report } = await runEval({
          config: opts.config,
          data: opts.data,
          route: routeOf(opts),
          map: mappingOf(opts),
          split: opts.split,
          where: opts.where,
          gate: opts.gate,
          qualityTarget: opts.qualityTarget,
          sweep: opts.sweep,
          limit: opts.limit,
          logger,
          onProgress: showProgress
            ? (done, total, phase) => {
                if (!bar) {
                  bar = new cliProgress.SingleBar(
                    {
                      stream: process.stderr,
                      clearOnComplete: true,
                      hideCursor: true,
                      format: 'eval {bar} {percentage}% | {value}/{total} row runs | {phase}',
                    },
                    cliProgress.Presets.shades_classic,
                  );
                  bar.start(total, done, { phase });
                } else bar.update(done, { phase });
              }
            : undefined,
        });
        (bar as cliProgress.SingleBar | null)?.stop();
        bar = null;
        if (opts.json === '-') process.stdout.write(JSON.stringify(report, null, 2) + '\n');
        else process.stdout.write(terminalReport(report));
        if (opts.json && opts.json !== '-') write(opts.json, JSON.stringify(report, null, 2) + '\n');
        if (opts.chart) write(opts.chart, await chartSvg(report));
        if (opts.markdown) {
          const chart = opts.chart ? path.relative(path.dirname(path.resolve(opts.markdown)), path.resolve(opts.chart)) : undefined;
          write(opts.markdown, markdownReport(report, chart, commandLine()));
        }
        for (const [flag, file] of [
          ['json', opts.json],
          ['markdown', opts.markdown],
          ['chart', opts.chart],
        ] as const) {
          if (file && file !== '-') process.stderr.write(`wrote ${flag} to ${file}\n`);
        }
      } catch (err) {
        (bar as cliProgress.SingleBar | null)?.stop();
        printErrors(err);
        if (err instanceof PolicyErrors && err.errors.some((e) => e.code === 'TG_ERR_CONFIG_ENV_MISSING')) {
          process.stderr.write('tiergate eval calls no real provider: any value will do for a key it needs (e.g. OPENAI_API_KEY=unused).\n');
        }
        process.exitCode = 1;
      }
    });
}
