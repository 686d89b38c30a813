// Loaded into the gateway by the soak (`node --expose-gc --import scripts/bench/soak-probe.mjs
// bin/tiergate.js serve …`): on SIGUSR2 it collects garbage and prints one line,
// `soak-sample {"heap_used":…,"rss":…,…}`, to stdout. Plain JavaScript so that the gateway
// runs from dist/ as deployed, without tsx in its heap. Heap figures mean something only
// after a full collection: between two, the heap holds whatever garbage the last requests left.
import { setImmediate as nextTurn } from 'node:timers/promises';

process.on('SIGUSR2', () => {
  void (async () => {
    // Twice, a turn apart: the first collection's weak callbacks and finalizers free more.
    globalThis.gc();
    await nextTurn();
    globalThis.gc();
    const memory = process.memoryUsage();
    const sample = { heap_used: memory.heapUsed, heap_total: memory.heapTotal, external: memory.external, rss: memory.rss };
    process.stdout.write(`soak-sample ${JSON.stringify(sample)}\n`);
  })();
});
