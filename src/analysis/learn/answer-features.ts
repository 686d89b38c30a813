// What the learned gate reads of an answer: a few dozen named measures of the reply
// against its prompt, computed the same way when `tiergate train --gate` fits the model
// and when the `learned` evaluator serves it (the artifact's spec hash is checked at load).
//
// Why these measures:
// - They need no answer key. Each is something a reviewer would look at: is the final
//   answer where the prompt asked for it, in the form it asked for; does the reply hedge,
//   refuse, correct itself or stop mid-sentence; does its arithmetic check out; does the
//   final number follow from the working.
// - The same cue means different things for different prompts (a one-letter reply is
//   right for a multiple-choice question and wrong for a word problem), so every measure
//   is given twice: once for all prompts and once in the block of the prompt's kind
//   (choice, number, code, json, text). A linear model then learns per-kind weights
//   without a per-kind model.
// - The router's confidence is not a feature: with `gate.decide: cascade` it is combined
//   with this score as independent evidence, and counting it here too would count it twice.
// - Everything is bounded: replies are read up to MAX_SCAN characters and every pattern
//   has bounded quantifiers, so no answer can make scoring slow.
import { createHash } from 'node:crypto';
import {
  choicePrompt,
  detectType,
  extractChoice,
  extractCode,
  extractJson,
  extractNumber,
  sameNumber,
  type AnswerType,
} from '../../plugin-contract/answers.ts';
import { estimateTextTokens } from '../../plugin-contract/tokens.ts';
import type { SparseVector } from './features.ts';

export const ANSWER_FEATURE_VERSION = 1;

export const ANSWER_KINDS = ['choice', 'number', 'code', 'json', 'text'] as const satisfies readonly AnswerType[];

/** The measures, in vector order. `bias` is 1 in every block: the per-kind intercept. */
export const ANSWER_FEATURES = [
  'bias',
  'log_chars',
  'length_ratio',
  'final_found',
  'bare_answer',
  'extra_choices',
  'hedges',
  'refusal',
  'self_correction',
  'truncated',
  'repeated_lines',
  'equations',
  'equations_wrong',
  'any_equation_wrong',
  'final_is_last_result',
  'final_not_last_result',
  'final_not_integer',
  'prompt_numbers_used',
  'final_line_numbers',
  'code_unbalanced',
] as const;

export type AnswerFeature = (typeof ANSWER_FEATURES)[number];

export interface AnswerFeatureSpec {
  version: number;
  kinds: string[];
  features: string[];
}

export function defaultAnswerFeatureSpec(): AnswerFeatureSpec {
  return { version: ANSWER_FEATURE_VERSION, kinds: [...ANSWER_KINDS], features: [...ANSWER_FEATURES] };
}

export function answerSpecHash(spec: AnswerFeatureSpec): string {
  return createHash('sha256')
    .update(JSON.stringify({ version: spec.version, kinds: spec.kinds, features: spec.features }))
    .digest('hex');
}

/** One block for all prompts, then one per kind. */
export function answerDimension(spec: AnswerFeatureSpec): number {
  return spec.features.length * (1 + spec.kinds.length);
}

const MAX_SCAN = 20_000;

function tail(text: string): string {
  return text.length > MAX_SCAN ? text.slice(text.length - MAX_SCAN) : text;
}

const HEDGES =
  /\b(?:maybe|perhaps|possibly|probably|might be|could be|not (?:entirely |completely )?sure|unsure|unclear|it depends|hard to (?:say|tell)|i think|i believe|i guess|cannot be determined|can't be determined|not enough information|ambiguous)\b/gi;
const REFUSAL = /\b(?:i(?:'m| am) (?:sorry|unable|not able)|i (?:can ?not|can't|won't|will not) (?:help|answer|provide|assist|do)|as an ai\b|i apologi[sz]e)/i;
const SELF_CORRECTION =
  /\b(?:wait|actually|correction|let me (?:re-?check|recalculate|reconsider|correct)|i made (?:a|an) (?:mistake|error)|that(?:'s| is) (?:wrong|incorrect))\b/gi;
const TERMINAL = /(?:[.!?)"'`\]}*>]|\d|####\s*\S+|```)\s*$/;

// Arithmetic a reply states: "3 x 60 = 180", "180 * 3 = 540", "$5 + $3 = $8", GSM8K's
// "<<3*60=180>>". Terms are plain numbers; anything with brackets, percentages or
// unknowns is not checked (it is not counted either way).
const TERM = String.raw`\$?\d{1,3}(?:,\d{3})+(?:\.\d+)?|\$?\d{1,12}(?:\.\d{1,8})?`;
const EQUATION = new RegExp(String.raw`(?<![\w.%/])((?:${TERM})(?:\s{0,3}[-+*/x×÷]\s{0,3}(?:${TERM})){1,8})\s{0,3}=\s{0,3}(-?(?:${TERM}))(?![\w%/]|\.\d)`, 'g');
const NUMBER_IN_TEXT = /\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?/g;

function numberOf(written: string): number {
  return Number(written.replace(/[$,\s]/g, ''));
}

/** The value of "a op b op c …" with * and / before + and −, or null when it is not computable. */
export function evaluateArithmetic(expression: string): number | null {
  const tokens = expression.match(/\$?\d{1,3}(?:,\d{3})+(?:\.\d+)?|\$?\d+(?:\.\d+)?|[-+*/x×÷]/g);
  if (!tokens || tokens.length < 3 || tokens.length % 2 === 0) return null;
  const terms: number[] = [numberOf(tokens[0])];
  for (let i = 1; i < tokens.length; i += 2) {
    const op = tokens[i];
    const value = numberOf(tokens[i + 1]);
    if (!Number.isFinite(value)) return null;
    if (op === '*' || op === 'x' || op === '×') terms[terms.length - 1] *= value;
    else if (op === '/' || op === '÷') {
      if (value === 0) return null;
      terms[terms.length - 1] /= value;
    } else {
      terms.push(op === '-' ? -value : value);
    }
  }
  const total = terms.reduce((sum, t) => sum + t, 0);
  return Number.isFinite(total) ? total : null;
}

/** Written results are rounded: 10/3 = 3.33 is right, and so is 7.5 written as 8 when the reply rounds to whole units. */
function agreesWithWritten(computed: number, written: number): boolean {
  if (sameNumber(computed, written)) return true;
  const decimals = Math.min(8, (String(written).split('.')[1] ?? '').length);
  const step = 10 ** -decimals;
  return Math.abs(computed - written) <= step / 2 + 1e-9 * Math.max(1, Math.abs(written));
}

interface Arithmetic {
  checked: number;
  wrong: number;
  lastResult: number | null;
}

export function checkArithmetic(reply: string): Arithmetic {
  let checked = 0;
  let wrong = 0;
  let lastResult: number | null = null;
  for (const match of tail(reply).matchAll(EQUATION)) {
    const computed = evaluateArithmetic(match[1]);
    const written = numberOf(match[2]);
    if (computed === null || !Number.isFinite(written)) continue;
    checked++;
    if (!agreesWithWritten(computed, written)) wrong++;
    lastResult = written;
  }
  return { checked, wrong, lastResult };
}

function numbersIn(text: string): number[] {
  return [...text.matchAll(NUMBER_IN_TEXT)].map((m) => numberOf(m[0])).filter(Number.isFinite);
}

function repeatedLineShare(reply: string): number {
  const lines = reply
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 8);
  if (lines.length < 3) return 0;
  return 1 - new Set(lines).size / lines.length;
}

/** Letters of the prompt's options that the reply names as an answer ("(B)", "B)", "option C", a lone "D"). */
function namedChoices(reply: string, letters: readonly string[]): number {
  const named = new Set<string>();
  for (const match of tail(reply).matchAll(/(?:\(([A-H])\)|\b([A-H])\)|\boption ([A-H])\b|^\s*([A-H])\s*$)/gm)) {
    const letter = match[1] ?? match[2] ?? match[3] ?? match[4];
    if (letter && letters.includes(letter)) named.add(letter);
  }
  return named.size;
}

function bracketsBalanced(code: string): boolean {
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  const stack: string[] = [];
  for (const ch of code) {
    if (ch === '(' || ch === '[' || ch === '{') stack.push(ch);
    else if (ch in pairs) {
      if (stack.pop() !== pairs[ch]) return false;
    }
  }
  return stack.length === 0;
}

const squash = (x: number, scale: number) => Math.min(1, x / scale);

/** The measures of one reply to one prompt, by name, with the kind of answer the prompt asks for. */
export interface MeasuredAnswer {
  kind: AnswerType;
  values: Record<AnswerFeature, number>;
}

export function measureAnswer(prompt: string, reply: string): MeasuredAnswer {
  const text = tail(reply).trim();
  const kind = detectType(prompt, text);
  const promptTokens = estimateTextTokens(prompt);
  const replyTokens = estimateTextTokens(text);
  const options = kind === 'choice' ? choicePrompt(prompt) : null;
  const arithmetic = checkArithmetic(text);
  const final = kind === 'number' ? extractNumber(text) : null;
  const code = kind === 'code' ? extractCode(text) : null;
  let finalFound = text.length > 0;
  if (kind === 'choice') finalFound = extractChoice(text, options) !== null;
  else if (kind === 'number') finalFound = final !== null;
  else if (kind === 'code') finalFound = code !== null;
  else if (kind === 'json') finalFound = extractJson(text) !== undefined;
  const lastLine =
    text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .pop() ?? '';
  const promptNumbers = new Set(numbersIn(tail(prompt)));
  const replyNumbers = new Set(numbersIn(text));
  let used = 0;
  for (const n of promptNumbers) if (replyNumbers.has(n)) used++;
  const values: Record<AnswerFeature, number> = {
    bias: 1,
    log_chars: Math.log1p(text.length) / 10,
    length_ratio: Math.max(-1, Math.min(1, Math.log((replyTokens + 1) / (promptTokens + 1)) / 5)),
    final_found: finalFound ? 1 : 0,
    bare_answer: text.length > 0 && text.length <= 12 ? 1 : 0,
    extra_choices: options ? squash(Math.max(0, namedChoices(text, options.letters) - 1), 3) : 0,
    hedges: squash((text.match(HEDGES) ?? []).length, 3),
    refusal: REFUSAL.test(text) ? 1 : 0,
    self_correction: squash((text.match(SELF_CORRECTION) ?? []).length, 2),
    truncated: text.length > 200 && !TERMINAL.test(text) ? 1 : 0,
    repeated_lines: repeatedLineShare(text),
    equations: squash(Math.log1p(arithmetic.checked), 3),
    equations_wrong: arithmetic.checked > 0 ? arithmetic.wrong / arithmetic.checked : 0,
    any_equation_wrong: arithmetic.wrong > 0 ? 1 : 0,
    final_is_last_result: final !== null && arithmetic.lastResult !== null && sameNumber(final, arithmetic.lastResult) ? 1 : 0,
    final_not_last_result: final !== null && arithmetic.lastResult !== null && !sameNumber(final, arithmetic.lastResult) ? 1 : 0,
    final_not_integer: final !== null && !Number.isInteger(final) ? 1 : 0,
    prompt_numbers_used: promptNumbers.size > 0 ? used / promptNumbers.size : 0,
    final_line_numbers: squash(new Set(numbersIn(lastLine)).size, 4),
    code_unbalanced: code !== null && !bracketsBalanced(code.normalised) ? 1 : 0,
  };
  return { kind, values };
}

/** The measures as the model's input: the shared block, then the prompt kind's block. */
export function answerVector(spec: AnswerFeatureSpec, prompt: string, reply: string): SparseVector {
  return vectorOfMeasures(spec, measureAnswer(prompt, reply));
}

export function vectorOfMeasures(spec: AnswerFeatureSpec, { kind, values }: MeasuredAnswer): SparseVector {
  const width = spec.features.length;
  const block = spec.kinds.indexOf(kind) + 1;
  const indices: number[] = [];
  const numbers: number[] = [];
  spec.features.forEach((name, i) => {
    const value = values[name as AnswerFeature] ?? 0;
    if (value === 0) return;
    indices.push(i);
    numbers.push(value);
    if (block > 0) {
      indices.push(block * width + i);
      numbers.push(value);
    }
  });
  return { indices: Int32Array.from(indices), values: Float64Array.from(numbers) };
}
