// Stage 3 of the policy compiler: the rules between fields that a JSON Schema cannot
// express. Before: source.ts read the file, schema.ts checked its shape (and, per plugin
// entry, plugin-sites.ts checked the plugin's options). After: compile.ts builds the
// runtime, but only when every check here returned nothing.
//
// Each check reads validated data (PolicyData, defaults filled in) and returns located
// errors; none registers, opens or changes anything, except that the decision log is
// opened once to prove it can be (a serve-time check, see checkDecisionLogFile).
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { TiergateError, errorMessage, type SourceLocation } from '../common/errors.ts';
import { isLoopbackHost } from './gateway-auth.ts';
import type { PolicyData, ServerData } from '../policy-shape/policy-data.ts';
import type { Path, PolicySource } from './source.ts';

/** Keys of the request view that a feature may not shadow. */
export const RESERVED_INPUT_NAMES = ['model', 'messages', 'parameters', 'metadata', 'headers', 'stream', 'features'];

export interface SemanticCheckOptions {
  /** The address the gateway listens on in place of server.host (--host): checked like server.host. */
  listenHost?: string;
  /** Whether the policy is about to serve: only then must the decision log open. */
  serving: boolean;
}

/** Every rule between fields, in the order their errors are reported. */
export function checkSemantics(data: PolicyData, source: PolicySource, options: SemanticCheckOptions): TiergateError[] {
  const errors = [...checkCrossReferences(data, source), ...checkAuth(data.server, source, options.listenHost), ...checkSharedState(data, source)];
  if (options.serving) errors.push(...checkDecisionLogFile(data, source));
  return errors;
}

/** Tiers, models, routes and features that name or shadow each other. */
export function checkCrossReferences(data: PolicyData, source: PolicySource): TiergateError[] {
  const errors: TiergateError[] = [];
  const reference = (reason: string, p: Path, key = false) =>
    errors.push(new TiergateError('TG_ERR_CONFIG_REFERENCE', { reason }, { location: source.locate(p, { key }) }));
  const tierOfModel = new Map<string, string>();
  const tierNames = new Set<string>();
  data.tiers.forEach((tier, i) => {
    if (tierNames.has(tier.name)) reference(`tier "${tier.name}" is declared twice; tier names must be unique`, ['tiers', i, 'name']);
    tierNames.add(tier.name);
    if (tier.name in data.models) reference(`tier "${tier.name}" has the same name as a model; routes could not tell them apart`, ['tiers', i, 'name']);
    tier.models.forEach((model, j) => {
      const earlier = tierOfModel.get(model);
      if (earlier !== undefined && earlier !== tier.name)
        reference(`model "${model}" is already in tier "${earlier}"; a model belongs to one tier`, ['tiers', i, 'models', j]);
      tierOfModel.set(model, tier.name);
    });
  });
  for (const [name, route] of Object.entries(data.routes)) {
    if (route.speculate && !route.gate)
      errors.push(
        new TiergateError(
          'TG_ERR_CONFIG_RULE',
          { reason: 'speculate needs a gate: the cheap answer is served only when it passes one' },
          { location: source.locate(['routes', name, 'speculate'], { key: true }) },
        ),
      );
    // cascade holds a posterior against u / (u + o): without costs there is nothing to hold it against.
    if (route.gate?.decide === 'cascade' && !route.costs)
      errors.push(
        new TiergateError(
          'TG_ERR_CONFIG_RULE',
          { reason: 'gate.decide: cascade needs costs: the posterior that an answer is good is held against their break-even u / (u + o)' },
          { location: source.locate(['routes', name, 'gate', 'decide']) },
        ),
      );
    // bypass sends the answer before the gate sees it: a refusal would come after the bytes it refuses.
    if (route.gate?.on_fail === 'refuse' && route.gate.streaming === 'bypass')
      errors.push(
        new TiergateError(
          'TG_ERR_CONFIG_RULE',
          {
            reason:
              'gate.on_fail: refuse needs streaming: buffer: with bypass a streamed answer reaches the client before its gate runs, so it could not be refused',
          },
          { location: source.locate(['routes', name, 'gate', 'on_fail']) },
        ),
      );
    if (route.shadow && !route.gate)
      errors.push(
        new TiergateError(
          'TG_ERR_CONFIG_RULE',
          { reason: "shadow needs a gate to compare answers: both are scored by the route's gate evaluators" },
          { location: source.locate(['routes', name, 'shadow'], { key: true }) },
        ),
      );
  }
  errors.push(...checkModelKinds(data, source));
  for (const name of Object.keys(data.routes)) {
    if (name in data.models)
      reference(`route "${name}" has the same name as a model; "model": "${name}" in a request would be ambiguous`, ['routes', name], true);
  }
  for (const name of Object.keys(data.features)) {
    if (RESERVED_INPUT_NAMES.includes(name))
      errors.push(
        new TiergateError(
          'TG_ERR_CONFIG_FEATURE_NAME',
          { reason: `feature name "${name}" is reserved for the request itself (${RESERVED_INPUT_NAMES.join(', ')})` },
          { location: source.locate(['features', name], { key: true }) },
        ),
      );
  }
  return errors;
}

/**
 * Chat models where chat requests go (tiers, a route's default and fallback), an
 * embedding model where embeddings requests go (a route's embeddings): a request must
 * never reach a model that cannot answer it.
 */
function checkModelKinds(data: PolicyData, source: PolicySource): TiergateError[] {
  const errors: TiergateError[] = [];
  const isEmbedding = (name: string) => data.models[name]?.kind === 'embedding';
  const wrongKind = (reason: string, p: Path) => errors.push(new TiergateError('TG_ERR_CONFIG_REFERENCE', { reason }, { location: source.locate(p) }));
  data.tiers.forEach((tier, i) =>
    tier.models.forEach((model, j) => {
      if (isEmbedding(model))
        wrongKind(`model "${model}" is an embedding model (kind: embedding): tiers hold chat models; a route names it in embeddings`, [
          'tiers',
          i,
          'models',
          j,
        ]);
    }),
  );
  for (const [name, route] of Object.entries(data.routes)) {
    for (const key of ['default', 'fallback'] as const) {
      const target = route[key];
      if (target !== undefined && isEmbedding(target))
        wrongKind(`"${target}" is an embedding model (kind: embedding) and cannot answer chat requests; name it in routes.${name}.embeddings`, [
          'routes',
          name,
          key,
        ]);
    }
    if (route.embeddings !== undefined && data.models[route.embeddings] && !isEmbedding(route.embeddings))
      wrongKind(`"${route.embeddings}" is a chat model; embeddings must name a model of kind: embedding`, ['routes', name, 'embeddings']);
  }
  return errors;
}

const UNREADABLE_HEADERS = ['authorization', 'proxy-authorization', 'cookie'];

/**
 * server.auth and what depends on it: unique key names and values, tokens that differ
 * from every key, credential headers kept from expressions, and no keyless gateway
 * listening beyond loopback (the schema checks the shape, x-ref the route and model
 * names). `listenHost` is the address the gateway was told to listen on in place of
 * server.host (--host), when it was.
 */
export function checkAuth(server: ServerData, source: PolicySource, listenHost?: string): TiergateError[] {
  const errors: TiergateError[] = [];
  const problem = (reason: string, at: ReadonlyArray<string | number>, key = false) =>
    errors.push(new TiergateError('TG_ERR_CONFIG_AUTH', { reason }, { location: source.locate(['server', ...at], { key }) }));
  const auth = server.auth;
  const keys = auth?.keys ?? [];
  const names = new Map<string, number>();
  const values = new Map<string, number>();
  keys.forEach((entry, i) => {
    const sameName = names.get(entry.name);
    if (sameName !== undefined)
      problem(`key name "${entry.name}" is also used by keys[${sameName}]; every key needs its own name (it is what logs and budgets see)`, [
        'auth',
        'keys',
        i,
        'name',
      ]);
    else names.set(entry.name, i);
    const sameValue = values.get(entry.key);
    // Never quote the value: the message names the other entry instead.
    if (sameValue !== undefined)
      problem(`this key is the same as the key of "${keys[sameValue].name}"; every key must be different, or the gateway cannot tell them apart`, [
        'auth',
        'keys',
        i,
        'key',
      ]);
    else values.set(entry.key, i);
  });
  if (auth?.admin_token !== undefined && values.has(auth.admin_token))
    problem(`admin_token is the same as the key of "${keys[values.get(auth.admin_token) as number].name}"; a gateway key must not open the admin endpoints`, [
      'auth',
      'admin_token',
    ]);
  if (auth?.metrics_token !== undefined && values.has(auth.metrics_token))
    problem(`metrics_token is the same as the key of "${keys[values.get(auth.metrics_token) as number].name}"; a gateway key must not open /metrics`, [
      'auth',
      'metrics_token',
    ]);
  if (auth?.metrics_token !== undefined && auth.metrics_token === auth.admin_token)
    problem('metrics_token is the same as admin_token; give the scraper its own token, or leave metrics_token out and give it the admin token', [
      'auth',
      'metrics_token',
    ]);
  if (auth?.allow_unauthenticated === true && keys.length > 0)
    problem('allow_unauthenticated cannot be combined with keys: with keys, every request needs one', ['auth', 'allow_unauthenticated'], true);
  server.header_allowlist.forEach((header, i) => {
    if (UNREADABLE_HEADERS.includes(header.toLowerCase()))
      problem(`${header.toLowerCase()} carries the client's credentials; routing expressions may not read it (it could reach the decision log)`, [
        'header_allowlist',
        i,
      ]);
  });
  if (keys.length === 0 && auth?.allow_unauthenticated !== true) {
    const host = listenHost ?? server.host;
    if (host !== undefined && !isLoopbackHost(host)) {
      const what =
        listenHost !== undefined && listenHost !== server.host
          ? `listening on ${host} (asked for on the command line, in place of server.host)`
          : `host ${host}`;
      const known = host === '0.0.0.0' || host === '::' ? ' (every address)' : '';
      // Located at server.host, or at the nearest key above it when the file has none.
      problem(
        `${what}${known} needs server.auth.keys: without keys tiergate accepts loopback only (127.0.0.1, ::1, localhost), so that an open gateway is never reachable from the network by accident. Add keys, or set server.auth.allow_unauthenticated: true when authentication happens in front of tiergate`,
        ['host'],
      );
    }
  }
  return errors;
}

/** state.redis and the per-key limits that depend on it (the schema checks the shape). */
export function checkSharedState(data: PolicyData, source: PolicySource): TiergateError[] {
  const errors: TiergateError[] = [];
  const url = data.state?.redis?.url;
  if (url !== undefined && !URL.canParse(url)) {
    errors.push(
      new TiergateError(
        'TG_ERR_CONFIG_RULE',
        { reason: 'not a URL; write redis://[:password@]host:port[/db] (rediss:// for TLS)' },
        { location: source.locate(['state', 'redis', 'url']) },
      ),
    );
  }
  if (data.server.auth?.limits_when_redis_down !== undefined && data.state?.redis === undefined) {
    const location: SourceLocation = source.locate(['server', 'auth', 'limits_when_redis_down'], { key: true });
    errors.push(
      new TiergateError(
        'TG_ERR_CONFIG_RULE',
        { reason: 'limits_when_redis_down applies only when the limits are shared through Redis (state.redis); without it every replica counts alone' },
        { location },
      ),
    );
  }
  return errors;
}

/**
 * The decision log must open before the policy goes live: a path that cannot (a folder,
 * a name too long, a file where a folder should be) would otherwise fail inside the
 * log's stream once the policy serves, taking the process down. Opening it is the only
 * sure test, so this check creates the file (and its folder) it will write anyway.
 */
export function checkDecisionLogFile(data: PolicyData, source: PolicySource): TiergateError[] {
  const file = data.analytics.decision_log.file;
  if (!file) return [];
  const filename = path.resolve(source.directory, file);
  try {
    mkdirSync(path.dirname(filename), { recursive: true });
    closeSync(openSync(filename, 'a'));
    return [];
  } catch (err) {
    const reason = `the decision log ${filename} cannot be opened for writing: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`;
    return [new TiergateError('TG_ERR_CONFIG_PATH', { reason }, { location: source.locate(['analytics', 'decision_log', 'file']) })];
  }
}
