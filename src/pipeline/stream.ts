// A streamed answer read through as the upstream produces it (no gate, or gate
// "bypass"): failover happens before the first chunk; after it, the chunks go to the
// face's sink one by one and a failure travels as the stream's last event. With bypass,
// the assembled answer is gated afterwards, for the decision log only.
import { TiergateError } from '../common/errors.ts';
import type { ChatChunk, Usage } from '../plugin-contract/plugin-api.ts';
import type { AttemptRecord, AttemptRole, GateResult } from '../observe/decision-log.ts';
import type { ModelRuntime } from '../policy/runtime.ts';
import { type CallDeadline, ClientGone, stoppedBy } from './cancellation.ts';
import type { ExecutionContext } from './execution-context.ts';
import { failover, upstreamError } from './failover.ts';
import { runGate } from './gate.ts';
import type { RequestOutcome } from './record.ts';
import { answerText, costOf } from './usage.ts';
import { reportedOrEstimatedUsage } from '../plugin-contract/tokens.ts';
import { addedByGate, resultOf, upstreamBody } from './wire.ts';

/** A chunk as a provider yields it: the simulator marks its own. */
type UpstreamChunk = ChatChunk & { simulated?: boolean };

/** A stream that has begun: one model sent its first chunk. */
export interface OpenStream {
  readonly kind: 'stream';
  model: ModelRuntime;
  /** The first chunk, already read: nothing reaches the client before it exists. */
  first: UpstreamChunk;
  iterator: AsyncIterator<UpstreamChunk>;
  /** Still running: refreshed per chunk, cleared at the end. */
  deadline: CallDeadline;
  attempt: AttemptRecord;
  /** 1 when the route's fallback streams because the routed models failed, else 0. */
  escalations: number;
}

/**
 * Where a face sends a stream's chunks. Backpressure without a response object: after
 * each upstream read the pipeline asks needsDrain, and while it holds reads nothing more
 * upstream until drained() resolves, so a slow client slows the upstream.
 */
export interface ChunkSink {
  /** One chunk as the client gets it (the served model's name, no marker, no usage it did not ask for). */
  write(chunk: ChatChunk): void;
  /** True while the client's buffer is full. */
  readonly needsDrain: boolean;
  /** Resolves when the client's buffer has room; rejects with the signal's reason when it aborts first. */
  drained(signal: AbortSignal): Promise<void>;
  /** The stream is complete. */
  end(): void;
  /** The stream failed after it began: the status line is gone, so the error is its last event. */
  fail(error: TiergateError): void;
}

/** Opens a stream on the first model that sends a first chunk: failover happens before the first byte. */
export function openStream(ctx: ExecutionContext, models: readonly ModelRuntime[], role: AttemptRole = 'routed'): Promise<OpenStream> {
  return failover(
    ctx,
    models,
    role,
    null,
    async (model, deadline, record): Promise<OpenStream> => {
      const iterator = model.provider.stream(upstreamBody(ctx, model), deadline.callOptions(model.spec))[Symbol.asyncIterator]();
      try {
        const first = await iterator.next();
        if (first.done) throw new TiergateError('TG_ERR_UPSTREAM_REPLY', { model: model.spec.name, reason: 'the stream ended before its first chunk' });
        deadline.refresh();
        return { kind: 'stream', model, first: first.value, iterator, deadline, attempt: record, escalations: role === 'fallback' ? 1 : 0 };
      } catch (err) {
        void iterator.return?.(undefined)?.catch(() => undefined);
        throw err;
      }
    },
    true,
  );
}

/**
 * Reads an open stream to its end into `sink`; resolves with the outcome for the decision
 * line (status "error" when it failed after it began). Rejects with ClientGone when the
 * client went away.
 */
export async function streamThrough(ctx: ExecutionContext, opened: OpenStream, sink: ChunkSink): Promise<RequestOutcome> {
  const { routed, body, attempts } = ctx;
  const wantsUsage = body.stream_options?.include_usage === true;
  const stripLogprobs = addedByGate(ctx);
  const gate = routed.route?.gate ?? null;
  const { model, iterator, deadline, attempt } = opened;
  const upstreamStart = performance.now() - attempt.latency_ms;
  const simulated = opened.first.simulated === true;
  const kept: ChatChunk[] = [];
  let usage: Usage | null = null;
  let next: IteratorResult<UpstreamChunk> = { done: false, value: opened.first };
  let failure: TiergateError | null = null;
  let clientGone = false;
  try {
    while (!next.done) {
      const chunk = next.value;
      if (chunk.usage) usage = chunk.usage;
      kept.push(chunk);
      if (chunk.choices.length > 0 || wantsUsage) {
        // Copied without the marker, and without the usage the client did not ask for (not
        // deleted afterwards: a delete makes the copy a dictionary, slow to serialise).
        let clean: ChatChunk;
        if (wantsUsage) {
          const { simulated: _marker, ...rest } = chunk;
          clean = rest;
        } else {
          const { simulated: _marker, usage: _usage, ...rest } = chunk;
          clean = rest;
        }
        clean.model = model.spec.name;
        if (stripLogprobs) clean.choices = clean.choices.map((choice) => ({ ...choice, logprobs: null }));
        sink.write(clean);
      }
      next = await iterator.next();
      deadline.refresh();
      if (sink.needsDrain) await sink.drained(ctx.client.signal);
    }
    sink.end();
  } catch (err) {
    const stopped = stoppedBy(ctx.client);
    clientGone = ctx.client.aborted && !stopped;
    if (!clientGone) {
      failure = stopped ?? upstreamError(err, model, deadline);
      sink.fail(failure);
    }
  } finally {
    deadline.clear();
    void iterator.return?.(undefined)?.catch(() => undefined);
  }
  // What the upstream produced is paid for however the stream ended, abandoned by the
  // client included: the usage it reported, else an estimate of the tokens read so far.
  const result = resultOf(kept, usage);
  const charged = reportedOrEstimatedUsage(result, body.messages, answerText(result));
  const finalUsage = charged.usage;
  Object.assign(
    attempt,
    { usage: finalUsage, cost_usd: costOf(model, finalUsage), latency_ms: performance.now() - upstreamStart },
    charged.estimated ? { usage_estimated: true } : {},
  );
  if (clientGone) {
    attempt.outcome = 'aborted';
    throw new ClientGone();
  }
  if (failure) Object.assign(attempt, { outcome: 'failed', error_code: failure.code, error: failure.message });
  let gated: GateResult | null = null;
  if (gate && !failure) {
    gated = await runGate(ctx, gate, { model, tier: attempt.tier, result, usage: finalUsage, usageEstimated: charged.estimated, simulated, attempt });
    attempt.gate = gated;
  }
  return {
    status: failure ? 'error' : 'ok',
    attempts,
    served: {
      model: model.spec.name,
      tier: attempt.tier,
      usage: finalUsage,
      usageEstimated: charged.estimated,
      simulated,
      upstreamMs: performance.now() - upstreamStart,
    },
    totalCostUsd: attempts.reduce((sum, a) => sum + a.cost_usd + (a.gate?.cost_usd ?? 0), 0),
    escalations: opened.escalations,
    gate: gate ? 'bypass' : 'none',
    qualityScore: gated?.score ?? null,
    ...(failure ? { errorCode: failure.code } : {}),
  };
}
