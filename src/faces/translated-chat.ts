// What the faces that translate another API into a chat request share (Anthropic's
// Messages, OpenAI's Responses): once a face has authenticated the caller and translated
// the body, the request runs through the pipeline exactly as a chat request does (one
// ChatExchange: limits, routing, gates, ladders, failover, one decision line), and only
// the rendering differs, which the face gives as a ChatRenderer.
import type http from 'node:http';
import type { TiergateError } from '../common/errors.ts';
import type { ChatChunk, ChatResult } from '../plugin-contract/plugin-api.ts';
import type { GatewayKey } from '../policy/gateway-auth.ts';
import type { Runtime } from '../policy/runtime.ts';
import { ClientGone } from '../pipeline/cancellation.ts';
import { ChatExchange, type PipelineServices, type RequestHeaders } from '../pipeline/exchange.ts';
import type { Execution } from '../pipeline/execution-context.ts';
import type { ChunkSink } from '../pipeline/stream.ts';
import { clientResult, replayedChunks } from '../pipeline/wire.ts';
import { authorizeChatTarget } from './auth.ts';
import { readBody } from './read-body.ts';
import { drained, eventStreamHeaders, sendJson } from './respond.ts';
import { answerFailure, answerHeaders, streamHeaders } from './tiergate-headers.ts';
import { checkChatBody } from './openai-chat/request-schema.ts';

/** A chat stream's chunks as one API's server-sent events (each method returns the events' text). */
export interface EventTranslator {
  push(chunk: ChatChunk): string;
  end(): string;
  /** The stream broke after it began: the status line is gone, so the error is its last event. */
  fail(error: TiergateError): string;
}

/** A translator of chunks into one API's events (`toSse` writes one event) as an EventTranslator. */
export function eventTranslatorOf<Event>(
  translator: { push(chunk: ChatChunk): Event[]; end(): Event[] },
  toSse: (event: Event) => string,
  fail: (error: TiergateError) => Event[],
): EventTranslator {
  const eventsOf = (events: Event[]) => events.map(toSse).join('');
  return { push: (chunk) => eventsOf(translator.push(chunk)), end: () => eventsOf(translator.end()), fail: (error) => eventsOf(fail(error)) };
}

/** How one API renders what the pipeline answers. `served` is the model that answered (x-tiergate-model). */
export interface ChatRenderer {
  answer(completion: ChatResult, served: string): unknown;
  events(served: string): EventTranslator;
}

/** Sends a catalogue error in the API's own error shape. */
export type SendError = (res: http.ServerResponse, error: TiergateError) => void;

/** A face's translation of its request body: the chat body, and how to render its answer. Throws a TiergateError for a body it cannot translate. */
export type ChatTranslation = (body: unknown) => { chatBody: unknown; renderer: ChatRenderer };

/**
 * Reads and translates the body of an authenticated caller, runs it through the pipeline
 * and renders the answer, its stream, or the error (`sendError`, the face's error shape).
 */
export async function serveTranslatedChat(
  runtime: Runtime,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  services: PipelineServices,
  caller: GatewayKey | undefined,
  routingHeaders: RequestHeaders,
  translate: ChatTranslation,
  sendError: SendError,
): Promise<void> {
  // Made before the body is read: a body the face refuses is a request too, with its decision line, as on the chat face.
  const exchange = new ChatExchange(runtime, services, caller?.name);
  const client = exchange.client;
  const onClose = () => {
    if (!res.writableFinished) client.abort(new ClientGone());
  };
  res.on('close', onClose);
  let sink: TranslatedStreamSink | null = null;
  try {
    const { chatBody, renderer } = translate(await readBody(runtime, req, res));
    const body = checkChatBody(chatBody);
    exchange.received(body);
    authorizeChatTarget(caller, runtime, body.model);
    const response = await exchange.run(routingHeaders);
    if (response.kind === 'stream') {
      startEventStream(res, streamHeaders(exchange, response));
      sink = new TranslatedStreamSink(res, renderer.events(response.model.spec.name));
      await exchange.stream(response, sink);
    } else {
      const served = response.answer.model.spec.name;
      if (body.stream === true) replayAsStream(exchange, response, res, renderer.events(served));
      else sendJson(res, 200, renderer.answer(clientResult(exchange.executionContext, response), served), answerHeaders(exchange, response));
      exchange.answered(response);
    }
  } catch (err) {
    sink?.discard();
    answerFailure(exchange, err, res, sendError);
  } finally {
    res.off('close', onClose);
  }
}

function startEventStream(res: http.ServerResponse, headers: string[]): void {
  res.writeHead(200, eventStreamHeaders(headers));
}

/** Gate "buffer": the gated answer is complete; send it as the API's event sequence, in one write. */
function replayAsStream(exchange: ChatExchange, executed: Execution, res: http.ServerResponse, translator: EventTranslator): void {
  startEventStream(res, answerHeaders(exchange, executed));
  let events = '';
  for (const chunk of replayedChunks(exchange.executionContext, executed)) events += translator.push(chunk);
  res.end(events + translator.end());
}

/** A stream read through, as the API's events. */
class TranslatedStreamSink implements ChunkSink {
  private gone = false;

  constructor(
    private readonly res: http.ServerResponse,
    private readonly translator: EventTranslator,
  ) {}

  write(chunk: ChatChunk): void {
    const events = this.translator.push(chunk);
    if (events !== '' && !this.gone) this.res.write(events);
  }

  // A slow client slows the upstream: no more reading while the socket's buffer is full.
  get needsDrain(): boolean {
    return this.res.writableNeedDrain;
  }

  drained(signal: AbortSignal): Promise<void> {
    return drained(this.res, signal);
  }

  end(): void {
    this.res.end(this.translator.end());
  }

  fail(error: TiergateError): void {
    this.res.end(this.translator.fail(error));
  }

  /** The client went away: nothing more is written. */
  discard(): void {
    this.gone = true;
  }
}
