// The abort signal a provider hands its SDK for one call: aborted when the host aborts the
// call (the client went away, a deadline, a faster speculative answer) or when the provider
// is disposed (a reload retired it). Why not AbortSignal.any([call.signal, lifetime]): the
// provider-wide lifetime signal then outlives every call, and Node keeps each combined
// signal reachable from it, and alive while it has 'abort' listeners (which SDKs add and
// do not always remove), so the heap grew with every call: about 60 bytes per call in the
// anthropic provider, about 2 kB in the gemini one (docs/bench/soak.md). Here each call
// gets a controller of its own, known to the provider only until `end()`.
import { UpstreamError, type CallOptions } from './plugin-api.ts';

export interface CallSignal {
  signal: AbortSignal;
  /** The call is over (answered, failed or streamed to its end): let go of it. Safe to call twice. */
  end(): void;
}

export class CallSignals {
  readonly #inFlight = new Set<AbortController>();
  #disposed = false;

  /** @param who names the provider in the error a call after dispose() gets, e.g. "the gemini provider at …". */
  constructor(private readonly who: string) {}

  begin(call: CallOptions): CallSignal {
    if (this.#disposed) throw new UpstreamError('aborted', `${this.who} has been disposed`);
    const controller = new AbortController();
    const caller = call.signal;
    const onAbort = () => controller.abort(caller.reason);
    if (caller.aborted) onAbort();
    else caller.addEventListener('abort', onAbort, { once: true });
    this.#inFlight.add(controller);
    return {
      signal: controller.signal,
      end: () => {
        caller.removeEventListener('abort', onAbort);
        this.#inFlight.delete(controller);
      },
    };
  }

  /** Aborts every call in flight, and refuses calls from now on. */
  abortAll(): void {
    this.#disposed = true;
    for (const controller of this.#inFlight) controller.abort();
    this.#inFlight.clear();
  }

  /** Calls begun and not yet ended (for tests). */
  get inFlight(): number {
    return this.#inFlight.size;
  }
}
