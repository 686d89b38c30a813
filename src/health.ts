// Per-model health: consecutive failures and cooldowns (a circuit breaker). Kept outside
// the runtime so a policy reload does not forget that a model is failing.
import type { Resilience } from './runtime.ts';

export class ModelHealth {
  private readonly failures = new Map<string, number>();
  private readonly coolingUntil = new Map<string, number>();

  /** True while the model is in cooldown after repeated failures. */
  coolingDown(model: string, now = Date.now()): boolean {
    const until = this.coolingUntil.get(model);
    if (until === undefined) return false;
    if (now < until) return true;
    // Half-open: the next call is a probe; one more failure sends it back.
    this.coolingUntil.delete(model);
    return false;
  }

  success(model: string): void {
    this.failures.delete(model);
    this.coolingUntil.delete(model);
  }

  failure(model: string, resilience: Resilience, now = Date.now()): void {
    const count = (this.failures.get(model) ?? 0) + 1;
    this.failures.set(model, count);
    if (count >= resilience.failure_threshold) {
      this.coolingUntil.set(model, now + resilience.cooldown_ms);
      this.failures.set(model, resilience.failure_threshold - 1);
    }
  }

  /** Models in cooldown now, with the time they come back (for /admin/status). */
  snapshot(now = Date.now()): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [model, until] of this.coolingUntil) if (until > now) out[model] = new Date(until).toISOString();
    return out;
  }
}
