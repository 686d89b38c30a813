// The simulator's embeddings: deterministic vectors from the text, so that an embeddings
// client (a retriever, a semantic cache) works offline. Texts that share words get
// vectors that point the same way, as a real model's would for related texts: each word
// (or token id) adds its own fixed pseudo-random direction, and the whole text a small
// one of its own, so no two different texts embed alike. Vectors have unit length; a
// shorter `dimensions` keeps the first values and renormalises, as OpenAI's
// text-embedding-3 models do.
import { embeddingInputs, estimateEmbeddingTokens, mulberry32, UpstreamError, type EmbeddingInput, type EmbeddingResult } from 'tiergate/plugin';
import { fnv1a } from './hash.ts';

/** Positions each word adds to: few enough that a 2048-text request stays cheap, enough that words overlap. */
const POSITIONS_PER_WORD = 16;
/** At most this many distinct words of one text count. */
const MAX_WORDS = 256;

function wordsOf(item: string | number[]): string[] {
  const all = typeof item === 'string' ? (item.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []) : item.map(String);
  return [...new Set(all)].slice(0, MAX_WORDS);
}

/** A unit vector of `dimensions` for one input; `model` salts it, so two models embed differently. */
function vectorOf(item: string | number[], model: string, dimensions: number): number[] {
  const vector = new Float64Array(dimensions);
  const text = typeof item === 'string' ? item : item.join(' ');
  // The text's own direction: small, dense, and unique to the exact text.
  const own = mulberry32(fnv1a(text, model + '\u0000text'));
  for (let i = 0; i < dimensions; i++) vector[i] = (own() * 2 - 1) * 0.05;
  for (const word of wordsOf(item)) {
    const draw = mulberry32(fnv1a(word, model));
    for (let k = 0; k < POSITIONS_PER_WORD; k++) vector[Math.floor(draw() * dimensions)] += draw() < 0.5 ? -1 : 1;
  }
  return unit(vector);
}

function unit(values: ArrayLike<number>): number[] {
  let norm = 0;
  for (let i = 0; i < values.length; i++) norm += values[i] * values[i];
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  return Array.from(values, (v) => Math.round(v * scale * 1e7) / 1e7);
}

/**
 * The simulated answer to an embeddings request for a model of `nativeDimensions`. A
 * request for more dimensions than the model has is refused with 400, as OpenAI does.
 */
export function simulatedEmbeddings(model: string, input: EmbeddingInput, nativeDimensions: number, dimensions: unknown): EmbeddingResult {
  const wanted = dimensions === undefined ? nativeDimensions : dimensions;
  if (typeof wanted !== 'number' || !Number.isInteger(wanted) || wanted < 1 || wanted > nativeDimensions)
    throw new UpstreamError('http', `simulated ${model}: dimensions must be an integer from 1 to ${nativeDimensions}`, { status: 400 });
  const inputs = embeddingInputs(input);
  let tokens = 0;
  const data = inputs.map((item, index) => {
    tokens += estimateEmbeddingTokens(item);
    const full = vectorOf(item, model, nativeDimensions);
    return { object: 'embedding' as const, index, embedding: wanted === nativeDimensions ? full : unit(full.slice(0, wanted)) };
  });
  return { object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } };
}
