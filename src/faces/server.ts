// The HTTP server of tiergate: it composes the faces (OpenAI chat, Anthropic messages,
// models, feedback, health, admin, metrics, the dashboard) and runs the server's life
// (listen, reload watching, shutdown). Each request takes the runtime in force when it
// arrives and keeps it to the end.
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import type winston from 'winston';
import { TiergateError } from '../common/errors.ts';
import { RuntimeManager, type ManagerOptions } from '../policy/reload.ts';
import { createLogger } from '../observe/logger.ts';
import { GatewayMetrics } from '../observe/prometheus.ts';
import { DashboardAggregator } from '../observe/dashboard-aggregator.ts';
import { FAILURE_LOG_EVERY_MS, LogThrottle } from '../observe/log-throttle.ts';
import { dashboardRouter } from './dashboard/router.ts';
import { InFlightRequests } from '../pipeline/cancellation.ts';
import type { PipelineServices } from '../pipeline/exchange.ts';
import { Learning } from '../pipeline/feedback.ts';
import type { DecisionObserver } from '../pipeline/record.ts';
import { adminRouter } from './admin/router.ts';
import { messagesRouter } from './anthropic-messages/router.ts';
import { describeAuth, requireAdmin, requireKey } from './auth.ts';
import { embeddingsRouter } from './embeddings/router.ts';
import { feedbackRouter } from './feedback.ts';
import { healthRouter } from './health.ts';
import { metricsRouter } from './metrics.ts';
import { modelsRouter } from './models.ts';
import { chatDoor, isChatRequest } from './openai-chat/handler.ts';
import { responsesRouter } from './openai-responses/router.ts';
import { applyRequestTimeout, ConnectionGuard, createNodeServer, malformedRequestAnswerer } from './connections.ts';
import { API_RESPONSE_HEADERS, lastResort, sendError } from './respond.ts';

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

/**
 * Everything but the chat door, on express: the Anthropic face, the /v1 key check, the
 * admin guard, then `routers` in order (models, feedback, health, admin, metrics, the
 * dashboard), the 404 and the last resort.
 */
export function createApp(manager: RuntimeManager, logger: winston.Logger, routers: readonly express.Router[], messages: express.Router): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // The chat door's answers carry them through sendJson; express's answers get them here.
  app.use((_req: Request, res: Response, next: NextFunction) => {
    for (let i = 0; i < API_RESPONSE_HEADERS.length; i += 2) res.setHeader(API_RESPONSE_HEADERS[i], API_RESPONSE_HEADERS[i + 1]);
    next();
  });

  // Who may call what (src/faces/auth.ts): a gateway key for the API, the admin token for the
  // endpoints that show or change the policy, traffic and spend. Health checks stay open.
  const auth = () => manager.runtime.server.auth;
  // POST /v1/messages authenticates its caller itself, answering in Anthropic's shape.
  app.use(messages);
  app.use('/v1', requireKey(auth, logger));
  app.use(['/admin', '/dashboard'], requireAdmin(auth, logger));
  // A scraper's own token (server.auth.metrics_token) opens the metrics, and only them.
  app.use('/metrics', requireAdmin(auth, logger, 'metrics'));

  for (const router of routers) app.use(router);

  app.use((req: Request, res: Response) => {
    sendError(res, new TiergateError('TG_ERR_NOT_FOUND', { method: req.method, path: req.path }));
  });

  // Last line of defence: nothing a client sends may crash the process.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => lastResort(err, res, logger));
  return app;
}

/**
 * The request handler of the server: POST /v1/chat/completions through the chat face's
 * own door on plain node:http (src/faces/openai-chat/handler.ts), everything else
 * through express.
 */
export function createHandler(chat: http.RequestListener, app: express.Express, connections: ConnectionGuard): http.RequestListener {
  return (req, res) => {
    if (!connections.admit(req, res)) return;
    if (isChatRequest(req)) chat(req, res);
    else app(req, res);
  };
}

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const logger = options.logger ?? createLogger();
  const managerOptions: ManagerOptions = {
    logger,
    mode: 'serve',
    debounceMs: options.debounceMs,
    env: options.env,
    builtinPluginRoot: options.builtinPluginRoot,
    listenHost: options.host,
  };
  const manager = await RuntimeManager.start(options.configFile, managerOptions);
  const state = { shuttingDown: false };
  // Metrics and the dashboard see the gateway only through decision records and reload results.
  const metrics = new GatewayMetrics(manager.runtime.version);
  const dashboard = new DashboardAggregator();
  // Learning routers (a bandit) get each outcome: the gate's score now, POST /v1/feedback later.
  const learning = new Learning(logger);
  // Per-key spend limits add each request's cost once it is known.
  const observers = new Set<DecisionObserver>([
    (record) => metrics.observe(record),
    (record) => dashboard.observe(record),
    (record, runtime) => learning.observe(record, runtime),
    (record, runtime) => runtime.limits.observe(record),
  ]);
  manager.onReload((result) => metrics.reloaded(result));
  const inFlight = new InFlightRequests();
  // A dependency down fails every request alike: its log lines are bounded, not one per request.
  const pipeline: PipelineServices = { logger, observers, inFlight, failureLog: new LogThrottle(logger, FAILURE_LOG_EVERY_MS) };
  const app = createApp(
    manager,
    logger,
    [
      modelsRouter(manager),
      embeddingsRouter(manager, pipeline),
      responsesRouter(manager, pipeline),
      feedbackRouter(learning, () => manager.runtime),
      healthRouter(manager, state),
      adminRouter(manager),
      metricsRouter(metrics),
      dashboardRouter(dashboard, manager),
    ],
    messagesRouter(manager, pipeline),
  );
  const settings = manager.runtime.server;
  const current = () => manager.runtime.server;
  const server = createNodeServer(settings);
  manager.onReload(() => applyRequestTimeout(server, current()));
  const connections = new ConnectionGuard(server, current);
  server.on('request', createHandler(chatDoor(manager, pipeline), app, connections));
  server.on('clientError', malformedRequestAnswerer(current));
  server.keepAliveTimeout = 65_000;
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
          const drained = connections.drain();
          // Past the deadline, requests are stopped rather than waited for: an
          // orchestrator's SIGKILL would lose them and their decision lines.
          const timeoutMs = manager.runtime.server.shutdownTimeoutMs;
          const deadline = setTimeout(() => stopInFlight(timeoutMs), timeoutMs);
          await drained;
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
