// The rules router and the routing step, on the shipped gateway.yaml (the seed's
// support-desk rules) and on small policies for the custom JSONata functions.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildRuntime } from '../../src/policy/compile.ts';
import type { Runtime } from '../../src/policy/runtime.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { requestView, routeRequest, type ChatBody } from '../../src/pipeline/route.ts';
import { simulatorPolicy } from '../support/gateway.ts';

const logger = createLogger({ level: 'silent' });
const shippedPolicy = path.resolve(import.meta.dirname, '../../gateway.yaml');
const runtimes: Runtime[] = [];
const dirs: string[] = [];
after(async () => {
  for (const r of runtimes) await r.dispose();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function load(file: string): Promise<Runtime> {
  const runtime = await buildRuntime(file, { logger, mode: 'validate', env: { SIMULATOR_TIME_SCALE: '0' } });
  runtimes.push(runtime);
  return runtime;
}

async function loadText(yaml: string): Promise<Runtime> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-rules-'));
  dirs.push(dir);
  writeFileSync(path.join(dir, 'gateway.yaml'), yaml);
  return load(path.join(dir, 'gateway.yaml'));
}

async function route(runtime: Runtime, body: Partial<ChatBody>, headers: Record<string, string> = {}) {
  const full = { model: 'support', messages: [{ role: 'user', content: 'Hello' }], ...body } as ChatBody;
  return routeRequest(runtime, full, requestView(full, headers, runtime.server.headerAllowlist));
}

const extractionFormat = (fields: number) => ({
  type: 'json_schema',
  json_schema: {
    name: 'fields',
    schema: { type: 'object', properties: Object.fromEntries(Array.from({ length: fields }, (_, i) => [`f${i}`, { type: 'string' }])) },
  },
});

test('shipped gateway.yaml: the seed rules pick the tier', async () => {
  const runtime = await load(shippedPolicy);
  const cases: Array<[string, Partial<ChatBody>, string, RegExp]> = [
    ['classification → small', { metadata: { task_type: 'classification' } }, 'small', /classification/],
    [
      'extraction, 3 fields in response_format → small',
      { metadata: { task_type: 'extraction' }, response_format: extractionFormat(3) },
      'small',
      /fewer than 5 fields/,
    ],
    ['extraction, field_count 4 in metadata → small', { metadata: { task_type: 'extraction', field_count: 4 } }, 'small', /fewer than 5 fields/],
    [
      'extraction, 7 fields → no rule, default large',
      { metadata: { task_type: 'extraction' }, response_format: extractionFormat(7) },
      'large',
      /no rule matched/,
    ],
    ['extraction, fields unknown → no rule, default large', { metadata: { task_type: 'extraction' } }, 'large', /no rule matched/],
    ['reasoning → large', { metadata: { task_type: 'reasoning' } }, 'large', /reasoning/],
    ['medical domain → large', { metadata: { domain: 'medical' } }, 'large', /high-risk domain/],
    ['legal domain → large', { metadata: { task_type: 'summarisation', domain: 'legal' } }, 'large', /high-risk domain/],
    ['nothing matches → large', {}, 'large', /no rule matched; route default large/],
  ];
  for (const [label, body, tier, reason] of cases) {
    const routed = await route(runtime, body);
    assert.equal(routed.tier, tier, label);
    assert.match(routed.reason, reason, label);
    assert.equal(routed.route?.name, 'support');
    assert.equal(routed.bestModel.spec.name, 'gpt-4o', 'always-best is the top tier');
  }
});

test('first match wins: rules run in the order written', async () => {
  const runtime = await load(shippedPolicy);
  // Classification is rule 1 and the medical rule is rule 4, so rule 1 decides.
  const routed = await route(runtime, { metadata: { task_type: 'classification', domain: 'medical' } });
  assert.equal(routed.tier, 'small');
  assert.match(routed.reason, /^rule 1:/);
  assert.equal(routed.confidence, 0.9);
  assert.deepEqual(routed.features.task_type, 'classification');
});

test('custom functions, header allow-list and model-targeted rules', async () => {
  const runtime = await loadText(
    simulatorPolicy({
      features: `  tokens: $estimateTokens()
  question: $lastUserMessage()
  team: headers.\`x-team\``,
      routes: `  support:
    router:
      plugin: rules
      rules:
        - { when: "team = 'billing'", model: small-model, reason: billing team }
        - { when: "$containsAny(question, ['refund', 'invoice'])", tier: small, confidence: 0.7 }
        - { when: "tokens > 200", tier: large, reason: long prompt }
        - { when: "$hasCode()", tier: large, reason: code }
    default: small`,
      extra: 'server: { header_allowlist: [x-team] }',
    }),
  );
  assert.equal((await route(runtime, {}, { 'x-team': 'billing' })).model.spec.name, 'small-model');
  assert.match((await route(runtime, {}, { 'x-team': 'billing' })).reason, /billing team/);
  // A header not on the allow-list is invisible to rules.
  const hidden = await route(runtime, { messages: [{ role: 'user', content: 'hi' }] }, { 'x-secret': 'billing' });
  assert.equal(hidden.features.team, undefined);
  const refund = await route(runtime, { messages: [{ role: 'user', content: 'I want a REFUND for my order' }] });
  assert.equal(refund.tier, 'small');
  assert.equal(refund.confidence, 0.7);
  assert.equal((await route(runtime, { messages: [{ role: 'user', content: 'x '.repeat(1000) }] })).reason, 'rule 3: long prompt');
  assert.equal((await route(runtime, { messages: [{ role: 'user', content: 'fix this:\n```js\nconst a = 1;\n```' }] })).reason, 'rule 4: code');
  // Word boundaries: "refunded" is not "refund".
  assert.equal((await route(runtime, { messages: [{ role: 'user', content: 'it was refunded' }] })).reason, 'no rule matched; route default small');
});

test('a rule that fails at run time falls back to the route default, with the reason', async () => {
  const runtime = await loadText(
    simulatorPolicy({
      routes: `  support:
    router:
      plugin: rules
      rules:
        - { when: "$error('rule exploded')", tier: small }
    default: large`,
    }),
  );
  const routed = await route(runtime, {});
  assert.equal(routed.tier, 'large');
  assert.equal(routed.confidence, 0);
  assert.match(routed.reason, /^routing error \(.*rule exploded.*\); route default large$/);
});

test('a concrete model name skips routing', async () => {
  const runtime = await load(shippedPolicy);
  const routed = await route(runtime, { model: 'gpt-4o-mini' });
  assert.equal(routed.route, null);
  assert.equal(routed.model.spec.name, 'gpt-4o-mini');
  assert.equal(routed.tier, 'small');
  assert.match(routed.reason, /no routing/);
});
