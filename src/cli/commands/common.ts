// Shared by the commands: how a policy error is printed, and a port argument.
import { InvalidArgumentError } from 'commander';
import { PolicyErrors, TiergateError, errorMessage } from '../../common/errors.ts';

export const DEFAULT_CONFIG = process.env.TIERGATE_CONFIG ?? 'gateway.yaml';

export function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('a port is a whole number from 0 to 65535');
  return port;
}

/** Every located error on stderr, then a count. */
export function printErrors(err: unknown): void {
  if (err instanceof PolicyErrors) {
    for (const e of err.errors) process.stderr.write(`${e.located()}\n`);
    process.stderr.write(`\n${err.errors.length} error${err.errors.length === 1 ? '' : 's'}: the policy was not loaded.\n`);
  } else if (err instanceof TiergateError) {
    process.stderr.write(`${err.located()}\n`);
  } else {
    process.stderr.write(`tiergate: ${errorMessage(err)}\n`);
  }
}
