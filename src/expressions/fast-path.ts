// Synchronous JavaScript for the JSONata shapes routing policies are mostly made of:
// a path compared with a literal (=, !=, <, <=, >, >=), a path `in` a literal array,
// and/or of those, $not / $exists of one, a bare path, and a call of one of tiergate's
// own functions without arguments ($estimateTokens()).
//
// Why: one JSONata evaluate is an async tree walk costing ~2.5–9 µs; a routing decision
// with 3 features and 10 rules cost ~60 µs (target 20). The same conditions as closures
// cost well under 1 µs (docs/bench/profile-findings.md, item 3).
//
// The closures have exactly JSONata's semantics for those shapes, and stop where they
// would need more: any value on the way that is an array (JSONata maps paths over
// arrays, builds sequences), an object or function where a primitive is compared, a
// comparison JSONata rejects (number with string, a boolean or null with <), a
// non-finite number, a function that throws. There the closure answers UNDECIDED and
// the caller evaluates with JSONata itself, which gives the real answer or the real
// error, under the policy's `expressions` limits. test/expressions/expression-fast-path.test.ts
// checks both agree on generated inputs.
import { CUSTOM_FUNCTIONS } from './functions.ts';

/** The closure could not decide; evaluate with JSONata. */
export const UNDECIDED: unique symbol = Symbol('undecided');
export type FastResult = unknown;
export type FastExpression = (input: unknown) => FastResult;

interface Node {
  type?: string;
  value?: unknown;
  [key: string]: unknown;
}

/**
 * A node may carry only these keys; anything else (predicates, stages, focus, grouping,
 * ...) means a shape not handled here. A key set to undefined (jsonata's parser leaves
 * `name` so on function nodes) is as good as absent: jsonata tests them for truthiness.
 */
function onlyKeys(node: Node, allowed: readonly string[]): boolean {
  for (const key of Object.keys(node)) if (node[key] !== undefined && !allowed.includes(key)) return false;
  return true;
}

type Literal = string | number | boolean | null;

function literalOf(node: Node): { value: Literal } | null {
  if (node.type === 'string' && typeof node.value === 'string' && onlyKeys(node, ['type', 'value', 'position'])) return { value: node.value };
  if (node.type === 'number' && typeof node.value === 'number' && Number.isFinite(node.value) && onlyKeys(node, ['type', 'value', 'position']))
    return { value: node.value };
  if (node.type === 'value' && (node.value === true || node.value === false || node.value === null) && onlyKeys(node, ['type', 'value', 'position']))
    return { value: node.value };
  return null;
}

/** The names of a plain path (a.b.`c-d`), or null. */
function pathOf(node: Node): string[] | null {
  if (node.type !== 'path' || !Array.isArray(node.steps) || node.steps.length === 0 || !onlyKeys(node, ['type', 'steps', 'position'])) return null;
  const names: string[] = [];
  for (const step of node.steps as Node[]) {
    if (step.type !== 'name' || typeof step.value !== 'string' || !onlyKeys(step, ['type', 'value', 'position'])) return null;
    names.push(step.value);
  }
  return names;
}

const hasOwn = Object.prototype.hasOwnProperty;

/**
 * A path's value as JSONata's lookup finds it (own properties of objects, nothing
 * inside primitives or null), or UNDECIDED when an array or function is met: JSONata
 * maps over arrays and builds sequences, which is not this closure's business.
 */
function readPath(names: readonly string[]): FastExpression {
  const read = (input: unknown): unknown => {
    let value: unknown = input;
    for (let i = 0; i < names.length; i++) {
      if (value === null || typeof value !== 'object') return undefined;
      if (Array.isArray(value)) return UNDECIDED;
      if (!hasOwn.call(value, names[i])) return undefined;
      value = (value as Record<string, unknown>)[names[i]];
      if (typeof value === 'function') return UNDECIDED;
    }
    if (Array.isArray(value)) return UNDECIDED;
    return value;
  };
  return read;
}

/** A value this closure may compare: a primitive, or undefined. Objects are left to JSONata (deep equality, sequences). */
function isPlain(value: unknown): boolean {
  return (
    value === undefined || value === null || typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))
  );
}

/** JSONata's boolize ($boolean, undefined as false) for plain values. */
function boolize(value: unknown): boolean | typeof UNDECIDED {
  if (value === undefined || value === null) return false;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') return value.length > 0;
  if (typeof value === 'number') return Number.isFinite(value) ? value !== 0 : UNDECIDED;
  return UNDECIDED;
}

/** An operand: a literal or a path. */
function operand(node: Node): FastExpression | null {
  const literal = literalOf(node);
  if (literal) {
    const value = literal.value;
    return () => value;
  }
  const names = pathOf(node);
  return names ? readPath(names) : null;
}

/** `$name()` of one of tiergate's functions: called as JSONata calls it, with `$` bound to the input. */
function customCall(node: Node): FastExpression | null {
  if (node.type !== 'function' || !onlyKeys(node, ['type', 'value', 'position', 'arguments', 'procedure'])) return null;
  const procedure = node.procedure as Node | undefined;
  if (!procedure || procedure.type !== 'variable' || typeof procedure.value !== 'string' || !onlyKeys(procedure, ['type', 'value', 'position'])) return null;
  if (!Array.isArray(node.arguments) || node.arguments.length !== 0) return null;
  const fn = CUSTOM_FUNCTIONS[procedure.value];
  if (!fn || !hasOwn.call(CUSTOM_FUNCTIONS, procedure.value)) return null;
  const implementation = fn.implementation as (this: unknown) => unknown;
  return (input) => {
    const focus = { environment: { lookup: (name: string) => (name === '$' ? input : undefined) } };
    let value: unknown;
    try {
      value = implementation.call(focus);
    } catch {
      return UNDECIDED;
    }
    return isPlain(value) ? value : UNDECIDED;
  };
}

function builtinCall(node: Node, name: 'not' | 'exists'): Node | null {
  if (node.type !== 'function' || !onlyKeys(node, ['type', 'value', 'position', 'arguments', 'procedure'])) return null;
  const procedure = node.procedure as Node | undefined;
  if (!procedure || procedure.type !== 'variable' || procedure.value !== name || !onlyKeys(procedure, ['type', 'value', 'position'])) return null;
  if (!Array.isArray(node.arguments) || node.arguments.length !== 1) return null;
  return node.arguments[0] as Node;
}

/**
 * The closure for a whole expression, or null when its shape is not one of these (the
 * expression then always goes through JSONata). The AST is jsonata's own (`ast()`).
 */
export function compileFast(node: Node): FastExpression | null {
  if (node === null || typeof node !== 'object') return null;
  // Parentheses around one expression: a block whose value is that expression's.
  if (node.type === 'block' && Array.isArray(node.expressions) && node.expressions.length === 1 && onlyKeys(node, ['type', 'value', 'position', 'expressions']))
    return compileFast(node.expressions[0] as Node);
  const simple = operand(node) ?? customCall(node);
  if (simple) {
    return (input) => {
      const value = simple(input);
      return value === UNDECIDED || isPlain(value) ? value : UNDECIDED;
    };
  }

  const notArgument = builtinCall(node, 'not');
  if (notArgument) {
    const inner = compileFast(notArgument);
    if (!inner) return null;
    return (input) => {
      const value = inner(input);
      if (value === UNDECIDED) return UNDECIDED;
      if (value === undefined) return undefined;
      const bool = boolize(value);
      return bool === UNDECIDED ? UNDECIDED : !bool;
    };
  }
  const existsArgument = builtinCall(node, 'exists');
  if (existsArgument) {
    const inner = compileFast(existsArgument);
    if (!inner) return null;
    return (input) => {
      const value = inner(input);
      return value === UNDECIDED ? UNDECIDED : value !== undefined;
    };
  }

  if (node.type !== 'binary' || typeof node.value !== 'string' || !onlyKeys(node, ['type', 'value', 'position', 'lhs', 'rhs'])) return null;
  const op = node.value;
  const lhsNode = node.lhs as Node;
  const rhsNode = node.rhs as Node;

  if (op === 'and' || op === 'or') {
    const lhs = compileFast(lhsNode);
    const rhs = compileFast(rhsNode);
    if (!lhs || !rhs) return null;
    const isAnd = op === 'and';
    // Short-circuit as JSONata does: the right side is not evaluated (nor can it fail) when the left decides.
    return (input) => {
      const left = lhs(input);
      if (left === UNDECIDED) return UNDECIDED;
      const l = boolize(left);
      if (l === UNDECIDED) return UNDECIDED;
      if (isAnd ? !l : l) return l;
      const right = rhs(input);
      if (right === UNDECIDED) return UNDECIDED;
      return boolize(right);
    };
  }

  if (op === 'in') {
    const lhs = operand(lhsNode);
    if (!lhs) return null;
    let members: Literal[];
    const single = literalOf(rhsNode);
    if (single) members = [single.value];
    else if (
      rhsNode.type === 'unary' &&
      rhsNode.value === '[' &&
      Array.isArray(rhsNode.expressions) &&
      onlyKeys(rhsNode, ['type', 'value', 'position', 'expressions'])
    ) {
      const literals = (rhsNode.expressions as Node[]).map(literalOf);
      if (literals.some((l) => l === null)) return null;
      members = literals.map((l) => (l as { value: Literal }).value);
    } else return null;
    return (input) => {
      const value = lhs(input);
      if (value === UNDECIDED || !isPlain(value)) return UNDECIDED;
      if (value === undefined) return false;
      // JSONata compares members with ===.
      for (let i = 0; i < members.length; i++) if (members[i] === value) return true;
      return false;
    };
  }

  const lhs = operand(lhsNode) ?? customCall(lhsNode);
  const rhs = operand(rhsNode) ?? customCall(rhsNode);
  if (!lhs || !rhs) return null;

  if (op === '=' || op === '!=') {
    const equal = op === '=';
    return (input) => {
      const l = lhs(input);
      if (l === UNDECIDED || !isPlain(l)) return UNDECIDED;
      const r = rhs(input);
      if (r === UNDECIDED || !isPlain(r)) return UNDECIDED;
      // Either side undefined: false, for = and != alike.
      if (l === undefined || r === undefined) return false;
      return equal ? l === r : l !== r;
    };
  }

  if (op === '<' || op === '<=' || op === '>' || op === '>=') {
    return (input) => {
      const l = lhs(input);
      if (l === UNDECIDED) return UNDECIDED;
      const r = rhs(input);
      if (r === UNDECIDED) return UNDECIDED;
      const lt = typeof l;
      const rt = typeof r;
      // JSONata throws for anything but strings and numbers (T2010) and for mixed types
      // (T2009): leave those to it, so the error is its own.
      if ((lt !== 'undefined' && lt !== 'string' && lt !== 'number') || (rt !== 'undefined' && rt !== 'string' && rt !== 'number')) return UNDECIDED;
      if (l === undefined || r === undefined) return undefined;
      if (lt !== rt) return UNDECIDED;
      if (lt === 'number' && !(Number.isFinite(l) && Number.isFinite(r))) return UNDECIDED;
      const a = l as number | string;
      const b = r as number | string;
      return op === '<' ? a < b : op === '<=' ? a <= b : op === '>' ? a > b : a >= b;
    };
  }
  return null;
}
