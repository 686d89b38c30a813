// What the two providers that speak OpenAI's chat completions wire format share: the
// `openai` provider (through the official SDK) and `openai_compatible` (undici
// directly). Both must check their options, describe their upstream and word their
// failures the same way, so that a policy can move a model from one to the other
// without its logs, errors or retry behaviour changing.
import {
  UpstreamError,
  type ChatRequest,
  type ChatResult,
  type EmbeddingRequest,
  type EmbeddingResult,
  type OptionIssue,
  type OptionsFrom,
} from './plugin-api.ts';

/** Upstream error bodies can be whole HTML pages; keep messages readable. */
const MAX_DETAIL_CHARS = 300;

/** The `headers` option of every provider that lets a policy add HTTP headers. */
export const EXTRA_HEADERS_OPTION = {
  type: 'object',
  additionalProperties: { type: 'string', 'x-secret': true },
  description: 'Extra headers sent with every request (their values are treated as secrets).',
} as const;

/** The JSON Schema properties of the options both providers take, described for `tiergate validate` and the docs. */
export function wireOptionProperties(baseURLDescription: string) {
  return {
    api_key: {
      type: 'string',
      'x-secret': true,
      description:
        'API key, sent as a bearer token. Required by OpenAI (write "${OPENAI_API_KEY}" to read it from the environment); omit it, or leave it empty, for local servers that need none.',
    },
    base_url: { type: 'string', minLength: 1, description: baseURLDescription },
    organization: { type: 'string', minLength: 1, description: 'OpenAI organization ID, sent as OpenAI-Organization.' },
    headers: EXTRA_HEADERS_OPTION,
  } as const;
}

/** Options both providers take: api_key (a bearer token), base_url (up to and including /v1), organization, extra headers. */
export type OpenAIWireOptions = OptionsFrom<{ type: 'object'; additionalProperties: false; properties: ReturnType<typeof wireOptionProperties> }>;

export function validateBaseURL(baseURL: string | undefined): OptionIssue[] {
  if (baseURL === undefined) return [];
  let url: URL;
  try {
    url = new URL(baseURL);
  } catch {
    return [{ path: ['base_url'], message: `"${baseURL}" is not a URL` }];
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return [{ path: ['base_url'], message: `must be an http or https URL, not ${url.protocol}` }];
  }
  if (url.username || url.password) {
    // fetch refuses such URLs, and they would leak into error messages.
    return [{ path: ['base_url'], message: 'must not contain credentials; use api_key or headers' }];
  }
  return [];
}

/** The body of a non-streaming call: OpenAI rejects stream_options on one. */
export function completionBody(request: ChatRequest): Record<string, unknown> {
  const { stream_options: _streamOptions, ...rest } = request;
  return { ...rest, stream: false };
}

/** The body of a streaming call: it always asks for usage, which the host needs to account cost. */
export function streamBody(request: ChatRequest): Record<string, unknown> {
  return { ...request, stream: true, stream_options: { ...asRecord(request.stream_options), include_usage: true } };
}

export function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** An empty key is what `${OPENAI_API_KEY:-}` gives when the variable is unset: no key. */
export function configuredKey(options: Readonly<OpenAIWireOptions>): string | undefined {
  return options.api_key === '' ? undefined : options.api_key;
}

/** The base URL without credentials, query or fragment: safe to put in messages. */
export function describeURL(baseURL: string): string {
  try {
    const url = new URL(baseURL);
    return `${url.origin}${url.pathname.replace(/\/$/, '')}`;
  } catch {
    return 'the upstream';
  }
}

export function clip(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > MAX_DETAIL_CHARS ? `${flat.slice(0, MAX_DETAIL_CHARS)}…` : flat;
}

/** Checks that a 200 reply is shaped like a chat completion (an SDK hands over a non-JSON body as text). */
export function asChatResult(reply: unknown, where: string): ChatResult {
  if (typeof reply !== 'object' || reply === null || !Array.isArray((reply as { choices?: unknown }).choices)) {
    const got = typeof reply === 'string' ? `text: ${clip(reply)}` : JSON.stringify(reply) === undefined ? String(reply) : clip(JSON.stringify(reply));
    throw new UpstreamError('reply', `${where} sent a reply that is not a chat completion (${got})`);
  }
  return reply as ChatResult;
}

/** An upstream embeddings body: the request as given, asking for floats (the gateway encodes base64 for a client that asks for it). */
export function embeddingBody(request: EmbeddingRequest): EmbeddingRequest {
  return { ...request, encoding_format: 'float' };
}

/** The reply as an EmbeddingResult (a vector of numbers per item), or a reply failure that says what came instead. */
export function asEmbeddingResult(reply: unknown, where: string): EmbeddingResult {
  const data = typeof reply === 'object' && reply !== null ? (reply as { data?: unknown }).data : undefined;
  const vectors = Array.isArray(data) && data.every((item) => Array.isArray((item as { embedding?: unknown } | null)?.embedding));
  if (!vectors) {
    const got = typeof reply === 'string' ? `text: ${clip(reply)}` : JSON.stringify(reply) === undefined ? String(reply) : clip(JSON.stringify(reply));
    throw new UpstreamError('reply', `${where} sent a reply that is not a list of embeddings (${got})`);
  }
  return reply as EmbeddingResult;
}

/** Milliseconds from retry-after-ms (a non-standard header OpenAI sends) or retry-after (seconds or an HTTP date). */
export function parseRetryAfter(header: (name: string) => string | null | undefined): number | undefined {
  const ms = Number.parseFloat(header('retry-after-ms') ?? '');
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const value = header('retry-after');
  if (!value) return undefined;
  const seconds = Number.parseFloat(value);
  if (Number.isFinite(seconds)) return seconds >= 0 ? seconds * 1000 : undefined;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** The innermost useful description of a network error: "other side closed (UND_ERR_SOCKET)". */
export function rootCause(err: unknown): string {
  let current = err;
  let text = '';
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    text = current.message + (typeof code === 'string' ? ` (${code})` : '');
    current = current.cause;
  }
  return text || String(err);
}

/** Removes the configured key from upstream words: upstreams quote the key they were sent. */
export function redactor(secret: string | undefined): (text: string) => string {
  return (text) => (secret && secret.length >= 4 ? text.split(secret).join('[redacted]') : text);
}

/** The messages both providers give each failure, so logs read the same whichever sent the call. */
export const wireFailure = {
  aborted: () => 'the call was cancelled',
  timeout: (where: string) => `${where} did not answer in time`,
  unreachable: (where: string, cause: unknown) => `cannot reach ${where}: ${rootCause(cause)}`,
  broken: (where: string, cause: unknown) => `the connection to ${where} broke: ${rootCause(cause)}`,
  status: (where: string, status: number, detail: string) => `${where} answered HTTP ${status}${detail ? `: ${detail}` : ''}`,
  midStream: (where: string, detail: string) => `${where} reported an error mid-stream: ${detail}`,
  notJson: (where: string, detail: string) => `${where} sent a reply that is not valid JSON: ${clip(detail)}`,
  noChunks: (where: string) => `${where} ended the stream without sending any chunk (is it an SSE endpoint?)`,
};
