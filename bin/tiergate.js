#!/usr/bin/env node
// tiergate is written in TypeScript and run without a build step: tsx compiles on
// load, which also lets teams drop .ts plugins into plugins/ and hot-reload them.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
