// Secrets never leave the gateway. A real `tiergate serve` process, with distinctive
// fake secrets (a provider key and a provider header from ${VAR}s, gateway keys from the
// environment and written in the file, an admin token), serves traffic that makes an
// upstream fail in ways that quote what it was sent (401 "Incorrect API key provided:
// …", a 500 echoing every request header), a judge that fails the same way, bad
// requests, wrong credentials, and a policy reload whose errors would quote a secret.
// Then every output is searched for every secret: the process's stdout and stderr
// (debug-level JSON logs, decision lines on the console), the decision log file,
// /admin/status, /metrics, /dashboard and its data, /v1/models, and every response
// body and header the clients got.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { startFakeOpenAI } from '../support/fake-openai.ts';

const repoRoot = path.resolve(import.meta.dirname, '../..');

const SECRETS = {
  PROVIDER_KEY: 'sk-fake-PROVIDER-SECRET-9f8e7d6c5b4a',
  PROVIDER_HEADER: 'hdr-PROVIDER-SECRET-5566778899',
  TEAM_KEY: 'tg-team-SECRET-1a2b3c4d5e6f',
  ADMIN_TOKEN: 'tg-admin-SECRET-0f1e2d3c4b5a',
  METRICS_TOKEN: 'tg-scraper-SECRET-6a7b8c9d0e1f',
};
const LITERAL_KEY = 'tg-literal-SECRET-in-the-file-77aa';
const ALL_SECRETS = [...Object.values(SECRETS), LITERAL_KEY];

function policy(baseURL: string, broken = false): string {
  return `version: 1
server:
  auth:
    keys:
      - { name: team-a, key: \${TEAM_KEY}, routes: ${broken ? '[ok, ${TEAM_KEY}]' : "'*'"}, models: '*' }
      - { name: in-file, key: ${LITERAL_KEY}, routes: [ok] }
    admin_token: \${ADMIN_TOKEN}
    metrics_token: \${METRICS_TOKEN}
providers:
  up:
    plugin: openai
    api_key: \${PROVIDER_KEY}
    base_url: ${baseURL}
    headers: { x-provider-header: \${PROVIDER_HEADER} }
models:
  rejects: { provider: up, price: { input_per_mtok: 1, output_per_mtok: 1 } }
  fails: { provider: up, price: { input_per_mtok: 1, output_per_mtok: 1 } }
  good: { provider: up, price: { input_per_mtok: 2, output_per_mtok: 2 } }
tiers:
  - { name: small, models: [rejects] }
  - { name: medium, models: [fails] }
  - { name: large, models: [good] }
resilience: { retries: 0, failure_threshold: 1000 }
routes:
  ok: { router: { plugin: rules, rules: [] }, default: large }
  unauthorized: { router: { plugin: rules, rules: [] }, default: small, fallback: rejects }
  broken: { router: { plugin: rules, rules: [] }, default: medium, fallback: fails }
  climbing: { router: { plugin: rules, rules: [] }, default: small, gate: { evaluators: [ { plugin: heuristics } ], threshold: 0, max_escalations: 2 } }
  judged:
    router: { plugin: rules, rules: [] }
    default: ${broken ? '${PROVIDER_KEY}' : 'large'}
    gate: { evaluators: [ { plugin: llm_judge, model: rejects } ], max_escalations: 0 }
analytics:
  decision_log: { file: decisions.jsonl, console: true }
`;
}

test('no provider key, gateway key or admin token appears in any log, error, admin answer, metric or dashboard data', async (t) => {
  const fake = await startFakeOpenAI({
    behave: (body, req) => {
      const sent = JSON.stringify(req.headers);
      if (body?.model === 'rejects')
        return {
          kind: 'status',
          status: 401,
          body: {
            error: {
              message: `Incorrect API key provided: ${req.headers.authorization}. You sent ${sent}`,
              type: 'invalid_request_error',
              param: null,
              code: 'invalid_api_key',
            },
          },
        };
      if (body?.model === 'fails') return { kind: 'status', status: 500, body: `upstream exploded while serving ${sent}` };
      return { kind: 'reply' };
    },
  });
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-secrets-'));
  const file = path.join(dir, 'gateway.yaml');
  writeFileSync(file, policy(fake.baseURL));
  const child = spawn(process.execPath, ['bin/tiergate.js', 'serve', '-c', file, '--port', '0', '--no-watch'], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TIERGATE_LOG_LEVEL: 'debug', TIERGATE_LOG_FORMAT: 'json', ...SECRETS },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output.stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output.stderr += chunk));
  const closed = once(child, 'close');
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const deadline = Date.now() + 20_000;
  let url: string | null = null;
  while (!url) {
    url = /tiergate listening on (http:\/\/[^\s"]+)/.exec(output.stderr)?.[1] ?? null;
    if (child.exitCode !== null) assert.fail(`the gateway exited: ${output.stderr}`);
    if (Date.now() > deadline) assert.fail(`the gateway did not start: ${output.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }

  // Everything a client or an operator gets back, headers included.
  const seen: string[] = [];
  const call = async (pathname: string, init: RequestInit = {}) => {
    const res = await fetch(`${url}${pathname}`, init);
    const text = await res.text();
    seen.push(`${init.method ?? 'GET'} ${pathname} → ${res.status}\n${JSON.stringify([...res.headers])}\n${text}`);
    return { status: res.status, text };
  };
  const json = (token: string | null, body: unknown) => ({
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const ask = (model: string, extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: 'user', content: 'Where is my parcel?' }], ...extra });

  // Through the official SDK: an answer, then the upstream's 401 and 500 relayed.
  const sdk = new OpenAI({ baseURL: `${url}/v1`, apiKey: SECRETS.TEAM_KEY, maxRetries: 0, timeout: 10_000 });
  const answered = await sdk.chat.completions.create(ask('ok') as never);
  seen.push(JSON.stringify(answered));
  for (const route of ['unauthorized', 'broken']) {
    const error = await sdk.chat.completions.create(ask(route) as never).then(
      () => assert.fail(`${route} should fail`),
      (err: unknown) => err as InstanceType<typeof OpenAI.APIError>,
    );
    seen.push(JSON.stringify({ status: error.status, message: error.message, error: error.error, headers: [...(error.headers ?? new Headers())] }));
  }
  assert.ok(
    seen.some((s) => s.includes('[redacted]')),
    'the upstream really echoed the key (and the gateway redacted it)',
  );

  const raw = [
    await call('/v1/chat/completions', json(SECRETS.TEAM_KEY, ask('unauthorized', { stream: true }))),
    await call('/v1/chat/completions', json(SECRETS.TEAM_KEY, ask('climbing'))),
    await call('/v1/chat/completions', json(SECRETS.TEAM_KEY, ask('judged'))),
    await call('/v1/chat/completions', json(SECRETS.TEAM_KEY, ask('rejects'))),
    await call('/v1/chat/completions', json(LITERAL_KEY, ask('ok'))),
    await call('/v1/chat/completions', json(LITERAL_KEY, ask('broken'))),
    await call('/v1/chat/completions', json(SECRETS.TEAM_KEY, '{"model": "ok", "messages": [')),
    await call('/v1/chat/completions', json(SECRETS.TEAM_KEY, { model: 'ok' })),
    await call('/v1/chat/completions', json(SECRETS.TEAM_KEY, ask(SECRETS.PROVIDER_KEY))),
    await call('/v1/chat/completions', json(null, ask('ok'))),
    await call('/v1/chat/completions', json(SECRETS.PROVIDER_KEY, ask('ok'))),
    await call('/v1/chat/completions', json(SECRETS.ADMIN_TOKEN, ask('ok'))),
    await call('/v1/chat/completions', json(SECRETS.TEAM_KEY.slice(0, -1), ask('ok'))),
    await call('/admin/status', { headers: { authorization: `Bearer ${SECRETS.TEAM_KEY}` } }),
    await call('/metrics', { headers: { authorization: `Bearer ${SECRETS.PROVIDER_KEY}` } }),
    await call('/admin/status', { headers: { authorization: `Bearer ${SECRETS.METRICS_TOKEN}` } }),
    await call('/metrics', { headers: { authorization: `Bearer ${SECRETS.METRICS_TOKEN}` } }),
  ];
  assert.deepEqual(
    raw.map((r) => r.status),
    [502, 200, 200, 502, 200, 403, 400, 400, 404, 401, 401, 401, 401, 401, 401, 401, 200],
  );

  // A reload whose errors would quote a gateway key and the provider key.
  writeFileSync(file, policy(fake.baseURL, true));
  const admin = { authorization: `Bearer ${SECRETS.ADMIN_TOKEN}` };
  const reload = await call('/admin/reload', { method: 'POST', headers: admin });
  assert.equal(reload.status, 422);
  assert.match(reload.text, /no route named \\"(\$\{TEAM_KEY\}|\[redacted\])\\"/, reload.text);
  assert.match(reload.text, /no tier or model named \\"(\$\{PROVIDER_KEY\}|\[redacted\])\\"/, reload.text);

  const status = await call('/admin/status', { headers: admin });
  assert.match(status.text, /last_reload_error/);
  await call('/metrics', { headers: admin });
  await call('/dashboard/data', { headers: admin });
  await call('/dashboard/', { headers: admin });
  await call('/v1/models', { headers: { authorization: `Bearer ${SECRETS.TEAM_KEY}` } });

  child.kill('SIGTERM');
  await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the gateway did not stop')), 10_000))]);
  const decisionLog = readFileSync(path.join(dir, 'decisions.jsonl'), 'utf8');

  // The secrets were really in play: the upstream got the provider's key and header.
  assert.ok(
    fake.requests.some((r) => r.headers.authorization === `Bearer ${SECRETS.PROVIDER_KEY}` && r.headers['x-provider-header'] === SECRETS.PROVIDER_HEADER),
  );
  // Decision lines name the key that called, by name.
  const lines = decisionLog
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { api_key_name?: string; attempts: Array<{ error?: string }> });
  assert.ok(lines.length >= 10);
  assert.deepEqual(new Set(lines.map((l) => l.api_key_name)), new Set(['team-a', 'in-file']));
  assert.ok(
    lines.some((l) => l.attempts.some((a) => a.error?.includes('[redacted]'))),
    'attempt errors quote the upstream, redacted',
  );
  assert.match(output.stderr, /policy reload rejected/);
  assert.match(output.stderr, /request refused/);

  const outputs: Record<string, string> = {
    stdout: output.stdout,
    stderr: output.stderr,
    'decision log': decisionLog,
    ...Object.fromEntries(seen.map((s, i) => [`response ${i}: ${s.split('\n')[0]}`, s])),
  };
  for (const [where, text] of Object.entries(outputs)) {
    for (const secret of ALL_SECRETS) {
      const at = text.indexOf(secret);
      assert.equal(at, -1, `${where} contains a secret: …${text.slice(Math.max(0, at - 80), at + secret.length + 20)}…`);
    }
  }
});
