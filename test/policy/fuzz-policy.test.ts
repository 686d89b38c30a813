// Bad policies, generated: fast-check mutates a rich, valid gateway.yaml (keys deleted,
// renamed, duplicated, added; values of the wrong type; broken YAML; broken JSONata;
// unknown plugins and references; truncated files) and feeds every mutant to the loader
// and to a running gateway's POST /admin/reload. The loader either builds the policy or
// rejects it with located errors only (file:line:col or a path, a TG_ERR_CONFIG_* or
// TG_ERR_PLUGIN_* code), never anything else. The gateway rejects with 422 and the same
// located errors, keeps serving the old version (which /admin/status and every answer
// say), and shows the error at /admin/status; nothing is ever half-applied.
// Bounded: a fixed number of runs, each a small file. FC_SEED=<n> replays a run.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { buildRuntime } from '../../src/policy/compile.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { PolicyErrors, TiergateError } from '../../src/common/errors.ts';
import { displayNameFor } from '../../src/policy/source.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';

const LOADER_RUNS = 250;
const RELOAD_RUNS = 60;
const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;

const BASE = `version: 1
server:
  port: 8080
  body_limit: 1mb
  header_allowlist: [x-team]
expressions:
  timeout_ms: 200
providers:
  sim:
    plugin: simulator
    time_scale: 0
    profiles:
      sim-small: { capability: 0.5, first_token_ms: 100, tokens_per_second: 200 }
      sim-large: { capability: 0.95, first_token_ms: 300, tokens_per_second: 80 }
models:
  small-model:
    provider: sim
    upstream: sim-small
    price: { input_per_mtok: 0.15, output_per_mtok: 0.6 }
  large-model:
    provider: sim
    upstream: sim-large
    price: { input_per_mtok: 2.5, output_per_mtok: 10 }
    timeout_ms: 5000
tiers:
  - name: small
    models: [small-model]
  - name: large
    models: [large-model]
features:
  task_type: metadata.task_type
  turns: $count(messages[role = 'user'])
routes:
  support:
    description: the main route
    router:
      plugin: rules
      rules:
        - when: task_type = 'classification'
          tier: small
          confidence: 0.9
          reason: easy
        - when: turns > 3
          model: large-model
    default: large
    fallback: large-model
    gate:
      evaluators:
        - plugin: heuristics
          min_chars: 1
        - plugin: jsonata
          name: non_empty
          expression: "$length(answer) > 0 ? 1 : 0"
          when: task_type != 'chat'
      threshold: 0.5
      max_escalations: 1
    speculate:
      when: decision.confidence < 0.6
    costs: { under_routing: 4, over_routing: 1 }
  batch:
    router: { plugin: rules, rules: [{ when: "true", tier: small }] }
    default: small
resilience:
  retries: 1
  cooldown_ms: 1000
analytics:
  decision_log:
    file: decisions.jsonl
    log_prompts: false
`;

// ---------------------------------------------------------------------------------
// Mutations. Each is plain data (indices into whatever the policy holds at that point),
// so fast-check can shrink a failing case to the smallest mutation that shows it.

const WRONG_VALUES: unknown[] = [
  'x',
  '',
  42,
  -1,
  0,
  1.5,
  true,
  null,
  [],
  {},
  ['a', 1],
  { a: 1 },
  '.',
  'a'.repeat(300),
  'sub/dir/file.jsonl',
  '${TG_FUZZ_UNSET_VARIABLE}',
  '*',
  '../outside.jsonl',
];
const BROKEN_JSONATA = [
  '(',
  '$nosuchfunction()',
  'a = ',
  '$count(',
  ']]',
  '$$$',
  'function($x){',
  "'unterminated",
  '1 +',
  '$lenght(messages)',
  '{',
  'a ? b',
  '$sum(1, 2, 3)',
  '"',
];
const ODD_KEYS = ['timeout', 'Tier', 'defualt', 'plugins', 'when', 'x-unknown', 'routes', '__proto__', 'constructor', ''];
const ODD_CHARS = [':', '{', '}', '[', ']', ',', "'", '"', '&', '*', '!', '|', '>', '%', '@', '`', '\t', '#', '-', '?', '$', '\n', ' '];

type DataOp =
  | { op: 'delete'; at: number }
  | { op: 'retype'; at: number; value: number }
  | { op: 'rename'; at: number; key: number }
  | { op: 'add'; at: number; key: number; value: number }
  | { op: 'jsonata'; at: number; text: number }
  | { op: 'plugin'; at: number; name: string }
  | { op: 'reference'; at: number; name: string };

type TextOp =
  | { op: 'delete-line'; line: number }
  | { op: 'duplicate-line'; line: number }
  | { op: 'insert-char'; at: number; char: number }
  | { op: 'indent'; line: number; by: number }
  | { op: 'tab'; line: number }
  | { op: 'truncate'; at: number };

const index = fc.nat({ max: 10_000 });
const dataOp: fc.Arbitrary<DataOp> = fc.oneof(
  fc.record({ op: fc.constant('delete' as const), at: index }),
  fc.record({ op: fc.constant('retype' as const), at: index, value: fc.nat({ max: WRONG_VALUES.length - 1 }) }),
  fc.record({ op: fc.constant('rename' as const), at: index, key: fc.nat({ max: ODD_KEYS.length }) }),
  fc.record({ op: fc.constant('add' as const), at: index, key: fc.nat({ max: ODD_KEYS.length - 1 }), value: fc.nat({ max: WRONG_VALUES.length - 1 }) }),
  fc.record({ op: fc.constant('jsonata' as const), at: index, text: fc.nat({ max: BROKEN_JSONATA.length - 1 }) }),
  fc.record({ op: fc.constant('plugin' as const), at: index, name: fc.stringMatching(/^[a-z_]{1,12}$/) }),
  fc.record({ op: fc.constant('reference' as const), at: index, name: fc.stringMatching(/^[a-z-]{1,10}$/) }),
);
const textOp: fc.Arbitrary<TextOp> = fc.oneof(
  fc.record({ op: fc.constant('delete-line' as const), line: index }),
  fc.record({ op: fc.constant('duplicate-line' as const), line: index }),
  fc.record({ op: fc.constant('insert-char' as const), at: index, char: fc.nat({ max: ODD_CHARS.length - 1 }) }),
  fc.record({ op: fc.constant('indent' as const), line: index, by: fc.integer({ min: -3, max: 3 }).filter((n) => n !== 0) }),
  fc.record({ op: fc.constant('tab' as const), line: index }),
  fc.record({ op: fc.constant('truncate' as const), at: index }),
);
const mutation = fc
  .record({ data: fc.array(dataOp, { maxLength: 3 }), text: fc.array(textOp, { maxLength: 2 }) })
  .filter((m) => m.data.length + m.text.length > 0);

type Segment = string | number;

/** Every path in the value, parents before children. */
function pathsOf(value: unknown, at: Segment[] = [], out: Segment[][] = []): Segment[][] {
  const children: Array<[Segment, unknown]> = Array.isArray(value)
    ? value.map((item, i) => [i, item])
    : value !== null && typeof value === 'object'
      ? Object.entries(value)
      : [];
  for (const [key, item] of children) {
    out.push([...at, key]);
    pathsOf(item, [...at, key], out);
  }
  return out;
}

function parentOf(root: unknown, at: Segment[]): Record<string | number, unknown> | unknown[] {
  let node = root as Record<string | number, unknown>;
  for (const segment of at.slice(0, -1)) node = node[segment] as Record<string | number, unknown>;
  return node;
}

function applyData(root: Record<string, unknown>, op: DataOp): void {
  const all = pathsOf(root);
  const pick = (filter: (p: Segment[], value: unknown) => boolean): Segment[] | null => {
    const candidates = all.filter((p) => filter(p, (parentOf(root, p) as Record<string | number, unknown>)[p[p.length - 1]]));
    return candidates.length ? candidates[op.at % candidates.length] : null;
  };
  const set = (p: Segment[], value: unknown) => ((parentOf(root, p) as Record<string | number, unknown>)[p[p.length - 1]] = structuredClone(value));
  switch (op.op) {
    case 'delete': {
      const p = pick(() => true);
      if (!p) return;
      const parent = parentOf(root, p);
      if (Array.isArray(parent)) parent.splice(p[p.length - 1] as number, 1);
      else delete (parent as Record<string, unknown>)[p[p.length - 1] as string];
      return;
    }
    case 'retype': {
      const p = pick(() => true);
      if (p) set(p, WRONG_VALUES[op.value]);
      return;
    }
    case 'rename': {
      const p = pick((q) => typeof q[q.length - 1] === 'string');
      if (!p) return;
      const parent = parentOf(root, p) as Record<string, unknown>;
      const old = p[p.length - 1] as string;
      // A typo of the key (last letter dropped) or one of the odd keys.
      const key = op.key === ODD_KEYS.length ? old.slice(0, -1) : ODD_KEYS[op.key];
      const value = parent[old];
      delete parent[old];
      Object.defineProperty(parent, key, { value, enumerable: true, writable: true, configurable: true });
      return;
    }
    case 'add': {
      const p = pick((_q, value) => value !== null && typeof value === 'object' && !Array.isArray(value));
      const target = p ? ((parentOf(root, p) as Record<string | number, unknown>)[p[p.length - 1]] as Record<string, unknown>) : root;
      Object.defineProperty(target, ODD_KEYS[op.key], { value: structuredClone(WRONG_VALUES[op.value]), enumerable: true, writable: true, configurable: true });
      return;
    }
    case 'jsonata': {
      const p = pick((q, value) => typeof value === 'string' && (q.includes('features') || ['when', 'expression'].includes(String(q[q.length - 1]))));
      if (p) set(p, BROKEN_JSONATA[op.text]);
      return;
    }
    case 'plugin': {
      const p = pick((q) => q[q.length - 1] === 'plugin');
      if (p) set(p, op.name);
      return;
    }
    case 'reference': {
      const p = pick(
        (q) =>
          ['tier', 'model', 'default', 'fallback', 'provider'].includes(String(q[q.length - 1])) ||
          (q.includes('models') && typeof q[q.length - 1] === 'number'),
      );
      if (p) set(p, op.name);
      return;
    }
  }
}

function applyText(text: string, op: TextOp): string {
  const lines = text.split('\n');
  const line = (n: number) => n % Math.max(1, lines.length);
  switch (op.op) {
    case 'delete-line':
      lines.splice(line(op.line), 1);
      return lines.join('\n');
    case 'duplicate-line': {
      const i = line(op.line);
      lines.splice(i, 0, lines[i]);
      return lines.join('\n');
    }
    case 'insert-char': {
      const at = op.at % (text.length + 1);
      return text.slice(0, at) + ODD_CHARS[op.char] + text.slice(at);
    }
    case 'indent': {
      const i = line(op.line);
      lines[i] = op.by > 0 ? ' '.repeat(op.by) + lines[i] : lines[i].replace(new RegExp(`^ {0,${-op.by}}`), '');
      return lines.join('\n');
    }
    case 'tab': {
      const i = line(op.line);
      lines[i] = lines[i].replace(/^ +/, '\t');
      return lines.join('\n');
    }
    case 'truncate':
      return text.slice(0, op.at % (text.length + 1));
  }
}

function mutate(m: { data: DataOp[]; text: TextOp[] }): string {
  const data = parseYaml(BASE) as Record<string, unknown>;
  for (const op of m.data) applyData(data, op);
  let text = m.data.length ? stringifyYaml(data) : BASE;
  for (const op of m.text) text = applyText(text, op);
  return text;
}

// ---------------------------------------------------------------------------------

/** An error a person can act on: a catalogue code and where, in the file that was edited. */
function assertLocated(error: unknown, file: string, text: string, context: string): void {
  assert.ok(error instanceof TiergateError, `${context}: not a TiergateError: ${String(error)}`);
  assert.match(error.code, /^TG_ERR_(CONFIG|PLUGIN)_[A-Z_]+$/, `${context}: ${error.located()}`);
  const location = error.location;
  assert.ok(location, `${context}: no location: ${error.located()}`);
  assert.equal(location.file, displayNameFor(file), `${context}: located in the policy file: ${error.located()}`);
  assert.ok(location.line !== undefined || (location.path !== undefined && location.path !== ''), `${context}: neither line nor path: ${error.located()}`);
  if (location.line !== undefined) {
    const lines = text.split('\n');
    assert.ok(location.line >= 1 && location.line <= lines.length + 1, `${context}: line ${location.line} of ${lines.length}: ${error.located()}`);
    assert.ok(
      location.column !== undefined && location.column >= 1 && location.column <= (lines[location.line - 1] ?? '').length + 2,
      `${context}: column ${location.column} of line ${JSON.stringify(lines[location.line - 1])}: ${error.located()}`,
    );
  }
  assert.ok(error.located().startsWith(displayNameFor(file)), error.located());
}

describe('policy fuzz', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-fuzz-policy-'));
  const logger = createLogger({ level: 'silent' });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the base policy is valid (the mutations start from something that works)', async () => {
    const file = path.join(dir, 'base.yaml');
    writeFileSync(file, BASE);
    const runtime = await buildRuntime(file, { logger, mode: 'validate', env: {} });
    await runtime.dispose();
  });

  test(`the loader: ${LOADER_RUNS} mutants either build or are rejected with located errors only, never a crash`, async (t) => {
    const file = path.join(dir, 'gateway.yaml');
    const seen = { valid: 0, invalid: 0, codes: new Map<string, number>() };
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const text = mutate(m);
        writeFileSync(file, text);
        let runtime;
        try {
          runtime = await buildRuntime(file, { logger, mode: 'validate', env: {} });
        } catch (err) {
          assert.ok(err instanceof PolicyErrors, `rejected with something other than PolicyErrors: ${err instanceof Error ? err.stack : String(err)}`);
          assert.ok(err.errors.length > 0, 'at least one error');
          for (const e of err.errors) {
            assertLocated(e, file, text, 'loader');
            seen.codes.set(e.code, (seen.codes.get(e.code) ?? 0) + 1);
          }
          seen.invalid++;
          return;
        }
        seen.valid++;
        await runtime.dispose();
      }),
      { numRuns: LOADER_RUNS, seed, endOnFailure: true, includeErrorInReport: true },
    );
    t.diagnostic(`${seen.valid} mutants built, ${seen.invalid} rejected; codes: ${[...seen.codes].map(([c, n]) => `${c} ${n}`).join(', ')}`);
    assert.ok(seen.invalid > LOADER_RUNS / 2, 'most mutants are invalid');
    assert.ok(seen.codes.size >= 5, 'the mutations reach many kinds of error');
  });

  describe('a running gateway', () => {
    let tg: TestGateway;
    let baseVersion: string;

    before(async () => {
      tg = await startTestGateway(BASE, { watch: false });
      baseVersion = tg.gateway.manager.runtime.version;
    });
    after(async () => {
      await tg?.close();
    });

    async function reload(): Promise<{ status: number; body: { outcome: string; policy_version: string; errors?: string[] } }> {
      const res = await fetch(`${tg.url}/admin/reload`, { method: 'POST' });
      return { status: res.status, body: (await res.json()) as { outcome: string; policy_version: string; errors?: string[] } };
    }

    async function classify(): Promise<{ status: number; version: string | null; tier: string | null }> {
      const res = await fetch(`${tg.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'support',
          messages: [{ role: 'user', content: 'Is this review positive? "Great product, fast delivery"' }],
          metadata: { task_type: 'classification' },
        }),
      });
      await res.arrayBuffer();
      return { status: res.status, version: res.headers.get('x-tiergate-policy-version'), tier: res.headers.get('x-tiergate-tier') };
    }

    test(`POST /admin/reload of ${RELOAD_RUNS} mutants: rejected ones keep the old version serving and show the located error; applied ones are whole`, async (t) => {
      const before = await classify();
      assert.deepEqual(before, { status: 200, version: baseVersion, tier: 'small' });
      const seen = { applied: 0, rejected: 0, unchanged: 0 };
      await fc.assert(
        fc.asyncProperty(mutation, async (m) => {
          const text = mutate(m);
          tg.writePolicy(text);
          const result = await reload();
          assert.ok(result.status === 200 || result.status === 422, `reload answered ${result.status}: ${JSON.stringify(result.body)}`);
          if (result.body.outcome === 'rejected') {
            seen.rejected++;
            assert.equal(result.status, 422);
            assert.equal(result.body.policy_version, baseVersion, 'the old version keeps serving');
            assert.ok(result.body.errors && result.body.errors.length > 0);
            const shown = displayNameFor(tg.policyFile);
            for (const e of result.body.errors) {
              assert.ok(e.startsWith(`${shown}:`) || e.startsWith(`${shown} `), `located in the policy file: ${e}`);
              assert.match(e, /\[TG_ERR_(CONFIG|PLUGIN)_[A-Z_]+\]$/, e);
            }
            const status = (await (await fetch(`${tg.url}/admin/status`)).json()) as { policy_version: string; last_reload_error: string[] | null };
            assert.equal(status.policy_version, baseVersion);
            assert.deepEqual(status.last_reload_error, result.body.errors, '/admin/status shows the error');
            // Nothing half-applied: the old policy answers, and routes as it did.
            assert.deepEqual(await classify(), { status: 200, version: baseVersion, tier: 'small' });
            return;
          }
          assert.equal(result.status, 200);
          if (result.body.outcome === 'unchanged') {
            seen.unchanged++;
            return;
          }
          seen.applied++;
          assert.equal(result.body.outcome, 'applied');
          assert.notEqual(result.body.policy_version, baseVersion);
          assert.equal(tg.gateway.manager.runtime.version, result.body.policy_version, 'the new version serves, whole');
          const ready = await fetch(`${tg.url}/readyz`);
          assert.equal(ready.status, 200);
          assert.equal(((await ready.json()) as { policy_version: string }).policy_version, result.body.policy_version);
          // Back to the base for the next mutant.
          tg.writePolicy(BASE);
          const restored = await reload();
          assert.equal(restored.body.outcome, 'applied');
          assert.equal(restored.body.policy_version, baseVersion);
        }),
        { numRuns: RELOAD_RUNS, seed, endOnFailure: true, includeErrorInReport: true },
      );
      t.diagnostic(`${seen.rejected} rejected, ${seen.applied} applied, ${seen.unchanged} unchanged`);
      assert.ok(seen.rejected > 0);
      tg.writePolicy(BASE);
      await reload();
      assert.deepEqual(await classify(), { status: 200, version: baseVersion, tier: 'small' });
    });

    test('a decision log file that cannot be opened is a located rejection, not a crashed gateway', async () => {
      for (const file of ['.', 'a'.repeat(300), 'decisions.jsonl/inside-a-file.jsonl']) {
        tg.writePolicy(BASE.replace('file: decisions.jsonl', `file: "${file}"`));
        const result = await reload();
        assert.equal(result.status, 422, `${file.slice(0, 20)}: ${JSON.stringify(result.body)}`);
        assert.equal(result.body.policy_version, baseVersion);
        assert.ok(
          result.body.errors?.some((e) => e.includes('analytics.decision_log.file')),
          JSON.stringify(result.body.errors),
        );
      }
      tg.writePolicy(BASE);
      await reload();
      assert.deepEqual(await classify(), { status: 200, version: baseVersion, tier: 'small' });
    });
  });
});
