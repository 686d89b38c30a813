// A target is where the policy sends a request: a tier of the ladder, or a model by
// name (a route's default and fallback, a router's decision). This is the one place
// that turns a target into the models that serve it.
import type { TierSpec } from '../plugin-contract/plugin-api.ts';

/** A tier by its place on the ladder (0 is the cheapest), or a model by name. */
export type Target = { kind: 'tier'; tier: number } | { kind: 'model'; model: string };

/** A model as targets see it: a runtime's ModelRuntime (src/policy/runtime.ts). */
interface TargetModel {
  readonly spec: { readonly name: string };
  /** Index of the tier holding the model, or null when it is in none. */
  readonly tier: number | null;
}

/** What a target is resolved against: the ladder and the models of one runtime. */
export interface TargetScope<Model extends TargetModel = TargetModel> {
  readonly tiers: readonly TierSpec[];
  readonly models: ReadonlyMap<string, Model>;
}

/** A name the policy gives a target (a tier's or a model's) as a Target: tier names win, and no model may share one. */
export function targetNamed(name: string, tiers: readonly TierSpec[]): Target {
  const tier = tiers.findIndex((t) => t.name === name);
  return tier >= 0 ? { kind: 'tier', tier } : { kind: 'model', model: name };
}

/** The name a target goes by in the policy and in routing reasons. */
export function targetName(scope: TargetScope, target: Target): string {
  return target.kind === 'tier' ? scope.tiers[target.tier].name : target.model;
}

/**
 * The resolutions of one runtime, made on first use: a runtime never changes, and every
 * request resolves at least one target (more when it fails over or climbs the ladder),
 * so each list is built once rather than per request.
 */
interface Resolutions<Model> {
  readonly byTier: ReadonlyArray<readonly Model[]>;
  readonly byModel: ReadonlyMap<string, readonly Model[]>;
}

const resolutions = new WeakMap<TargetScope['models'], Resolutions<TargetModel>>();

function resolutionsOf<Model extends TargetModel>(scope: TargetScope<Model>): Resolutions<Model> {
  let found = resolutions.get(scope.models) as Resolutions<Model> | undefined;
  if (!found) {
    const modelNamed = (name: string) => scope.models.get(name) as Model;
    const byTier = scope.tiers.map((tier) => Object.freeze(tier.models.map(modelNamed)));
    const byModel = new Map<string, readonly Model[]>();
    for (const [name, model] of scope.models) {
      // A model named on its own fails over to its tier-mates, in the tier's order.
      const mates = model.tier === null ? [] : byTier[model.tier].filter((m) => m !== model);
      byModel.set(name, Object.freeze([model, ...mates]));
    }
    found = { byTier, byModel };
    resolutions.set(scope.models, found);
  }
  return found;
}

/**
 * The models that serve a target, in the order they are tried: a tier's in the tier's
 * order; a model first, then the other models of its tier. The first one is the model
 * the target routes to. The list is shared: never change it.
 */
export function resolveTarget<Model extends TargetModel>(scope: TargetScope<Model>, target: Target): readonly Model[] {
  const found = resolutionsOf(scope);
  return target.kind === 'tier' ? found.byTier[target.tier] : (found.byModel.get(target.model) ?? []);
}

/** The models to try for a request routed to `model`: that model, then its tier-mates. */
export function modelsFrom<Model extends TargetModel>(scope: TargetScope<Model>, model: Model): readonly Model[] {
  return resolutionsOf(scope).byModel.get(model.spec.name) ?? [model];
}

/** The tier a target stands for: its own, or its model's (null for a model in no tier). */
export function tierOfTarget(scope: TargetScope, target: Target): number | null {
  return target.kind === 'tier' ? target.tier : (scope.models.get(target.model)?.tier ?? null);
}

/** A tier's name, null for none. */
export function tierName(scope: TargetScope, tier: number | null): string | null {
  return tier === null ? null : scope.tiers[tier].name;
}
