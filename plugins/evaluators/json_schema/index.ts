// Structured output: the answer must be JSON that validates against a JSON Schema given
// in the policy. Models asked for JSON often wrap it in a ```json fence or a sentence
// ("Here is the result: {…}"); `extract: lenient` (the default) accepts that, because a
// client that asked for JSON can strip the wrapper just as well, while `strict` wants
// the answer to be the JSON and nothing else.
//
// Score: 1 when a JSON value in the answer validates; 0 when the answer holds no JSON
// at all. JSON that parses but does not validate gets partial credit below 0.5 (so it
// fails a gate at the usual threshold): 0.5 × the share of the schema's top-level
// `required` keys that are present, which tells "one field missing" from "wrong shape"
// in the decision log and lets a lenient gate (threshold 0.4, say) accept near misses.
import AjvModule, { type ErrorObject, type ValidateFunction } from 'ajv';
import type { EvalInput, Evaluation, Evaluator, EvaluatorModule, OptionsFrom } from 'tiergate/plugin';

const Ajv = AjvModule.default ?? (AjvModule as unknown as typeof AjvModule.default);

type Extract = 'strict' | 'lenient';

/** Validation errors reported in details: enough to see what is wrong, small enough for a log line. */
const MAX_REPORTED_ERRORS = 3;
/** Lenient extraction parses at most this many candidate spans, so a huge answer stays cheap. */
const MAX_CANDIDATES = 20;
/** …and looks for embedded JSON from at most this many opening brackets. */
const MAX_OPENINGS = 200;

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['schema'],
  properties: {
    schema: {
      type: 'object',
      // The user's own JSON Schema: any keywords, so this object is open on purpose.
      additionalProperties: true,
      description: 'The JSON Schema (draft-07, as ajv reads it) the answer must validate against. Compiled once at load.',
    },
    extract: {
      enum: ['strict', 'lenient'],
      default: 'lenient',
      description:
        'strict: the whole answer (trimmed) must be JSON. lenient: also accept a ```json fenced block or a JSON object/array embedded in text; the first one that validates wins.',
    },
  },
} as const;

type JsonSchemaOptions = OptionsFrom<typeof optionsSchema>;

interface Candidate {
  value: unknown;
  from: 'whole' | 'fence' | 'embedded';
}

/** End index (exclusive) of the JSON object/array opening at `start`, string-aware; -1 if unbalanced. */
function balancedEnd(text: string, start: number): number {
  const stack: string[] = [];
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{' || c === '[') stack.push(c === '{' ? '}' : ']');
    else if (c === '}' || c === ']') {
      if (stack.pop() !== c) return -1;
      if (stack.length === 0) return i + 1;
    }
  }
  return -1;
}

function tryParse(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

/** Candidate JSON values of the answer, in order of preference. */
function* candidates(text: string, extract: Extract): Generator<Candidate> {
  const whole = tryParse(text.trim());
  if (whole.ok) yield { value: whole.value, from: 'whole' };
  if (extract === 'strict') return;
  let parsed = 0;
  for (const fence of text.matchAll(/```[ \t]*(?:json5?|jsonc)?[ \t]*\r?\n([\s\S]*?)```/gi)) {
    const result = tryParse(fence[1].trim());
    if (result.ok) yield { value: result.value, from: 'fence' };
    if (++parsed >= MAX_CANDIDATES) return;
  }
  // Embedded: every balanced {…} or […] span, outermost first; spans inside one that
  // parsed are part of it and are not tried on their own.
  let openings = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== '{' && c !== '[') continue;
    if (++openings > MAX_OPENINGS) return;
    const end = balancedEnd(text, i);
    if (end === -1) continue;
    const result = tryParse(text.slice(i, end));
    if (++parsed > MAX_CANDIDATES) return;
    if (result.ok) {
      yield { value: result.value, from: 'embedded' };
      i = end - 1;
    }
  }
}

function describeError(e: ErrorObject): string {
  const where = e.instancePath === '' ? '(root)' : e.instancePath;
  const extra = e.keyword === 'additionalProperties' ? ` "${String((e.params as { additionalProperty?: unknown }).additionalProperty)}"` : '';
  return `${where} ${e.message ?? e.keyword}${extra}`;
}

class JsonSchemaEvaluator implements Evaluator {
  readonly #validate: ValidateFunction;
  readonly #extract: Extract;
  readonly #required: readonly string[];

  constructor(validate: ValidateFunction, extract: Extract, required: readonly string[]) {
    this.#validate = validate;
    this.#extract = extract;
    this.#required = required;
  }

  async evaluate(input: EvalInput, _signal: AbortSignal): Promise<Evaluation> {
    const content = input.response.choices?.[0]?.message?.content;
    if (typeof content !== 'string' || content.trim() === '') {
      return { score: 0, details: { error: 'the answer has no text to parse as JSON', extract: this.#extract } };
    }
    let firstInvalid: { candidate: Candidate; errors: ErrorObject[] } | null = null;
    for (const candidate of candidates(content, this.#extract)) {
      if (this.#validate(candidate.value)) return { score: 1, details: { json_from: candidate.from } };
      firstInvalid ??= { candidate, errors: [...(this.#validate.errors ?? [])] };
    }
    if (!firstInvalid) {
      const parse = tryParse(content.trim());
      const reason = this.#extract === 'strict' ? 'the answer is not JSON' : 'no JSON value found in the answer';
      return { score: 0, details: { error: parse.ok ? reason : `${reason}: ${parse.error.slice(0, 160)}`, extract: this.#extract } };
    }
    const { candidate, errors } = firstInvalid;
    const value = candidate.value;
    const details: Record<string, unknown> = {
      json_from: candidate.from,
      errors: errors.slice(0, MAX_REPORTED_ERRORS).map(describeError),
      error_count: errors.length,
    };
    let score = 0;
    if (this.#required.length > 0 && value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const present = this.#required.filter((key) => Object.hasOwn(value, key)).length;
      details.required_present = `${present}/${this.#required.length}`;
      score = Math.round(((0.5 * present) / this.#required.length) * 1000) / 1000;
    }
    return { score, details };
  }

  async dispose(): Promise<void> {}
}

export default {
  meta: {
    id: 'json_schema',
    kind: 'evaluator',
    contract: 1,
    description:
      'The answer is JSON (whole, in a ```json fence or embedded in text, per extract) that validates against a JSON Schema. 1 valid; 0.5 × share of required top-level keys present when it parses but does not validate; 0 when there is no JSON.',
    options: optionsSchema,
    example: {
      schema: {
        type: 'object',
        required: ['label', 'confidence'],
        properties: { label: { enum: ['positive', 'negative', 'neutral'] }, confidence: { type: 'number', minimum: 0, maximum: 1 } },
      },
      extract: 'lenient',
    },
  },

  async create(options, ctx): Promise<Evaluator> {
    // A fresh ajv per gate: the policy's schemas never see each other's $ids or keywords.
    const ajv = new Ajv({
      allErrors: true,
      strict: false,
      logger: {
        log: () => {},
        warn: (...args: unknown[]) => ctx.logger.warn(args.map(String).join(' ')),
        error: (...args: unknown[]) => ctx.logger.error(args.map(String).join(' ')),
      },
    });
    let validate: ValidateFunction;
    try {
      validate = ajv.compile(options.schema);
    } catch (err) {
      throw ctx.optionError(['schema'], `not a valid JSON Schema: ${err instanceof Error ? err.message : String(err)}`);
    }
    const required = Array.isArray(options.schema.required) ? options.schema.required.filter((k): k is string => typeof k === 'string') : [];
    return new JsonSchemaEvaluator(validate, options.extract ?? 'lenient', required);
  },
} satisfies EvaluatorModule<JsonSchemaOptions>;
