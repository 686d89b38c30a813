// The simulator's answers to the fields that change an answer's form rather than its
// words: `tools` / `tool_choice` (a call to a function, with arguments), and
// `response_format` (JSON, or JSON that validates against a schema). A real model asked
// for these answers in that form; a simulator that answered in prose would fail every
// client that relies on them (LangChain's bindTools, withStructuredOutput).
//
// Values are made from the JSON Schema the client gave, so that they validate against
// it, and filled from the prompt where a property's name says what it holds (an order
// number, a state, an email), so that an answer reads as one to this prompt. Like
// everything the simulator does, it is a pure function of the request.
import { LinearRegExp, type ChatRequest } from 'tiergate/plugin';

/** What the prompt offers to fill values with. */
export interface PromptHints {
  /** The last user message. */
  readonly text: string;
  /** A few content words of it: the value of a string nothing else fills. */
  readonly topic: string;
  /** The shipment state the simulator's own prose answer would give, when the prompt asks after an order. */
  readonly state: string | null;
  /** A label (a classification's answer), when the prompt asks for one. */
  readonly label: string | null;
}

// ---------------------------------------------------------------------------------
// A value that validates against a JSON Schema

type Schema = Record<string, unknown>;

const isSchema = (value: unknown): value is Schema => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Limits that keep a hostile schema (minItems: 1e9, a $ref cycle) from costing the gateway. */
const MAX_DEPTH = 12;
const MAX_ITEMS = 64;
const MAX_STRING = 4096;

/** Placeholder values for string formats: each valid for its format. */
const FORMAT_VALUES: Readonly<Record<string, string>> = {
  date: '2024-01-15',
  'date-time': '2024-01-15T09:30:00Z',
  time: '09:30:00Z',
  duration: 'P1D',
  email: 'customer@example.com',
  'idn-email': 'customer@example.com',
  hostname: 'example.com',
  'idn-hostname': 'example.com',
  ipv4: '192.0.2.1',
  ipv6: '2001:db8::1',
  uri: 'https://example.com/',
  'uri-reference': 'https://example.com/',
  iri: 'https://example.com/',
  'iri-reference': 'https://example.com/',
  url: 'https://example.com/',
  uuid: '3f2b8c1e-5d4a-4b6e-9c7f-1a2b3c4d5e6f',
  'json-pointer': '/0',
  regex: '.*',
};

class InstanceBuilder {
  constructor(
    private readonly root: Schema,
    private readonly hints: PromptHints,
  ) {}

  /** A value for `schema`; `name` is the property that holds it (its name hints at its meaning), `nth` tells items of one array apart. */
  build(schema: unknown, name: string, nth: number, depth: number): unknown {
    if (!isSchema(schema) || depth > MAX_DEPTH) return null;
    const resolved = this.resolve(schema, depth);
    if ('const' in resolved) return resolved.const;
    if (Array.isArray(resolved.enum) && resolved.enum.length > 0) return resolved.enum[nth % resolved.enum.length];
    for (const key of ['anyOf', 'oneOf'] as const) {
      const branches = resolved[key];
      // OpenAI's strict mode writes an optional field as anyOf [T, null]: answer with the T.
      if (Array.isArray(branches) && branches.length > 0) {
        const chosen = branches.find((b) => !(isSchema(b) && b.type === 'null')) ?? branches[0];
        return this.build(chosen, name, nth, depth + 1);
      }
    }
    switch (typeOf(resolved)) {
      case 'object':
        return this.object(resolved, depth);
      case 'array':
        return this.array(resolved, name, depth);
      case 'integer':
        return numberFor(resolved, true, nth === 0 ? this.numericHint(name) : null, nth);
      case 'number':
        return numberFor(resolved, false, nth === 0 ? this.numericHint(name) : null, nth);
      case 'boolean':
        // Items of an array alternate, so that uniqueItems holds for two.
        return nth % 2 === 0;
      case 'null':
        return null;
      default:
        return this.string(resolved, name, nth);
    }
  }

  /** Follows local $refs and merges allOf, so the rest reads one schema. */
  private resolve(schema: Schema, depth: number): Schema {
    let current = schema;
    for (let hops = 0; typeof current.$ref === 'string' && hops < MAX_DEPTH; hops++) {
      const target = pointer(this.root, current.$ref);
      if (!isSchema(target)) break;
      const { $ref: _ref, ...rest } = current;
      current = { ...target, ...rest };
    }
    if (Array.isArray(current.allOf) && depth < MAX_DEPTH) {
      const { allOf, ...rest } = current;
      let merged: Schema = rest;
      for (const part of allOf) {
        if (!isSchema(part)) continue;
        const p = this.resolve(part, depth + 1);
        merged = {
          ...p,
          ...merged,
          properties: { ...(isSchema(p.properties) ? p.properties : {}), ...(isSchema(merged.properties) ? merged.properties : {}) },
          required: [...(Array.isArray(p.required) ? p.required : []), ...(Array.isArray(merged.required) ? merged.required : [])],
        };
      }
      current = merged;
    }
    return current;
  }

  private object(schema: Schema, depth: number): Record<string, unknown> {
    const properties = isSchema(schema.properties) ? schema.properties : {};
    const required = Array.isArray(schema.required) ? schema.required.filter((r): r is string => typeof r === 'string') : [];
    const out: Record<string, unknown> = {};
    // Every declared property, not only the required ones: a model fills in what it can.
    for (const key of Object.keys(properties)) out[key] = this.build(properties[key], key, 0, depth + 1);
    for (const key of required)
      if (!(key in out)) out[key] = this.build(isSchema(schema.additionalProperties) ? schema.additionalProperties : {}, key, 0, depth + 1);
    return out;
  }

  private array(schema: Schema, name: string, depth: number): unknown[] {
    const min = typeof schema.minItems === 'number' ? schema.minItems : 0;
    const max = typeof schema.maxItems === 'number' ? schema.maxItems : Infinity;
    const count = Math.min(MAX_ITEMS, max, Math.max(min, 1));
    const prefix = Array.isArray(schema.prefixItems) ? schema.prefixItems : [];
    const items = isSchema(schema.items) ? schema.items : {};
    const singular = name.endsWith('s') ? name.slice(0, -1) : name;
    return Array.from({ length: count }, (_, i) => this.build(i < prefix.length ? prefix[i] : items, singular, i, depth + 1));
  }

  /** An order number or an id the prompt gives, for a property whose name says it is one. */
  private numericHint(name: string): string | null {
    if (!/(?:^|_|[a-z])(?:id|number|no|num|Id|Number)$|^(?:order|ticket|tracking|account|invoice)/i.test(name)) return null;
    return /\d{3,}/.exec(this.hints.text)?.[0] ?? null;
  }

  private string(schema: Schema, name: string, nth: number): string {
    const lower = name.toLowerCase();
    const candidates: string[] = [];
    if (typeof schema.format === 'string' && FORMAT_VALUES[schema.format]) {
      if (schema.format.includes('email')) candidates.push(/[\w.+-]+@[\w-]+\.[\w.-]+/.exec(this.hints.text)?.[0] ?? '');
      candidates.push(FORMAT_VALUES[schema.format]);
    } else if (nth === 0) {
      const id = this.numericHint(name);
      if (id) candidates.push(id);
      if (/state|status/.test(lower) && this.hints.state) candidates.push(this.hints.state);
      if (/label|category|sentiment|class|verdict/.test(lower) && this.hints.label) candidates.push(this.hints.label);
      candidates.push(this.hints.topic);
    } else {
      // Items of one array differ, so that uniqueItems holds.
      candidates.push(`${this.hints.topic} ${nth + 1}`);
    }
    const minLength = typeof schema.minLength === 'number' ? Math.min(schema.minLength, MAX_STRING) : 0;
    const maxLength = typeof schema.maxLength === 'number' ? schema.maxLength : Infinity;
    const fit = (s: string) => {
      let value = s;
      while (value.length < minLength) value += value.length > 0 ? ` ${s}` : 'x';
      return value.slice(0, Math.max(minLength, Math.min(maxLength, value.length)));
    };
    const fitted = candidates.filter(Boolean).map(fit);
    if (typeof schema.pattern !== 'string') return fitted[0] ?? fit('');
    // Matched in linear time: the pattern is the client's.
    let pattern: LinearRegExp;
    try {
      pattern = new LinearRegExp(schema.pattern, 'u');
    } catch {
      return fitted[0] ?? fit('');
    }
    const letters = lettersOf(nth);
    const plain = [exampleOfPattern(schema.pattern, nth), letters, letters.toUpperCase(), `${nth}`, `a${nth}`, `A${nth}`, `x-${nth}`];
    const tries = [...fitted, ...plain.filter((s): s is string => s !== null).map(fit)];
    return tries.find((s) => s.length <= maxLength && pattern.test(s)) ?? fitted[0] ?? fit('');
  }
}

/** 0 → "a", 1 → "b", 26 → "ba": distinct letters-only strings. */
function lettersOf(n: number): string {
  let out = '';
  let rest = n;
  do {
    out = String.fromCharCode(97 + (rest % 26)) + out;
    rest = Math.floor(rest / 26);
  } while (rest > 0);
  return out;
}

const CLASS_ESCAPES: Readonly<Record<string, string>> = { d: '0123456789', w: 'abcdefghijklmnopqrstuvwxyz', s: ' ' };

/**
 * A string the pattern most likely matches, for the patterns schemas use (literals,
 * classes, \d \w, quantifiers, groups, alternatives: the first is taken); null for one it
 * cannot read. The caller checks the result against the pattern. Item `nth` of an array
 * takes the class's (nth)th character at its first free position, so items differ.
 */
function exampleOfPattern(pattern: string, nth: number): string | null {
  let at = 0;
  let varied = false;
  const pick = (chars: string) => {
    if (chars.length === 0) return '';
    if (varied || nth === 0) return chars[0];
    varied = true;
    return chars[nth % chars.length];
  };
  const sequence = (): string | null => {
    let out = '';
    while (at < pattern.length && pattern[at] !== ')' && pattern[at] !== '|') {
      let atom: (() => string) | null;
      const c = pattern[at++];
      if (c === '^' || c === '$') continue;
      if (c === '(') {
        if (pattern.startsWith('?:', at)) at += 2;
        else if (pattern[at] === '?') return null;
        const group = alternatives();
        if (group === null || pattern[at] !== ')') return null;
        at++;
        atom = () => group;
      } else if (c === '[') {
        const end = pattern.indexOf(']', at + 1);
        if (end < 0 || pattern[at] === '^') return null;
        const body = pattern.slice(at, end);
        at = end + 1;
        let chars = '';
        for (let i = 0; i < body.length; i++) {
          if (body[i] === '\\' && i + 1 < body.length) chars += CLASS_ESCAPES[body[++i]] ?? body[i];
          else if (body[i + 1] === '-' && i + 2 < body.length)
            for (let code = body.charCodeAt(i), last = body.charCodeAt((i += 2)); code <= last && chars.length < 100; code++)
              chars += String.fromCharCode(code);
          else chars += body[i];
        }
        atom = () => pick(chars);
      } else if (c === '\\') {
        const e = pattern[at++];
        atom = e in CLASS_ESCAPES ? () => pick(CLASS_ESCAPES[e]) : () => e;
      } else if (c === '.') {
        atom = () => pick('abcdefghijklmnopqrstuvwxyz');
      } else if ('*+?{'.includes(c)) {
        return null;
      } else {
        atom = () => c;
      }
      let min = 1;
      const q = pattern[at];
      if (q === '*' || q === '?' || q === '+') {
        if (q !== '+') min = 0;
        at++;
      } else if (q === '{') {
        const m = /^\{(\d+)(?:,\d*)?\}/.exec(pattern.slice(at));
        if (!m) return null;
        min = Math.min(Number(m[1]), MAX_STRING);
        at += m[0].length;
      }
      if (pattern[at] === '?') at++;
      for (let i = 0; i < min; i++) out += atom();
    }
    return out;
  };
  const alternatives = (): string | null => {
    const first = sequence();
    while (pattern[at] === '|') {
      at++;
      if (sequence() === null) return null;
    }
    return first;
  };
  const result = alternatives();
  return result !== null && at === pattern.length ? result : null;
}

/** The schema's type; the first one that is not null when it lists several, or what its keywords imply. */
function typeOf(schema: Schema): string {
  const type = schema.type;
  if (typeof type === 'string') return type;
  if (Array.isArray(type) && type.length > 0) return (type.find((t) => t !== 'null') ?? type[0]) as string;
  if (isSchema(schema.properties) || Array.isArray(schema.required)) return 'object';
  if ('items' in schema || 'prefixItems' in schema) return 'array';
  if ('minimum' in schema || 'maximum' in schema || 'multipleOf' in schema) return 'number';
  return 'string';
}

/** A number within the schema's bounds: the hint when it fits, else the smallest non-negative that does (the nth item: n steps on). */
function numberFor(schema: Schema, integer: boolean, hint: string | null, nth: number): number {
  const num = (key: string) => (typeof schema[key] === 'number' ? (schema[key] as number) : undefined);
  const step = num('multipleOf') ?? (integer ? 1 : undefined);
  let low = num('minimum') ?? -Infinity;
  const exclusiveLow = num('exclusiveMinimum');
  if (exclusiveLow !== undefined) low = Math.max(low, integer ? Math.floor(exclusiveLow) + 1 : exclusiveLow + (step ?? 1));
  let high = num('maximum') ?? Infinity;
  const exclusiveHigh = num('exclusiveMaximum');
  if (exclusiveHigh !== undefined) high = Math.min(high, integer ? Math.ceil(exclusiveHigh) - 1 : exclusiveHigh - (step ?? 1e-9));
  const hinted = hint !== null && Number.isSafeInteger(Number(hint)) ? Number(hint) : null;
  let value = hinted !== null && hinted >= low && hinted <= high ? hinted : Math.min(Math.max(0, low), high);
  if (step !== undefined && step > 0) {
    value = Math.ceil(value / step) * step;
    if (value > high) value = Math.floor(high / step) * step;
  }
  // Items of one array differ by a step each, while the bounds allow.
  const nthValue = value + nth * (step ?? 1);
  if (nthValue <= high) value = nthValue;
  return Number.isFinite(value) ? value : 0;
}

/** A local JSON pointer ("#/$defs/item") in the root schema. */
function pointer(root: Schema, ref: string): unknown {
  if (ref === '#') return root;
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = root;
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    node = isSchema(node) ? node[key] : undefined;
  }
  return node;
}

/** A deterministic value that validates against `schema`, filled from the prompt where property names say what a value is. */
export function instanceOf(schema: unknown, hints: PromptHints): unknown {
  const root = isSchema(schema) ? schema : {};
  return new InstanceBuilder(root, hints).build(root, '', 0, 0);
}

// ---------------------------------------------------------------------------------
// Tools

export interface FunctionTool {
  name: string;
  description: string;
  parameters: unknown;
}

/** The function tools of the request (OpenAI's `tools`), in order. */
function functionTools(request: ChatRequest): FunctionTool[] {
  if (!Array.isArray(request.tools)) return [];
  const out: FunctionTool[] = [];
  for (const tool of request.tools as unknown[]) {
    const fn = isSchema(tool) && isSchema(tool.function) ? tool.function : null;
    if (fn && typeof fn.name === 'string')
      out.push({ name: fn.name, description: typeof fn.description === 'string' ? fn.description : '', parameters: fn.parameters });
  }
  return out;
}

/** Verbs every tool name has; they say nothing about which tool a prompt wants. */
const GENERIC_NAME_WORDS = new Set([
  'get',
  'set',
  'look',
  'lookup',
  'fetch',
  'find',
  'search',
  'check',
  'query',
  'list',
  'read',
  'call',
  'run',
  'tool',
  'the',
  'for',
  'by',
]);

/** The words of a tool's name (snake, kebab or camel case), without the generic verbs. */
function nameWords(name: string): string[] {
  return name
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length >= 3 && !GENERIC_NAME_WORDS.has(w));
}

/** How much the prompt is about the tool: how many of its name's words it uses (a plural counts). */
function relevance(tool: FunctionTool, text: string): number {
  const lower = ` ${text.toLowerCase()} `;
  if (lower.includes(tool.name.toLowerCase())) return 10;
  return nameWords(tool.name).filter((w) => new RegExp(`\\b${w}(?:s|es)?\\b`).test(lower)).length;
}

/**
 * The tools a model calls for this request, or none: `tool_choice` none never calls; a
 * named function is called; required calls the tools the prompt is about (the first
 * tool when it is about none); auto (the default) calls when the last message is the
 * user's and is about a tool, so that a tool's result gets an answer rather than another
 * call. Several tools the prompt is about are called together unless
 * `parallel_tool_calls` is false.
 */
export function toolsToCall(request: ChatRequest, lastRole: string | undefined, text: string): { tools: FunctionTool[]; forced: boolean } {
  const tools = functionTools(request);
  const choice = request.tool_choice;
  if (tools.length === 0 || choice === 'none') return { tools: [], forced: false };
  if (isSchema(choice)) {
    const named = isSchema(choice.function) ? choice.function.name : undefined;
    const tool = tools.find((t) => t.name === named);
    return { tools: tool ? [tool] : [], forced: true };
  }
  const scored = tools.map((tool) => ({ tool, score: relevance(tool, text) })).filter((s) => s.score > 0);
  const best = Math.max(0, ...scored.map((s) => s.score));
  const chosen = request.parallel_tool_calls === false ? scored.filter((s) => s.score === best).slice(0, 1) : scored;
  if (choice === 'required') return { tools: chosen.length > 0 ? chosen.map((s) => s.tool) : [tools[0]], forced: false };
  if (lastRole !== 'user') return { tools: [], forced: false };
  return { tools: chosen.map((s) => s.tool), forced: false };
}

/** The JSON Schema the answer must follow (`response_format` json_schema), `{}` for any JSON object, or null for prose. */
export function requestedJson(request: ChatRequest): { schema: unknown } | null {
  const format = request.response_format;
  if (!isSchema(format)) return null;
  if (format.type === 'json_schema') return { schema: isSchema(format.json_schema) ? format.json_schema.schema : undefined };
  if (format.type === 'json_object') return { schema: undefined };
  return null;
}
