// `tiergate serve` as an operator runs it (`node bin/tiergate.js serve`, from dist/), in a
// child process and a folder of its own, for tests that need a real process: signals,
// files moved under it, its log lines. The child is killed and its folder removed by
// stop(), and with the test that started it.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { sleep, waitFor } from './wait.ts';

const REPO = path.resolve(import.meta.dirname, '../..');

export interface CliGateway {
  proc: ChildProcess;
  /** http://127.0.0.1:PORT */
  url: string;
  /** The folder of gateway.yaml (and of the files given). */
  dir: string;
  /** The operational log lines (JSON) so far. */
  logs: Array<Record<string, unknown>>;
  stderr(): string;
  /** Kills the child if it still runs and removes its folder. Idempotent. */
  stop(): Promise<void>;
}

/** `tiergate serve --no-watch` on `policy`, once it listens. `files`: more files beside gateway.yaml, by relative path. */
export async function serveCli(
  t: TestContext,
  policy: string,
  options: { files?: Record<string, string>; args?: string[]; env?: NodeJS.ProcessEnv } = {},
): Promise<CliGateway> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-cli-'));
  const policyFile = path.join(dir, 'gateway.yaml');
  writeFileSync(policyFile, policy);
  for (const [name, content] of Object.entries(options.files ?? {})) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  const proc = spawn(
    process.execPath,
    [path.join(REPO, 'bin', 'tiergate.js'), 'serve', '--config', policyFile, '--port', '0', '--host', '127.0.0.1', ...(options.args ?? ['--no-watch'])],
    { cwd: dir, env: { ...process.env, TIERGATE_LOG_LEVEL: 'info', TIERGATE_LOG_FORMAT: 'json', ...options.env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await Promise.race([exited, sleep(2000)]);
      }
      rmSync(dir, { recursive: true, force: true });
    })());
  t.after(stop);

  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  let pending = '';
  proc.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
    pending += text;
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
      try {
        logs.push(JSON.parse(pending.slice(0, nl)) as Record<string, unknown>);
      } catch {
        // not a JSON log line
      }
      pending = pending.slice(nl + 1);
    }
  });
  const listening = await waitFor(
    'tiergate serve to listen',
    () => {
      if (proc.exitCode !== null) assert.fail(`tiergate exited early (${proc.exitCode}): ${stderr}`);
      return logs.find((l) => typeof l.message === 'string' && l.message.startsWith('tiergate listening on '));
    },
    20_000,
  );
  const url = String(listening.message).slice('tiergate listening on '.length);
  return { proc, url, dir, logs, stderr: () => stderr, stop };
}
