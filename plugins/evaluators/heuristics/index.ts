// Cheap checks for obviously bad answers: no network, no model, a few regexes per
// answer. Each check that fires multiplies the score by (1 - its penalty), so a clean
// answer scores 1 and a refusal (0.1), a truncation (0.3) or a hedge (0.4) falls below
// the usual gate thresholds on its own.
//
// Where each check looks, and why:
// - refusal: the opening of the answer only. A refusal says so up front; a long, useful
//   answer that mentions "I cannot guarantee…" in passing is not a refusal.
// - hedge: explicit uncertainty ("I'm not entirely sure", "I don't know") anywhere; soft
//   hedges ("it might be", "perhaps") only when they are dense, since careful, correct
//   answers use them now and then, and never inside a JSON answer, where "maybe" is a
//   value (a label), not the writer's voice.
// - repetition: the share of word 6-grams that already occurred earlier in the answer; a
//   generation loop repeats whole phrases, ordinary prose and code almost never do.
// - too short: length alone says nothing. Many of the best answers are short: a choice
//   letter ("D", "(B)", "Answer: B"), a number, a JSON value ({"ok":true}), a label
//   ("negative"), a line of code. Gated at the shipped 0.8, penalising them escalated
//   correct cheap answers and paid the strong tier for nothing. So a short answer is
//   penalised only when it carries no answer at all (an acknowledgement, an apology, a
//   preamble whose content never came: "Sure!", "Here is the code:"), or when it is a bare
//   phrase and the prompt asked for an elaboration ("explain", "describe", "write a
//   post…"). An answer of a recognisable form (JSON, a number, a choice, code) is never
//   too short, nor is any short answer the prompt (or the policy's `short_ok_when`) asks for.
import {
  isTruthy,
  messageText,
  policyPattern,
  type ChatMessage,
  type CompiledExpression,
  type EvalInput,
  type Evaluation,
  type Evaluator,
  type EvaluatorModule,
  type OptionsFrom,
} from 'tiergate/plugin';

/** A built-in RegExp, or a policy's pattern on RE2 (LinearRegExp): both answer exec. */
type Pattern = Pick<RegExp, 'exec'>;

type Check = 'empty' | 'filtered' | 'truncated' | 'refusal' | 'hedge' | 'repetition' | 'too_short';
const CHECKS: readonly Check[] = ['empty', 'filtered', 'truncated', 'refusal', 'hedge', 'repetition', 'too_short'];

/** Score multiplier of each check is (1 - penalty). Documented in the README table. */
const DEFAULT_PENALTIES: Readonly<Record<Check, number>> = {
  empty: 1, // nothing to serve
  filtered: 1, // finish_reason content_filter: the provider withheld the answer
  truncated: 0.7, // finish_reason length: the answer stops mid-way
  refusal: 0.9, // a stronger model often answers what a weaker one refuses
  hedge: 0.6, // the model says it does not know
  repetition: 0.7, // a generation loop
  too_short: 0.4, // a short non-answer: 0.6, below the shipped 0.8 gate, above a 0.5 one
};

const DEFAULT_MIN_CHARS = 20;
const DEFAULT_MAX_REPEATED_SHARE = 0.4;
/** Refusals are looked for in this many characters at the start of the answer. */
const REFUSAL_WINDOW = 300;
const REPETITION_N = 6;
/** Below this many words the n-gram statistics mean nothing. */
const REPETITION_MIN_WORDS = 40;

// Apostrophes are normalised to ' before matching, so one pattern covers ’ too.
const CANT = "(?:can't|cannot|can not|won't|will not|am unable to|'m unable to|am not able to|'m not able to)";
const BUILTIN_REFUSALS: readonly RegExp[] = [
  new RegExp(`\\bI(?:'m| am) (?:sorry|afraid),? (?:but )?I ${CANT}`, 'i'),
  new RegExp(`\\bI ${CANT} (?:help|assist|provide|comply|do that|answer|fulfil|fulfill|support|engage|give|share|create|write)\\b`, 'i'),
  new RegExp(`\\bas an AI(?: language model| model| assistant)?,? I (?:${CANT}|don't|do not|am not|'m not)\\b`, 'i'),
  /\bI must (?:respectfully )?(?:decline|refuse)\b/i,
  /\bI(?:'m| am) not (?:allowed|permitted) to\b/i,
  /\b(?:this|that|your) request (?:violates|goes against|is against)\b/i,
  // An answer that is nothing but an apology ("I apologize"); "I'm sorry to hear that…"
  // opens many good support answers, so an apology alone is matched only as the whole text.
  /^\s*(?:I(?:'m| am) sorry|I apologi[sz]e|(?:my )?apologies|sorry)[\s,.!]*$/i,
];

// Explicit statements of not knowing: one is enough.
const BUILTIN_HEDGES: readonly RegExp[] = [
  /\bI(?:'m| am) not (?:entirely |completely |totally |really |quite |fully |100% )?(?:sure|certain|confident)\b/i,
  /\bI(?:'m| am) unsure\b/i,
  /\bI (?:don't|do not) (?:really )?know\b/i,
  /\bI (?:could|might|may) be (?:wrong|mistaken)\b/i,
  /\bI ${CANT} be (?:sure|certain)\b/i,
  /\b(?:it's|it is) (?:hard|difficult|impossible) to (?:say|tell|know)\b/i,
  /\bI have no (?:idea|way of knowing)\b/i,
];

// Soft hedges: fine now and then, a problem when they carry the answer.
const SOFT_HEDGE = /\b(?:it (?:might|may|could) be|perhaps|possibly|maybe|I (?:think|guess|believe|suppose))\b/gi;
/** Soft hedges fire the check at this many per word, and at least two of them. */
const SOFT_HEDGE_DENSITY = 1 / 30;

// Prompts that ask for a label, a letter, a yes/no: a short answer is what they want.
const SHORT_ANSWER_CUE =
  /\b(?:classify|classification|categori[sz]e|categories|label|sentiment|which category|tag (?:this|it)|spam|yes or no|yes\/no|true or false|one word|single word|one letter|single letter|single choice|(?:only|just) (?:the |a |one )?(?:letter|number|word|label|option|choice|name|answer)|answer with (?:only|just)|without (?:any )?explanation|no explanation)\b/i;

// Prompts that ask for a letter: then a short answer that is not one is not an answer
// (a fragment cut off after two words, "I do", is how a weak model fails these).
const CHOICE_CUE =
  /\b(?:(?:one|single|only the|just the|only a|just a) letter|letter of the (?:correct|right|best) (?:answer|option|choice)|single choice\s+from\s+["'(]?[A-J]\b)/i;

// A translation is as short as its source, and any word ("Sure", "Thanks") may be one.
const TRANSLATION_CUE = /\btranslat(?:e|ion)\b/i;

// Prompts that ask for an elaboration: a bare word or phrase does not answer them. The
// verbs count as requests only at the start of a sentence ("Explain why…", "Can you
// describe…"), so that "Which statement best describes…" is not taken for one.
const ELABORATION_CUE = new RegExp(
  String.raw`(?:^|[.!?:;]\s+|\n\s*)(?:(?:please|now|then|also|and)\s+|(?:can|could|would|will) you (?:please )?)?` +
    String.raw`(?:explain|describe|discuss|elaborate|tell me (?:about|more)|walk me through|compare|contrast|analy[sz]e|summari[sz]e|outline|write|draft|compose|list|show me how|give me (?:\d+|a few|some|several|an? (?:overview|summary|explanation)))\b` +
    String.raw`|\b(?:step[- ]by[- ]step|in detail|in depth)\b`,
  'i',
);

// A short answer that carries no answer: an acknowledgement, a greeting, an apology, or a
// preamble ("Here is the code:") whose content never came. Matched on the whole text.
const CONTENT_FREE =
  /^(?:(?:sure|certainly|of course|absolutely|got it|understood|thanks|thank you|hello|hi|hey|hmm+|um+|i apologi[sz]e|(?:my )?apologies|sorry|let me (?:see|check|think)|one moment)[\s.!,…]*)+$|:\s*$/i;

// A short answer that stops mid-phrase: on a comma, a dash, an open bracket, or a word that
// cannot end one ("Based on the", "a mix of"). Particles that end labels ("Log in", "Turned
// on") and auxiliaries that end elliptical answers ("Yes, we do") are not in the list.
// The article "a" only in lower case: "Vitamin A" and "Plan A" are answers.
const FRAGMENT =
  /(?:[,([{\u2013\u2014-]|\b(?:[Tt]he|[Aa]n|[Oo]f|[Aa]nd|[Oo]r|[Bb]ut|[Bb]ecause|[Tt]han|[Ww]hether|[Ww]ith|[Ff]rom|[Mm]y|[Yy]our|[Tt]heir|[Oo]ur)|(?<![\w'])a)$/;

// Forms that are complete answers however short. Each is tested on the trimmed answer.
// A choice: "D", "(B)", "B)", "B (brick)", "Answer: B", "The answer is (C).", "Option A".
const CHOICE =
  /^(?:(?:[Tt]he )?(?:correct |final |right )?(?:[Aa]nswer|ANSWER|[Oo]ption|[Cc]hoice)(?: is)?\s*[:-]?\s*)?[([]?[A-J](?:(?:[)\].:]+|(?=\s+\())(?:\s+\S.*)?)?$/;
// Code or a formula: brackets, operators, assignments or a code fence. Prose this short has none.
const CODE = /```|`[^`]+`|[{}[\];=<>]|=>|::|\w\(.*\)|^\s*(?:def|return|import|select|function|const|let|var|class|print)\b/i;

type ShortForm = 'json' | 'number' | 'choice' | 'code';

/** The form of a short answer that answers on its own, or null for a bare phrase. */
function shortForm(trimmed: string): ShortForm | null {
  if (isJson(trimmed)) return 'json';
  if (CHOICE.test(trimmed)) return 'choice';
  // A number, a quantity, a date, an amount: the digits are the answer.
  if (/\d/.test(trimmed)) return 'number';
  if (CODE.test(trimmed)) return 'code';
  return null;
}

/** True when the whole text is a JSON object or array (a bare scalar is judged as text). */
function isJson(trimmed: string): boolean {
  const first = trimmed[0];
  if (first !== '{' && first !== '[') return false;
  try {
    JSON.parse(trimmed);
    return true;
  } catch {
    return false;
  }
}

const penaltySchema = { type: 'number', minimum: 0, maximum: 1 } as const;

/** A penalty schema per check, typed by check, so that the derived options type names every check. */
function penaltyProperties(): Record<Check, typeof penaltySchema & { description: string }> {
  const properties = {} as Record<Check, typeof penaltySchema & { description: string }>;
  for (const check of CHECKS) properties[check] = { ...penaltySchema, description: `Penalty of the ${check} check (default ${DEFAULT_PENALTIES[check]}).` };
  return properties;
}

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    min_chars: {
      type: 'integer',
      minimum: 0,
      default: DEFAULT_MIN_CHARS,
      description:
        'Below this many characters (trimmed) an answer is looked at as a short one: it fails too_short only when it carries no answer ("Sure!", a preamble), stops mid-phrase, is not the letter the prompt asks for, or is a bare phrase where the prompt asks for an elaboration. JSON, numbers, choices and code always pass.',
    },
    short_ok_when: {
      type: 'string',
      minLength: 1,
      'x-jsonata': true,
      description:
        'JSONata over {request, response, answer, finish_reason, features, model, messages}: when it holds, a short answer is never penalised. Given, it replaces the prompt cues that excuse a short answer (a request for a label, a letter, yes/no, a translation).',
    },
    refusal_patterns: {
      type: 'array',
      items: { type: 'string', minLength: 1 },
      description:
        'Extra refusal regexes (case-insensitive; matched in linear time by RE2: no lookaround or backreferences), looked for in the first 300 characters of the answer, in addition to the built-in list.',
    },
    hedge_patterns: {
      type: 'array',
      items: { type: 'string', minLength: 1 },
      description: 'Extra hedge regexes (case-insensitive, RE2 as refusal_patterns), looked for anywhere in the answer, in addition to the built-in list.',
    },
    max_repeated_share: {
      type: 'number',
      exclusiveMinimum: 0,
      maximum: 1,
      default: DEFAULT_MAX_REPEATED_SHARE,
      description: 'The repetition check fires when at least this share of the word 6-grams of an answer (of 40+ words) repeat earlier ones.',
    },
    penalties: {
      type: 'object',
      additionalProperties: false,
      description: 'Per-check penalty in [0, 1]: a triggered check multiplies the score by (1 - penalty); 0 turns the check off.',
      properties: penaltyProperties(),
    },
  },
} as const;

type HeuristicsOptions = OptionsFrom<typeof optionsSchema>;

interface Finding {
  check: Check;
  penalty: number;
  /** A short excerpt or measure that shows why; never the whole answer. */
  evidence?: string | number;
}

interface Answer {
  text: string;
  hasToolCalls: boolean;
  finishReason: string | null;
  refusalField: string | null;
}

function answerOf(input: EvalInput): Answer {
  const choice = input.response.choices?.[0];
  const message = choice?.message;
  return {
    text: typeof message?.content === 'string' ? message.content : '',
    hasToolCalls: Array.isArray(message?.tool_calls) && message.tool_calls.length > 0,
    finishReason: choice?.finish_reason ?? null,
    refusalField: typeof message?.refusal === 'string' && message.refusal.trim() !== '' ? message.refusal : null,
  };
}

function excerpt(text: string, max = 60): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length <= max ? oneLine : oneLine.slice(0, max - 1) + '…';
}

function firstMatch(patterns: readonly Pattern[], text: string): string | null {
  for (const pattern of patterns) {
    const m = pattern.exec(text);
    if (m) return m[0];
  }
  return null;
}

/** Share of word n-grams that already occurred earlier in the text (0 for short texts). */
function repeatedShare(text: string, n = REPETITION_N): number {
  const words = text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  if (words.length < REPETITION_MIN_WORDS) return 0;
  const seen = new Set<string>();
  let repeated = 0;
  const total = words.length - n + 1;
  for (let i = 0; i < total; i++) {
    const gram = words.slice(i, i + n).join(' ');
    if (seen.has(gram)) repeated++;
    else seen.add(gram);
  }
  return repeated / total;
}

/** The system prompts and the last user message: where "answer with one word" would be said. */
function instructionText(messages: readonly ChatMessage[]): string {
  const parts = messages.filter((m) => m.role === 'system' || m.role === 'developer').map((m) => messageText(m.content));
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i].role === 'user') {
      parts.push(messageText(messages[i].content));
      break;
    }
  }
  return parts.join('\n');
}

/** What JSONata options see; the same shape as the jsonata evaluator's input. */
function expressionInput(input: EvalInput, answer: Answer): Record<string, unknown> {
  return {
    request: input.request,
    response: input.response,
    answer: answer.text,
    finish_reason: answer.finishReason,
    features: input.features,
    model: input.model,
    // At the root too, so tiergate's $lastUserMessage() and friends work as in routing.
    messages: input.request.messages,
  };
}

/** A policy's patterns, on RE2: one that backtracks on a long answer would hold every request. */
function compilePatterns(
  patterns: readonly string[] | undefined,
  key: string,
  optionError: (path: ReadonlyArray<string | number>, message: string) => Error,
): Pattern[] {
  return (patterns ?? []).map((source, i) => {
    try {
      return policyPattern(source, 'i');
    } catch (err) {
      throw optionError([key, i], (err as Error).message);
    }
  });
}

class HeuristicsEvaluator implements Evaluator {
  readonly #minChars: number;
  readonly #maxRepeatedShare: number;
  readonly #penalties: Readonly<Record<Check, number>>;
  readonly #refusals: readonly Pattern[];
  readonly #hedges: readonly Pattern[];
  readonly #shortOk: CompiledExpression | null;

  constructor(options: Readonly<HeuristicsOptions>, refusals: Pattern[], hedges: Pattern[], shortOk: CompiledExpression | null) {
    this.#minChars = options.min_chars ?? DEFAULT_MIN_CHARS;
    this.#maxRepeatedShare = options.max_repeated_share ?? DEFAULT_MAX_REPEATED_SHARE;
    this.#penalties = { ...DEFAULT_PENALTIES, ...options.penalties };
    this.#refusals = [...BUILTIN_REFUSALS, ...refusals];
    this.#hedges = [...BUILTIN_HEDGES, ...hedges];
    this.#shortOk = shortOk;
  }

  async evaluate(input: EvalInput, _signal: AbortSignal): Promise<Evaluation> {
    const answer = answerOf(input);
    const text = answer.text.replace(/[\u2018\u2019\u02bc]/g, "'");
    const trimmed = text.trim();
    const findings: Finding[] = [];
    const details: Record<string, unknown> = { chars: trimmed.length, finish_reason: answer.finishReason };
    const found = (check: Check, evidence?: string | number) => {
      const penalty = this.#penalties[check];
      if (penalty > 0) findings.push({ check, penalty, ...(evidence !== undefined ? { evidence } : {}) });
    };

    if (answer.finishReason === 'content_filter') found('filtered');
    if (answer.finishReason === 'length') found('truncated');
    if (answer.refusalField) found('refusal', excerpt(answer.refusalField));

    if (trimmed === '') {
      // A tool call is an answer; an empty message without one is not.
      if (!answer.hasToolCalls && !answer.refusalField) found('empty');
    } else {
      const refusal = answer.refusalField ? null : firstMatch(this.#refusals, text.slice(0, REFUSAL_WINDOW));
      if (refusal) found('refusal', excerpt(refusal));

      const hedge = firstMatch(this.#hedges, text);
      const soft = hedge || isJson(trimmed) ? [] : (text.match(SOFT_HEDGE) ?? []);
      const words = trimmed.split(/\s+/).length;
      if (hedge) found('hedge', excerpt(hedge));
      else if (soft.length >= 2 && soft.length / words >= SOFT_HEDGE_DENSITY) found('hedge', `${soft.length} soft hedges in ${words} words`);

      const share = repeatedShare(text);
      if (share >= this.#maxRepeatedShare) found('repetition', Math.round(share * 100) / 100);

      if (trimmed.length < this.#minChars && !answer.hasToolCalls) {
        const short = await this.#shortVerdict(input, answer, trimmed);
        if (short.error) details.short_ok_when_error = short.error;
        if (short.ok) details.short_ok = short.why;
        else found('too_short', `${trimmed.length} chars: ${short.why}`);
      }
    }

    let score = 1;
    for (const f of findings) score *= 1 - f.penalty;
    score = Math.round(score * 1000) / 1000;
    if (findings.length > 0) details.failed = findings;
    return { score, details };
  }

  /**
   * Whether a short answer is fine, and why not when it is not. The policy's short_ok_when
   * first; then what the answer is (no answer at all, a fragment, not the letter the
   * prompt asks for); then whether the prompt wants it short, its form, and whether the
   * prompt asked for an elaboration.
   */
  async #shortVerdict(input: EvalInput, answer: Answer, trimmed: string): Promise<{ ok: boolean; why: string; error?: string }> {
    let error: string | undefined;
    if (this.#shortOk) {
      try {
        if (isTruthy(await this.#shortOk.evaluate(expressionInput(input, answer)))) return { ok: true, why: 'short_ok_when' };
      } catch (err) {
        error = excerpt(err instanceof Error ? err.message : String(err), 200);
      }
    }
    const verdict = (ok: boolean, why: string) => ({ ok, why, ...(error !== undefined ? { error } : {}) });
    const instructions = instructionText(input.request.messages);
    // With short_ok_when the policy says when a short answer is wanted; without it, the prompt does.
    const readCues = !this.#shortOk;
    if (readCues && TRANSLATION_CUE.test(instructions)) return verdict(true, 'the prompt asks for a translation');
    if (CONTENT_FREE.test(trimmed)) return verdict(false, 'no answer in it');
    const form = shortForm(trimmed);
    // "D (" is a choice whose explanation was cut: the letter is the answer.
    if (!form && FRAGMENT.test(trimmed)) return verdict(false, 'stops mid-phrase');
    if (form !== 'choice' && CHOICE_CUE.test(instructions)) return verdict(false, 'not the letter the prompt asks for');
    const cue = readCues ? SHORT_ANSWER_CUE.exec(instructions) : null;
    if (cue) return verdict(true, `prompt asks for a short answer ("${excerpt(cue[0], 30)}")`);
    if (form) return verdict(true, `a complete answer of its form (${form})`);
    if (ELABORATION_CUE.test(instructions)) return verdict(false, 'the prompt asks for an elaboration');
    return verdict(true, 'a short answer to a prompt that asks for no elaboration');
  }

  async dispose(): Promise<void> {}
}

export default {
  meta: {
    id: 'heuristics',
    kind: 'evaluator',
    contract: 1,
    description:
      'Cheap checks for obviously bad answers: empty, refusal, hedging, truncation (finish_reason length), content filter, repetition loops, and short answers with no answer in them. Short answers of a complete form (JSON, a number, a choice, a label, code) pass. Score 1 when clean; each triggered check multiplies it by (1 - its penalty).',
    options: optionsSchema,
    example: {
      min_chars: 20,
      short_ok_when: "request.metadata.task_type = 'classification'",
      refusal_patterns: ['\\bI am not authori[sz]ed to\\b'],
      penalties: { too_short: 0.5 },
    },
  },

  async create(options, ctx): Promise<Evaluator> {
    const optionError = (path: ReadonlyArray<string | number>, message: string) => ctx.optionError(path, message);
    const refusals = compilePatterns(options.refusal_patterns, 'refusal_patterns', optionError);
    const hedges = compilePatterns(options.hedge_patterns, 'hedge_patterns', optionError);
    const shortOk = options.short_ok_when !== undefined ? ctx.expression(options.short_ok_when, ['short_ok_when']) : null;
    return new HeuristicsEvaluator(options, refusals, hedges, shortOk);
  },
} satisfies EvaluatorModule<HeuristicsOptions>;
