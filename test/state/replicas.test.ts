// tiergate as several replicas behind a load balancer: three `tiergate serve` processes
// on one policy file and one Redis, behind Debian's nginx running deploy/nginx.conf
// (round robin, proxy_buffering off for SSE), driven through nginx with the openai SDK.
// It shows
//   (a) shared learning: rewards posted through any replica reach the bandit statistics
//       every replica routes by;
//   (b) a shared budget: a key with 10 requests per minute gets its 11th refused, 429,
//       whichever replica it reaches;
//   (c) hot reload: one edit of the policy file is picked up by every replica.
// nginx runs as a child process (daemon off) with every path in a temporary folder;
// Redis keys are unique to the run and deleted at the end. Without nginx the suite is
// skipped, except on CI (CI=true), where it fails: `.ci/run` installs it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { Redis } from 'ioredis';
import { parseAllDocuments } from 'yaml';
import { buildRuntime } from '../../src/policy/compile.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { apiError } from '../support/http.ts';
import { freePort } from '../support/ports.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const REDIS_URL = process.env.TIERGATE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ON_CI = Boolean(process.env.CI) && process.env.CI !== 'false' && process.env.CI !== '0';
const RUN = `tiergate-test:replicas:${process.pid}:${Date.now()}`;
const SECRETS = { APP_KEY: 'sk-replicas-app-0123456789', METERED_KEY: 'sk-replicas-metered-0123456789', ADMIN_TOKEN: 'replicas-admin-token-0123456789' };

function findNginx(): string | null {
  if (process.env.NGINX_PATH) return process.env.NGINX_PATH;
  for (const candidate of ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx']) if (existsSync(candidate)) return candidate;
  const which = spawnSync('sh', ['-c', 'command -v nginx'], { encoding: 'utf8' });
  return which.status === 0 && which.stdout.trim() ? which.stdout.trim() : null;
}
const NGINX = findNginx();
const SKIP = NGINX || ON_CI ? false : 'nginx is not installed (apt-get install nginx, or set NGINX_PATH; on CI this fails instead)';

function policy(edit = ''): string {
  return `version: 1
server:
  host: 127.0.0.1
  auth:
    keys:
      - { name: app, key: "\${APP_KEY}", routes: '*', models: [slow-model] }
      - { name: metered, key: "\${METERED_KEY}", routes: '*', limits: { requests_per_minute: 10 } }
    admin_token: "\${ADMIN_TOKEN}"
# Limits and model cooldowns shared by the replicas; the bandit shares its statistics too.
state:
  redis: { url: "\${REDIS_URL}", prefix: "${RUN}", refresh_ms: 50 }
providers:
  sim:
    plugin: simulator
    time_scale: 0
    profiles:
      sim-small: { capability: 0.5, first_token_ms: 100, tokens_per_second: 200 }
      sim-large: { capability: 0.95, first_token_ms: 300, tokens_per_second: 80 }
  # Answers at its real pace, for the streaming check.
  paced:
    plugin: simulator
    time_scale: 1
    profiles:
      sim-paced: { capability: 0.9, first_token_ms: 20, tokens_per_second: 100 }
models:
  slow-model: { provider: paced, upstream: sim-paced, price: { input_per_mtok: 1, output_per_mtok: 1 } }
  small-model: { provider: sim, upstream: sim-small, price: { input_per_mtok: 0.15, output_per_mtok: 0.6 } }
  large-model: { provider: sim, upstream: sim-large, price: { input_per_mtok: 2.5, output_per_mtok: 10 } }
tiers:
  - { name: small, models: [small-model] }
  - { name: large, models: [large-model] }
routes:
  support:
    description: support desk${edit}
    router: { plugin: rules, rules: [] }
    default: small
  learn:
    router:
      plugin: bandit
      epsilon: 0
      seed: 1
      state: { redis: { url: "\${REDIS_URL}", key: "${RUN}:bandit", refresh_ms: 50 } }
    default: large
analytics:
  decision_log: { file: null }
`;
}

/**
 * nginx's main file for the test (every path in `dir`, daemon off), including
 * deploy/nginx.conf itself with its upstream servers and listen address replaced.
 */
function nginxConf(dir: string, port: number, upstreams: readonly number[]): string {
  const shipped = readFileSync(path.join(REPO, 'deploy', 'nginx.conf'), 'utf8');
  const servers = /^([ \t]*)server \d+\.\d+\.\d+\.\d+:8080( [^;]*)?;\n/gm;
  let first = true;
  const site = shipped
    .replace(servers, (_line, indent: string, params = '') => {
      if (!first) return '';
      first = false;
      return upstreams.map((p) => `${indent}server 127.0.0.1:${p}${params};\n`).join('');
    })
    .replace(/^([ \t]*)listen 80;$/m, `$1listen 127.0.0.1:${port};`);
  assert.ok(!first && site.includes(`listen 127.0.0.1:${port};`), 'deploy/nginx.conf has the upstream server lines and the listen line the test replaces');
  writeFileSync(path.join(dir, 'tiergate.conf'), site);
  // Started as root, nginx would run its workers as nobody, who cannot use the temp folder.
  const user = process.getuid?.() === 0 ? `user ${userInfo().username};\n` : '';
  return `daemon off;
${user}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  # Which replica answered, for the test's eyes (inherited: the site sets no add_header).
  add_header x-upstream $upstream_addr always;
  include ${dir}/tiergate.conf;
}
`;
}

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ''}`);
    await sleep(25);
  }
}

interface Child {
  child: ChildProcess;
  exited: Promise<number | null>;
  output: () => string;
}

function start(command: string, args: string[], env: NodeJS.ProcessEnv): Child {
  const child = spawn(command, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (text: string) => (output += text));
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (output += text));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

async function stop(proc: Child, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill(signal);
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), 10_000);
  await proc.exited;
  clearTimeout(timer);
}

interface Status {
  policy_version: string;
  shared_state: { redis: { connected: boolean } } | null;
  router_state: { learn: { arms: Record<string, { mean: number; count: number }>; state: { redis: { connected: boolean } | null } } };
}

async function status(url: string): Promise<Status> {
  const res = await fetch(`${url}/admin/status`, { headers: { authorization: `Bearer ${SECRETS.ADMIN_TOKEN}` } });
  assert.equal(res.status, 200);
  return (await res.json()) as Status;
}

describe('three replicas behind nginx, one Redis', { skip: SKIP, timeout: 120_000 }, () => {
  let dir = '';
  let policyFile = '';
  const replicas: Array<Child & { url: string }> = [];
  let nginx: Child | null = null;
  let lb = '';
  const client = (key: string) => new OpenAI({ baseURL: `${lb}/v1`, apiKey: key, maxRetries: 0, timeout: 15_000 });
  const ask = (key: string, model: string) =>
    client(key)
      .chat.completions.create({ model, messages: [{ role: 'user', content: 'What is 2 + 2?' }] })
      .withResponse();

  before(async () => {
    assert.ok(NGINX, 'nginx is not installed: apt-get install nginx (or set NGINX_PATH)');
    dir = mkdtempSync(path.join(tmpdir(), 'tiergate-replicas-'));
    policyFile = path.join(dir, 'gateway.yaml');
    writeFileSync(policyFile, policy());
    const env = { ...process.env, ...SECRETS, REDIS_URL, TIERGATE_LOG_LEVEL: 'info', TIERGATE_LOG_FORMAT: 'json' };
    for (let i = 0; i < 3; i++) {
      const proc = start(process.execPath, [path.join(REPO, 'bin', 'tiergate.js'), 'serve', '--config', policyFile, '--port', '0'], env);
      replicas.push(Object.assign(proc, { url: '' }));
    }
    await Promise.all(
      replicas.map(async (replica, i) => {
        replica.url = await waitFor(
          `replica ${i} to listen`,
          () => {
            if (replica.child.exitCode !== null) assert.fail(`replica ${i} exited (${replica.child.exitCode}): ${replica.output()}`);
            return /"message":"tiergate listening on (http:\/\/[^"]+)"/.exec(replica.output())?.[1];
          },
          30_000,
        );
      }),
    );
    const nginxDir = path.join(dir, 'nginx');
    mkdirSync(nginxDir);
    const port = await freePort();
    writeFileSync(
      path.join(nginxDir, 'nginx.conf'),
      nginxConf(
        nginxDir,
        port,
        replicas.map((r) => Number(new URL(r.url).port)),
      ),
    );
    nginx = start(NGINX!, ['-p', nginxDir, '-c', path.join(nginxDir, 'nginx.conf'), '-e', path.join(nginxDir, 'error.log')], process.env);
    lb = `http://127.0.0.1:${port}`;
    await waitFor('nginx to proxy /healthz', async () => {
      if (nginx!.child.exitCode !== null) assert.fail(`nginx exited (${nginx!.child.exitCode}): ${nginx!.output()}`);
      return (await fetch(`${lb}/healthz`)).ok;
    });
    // Every replica reaches Redis, for the limits and for the bandit.
    await waitFor('every replica connected to Redis', async () =>
      (await Promise.all(replicas.map((r) => status(r.url)))).every((s) => s.shared_state?.redis.connected && s.router_state.learn.state.redis?.connected),
    );
  });

  after(async () => {
    await Promise.all([...replicas.map((r) => stop(r)), ...(nginx ? [stop(nginx, 'SIGQUIT')] : [])]);
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
    try {
      await redis.connect();
      for (const pattern of [`${RUN}:*`, `${RUN}`]) {
        let cursor = '0';
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
          if (keys.length) await redis.del(...keys);
          cursor = next;
        } while (cursor !== '0');
      }
    } catch {
      // Redis absent: the suite failed already and wrote nothing
    } finally {
      redis.disconnect();
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('nginx spreads requests over the three replicas, SSE included', async () => {
    const upstreams = new Set<string>();
    for (let i = 0; i < 3; i++) upstreams.add((await ask(SECRETS.APP_KEY, 'support')).response.headers.get('x-upstream')!);
    assert.equal(upstreams.size, 3, [...upstreams].join(', '));
    // A streamed answer arrives through nginx as it is generated, not all at the end.
    const started = performance.now();
    const stream = await client(SECRETS.APP_KEY).chat.completions.create({
      model: 'slow-model',
      messages: [{ role: 'user', content: 'Explain step by step why the sky is blue' }],
      stream: true,
    });
    let text = '';
    const arrivals: number[] = [];
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta?.content ?? '';
      if (delta) arrivals.push(performance.now() - started);
      text += delta;
    }
    assert.ok(arrivals.length > 5 && text.length > 20, `${arrivals.length} chunks: ${text}`);
    const spread = arrivals[arrivals.length - 1] - arrivals[0];
    assert.ok(
      spread > 150,
      `chunks arrived within ${spread.toFixed(0)} ms of each other: buffered (first at ${arrivals[0].toFixed(0)} ms, last at ${arrivals[arrivals.length - 1].toFixed(0)} ms)`,
    );
  });

  test('(a) shared learning: a reward posted through any replica changes what every replica routes', async () => {
    // Before: every arm at the prior, so every replica sends to the first arm, small.
    const first = await ask(SECRETS.APP_KEY, 'learn');
    assert.equal(first.response.headers.get('x-tiergate-tier'), 'small');
    // The reward goes through nginx, most likely to another replica than the one that served.
    const feedback = await fetch(`${lb}/v1/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${SECRETS.APP_KEY}` },
      body: JSON.stringify({ request_id: first.response.headers.get('x-tiergate-decision-id'), score: 0 }),
    });
    assert.equal(feedback.status, 200, await feedback.clone().text());
    // Every replica's statistics hold it …
    await waitFor('the reward in every replica', async () =>
      (await Promise.all(replicas.map((r) => status(r.url)))).every(
        (s) => s.router_state.learn.arms.small?.count === 1 && s.router_state.learn.arms.small.mean === 0,
      ),
    );
    // … and every replica routes by it.
    const served = new Map<string, string>();
    for (let i = 0; i < 3; i++) {
      const { response } = await ask(SECRETS.APP_KEY, 'learn');
      served.set(response.headers.get('x-upstream')!, response.headers.get('x-tiergate-tier')!);
    }
    assert.equal(served.size, 3);
    assert.deepEqual([...served.values()], ['large', 'large', 'large']);
  });

  test('(b) a shared budget: the 11th request of a key with 10 per minute is 429, whichever replica it reaches', async () => {
    // Fixed windows: keep the eleven requests in one minute (by Redis's clock, this machine's).
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 5000) await sleep(left + 100);
    const upstreams = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const { response } = await ask(SECRETS.METERED_KEY, 'support');
      assert.equal(response.status, 200);
      upstreams.add(response.headers.get('x-upstream')!);
    }
    assert.equal(upstreams.size, 3, 'the ten requests were spread over every replica');
    const limited = await apiError(ask(SECRETS.METERED_KEY, 'support'));
    assert.equal(limited.status, 429);
    assert.equal(limited.code, 'TG_ERR_LIMIT_REQUESTS');
    const retryAfter = Number(limited.headers?.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`);
    // Whichever replica: each one, asked directly, refuses the key too.
    for (const replica of replicas) {
      const direct = new OpenAI({ baseURL: `${replica.url}/v1`, apiKey: SECRETS.METERED_KEY, maxRetries: 0 });
      assert.equal(
        (await apiError(direct.chat.completions.create({ model: 'support', messages: [{ role: 'user', content: 'hi' }] }))).code,
        'TG_ERR_LIMIT_REQUESTS',
        replica.url,
      );
    }
    // Another key is not affected.
    assert.equal((await ask(SECRETS.APP_KEY, 'support')).response.status, 200);
  });

  test('(c) hot reload: one edit of the policy file reaches every replica', async () => {
    const before = new Set((await Promise.all(replicas.map((r) => status(r.url)))).map((s) => s.policy_version));
    assert.equal(before.size, 1, 'the replicas start on one version');
    const [old] = before;
    // Saved the way editors and ConfigMap updates do: a new file moved into place.
    const temp = `${policyFile}.tmp`;
    writeFileSync(temp, policy(' (edited)'));
    renameSync(temp, policyFile);
    const versions = await waitFor('every replica on the new version', async () => {
      const seen = (await Promise.all(replicas.map((r) => status(r.url)))).map((s) => s.policy_version);
      return seen.every((v) => v !== old) ? seen : null;
    });
    assert.equal(new Set(versions).size, 1, `one new version: ${versions.join(', ')}`);
    // Through nginx, every replica answers with it.
    const answered = new Map<string, string>();
    for (let i = 0; i < 3; i++) {
      const { response } = await ask(SECRETS.APP_KEY, 'support');
      answered.set(response.headers.get('x-upstream')!, response.headers.get('x-tiergate-policy-version')!);
    }
    assert.equal(answered.size, 3);
    assert.deepEqual([...answered.values()], [versions[0], versions[0], versions[0]]);
  });
});

describe('deploy/: the container and the Kubernetes example', () => {
  const k8s = path.join(REPO, 'deploy', 'kubernetes');
  const documents = (file: string) => parseAllDocuments(readFileSync(path.join(k8s, file), 'utf8')).map((d) => d.toJS() as Record<string, any>);

  test('the ConfigMap policy builds with exactly the environment the Deployment and its Secret give', async () => {
    const kustomization = documents('kustomization.yaml')[0];
    for (const resource of kustomization.resources as string[]) assert.ok(existsSync(path.join(k8s, resource)), resource);
    const deployment = documents('deployment.yaml')[0];
    assert.equal(deployment.spec.replicas, 3);
    const pod = deployment.spec.template.spec;
    const container = pod.containers[0];
    // The policy folder is the ConfigMap kustomize makes from gateway.yaml, mounted whole
    // (a subPath mount would never see an update, so hot reload would not happen).
    const policyVolume = pod.volumes.find((v: { configMap?: unknown }) => v.configMap);
    assert.deepEqual(kustomization.configMapGenerator, [{ name: policyVolume.configMap.name, files: ['gateway.yaml'] }]);
    assert.equal(kustomization.generatorOptions.disableNameSuffixHash, true);
    const mount = container.volumeMounts.find((m: { name: string }) => m.name === policyVolume.name);
    assert.deepEqual(mount, { name: policyVolume.name, mountPath: '/etc/tiergate', readOnly: true });
    assert.equal(container.readinessProbe.httpGet.path, '/readyz');
    assert.equal(container.livenessProbe.httpGet.path, '/healthz');
    // The environment: the Deployment's values and the Secret's keys, nothing else.
    const secret = documents('secret.example.yaml')[0];
    assert.deepEqual(container.envFrom, [{ secretRef: { name: secret.metadata.name } }]);
    const env: NodeJS.ProcessEnv = {
      ...Object.fromEntries(container.env.map((e: { name: string; value: string }) => [e.name, e.value])),
      ...secret.stringData,
    };
    const runtime = await buildRuntime(path.join(k8s, 'gateway.yaml'), { logger: createLogger({ level: 'silent' }), mode: 'validate', env });
    try {
      assert.deepEqual([...runtime.routes.keys()], ['support', 'qa']);
      assert.ok(runtime.limits.has('support-app') && runtime.limits.has('platform'));
    } finally {
      await runtime.dispose();
    }
  });

  test("the Dockerfile copies what exists, and tsx, which loads a team's .ts plugin, is a runtime dependency", () => {
    const dockerfile = readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
    assert.match(dockerfile, /^FROM node:20-slim$/m);
    assert.match(dockerfile, /npm ci --omit=dev/);
    assert.match(dockerfile, /^USER node$/m);
    assert.match(dockerfile, /HEALTHCHECK[\s\S]*\/healthz/);
    for (const [, from] of dockerfile.matchAll(/^COPY (?!--from=)(\S+) /gm)) assert.ok(existsSync(path.join(REPO, from)), `COPY ${from}`);
    // What the build stage makes at /app is what `npm test` built here (dist/).
    const stages = [...dockerfile.matchAll(/^FROM \S+ AS (\S+)$/gm)].map(([, stage]) => stage);
    for (const [, stage, from] of dockerfile.matchAll(/^COPY --from=(\S+) \/app\/(\S+) /gm)) {
      assert.ok(stages.includes(stage), `COPY --from=${stage}: no such stage`);
      assert.ok(existsSync(path.join(REPO, from)), `COPY --from=${stage} /app/${from}`);
    }
    const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    assert.ok(pkg.dependencies.tsx, 'tsx must stay in dependencies: npm ci --omit=dev leaves devDependencies out of the image');
  });
});
