// The policy compiler's own promises (src/policy/README.md): the types it reads are the
// ones the schema generates, every default it applies is the schema's, and validating a
// policy has no side effects (its secrets are registered only once it compiles).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generatePolicyTypes, TYPES_FILE } from '../../scripts/gen-policy-types.ts';
import { buildRuntime } from '../../src/policy/compile.ts';
import { schemaDefault } from '../../src/policy-shape/defaults.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { PolicyErrors } from '../../src/common/errors.ts';
import { REDACTED, redactSecrets } from '../../src/common/secrets.ts';

const logger = createLogger({ level: 'silent' });

function policyFile(t: { after(fn: () => void): void }, text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-compiler-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, text);
  return file;
}

const MINIMAL = `version: 1
providers:
  sim: { plugin: simulator, time_scale: 0, default_profile: { capability: 0.5, first_token_ms: 0, tokens_per_second: 100 } }
models:
  small-model: { provider: sim, price: { input_per_mtok: 0.15, output_per_mtok: 0.6 } }
  large-model: { provider: sim, price: { input_per_mtok: 2.5, output_per_mtok: 10 } }
tiers:
  - { name: small, models: [small-model] }
  - { name: large, models: [large-model] }
routes:
  support:
    router: { plugin: rules, rules: [] }
    default: small
    gate: { evaluators: [ { plugin: heuristics } ] }
`;

test('src/policy-shape/policy-data.ts is what schemas/gateway.schema.json generates (npm run gen:policy-types)', async () => {
  assert.equal(await generatePolicyTypes(), readFileSync(TYPES_FILE, 'utf8'), 'the schema changed: run npm run gen:policy-types and commit the result');
});

test("a policy that leaves everything out compiles with the schema's defaults", async (t) => {
  const runtime = await buildRuntime(policyFile(t, MINIMAL), { logger, mode: 'validate' });
  t.after(() => runtime.dispose());
  assert.equal(runtime.server.port, schemaDefault('server', 'port'));
  assert.equal(runtime.server.bodyLimit, schemaDefault('server', 'body_limit'));
  assert.equal(runtime.server.upstreamTimeoutMs, schemaDefault('server', 'upstream_timeout_ms'));
  assert.equal(runtime.server.shutdownTimeoutMs, schemaDefault('server', 'shutdown_timeout_ms'));
  assert.deepEqual(runtime.server.headerAllowlist, schemaDefault('server', 'header_allowlist'));
  assert.deepEqual(runtime.resilience, {
    retries: schemaDefault('resilience', 'retries'),
    backoff_ms: schemaDefault('resilience', 'backoff_ms'),
    max_backoff_ms: schemaDefault('resilience', 'max_backoff_ms'),
    failure_threshold: schemaDefault('resilience', 'failure_threshold'),
    cooldown_ms: schemaDefault('resilience', 'cooldown_ms'),
  });
  assert.equal(runtime.logPrompts, schemaDefault('analytics', 'decision_log', 'log_prompts'));
  assert.equal(runtime.models.get('small-model')?.spec.timeout_ms, schemaDefault('server', 'upstream_timeout_ms'));
  const gate = runtime.routes.get('support')?.gate;
  assert.ok(gate);
  assert.equal(gate.combine, 'min');
  assert.equal(gate.maxEscalations, 1);
  assert.equal(gate.streaming, 'buffer');
  assert.equal(gate.evaluators[0].weight, 1);
});

test("validating registers no secret: a rejected policy's are only kept out of its own errors; a valid one's are registered when it compiles", async (t) => {
  const token = 'tg-admin-compiler-test-SECRET-4b3c2d1e';
  const withToken = (extra: string) => MINIMAL.replace('version: 1\n', `version: 1\nserver:\n  auth:\n    admin_token: ${token}\n`) + extra;

  const rejected = policyFile(t, withToken(`  quoting:\n    router: { plugin: rules, rules: [] }\n    default: ${token}\n`));
  const errors = await buildRuntime(rejected, { logger, mode: 'validate' }).then(
    () => assert.fail('a route whose default names no tier or model is invalid'),
    (err: unknown) => (err instanceof PolicyErrors ? err.errors.map((e) => e.located()) : assert.fail(String(err))),
  );
  assert.equal(errors.length, 1, errors.join('\n'));
  assert.match(errors[0], /routes\.quoting\.default: no tier or model named "\[redacted\]"/);
  assert.equal(redactSecrets(`token ${token}`), `token ${token}`, 'validation registered the secret');

  const runtime = await buildRuntime(policyFile(t, withToken('')), { logger, mode: 'validate' });
  t.after(() => runtime.dispose());
  assert.equal(redactSecrets(`token ${token}`), `token ${REDACTED}`);
});

test("the default decision log is held to the policy's folder like one the policy names", async (t) => {
  const file = policyFile(t, MINIMAL);
  const elsewhere = mkdtempSync(path.join(tmpdir(), 'tiergate-compiler-elsewhere-'));
  t.after(() => rmSync(elsewhere, { recursive: true, force: true }));
  symlinkSync(elsewhere, path.join(path.dirname(file), 'logs'));
  const errors = await buildRuntime(file, { logger, mode: 'validate' }).then(
    () => assert.fail("logs/ leads out of the policy's folder"),
    (err: unknown) => (err instanceof PolicyErrors ? err.errors : assert.fail(String(err))),
  );
  assert.deepEqual(
    errors.map((e) => [e.code, e.location?.path]),
    [['TG_ERR_CONFIG_PATH', 'analytics.decision_log.file']],
  );
  assert.match(errors[0].message, /leads through a symbolic link to .*, outside the policy's folder/);
});
