// What the stages of one request share: the context they run in, the answer a model
// gave, and the execution the ladder ends with.
import type { ChatResult, Usage } from '../plugin-contract/plugin-api.ts';
import type { AttemptRecord, GateResult } from '../observe/decision-log.ts';
import type { ModelRuntime, Runtime } from '../policy/runtime.ts';
import type { ClientLink } from './cancellation.ts';
import type { ChatBody, RoutedRequest } from './route.ts';

/** Per-request state the stages share between calls. */
export interface ExecutionContext {
  runtime: Runtime;
  routed: RoutedRequest;
  body: ChatBody;
  /** Aborted when the client goes away. */
  client: ClientLink;
  /** performance.now() when the request arrived. */
  startedAt: number;
  /** Every model call of the request, in the order started (filled even when it fails). */
  attempts: AttemptRecord[];
  /** The verdict of the route's input checks, once they ran (src/pipeline/gate.ts checkInput). */
  inputCheck?: GateResult;
}

/** One model's complete answer. */
export interface Answer {
  model: ModelRuntime;
  tier: string | null;
  result: ChatResult;
  usage: Usage;
  usageEstimated: boolean;
  simulated: boolean;
  attempt: AttemptRecord;
}

/** The answer a request ends with, and how it got there. */
export interface Execution {
  readonly kind: 'answer';
  answer: Answer;
  attempts: AttemptRecord[];
  /** Tier climbs after a failed gate (or a tier that failed outright). */
  escalations: number;
  gate: 'passed' | 'failed' | 'none';
  qualityScore: number | null;
  totalCostUsd: number;
  speculated: boolean;
}
