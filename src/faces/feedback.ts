// POST /v1/feedback {request_id, score (0..1)}: a human's or a downstream system's
// judgement of an earlier answer, for the routers that learn (src/pipeline/feedback.ts).
import express, { type NextFunction, type Request, type Response } from 'express';
import { TiergateError } from '../common/errors.ts';
import type { Learning } from '../pipeline/feedback.ts';
import type { Runtime } from '../policy/runtime.ts';
import { callerOf } from './auth.ts';
import { sendError } from './respond.ts';

/** `current` gives the runtime in force. Mounted behind the /v1 key check: the key's name is the caller. */
export function feedbackRouter(learning: Learning, current: () => Runtime): express.Router {
  const router = express.Router();
  router.post('/v1/feedback', express.json({ limit: '16kb' }), async (req: Request, res: Response) => {
    const body = req.body as unknown;
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new TiergateError('TG_ERR_FEEDBACK_INVALID', { reason: 'the body must be a JSON object {request_id, score}' });
    const { request_id: requestId, score } = body as Record<string, unknown>;
    if (typeof requestId !== 'string' || requestId === '')
      throw new TiergateError(
        'TG_ERR_FEEDBACK_INVALID',
        { reason: 'request_id must be a non-empty string (the x-tiergate-decision-id header of the answer)' },
        { param: 'request_id' },
      );
    if (typeof score !== 'number' || !(score >= 0 && score <= 1))
      throw new TiergateError('TG_ERR_FEEDBACK_INVALID', { reason: 'score must be a number in [0, 1]' }, { param: 'score' });
    const taken = await learning.feedback(current(), requestId, score, callerOf(res)?.name ?? null);
    res.json({ object: 'feedback', ...taken });
  });
  router.use('/v1/feedback', (err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (err instanceof TiergateError) return sendError(res, err);
    const e = err as { type?: string; message?: string };
    if (e.type === 'entity.parse.failed' || e.type === 'entity.too.large')
      return sendError(res, new TiergateError('TG_ERR_FEEDBACK_INVALID', { reason: e.message ?? 'unreadable body' }));
    next(err);
  });
  return router;
}
