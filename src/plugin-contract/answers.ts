// The final answer of a model's reply, by answer type, and whether two of them agree.
// No model, no network: shared by the `agreement` evaluator (do two answers agree?) and
// the learned gate's answer features (is the final answer where the prompt wants it?).
//
// Why it reads answers this way:
// - Two models rarely word the same answer the same way, so the comparison is on the
//   *final* answer only: the letter of a multiple-choice answer, the last number of a
//   calculation, the code without its comments and layout, the JSON value, or, for free
//   text, a token overlap that ignores case, punctuation and articles.
// - An answer whose final answer cannot be found (a choice prompt answered with no
//   letter, a number question answered with no number) never agrees: the gate cannot
//   confirm it, and an unconfirmed cheap answer should go up the ladder, not through.
// - Every pattern is a plain regex with bounded quantifiers over at most MAX_SCAN
//   characters of the reply, so no answer can make extraction slow.

export const ANSWER_TYPES = ['auto', 'choice', 'number', 'code', 'json', 'text'] as const;
export type AnswerTypeOption = (typeof ANSWER_TYPES)[number];
export type AnswerType = Exclude<AnswerTypeOption, 'auto'>;

/** Replies are read up to this many characters (the end matters most: it is kept). */
const MAX_SCAN = 20_000;

function bounded(text: string): string {
  return text.length > MAX_SCAN ? text.slice(text.length - MAX_SCAN) : text;
}

// ---------------------------------------------------------------------------------
// Multiple choice

/** "A) dry palms", "(B) wet palms", "C. oil", "D: lotion" at the start of a line. */
const OPTION_LINE = /^[ \t]*\(?([A-Ha-h])[).:][ \t]+(\S.{0,300})$/gm;
const CHOICE_CUE =
  /\b(?:multiple[- ]choice|single choice|letter of the (?:correct|right|best) (?:answer|option|choice)|(?:choose|pick|select) (?:one|the correct|the best|the right)(?: option| answer)?|which of the following)\b/i;

export interface ChoicePrompt {
  /** The option letters of the last question of the prompt, upper case, in order. */
  letters: string[];
  /** Option texts by letter, normalised (an answer that repeats an option's text names it). */
  texts: Map<string, string>;
}

/**
 * The options of the prompt's last question, or null when the prompt does not look like
 * a multiple-choice question (fewer than two lettered options in sequence from A, and no
 * choice wording). Few-shot prompts carry earlier questions with their own options: the
 * last run of options that starts at A is the one being asked.
 */
export function choicePrompt(prompt: string): ChoicePrompt | null {
  const text = bounded(prompt);
  let run: Array<[string, string]> = [];
  let last: Array<[string, string]> = [];
  for (const match of text.matchAll(OPTION_LINE)) {
    const letter = match[1].toUpperCase();
    const expected = String.fromCharCode('A'.charCodeAt(0) + run.length);
    if (letter === 'A') run = [[letter, match[2]]];
    else if (letter === expected) run.push([letter, match[2]]);
    else run = [];
    if (run.length >= 2) last = [...run];
  }
  if (last.length >= 2) return { letters: last.map(([l]) => l), texts: new Map(last.map(([l, t]) => [l, normaliseText(t)])) };
  if (CHOICE_CUE.test(text)) return { letters: ['A', 'B', 'C', 'D', 'E'], texts: new Map() };
  return null;
}

/**
 * The chosen letter: a reply that is only a letter ("B", "(B)", "**B**", "B."), a stated
 * answer ("Answer: B", "the answer is (B)", "correct option is B"), a reply that opens
 * with a lettered option ("B) Dennis", "B. because …"), or a reply that is exactly one
 * option's text ("Dennis"). Letters outside the prompt's options are not answers.
 */
export function extractChoice(reply: string, prompt: ChoicePrompt | null): string | null {
  const letters = prompt?.letters ?? ['A', 'B', 'C', 'D', 'E'];
  const valid = (letter: string | undefined): string | null => {
    const upper = letter?.toUpperCase();
    return upper !== undefined && letters.includes(upper) ? upper : null;
  };
  const text = bounded(reply).trim();
  const only = /^[*_"'`\s]{0,4}\(?([A-Ha-h])\)?[*_"'`\s]{0,4}[.:)]?[*_"'`\s]{0,4}$/.exec(text);
  if (only) return valid(only[1]);
  // The last stated answer wins: models often reason first and state the answer at the end.
  const stated = [
    ...text.matchAll(
      /\b(?:answer|option|choice)(?: is| would be| should be)?(?: probably| most likely)?[*_\s]{0,3}[:=-]?[*_\s]{0,3}(?:option |choice |letter )?\(?\b([A-H])\b\)?/gi,
    ),
  ];
  for (let i = stated.length - 1; i >= 0; i--) {
    const letter = valid(stated[i][1]);
    // "answer is a …" in prose is an article, not option A: lower-case letters only count in upper case.
    if (letter && stated[i][1] === letter) return letter;
  }
  const opening = /^[*_\s]{0,4}\(?([A-H])(?:\)|\.|:|\s*\n|\s*$)/.exec(text);
  if (opening) {
    const letter = valid(opening[1]);
    if (letter) return letter;
  }
  if (prompt && prompt.texts.size > 0) {
    const normalised = normaliseText(text);
    for (const [letter, option] of prompt.texts) if (option !== '' && option === normalised) return letter;
  }
  return null;
}

// ---------------------------------------------------------------------------------
// Numbers

const NUMBER_SOURCE = String.raw`-?\$?\s?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\$?\s?\d+(?:\.\d+)?(?:\s?/\s?\d+)?`;
const NUMBER = new RegExp(NUMBER_SOURCE, 'g');
const MARKED = new RegExp(String.raw`####\s*(${NUMBER_SOURCE})`, 'g');
const BOXED = new RegExp(String.raw`\\boxed\{\s*(${NUMBER_SOURCE})`, 'g');
const STATED_NUMBER = new RegExp(
  String.raw`\banswer(?: is| would be| should be)?[*_\s]{0,3}[:=]?[*_\s]{0,3}(?:approximately |about )?(${NUMBER_SOURCE})`,
  'gi',
);

/** A number as written ("1,234", "$5", "7.50", "3/4") as its value, or null. */
export function parseNumber(written: string): number | null {
  const clean = written.replace(/[$,\s]/g, '');
  const fraction = /^(-?\d+)\/(\d+)$/.exec(clean);
  if (fraction) {
    const denominator = Number(fraction[2]);
    return denominator === 0 ? null : Number(fraction[1]) / denominator;
  }
  const value = Number(clean);
  return Number.isFinite(value) ? value : null;
}

function lastOf(pattern: RegExp, text: string, group: number): string | undefined {
  let last: string | undefined;
  for (const match of text.matchAll(pattern)) last = match[group];
  return last;
}

/**
 * The final number: after the last "####" (GSM8K's marker), else in the last \boxed{},
 * else the last stated "answer is N", else the last number of the reply. Thousands
 * separators, currency signs and trailing zeros do not matter ("1,000.00" is 1000).
 */
export function extractNumber(reply: string): number | null {
  const text = bounded(reply);
  const written = lastOf(MARKED, text, 1) ?? lastOf(BOXED, text, 1) ?? lastOf(STATED_NUMBER, text, 1) ?? lastOf(NUMBER, text, 0);
  return written === undefined ? null : parseNumber(written);
}

/** Equal up to rounding noise (0.1 + 0.2 is 0.3), relative for large values. */
export function sameNumber(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));
}

// ---------------------------------------------------------------------------------
// Code

const FENCE = /```[ \t]*([\w+#.-]{0,20})[^\n]{0,100}\n([\s\S]*?)```/g;

export interface Code {
  /** The fence's language tag, lower case ('' when none was given). */
  language: string;
  /** The code without comments, blank lines and layout. */
  normalised: string;
  tokens: string[];
}

/** Language tags that name the same language. */
const LANGUAGE_ALIASES: Readonly<Record<string, string>> = { py: 'python', python3: 'python', js: 'javascript', ts: 'typescript', sh: 'bash', shell: 'bash' };

/** Whether the reply holds fenced code (what `auto` looks for). */
export function hasFencedCode(reply: string): boolean {
  FENCE.lastIndex = 0;
  return FENCE.test(bounded(reply));
}

/**
 * The code of a reply: its fenced blocks (all of them, in order), or the whole reply
 * when it has none. Comments (#, //, /* *\/, docstrings), blank lines and runs of spaces
 * go: they change nothing the code does.
 */
export function extractCode(reply: string): Code | null {
  const text = bounded(reply);
  const blocks = [...text.matchAll(FENCE)];
  const language = blocks.map((b) => b[1].toLowerCase()).find((l) => l !== '') ?? '';
  const source = blocks.length > 0 ? blocks.map((b) => b[2]).join('\n') : text;
  const normalised = source
    .replace(/("""|''')[\s\S]*?\1/g, '')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|\s)(?:#|\/\/)[^\n]*/g, '$1')
    .split('\n')
    .map((line) => line.replace(/\s+/g, ' ').trim())
    .filter((line) => line !== '')
    .join('\n');
  if (normalised === '') return null;
  return { language: LANGUAGE_ALIASES[language] ?? language, normalised, tokens: normalised.match(/[A-Za-z_]\w*|\d+(?:\.\d+)?|[^\s\w]/g) ?? [] };
}

// ---------------------------------------------------------------------------------
// JSON

/**
 * The JSON value of a reply: the whole reply, else a ```json fenced block, else the
 * first {...} or [...] span that parses. undefined when there is none.
 */
export function extractJson(reply: string): unknown {
  const text = bounded(reply).trim();
  const attempts = [text];
  for (const block of text.matchAll(FENCE)) attempts.push(block[2]);
  const open = text.search(/[[{]/);
  if (open >= 0) attempts.push(text.slice(open, Math.max(text.lastIndexOf('}'), text.lastIndexOf(']')) + 1));
  for (const attempt of attempts) {
    try {
      const value: unknown = JSON.parse(attempt);
      if (typeof value === 'object' && value !== null) return value;
    } catch {
      // Not JSON: the next place JSON could be.
    }
  }
  return undefined;
}

/** JSON text with object keys sorted: two values are structurally equal when these are. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

// ---------------------------------------------------------------------------------
// Free text

const ARTICLES = new Set(['a', 'an', 'the']);

/** Lower case, no accents, no punctuation, no articles, single spaces. */
export function normaliseText(text: string): string {
  return tokens(text).join(' ');
}

function tokens(text: string): string[] {
  return bounded(text)
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((t) => t !== '' && !ARTICLES.has(t));
}

/** Token F1 of two token lists (SQuAD's answer overlap): 1 for the same words, 0 for none shared. */
export function tokenF1(a: readonly string[], b: readonly string[]): number {
  if (a.length === 0 && b.length === 0) return 1;
  if (a.length === 0 || b.length === 0) return 0;
  const counts = new Map<string, number>();
  for (const t of a) counts.set(t, (counts.get(t) ?? 0) + 1);
  let common = 0;
  for (const t of b) {
    const n = counts.get(t) ?? 0;
    if (n > 0) {
      common++;
      counts.set(t, n - 1);
    }
  }
  if (common === 0) return 0;
  const precision = common / b.length;
  const recall = common / a.length;
  return (2 * precision * recall) / (precision + recall);
}

// ---------------------------------------------------------------------------------
// The type, and the comparison

/** A reply whose last line ends in a number, or that marks or states a numeric answer. */
const ENDS_IN_NUMBER = new RegExp(String.raw`(?:${NUMBER_SOURCE})[%*_.\s]{0,4}$`);
const NUMERIC_MARKER = /####\s*-?\$?\d|\\boxed\{\s*-?\d|\banswer(?: is)?[*_\s]{0,3}[:=]?[*_\s]{0,3}-?\$?\d/i;

/** A question whose answer is a quantity. */
const QUANTITY_QUESTION = /\bhow (?:many|much|long|far|old)\b|\b(?:calculate|compute)\b|\bwhat is the (?:total|sum|product|difference|value|number)\b/i;

/**
 * What kind of final answer to compare, from the prompt and the replies: a
 * multiple-choice prompt → choice; fenced code in the first reply → code (json when the
 * fence says json); a first reply that is JSON → json; a reply that ends in a number or
 * marks one ("#### 42", "the answer is 42"), or a quantity question answered with a
 * number → number; anything else → text. Either reply can show the number: one model
 * writes "#### 42" where the other writes "42 eggs."
 */
export function detectType(prompt: string, first: string, second = ''): AnswerType {
  if (choicePrompt(prompt)) return 'choice';
  const text = bounded(first).trim();
  if (hasFencedCode(text)) {
    FENCE.lastIndex = 0;
    const fence = FENCE.exec(text);
    return fence?.[1].toLowerCase() === 'json' ? 'json' : 'code';
  }
  if (/^[[{]/.test(text) && extractJson(text) !== undefined) return 'json';
  const replies = [text, bounded(second).trim()];
  if (replies.some((r) => NUMERIC_MARKER.test(r) || ENDS_IN_NUMBER.test(r))) return 'number';
  if (QUANTITY_QUESTION.test(bounded(prompt)) && /\d/.test(text)) return 'number';
  return 'text';
}

export interface Comparison {
  type: AnswerType;
  /** The first reply's final answer, short and printable; null when none was found. */
  first: string | null;
  second: string | null;
  agree: boolean;
  /** For code and text: the token overlap the decision was made on. */
  similarity?: number;
}

/** Printable, and short enough for a decision line. */
function shown(value: string): string {
  const flat = value.replace(/\s+/g, ' ').trim();
  return flat.length > 80 ? `${flat.slice(0, 80)}…` : flat;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/**
 * Whether two replies to the same prompt give the same final answer. `similarity` is
 * the token overlap from which two code or text answers count as the same.
 */
export function compareAnswers(type: AnswerType, prompt: string, first: string, second: string, similarity: number): Comparison {
  switch (type) {
    case 'choice': {
      const options = choicePrompt(prompt);
      const a = extractChoice(first, options);
      const b = extractChoice(second, options);
      return { type, first: a, second: b, agree: a !== null && a === b };
    }
    case 'number': {
      const a = extractNumber(first);
      const b = extractNumber(second);
      return { type, first: a === null ? null : String(a), second: b === null ? null : String(b), agree: a !== null && b !== null && sameNumber(a, b) };
    }
    case 'json': {
      const a = extractJson(first);
      const b = extractJson(second);
      const ca = a === undefined ? null : canonicalJson(a);
      const cb = b === undefined ? null : canonicalJson(b);
      return { type, first: ca === null ? null : shown(ca), second: cb === null ? null : shown(cb), agree: ca !== null && ca === cb };
    }
    case 'code': {
      const a = extractCode(first);
      const b = extractCode(second);
      if (!a || !b) return { type, first: a ? shown(a.normalised) : null, second: b ? shown(b.normalised) : null, agree: false };
      // Two languages are two different programs, however alike their tokens.
      const sameLanguage = a.language === '' || b.language === '' || a.language === b.language;
      const overlap = a.normalised === b.normalised ? 1 : tokenF1(a.tokens, b.tokens);
      return { type, first: shown(a.normalised), second: shown(b.normalised), agree: sameLanguage && overlap >= similarity, similarity: round(overlap) };
    }
    case 'text': {
      const a = tokens(first);
      const b = tokens(second);
      const overlap = tokenF1(a, b);
      return {
        type,
        first: shown(a.join(' ')) || null,
        second: shown(b.join(' ')) || null,
        agree: a.length > 0 && overlap >= similarity,
        similarity: round(overlap),
      };
    }
  }
}
