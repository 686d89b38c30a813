// The bandit router in a running gateway: feedback over real HTTP (keys, gate scores as
// rewards, hot reload, Redis down) and replicas (two real gateway processes on one Redis
// key, feedback posted to the replica that did not serve the request). The router called
// directly is in bandit.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { Redis } from 'ioredis';
import { readFeedback, readLogs } from '../../src/analysis/report.ts';
import { simulatorPolicy, startTestGateway } from '../support/gateway.ts';
import { PREFIX, REDIS_URL, REPO, redisKeysDeletedAfter } from '../support/bandit.ts';
import { waitFor } from '../support/wait.ts';

const redisKeys = redisKeysDeletedAfter();

function banditPolicy(router: string, gate = '', extra?: string): string {
  return simulatorPolicy({
    extra,
    routes: `  learn:
    router:
      plugin: bandit
${router
  .split('\n')
  .map((l) => `      ${l}`)
  .join('\n')}
    default: large
${gate}`,
  });
}

interface Status {
  router_state: Record<string, { arms: Record<string, { mean: number; count: number }>; updates: number; state: { redis: { connected: boolean } | null } }>;
}

async function status(url: string): Promise<Status> {
  const res = await fetch(`${url}/admin/status`);
  assert.equal(res.status, 200);
  return (await res.json()) as Status;
}

async function ask(url: string, apiKey = 'x'): Promise<{ decisionId: string; tier: string | null }> {
  const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0, timeout: 15_000 });
  const { response } = await openai.chat.completions.create({ model: 'learn', messages: [{ role: 'user', content: 'What is 2 + 2?' }] }).withResponse();
  return { decisionId: response.headers.get('x-tiergate-decision-id')!, tier: response.headers.get('x-tiergate-tier') };
}

async function feedback(url: string, body: unknown, apiKey?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) };
  const res = await fetch(`${url}/v1/feedback`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('over HTTP', () => {
  test('feedback: decision id → POST /v1/feedback → the bandit learns; a second score → 409; unknown id → 404; bad body → 400', async () => {
    const tg = await startTestGateway(banditPolicy('epsilon: 0\nseed: 1'));
    try {
      const first = await ask(tg.url);
      assert.equal(first.tier, 'small'); // no rewards yet: every arm at the prior, the cheapest wins
      await tg.waitForDecisions(1);
      assert.equal((await status(tg.url)).router_state.learn.arms.small.count, 0, 'no gate: nothing learned yet');
      const ok = await feedback(tg.url, { request_id: first.decisionId, score: 0.1 });
      assert.equal(ok.status, 200);
      assert.deepEqual({ learned: ok.body.learned, arm: ok.body.arm, route: ok.body.route }, { learned: true, arm: 'small', route: 'learn' });
      const state = (await status(tg.url)).router_state.learn;
      assert.deepEqual(state.arms.small, { mean: 0.1, count: 1 });
      // A decision takes one score: a second (a retry, a change of mind) is refused and changes nothing.
      const again = await feedback(tg.url, { request_id: first.decisionId, score: 1 });
      assert.equal(again.status, 409);
      assert.equal((again.body.error as { code: string }).code, 'TG_ERR_FEEDBACK_DUPLICATE');
      assert.deepEqual((await status(tg.url)).router_state.learn.arms.small, { mean: 0.1, count: 1 });
      // small (0.1) is now below large's prior (0.5): the next request goes large.
      assert.equal((await ask(tg.url)).tier, 'large');

      const unknown = await feedback(tg.url, { request_id: 'tg-nope', score: 1 });
      assert.equal(unknown.status, 404);
      assert.equal((unknown.body.error as { code: string }).code, 'TG_ERR_FEEDBACK_UNKNOWN');
      for (const bad of [{ request_id: first.decisionId, score: 2 }, { score: 1 }, [1], '{not json']) {
        const res = await feedback(tg.url, bad);
        assert.equal(res.status, 400, JSON.stringify(bad));
        assert.equal((res.body.error as { code: string }).code, 'TG_ERR_FEEDBACK_INVALID');
      }
      const lines = await waitFor('the feedback line', () =>
        tg
          .decisionLogText()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, unknown>)
          .find((l) => l.kind === 'feedback'),
      );
      assert.deepEqual({ request_id: lines.request_id, score: lines.score, route: lines.route }, { request_id: first.decisionId, score: 0.1, route: 'learn' });
      // `tiergate report` reads the same log: decisions as decisions, feedback via --feedback.
      await tg.waitForDecisions(3);
      const logs = await readLogs([tg.decisionLogFile]);
      assert.equal(logs.badLines, 0);
      const fed = await readFeedback(tg.decisionLogFile);
      assert.deepEqual({ bad: fed.badLines, scores: [...fed.scores] }, { bad: 0, scores: [[first.decisionId, [0.1]]] });
    } finally {
      await tg.close();
    }
  });

  test('with gateway keys, only the key that made a request may score it: another key gets 403 and the decision stays open', async () => {
    const keys = { TEAM_A_KEY: 'tg-team-a-feedback-0123456789', TEAM_B_KEY: 'tg-team-b-feedback-9876543210' };
    const auth =
      'server:\n  auth:\n    keys:\n      - { name: team-a, key: ${TEAM_A_KEY}, routes: "*" }\n      - { name: team-b, key: ${TEAM_B_KEY}, routes: "*" }\n';
    const tg = await startTestGateway(banditPolicy('epsilon: 0\nseed: 1', '', auth), { env: keys });
    try {
      const made = await ask(tg.url, keys.TEAM_A_KEY);
      await tg.waitForDecisions(1);
      const theirs = await feedback(tg.url, { request_id: made.decisionId, score: 0 }, keys.TEAM_B_KEY);
      assert.equal(theirs.status, 403, JSON.stringify(theirs.body));
      const error = theirs.body.error as { code: string; message: string; type: string; param: string };
      assert.deepEqual(
        { code: error.code, type: error.type, param: error.param },
        { code: 'TG_ERR_FEEDBACK_FORBIDDEN', type: 'permission_error', param: 'request_id' },
      );
      assert.match(error.message, /key "team-b"/);
      assert.doesNotMatch(error.message, /team-a/, 'the owner key is not named to another caller');
      assert.equal((await feedback(tg.url, { request_id: made.decisionId, score: 0 })).status, 401, 'no key: not even asked');
      const ours = await feedback(tg.url, { request_id: made.decisionId, score: 0.25 }, keys.TEAM_A_KEY);
      assert.equal(ours.status, 200, JSON.stringify(ours.body));
      assert.equal(ours.body.learned, true);
      await waitFor('one feedback line', () => tg.decisionLogText().includes('"kind":"feedback"'));
      const fed = tg
        .decisionLogText()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.kind === 'feedback');
      assert.deepEqual(
        fed.map((l) => l.score),
        [0.25],
        'the refused score was not logged',
      );
    } finally {
      await tg.close();
    }
  });

  test('gate scores are rewards without any feedback', async () => {
    const tg = await startTestGateway(
      banditPolicy('epsilon: 0\nseed: 1', '    gate: { evaluators: [{ plugin: heuristics }], threshold: 0, max_escalations: 0 }'),
    );
    try {
      await ask(tg.url);
      const [line] = await tg.waitForDecisions(1);
      assert.equal(typeof line.quality_score, 'number');
      const small = (await waitFor('the gate reward', async () => ((await status(tg.url)).router_state.learn.arms.small.count === 1 ? status(tg.url) : null)))
        .router_state.learn.arms.small;
      assert.ok(Math.abs(small.mean - line.quality_score!) < 1e-9);
    } finally {
      await tg.close();
    }
  });

  test('hot reload with a file state and a pending debounced write: the new runtime keeps every update', async () => {
    const router = (seed: number) => banditPolicy(`epsilon: 0\nseed: ${seed}\nstate: { file: state/bandit.json, flush_ms: 60000 }`);
    const tg = await startTestGateway(router(1));
    try {
      const { decisionId } = await ask(tg.url);
      assert.equal((await feedback(tg.url, { request_id: decisionId, score: 0.1 })).status, 200);
      assert.equal(existsSync(path.join(tg.dir, 'state/bandit.json')), false, 'the write waits on flush_ms');
      tg.writePolicy(router(2));
      const res = await fetch(`${tg.url}/admin/reload`, { method: 'POST' });
      assert.equal(((await res.json()) as { outcome: string }).outcome, 'applied');
      assert.deepEqual((await status(tg.url)).router_state.learn.arms.small, { mean: 0.1, count: 1 });
      assert.equal((await ask(tg.url)).tier, 'large', 'the new runtime routes on what the old one learned');
      // The old runtime, disposed, wrote the file at once.
      const saved = JSON.parse(readFileSync(path.join(tg.dir, 'state/bandit.json'), 'utf8')) as { arms: Record<string, { count: number }> };
      assert.equal(saved.arms.small.count, 1);
    } finally {
      await tg.close();
    }
  });

  test('Redis down (wrong port): requests are still served and learning goes on locally', async () => {
    const tg = await startTestGateway(banditPolicy(`epsilon: 0\nstate: { redis: { url: "redis://127.0.0.1:1", key: "${PREFIX}:down", refresh_ms: 20 } }`));
    try {
      for (let i = 0; i < 3; i++) {
        const { decisionId } = await ask(tg.url);
        assert.equal((await feedback(tg.url, { request_id: decisionId, score: 0.9 })).status, 200);
      }
      const state = (await status(tg.url)).router_state.learn;
      assert.equal(state.arms.small.count, 3);
      assert.deepEqual(state.state.redis, { key: `${PREFIX}:down`, connected: false });
    } finally {
      await tg.close();
    }
  });
});

interface Process {
  url: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

async function serve(policyFile: string): Promise<Process> {
  const child = spawn(
    process.execPath,
    [path.join(REPO, 'bin', 'tiergate.js'), 'serve', '--config', policyFile, '--port', '0', '--host', '127.0.0.1', '--no-watch'],
    {
      cwd: REPO,
      env: { ...process.env, TIERGATE_LOG_LEVEL: 'info', TIERGATE_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  child.stdout!.resume();
  let code: number | null | undefined;
  void exited.then((c) => (code = c));
  const url = await waitFor(
    'the gateway to listen',
    () => {
      if (code !== undefined) assert.fail(`tiergate exited early (${code}): ${stderr}`);
      const match = /"message":"tiergate listening on (http:\/\/[^"]+)"/.exec(stderr);
      return match?.[1];
    },
    20_000,
  );
  return { url, child, exited };
}

describe('replicas', () => {
  test('two gateway processes on one Redis key learn as one', async () => {
    const key = `${PREFIX}:replicas`;
    // The decisions kept for feedback live next to the statistics.
    redisKeys.push(key, `${key}:decisions`, `${key}:decisions:order`);
    const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-bandit-replicas-'));
    const policyFile = path.join(dir, 'gateway.yaml');
    writeFileSync(
      policyFile,
      banditPolicy(`epsilon: 0\nseed: 1\nstate: { redis: { url: "${REDIS_URL}", key: "${key}", refresh_ms: 50 } }`).replace(
        'decision_log: { file: decisions.jsonl }',
        'decision_log: { file: null }',
      ),
    );
    const procs: Process[] = [];
    try {
      procs.push(...(await Promise.all([serve(policyFile), serve(policyFile)])));
      const [a, b] = procs;
      await waitFor('both connected to Redis', async () =>
        (await Promise.all([status(a.url), status(b.url)])).every((s) => s.router_state.learn.state.redis?.connected),
      );
      // Before: B, like A, sends to small (every arm at the prior).
      assert.equal((await ask(b.url)).tier, 'small');
      // A learns from five requests that small is bad (feedback 0) and large is fair (0.3).
      const tiers: string[] = [];
      for (let i = 0; i < 5; i++) {
        const { decisionId, tier } = await ask(a.url);
        tiers.push(tier!);
        assert.equal((await feedback(a.url, { request_id: decisionId, score: tier === 'small' ? 0 : 0.3 })).status, 200);
      }
      assert.deepEqual(tiers, ['small', 'large', 'large', 'large', 'large']);
      // B never saw those requests, yet its statistics include them and it routes on them.
      const seen = await waitFor("A's rewards in B's state", async () => {
        const s = (await status(b.url)).router_state.learn;
        return s.arms.large.count === 4 ? s : null;
      });
      assert.deepEqual(seen.arms, (await status(a.url)).router_state.learn.arms);
      assert.deepEqual(seen.arms.small, { mean: 0, count: 1 });
      assert.equal((await ask(b.url)).tier, 'large');
      // And the other way round: B rewards large, A sees it.
      const { decisionId } = await ask(b.url);
      assert.equal((await feedback(b.url, { request_id: decisionId, score: 1 })).status, 200);
      await waitFor("B's reward in A's state", async () => (await status(a.url)).router_state.learn.arms.large.count === 5);
    } finally {
      for (const p of procs) p.child.kill('SIGTERM');
      await Promise.all(procs.map((p) => p.exited));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('feedback posted to the replica that did not serve the request is applied once to the shared statistics', async () => {
    const key = `${PREFIX}:cross-feedback`;
    redisKeys.push(key, `${key}:decisions`, `${key}:decisions:order`);
    const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-bandit-replicas-'));
    const policyFile = path.join(dir, 'gateway.yaml');
    writeFileSync(
      policyFile,
      banditPolicy(`epsilon: 0\nseed: 1\nstate: { redis: { url: "${REDIS_URL}", key: "${key}", refresh_ms: 50 } }`).replace(
        'decision_log: { file: decisions.jsonl }',
        'decision_log: { file: null }',
      ),
    );
    const procs: Process[] = [];
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      procs.push(...(await Promise.all([serve(policyFile), serve(policyFile)])));
      const [a, b] = procs;
      await waitFor('both connected to Redis', async () =>
        (await Promise.all([status(a.url), status(b.url)])).every((s) => s.router_state.learn.state.redis?.connected),
      );
      // Served by A (every arm at the prior: small) …
      const { decisionId, tier } = await ask(a.url);
      assert.equal(tier, 'small');
      // … judged through B, which never saw the request.
      const fed = await feedback(b.url, { request_id: decisionId, score: 0 });
      assert.equal(fed.status, 200, JSON.stringify(fed.body));
      assert.deepEqual({ learned: fed.body.learned, arm: fed.body.arm, route: fed.body.route }, { learned: true, arm: 'small', route: 'learn' });
      // The shared statistics took the reward once, and both replicas route on it.
      assert.deepEqual(JSON.parse((await redis.hget(key, 'eg:small'))!), { mean: 0, count: 1 });
      assert.equal(await redis.hget(key, 'updates'), '1');
      await waitFor("B's reward in A's state", async () => (await status(a.url)).router_state.learn.arms.small.count === 1);
      assert.equal((await ask(a.url)).tier, 'large', 'A routes on the feedback B received');
      // Once: the same request judged again, on either replica, is refused and changes nothing.
      for (const url of [a.url, b.url]) {
        const again = await feedback(url, { request_id: decisionId, score: 1 });
        assert.equal(again.status, 409, JSON.stringify(again.body));
        assert.equal((again.body.error as { code: string }).code, 'TG_ERR_FEEDBACK_DUPLICATE');
      }
      // An id no replica served: 404 on either, in the OpenAI error shape.
      for (const url of [a.url, b.url]) {
        const unknown = await feedback(url, { request_id: 'tg-never-served', score: 1 });
        assert.equal(unknown.status, 404);
        assert.deepEqual(
          { code: (unknown.body.error as { code: string }).code, param: (unknown.body.error as { param: string }).param },
          { code: 'TG_ERR_FEEDBACK_UNKNOWN', param: 'request_id' },
        );
      }
      assert.equal(await redis.hget(key, 'updates'), '1');
      assert.deepEqual((await status(b.url)).router_state.learn.arms.small, { mean: 0, count: 1 });
      // The decisions wait in Redis no longer than the feedback window (24 h).
      const ttl = await redis.pttl(`${key}:decisions`);
      assert.ok(ttl > 0 && ttl <= 24 * 3600_000, `TTL ${ttl} ms`);
    } finally {
      redis.disconnect();
      for (const p of procs) p.child.kill('SIGTERM');
      await Promise.all(procs.map((p) => p.exited));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
