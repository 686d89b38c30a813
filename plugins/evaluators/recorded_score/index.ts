// The gate of `tiergate eval --gate recorded`: scores an answer with the score recorded
// for it in the dataset, as the replay provider attached it (`tiergate_recorded.score`).
// It is the gate a perfect judge would be, so an eval with it measures the router and
// the ladder with the gate's own errors taken out. Where the dataset has answer texts,
// the route's real evaluators can judge them instead.
//
// An answer without a recorded score (not from the replay provider, or streamed: chunks
// assembled for a gate keep only the text) scores 0 and says why.
import type { EvalInput, Evaluation, Evaluator, EvaluatorModule, OptionsFrom } from 'tiergate/plugin';

const optionsSchema = { type: 'object', additionalProperties: false, properties: {} } as const;

type RecordedScoreOptions = OptionsFrom<typeof optionsSchema>;

class RecordedScoreEvaluator implements Evaluator {
  async evaluate(input: EvalInput, _signal: AbortSignal): Promise<Evaluation> {
    const recorded = (input.response as { tiergate_recorded?: { score?: unknown; dataset_model?: unknown; row_id?: unknown } }).tiergate_recorded;
    const score = recorded?.score;
    if (typeof score !== 'number' || !Number.isFinite(score)) {
      return { score: 0, details: { error: 'the answer carries no recorded score (only complete, non-streamed answers of the replay provider do)' } };
    }
    return { score, details: { recorded: true, dataset_model: recorded?.dataset_model, row_id: recorded?.row_id } };
  }

  async dispose(): Promise<void> {}
}

export default {
  meta: {
    id: 'recorded_score',
    kind: 'evaluator',
    contract: 1,
    capabilities: ['scores-recorded-outcomes'],
    description: "The recorded score of a replayed answer (from the replay provider's dataset): a perfect judge, for `tiergate eval`. Other answers score 0.",
    options: optionsSchema,
    example: {},
  },
  async create() {
    return new RecordedScoreEvaluator();
  },
} satisfies EvaluatorModule<RecordedScoreOptions>;
