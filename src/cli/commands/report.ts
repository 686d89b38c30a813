// `tiergate report`: cost savings, escalation rate, quality retention and routing
// accuracy from production decision logs (and client feedback), against the targets,
// grouped by route, model, tier or time window. See src/analysis/report.ts for what each number
// means when all one has is what production knows.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { PolicyErrors, TiergateError, errorMessage } from '../../common/errors.ts';
import { readPolicySource } from '../../policy/source.ts';
import { DEFAULT_DECISION_LOG } from '../../policy-shape/defaults.ts';
import {
  DEFAULT_EPSILON,
  GROUP_BY,
  buildReport,
  decisionLogOf,
  parseWindow,
  policyHints,
  readFeedback,
  readLogs,
  renderMarkdown,
  renderTable,
  type GroupBy,
  type PolicyHints,
} from '../../analysis/report.ts';
import { DEFAULT_CONFIG, printErrors } from './common.ts';

interface ReportFlags {
  log?: string[];
  config?: string;
  by: GroupBy;
  window: string;
  since?: Date;
  until?: Date;
  feedback?: string;
  json?: string;
  markdown?: string;
  epsilon: number;
}

function parseTime(value: string): Date {
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new InvalidArgumentError('not an ISO date or time (e.g. 2025-06-01 or 2025-06-01T12:00:00Z)');
  return new Date(t);
}

function parseWindowOption(value: string): string {
  if (parseWindow(value) === null) throw new InvalidArgumentError('a window is a whole number and a unit: 15m, 1h, 1d (s, m, h, d)');
  return value;
}

function parseEpsilon(value: string): number {
  const x = Number(value);
  if (!(x >= 0 && x <= 1)) throw new InvalidArgumentError('a score difference from 0 to 1');
  return x;
}

/** The policy's data, or null when there is none to read (only an explicit --config must exist). */
function readPolicy(file: string | undefined): { file: string; data: unknown } | null {
  const chosen = file ?? DEFAULT_CONFIG;
  if (file === undefined && !existsSync(chosen)) return null;
  try {
    return { file: chosen, data: readPolicySource(chosen).data };
  } catch (caught) {
    if (file === undefined) return null;
    throw Array.isArray(caught) ? new PolicyErrors(caught as TiergateError[]) : caught;
  }
}

function write(file: string, text: string): void {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileSync(file, text);
  process.stderr.write(`wrote ${file}\n`);
}

export function register(program: Command): void {
  program
    .command('report')
    .description('routing metrics from decision logs (cost savings, escalation rate, quality retention, routing accuracy) against the targets')
    .option('--log <file...>', `decision log(s), JSON lines (default: the policy's analytics.decision_log.file, else ${DEFAULT_DECISION_LOG.file})`)
    .option('-c, --config <file>', `policy file, for the default log and the tier order (default: ${DEFAULT_CONFIG} when present)`)
    .addOption(new Option('--by <group>', 'group by').choices(GROUP_BY).default('route'))
    .option('--window <length>', 'time window for --by window: 15m, 1h, 1d (implies --by window)', parseWindowOption, '1h')
    .option('--since <time>', 'only requests at or after this ISO time', parseTime)
    .option('--until <time>', 'only requests before this ISO time', parseTime)
    .option('--feedback <file>', 'JSON lines of {request_id, score} (score 0..1): mean feedback per group')
    .option('--json <file>', 'also write the report as JSON')
    .option('--markdown <file>', 'also write the report as Markdown')
    .option('--epsilon <x>', "routing accuracy: a cheaper answer is right when its score ≥ the best model's − x", parseEpsilon, DEFAULT_EPSILON)
    .action(async (flags: ReportFlags, command: Command) => {
      try {
        const by: GroupBy = command.getOptionValueSource('window') === 'cli' && command.getOptionValueSource('by') !== 'cli' ? 'window' : flags.by;
        const policy = readPolicy(flags.config);
        let logs = flags.log;
        if (!logs?.length) {
          const fromPolicy = policy ? decisionLogOf(policy.file, policy.data) : DEFAULT_DECISION_LOG.file;
          if (fromPolicy === null) throw new Error(`${policy?.file} writes no decision log (analytics.decision_log.file is null): pass --log <file>`);
          logs = [path.relative(process.cwd(), fromPolicy) || fromPolicy];
        }
        for (const file of logs) if (!existsSync(file)) throw new Error(`cannot read decision log ${file}: no such file`);
        if (flags.feedback && !existsSync(flags.feedback)) throw new Error(`cannot read feedback ${flags.feedback}: no such file`);
        const hints: PolicyHints | null = policy ? policyHints(policy.data) : null;
        const report = buildReport(await readLogs(logs), flags.feedback ? await readFeedback(flags.feedback) : null, {
          by,
          windowMs: parseWindow(flags.window) as number,
          windowLabel: flags.window,
          since: flags.since,
          until: flags.until,
          epsilon: flags.epsilon,
          policy: hints,
        });
        process.stdout.write(renderTable(report));
        if (flags.json) write(flags.json, JSON.stringify(report, null, 2) + '\n');
        if (flags.markdown) write(flags.markdown, renderMarkdown(report));
      } catch (err) {
        if (err instanceof PolicyErrors || err instanceof TiergateError) printErrors(err);
        else process.stderr.write(`tiergate report: ${errorMessage(err)}\n`);
        process.exitCode = 1;
      }
    });
}
