// Graceful shutdown of the real CLI: `node bin/tiergate.js serve` gets SIGTERM while
// slow requests (JSON and streams, the streams mid-way) are in flight. It must stop
// accepting connections at once, finish every request in flight, flush the decision
// log, and exit 0: the test counts the decision lines against the requests that
// succeeded and finds none lost. Requests still running at server.shutdown_timeout_ms
// are stopped with a clear 503 (or a final stream event), and still logged. Bounded:
// every wait has a deadline, and the child is killed if it outlives the test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { sleep, waitFor } from '../support/wait.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const JSON_REQUESTS = 4;
const STREAM_REQUESTS = 4;

// Slow on purpose: a first token after ~400 ms, then ~40 tokens a second, so every
// request is still running when SIGTERM arrives.
const POLICY = `version: 1
providers:
  sim:
    plugin: simulator
    time_scale: 1
    profiles:
      sim-slow: { capability: 0.9, first_token_ms: 400, tokens_per_second: 40 }
models:
  slow-model: { provider: sim, upstream: sim-slow, price: { input_per_mtok: 1, output_per_mtok: 2 } }
tiers:
  - { name: only, models: [slow-model] }
routes:
  support:
    router: { plugin: rules, rules: [] }
    default: only
analytics:
  decision_log: { file: decisions.jsonl }
`;

/** Resolves with the connection error code, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

interface Served {
  proc: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  logs: Array<Record<string, unknown>>;
  stderr(): string;
  url: string;
  port: number;
  decisionsFile: string;
  /** Kills the child if it is still running and removes its folder. */
  cleanUp(): Promise<void>;
}

/** `tiergate serve` on `policy`, in a folder of its own, once it listens. */
async function serve(policy: string): Promise<Served> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-shutdown-'));
  const policyFile = path.join(dir, 'gateway.yaml');
  writeFileSync(policyFile, policy);
  const proc = spawn(
    process.execPath,
    [path.join(REPO, 'bin', 'tiergate.js'), 'serve', '--config', policyFile, '--port', '0', '--host', '127.0.0.1', '--no-watch'],
    {
      cwd: dir,
      env: { ...process.env, TIERGATE_LOG_LEVEL: 'info', TIERGATE_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const cleanUp = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await Promise.race([exited, sleep(2000)]);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    let exitedEarly = false;
    void exited.then(() => (exitedEarly = true));
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
      'the gateway to listen',
      () => {
        if (exitedEarly) assert.fail(`tiergate exited early: ${stderr}`);
        return logs.find((l) => typeof l.message === 'string' && l.message.startsWith('tiergate listening on '));
      },
      20_000,
    );
    const url = String(listening.message).slice('tiergate listening on '.length);
    return { proc, exited, logs, stderr: () => stderr, url, port: Number(new URL(url).port), decisionsFile: path.join(dir, 'decisions.jsonl'), cleanUp };
  } catch (err) {
    await cleanUp();
    throw err;
  }
}

function readDecisionLines(file: string): DecisionRecord[] {
  const text = readFileSync(file, 'utf8');
  assert.ok(text.endsWith('\n'), 'the log ends with a complete line');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as DecisionRecord);
}

test('SIGTERM: stop accepting, finish the requests in flight, flush the decision log, exit 0', { timeout: 60_000 }, async () => {
  let served: Served | null = null;
  try {
    served = await serve(POLICY);
    const { proc, logs, url, port, exited } = served;
    const stderr = served.stderr;
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 30_000 });
    const params = (i: number) => ({
      model: 'support',
      messages: [{ role: 'user' as const, content: `Explain step by step, request ${i}, why the sky is blue` }],
    });

    // In flight: JSON requests waiting for their answer, streams part-way through.
    let streamsStarted = 0;
    const jsonRequests = Array.from({ length: JSON_REQUESTS }, async (_, i) => {
      const { data, response } = await client.chat.completions.create(params(i)).withResponse();
      return {
        id: response.headers.get('x-tiergate-decision-id'),
        content: data.choices[0].message.content ?? '',
        stream: false,
        connection: response.headers.get('connection'),
      };
    });
    const streamRequests = Array.from({ length: STREAM_REQUESTS }, async (_, i) => {
      const { data, response } = await client.chat.completions.create({ ...params(JSON_REQUESTS + i), stream: true }).withResponse();
      let content = '';
      let chunks = 0;
      for await (const chunk of data) {
        if (++chunks === 2) streamsStarted++;
        content += chunk.choices[0]?.delta.content ?? '';
      }
      return { id: response.headers.get('x-tiergate-decision-id'), content, stream: true, connection: response.headers.get('connection') };
    });
    const early: string[] = [];
    for (const request of [...jsonRequests, ...streamRequests]) request.catch((err: unknown) => early.push(String(err)));
    const all = Promise.allSettled([...jsonRequests, ...streamRequests]);
    await waitFor(
      'every stream to be part-way through',
      () => {
        if (early.length > 0) assert.fail(`a request failed before SIGTERM: ${early[0]}`);
        return streamsStarted === STREAM_REQUESTS;
      },
      15_000,
    );
    const status = (await (await fetch(`${url}/admin/status`)).json()) as { inflight_requests: number };
    assert.equal(status.inflight_requests, JSON_REQUESTS + STREAM_REQUESTS, 'every request is in flight at SIGTERM');

    const signalledAt = performance.now();
    proc.kill('SIGTERM');
    await waitFor('the shutdown to begin', () => logs.some((l) => String(l.message).startsWith('shutting down')), 5000);
    // No new connection is accepted once shutdown has begun.
    assert.equal(
      await waitFor('new connections to be refused', async () => ((await tryConnect(port)) === 'ECONNREFUSED' ? 'ECONNREFUSED' : null), 2000),
      'ECONNREFUSED',
    );

    const settled = await all;
    const failures = settled.filter((s) => s.status === 'rejected').map((s) => String((s as PromiseRejectedResult).reason));
    assert.deepEqual(failures, [], 'every request in flight at SIGTERM finished');
    const answers = settled.map((s) => (s as PromiseFulfilledResult<{ id: string | null; content: string; stream: boolean; connection: string | null }>).value);
    for (const a of answers) {
      assert.ok(a.id, 'a decision id');
      assert.ok(a.content.length > 20, `a whole answer (${a.content.length} characters)`);
    }
    // The JSON answers began after SIGTERM: they tell the client not to send more on their connection.
    assert.deepEqual(
      answers.filter((a) => !a.stream).map((a) => a.connection),
      Array<string>(JSON_REQUESTS).fill('close'),
      'answers begun during the drain say connection: close',
    );

    const { code, signal } = await waitFor('tiergate to exit', () => exited, 20_000);
    assert.equal(signal, null, `tiergate exited by itself, not killed by ${signal}`);
    assert.equal(code, 0, `tiergate exits 0 after SIGTERM: ${stderr().slice(-2000)}`);
    assert.ok(performance.now() - signalledAt < 20_000, 'a bounded shutdown');
    assert.ok(
      logs.some((l) => l.message === 'stopped'),
      'the last log line says it stopped',
    );

    // Every request that succeeded has its decision line, flushed before the exit.
    const lines = readDecisionLines(served.decisionsFile);
    const byId = new Map(lines.map((l) => [l.request_id, l]));
    const lost = answers.filter((a) => !byId.has(a.id as string));
    assert.deepEqual(
      lost.map((a) => a.id),
      [],
      'no decision line lost',
    );
    assert.equal(lines.length, answers.length, 'one line per request, nothing else');
    for (const a of answers) {
      const line = byId.get(a.id as string)!;
      assert.equal(line.status, 'ok');
      assert.equal(line.stream, a.stream);
    }
  } finally {
    await served?.cleanUp();
  }
});

// Far too slow to finish: ~5 tokens a second, so every request is still running when the
// 700 ms shutdown deadline passes.
const DEADLINE_MS = 700;
const SLOW_POLICY = POLICY.replace('version: 1\n', `version: 1\nserver: { shutdown_timeout_ms: ${DEADLINE_MS} }\n`).replace(
  'first_token_ms: 400, tokens_per_second: 40',
  'first_token_ms: 300, tokens_per_second: 5',
);

test(
  'SIGTERM past server.shutdown_timeout_ms: requests still running are stopped with a 503 or a final stream event, logged, and the process exits 0',
  { timeout: 60_000 },
  async () => {
    assert.ok(SLOW_POLICY.includes('shutdown_timeout_ms') && SLOW_POLICY.includes('tokens_per_second: 5'));
    let served: Served | null = null;
    try {
      served = await serve(SLOW_POLICY);
      const { proc, logs, url, exited } = served;
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 30_000 });
      const params = (i: number) => ({
        model: 'support',
        messages: [{ role: 'user' as const, content: `Explain step by step, request ${i}, why the sky is blue` }],
      });
      let streamsStarted = 0;
      const jsonRequests = Array.from({ length: 2 }, async (_, i) => {
        const { response } = await client.chat.completions.create(params(i)).withResponse();
        return response.headers.get('x-tiergate-decision-id');
      });
      const streamed: string[] = [];
      const streamRequests = Array.from({ length: 2 }, async (_, i) => {
        const { data } = await client.chat.completions.create({ ...params(2 + i), stream: true }).withResponse();
        let chunks = 0;
        for await (const chunk of data) {
          if (++chunks === 2) streamsStarted++;
          streamed[i] = (streamed[i] ?? '') + (chunk.choices[0]?.delta.content ?? '');
        }
      });
      const all = Promise.allSettled([...jsonRequests, ...streamRequests]);
      await waitFor('both streams to be part-way through', () => streamsStarted === 2, 15_000);

      const signalledAt = performance.now();
      proc.kill('SIGTERM');
      const settled = await all;
      const stoppedAfter = performance.now() - signalledAt;
      assert.ok(stoppedAfter >= DEADLINE_MS - 50, `requests were stopped after ${stoppedAfter.toFixed(0)} ms, not before the deadline`);
      assert.ok(stoppedAfter < DEADLINE_MS + 3000, `requests were stopped ${stoppedAfter.toFixed(0)} ms after SIGTERM`);
      for (const [i, result] of settled.entries()) {
        assert.equal(result.status, 'rejected', `request ${i} was stopped`);
        const error = (result as PromiseRejectedResult).reason as { status?: number; code?: string; message: string };
        assert.match(error.message, /shutting down/, `request ${i}: ${error.message}`);
        // The JSON requests get the status line; a stream is already 200 and gets the error as its last event.
        if (i < 2) {
          assert.equal(error.status, 503);
          assert.equal(error.code, 'TG_ERR_SHUTTING_DOWN');
        }
      }
      assert.ok(
        streamed.every((text) => text.length > 0),
        'the streams had sent part of their answer',
      );

      const { code, signal } = await waitFor('tiergate to exit', () => exited, 10_000);
      assert.equal(signal, null);
      assert.equal(code, 0, `tiergate exits 0: ${served.stderr().slice(-2000)}`);
      const warning = logs.find((l) => l.message === 'shutting down: stopping the requests still in flight');
      assert.ok(warning, 'the stop is logged');
      assert.equal(warning.in_flight, 4);

      // Each stopped request still has its decision line, saying why it ended.
      const lines = readDecisionLines(served.decisionsFile);
      assert.equal(lines.length, 4);
      for (const line of lines) {
        assert.equal(line.status, 'error');
        assert.equal(line.error_code, 'TG_ERR_SHUTTING_DOWN');
      }
      assert.deepEqual(lines.map((l) => l.stream).sort(), [false, false, true, true]);
    } finally {
      await served?.cleanUp();
    }
  },
);
