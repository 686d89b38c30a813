// Regular expressions from a policy, matched in time linear in the input.
//
// V8's RegExp backtracks: a pattern such as (a+)+$ takes exponential time on a near miss
// (25 characters: seconds; 40: hours), and a match cannot be interrupted, so no time
// limit stops it and one policy regex would hold the event loop, every request and not
// only its own. The patterns a policy writes (JSONata regex literals, the regex and
// heuristics evaluators' patterns) therefore run on RE2 (re2js, a JavaScript port of
// Google's engine), which never backtracks. They keep JavaScript's syntax, without what
// only backtracking can do (lookahead, lookbehind, backreferences) and repeat counts
// above 1,000; such a pattern is refused with a located error when the policy loads.
//
// Not quite RegExp: `\s` is ASCII white space only (RE2's), and `\b` and `\w` are ASCII
// as in JavaScript without the u flag.
import { RE2JS, RE2Set } from 're2js';
import { RecentMap } from '../common/recent-map.ts';

/** The JavaScript flags a policy pattern may carry; g and y keep a search position in lastIndex. */
const FLAGS = /^[gimsuy]*$/;

/** One compiled RE2 program per pattern and flags (the last 1,000): compiling costs far more than a match. */
const compiled = new RecentMap<string, RE2JS>(1000);

/** Why RE2 cannot take the pattern (in words for the policy's author), or null when it can. */
export function linearRegExpProblem(source: string, flags = ''): string | null {
  try {
    compile(source, flags);
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

function compile(source: string, flags: string): RE2JS {
  const key = `${flags}/${source}`;
  const found = compiled.get(key);
  if (found) return found;
  if (!FLAGS.test(flags)) throw new Error(`flags "${flags}" are not supported; use i, m, s, u, g`);
  if (flags.includes('y')) throw new Error('the sticky flag (y) is not supported');
  // JavaScript's \k<name> is a backreference; the translation would read it as the text "k<name>".
  if (/(^|[^\\])(\\\\)*\\k</.test(source))
    throw new Error(
      `${JSON.stringify(source)} uses a backreference (\\k<…>), which only a backtracking engine can match; tiergate matches policy patterns in linear time (RE2)`,
    );
  let re: RE2JS;
  try {
    re = RE2JS.compile(
      RE2JS.translateRegExp(source),
      (flags.includes('i') ? RE2JS.CASE_INSENSITIVE : 0) | (flags.includes('m') ? RE2JS.MULTILINE : 0) | (flags.includes('s') ? RE2JS.DOTALL : 0),
    );
  } catch (err) {
    throw new Error(`${JSON.stringify(source)}: ${explain(err instanceof Error ? err.message : String(err))}`, { cause: err });
  }
  compiled.set(key, re);
  return re;
}

/**
 * A pattern from a plugin's options, on RE2. Throws an Error whose message is the option
 * error to report: "not a valid regular expression: …" when JavaScript rejects it too,
 * "not supported: …" when only RE2 does.
 */
export function policyPattern(source: string, flags: string): LinearRegExp {
  try {
    new RegExp(source, flags);
  } catch (err) {
    throw new Error(`not a valid regular expression: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  try {
    return new LinearRegExp(source, flags);
  } catch (err) {
    throw new Error(`not supported: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** RE2's message, with why it refuses what JavaScript accepts. */
function explain(message: string): string {
  const text = message.replace(/^error parsing regexp: /, '');
  if (/\(\?[=!]|\(\?<[=!]|named capture: `\(\?<[=!]/.test(text))
    return `${text}: lookahead and lookbehind need a backtracking engine; tiergate matches policy patterns in linear time (RE2)`;
  if (/invalid escape sequence: `\\[1-9]/.test(text))
    return `${text}: backreferences need a backtracking engine; tiergate matches policy patterns in linear time (RE2)`;
  if (/invalid repeat count/.test(text)) return `${text}: RE2 repeats at most 1,000 times`;
  return text;
}

/**
 * A RegExp look-alike on RE2, for JSONata's RegexEngine option and the evaluators: the
 * constructor takes a pattern or a RegExp (as JSONata passes its regex literals);
 * `exec` and `test` follow RegExp's, lastIndex included for the g flag.
 */
export class LinearRegExp {
  readonly source: string;
  readonly flags: string;
  readonly global: boolean;
  lastIndex = 0;
  readonly #re: RE2JS;

  constructor(pattern: string | RegExp, flags?: string) {
    this.source = typeof pattern === 'string' ? pattern : pattern.source;
    this.flags = flags ?? (typeof pattern === 'string' ? '' : pattern.flags);
    this.global = this.flags.includes('g');
    this.#re = compile(this.source, this.flags);
  }

  test(input: string): boolean {
    return this.global ? this.exec(input) !== null : this.#re.test(input);
  }

  exec(input: string): RegExpExecArray | null {
    const from = this.global ? this.lastIndex : 0;
    if (from > input.length) {
      this.lastIndex = 0;
      return null;
    }
    // Whether there is a match at all, from RE2's DFA (~3 µs on 500 characters); where it
    // is takes the NFA, ten times that, so only a hit pays for it. Routing rules mostly miss.
    const hit = this.#re.re2().matchWithGroup(input, from, input.length, RE2Set.UNANCHORED, 0)[0] as boolean;
    const matcher = hit ? this.#re.matcher(input) : null;
    if (matcher === null || !matcher.find(from)) {
      if (this.global) this.lastIndex = 0;
      return null;
    }
    const groups: Array<string | undefined> = [];
    for (let i = 0; i <= matcher.groupCount(); i++) groups.push(matcher.group(i) ?? undefined);
    const result = Object.assign(groups as unknown as RegExpExecArray, { index: matcher.start(), input });
    if (matcher.hasNamedGroups) {
      // Without a prototype, as RegExp's; a group that took no part in the match is undefined (the type says string).
      const named = Object.create(null) as Record<string, string>;
      for (const [name, at] of Object.entries(matcher.namedGroups)) named[name] = groups[at] as string;
      result.groups = named;
    } else {
      result.groups = undefined;
    }
    if (this.global) this.lastIndex = matcher.end();
    return result;
  }

  toString(): string {
    return `/${this.source}/${this.flags}`;
  }
}
