// The admin endpoints, behind the admin token (src/faces/auth.ts, requireAdmin):
// GET /admin/status shows the policy in force, its plugins, cooldowns and what learning
// routers have learned; POST /admin/reload reloads the policy now.
import express from 'express';
import { errorMessage } from '../../common/errors.ts';
import { redactDeep } from '../../common/secrets.ts';
import type { RuntimeManager } from '../../policy/reload.ts';

export function adminRouter(manager: RuntimeManager): express.Router {
  const router = express.Router();
  router.get('/admin/status', (_req, res) => {
    const runtime = manager.runtime;
    // What plugins describe (a bandit's Redis URL, an error quoting an upstream) may hold a secret.
    res.json(
      redactDeep({
        ...manager.status(),
        inflight_requests: runtime.inflightRequests,
        routes: [...runtime.routes.keys()],
        tiers: runtime.tiers.map((t) => ({ name: t.name, models: t.models })),
        plugins: runtime.plugins,
        models_in_cooldown: runtime.health.snapshot(),
        // state.redis: what the replicas share (limits, cooldowns), and whether it is reachable.
        shared_state: runtime.shared ? { redis: runtime.shared.describe() } : null,
        // What learning routers (a bandit) have learned so far, by route.
        router_state: Object.fromEntries(
          [...runtime.routes.values()]
            .filter((route) => route.router.describe)
            .map((route) => [route.name, safeDescribe(route.router.describe!.bind(route.router))]),
        ),
      }),
    );
  });

  router.post('/admin/reload', async (_req, res) => {
    const result = await manager.reload('admin');
    res.status(result.outcome === 'rejected' ? 422 : 200).json(redactDeep(result));
  });
  return router;
}

function safeDescribe(describe: () => unknown): unknown {
  try {
    return describe();
  } catch (err) {
    return { error: errorMessage(err) };
  }
}
