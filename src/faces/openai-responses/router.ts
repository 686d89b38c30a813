// POST /v1/responses: OpenAI's Responses API in front of the same pipeline as
// /v1/chat/completions. Mounted behind the /v1 key check (src/faces/server.ts), so the
// caller is authenticated before the body is read, with the same keys and the same
// OpenAI-shaped errors; the request is then translated (translate.ts) into the chat body
// the pipeline speaks and handed to it directly (src/pipeline/exchange.ts), so per-key
// limits, routing, gates, ladders, failover, the decision log and metrics are exactly
// those of the chat API. The answer, or its stream, is rendered as a Response object and
// the Responses API's events.
import express, { type Request, type Response } from 'express';
import { TiergateError } from '../../common/errors.ts';
import type { RuntimeManager } from '../../policy/reload.ts';
import type { PipelineServices } from '../../pipeline/exchange.ts';
import { callerOf } from '../auth.ts';
import { sendError } from '../respond.ts';
import { eventTranslatorOf, serveTranslatedChat, type ChatTranslation } from '../translated-chat.ts';
import { ResponsesRequestError, ResponsesStateError, ResponsesStreamTranslator, sseEvent, toChatBody, toResponse } from './translate.ts';

export const RESPONSES_PATH = '/v1/responses';

/** Mounted behind the /v1 key check: the caller it found is in res.locals (callerOf). */
export function responsesRouter(manager: RuntimeManager, services: PipelineServices): express.Router {
  const router = express.Router();
  router.post(RESPONSES_PATH, async (req: Request, res: Response) => {
    const runtime = manager.acquire();
    try {
      await serveTranslatedChat(runtime, req, res, services, callerOf(res), req.headers, translate, sendError);
    } finally {
      runtime.leave();
    }
  });
  // Retrieving, deleting or listing a stored response (responses.retrieve, .delete,
  // .inputItems.list): the gateway stores none, and says so rather than "no such endpoint".
  router.all(`${RESPONSES_PATH}/*rest`, (req: Request, res: Response) => {
    sendError(res, new TiergateError('TG_ERR_RESPONSES_STATE', { field: `${req.method} ${req.path}` }));
  });
  return router;
}

/** The request translated, or the catalogue error the client gets (the field it is about as `param`). */
function translate(raw: unknown): ReturnType<ChatTranslation> {
  try {
    const { body, echo } = toChatBody(raw);
    return {
      chatBody: body,
      renderer: {
        answer: (completion, served) => toResponse(completion, served, echo),
        events: (served) => {
          const translator = new ResponsesStreamTranslator(served, echo);
          return eventTranslatorOf(translator, sseEvent, (error) => translator.fail(error.toOpenAI()));
        },
      },
    };
  } catch (err) {
    if (err instanceof ResponsesStateError) throw new TiergateError('TG_ERR_RESPONSES_STATE', { field: err.field }, { param: err.field });
    if (err instanceof ResponsesRequestError) throw new TiergateError('TG_ERR_REQUEST_INVALID', { reason: err.message }, { param: err.path });
    throw err;
  }
}
