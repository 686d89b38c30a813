// Stage 1 of the policy compiler: the source. Reads gateway.yaml into plain data while
// keeping the YAML document, so that every later error (schema.ts, plugin-sites.ts,
// semantic.ts, compile.ts) can point at a line and column of the file the user edited.
// Nothing comes before; schema.ts checks the data next.
//
// ${VAR} / ${VAR:-default} interpolation happens before parsing (so it works inside
// flow mappings like `{ api_key: ${KEY} }`), but each reference is first replaced by a
// placeholder of exactly the same length made of private-use characters. Offsets in
// the parsed document therefore equal offsets in the original text, and a missing
// variable is reported where it was written. Placeholders are resolved per scalar
// after parsing; references inside comments are never resolved, so they never fail.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import {
  LineCounter,
  parseDocument,
  parse as parseYamlScalar,
  visit,
  isMap,
  isSeq,
  isScalar,
  isPair,
  type Document,
  type Node as YamlNode,
  type Scalar,
} from 'yaml';
import { TiergateError, type SourceLocation } from '../common/errors.ts';

export type PathSegment = string | number;
export type Path = ReadonlyArray<PathSegment>;

interface EnvReference {
  /** Offset of `${` (or `$${`) in the original text. */
  offset: number;
  name: string;
  fallback?: string;
  /** `$${X}` writes a literal `${X}`. */
  escaped: boolean;
  literal: string;
}

export interface PolicySource {
  /** The file name as shown in errors (relative to the working directory when inside it). */
  readonly displayName: string;
  readonly absolutePath: string;
  readonly directory: string;
  readonly text: string;
  /** sha256 of the text. */
  readonly textHash: string;
  readonly document: Document.Parsed;
  /** The interpolated data, before schema validation. */
  readonly data: unknown;
  /** Values that came from the environment: kept out of anything printed. */
  readonly secrets: readonly string[];
  /**
   * `text` with every value that came from the environment replaced by the reference
   * that produced it (`${OPENAI_API_KEY}`). Error messages pass through this, since some
   * quote what they found. Values shorter than 4 characters (0, on, yes) are left: they
   * cannot be secrets, and replacing them would garble every message.
   */
  redact(text: string): string;
  /** Location of the node at `path`, or of its deepest existing ancestor. */
  locate(at: Path, options?: { key?: boolean; offsetInScalar?: number }): SourceLocation;
}

const ENV_REFERENCE = /\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}\n]*))?\}/g;
const PLACEHOLDER = /\uE000([\uE100-\uE1FF])([\uE100-\uE1FF])\uE002*\uE001/g;
const MAX_REFERENCES = 0x10000;

export function displayNameFor(absolutePath: string): string {
  const relative = path.relative(process.cwd(), absolutePath);
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : absolutePath;
}

export function formatPath(at: Path): string {
  let out = '';
  for (const segment of at) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) out += (out ? '.' : '') + segment;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

function placeholderFor(index: number, length: number): string {
  return '\uE000' + String.fromCharCode(0xe100 + (index >> 8)) + String.fromCharCode(0xe100 + (index & 0xff)) + '\uE002'.repeat(length - 4) + '\uE001';
}

/** Reads and parses a policy file. Throws a list of located errors (YAML syntax, missing env vars). */
export function readPolicySource(file: string, env: NodeJS.ProcessEnv = process.env): PolicySource {
  const absolutePath = path.resolve(file);
  const displayName = displayNameFor(absolutePath);
  let text: string;
  try {
    text = readFileSync(absolutePath, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw [new TiergateError('TG_ERR_CONFIG_READ', { reason }, { location: { file: displayName } })];
  }
  return parsePolicyText(text, absolutePath, env);
}

export function parsePolicyText(text: string, absolutePath: string, env: NodeJS.ProcessEnv = process.env): PolicySource {
  const displayName = displayNameFor(absolutePath);
  const references: EnvReference[] = [];
  const masked = text.replace(ENV_REFERENCE, (literal: string, escaped: string | undefined, name: string, fallback: string | undefined, offset: number) => {
    if (references.length >= MAX_REFERENCES) return literal;
    references.push({ offset, name, fallback, escaped: escaped !== undefined, literal });
    return placeholderFor(references.length - 1, literal.length);
  });

  const lineCounter = new LineCounter();
  const document = parseDocument(masked, { lineCounter, prettyErrors: false, uniqueKeys: true });
  // Lines are counted from the text itself: after a syntax error the parser can take
  // several lines as one token, and its LineCounter then misses their line breaks.
  const lineStarts = [0];
  for (let at = masked.indexOf('\n'); at !== -1; at = masked.indexOf('\n', at + 1)) lineStarts.push(at + 1);
  const position = (offset: number) => {
    let low = 0;
    let high = lineStarts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (lineStarts[mid] <= offset) low = mid;
      else high = mid - 1;
    }
    return { line: low + 1, col: offset - lineStarts[low] + 1 };
  };

  if (document.errors.length > 0) {
    throw document.errors.map((e) => {
      // A misaligned key is reported at the start of its line; point at the key itself.
      let offset = e.pos[0];
      if (e.code === 'BAD_INDENT') while (masked[offset] === ' ') offset++;
      const { line, col } = position(offset);
      const reason = e.message
        .split('\n')[0]
        .replace(/ at line \d+, column \d+:?$/, '')
        .replace(/[\uE000-\uE1FF]+/g, '${…}');
      return new TiergateError('TG_ERR_CONFIG_YAML', { reason }, { location: { file: displayName, line, column: col } });
    });
  }

  const errors: TiergateError[] = [];
  const secrets: string[] = [];
  const secretNames = new Map<string, string>();
  visit(document, {
    Scalar(_key, node: Scalar) {
      if (typeof node.value !== 'string' || !node.value.includes('\uE000')) return;
      const raw = node.value;
      let onlyReference = false;
      const resolved = raw.replace(PLACEHOLDER, (whole: string, high: string, low: string) => {
        const reference = references[((high.charCodeAt(0) - 0xe100) << 8) | (low.charCodeAt(0) - 0xe100)];
        onlyReference = whole.length === raw.length && !reference.escaped;
        if (reference.escaped) return reference.literal.slice(1);
        const value = env[reference.name];
        if (value !== undefined && (value !== '' || reference.fallback === undefined)) {
          if (value !== '') {
            secrets.push(value);
            if (!secretNames.has(value)) secretNames.set(value, reference.name);
          }
          return value;
        }
        if (reference.fallback !== undefined) return reference.fallback;
        const { line, col } = position(reference.offset);
        errors.push(
          new TiergateError(
            'TG_ERR_CONFIG_ENV_MISSING',
            { name: reference.name },
            { location: { file: displayName, line, column: col, path: formatPath(pathOf(document, node)) } },
          ),
        );
        return '';
      });
      // `port: ${PORT:-8080}` is a number, as if the value had been written in place;
      // a quoted reference always stays a string.
      node.value = onlyReference && node.type === 'PLAIN' ? resolvePlainScalar(resolved) : resolved;
    },
  });
  if (errors.length > 0) throw errors;

  let data: unknown;
  try {
    data = document.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    // Parsing accepts an alias whose anchor comes later or never (`*name`) and an alias
    // bomb; only turning the document into data refuses them, by throwing. Located at the
    // alias that does not resolve (else the first alias), as any other YAML error.
    const found: { alias: YamlNode | null } = { alias: null };
    visit(document, {
      Alias(_key, node) {
        found.alias ??= node;
        if (node.resolve(document) === undefined) {
          found.alias = node;
          return visit.BREAK;
        }
      },
    });
    const { line, col } = position(found.alias?.range?.[0] ?? 0);
    const reason = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    throw [new TiergateError('TG_ERR_CONFIG_YAML', { reason }, { location: { file: displayName, line, column: col } })];
  }

  const locate = (at: Path, options: { key?: boolean; offsetInScalar?: number } = {}): SourceLocation => {
    const { node, keyNode, depth } = nodeAt(document, at);
    const target = options.key && keyNode && depth === at.length ? keyNode : node;
    const base: SourceLocation = { file: displayName, path: formatPath(at) };
    // An empty document has no node at all: its problems are at the top of the file.
    if (!target?.range) return at.length === 0 ? { ...base, line: 1, column: 1 } : base;
    let offset = target.range[0];
    if (options.offsetInScalar !== undefined && depth === at.length && isScalar(target)) {
      offset = offsetInScalar(masked, target as Scalar, options.offsetInScalar);
    }
    const { line, col } = position(offset);
    return { ...base, line, column: col };
  };

  return {
    displayName,
    absolutePath,
    directory: path.dirname(absolutePath),
    text,
    textHash: createHash('sha256').update(text).digest('hex'),
    document,
    data,
    secrets,
    redact(message: string): string {
      let out = message;
      for (const [value, name] of [...secretNames].filter(([v]) => v.length >= 4).sort(([a], [b]) => b.length - a.length)) {
        out = out.split(value).join('${' + name + '}');
      }
      return out;
    },
    locate,
  };
}

/**
 * Offset in the text of character `index` of a scalar's value. The value is not a
 * plain slice of the text when it spans lines (folded, or a block scalar's
 * indentation) or has escapes (\" in double quotes, '' in single quotes), so value and
 * text are walked together: each value character is matched to the next equal text
 * character, and a folded line break to the text's whitespace. `index` at the end of
 * the value points just past its last character.
 */
function offsetInScalar(text: string, node: Scalar, index: number): number {
  const [start, end] = node.range as [number, number, number];
  const quoted = node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE';
  const naive = Math.min(start + index + (quoted ? 1 : 0), end);
  if (typeof node.value !== 'string') return naive;
  const value = node.value;
  let j = start;
  if (quoted) j++;
  else if (node.type === 'BLOCK_FOLDED' || node.type === 'BLOCK_LITERAL') {
    const header = text.indexOf('\n', start);
    j = header === -1 || header >= end ? end : header + 1;
  }
  const space = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\r';
  const stop = Math.min(index, value.length - 1);
  let last = j - 1;
  for (let i = 0; i <= stop; i++) {
    const c = value[i];
    while (j < end && text[j] !== c && !(space(c) && space(text[j]))) j++;
    // An escape the walk cannot follow (\u2028, an interpolated value): fall back.
    if (j >= end) return naive;
    last = j;
    j++;
  }
  return index > stop ? last + 1 : last;
}

function resolvePlainScalar(value: string): unknown {
  try {
    const parsed: unknown = parseYamlScalar(value);
    if (parsed === null || typeof parsed === 'number' || typeof parsed === 'boolean') return value === '' ? '' : parsed;
  } catch {
    // Not a scalar YAML value on its own: keep the text.
  }
  return value;
}

function nodeAt(document: Document.Parsed, at: Path): { node: YamlNode | null; keyNode: YamlNode | null; depth: number } {
  let node = document.contents as YamlNode | null;
  let keyNode: YamlNode | null = null;
  let depth = 0;
  for (const segment of at) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
      if (!pair) break;
      keyNode = pair.key as YamlNode;
      node = (pair.value as YamlNode | null) ?? keyNode;
    } else if (isSeq(node) && typeof segment === 'number' && segment < node.items.length) {
      keyNode = null;
      node = node.items[segment] as YamlNode;
    } else {
      break;
    }
    depth++;
  }
  return { node, keyNode, depth };
}

/** The path of a node (used to name where a missing env var was written). */
function pathOf(document: Document.Parsed, target: YamlNode): PathSegment[] {
  const found: PathSegment[] = [];
  const walk = (node: unknown, trail: PathSegment[]): boolean => {
    if (node === target) {
      found.push(...trail);
      return true;
    }
    if (isMap(node)) {
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const key = isScalar(pair.key) ? String(pair.key.value) : '?';
        if (pair.key === target || walk(pair.value, [...trail, key])) {
          if (pair.key === target) found.push(...trail, key);
          return true;
        }
      }
    } else if (isSeq(node)) {
      for (let i = 0; i < node.items.length; i++) if (walk(node.items[i], [...trail, i])) return true;
    }
    return false;
  };
  walk(document.contents, []);
  return found;
}
