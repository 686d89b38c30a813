// Per-model health: consecutive failures and cooldowns (a circuit breaker). Kept outside
// the runtime so a policy reload does not forget that a model is failing.
//
// With state.redis the cooldowns are shared between replicas (src/state/shared-state.ts): a
// cooldown this process starts is published, and the ones other replicas started are
// adopted, so a model one replica found failing is skipped by all. Consecutive failures
// stay per process: each replica decides on its own evidence when to start one.

/** Retries, failover and cooldown of failing models (the policy's `resilience`). */
export interface Resilience {
  readonly retries: number;
  readonly backoff_ms: number;
  readonly max_backoff_ms: number;
  readonly failure_threshold: number;
  readonly cooldown_ms: number;
}

/** Where cooldowns go to reach the other replicas. Calls must not block or throw. */
export interface CooldownSharing {
  /** This process put `model` into cooldown until `untilMs` (epoch ms). */
  started(model: string, untilMs: number): void;
  /** `model` answered while a cooldown of it was known: it is back for everyone. */
  cleared(model: string): void;
}

export class ModelHealth {
  private readonly failures = new Map<string, number>();
  private readonly coolingUntil = new Map<string, number>();
  /** Cooldowns other replicas started (as last read from the shared store). */
  private readonly sharedUntil = new Map<string, number>();
  private sharing: CooldownSharing | null = null;

  /** True while the model is in cooldown after repeated failures, here or on another replica. */
  coolingDown(model: string, now = Date.now()): boolean {
    const shared = this.sharedUntil.get(model);
    if (shared !== undefined) {
      if (now < shared) return true;
      this.sharedUntil.delete(model);
    }
    const until = this.coolingUntil.get(model);
    if (until === undefined) return false;
    if (now < until) return true;
    // Half-open: the next call is a probe; one more failure sends it back.
    this.coolingUntil.delete(model);
    return false;
  }

  success(model: string): void {
    this.failures.delete(model);
    if (this.coolingUntil.has(model) || this.sharedUntil.has(model)) {
      this.coolingUntil.delete(model);
      this.sharedUntil.delete(model);
      this.sharing?.cleared(model);
    }
  }

  failure(model: string, resilience: Resilience, now = Date.now()): void {
    const count = (this.failures.get(model) ?? 0) + 1;
    this.failures.set(model, count);
    if (count >= resilience.failure_threshold) {
      const until = now + resilience.cooldown_ms;
      this.coolingUntil.set(model, until);
      this.failures.set(model, resilience.failure_threshold - 1);
      this.sharing?.started(model, until);
    }
  }

  /** Sends cooldowns through `sharing` from now on (null: this process alone). The last runtime built sets it. */
  share(sharing: CooldownSharing | null): void {
    this.sharing = sharing;
    if (!sharing) this.sharedUntil.clear();
  }

  /** Stops sharing through `sharing`, unless another has taken its place. */
  unshare(sharing: CooldownSharing): void {
    if (this.sharing === sharing) this.share(null);
  }

  /** The cooldowns the shared store holds now (model → epoch ms), replacing the last ones read. */
  adoptShared(cooldowns: ReadonlyMap<string, number>, from: CooldownSharing): void {
    if (this.sharing !== from) return;
    this.sharedUntil.clear();
    for (const [model, until] of cooldowns) this.sharedUntil.set(model, until);
  }

  /** Models in cooldown now, with the time they come back (for /admin/status). */
  snapshot(now = Date.now()): Record<string, string> {
    const latest = new Map<string, number>();
    for (const source of [this.coolingUntil, this.sharedUntil])
      for (const [model, until] of source) if (until > now && until > (latest.get(model) ?? 0)) latest.set(model, until);
    const out: Record<string, string> = {};
    for (const [model, until] of latest) out[model] = new Date(until).toISOString();
    return out;
  }
}
