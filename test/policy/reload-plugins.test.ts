// Hot reload of plugins, end to end: real gateway, real HTTP, the official openai SDK as
// client. Team plugins added and edited at runtime (a new folder, an edited file, a file
// a TypeScript plugin imports, with the watcher on or off), and a retired runtime whose
// plugins are disposed only after its in-flight requests end.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { simulatorPolicy } from '../support/gateway.ts';
import { adminReload, alwaysSmallRouter, chat, client, gateway, status, versionOnDisk } from '../support/reload.ts';
import { sleep, waitFor } from '../support/wait.ts';

// ---------------------------------------------------------------------------------
// 4. Team plugins added and edited at runtime

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
    assert.equal((await tg.waitForDecision(a1.decisionId, 5000)).routing_reason, 'team plugin');
    assert.ok((await status(tg.url)).plugins.some((p) => p.kind === 'router' && p.name === 'always-small'));

    // Edit the plugin only: the policy file is untouched, the version still changes and
    // the new code runs.
    writeFileSync(pluginFile, alwaysSmallRouter('team plugin, edited'));
    const r2 = await adminReload(tg.url);
    assert.equal(r2.body.outcome, 'applied');
    assert.notEqual(r2.body.policy_version, r1.body.policy_version);
    const a2 = await chat(openai, { content: 'Tell me about the history of tea', stream: true });
    assert.equal(a2.version, r2.body.policy_version);
    assert.equal((await tg.waitForDecision(a2.decisionId, 5000)).routing_reason, 'team plugin, edited');

    // Reverting the plugin file brings back the first version (same content, same hash).
    writeFileSync(pluginFile, alwaysSmallRouter('team plugin'));
    const r3 = await adminReload(tg.url);
    assert.equal(r3.body.policy_version, r1.body.policy_version);
    const a3 = await chat(openai, { content: 'Tell me about the history of tea' });
    assert.equal((await tg.waitForDecision(a3.decisionId, 5000)).routing_reason, 'team plugin');
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
    assert.equal((await tg.waitForDecision(a1.decisionId, 5000)).routing_reason, 'from helper v1');

    writeFileSync(path.join(folder, 'reason.ts'), `export const reason: string = 'from helper v2';\n`);
    const r2 = await adminReload(tg.url);
    assert.equal(r2.body.outcome, 'applied', JSON.stringify(r2.body));
    const a2 = await chat(openai, { content: 'Tell me about the history of tea' });
    assert.equal(a2.version, r2.body.policy_version);
    assert.equal((await tg.waitForDecision(a2.decisionId, 5000)).routing_reason, 'from helper v2', 'the edited helper file runs, not the cached one');
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
    assert.equal((await tg.waitForDecision(a1.decisionId, 5000)).routing_reason, 'watched v1');

    writeFileSync(path.join(tg.dir, pluginRel), alwaysSmallRouter('watched v2'));
    const v2 = versionOnDisk(tg.policyFile);
    const st = await waitFor('the plugin edit to reload', async () => {
      const s = await status(tg.url);
      return s.policy_version === v2 ? s : null;
    });
    assert.equal(st.last_reload?.trigger, 'plugin');
    const a2 = await chat(openai);
    assert.equal(a2.version, v2);
    assert.equal((await tg.waitForDecision(a2.decisionId, 5000)).routing_reason, 'watched v2');

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

  test('with the watcher on, every way of saving a plugin file is seen, and so is each edit after it', async (t) => {
    const pluginRel = 'team-plugins/routers/always-small/index.js';
    const tg = await gateway(t, simulatorPolicy({ routes: alwaysSmallRoute, extra: 'plugins: { paths: [team-plugins] }\n' }), {
      watch: true,
      debounceMs: 40,
      files: { [pluginRel]: alwaysSmallRouter('saved 0') },
    });
    const file = path.join(tg.dir, pluginRel);
    const openai = client(tg);
    const served = async (reason: string, how: string) => {
      const version = versionOnDisk(tg.policyFile);
      await waitFor(`the plugin saved by ${how} to reload`, async () => (await status(tg.url)).policy_version === version);
      const answer = await chat(openai);
      assert.equal(answer.version, version);
      assert.equal((await tg.waitForDecision(answer.decisionId, 5000)).routing_reason, reason, `after ${how}`);
    };
    const writeInPlace = (reason: string) => writeFileSync(file, alwaysSmallRouter(reason));
    const saves: Array<[string, (reason: string) => void]> = [
      // An editor's safe save: a new file written beside it, renamed over it (a new inode).
      [
        'write aside, rename over',
        (reason) => {
          writeFileSync(`${file}.tmp`, alwaysSmallRouter(reason));
          renameSync(`${file}.tmp`, file);
        },
      ],
      ['writing in place', writeInPlace],
      // sed -i writes a temporary file and renames it over the original, too.
      ['sed -i', (reason) => assert.equal(spawnSync('sed', ['-i', `s/"saved [0-9]*"/${JSON.stringify(reason)}/`, file]).status, 0)],
      ['writing in place', writeInPlace],
      // git checkout and some tools delete the file and create it anew.
      [
        'delete, then create',
        (reason) => {
          unlinkSync(file);
          writeFileSync(file, alwaysSmallRouter(reason));
        },
      ],
      ['writing in place', writeInPlace],
    ];
    for (const [i, [how, save]] of saves.entries()) {
      save(`saved ${i + 1}`);
      await served(`saved ${i + 1}`, how);
    }
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
    contract: 1,
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
      const line = await tg.waitForDecision(answer.decisionId, 5000);
      assert.equal(line.policy_version, v1);
      assert.equal(line.status, 'ok');

      await tg.close();
      assert.deepEqual(state.disposed, ['one', 'two'], 'closing the gateway disposes the current runtime');
    });
  }
});
