// POST /v1/chat/completions: OpenAI's chat API in front of the pipeline. This face reads
// and checks the body, authorizes the target, hands the request to the pipeline
// (src/pipeline/exchange.ts: route, execute, record) and renders what comes back in
// OpenAI's shape: JSON, or SSE. A client that goes away aborts the request's upstream
// calls, so nobody pays for an answer no one reads.
import type http from 'node:http';
import { TiergateError } from '../../common/errors.ts';
import type { ChatChunk } from '../../plugin-contract/plugin-api.ts';
import type { RuntimeManager } from '../../policy/reload.ts';
import type { Runtime } from '../../policy/runtime.ts';
import { ClientGone } from '../../pipeline/cancellation.ts';
import { ChatExchange, type PipelineServices } from '../../pipeline/exchange.ts';
import type { Execution } from '../../pipeline/execution-context.ts';
import type { ChunkSink } from '../../pipeline/stream.ts';
import { clientResult, replayedChunks } from '../../pipeline/wire.ts';
import { authenticate, authorizeChatTarget, refuseApiCall } from '../auth.ts';
import type { GatewayKey } from '../../policy/gateway-auth.ts';
import { readBody } from '../read-body.ts';
import { drained, eventStreamHeaders, lastResort, sendError, sendJson } from '../respond.ts';
import { answerFailure, answerHeaders, streamHeaders } from '../tiergate-headers.ts';
import { checkChatBody } from './request-schema.ts';

export const CHAT_PATH = '/v1/chat/completions';

/**
 * Whether a request is for this face: POST to the path in any spelling express would
 * route there (another letter case, one trailing slash, a query). The exact spelling,
 * all a client SDK sends, is decided by the first comparison.
 */
export function isChatRequest(req: http.IncomingMessage): boolean {
  if (req.method !== 'POST') return false;
  const url = req.url ?? '';
  if (url === CHAT_PATH) return true;
  const query = url.indexOf('?');
  let path = query < 0 ? url : url.slice(0, query);
  if (path.length === CHAT_PATH.length + 1 && path.endsWith('/')) path = path.slice(0, -1);
  return path.length === CHAT_PATH.length && path.toLowerCase() === CHAT_PATH;
}

/**
 * The face's one door: the /v1 key check, the request on the runtime in force when it
 * arrived (held to the end), and the last resort for what escapes. Runs on plain
 * node:http: express, its router and body-parser cost ~0.15–0.2 ms of CPU per request
 * (docs/bench/profile-findings.md, item 2), as much as the rest of the request path.
 */
export function chatDoor(manager: RuntimeManager, services: PipelineServices): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const { logger } = services;
  return (req, res) => {
    const caller = authenticate(manager.runtime.server.auth, req);
    if (caller instanceof TiergateError) return refuseApiCall(res, caller, logger, req);
    const runtime = manager.acquire();
    handleChatCompletion(runtime, req, res, services, caller)
      .catch((err: unknown) => lastResort(err, res, logger))
      .finally(() => runtime.leave());
  };
}

export async function handleChatCompletion(
  runtime: Runtime,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  services: PipelineServices,
  caller: GatewayKey | undefined,
): Promise<void> {
  const exchange = new ChatExchange(runtime, services, caller?.name);
  const client = exchange.client;
  const onClose = () => {
    if (!res.writableFinished) client.abort(new ClientGone());
  };
  res.on('close', onClose);
  let sink: EventStreamSink | null = null;
  try {
    const body = checkChatBody(await readBody(runtime, req, res));
    exchange.received(body);
    authorizeChatTarget(caller, runtime, body.model);
    const response = await exchange.run(req.headers);
    if (response.kind === 'stream') {
      startEventStream(res, streamHeaders(exchange, response));
      sink = new EventStreamSink(res);
      await exchange.stream(response, sink);
    } else {
      if (body.stream === true) replayAsStream(exchange, response, res);
      else sendJson(res, 200, clientResult(exchange.executionContext, response), answerHeaders(exchange, response));
      exchange.answered(response);
    }
  } catch (err) {
    sink?.discard();
    answerFailure(exchange, err, res, sendError);
  } finally {
    res.off('close', onClose);
  }
}

/**
 * The header block goes out with the first event, in one write: both callers write an
 * event straight after (and node:http corks the socket for the rest of the tick on
 * every write), so flushing it on its own would cost a syscall and gain no time.
 */
function startEventStream(res: http.ServerResponse, headers: string[]): void {
  res.writeHead(200, eventStreamHeaders(headers));
}

/** Gate "buffer": the gated answer is complete; send it as a stream, in one write. */
function replayAsStream(exchange: ChatExchange, executed: Execution, res: http.ServerResponse): void {
  startEventStream(res, answerHeaders(exchange, executed));
  let events = '';
  for (const chunk of replayedChunks(exchange.executionContext, executed)) events += `data: ${JSON.stringify(chunk)}\n\n`;
  res.end(events + 'data: [DONE]\n\n');
}

/**
 * A stream read through, as server-sent events. The events of one upstream read leave in
 * one write, on the next tick (after the microtasks that hand over the read's other
 * chunks): each res.write is a piece of the chunked encoding, four writes to the socket,
 * and a read usually carries several events. A flush is due exactly while `unsent` holds
 * something.
 */
class EventStreamSink implements ChunkSink {
  private unsent = '';
  private readonly flush: () => void;

  constructor(private readonly res: http.ServerResponse) {
    this.flush = () => {
      if (this.unsent === '' || res.writableEnded || res.destroyed) return;
      const events = this.unsent;
      this.unsent = '';
      res.write(events);
    };
  }

  write(chunk: ChatChunk): void {
    if (this.unsent === '') process.nextTick(this.flush);
    this.unsent += `data: ${JSON.stringify(chunk)}\n\n`;
  }

  // A slow client slows the upstream: no more reading while the socket's buffer is full.
  get needsDrain(): boolean {
    return this.res.writableNeedDrain;
  }

  drained(signal: AbortSignal): Promise<void> {
    return drained(this.res, signal);
  }

  end(): void {
    const events = this.unsent;
    this.unsent = '';
    this.res.end(`${events}data: [DONE]\n\n`);
  }

  fail(error: TiergateError): void {
    const events = this.unsent;
    this.unsent = '';
    this.res.end(`${events}data: ${JSON.stringify(error.toOpenAI())}\n\n`);
  }

  /** The client went away: what is queued goes nowhere. */
  discard(): void {
    this.unsent = '';
  }
}
