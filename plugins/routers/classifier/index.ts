// A learned router: a model trained by `tiergate train` predicts, for each tier below
// the top, the probability that its answer suffices; the request goes to the cheapest
// tier whose probability reaches the threshold, else to the top tier. The features are
// computed by the same code that trained the model (src/analysis/learn/features.ts), and the
// artifact's feature spec is checked at load. A changed model file reloads the policy.
import {
  artifactProblems,
  chooseTier,
  compileClassifier,
  defaultFeatureSpec,
  loadModelOption,
  modelOptionProperties,
  oneModelOption,
  specHash,
  type ClassifierArtifact,
  type CompiledClassifier,
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
  properties: {
    ...modelOptionProperties('`tiergate train`'),
    threshold: {
      type: 'number',
      minimum: 0,
      maximum: 1,
      description: "Route to a tier when P(its answer suffices) reaches this; default: the artifact's recommended threshold.",
    },
    tiers: {
      type: 'object',
      additionalProperties: { type: 'string', 'x-ref': 'tier' },
      description: 'Artifact tier name → policy tier name, when they differ.',
    },
  },
} as const;

type ClassifierOptions = OptionsFrom<typeof optionsSchema>;

/** A tiny valid artifact (two tiers, a handful of weights): the plugin's example, usable with no file. */
function exampleArtifact(): Record<string, unknown> {
  const spec = defaultFeatureSpec({ ngrams: { n: [1], buckets: 16, hash: 'fnv1a' } });
  return {
    format: 'tiergate-classifier',
    version: 1,
    created: '2025-01-01T00:00:00.000Z',
    feature_spec: spec,
    feature_spec_hash: specHash(spec),
    tiers: [{ name: 'small' }, { name: 'large' }],
    // Long prompts and reasoning cues lower P(small suffices).
    models: [{ tier: 'small', bias: 1.5, weights: { indices: [16, 19], values: [-2, -3] }, platt: { a: 1, b: 0 } }],
    calibration: 'platt',
    label: 'example',
    quality_target: null,
    training_data_sha256: '',
    training_rows: 0,
    metrics: {},
    recommended_threshold: 0.5,
    target: null,
  };
}

function makeRouter(model: CompiledClassifier, tierMap: readonly string[], threshold: number): Router {
  const top = tierMap.length - 1;
  const usesPolicyFeatures = model.artifact.feature_spec.policy_features.length > 0;
  return {
    route(ctx: RoutingContext): RoutingDecision {
      const p = model.probabilities(ctx.request.messages, usesPolicyFeatures ? ctx.features : undefined);
      const t = chooseTier(p, threshold);
      // Confidence: the probability behind the choice (for the top tier, that the tier below does not suffice).
      const confidence = t < top ? p[t] : 1 - p[top - 1];
      const shown = tierMap[t];
      const why =
        t < top ? `P(${shown} suffices) ${p[t].toFixed(2)} ≥ ${threshold}` : `P(${tierMap[top - 1]} suffices) ${p[top - 1].toFixed(2)} < ${threshold}`;
      return {
        tier: shown,
        confidence: Math.min(1, Math.max(0, confidence)),
        reason: `classifier: ${shown} at ${confidence.toFixed(2)} (${why})`,
        thresholds: Array.from(p),
      };
    },
    withThreshold(next: number): Router {
      return makeRouter(model, tierMap, next);
    },
    describe() {
      return {
        threshold,
        tiers: tierMap,
        trained: model.artifact.created,
        feature_spec_hash: model.artifact.feature_spec_hash,
        training_data_sha256: model.artifact.training_data_sha256,
      };
    },
    async dispose() {},
  };
}

const classifierRouter: RouterModule<ClassifierOptions> = {
  meta: {
    id: 'classifier',
    kind: 'router',
    contract: 1,
    description: 'A learned router (tiergate train): the cheapest tier whose predicted probability of a good-enough answer reaches the threshold.',
    options: optionsSchema,
    example: { model: exampleArtifact() },
  },

  validate(options): OptionIssue[] {
    return oneModelOption(options);
  },

  async create(options, ctx): Promise<Router> {
    const at: Array<string> = options.model_path !== undefined ? ['model_path'] : ['model'];
    const artifact = loadModelOption<ClassifierArtifact>(options, ctx, artifactProblems, 'train one with `tiergate train`');
    const policyTiers = ctx.policy.tiers.map((t) => t.name);
    const mapping = options.tiers ?? {};
    for (const name of Object.keys(mapping)) {
      if (!artifact.tiers.some((t) => t.name === name))
        throw ctx.optionError(['tiers', name], `the model has no tier "${name}" (its tiers: ${artifact.tiers.map((t) => t.name).join(', ')})`);
    }
    const tierMap = artifact.tiers.map((t) => mapping[t.name] ?? t.name);
    const missing = tierMap.filter((t) => !policyTiers.includes(t));
    if (missing.length) {
      throw ctx.optionError(
        options.tiers ? ['tiers'] : at,
        `the model's tier${missing.length > 1 ? 's' : ''} ${missing.map((m) => `"${m}"`).join(', ')} ${missing.length > 1 ? 'are' : 'is'} not in the policy (tiers: ${policyTiers.join(', ')}); map them with tiers: { <model tier>: <policy tier> }`,
      );
    }
    for (let i = 1; i < tierMap.length; i++) {
      if (policyTiers.indexOf(tierMap[i]) <= policyTiers.indexOf(tierMap[i - 1]))
        throw ctx.optionError(
          options.tiers ? ['tiers'] : at,
          `the model's ladder ${tierMap.join(' < ')} is not in the policy's order (${policyTiers.join(' < ')})`,
        );
    }
    const unknownFeatures = artifact.feature_spec.policy_features.filter((f) => !ctx.policy.featureNames.includes(f));
    if (unknownFeatures.length)
      throw ctx.optionError(
        at,
        `the model was trained with policy feature${unknownFeatures.length > 1 ? 's' : ''} ${unknownFeatures.join(', ')}, which the policy does not declare under features:`,
      );
    return makeRouter(compileClassifier(artifact), tierMap, options.threshold ?? artifact.recommended_threshold);
  },
};

export default classifierRouter;
