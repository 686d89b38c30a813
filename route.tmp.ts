import { buildRuntime } from './src/runtime.ts';
import { createLogger } from './src/logger.ts';
import { requestView, routeRequest } from './src/routing.ts';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os'; import path from 'node:path';
const dir = mkdtempSync(path.join(tmpdir(), 'r-'));
const policy = `version: 1
providers: { up: { plugin: simulator, profiles: { s: {capability: 0.5, first_token_ms: 1, tokens_per_second: 10} } } }
models:
  s: { provider: up, price: { input_per_mtok: 1, output_per_mtok: 2 } }
  l: { provider: up, price: { input_per_mtok: 5, output_per_mtok: 10 } }
tiers: [ { name: small, models: [s] }, { name: large, models: [l] } ]
features:
  task_type: metadata.task_type
  domain: metadata.domain
  tokens: $estimateTokens()
routes:
  r:
    router:
      plugin: rules
      rules:
${Array.from({length: 10}, (_, i) => `        - { when: "task_type = 't${i}' and domain in ['a','b']", tier: small }`).join('\n')}
    default: large
`;
writeFileSync(path.join(dir, 'g.yaml'), policy);
const rt = await buildRuntime(path.join(dir, 'g.yaml'), { logger: createLogger({ level: 'silent' }), mode: 'validate' });
const body: any = { model: 'r', messages: [{ role: 'user', content: 'hello there, where is my parcel?' }], metadata: { task_type: 'x', domain: 'c' } };
for (let k = 0; k < 3; k++) {
  const n = 5000; const t = performance.now();
  for (let i = 0; i < n; i++) await routeRequest(rt, body, requestView(body, {}, []));
  console.log('routing µs/request', ((performance.now() - t) / n * 1000).toFixed(1));
}
await rt.dispose();
