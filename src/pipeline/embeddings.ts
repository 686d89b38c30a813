// One embeddings request's way through the pipeline, for a face that has parsed it:
//
//   resolve  the body's `model`: a route (its routes.<name>.embeddings model) or a model
//            of kind: embedding; anything else is the client's error
//   admit    per-key limits (src/state/limits.ts), as for chat
//   embed    the model's provider, with the same retries, backoff and cooldowns as a
//            chat call (failover.ts); the provider answers in floats
//   record   one decision line (endpoint: embeddings): its tokens and cost, which the
//            key's spend budget is charged, as every observer sees
//
// No router decides and no gate judges: a vector has no quality to check and no cheaper
// tier to try first. Nothing here touches a response.
import { TiergateError } from '../common/errors.ts';
import type { AttemptRecord, DecisionRecord } from '../observe/decision-log.ts';
import type { EmbeddingInput, EmbeddingRequest, EmbeddingResult } from '../plugin-contract/plugin-api.ts';
import { embeddingInputs, estimateEmbeddingTokens } from '../plugin-contract/tokens.ts';
import type { ModelRuntime, RouteRuntime } from '../policy/runtime.ts';
import { failureOf } from './cancellation.ts';
import { PipelineRequest } from './exchange.ts';
import { TierFailure, allFailed, failover } from './failover.ts';
import { publishLine, round3 } from './record.ts';
import { costOf } from './usage.ts';

/** The checked body of POST /v1/embeddings (schemas/embeddings-request.schema.json). */
export interface EmbeddingsBody {
  model: string;
  input: EmbeddingInput;
  dimensions?: number;
  encoding_format?: 'float' | 'base64';
  user?: string;
  [extra: string]: unknown;
}

/** The vectors, and the model that made them. */
export interface Embedded {
  /** Its usage is the upstream's, or the gateway's estimate when the upstream reported none. */
  readonly result: EmbeddingResult & { usage: NonNullable<EmbeddingResult['usage']> };
  readonly model: ModelRuntime;
  readonly route: RouteRuntime | null;
  readonly simulated: boolean;
}

/** Tokens of the inputs, when the provider reports none. */
function estimatedTokens(inputs: ReadonlyArray<string | number[]>): number {
  return inputs.reduce((sum, item) => sum + estimateEmbeddingTokens(item), 0);
}

/** Body fields that are the gateway's (the client's encoding is the face's to apply), not the provider's. */
const NOT_FORWARDED = new Set(['model', 'encoding_format']);

export class EmbeddingsExchange extends PipelineRequest {
  private readonly attempts: AttemptRecord[] = [];
  private body: EmbeddingsBody | null = null;
  private route: RouteRuntime | null = null;
  private model: ModelRuntime | null = null;
  private recorded = false;

  /** Resolves, admits and embeds the checked body. Rejects with a TiergateError or ClientGone. */
  async run(body: EmbeddingsBody): Promise<Embedded> {
    const { runtime, callerName } = this;
    this.body = body;
    const model = this.resolve(body.model);
    if (runtime.limits.has(callerName)) await runtime.limits.admit(callerName);
    const inputs = embeddingInputs(body.input);
    const request: EmbeddingRequest = { model: model.spec.upstream, input: body.input };
    for (const key in body) if (!NOT_FORWARDED.has(key)) request[key] = body[key];
    request.model = model.spec.upstream;
    // A vector from a call that lost no race: failover's race estimate never reads the prompt.
    const ctx = { runtime, attempts: this.attempts, client: this.client, startedAt: this.startedAt, body: { messages: [] } };
    try {
      const embedded = await failover(ctx, [model], 'routed', null, async (m, deadline, record) => {
        if (!m.provider.embed)
          throw new TiergateError('TG_ERR_REQUEST_CANNOT_EMBED', {
            kind: 'model',
            name: m.spec.name,
            reason: `its provider "${m.spec.provider}" cannot embed`,
          });
        const result = await m.provider.embed(request, deadline.callOptions(m.spec));
        if (!result || !Array.isArray(result.data) || result.data.length !== inputs.length)
          throw new TiergateError('TG_ERR_UPSTREAM_REPLY', {
            model: m.spec.name,
            reason: `the reply has ${Array.isArray(result?.data) ? result.data.length : 'no'} vectors for ${inputs.length} inputs`,
          });
        const reported = typeof result.usage?.prompt_tokens === 'number' ? result.usage : undefined;
        const promptTokens = reported?.prompt_tokens ?? estimatedTokens(inputs);
        record.usage = { prompt_tokens: promptTokens, completion_tokens: 0, total_tokens: promptTokens };
        if (!reported) record.usage_estimated = true;
        record.cost_usd = costOf(m, record.usage);
        // The client is told the tokens it is charged for, reported or estimated.
        return { ...result, usage: reported ?? { prompt_tokens: promptTokens, total_tokens: promptTokens } };
      });
      return { result: embedded, model, route: this.route, simulated: embedded.simulated === true };
    } catch (err) {
      if (err instanceof TierFailure) throw allFailed(this.attempts, err.lastError);
      throw err;
    }
  }

  /** The embedding model a request's `model` names, directly or through a route. */
  private resolve(name: string): ModelRuntime {
    const { runtime } = this;
    const route = runtime.routes.get(name);
    if (route) {
      this.route = route;
      if (route.embeddings === null)
        throw new TiergateError(
          'TG_ERR_REQUEST_CANNOT_EMBED',
          { kind: 'route', name, reason: `it names no embedding model (routes.${name}.embeddings)` },
          { param: 'model' },
        );
      return (this.model = runtime.models.get(route.embeddings) as ModelRuntime);
    }
    const model = runtime.models.get(name);
    if (!model) throw new TiergateError('TG_ERR_REQUEST_UNKNOWN_MODEL', { model: name }, { param: 'model' });
    if (model.spec.kind !== 'embedding')
      throw new TiergateError(
        'TG_ERR_REQUEST_CANNOT_EMBED',
        { kind: 'model', name, reason: 'it is a chat model; name a model of kind: embedding, or a route that declares embeddings' },
        { param: 'model' },
      );
    return (this.model = model);
  }

  /** The face has sent the vectors. */
  answered(embedded: Embedded): void {
    this.finish('ok', embedded.simulated);
  }

  /** The request failed: records it and returns the client's error, or null when the client went away. */
  failed(err: unknown): TiergateError | null {
    const { stopped, clientClosed, error } = failureOf(this.client, err);
    if (!clientClosed && error.status >= 500 && !stopped)
      this.services.logger.error('embeddings request failed', { request_id: this.requestId, code: error.code, error: error.message });
    this.finish(clientClosed ? 'client_closed' : 'error', false, clientClosed ? undefined : error.code);
    return clientClosed ? null : error;
  }

  private finish(status: DecisionRecord['status'], simulated: boolean, errorCode?: string): void {
    if (this.recorded) return;
    this.recorded = true;
    this.services.inFlight?.delete(this.client);
    const served = status === 'ok' ? this.attempts.at(-1) : undefined;
    const cost = this.attempts.length > 0 ? this.attempts.reduce((sum, a) => sum + a.cost_usd, 0) : null;
    const route = this.route?.name ?? null;
    const line: DecisionRecord = {
      request_id: this.requestId,
      timestamp: new Date().toISOString(),
      route,
      request_features: {},
      // No router chose: routing counts (metrics, learning routers) leave this line out.
      routed_model: null,
      routed_tier: null,
      selected_model: this.model?.spec.name ?? null,
      tier: null,
      alternative_models: [],
      confidence: null,
      routing_reason: route === null ? 'model requested by name: no routing' : `embeddings of route ${route}: routes.${route}.embeddings`,
      latency_ms: round3(performance.now() - this.startedAt),
      upstream_latency_ms: served ? round3(served.latency_ms) : null,
      stream: false,
      usage: served?.usage ?? null,
      cost_usd: cost,
      best_model: null,
      best_cost_usd: null,
      cost_saved_usd: null,
      policy_version: this.runtime.version,
      was_escalated: false,
      escalations: 0,
      gate: 'none',
      quality_score: null,
      speculated: false,
      attempts: this.attempts.map((a) => ({ ...a, started_ms: round3(a.started_ms), latency_ms: round3(a.latency_ms) })),
      simulated,
      status,
      endpoint: 'embeddings',
    };
    if (served?.usage_estimated) line.usage_estimated = true;
    if (errorCode) line.error_code = errorCode;
    if (this.runtime.logPrompts && this.body) line.prompt = this.body.input;
    publishLine(this.runtime, this.services, this.callerName, line);
  }
}
