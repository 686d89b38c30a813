// order_status: a quality gate written the way a platform team writes its own.
//
// Our support bot gets a lot of "where is my order?" questions. A good answer to one
// says what state the shipment is in, and, when the customer gave an order number,
// repeats it so they know we looked up the right order. Cheap models sometimes answer
// with a vague "it should arrive soon": this gate catches that, and the route then
// retries on a stronger tier.
//
//   score 1    states a shipment state (and repeats the order number, if one was given)
//   score 0.5  states a shipment state but does not repeat the order number
//   score 0    states no shipment state
//
// Questions that are not about an order's whereabouts are not this gate's business:
// they score 1 with details { applies: false }, so the gate never blocks them.
//
// Everything here is plain string matching on purpose: it is fast (no model call), free,
// and anyone on the team can read it and add a word when the shop grows a new state.
//
// It imports only the package entry 'tiergate/plugin', so a copy works unchanged from any
// folder listed in plugins.paths: the gateway resolves that import to its own SDK.
import type { ChatMessage, EvalInput, Evaluation, Evaluator, EvaluatorModule, OptionsFrom } from 'tiergate/plugin';

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    states: {
      type: 'array',
      minItems: 1,
      items: { type: 'string', minLength: 1 },
      description:
        'Phrases that count as a shipment state (whole words, any case). Defaults to processing, shipped, in transit, out for delivery, delivered, returned, cancelled and more.',
    },
    require_order_number: {
      type: 'boolean',
      default: true,
      description: 'When the question has an order number, an answer that does not repeat it scores 0.5 instead of 1.',
    },
  },
} as const;

type Options = OptionsFrom<typeof optionsSchema>;

const DEFAULT_STATES = [
  'processing',
  'being prepared',
  'packed',
  'ready to ship',
  'shipped',
  'dispatched',
  'on its way',
  'in transit',
  'out for delivery',
  'delivered',
  'delayed',
  'on hold',
  'held at customs',
  'returned',
  'returned to sender',
  'cancelled',
  'canceled',
  'refunded',
  'lost',
];

// "Where is my order?", "Has my package shipped?", "Parcel 123 still hasn't arrived".
// The question must name a shipment AND ask about its whereabouts or timing.
const SHIPMENT_WORDS = /\b(?:order|package|parcel|shipment|delivery|tracking)\b/i;
const STATUS_WORDS =
  /\b(?:where|status|track|tracking|when|arrive[sd]?|arriving|shipped|late|delayed|hasn'?t|not (?:yet )?(?:arrived|received|come)|still waiting)\b/i;
// "in order to" is not about an order.
const NOT_AN_ORDER = /\bin order (?:to|for|that)\b/gi;

// "order 12345", "order #A-1234", "order number: 98765", "tracking no. 1Z999", "#12345".
// It must contain a digit, so "order status" is not taken for order number "status".
const ORDER_NUMBER = /(?:\b(?:order|tracking|package|parcel|shipment)\s*(?:number|no\.?|id)?\s*[:#]?\s*|#)([a-z0-9][a-z0-9-]{2,})/gi;

/** The text of the user's last message (content may be a string or a list of parts). */
function lastUserText(messages: readonly ChatMessage[]): string {
  const last = [...messages].reverse().find((m) => m.role === 'user');
  if (!last) return '';
  if (typeof last.content === 'string') return last.content;
  return (last.content ?? []).map((part) => (part.type === 'text' && typeof part.text === 'string' ? part.text : '')).join('\n');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** True when the user's last message asks where an order is. */
export function isOrderStatusQuestion(question: string): boolean {
  const text = question.replace(NOT_AN_ORDER, ' ');
  return SHIPMENT_WORDS.test(text) && STATUS_WORDS.test(text);
}

/** The first order number in the question, if any (as written, e.g. "A-1234"). */
export function orderNumberIn(question: string): string | null {
  for (const match of question.matchAll(ORDER_NUMBER)) {
    if (/\d/.test(match[1])) return match[1];
  }
  return null;
}

class OrderStatusEvaluator implements Evaluator {
  readonly #states: Array<{ state: string; pattern: RegExp }>;
  readonly #requireOrderNumber: boolean;

  constructor(options: Readonly<Options>) {
    // Whole words only, so "delivered" does not match "undelivered".
    this.#states = (options.states ?? DEFAULT_STATES).map((state) => ({
      state,
      pattern: new RegExp(`\\b${escapeRegExp(state).replace(/\s+/g, '\\s+')}\\b`, 'i'),
    }));
    this.#requireOrderNumber = options.require_order_number ?? true;
  }

  // The signal matters to evaluators that wait on something; this one only reads strings.
  async evaluate(input: EvalInput, _signal: AbortSignal): Promise<Evaluation> {
    const question = lastUserText(input.request.messages);
    if (!isOrderStatusQuestion(question)) return { score: 1, details: { applies: false } };

    const answer = input.response.choices[0]?.message.content ?? '';
    const state = this.#states.find((s) => s.pattern.test(answer))?.state ?? null;
    const orderNumber = orderNumberIn(question);
    // Case-insensitive: the bot may write "A-1234" for "a-1234".
    const repeated = orderNumber !== null && answer.toLowerCase().includes(orderNumber.toLowerCase());
    const numberOk = orderNumber === null || repeated || !this.#requireOrderNumber;

    let score: number;
    if (state === null)
      score = 0; // no state, no answer: an order number alone does not help
    else if (numberOk) score = 1;
    else score = 0.5;

    return {
      score,
      details: { applies: true, state, order_number: orderNumber, order_number_repeated: orderNumber === null ? null : repeated },
    };
  }

  async dispose(): Promise<void> {
    // Nothing to release: no connections, no timers.
  }
}

export default {
  meta: {
    id: 'order_status',
    kind: 'evaluator',
    contract: 1,
    description:
      'Team example: an answer to "where is my order?" must state a shipment state and repeat the order number the customer gave. ' +
      'Other questions pass (score 1, applies: false).',
    options: optionsSchema,
    example: { states: ['shipped', 'in transit', 'out for delivery', 'delivered'], require_order_number: true },
  },

  // No network, files or expressions: this plugin needs nothing from the host context.
  async create(options, _ctx) {
    return new OrderStatusEvaluator(options);
  },
} satisfies EvaluatorModule<Options>;
