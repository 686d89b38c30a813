// The replay provider: models that answer with what real models answered, from a
// dataset of recorded outcomes (the JSONL format of ../shared/data). `tiergate eval`
// puts it in place of every provider so a policy's router, gates and ladder run on real
// recorded data; it also works in gateway.yaml for demos and tests.
//
// A request is matched to its row by `tiergate_row_id` in the body when present (eval
// sets it: prompts repeat in real datasets), else by its conversation (roles and texts).
// The upstream model name (after `models`) names the dataset model. The answer is the
// recorded `response`, or a placeholder where the dataset has no text; usage is the
// recorded token counts, else estimated from the texts. Every result carries
//
//   tiergate_recorded: { row_id, dataset_model, score, cost_usd, has_response, usage_estimated }
//
// which the recorded_score evaluator reads and `tiergate eval` prices with. A model
// with no result on the row (score null, or no entry) fails with HTTP 503, so the
// ladder fails over and escalates as it would for a model that did not answer; an
// unknown conversation or dataset model is a 404.
import path from 'node:path';
import {
  conversationKey,
  datasetOf,
  loadDataset,
  recordedCost,
  recordedUsage,
  ROW_ID_FIELD,
  UpstreamError,
  type CallOptions,
  type ChatChunk,
  type ChatRequest,
  type ChatResult,
  type Dataset,
  type DatasetRow,
  type OptionIssue,
  type OptionsFrom,
  type Provider,
  type ProviderModule,
  type Usage,
} from 'tiergate/plugin';

/** What a replayed result carries besides the OpenAI fields. */
export interface RecordedInfo {
  row_id: string;
  dataset_model: string;
  score: number;
  cost_usd: number | null;
  has_response: boolean;
  usage_estimated: boolean;
}

const nullableNumber = { type: ['number', 'null'], minimum: 0 } as const;

/** One recorded row, as in the JSONL format (inline rows use its core fields). */
const rowSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'prompt', 'outcomes'],
  properties: {
    id: { type: 'string', minLength: 1 },
    source: { type: 'string' },
    subset: { type: 'string' },
    split: { type: 'string' },
    prompt: {
      description: 'A string (one user message) or the messages of the conversation.',
      oneOf: [
        { type: 'string' },
        {
          type: 'array',
          minItems: 1,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['role', 'content'],
            properties: { role: { enum: ['system', 'developer', 'user', 'assistant', 'tool', 'function'] }, content: { type: 'string' } },
          },
        },
      ],
    },
    prompt_format: { type: 'string' },
    reference_answer: { type: 'string' },
    outcomes: {
      type: 'object',
      description: 'Dataset model → its recorded outcome on this prompt.',
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['score'],
        properties: {
          score: { type: ['number', 'null'], minimum: 0, maximum: 1 },
          cost_usd: nullableNumber,
          input_tokens: nullableNumber,
          output_tokens: nullableNumber,
          response: { type: 'string' },
          output_chars: { type: 'number', minimum: 0 },
        },
      },
    },
    // Provenance: free-form by the dataset format's definition, never read here.
    meta: { type: 'object', additionalProperties: true },
  },
} as const;

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    dataset: {
      type: 'string',
      minLength: 1,
      'x-path': true,
      description: 'JSONL file of recorded outcomes (format of ../shared/data/README.md), relative to the policy file.',
    },
    rows: {
      type: 'array',
      minItems: 1,
      description: 'Recorded rows given inline, each like one JSONL line: {id, prompt, outcomes: {model: {score, response?, cost_usd?, …}}}.',
      items: rowSchema,
    },
    models: {
      type: 'object',
      description: 'Upstream model name → dataset model name. Names not listed are looked up as they are.',
      additionalProperties: { type: 'string', minLength: 1 },
    },
  },
} as const;

// Inline rows are typed as the dataset format's rows (DatasetRow, whose roles are any
// string), so that rows read from a JSONL file can be passed inline as they are; the
// schema still accepts only the chat roles.
type ReplayOptions = Omit<OptionsFrom<typeof optionsSchema>, 'rows'> & { rows?: DatasetRow[] };

function placeholder(row: DatasetRow, model: string, score: number): string {
  return `[replay: ${model} has no recorded answer text for ${row.id}; its recorded score is ${score}]`;
}

interface Replayed {
  id: string;
  model: string;
  text: string;
  usage: Usage;
  recorded: RecordedInfo;
}

class ReplayProvider implements Provider {
  readonly #dataset: Dataset;
  readonly #models: Readonly<Record<string, string>>;
  readonly #known: ReadonlySet<string>;
  #disposed = false;

  constructor(dataset: Dataset, models: Readonly<Record<string, string>>) {
    this.#dataset = dataset;
    this.#models = models;
    this.#known = new Set(dataset.models);
  }

  #rowFor(request: ChatRequest): DatasetRow {
    const messages = Array.isArray(request.messages) ? request.messages : [];
    const pinned = request[ROW_ID_FIELD];
    if (typeof pinned === 'string') {
      const row = this.#dataset.byId.get(pinned);
      if (!row) throw new UpstreamError('http', `replay: the dataset has no row "${pinned}"`, { status: 404 });
      return row;
    }
    const rows = this.#dataset.byConversation().get(conversationKey(messages));
    if (!rows) throw new UpstreamError('http', 'replay: no recorded row has this conversation', { status: 404 });
    return rows[0];
  }

  #replay(request: ChatRequest, call: CallOptions): Replayed {
    if (this.#disposed) throw new UpstreamError('connection', 'replay provider was disposed');
    if (call.signal.aborted) throw new UpstreamError('aborted', 'replay call aborted', { cause: call.signal.reason });
    const upstream = typeof request.model === 'string' && request.model !== '' ? request.model : call.model.upstream;
    const model = Object.hasOwn(this.#models, upstream) ? this.#models[upstream] : upstream;
    if (!this.#known.has(model)) throw new UpstreamError('http', `replay: the dataset has no model "${model}"`, { status: 404 });
    const row = this.#rowFor(request);
    const outcome = row.outcomes[model];
    if (!outcome || typeof outcome.score !== 'number') {
      // The model did not answer this prompt in the source: like an upstream that is down.
      throw new UpstreamError('http', `replay: ${model} has no recorded result for ${row.id}`, { status: 503 });
    }
    const { usage, estimated } = recordedUsage(request.messages, outcome);
    const hasResponse = typeof outcome.response === 'string';
    return {
      id: `replay-${row.id}`,
      model,
      text: hasResponse ? (outcome.response as string) : placeholder(row, model, outcome.score),
      usage,
      recorded: {
        row_id: row.id,
        dataset_model: model,
        score: outcome.score,
        cost_usd: recordedCost(outcome),
        has_response: hasResponse,
        usage_estimated: estimated,
      },
    };
  }

  async complete(request: ChatRequest, call: CallOptions): Promise<ChatResult & { simulated: true; tiergate_recorded: RecordedInfo }> {
    const r = this.#replay(request, call);
    return {
      id: r.id,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: r.model,
      choices: [{ index: 0, message: { role: 'assistant', content: r.text, refusal: null }, finish_reason: 'stop', logprobs: null }],
      usage: r.usage,
      simulated: true,
      tiergate_recorded: r.recorded,
    };
  }

  async *stream(request: ChatRequest, call: CallOptions): AsyncGenerator<ChatChunk & { simulated: true; tiergate_recorded?: RecordedInfo }> {
    const r = this.#replay(request, call);
    const base = { id: r.id, object: 'chat.completion.chunk' as const, created: Math.floor(Date.now() / 1000), model: r.model, simulated: true as const };
    yield { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] };
    if (r.text) yield { ...base, choices: [{ index: 0, delta: { content: r.text }, finish_reason: null }] };
    yield { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] };
    yield { ...base, choices: [], usage: r.usage, tiergate_recorded: r.recorded };
  }

  async dispose(): Promise<void> {
    this.#disposed = true;
  }
}

const example: ReplayOptions = {
  rows: [
    {
      id: 'demo/1',
      prompt: 'What is 17 + 25? Answer with the number only.',
      outcomes: {
        'small-model': { score: 0, response: '41', cost_usd: 0.00001 },
        'large-model': { score: 1, response: '42', cost_usd: 0.0002 },
      },
    },
  ],
  models: { 'sim-small': 'small-model', 'sim-large': 'large-model' },
};

function validate(options: Readonly<ReplayOptions>): OptionIssue[] {
  if ((options.dataset === undefined) === (options.rows === undefined))
    return [{ path: [], message: 'give exactly one of dataset (a JSONL file) or rows (inline)' }];
  return [];
}

export default {
  meta: {
    id: 'replay',
    kind: 'provider',
    contract: 1,
    capabilities: ['replays-recorded-outcomes'],
    description:
      'Recorded answers of real models from a dataset of outcomes (JSONL, or rows inline): each call answers with the response, token counts and score recorded for that prompt and model. No network. Used by `tiergate eval`.',
    options: optionsSchema,
    example,
  },
  validate,
  async create(options, ctx) {
    let dataset: Dataset;
    try {
      dataset = options.dataset !== undefined ? loadDataset(path.resolve(ctx.baseDir, options.dataset)) : datasetOf(options.rows ?? [], '(inline)');
    } catch (err) {
      throw ctx.optionError([options.dataset !== undefined ? 'dataset' : 'rows'], err instanceof Error ? err.message : String(err));
    }
    const models = options.models ?? {};
    // A model the dataset does not know answers every call with 404: say so at load.
    const known = new Set(dataset.models);
    const provider = ctx.at.split('.').pop();
    for (const spec of ctx.policy.models.values()) {
      if (spec.provider !== provider) continue;
      const model = Object.hasOwn(models, spec.upstream) ? models[spec.upstream] : spec.upstream;
      if (!known.has(model))
        ctx.logger.warn(
          `model ${spec.name} replays dataset model "${model}", which the dataset does not have; its calls will fail (dataset models: ${dataset.models.slice(0, 12).join(', ')})`,
        );
    }
    return new ReplayProvider(dataset, models);
  },
} satisfies ProviderModule<ReplayOptions>;
