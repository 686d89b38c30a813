// One fake-openai server scripted per upstream model name, for tests of the ladder,
// failover and speculation: each model gets a behaviour (or a function of its call
// number), every call is recorded with its arrival time, and an unscripted model
// answers 418 so that a stray call shows.
import assert from 'node:assert/strict';
import type { Behaviour, FakeOpenAI, RecordedRequest } from './fake-openai.ts';
import { until } from './wait.ts';

/** The fake upstream's script for one model: a behaviour, or a function of the call number. */
export type Step = Behaviour | ((n: number, body: any) => Behaviour);

export interface UpstreamCall {
  model: string;
  /** performance.now() when the request reached the fake. */
  at: number;
  body: any;
  record: RecordedRequest;
}

export class ScriptedUpstreams {
  private scripts = new Map<string, Step>();
  calls: UpstreamCall[] = [];

  constructor(readonly fake: FakeOpenAI) {
    fake.behave((body, record) => {
      const model = String(body.model);
      const n = this.calls.filter((c) => c.model === model).length;
      this.calls.push({ model, at: performance.now(), body, record });
      const step = this.scripts.get(model);
      if (!step) return { kind: 'status', status: 418, body: { error: { message: `unscripted upstream model ${model}`, type: 'test_error' } } };
      return typeof step === 'function' ? step(n, body) : step;
    });
  }

  /** Replaces the script and forgets earlier calls. */
  script(steps: Record<string, Step>): void {
    this.scripts = new Map(Object.entries(steps));
    this.calls = [];
  }

  to(model: string): UpstreamCall[] {
    return this.calls.filter((c) => c.model === model);
  }
}

export function reply(
  content: string,
  usage?: { prompt_tokens: number; completion_tokens: number },
  extra: Partial<Extract<Behaviour, { kind: 'reply' }>> = {},
): Behaviour {
  return { kind: 'reply', content, ...(usage ? { usage } : {}), ...extra };
}

/** Resolves once the upstream saw this call's client go away. */
export async function abortedUpstream(call: UpstreamCall | undefined): Promise<void> {
  assert.ok(call, 'the call reached the upstream');
  await until(() => call.record.aborted, `the abort of the ${call.model} call to reach the upstream`);
}
