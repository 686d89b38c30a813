// The OpenAI chat wire shapes the pipeline speaks on both sides: the provider request
// built from the client's body, the answer and chunks as the client gets them, and the
// conversions between a complete answer and a chunk stream.
import type { ChatChunk, ChatRequest, ChatResult, Usage } from '../plugin-contract/plugin-api.ts';
import type { ModelRuntime } from '../policy/runtime.ts';
import type { Execution, ExecutionContext } from './execution-context.ts';

/**
 * The provider request: the client's model parameters (the request view's, the one
 * filter of the body: src/pipeline/route.ts, requestView) for the model's upstream name,
 * plus what the route's gate needs from every call, unless the client set it.
 */
export function upstreamBody(ctx: ExecutionContext, model: ModelRuntime): ChatRequest {
  const out: ChatRequest = { model: model.spec.upstream, messages: ctx.body.messages };
  const parameters = ctx.routed.view.parameters;
  for (const key in parameters) out[key] = parameters[key];
  const extra = ctx.routed.route?.upstreamParameters;
  if (extra) for (const key in extra) if (!(key in out)) out[key] = extra[key];
  return out;
}

/**
 * The gate may have asked the provider for fields the client did not (logprobs for a
 * logprob evaluator): the client gets the answer it asked for, not the gate's extras.
 */
export function addedByGate(ctx: ExecutionContext): boolean {
  return ctx.routed.route?.upstreamParameters.logprobs === true && ctx.body.logprobs !== true;
}

/** The complete answer as the client gets it: the served model's name, no marker, no gate extras. */
export function clientResult(ctx: ExecutionContext, executed: Execution): ChatResult {
  const { answer } = executed;
  const { simulated: _marker, ...clean } = answer.result as typeof answer.result & { simulated?: boolean };
  clean.model = answer.model.spec.name;
  if (addedByGate(ctx)) clean.choices = clean.choices.map((choice) => ({ ...choice, logprobs: null }));
  return clean;
}

/** A complete answer as the chunks a client that asked for a stream gets (gate "buffer"). */
export function* replayedChunks(ctx: ExecutionContext, executed: Execution): Generator<ChatChunk> {
  const { answer } = executed;
  const wantsUsage = ctx.body.stream_options?.include_usage === true;
  const result = addedByGate(ctx) ? { ...answer.result, choices: answer.result.choices.map((c) => ({ ...c, logprobs: null })) } : answer.result;
  for (const chunk of chunksOf({ ...result, usage: answer.usage }, answer.model.spec.name)) {
    if (chunk.choices.length === 0 && !wantsUsage) continue;
    yield chunk;
  }
}

/** A chunk stream over an already complete answer. */
export function* chunksOf(result: ChatResult, model: string): Generator<ChatChunk> {
  const base = {
    id: result.id,
    object: 'chat.completion.chunk' as const,
    created: result.created,
    model,
    // OpenAI sends these on every chunk; clients read them from any of them.
    ...(result.system_fingerprint !== undefined ? { system_fingerprint: result.system_fingerprint } : {}),
    ...(result.service_tier !== undefined ? { service_tier: result.service_tier } : {}),
  };
  for (const choice of result.choices) {
    yield { ...base, choices: [{ index: choice.index, delta: { role: 'assistant', content: '' }, finish_reason: null }] };
    const content = choice.message?.content ?? '';
    if (content)
      yield { ...base, choices: [{ index: choice.index, delta: { content }, finish_reason: null, ...(choice.logprobs ? { logprobs: choice.logprobs } : {}) }] };
    if (choice.message?.tool_calls?.length) {
      yield {
        ...base,
        choices: [{ index: choice.index, delta: { tool_calls: choice.message.tool_calls.map((call, i) => ({ index: i, ...call })) }, finish_reason: null }],
      };
    }
    yield { ...base, choices: [{ index: choice.index, delta: {}, finish_reason: choice.finish_reason }] };
  }
  if (result.usage) yield { ...base, choices: [], usage: result.usage };
}

/** Chunks assembled into one result, so a gate can judge a streamed answer. */
export function resultOf(chunks: readonly ChatChunk[], usage: Usage | null): ChatResult {
  const first = chunks[0];
  let content = '';
  let finish: ChatResult['choices'][number]['finish_reason'] = null;
  // Token log-probabilities arrive per chunk; a logprob gate needs them all.
  const tokenLogprobs: unknown[] = [];
  for (const chunk of chunks) {
    for (const choice of chunk.choices) {
      if (choice.index !== 0) continue;
      if (typeof choice.delta?.content === 'string') content += choice.delta.content;
      if (choice.finish_reason) finish = choice.finish_reason;
      const perChunk = (choice.logprobs as { content?: unknown[] } | null | undefined)?.content;
      if (Array.isArray(perChunk)) tokenLogprobs.push(...perChunk);
    }
  }
  return {
    id: first?.id ?? 'stream',
    object: 'chat.completion',
    created: first?.created ?? Math.floor(Date.now() / 1000),
    model: first?.model ?? '',
    choices: [
      { index: 0, message: { role: 'assistant', content }, finish_reason: finish, ...(tokenLogprobs.length ? { logprobs: { content: tokenLogprobs } } : {}) },
    ],
    ...(usage ? { usage } : {}),
  };
}
