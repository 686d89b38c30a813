// Decision time of the classifier router: feature extraction + prediction + tier choice
// on typical prompts (RouteLLM test prompts when ../shared/data is present, else a fixed
// set), measured per call after a warm-up. A script with a report, not a timed test.
//
//   node --import tsx scripts/bench-classifier.ts [model.json]
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { chooseTier, compileClassifier, type ClassifierArtifact } from '../src/analysis/learn/artifact.ts';
import type { ChatMessage } from '../src/plugin-contract/plugin-api.ts';

const root = path.resolve(import.meta.dirname, '..');
const modelFile = process.argv[2] ?? path.join(root, 'examples/learned/routellm.json');
const data = path.resolve(root, '../shared/data/routellm_gpt4_vs_mixtral.jsonl');
const artifact = JSON.parse(readFileSync(modelFile, 'utf8')) as ClassifierArtifact;
const model = compileClassifier(artifact);

let prompts: ChatMessage[][] = [];
if (existsSync(data)) {
  const lines = readFileSync(data, 'utf8').split('\n').filter(Boolean);
  for (let i = 0; i < lines.length && prompts.length < 2000; i += 7) {
    const row = JSON.parse(lines[i]) as { split: string; prompt: unknown };
    if (row.split === 'test' && typeof row.prompt === 'string') prompts.push([{ role: 'user', content: row.prompt }]);
  }
} else {
  prompts = [
    'What is the capital of France?',
    'Explain step by step why the sky is blue.',
    'Write a Python function that reverses a list.\n```python\ndef rev(xs):\n    pass\n```',
  ].map((c) => [{ role: 'user', content: c }]);
}
const threshold = artifact.recommended_threshold;
let sink = 0;
for (let r = 0; r < 3; r++) for (const p of prompts) sink += chooseTier(model.probabilities(p), threshold);
const times: number[] = [];
for (let r = 0; r < 5; r++) {
  for (const p of prompts) {
    const t0 = process.hrtime.bigint();
    sink += chooseTier(model.probabilities(p), threshold);
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
}
times.sort((a, b) => a - b);
const q = (x: number) => times[Math.min(times.length - 1, Math.floor(x * times.length))];
const chars = prompts.map((p) => String(p[0].content).length).sort((a, b) => a - b);
console.log(
  `classifier decision time over ${times.length} calls (${prompts.length} prompts, median ${chars[chars.length >> 1]} chars, model ${path.relative(root, modelFile)}):`,
);
console.log(
  `  p50 ${q(0.5).toFixed(1)} µs   p90 ${q(0.9).toFixed(1)} µs   p99 ${q(0.99).toFixed(1)} µs   max ${times[times.length - 1].toFixed(1)} µs  (checksum ${sink})`,
);
