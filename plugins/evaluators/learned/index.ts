// The `learned` evaluator: a calibrated P(this answer is good enough), predicted from the
// answer's measures against its prompt by a model `tiergate train --gate` fitted on
// recorded answers and their recorded scores. It needs no answer key and makes no model
// call, so it costs a few microseconds per answer.
//
// Why it is shaped like this:
// - The score is a probability (Platt-calibrated on held-out folds), so the route's
//   threshold reads as "pass answers good at least this often", and `gate.decide:
//   cascade` can combine it with the router's prior as independent evidence.
// - The model file is watched like the classifier's: retraining it reloads the policy,
//   and a model from another version of the measures is refused at load with the reason.
// - The details name the answer kind the prompt asked for and the measures that weighed
//   most, so a decision line says why an answer failed.
import {
  answerSpecHash,
  compileGate,
  conversationText,
  defaultAnswerFeatureSpec,
  gateArtifactProblems,
  loadModelOption,
  modelOptionProperties,
  oneModelOption,
  type EvalInput,
  type Evaluation,
  type Evaluator,
  type EvaluatorModule,
  type GateArtifact,
  type OptionIssue,
  type OptionsFrom,
} from 'tiergate/plugin';

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...modelOptionProperties('`tiergate train --gate`'),
  },
} as const;

type LearnedOptions = OptionsFrom<typeof optionsSchema>;

/** A tiny valid artifact: an answer that states no final answer where one was asked for scores low. */
function exampleArtifact(): GateArtifact {
  return {
    format: 'tiergate-gate',
    version: 1,
    created: '2025-01-01T00:00:00.000Z',
    feature_spec: defaultAnswerFeatureSpec(),
    feature_spec_hash: answerSpecHash(defaultAnswerFeatureSpec()),
    answered_by: [],
    quality_target: 0.5,
    bias: -1,
    // final_found +3, refusal −3, any_equation_wrong −2
    weights: { indices: [3, 7, 13], values: [3, -3, -2] },
    platt: { a: 1, b: 0 },
    calibration: 'platt',
    training_data_sha256: '',
    training_rows: 0,
    metrics: { folds: 0, good_rate: 0, auc: null, log_loss: 0, ece: 0, by_group: [], operating_points: [] },
  };
}

const learnedEvaluator: EvaluatorModule<LearnedOptions> = {
  meta: {
    id: 'learned',
    kind: 'evaluator',
    contract: 1,
    description:
      'A learned quality estimator (tiergate train --gate): the calibrated probability that the answer is good, from its form, hedging, refusal, consistency and arithmetic.',
    options: optionsSchema,
    example: { model: exampleArtifact() as unknown as Record<string, unknown> },
  },

  validate(options): OptionIssue[] {
    return oneModelOption(options);
  },

  async create(options, ctx): Promise<Evaluator> {
    const model = compileGate(loadModelOption<GateArtifact>(options, ctx, gateArtifactProblems, 'train one with `tiergate train --gate`'));
    return {
      async evaluate(input: EvalInput): Promise<Evaluation> {
        const message = input.response.choices?.[0]?.message;
        // Trained on text answers only: a tool call is not what it learned to judge, and
        // holding every tool call back would break agents on a gated route.
        if (typeof message?.content !== 'string' && Array.isArray(message?.tool_calls) && message.tool_calls.length > 0)
          return { score: 1, details: { not_judged: 'a tool call, not a text answer' } };
        const reply = typeof message?.content === 'string' ? message.content : '';
        const { probability, kind } = model.judge(conversationText(input.request.messages), reply);
        return { score: probability, details: { answer_kind: kind, p_good: Math.round(probability * 1000) / 1000 } };
      },
      async dispose() {},
    };
  },
};

export default learnedEvaluator;
