// The HTTP face of tiergate: OpenAI-compatible endpoints, health, and admin. Each
// request takes the runtime in force when it arrives and keeps it to the end.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import express, { type NextFunction, type Request, type Response } from 'express';
import type winston from 'winston';
import { TiergateError, errorMessage } from '../common/errors.ts';
import { InFlightRequests, handleChatCompletion, sendError, type DecisionObserver } from './openai-chat/handler.ts';
import { RuntimeManager, type ManagerOptions } from '../policy/reload.ts';
import { createLogger } from '../observe/logger.ts';
import { GatewayMetrics, metricsRouter } from '../observe/prometheus.ts';
import { DashboardAggregator } from '../observe/dashboard/aggregator.ts';
import { dashboardRouter } from '../observe/dashboard/router.ts';
import { Learning } from '../pipeline/feedback.ts';
import { messagesRouter } from './anthropic-messages/router.ts';
import { callerOf, checkKey, describeAuth, mayCall, requireAdmin, requireKey } from './auth.ts';
import { redactDeep } from '../common/secrets.ts';

export interface GatewayOptions {
  configFile: string;
  /** Overrides the policy's server.port (0 picks a free port). */
  port?: number;
  host?: string;
  logger?: winston.Logger;
  /** Watch the policy and plugin folders for changes (default true). */
  watch?: boolean;
  debounceMs?: number;
  env?: NodeJS.ProcessEnv;
  builtinPluginRoot?: string;
}

export interface Gateway {
  readonly url: string;
  readonly port: number;
  readonly server: http.Server;
  readonly manager: RuntimeManager;
  readonly logger: winston.Logger;
  /** Calls `observer` with every decision record from now on; returns an unsubscribe. */
  observeDecisions(observer: DecisionObserver): () => void;
  /**
   * Stops accepting, lets in-flight requests finish, flushes the decision log. Requests
   * still in flight after server.shutdown_timeout_ms are stopped (stopInFlight).
   */
  close(): Promise<void>;
  /** Stops the chat requests in flight now, as the shutdown deadline does (a second SIGTERM). */
  stopInFlight(): void;
}

/** `routers` are mounted after the built-in endpoints, before the 404 handler (GET /metrics, /dashboard). */
export function createApp(manager: RuntimeManager, logger: winston.Logger, state: { shuttingDown: boolean }, observers: ReadonlySet<DecisionObserver> = new Set(), routers: readonly express.Router[] = [], inFlight?: InFlightRequests): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  // Who may call what (src/faces/auth.ts): a gateway key for the API, the admin token for the
  // endpoints that show or change the policy, traffic and spend. Health checks stay open.
  const auth = () => manager.runtime.server.auth;
  // POST /v1/messages checks keys through the inner /v1/chat/completions call it makes (src/ingress).
  app.use(messagesRouter(logger, () => manager.runtime.server.bodyLimit, auth));
  app.use('/v1', requireKey(auth, logger));
  app.use(['/admin', '/dashboard'], requireAdmin(auth, logger));
  // A scraper's own token (server.auth.metrics_token) opens the metrics, and only them.
  app.use('/metrics', requireAdmin(auth, logger, 'metrics'));

  app.post('/v1/chat/completions', async (req: Request, res: Response) => {
    const runtime = manager.acquire();
    try {
      await handleChatCompletion(runtime, req, res, logger, observers, inFlight);
    } finally {
      runtime.leave();
    }
  });

  app.get('/v1/models', (_req, res) => {
    const runtime = manager.runtime;
    const created = Math.floor(runtime.loadedAt.getTime() / 1000);
    // A key sees what it may call.
    const caller = callerOf(res);
    const data = [
      ...[...runtime.routes.values()].filter((route) => !caller || mayCall(caller.routes, route.name)).map((route) => ({ id: route.name, object: 'model', created, owned_by: 'tiergate', tiergate: { kind: 'route', router: route.routerPlugin, description: route.description ?? null } })),
      ...[...runtime.models.values()].filter((model) => !caller || mayCall(caller.models, model.spec.name)).map((model) => ({ id: model.spec.name, object: 'model', created, owned_by: model.spec.provider, tiergate: { kind: 'model', tier: model.tier === null ? null : runtime.tiers[model.tier].name, provider_plugin: model.providerPlugin } })),
    ];
    res.json({ object: 'list', data });
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', (_req, res) => {
    if (state.shuttingDown) res.status(503).json({ status: 'shutting_down' });
    else res.json({ status: 'ready', policy_version: manager.runtime.version });
  });

  app.get('/admin/status', (_req, res) => {
    const runtime = manager.runtime;
    // What plugins describe (a bandit's Redis URL, an error quoting an upstream) may hold a secret.
    res.json(redactDeep({
      ...manager.status(),
      inflight_requests: runtime.inflightRequests,
      routes: [...runtime.routes.keys()],
      tiers: runtime.tiers.map((t) => ({ name: t.name, models: t.models })),
      plugins: runtime.plugins,
      models_in_cooldown: runtime.health.snapshot(),
      // state.redis: what the replicas share (limits, cooldowns), and whether it is reachable.
      shared_state: runtime.shared ? { redis: runtime.shared.describe() } : null,
      // What learning routers (a bandit) have learned so far, by route.
      router_state: Object.fromEntries([...runtime.routes.values()].filter((route) => route.router.describe).map((route) => [route.name, safeDescribe(route.router.describe!.bind(route.router))])),
    }));
  });

  app.post('/admin/reload', async (_req, res) => {
    const result = await manager.reload('admin');
    res.status(result.outcome === 'rejected' ? 422 : 200).json(redactDeep(result));
  });

  for (const router of routers) app.use(router);

  app.use((req: Request, res: Response) => {
    sendError(res, new TiergateError('TG_ERR_NOT_FOUND', { method: req.method, path: req.path }));
  });

  // Last line of defence: nothing a client sends may crash the process.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => lastResort(err, res, logger));
  return app;
}

function lastResort(err: unknown, res: http.ServerResponse, logger: winston.Logger): void {
  const error = err instanceof TiergateError ? err : new TiergateError('TG_ERR_INTERNAL', { reason: errorMessage(err) }, { cause: err });
  logger.error('request failed', { code: error.code, error: error.message });
  if (res.headersSent) res.end();
  else sendError(res, error);
}

const CHAT_PATH = '/v1/chat/completions';

/**
 * The request handler of the server: POST /v1/chat/completions on plain node:http,
 * everything else through express. Express, its router and body-parser cost ~0.15–0.2 ms
 * of CPU per request (docs/bench/profile-findings.md, item 2), as much as the rest of
 * the request path. The chat path does what express did for it: the /v1 key check
 * (checkKey, the function the express middleware runs), the handler, and the error
 * handler's last resort. Only the exact path is taken here; its spellings that express
 * also routes here (a trailing slash, other letter case) still go through express.
 */
export function createHandler(manager: RuntimeManager, logger: winston.Logger, observers: ReadonlySet<DecisionObserver>, app: express.Express, inFlight?: InFlightRequests): http.RequestListener {
  return (req, res) => {
    const url = req.url ?? '';
    if (req.method !== 'POST' || !(url === CHAT_PATH || (url.startsWith(CHAT_PATH) && url.charCodeAt(CHAT_PATH.length) === 63 /* ? */))) {
      app(req, res);
      return;
    }
    if (!checkKey(manager.runtime.server.auth, req, res, logger)) return;
    const runtime = manager.acquire();
    handleChatCompletion(runtime, req, res, logger, observers, inFlight)
      .catch((err: unknown) => lastResort(err, res, logger))
      .finally(() => runtime.leave());
  };
}

/**
 * Requests Node's HTTP parser rejects before express sees them (a bad header, a broken
 * chunked body, headers over the size limit) get the OpenAI error shape too, not Node's
 * bare "400 Bad Request".
 */
function answerMalformedRequest(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const error =
    err.code === 'HPE_HEADER_OVERFLOW' ? new TiergateError('TG_ERR_REQUEST_HEADERS_TOO_LARGE')
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? new TiergateError('TG_ERR_REQUEST_TIMEOUT')
    : new TiergateError('TG_ERR_REQUEST_HTTP', { reason: err.code ?? 'unreadable' });
  const body = JSON.stringify(error.toOpenAI());
  socket.end(`HTTP/1.1 ${error.status} ${http.STATUS_CODES[error.status] ?? ''}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

function safeDescribe(describe: () => unknown): unknown {
  try {
    return describe();
  } catch (err) {
    return { error: errorMessage(err) };
  }
}

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const logger = options.logger ?? createLogger();
  const managerOptions: ManagerOptions = { logger, mode: 'serve', debounceMs: options.debounceMs, env: options.env, builtinPluginRoot: options.builtinPluginRoot, listenHost: options.host };
  const manager = await RuntimeManager.start(options.configFile, managerOptions);
  const state = { shuttingDown: false };
  // Metrics and the dashboard see the gateway only through decision records and reload results.
  const metrics = new GatewayMetrics(manager.runtime.version);
  const dashboard = new DashboardAggregator();
  // Learning routers (a bandit) get each outcome: the gate's score now, POST /v1/feedback later.
  const learning = new Learning(logger);
  // Per-key spend limits add each request's cost once it is known.
  const observers = new Set<DecisionObserver>([(record) => metrics.observe(record), (record) => dashboard.observe(record), (record, runtime) => learning.observe(record, runtime), (record, runtime) => runtime.limits.observe(record)]);
  manager.onReload((result) => metrics.reloaded(result));
  const inFlight = new InFlightRequests();
  const app = createApp(manager, logger, state, observers, [learning.feedbackRouter(() => manager.runtime), metricsRouter(metrics), dashboardRouter(dashboard, manager)], inFlight);
  const server = http.createServer(createHandler(manager, logger, observers, app, inFlight));
  server.on('clientError', answerMalformedRequest);
  // Long generations stream for minutes; Node's default request timeout would cut them.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 65_000;
  const settings = manager.runtime.server;
  const port = options.port ?? settings.port;
  const host = options.host ?? settings.host;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await manager.close();
    throw err;
  }
  if (options.watch !== false) manager.watch();
  const address = server.address() as AddressInfo;
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const authLine = describeAuth(settings.auth, `${host.includes(':') ? `[${host}]` : host}:${address.port}`);
  logger[authLine.level](authLine.message);
  let closing: Promise<void> | null = null;
  const stopTimers: NodeJS.Timeout[] = [];
  const stopInFlight = (timeoutMs: number) => {
    if (inFlight.stopped) return;
    if (inFlight.size > 0) logger.warn('shutting down: stopping the requests still in flight', { in_flight: inFlight.size, timeout_ms: timeoutMs });
    inFlight.stopAll(new TiergateError('TG_ERR_SHUTTING_DOWN', { timeout_ms: timeoutMs }, { retryAfterMs: 1000 }));
    // A stopped request answers at once. A connection still open a second later (a
    // client that does not read) is cut; a request still running two seconds after that
    // (a plugin that ignores cancellation) does not hold the exit: the policy's plugins
    // are disposed and its decision log flushed without it.
    stopTimers.push(
      setTimeout(() => server.closeAllConnections(), 1000),
      setTimeout(() => {
        logger.error('shutting down: a request did not end when stopped; disposing the policy without it', { in_flight: inFlight.size });
        void manager.runtime.dispose();
      }, 3000),
    );
  };
  return {
    url: `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${address.port}`,
    port: address.port,
    server,
    manager,
    logger,
    observeDecisions(observer) {
      observers.add(observer);
      return () => observers.delete(observer);
    },
    close() {
      if (!closing) {
        state.shuttingDown = true;
        closing = (async () => {
          const drained = new Promise<void>((resolve) => server.close(() => resolve()));
          // Keep-alive connections become idle as their last request finishes; close
          // them as they do, or close() would wait for the keep-alive timeout.
          server.closeIdleConnections();
          const sweeper = setInterval(() => server.closeIdleConnections(), 50);
          // Past the deadline, requests are stopped rather than waited for: an
          // orchestrator's SIGKILL would lose them and their decision lines.
          const timeoutMs = manager.runtime.server.shutdownTimeoutMs;
          const deadline = setTimeout(() => stopInFlight(timeoutMs), timeoutMs);
          await drained;
          clearInterval(sweeper);
          // The deadline still holds while the runtime waits for its requests to end.
          await manager.close();
          clearTimeout(deadline);
          for (const timer of stopTimers) clearTimeout(timer);
        })();
      }
      return closing;
    },
    stopInFlight() {
      stopInFlight(0);
    },
  };
}
