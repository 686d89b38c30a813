// Hot reload, end to end: real gateway, real HTTP, the official openai SDK as client.
// This file: reload under concurrent traffic, rejected edits, POST /admin/reload. Beside
// it: reload-plugins.test.ts (team plugins added and edited at runtime, disposal of a
// retired runtime only after its in-flight requests), reload-triggers.test.ts (SIGHUP on
// the real CLI, and the watcher's debounce / hash skip / replace-by-rename handling), and
// reload-storm.test.ts. Their helpers are in test/support/reload.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Runtime } from '../../src/policy/runtime.ts';
import type { ReloadResult } from '../../src/policy/reload.ts';
import { simulatorPolicy } from '../support/gateway.ts';
import { adminReload, chat, client, decisionLines, gateway, rulesRoute, status, versionOnDisk, type Answer } from '../support/reload.ts';
import { sleep, waitFor } from '../support/wait.ts';

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
          answers.push(
            await chat(openai, {
              taskType: 'classification',
              stream: (w + i) % 2 === 0,
              content: `Classify review ${w}-${i} as positive or negative: great product`,
            }),
          );
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
    assert.ok(
      swaps.some((s) => s.inflightOnOld > 0),
      `some swap happened with requests in flight on the old runtime (${swaps.map((s) => s.inflightOnOld).join(', ')})`,
    );
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
    assert.ok(
      column > lineText.indexOf('"task_type') && column <= lineText.indexOf(`'classification'"`) + 18,
      `column ${column} points into the expression: ${lineText}`,
    );
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
