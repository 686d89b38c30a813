// The routing step in-process, without HTTP: the runtime is built from a benchmark
// policy exactly as `tiergate serve` builds it, and routeRequest (features, then the
// rules router, then the decision checks: src/pipeline/route.ts) is timed call by call. The
// router alone (rules only, features given) is timed too, to split the two.
import { createLogger } from '../../src/observe/logger.ts';
import { requestView, routeRequest, type ChatBody } from '../../src/pipeline/route.ts';
import { buildRuntime } from '../../src/policy/compile.ts';
import { chatBody, routeName, type PolicyShape } from './policy.ts';
import { Samples, quantile } from './stats.ts';

export interface DecisionTiming {
  rules: number;
  routes: number;
  calls: number;
  /** routeRequest: features + router + checks, as on the request path. */
  p50_us: number;
  p99_us: number;
  /** The rules router alone, features already evaluated. */
  router_p50_us: number;
  /** The decision the benchmark request got, to show it went through every rule. */
  reason: string;
}

async function timeCalls(fn: () => Promise<unknown>, budgetMs: number, maxCalls: number): Promise<Samples> {
  // Warm-up: a fifth of the budget, so the JIT has settled before anything is kept.
  const warmUntil = performance.now() + budgetMs / 5;
  for (let i = 0; i < maxCalls && performance.now() < warmUntil; i++) await fn();
  const samples = new Samples();
  const until = performance.now() + budgetMs;
  while (samples.length < maxCalls && performance.now() < until) {
    const t0 = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return samples;
}

export async function measureDecision(policyFile: string, shape: PolicyShape, budgetMs: number): Promise<DecisionTiming> {
  const runtime = await buildRuntime(policyFile, { logger: createLogger({ level: 'silent' }), mode: 'validate' });
  try {
    const body = JSON.parse(chatBody(routeName(shape), false)) as ChatBody;
    const headers = { 'content-type': 'application/json', 'x-team': 'support' };
    const first = await routeRequest(runtime, body, requestView(body, headers, runtime.server.headerAllowlist));
    const whole = await timeCalls(() => routeRequest(runtime, body, requestView(body, headers, runtime.server.headerAllowlist)), budgetMs, 200_000);
    const route = first.route!;
    const context = { route: route.name, request: first.view, features: first.features, input: first.input };
    const router = await timeCalls(async () => route.router.route(context), budgetMs / 2, 200_000);
    return {
      rules: shape.rules,
      routes: shape.routes,
      calls: whole.length,
      p50_us: quantile(whole.values(), 0.5),
      p99_us: quantile(whole.values(), 0.99),
      router_p50_us: quantile(router.values(), 0.5),
      reason: first.reason,
    };
  } finally {
    await runtime.dispose();
  }
}
