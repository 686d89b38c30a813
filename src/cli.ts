// tiergate's command line: `serve` runs the gateway, `validate` checks a policy the way
// the gateway would load it (plugins created, then disposed) and prints a summary.
import { Command, InvalidArgumentError } from 'commander';
import path from 'node:path';
import { PolicyErrors, TiergateError, errorMessage } from './errors.ts';
import { createLogger } from './logger.ts';
import { buildRuntime, type Runtime } from './runtime.ts';
import { startGateway } from './server.ts';

const DEFAULT_CONFIG = process.env.TIERGATE_CONFIG ?? 'gateway.yaml';

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('a port is a whole number from 0 to 65535');
  return port;
}

function printErrors(err: unknown): void {
  if (err instanceof PolicyErrors) {
    for (const e of err.errors) process.stderr.write(`${e.located()}\n`);
    process.stderr.write(`\n${err.errors.length} error${err.errors.length === 1 ? '' : 's'}: the policy was not loaded.\n`);
  } else if (err instanceof TiergateError) {
    process.stderr.write(`${err.located()}\n`);
  } else {
    process.stderr.write(`tiergate: ${errorMessage(err)}\n`);
  }
}

function summary(runtime: Runtime): string {
  const lines: string[] = [];
  const price = (name: string) => {
    const m = runtime.models.get(name)!.spec;
    return `$${m.price.input_per_mtok}/$${m.price.output_per_mtok} per 1M in/out`;
  };
  lines.push(`${runtime.file}: valid (policy version ${runtime.version})`, '');
  lines.push(`tiers (cheapest first):`);
  runtime.tiers.forEach((tier, i) => lines.push(`  ${i + 1}. ${tier.name.padEnd(12)} ${tier.models.join(', ')}`));
  lines.push('', 'models:');
  for (const model of runtime.models.values()) {
    const upstream = model.spec.upstream === model.spec.name ? '' : ` (upstream ${model.spec.upstream})`;
    lines.push(`  ${model.spec.name.padEnd(20)} ${model.spec.provider}/${model.providerPlugin}${upstream}, ${price(model.spec.name)}`);
  }
  lines.push('', 'routes:');
  for (const route of runtime.routes.values()) {
    const target = (t: typeof route.defaultTarget) => (t.kind === 'tier' ? `tier ${runtime.tiers[t.tier].name}` : `model ${t.model}`);
    lines.push(`  ${route.name.padEnd(14)} router ${route.routerPlugin}, default ${target(route.defaultTarget)}, fallback ${target(route.fallback)}`);
    if (route.gate) {
      const g = route.gate;
      const from = g.thresholdSource === 'costs' ? ' (from costs)' : g.thresholdSource === 'default' ? ' (default)' : '';
      lines.push(`  ${''.padEnd(14)} gate ${g.evaluators.map((e) => e.name).join(', ')}: ${g.combine} ≥ ${g.threshold.toFixed(2)}${from}, up to ${g.maxEscalations} escalation${g.maxEscalations === 1 ? '' : 's'}, streaming ${g.streaming}`);
    }
    if (route.costs) lines.push(`  ${''.padEnd(14)} costs under:over ${route.costs.underRouting}:${route.costs.overRouting}, break-even confidence ${route.costs.breakEven.toFixed(2)}`);
    if (route.speculate) lines.push(`  ${''.padEnd(14)} speculate when ${route.speculate.source}`);
  }
  if (runtime.features.length) lines.push('', `features: ${runtime.features.map(([name]) => name).join(', ')}`);
  const byKind = new Map<string, Set<string>>();
  for (const p of runtime.plugins) byKind.set(p.kind, (byKind.get(p.kind) ?? new Set()).add(p.name));
  lines.push(`plugins:  ${[...byKind].map(([kind, names]) => `${kind}s ${[...names].join(', ')}`).join('; ')}`);
  return lines.join('\n');
}

export function buildCli(): Command {
  const program = new Command();
  program.name('tiergate').description('Cost-aware LLM routing gateway').showHelpAfterError();

  program
    .command('serve')
    .description('serve the OpenAI-compatible API with the policy in gateway.yaml (hot-reloaded on change)')
    .option('-c, --config <file>', 'policy file', DEFAULT_CONFIG)
    .option('-p, --port <n>', 'port to listen on (else $PORT, else server.port)', parsePort)
    .option('--host <address>', 'address to listen on (else server.host)')
    .option('--no-watch', 'reload only on SIGHUP or POST /admin/reload, not on file changes')
    .action(async (opts: { config: string; port?: number; host?: string; watch: boolean }) => {
      const logger = createLogger();
      const port = opts.port ?? (process.env.PORT ? parsePort(process.env.PORT) : undefined);
      let gateway;
      try {
        gateway = await startGateway({ configFile: opts.config, port, host: opts.host, logger, watch: opts.watch });
      } catch (err) {
        printErrors(err);
        process.exitCode = 1;
        return;
      }
      const runtime = gateway.manager.runtime;
      logger.info(`tiergate listening on ${gateway.url}`, { policy: path.relative(process.cwd(), gateway.manager.configFile) || opts.config, policy_version: runtime.version, routes: [...runtime.routes.keys()] });
      logger.info(`models: ${[...runtime.models.values()].map((m) => `${m.spec.name} via ${m.spec.provider} (${m.providerPlugin})`).join(', ')}`);
      process.on('SIGHUP', () => void gateway.manager.reload('signal'));
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info('shutting down: finishing in-flight requests', { signal });
        void gateway.close().then(() => {
          logger.info('stopped');
          process.exit(0);
        });
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });

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
  return program;
}

await buildCli().parseAsync(process.argv);
