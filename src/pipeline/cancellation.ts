// Cancellation: the client's side of a request (ClientLink), each upstream call's
// deadline (CallDeadline), and the requests in flight that a shutdown may stop. A call
// ends when its time runs out, when it loses a race (speculation), or when the client
// goes away, so nobody pays for an answer no one reads.
import { EventEmitter } from 'node:events';
import { TiergateError, errorMessage } from '../common/errors.ts';
import type { CallOptions, CancellationEvents, ModelSpec } from '../plugin-contract/plugin-api.ts';

/** CallOptions.cancellation: an emitter that emits 'abort' once, as undici expects of one. */
class Cancellation extends EventEmitter implements CancellationEvents {
  aborted = false;
  reason: unknown = undefined;
}

/**
 * One cancellation, seen as an AbortSignal or as an emitter, each made only when someone
 * asks for it (and already aborted when the cancellation came first).
 */
class LazyAbort {
  private controller: AbortController | null = null;
  private emitter: Cancellation | null = null;
  fired = false;
  reason: unknown = undefined;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.fired) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  get events(): CancellationEvents {
    if (!this.emitter) {
      this.emitter = new Cancellation();
      this.emitter.aborted = this.fired;
      this.emitter.reason = this.reason;
    }
    return this.emitter;
  }

  /** False when it had fired already (the first reason stands). */
  fire(reason: unknown): boolean {
    if (this.fired) return false;
    this.fired = true;
    this.reason = reason;
    this.controller?.abort(reason);
    if (this.emitter) {
      this.emitter.aborted = true;
      this.emitter.reason = reason;
      this.emitter.emit('abort');
    }
    return true;
  }
}

/** The request's own client went away: stop everything, answer no one. */
export class ClientGone extends Error {
  constructor() {
    super('the client closed the connection');
    this.name = 'ClientGone';
  }
}

/**
 * The client's side of one request: whether it went away, and the upstream calls to stop
 * when it does. An AbortSignal for it is made only when something asks (a gate's
 * evaluator, a stream waiting for the client to drain, speculation, a backoff sleep):
 * the common request links its call's deadline here directly. Making an AbortSignal and
 * listening on it costs about as much as routing the request (on Node 20: the signal's
 * EventTarget set-up, then add/removeEventListener), and every request used to make two
 * (docs/bench/profile-findings.md, round 4).
 */
export class ClientLink {
  private readonly state = new LazyAbort();
  private deadlines: CallDeadline[] | null = null;
  private unfollow: (() => void) | null = null;

  /** A link that follows `signal` (a caller's own signal, as `tiergate eval` passes) until release(). */
  static following(signal: AbortSignal): ClientLink {
    const link = new ClientLink();
    if (signal.aborted) {
      link.abort(signal.reason);
      return link;
    }
    const onAbort = () => link.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    link.unfollow = () => signal.removeEventListener('abort', onAbort);
    return link;
  }

  /** Stops following the signal given to following(): the request is over. */
  release(): void {
    this.unfollow?.();
    this.unfollow = null;
  }

  get aborted(): boolean {
    return this.state.fired;
  }

  get reason(): unknown {
    return this.state.reason;
  }

  /** Aborted when the client goes away (with the link's reason). Made on first use. */
  get signal(): AbortSignal {
    return this.state.signal;
  }

  /** The client went away: the signal and every linked call are aborted. Idempotent. */
  abort(reason: unknown): void {
    if (!this.state.fire(reason)) return;
    const deadlines = this.deadlines;
    this.deadlines = null;
    if (deadlines) for (const deadline of deadlines) deadline.cancel(reason);
  }

  /** @internal CallDeadline's: aborted with the client from now on. */
  link(deadline: CallDeadline): void {
    if (this.state.fired) return deadline.cancel(this.state.reason);
    (this.deadlines ??= []).push(deadline);
  }

  /** @internal */
  unlink(deadline: CallDeadline): void {
    const deadlines = this.deadlines;
    if (!deadlines) return;
    const at = deadlines.indexOf(deadline);
    if (at >= 0) deadlines.splice(at, 1);
  }
}

/**
 * A deadline for one upstream call, also cancelled by the request's client going away
 * and, for a call that can lose a race (speculation), by `race`. Neither its AbortSignal
 * nor its emitter exists until the provider asks for one (CallOptions).
 */
export class CallDeadline {
  timedOut = false;
  private readonly state = new LazyAbort();
  private readonly timer: NodeJS.Timeout;
  private readonly onRaceLost: (() => void) | null = null;

  constructor(
    readonly timeoutMs: number,
    private readonly client: ClientLink,
    private readonly race: AbortSignal | null = null,
  ) {
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.cancel(new Error('upstream timeout'));
    }, timeoutMs);
    client.link(this);
    if (race) {
      const onRaceLost = () => this.cancel(race.reason);
      this.onRaceLost = onRaceLost;
      if (race.aborted) onRaceLost();
      else race.addEventListener('abort', onRaceLost, { once: true });
    }
  }

  get signal(): AbortSignal {
    return this.state.signal;
  }

  get cancellation(): CancellationEvents {
    return this.state.events;
  }

  /** What the provider is called with: the signal and the emitter are made when it reads them. */
  callOptions(model: ModelSpec): CallOptions {
    return new DeadlineCall(model, this);
  }

  /** Aborts the call (the client left, the race was lost, the time ran out). Idempotent. */
  cancel(reason: unknown): void {
    this.state.fire(reason);
  }

  /** A streamed chunk arrived: the timeout now measures the gap to the next one. */
  refresh(): void {
    this.timer.refresh();
  }

  clear(): void {
    clearTimeout(this.timer);
    this.client.unlink(this);
    if (this.race && this.onRaceLost) this.race.removeEventListener('abort', this.onRaceLost);
  }
}

class DeadlineCall implements CallOptions {
  constructor(
    readonly model: ModelSpec,
    private readonly deadline: CallDeadline,
  ) {}

  get signal(): AbortSignal {
    return this.deadline.signal;
  }

  get cancellation(): CancellationEvents {
    return this.deadline.cancellation;
  }
}

/** Waits `ms`, or rejects with the signal's reason when it aborts first. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The chat requests in flight, so that a shutdown past server.shutdown_timeout_ms can
 * stop them. A request is stopped through its ClientLink with a TiergateError as the
 * reason (a client that goes away aborts it with ClientGone): its upstream calls are
 * cancelled, and it answers with that error instead of going silent, so that it still
 * ends with a response and a decision line.
 */
export class InFlightRequests {
  private readonly links = new Set<ClientLink>();
  private stoppedWith: TiergateError | null = null;

  get size(): number {
    return this.links.size;
  }

  get stopped(): boolean {
    return this.stoppedWith !== null;
  }

  add(link: ClientLink): void {
    this.links.add(link);
    // A request that arrives on a kept-alive connection after the stop is stopped too.
    if (this.stoppedWith) link.abort(this.stoppedWith);
  }

  delete(link: ClientLink): void {
    this.links.delete(link);
  }

  stopAll(reason: TiergateError): void {
    this.stoppedWith = reason;
    for (const link of this.links) link.abort(reason);
  }
}

/** The gateway's error when the request was stopped by the gateway (InFlightRequests.stopAll), else null. */
export function stoppedBy(client: ClientLink): TiergateError | null {
  return client.aborted && client.reason instanceof TiergateError ? client.reason : null;
}

/**
 * How a request that threw ended: stopped (at shutdown), its client gone (nobody to
 * answer), or an error for the client (anything not from the catalogue is an internal one).
 */
export function failureOf(client: ClientLink, err: unknown): { stopped: TiergateError | null; clientClosed: boolean; error: TiergateError } {
  const stopped = stoppedBy(client);
  const clientClosed = stopped === null && (err instanceof ClientGone || client.aborted);
  const error = stopped ?? (err instanceof TiergateError ? err : new TiergateError('TG_ERR_INTERNAL', { reason: errorMessage(err) }, { cause: err }));
  return { stopped, clientClosed, error };
}
