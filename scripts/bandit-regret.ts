// Cumulative regret of the bandit router on the RouteLLM test split.
//
//   node --import tsx scripts/bandit-regret.ts [--data ../shared/data/routellm_gpt4_vs_mixtral.jsonl] [--out docs/bandit-regret.md]
//
// The decontaminated test rows are replayed in file order through the real `bandit`
// plugin (plugins/routers/bandit): route → the arm's recorded score → learn. Arms are the
// two tiers of examples/routellm/gateway.yaml (small = Mixtral, large = GPT-4); a call's
// cost is priced from that policy's model prices with tokens estimated from the prompt
// and the recorded answer (the rule `tiergate eval` uses). For each cost weight λ:
//   reward(arm, row) = score − λ·cost_usd·1000
//   regret vs best fixed = Σ reward(best single arm in hindsight) − Σ reward(chosen)
//   regret vs oracle     = Σ max over arms of reward(arm, row) − Σ reward(chosen)
// LinUCB's context is what a policy's JSONata features give: the source (metadata) and
// the prompt's size in thousands of tokens.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import winston from 'winston';
import bandit, { type BanditOptions } from '../plugins/routers/bandit/index.ts';
import type { PluginContext, PolicyView, RoutingContext } from '../src/plugin-contract/plugin-api.ts';
import { loadDataset, messagesOf, recordedUsage, scoreOf, type DatasetRow } from '../src/analysis/eval/dataset.ts';
import { estimateMessagesTokens } from '../src/plugin-contract/tokens.ts';
import { mulberry32 } from '../src/common/random.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    data: { type: 'string', default: path.resolve(REPO, '../shared/data/routellm_gpt4_vs_mixtral.jsonl') },
    out: { type: 'string', default: path.join(REPO, 'docs/bandit-regret.md') },
  },
});
const dataFile = values.data!;
if (!existsSync(dataFile)) {
  console.error(`skipped: ${dataFile} is absent (see ../shared/data/README.md)`);
  process.exit(0);
}

const policy = parseYaml(readFileSync(path.join(REPO, 'examples/routellm/gateway.yaml'), 'utf8')) as {
  models: Record<string, { upstream: string; price: { input_per_mtok: number; output_per_mtok: number } }>;
};
const ARMS = [
  { tier: 'small', model: 'mixtral' },
  { tier: 'large', model: 'gpt-4' },
].map((a) => ({ ...a, dataset: policy.models[a.model].upstream, price: policy.models[a.model].price }));

const dataset = loadDataset(dataFile);
const rows = dataset.rows.filter((r) => r.split === 'test' && r.meta?.routellm_contaminated !== true && ARMS.every((a) => scoreOf(r, a.dataset) !== null));

interface Prepared {
  features: Record<string, number>;
  score: number[];
  cost: number[];
}
const prepared: Prepared[] = rows.map((row: DatasetRow) => {
  const messages = messagesOf(row);
  return {
    features: { is_gsm8k: row.source === 'gsm8k' ? 1 : 0, is_mt_bench: row.source === 'mt-bench' ? 1 : 0, tokens_k: estimateMessagesTokens(messages) / 1000 },
    score: ARMS.map((a) => scoreOf(row, a.dataset)!),
    cost: ARMS.map((a) => {
      const { usage } = recordedUsage(messages, row.outcomes[a.dataset]);
      return (usage.prompt_tokens * a.price.input_per_mtok + usage.completion_tokens * a.price.output_per_mtok) / 1e6;
    }),
  };
});

const silent = winston.createLogger({ transports: [new winston.transports.Console({ silent: true })] });
const view: PolicyView = {
  models: new Map(),
  tiers: ARMS.map((a) => ({ name: a.tier, models: [a.model] })),
  featureNames: ['is_gsm8k', 'is_mt_bench', 'tokens_k'],
};
const ctx: PluginContext = {
  at: 'routes.qa.router',
  baseDir: REPO,
  policy: view,
  logger: silent,
  expression: () => {
    throw new Error('unused');
  },
  optionError: (_p, m) => new Error(m),
  callModel: () => Promise.reject(new Error('unused')),
};

const n = rows.length;
const CHECKPOINTS = [100, 500, 1000, 2000, 4000, n].filter((c, i, all) => c <= n && all.indexOf(c) === i);

interface Run {
  name: string;
  regretFixed: number[];
  regretOracle: number[];
  largeShare: number;
  quality: number;
  costPer1k: number;
}

type Chooser = { choose(p: Prepared, i: number): number; learn(p: Prepared, arm: number, reward: number): Promise<void>; dispose(): Promise<void> };

async function banditChooser(options: BanditOptions, lambda: number): Promise<Chooser> {
  const router = await bandit.create({ ...options, lambda }, ctx);
  return {
    choose(p) {
      const decision = router.route({ route: 'qa', features: p.features, request: {} as RoutingContext['request'], input: {} }) as { tier: string };
      return ARMS.findIndex((a) => a.tier === decision.tier);
    },
    async learn(p, arm) {
      await router.learn!({
        route: 'qa',
        request_id: '',
        arm: ARMS[arm].tier,
        features: p.features,
        quality: p.score[arm],
        cost_usd: p.cost[arm],
        latency_ms: 0,
        source: 'gate',
      });
    },
    dispose: () => router.dispose(),
  };
}

function fixedChooser(arm: number | 'random'): Chooser {
  const random = mulberry32(1);
  return { choose: () => (arm === 'random' ? (random() < 0.5 ? 0 : 1) : arm), learn: async () => {}, dispose: async () => {} };
}

async function replay(name: string, chooser: Chooser, lambda: number): Promise<Run> {
  const reward = (p: Prepared, arm: number) => p.score[arm] - lambda * p.cost[arm] * 1000;
  // The best fixed arm is judged in hindsight over the whole split, as regret defines it.
  const totals = ARMS.map((_, arm) => prepared.reduce((s, p) => s + reward(p, arm), 0));
  const bestFixed = totals.indexOf(Math.max(...totals));
  let got = 0;
  let fixed = 0;
  let oracle = 0;
  let large = 0;
  let quality = 0;
  let cost = 0;
  const regretFixed: number[] = [];
  const regretOracle: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = prepared[i];
    const arm = chooser.choose(p, i);
    const r = reward(p, arm);
    await chooser.learn(p, arm, r);
    got += r;
    fixed += reward(p, bestFixed);
    oracle += Math.max(...ARMS.map((_, a) => reward(p, a)));
    if (arm === 1) large++;
    quality += p.score[arm];
    cost += p.cost[arm];
    if (CHECKPOINTS.includes(i + 1)) {
      regretFixed.push(fixed - got);
      regretOracle.push(oracle - got);
    }
  }
  await chooser.dispose();
  return { name, regretFixed, regretOracle, largeShare: large / n, quality: quality / n, costPer1k: (cost / n) * 1000 };
}

const LAMBDAS = [0, 0.1, 0.2];
const sections: string[] = [];
for (const lambda of LAMBDAS) {
  const totals = ARMS.map((_, arm) => prepared.reduce((s, p) => s + p.score[arm] - lambda * p.cost[arm] * 1000, 0));
  const bestFixed = ARMS[totals.indexOf(Math.max(...totals))];
  const runs: Run[] = [
    await replay(
      'ε-greedy (ε 0.1, α 0.3 — the seed), seed 1',
      await banditChooser({ algorithm: 'epsilon_greedy', epsilon: 0.1, alpha: 0.3, seed: 1 }, lambda),
      lambda,
    ),
    await replay(
      'ε-greedy (ε 0.05, α 0.02), seed 1',
      await banditChooser({ algorithm: 'epsilon_greedy', epsilon: 0.05, alpha: 0.02, seed: 1 }, lambda),
      lambda,
    ),
    await replay(
      'LinUCB (source, tokens_k; c 0.5)',
      await banditChooser({ algorithm: 'linucb', context_features: ['is_gsm8k', 'is_mt_bench', 'tokens_k'], ucb_width: 0.5 }, lambda),
      lambda,
    ),
    await replay('always small (Mixtral)', fixedChooser(0), lambda),
    await replay('always large (GPT-4)', fixedChooser(1), lambda),
    await replay('random 50/50', fixedChooser('random'), lambda),
  ];
  const header = `| router | ${CHECKPOINTS.map((c) => `@${c}`).join(' | ')} | vs oracle @${n} | GPT-4 share | mean score | $ / 1k requests |`;
  const rule = `|---|${CHECKPOINTS.map(() => '---:').join('|')}|---:|---:|---:|---:|`;
  const lines = runs.map(
    (r) =>
      `| ${r.name} | ${r.regretFixed.map((v) => v.toFixed(1)).join(' | ')} | ${r.regretOracle[r.regretOracle.length - 1].toFixed(1)} | ${(r.largeShare * 100).toFixed(1)} % | ${r.quality.toFixed(4)} | ${r.costPer1k.toFixed(3)} |`,
  );
  sections.push(
    `### λ = ${lambda}${lambda === 0 ? ' (quality only)' : ` (reward = score − ${lambda}·cost_usd·1000)`}\n\nBest fixed arm in hindsight: **${bestFixed.tier} (${bestFixed.model})**. Cumulative regret against it after the first N rows (negative = better than the best fixed arm):\n\n${header}\n${rule}\n${lines.join('\n')}`,
  );
}

const meanCost = ARMS.map((_, a) => (prepared.reduce((s, p) => s + p.cost[a], 0) / n) * 1000);
const meanScore = ARMS.map((_, a) => prepared.reduce((s, p) => s + p.score[a], 0) / n);
const report = `# Bandit regret on the RouteLLM test split

Produced by \`node --import tsx scripts/bandit-regret.ts\`; do not edit by hand.

- Data: \`${path.relative(REPO, dataFile)}\`, split \`test\`, RouteLLM-contaminated rows excluded, in file order: **${n} rows** (mmlu, gsm8k, mt-bench).
- Arms: the tiers of \`examples/routellm/gateway.yaml\` — small = Mixtral-8x7B (mean score ${meanScore[0].toFixed(4)}, $${meanCost[0].toFixed(3)} / 1k requests), large = GPT-4-1106 (mean score ${meanScore[1].toFixed(4)}, $${meanCost[1].toFixed(3)} / 1k requests). Costs: policy prices × tokens estimated from the prompt and the recorded answer.
- Each row: the \`bandit\` plugin routes, the chosen arm's recorded score is the quality, the plugin learns reward = score − λ·cost_usd·1000 (latency weight μ = 0). Only the chosen arm's outcome is revealed to the bandit (bandit feedback); the regrets use both arms' recorded scores.
- Regret vs best fixed = Σ reward(best single arm in hindsight) − Σ reward(chosen). Regret vs oracle = Σ max(reward of the two arms on the row) − Σ reward(chosen).
- LinUCB's context: \`is_gsm8k\`, \`is_mt_bench\` (from \`metadata.source\`) and \`tokens_k\` (estimated prompt tokens / 1000) — what a policy would declare as JSONata features. ε-greedy ignores context.

${sections.join('\n\n')}

Reading (the run is deterministic; these remarks describe the numbers above):
- λ = 0: GPT-4 is better on average by ~13 points and LinUCB finds it at once (regret 0 against the best fixed arm). ε-greedy with the seed's α = 0.3 keeps trying Mixtral: an arm's EWMA is dominated by its last few 0/1 outcomes, so a run of GPT-4 misses drops it below Mixtral for a while; its regret grows linearly (~0.03 per row).
- λ = 0.1: the two arms are nearly tied over the whole split (GPT-4 ahead on the first 4,000 rows, Mixtral by the end). The file is ordered by source and MMLU subject, so which arm is better changes along the file; ε-greedy's short memory (α = 0.3) follows those shifts and ends 141 reward units *ahead* of the best fixed arm, at half GPT-4's traffic. LinUCB, whose model is stationary and whose context (source, prompt size) does not see the subject, settles on Mixtral: regret ≈ 0 against the best fixed arm.
- λ = 0.2: Mixtral is the best fixed arm; every learner pays for exploring GPT-4 (regret 12–78), far less than random (544) or always-GPT-4 (1,077).
- Against the per-row oracle every router has large regret (≥ 430): 0/1 scores per prompt are unpredictable from these features; only a prompt-level router (the classifier) can close that gap.
`;
writeFileSync(values.out!, report);
console.log(report);
