// `tiergate serve`: the gateway, hot-reloading its policy, stopping gracefully.
import path from 'node:path';
import type { Command } from 'commander';
import { createLogger } from '../../observe/logger.ts';
import { startGateway } from '../../faces/server.ts';
import { DEFAULT_CONFIG, parsePort, printErrors } from './common.ts';

export function register(program: Command): void {
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
      logger.info(`tiergate listening on ${gateway.url}`, {
        policy: path.relative(process.cwd(), gateway.manager.configFile) || opts.config,
        policy_version: runtime.version,
        routes: [...runtime.routes.keys()],
      });
      logger.info(`models: ${[...runtime.models.values()].map((m) => `${m.spec.name} via ${m.spec.provider} (${m.providerPlugin})`).join(', ')}`);
      // logrotate's `postrotate` convention: after the log was moved aside, SIGHUP makes
      // the decision log open its file again by name; the policy is reloaded as well.
      process.on('SIGHUP', () => {
        void gateway.manager.runtime.decisionLog?.reopen().then((reopened) => reopened && logger.info('decision log reopened (SIGHUP)'));
        void gateway.manager.reload('signal');
      });
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) {
          // A second signal: stop the requests in flight now instead of waiting for them.
          gateway.stopInFlight();
          return;
        }
        stopping = true;
        logger.info('shutting down: finishing in-flight requests', { signal, timeout_ms: gateway.manager.runtime.server.shutdownTimeoutMs });
        void gateway.close().then(() => {
          logger.info('stopped');
          process.exit(0);
        });
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
