// Gateway keys, the admin token and the loopback default (server.auth), over real HTTP
// with the official openai SDK as the client. Keys come from the environment, as a
// policy would write them (${TEAM_A_KEY}).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { simulatorPolicy, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { apiError } from '../support/http.ts';
import { capturingLogger } from '../support/logs.ts';
import { unfinishedPost } from '../support/raw-http.ts';
import { startGateway } from '../../src/faces/server.ts';
import { buildRuntime } from '../../src/policy/compile.ts';
import { createLogger } from '../../src/observe/logger.ts';
import { PolicyErrors } from '../../src/common/errors.ts';
import { GatewayAuth, isLoopbackHost } from '../../src/policy/gateway-auth.ts';

const TEAM_A_KEY = 'tg-team-a-0123456789abcdef';
const OPS_KEY = 'tg-ops-fedcba9876543210';
const ADMIN_TOKEN = 'tg-admin-00112233445566778899';
const env = { TEAM_A_KEY, OPS_KEY, ADMIN_TOKEN };

const routes = `  support:
    router: { plugin: rules, rules: [] }
    default: large
  billing:
    router: { plugin: rules, rules: [] }
    default: small
`;

function authPolicy(auth: string, server = ''): string {
  return simulatorPolicy({ routes, extra: `server:\n${server}  auth:\n${auth}` });
}

const KEYS = `    keys:
      - { name: team-a, key: \${TEAM_A_KEY}, routes: [support] }
      - { name: ops, key: \${OPS_KEY}, routes: '*', models: [small-model] }
`;

function client(tg: TestGateway, apiKey: string): OpenAI {
  return new OpenAI({ baseURL: tg.baseURL, apiKey, maxRetries: 0, timeout: 5000 });
}

const ask = (model: string) => ({ model, messages: [{ role: 'user' as const, content: 'Where is my parcel?' }] });

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, { headers });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // text (the metrics, a page)
  }
  return { status: res.status, body, headers: res.headers };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const basic = (password: string) => ({ authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}` });

describe('gateway keys and the admin token', () => {
  let tg: TestGateway;
  before(async () => {
    tg = await startTestGateway(authPolicy(KEYS + '    admin_token: ${ADMIN_TOKEN}\n'), { env });
  });
  after(async () => {
    await tg?.close();
  });

  test('a request without a key is 401 TG_ERR_AUTH_MISSING, in the OpenAI error shape', async () => {
    const res = await fetch(`${tg.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(ask('support')),
    });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
    const body = (await res.json()) as { error: Record<string, unknown> };
    assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(body.error.code, 'TG_ERR_AUTH_MISSING');
    assert.equal(body.error.type, 'authentication_error');
  });

  test('an unknown key is 401 TG_ERR_AUTH_INVALID (the SDK raises AuthenticationError)', async () => {
    const error = await apiError(client(tg, 'tg-not-a-key-of-this-gateway').chat.completions.create(ask('support')));
    assert.ok(error instanceof OpenAI.AuthenticationError);
    assert.equal(error.code, 'TG_ERR_AUTH_INVALID');
    assert.ok(!JSON.stringify(error.error).includes('tg-not-a-key'), 'the presented key is not echoed');
    // Near misses of every length are just unknown keys (the comparison is over hashes).
    for (const near of [TEAM_A_KEY.slice(0, -1), TEAM_A_KEY + 'x', 'x', 'y'.repeat(500)]) {
      assert.equal((await apiError(client(tg, near).chat.completions.create(ask('support')))).code, 'TG_ERR_AUTH_INVALID');
    }
  });

  test('a key calls the routes it lists; its name (never the key) is on the decision line', async () => {
    const { data, response } = await client(tg, TEAM_A_KEY).chat.completions.create(ask('support')).withResponse();
    assert.equal(data.model, 'large-model');
    const id = response.headers.get('x-tiergate-decision-id');
    const line = (await tg.waitForDecisions(1)).find((d) => d.request_id === id);
    assert.equal(line?.api_key_name, 'team-a');
    assert.ok(!tg.decisionLogText().includes(TEAM_A_KEY));
  });

  test("a route or a model outside the key's allow-list is 403 TG_ERR_AUTH_FORBIDDEN (PermissionDeniedError)", async () => {
    // Earlier tests wrote to the same log: wait for this test's three lines on top of theirs.
    const before = tg.decisions().length;
    const route = await apiError(client(tg, TEAM_A_KEY).chat.completions.create(ask('billing')));
    assert.ok(route instanceof OpenAI.PermissionDeniedError);
    assert.equal(route.code, 'TG_ERR_AUTH_FORBIDDEN');
    assert.match(route.message, /key "team-a" may not call route "billing"/);
    const model = await apiError(client(tg, TEAM_A_KEY).chat.completions.create(ask('large-model')));
    assert.equal(model.status, 403);
    assert.match(model.message, /may not call model "large-model".*models: none/);
    // Streaming is refused the same way, before any upstream call.
    const streamed = await apiError(client(tg, TEAM_A_KEY).chat.completions.create({ ...ask('billing'), stream: true }));
    assert.equal(streamed.status, 403);
    const lines = await tg.waitForDecisions(before + 3);
    const refused = lines.filter((d) => d.error_code === 'TG_ERR_AUTH_FORBIDDEN');
    assert.ok(refused.length >= 3, 'refused requests are logged, with the key name');
    assert.ok(refused.every((d) => d.api_key_name === 'team-a' && d.attempts.length === 0));
  });

  test('models: lists the concrete models a key may call by name; routes: "*" every route', async () => {
    const ops = client(tg, OPS_KEY);
    assert.equal((await ops.chat.completions.create(ask('small-model'))).model, 'small-model');
    assert.equal((await ops.chat.completions.create(ask('billing'))).model, 'small-model');
    assert.equal((await apiError(ops.chat.completions.create(ask('large-model')))).status, 403);
    // An unknown name is still the unknown-model error.
    assert.equal((await apiError(ops.chat.completions.create(ask('no-such-thing')))).code, 'TG_ERR_REQUEST_UNKNOWN_MODEL');
  });

  test('GET /v1/models lists what the key may call', async () => {
    const ids = async (key: string) => (await client(tg, key).models.list()).data.map((m) => m.id).sort();
    assert.deepEqual(await ids(TEAM_A_KEY), ['support']);
    assert.deepEqual(await ids(OPS_KEY), ['billing', 'small-model', 'support']);
    assert.equal((await get(`${tg.baseURL}/models`)).status, 401);
  });

  test('POST /v1/feedback needs a key too', async () => {
    const res = await fetch(`${tg.baseURL}/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ request_id: 'tg-x', score: 1 }),
    });
    assert.equal(res.status, 401);
  });

  test('/admin/*, /metrics and /dashboard need the admin token (bearer or Basic); a gateway key is not enough', async () => {
    for (const endpoint of ['/admin/status', '/metrics', '/dashboard/data', '/dashboard/', '/ADMIN/status', '/Metrics']) {
      for (const headers of [{}, bearer(TEAM_A_KEY), bearer(ADMIN_TOKEN + 'x'), basic(OPS_KEY)]) {
        const res = await get(`${tg.url}${endpoint}`, headers);
        assert.equal(res.status, 401, `${endpoint} with ${JSON.stringify(headers)}`);
        assert.equal(res.body.error.code, 'TG_ERR_AUTH_ADMIN');
        assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="tiergate admin"/, 'a browser can ask for the token');
      }
    }
    assert.equal((await get(`${tg.url}/admin/status`, bearer(ADMIN_TOKEN))).body.policy_version, tg.gateway.manager.runtime.version);
    assert.match((await get(`${tg.url}/metrics`, bearer(ADMIN_TOKEN))).body, /tiergate_requests_total/);
    // What a browser sends once the user typed the token as the password.
    assert.equal((await get(`${tg.url}/dashboard/data`, basic(ADMIN_TOKEN))).status, 200);
    assert.equal((await get(`${tg.url}/dashboard/`, basic(ADMIN_TOKEN))).status, 200);
    const reload = await fetch(`${tg.url}/admin/reload`, { method: 'POST', headers: bearer(ADMIN_TOKEN) });
    assert.equal(reload.status, 200);
  });

  test('every ingress that takes a body refuses a caller without credentials before reading it: a body that never arrives still gets 401 at once', async () => {
    const ingresses: Array<[string, string]> = [
      ['/v1/chat/completions', 'TG_ERR_AUTH_MISSING'],
      ['/v1/messages', 'TG_ERR_AUTH_MISSING'],
      ['/v1/feedback', 'TG_ERR_AUTH_MISSING'],
      ['/admin/reload', 'TG_ERR_AUTH_ADMIN'],
    ];
    for (const [path, code] of ingresses)
      for (const headers of [{}, bearer(ADMIN_TOKEN + 'x'), { 'x-api-key': OPS_KEY + 'x' }] as Array<Record<string, string>>) {
        const what = `POST ${path} with ${JSON.stringify(headers)}`;
        // 100 kB declared, 14 bytes sent: the gateway has nothing to read or parse until the rest arrives, which it never does.
        const connection = await unfinishedPost(tg.url, path, headers);
        try {
          const answer = await connection.answer;
          assert.equal(answer.status, 401, `${what}: ${answer.body}`);
          // A wrong key is invalid rather than missing; the Messages API's error shape (Anthropic's) keeps the code too.
          const expected = code === 'TG_ERR_AUTH_MISSING' && Object.keys(headers).length > 0 ? 'TG_ERR_AUTH_INVALID' : code;
          assert.equal((JSON.parse(answer.body) as { error: { code: string } }).error.code, expected, what);
          assert.equal(connection.isClosed(), false, `${what}: answered while the body is still awaited`);
        } finally {
          connection.socket.destroy();
        }
      }
  });

  test('/healthz and /readyz stay open (load balancers and probes carry no token)', async () => {
    assert.equal((await get(`${tg.url}/healthz`)).status, 200);
    assert.equal((await get(`${tg.url}/readyz`)).status, 200);
  });
});

describe('keys reload with the policy', () => {
  test('a new key works and a removed one is refused after a reload, without a restart', async (t) => {
    const tg = await startTestGateway(authPolicy(KEYS + '    admin_token: ${ADMIN_TOKEN}\n'), { env });
    t.after(() => tg.close());
    assert.equal((await client(tg, TEAM_A_KEY).chat.completions.create(ask('support'))).object, 'chat.completion');
    const rotated = 'tg-team-a-rotated-0000000000';
    tg.writePolicy(authPolicy(`    keys:\n      - { name: team-a, key: ${rotated}, routes: [support] }\n    admin_token: \${ADMIN_TOKEN}\n`));
    assert.equal((await tg.gateway.manager.reload('admin')).outcome, 'applied');
    assert.equal((await apiError(client(tg, TEAM_A_KEY).chat.completions.create(ask('support')))).code, 'TG_ERR_AUTH_INVALID');
    assert.equal((await client(tg, rotated).chat.completions.create(ask('support'))).object, 'chat.completion');
  });

  test('metrics_token opens GET /metrics (bearer or Basic) and nothing else; the admin token still opens it', async (t) => {
    const METRICS_TOKEN = 'tg-scraper-0123456789abcdef';
    const tg = await startTestGateway(authPolicy(KEYS + '    admin_token: ${ADMIN_TOKEN}\n    metrics_token: ${METRICS_TOKEN}\n'), {
      env: { ...env, METRICS_TOKEN },
    });
    t.after(() => tg.close());
    for (const headers of [bearer(METRICS_TOKEN), basic(METRICS_TOKEN), bearer(ADMIN_TOKEN)]) {
      const res = await get(`${tg.url}/metrics`, headers);
      assert.equal(res.status, 200, JSON.stringify(headers));
      assert.match(res.body, /tiergate_requests_total/);
    }
    assert.equal((await get(`${tg.url}/Metrics`, bearer(METRICS_TOKEN))).status, 200, 'any letter case, as express routes it');
    for (const endpoint of ['/admin/status', '/dashboard/data', '/dashboard/']) {
      const res = await get(`${tg.url}${endpoint}`, bearer(METRICS_TOKEN));
      assert.equal(res.status, 401, endpoint);
      assert.equal(res.body.error.code, 'TG_ERR_AUTH_ADMIN');
    }
    const reload = await fetch(`${tg.url}/admin/reload`, { method: 'POST', headers: bearer(METRICS_TOKEN) });
    assert.equal(reload.status, 401, 'the scraper cannot reload the policy');
    assert.equal((await apiError(client(tg, METRICS_TOKEN).chat.completions.create(ask('support')))).code, 'TG_ERR_AUTH_INVALID', 'nor call the API');
    assert.equal((await get(`${tg.url}/metrics`, bearer(METRICS_TOKEN + 'x'))).status, 401);
    assert.equal((await get(`${tg.url}/metrics`)).status, 401);
  });

  test('keys but no admin_token: the admin endpoints are disabled (403), even from loopback', async (t) => {
    const tg = await startTestGateway(authPolicy(KEYS), { env });
    t.after(() => tg.close());
    for (const endpoint of ['/admin/status', '/metrics', '/dashboard/data']) {
      const res = await get(`${tg.url}${endpoint}`, bearer(OPS_KEY));
      assert.equal(res.status, 403, endpoint);
      assert.equal(res.body.error.code, 'TG_ERR_AUTH_ADMIN_DISABLED');
    }
    const reload = await fetch(`${tg.url}/admin/reload`, { method: 'POST' });
    assert.equal(reload.status, 403);
  });
});

describe('without keys: loopback only', () => {
  test('no server.auth: behaviour on loopback is unchanged (any bearer, open admin endpoints)', async (t) => {
    const tg = await startTestGateway(simulatorPolicy());
    t.after(() => tg.close());
    const data = await client(tg, 'unused').chat.completions.create(ask('support'));
    assert.equal(data.object, 'chat.completion');
    assert.equal((await get(`${tg.url}/admin/status`)).status, 200);
    assert.equal((await get(`${tg.url}/metrics`)).status, 200);
    assert.equal((await tg.waitForDecisions(1))[0].api_key_name, undefined);
  });

  test('with no host anywhere the gateway listens on 127.0.0.1 and says so at start-up', async (t) => {
    const { file, cleanup } = tempPolicy();
    t.after(cleanup);
    writeFileSync(file, simulatorPolicy());
    const { logger, lines } = capturingLogger();
    const gateway = await startGateway({ configFile: file, port: 0, logger, watch: false });
    closeFirst.push(gateway);
    assert.equal((gateway.server.address() as AddressInfo).address, '127.0.0.1');
    const line = lines().find((l) => String(l.message).startsWith('auth:'));
    assert.ok(line, JSON.stringify(lines()));
    assert.match(String(line.message), /no gateway keys.*loopback clients only, on 127\.0\.0\.1:\d+/);
  });

  test('host 0.0.0.0 without keys is a located error at server.host [TG_ERR_CONFIG_AUTH]', async (t) => {
    const { file, cleanup } = tempPolicy();
    t.after(cleanup);
    const text = simulatorPolicy({ extra: 'server:\n  port: 0\n  host: 0.0.0.0\n' });
    writeFileSync(file, text);
    const errors = await policyErrors(file);
    assert.equal(errors.length, 1);
    const hostLine = text.split('\n').findIndex((l) => l.includes('host: 0.0.0.0')) + 1;
    assert.match(
      errors[0],
      new RegExp(`gateway\\.yaml:${hostLine}:9 server\\.host: host 0\\.0\\.0\\.0 \\(every address\\) needs server\\.auth\\.keys.*\\[TG_ERR_CONFIG_AUTH\\]$`),
    );
    // The gateway refuses to start on it, and on a --host given in place of server.host.
    await assert.rejects(startGateway({ configFile: file, port: 0, logger: createLogger({ level: 'silent' }), watch: false }), PolicyErrors);
    writeFileSync(file, simulatorPolicy());
    await assert.rejects(
      startGateway({ configFile: file, port: 0, host: '0.0.0.0', logger: createLogger({ level: 'silent' }), watch: false }),
      (err: unknown) => {
        assert.ok(err instanceof PolicyErrors);
        assert.equal(err.errors[0].code, 'TG_ERR_CONFIG_AUTH');
        assert.match(err.errors[0].message, /listening on 0\.0\.0\.0 \(asked for on the command line/);
        return true;
      },
    );
    // allow_unauthenticated: authentication happens in front of tiergate.
    writeFileSync(file, simulatorPolicy({ extra: 'server:\n  host: 0.0.0.0\n  auth: { allow_unauthenticated: true }\n' }));
    assert.deepEqual(await policyErrors(file), []);
  });

  test('a reload that drops every key while listening on 0.0.0.0 is rejected; the keys keep guarding', async (t) => {
    const { file, cleanup } = tempPolicy();
    t.after(cleanup);
    writeFileSync(file, authPolicy(KEYS + '    admin_token: ${ADMIN_TOKEN}\n'));
    const gateway = await startGateway({ configFile: file, port: 0, host: '0.0.0.0', logger: createLogger({ level: 'silent' }), watch: false, env });
    closeFirst.push(gateway);
    writeFileSync(file, simulatorPolicy({ routes }));
    const result = await gateway.manager.reload('admin');
    assert.equal(result.outcome, 'rejected');
    assert.match(result.errors!.join('\n'), /TG_ERR_CONFIG_AUTH/);
    const res = await fetch(`${gateway.url}/v1/models`);
    assert.equal(res.status, 401);
  });

  const lan = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
  test(
    'a client from another address gets 403 TG_ERR_AUTH_LOOPBACK_ONLY when the policy in force has no keys',
    { skip: lan ? false : 'no non-loopback IPv4 interface on this machine' },
    async (t) => {
      const { file, cleanup } = tempPolicy();
      t.after(cleanup);
      // Listening on every address with keys, then a reload to a loopback host without keys:
      // the socket stays bound, so the request path itself refuses other addresses.
      writeFileSync(file, authPolicy(KEYS, '  host: 0.0.0.0\n'));
      const gateway = await startGateway({ configFile: file, port: 0, logger: createLogger({ level: 'silent' }), watch: false, env });
      closeFirst.push(gateway);
      const port = (gateway.server.address() as AddressInfo).port;
      assert.equal((await get(`http://${lan}:${port}/v1/models`, bearer(TEAM_A_KEY))).status, 200);
      writeFileSync(file, simulatorPolicy({ routes, extra: 'server: { host: 127.0.0.1 }\n' }));
      assert.equal((await gateway.manager.reload('admin')).outcome, 'applied');
      const refused = await get(`http://${lan}:${port}/v1/models`);
      assert.equal(refused.status, 403);
      assert.equal(refused.body.error.code, 'TG_ERR_AUTH_LOOPBACK_ONLY');
      assert.equal((await get(`http://${lan}:${port}/admin/status`)).status, 403);
      assert.equal((await get(`http://127.0.0.1:${port}/v1/models`)).status, 200);
    },
  );
});

describe('server.auth: located errors', () => {
  async function check(auth: string, extraServer = ''): Promise<{ errors: string[]; text: string }> {
    const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-auth-'));
    try {
      const file = path.join(dir, 'gateway.yaml');
      const text = authPolicy(auth, extraServer);
      writeFileSync(file, text);
      return { errors: await policyErrors(file), text };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const lineOf = (text: string, needle: string) => text.split('\n').findIndex((l) => l.includes(needle)) + 1;

  test('an unknown route or model in an allow-list is a reference error with a suggestion', async () => {
    const { errors, text } = await check(
      `    keys:\n      - name: team-a\n        key: \${TEAM_A_KEY}\n        routes: [support, biling]\n        models: [small-modle]\n`,
    );
    assert.equal(errors.length, 2, errors.join('\n'));
    const routesLine = lineOf(text, 'routes: [support, biling]');
    assert.match(
      errors[0],
      new RegExp(
        `:${routesLine}:27 server\\.auth\\.keys\\[0\\]\\.routes\\[1\\]: no route named "biling" \\(did you mean "billing"\\?\\) \\[TG_ERR_CONFIG_REFERENCE\\]`,
      ),
    );
    assert.match(errors[1], /server\.auth\.keys\[0\]\.models\[0\]: no model named "small-modle" \(did you mean "small-model"\?\) \[TG_ERR_CONFIG_REFERENCE\]/);
  });

  test('routes must be "*" or a list', async () => {
    const { errors } = await check(`    keys:\n      - { name: team-a, key: \${TEAM_A_KEY}, routes: support }\n`);
    assert.equal(errors.length, 1, errors.join('\n'));
    assert.match(errors[0], /server\.auth\.keys\[0\]\.routes: must be "\*" \[TG_ERR_CONFIG_SCHEMA\]/);
  });

  test('names and keys must be unique, the admin token differs from every key; no message quotes a key', async () => {
    const { errors } = await check(
      `    keys:\n      - { name: a, key: \${TEAM_A_KEY}, routes: '*' }\n      - { name: a, key: \${OPS_KEY}, routes: '*' }\n      - { name: c, key: \${TEAM_A_KEY}, routes: '*' }\n    admin_token: \${OPS_KEY}\n`,
    );
    assert.equal(errors.length, 3, errors.join('\n'));
    assert.match(errors[0], /server\.auth\.keys\[1\]\.name: key name "a" is also used by keys\[0\].*\[TG_ERR_CONFIG_AUTH\]/);
    assert.match(errors[1], /server\.auth\.keys\[2\]\.key: this key is the same as the key of "a".*\[TG_ERR_CONFIG_AUTH\]/);
    assert.match(errors[2], /server\.auth\.admin_token: admin_token is the same as the key of "a".*\[TG_ERR_CONFIG_AUTH\]/);
    for (const e of errors) for (const secret of [TEAM_A_KEY, OPS_KEY]) assert.ok(!e.includes(secret), e);
  });

  test('metrics_token differs from every key and from the admin token', async () => {
    const { errors } = await check(`    keys:\n      - { name: a, key: \${TEAM_A_KEY}, routes: '*' }\n    metrics_token: \${TEAM_A_KEY}\n`);
    assert.equal(errors.length, 1, errors.join('\n'));
    assert.match(errors[0], /server\.auth\.metrics_token: metrics_token is the same as the key of "a".*\[TG_ERR_CONFIG_AUTH\]/);
    const same = await check(
      `    keys:\n      - { name: a, key: \${TEAM_A_KEY}, routes: '*' }\n    admin_token: \${OPS_KEY}\n    metrics_token: \${OPS_KEY}\n`,
    );
    assert.equal(same.errors.length, 1, same.errors.join('\n'));
    assert.match(same.errors[0], /server\.auth\.metrics_token: metrics_token is the same as admin_token.*\[TG_ERR_CONFIG_AUTH\]/);
    for (const e of [...errors, ...same.errors]) for (const secret of [TEAM_A_KEY, OPS_KEY]) assert.ok(!e.includes(secret), e);
  });

  test('a key must be at least 16 characters; an empty ${VAR:-} is refused, not treated as "no auth"', async () => {
    const { errors } = await check(`    keys:\n      - { name: a, key: "\${UNSET_KEY:-}", routes: '*' }\n      - { name: b, key: short-key, routes: '*' }\n`);
    assert.equal(errors.length, 2, errors.join('\n'));
    assert.match(errors[0], /server\.auth\.keys\[0\]\.key: must NOT have fewer than 16 characters \[TG_ERR_CONFIG_SCHEMA\]/);
    assert.ok(!errors[1].includes('short-key'), errors[1]);
  });

  test('allow_unauthenticated with keys, and an allow-listed authorization header, are errors', async () => {
    const { errors } = await check(`${KEYS}    allow_unauthenticated: true\n`, '  header_allowlist: [x-team, Authorization]\n');
    assert.equal(errors.length, 2, errors.join('\n'));
    assert.match(errors[0], /server\.auth\.allow_unauthenticated: allow_unauthenticated cannot be combined with keys/);
    assert.match(errors[1], /server\.header_allowlist\[1\]: authorization carries the client's credentials/);
  });
});

describe('GatewayAuth', () => {
  test('identifies keys by HMAC and constant-time comparison, whatever the token length', () => {
    const auth = new GatewayAuth({
      keys: [
        { name: 'a', key: TEAM_A_KEY, routes: '*' },
        { name: 'b', key: OPS_KEY, routes: ['support'], models: '*' },
      ],
      admin_token: ADMIN_TOKEN,
    });
    assert.equal(auth.identify(TEAM_A_KEY)?.name, 'a');
    assert.equal(auth.identify(OPS_KEY)?.name, 'b');
    for (const token of ['', 'a', TEAM_A_KEY.toUpperCase(), ADMIN_TOKEN, 'z'.repeat(10_000)]) assert.equal(auth.identify(token), null);
    assert.ok(auth.isAdminToken(ADMIN_TOKEN));
    assert.ok(!auth.isAdminToken(TEAM_A_KEY));
    assert.ok(!new GatewayAuth(undefined).isAdminToken(ADMIN_TOKEN));
  });

  test('loopback hosts', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) assert.ok(isLoopbackHost(host), host);
    for (const host of ['0.0.0.0', '::', '10.0.0.5', 'example.com', '192.168.1.1']) assert.ok(!isLoopbackHost(host), host);
  });
});

/** A policy file in a folder of its own; cleanup closes the gateways started on it, then removes the folder. */
const closeFirst: Array<{ close(): Promise<void> }> = [];
function tempPolicy(): { dir: string; file: string; cleanup: () => Promise<void> } {
  const dir = mkdtempSync(path.join(tmpdir(), 'tiergate-auth-'));
  return {
    dir,
    file: path.join(dir, 'gateway.yaml'),
    async cleanup() {
      for (const gateway of closeFirst.splice(0)) await gateway.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function policyErrors(file: string): Promise<string[]> {
  try {
    const runtime = await buildRuntime(file, { logger: createLogger({ level: 'silent' }), mode: 'validate', env });
    await runtime.dispose();
    return [];
  } catch (err) {
    if (err instanceof PolicyErrors) return err.errors.map((e) => e.located());
    throw err;
  }
}
