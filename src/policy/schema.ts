// Stage 2 of the policy compiler: the shape. Before: source.ts read the file into data.
// Here the data is checked against schemas/gateway.schema.json (and, through
// plugin-sites.ts, each plugin's options against the schema the plugin declares), with
// one ajv instance that fills in every `default` (defaults.ts) and four tiergate keywords:
//   "x-jsonata": true           the string compiles as JSONata (compiled here, once)
//   "x-ref": "model" | "tier" | "target" | "provider" | "route"
//                               the string names something the policy declares
//   "x-secret": true            the string is a secret (an API key): it is collected in
//                               the session, and compile.ts registers it for redaction
//                               from every log line, error and admin answer once the
//                               policy is valid (validating registers nothing)
//   "x-path": true              the string names a file, relative to the policy: it must
//                               stay inside the policy's folder, symlinks resolved
// Errors come back as located TiergateErrors with a readable message, all at once.
// After: semantic.ts checks the rules between fields.
import AjvModule, { type ErrorObject, type ValidateFunction, type SchemaValidateFunction } from 'ajv';
import path from 'node:path';
import { TiergateError, type ErrorCode } from '../common/errors.ts';
import { closestName, compileExpression, type ExpressionLimits } from '../expressions/compile.ts';
import type { CompiledExpression, JsonSchema } from '../plugin-contract/plugin-api.ts';
import { formatPath, type Path, type PathSegment, type PolicySource } from './source.ts';
import { escapesFolders } from './paths.ts';
import { policySchema } from '../policy-shape/defaults.ts';

const Ajv = AjvModule.default ?? (AjvModule as unknown as typeof AjvModule.default);

export type ReferenceKind = 'model' | 'tier' | 'target' | 'provider' | 'route';

/** What the keywords check against while one policy is being validated. */
export interface ValidationSession {
  names: { models: ReadonlySet<string>; tiers: ReadonlySet<string>; providers: ReadonlySet<string>; routes?: ReadonlySet<string> };
  /** "x-path" options resolve against `baseDir` and must stay inside one of `folders` (default: baseDir only). */
  files?: { baseDir: string; folders: readonly string[] };
  /** JSONata compiled during validation, by expressionKey(text, where it is written); reused by the runtime. */
  expressions: Map<string, CompiledExpression>;
  /** The policy's `expressions` limits, for everything compiled in this session (default: DEFAULT_EXPRESSION_LIMITS). */
  limits?: ExpressionLimits;
  /** Every value a schema marks "x-secret": registered for redaction once the policy compiles, not while it is validated. */
  secrets: Set<string>;
}

// Validation is synchronous, so the session in force can be a module variable set
// around each validate call; keywords read it.
let activeSession: ValidationSession | null = null;
// Where the data being validated sits in the policy, so that an expression's run-time
// errors (a limit it breaks) name the line it is written on.
let activeSite: { source: PolicySource; at: Path } | null = null;

const jsonataKeyword: SchemaValidateFunction = function validateJsonata(
  enabled: boolean,
  data: unknown,
  _parentSchema?: unknown,
  dataCxt?: { instancePath: string },
): boolean {
  if (!enabled || typeof data !== 'string' || !activeSession) return true;
  const at = activeSite && dataCxt ? [...activeSite.at, ...pointerToPath(dataCxt.instancePath)] : null;
  const key = expressionKey(data, at ?? []);
  const cached = activeSession.expressions.get(key);
  if (cached) return true;
  const location = activeSite && at ? activeSite.source.locate(at) : undefined;
  const result = compileExpression(data, { limits: activeSession.limits, location });
  if ('expression' in result) {
    activeSession.expressions.set(key, result.expression);
    return true;
  }
  jsonataKeyword.errors = [{ keyword: 'x-jsonata', message: result.problem.message, params: { offset: result.problem.offset } }];
  return false;
};

const referenceKeyword: SchemaValidateFunction = function validateReference(kind: ReferenceKind, data: unknown): boolean {
  if (typeof data !== 'string' || !activeSession) return true;
  const { models, tiers, providers, routes = new Set<string>() } = activeSession.names;
  const candidates: Record<ReferenceKind, ReadonlySet<string>[]> = {
    model: [models],
    tier: [tiers],
    target: [tiers, models],
    provider: [providers],
    route: [routes],
  };
  if (candidates[kind].some((set) => set.has(data))) return true;
  const all = candidates[kind].flatMap((set) => [...set]);
  const noun = kind === 'target' ? 'tier or model' : kind;
  const suggestion = closestName(data, all);
  const known = all.length ? `; declared: ${all.join(', ')}` : '';
  referenceKeyword.errors = [
    { keyword: 'x-ref', message: `no ${noun} named "${data}"` + (suggestion ? ` (did you mean "${suggestion}"?)` : known), params: { kind } },
  ];
  return false;
};

const secretKeyword: SchemaValidateFunction = function collectSecret(enabled: boolean, data: unknown): boolean {
  if (enabled && typeof data === 'string') activeSession?.secrets.add(data);
  return true;
};

const pathKeyword: SchemaValidateFunction = function validatePath(enabled: boolean, data: unknown): boolean {
  const files = activeSession?.files;
  if (!enabled || typeof data !== 'string' || !files) return true;
  const problem = escapesFolders(path.resolve(files.baseDir, data), files.folders);
  if (!problem) return true;
  pathKeyword.errors = [
    {
      keyword: 'x-path',
      message: `${JSON.stringify(data)} ${problem} ${files.folders.length === 1 ? `the policy's folder ${files.folders[0]}` : `the folders this policy may use (${files.folders.join(', ')})`}; files a policy names must stay inside it`,
      params: {},
    },
  ];
  return false;
};

// verbose: errors carry their parentSchema, which messageFor reads to suggest the key meant.
export const ajv = new Ajv({ allErrors: true, strict: true, useDefaults: true, allowUnionTypes: true, verbose: true });
ajv.addKeyword({ keyword: 'x-jsonata', type: 'string', schemaType: 'boolean', errors: true, validate: jsonataKeyword });
ajv.addKeyword({ keyword: 'x-ref', type: 'string', schemaType: 'string', errors: true, validate: referenceKeyword });
ajv.addKeyword({ keyword: 'x-secret', type: 'string', schemaType: 'boolean', errors: false, validate: secretKeyword });
ajv.addKeyword({ keyword: 'x-path', type: 'string', schemaType: 'boolean', errors: true, validate: pathKeyword });

const validatePolicyShape = ajv.compile(policySchema);

export function compileOptionsSchema(schema: JsonSchema): ValidateFunction {
  return ajv.compile(schema);
}

/**
 * The key of a compiled expression in ValidationSession.expressions: its text and where
 * it is written, so that the same text in two places reports each place's own location.
 */
export function expressionKey(text: string, at: Path): string {
  return `${formatPath(at)}\n${text}`;
}

export function withSession<T>(session: ValidationSession, run: () => T, site: { source: PolicySource; at: Path } | null = null): T {
  const previous = activeSession;
  const previousSite = activeSite;
  activeSession = session;
  activeSite = site;
  try {
    return run();
  } finally {
    activeSession = previous;
    activeSite = previousSite;
  }
}

/** Validates the whole policy document against schemas/gateway.schema.json. */
export function validatePolicyDocument(source: PolicySource, session: ValidationSession): TiergateError[] {
  return withSession(
    session,
    () => (validatePolicyShape(source.data) ? [] : toLocatedErrors(validatePolicyShape.errors ?? [], source, [], 'TG_ERR_CONFIG_SCHEMA')),
    { source, at: [] },
  );
}

/** Validates one plugin's options (data at `at` in the policy). Applies schema defaults to `options`. */
export function validateOptions(validate: ValidateFunction, options: unknown, source: PolicySource, at: Path, session: ValidationSession): TiergateError[] {
  return withSession(session, () => (validate(options) ? [] : toLocatedErrors(validate.errors ?? [], source, at, 'TG_ERR_PLUGIN_OPTIONS')), { source, at });
}

function pointerToPath(pointer: string): PathSegment[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((raw) => raw.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((segment) => (/^(0|[1-9][0-9]*)$/.test(segment) ? Number(segment) : segment));
}

function describeType(expected: unknown): string {
  const list = Array.isArray(expected) ? expected : [expected];
  const words = list.map((t) =>
    t === 'integer' ? 'a whole number' : t === 'array' ? 'a list' : t === 'object' ? 'a mapping' : t === 'null' ? 'null' : `a ${t}`,
  );
  return words.join(' or ');
}

function messageFor(error: ErrorObject): string {
  const p = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperties': {
      const allowed = Object.keys(((error.parentSchema as JsonSchema | undefined)?.properties as Record<string, unknown> | undefined) ?? {});
      const suggestion = closestName(String(p.additionalProperty), allowed);
      return (
        `unknown key "${p.additionalProperty}"` + (suggestion ? ` (did you mean "${suggestion}"?)` : allowed.length ? ` (allowed: ${allowed.join(', ')})` : '')
      );
    }
    case 'required':
      return `missing required key "${p.missingProperty}"`;
    case 'type':
      return `must be ${describeType(p.type)}`;
    case 'enum':
      return `must be one of: ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'const':
      return `must be ${JSON.stringify(p.allowedValue)}`;
    case 'minProperties':
      return `must have at least ${p.limit} entr${p.limit === 1 ? 'y' : 'ies'}`;
    case 'minItems':
      return `must have at least ${p.limit} item${p.limit === 1 ? '' : 's'}`;
    case 'uniqueItems':
      return `items ${p.j} and ${p.i} are the same; each may appear once`;
    case 'pattern':
      return `must match ${p.pattern}`;
    default:
      return error.message ?? `fails ${error.keyword}`;
  }
}

function codeFor(error: ErrorObject, fallback: ErrorCode): ErrorCode {
  if (error.keyword === 'x-jsonata') return 'TG_ERR_CONFIG_JSONATA';
  if (error.keyword === 'x-ref') return 'TG_ERR_CONFIG_REFERENCE';
  if (error.keyword === 'x-path') return 'TG_ERR_CONFIG_PATH';
  return fallback;
}

export function toLocatedErrors(errors: ErrorObject[], source: PolicySource, at: Path, code: ErrorCode): TiergateError[] {
  const out: TiergateError[] = [];
  const seen = new Set<string>();
  for (const error of errors) {
    // ajv reports a failed propertyNames twice (the inner rule and the wrapper); keep the inner one.
    // Likewise a failed if/then: the `then` rule (say, const "*") says what is wrong.
    if (error.keyword === 'propertyNames' || error.keyword === 'if') continue;
    const params = error.params as Record<string, unknown>;
    let path: PathSegment[] = [...at, ...pointerToPath(error.instancePath)];
    let key = false;
    let reason = messageFor(error);
    if (error.keyword === 'additionalProperties') {
      path = [...path, String(params.additionalProperty)];
      key = true;
    } else if (error.keyword === 'required') {
      // The mapping that lacks the key is named by its own key (models.gpt-4o:), when it has one.
      key = true;
    } else if (typeof params.propertyName === 'string') {
      path = [...path, params.propertyName];
      key = true;
      reason =
        `"${params.propertyName}" is not a valid name: ` +
        (error.keyword === 'pattern' ? `use letters, digits and . _ : / - (must match ${params.pattern})` : reason);
    }
    const offset = typeof params.offset === 'number' ? params.offset : undefined;
    const location = source.locate(path, { key, offsetInScalar: offset });
    const errorCode = codeFor(error, code);
    const signature = `${location.path}|${reason}`;
    if (seen.has(signature)) continue;
    seen.add(signature);
    out.push(new TiergateError(errorCode, { reason }, { location }));
  }
  return out;
}
