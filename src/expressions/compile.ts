// JSONata, compiled once at load. Every expression in a policy (features, rule
// conditions, later gates) goes through `compileExpression`, which also catches calls
// to functions that do not exist: JSONata itself only notices those when the
// expression runs, which for a routing rule means in production.
import jsonata from 'jsonata';
import type { CompiledExpression } from '../plugin-contract/plugin-api.ts';
import { TiergateError, type SourceLocation } from '../common/errors.ts';
import { UNDECIDED, compileFast } from './fast-path.ts';
import { CUSTOM_FUNCTIONS } from './functions.ts';
import { DEFAULT_EXPRESSION_LIMITS } from '../policy-shape/defaults.ts';
import type { ExpressionLimitsData } from '../policy-shape/policy-data.ts';
import { LinearRegExp, linearRegExpProblem } from '../plugin-contract/linear-regex.ts';

const BUILTIN_FUNCTIONS = new Set([
  'sum',
  'count',
  'max',
  'min',
  'average',
  'string',
  'substring',
  'substringBefore',
  'substringAfter',
  'lowercase',
  'uppercase',
  'length',
  'trim',
  'pad',
  'match',
  'contains',
  'replace',
  'split',
  'join',
  'formatNumber',
  'formatBase',
  'formatInteger',
  'parseInteger',
  'number',
  'floor',
  'ceil',
  'round',
  'abs',
  'sqrt',
  'power',
  'random',
  'boolean',
  'not',
  'map',
  'zip',
  'filter',
  'single',
  'reduce',
  'sift',
  'keys',
  'lookup',
  'append',
  'exists',
  'spread',
  'merge',
  'reverse',
  'each',
  'error',
  'assert',
  'type',
  'sort',
  'shuffle',
  'distinct',
  'base64encode',
  'base64decode',
  'encodeUrlComponent',
  'encodeUrl',
  'decodeUrlComponent',
  'decodeUrl',
  'eval',
  'toMillis',
  'fromMillis',
  'clone',
  'now',
  'millis',
]);

export interface ExpressionProblem {
  message: string;
  /** 0-based offset of the problem inside the expression text, when known. */
  offset?: number;
}

interface JsonataError {
  message?: string;
  position?: number;
  token?: string;
  code?: string;
}

interface AstNode {
  type?: string;
  value?: unknown;
  position?: number;
  [key: string]: unknown;
}

/** Names a function call in the expression may refer to without being declared. */
function boundNames(ast: AstNode): Set<string> {
  const names = new Set<string>();
  walkAst(ast, (node) => {
    if (node.type === 'bind' && node.lhs && typeof (node.lhs as AstNode).value === 'string') names.add((node.lhs as AstNode).value as string);
    if (node.type === 'lambda' && Array.isArray(node.arguments))
      for (const a of node.arguments as AstNode[]) if (typeof a.value === 'string') names.add(a.value);
  });
  return names;
}

function walkAst(node: unknown, visitNode: (n: AstNode) => void, seen = new Set<unknown>()): void {
  if (node === null || typeof node !== 'object' || seen.has(node)) return;
  seen.add(node);
  if (Array.isArray(node)) {
    for (const item of node) walkAst(item, visitNode, seen);
    return;
  }
  visitNode(node as AstNode);
  for (const value of Object.values(node)) walkAst(value, visitNode, seen);
}

/**
 * A regex literal RE2 cannot match (src/plugin-contract/linear-regex.ts): refused when the policy loads,
 * at the literal's place, rather than failing at the first request it meets.
 */
function unsupportedRegex(ast: AstNode): ExpressionProblem | null {
  let problem: ExpressionProblem | null = null;
  walkAst(ast, (node) => {
    // A regex literal is the one node whose value is a RegExp (JSONata compiles it when parsing).
    if (problem || !(node.value instanceof RegExp)) return;
    const reason = linearRegExpProblem(node.value.source, node.value.flags);
    if (reason === null) return;
    // The position is just past the literal: /source/ and the flags written (JSONata adds g).
    const written = node.value.source.length + 2 + node.value.flags.replace('g', '').length;
    problem = { message: `regular expression ${reason}`, offset: typeof node.position === 'number' ? Math.max(0, node.position - written) : undefined };
  });
  return problem;
}

function unknownFunction(ast: AstNode): ExpressionProblem | null {
  const bound = boundNames(ast);
  let problem: ExpressionProblem | null = null;
  walkAst(ast, (node) => {
    if (problem || (node.type !== 'function' && node.type !== 'partial')) return;
    const procedure = node.procedure as AstNode | undefined;
    if (!procedure || procedure.type !== 'variable' || typeof procedure.value !== 'string') return;
    const name = procedure.value;
    if (name === '' || BUILTIN_FUNCTIONS.has(name) || name in CUSTOM_FUNCTIONS || bound.has(name)) return;
    const suggestion = closestName(name, [...BUILTIN_FUNCTIONS, ...Object.keys(CUSTOM_FUNCTIONS)]);
    problem = {
      message: `unknown function $${name}` + (suggestion ? ` (did you mean $${suggestion}?)` : ''),
      offset: typeof procedure.position === 'number' ? Math.max(0, procedure.position - name.length - 1) : undefined,
    };
  });
  return problem;
}

/** The custom functions an expression refers to (called or passed), or 'all' when it calls $eval. */
function customFunctionsNamed(ast: AstNode): Set<string> | 'all' {
  const names = new Set<string>();
  let evaluates = false;
  walkAst(ast, (node) => {
    if (node.type !== 'variable' || typeof node.value !== 'string') return;
    if (node.value === 'eval') evaluates = true;
    if (Object.prototype.hasOwnProperty.call(CUSTOM_FUNCTIONS, node.value)) names.add(node.value);
  });
  return evaluates ? 'all' : names;
}

export function closestName(name: string, candidates: Iterable<string>): string | null {
  let best: string | null = null;
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const candidate of candidates) {
    const d = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = previous[0];
    previous[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = previous[j];
      previous[j] = Math.min(previous[j] + 1, previous[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return previous[b.length];
}

/**
 * How far one evaluation may go (gateway.yaml `expressions`). JSONata is Turing-complete
 * and runs on the event loop: an endless loop would freeze every request, not just its
 * own. jsonata's own guardrails enforce these per evaluation (its `timeout`, `stack` and
 * `sequence` options, checked at every evaluation step), so concurrent evaluations of
 * one compiled expression do not share a budget.
 */
export type ExpressionLimits = Readonly<ExpressionLimitsData>;

/** jsonata's guardrail error codes, as the limit each one enforces. */
function limitBreached(code: string | undefined, limits: ExpressionLimits): string | null {
  if (code === 'D1012') return `ran longer than ${limits.timeout_ms} ms (expressions.timeout_ms); check for an endless loop`;
  if (code === 'D1011') return `nested deeper than ${limits.max_depth} steps (expressions.max_depth); check for endless recursion`;
  if (code === 'D2015') return `built a sequence longer than ${limits.max_sequence} items (expressions.max_sequence)`;
  return null;
}

/**
 * An expression's value: at once when its fast path decides it (src/expressions/fast-path.ts),
 * else JSONata's evaluation, a promise. The callers on the request path (features, rules)
 * await only in that case.
 */
export function evaluateNow(expression: CompiledExpression, input: unknown): unknown {
  if (expression.evaluateSync) {
    const value = expression.evaluateSync(input);
    if (value !== UNDECIDED) return value;
  }
  return expression.evaluate(input);
}

/**
 * Compiles a JSONata expression, or explains what is wrong with it. `location` (where
 * the expression is written in the policy) is given to the errors its evaluations throw.
 */
export function compileExpression(
  source: string,
  options: { limits?: ExpressionLimits; location?: SourceLocation } = {},
): { expression: CompiledExpression } | { problem: ExpressionProblem } {
  const limits = options.limits ?? DEFAULT_EXPRESSION_LIMITS;
  const location = options.location;
  let compiled: ReturnType<typeof jsonata>;
  try {
    // Regex literals run on RE2, so that no pattern can backtrack past timeout_ms: a
    // match is one step, which the time limit cannot interrupt (src/plugin-contract/linear-regex.ts).
    compiled = jsonata(source, {
      timeout: limits.timeout_ms,
      stack: limits.max_depth,
      sequence: limits.max_sequence,
      RegexEngine: LinearRegExp as unknown as RegExpConstructor,
    });
  } catch (err) {
    const e = err as JsonataError;
    // JSONata's position is just after the offending token; at the end of the expression
    // (token "(end)") the problem is what is missing there, so point just past the text.
    const offset =
      typeof e.position !== 'number'
        ? undefined
        : e.token === '(end)'
          ? source.trimEnd().length
          : Math.max(0, e.position - (e.token !== undefined && e.token !== null ? String(e.token).length : 1));
    return { problem: { message: e.message ?? String(err), offset } };
  }
  const ast = compiled.ast() as unknown as AstNode;
  const problem = unknownFunction(ast) ?? unsupportedRegex(ast);
  if (problem) return { problem };
  // Only the functions the expression names: each registered one is bound into every
  // evaluation's environment. $eval can name any, so it gets them all.
  const named = customFunctionsNamed(ast);
  for (const [name, fn] of Object.entries(CUSTOM_FUNCTIONS)) {
    if (named !== 'all' && !named.has(name)) continue;
    compiled.registerFunction(name, fn.implementation as (...args: unknown[]) => unknown, fn.signature);
  }
  // The common shapes run as synchronous closures (src/expressions/fast-path.ts); they
  // answer UNDECIDED where JSONata's own evaluation (and its limits) must decide.
  const fast = compileFast(ast as never);
  return {
    expression: {
      source,
      ...(fast ? { evaluateSync: fast } : {}),
      async evaluate(input: unknown, bindings?: Record<string, unknown>): Promise<unknown> {
        if (fast && bindings === undefined) {
          const value = fast(input);
          if (value !== UNDECIDED) return value;
        }
        try {
          return await compiled.evaluate(input, bindings);
        } catch (err) {
          const e = err as JsonataError;
          const limit = limitBreached(e.code, limits);
          if (limit)
            throw new TiergateError('TG_ERR_EXPRESSION_LIMIT', { reason: location ? limit : `${JSON.stringify(source)} ${limit}` }, { cause: err, location });
          throw new TiergateError(
            'TG_ERR_ROUTING',
            { reason: `expression ${JSON.stringify(source)} failed: ${e.message ?? String(err)}` },
            { cause: err, location },
          );
        }
      },
    },
  };
}

/** JSONata's own truthiness ($boolean), so `when: "tags"` means "has any tag". */
export function isTruthy(value: unknown): boolean {
  if (value === undefined || value === null || value === false) return false;
  if (typeof value === 'string') return value.length > 0;
  if (typeof value === 'number') return value !== 0 && !Number.isNaN(value);
  if (typeof value === 'function') return false;
  if (Array.isArray(value)) return value.some(isTruthy);
  if (typeof value === 'object') return Object.keys(value).length > 0;
  return true;
}
