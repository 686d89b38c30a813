// The JSONata guard. Routing expressions are written by people and JSONata is
// Turing-complete: an endless loop, a runaway recursion or a huge range in a rule or a
// feature would otherwise hold the event loop (every request, not just its own) for as
// long as it runs. gateway.yaml `expressions` bounds each evaluation in time, depth and
// sequence length; an expression that breaks a limit is stopped, and its route's
// default applies with a located reason, a decision-line code, a metric and a warning.
//
// Over real HTTP with the official SDK. The runaway expressions here are finite (they
// end after a few seconds unguarded), so a broken guard fails these tests on their time
// bounds instead of hanging the test run.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import winston from 'winston';
import { simulatorLadder, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { buildRuntime } from '../../src/policy/compile.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { requestView, routeRequest, type ChatBody } from '../../src/pipeline/route.ts';

// Each of these runs for seconds without a guard (measured: 2 to 4 s on a laptop).
const ENDLESS_LOOP = '($f := function($n){ $n > 300000 ? $n : $f($n + 1) }; $f(0)) > 0'; // tail call: only time stops it
const DEEP_RECURSION = '($f := function($n){ $n = 0 ? 0 : 1 + $f($n - 1) }; $f(100000)) > 0';
const HUGE_RANGE = '$count([1..5000000]) > 0';
const BUSY_MAP = '$count($map([1..500000], function($x){ $x * 2 })) > 0';

const TIMEOUT_MS = 60;
const MAX_DEPTH = 200;

function policy(timeoutMs = TIMEOUT_MS): string {
  return `version: 1
expressions: { timeout_ms: ${timeoutMs}, max_depth: ${MAX_DEPTH} }
${simulatorLadder({ smallCapability: 0.9 })}features:
  task_type: metadata.task_type
  spin: "metadata.spin = true ? ${ENDLESS_LOOP.replace(' > 0', '')} : 0"
routes:
  ok:
    router: { plugin: rules, rules: [ { when: "task_type = 'classification'", tier: small } ] }
    default: large
  loop:
    router:
      plugin: rules
      rules:
        - { when: "task_type = 'never'", tier: small }
        - { when: "${ENDLESS_LOOP}", tier: small }
    default: large
  deep:
    router: { plugin: rules, rules: [ { when: "${DEEP_RECURSION}", tier: small } ] }
    default: large
  huge:
    router: { plugin: rules, rules: [ { when: "${HUGE_RANGE}", tier: small } ] }
    default: large
  busy:
    router: { plugin: rules, rules: [ { when: "${BUSY_MAP}", tier: small } ] }
    default: large
  gated:
    router: { plugin: rules, rules: [ { when: "true", tier: small } ] }
    default: large
    gate:
      evaluators:
        - { plugin: heuristics, name: runaway, when: "${BUSY_MAP}" }
      max_escalations: 0
analytics:
  decision_log: { file: decisions.jsonl }
`;
}

/** Line and column (1-based) where `text` first starts in `yaml` after `after`: where a located error must point. */
function positionOf(yaml: string, text: string, after = ''): { line: number; column: number } {
  const from = yaml.indexOf(after);
  assert.ok(from >= 0, `${after} is in the policy`);
  const at = yaml.indexOf(text, from);
  assert.ok(at >= 0, `${text} is in the policy`);
  const before = yaml.slice(0, at).split('\n');
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('JSONata limits: a runaway expression is stopped, never a hung gateway', () => {
  let tg: TestGateway;
  let client: OpenAI;
  const warnings: Array<Record<string, unknown>> = [];
  const yaml = policy();

  before(async () => {
    // The gateway's own warnings, captured to check that every stopped expression is logged.
    const sink = new Writable({
      objectMode: true,
      write(entry: Record<string, unknown>, _encoding, done) {
        warnings.push(entry);
        done();
      },
    });
    const logger = winston.createLogger({ level: 'warn', transports: [new winston.transports.Stream({ stream: sink })] });
    tg = await startTestGateway(yaml, { logger });
    client = new OpenAI({ baseURL: tg.baseURL, apiKey: 'x', maxRetries: 0, timeout: 20_000 });
  });

  after(async () => {
    await tg?.close();
  });

  async function ask(model: string, metadata: Record<string, unknown> = {}): Promise<{ tier: string | null; id: string; ms: number; content: string }> {
    const started = performance.now();
    const { data, response } = await client.chat.completions
      .create({ model, messages: [{ role: 'user', content: 'Is this review positive? "Great product"' }], metadata } as never)
      .withResponse();
    const ms = performance.now() - started;
    return {
      tier: response.headers.get('x-tiergate-tier'),
      id: response.headers.get('x-tiergate-decision-id') ?? '',
      ms,
      content: (data as OpenAI.ChatCompletion).choices[0].message.content ?? '',
    };
  }

  /** The routing_reason a stopped expression at `where` (rule text in the policy) must produce. */
  function stoppedReason(route: string, rule: number, expression: string, limit: RegExp | string): RegExp {
    const { line, column } = positionOf(yaml, `"${expression}"`, `\n  ${route}:\n`);
    const where = `${escapeRegExp(tg.policyFile)}:${line}:${column} routes\\.${route}\\.router\\.rules\\[${rule}\\]\\.when`;
    const why = typeof limit === 'string' ? escapeRegExp(limit) : limit.source;
    return new RegExp(`^routing error \\(${where}: expression stopped: ${why} \\[TG_ERR_EXPRESSION_LIMIT\\]\\); route default large$`);
  }

  async function metricValue(name: string, labels: string): Promise<number> {
    const text = await (await fetch(`${tg.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
    return line ? Number(line.split(' ').pop()) : 0;
  }

  test('an endless loop in a rule is stopped by the time limit: the route default, a located reason, a code, a metric, a warning', async () => {
    const before = await metricValue('tiergate_routing_errors_total', 'route="loop",code="TG_ERR_EXPRESSION_LIMIT"');
    const answer = await ask('loop');
    assert.equal(answer.tier, 'large', 'the route default applied');
    assert.ok(answer.content.length > 0, 'the client got a full answer');
    assert.ok(answer.ms < 2000, `stopped near ${TIMEOUT_MS} ms, not after the seconds the loop needs (${answer.ms.toFixed(0)} ms)`);
    const line = await tg.waitForDecision(answer.id);
    assert.equal(line.status, 'ok');
    assert.equal(line.routing_error, 'TG_ERR_EXPRESSION_LIMIT');
    assert.equal(line.confidence, 0);
    assert.match(
      line.routing_reason,
      stoppedReason('loop', 1, ENDLESS_LOOP, `ran longer than ${TIMEOUT_MS} ms (expressions.timeout_ms); check for an endless loop`),
    );
    assert.equal(await metricValue('tiergate_routing_errors_total', 'route="loop",code="TG_ERR_EXPRESSION_LIMIT"'), before + 1);
    const warning = warnings.find((w) => w.request_id === answer.id);
    assert.ok(warning, 'the stopped expression is logged as a warning');
    assert.equal(warning.level, 'warn');
    assert.equal(warning.reason, line.routing_reason);
  });

  test('a huge $map is stopped by the time limit', async () => {
    const answer = await ask('busy');
    assert.equal(answer.tier, 'large');
    assert.ok(answer.ms < 2000, `${answer.ms.toFixed(0)} ms`);
    const line = await tg.waitForDecision(answer.id);
    assert.match(
      line.routing_reason,
      stoppedReason('busy', 0, BUSY_MAP, `ran longer than ${TIMEOUT_MS} ms (expressions.timeout_ms); check for an endless loop`),
    );
  });

  test('runaway recursion is stopped by the depth limit', async () => {
    const answer = await ask('deep');
    assert.equal(answer.tier, 'large');
    assert.ok(answer.ms < 2000, `${answer.ms.toFixed(0)} ms`);
    const line = await tg.waitForDecision(answer.id);
    assert.equal(line.routing_error, 'TG_ERR_EXPRESSION_LIMIT');
    assert.match(
      line.routing_reason,
      stoppedReason('deep', 0, DEEP_RECURSION, `nested deeper than ${MAX_DEPTH} steps (expressions.max_depth); check for endless recursion`),
    );
  });

  test('a huge range is stopped by the sequence limit before it is built', async () => {
    const answer = await ask('huge');
    assert.equal(answer.tier, 'large');
    assert.ok(answer.ms < 1000, `${answer.ms.toFixed(0)} ms`);
    const line = await tg.waitForDecision(answer.id);
    assert.match(line.routing_reason, stoppedReason('huge', 0, HUGE_RANGE, 'built a sequence longer than 1000000 items (expressions.max_sequence)'));
  });

  test('a runaway feature stops routing for the requests that trigger it, on every route; the others route normally', async () => {
    const spinning = await ask('ok', { task_type: 'classification', spin: true });
    assert.equal(spinning.tier, 'large', 'the feature failed, so the route default applied');
    assert.ok(spinning.ms < 2000, `${spinning.ms.toFixed(0)} ms`);
    const line = await tg.waitForDecision(spinning.id);
    const { line: row, column } = positionOf(yaml, `"metadata.spin = true ?`);
    assert.ok(
      line.routing_reason.startsWith(`routing error (${tg.policyFile}:${row}:${column} features.spin: expression stopped: ran longer than ${TIMEOUT_MS} ms`),
      line.routing_reason,
    );
    const calm = await ask('ok', { task_type: 'classification' });
    assert.equal(calm.tier, 'small', 'without the trigger the rule decides');
    assert.equal((await tg.waitForDecision(calm.id)).routing_error, undefined);
  });

  test('while runaway expressions are being stopped, other requests keep being answered', async () => {
    const runaways = Array.from({ length: 4 }, () => ask('busy'));
    const started = performance.now();
    const [health, normal] = await Promise.all([fetch(`${tg.url}/healthz`).then((r) => r.status), ask('ok', { task_type: 'classification' })]);
    const waited = performance.now() - started;
    assert.equal(health, 200);
    assert.equal(normal.tier, 'small');
    // Each runaway holds the event loop for at most TIMEOUT_MS; unguarded, four of them
    // would hold it for about ten seconds.
    assert.ok(waited < 2000, `other requests waited ${waited.toFixed(0)} ms`);
    for (const r of await Promise.all(runaways)) assert.equal(r.tier, 'large');
  });

  test('a gate condition that runs away is stopped too: the evaluator scores 0 with the reason', async () => {
    const answer = await ask('gated');
    assert.ok(answer.ms < 2000, `${answer.ms.toFixed(0)} ms`);
    const line = await tg.waitForDecision(answer.id);
    const evaluator = line.attempts[0].gate?.evaluators[0] as { name: string; score: number; error?: string } | undefined;
    assert.equal(evaluator?.name, 'runaway');
    assert.equal(evaluator?.score, 0);
    assert.match(evaluator?.error ?? '', /expression stopped: ran longer than 60 ms/);
  });

  test('the limits are part of the policy: a reload with another timeout applies it', async () => {
    const v0 = tg.gateway.manager.runtime.version;
    tg.writePolicy(policy(30));
    const res = await fetch(`${tg.url}/admin/reload`, { method: 'POST' });
    const reload = (await res.json()) as { outcome: string; policy_version: string };
    assert.equal(reload.outcome, 'applied');
    assert.notEqual(reload.policy_version, v0);
    const answer = await ask('busy');
    assert.match((await tg.waitForDecision(answer.id)).routing_reason, /ran longer than 30 ms \(expressions\.timeout_ms\)/);
    tg.writePolicy(yaml);
    assert.equal(((await (await fetch(`${tg.url}/admin/reload`, { method: 'POST' })).json()) as { policy_version: string }).policy_version, v0);
  });
});

test('without an expressions section the default limits apply (500 ms, depth 500, 1,000,000 items)', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-limits-'));
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, policy().replace(/^expressions: .*\n/m, ''));
  const runtime = await buildRuntime(file, { logger: createLogger({ level: 'silent' }), mode: 'validate' });
  try {
    const route = async (model: string) => {
      const body = { model, messages: [{ role: 'user', content: 'hi' }] } as ChatBody;
      return routeRequest(runtime, body, requestView(body, {}, []));
    };
    const started = performance.now();
    const busy = await route('busy');
    assert.ok(performance.now() - started < 2000);
    assert.equal(busy.routingError, 'TG_ERR_EXPRESSION_LIMIT');
    assert.match(busy.reason, /ran longer than 500 ms \(expressions\.timeout_ms\)/);
    const deep = await route('deep');
    assert.match(deep.reason, /nested deeper than 500 steps/);
    assert.match((await route('huge')).reason, /longer than 1000000 items/);
  } finally {
    await runtime.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});
