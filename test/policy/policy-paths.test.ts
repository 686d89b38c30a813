// Files a policy names stay where they belong. Plugin code is imported only from inside
// the configured plugin folders (the built-in plugins/ and plugins.paths): a plugin folder
// or entry file that is a symbolic link leading elsewhere is refused. Files named by
// options ("x-path" in a schema: a classifier's model_path, a bandit's state.file, the
// replay dataset, analytics.decision_log.file) must stay inside the policy's folder,
// whether `..` or a symbolic link would lead them out. Each refusal is a located error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildRuntime } from '../../src/policy/compile.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { PolicyErrors, type TiergateError } from '../../src/common/errors.ts';
import { simulatorPolicy } from '../support/gateway.ts';

const ROUTER_PLUGIN = `export default {
  meta: { id: 'evil', kind: 'router', contract: 1, description: 'Outside the plugin folder.', options: { type: 'object', additionalProperties: false, properties: {} } },
  async create() { return { route: () => ({ tier: 'small', reason: 'evil' }), async dispose() {} }; },
};
`;

/** A policy folder and, next to it, a folder it must not reach. */
function layout(t: { after(fn: () => void): void }): { dir: string; outside: string; write(name: string, text: string): string } {
  const root = mkdtempSync(path.join(tmpdir(), 'tiergate-paths-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, 'policy');
  const outside = path.join(root, 'outside');
  mkdirSync(dir);
  mkdirSync(outside);
  return {
    dir,
    outside,
    write(name, text) {
      const file = path.join(dir, name);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, text);
      return file;
    },
  };
}

async function errorsOf(file: string): Promise<TiergateError[]> {
  try {
    const runtime = await buildRuntime(file, { logger: createLogger({ level: 'silent' }), mode: 'validate' });
    await runtime.dispose();
    return [];
  } catch (err) {
    if (err instanceof PolicyErrors) return [...err.errors];
    throw err;
  }
}

const lineOf = (text: string, needle: string) => text.split('\n').findIndex((l) => l.includes(needle)) + 1;

function classifierPolicy(modelPath: string): string {
  return simulatorPolicy({ routes: `  learned:\n    router:\n      plugin: classifier\n      model_path: ${modelPath}\n    default: large\n` });
}

test('a classifier model_path that climbs out with .. is a located error [TG_ERR_CONFIG_PATH]', async (t) => {
  const { outside, write } = layout(t);
  writeFileSync(path.join(outside, 'model.json'), '{}');
  const text = classifierPolicy('../outside/model.json');
  const errors = await errorsOf(write('gateway.yaml', text));
  assert.equal(errors.length, 1, errors.map((e) => e.located()).join('\n'));
  assert.equal(errors[0].code, 'TG_ERR_CONFIG_PATH');
  assert.equal(errors[0].location?.line, lineOf(text, 'model_path'));
  assert.equal(errors[0].location?.path, 'routes.learned.router.model_path');
  assert.match(errors[0].message, /"\.\.\/outside\/model\.json" resolves to .*outside.model\.json, outside the policy's folder/);
  // An absolute path outside is refused the same way.
  const absolute = await errorsOf(write('gateway.yaml', classifierPolicy(JSON.stringify(path.join(outside, 'model.json')))));
  assert.deepEqual(
    absolute.map((e) => e.code),
    ['TG_ERR_CONFIG_PATH'],
  );
});

test('a model_path through a symbolic link that leads out of the folder is refused; one that stays inside is fine', async (t) => {
  const { dir, outside, write } = layout(t);
  writeFileSync(path.join(outside, 'model.json'), '{}');
  symlinkSync(path.join(outside, 'model.json'), path.join(dir, 'model.json'));
  mkdirSync(path.join(dir, 'models'));
  symlinkSync(outside, path.join(dir, 'models', 'shared'));
  for (const modelPath of ['model.json', 'models/shared/model.json']) {
    const errors = await errorsOf(write('gateway.yaml', classifierPolicy(modelPath)));
    assert.deepEqual(
      errors.map((e) => e.code),
      ['TG_ERR_CONFIG_PATH'],
      modelPath,
    );
    assert.match(errors[0].message, /leads through a symbolic link to .*outside/);
  }
  // Inside the folder, links are fine (a Kubernetes ConfigMap is mounted through them).
  mkdirSync(path.join(dir, '..data'));
  writeFileSync(path.join(dir, '..data', 'router.json'), '{}');
  symlinkSync(path.join('..data', 'router.json'), path.join(dir, 'router.json'));
  const inside = await errorsOf(write('gateway.yaml', classifierPolicy('router.json')));
  assert.ok(
    inside.every((e) => e.code !== 'TG_ERR_CONFIG_PATH'),
    inside.map((e) => e.located()).join('\n'),
  );
});

test('a bandit state file (written by the gateway) may not lead out, not even through a dangling link', async (t) => {
  const { dir, outside, write } = layout(t);
  const bandit = (file: string) =>
    simulatorPolicy({ routes: `  learn:\n    router:\n      plugin: bandit\n      state: { file: ${file} }\n    default: large\n` });
  // The target does not exist yet: writing through the link would create it outside.
  symlinkSync(path.join(outside, 'stolen.json'), path.join(dir, 'state.json'));
  for (const file of ['state/../../outside/bandit.json', 'state.json']) {
    const text = bandit(file);
    const errors = await errorsOf(write('gateway.yaml', text));
    assert.deepEqual(
      errors.map((e) => e.code),
      ['TG_ERR_CONFIG_PATH'],
      file,
    );
    assert.equal(errors[0].location?.path, 'routes.learn.router.state.file');
    assert.equal(errors[0].location?.line, lineOf(text, 'state: {'));
  }
  assert.deepEqual(await errorsOf(write('gateway.yaml', bandit('state/bandit.json'))), []);
});

test('analytics.decision_log.file must stay inside the policy folder', async (t) => {
  const { dir, write } = layout(t);
  const logTo = (file: string) => simulatorPolicy().replace('decision_log: { file: decisions.jsonl }', `decision_log: { file: ${file} }`);
  const text = logTo('../../decisions.jsonl');
  const errors = await errorsOf(write('gateway.yaml', text));
  assert.deepEqual(
    errors.map((e) => e.code),
    ['TG_ERR_CONFIG_PATH'],
  );
  assert.match(
    errors[0].located(),
    new RegExp(`gateway\\.yaml:${lineOf(text, 'decision_log')}:\\d+ analytics\\.decision_log\\.file: .*\\[TG_ERR_CONFIG_PATH\\]$`),
  );
  assert.deepEqual(await errorsOf(write('gateway.yaml', logTo(JSON.stringify(path.join(dir, 'logs', 'd.jsonl'))))), []);
});

test('a plugin folder or entry file linked from outside its plugin folder is refused [TG_ERR_PLUGIN_PATH]', async (t) => {
  const { dir, outside, write } = layout(t);
  mkdirSync(path.join(outside, 'evil'));
  writeFileSync(path.join(outside, 'evil', 'index.js'), ROUTER_PLUGIN);
  mkdirSync(path.join(dir, 'team-plugins', 'routers', 'sneaky'), { recursive: true });
  const policy = simulatorPolicy({ routes: `  support:\n    router: { plugin: evil }\n    default: large\n`, extra: 'plugins: { paths: [team-plugins] }\n' });

  symlinkSync(path.join(outside, 'evil'), path.join(dir, 'team-plugins', 'routers', 'evil'));
  let errors = await errorsOf(write('gateway.yaml', policy));
  assert.ok(
    errors.some(
      (e) =>
        e.code === 'TG_ERR_PLUGIN_PATH' && /router plugin "evil" leads through a symbolic link to .*outside.evil, outside its plugin folder/.test(e.message),
    ),
    errors.map((e) => e.located()).join('\n'),
  );
  assert.ok(
    errors.every((e) => e.location?.file),
    'located',
  );

  rmSync(path.join(dir, 'team-plugins', 'routers', 'evil'));
  symlinkSync(path.join(outside, 'evil', 'index.js'), path.join(dir, 'team-plugins', 'routers', 'sneaky', 'index.js'));
  errors = await errorsOf(write('gateway.yaml', policy));
  assert.ok(
    errors.some((e) => e.code === 'TG_ERR_PLUGIN_PATH' && /router plugin "sneaky"/.test(e.message)),
    errors.map((e) => e.located()).join('\n'),
  );
});

test('a plugin name cannot walk the file system: plugins are found by folder listing, never by path', async (t) => {
  const { write } = layout(t);
  const text = simulatorPolicy({ routes: `  support:\n    router: { plugin: rules/../../outside/evil }\n    default: large\n` });
  const errors = await errorsOf(write('gateway.yaml', text));
  assert.deepEqual(
    errors.map((e) => e.code),
    ['TG_ERR_PLUGIN_UNKNOWN'],
  );
  assert.equal(errors[0].location?.line, lineOf(text, 'plugin: rules/'));
});
