// OpenAI's Responses API as a way in (POST /v1/responses). A request is translated into
// the chat body the rest of tiergate speaks, goes through the same routes, gates and
// ladders, and the answer (or its stream) is rendered back as a Response object and the
// Responses API's event sequence. Pure functions and one stream translator: the HTTP face
// is router.ts beside it.
//
// Mapping, Responses → chat:
//   instructions                          → a leading system message
//   input (string)                        → one user message
//   input items: messages                 → messages (input_text / output_text → text, input_image → image_url)
//                function_call            → assistant tool_calls (consecutive calls join one assistant turn)
//                function_call_output     → role "tool" messages
//   tools {type: function, name, …}       → chat's nested function tools; tool_choice likewise
//   text.format {json_schema | json_object} → response_format; text.verbosity → verbosity
//   max_output_tokens, temperature, top_p, parallel_tool_calls, user, reasoning.effort, metadata (routing input)
// and back: the answer's text → a `message` item, tool calls → `function_call` items,
// length / content_filter → status "incomplete", usage → input_tokens / output_tokens.
//
// State is not kept: `previous_response_id` and `store: true` are refused (the caller
// sends the whole conversation in `input`), so nothing is silently forgotten.
import AjvModule, { type ErrorObject } from 'ajv';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ChatMessage, ContentPart, ToolCall } from '../../plugin-contract/plugin-api.ts';

/** A client error in the translation, with the JSON path it is about. */
export class ResponsesRequestError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

/** A request that needs state this gateway does not keep (previous_response_id, store: true). */
export class ResponsesStateError extends Error {
  constructor(readonly field: 'previous_response_id' | 'store') {
    super(field);
  }
}

type Json = Record<string, unknown>;

const Ajv = AjvModule.default ?? (AjvModule as unknown as typeof AjvModule.default);

const isRecord = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Fields of a Responses request this translation understands; others are refused by name (never silently dropped). */
const KNOWN_FIELDS = new Set([
  'model',
  'input',
  'instructions',
  'max_output_tokens',
  'temperature',
  'top_p',
  'stream',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'text',
  'metadata',
  'user',
  'reasoning',
  'store',
  'previous_response_id',
  'truncation',
  'include',
]);

/** What the Response object reports of the request it answers, as OpenAI's does. */
export interface ResponseEcho {
  instructions: string | null;
  max_output_tokens: number | null;
  temperature: number | null;
  top_p: number | null;
  tools: unknown[];
  tool_choice: unknown;
  parallel_tool_calls: boolean;
  text: Json;
  metadata: Json;
  user: string | null;
}

export interface TranslatedResponsesRequest {
  /** The chat body (model = the route or model the client asked for). */
  body: Record<string, unknown> & { model: string; messages: ChatMessage[] };
  echo: ResponseEcho;
}

export function toChatBody(request: unknown): TranslatedResponsesRequest {
  if (!isRecord(request)) throw new ResponsesRequestError('body', 'must be a JSON object');
  for (const key of Object.keys(request)) if (!KNOWN_FIELDS.has(key)) throw new ResponsesRequestError(key, 'is not a Responses API field this gateway accepts');
  // State first: a client relying on it must learn so even when the rest is fine.
  if (request.previous_response_id !== undefined && request.previous_response_id !== null) throw new ResponsesStateError('previous_response_id');
  if (request.store === true) throw new ResponsesStateError('store');
  if (request.store !== undefined && request.store !== null && request.store !== false) throw new ResponsesRequestError('store', 'must be true or false');
  if (typeof request.model !== 'string' || request.model === '') throw new ResponsesRequestError('model', 'is required: a route or model name');

  const messages: ChatMessage[] = [];
  let instructions: string | null = null;
  if (request.instructions !== undefined && request.instructions !== null) {
    if (typeof request.instructions !== 'string') throw new ResponsesRequestError('instructions', 'must be a string');
    instructions = request.instructions;
    messages.push({ role: 'system', content: instructions });
  }
  if (typeof request.input === 'string') messages.push({ role: 'user', content: request.input });
  else if (Array.isArray(request.input)) request.input.forEach((item, i) => addInputItem(messages, item, `input.${i}`));
  else throw new ResponsesRequestError('input', 'is required: a string or a list of input items');
  if (!messages.some((m) => m.role !== 'system')) throw new ResponsesRequestError('input', 'must hold at least one message');

  const body: TranslatedResponsesRequest['body'] = { model: request.model, messages };
  const echo: ResponseEcho = {
    instructions,
    max_output_tokens: null,
    temperature: null,
    top_p: null,
    tools: [],
    tool_choice: 'auto',
    parallel_tool_calls: true,
    text: { format: { type: 'text' } },
    metadata: {},
    user: null,
  };
  if (request.max_output_tokens !== undefined && request.max_output_tokens !== null) {
    if (!Number.isInteger(request.max_output_tokens) || (request.max_output_tokens as number) < 1)
      throw new ResponsesRequestError('max_output_tokens', 'must be a whole number ≥ 1');
    body.max_tokens = echo.max_output_tokens = request.max_output_tokens as number;
  }
  for (const key of ['temperature', 'top_p'] as const) {
    if (request[key] === undefined || request[key] === null) continue;
    if (typeof request[key] !== 'number') throw new ResponsesRequestError(key, 'must be a number');
    body[key] = echo[key] = request[key];
  }
  if (request.stream !== undefined && request.stream !== null) {
    if (typeof request.stream !== 'boolean') throw new ResponsesRequestError('stream', 'must be true or false');
    if (request.stream) {
      body.stream = true;
      // The final usage chunk becomes response.completed's usage.
      body.stream_options = { include_usage: true };
    }
  }
  if (request.tools !== undefined && request.tools !== null) {
    const tools = toolsOf(request.tools);
    echo.tools = tools;
    if (tools.length) body.tools = tools.map(toChatTool);
  }
  if (request.tool_choice !== undefined && request.tool_choice !== null) {
    body.tool_choice = toChatToolChoice(request.tool_choice);
    echo.tool_choice = request.tool_choice;
  }
  if (request.parallel_tool_calls !== undefined && request.parallel_tool_calls !== null) {
    if (typeof request.parallel_tool_calls !== 'boolean') throw new ResponsesRequestError('parallel_tool_calls', 'must be true or false');
    echo.parallel_tool_calls = request.parallel_tool_calls;
    if (body.tools) body.parallel_tool_calls = request.parallel_tool_calls;
  }
  if (request.text !== undefined) Object.assign(body, textOptions(request.text, echo));
  if (request.metadata !== undefined && request.metadata !== null) {
    if (!isRecord(request.metadata)) throw new ResponsesRequestError('metadata', 'must be an object');
    // tiergate's routing input on the chat side, as the chat API's metadata is.
    body.metadata = echo.metadata = request.metadata;
  }
  if (request.user !== undefined && request.user !== null) {
    if (typeof request.user !== 'string') throw new ResponsesRequestError('user', 'must be a string');
    body.user = echo.user = request.user;
  }
  if (request.reasoning !== undefined && request.reasoning !== null) {
    if (!isRecord(request.reasoning)) throw new ResponsesRequestError('reasoning', 'must be an object');
    for (const key of Object.keys(request.reasoning))
      if (key !== 'effort' || (request.reasoning.effort !== null && typeof request.reasoning.effort !== 'string'))
        throw new ResponsesRequestError(`reasoning.${key}`, 'only reasoning.effort (a string) is translated');
    if (typeof request.reasoning.effort === 'string') body.reasoning_effort = request.reasoning.effort;
  }
  if (request.truncation !== undefined && request.truncation !== null && request.truncation !== 'disabled')
    throw new ResponsesRequestError('truncation', 'only "disabled" is supported: the gateway sends the conversation as given');
  if (request.include !== undefined && request.include !== null && !(Array.isArray(request.include) && request.include.length === 0))
    throw new ResponsesRequestError('include', 'extra output data is not supported; leave include out');
  return { body, echo };
}

/** One input item → chat messages, appended (a function_call joins the assistant turn before it). */
function addInputItem(messages: ChatMessage[], item: unknown, at: string): void {
  if (!isRecord(item)) throw new ResponsesRequestError(at, 'must be an input item object');
  const type = item.type ?? 'message';
  switch (type) {
    case 'message':
      messages.push(messageOf(item, at));
      return;
    case 'function_call': {
      for (const key of ['call_id', 'name', 'arguments'] as const)
        if (typeof item[key] !== 'string') throw new ResponsesRequestError(`${at}.${key}`, 'must be a string');
      const call: ToolCall = { id: item.call_id as string, type: 'function', function: { name: item.name as string, arguments: item.arguments as string } };
      const last = messages[messages.length - 1];
      if (last?.role === 'assistant') last.tool_calls = [...(last.tool_calls ?? []), call];
      else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
      return;
    }
    case 'function_call_output':
      if (typeof item.call_id !== 'string') throw new ResponsesRequestError(`${at}.call_id`, 'must be a string');
      messages.push({ role: 'tool', tool_call_id: item.call_id, content: textOfParts(item.output, `${at}.output`) });
      return;
    case 'item_reference':
      throw new ResponsesRequestError(`${at}.type`, 'item references need stored responses, which this gateway does not keep: send the item itself');
    default:
      throw new ResponsesRequestError(`${at}.type`, `input item type "${String(type)}" is not supported (message, function_call, function_call_output)`);
  }
}

function messageOf(item: Json, at: string): ChatMessage {
  const role = item.role;
  if (role !== 'user' && role !== 'assistant' && role !== 'system' && role !== 'developer')
    throw new ResponsesRequestError(`${at}.role`, 'must be "user", "assistant", "system" or "developer"');
  if (typeof item.content === 'string') return { role, content: item.content };
  if (!Array.isArray(item.content)) throw new ResponsesRequestError(`${at}.content`, 'must be a string or a list of content parts');
  const parts: ContentPart[] = item.content.map((part, i) => contentPartOf(part, `${at}.content.${i}`));
  if (role === 'user' && parts.some((p) => p.type !== 'text')) return { role, content: parts };
  if (role !== 'user' && parts.some((p) => p.type !== 'text')) throw new ResponsesRequestError(`${at}.content`, `${role} messages carry text only`);
  return { role, content: parts.map((p) => (p as { text: string }).text).join('') };
}

function contentPartOf(part: unknown, at: string): ContentPart {
  if (!isRecord(part) || typeof part.type !== 'string') throw new ResponsesRequestError(at, 'must be a content part with a type');
  switch (part.type) {
    case 'input_text':
    case 'output_text':
      if (typeof part.text !== 'string') throw new ResponsesRequestError(`${at}.text`, 'must be a string');
      return { type: 'text', text: part.text };
    case 'input_image':
      if (typeof part.image_url !== 'string')
        throw new ResponsesRequestError(`${at}.image_url`, 'must be a URL (https or data:); file_id images are not supported');
      return { type: 'image_url', image_url: { url: part.image_url, ...(typeof part.detail === 'string' ? { detail: part.detail } : {}) } } as ContentPart;
    default:
      throw new ResponsesRequestError(`${at}.type`, `content part type "${part.type}" is not supported (input_text, output_text, input_image)`);
  }
}

function textOfParts(content: unknown, at: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw new ResponsesRequestError(at, 'must be a string or a list of input_text parts');
  return content
    .map((part, i) => {
      if (isRecord(part) && part.type === 'input_text' && typeof part.text === 'string') return part.text;
      throw new ResponsesRequestError(`${at}.${i}`, 'must be an input_text part');
    })
    .join('');
}

function toolsOf(tools: unknown): Json[] {
  if (!Array.isArray(tools)) throw new ResponsesRequestError('tools', 'must be a list');
  return tools.map((tool, i) => {
    if (!isRecord(tool) || tool.type !== 'function')
      throw new ResponsesRequestError(`tools.${i}.type`, 'only function tools are supported: hosted tools (web search, file search, …) run at OpenAI only');
    if (typeof tool.name !== 'string' || tool.name === '') throw new ResponsesRequestError(`tools.${i}.name`, 'is required');
    if (tool.parameters !== undefined && tool.parameters !== null && !isRecord(tool.parameters))
      throw new ResponsesRequestError(`tools.${i}.parameters`, 'must be a JSON Schema object');
    return {
      type: 'function',
      name: tool.name,
      description: typeof tool.description === 'string' ? tool.description : null,
      parameters: tool.parameters ?? null,
      strict: typeof tool.strict === 'boolean' ? tool.strict : null,
    };
  });
}

function toChatTool(tool: Json): Json {
  return {
    type: 'function',
    function: {
      name: tool.name,
      ...(tool.description !== null ? { description: tool.description } : {}),
      parameters: tool.parameters ?? { type: 'object', properties: {} },
      ...(tool.strict !== null ? { strict: tool.strict } : {}),
    },
  };
}

function toChatToolChoice(choice: unknown): unknown {
  if (choice === 'auto' || choice === 'none' || choice === 'required') return choice;
  if (isRecord(choice) && choice.type === 'function') {
    if (typeof choice.name !== 'string') throw new ResponsesRequestError('tool_choice.name', 'is required for type "function"');
    return { type: 'function', function: { name: choice.name } };
  }
  throw new ResponsesRequestError('tool_choice', 'must be "auto", "none", "required" or {type: "function", name}');
}

// The text option's shape is declared in schemas/responses-text.schema.json.
const checkText = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true }).compile(
  JSON.parse(readFileSync(fileURLToPath(new URL('../../../schemas/responses-text.schema.json', import.meta.url)), 'utf8')) as object,
);

/** The schema's first complaint, located at the field it is about. */
function textError(error: ErrorObject | undefined): ResponsesRequestError {
  const path = ['text', ...(error?.instancePath.split('/').slice(1) ?? [])];
  const params = (error?.params ?? {}) as { missingProperty?: string; additionalProperty?: string; allowedValues?: unknown[] };
  if (params.missingProperty) return new ResponsesRequestError([...path, params.missingProperty].join('.'), 'is required');
  if (params.additionalProperty) return new ResponsesRequestError([...path, params.additionalProperty].join('.'), 'is not a field here');
  if (params.allowedValues) return new ResponsesRequestError(path.join('.'), `must be one of ${params.allowedValues.join(', ')}`);
  return new ResponsesRequestError(path.join('.'), error?.message ?? 'is invalid');
}

/** text.format → response_format; text.verbosity → verbosity. */
function textOptions(text: unknown, echo: ResponseEcho): Json {
  if (!checkText(text)) throw textError((checkText.errors ?? [])[0]);
  const options = (text ?? {}) as { verbosity?: string | null; format?: ({ type: string } & Json) | null };
  const out: Json = {};
  if (typeof options.verbosity === 'string') out.verbosity = options.verbosity;
  const format = options.format ?? { type: 'text' };
  echo.text = { ...options, format };
  if (format.type === 'text') return out;
  // Chat's response_format carries a format's details under the format's own name
  // ({type, <type>: {name, schema, strict}}); a format without details is its type alone.
  const { type, ...details } = format;
  return { ...out, response_format: Object.keys(details).length ? { type, [type]: details } : { type } };
}

// ---------------------------------------------------------------------------------
// Back: completions and chunks → Response objects and events.

const shortId = () => randomUUID().replace(/-/g, '');

export function responseId(): string {
  return `resp_${shortId()}`;
}

/** How the chat answer ended → the Response's status and why it is incomplete. */
function statusOf(finish: unknown): { status: 'completed' | 'incomplete'; incomplete_details: { reason: string } | null } {
  if (finish === 'length') return { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } };
  if (finish === 'content_filter') return { status: 'incomplete', incomplete_details: { reason: 'content_filter' } };
  return { status: 'completed', incomplete_details: null };
}

function usageOf(usage: unknown): Json | null {
  if (!isRecord(usage)) return null;
  const input = Number(usage.prompt_tokens ?? 0);
  const output = Number(usage.completion_tokens ?? 0);
  const cached = isRecord(usage.prompt_tokens_details) ? Number(usage.prompt_tokens_details.cached_tokens ?? 0) : 0;
  const reasoning = isRecord(usage.completion_tokens_details) ? Number(usage.completion_tokens_details.reasoning_tokens ?? 0) : 0;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: cached },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: reasoning },
    total_tokens: input + output,
  };
}

function messageItem(id: string, text: string, status: 'in_progress' | 'completed'): Json {
  return { id, type: 'message', status, role: 'assistant', content: status === 'completed' ? [outputText(text)] : [] };
}

function outputText(text: string): Json {
  return { type: 'output_text', text, annotations: [], logprobs: [] };
}

function functionCallItem(id: string, callId: string, name: string, args: string, status: 'in_progress' | 'completed'): Json {
  return { id, type: 'function_call', status, call_id: callId, name, arguments: args };
}

/** The Response object around an output: what every event that carries one, and the JSON answer, show. */
export function responseObject(
  id: string,
  createdAt: number,
  model: string,
  echo: ResponseEcho,
  state: { status: string; incomplete_details?: unknown; error?: unknown; output: Json[]; usage: Json | null },
): Json {
  return {
    id,
    object: 'response',
    created_at: createdAt,
    status: state.status,
    error: state.error ?? null,
    incomplete_details: state.incomplete_details ?? null,
    instructions: echo.instructions,
    max_output_tokens: echo.max_output_tokens,
    model,
    output: state.output,
    parallel_tool_calls: echo.parallel_tool_calls,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    store: false,
    temperature: echo.temperature,
    text: echo.text,
    tool_choice: echo.tool_choice,
    tools: echo.tools,
    top_p: echo.top_p,
    truncation: 'disabled',
    usage: state.usage,
    user: echo.user,
    metadata: echo.metadata,
  };
}

/** A chat.completion → a Response object; `model` is the model that served. */
export function toResponse(completion: unknown, model: string, echo: ResponseEcho, id = responseId()): Json {
  const c = isRecord(completion) ? completion : {};
  const choice = Array.isArray(c.choices) && isRecord(c.choices[0]) ? c.choices[0] : {};
  const message = isRecord(choice.message) ? choice.message : {};
  const output: Json[] = [];
  if (typeof message.content === 'string' && message.content !== '') output.push(messageItem(`msg_${shortId()}`, message.content, 'completed'));
  for (const call of Array.isArray(message.tool_calls) ? message.tool_calls : []) {
    if (!isRecord(call) || !isRecord(call.function)) continue;
    const callId = typeof call.id === 'string' ? call.id : `call_${shortId()}`;
    output.push(functionCallItem(`fc_${shortId()}`, callId, String(call.function.name ?? ''), String(call.function.arguments ?? ''), 'completed'));
  }
  const created = typeof c.created === 'number' ? c.created : Math.floor(Date.now() / 1000);
  return responseObject(id, created, model, echo, { ...statusOf(choice.finish_reason), output, usage: usageOf(c.usage) });
}

export interface ResponsesEvent {
  type: string;
  [field: string]: unknown;
}

/** The output item being streamed now. */
type OpenItem =
  | { kind: 'message'; id: string; index: number; text: string }
  | { kind: 'call'; id: string; index: number; toolIndex: number; callId: string; name: string; args: string };

/**
 * chat.completion.chunk objects → the Responses event sequence: response.created and
 * response.in_progress, then per output item output_item.added, (text) content_part.added /
 * output_text.delta… / output_text.done / content_part.done or (tool call)
 * function_call_arguments.delta… / .done, and output_item.done; then response.completed
 * (or response.incomplete) with the output and usage. Feed chunks with push(); end()
 * closes what is open; fail() ends a stream that broke.
 */
export class ResponsesStreamTranslator {
  private sequence = 0;
  private started = false;
  private ended = false;
  private open: OpenItem | null = null;
  private readonly output: Json[] = [];
  private finish: unknown = null;
  private usage: Json | null = null;
  private readonly createdAt = Math.floor(Date.now() / 1000);

  constructor(
    private readonly model: string,
    private readonly echo: ResponseEcho,
    readonly id = responseId(),
  ) {}

  private emit(out: ResponsesEvent[], type: string, fields: Json): void {
    out.push({ type, sequence_number: this.sequence++, ...fields });
  }

  private snapshot(state: { status: string; incomplete_details?: unknown; error?: unknown }, usage: Json | null = null): Json {
    return responseObject(this.id, this.createdAt, this.model, this.echo, { ...state, output: [...this.output], usage });
  }

  private start(out: ResponsesEvent[]): void {
    if (this.started) return;
    this.started = true;
    this.emit(out, 'response.created', { response: this.snapshot({ status: 'in_progress' }) });
    this.emit(out, 'response.in_progress', { response: this.snapshot({ status: 'in_progress' }) });
  }

  private closeItem(out: ResponsesEvent[]): void {
    const item = this.open;
    if (!item) return;
    this.open = null;
    const at = { item_id: item.id, output_index: item.index };
    let done: Json;
    if (item.kind === 'message') {
      this.emit(out, 'response.output_text.done', { ...at, content_index: 0, text: item.text, logprobs: [] });
      this.emit(out, 'response.content_part.done', { ...at, content_index: 0, part: outputText(item.text) });
      done = messageItem(item.id, item.text, 'completed');
    } else {
      this.emit(out, 'response.function_call_arguments.done', { ...at, name: item.name, arguments: item.args });
      done = functionCallItem(item.id, item.callId, item.name, item.args, 'completed');
    }
    this.output.push(done);
    this.emit(out, 'response.output_item.done', { output_index: item.index, item: done });
  }

  private openText(out: ResponsesEvent[]): Extract<OpenItem, { kind: 'message' }> {
    if (this.open?.kind === 'message') return this.open;
    this.closeItem(out);
    const item = { kind: 'message' as const, id: `msg_${shortId()}`, index: this.output.length, text: '' };
    this.open = item;
    this.emit(out, 'response.output_item.added', { output_index: item.index, item: messageItem(item.id, '', 'in_progress') });
    this.emit(out, 'response.content_part.added', { item_id: item.id, output_index: item.index, content_index: 0, part: outputText('') });
    return item;
  }

  private openCall(out: ResponsesEvent[], toolIndex: number, call: Json, fn: Json): Extract<OpenItem, { kind: 'call' }> {
    if (this.open?.kind === 'call' && this.open.toolIndex === toolIndex) return this.open;
    this.closeItem(out);
    const item = {
      kind: 'call' as const,
      id: `fc_${shortId()}`,
      index: this.output.length,
      toolIndex,
      callId: typeof call.id === 'string' ? call.id : `call_${shortId()}`,
      name: String(fn.name ?? ''),
      args: '',
    };
    this.open = item;
    this.emit(out, 'response.output_item.added', { output_index: item.index, item: functionCallItem(item.id, item.callId, item.name, '', 'in_progress') });
    return item;
  }

  push(chunk: unknown): ResponsesEvent[] {
    const out: ResponsesEvent[] = [];
    if (this.ended || !isRecord(chunk)) return out;
    this.start(out);
    if (isRecord(chunk.usage)) this.usage = usageOf(chunk.usage);
    const choice = Array.isArray(chunk.choices) && isRecord(chunk.choices[0]) ? chunk.choices[0] : null;
    if (!choice) return out;
    const delta = isRecord(choice.delta) ? choice.delta : {};
    if (typeof delta.content === 'string' && delta.content !== '') {
      const item = this.openText(out);
      item.text += delta.content;
      this.emit(out, 'response.output_text.delta', { item_id: item.id, output_index: item.index, content_index: 0, delta: delta.content, logprobs: [] });
    }
    for (const call of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
      if (!isRecord(call)) continue;
      const fn = isRecord(call.function) ? call.function : {};
      const item = this.openCall(out, typeof call.index === 'number' ? call.index : 0, call, fn);
      if (typeof fn.arguments === 'string' && fn.arguments !== '') {
        item.args += fn.arguments;
        this.emit(out, 'response.function_call_arguments.delta', { item_id: item.id, output_index: item.index, delta: fn.arguments });
      }
    }
    if (typeof choice.finish_reason === 'string') this.finish = choice.finish_reason;
    return out;
  }

  end(): ResponsesEvent[] {
    const out: ResponsesEvent[] = [];
    if (this.ended) return out;
    this.start(out);
    this.closeItem(out);
    this.ended = true;
    const state = statusOf(this.finish);
    this.emit(out, state.status === 'completed' ? 'response.completed' : 'response.incomplete', { response: this.snapshot(state, this.usage) });
    return out;
  }

  /**
   * The stream broke after it began: OpenAI's `error` event, then response.failed. The
   * error event also carries the error in OpenAI's error shape, so that SDK clients
   * (which throw on an event with an `error` field) see it as an APIError.
   */
  fail(openaiError: { error: { message: string; type: string; param: string | null; code: string } }): ResponsesEvent[] {
    const out: ResponsesEvent[] = [];
    if (this.ended) return out;
    this.start(out);
    this.ended = true;
    const { message, code, param } = openaiError.error;
    this.emit(out, 'error', { code, message, param, error: openaiError.error });
    this.emit(out, 'response.failed', { response: this.snapshot({ status: 'failed', error: { code, message } }, this.usage) });
    return out;
  }
}

export function sseEvent(e: ResponsesEvent): string {
  return `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
}
