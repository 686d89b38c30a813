// GET /healthz (the process answers) and GET /readyz (it takes traffic: not while
// shutting down), open to every client, for orchestrators and load balancers.
import express from 'express';
import type { RuntimeManager } from '../policy/reload.ts';

export function healthRouter(manager: RuntimeManager, state: { readonly shuttingDown: boolean }): express.Router {
  const router = express.Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', (_req, res) => {
    if (state.shuttingDown) res.status(503).json({ status: 'shutting_down' });
    else res.json({ status: 'ready', policy_version: manager.runtime.version });
  });
  return router;
}
