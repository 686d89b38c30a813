#!/usr/bin/env node
// tiergate is written in TypeScript and run without a build step: tsx compiles on
// load, which also lets teams drop .ts plugins into plugins/ and hot-reload them.
// Both hooks, as `node --import tsx` does: a team's plugin folder outside an ES-module
// package is loaded as CommonJS, and only tsx's require hook lets an edit of it be
// loaded afresh on reload (see loadPlugin in src/plugins.ts).
import { register } from 'tsx/esm/api';
import { register as registerCommonJs } from 'tsx/cjs/api';

register();
registerCommonJs();
await import('../src/cli.ts');
