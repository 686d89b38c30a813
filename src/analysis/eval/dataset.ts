// Recorded routing outcomes (the JSONL format of ../shared/data, see its README): for
// each prompt, how several real models did on it. Shared by `tiergate eval` and the
// replay provider, so that both read a row, build its conversation and price a recorded
// answer in exactly the same way: the baselines' costs and the policy's costs are then
// computed by one rule and can be compared.
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { TiergateError, errorMessage } from '../../common/errors.ts';
import type { ChatMessage, Usage } from '../../plugin-contract/plugin-api.ts';
import { estimateMessagesTokens, estimateTextTokens, messageText } from '../../plugin-contract/tokens.ts';

/** One model's recorded result on one prompt. */
export interface RecordedOutcome {
  /** 0..1, or null when the source has no result for this model on this prompt. */
  score: number | null;
  cost_usd?: number | null;
  input_tokens?: number | null;
  output_tokens?: number | null;
  /** The model's answer text, where the source published it. */
  response?: string;
  output_chars?: number;
  [extra: string]: unknown;
}

export interface DatasetRow {
  id: string;
  source?: string;
  subset?: string;
  split?: string;
  prompt: string | Array<{ role: string; content: string }>;
  outcomes: Record<string, RecordedOutcome>;
  meta?: Record<string, unknown>;
  [extra: string]: unknown;
}

export interface Dataset {
  /** Absolute path, or '(inline)' for rows given in a policy. */
  readonly file: string;
  readonly rows: readonly DatasetRow[];
  readonly byId: ReadonlyMap<string, DatasetRow>;
  /** Every model with at least one outcome, most frequent first. */
  readonly models: readonly string[];
  /** Rows by the key of their conversation (see conversationKey); built on first use. */
  byConversation(): ReadonlyMap<string, DatasetRow[]>;
}

/**
 * The body field that pins a request to one dataset row. Conversations are not unique
 * in real datasets (RouteLLM repeats 105 prompts, a few with different outcomes), so
 * `tiergate eval` names the row; `metadata` would not do, since it never reaches a
 * provider. Without it, the replay provider finds the row by its conversation.
 */
export const ROW_ID_FIELD = 'tiergate_row_id';

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool', 'function']);

/** The conversation of a row: a string prompt is one user message; an array is the messages. */
export function messagesOf(row: DatasetRow): ChatMessage[] {
  if (typeof row.prompt === 'string') return [{ role: 'user', content: row.prompt }];
  return row.prompt.map((m) => ({ role: m.role as ChatMessage['role'], content: m.content }));
}

/** A stable key of a conversation's roles and texts (sha256, hex). */
export function conversationKey(messages: readonly ChatMessage[]): string {
  const hash = createHash('sha256');
  for (const m of messages) hash.update(String(m.role)).update('\u0000').update(messageText(m.content)).update('\u0001');
  return hash.digest('hex');
}

/** The score of a model on a row, or null when the row has none. */
export function scoreOf(row: DatasetRow, model: string): number | null {
  const score = row.outcomes[model]?.score;
  return typeof score === 'number' ? score : null;
}

/**
 * Token counts of a recorded answer: the recorded ones where the dataset has them, else
 * estimated (~4 characters per token) from the prompt and the answer text (or its
 * recorded length). An answer of unknown length counts 0 completion tokens.
 */
export function recordedUsage(messages: readonly ChatMessage[], outcome: RecordedOutcome): { usage: Usage; estimated: boolean } {
  let estimated = false;
  let prompt = outcome.input_tokens;
  if (typeof prompt !== 'number') {
    prompt = estimateMessagesTokens(messages);
    estimated = true;
  }
  let completion = outcome.output_tokens;
  if (typeof completion !== 'number') {
    estimated = true;
    if (typeof outcome.response === 'string') completion = estimateTextTokens(outcome.response);
    else if (typeof outcome.output_chars === 'number') completion = Math.ceil(outcome.output_chars / 4);
    else completion = 0;
  }
  return { usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }, estimated };
}

/** The recorded cost of an outcome, or null when the dataset has none. */
export function recordedCost(outcome: RecordedOutcome | undefined): number | null {
  return typeof outcome?.cost_usd === 'number' && Number.isFinite(outcome.cost_usd) ? outcome.cost_usd : null;
}

function problem(file: string, line: number | undefined, reason: string): TiergateError {
  return new TiergateError('TG_ERR_EVAL_DATA', { reason }, { location: { file: displayFile(file), ...(line !== undefined ? { line } : {}) } });
}

function displayFile(file: string): string {
  if (file === '(inline)') return file;
  const relative = path.relative(process.cwd(), file);
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : file;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Why a parsed line is not a row, or null when it is one. */
function rowProblem(value: unknown): string | null {
  if (!isRecord(value)) return 'a row must be a JSON object';
  if (typeof value.id !== 'string' || value.id === '') return '"id" must be a non-empty string';
  const prompt = value.prompt;
  if (typeof prompt !== 'string') {
    if (!Array.isArray(prompt) || prompt.length === 0) return `row ${value.id}: "prompt" must be a string or a non-empty list of {role, content} messages`;
    for (const [i, m] of prompt.entries()) {
      if (!isRecord(m) || typeof m.content !== 'string' || typeof m.role !== 'string' || !ROLES.has(m.role))
        return `row ${value.id}: prompt[${i}] must be {role, content} with a chat role and text content`;
    }
  }
  if (!isRecord(value.outcomes)) return `row ${value.id}: "outcomes" must be an object of model → {score, …}`;
  for (const [model, outcome] of Object.entries(value.outcomes)) {
    if (!isRecord(outcome)) return `row ${value.id}: outcomes["${model}"] must be an object`;
    const score = outcome.score;
    if (score !== null && (typeof score !== 'number' || !(score >= 0 && score <= 1)))
      return `row ${value.id}: outcomes["${model}"].score must be a number in [0, 1] or null`;
    for (const key of ['cost_usd', 'input_tokens', 'output_tokens', 'output_chars'] as const) {
      const v = outcome[key];
      if (v !== undefined && v !== null && (typeof v !== 'number' || !(v >= 0)))
        return `row ${value.id}: outcomes["${model}"].${key} must be a non-negative number or null`;
    }
    if (outcome.response !== undefined && outcome.response !== null && typeof outcome.response !== 'string')
      return `row ${value.id}: outcomes["${model}"].response must be a string`;
  }
  return null;
}

/** Builds a dataset from rows already parsed; throws TG_ERR_EVAL_DATA for the first bad row or a repeated id. */
export function datasetOf(rows: readonly unknown[], file: string, lines?: readonly number[]): Dataset {
  const byId = new Map<string, DatasetRow>();
  const modelCounts = new Map<string, number>();
  rows.forEach((value, i) => {
    const line = lines?.[i];
    const why = rowProblem(value);
    if (why) throw problem(file, line, lines ? why : `rows[${i}]: ${why}`);
    const row = value as DatasetRow;
    if (byId.has(row.id)) throw problem(file, line, `row id "${row.id}" appears twice; ids must be unique`);
    byId.set(row.id, row);
    for (const model of Object.keys(row.outcomes)) modelCounts.set(model, (modelCounts.get(model) ?? 0) + 1);
  });
  let conversations: Map<string, DatasetRow[]> | null = null;
  return {
    file,
    rows: rows as DatasetRow[],
    byId,
    models: [...modelCounts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([m]) => m),
    byConversation() {
      if (!conversations) {
        conversations = new Map();
        for (const row of rows as DatasetRow[]) {
          const key = conversationKey(messagesOf(row));
          const list = conversations.get(key);
          if (list) list.push(row);
          else conversations.set(key, [row]);
        }
      }
      return conversations;
    },
  };
}

/** Parses JSONL text (blank lines skipped). */
export function parseDataset(text: string, file: string): Dataset {
  const rows: unknown[] = [];
  const lines: number[] = [];
  let line = 0;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    line++;
    const raw = text.slice(start, end).trim();
    if (raw !== '') {
      try {
        rows.push(JSON.parse(raw));
      } catch (err) {
        throw problem(file, line, `not valid JSON: ${errorMessage(err)}`);
      }
      lines.push(line);
    }
    start = end + 1;
  }
  if (rows.length === 0) throw problem(file, undefined, 'the file has no rows');
  return datasetOf(rows, file, lines);
}

// Parsed datasets by file, held weakly: `tiergate eval` and the replay providers of its
// runtimes read the same file and share one parse, while a long-running gateway keeps a
// dataset only as long as a provider uses it.
const cache = new Map<string, { stamp: string; dataset: WeakRef<Dataset> }>();

/** Reads and parses a JSONL dataset (absolute or relative to the working directory). */
export function loadDataset(file: string): Dataset {
  const absolute = path.resolve(file);
  let stamp: string;
  try {
    const stat = statSync(absolute);
    if (!stat.isFile()) throw problem(absolute, undefined, 'not a file');
    stamp = `${stat.size}:${stat.mtimeMs}`;
  } catch (err) {
    if (err instanceof TiergateError) throw err;
    throw problem(absolute, undefined, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : errorMessage(err));
  }
  const cached = cache.get(absolute);
  const hit = cached?.stamp === stamp ? cached.dataset.deref() : undefined;
  if (hit) return hit;
  const dataset = parseDataset(readFileSync(absolute, 'utf8'), absolute);
  cache.set(absolute, { stamp, dataset: new WeakRef(dataset) });
  return dataset;
}
