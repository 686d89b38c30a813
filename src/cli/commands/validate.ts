// `tiergate validate [file]`: checks a policy the way the gateway would load it
// (plugins created, then disposed) and prints a one-screen summary, or every error.
import type { Command } from 'commander';
import { createLogger } from '../../observe/logger.ts';
import { buildRuntime } from '../../policy/compile.ts';
import type { Runtime } from '../../policy/runtime.ts';
import { DEFAULT_CONFIG, printErrors } from './common.ts';

function summary(runtime: Runtime): string {
  const lines: string[] = [];
  const price = (name: string) => {
    const m = runtime.models.get(name)!.spec;
    // An embedding model is charged for its input alone.
    if (m.kind === 'embedding') return `embeddings, $${m.price.input_per_mtok} per 1M in`;
    return `$${m.price.input_per_mtok}/$${m.price.output_per_mtok} per 1M in/out`;
  };
  lines.push(`${runtime.file}: valid (policy version ${runtime.version})`, '');
  lines.push(`tiers (cheapest first):`);
  runtime.tiers.forEach((tier, i) => lines.push(`  ${i + 1}. ${tier.name.padEnd(12)} ${tier.models.join(', ')}`));
  lines.push('', 'models:');
  const nameWidth = Math.max(20, ...[...runtime.models.keys()].map((name) => name.length));
  for (const model of runtime.models.values()) {
    const upstream = model.spec.upstream === model.spec.name ? '' : ` (upstream ${model.spec.upstream})`;
    lines.push(`  ${model.spec.name.padEnd(nameWidth)} ${model.spec.provider}/${model.providerPlugin}${upstream}, ${price(model.spec.name)}`);
  }
  lines.push('', 'routes:');
  for (const route of runtime.routes.values()) {
    const target = (t: typeof route.defaultTarget) => (t.kind === 'tier' ? `tier ${runtime.tiers[t.tier].name}` : `model ${t.model}`);
    lines.push(
      `  ${route.name.padEnd(14)} router ${route.routerPlugin}, default ${target(route.defaultTarget)}, fallback ${route.fallback ? target(route.fallback) : 'none'}${route.embeddings ? `, embeddings ${route.embeddings}` : ''}`,
    );
    if (route.gate) {
      const g = route.gate;
      const from = g.thresholdSource === 'costs' ? ' (from costs)' : g.thresholdSource === 'default' ? ' (default)' : '';
      lines.push(
        `  ${''.padEnd(14)} gate ${g.evaluators.map((e) => e.name).join(', ')}: ${g.combine} ≥ ${g.threshold.toFixed(2)}${from}${g.decide === 'cascade' ? ', decide cascade' : ''}, up to ${g.maxEscalations} escalation${g.maxEscalations === 1 ? '' : 's'}, streaming ${g.streaming}`,
      );
    }
    if (route.costs)
      lines.push(
        `  ${''.padEnd(14)} costs under:over ${route.costs.underRouting}:${route.costs.overRouting}, break-even confidence ${route.costs.breakEven.toFixed(2)}`,
      );
    if (route.speculate) lines.push(`  ${''.padEnd(14)} speculate when ${route.speculate.source}`);
    if (route.shadow)
      lines.push(
        `  ${''.padEnd(14)} shadow ${Math.round(route.shadow.sample * 1000) / 10} % of requests not served by ${route.bestModel} (also sent to it, off the client's path)`,
      );
  }
  if (runtime.features.length) lines.push('', `features: ${runtime.features.map(([name]) => name).join(', ')}`);
  const byKind = new Map<string, Set<string>>();
  for (const p of runtime.plugins) byKind.set(p.kind, (byKind.get(p.kind) ?? new Set()).add(p.name));
  const auth = runtime.server.auth;
  lines.push(
    `auth:     ${auth.hasKeys ? `keys ${auth.keyNames.join(', ')}` : auth.allowUnauthenticated ? 'none (allow_unauthenticated: authentication happens in front of tiergate)' : 'no keys: loopback clients only'}; admin token ${auth.hasAdminToken ? 'set' : auth.hasKeys ? 'not set (admin endpoints off)' : 'not set'}`,
  );
  const limits = runtime.limits.summary();
  if (limits) lines.push(`limits:   ${limits}`);
  lines.push(`plugins:  ${[...byKind].map(([kind, names]) => `${kind}s ${[...names].join(', ')}`).join('; ')}`);
  return lines.join('\n');
}

export function register(program: Command): void {
  program
    .command('validate')
    .description('check a policy file and print a summary, or every error (exit code 1)')
    .argument('[file]', 'policy file', DEFAULT_CONFIG)
    .action(async (file: string) => {
      const logger = createLogger({ level: 'error' });
      try {
        const runtime = await buildRuntime(file, { logger, mode: 'validate' });
        process.stdout.write(summary(runtime) + '\n');
        await runtime.dispose();
      } catch (err) {
        printErrors(err);
        process.exitCode = 1;
      }
    });
}
