// Secrets never leave the process: provider keys, gateway keys and the admin token are
// registered here when a valid policy is compiled (every option a schema marks
// "x-secret": true; src/policy/compile.ts), and every error, log line and admin answer is passed through
// redactSecrets. A value once registered stays registered for the process's life: a
// rotated-out key is still a secret, and redacting more than needed costs nothing.
//
// Values shorter than MIN_SECRET_LENGTH are not registered: they cannot be real keys
// (a local server's api_key: "none"), and replacing them would garble every message.

export const REDACTED = '[redacted]';
const MIN_SECRET_LENGTH = 8;

const registered = new Set<string>();
// Longest first, so that a secret containing another is replaced whole.
let ordered: string[] = [];

export function registerSecret(value: string): void {
  if (value.length < MIN_SECRET_LENGTH || registered.has(value)) return;
  registered.add(value);
  ordered = [...registered].sort((a, b) => b.length - a.length);
}

/**
 * `text` with each of `values` that registerSecret would keep replaced by [redacted],
 * registering none: for the errors of a policy that is not valid, whose secrets are
 * never registered.
 */
export function redactValues(text: string, values: Iterable<string>): string {
  let out = text;
  const secrets = [...new Set(values)].filter((v) => v.length >= MIN_SECRET_LENGTH).sort((a, b) => b.length - a.length);
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  return out;
}

/** `text` with every registered secret replaced by [redacted]. */
export function redactSecrets(text: string): string {
  let out = text;
  for (const secret of ordered) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  return out;
}

/** A copy of `value` with every string (keys included) passed through redactSecrets. */
export function redactDeep<T>(value: T): T {
  if (ordered.length === 0) return value;
  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === 'string') return redactSecrets(v);
    if (v === null || typeof v !== 'object' || depth > 32) return v;
    if (Array.isArray(v)) return v.map((item) => walk(item, depth + 1));
    if (v instanceof Error) return redactSecrets(v.message);
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return v;
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(v)) out[redactSecrets(key)] = walk(item, depth + 1);
    return out;
  };
  return walk(value, 0) as T;
}
