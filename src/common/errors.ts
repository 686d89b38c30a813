// The one error catalogue. Every error tiergate reports has a stable code from this
// table, a message template and the HTTP status it maps to; tests assert the code,
// never the wording. Client-facing errors are rendered in the OpenAI error shape.
// Messages pass through redactSecrets: an upstream that echoes our key stays quoted without it.
import { redactSecrets } from './secrets.ts';

export interface CatalogueEntry {
  status: number;
  /** OpenAI `error.type` for client-facing errors. */
  type:
    | 'invalid_request_error'
    | 'authentication_error'
    | 'permission_error'
    | 'not_found_error'
    | 'rate_limit_error'
    | 'api_error'
    | 'timeout_error'
    | 'config_error';
  template: string;
}

export const ERRORS = {
  // Policy (gateway.yaml) errors: reported at load, with a location.
  TG_ERR_CONFIG_READ: { status: 500, type: 'config_error', template: 'cannot read the policy file: {reason}' },
  TG_ERR_CONFIG_YAML: { status: 500, type: 'config_error', template: 'YAML syntax: {reason}' },
  TG_ERR_CONFIG_SCHEMA: { status: 500, type: 'config_error', template: '{reason}' },
  TG_ERR_CONFIG_ENV_MISSING: {
    status: 500,
    type: 'config_error',
    template: 'environment variable {name} is not set and has no default (write ${{name}:-default} to give one)',
  },
  TG_ERR_CONFIG_REFERENCE: { status: 500, type: 'config_error', template: '{reason}' },
  TG_ERR_CONFIG_JSONATA: { status: 500, type: 'config_error', template: 'JSONata: {reason}' },
  TG_ERR_CONFIG_FEATURE_NAME: { status: 500, type: 'config_error', template: '{reason}' },
  TG_ERR_CONFIG_RULE: { status: 500, type: 'config_error', template: '{reason}' },
  TG_ERR_CONFIG_AUTH: { status: 500, type: 'config_error', template: '{reason}' },
  TG_ERR_CONFIG_PATH: { status: 500, type: 'config_error', template: '{reason}' },
  // Plugin errors: discovery, contract and options.
  TG_ERR_PLUGIN_UNKNOWN: { status: 500, type: 'config_error', template: 'unknown {kind} plugin "{name}"{hint}' },
  TG_ERR_PLUGIN_INVALID: { status: 500, type: 'config_error', template: '{reason}' },
  TG_ERR_PLUGIN_CONTRACT: { status: 500, type: 'config_error', template: '{plugin} {declared}, but this tiergate speaks plugin contract {speaks}: {fix}' },
  TG_ERR_PLUGIN_LOAD: { status: 500, type: 'config_error', template: 'plugin failed to load: {reason}' },
  TG_ERR_PLUGIN_OPTIONS: { status: 500, type: 'config_error', template: '{reason}' },
  TG_ERR_PLUGIN_CREATE: { status: 500, type: 'config_error', template: 'plugin failed to start: {reason}' },
  TG_ERR_PLUGIN_PATH: { status: 500, type: 'config_error', template: '{reason}' },
  // Client request errors: 4xx in the OpenAI error shape.
  TG_ERR_REQUEST_JSON: { status: 400, type: 'invalid_request_error', template: 'request body is not valid JSON: {reason}' },
  TG_ERR_REQUEST_INVALID: { status: 400, type: 'invalid_request_error', template: '{reason}' },
  TG_ERR_REQUEST_TOO_LARGE: { status: 413, type: 'invalid_request_error', template: 'request body is larger than the limit of {limit}' },
  TG_ERR_REQUEST_TOO_DEEP: {
    status: 400,
    type: 'invalid_request_error',
    template: '{param} is nested more than {limit} levels deep: a request body may nest objects and arrays {limit} levels deep at most',
  },
  TG_ERR_REQUEST_UNSENDABLE: { status: 400, type: 'invalid_request_error', template: 'the request could not be sent to {model}: {reason}' },
  TG_ERR_REQUEST_CONTENT_TYPE: { status: 415, type: 'invalid_request_error', template: 'request body must be application/json' },
  TG_ERR_REQUEST_HTTP: { status: 400, type: 'invalid_request_error', template: 'malformed HTTP request ({reason})' },
  TG_ERR_REQUEST_HEADERS_TOO_LARGE: { status: 431, type: 'invalid_request_error', template: 'request headers are larger than the server accepts' },
  TG_ERR_REQUEST_TIMEOUT: {
    status: 408,
    type: 'invalid_request_error',
    template: 'the request did not arrive in time: its headers and body must arrive within {timeout_ms} ms (server.request_timeout_ms)',
  },
  TG_ERR_REQUEST_UNKNOWN_MODEL: {
    status: 404,
    type: 'not_found_error',
    template: 'model "{model}" is neither a route nor a model of this gateway; GET /v1/models lists them',
  },
  TG_ERR_REQUEST_CANNOT_EMBED: { status: 400, type: 'invalid_request_error', template: '{kind} "{name}" cannot answer embeddings requests: {reason}' },
  TG_ERR_REQUEST_EMBEDDING_MODEL: {
    status: 400,
    type: 'invalid_request_error',
    template: 'model "{model}" is an embedding model (kind: embedding): it answers POST /v1/embeddings, not chat requests',
  },
  TG_ERR_FEEDBACK_INVALID: { status: 400, type: 'invalid_request_error', template: 'feedback: {reason}' },
  TG_ERR_FEEDBACK_UNKNOWN: {
    status: 404,
    type: 'not_found_error',
    template: 'no recent decision has request_id "{request_id}" (unknown, or older than the last {capacity} decisions or {ttl_s} s)',
  },
  TG_ERR_FEEDBACK_FORBIDDEN: {
    status: 403,
    type: 'permission_error',
    template: 'request_id "{request_id}" was not made with {key}: only the key that made a request may score it',
  },
  TG_ERR_FEEDBACK_DUPLICATE: {
    status: 409,
    type: 'invalid_request_error',
    template: 'request_id "{request_id}" already has feedback (score {score}); a decision takes one score',
  },
  TG_ERR_FEEDBACK_UNAVAILABLE: {
    status: 503,
    type: 'api_error',
    template: 'request_id "{request_id}" was not served by this replica and the shared decision store cannot be reached ({reason}); retry later',
  },
  TG_ERR_RESPONSES_STATE: {
    status: 400,
    type: 'invalid_request_error',
    template:
      '{field} needs stored responses, which this gateway does not keep: send the whole conversation in `input` (earlier output items included) and leave store false',
  },
  TG_ERR_NOT_FOUND: { status: 404, type: 'not_found_error', template: 'no such endpoint: {method} {path}' },
  // Gateway keys (server.auth). A key is named by its `name`, never by its value.
  TG_ERR_AUTH_MISSING: {
    status: 401,
    type: 'authentication_error',
    template: 'missing API key: this gateway needs one of its keys, sent as Authorization: Bearer <key>',
  },
  TG_ERR_AUTH_INVALID: { status: 401, type: 'authentication_error', template: "invalid API key: it is not one of this gateway's keys" },
  TG_ERR_AUTH_FORBIDDEN: { status: 403, type: 'permission_error', template: 'key "{key}" may not call {kind} "{name}"{hint}' },
  TG_ERR_AUTH_ADMIN: {
    status: 401,
    type: 'authentication_error',
    template: '{path} needs the admin token (server.auth.admin_token), sent as Authorization: Bearer <token>',
  },
  TG_ERR_AUTH_ADMIN_DISABLED: {
    status: 403,
    type: 'permission_error',
    template: '{path} is disabled: this gateway has API keys but no server.auth.admin_token',
  },
  TG_ERR_AUTH_LOOPBACK_ONLY: {
    status: 403,
    type: 'permission_error',
    template: 'this gateway has no API keys (server.auth.keys) and serves loopback clients only',
  },
  // Per-key limits (server.auth.keys[].limits); retry-after says when the window resets.
  TG_ERR_LIMIT_REQUESTS: {
    status: 429,
    type: 'rate_limit_error',
    template: 'key "{key}" has made its {limit} requests {period} (limits.requests_per_{window}); the window resets in {retry_after_s} s',
  },
  TG_ERR_LIMIT_SPEND: {
    status: 429,
    type: 'rate_limit_error',
    template: 'key "{key}" has spent ${spent} of its ${limit} budget {period} (limits.usd_per_{window}); the window resets in {retry_after_s} s',
  },
  TG_ERR_LIMIT_UNAVAILABLE: {
    status: 503,
    type: 'api_error',
    template:
      'key "{key}" has limits that cannot be checked now: Redis (state.redis) is unavailable and server.auth.limits_when_redis_down is reject; retry shortly',
  },
  // Routing and upstream errors.
  TG_ERR_ROUTING: { status: 500, type: 'api_error', template: 'routing failed: {reason}' },
  TG_ERR_EXPRESSION_LIMIT: { status: 500, type: 'api_error', template: 'expression stopped: {reason}' },
  TG_ERR_UPSTREAM: { status: 502, type: 'api_error', template: 'upstream {model} failed: {reason}' },
  TG_ERR_UPSTREAM_REJECTED: { status: 400, type: 'invalid_request_error', template: 'upstream {model} rejected the request (HTTP {status}): {reason}' },
  TG_ERR_UPSTREAM_RATE_LIMITED: { status: 429, type: 'rate_limit_error', template: 'upstream {model} is rate limited: {reason}' },
  TG_ERR_UPSTREAM_TIMEOUT: { status: 504, type: 'timeout_error', template: 'upstream {model} did not answer within {timeout_ms} ms' },
  TG_ERR_UPSTREAM_REPLY: { status: 502, type: 'api_error', template: 'upstream {model} sent a reply tiergate cannot read: {reason}' },
  TG_ERR_ALL_FAILED: { status: 502, type: 'api_error', template: 'every model tried failed: {summary}' },
  // A gate with on_fail: refuse (routes.<name>.gate). 4xx: sending the same request again gets the same verdict.
  TG_ERR_GATE_INPUT_REFUSED: {
    status: 400,
    type: 'invalid_request_error',
    template: 'route "{route}" refused the request: {failed} (gate.input_checks); no model was called',
  },
  TG_ERR_GATE_ANSWER_REFUSED: {
    status: 422,
    type: 'invalid_request_error',
    template: 'route "{route}" refused to serve an answer: none of the {answers} answer(s) passed its gate ({failed}); gate.on_fail is refuse',
  },
  TG_ERR_UNAVAILABLE: { status: 503, type: 'api_error', template: '{reason}' },
  TG_ERR_SERVER_BUSY: {
    status: 503,
    type: 'api_error',
    template: 'the gateway is at its limit of {max_connections} open connections (server.max_connections); this connection is closed, try again shortly',
  },
  TG_ERR_SHUTTING_DOWN: {
    status: 503,
    type: 'api_error',
    template: 'the gateway is shutting down and stopped this request after {timeout_ms} ms (server.shutdown_timeout_ms); send it again',
  },
  TG_ERR_INTERNAL: { status: 500, type: 'api_error', template: 'internal error: {reason}' },
  // `tiergate eval`: the recorded dataset and how the policy's models map onto it.
  TG_ERR_EVAL_DATA: { status: 500, type: 'config_error', template: 'dataset: {reason}' },
  TG_ERR_EVAL_MAPPING: { status: 500, type: 'config_error', template: 'model mapping: {reason}' },
  TG_ERR_EVAL_OPTIONS: { status: 500, type: 'config_error', template: '{reason}' },
  TG_ERR_TRAIN_OPTIONS: { status: 500, type: 'config_error', template: '{reason}' },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorCode = keyof typeof ERRORS;

/** Where in a policy (or plugin) file an error is. line and column are 1-based. */
export interface SourceLocation {
  file: string;
  line?: number;
  column?: number;
  /** Dotted path inside the document, e.g. routes.support.router.rules[1].when */
  path?: string;
}

function fill(template: string, params: Record<string, unknown>): string {
  return template.replace(/\{(\w+)\}/g, (whole, key: string) => (key in params ? String(params[key]) : whole));
}

export class TiergateError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: CatalogueEntry['type'];
  readonly params: Record<string, unknown>;
  location?: SourceLocation;
  /** Extra machine-readable detail for the client (for example the offending param). */
  param?: string;
  /** Sent as the retry-after header (seconds, rounded up) with the error. */
  readonly retryAfterMs?: number;

  constructor(
    code: ErrorCode,
    params: Record<string, unknown> = {},
    options: { location?: SourceLocation; param?: string; cause?: unknown; retryAfterMs?: number } = {},
  ) {
    const entry: CatalogueEntry = ERRORS[code];
    super(redactSecrets(fill(entry.template, params)), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TiergateError';
    this.code = code;
    this.status = entry.status;
    this.type = entry.type;
    this.params = params;
    this.location = options.location;
    this.param = options.param;
    if (options.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
  }

  /** `gateway.yaml:23:15 routes.support.router.rules[1].when: message [CODE]` */
  located(): string {
    return formatLocated(this.location, `${this.message} [${this.code}]`);
  }

  /** The OpenAI error shape used for every client-facing error. */
  toOpenAI(): { error: { message: string; type: string; param: string | null; code: string } } {
    return { error: { message: this.message, type: this.type, param: this.param ?? null, code: this.code } };
  }
}

export function formatLocated(location: SourceLocation | undefined, message: string): string {
  if (!location) return message;
  let where = location.file;
  if (location.line !== undefined) where += `:${location.line}` + (location.column !== undefined ? `:${location.column}` : '');
  if (location.path) where += ` ${location.path}`;
  return `${where}: ${message}`;
}

/** Several located errors found in one pass (a policy is checked completely, not first-error-only). */
export class PolicyErrors extends Error {
  readonly errors: readonly TiergateError[];
  constructor(errors: TiergateError[]) {
    super(errors.map((e) => e.located()).join('\n'));
    this.name = 'PolicyErrors';
    this.errors = errors;
  }
}

export function errorMessage(err: unknown): string {
  return redactSecrets(err instanceof Error ? err.message : String(err));
}
