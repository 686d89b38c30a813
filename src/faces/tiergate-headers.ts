// The x-tiergate-* headers every face that answers a chat puts on its answer.
import type http from 'node:http';
import type { TiergateError } from '../common/errors.ts';
import type { DecisionRecord } from '../observe/decision-log.ts';
import type { ChatExchange } from '../pipeline/exchange.ts';
import type { Execution } from '../pipeline/execution-context.ts';
import type { OpenStream } from '../pipeline/stream.ts';

export const HEADER = {
  route: 'x-tiergate-route',
  model: 'x-tiergate-model',
  tier: 'x-tiergate-tier',
  decision: 'x-tiergate-decision-id',
  version: 'x-tiergate-policy-version',
  simulated: 'x-tiergate-simulated',
  escalations: 'x-tiergate-escalations',
  gate: 'x-tiergate-gate',
  quality: 'x-tiergate-quality-score',
  speculative: 'x-tiergate-speculative',
} as const;

/**
 * The x-tiergate-* headers of an answer, as the flat [name, value, …] list writeHead
 * takes: an answer's whole header block goes out in one writeHead call (sendJson, an
 * event stream's start).
 */
export function tiergateHeaders(
  exchange: ChatExchange,
  model: string,
  tier: string | null,
  simulated: boolean,
  gate: DecisionRecord['gate'],
  escalations: number,
  quality: number | null,
  speculated: boolean,
): string[] {
  const headers: string[] = [];
  const route = exchange.routeName;
  if (route !== null) headers.push(HEADER.route, route);
  headers.push(HEADER.model, model);
  if (tier) headers.push(HEADER.tier, tier);
  headers.push(HEADER.decision, exchange.requestId, HEADER.version, exchange.runtime.version);
  if (simulated) headers.push(HEADER.simulated, 'true');
  headers.push(HEADER.gate, gate, HEADER.escalations, String(escalations));
  if (quality !== null) headers.push(HEADER.quality, quality.toFixed(3));
  if (speculated) headers.push(HEADER.speculative, 'true');
  return headers;
}

/** The headers of a complete answer. */
export function answerHeaders(exchange: ChatExchange, executed: Execution): string[] {
  const { answer } = executed;
  return tiergateHeaders(
    exchange,
    answer.model.spec.name,
    answer.tier,
    answer.simulated,
    executed.gate,
    executed.escalations,
    executed.qualityScore,
    executed.speculated,
  );
}

/** The headers of a stream read through: the gate, if any, judges it only after it has been sent. */
export function streamHeaders(exchange: ChatExchange, opened: OpenStream): string[] {
  const gated = exchange.executionContext.routed.route?.gate ? 'bypass' : 'none';
  return tiergateHeaders(exchange, opened.model.spec.name, opened.attempt.tier, opened.first.simulated === true, gated, opened.escalations, null, false);
}

/**
 * After a failed exchange, the face's error answer, when the client is still there and
 * nothing has been sent: in the face's own error shape (`render`), with the decision id
 * and policy version, since a failed request is logged too and the id lets the client
 * find its line.
 */
export function answerFailure(
  exchange: Pick<ChatExchange, 'failed' | 'requestId' | 'runtime'>,
  err: unknown,
  res: http.ServerResponse,
  render: (res: http.ServerResponse, error: TiergateError) => void,
): void {
  const error = exchange.failed(err);
  if (!error || res.headersSent) return;
  res.setHeader(HEADER.decision, exchange.requestId);
  res.setHeader(HEADER.version, exchange.runtime.version);
  render(res, error);
}
