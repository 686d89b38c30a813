// tiergate's command line. Each command is a module in src/cli/commands/ exporting
// register(program); this file only reads that folder.
import { Command } from 'commander';
import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const program = new Command();
program.name('tiergate').description('Cost-aware LLM routing gateway').showHelpAfterError();
const folder = fileURLToPath(new URL('./commands/', import.meta.url));
for (const file of readdirSync(folder).filter((f) => f.endsWith('.ts') && f !== 'common.ts').sort()) {
  const command = (await import(pathToFileURL(folder + file).href)) as { register?: (p: Command) => void };
  command.register?.(program);
}
await program.parseAsync(process.argv);
