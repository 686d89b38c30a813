// Pattern rules on the answer text: what it must contain (a citation, an order number,
// "#### <answer>") and what it must never contain (an internal hostname, "as an AI"). As
// an input check (gate.input_checks), the same rules on the request's messages.
//
// Score: a `must_not_match` hit is a veto, score 0 — forbidden content is not partly
// acceptable, and averaging it away among several required patterns would let it
// through. Otherwise the score is the share of `must_match` patterns that match (1 when
// there are none), so two of three required elements score 0.67 and the decision log
// names the missing one.
import {
  messageText,
  policyPattern,
  type EvalInput,
  type InputCheckInput,
  type Evaluation,
  type Evaluator,
  type EvaluatorModule,
  type LinearRegExp,
  type OptionIssue,
  type OptionsFrom,
} from 'tiergate/plugin';

const DEFAULT_FLAGS = 'i';

const patternList = (description: string) => ({ type: 'array', items: { type: 'string', minLength: 1 }, description }) as const;

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    must_match: patternList(
      'Regexes (JavaScript syntax, matched in linear time by RE2: no lookaround or backreferences) the answer should match; the score is the share that match.',
    ),
    must_not_match: patternList('Regexes the answer must not match; any match scores 0 whatever else holds.'),
    flags: {
      type: 'string',
      // g and y make RegExp.test stateful between answers, so they are not offered; v's
      // set operations are beyond RE2.
      pattern: '^[imsu]*$',
      default: DEFAULT_FLAGS,
      description: 'RegExp flags for every pattern, from i, m, s, u (default "i": case-insensitive).',
    },
  },
} as const;

type RegexOptions = OptionsFrom<typeof optionsSchema>;

interface Rule {
  source: string;
  pattern: LinearRegExp;
}

class RegexEvaluator implements Evaluator {
  readonly #mustMatch: readonly Rule[];
  readonly #mustNotMatch: readonly Rule[];

  constructor(mustMatch: Rule[], mustNotMatch: Rule[]) {
    this.#mustMatch = mustMatch;
    this.#mustNotMatch = mustNotMatch;
  }

  async evaluate(input: EvalInput, _signal: AbortSignal): Promise<Evaluation> {
    // A tool call without text matches as the empty string: required patterns then fail.
    const content = input.response.choices?.[0]?.message?.content;
    return this.#judge(typeof content === 'string' ? content : '');
  }

  // As an input check, every message the model would be sent is the text: forbidden
  // content in a system prompt or an earlier turn reaches the model as surely as in the last.
  async checkInput(input: InputCheckInput, _signal: AbortSignal): Promise<Evaluation> {
    return this.#judge(input.request.messages.map((m) => messageText(m.content)).join('\n'));
  }

  #judge(text: string): Evaluation {
    const missing = this.#mustMatch.filter((rule) => !rule.pattern.test(text)).map((rule) => rule.source);
    const forbidden = this.#mustNotMatch.filter((rule) => rule.pattern.test(text)).map((rule) => rule.source);
    const matched = this.#mustMatch.length - missing.length;
    const details: Record<string, unknown> = { must_match: `${matched}/${this.#mustMatch.length}` };
    if (missing.length > 0) details.missing = missing;
    if (forbidden.length > 0) details.forbidden = forbidden;
    const score = forbidden.length > 0 ? 0 : this.#mustMatch.length === 0 ? 1 : Math.round((matched / this.#mustMatch.length) * 1000) / 1000;
    return { score, details };
  }

  async dispose(): Promise<void> {}
}

export default {
  meta: {
    id: 'regex',
    kind: 'evaluator',
    contract: 1,
    capabilities: ['checks-input'],
    description:
      "Regex rules on the answer text (as an input check: on the text of the request's messages): the score is the share of must_match patterns that match, and 0 when any must_not_match pattern matches.",
    options: optionsSchema,
    example: { must_match: ['\\border\\s+#?\\d+'], must_not_match: ['\\bas an ai\\b', 'internal\\.example\\.com'], flags: 'i' },
  },

  validate(options): OptionIssue[] {
    if ((options.must_match?.length ?? 0) + (options.must_not_match?.length ?? 0) === 0) {
      return [{ path: [], message: 'give at least one pattern in must_match or must_not_match; without one this gate passes every answer' }];
    }
    return [];
  },

  async create(options, ctx): Promise<Evaluator> {
    const flags = options.flags ?? DEFAULT_FLAGS;
    try {
      new RegExp('', flags);
    } catch (err) {
      throw ctx.optionError(['flags'], `not valid RegExp flags: ${err instanceof Error ? err.message : String(err)}`);
    }
    // RE2, not RegExp: a pattern that backtracks on a long answer would hold every request.
    const compile = (key: 'must_match' | 'must_not_match'): Rule[] =>
      (options[key] ?? []).map((source, i) => {
        try {
          return { source, pattern: policyPattern(source, flags) };
        } catch (err) {
          throw ctx.optionError([key, i], (err as Error).message);
        }
      });
    return new RegexEvaluator(compile('must_match'), compile('must_not_match'));
  },
} satisfies EvaluatorModule<RegexOptions>;
