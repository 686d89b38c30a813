#!/usr/bin/env node
// tiergate runs compiled: dist/ is built by `npm install` (the `prepare` script) and by
// `npm run build`. tsx is registered only when a team's plugin is first loaded, so that a
// team can drop a .ts plugin into its plugin folder and hot-reload it (see
// loadTeamPluginLoader in src/policy/plugins.ts); the gateway's own modules and built-in
// plugins are plain JavaScript and start without it.
// V8 flags such as the heap growth the gateway is tuned for belong to the deployment's
// `node` command (Dockerfile, README), not to every command run here.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/src/cli/index.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('tiergate is not built: run `npm install` (or `npm run build`) in the tiergate folder first\n');
  process.exit(1);
}
await import(entry.href);
