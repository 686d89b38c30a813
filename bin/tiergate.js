#!/usr/bin/env node
// tiergate is written in TypeScript and run without a build step: tsx compiles on
// load, which also lets teams drop .ts plugins into plugins/ and hot-reload them.
// Both hooks, as `node --import tsx` does: a team's plugin folder outside an ES-module
// package is loaded as CommonJS, and only tsx's require hook lets an edit of it be
// loaded afresh on reload (see loadPlugin in src/policy/plugins.ts).
import v8 from 'node:v8';
import { register } from 'tsx/esm/api';
import { register as registerCommonJs } from 'tsx/cjs/api';

// Old-generation growth: under load the gateway's live heap is ~25–30 MB, but every
// scavenge promotes the objects of the ~50 requests in flight (~2 MB), and V8's default
// growing factor (up to 4× the live size after a full GC) let the old space fill with
// that dead-on-promotion garbage to ~100 MB before collecting it: ~270 MB RSS at 50
// connections. Growing by 1.5× instead collects it at ~40 MB: ~180 MB RSS, and no
// throughput lost (measured: 537–543 vs 571–589 µs of CPU per request at 50
// connections — the smaller heap is, if anything, cheaper). Marking cost follows the
// live size, which stays small, so the more frequent full GCs are short. Read by V8 at
// every GC, so setting it here, before the gateway allocates, is as good as the
// command-line flag.
v8.setFlagsFromString('--heap-growing-percent=50');

register();
registerCommonJs();
await import('../src/cli/index.ts');
