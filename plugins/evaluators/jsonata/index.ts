// A custom gate written in gateway.yaml alone: a JSONata expression over the request and
// the answer returns the score. The expression sees
//
//   {
//     request:       the request (model, messages, parameters, metadata, headers, stream),
//     response:      the whole ChatResult (choices, usage, …),
//     answer:        the answer text, choices[0].message.content ("" for a tool call),
//     finish_reason: choices[0].finish_reason ("stop", "length", "tool_calls", … or null),
//     features:      the policy's features evaluated for this request,
//     model:         the policy model that answered ({name, provider, upstream, price, timeout_ms}),
//     messages:      request.messages again, so $lastUserMessage() and friends work
//   }
//
// and returns a number (clamped to [0, 1]) or a boolean (true → 1, false → 0). As an input
// check (gate.input_checks) it sees {request, features, messages} only: there is no answer
// yet. Anything else — nothing (undefined), null, a string, an object — scores 0 and says why, and so
// does an evaluation error: a broken gate fails answers loudly in the decision log
// instead of crashing the request.
import type { CompiledExpression, EvalInput, Evaluation, Evaluator, EvaluatorModule, InputCheckInput, OptionsFrom } from 'tiergate/plugin';

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['expression'],
  properties: {
    expression: {
      type: 'string',
      minLength: 1,
      'x-jsonata': true,
      description:
        'JSONata over {request, response, answer, finish_reason, features, model, messages} returning the score: a number (clamped to [0, 1]) or a boolean (true = 1). Anything else, or an error, scores 0.',
    },
  },
} as const;

type JsonataOptions = OptionsFrom<typeof optionsSchema>;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'function') return 'a function';
  return `a ${typeof value}`;
}

function short(text: string, max = 300): string {
  return text.length <= max ? text : text.slice(0, max - 1) + '…';
}

class JsonataEvaluator implements Evaluator {
  readonly #expression: CompiledExpression;

  constructor(expression: CompiledExpression) {
    this.#expression = expression;
  }

  async evaluate(input: EvalInput, _signal: AbortSignal): Promise<Evaluation> {
    const choice = input.response.choices?.[0];
    const content = choice?.message?.content;
    return this.#score({
      request: input.request,
      response: input.response,
      answer: typeof content === 'string' ? content : '',
      finish_reason: choice?.finish_reason ?? null,
      features: input.features,
      model: input.model,
      messages: input.request.messages,
    });
  }

  // No answer yet: response, answer, finish_reason and model are absent, so an expression
  // written for answers that reads them returns nothing and scores 0, saying so.
  async checkInput(input: InputCheckInput, _signal: AbortSignal): Promise<Evaluation> {
    return this.#score({ request: input.request, features: input.features, messages: input.request.messages });
  }

  async #score(scope: Record<string, unknown>): Promise<Evaluation> {
    let result: unknown;
    try {
      result = await this.#expression.evaluate(scope);
    } catch (err) {
      return { score: 0, details: { error: short(err instanceof Error ? err.message : String(err)) } };
    }
    // JSONata wraps a lone result in a one-item sequence in some paths; unwrap it.
    if (Array.isArray(result) && result.length === 1) result = result[0];
    if (typeof result === 'boolean') return { score: result ? 1 : 0, details: { result } };
    if (typeof result === 'number') {
      if (Number.isNaN(result)) return { score: 0, details: { error: 'the expression returned NaN' } };
      const score = Math.min(1, Math.max(0, result));
      return { score, details: score === result ? { result } : { result, clamped: true } };
    }
    if (result === undefined) return { score: 0, details: { error: 'the expression returned nothing (undefined): a path it reads is missing' } };
    return { score: 0, details: { error: `the expression returned ${describe(result)}; expected a number in [0, 1] or a boolean` } };
  }

  async dispose(): Promise<void> {}
}

export default {
  meta: {
    id: 'jsonata',
    kind: 'evaluator',
    contract: 1,
    capabilities: ['checks-input'],
    description:
      'A custom gate in the policy: a JSONata expression over the request and the answer returns the score (a number clamped to [0, 1], or a boolean). Other results and errors score 0 with the reason.',
    options: optionsSchema,
    example: { expression: "finish_reason = 'stop' and $length($trim(answer)) >= 20" },
  },

  async create(options, ctx): Promise<Evaluator> {
    return new JsonataEvaluator(ctx.expression(options.expression, ['expression']));
  },
} satisfies EvaluatorModule<JsonataOptions>;
