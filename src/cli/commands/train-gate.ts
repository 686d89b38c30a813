// `tiergate train --gate`: fits the learned gate (src/analysis/learn/gate-model.ts) on
// the recorded answers of the ladder's cheaper tiers, labelled by their recorded scores,
// and writes the artifact the `learned` evaluator loads. The top tier's answers are not
// training examples: a gate on the top tier has nowhere to send a failed answer.
import { readFileSync } from 'node:fs';
import Table from 'cli-table3';
import { TiergateError, errorMessage } from '../../common/errors.ts';
import type { ChatMessage } from '../../plugin-contract/plugin-api.ts';
import { compileExpression, isTruthy } from '../../expressions/compile.ts';
import { conversationText, hashExamples, trainGate, type GateArtifact, type GateExample } from '../../analysis/learn/gate-model.ts';

export interface GateTrainingOptions {
  data: string;
  split: 'train' | 'test' | 'all';
  where?: string;
  qualityTarget: number;
  folds: number;
  epochs: number;
  l2: number;
  seed: number;
}

function optionsError(reason: string): TiergateError {
  return new TiergateError('TG_ERR_TRAIN_OPTIONS', { reason });
}

const isRecord = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value);

/** A training row's prompt as messages (a string is one user message), or null when it is neither. */
export function messagesOfRow(prompt: unknown): ChatMessage[] | null {
  if (typeof prompt === 'string') return [{ role: 'user', content: prompt }];
  if (Array.isArray(prompt) && prompt.every((m) => isRecord(m) && typeof m.role === 'string'))
    return prompt.map((m) => ({ role: m.role, content: m.content ?? null })) as ChatMessage[];
  return null;
}

/** Every recorded answer of `answeredBy` with a text and a score, as a labelled example. */
export async function loadGateExamples(
  options: GateTrainingOptions,
  answeredBy: readonly string[],
): Promise<{ examples: GateExample[]; skipped: Map<string, number> }> {
  let text: string;
  try {
    text = readFileSync(options.data, 'utf8');
  } catch (err) {
    throw optionsError(`cannot read --data ${options.data}: ${errorMessage(err)}`);
  }
  const where = options.where === undefined ? null : compileExpression(options.where);
  if (where && 'problem' in where) throw optionsError(`--where: JSONata: ${where.problem.message}`);
  const examples: GateExample[] = [];
  const skipped = new Map<string, number>();
  const skip = (reason: string) => skipped.set(reason, (skipped.get(reason) ?? 0) + 1);
  for (const [n, line] of text.split('\n').entries()) {
    if (!line.trim()) continue;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (err) {
      throw optionsError(`${options.data}:${n + 1}: not JSON (${errorMessage(err)})`);
    }
    if (!isRecord(row)) throw optionsError(`${options.data}:${n + 1}: a row must be a JSON object`);
    if (options.split !== 'all' && row.split !== undefined && row.split !== options.split) continue;
    if (where && 'expression' in where && !isTruthy(await where.expression.evaluate(row))) continue;
    // Read as the learned evaluator reads a request (conversationText), so training and serving see the same text.
    const messages = messagesOfRow(row.prompt);
    if (messages === null) throw optionsError(`${options.data}:${n + 1}: "prompt" must be a string or a list of messages`);
    if (!isRecord(row.outcomes)) throw optionsError(`${options.data}:${n + 1}: --gate trains on recorded outcomes; the row has no "outcomes"`);
    for (const model of answeredBy) {
      const outcome = row.outcomes[model];
      if (!isRecord(outcome) || typeof outcome.score !== 'number') skip(`no score for ${model}`);
      else if (typeof outcome.response !== 'string') skip(`no answer text for ${model}`);
      else
        examples.push({
          prompt: conversationText(messages),
          reply: outcome.response,
          good: outcome.score >= options.qualityTarget ? 1 : 0,
          group: `${typeof row.source === 'string' ? row.source : 'rows'} · ${model}`,
        });
    }
  }
  return { examples, skipped };
}

export async function trainGateArtifact(options: GateTrainingOptions, answeredBy: readonly string[]): Promise<{ artifact: GateArtifact; report: string }> {
  const { examples, skipped } = await loadGateExamples(options, answeredBy);
  if (examples.length === 0)
    throw optionsError(`no recorded answers of ${answeredBy.join(', ')} with a text and a score in ${options.data} after --split ${options.split}`);
  let artifact: GateArtifact;
  try {
    artifact = trainGate(examples, {
      answeredBy: [...answeredBy],
      qualityTarget: options.qualityTarget,
      folds: options.folds,
      epochs: options.epochs,
      l2: options.l2,
      seed: options.seed,
      dataHash: hashExamples(examples),
    });
  } catch (err) {
    throw optionsError(errorMessage(err));
  }
  return { artifact, report: formatGateTraining(artifact, skipped) };
}

const tableStyle = () => (process.stdout.isTTY ? {} : { style: { head: [], border: [] } });
const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(1)} %`);

export function formatGateTraining(artifact: GateArtifact, skipped: Map<string, number>): string {
  const m = artifact.metrics;
  const out: string[] = [];
  out.push(
    `trained the learned gate on ${artifact.training_rows} answers of ${artifact.answered_by.join(', ')} (sha256 ${artifact.training_data_sha256.slice(0, 12)}…); good = recorded score ≥ ${artifact.quality_target}`,
  );
  for (const [reason, count] of skipped) out.push(`skipped ${count} answers: ${reason}`);
  out.push(
    `${m.folds}-fold cross-validation, held-out predictions: AUC ${m.auc?.toFixed(3) ?? 'n/a'}, log loss ${m.log_loss.toFixed(3)}, ECE (Platt) ${m.ece.toFixed(3)}, good answers ${pct(m.good_rate)}`,
  );
  const groups = new Table({ ...tableStyle(), head: ['answers', 'rows', 'good', 'AUC'] });
  for (const g of m.by_group) groups.push([g.group, g.rows, pct(g.good_rate), g.auc === null ? 'n/a' : g.auc.toFixed(3)]);
  out.push(groups.toString());
  out.push('gating at a threshold (held-out): an answer fails when P(good) < threshold');
  const points = new Table({ ...tableStyle(), head: ['threshold', 'escalated', 'precision (bad among failed)', 'recall (bad caught)', 'good answers failed'] });
  for (const p of m.operating_points) points.push([p.threshold.toFixed(2), pct(p.escalated), pct(p.precision), pct(p.recall), pct(p.false_escalation)]);
  out.push(points.toString());
  return out.join('\n') + '\n';
}
