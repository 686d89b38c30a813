// Hot reload, end to end: real gateway, real HTTP, the official openai SDK as client.
// Covers reload under concurrent traffic, rejected edits, POST /admin/reload, team
// plugins added and edited at runtime, disposal of a retired runtime only after its
// in-flight requests, SIGHUP on the real CLI, and the watcher's debounce / hash skip /
// replace-by-rename handling.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { policyFingerprint, type Runtime } from '../src/policy/runtime.ts';
import type { ReloadResult, ReloadStatus } from '../src/policy/reload.ts';
import type { DecisionRecord } from '../src/observe/decision-log.ts';
import { simulatorPolicy, startTestGateway, type TestGateway } from './support/gateway.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// ---------------------------------------------------------------------------------
// Helpers

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or `fallback` after `ms` (the timer is cleared either way, so it keeps nothing alive). */
async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls until `probe` returns something truthy; fails with `what` after `timeoutMs`. */
async function waitFor<T>(what: string, probe: () => T | Promise<T>, timeoutMs = 5000, intervalMs = 15): Promise<NonNullable<T>> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await sleep(intervalMs);
  }
}

type Status = ReloadStatus & { inflight_requests: number; plugins: Array<{ kind: string; name: string; at: string }> };

async function status(url: string): Promise<Status> {
  const res = await fetch(`${url}/admin/status`);
  assert.equal(res.status, 200);
  return (await res.json()) as Status;
}

async function adminReload(url: string): Promise<{ http: number; body: ReloadResult }> {
  const res = await fetch(`${url}/admin/reload`, { method: 'POST' });
  return { http: res.status, body: (await res.json()) as ReloadResult };
}

/** The version the gateway will report for the policy now on disk. */
// The built-in plugins are part of the version. The CLI (bin/tiergate.js) runs dist/,
// whose built-in plugins are the compiled ones; the in-process gateway runs src/.
const CLI_BUILTIN_PLUGINS = path.join(REPO, 'dist', 'plugins');

function versionOnDisk(file: string, builtinPluginRoot?: string): string {
  const version = policyFingerprint(file, { builtinPluginRoot });
  assert.ok(version, `policy ${file} should be readable`);
  return version;
}

function client(tg: { baseURL: string }): OpenAI {
  return new OpenAI({ baseURL: tg.baseURL, apiKey: 'x', maxRetries: 0, timeout: 15_000 });
}

interface Answer {
  version: string;
  tier: string | null;
  decisionId: string;
  content: string;
  stream: boolean;
  /** performance.now() when the client sent the request and when the answer was complete. */
  sentAt: number;
  doneAt: number;
}

async function chat(openai: OpenAI, options: { content?: string; taskType?: string; stream?: boolean; model?: string } = {}): Promise<Answer> {
  const params = {
    model: options.model ?? 'support',
    messages: [{ role: 'user' as const, content: options.content ?? 'Classify this review as positive or negative: great product, fast delivery' }],
    ...(options.taskType ? { metadata: { task_type: options.taskType } } : {}),
  };
  const sentAt = performance.now();
  let content = '';
  let headers: Headers;
  if (options.stream) {
    const { data, response } = await openai.chat.completions.create({ ...params, stream: true }).withResponse();
    headers = response.headers;
    for await (const chunk of data) content += chunk.choices[0]?.delta?.content ?? '';
  } else {
    const { data, response } = await openai.chat.completions.create(params).withResponse();
    headers = response.headers;
    content = data.choices[0]?.message?.content ?? '';
  }
  const doneAt = performance.now();
  const version = headers.get('x-tiergate-policy-version');
  const decisionId = headers.get('x-tiergate-decision-id');
  assert.ok(version, 'every answer carries x-tiergate-policy-version');
  assert.ok(decisionId, 'every answer carries x-tiergate-decision-id');
  return { version, tier: headers.get('x-tiergate-tier'), decisionId, content, stream: options.stream === true, sentAt, doneAt };
}

/** Decision lines, read raw so the test can check the text as well as the parsed record. */
function decisionLines(file: string): Array<{ raw: string; record: DecisionRecord }> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((raw) => ({ raw, record: JSON.parse(raw) as DecisionRecord }));
}

async function decisionFor(tg: TestGateway, requestId: string): Promise<DecisionRecord> {
  return waitFor(`decision line ${requestId}`, () => tg.decisions().find((d) => d.request_id === requestId));
}

/** A rules route whose one rule sends classification requests to `tier`. */
function rulesRoute(tier: 'small' | 'large', reason: string, extraRoute = ''): string {
  return `  support:
    router:
      plugin: rules
      rules:
        - { when: "task_type = 'classification'", tier: ${tier}, confidence: 0.9, reason: ${reason} }
    default: large
${extraRoute}`;
}

/** A test gateway closed (server, watchers, temp dir) when the test ends, pass or fail. */
async function gateway(t: TestContext, policy: string, options: Parameters<typeof startTestGateway>[1] = {}): Promise<TestGateway> {
  const tg = await startTestGateway(policy, options);
  let closing: Promise<void> | null = null;
  const close = () => (closing ??= tg.close());
  t.after(close);
  return { ...tg, close };
}

// ---------------------------------------------------------------------------------
// 1. Reload under traffic

describe('hot reload under concurrent traffic', () => {
  test('policy edits apply without a single failed request; every answer is consistent with one live version', async (t) => {
    // Each edit flips the classification rule (small ↔ large) and changes something else
    // (simulator speed, an extra route, a feature), so consecutive versions differ.
    // Answers take tens of ms (timeScale), so a swap almost always finds requests in flight.
    const policies = [
      simulatorPolicy({ timeScale: 0.3, routes: rulesRoute('small', 'easy v0') }),
      simulatorPolicy({ timeScale: 0.3, routes: rulesRoute('large', 'flipped v1') }),
      simulatorPolicy({
        timeScale: 0.2,
        routes: rulesRoute('small', 'back v2', `  batch:\n    router: { plugin: rules, rules: [{ when: "true", tier: small }] }\n    default: small\n`),
      }),
      simulatorPolicy({ timeScale: 0.2, routes: rulesRoute('large', 'final v3'), features: `  task_type: metadata.task_type\n  priority: metadata.priority` }),
    ];
    const expectedTier = new Map<string, 'small' | 'large'>();
    const expectedReason = new Map<string, string>();
    const tierOf = (i: number) => (i % 2 === 0 ? 'small' : 'large') as 'small' | 'large';
    const reasons = ['rule 1: easy v0', 'rule 1: flipped v1', 'rule 1: back v2', 'rule 1: final v3'];

    const tg = await gateway(t, policies[0], { watch: true, debounceMs: 40 });
    const openai = client(tg);
    const versions = [tg.gateway.manager.runtime.version];
    assert.equal(versions[0], versionOnDisk(tg.policyFile));
    expectedTier.set(versions[0], 'small');
    expectedReason.set(versions[0], reasons[0]);

    // Swaps as the gateway performs them: the listener runs synchronously right after
    // the reference swap, so `at` is no earlier than the swap itself.
    const swaps: Array<{ from: string; to: string; at: number; inflightOnOld: number }> = [];
    const rejected: ReloadResult[] = [];
    let live: Runtime = tg.gateway.manager.runtime;
    const liveSince = new Map<string, number>([[versions[0], performance.now()]]);
    tg.gateway.manager.onReload((result) => {
      if (result.outcome === 'rejected') rejected.push(result);
      if (result.outcome !== 'applied') return;
      const previous = live;
      live = tg.gateway.manager.runtime;
      const at = performance.now();
      swaps.push({ from: previous.version, to: live.version, at, inflightOnOld: previous.inflightRequests });
      liveSince.set(live.version, at);
    });

    // N clients, each sending requests back to back until told to stop; half stream.
    const answers: Answer[] = [];
    const failures: string[] = [];
    let stop = false;
    const CLIENTS = 6;
    const workers = Array.from({ length: CLIENTS }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        try {
          answers.push(await chat(openai, { taskType: 'classification', stream: (w + i) % 2 === 0, content: `Classify review ${w}-${i} as positive or negative: great product` }));
        } catch (err) {
          failures.push(`client ${w} request ${i}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    });

    try {
      const answeredOn = (version: string) => answers.filter((a) => a.version === version).length;
      await waitFor('traffic on the first version', () => answeredOn(versions[0]) >= CLIENTS);
      for (let i = 1; i < policies.length; i++) {
        // Edit while requests are in flight on the current runtime.
        await waitFor('requests in flight before the edit', () => tg.gateway.manager.runtime.inflightRequests > 0);
        tg.writePolicy(policies[i]);
        const version = versionOnDisk(tg.policyFile);
        assert.ok(!versions.includes(version), 'each edit yields a new version');
        versions.push(version);
        expectedTier.set(version, tierOf(i));
        expectedReason.set(version, reasons[i]);
        await waitFor(`version ${i} to be applied by the watcher`, () => tg.gateway.manager.runtime.version === version);
        if (i < policies.length - 1) await waitFor(`traffic on version ${i}`, () => answeredOn(version) >= CLIENTS);
      }

      // After the final edit a fresh request sees the new behaviour within a bounded wait.
      const final = versions[versions.length - 1];
      const fresh = await waitFor('a fresh request answered by the final policy', async () => {
        const a = await chat(openai, { taskType: 'classification' });
        return a.version === final ? a : null;
      });
      assert.equal(fresh.tier, 'large', 'the final policy routes classification to the large tier');
      await waitFor('traffic on the final version', () => answeredOn(final) >= CLIENTS);
    } finally {
      stop = true;
      await Promise.all(workers);
    }

    assert.deepEqual(failures, [], 'no request failed across the reloads');
    assert.deepEqual(rejected, [], 'no reload was rejected');
    assert.deepEqual(
      swaps.map((s) => [s.from, s.to]),
      versions.slice(1).map((v, i) => [versions[i], v]),
      'each edit produced exactly one swap, in order',
    );
    assert.ok(answers.length >= CLIENTS * policies.length, `enough traffic (${answers.length} answers)`);

    // Every answer: one of the live versions, the tier that version's rule picks, and a
    // version that was current at some moment while the request was open.
    const swapAt = new Map(swaps.map((s) => [s.from, s.at]));
    for (const a of answers) {
      assert.ok(versions.includes(a.version), `answer version ${a.version} is one of the live versions`);
      assert.ok(a.content.length > 0, 'a complete answer');
      assert.equal(a.tier, expectedTier.get(a.version), `tier matches what version ${a.version} decides (no half-applied policy)`);
      const since = liveSince.get(a.version) as number;
      const until = swapAt.get(a.version) ?? Infinity;
      assert.ok(a.doneAt >= since && a.sentAt <= until, `version ${a.version} was live while the request was open`);
    }

    // Requests that were in flight when their runtime was swapped out finished, on the
    // old version.
    const spanning = answers.filter((a) => {
      const until = swapAt.get(a.version);
      return until !== undefined && a.sentAt < until && a.doneAt > until;
    });
    assert.ok(swaps.some((s) => s.inflightOnOld > 0), `some swap happened with requests in flight on the old runtime (${swaps.map((s) => s.inflightOnOld).join(', ')})`);
    assert.ok(spanning.length > 0, 'some request started before a swap and finished after it, on the old version');

    // The decision log: one line per answer, each with exactly one policy_version, the
    // same version and tier the client saw, and the reason of that version's rule.
    const ids = new Set(answers.map((a) => a.decisionId));
    const lines = await waitFor('every answer to be in the decision log', () => {
      const all = decisionLines(tg.decisionLogFile);
      return all.filter((l) => ids.has(l.record.request_id)).length === ids.size ? all : null;
    });
    const byId = new Map(lines.map((l) => [l.record.request_id, l]));
    for (const a of answers) {
      const line = byId.get(a.decisionId);
      assert.ok(line, `decision line for ${a.decisionId}`);
      assert.equal(line.raw.match(/"policy_version"/g)?.length, 1, 'exactly one policy_version per line');
      assert.equal(line.record.status, 'ok');
      assert.equal(line.record.policy_version, a.version);
      assert.equal(line.record.tier, a.tier);
      assert.equal(line.record.routing_reason, expectedReason.get(a.version));
      assert.equal(line.record.stream, a.stream);
    }
    for (const { record } of lines) assert.ok(versions.includes(record.policy_version), `logged version ${record.policy_version} was live`);
  });
});

// ---------------------------------------------------------------------------------
// 2. A broken edit

describe('an invalid edit', () => {
  test('keeps the old policy serving, reports the located error, and recovers when fixed', async (t) => {
    const good = simulatorPolicy({ routes: rulesRoute('small', 'easy') });
    const tg = await gateway(t, good, { watch: true, debounceMs: 40 });
    const openai = client(tg);
    const v0 = tg.gateway.manager.runtime.version;
    assert.equal((await chat(openai, { taskType: 'classification' })).tier, 'small');

    // A JSONata syntax error inside the rule's condition.
    const broken = good.replace(`"task_type = 'classification'"`, `"task_type = ('classification'"`);
    assert.notEqual(broken, good);
    const brokenLine = broken.split('\n').findIndex((l) => l.includes(`('classification'`)) + 1;
    tg.writePolicy(broken);
    const st = await waitFor('the rejected reload to show in /admin/status', async () => {
      const s = await status(tg.url);
      return s.last_reload_error ? s : null;
    });
    assert.equal(st.policy_version, v0, 'policy_version unchanged');
    assert.equal(st.reloads.rejected, 1);
    assert.equal(st.reloads.applied, 0);
    assert.deepEqual(st.last_reload && { trigger: st.last_reload.trigger, outcome: st.last_reload.outcome }, { trigger: 'file', outcome: 'rejected' });
    assert.equal(st.last_reload_error!.length, 1, st.last_reload_error!.join('\n'));
    const error = st.last_reload_error![0];
    assert.match(error, /TG_ERR_CONFIG_JSONATA/);
    assert.ok(error.includes(`gateway.yaml:${brokenLine}:`), `error located at line ${brokenLine}: ${error}`);
    const column = Number(/gateway\.yaml:\d+:(\d+)/.exec(error)?.[1]);
    const lineText = broken.split('\n')[brokenLine - 1];
    assert.ok(column > lineText.indexOf('"task_type') && column <= lineText.indexOf(`'classification'"`) + 18, `column ${column} points into the expression: ${lineText}`);
    assert.match(error, /routes\.support\.router\.rules\[0\]\.when/);

    // The old policy keeps serving, version and behaviour.
    for (const stream of [false, true]) {
      const a = await chat(openai, { taskType: 'classification', stream });
      assert.equal(a.version, v0);
      assert.equal(a.tier, 'small');
    }

    // Reverting to the exact content that is serving: nothing to reload, and the error no
    // longer describes the file on disk, so it is cleared.
    tg.writePolicy(good);
    const reverted = await waitFor('the revert to be noticed', async () => {
      const s = await status(tg.url);
      return s.reloads.unchanged >= 1 ? s : null;
    });
    assert.equal(reverted.policy_version, v0);
    assert.equal(reverted.reloads.applied, 0);
    assert.equal(reverted.last_reload_error, null, 'reverting the file clears the stale error');

    // Break it again, then fix it with a new valid policy: applied, error cleared.
    tg.writePolicy(broken);
    await waitFor('the second rejection', async () => (await status(tg.url)).reloads.rejected === 2);
    assert.equal((await chat(openai, { taskType: 'classification' })).version, v0);
    const fixed = simulatorPolicy({ routes: rulesRoute('large', 'fixed') });
    tg.writePolicy(fixed);
    const v1 = versionOnDisk(tg.policyFile);
    const recovered = await waitFor('the fix to be applied', async () => {
      const s = await status(tg.url);
      return s.policy_version === v1 ? s : null;
    });
    assert.equal(recovered.last_reload_error, null);
    assert.equal(recovered.reloads.applied, 1);
    assert.deepEqual(recovered.last_reload && recovered.last_reload.outcome, 'applied');
    const a = await chat(openai, { taskType: 'classification' });
    assert.equal(a.version, v1);
    assert.equal(a.tier, 'large');
  });

  test('a deleted policy file is a rejected reload, not an outage', async (t) => {
    const tg = await gateway(t, simulatorPolicy(), { watch: true, debounceMs: 40 });
    const openai = client(tg);
    const v0 = tg.gateway.manager.runtime.version;
    const text = readFileSync(tg.policyFile, 'utf8');
    rmSync(tg.policyFile);
    const st = await waitFor('the rejection', async () => {
      const s = await status(tg.url);
      return s.last_reload_error ? s : null;
    });
    assert.match(st.last_reload_error!.join('\n'), /TG_ERR_CONFIG_READ/);
    assert.equal((await chat(openai)).version, v0);
    writeFileSync(tg.policyFile, text);
    await waitFor('recovery', async () => (await status(tg.url)).last_reload_error === null);
    assert.equal((await chat(openai)).version, v0);
  });
});

// ---------------------------------------------------------------------------------
// 3. POST /admin/reload

describe('POST /admin/reload', () => {
  test('unchanged, applied and rejected (422), with the watcher off', async (t) => {
    const tg = await gateway(t, simulatorPolicy({ routes: rulesRoute('small', 'easy') }), { watch: false });
    const openai = client(tg);
    const v0 = tg.gateway.manager.runtime.version;

    const unchanged = await adminReload(tg.url);
    assert.equal(unchanged.http, 200);
    assert.deepEqual(unchanged.body, { outcome: 'unchanged', trigger: 'admin', policy_version: v0 });

    // An edit is invisible until the admin call (no watcher).
    tg.writePolicy(simulatorPolicy({ routes: rulesRoute('large', 'edited') }));
    const v1 = versionOnDisk(tg.policyFile);
    await sleep(150);
    const before = await chat(openai, { taskType: 'classification' });
    assert.equal(before.version, v0);
    assert.equal(before.tier, 'small');
    assert.equal((await status(tg.url)).reloads.applied, 0, 'nothing reloads without the watcher');

    const applied = await adminReload(tg.url);
    assert.equal(applied.http, 200);
    assert.deepEqual(applied.body, { outcome: 'applied', trigger: 'admin', policy_version: v1 });
    const after = await chat(openai, { taskType: 'classification' });
    assert.equal(after.version, v1);
    assert.equal(after.tier, 'large');

    // Broken: a rule names a tier the policy does not declare.
    tg.writePolicy(simulatorPolicy({ routes: rulesRoute('large', 'edited').replace('tier: large', 'tier: medium') }));
    const rejected = await adminReload(tg.url);
    assert.equal(rejected.http, 422);
    assert.equal(rejected.body.outcome, 'rejected');
    assert.equal(rejected.body.trigger, 'admin');
    assert.equal(rejected.body.policy_version, v1, 'the serving version is reported');
    assert.ok(Array.isArray(rejected.body.errors) && rejected.body.errors.length >= 1);
    assert.ok(
      rejected.body.errors!.some((e) => /gateway\.yaml:\d+:\d+ routes\.support\.router\.rules\[0\]\.tier: .*\[TG_ERR_/.test(e)),
      `a located error for the unknown tier: ${rejected.body.errors!.join('\n')}`,
    );
    assert.equal((await chat(openai, { taskType: 'classification' })).version, v1);

    const st = await status(tg.url);
    assert.deepEqual(st.reloads, { applied: 1, rejected: 1, unchanged: 1 });
    assert.deepEqual(st.last_reload_error, rejected.body.errors);
    assert.equal(st.policy_version, v1);

    // Broken twice in a row: still rejected (the content-hash skip compares with the
    // serving version, not with the last file seen).
    const again = await adminReload(tg.url);
    assert.equal(again.http, 422);
  });
});

// ---------------------------------------------------------------------------------
// 4. Team plugins added and edited at runtime

function alwaysSmallRouter(reason: string): string {
  return `export default {
  meta: {
    id: 'always-small',
    kind: 'router',
    description: 'Routes everything to the small tier (team plugin used by the reload test).',
    options: { type: 'object', additionalProperties: false, properties: {} },
    example: {},
  },
  async create() {
    return { route: () => ({ tier: 'small', reason: ${JSON.stringify(reason)} }), async dispose() {} };
  },
};
`;
}

const alwaysSmallRoute = `  support:
    router: { plugin: always-small }
    default: large`;

describe('team plugins', () => {
  test('a new plugin folder named in an edited policy works on reload; an edited plugin is re-imported', async (t) => {
    const tg = await gateway(t, simulatorPolicy(), { watch: false });
    const openai = client(tg);
    const v0 = tg.gateway.manager.runtime.version;
    // Not a classification request: the built-in rules router leaves it on the default.
    const baseline = await chat(openai, { content: 'Tell me about the history of tea' });
    assert.equal(baseline.tier, 'large');

    const pluginFile = path.join(tg.dir, 'team-plugins', 'routers', 'always-small', 'index.js');
    mkdirSync(path.dirname(pluginFile), { recursive: true });
    writeFileSync(pluginFile, alwaysSmallRouter('team plugin'));
    tg.writePolicy(simulatorPolicy({ routes: alwaysSmallRoute, extra: 'plugins: { paths: [team-plugins] }\n' }));
    const r1 = await adminReload(tg.url);
    assert.equal(r1.http, 200, JSON.stringify(r1.body));
    assert.equal(r1.body.outcome, 'applied');
    assert.notEqual(r1.body.policy_version, v0);
    const a1 = await chat(openai, { content: 'Tell me about the history of tea' });
    assert.equal(a1.version, r1.body.policy_version);
    assert.equal(a1.tier, 'small', 'the team router decides');
    assert.equal((await decisionFor(tg, a1.decisionId)).routing_reason, 'team plugin');
    assert.ok((await status(tg.url)).plugins.some((p) => p.kind === 'router' && p.name === 'always-small'));

    // Edit the plugin only: the policy file is untouched, the version still changes and
    // the new code runs.
    writeFileSync(pluginFile, alwaysSmallRouter('team plugin, edited'));
    const r2 = await adminReload(tg.url);
    assert.equal(r2.body.outcome, 'applied');
    assert.notEqual(r2.body.policy_version, r1.body.policy_version);
    const a2 = await chat(openai, { content: 'Tell me about the history of tea', stream: true });
    assert.equal(a2.version, r2.body.policy_version);
    assert.equal((await decisionFor(tg, a2.decisionId)).routing_reason, 'team plugin, edited');

    // Reverting the plugin file brings back the first version (same content, same hash).
    writeFileSync(pluginFile, alwaysSmallRouter('team plugin'));
    const r3 = await adminReload(tg.url);
    assert.equal(r3.body.policy_version, r1.body.policy_version);
    const a3 = await chat(openai, { content: 'Tell me about the history of tea' });
    assert.equal((await decisionFor(tg, a3.decisionId)).routing_reason, 'team plugin');
  });

  test('a multi-file TypeScript plugin (ES module): editing only a file it imports reloads that file too', async (t) => {
    const tg = await gateway(t, simulatorPolicy(), { watch: false });
    const openai = client(tg);
    const folder = path.join(tg.dir, 'team-plugins', 'routers', 'always-small');
    mkdirSync(folder, { recursive: true });
    writeFileSync(path.join(tg.dir, 'team-plugins', 'package.json'), '{ "type": "module" }\n');
    writeFileSync(path.join(folder, 'reason.ts'), `export const reason: string = 'from helper v1';\n`);
    writeFileSync(
      path.join(folder, 'index.ts'),
      alwaysSmallRouter('unused').replace('export default {', `import { reason } from './reason.ts';\nexport default {`).replace(`reason: "unused"`, 'reason'),
    );
    tg.writePolicy(simulatorPolicy({ routes: alwaysSmallRoute, extra: 'plugins: { paths: [team-plugins] }\n' }));
    assert.equal((await adminReload(tg.url)).body.outcome, 'applied');
    const a1 = await chat(openai, { content: 'Tell me about the history of tea' });
    assert.equal((await decisionFor(tg, a1.decisionId)).routing_reason, 'from helper v1');

    writeFileSync(path.join(folder, 'reason.ts'), `export const reason: string = 'from helper v2';\n`);
    const r2 = await adminReload(tg.url);
    assert.equal(r2.body.outcome, 'applied', JSON.stringify(r2.body));
    const a2 = await chat(openai, { content: 'Tell me about the history of tea' });
    assert.equal(a2.version, r2.body.policy_version);
    assert.equal((await decisionFor(tg, a2.decisionId)).routing_reason, 'from helper v2', 'the edited helper file runs, not the cached one');
  });

  test('with the watcher on, plugin edits and new plugin folders reload by themselves (trigger "plugin")', async (t) => {
    const pluginRel = 'team-plugins/routers/always-small/index.js';
    const tg = await gateway(t, simulatorPolicy({ routes: alwaysSmallRoute, extra: 'plugins: { paths: [team-plugins] }\n' }), {
      watch: true,
      debounceMs: 40,
      files: { [pluginRel]: alwaysSmallRouter('watched v1') },
    });
    const openai = client(tg);
    const a1 = await chat(openai);
    assert.equal((await decisionFor(tg, a1.decisionId)).routing_reason, 'watched v1');

    writeFileSync(path.join(tg.dir, pluginRel), alwaysSmallRouter('watched v2'));
    const v2 = versionOnDisk(tg.policyFile);
    const st = await waitFor('the plugin edit to reload', async () => {
      const s = await status(tg.url);
      return s.policy_version === v2 ? s : null;
    });
    assert.equal(st.last_reload?.trigger, 'plugin');
    const a2 = await chat(openai);
    assert.equal(a2.version, v2);
    assert.equal((await decisionFor(tg, a2.decisionId)).routing_reason, 'watched v2');

    // A brand-new plugin folder inside the watched root is picked up too (its hash is part
    // of the version), and so is an edit inside that new folder.
    const newPlugin = path.join(tg.dir, 'team-plugins', 'routers', 'always-small-2', 'index.js');
    mkdirSync(path.dirname(newPlugin), { recursive: true });
    writeFileSync(newPlugin, alwaysSmallRouter('second').replace(`id: 'always-small'`, `id: 'always-small-2'`));
    const v3 = versionOnDisk(tg.policyFile);
    await waitFor('the new plugin folder to reload', async () => (await status(tg.url)).policy_version === v3);
    writeFileSync(newPlugin, alwaysSmallRouter('second, edited').replace(`id: 'always-small'`, `id: 'always-small-2'`));
    const v4 = versionOnDisk(tg.policyFile);
    await waitFor('the edit inside the new folder to reload', async () => (await status(tg.url)).policy_version === v4);
  });
});

// ---------------------------------------------------------------------------------
// 5. The retired runtime is disposed after its in-flight requests, not before

const RECORDER_PROVIDER = `// A provider that records create/dispose and can hold a request until the test says so.
const state = (globalThis.__tiergateReloadRecorder ??= { created: [], disposed: [], held: [] });
export default {
  meta: {
    id: 'recorder',
    kind: 'provider',
    description: 'Test provider: answers with its label, records its lifecycle.',
    options: { type: 'object', additionalProperties: false, required: ['label'], properties: { label: { type: 'string' } } },
    example: { label: 'example' },
  },
  async create(options) {
    state.created.push(options.label);
    let disposed = false;
    const answer = async (request) => {
      if (disposed) throw new Error('provider ' + options.label + ' used after dispose');
      if (JSON.stringify(request.messages).includes('HOLD')) await new Promise((release) => state.held.push({ label: options.label, release }));
      if (disposed) throw new Error('provider ' + options.label + ' was disposed while a request was in flight');
      return 'answered by ' + options.label;
    };
    return {
      async complete(request) {
        const content = await answer(request);
        return {
          id: 'rec', object: 'chat.completion', created: 0, model: request.model,
          choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 },
        };
      },
      async *stream(request) {
        const content = await answer(request);
        const base = { id: 'rec', object: 'chat.completion.chunk', created: 0, model: request.model };
        yield { ...base, choices: [{ index: 0, delta: { role: 'assistant', content }, finish_reason: null }] };
        yield { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] };
        yield { ...base, choices: [], usage: { prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 } };
      },
      async dispose() {
        disposed = true;
        state.disposed.push(options.label);
      },
    };
  },
};
`;

interface RecorderState {
  created: string[];
  disposed: string[];
  held: Array<{ label: string; release: () => void }>;
}

function recorderPolicy(label: string): string {
  return `version: 1
plugins: { paths: [team-plugins] }
providers:
  rec: { plugin: recorder, label: ${label} }
models:
  small-model: { provider: rec, price: { input_per_mtok: 0.15, output_per_mtok: 0.6 } }
  large-model: { provider: rec, price: { input_per_mtok: 2.5, output_per_mtok: 10 } }
tiers:
  - { name: small, models: [small-model] }
  - { name: large, models: [large-model] }
routes:
  support:
    router: { plugin: rules, rules: [{ when: "true", tier: small }] }
    default: large
analytics:
  decision_log: { file: decisions.jsonl }
`;
}

describe('retiring a runtime', () => {
  for (const stream of [false, true]) {
    test(`the old runtime's plugins are disposed only after its in-flight request ends (${stream ? 'streaming' : 'JSON'})`, async (t) => {
      const g = globalThis as { __tiergateReloadRecorder?: RecorderState };
      const state: RecorderState = (g.__tiergateReloadRecorder = { created: [], disposed: [], held: [] });
      const tg = await gateway(t, recorderPolicy('one'), { watch: false, files: { 'team-plugins/providers/recorder/index.js': RECORDER_PROVIDER } });
      const openai = client(tg);
      assert.deepEqual(state.created, ['one']);
      const oldRuntime = tg.gateway.manager.runtime;
      const v1 = oldRuntime.version;

      const held = chat(openai, { content: 'HOLD this one', stream });
      held.catch(() => undefined); // awaited below; avoid an unhandled rejection meanwhile
      await waitFor('the held request to reach the provider', () => state.held.length === 1);
      assert.equal(oldRuntime.inflightRequests, 1);

      tg.writePolicy(recorderPolicy('two'));
      const reload = await adminReload(tg.url);
      assert.equal(reload.body.outcome, 'applied');
      const v2 = reload.body.policy_version;
      assert.notEqual(v2, v1);
      assert.deepEqual(state.created, ['one', 'two']);

      // New requests use the new runtime while the old one still has a request open.
      const quick = await chat(openai, { content: 'quick', stream });
      assert.equal(quick.version, v2);
      assert.equal(quick.content, 'answered by two');
      await sleep(100); // give a premature disposal every chance to happen
      assert.deepEqual(state.disposed, [], 'the old provider is not disposed while its request is in flight');
      assert.equal(oldRuntime.inflightRequests, 1);
      assert.equal((await status(tg.url)).reloads.applied, 1);

      state.held[0].release();
      const answer = await held;
      assert.equal(answer.version, v1, 'the held request finishes on the version it started with');
      assert.equal(answer.content, 'answered by one');
      await waitFor('the old provider to be disposed', () => state.disposed.includes('one'));
      assert.deepEqual(state.disposed, ['one'], 'only the old runtime is disposed');
      assert.equal(oldRuntime.inflightRequests, 0);
      const line = await decisionFor(tg, answer.decisionId);
      assert.equal(line.policy_version, v1);
      assert.equal(line.status, 'ok');

      await tg.close();
      assert.deepEqual(state.disposed, ['one', 'two'], 'closing the gateway disposes the current runtime');
    });
  }
});

// ---------------------------------------------------------------------------------
// 6. SIGHUP on the real CLI

describe('tiergate serve', () => {
  test('SIGHUP reloads the policy and edited team plugins (trigger "signal"); SIGTERM stops cleanly', { timeout: 20_000 }, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-sighup-'));
    const policyFile = path.join(dir, 'gateway.yaml');
    // A team plugin outside any package.json "type": "module" scope, as a team's own
    // folder usually is: the CLI must load an edit of it afresh too.
    const pluginFile = path.join(dir, 'team-plugins', 'routers', 'always-small', 'index.js');
    mkdirSync(path.dirname(pluginFile), { recursive: true });
    writeFileSync(pluginFile, alwaysSmallRouter('cli team plugin'));
    const teamRoute = `  team:\n    router: { plugin: always-small }\n    default: large\n`;
    const cliPolicy = (tier: 'small' | 'large', reason: string) => simulatorPolicy({ routes: rulesRoute(tier, reason, teamRoute), extra: 'plugins: { paths: [team-plugins] }\n' });
    const decisionsFile = path.join(dir, 'decisions.jsonl');
    const loggedDecision = (id: string) => waitFor(`decision ${id} in the CLI's decision log`, () => decisionLines(decisionsFile).find((l) => l.record.request_id === id)?.record);
    writeFileSync(policyFile, cliPolicy('small', 'easy'));
    let child: ChildProcess | null = null;
    let exited: Promise<number | null> | null = null;
    try {
      child = spawn(process.execPath, [path.join(REPO, 'bin', 'tiergate.js'), 'serve', '--config', policyFile, '--port', '0', '--host', '127.0.0.1', '--no-watch'], {
        cwd: REPO,
        env: { ...process.env, TIERGATE_LOG_LEVEL: 'info', TIERGATE_LOG_FORMAT: 'json' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const proc = child;
      exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
      const logs: Array<Record<string, unknown>> = [];
      let stderr = '';
      let pending = '';
      proc.stderr!.setEncoding('utf8').on('data', (text: string) => {
        stderr += text;
        pending += text;
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          try {
            logs.push(JSON.parse(line) as Record<string, unknown>);
          } catch {
            // not a JSON log line
          }
        }
      });
      proc.stdout!.resume();
      let exitCode: number | null | undefined;
      void exited.then((code) => (exitCode = code));

      const listening = await waitFor(
        'the gateway to listen',
        () => {
          if (exitCode !== undefined) assert.fail(`tiergate exited early (${exitCode}): ${stderr}`);
          return logs.find((l) => typeof l.message === 'string' && l.message.startsWith('tiergate listening on '));
        },
        10_000,
      );
      const url = String(listening.message).slice('tiergate listening on '.length);
      const openai = client({ baseURL: `${url}/v1` });
      const v0 = String(listening.policy_version);
      assert.equal(v0, versionOnDisk(policyFile, CLI_BUILTIN_PLUGINS));
      assert.equal((await chat(openai, { taskType: 'classification' })).tier, 'small');
      const team0 = await chat(openai, { model: 'team' });
      assert.equal(team0.tier, 'small');
      assert.equal((await loggedDecision(team0.decisionId)).routing_reason, 'cli team plugin');

      // Nothing changed: SIGHUP still runs a reload (the watcher has nothing to report).
      proc.kill('SIGHUP');
      const s1 = await waitFor('the signal reload', async () => {
        const s = await status(url);
        return s.last_reload ? s : null;
      });
      assert.deepEqual({ trigger: s1.last_reload!.trigger, outcome: s1.last_reload!.outcome }, { trigger: 'signal', outcome: 'unchanged' });
      assert.deepEqual(s1.reloads, { applied: 0, rejected: 0, unchanged: 1 });

      // An edit, then SIGHUP: with --no-watch only the signal can apply it.
      writeFileSync(policyFile, cliPolicy('large', 'flipped'));
      writeFileSync(pluginFile, alwaysSmallRouter('cli team plugin, edited'));
      const v1 = versionOnDisk(policyFile, CLI_BUILTIN_PLUGINS);
      proc.kill('SIGHUP');
      const reloaded = await waitFor('the "policy reloaded" log line', () => logs.find((l) => l.message === 'policy reloaded'));
      assert.equal(reloaded.trigger, 'signal');
      assert.equal(reloaded.policy_version, v1);
      assert.equal(reloaded.previous_version, v0);
      const a = await chat(openai, { taskType: 'classification' });
      assert.equal(a.version, v1);
      assert.equal(a.tier, 'large');
      const team1 = await chat(openai, { model: 'team' });
      assert.equal(team1.version, v1);
      assert.equal((await loggedDecision(team1.decisionId)).routing_reason, 'cli team plugin, edited', 'the edited plugin code runs');
      assert.equal((await status(url)).reloads.rejected, 0);

      proc.kill('SIGTERM');
      const code = await within(exited, 10_000, 'timeout' as const);
      assert.equal(code, 0, `tiergate exits 0 on SIGTERM: ${stderr}`);
      assert.ok(logs.some((l) => l.message === 'stopped'));
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        if (exited) await within(exited, 2000, null);
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------
// 7. The watcher: hash skip, debounce, editor-style saves

describe('the policy watcher', () => {
  test('touching or rewriting identical content reloads nothing; a burst of writes is one reload', async (t) => {
    const tg = await gateway(t, simulatorPolicy(), { watch: true, debounceMs: 40 });
    const v0 = tg.gateway.manager.runtime.version;
    const loadedAt = (await status(tg.url)).loaded_at;

    const now = new Date();
    utimesSync(tg.policyFile, now, now);
    const s1 = await waitFor('the touch to be seen and skipped', async () => {
      const s = await status(tg.url);
      return s.reloads.unchanged >= 1 ? s : null;
    });
    assert.equal(s1.reloads.applied, 0);
    assert.equal(s1.policy_version, v0);

    tg.writePolicy(readFileSync(tg.policyFile, 'utf8'));
    const s2 = await waitFor('the identical rewrite to be seen and skipped', async () => {
      const s = await status(tg.url);
      return s.reloads.unchanged > s1.reloads.unchanged ? s : null;
    });
    assert.equal(s2.reloads.applied, 0);
    assert.equal(s2.loaded_at, loadedAt, 'the runtime was not rebuilt');
    assert.equal(tg.gateway.manager.runtime.version, v0);

    // A burst of distinct writes within the quiet period: one reload, of the last.
    for (let i = 1; i <= 5; i++) tg.writePolicy(simulatorPolicy({ routes: rulesRoute(i % 2 ? 'large' : 'small', `burst ${i}`) }));
    const last = versionOnDisk(tg.policyFile);
    const s3 = await waitFor('the burst to be applied', async () => {
      const s = await status(tg.url);
      return s.policy_version === last ? s : null;
    });
    await sleep(150);
    const s4 = await status(tg.url);
    assert.equal(s4.reloads.applied, 1, 'one reload for the whole burst');
    assert.equal(s4.reloads.rejected, 0);
    assert.equal(s4.policy_version, last);
    assert.equal(s3.last_reload?.trigger, 'file');
  });

  test('a Kubernetes ConfigMap update (the ..data symlink swapped atomically) is picked up', async (t) => {
    const tg = await gateway(t, simulatorPolicy({ routes: rulesRoute('small', 'configmap v1') }), { watch: true, debounceMs: 40 });
    // Lay the folder out as the kubelet does: gateway.yaml -> ..data/gateway.yaml, ..data -> ..<timestamp>.
    const publish = (stamp: string, policy: string) => {
      mkdirSync(path.join(tg.dir, stamp));
      writeFileSync(path.join(tg.dir, stamp, 'gateway.yaml'), policy);
      symlinkSync(stamp, path.join(tg.dir, '..data_tmp'));
      renameSync(path.join(tg.dir, '..data_tmp'), path.join(tg.dir, '..data'));
    };
    publish('..2026_11_25_v1', readFileSync(tg.policyFile, 'utf8'));
    symlinkSync('..data/gateway.yaml', path.join(tg.dir, 'gateway.yaml.link'));
    renameSync(path.join(tg.dir, 'gateway.yaml.link'), tg.policyFile);
    const v1 = tg.gateway.manager.runtime.version;
    // Replacing gateway.yaml by the link is itself an event: let its (unchanged) reload
    // pass first, so that only the ..data swap below can bring in v2.
    await waitFor('the link replacement to be seen and skipped', async () => ((await status(tg.url)).reloads.unchanged >= 1 ? true : null));
    await sleep(100);

    publish('..2026_11_25_v2', simulatorPolicy({ routes: rulesRoute('large', 'configmap v2') }));
    const v2 = versionOnDisk(tg.policyFile);
    assert.notEqual(v2, v1);
    const s = await waitFor('the ConfigMap swap to be applied', async () => {
      const st = await status(tg.url);
      return st.policy_version === v2 ? st : null;
    });
    assert.equal(s.reloads.rejected, 0);
    const answer = await chat(client(tg), { taskType: 'classification' });
    assert.equal(answer.version, v2);
    assert.equal((await decisionFor(tg, answer.decisionId)).routing_reason, 'rule 1: configmap v2');
  });

  test('editor-style saves (write aside, rename over; backup rename, then write) are picked up every time', async (t) => {
    const tg = await gateway(t, simulatorPolicy({ routes: rulesRoute('small', 'start') }), { watch: true, debounceMs: 40 });
    const openai = client(tg);
    const waitApplied = (version: string, what: string) =>
      waitFor(what, async () => {
        const s = await status(tg.url);
        return s.policy_version === version ? s : null;
      });

    // Atomic save: write a temp file next to it, rename it over gateway.yaml. Twice, to
    // show the watch survives the file being replaced.
    for (const [i, tier] of [[1, 'large'], [2, 'small']] as const) {
      const tmp = path.join(tg.dir, `.gateway.yaml.${i}.tmp`);
      writeFileSync(tmp, simulatorPolicy({ routes: rulesRoute(tier, `renamed ${i}`) }));
      renameSync(tmp, tg.policyFile);
      const version = versionOnDisk(tg.policyFile);
      const s = await waitApplied(version, `rename-over save ${i}`);
      assert.equal(s.reloads.applied, i);
      assert.equal(s.reloads.rejected, 0, 'no half-written file was ever read');
      const a = await chat(openai, { taskType: 'classification' });
      assert.equal(a.version, version);
      assert.equal(a.tier, tier);
    }

    // vim-style: move the original to a backup, then write a new file.
    renameSync(tg.policyFile, `${tg.policyFile}~`);
    writeFileSync(tg.policyFile, simulatorPolicy({ routes: rulesRoute('large', 'vim save') }));
    const version = versionOnDisk(tg.policyFile);
    const s = await waitApplied(version, 'backup-then-write save');
    assert.equal(s.reloads.applied, 3);
    assert.equal(s.reloads.rejected, 0);
    assert.equal((await chat(openai, { taskType: 'classification' })).tier, 'large');
  });
});
