// tiergate's command line. Each command is a module in src/cli/commands/ exporting
// register(program); this file only reads that folder.
import { Command } from 'commander';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const program = new Command();
program.name('tiergate').description('Cost-aware LLM routing gateway').showHelpAfterError();
const folder = fileURLToPath(new URL('./commands/', import.meta.url));
// The commands are .ts beside the source and .js in dist/ (next to their .d.ts): take
// the modules written like this one.
const moduleExtension = path.extname(fileURLToPath(import.meta.url));
const isCommand = (file: string) => file.endsWith(moduleExtension) && !file.endsWith('.d.ts') && file !== `common${moduleExtension}`;
for (const file of readdirSync(folder).filter(isCommand).sort()) {
  const command = (await import(pathToFileURL(folder + file).href)) as { register?: (p: Command) => void };
  command.register?.(program);
}
await program.parseAsync(process.argv);
