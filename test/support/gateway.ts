// Starts a real tiergate gateway (real HTTP, real plugins) on a policy written to a
// temporary folder, for tests that talk to it with real clients.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/observe/logger.ts';
import { startGateway, type Gateway } from '../../src/faces/server.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';
import type winston from 'winston';

export interface TestGateway {
  gateway: Gateway;
  /** http://127.0.0.1:PORT */
  url: string;
  /** http://127.0.0.1:PORT/v1 — give this to the openai SDK as baseURL. */
  baseURL: string;
  dir: string;
  policyFile: string;
  decisionLogFile: string;
  /** Replaces gateway.yaml (the watcher, if on, picks it up). */
  writePolicy(yaml: string): void;
  /** Decision lines written so far (complete lines only: one being written is skipped). */
  decisions(): DecisionRecord[];
  /**
   * Polls the decision log until at least `n` lines are there (the log is written
   * asynchronously and only flushed for sure on close). Rejects after `timeoutMs`.
   */
  waitForDecisions(n: number, timeoutMs?: number): Promise<DecisionRecord[]>;
  /**
   * The decision line of one request (the x-tiergate-decision-id a response carries),
   * polled for until `timeoutMs` (3000 by default). Fails when the id is missing.
   */
  waitForDecision(requestId: string | null | undefined, timeoutMs?: number): Promise<DecisionRecord>;
  /** The decision log file's raw text ('' when it does not exist yet). */
  decisionLogText(): string;
  close(): Promise<void>;
}

/**
 * A minimal simulator-backed policy. `time_scale: 0` makes the simulator answer at once.
 * Pass `extra` to append top-level sections (YAML text).
 */
/**
 * The two-tier simulated ladder most test policies stand on: providers, models and tiers
 * (small-model < large-model), as YAML sections.
 */
export function simulatorLadder(options: { timeScale?: number; smallCapability?: number } = {}): string {
  return `providers:
  sim:
    plugin: simulator
    time_scale: ${options.timeScale ?? 0}
    profiles:
      sim-small: { capability: ${options.smallCapability ?? 0.5}, first_token_ms: 100, tokens_per_second: 200 }
      sim-large: { capability: 0.95, first_token_ms: 300, tokens_per_second: 80 }
models:
  small-model: { provider: sim, upstream: sim-small, price: { input_per_mtok: 0.15, output_per_mtok: 0.6 } }
  large-model: { provider: sim, upstream: sim-large, price: { input_per_mtok: 2.5, output_per_mtok: 10 } }
tiers:
  - { name: small, models: [small-model] }
  - { name: large, models: [large-model] }
`;
}

export function simulatorPolicy(options: { timeScale?: number; routes?: string; features?: string; extra?: string } = {}): string {
  return `version: 1
${simulatorLadder({ timeScale: options.timeScale })}features:
${options.features ?? '  task_type: metadata.task_type'}
routes:
${
  options.routes ??
  `  support:
    router:
      plugin: rules
      rules:
        - { when: "task_type = 'classification'", tier: small, confidence: 0.9, reason: easy }
    default: large`
}
analytics:
  decision_log: { file: decisions.jsonl }
${options.extra ?? ''}`;
}

/**
 * A gateway on the shipped gateway.yaml, as `npm start` serves it, with the simulator
 * answering at once and the decision log moved to where decisions() and
 * waitForDecision() read it.
 */
export function startShippedGateway(): Promise<TestGateway> {
  const shipped = readFileSync(path.resolve(import.meta.dirname, '../../gateway.yaml'), 'utf8');
  assert.ok(shipped.includes('file: logs/decisions.jsonl'), 'the shipped decision log is where this helper moves it from');
  return startTestGateway(shipped.replace('file: logs/decisions.jsonl', 'file: decisions.jsonl'), { env: { SIMULATOR_TIME_SCALE: '0' } });
}

/**
 * A gated simulator policy for tests that watch decisions (metrics, dashboard): a weak
 * small model that the heuristics gate often escalates, a strong large one, and a model
 * that always fails. `extraRoutes` (YAML, indented as routes' entries) adds routes.
 */
export function observedPolicy(extraRoutes = ''): string {
  return `version: 1
providers:
  sim:
    plugin: simulator
    time_scale: 0
    profiles:
      sim-small: { capability: 0.3, first_token_ms: 100, tokens_per_second: 200 }
      sim-large: { capability: 0.99, first_token_ms: 300, tokens_per_second: 80 }
      sim-broken: { capability: 0.9, first_token_ms: 10, tokens_per_second: 100, failure_rate: 1 }
models:
  small-model: { provider: sim, upstream: sim-small, price: { input_per_mtok: 0.15, output_per_mtok: 0.6 } }
  large-model: { provider: sim, upstream: sim-large, price: { input_per_mtok: 2.5, output_per_mtok: 10 } }
  broken-model: { provider: sim, upstream: sim-broken, price: { input_per_mtok: 1, output_per_mtok: 1 } }
tiers:
  - { name: small, models: [small-model] }
  - { name: large, models: [large-model] }
features:
  task_type: metadata.task_type
resilience: { retries: 0 }
routes:
  support:
    router:
      plugin: rules
      rules:
        - { when: "task_type = 'classification'", tier: small, confidence: 0.9, reason: easy }
    default: large
    gate: { evaluators: [ { plugin: heuristics } ], threshold: 0.5, max_escalations: 1 }
${extraRoutes}analytics:
  decision_log: { file: decisions.jsonl }
`;
}

export async function startTestGateway(
  policyYaml: string,
  options: { watch?: boolean; debounceMs?: number; env?: NodeJS.ProcessEnv; files?: Record<string, string>; logger?: winston.Logger } = {},
): Promise<TestGateway> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-test-'));
  const policyFile = path.join(dir, 'gateway.yaml');
  writeFileSync(policyFile, policyYaml);
  for (const [name, content] of Object.entries(options.files ?? {})) {
    const file = path.join(dir, name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, content);
  }
  const logger = options.logger ?? createLogger({ level: (process.env.TIERGATE_TEST_LOG_LEVEL as 'debug' | undefined) ?? 'silent' });
  const gateway = await startGateway({
    configFile: policyFile,
    port: 0,
    host: '127.0.0.1',
    logger,
    watch: options.watch ?? false,
    debounceMs: options.debounceMs ?? 50,
    env: options.env,
  });
  const decisionLogFile = path.join(dir, 'decisions.jsonl');
  return {
    gateway,
    url: gateway.url,
    baseURL: `${gateway.url}/v1`,
    dir,
    policyFile,
    decisionLogFile,
    writePolicy(yaml: string) {
      writeFileSync(policyFile, yaml);
    },
    decisions() {
      return readDecisions(decisionLogFile);
    },
    async waitForDecisions(n: number, timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const lines = readDecisions(decisionLogFile);
        if (lines.length >= n) return lines;
        if (Date.now() > deadline) throw new Error(`expected at least ${n} decision line(s) within ${timeoutMs} ms, found ${lines.length}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    async waitForDecision(requestId: string | null | undefined, timeoutMs = 3000) {
      assert.ok(requestId, 'the response carries x-tiergate-decision-id');
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const line = readDecisions(decisionLogFile).find((d) => d.request_id === requestId);
        if (line) return line;
        if (Date.now() > deadline) assert.fail(`no decision line for ${requestId} within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
    decisionLogText() {
      try {
        return readFileSync(decisionLogFile, 'utf8');
      } catch {
        return '';
      }
    },
    async close() {
      await gateway.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function readDecisions(file: string): DecisionRecord[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  // Every line but the last is complete; the last is complete only when text ends with \n.
  const lines = text.split('\n');
  lines.pop();
  return lines.filter(Boolean).map((line) => JSON.parse(line) as DecisionRecord);
}
