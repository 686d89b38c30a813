// GET /metrics over real HTTP: traffic from the official openai SDK through a real
// gateway on the simulator (a gate that escalates, a judge that costs, a model that
// fails), then the Prometheus exposition text is parsed and checked against the
// decision log, line by line. Reloads and the active policy version, and two gateways
// in one process keeping their own counts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { ChatCompletionCreateParamsNonStreaming } from 'openai/resources/chat/completions';
import { observedPolicy, simulatorPolicy, startTestGateway, type TestGateway } from '../support/gateway.ts';
import { apiError } from '../support/http.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';
import { promptDifficulty } from '../../plugins/providers/simulator/index.ts';

// ---------------------------------------------------------------------------------
// The exposition format (text 0.0.4), parsed strictly enough to catch a malformed line.

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Exposition {
  samples: Sample[];
  types: Map<string, string>;
  help: Map<string, string>;
}

const SAMPLE_RE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL_RE = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/y;

function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ');
      types.set(name, type);
      continue;
    }
    if (line.startsWith('# HELP ')) {
      const rest = line.slice(7);
      const space = rest.indexOf(' ');
      help.set(rest.slice(0, space), rest.slice(space + 1));
      continue;
    }
    if (line.startsWith('#')) continue;
    const match = SAMPLE_RE.exec(line);
    assert.ok(match, `malformed exposition line: ${line}`);
    const labels: Record<string, string> = {};
    const body = match[2] ?? '';
    LABEL_RE.lastIndex = 0;
    while (LABEL_RE.lastIndex < body.length) {
      const pair = LABEL_RE.exec(body);
      assert.ok(pair, `malformed labels in: ${line}`);
      labels[pair[1]] = pair[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    // Prometheus reads values as Go's ParseFloat does: NaN and Inf in any case (prom-client writes "Nan").
    const raw = match[3].toLowerCase();
    const value = raw === 'nan' ? NaN : raw === '+inf' || raw === 'inf' ? Infinity : raw === '-inf' ? -Infinity : Number(match[3]);
    assert.ok(!Number.isNaN(value) || raw === 'nan', `bad value in: ${line}`);
    samples.push({ name: match[1], labels, value });
  }
  return { samples, types, help };
}

/** Samples of `name` whose labels include `where`. */
function select(exp: Exposition, name: string, where: Record<string, string> = {}): Sample[] {
  return exp.samples.filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v));
}

/** The one sample of `name` with exactly these labels (0 when absent). */
function value(exp: Exposition, name: string, labels: Record<string, string>): number {
  const found = exp.samples.filter((s) => s.name === name && sameLabels(s.labels, labels));
  assert.ok(found.length <= 1, `duplicate series ${name}${JSON.stringify(labels)}`);
  return found[0]?.value ?? 0;
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

const total = (samples: Sample[]) => samples.reduce((sum, s) => sum + s.value, 0);

/** Groups records by a key and sums a number per group. */
function groupSum<T>(items: T[], key: (item: T) => string | null, amount: (item: T) => number): Map<string, number> {
  const out = new Map<string, number>();
  for (const item of items) {
    const k = key(item);
    if (k === null) continue;
    out.set(k, (out.get(k) ?? 0) + amount(item));
  }
  return out;
}

function assertClose(actual: number, expected: number, what: string, tolerance = 1e-9): void {
  assert.ok(Math.abs(actual - expected) <= tolerance * Math.max(1, Math.abs(expected)), `${what}: ${actual} ≠ ${expected}`);
}

async function scrape(tg: TestGateway): Promise<Exposition> {
  const res = await fetch(`${tg.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

// ---------------------------------------------------------------------------------
// The gateway under test

const POLICY = observedPolicy(`  judged:
    router: { plugin: rules, rules: [ { when: "true", tier: small, reason: all cheap } ] }
    default: small
    gate: { evaluators: [ { plugin: llm_judge, model: small-model } ], threshold: 0.5, max_escalations: 1 }
`);

const EASY = 'Classify this review as positive or negative: great food';
const HARD = 'Prove step by step that the sum of the first n odd numbers is n^2, then explain why induction works here.';

function chat(model: string, content: string, metadata?: Record<string, string>): ChatCompletionCreateParamsNonStreaming {
  return { model, messages: [{ role: 'user', content }], ...(metadata ? { metadata } : {}) };
}

describe('GET /metrics (Prometheus)', () => {
  let tg: TestGateway;
  let client: OpenAI;
  let records: DecisionRecord[];
  let exp: Exposition;

  before(async () => {
    tg = await startTestGateway(POLICY);
    client = new OpenAI({ baseURL: tg.baseURL, apiKey: 'unused', maxRetries: 0, timeout: 5000 });
  });
  after(async () => {
    await tg?.close();
  });

  test('after traffic, every counter and histogram matches the decision log', async () => {
    assert.ok(promptDifficulty([{ role: 'user', content: HARD }]) > 0.3, 'the hard prompt is beyond the small model');
    assert.ok(promptDifficulty([{ role: 'user', content: EASY }]) <= 0.3, 'the easy prompt is within the small model');

    const easy = await client.chat.completions.create(chat('support', EASY, { task_type: 'classification' })).withResponse();
    assert.equal(easy.response.headers.get('x-tiergate-escalations'), '0');
    const hard = await client.chat.completions.create(chat('support', HARD, { task_type: 'classification' })).withResponse();
    assert.equal(hard.response.headers.get('x-tiergate-escalations'), '1', 'the gate sent the hard prompt up a tier');
    assert.equal(hard.data.model, 'large-model');
    await client.chat.completions.create(chat('support', 'What is the capital of France?'));
    const stream = await client.chat.completions.create({ ...chat('support', EASY, { task_type: 'classification' }), stream: true });
    for await (const _chunk of stream) {
      // drain
    }
    await client.chat.completions.create(chat('judged', 'Summarise the plot of Hamlet in two sentences.'));
    const broken = await apiError(client.chat.completions.create(chat('broken-model', 'hello')));
    assert.ok((broken.status ?? 0) >= 500, `the failing model answers 5xx, got ${broken.status}`);
    const unknown = await apiError(client.chat.completions.create(chat('no-such-model', 'hello')));
    assert.equal(unknown.status, 404);

    const SENT = 7;
    records = await tg.waitForDecisions(SENT);
    assert.equal(records.length, SENT);
    exp = await scrape(tg);

    // The traffic covers what the metrics must count.
    assert.ok(
      records.some((r) => r.escalations > 0),
      'an escalation',
    );
    assert.equal(records.filter((r) => r.status === 'error').length, 2, 'two errors');
    assert.ok(
      records.some((r) => r.attempts.some((a) => (a.gate?.cost_usd ?? 0) > 0)),
      'a judge call that cost money',
    );

    // Types.
    assert.equal(exp.types.get('tiergate_requests_total'), 'counter');
    assert.equal(exp.types.get('tiergate_request_duration_seconds'), 'histogram');
    assert.equal(exp.types.get('tiergate_upstream_duration_seconds'), 'histogram');
    assert.equal(exp.types.get('tiergate_gate_score'), 'histogram');
    assert.equal(exp.types.get('tiergate_cost_saved_usd'), 'gauge');
    assert.equal(exp.types.get('tiergate_policy_info'), 'gauge');

    // Requests: one series per (route, model, tier, status, gate), counts as in the log.
    const requestKey = (r: DecisionRecord) =>
      JSON.stringify({ route: r.route ?? '', model: r.selected_model ?? '', tier: r.tier ?? '', status: r.status, gate: r.gate });
    const expectedRequests = groupSum(records, requestKey, () => 1);
    const requestSeries = select(exp, 'tiergate_requests_total');
    assert.equal(requestSeries.length, expectedRequests.size, `series: ${JSON.stringify(requestSeries.map((s) => s.labels))}`);
    for (const [key, n] of expectedRequests) assert.equal(value(exp, 'tiergate_requests_total', JSON.parse(key)), n, `requests ${key}`);
    assert.equal(total(requestSeries), SENT);
    assert.equal(value(exp, 'tiergate_requests_total', { route: '', model: 'broken-model', tier: '', status: 'error', gate: 'none' }), 1);
    assert.equal(
      value(exp, 'tiergate_requests_total', { route: '', model: '', tier: '', status: 'error', gate: 'none' }),
      1,
      'an unknown model name is not a label value',
    );

    // Request latency, per route: count, sum and every cumulative bucket.
    for (const [route, n] of groupSum(
      records,
      (r) => r.route ?? '',
      () => 1,
    )) {
      assert.equal(value(exp, 'tiergate_request_duration_seconds_count', { route }), n, `duration count ${route}`);
      const mine = records.filter((r) => (r.route ?? '') === route);
      assertClose(
        value(exp, 'tiergate_request_duration_seconds_sum', { route }),
        mine.reduce((s, r) => s + r.latency_ms / 1000, 0),
        `duration sum ${route}`,
        1e-6,
      );
      const buckets = select(exp, 'tiergate_request_duration_seconds_bucket', { route });
      assert.ok(buckets.length >= 10);
      for (const b of buckets) {
        const le = b.labels.le === '+Inf' ? Infinity : Number(b.labels.le);
        assert.equal(b.value, mine.filter((r) => r.latency_ms / 1000 <= le).length, `duration bucket ${route} le=${b.labels.le}`);
      }
    }

    // Upstream latency of the served call, per model.
    const served = records.filter((r) => r.upstream_latency_ms !== null);
    for (const [model, n] of groupSum(
      served,
      (r) => r.selected_model,
      () => 1,
    )) {
      assert.equal(value(exp, 'tiergate_upstream_duration_seconds_count', { model }), n, `upstream count ${model}`);
      assertClose(
        value(exp, 'tiergate_upstream_duration_seconds_sum', { model }),
        served.filter((r) => r.selected_model === model).reduce((s, r) => s + r.upstream_latency_ms! / 1000, 0),
        `upstream sum ${model}`,
        1e-6,
      );
    }
    assert.equal(total(select(exp, 'tiergate_upstream_duration_seconds_count')), served.length);

    // Tokens and cost of every call, per model.
    const attempts = records.flatMap((r) => r.attempts.map((a) => ({ ...a, route: r.route ?? '' })));
    for (const kind of ['prompt', 'completion'] as const) {
      const expected = groupSum(
        attempts.filter((a) => a.usage),
        (a) => a.model,
        (a) => (kind === 'prompt' ? a.usage!.prompt_tokens : a.usage!.completion_tokens),
      );
      assert.equal(select(exp, 'tiergate_tokens_total', { kind }).length, expected.size);
      for (const [model, n] of expected) assert.equal(value(exp, 'tiergate_tokens_total', { model, kind }), n, `${kind} tokens ${model}`);
    }
    for (const [key, usd] of groupSum(
      attempts,
      (a) => JSON.stringify({ route: a.route, model: a.model }),
      (a) => a.cost_usd,
    )) {
      if (usd > 0) assertClose(value(exp, 'tiergate_cost_usd_total', JSON.parse(key)), usd, `cost ${key}`);
    }
    const judgeCost = attempts.reduce((s, a) => s + (a.gate?.cost_usd ?? 0), 0);
    assertClose(value(exp, 'tiergate_cost_usd_total', { route: 'judged', model: '(gate)' }), judgeCost, 'judge cost');
    // All of it adds up to what the decision lines say the requests cost.
    assertClose(
      total(select(exp, 'tiergate_cost_usd_total')),
      records.reduce((s, r) => s + (r.cost_usd ?? 0), 0),
      'total cost',
    );
    for (const [route, usd] of groupSum(
      records,
      (r) => r.route ?? '',
      (r) => r.cost_usd ?? 0,
    )) {
      assertClose(total(select(exp, 'tiergate_cost_usd_total', { route })), usd, `cost of route ${route}`);
    }

    // Always-best cost and cost saved, per route.
    const answered = records.filter((r) => r.cost_saved_usd !== null);
    assert.ok(answered.length >= 5);
    for (const [route, usd] of groupSum(
      answered,
      (r) => r.route ?? '',
      (r) => r.best_cost_usd!,
    ))
      assertClose(value(exp, 'tiergate_best_cost_usd_total', { route }), usd, `best cost ${route}`);
    for (const [route, usd] of groupSum(
      answered,
      (r) => r.route ?? '',
      (r) => r.cost_saved_usd!,
    ))
      assertClose(value(exp, 'tiergate_cost_saved_usd', { route }), usd, `cost saved ${route}`);

    // Escalations.
    for (const route of ['support', 'judged']) {
      const mine = records.filter((r) => r.route === route);
      assert.equal(
        value(exp, 'tiergate_escalations_total', { route }),
        mine.reduce((s, r) => s + r.escalations, 0),
        `escalations ${route}`,
      );
      assert.equal(value(exp, 'tiergate_escalated_requests_total', { route }), mine.filter((r) => r.was_escalated).length, `escalated requests ${route}`);
    }
    assert.ok(value(exp, 'tiergate_escalations_total', { route: 'support' }) >= 1);

    // Gate scores of every evaluator on every gated attempt.
    const scores = attempts.flatMap((a) =>
      (a.gate?.evaluators ?? []).filter((e) => !e.skipped && e.score !== null).map((e) => ({ route: a.route, evaluator: e.name, score: e.score! })),
    );
    assert.ok(scores.length >= 4, 'gates scored answers');
    for (const [key, n] of groupSum(
      scores,
      (s) => JSON.stringify({ route: s.route, evaluator: s.evaluator }),
      () => 1,
    )) {
      const labels = JSON.parse(key);
      assert.equal(value(exp, 'tiergate_gate_score_count', labels), n, `gate score count ${key}`);
      const mine = scores.filter((s) => s.route === labels.route && s.evaluator === labels.evaluator);
      assertClose(
        value(exp, 'tiergate_gate_score_sum', labels),
        mine.reduce((s, x) => s + x.score, 0),
        `gate score sum ${key}`,
      );
      assert.equal(value(exp, 'tiergate_gate_score_bucket', { ...labels, le: '0.5' }), mine.filter((s) => s.score <= 0.5).length, `gate scores ≤ 0.5 ${key}`);
    }
    assert.ok(value(exp, 'tiergate_gate_score_bucket', { route: 'support', evaluator: 'heuristics', le: '0.5' }) >= 1, 'the failed gate score is counted');

    // Decisions: the first routed tier and model.
    const routed = records.filter((r) => r.routed_model !== null);
    for (const [key, n] of groupSum(
      routed,
      (r) => JSON.stringify({ route: r.route ?? '', tier: r.routed_tier ?? '', model: r.routed_model }),
      () => 1,
    )) {
      assert.equal(value(exp, 'tiergate_decisions_total', JSON.parse(key)), n, `decisions ${key}`);
    }
    assert.equal(total(select(exp, 'tiergate_decisions_total')), routed.length);
    assert.equal(
      value(exp, 'tiergate_decisions_total', { route: 'support', tier: 'small', model: 'small-model' }),
      3,
      'the escalated request counts under the tier it was routed to',
    );

    // The active policy, no reloads yet, and the process metrics.
    const version = tg.gateway.manager.runtime.version;
    assert.ok(records.every((r) => r.policy_version === version));
    assert.deepEqual(
      select(exp, 'tiergate_policy_info').map((s) => [s.labels.version, s.value]),
      [[version, 1]],
    );
    for (const outcome of ['applied', 'unchanged', 'rejected']) assert.equal(value(exp, 'tiergate_reloads_total', { outcome }), 0);
    assert.equal(value(exp, 'tiergate_reload_error', {}), 0);
    assert.ok(select(exp, 'process_cpu_user_seconds_total').length === 1, 'process metrics are exposed');
    assert.ok(select(exp, 'nodejs_heap_size_used_bytes').length === 1, 'Node.js metrics are exposed');

    // No label carries a request id or anything a client made up.
    const values = exp.samples.flatMap((s) => Object.values(s.labels));
    assert.ok(!values.some((v) => v.startsWith('tg-')), 'no request ids in labels');
    assert.ok(!values.includes('no-such-model'), 'no client-supplied model names in labels');
  });

  test('reloads are counted by outcome and policy_info follows the active version', async () => {
    const before = tg.gateway.manager.runtime.version;
    const reload = async (expectedStatus: number) => {
      const res = await fetch(`${tg.url}/admin/reload`, { method: 'POST' });
      assert.equal(res.status, expectedStatus, JSON.stringify(await res.json()));
    };

    await reload(200);
    let m = await scrape(tg);
    assert.equal(value(m, 'tiergate_reloads_total', { outcome: 'unchanged' }), 1);
    assert.deepEqual(
      select(m, 'tiergate_policy_info').map((s) => s.labels.version),
      [before],
    );

    tg.writePolicy(POLICY.replace('threshold: 0.5, max_escalations: 1 }\n  judged', 'threshold: 0.4, max_escalations: 1 }\n  judged'));
    await reload(200);
    const after = tg.gateway.manager.runtime.version;
    assert.notEqual(after, before);
    m = await scrape(tg);
    assert.equal(value(m, 'tiergate_reloads_total', { outcome: 'applied' }), 1);
    assert.deepEqual(
      select(m, 'tiergate_policy_info').map((s) => [s.labels.version, s.value]),
      [[after, 1]],
      'only the active version is 1; the old one is gone',
    );

    tg.writePolicy(POLICY.replace('default: large', 'default: no-such-tier'));
    await reload(422);
    m = await scrape(tg);
    assert.equal(value(m, 'tiergate_reloads_total', { outcome: 'rejected' }), 1);
    assert.equal(value(m, 'tiergate_reload_error', {}), 1);
    assert.deepEqual(
      select(m, 'tiergate_policy_info').map((s) => s.labels.version),
      [after],
      'a rejected reload leaves the version in force',
    );

    tg.writePolicy(POLICY);
    await reload(200);
    m = await scrape(tg);
    assert.equal(value(m, 'tiergate_reloads_total', { outcome: 'applied' }), 2);
    assert.equal(value(m, 'tiergate_reload_error', {}), 0);
    assert.deepEqual(
      select(m, 'tiergate_policy_info').map((s) => s.labels.version),
      [before],
    );
    assert.equal(tg.gateway.manager.status().reloads.applied, 2, 'the metric agrees with /admin/status');

    // Requests after the reload run (and are counted) under the new version.
    await client.chat.completions.create(chat('support', EASY, { task_type: 'classification' }));
    m = await scrape(tg);
    assert.equal(total(select(m, 'tiergate_requests_total')), records.length + 1);
  });

  test('two gateways in one process keep their own counts', async () => {
    const other = await startTestGateway(simulatorPolicy());
    try {
      const first = await scrape(tg);
      const firstTotal = total(select(first, 'tiergate_requests_total'));
      const otherClient = new OpenAI({ baseURL: other.baseURL, apiKey: 'unused', maxRetries: 0, timeout: 5000 });
      await otherClient.chat.completions.create(chat('support', 'Hello there!'));
      await otherClient.chat.completions.create(chat('support', EASY, { task_type: 'classification' }));
      await other.waitForDecisions(2);

      const mine = await scrape(other);
      assert.equal(total(select(mine, 'tiergate_requests_total')), 2);
      assert.deepEqual(
        select(mine, 'tiergate_requests_total').map((s) => s.labels.route),
        ['support', 'support'],
      );
      assert.equal(value(mine, 'tiergate_reloads_total', { outcome: 'applied' }), 0, "the other gateway's reloads are not counted here");
      assert.deepEqual(
        select(mine, 'tiergate_policy_info').map((s) => s.labels.version),
        [other.gateway.manager.runtime.version],
      );
      assert.equal(select(mine, 'tiergate_cost_usd_total', { route: 'judged' }).length, 0);
      assert.ok(select(mine, 'process_cpu_user_seconds_total').length === 1);

      const again = await scrape(tg);
      assert.equal(total(select(again, 'tiergate_requests_total')), firstTotal, 'traffic to the other gateway is not counted here');
    } finally {
      await other.close();
    }
  });
});
