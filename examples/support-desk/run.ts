// The seed's support-desk scenario, end to end: a day of tickets (most simple, some
// that need the strong model) sent with the official openai SDK to a real tiergate
// serving examples/support-desk/gateway.yaml through the offline simulator. Prints the
// seed's four metrics against their targets (DESIGN §5: routing accuracy, cost savings,
// quality retention, escalation rate) and the share served by the small model. The gate
// is deployable (heuristics and order_status read only the prompt and the answer); the
// scenario itself knows which tickets the small model can answer well, because it wrote
// them that way, and only the two label-based metrics (routing accuracy, quality
// retention) read that knowledge, after the fact.
//
//   node --import tsx examples/support-desk/run.ts [--tickets 400] [--seed 7] [--time-scale 0]
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { createLogger } from '../../src/observe/logger.ts';
import { startGateway } from '../../src/faces/server.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';
import { mulberry32 } from '../../src/common/random.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

export interface Ticket {
  text: string;
  category: string;
  customer_tier: 'standard' | 'enterprise';
  /** Written so that the small model cannot answer it well (the gate should catch it). */
  hard: boolean;
}

export interface ScenarioResult {
  tickets: number;
  /** Share of tickets whose first routed tier is their oracle tier (small for a routine ticket, large otherwise). */
  routingAccuracy: number;
  /** Mean quality served / mean quality of always-best: an answer is good when the small model could answer its ticket or the large one did. */
  qualityRetention: number;
  servedBySmall: number;
  escalationRate: number;
  costReduction: number;
  costUsd: number;
  bestCostUsd: number;
  gatePassRate: number;
  decisions: DecisionRecord[];
  /** The ticket each decision line answered, by request id. */
  ticketsByDecision: ReadonlyMap<string, Ticket>;
}

const ROUTINE: Array<[string, (n: number) => string]> = [
  ['order_status', (n) => `Where is my package? Order ${n}`],
  ['order_status', (n) => `Has my order ${n} shipped yet?`],
  ['order_status', (n) => `Can you tell me the status of order ${n}?`],
  ['shipping', (n) => `Can I change the delivery address for order ${n}?`],
  ['account', () => 'How do I reset my password?'],
  ['account', () => 'How can I update the email address on my account?'],
  ['faq', () => 'What are your opening hours on weekends?'],
  ['faq', () => 'Do you ship to Canada?'],
  ['billing', () => 'Where can I download my last invoice?'],
];

// Filed under a routine category, but really a multi-part dispute: the rules send it to
// the small tier, the small model's answer fails the gate, and it climbs.
const HARD_ROUTINE: Array<[string, (n: number) => string]> = [
  [
    'order_status',
    (n) =>
      `My order ${n} came damaged, the replacement parcel got lost, and the courier claims I signed for it. Explain step by step what my legal options are, compare them, and calculate the refund I am owed for both parcels including shipping fees and the liability of each party.`,
  ],
  [
    'billing',
    (n) =>
      `I was charged three times for order ${n} after a failed payment, then a partial refund was reversed. Analyze each transaction step by step, derive what I actually owe, and justify whether the late fee is lawful under my contract.`,
  ],
];

const COMPLEX: Array<[string, (n: number) => string]> = [
  [
    'legal',
    (n) => `Our contract for order ${n} says delivery within 5 days. It took 19. What liability do you accept, and can we claim damages for the lost sales?`,
  ],
  ['complaint', () => 'This is the third time my delivery was late and nobody answers my emails. I want a full explanation and compensation.'],
  ['technical', () => 'Your API returns 500 errors when we create shipments with more than 50 parcels. Explain the cause and a workaround.'],
];

/** A day of tickets: about 78 % routine, 7 % routine-looking but hard, 15 % complex. */
/** The ticket categories the small model answers well, unless the ticket is one of the hard ones. */
export const ROUTINE_CATEGORIES: ReadonlySet<string> = new Set(ROUTINE.map(([category]) => category));

export function tickets(count: number, seed = 7): Ticket[] {
  const next = mulberry32(seed);
  const pick = <T>(list: T[]) => list[Math.floor(next() * list.length)];
  const out: Ticket[] = [];
  for (let i = 0; i < count; i++) {
    const order = 10000 + Math.floor(next() * 90000);
    const roll = next();
    const [category, text] = roll < 0.78 ? pick(ROUTINE) : roll < 0.85 ? pick(HARD_ROUTINE) : pick(COMPLEX);
    out.push({ text: text(order), category, customer_tier: next() < 0.1 ? 'enterprise' : 'standard', hard: roll >= 0.78 && roll < 0.85 });
  }
  return out;
}

async function inBatches<T>(items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await work(items[next++]);
    }),
  );
}

/** Serves the example policy from a temporary copy, sends the tickets, reads the decision log. */
export async function runScenario(options: { tickets?: number; seed?: number; timeScale?: number } = {}): Promise<ScenarioResult> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-support-desk-'));
  const policy = path.join(dir, 'gateway.yaml');
  // Which ticket each decision line answered, by the decision id the gateway returned.
  const ticketOf = new Map<string, Ticket>();
  copyFileSync(path.join(here, 'gateway.yaml'), policy);
  const gateway = await startGateway({
    configFile: policy,
    port: 0,
    host: '127.0.0.1',
    watch: false,
    logger: createLogger({ level: 'error' }),
    env: { ...process.env, SIMULATOR_TIME_SCALE: String(options.timeScale ?? 0) },
  });
  try {
    const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'support-desk', maxRetries: 0 });
    const day = tickets(options.tickets ?? 400, options.seed ?? 7);
    await inBatches(day, 8, async (ticket) => {
      const { response } = await client.chat.completions
        .create({
          model: 'support',
          messages: [
            { role: 'system', content: 'You are the support assistant of an online shop. Answer the customer briefly.' },
            { role: 'user', content: ticket.text },
          ],
          // What the ticketing system knows; the routing rules read it.
          metadata: { category: ticket.category, customer_tier: ticket.customer_tier },
        } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming)
        .withResponse();
      ticketOf.set(response.headers.get('x-tiergate-decision-id') ?? '', ticket);
    });
  } finally {
    await gateway.close();
  }
  const decisions = readFileSync(path.join(dir, 'logs', 'decisions.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as DecisionRecord);
  rmSync(dir, { recursive: true, force: true });
  const ok = decisions.filter((d) => d.status === 'ok');
  const costUsd = ok.reduce((sum, d) => sum + (d.cost_usd ?? 0), 0);
  const bestCostUsd = ok.reduce((sum, d) => sum + (d.best_cost_usd ?? 0), 0);
  // The oracle tier (DESIGN §5): the cheapest tier whose answer is good enough. By the
  // scenario's construction the small model answers routine tickets well and neither the
  // hard routine-looking ones nor the complex ones.
  const smallSuffices = (d: DecisionRecord) => {
    const ticket = ticketOf.get(d.request_id);
    if (!ticket) throw new Error(`decision ${d.request_id} answered no ticket this scenario sent`);
    return !ticket.hard && ROUTINE.some(([category]) => category === ticket.category);
  };
  const oracleTier = (d: DecisionRecord) => (smallSuffices(d) ? 'small' : 'large');
  const goodAnswer = (d: DecisionRecord) => d.tier === 'large' || smallSuffices(d);
  return {
    tickets: decisions.length,
    routingAccuracy: ok.filter((d) => d.routed_tier === oracleTier(d)).length / ok.length,
    qualityRetention: ok.filter(goodAnswer).length / ok.length,
    servedBySmall: ok.filter((d) => d.tier === 'small').length / ok.length,
    escalationRate: ok.filter((d) => d.was_escalated).length / ok.length,
    costReduction: 1 - costUsd / bestCostUsd,
    costUsd,
    bestCostUsd,
    gatePassRate: ok.filter((d) => d.gate === 'passed').length / ok.length,
    decisions,
    ticketsByDecision: ticketOf,
  };
}

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const result = await runScenario({ tickets: option('tickets', 400), seed: option('seed', 7), timeScale: option('time-scale', 0) });
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`.padStart(8);
  const mark = (met: boolean) => (met ? 'met' : 'missed');
  process.stdout.write(
    [
      `Support desk: ${result.tickets} tickets through route "support" (rules router + quality gate, simulated models)`,
      '',
      "                                        measured   target   the seed's team",
      `routing accuracy (first tier = oracle)   ${pct(result.routingAccuracy)}   > 90 %   ${mark(result.routingAccuracy > 0.9)}`,
      `cost savings vs always gpt-4o            ${pct(result.costReduction)}   > 50 %   ${mark(result.costReduction > 0.5)}   68 %`,
      `quality retention vs always gpt-4o       ${pct(result.qualityRetention)}   > 98 %   ${mark(result.qualityRetention > 0.98)}`,
      `escalation rate (gate caught, went up)   ${pct(result.escalationRate)}   < 25 %   ${mark(result.escalationRate < 0.25)}   25 % (every ticket tried mini first)`,
      `served by the small model (gpt-4o-mini)  ${pct(result.servedBySmall)}                     75 %`,
      `answers that passed the gate             ${pct(result.gatePassRate)}`,
      '',
      'gates: heuristics and order_status, on the prompt and the answer only (deployable; no answer key).',
      "routing accuracy and quality retention read the scenario's own labels (which tickets the small model can answer), after the fact.",
      '',
      `cost $${result.costUsd.toFixed(4)} against $${result.bestCostUsd.toFixed(4)} for always gpt-4o (same tokens)`,
      '',
    ].join('\n'),
  );
}
