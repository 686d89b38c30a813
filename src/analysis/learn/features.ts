// One feature extractor for training (`tiergate train`) and serving (the classifier
// router): the same code turns a conversation into the same sparse vector in both
// places, and the model artifact records the spec it was trained with so a mismatch is
// caught at load rather than silently mispredicting.
//
// Layout of the vector: [0, buckets) hashed word n-grams; then one slot per built-in;
// then one per policy feature. Everything is computed in one pass over the text with
// char-code tests (no per-token regexes): the routing budget is tens of microseconds.
import { createHash } from 'node:crypto';
import type { ChatMessage } from '../../plugin-contract/plugin-api.ts';
import { estimateMessagesTokens, messageText } from '../../plugin-contract/tokens.ts';

export const FEATURE_SPEC_VERSION = 1;

/** Built-in features this code can compute, in a fixed order of definition. */
export const BUILTIN_FEATURES = [
  'tokens', // log of the conversation's estimated tokens
  'turns', // log of the number of user turns
  'has_code', // code fences, indentation or code keywords
  'reasoning_cues', // why/explain/prove/calculate/step … per word
  'question_marks', // questions asked
  'list_structure', // lines that start like a list item or an option (A. / 1. / -)
  'expected_output', // cues for a long answer (essay, detailed, write …) minus a short one
  'domain_risk', // medical, legal, financial vocabulary
  'numeric_share', // share of words that are numbers
  'math_symbols', // = + ^ / * and digits next to operators
] as const;
export type BuiltinFeature = (typeof BUILTIN_FEATURES)[number];

export interface FeatureSpec {
  version: number;
  builtins: string[];
  ngrams: { n: number[]; buckets: number; hash: 'fnv1a' };
  /** Policy features (by name) fed to the model; their values come from the policy at serving time. */
  policy_features: string[];
}

export interface SparseVector {
  indices: Int32Array;
  values: Float64Array;
}

export function defaultFeatureSpec(overrides: Partial<FeatureSpec> = {}): FeatureSpec {
  return {
    version: FEATURE_SPEC_VERSION,
    builtins: [...BUILTIN_FEATURES],
    ngrams: { n: [1, 2], buckets: 1 << 14, hash: 'fnv1a' },
    policy_features: [],
    ...overrides,
  };
}

/** The spec's dimension: n-gram buckets + built-ins + policy features. */
export function dimensionOf(spec: FeatureSpec): number {
  return spec.ngrams.buckets + spec.builtins.length + spec.policy_features.length;
}

/** A stable hash of the spec (canonical JSON): stored in the artifact, compared at load. */
export function specHash(spec: FeatureSpec): string {
  const canonical = JSON.stringify({
    version: spec.version,
    builtins: spec.builtins,
    ngrams: { n: spec.ngrams.n, buckets: spec.ngrams.buckets, hash: spec.ngrams.hash },
    policy_features: spec.policy_features,
  });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/** Why this code cannot compute the spec, or null when it can. Each problem names the field. */
export function specProblems(spec: unknown): Array<{ field: string; message: string }> {
  const problems: Array<{ field: string; message: string }> = [];
  if (spec === null || typeof spec !== 'object') return [{ field: 'feature_spec', message: 'the artifact has no feature_spec object' }];
  const s = spec as Partial<FeatureSpec>;
  if (s.version !== FEATURE_SPEC_VERSION)
    problems.push({
      field: 'feature_spec.version',
      message: `feature spec version ${JSON.stringify(s.version)} is not one this tiergate computes (${FEATURE_SPEC_VERSION}); retrain with this version's \`tiergate train\``,
    });
  if (!Array.isArray(s.builtins)) problems.push({ field: 'feature_spec.builtins', message: 'feature_spec.builtins must be a list of names' });
  else {
    const unknown = s.builtins.filter((b) => !(BUILTIN_FEATURES as readonly string[]).includes(b));
    if (unknown.length)
      problems.push({
        field: 'feature_spec.builtins',
        message: `unknown built-in feature${unknown.length > 1 ? 's' : ''} ${unknown.map((u) => JSON.stringify(u)).join(', ')} (this tiergate computes: ${BUILTIN_FEATURES.join(', ')})`,
      });
  }
  const ng = s.ngrams;
  if (!ng || typeof ng !== 'object') problems.push({ field: 'feature_spec.ngrams', message: 'feature_spec.ngrams is missing' });
  else {
    if (ng.hash !== 'fnv1a') problems.push({ field: 'feature_spec.ngrams.hash', message: `n-gram hash ${JSON.stringify(ng.hash)} is unknown (fnv1a)` });
    if (!Number.isInteger(ng.buckets) || ng.buckets < 1 || (ng.buckets & (ng.buckets - 1)) !== 0)
      problems.push({ field: 'feature_spec.ngrams.buckets', message: `n-gram buckets must be a power of two, not ${JSON.stringify(ng.buckets)}` });
    if (!Array.isArray(ng.n) || !ng.n.every((n) => n === 1 || n === 2 || n === 3))
      problems.push({ field: 'feature_spec.ngrams.n', message: `n-gram orders must be among 1, 2, 3, not ${JSON.stringify(ng.n)}` });
  }
  if (!Array.isArray(s.policy_features) || !s.policy_features.every((p) => typeof p === 'string'))
    problems.push({ field: 'feature_spec.policy_features', message: 'feature_spec.policy_features must be a list of names' });
  return problems;
}

// ---------------------------------------------------------------------------------
// Word lists (lower case). Looked up by hashed word, so no regex runs per token.

const REASONING = [
  'why',
  'explain',
  'prove',
  'proof',
  'derive',
  'calculate',
  'compute',
  'step',
  'steps',
  'reason',
  'reasoning',
  'analyze',
  'analyse',
  'compare',
  'evaluate',
  'justify',
  'solve',
  'how',
  'many',
  'much',
  'total',
  'each',
  'per',
  'if',
  'then',
  'therefore',
  'implies',
  'must',
];
const LONG_OUTPUT = [
  'essay',
  'write',
  'detailed',
  'describe',
  'story',
  'article',
  'elaborate',
  'plan',
  'draft',
  'letter',
  'poem',
  'outline',
  'summarize',
  'discuss',
  'list',
];
const SHORT_OUTPUT = ['answer', 'choose', 'select', 'true', 'false', 'yes', 'no', 'which', 'option', 'one'];
const DOMAIN_RISK = [
  'medical',
  'medicine',
  'diagnosis',
  'patient',
  'clinical',
  'drug',
  'dose',
  'symptom',
  'disease',
  'legal',
  'law',
  'court',
  'contract',
  'liability',
  'statute',
  'plaintiff',
  'defendant',
  'tax',
  'financial',
  'investment',
  'securities',
  'accounting',
  'surgery',
  'treatment',
];
const CODE_WORDS = ['def', 'function', 'class', 'import', 'return', 'const', 'let', 'var', 'public', 'static', 'void', 'int', 'print', 'elif', 'lambda'];

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

function wordHashSet(words: readonly string[]): Set<number> {
  const set = new Set<number>();
  for (const w of words) set.add(hashString(w));
  return set;
}

export function hashString(text: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), FNV_PRIME);
  return h >>> 0;
}

const REASONING_SET = wordHashSet(REASONING);
const LONG_SET = wordHashSet(LONG_OUTPUT);
const SHORT_SET = wordHashSet(SHORT_OUTPUT);
const RISK_SET = wordHashSet(DOMAIN_RISK);
const CODE_SET = wordHashSet(CODE_WORDS);

/** Combines two word hashes into a bigram hash (order matters). */
function combine(a: number, b: number): number {
  return Math.imul(Math.imul(a, 0x9e3779b1) ^ b, FNV_PRIME) >>> 0;
}

const isWordChar = (c: number) => (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || c === 95 || c > 127;
const isDigit = (c: number) => c >= 48 && c <= 57;

/** A compiled extractor for one spec: precomputes builtin slots so extraction is one pass. */
export interface Extractor {
  readonly spec: FeatureSpec;
  readonly dimension: number;
  extract(messages: readonly ChatMessage[], policyFeatures?: Readonly<Record<string, unknown>>): SparseVector;
}

export function compileExtractor(spec: FeatureSpec): Extractor {
  const problems = specProblems(spec);
  if (problems.length) throw new Error(problems.map((p) => `${p.field}: ${p.message}`).join('; '));
  const mask = spec.ngrams.buckets - 1;
  const unigrams = spec.ngrams.n.includes(1);
  const bigrams = spec.ngrams.n.includes(2);
  const trigrams = spec.ngrams.n.includes(3);
  const builtinBase = spec.ngrams.buckets;
  const slot = new Map<string, number>();
  spec.builtins.forEach((name, i) => slot.set(name, builtinBase + i));
  const policyBase = builtinBase + spec.builtins.length;
  const dimension = dimensionOf(spec);

  return {
    spec,
    dimension,
    extract(messages, policyFeatures = {}) {
      const counts = new Map<number, number>();
      let words = 0;
      let numbers = 0;
      let reasoning = 0;
      let long = 0;
      let short = 0;
      let risk = 0;
      let codeWords = 0;
      let questions = 0;
      let listLines = 0;
      let mathSymbols = 0;
      let fences = 0;
      let indented = 0;
      let userTurns = 0;
      for (const message of messages) {
        if (message.role === 'user') userTurns++;
        const text = messageText(message.content);
        let prev = 0;
        let prev2 = 0;
        let havePrev = 0;
        let h = FNV_OFFSET;
        let len = 0;
        let allDigits = true;
        let lineStart = true;
        let lineChars = 0; // non-space chars seen on the current line
        let leadingSpaces = 0;
        let backticks = 0;
        const n = text.length;
        for (let i = 0; i <= n; i++) {
          const raw = i < n ? text.charCodeAt(i) : 10;
          if (isWordChar(raw)) {
            const c = raw >= 65 && raw <= 90 ? raw + 32 : raw;
            h = Math.imul(h ^ c, FNV_PRIME);
            if (!isDigit(c)) allDigits = false;
            len++;
          } else if (len > 0) {
            const w = h >>> 0;
            words++;
            if (allDigits) numbers++;
            if (REASONING_SET.has(w)) reasoning++;
            if (LONG_SET.has(w)) long++;
            if (SHORT_SET.has(w)) short++;
            if (RISK_SET.has(w)) risk++;
            if (CODE_SET.has(w)) codeWords++;
            // Numbers are one token class: their values rarely generalise.
            const token = allDigits ? 0x5bd1e995 : w;
            if (unigrams) add(counts, token & mask);
            if (bigrams && havePrev >= 1) add(counts, combine(prev, token) & mask);
            if (trigrams && havePrev >= 2) add(counts, combine(combine(prev2, prev), token) & mask);
            prev2 = prev;
            prev = token;
            havePrev++;
            h = FNV_OFFSET;
            len = 0;
            allDigits = true;
          }
          // Line structure: list items ("- x", "* x", "1. x", "A. x") and code cues.
          if (raw === 10) {
            lineStart = true;
            lineChars = 0;
            leadingSpaces = 0;
            backticks = 0;
            continue;
          }
          if (raw === 96) {
            if (++backticks === 3) fences++;
          } else backticks = 0;
          if (raw === 63) questions++;
          else if (raw === 61 || raw === 43 || raw === 94 || raw === 42 || raw === 47) mathSymbols++;
          if (lineStart) {
            if (raw === 32) {
              if (++leadingSpaces === 4) indented++;
              continue;
            }
            lineStart = false;
            if ((raw === 45 || raw === 42) && text.charCodeAt(i + 1) === 32) listLines++;
            else if ((isDigit(raw) || (raw >= 65 && raw <= 72)) && (text.charCodeAt(i + 1) === 46 || text.charCodeAt(i + 1) === 41)) listLines++;
          }
          lineChars++;
        }
        void lineChars;
      }

      // Hashed n-grams, L2-normalised so long and short prompts weigh alike.
      let norm = 0;
      for (const v of counts.values()) norm += v * v;
      const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
      const size = counts.size + spec.builtins.length + spec.policy_features.length;
      const indices = new Int32Array(size);
      const values = new Float64Array(size);
      let k = 0;
      // In first-seen order (deterministic); a dot product needs no sorting.
      for (const [index, count] of counts) {
        indices[k] = index;
        values[k++] = count * scale;
      }
      const perWord = (x: number) => (words > 0 ? x / words : 0);
      for (const name of spec.builtins) {
        let v: number;
        switch (name as BuiltinFeature) {
          case 'tokens':
            v = Math.log1p(estimateMessagesTokens(messages)) / 8;
            break;
          case 'turns':
            v = Math.log1p(userTurns);
            break;
          case 'has_code':
            v = fences > 0 || indented > 1 || codeWords > 2 ? 1 : 0;
            break;
          case 'reasoning_cues':
            v = Math.min(1, perWord(reasoning) * 10);
            break;
          case 'question_marks':
            v = Math.log1p(questions);
            break;
          case 'list_structure':
            v = Math.log1p(listLines);
            break;
          case 'expected_output':
            v = Math.tanh(long - short / 2);
            break;
          case 'domain_risk':
            v = Math.min(1, risk / 3);
            break;
          case 'numeric_share':
            v = perWord(numbers);
            break;
          case 'math_symbols':
            v = Math.log1p(mathSymbols) / 3;
            break;
          default:
            v = 0;
        }
        indices[k] = slot.get(name) as number;
        values[k++] = v;
      }
      spec.policy_features.forEach((name, i) => {
        const raw = policyFeatures[name];
        indices[k] = policyBase + i;
        values[k++] = typeof raw === 'number' && Number.isFinite(raw) ? raw : raw === true ? 1 : 0;
      });
      return { indices, values };
    },
  };
}

function add(counts: Map<number, number>, index: number): void {
  counts.set(index, (counts.get(index) ?? 0) + 1);
}
