// The command line, as a user runs it: `node bin/tiergate.js ...` in a child process
// from the repository root. validate prints a summary or every located error; serve
// listens on --port, else $PORT, and exits 0 promptly on SIGTERM. Servers get a free
// port found just before (never a fixed one) and a policy copied to a temporary folder,
// so nothing is written into the repository.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { simulatorPolicy } from '../support/gateway.ts';
import { freePort } from '../support/ports.ts';

const repoRoot = path.resolve(import.meta.dirname, '../..');
const invalidDir = path.join(repoRoot, 'test/fixtures/policies/invalid');
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A clean environment: nothing from the developer's shell (API keys, PORT, provider switches) leaks in. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, TIERGATE_LOG_LEVEL: 'error' };
  if (process.env.TMPDIR) env.TMPDIR = process.env.TMPDIR;
  return { ...env, ...extra };
}

type Spawned = ChildProcess & { output: { stdout: string; stderr: string }; closed: Promise<[number | null, NodeJS.Signals | null]> };

function tiergate(args: string[], env: NodeJS.ProcessEnv = cleanEnv()): Spawned {
  const child = spawn(process.execPath, ['bin/tiergate.js', ...args], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output.stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output.stderr += chunk));
  // 'close' (not 'exit') comes after the child's output has been read to the end.
  const closed = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  return Object.assign(child, { output, closed });
}

/** Waits for the child to exit, at most `ms`; kills it (and fails) when it does not. */
async function exited(child: Spawned, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`process did not exit within ${ms} ms`)), ms);
  });
  try {
    const [code, signal] = await Promise.race([child.closed, timeout]);
    return { code, signal };
  } finally {
    clearTimeout(timer);
  }
}

async function run(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = tiergate(args, env);
  try {
    const { code } = await exited(child, 20_000);
    return { code, ...child.output };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** Polls GET /healthz until it answers 200; fails early if the process exits. */
async function waitHealthy(child: ReturnType<typeof tiergate>, port: number, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      assert.fail(`tiergate exited (${child.exitCode ?? child.signalCode}) before serving:\n${child.output.stderr}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) {
        assert.deepEqual(await res.json(), { status: 'ok' });
        return;
      }
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`GET /healthz on port ${port} did not succeed within ${ms} ms:\n${child.output.stderr}`);
}

function tempPolicy(yaml: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-cli-'));
  dirs.push(dir);
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, yaml);
  return file;
}

/** Starts `tiergate serve`, checks it is healthy on `port`, then stops it with SIGTERM: exit 0, promptly. */
async function serveAndStop(args: string[], env: NodeJS.ProcessEnv, port: number, whileUp?: () => Promise<void>): Promise<void> {
  const child = tiergate(['serve', ...args], env);
  try {
    await waitHealthy(child, port);
    await whileUp?.();
    const started = Date.now();
    assert.ok(child.kill('SIGTERM'));
    const { code, signal } = await exited(child, 3_000);
    assert.equal(signal, null, `killed by ${signal}:\n${child.output.stderr}`);
    assert.equal(code, 0, child.output.stderr);
    assert.ok(Date.now() - started < 3_000);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** The located prefix each "# expect:" line of an invalid fixture promises. */
function expectedLines(file: string): Array<{ prefix: string; code: string }> {
  const text = readFileSync(file, 'utf8');
  const display = path.relative(repoRoot, file);
  return [...text.matchAll(/^# expect: (.*)$/gm)].map((m) => {
    const [code, where, errorPath] = m[1].split(' ~ ')[0].trim().split(/\s+/);
    const prefix = /^\d+:\d+$/.test(where) ? `${display}:${where}${errorPath ? ` ${errorPath}` : ''}: ` : `${where}: `;
    return { prefix, code };
  });
}

// Each test spawns its own process on its own port and folder, so they run side by side.
describe('tiergate command line', { concurrency: 4 }, () => {
  test('validate gateway.yaml: exit 0 and a summary of routes, tiers, models and plugins', async () => {
    const { code, stdout, stderr } = await run(['validate', 'gateway.yaml']);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^gateway\.yaml: valid \(policy version [0-9a-f]{12}\)/);
    assert.match(stdout, /tiers \(cheapest first\):\n\s+1\. small\s+gpt-4o-mini\n\s+2\. large\s+gpt-4o\n/);
    assert.match(stdout, /models:\n\s+gpt-4o-mini\s+simulator\/simulator, \$0\.15\/\$0\.6 per 1M in\/out\n\s+gpt-4o\s+simulator\/simulator/);
    assert.match(stdout, /routes:\n\s+support\s+router rules, default tier large, fallback tier large, embeddings text-embedding-3-small\n/);
    // An embedding model has an input price only, and says what it answers.
    assert.match(stdout, /\n\s+text-embedding-3-small\s+simulator\/simulator, embeddings, \$0\.02 per 1M in\n/);
    assert.match(stdout, /features: task_type, domain, field_count, prompt_tokens/);
    assert.match(stdout, /plugins: +providers simulator; routers rules/);
    assert.equal(stderr, '');
  });

  test('validate with no file: the gateway.yaml of the working directory', async () => {
    const { code, stdout, stderr } = await run(['validate']);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^gateway\.yaml: valid/);
  });

  test('validate an invalid policy: exit 1 and every error on stderr as FILE:LINE:COL PATH: message [CODE]', async () => {
    for (const name of ['several-errors.yaml', 'env-missing.yaml']) {
      const file = path.join(invalidDir, name);
      const { code, stdout, stderr } = await run(['validate', path.relative(repoRoot, file)]);
      assert.equal(code, 1, stderr);
      assert.equal(stdout, '', 'nothing on stdout when the policy is invalid');
      const lines = stderr.split('\n').filter((l) => l.startsWith(path.relative(repoRoot, file)));
      const expected = expectedLines(file);
      assert.ok(expected.length >= 3);
      assert.equal(lines.length, expected.length, stderr);
      for (const { prefix, code: errorCode } of expected) {
        const line = lines.find((l) => l.startsWith(prefix));
        assert.ok(line, `no line starting ${JSON.stringify(prefix)} in:\n${stderr}`);
        assert.match(line, new RegExp(`: .+ \\[${errorCode}\\]$`));
      }
      assert.match(stderr, new RegExp(`\\n${expected.length} errors: the policy was not loaded\\.\\n$`));
    }
  });

  test('validate a policy with a broken plugin: the error names the plugin file', async () => {
    const file = path.join(invalidDir, 'plugin-id-mismatch.yaml');
    const { code, stderr } = await run(['validate', path.relative(repoRoot, file)]);
    assert.equal(code, 1);
    const [{ prefix }] = expectedLines(file);
    assert.ok(
      stderr.split('\n').some((l) => l.startsWith(prefix) && l.endsWith('[TG_ERR_PLUGIN_INVALID]')),
      stderr,
    );
    assert.match(stderr, /\n1 error: the policy was not loaded\.\n$/);
  });

  test('validate a file that does not exist: exit 1, TG_ERR_CONFIG_READ', async () => {
    const { code, stdout, stderr } = await run(['validate', 'missing.yaml']);
    assert.equal(code, 1);
    assert.equal(stdout, '');
    assert.match(stderr, /^missing\.yaml: cannot read the policy file: no such file \[TG_ERR_CONFIG_READ\]$/m);
  });

  test('serve --port: GET /healthz answers, SIGTERM exits 0 promptly', async () => {
    const policy = tempPolicy(simulatorPolicy());
    const port = await freePort();
    await serveAndStop(['--config', policy, '--port', String(port), '--host', '127.0.0.1'], cleanEnv(), port);
  });

  test('serve with PORT in the environment and no --port listens on $PORT', async () => {
    const policy = tempPolicy(simulatorPolicy());
    const port = await freePort();
    await serveAndStop(['--config', policy, '--host', '127.0.0.1'], cleanEnv({ PORT: String(port) }), port);
  });

  test('serve: --port wins over PORT', async () => {
    const policy = tempPolicy(simulatorPolicy());
    const [flagPort, envPort] = [await freePort(), await freePort()];
    assert.notEqual(flagPort, envPort);
    await serveAndStop(['--config', policy, '--port', String(flagPort), '--host', '127.0.0.1'], cleanEnv({ PORT: String(envPort) }), flagPort, async () => {
      await assert.rejects(fetch(`http://127.0.0.1:${envPort}/healthz`, { signal: AbortSignal.timeout(1000) }), 'nothing listens on $PORT');
    });
  });

  test('serve the shipped gateway.yaml (a copy): routes a request, exits 0 on SIGTERM', async () => {
    const policy = tempPolicy(readFileSync(path.join(repoRoot, 'gateway.yaml'), 'utf8'));
    const port = await freePort();
    await serveAndStop(['--config', policy, '--port', String(port)], cleanEnv({ SIMULATOR_TIME_SCALE: '0' }), port, async () => {
      const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'support',
          messages: [{ role: 'user', content: 'Is this a complaint? "My order is late."' }],
          metadata: { task_type: 'classification' },
        }),
        signal: AbortSignal.timeout(10_000),
      });
      const body = (await res.json()) as { model?: string; choices?: unknown[] };
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.model, 'gpt-4o-mini', 'classification goes to the small tier');
      assert.equal(body.choices?.length, 1);
    });
    // The decision was logged next to the copy (logs/ relative to the policy), not into the repository.
    const logged = readFileSync(path.join(path.dirname(policy), 'logs/decisions.jsonl'), 'utf8')
      .trim()
      .split('\n');
    assert.equal(logged.length, 1);
    assert.equal((JSON.parse(logged[0]) as { route?: string }).route, 'support');
  });

  test('serve an invalid policy: exit 1 with the located errors, nothing listening', async () => {
    const policy = tempPolicy(simulatorPolicy().replace('default: large', 'default: largest'));
    const port = await freePort();
    const { code, stderr } = await run(['serve', '--config', policy, '--port', String(port), '--host', '127.0.0.1']);
    assert.equal(code, 1);
    assert.match(stderr, /gateway\.yaml:\d+:\d+ routes\.support\.default: no tier or model named "largest".* \[TG_ERR_CONFIG_REFERENCE\]/);
    await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) }));
  });
});
