// What starts a reload, end to end: SIGHUP to the real CLI (`tiergate serve` in a child
// process, with an edited policy and an edited team plugin), and the policy watcher (hash
// skip, debounce, a Kubernetes ConfigMap's symlink swap, editor-style saves).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { simulatorPolicy } from '../support/gateway.ts';
import { alwaysSmallRouter, chat, client, decisionLines, gateway, rulesRoute, status, versionOnDisk, within } from '../support/reload.ts';
import { sleep, waitFor } from '../support/wait.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// The built-in plugins are part of the version. The CLI (bin/tiergate.js) runs dist/,
// whose built-in plugins are the compiled ones; the in-process gateway runs src/.
const CLI_BUILTIN_PLUGINS = path.join(REPO, 'dist', 'plugins');

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
    const cliPolicy = (tier: 'small' | 'large', reason: string) =>
      simulatorPolicy({ routes: rulesRoute(tier, reason, teamRoute), extra: 'plugins: { paths: [team-plugins] }\n' });
    const decisionsFile = path.join(dir, 'decisions.jsonl');
    const loggedDecision = (id: string) =>
      waitFor(`decision ${id} in the CLI's decision log`, () => decisionLines(decisionsFile).find((l) => l.record.request_id === id)?.record);
    writeFileSync(policyFile, cliPolicy('small', 'easy'));
    let child: ChildProcess | null = null;
    let exited: Promise<number | null> | null = null;
    try {
      child = spawn(
        process.execPath,
        [path.join(REPO, 'bin', 'tiergate.js'), 'serve', '--config', policyFile, '--port', '0', '--host', '127.0.0.1', '--no-watch'],
        {
          cwd: REPO,
          env: { ...process.env, TIERGATE_LOG_LEVEL: 'info', TIERGATE_LOG_FORMAT: 'json' },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
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
    assert.equal((await tg.waitForDecision(answer.decisionId, 5000)).routing_reason, 'rule 1: configmap v2');
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
    for (const [i, tier] of [
      [1, 'large'],
      [2, 'small'],
    ] as const) {
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
