// The `agreement` evaluator: ask a second model (another cheap one, or the same one
// again) the same conversation, and pass the answer only when both final answers agree.
//
// Why it is shaped like this:
// - It needs no answer key. Two independent models that reach the same final answer are
//   right far more often than a lone answer is; when they differ, at least one is wrong,
//   and a stronger tier is worth asking. That is a prediction a gateway can make at run
//   time, unlike a benchmark's recorded score.
// - Only the final answer is compared (answers.ts in the plugin contract): the choice letter, the number, the
//   code without comments, the JSON value, or free text by token overlap. Wording differs
//   between models even when they agree.
// - The score is 1 or 0, whatever the answer type: the route's gate threshold then means
//   the same for every type, and `similarity` alone says how close two texts must be. The
//   overlap is in the details for the decision log.
// - The second answer is a model call through ctx.callModel, with the policy's provider,
//   timeout and price; its tokens are returned as `spent` so its cost counts toward the
//   request. Its latency counts too: the gate waits for it.
// - Asked again at temperature 0, the same model mostly repeats itself, which proves
//   nothing; without `model` the second call therefore samples (temperature 1) unless
//   `temperature` says otherwise, and the request's seed is dropped.
// - A second call that fails rejects with a plain Error (as llm_judge does): the host
//   scores a throwing evaluator 0 and must not mistake the failure for one of the model
//   that answered.
import {
  ANSWER_TYPES,
  compareAnswers,
  detectType,
  messageText,
  reportedOrEstimatedUsage,
  type AnswerType,
  type AnswerTypeOption,
  type ChatMessage,
  type ChatRequest,
  type ChatResult,
  type EvalInput,
  type Evaluation,
  type Evaluator,
  type EvaluatorModule,
  type OptionsFrom,
  type PluginContext,
} from 'tiergate/plugin';

const DEFAULT_SIMILARITY = 0.6;
/** Sampling temperature of the second call when it asks the answering model again. */
const SAME_MODEL_TEMPERATURE = 1;
/**
 * Request fields not sent with the second call: several choices, streaming options and
 * log-probabilities are the first call's business; a seed would make the same model
 * repeat itself.
 */
const NOT_FORWARDED = new Set(['n', 'stream', 'stream_options', 'logprobs', 'top_logprobs', 'seed', 'user', 'metadata', 'store', 'service_tier']);

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    model: {
      type: 'string',
      'x-ref': 'model',
      description:
        'The policy model asked for the second answer (a name under models:), usually another cheap one. Absent: the model that answered, asked again.',
    },
    answer_type: {
      type: 'string',
      enum: ANSWER_TYPES,
      default: 'auto',
      description:
        'How final answers are read: choice (letter), number, code, json, text (token overlap), or auto (choice for a multiple-choice prompt, code for fenced code, json for a JSON reply, number for a reply ending in a number, else text).',
    },
    similarity: {
      type: 'number',
      minimum: 0,
      maximum: 1,
      default: DEFAULT_SIMILARITY,
      description: 'For code and text answers: the token overlap (F1 of normalised tokens) from which two answers agree.',
    },
    temperature: {
      type: 'number',
      minimum: 0,
      maximum: 2,
      description: "The second call's temperature. Default: the request's own for another model; 1 when the same model is asked again.",
    },
  },
} as const;

export type Options = OptionsFrom<typeof optionsSchema>;

/** The reply as text; tool calls as JSON, so that two calls of the same tool with the same arguments agree. */
export function replyText(reply: ChatResult): string {
  const message = reply.choices?.[0]?.message;
  if (!message) return '';
  if (typeof message.content === 'string' && message.content !== '') return message.content;
  if (message.tool_calls?.length) {
    return JSON.stringify(message.tool_calls.map((call) => ({ name: call.function.name, arguments: parseOr(call.function.arguments) })));
  }
  return '';
}

function parseOr(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The prompt the type is read from: every user and system message, in order. */
function promptText(messages: readonly ChatMessage[]): string {
  return messages
    .filter((m) => m.role === 'user' || m.role === 'system' || m.role === 'developer')
    .map((m) => messageText(m.content))
    .join('\n');
}

class Agreement implements Evaluator {
  readonly #model: string | undefined;
  readonly #answerType: AnswerTypeOption;
  readonly #similarity: number;
  readonly #temperature: number | undefined;
  readonly #ctx: PluginContext;

  constructor(options: Readonly<Options>, ctx: PluginContext) {
    this.#model = options.model;
    this.#answerType = options.answer_type ?? 'auto';
    this.#similarity = options.similarity ?? DEFAULT_SIMILARITY;
    this.#temperature = options.temperature;
    this.#ctx = ctx;
  }

  /** The second call: the same conversation and parameters, minus what belongs to the first call only. */
  #secondRequest(input: EvalInput, sameModel: boolean): Omit<ChatRequest, 'model'> & { messages: ChatMessage[] } {
    const parameters: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(input.request.parameters)) if (!NOT_FORWARDED.has(key)) parameters[key] = value;
    const temperature = this.#temperature ?? (sameModel ? SAME_MODEL_TEMPERATURE : undefined);
    if (temperature !== undefined) parameters.temperature = temperature;
    return { ...parameters, messages: [...input.request.messages] };
  }

  async evaluate(input: EvalInput, signal: AbortSignal): Promise<Evaluation> {
    const first = replyText(input.response);
    const model = this.#model ?? input.model.name;
    const request = this.#secondRequest(input, model === input.model.name);
    let reply: ChatResult;
    try {
      signal.throwIfAborted();
      reply = await this.#ctx.callModel(model, request, signal);
    } catch (err) {
      // A plain Error on purpose (see the top of the file): not the second model's UpstreamError.
      throw new Error(`agreement model "${model}" failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    const second = replyText(reply);
    const { usage, estimated } = reportedOrEstimatedUsage(reply, request.messages, second);
    const prompt = promptText(input.request.messages);
    const type: AnswerType = this.#answerType === 'auto' ? detectType(prompt, first, second) : this.#answerType;
    const comparison = compareAnswers(type, prompt, first, second, this.#similarity);
    return {
      score: comparison.agree ? 1 : 0,
      details: { second_model: model, ...comparison, ...(estimated ? { usage_estimated: true } : {}) },
      spent: [{ model, usage }],
    };
  }

  async dispose(): Promise<void> {
    // Holds nothing: the second model's provider belongs to the runtime.
  }
}

export default {
  meta: {
    id: 'agreement',
    kind: 'evaluator',
    contract: 1,
    description:
      'Asks a second model (or the same one again) the same conversation and scores 1 when both final answers agree ' +
      '(choice letter, number, code, JSON, or free text by token overlap), else 0. The second call is paid for: its cost and latency count.',
    options: optionsSchema,
    example: { model: 'gpt-4o-mini', answer_type: 'auto' },
  },

  async create(options, ctx) {
    // Cheap on purpose: the second model is called from evaluate, never here.
    return new Agreement(options, ctx);
  },
} satisfies EvaluatorModule<Options>;
