#!/usr/bin/env node
// tiergate runs compiled: dist/ is built by `npm install` (the `prepare` script) and by
// `npm run build`. tsx is registered only so that a team can drop a .ts plugin into its
// plugin folder and hot-reload it; the gateway's own modules are plain JavaScript, which
// tsx passes through untouched. Both hooks, as `node --import tsx` does: a team's plugin
// folder outside an ES-module package is loaded as CommonJS, and only tsx's require hook
// lets an edit of it be loaded afresh on reload (see loadPlugin in src/policy/plugins.ts).
// V8 flags such as the heap growth the gateway is tuned for belong to the deployment's
// `node` command (Dockerfile, README), not to every command run here.
import { existsSync } from 'node:fs';
import { register } from 'tsx/esm/api';
import { register as registerCommonJs } from 'tsx/cjs/api';

const entry = new URL('../dist/src/cli/index.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('tiergate is not built: run `npm install` (or `npm run build`) in the tiergate folder first\n');
  process.exit(1);
}
register();
registerCommonJs();
await import(entry.href);
