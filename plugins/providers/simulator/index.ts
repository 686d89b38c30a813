// The simulator provider: models that answer offline, with no API keys, so a fresh
// checkout can serve real traffic and the routing/escalation machinery can be exercised
// end to end. Each simulated model has a capability; each prompt gets a deterministic
// difficulty from its content. When the prompt is within the model's reach the answer
// is competent; when it is not, the answer is deficient in a way a quality gate can
// catch (hedge, refusal or truncation). Everything is a pure function of the prompt and
// the model name, so the same request always gets the same answer, which keeps tests,
// demos and replayed decision logs reproducible.
//
// Asked for `logprobs: true`, it also returns per-token log-probabilities in OpenAI's
// shape, deterministic like everything else: close to 0 (confident) for competent
// answers and clearly lower for hedges, refusals and truncations, so a confidence gate
// (the logprob evaluator) can be exercised offline; `top_logprobs` adds alternatives.
//
// Asked for a form rather than prose, it answers in that form (structured.ts): a call to
// the request's tools (`tools`, `tool_choice`), or JSON valid against the request's
// `response_format` schema, so that tool calling and structured output work offline too.
import {
  estimateMessagesTokens,
  estimateTextTokens,
  lastUserMessage,
  messageText,
  UpstreamError,
  type CallOptions,
  type ChatChunk,
  type ChatMessage,
  type ChatRequest,
  type ChatResult,
  type EmbeddingRequest,
  type EmbeddingResult,
  type FinishReason,
  type OptionIssue,
  type OptionsFrom,
  type Provider,
  type ProviderModule,
  type ToolCall,
  type Usage,
  type ValidationContext,
} from 'tiergate/plugin';
import { simulatedEmbeddings } from './embeddings.ts';
import { fnv1a } from './hash.ts';
import { instanceOf, requestedJson, toolsToCall } from './structured.ts';

// ---------------------------------------------------------------------------------
// Options

const profileSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['capability', 'first_token_ms', 'tokens_per_second'],
  properties: {
    capability: { type: 'number', minimum: 0, maximum: 1, description: 'Hardest prompt difficulty (0..1) answered competently.' },
    first_token_ms: { type: 'number', minimum: 0, description: 'Latency before the first token.' },
    tokens_per_second: { type: 'number', exclusiveMinimum: 0, description: 'Generation speed after the first token.' },
    jitter: { type: 'number', minimum: 0, maximum: 1, description: 'Deterministic per-prompt latency spread: factor in [1-jitter, 1+jitter].' },
    failure_rate: { type: 'number', minimum: 0, maximum: 1, description: 'Deterministic share of prompts that fail with HTTP 503.' },
  },
} as const;

export type SimulatorProfile = OptionsFrom<typeof profileSchema>;

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    profiles: {
      type: 'object',
      description: 'Upstream model name → simulated behaviour.',
      propertyNames: { minLength: 1 },
      additionalProperties: profileSchema,
    },
    time_scale: { type: 'number', minimum: 0, default: 1, description: 'Multiplies every delay (0 = instant).' },
    default_profile: { ...profileSchema, description: 'Profile for upstream names not in profiles; without it they get HTTP 404.' },
    embedding_models: {
      type: 'object',
      description: 'Upstream name → a simulated embedding model (for policy models of kind: embedding). Other names get HTTP 404 from POST /v1/embeddings.',
      propertyNames: { minLength: 1 },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['dimensions'],
        properties: {
          dimensions: { type: 'integer', minimum: 1, maximum: 8192, description: 'Length of its vectors; a request may ask for fewer (`dimensions`).' },
          latency_ms: { type: 'number', minimum: 0, default: 0, description: 'Time to answer a request, times time_scale.' },
        },
      },
    },
  },
} as const;

export type SimulatorOptions = OptionsFrom<typeof optionsSchema>;

// ---------------------------------------------------------------------------------
// Draws from the prompt (hash.ts): stable across runs and platforms.

/** A deterministic draw in [0, 1). */
function unit(text: string, salt: string): number {
  return fnv1a(text, salt) / 0x1_0000_0000;
}

function clamp01(x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

// ---------------------------------------------------------------------------------
// Difficulty

// Weighted: asking for a proof or a derivation signals more reasoning than asking "why".
const REASONING_CUES: Readonly<Record<string, number>> = {
  why: 0.6,
  explain: 0.6,
  calculate: 0.6,
  evaluate: 0.6,
  compare: 0.8,
  justify: 0.8,
  'trade-off': 0.8,
  tradeoff: 0.8,
  'step by step': 1,
  analyze: 1,
  analyse: 1,
  'reason about': 1,
  prove: 1.2,
  proof: 1.2,
  derive: 1.2,
};

const RISK_WORDS = [
  // medical
  'diagnosis',
  'diagnose',
  'dosage',
  'dose',
  'overdose',
  'prescription',
  'medication',
  'symptom',
  'symptoms',
  'side effects',
  'surgery',
  'chemotherapy',
  'pregnancy',
  'pregnant',
  // legal
  'contract',
  'liability',
  'liable',
  'lawsuit',
  'sue',
  'litigation',
  'court',
  'attorney',
  'lawyer',
  'breach',
  'breached',
  'negligence',
  'custody',
  'indemnity',
  'immigration',
  // financial
  'tax',
  'taxes',
  'securities',
  'mortgage',
  'bankruptcy',
  'fiduciary',
  'insider trading',
];

// Arithmetic between numbers, powers, equations with a variable, or mathematical vocabulary.
const MATH_RE =
  /\d\s*[-+*/^×÷=<>]\s*[\d(a-z]|[a-z]\s*\^\s*\d|\b[a-z]\s*=\s*\d|[≤≥∑∫√π]|\b(?:integral|derivative|equation|theorem|lemma|polynomial|matrix|eigen\w*|probability|modulo|prime|irrational|logarithm|sqrt|sum of|variance|induction)\b/i;

const CODE_RE =
  /```|\b(?:function|def|class|const|let|var|return|import|public|static|void)\b\s*[\w({]|=>|#include|\bselect\b[\s\S]*\bfrom\b|traceback|stack trace|segfault|\bnull pointer\b|[;{}]\s*$/im;

// Sequencing words make a request multi-step even without extra question marks.
const STEP_RE = /\b(?:then|after that|finally|next|also|additionally|as well as)\b/gi;
const LIST_ITEM_RE = /(?:^|\s)(?:\d{1,2}[.)]|[a-e]\)|[-*•])\s+\S/g;

function cuePattern(cue: string): RegExp {
  return new RegExp(`\\b${cue.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`, 'i');
}

// Compiled once: difficulty runs on every request.
const REASONING_PATTERNS = Object.entries(REASONING_CUES).map(([cue, weight]) => ({ pattern: cuePattern(cue), weight }));
const RISK_PATTERNS = RISK_WORDS.map(cuePattern);

function reasoningScore(text: string): number {
  let score = 0;
  for (const { pattern, weight } of REASONING_PATTERNS) if (pattern.test(text)) score += weight;
  return score;
}

function riskCount(text: string): number {
  return RISK_PATTERNS.filter((pattern) => pattern.test(text)).length;
}

/** How many distinct things the request asks for. */
function partCount(text: string): number {
  const questions = (text.match(/\?/g) ?? []).length;
  const items = (text.match(LIST_ITEM_RE) ?? []).length;
  const steps = (text.match(STEP_RE) ?? []).length;
  return Math.max(1, questions + items + steps);
}

/** Diminishing returns: the first cue matters most, later ones add less. */
function saturate(weight: number, count: number, rate: number): number {
  return weight * (1 - Math.pow(rate, count));
}

/**
 * Deterministic difficulty in [0, 1] of answering a conversation, from its content
 * alone (no clock, no randomness). Looks at user turns only: system prompts are route
 * boilerplate and would make every request of a route look alike.
 */
export function promptDifficulty(messages: readonly ChatMessage[]): number {
  const userTexts = messages.filter((m) => m.role === 'user').map((m) => messageText(m.content));
  const text = userTexts.join('\n');
  const last = lastUserMessage(messages);
  const tokens = estimateTextTokens(text);

  let d = 0.08;
  // Length: nothing below ~10 tokens, growing on a log scale up to ~1000 tokens.
  d += 0.18 * clamp01(Math.log10(Math.max(1, tokens / 10)) / 2);
  // A long conversation carries context the answer must stay consistent with.
  d += 0.03 * Math.min(4, Math.max(0, userTexts.length - 1));
  const reasoning = reasoningScore(text);
  d += saturate(0.42, reasoning, 0.6);
  const math = MATH_RE.test(text);
  const code = CODE_RE.test(text);
  if (math) d += 0.14;
  if (code) d += 0.1;
  d += 0.06 * Math.min(3, partCount(last) - 1);
  const risk = riskCount(text);
  d += saturate(0.35, risk, 0.5);
  // Multi-step reasoning inside a specialised domain is harder than either alone.
  if (reasoning >= 1.5 && (math || code || risk > 0)) d += 0.1;
  // A small stable spread so that near-identical prompts do not all tie.
  d += (unit(last.trim().toLowerCase(), 'difficulty') - 0.5) * 0.06;
  return Math.round(clamp01(d) * 1000) / 1000;
}

// ---------------------------------------------------------------------------------
// Answers

const STOPWORDS = new Set(
  (
    'a an the and or but if then so of to in on at by for with from about into over under is are was were be been being am do does did ' +
    'have has had i me my mine you your yours we our us it its this that these those he she they them their there here what which who whom ' +
    'whose when where why how can could should would will shall may might must not no yes please thanks thank hi hello hey just also very ' +
    'some any all each more most other such than too own same only out up down as let get got tell give show write explain analyze analyse ' +
    'compare derive calculate prove step by whether need want know like one two three use each work works make way thing things'
  ).split(' '),
);

/** The first few content words of the text, in order: a cheap "topic". */
function keywords(text: string, max: number): string[] {
  const out: string[] = [];
  const withoutCode = text.replace(/```[\s\S]*?```/g, ' ');
  for (const raw of withoutCode.toLowerCase().match(/[a-z][a-z'-]{2,}/g) ?? []) {
    const word = raw.replace(/'s$/, '').replace(/^['-]+|['-]+$/g, '');
    if (word.length < 3 || STOPWORDS.has(word) || out.includes(word)) continue;
    out.push(word);
    if (out.length === max) break;
  }
  return out;
}

function topicOf(text: string): string {
  const words = keywords(text, 3);
  return words.length > 0 ? words.join(' ') : 'your request';
}

const ORDER_RE = /\b(?:order|package|parcel|shipment|delivery|tracking|shipping)\b/i;
const ORDER_QUESTION_RE =
  /\b(?:where|status|track|tracking|when|arrive|arriving|shipped|dispatched|late|delayed|hasn'?t|not (?:yet )?(?:arrived|received)|still waiting)\b/i;
const ORDER_ID_RE = /\b(?:order|tracking|package|shipment|parcel)\s*(?:number|no\.?|id)?\s*[:#]?\s*#?([a-z0-9][a-z0-9-]{2,})/i;

function orderStatusAnswer(text: string, key: string): string {
  const id = ORDER_ID_RE.exec(text)?.[1];
  const order = id && /\d/.test(id) ? `Your order ${id.toUpperCase()}` : 'Your order';
  const states = [
    `${order} is in transit and should arrive within 2-3 business days. You can follow it with the tracking link in your confirmation email.`,
    `${order} has shipped and is on its way; it should arrive within 3-5 business days. The tracking link in your confirmation email shows each step.`,
    `${order} is out for delivery and should arrive today. If it has not arrived by this evening, reply here and we will open a trace with the carrier.`,
  ];
  return states[orderStateIndex(key)];
}

/** The state orderStatusAnswer gives, in the words a structured answer uses (same order). */
const ORDER_STATES = ['in transit', 'shipped', 'out for delivery'];

function orderStateIndex(key: string): number {
  return fnv1a(key, 'order-state') % ORDER_STATES.length;
}

/** Whether the competent answer to the text is an order's status (see competentAnswer). */
function asksOrderStatus(text: string): boolean {
  const orderText = text.replace(/\bin order (?:to|for|that)\b/gi, ' ');
  return !CLASSIFY_RE.test(text) && ORDER_RE.test(orderText) && ORDER_QUESTION_RE.test(orderText) && reasoningScore(text) < 1;
}

const CLASSIFY_RE = /\b(?:classify|categori[sz]e|label (?:this|the following|it)|sentiment|which category|tag this|is this (?:email |message )?spam)\b/i;
const POSITIVE_RE = /\b(?:great|good|love|loved|excellent|amazing|happy|fast|perfect|recommend|wonderful|nice|helpful)\b/i;
const SPAM_RE = /\b(?:won|winner|prize|lottery|click here|act now|free money|urgent|claim your)\b/i;
const NEGATIVE_RE = /\b(?:bad|terrible|awful|hate|hated|cold|rude|slow|broken|worst|poor|disappointed|refund|late|never)\b/i;

/** The candidate labels a classification prompt offers ("as positive, negative, or neutral"). */
function offeredLabels(text: string): string[] {
  const m = /\b(?:as|into|one of|either|labels?|categories)\s*:?\s*((?:["']?[\w-]+(?: [\w-]+)?["']?\s*(?:,|\/|\bor\b)\s*)+(?:or\s+)?["']?[\w-]+["']?)/i.exec(
    text,
  );
  if (!m) return [];
  const labels = m[1]
    .split(/\s*(?:,|\/|\bor\b)\s*/i)
    .map((s) => s.replace(/["']/g, '').trim().toLowerCase())
    .filter((s) => s.length > 0);
  return labels.length >= 2 && labels.length <= 8 ? labels : [];
}

function classificationAnswer(text: string, key: string): string {
  const labels = offeredLabels(text);
  const positive = POSITIVE_RE.test(text);
  const negative = NEGATIVE_RE.test(text);
  const sentiment = negative && !positive ? 'negative' : positive && !negative ? 'positive' : 'neutral';
  if (labels.length === 0) return /spam/i.test(text) ? (SPAM_RE.test(text) ? 'spam' : 'not spam') : sentiment;
  if (labels.includes(sentiment)) return sentiment;
  // Labels the heuristic cannot judge: a stable pick is as good as any for a simulator.
  return labels[fnv1a(key, 'label') % labels.length];
}

function generalAnswer(text: string, key: string): string {
  const words = keywords(text, 4);
  const topic = words.length > 0 ? words.slice(0, 3).join(' ') : 'your question';
  const main = words[0] ?? 'the main factor';
  const second = words[1] ?? 'the context';
  const third = words[2] ?? 'the constraints';
  const sentences: string[] = [];
  const reasoning = reasoningScore(text) > 0;

  if (reasoning) {
    sentences.push(
      `Let's work through ${topic} step by step.`,
      `First, establish what ${main} means here and which facts are given.`,
      `Second, look at how ${second} depends on ${third}, since that relation drives the result.`,
      `Third, combine the two observations and check them against the original question.`,
      `Therefore, the conclusion follows from how ${main} and ${second} interact, and each step above can be verified on its own.`,
    );
  } else {
    const openers = [`Thanks for asking about ${topic}.`, `Here is a short overview of ${topic}.`, `Good question about ${topic}.`];
    sentences.push(
      openers[fnv1a(key, 'opener') % openers.length],
      `The short answer is that it comes down to ${main} and ${second}, and both are straightforward to check.`,
      `Start with ${main}, confirm it behaves as you expect, and then look at ${second} and ${third} if anything is still unclear.`,
    );
  }
  if (partCount(text) > 1) sentences.push('Each part of your question is covered above, in the order you asked.');
  if (MATH_RE.test(text)) sentences.push('Checking the result on a small case, such as n = 1 and n = 2, confirms the calculation.');
  if (CODE_RE.test(text)) sentences.push('In code, validate the input first, handle the edge cases explicitly, and cover each case with a unit test.');
  if (riskCount(text) > 0)
    sentences.push('This is general information rather than professional advice, so please confirm the specifics with a qualified professional.');
  sentences.push('Let me know if you would like more detail on any of these points.');
  return sentences.join(' ');
}

function competentAnswer(text: string, key: string): string {
  // Classification first: "classify this ticket: where is my order?" wants a label.
  if (CLASSIFY_RE.test(text)) return classificationAnswer(text, key);
  // "in order to" is not about an order; a reasoning-heavy question that mentions a
  // delivery is not a status lookup.
  if (asksOrderStatus(text)) return orderStatusAnswer(text, key);
  return generalAnswer(text, key);
}

/** Cuts after roughly `share` of the words, never right after a sentence end, so it reads as cut off. */
function truncateMidSentence(text: string, share: number): string {
  const words = text.split(/\s+/).filter(Boolean);
  let n = Math.max(1, Math.min(words.length - 1, Math.round(words.length * share)));
  while (n > 1 && /[.!?:;,]$/.test(words[n - 1])) n--;
  return words
    .slice(0, n)
    .join(' ')
    .replace(/[.!?:;,]+$/, '');
}

type Deficiency = 'hedge' | 'refusal' | 'truncation';

/**
 * Which failure mode a model shows on a prompt above its capability. A small gap mostly
 * hedges; a large gap mostly refuses or runs out of tokens, like a real small model.
 */
function chooseDeficiency(gap: number, key: string): Deficiency {
  const pHedge = Math.min(0.7, Math.max(0.1, 0.75 - 1.5 * gap));
  const u = unit(key, 'deficiency');
  if (u < pHedge) return 'hedge';
  return u < pHedge + (1 - pHedge) / 2 ? 'refusal' : 'truncation';
}

interface Answer {
  text: string;
  finish: FinishReason;
  /** How the answer was produced: drives the simulated token confidence. */
  quality: 'competent' | Deficiency;
}

function answerFor(messages: readonly ChatMessage[], capability: number, key: string): Answer {
  const text = lastUserMessage(messages);
  const difficulty = promptDifficulty(messages);
  if (difficulty <= capability) return { text: competentAnswer(text, key), finish: 'stop', quality: 'competent' };
  switch (chooseDeficiency(difficulty - capability, key)) {
    case 'hedge':
      return { text: `I'm not entirely sure, but it might be something to do with ${topicOf(text)}.`, finish: 'stop', quality: 'hedge' };
    case 'refusal':
      return { text: "I'm sorry, but I can't help with that.", finish: 'stop', quality: 'refusal' };
    case 'truncation':
      return { text: truncateMidSentence(competentAnswer(text, key), 0.3 + 0.3 * unit(key, 'cut')), finish: 'length', quality: 'truncation' };
  }
}

/** Applies the request's token limit (OpenAI: max_completion_tokens supersedes max_tokens). */
function applyTokenLimit(answer: Answer, request: ChatRequest): Answer {
  const raw = request.max_completion_tokens ?? request.max_tokens;
  if (typeof raw !== 'number' || !Number.isFinite(raw) || raw < 0) return answer;
  const limit = Math.floor(raw);
  if (estimateTextTokens(answer.text) <= limit) return answer;
  // estimateTextTokens counts ~4 characters per token; cut on a word boundary when one exists.
  let cut = answer.text.slice(0, limit * 4);
  const space = cut.lastIndexOf(' ');
  if (space > 0) cut = cut.slice(0, space);
  // The client's limit cut it, not the model's competence: the quality stays.
  return { ...answer, text: cut, finish: 'length' };
}

// ---------------------------------------------------------------------------------
// Log-probabilities

/** One entry of OpenAI's `choices[].logprobs.content`. */
export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] | null }>;
}

/**
 * The simulated tokens: one per word, with the whitespace that follows it (and any that
 * leads the text). They join to exactly `text`, and a stream piece of n words is
 * exactly n consecutive tokens, so chunk logprobs line up with chunk content.
 */
function tokensOf(text: string): string[] {
  return text.match(/\s*\S+\s*/g) ?? [];
}

/**
 * A deterministic log-probability for each token. Competent answers are confident
 * (mean about -0.15, i.e. a geometric-mean token probability near 0.86) with an
 * occasional less certain word, as real models show at word-choice points. A hedge is
 * unsure throughout (mean about -1.3), a refusal nearly as much (-1.0), and a
 * truncation starts confident and loses its way, ending well below a competent answer.
 * The numbers are made up; what matters is that the two populations separate clearly
 * under every aggregation (mean, minimum, 10th percentile).
 */
function tokenLogprobs(tokens: readonly string[], quality: Answer['quality'], key: string): number[] {
  return tokens.map((token, i) => {
    const u = unit(`${i}\u0000${token}`, key + '\u0000logprob');
    const v = unit(`${i}\u0000${token}`, key + '\u0000logprob-spike');
    let lp: number;
    switch (quality) {
      case 'competent':
        lp = v < 0.08 ? -(0.3 + 0.5 * u) : -(0.02 + 0.2 * u * u);
        break;
      case 'hedge':
        lp = -(0.6 + 1.4 * u);
        break;
      case 'refusal':
        lp = -(0.5 + u);
        break;
      case 'truncation': {
        // Confidence decays along the answer: the model is out of its depth.
        const progress = tokens.length > 1 ? i / (tokens.length - 1) : 1;
        lp = -(0.4 + 1.4 * progress + 0.6 * u);
        break;
      }
    }
    return Math.round(lp * 1e4) / 1e4;
  });
}

/** Words a model might have written instead: the alternatives of `top_logprobs`. */
const ALTERNATIVES = ['the', 'a', 'it', 'and', 'to', 'of', 'is', 'this', 'that', 'in', 'for', 'we', 'you', 'can', 'will', 'be', 'on', 'with', 'as', 'an', 'so'];

/**
 * `top_logprobs` alternatives for one token: the token itself and n - 1 other words that
 * share what probability the token leaves (half, a quarter, …), most likely first, so
 * the probabilities never add up to more than 1.
 */
function topLogprobs(token: string, logprob: number, n: number, seed: number): TokenLogprob['top_logprobs'] {
  if (n <= 0) return [];
  const rest = 1 - Math.exp(logprob);
  const word = token.trim().toLowerCase();
  const others = ALTERNATIVES.filter((w) => w !== word);
  const top = [{ token, logprob, bytes: null }];
  for (let k = 1; k < n; k++) {
    const share = rest * 0.5 ** k;
    top.push({ token: others[(seed + k) % others.length] + ' ', logprob: share > 0 ? Math.round(Math.log(share) * 1e4) / 1e4 : -9999, bytes: null });
  }
  return top.sort((a, b) => b.logprob - a.logprob);
}

/** `choices[].logprobs.content` for these tokens; `top` is the request's top_logprobs (0..20). */
function logprobEntries(tokens: readonly string[], values: readonly number[], top: number, offset = 0): TokenLogprob[] {
  return tokens.map((token, i) => ({ token, logprob: values[i], bytes: null, top_logprobs: topLogprobs(token, values[i], top, offset + i) }));
}

// ---------------------------------------------------------------------------------
// Timing

/**
 * Waits `ms`, rejecting as soon as either signal aborts. The timer and the listeners
 * are removed on every path, so an aborted call leaves nothing that keeps the process alive.
 */
function sleep(ms: number, signal: AbortSignal, disposed: AbortSignal): Promise<void> {
  const stopped = abortReason(signal, disposed);
  if (stopped) return Promise.reject(stopped);
  if (ms <= 0) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      cleanup();
      reject(abortReason(signal, disposed));
    };
    const cleanup = (): void => {
      signal.removeEventListener('abort', onAbort);
      disposed.removeEventListener('abort', onAbort);
    };
    const timer = setTimeout(() => {
      cleanup();
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
    disposed.addEventListener('abort', onAbort, { once: true });
  });
}

function abortReason(signal: AbortSignal, disposed: AbortSignal): UpstreamError | undefined {
  if (signal.aborted) return new UpstreamError('aborted', 'simulated call aborted', { cause: signal.reason });
  if (disposed.aborted) return new UpstreamError('connection', 'simulator provider was disposed');
  return undefined;
}

// ---------------------------------------------------------------------------------
// The provider

function profileFor(options: Readonly<SimulatorOptions>, upstream: string): SimulatorProfile {
  const profiles = options.profiles ?? {};
  if (Object.hasOwn(profiles, upstream)) return profiles[upstream];
  if (options.default_profile) return options.default_profile;
  const known = Object.keys(profiles);
  throw new UpstreamError(
    'http',
    `simulator has no profile for upstream model "${upstream}" and no default_profile` + (known.length > 0 ? ` (profiles: ${known.join(', ')})` : ''),
    { status: 404 },
  );
}

/** Everything about one call that is fixed before any waiting starts. */
interface Plan {
  id: string;
  model: string;
  text: string;
  finish: FinishReason;
  usage: Usage;
  /** A call to the request's tools instead of text (content null), when the request asks for one. */
  toolCalls: ToolCall[] | null;
  /** Per-token logprobs, only when the request asked for them (`logprobs: true`), with `top_logprobs` alternatives each. */
  logprobs: { tokens: string[]; values: number[]; top: number } | null;
  /** Milliseconds per token and to first token, after time_scale and jitter. */
  firstTokenMs: number;
  msPerToken: number;
  fails: boolean;
}

function plan(options: Readonly<SimulatorOptions>, request: ChatRequest, upstreamFallback: string): Plan {
  const model = typeof request.model === 'string' && request.model !== '' ? request.model : upstreamFallback;
  const profile = profileFor(options, model);
  const messages = Array.isArray(request.messages) ? request.messages : [];
  // The whole conversation (system prompt included) and the model name select the
  // answer variant, so two models disagree in the way two real models would.
  const prompt = JSON.stringify(messages.map((m) => [m.role, messageText(m.content)]));
  const key = model + '\u0000' + prompt;

  const { answer, toolCalls } = answerInForm(request, messages, profile.capability, key);
  const tokens = request.logprobs === true && toolCalls === null ? tokensOf(answer.text) : null;
  const promptTokens = estimateMessagesTokens(messages);
  const completionTokens = estimateTextTokens(toolCalls ? JSON.stringify(toolCalls.map((c) => c.function)) : answer.text);
  const scale = (options.time_scale ?? 1) * (1 + (profile.jitter ?? 0) * (2 * unit(key, 'jitter') - 1));
  return {
    id: 'sim-' + fnv1a(key, 'id').toString(16).padStart(8, '0') + fnv1a(key, 'id2').toString(16).padStart(8, '0'),
    model,
    text: answer.text,
    finish: answer.finish,
    usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
    toolCalls,
    logprobs: tokens ? { tokens, values: tokenLogprobs(tokens, answer.quality, key), top: topLogprobsAsked(request) } : null,
    firstTokenMs: profile.first_token_ms * scale,
    msPerToken: (1000 / profile.tokens_per_second) * scale,
    fails: unit(key, 'failure') < (profile.failure_rate ?? 0),
  };
}

function topLogprobsAsked(request: ChatRequest): number {
  const n = request.top_logprobs;
  return typeof n === 'number' && Number.isInteger(n) ? Math.min(20, Math.max(0, n)) : 0;
}

/**
 * The answer in the form the request asks for: a call to its tools (see toolsToCall), a
 * JSON object (response_format; valid against its schema when it gives one), or prose
 * within the model's capability. Calls and JSON are always well-formed: a client that
 * parses them (LangChain's bindTools, withStructuredOutput) must get something it can
 * parse, and a prose answer is where a weak model shows.
 */
function answerInForm(
  request: ChatRequest,
  messages: readonly ChatMessage[],
  capability: number,
  key: string,
): { answer: Answer; toolCalls: ToolCall[] | null } {
  const text = lastUserMessage(messages);
  const hints = () => ({
    text,
    topic: topicOf(text),
    state: asksOrderStatus(text) ? ORDER_STATES[orderStateIndex(key)] : null,
    label: CLASSIFY_RE.test(text) ? classificationAnswer(text, key) : null,
  });
  const call = toolsToCall(request, messages.at(-1)?.role, text);
  if (call.tools.length > 0) {
    const toolCalls = call.tools.map((tool, i): ToolCall => ({
      id: `call_${fnv1a(key, `call-${i}`).toString(36)}${fnv1a(key, `call-id-${i}`).toString(36)}`,
      type: 'function',
      function: { name: tool.name, arguments: JSON.stringify(instanceOf(tool.parameters, hints()) ?? {}) },
    }));
    // OpenAI ends a call the client forced (tool_choice names the function) with "stop".
    return { answer: { text: '', finish: call.forced ? 'stop' : 'tool_calls', quality: 'competent' }, toolCalls };
  }
  const json = requestedJson(request);
  if (json) {
    const value = json.schema === undefined ? { answer: competentAnswer(text, key) } : instanceOf(json.schema, hints());
    return { answer: { text: JSON.stringify(value), finish: 'stop', quality: 'competent' }, toolCalls: null };
  }
  return { answer: applyTokenLimit(answerFor(messages, capability, key), request), toolCalls: null };
}

function simulatedFailure(p: Plan): UpstreamError {
  return new UpstreamError('http', `simulated upstream failure: ${p.model} returned 503 Service Unavailable`, { status: 503 });
}

const WORDS_PER_PIECE = 3;
const ARGUMENT_PIECE_CHARS = 16;

/** Stream pieces of a few words each; concatenated they are exactly `text`. */
function pieces(text: string, wordsPerPiece: number): string[] {
  const words = text.match(/\s*\S+\s*/g) ?? [];
  const out: string[] = [];
  for (let i = 0; i < words.length; i += wordsPerPiece) out.push(words.slice(i, i + wordsPerPiece).join(''));
  return out;
}

class SimulatorProvider implements Provider {
  readonly #options: Readonly<SimulatorOptions>;
  // Aborted by dispose so that in-flight calls stop waiting and fail too.
  readonly #life = new AbortController();

  constructor(options: Readonly<SimulatorOptions>) {
    this.#options = options;
  }

  #start(request: ChatRequest, upstream: string, signal: AbortSignal): Plan {
    const stopped = abortReason(signal, this.#life.signal);
    if (stopped) throw stopped;
    return plan(this.#options, request, upstream);
  }

  async complete(request: ChatRequest, call: CallOptions): Promise<ChatResult & { simulated: true }> {
    const p = this.#start(request, call.model.upstream, call.signal);
    // A real upstream makes you wait before it says 503, so the failure costs latency too.
    await sleep(p.firstTokenMs, call.signal, this.#life.signal);
    if (p.fails) throw simulatedFailure(p);
    await sleep(p.usage.completion_tokens * p.msPerToken, call.signal, this.#life.signal);
    return {
      id: p.id,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: p.model,
      choices: [
        {
          index: 0,
          message: p.toolCalls
            ? { role: 'assistant', content: null, tool_calls: p.toolCalls, refusal: null }
            : { role: 'assistant', content: p.text, refusal: null },
          finish_reason: p.finish,
          logprobs: p.logprobs ? { content: logprobEntries(p.logprobs.tokens, p.logprobs.values, p.logprobs.top), refusal: null } : null,
        },
      ],
      usage: p.usage,
      simulated: true,
    };
  }

  async *stream(request: ChatRequest, call: CallOptions): AsyncGenerator<ChatChunk & { simulated: true }> {
    const p = this.#start(request, call.model.upstream, call.signal);
    const created = Math.floor(Date.now() / 1000);
    const chunk = (choices: ChatChunk['choices'], usage?: Usage): ChatChunk & { simulated: true } => ({
      id: p.id,
      object: 'chat.completion.chunk',
      created,
      model: p.model,
      choices,
      ...(usage ? { usage } : {}),
      simulated: true,
    });

    await sleep(p.firstTokenMs, call.signal, this.#life.signal);
    if (p.fails) throw simulatedFailure(p);
    yield chunk([{ index: 0, delta: { role: 'assistant', content: p.toolCalls ? null : '' }, finish_reason: null }]);
    // A call streams as OpenAI's do: its id and name first, then its arguments in pieces.
    for (const [index, toolCall] of (p.toolCalls ?? []).entries()) {
      yield chunk([
        {
          index: 0,
          delta: { tool_calls: [{ index, id: toolCall.id, type: 'function', function: { name: toolCall.function.name, arguments: '' } }] },
          finish_reason: null,
        },
      ]);
      for (let at = 0; at < toolCall.function.arguments.length; at += ARGUMENT_PIECE_CHARS) {
        const piece = toolCall.function.arguments.slice(at, at + ARGUMENT_PIECE_CHARS);
        await sleep(estimateTextTokens(piece) * p.msPerToken, call.signal, this.#life.signal);
        yield chunk([{ index: 0, delta: { tool_calls: [{ index, function: { arguments: piece } }] }, finish_reason: null }]);
      }
    }
    let token = 0;
    for (const piece of pieces(p.text, WORDS_PER_PIECE)) {
      await sleep(estimateTextTokens(piece) * p.msPerToken, call.signal, this.#life.signal);
      // A piece of n words is the next n tokens (see tokensOf), as in OpenAI's streams
      // where each chunk carries the logprobs of the tokens it delivers.
      const logprobs = p.logprobs
        ? {
            logprobs: {
              content: logprobEntries(
                p.logprobs.tokens.slice(token, token + WORDS_PER_PIECE),
                p.logprobs.values.slice(token, token + WORDS_PER_PIECE),
                p.logprobs.top,
                token,
              ),
              refusal: null,
            },
          }
        : {};
      token += WORDS_PER_PIECE;
      yield chunk([{ index: 0, delta: { content: piece }, finish_reason: null, ...logprobs }]);
    }
    const stopped = abortReason(call.signal, this.#life.signal);
    if (stopped) throw stopped;
    yield chunk([{ index: 0, delta: {}, finish_reason: p.finish }]);
    yield chunk([], p.usage);
  }

  async embed(request: EmbeddingRequest, call: CallOptions): Promise<EmbeddingResult & { simulated: true }> {
    const stopped = abortReason(call.signal, this.#life.signal);
    if (stopped) throw stopped;
    const upstream = typeof request.model === 'string' && request.model !== '' ? request.model : call.model.upstream;
    const models = this.#options.embedding_models ?? {};
    if (!Object.hasOwn(models, upstream)) {
      const known = Object.keys(models);
      throw new UpstreamError(
        'http',
        `simulator has no embedding model "${upstream}"` + (known.length > 0 ? ` (embedding_models: ${known.join(', ')})` : ' (no embedding_models)'),
        { status: 404 },
      );
    }
    const profile = models[upstream];
    const result = simulatedEmbeddings(upstream, request.input, profile.dimensions, request.dimensions);
    await sleep((profile.latency_ms ?? 0) * (this.#options.time_scale ?? 1), call.signal, this.#life.signal);
    return { ...result, simulated: true };
  }

  async dispose(): Promise<void> {
    this.#life.abort();
  }
}

// ---------------------------------------------------------------------------------
// The module

const example: SimulatorOptions = {
  profiles: {
    'sim-small': { capability: 0.45, first_token_ms: 120, tokens_per_second: 150 },
    'sim-large': { capability: 0.9, first_token_ms: 400, tokens_per_second: 60 },
  },
  embedding_models: { 'sim-embed': { dimensions: 256 } },
  time_scale: 1,
};

function validate(options: Readonly<SimulatorOptions>, _ctx: ValidationContext): OptionIssue[] {
  const issues: OptionIssue[] = [];
  if (Object.keys(options.profiles ?? {}).length === 0 && !options.default_profile && Object.keys(options.embedding_models ?? {}).length === 0) {
    issues.push({ path: ['profiles'], message: 'no profiles, no default_profile and no embedding_models: every call to this provider would fail with 404' });
  }
  return issues;
}

export default {
  meta: {
    id: 'simulator',
    kind: 'provider',
    contract: 1,
    description:
      'Offline simulated models: deterministic answers whose quality depends on prompt difficulty versus model capability, with realistic latency, usage, failures, tool calls, structured output, embeddings and (when asked) token logprobs. No network, no API keys.',
    options: optionsSchema,
    example,
    capabilities: ['embeds'],
  },
  validate,
  async create(options, _ctx) {
    return new SimulatorProvider(options);
  },
} satisfies ProviderModule<SimulatorOptions>;
