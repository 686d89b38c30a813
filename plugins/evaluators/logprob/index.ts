// The `logprob` evaluator: how sure the model was of its own answer, read from the
// per-token log-probabilities the provider returns. A model that is out of its depth
// tends to spread probability over many continuations (hedges, wandering, made-up
// detail), so its tokens are less likely on average. It costs nothing extra: no second
// model call, just one more field in the answer.
//
// Why it is shaped like this:
// - It sets `upstreamParameters = { logprobs: true }`, so the gateway asks every
//   upstream call of a gated route for them; no one has to remember to send it.
// - It reads OpenAI's shape, `choices[0].logprobs.content[].logprob`, which OpenAI and
//   most OpenAI-compatible servers (vLLM, and the simulator) return. Providers that
//   have none (Anthropic, some local servers) leave it out, and `when_missing` says
//   what the gate does then. The gate never crashes on a missing or odd field.
// - The score is a probability: exp(aggregate of the token logprobs), in (0, 1].
//     mean  exp(mean logprob): the geometric mean of token probabilities. A steady
//           overall measure; the default.
//     min   exp(lowest logprob): the single least likely token. Strict: one odd word
//           (a name, a number) can sink a good answer.
//     p10   exp(10th percentile, nearest rank): near-worst tokens, but one outlier does
//           not decide. For answers under 10 tokens it is the minimum.
//   Useful thresholds depend on the model and the aggregate; read the decision log's
//   details for a week of traffic before choosing one.
// - `when_missing`: pass → 1, fail → 0, neutral → 0.5 (the default). Neutral means "no
//   information": it passes the default gate threshold (0.5), fails a stricter one,
//   and pulls a mean or weighted combine toward the middle. Choose pass when other
//   evaluators should decide alone on providers without logprobs, fail when an answer
//   that cannot be checked must escalate.
import type { ChatResult, EvalInput, Evaluation, Evaluator, EvaluatorModule, OptionsFrom, PluginContext } from 'tiergate/plugin';

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    aggregate: {
      type: 'string',
      enum: ['mean', 'min', 'p10'],
      default: 'mean',
      description: 'mean: geometric mean token probability; min: the least likely token; p10: 10th-percentile token (robust to one outlier).',
    },
    when_missing: {
      type: 'string',
      enum: ['pass', 'fail', 'neutral'],
      default: 'neutral',
      description: 'Score when the answer has no logprobs: pass = 1, fail = 0, neutral = 0.5 (passes the default 0.5 threshold, fails stricter ones).',
    },
  },
} as const;

export type Options = OptionsFrom<typeof optionsSchema>;
export type Aggregate = NonNullable<Options['aggregate']>;
export type WhenMissing = NonNullable<Options['when_missing']>;

const MISSING_SCORE: Record<WhenMissing, number> = { pass: 1, fail: 0, neutral: 0.5 };

/** The finite token logprobs of the first choice, or null when there are none to read. */
export function tokenLogprobs(response: ChatResult): number[] | null {
  const logprobs: unknown = response.choices?.[0]?.logprobs;
  if (typeof logprobs !== 'object' || logprobs === null) return null;
  const content: unknown = (logprobs as { content?: unknown }).content;
  if (!Array.isArray(content)) return null;
  const values: number[] = [];
  for (const entry of content) {
    const value: unknown = typeof entry === 'object' && entry !== null ? (entry as { logprob?: unknown }).logprob : undefined;
    // -Infinity is a real (if extreme) logprob; NaN and non-numbers are not.
    if (typeof value === 'number' && !Number.isNaN(value)) values.push(Math.min(0, value));
  }
  return values.length > 0 ? values : null;
}

export function aggregateLogprobs(values: readonly number[], how: Aggregate): number {
  switch (how) {
    case 'mean':
      return values.reduce((sum, v) => sum + v, 0) / values.length;
    case 'min':
      // Not Math.min(...values): a long answer would overflow the argument list.
      return values.reduce((low, v) => (v < low ? v : low), 0);
    case 'p10': {
      const sorted = [...values].sort((a, b) => a - b);
      return sorted[Math.max(0, Math.ceil(0.1 * sorted.length) - 1)];
    }
  }
}

class LogprobEvaluator implements Evaluator {
  readonly upstreamParameters = Object.freeze({ logprobs: true });
  readonly #aggregate: Aggregate;
  readonly #whenMissing: WhenMissing;
  readonly #ctx: PluginContext;
  // Warn once per model, not once per request: a provider without logprobs stays that way.
  readonly #warned = new Set<string>();

  constructor(options: Readonly<Options>, ctx: PluginContext) {
    this.#aggregate = options.aggregate ?? 'mean';
    this.#whenMissing = options.when_missing ?? 'neutral';
    this.#ctx = ctx;
  }

  async evaluate(input: EvalInput, _signal: AbortSignal): Promise<Evaluation> {
    const values = tokenLogprobs(input.response);
    if (!values) {
      if (!this.#warned.has(input.model.name)) {
        this.#warned.add(input.model.name);
        this.#ctx.logger.warn(
          `${this.#ctx.at}: model "${input.model.name}" returned no token logprobs; scoring its answers as when_missing: ${this.#whenMissing}`,
        );
      }
      return { score: MISSING_SCORE[this.#whenMissing], details: { missing: true, when_missing: this.#whenMissing, tokens: 0 } };
    }
    const logprob = aggregateLogprobs(values, this.#aggregate);
    // Rounded for the log: six digits say everything a threshold can use.
    const round = (x: number) => Math.round(x * 1e6) / 1e6;
    return { score: round(Math.exp(logprob)), details: { aggregate: this.#aggregate, logprob: round(logprob), tokens: values.length } };
  }

  async dispose(): Promise<void> {}
}

export default {
  meta: {
    id: 'logprob',
    kind: 'evaluator',
    contract: 1,
    description:
      "Confidence from the answer's token log-probabilities (score = exp(aggregate logprob)); asks the provider for logprobs. " +
      'Providers that return none are scored by when_missing.',
    options: optionsSchema,
    example: { aggregate: 'mean', when_missing: 'neutral' },
  },

  async create(options, ctx) {
    return new LogprobEvaluator(options, ctx);
  },
} satisfies EvaluatorModule<Options>;
