// Explicit routing rules: fast to write, easy to audit. Rules are tried in the order
// written (no priority numbers) and the first whose `when` holds decides; when none
// holds the router has no opinion and the route's `default` applies.
import {
  evaluateNow,
  isTruthy,
  type CompiledExpression,
  type OptionIssue,
  type OptionsFrom,
  type Router,
  type RouterModule,
  type RoutingContext,
  type RoutingDecision,
} from 'tiergate/plugin';

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['rules'],
  properties: {
    rules: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['when'],
        properties: {
          when: {
            type: 'string',
            minLength: 1,
            'x-jsonata': true,
            description: 'JSONata over the request and the features; the rule holds when the result is truthy.',
          },
          tier: { type: 'string', 'x-ref': 'tier' },
          model: { type: 'string', 'x-ref': 'model' },
          confidence: { type: 'number', minimum: 0, maximum: 1, description: 'How sure the rule is (default 1); speculation and analytics read it.' },
          reason: { type: 'string', minLength: 1, description: 'Why, in words; logged with every decision this rule makes.' },
        },
      },
    },
  },
} as const;

type RulesOptions = OptionsFrom<typeof optionsSchema>;

interface CompiledRule {
  condition: CompiledExpression;
  decision: RoutingDecision;
}

const rulesRouter: RouterModule<RulesOptions> = {
  meta: {
    id: 'rules',
    kind: 'router',
    contract: 1,
    description: 'Ordered rules: the first JSONata condition that holds picks the tier or model.',
    options: optionsSchema,
    example: { rules: [{ when: "metadata.task_type = 'classification'", tier: 'small', confidence: 0.9 }] },
  },

  validate(options): OptionIssue[] {
    const issues: OptionIssue[] = [];
    options.rules.forEach((rule, i) => {
      if ((rule.tier === undefined) === (rule.model === undefined)) issues.push({ path: ['rules', i], message: 'a rule names exactly one of tier or model' });
    });
    return issues;
  },

  async create(options, ctx): Promise<Router> {
    const compiled: CompiledRule[] = options.rules.map((rule, i) => {
      const target = rule.tier !== undefined ? `tier ${rule.tier}` : `model ${rule.model}`;
      return {
        condition: ctx.expression(rule.when, ['rules', i, 'when']),
        decision: Object.freeze({
          ...(rule.tier !== undefined ? { tier: rule.tier } : { model: rule.model }),
          confidence: rule.confidence ?? 1,
          reason: rule.reason ? `rule ${i + 1}: ${rule.reason}` : `rule ${i + 1} (${rule.when}) → ${target}`,
        }),
      };
    });
    return {
      async route(routing: RoutingContext): Promise<RoutingDecision | null> {
        const input = routing.input;
        for (const rule of compiled) {
          // Synchronous where the condition allows it: no await per rule.
          let value = evaluateNow(rule.condition, input);
          if (value instanceof Promise) value = await value;
          if (isTruthy(value)) return rule.decision;
        }
        return null;
      },
      async dispose() {},
    };
  },
};

export default rulesRouter;
