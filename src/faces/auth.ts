// Who may call the gateway (server.auth in gateway.yaml).
//
// - Gateway keys: clients send `Authorization: Bearer <key>`. Each key has a name and an
//   allow-list of routes and of concrete models it may call by name. The name (never the
//   key) goes into the decision line, errors and logs.
// - The admin token guards /admin/*, /metrics and /dashboard: they reveal the policy,
//   its errors, traffic and spend, and /admin/reload acts. Accepted as a bearer token, or
//   as the password of HTTP Basic so that a browser can open the dashboard.
// - Whatever has no credential configured is served to loopback clients only: no keys,
//   and the API answers 127.0.0.1 / ::1 only (the policy may not even listen elsewhere);
//   keys but no admin token, and the admin endpoints are off, since behind a local
//   reverse proxy every client would look like loopback.
//
// The keys and tokens themselves, compiled from the policy, are src/policy/gateway-auth.ts.
import type http from 'node:http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type winston from 'winston';
import { TiergateError } from '../common/errors.ts';
import { closestName } from '../expressions/compile.ts';
import { isLoopbackAddress, mayCall, type AllowList, type GatewayAuth, type GatewayKey } from '../policy/gateway-auth.ts';
import { sendJson } from './respond.ts';

// ---------------------------------------------------------------------------------
// The request path

/** A gateway without keys serves loopback clients only, unless authentication happens in front of it. */
export function keylessAccepts(auth: GatewayAuth, remoteAddress: string | undefined): boolean {
  return auth.allowUnauthenticated || isLoopbackAddress(remoteAddress);
}

/**
 * The key each response's request authenticated with, for the express endpoints behind
 * the /v1 check (models, feedback). Kept beside the response rather than in express's
 * res.locals, so that checkKey also serves a plain node:http response. The chat faces
 * call authenticate() and hand the key to the pipeline themselves.
 */
const callers = new WeakMap<http.ServerResponse, GatewayKey>();

/** The key that authenticated this request; undefined when the gateway has no keys. */
export function callerOf(res: http.ServerResponse): GatewayKey | undefined {
  return callers.get(res);
}

function bearerOf(req: http.IncomingMessage): string | null {
  const header = req.headers.authorization;
  // Anthropic's SDKs send the key as x-api-key (POST /v1/messages); it is the same key.
  if (header === undefined && typeof req.headers['x-api-key'] === 'string' && /^\S+$/.test(req.headers['x-api-key'])) return req.headers['x-api-key'];
  if (typeof header !== 'string') return null;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match ? match[1] : null;
}

/** The admin token as a bearer token, or as the password of HTTP Basic (what a browser sends). */
function adminTokenOf(req: http.IncomingMessage): string | null {
  const bearer = bearerOf(req);
  if (bearer !== null) return bearer;
  const header = req.headers.authorization;
  const match = typeof header === 'string' ? /^Basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*$/i.exec(header) : null;
  if (!match) return null;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? null : decoded.slice(colon + 1);
}

/** The path asked for: express's originalUrl (req.url is relative to a mount point there), else the raw URL. */
function pathOf(req: http.IncomingMessage): string {
  return ((req as Partial<Request>).originalUrl ?? req.url ?? '').split('?')[0];
}

function reject(res: http.ServerResponse, error: TiergateError, logger: winston.Logger, req: http.IncomingMessage): void {
  logRefusal(logger, req, error);
  sendJson(res, error.status, error.toOpenAI());
}

/**
 * Who calls the API (/v1/*): the gateway key when the policy has keys (undefined: no
 * keys, and the client is one the keyless gateway serves), or the refusal. Writes
 * nothing, so every face answers a refusal in its own shape.
 */
export function authenticate(auth: GatewayAuth, req: http.IncomingMessage): GatewayKey | undefined | TiergateError {
  if (!auth.hasKeys) return keylessAccepts(auth, req.socket.remoteAddress) ? undefined : new TiergateError('TG_ERR_AUTH_LOOPBACK_ONLY');
  const token = bearerOf(req);
  if (token === null) return new TiergateError('TG_ERR_AUTH_MISSING');
  return auth.identify(token) ?? new TiergateError('TG_ERR_AUTH_INVALID');
}

/** Logs a refused request: never the token, only what was asked for, from where. */
export function logRefusal(logger: winston.Logger, req: http.IncomingMessage, error: TiergateError): void {
  logger.warn('request refused', { code: error.code, method: req.method, path: pathOf(req), remote_address: req.socket.remoteAddress });
}

/**
 * Guards the API (/v1/*): a gateway key when the policy has keys, else loopback clients
 * only. Express runs it for /v1 (a middleware); the chat door calls it directly, on the
 * plain node:http request, so both authenticate the same way. A refusal is answered in
 * OpenAI's error shape; the key, when there is one, is callerOf(res) from now on.
 */
export function checkKey(auth: GatewayAuth, req: http.IncomingMessage, res: http.ServerResponse, logger: winston.Logger): boolean {
  const key = authenticate(auth, req);
  if (key instanceof TiergateError) {
    refuseApiCall(res, key, logger, req);
    return false;
  }
  if (key) callers.set(res, key);
  return true;
}

/** Answers authenticate()'s refusal in OpenAI's error shape, with the challenge a bearer client expects. */
export function refuseApiCall(res: http.ServerResponse, error: TiergateError, logger: winston.Logger, req: http.IncomingMessage): void {
  if (error.code === 'TG_ERR_AUTH_MISSING') res.setHeader('www-authenticate', 'Bearer realm="tiergate"');
  else if (error.code === 'TG_ERR_AUTH_INVALID') res.setHeader('www-authenticate', 'Bearer realm="tiergate", error="invalid_token"');
  reject(res, error, logger, req);
}

export function requireKey(current: () => GatewayAuth, logger: winston.Logger): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (checkKey(current(), req, res, logger)) next();
  };
}

/** Guards /admin/*, /metrics and /dashboard with the admin token. */
export function requireAdmin(current: () => GatewayAuth, logger: winston.Logger, scope: 'admin' | 'metrics' = 'admin'): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const auth = current();
    const path = pathOf(req);
    const token = adminTokenOf(req);
    // Guarding /metrics, the scraper's token (server.auth.metrics_token) opens it too.
    if (scope === 'metrics' && token !== null && auth.isMetricsToken(token)) return next();
    if (auth.hasAdminToken) {
      if (token !== null && auth.isAdminToken(token)) return next();
      // Basic lets a browser ask for the token (any user name) and resend it with every dashboard request.
      res.setHeader('www-authenticate', 'Basic realm="tiergate admin", charset="UTF-8"');
      return reject(res, new TiergateError('TG_ERR_AUTH_ADMIN', { path }), logger, req);
    }
    if (auth.hasKeys) return reject(res, new TiergateError('TG_ERR_AUTH_ADMIN_DISABLED', { path }), logger, req);
    if (keylessAccepts(auth, req.socket.remoteAddress)) return next();
    return reject(res, new TiergateError('TG_ERR_AUTH_LOOPBACK_ONLY'), logger, req);
  };
}

/**
 * Throws 403 when the request's key may not call `name` (a route, or a concrete model).
 * A name that is neither is left to the unknown-model error.
 */
export function authorizeTarget(key: GatewayKey | undefined, name: string, kind: 'route' | 'model' | null): void {
  if (!key || kind === null) return;
  const list = kind === 'route' ? key.routes : key.models;
  if (mayCall(list, name)) return;
  const describe = (l: AllowList) => (l === '*' ? 'all' : l.size === 0 ? 'none' : [...l].join(', '));
  const suggestion = list === '*' ? null : closestName(name, [...list]);
  const hint = ` (it may call routes: ${describe(key.routes)}; models: ${describe(key.models)})` + (suggestion ? `; did you mean "${suggestion}"?` : '');
  throw new TiergateError('TG_ERR_AUTH_FORBIDDEN', { key: key.name, kind, name, hint });
}

/** authorizeTarget for the name a chat body asks for (`model`), as a route or a model of the policy in force. */
export function authorizeChatTarget(
  key: GatewayKey | undefined,
  policy: { readonly routes: ReadonlyMap<string, unknown>; readonly models: ReadonlyMap<string, unknown> },
  name: string,
): void {
  if (key) authorizeTarget(key, name, policy.routes.has(name) ? 'route' : policy.models.has(name) ? 'model' : null);
}

/** One start-up line on who may call the gateway. */
export function describeAuth(auth: GatewayAuth, host: string): { level: 'info' | 'warn'; message: string } {
  const scraper = auth.hasMetricsToken ? ' (/metrics also takes the metrics token)' : '';
  const admin = auth.hasAdminToken
    ? `the admin endpoints (/admin, /metrics, /dashboard) need the admin token${scraper}`
    : auth.hasKeys
      ? `the admin endpoints (/admin, /metrics, /dashboard) are disabled: no server.auth.admin_token${scraper}`
      : null;
  if (auth.hasKeys)
    return {
      level: 'info',
      message: `auth: ${auth.keyNames.length} gateway key${auth.keyNames.length === 1 ? '' : 's'} (${auth.keyNames.join(', ')}); ${admin}`,
    };
  if (auth.allowUnauthenticated)
    return {
      level: 'warn',
      message: `auth: none (server.auth.allow_unauthenticated): every client that reaches ${host} may call the gateway${admin ? `; ${admin}` : ' and its admin endpoints'}; authentication must happen in front of tiergate`,
    };
  return {
    level: 'info',
    message: `auth: no gateway keys (server.auth.keys), so tiergate serves loopback clients only, on ${host}${admin ? `; ${admin}` : ''}; add keys to serve the network`,
  };
}
