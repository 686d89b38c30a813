// `tiergate train`: fits the classifier router's model on recorded outcomes (the JSONL
// format of ../shared/data) or on prompts labelled with the tier that sufficed, and
// writes the artifact the classifier router plugin loads. See src/analysis/learn/train.ts.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import cliProgress from 'cli-progress';
import Table from 'cli-table3';
import { InvalidArgumentError, type Command } from 'commander';
import { TiergateError, errorMessage } from '../../common/errors.ts';
import { compileExpression, isTruthy } from '../../expressions/compile.ts';
import { readPolicySource } from '../../policy/source.ts';
import { defaultFeatureSpec } from '../../analysis/learn/features.ts';
import { hashRows, parseTarget, trainClassifier, type LabelRule, type Objective, type TrainingRow, type TrainResult } from '../../analysis/learn/train.ts';
import { printErrors } from './common.ts';
import { messagesOfRow, trainGateArtifact } from './train-gate.ts';

interface TrainCommandOptions {
  data: string;
  split: 'train' | 'test' | 'all';
  where?: string;
  tier?: Array<[string, string]>;
  config?: string;
  route?: string;
  qualityTarget: number;
  label: LabelRule;
  objective: Objective;
  group?: string;
  groupEpochs: number;
  final: 'fold-average' | 'refit';
  folds: number;
  epochs?: number;
  l2?: number | number[];
  buckets: number;
  seed: number;
  target: string;
  out?: string;
  progress: boolean;
  gate: boolean;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function optionsError(reason: string): TiergateError {
  return new TiergateError('TG_ERR_TRAIN_OPTIONS', { reason });
}

export interface LoadedRows {
  rows: TrainingRow[];
  dataHash: string;
  skipped: Map<string, number>;
  tiers: Array<{ name: string; dataset_model: string | null }>;
}

/**
 * Reads the rows to train on. Outcome rows need a score for every tier's dataset model;
 * labelled rows ({prompt, tier}) need a tier of the ladder.
 */
export async function loadTrainingRows(
  file: string,
  tiers: Array<{ name: string; dataset_model: string | null; relative_cost: number }>,
  options: { split: 'train' | 'test' | 'all'; where?: string; group?: string },
): Promise<LoadedRows> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw optionsError(`cannot read --data ${file}: ${errorMessage(err)}`);
  }
  const where = options.where === undefined ? null : compileExpression(options.where);
  if (where && 'problem' in where) throw optionsError(`--where: JSONata: ${where.problem.message}`);
  const groupOf = options.group === undefined ? null : compileExpression(options.group);
  if (groupOf && 'problem' in groupOf) throw optionsError(`--group: JSONata: ${groupOf.problem.message}`);
  const rows: TrainingRow[] = [];
  const kept: string[] = [];
  const skipped = new Map<string, number>();
  const skip = (reason: string) => skipped.set(reason, (skipped.get(reason) ?? 0) + 1);
  const lines = text.split('\n');
  for (const [n, line] of lines.entries()) {
    if (!line.trim()) continue;
    let row: Record<string, unknown>;
    try {
      row = JSON.parse(line) as Record<string, unknown>;
    } catch (err) {
      throw optionsError(`${file}:${n + 1}: not JSON (${errorMessage(err)})`);
    }
    if (!isRecord(row)) throw optionsError(`${file}:${n + 1}: a row must be a JSON object`);
    if (options.split !== 'all' && row.split !== undefined && row.split !== options.split) continue;
    if (where && 'expression' in where && !isTruthy(await where.expression.evaluate(row))) continue;
    const messages = messagesOfRow(row.prompt);
    if (!messages) throw optionsError(`${file}:${n + 1}: "prompt" must be a string or a list of messages`);
    const id = typeof row.id === 'string' ? row.id : `line ${n + 1}`;
    let group: string | null = null;
    if (groupOf && 'expression' in groupOf) {
      const value = await groupOf.expression.evaluate(row);
      if (value !== undefined && value !== null) {
        if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean')
          throw optionsError(`${file}:${n + 1}: --group must give a string, number or boolean for each row, not ${JSON.stringify(value).slice(0, 80)}`);
        group = String(value);
      }
    }
    if (isRecord(row.outcomes)) {
      const quality: number[] = [];
      const cost: number[] = [];
      let missing: string | null = null;
      for (const tier of tiers) {
        const outcome = tier.dataset_model ? row.outcomes[tier.dataset_model] : undefined;
        if (!isRecord(outcome) || typeof outcome.score !== 'number') {
          missing = `no score for ${tier.dataset_model ?? `tier ${tier.name} (give --tier ${tier.name}=<dataset model>)`}`;
          break;
        }
        quality.push(outcome.score);
        cost.push(typeof outcome.cost_usd === 'number' ? outcome.cost_usd : tier.relative_cost);
      }
      if (missing) {
        skip(missing);
        continue;
      }
      rows.push({ id, messages, quality, cost, labelTier: null, group });
    } else if (typeof row.tier === 'string') {
      const labelTier = tiers.findIndex((t) => t.name === row.tier);
      if (labelTier < 0) throw optionsError(`${file}:${n + 1}: tier "${row.tier}" is not on the ladder (${tiers.map((t) => t.name).join(', ')})`);
      rows.push({ id, messages, quality: null, cost: tiers.map((t) => t.relative_cost), labelTier, group });
    } else throw optionsError(`${file}:${n + 1}: a row needs "outcomes" (recorded results per model) or "tier" (the tier that sufficed)`);
    kept.push(line);
  }
  return { rows, dataHash: hashRows(kept), skipped, tiers: tiers.map(({ name, dataset_model }) => ({ name, dataset_model })) };
}

/** The ladder: from --tier flags (in order), or from a policy's tiers (dataset model = the tier's first model's upstream). */
function ladderOf(opts: TrainCommandOptions): Array<{ name: string; dataset_model: string | null; relative_cost: number }> {
  const flags = new Map(opts.tier ?? []);
  if (opts.config) {
    const data = readPolicySource(opts.config).data as {
      models?: Record<string, { upstream?: string; price?: { input_per_mtok?: number } }>;
      tiers?: Array<{ name: string; models: string[] }>;
      routes?: Record<string, unknown>;
    };
    if (opts.route && !(isRecord(data.routes) && Object.hasOwn(data.routes, opts.route))) throw optionsError(`the policy has no route "${opts.route}"`);
    const tiers = Array.isArray(data.tiers) ? data.tiers : [];
    for (const name of flags.keys())
      if (!tiers.some((t) => t.name === name))
        throw optionsError(`--tier ${name}=…: the policy ${opts.config} has no tier "${name}" (tiers: ${tiers.map((t) => t.name).join(', ')})`);
    return tiers.map((t) => {
      const model = data.models?.[t.models[0]];
      return { name: t.name, dataset_model: flags.get(t.name) ?? model?.upstream ?? t.models[0] ?? null, relative_cost: model?.price?.input_per_mtok ?? 1 };
    });
  }
  if (flags.size < 2)
    throw optionsError('name the ladder, cheapest first: --tier small=<dataset model> --tier large=<dataset model> (or --config gateway.yaml)');
  // Without a policy and without recorded costs, each step up the ladder counts 20× (GPT-4 vs Mixtral).
  return [...flags].map(([name, model], i) => ({ name, dataset_model: model, relative_cost: 20 ** i }));
}

function number(min: number, max: number, integer = false): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n)))
      throw new InvalidArgumentError(`a${integer ? ' whole' : ''} number from ${min} to ${max}`);
    return n;
  };
}

function tierFlag(value: string, previous: Array<[string, string]> = []): Array<[string, string]> {
  const at = value.indexOf('=');
  if (at <= 0 || at === value.length - 1) throw new InvalidArgumentError('write tier=datasetModel');
  return [...previous, [value.slice(0, at), value.slice(at + 1)]];
}

/** Plain tables when the output is not a terminal (a file, a pipe). */
const tableStyle = () => (process.stdout.isTTY ? {} : { style: { head: [], border: [] } });

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

export function formatTraining(result: TrainResult, loaded: LoadedRows): string {
  const { artifact, table } = result;
  const metrics = artifact.metrics as {
    folds: number;
    per_tier: Array<{ tier: string; positive_rate: number; auc: number | null; accuracy: number; majority_accuracy: number; log_loss: number; ece: number }>;
    held_out_apgr: number | null;
    l2: number;
    l2_candidates?: Array<{ l2: number; held_out_apgr: number | null; log_loss: number }>;
    group_prior?: { groups: number; held_out_group_accuracy: number; prior_weight: number[]; score_weight: number[] };
  };
  const out: string[] = [];
  out.push(
    `trained on ${artifact.training_rows} rows (sha256 ${artifact.training_data_sha256.slice(0, 12)}…); ladder ${artifact.tiers.map((t) => `${t.name}${t.dataset_model ? ` = ${t.dataset_model}` : ''}`).join(' < ')}`,
  );
  for (const [reason, count] of loaded.skipped) out.push(`skipped ${count} rows: ${reason}`);
  out.push(
    `label: ${artifact.label}${artifact.quality_target !== null ? ` (quality target ${artifact.quality_target})` : ''}, text model fitted to ${artifact.objective ?? 'label'}; ${metrics.folds}-fold cross-validation, held-out predictions:`,
  );
  const cv = new Table({ ...tableStyle(), head: ['P(tier suffices)', 'base rate', 'AUC', 'accuracy', 'majority', 'log loss', 'ECE (Platt)'] });
  for (const m of metrics.per_tier)
    cv.push([
      m.tier,
      pct(m.positive_rate),
      m.auc === null ? 'n/a' : m.auc.toFixed(3),
      pct(m.accuracy),
      pct(m.majority_accuracy),
      m.log_loss.toFixed(3),
      m.ece.toFixed(3),
    ]);
  out.push(cv.toString());
  if (metrics.group_prior)
    out.push(
      `group prior over ${metrics.group_prior.groups} groups (${artifact.group_prior?.expression}): held-out group accuracy ${pct(metrics.group_prior.held_out_group_accuracy)}; calibration weights score ${metrics.group_prior.score_weight.map((w) => w.toFixed(2)).join('/')}, prior ${metrics.group_prior.prior_weight.map((w) => w.toFixed(2)).join('/')}`,
    );
  if (metrics.l2_candidates)
    out.push(
      `L2 chosen by held-out APGR: ${metrics.l2_candidates.map((c) => `${c.l2}${c.l2 === metrics.l2 ? ' (chosen)' : ''} → ${c.held_out_apgr === null ? `log loss ${c.log_loss.toFixed(3)}` : c.held_out_apgr.toFixed(3)}`).join(', ')}`,
    );
  if (metrics.held_out_apgr !== null) out.push(`held-out APGR (strong-call share swept 0 → 1): ${metrics.held_out_apgr.toFixed(3)}`);
  out.push('cost–quality by threshold (held-out predictions; route to the cheapest tier whose P(suffices) ≥ threshold):');
  const cq = new Table({ ...tableStyle(), head: ['threshold', ...artifact.tiers.map((t) => `→ ${t.name}`), 'mean quality', 'retention', 'cost savings'] });
  for (const r of table)
    cq.push([
      `${r.threshold.toFixed(3)}${r.threshold === artifact.recommended_threshold ? ' *' : ''}`,
      ...r.tier_shares.map(pct),
      r.mean_quality.toFixed(3),
      pct(r.quality_retention),
      pct(r.cost_savings),
    ]);
  out.push(cq.toString());
  out.push(
    `recommended threshold ${artifact.recommended_threshold} (*) for target ${artifact.target?.kind}:${Array.isArray(artifact.target?.value) ? artifact.target.value.join(':') : artifact.target?.value}`,
  );
  return out.join('\n') + '\n';
}

function gateL2(l2: number | number[] | undefined): number {
  if (Array.isArray(l2)) throw optionsError('--gate takes one --l2 value, not candidates');
  return l2 ?? 1e-3;
}

function writeArtifact(file: string, artifact: unknown): void {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileSync(file, JSON.stringify(artifact) + '\n');
  process.stderr.write(`wrote model to ${file}\n`);
}

export function register(program: Command): void {
  program
    .command('train')
    .description(
      'train the classifier router on recorded outcomes (JSONL, format of ../shared/data) or on prompts labelled with the tier that sufficed; writes a model artifact',
    )
    .requiredOption('-d, --data <file>', 'JSONL: rows with per-model "outcomes", or {prompt, tier} rows')
    .option(
      '--split <split>',
      'rows to train on: train, test or all (rows without a split are always used)',
      (v) => {
        if (!['train', 'test', 'all'].includes(v)) throw new InvalidArgumentError('one of train, test, all');
        return v;
      },
      'train',
    )
    .option('--where <jsonata>', 'only rows for which this JSONata expression over the row holds')
    .option('-t, --tier <tier=datasetModel>', 'a tier of the ladder and the dataset model that stands for it, cheapest first (repeatable)', tierFlag)
    .option('-c, --config <file>', 'take the ladder (tier names, dataset models as upstream names, relative prices) from this policy')
    .option('-r, --route <name>', 'the route of --config the model is for (checked to exist)')
    .option('--quality-target <score>', 'a recorded score at which an answer is good enough', number(0, 1), 0.5)
    .option(
      '--label <rule>',
      'no-loss (a tier suffices when it meets the target or no higher tier does) or meets-target',
      (v) => {
        if (v !== 'no-loss' && v !== 'meets-target') throw new InvalidArgumentError('no-loss or meets-target');
        return v;
      },
      'no-loss',
    )
    .option(
      '--objective <objective>',
      'what the text model fits: gain (soft: 1 when the tier wins, ½ on a tie, 0 when a higher tier does better) or label (the 0/1 label)',
      (v) => {
        if (v !== 'gain' && v !== 'label') throw new InvalidArgumentError('gain or label');
        return v;
      },
      'gain',
    )
    .option(
      '--group <jsonata>',
      'learn a group prior: a JSONata expression over the training row naming its group (e.g. subset); the router learns P(group | prompt), so requests need not carry it',
    )
    .option('--group-epochs <n>', 'passes over the data for the group prior', number(1, 200, true), 8)
    .option(
      '--final <how>',
      'the served model: fold-average (the mean of the cross-validation models, on the scale the threshold was chosen on) or refit (trained again on every row)',
      (v) => {
        if (v !== 'fold-average' && v !== 'refit') throw new InvalidArgumentError('fold-average or refit');
        return v;
      },
      'fold-average',
    )
    .option('--folds <k>', 'cross-validation folds', number(2, 20, true), 5)
    .option('--epochs <n>', 'passes over the data per model (default: 12, with --gate 30)', number(1, 200, true))
    .option(
      '--l2 <lambda>',
      'L2 regularisation strength, or candidates separated by commas (the best held-out APGR wins); default 0.0001, with --gate 0.001 (one value)',
      (v) => {
        const values = v.split(',').map((x) => number(0, 10)(x.trim()));
        return values.length === 1 ? values[0] : values;
      },
    )
    .option('--buckets <n>', 'hashed n-gram buckets (power of two)', number(16, 1 << 22, true), 1 << 14)
    .option('--seed <n>', 'random seed (folds and shuffles)', number(0, 2 ** 31, true), 1)
    .option('--target <target>', 'what the recommended threshold aims at: retention:R, strong-share:S or costs:UNDER:OVER', 'retention:0.98')
    .option(
      '--gate',
      "train the learned gate instead of the router: P(answer good) from the measures of the cheaper tiers' recorded answers (--l2 defaults to 0.001, --epochs to 30)",
    )
    .option('-o, --out <file>', 'where to write the model artifact (default: models/router.json, with --gate models/gate.json)')
    .option('--no-progress', 'no progress bar (there is none unless stderr is a terminal)')
    .action(async (opts: TrainCommandOptions) => {
      let bar: cliProgress.SingleBar | null = null;
      try {
        if ((opts.buckets & (opts.buckets - 1)) !== 0) throw optionsError(`--buckets must be a power of two, not ${opts.buckets}`);
        let target;
        try {
          target = parseTarget(opts.target);
        } catch (err) {
          throw optionsError(errorMessage(err));
        }
        const ladder = ladderOf(opts);
        if (opts.gate) {
          const answeredBy = ladder.flatMap((t) => (t.dataset_model ? [t.dataset_model] : []));
          const { artifact, report } = await trainGateArtifact(
            {
              ...opts,
              l2: gateL2(opts.l2),
              epochs: opts.epochs ?? 30,
            },
            answeredBy,
          );
          process.stdout.write(report);
          writeArtifact(opts.out ?? 'models/gate.json', artifact);
          return;
        }
        const loaded = await loadTrainingRows(opts.data, ladder, { split: opts.split, where: opts.where, group: opts.group });
        if (loaded.rows.length === 0) throw optionsError(`no rows to train on in ${opts.data} after --split ${opts.split}${opts.where ? ' and --where' : ''}`);
        const showProgress = opts.progress && process.stderr.isTTY === true;
        const spec = defaultFeatureSpec({ ngrams: { n: [1, 2], buckets: opts.buckets, hash: 'fnv1a' } });
        const result = await trainClassifier(loaded.rows, {
          tiers: loaded.tiers,
          qualityTarget: opts.qualityTarget,
          label: opts.label,
          objective: opts.objective,
          final: opts.final,
          ...(opts.group !== undefined ? { groupPrior: { expression: opts.group, epochs: opts.groupEpochs } } : {}),
          folds: opts.folds,
          epochs: opts.epochs ?? 12,
          l2: opts.l2 ?? 1e-4,
          seed: opts.seed,
          target,
          spec,
          dataHash: loaded.dataHash,
          onProgress: showProgress
            ? (done, total, phase) => {
                if (!bar) {
                  bar = new cliProgress.SingleBar(
                    { stream: process.stderr, clearOnComplete: true, hideCursor: true, format: 'train {bar} {percentage}% | {value}/{total} epochs | {phase}' },
                    cliProgress.Presets.shades_classic,
                  );
                  bar.start(total, done, { phase });
                } else bar.update(done, { phase });
              }
            : undefined,
        });
        (bar as cliProgress.SingleBar | null)?.stop();
        bar = null;
        process.stdout.write(formatTraining(result, loaded));
        writeArtifact(opts.out ?? 'models/router.json', result.artifact);
      } catch (err) {
        (bar as cliProgress.SingleBar | null)?.stop();
        printErrors(err);
        process.exitCode = 1;
      }
    });
}
