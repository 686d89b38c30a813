// The hot-reload tests' shared ground (test/policy/reload*.test.ts): admin endpoints,
// the version a policy on disk will get, an SDK call that returns what each answer says
// about the policy that served it, raw decision lines, a rules route to flip between
// versions, a gateway closed with its test, and a team router plugin to add and edit.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { policyFingerprint } from '../../src/policy/version.ts';
import type { ReloadResult, ReloadStatus } from '../../src/policy/reload.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';
import { startTestGateway, type TestGateway } from './gateway.ts';

/** `promise`, or `fallback` after `ms` (the timer is cleared either way, so it keeps nothing alive). */
export async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export type Status = ReloadStatus & { inflight_requests: number; plugins: Array<{ kind: string; name: string; at: string }> };

export async function status(url: string): Promise<Status> {
  const res = await fetch(`${url}/admin/status`);
  assert.equal(res.status, 200);
  return (await res.json()) as Status;
}

export async function adminReload(url: string): Promise<{ http: number; body: ReloadResult }> {
  const res = await fetch(`${url}/admin/reload`, { method: 'POST' });
  return { http: res.status, body: (await res.json()) as ReloadResult };
}

/** The version the gateway will report for the policy now on disk. */
export function versionOnDisk(file: string, builtinPluginRoot?: string): string {
  const version = policyFingerprint(file, { builtinPluginRoot });
  assert.ok(version, `policy ${file} should be readable`);
  return version;
}

export function client(tg: { baseURL: string }): OpenAI {
  return new OpenAI({ baseURL: tg.baseURL, apiKey: 'x', maxRetries: 0, timeout: 15_000 });
}

export interface Answer {
  version: string;
  tier: string | null;
  decisionId: string;
  content: string;
  stream: boolean;
  /** performance.now() when the client sent the request and when the answer was complete. */
  sentAt: number;
  doneAt: number;
}

export async function chat(openai: OpenAI, options: { content?: string; taskType?: string; stream?: boolean; model?: string } = {}): Promise<Answer> {
  const params = {
    model: options.model ?? 'support',
    messages: [{ role: 'user' as const, content: options.content ?? 'Classify this review as positive or negative: great product, fast delivery' }],
    ...(options.taskType ? { metadata: { task_type: options.taskType } } : {}),
  };
  const sentAt = performance.now();
  let content = '';
  let headers: Headers;
  if (options.stream) {
    const { data, response } = await openai.chat.completions.create({ ...params, stream: true }).withResponse();
    headers = response.headers;
    for await (const chunk of data) content += chunk.choices[0]?.delta?.content ?? '';
  } else {
    const { data, response } = await openai.chat.completions.create(params).withResponse();
    headers = response.headers;
    content = data.choices[0]?.message?.content ?? '';
  }
  const doneAt = performance.now();
  const version = headers.get('x-tiergate-policy-version');
  const decisionId = headers.get('x-tiergate-decision-id');
  assert.ok(version, 'every answer carries x-tiergate-policy-version');
  assert.ok(decisionId, 'every answer carries x-tiergate-decision-id');
  return { version, tier: headers.get('x-tiergate-tier'), decisionId, content, stream: options.stream === true, sentAt, doneAt };
}

/** Decision lines, read raw so the test can check the text as well as the parsed record. */
export function decisionLines(file: string): Array<{ raw: string; record: DecisionRecord }> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((raw) => ({ raw, record: JSON.parse(raw) as DecisionRecord }));
}
/** A rules route whose one rule sends classification requests to `tier`. */
export function rulesRoute(tier: 'small' | 'large', reason: string, extraRoute = ''): string {
  return `  support:
    router:
      plugin: rules
      rules:
        - { when: "task_type = 'classification'", tier: ${tier}, confidence: 0.9, reason: ${reason} }
    default: large
${extraRoute}`;
}

/** A test gateway closed (server, watchers, temp dir) when the test ends, pass or fail. */
export async function gateway(t: TestContext, policy: string, options: Parameters<typeof startTestGateway>[1] = {}): Promise<TestGateway> {
  const tg = await startTestGateway(policy, options);
  let closing: Promise<void> | null = null;
  const close = () => (closing ??= tg.close());
  t.after(close);
  return { ...tg, close };
}

/** A team router plugin (plain JavaScript) that sends everything to the small tier with `reason`. */
export function alwaysSmallRouter(reason: string): string {
  return `export default {
  meta: {
    id: 'always-small',
    kind: 'router',
    contract: 1,
    description: 'Routes everything to the small tier (team plugin used by the reload test).',
    options: { type: 'object', additionalProperties: false, properties: {} },
    example: {},
  },
  async create() {
    return { route: () => ({ tier: 'small', reason: ${JSON.stringify(reason)} }), async dispose() {} };
  },
};
`;
}
