// GET /metrics: the Prometheus exposition (src/observe/prometheus.ts) behind its own
// guard (server.auth.metrics_token or the admin token, see server.ts).
import { Router } from 'express';
import type { GatewayMetrics } from '../observe/prometheus.ts';

export function metricsRouter(metrics: GatewayMetrics): Router {
  const router = Router();
  router.get('/metrics', async (_req, res) => {
    const { contentType, body } = await metrics.text();
    res.setHeader('content-type', contentType);
    res.setHeader('cache-control', 'no-store');
    res.send(body);
  });
  return router;
}
