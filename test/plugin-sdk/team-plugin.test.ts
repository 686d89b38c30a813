// A team's evaluator written where the team keeps it (a temporary folder, outside
// tiergate's plugins/), against the package entry 'tiergate/plugin' only: it passes the
// exported contract test ('tiergate/testing'), a running gateway picks it up when the
// policy names its folder in plugins.paths (no restart), a request shows its score, and
// an edit of the plugin file is picked up too. Whether the folder is an ES-module package
// or plain CommonJS, the plugin gets the gateway's own SDK module.
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UpstreamError, type Evaluator } from 'tiergate/plugin';
import { checkPluginContract, testPluginContext } from 'tiergate/testing';
import { discoverPlugins, loadPlugin } from '../../src/policy/plugins.ts';
import { simulatorPolicy, startTestGateway } from '../support/gateway.ts';
import { freePort } from '../support/ports.ts';

/** The team's evaluator: a fixed score, written in TypeScript with its options type derived from its schema. */
function teamEvaluator(score: number): string {
  return `import { messageText, UpstreamError, type EvalInput, type Evaluation, type Evaluator, type EvaluatorModule, type OptionsFrom } from 'tiergate/plugin';

const optionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    label: { type: 'string', minLength: 1, description: 'Shown in the details of every evaluation.' },
  },
} as const;

type Options = OptionsFrom<typeof optionsSchema>;

class TeamScore implements Evaluator {
  constructor(private readonly label: string) {}
  async evaluate(input: EvalInput): Promise<Evaluation> {
    const answer = messageText(input.response.choices[0]?.message.content ?? null);
    if (answer === 'fail on purpose') throw new UpstreamError('reply', 'the team evaluator was asked to fail');
    return { score: ${score}, details: { label: this.label, answer_chars: answer.length } };
  }
  async dispose(): Promise<void> {}
}

export default {
  meta: {
    id: 'team_score',
    kind: 'evaluator',
    contract: 1,
    description: 'A team evaluator kept outside tiergate: scores every answer ${score}.',
    options: optionsSchema,
    example: { label: 'example' },
  },
  async create(options) {
    return new TeamScore(options.label ?? 'team');
  },
} satisfies EvaluatorModule<Options>;
`;
}

function teamFolder(t: { after(fn: () => void): void }, options: { esModule: boolean }): { root: string; entry: string } {
  const root = mkdtempSync(path.join(tmpdir(), 'tiergate-team-plugins-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  if (options.esModule) writeFileSync(path.join(root, 'package.json'), '{ "type": "module" }\n');
  const entry = path.join(root, 'evaluators', 'team_score', 'index.ts');
  mkdirSync(path.dirname(entry), { recursive: true });
  writeFileSync(entry, teamEvaluator(0.61));
  return { root, entry };
}

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (performance.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

for (const esModule of [false, true]) {
  test(`a team's plugin (${esModule ? 'ES module' : 'CommonJS'} folder) gets the gateway's own SDK module`, async (t) => {
    const { root } = teamFolder(t, { esModule });
    const plugin = await loadPlugin(discoverPlugins([root]).get('evaluator', 'team_score')!);
    const evaluator = (await plugin.module.create({ label: 'direct' }, testPluginContext({ at: 'test' }))) as Evaluator;
    const input = (answer: string) => ({
      request: { model: 'm', messages: [{ role: 'user' as const, content: 'hi' }], parameters: {}, metadata: {}, headers: {}, stream: false },
      response: {
        id: 'r',
        object: 'chat.completion' as const,
        created: 0,
        model: 'm',
        choices: [{ index: 0, message: { role: 'assistant' as const, content: answer }, finish_reason: 'stop' as const }],
      },
      features: {},
      model: { name: 'm', provider: 'p', upstream: 'm', price: { input_per_mtok: 1, output_per_mtok: 1 }, timeout_ms: 1000 },
    });
    const evaluation = await evaluator.evaluate(input('hello'), new AbortController().signal);
    assert.deepEqual(evaluation, { score: 0.61, details: { label: 'direct', answer_chars: 5 } });
    await assert.rejects(evaluator.evaluate(input('fail on purpose'), new AbortController().signal), (err: unknown) => {
      assert.ok(err instanceof UpstreamError, "the class the plugin throws is the gateway's own: one SDK module instance");
      return true;
    });
    await evaluator.dispose();
  });
}

test("a team's evaluator outside plugins/ passes the exported contract test, is hot-loaded by a policy edit, and an edit of it is picked up", async (t) => {
  const { root, entry } = teamFolder(t, { esModule: false });

  // The contract test a team runs on its own folder.
  await checkPluginContract(root);
  await checkPluginContract(path.dirname(entry), { kind: 'evaluator', options: { label: 'checked' } });

  const tg = await startTestGateway(simulatorPolicy(), { watch: true, debounceMs: 40 });
  t.after(() => tg.close());
  const ask = async () => {
    const res = await fetch(`${tg.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'support', messages: [{ role: 'user', content: 'Tell me about the history of tea' }] }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    return {
      quality: res.headers.get('x-tiergate-quality-score'),
      version: res.headers.get('x-tiergate-policy-version'),
      decisionId: res.headers.get('x-tiergate-decision-id'),
    };
  };
  const before = await ask();
  assert.equal(before.quality, null, 'no gate before the edit');

  // The policy names the team's folder and gates the route with its evaluator: picked up
  // by the watcher, no restart.
  tg.writePolicy(
    simulatorPolicy({
      extra: `plugins: { paths: [${JSON.stringify(root)}] }\n`,
      routes: `  support:
    router: { plugin: rules, rules: [] }
    default: small
    gate:
      evaluators:
        - { plugin: team_score, label: gateway }
      threshold: 0.5
      max_escalations: 1`,
    }),
  );
  const first = await waitFor('the policy edit to load the team plugin', async () => {
    const answer = await ask();
    return answer.version !== before.version ? answer : null;
  });
  assert.equal(first.quality, '0.610', "the team evaluator's score is the request's quality score");
  const decision = await waitFor('the decision line', async () => tg.decisions().find((d) => d.request_id === first.decisionId));
  assert.match(JSON.stringify(decision), /"label":"gateway"/, 'the decision line carries the evaluation details');

  // Editing only the plugin file: the new behaviour is picked up.
  writeFileSync(entry, teamEvaluator(0.93));
  const edited = await waitFor('the plugin edit to reload', async () => {
    const answer = await ask();
    return answer.version !== first.version ? answer : null;
  });
  assert.equal(edited.quality, '0.930');
});

// The command runs the compiled gateway (dist/), which starts without tsx and registers it
// only when a team's plugin is first loaded: a team's .ts plugin, in a CommonJS or an
// ES-module folder, still loads, gets the gateway's SDK and gates requests.
for (const esModule of [false, true]) {
  test(`tiergate serve (compiled) loads a team's TypeScript plugin from a ${esModule ? 'ES-module' : 'CommonJS'} folder`, { timeout: 30_000 }, async (t) => {
    const { root } = teamFolder(t, { esModule });
    const policyDir = mkdtempSync(path.join(tmpdir(), 'tiergate-team-cli-'));
    t.after(() => rmSync(policyDir, { recursive: true, force: true }));
    const policyFile = path.join(policyDir, 'gateway.yaml');
    writeFileSync(
      policyFile,
      simulatorPolicy({
        extra: `plugins: { paths: [${JSON.stringify(root)}] }\n`,
        routes: `  support:
    router: { plugin: rules, rules: [] }
    default: small
    gate:
      evaluators:
        - { plugin: team_score, label: cli }
      threshold: 0.5
      max_escalations: 1`,
      }),
    );
    const port = await freePort();
    const repo = path.resolve(import.meta.dirname, '../..');
    const child = spawn(
      process.execPath,
      [path.join(repo, 'bin', 'tiergate.js'), 'serve', '--config', policyFile, '--port', String(port), '--host', '127.0.0.1', '--no-watch'],
      {
        cwd: policyDir,
        env: { ...process.env, TIERGATE_LOG_FORMAT: 'json' },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    t.after(async () => {
      child.kill('SIGTERM');
      await exited;
    });
    const answer = await waitFor(
      'the CLI gateway to answer',
      async () => {
        if (child.exitCode !== null) assert.fail(`tiergate serve exited ${child.exitCode}: ${stderr}`);
        const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'support', messages: [{ role: 'user', content: 'Tell me about the history of tea' }] }),
        }).catch(() => null);
        return res;
      },
      20_000,
    );
    assert.equal(answer.status, 200, await answer.clone().text());
    assert.equal(answer.headers.get('x-tiergate-quality-score'), '0.610', "the team's TypeScript evaluator gated the answer");
  });
}
