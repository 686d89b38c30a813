// GET /v1/models: the routes and models a client may name in `model`, in OpenAI's list
// shape. A key sees what it may call. Each entry says what it answers: a route, chat (and
// embeddings when it names an embeddings model); a model, chat or embeddings by its kind,
// so a client need not learn from a 400 that an embedding model does not chat.
import express from 'express';
import type { RuntimeManager } from '../policy/reload.ts';
import { callerOf } from './auth.ts';
import { mayCall } from '../policy/gateway-auth.ts';

/** Mounted behind the /v1 key check: the key's allow-lists filter the list. */
export function modelsRouter(manager: RuntimeManager): express.Router {
  const router = express.Router();
  router.get('/v1/models', (_req, res) => {
    const runtime = manager.runtime;
    const created = Math.floor(runtime.loadedAt.getTime() / 1000);
    const caller = callerOf(res);
    const data = [
      ...[...runtime.routes.values()]
        .filter((route) => !caller || mayCall(caller.routes, route.name))
        .map((route) => ({
          id: route.name,
          object: 'model',
          created,
          owned_by: 'tiergate',
          tiergate: { kind: 'route', router: route.routerPlugin, embeddings: route.embeddings, description: route.description ?? null },
        })),
      ...[...runtime.models.values()]
        .filter((model) => !caller || mayCall(caller.models, model.spec.name))
        .map((model) => ({
          id: model.spec.name,
          object: 'model',
          created,
          owned_by: model.spec.provider,
          tiergate: {
            kind: 'model',
            model_kind: model.spec.kind,
            tier: model.tier === null ? null : runtime.tiers[model.tier].name,
            provider_plugin: model.providerPlugin,
          },
        })),
    ];
    res.json({ object: 'list', data });
  });
  return router;
}
