// Reload under load: the policy flips between two valid versions every 100 ms, by a
// file edit the watcher picks up and by POST /admin/reload in turn, while clients keep
// sending JSON and streaming requests through the official SDK. Not one request may
// fail; every decision line carries exactly one policy version, one of the two, the
// one the client was told, and routes as that version says (nothing half-applied);
// retired runtimes release what they held (the decision log's file, plugin instances).
// Bounded: the storm runs for STORM_MS and at least MIN_FLIPS flips, stopping at MAX_RELOADS or STORM_CAP_MS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import OpenAI from 'openai';
import { policyFingerprint } from '../../src/policy/version.ts';
import type { ReloadResult } from '../../src/policy/reload.ts';
import type { DecisionRecord } from '../../src/observe/decision-log.ts';
import { simulatorPolicy, startTestGateway } from '../support/gateway.ts';

const STORM_MS = 2500;
const MIN_FLIPS = 10;
const STORM_CAP_MS = 20_000;
const MAX_RELOADS = 30;
const RELOAD_EVERY_MS = 100;
const CLIENTS = 6;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Two valid versions that route classification requests to different tiers. */
function version(tier: 'small' | 'large'): string {
  return simulatorPolicy({
    timeScale: 0.05,
    routes: `  support:
    router:
      plugin: rules
      rules:
        - { when: "task_type = 'classification'", tier: ${tier}, confidence: 0.9, reason: to ${tier} }
    default: large`,
  });
}

/**
 * Files this process holds open (Linux; null elsewhere): the decision log each runtime
 * writes. Sockets are left out (idle keep-alive connections come and go with the
 * clients' pools), and so is inotify (libuv keeps one per process once a watch was set).
 */
function openFds(): number | null {
  try {
    return readdirSync('/proc/self/fd').filter((fd) => {
      try {
        const target = readlinkSync(`/proc/self/fd/${fd}`);
        return target.startsWith('/');
      } catch {
        return false; // closed while listing (the listing's own descriptor)
      }
    }).length;
  } catch {
    return null;
  }
}

async function until<T>(what: string, probe: () => T | null | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test(
  'reloading every 100 ms under load: no failed request, one live version per decision line, nothing half-applied or leaked',
  { timeout: 60_000 },
  async () => {
    const policies = { small: version('small'), large: version('large') };
    const fdsBefore = openFds();
    const tg = await startTestGateway(policies.small, { watch: true, debounceMs: 20 });
    try {
      // The two versions' content hashes, as the gateway computes them.
      const hashes = new Map<string, 'small' | 'large'>();
      for (const tier of ['large', 'small'] as const) {
        tg.writePolicy(policies[tier]);
        hashes.set(policyFingerprint(tg.policyFile, {}) as string, tier);
      }
      assert.equal(hashes.size, 2, 'the two versions have different hashes');
      assert.equal(hashes.get(tg.gateway.manager.runtime.version), 'small', 'the gateway started on the first version');
      const fdsServing = openFds();

      const results: ReloadResult[] = [];
      tg.gateway.manager.onReload((result) => results.push(result));
      const client = new OpenAI({ baseURL: tg.baseURL, apiKey: 'x', maxRetries: 0, timeout: 15_000 });

      interface Answer {
        id: string;
        version: string;
        tier: string | null;
        stream: boolean;
      }
      const answers: Answer[] = [];
      const failures: string[] = [];
      let stop = false;
      const workers = Array.from({ length: CLIENTS }, async (_, w) => {
        for (let i = 0; !stop && i < 10_000; i++) {
          const stream = (w + i) % 2 === 0;
          const params = {
            model: 'support',
            messages: [{ role: 'user' as const, content: `Classify review ${w}-${i}: great product` }],
            metadata: { task_type: 'classification' },
          };
          try {
            let headers: Headers;
            let content = '';
            if (stream) {
              const { data, response } = await client.chat.completions.create({ ...params, stream: true }).withResponse();
              headers = response.headers;
              for await (const chunk of data) content += chunk.choices[0]?.delta.content ?? '';
            } else {
              const { data, response } = await client.chat.completions.create(params).withResponse();
              headers = response.headers;
              content = data.choices[0].message.content ?? '';
            }
            if (!content) failures.push(`client ${w} request ${i}: empty answer`);
            answers.push({
              id: headers.get('x-tiergate-decision-id') ?? '',
              version: headers.get('x-tiergate-policy-version') ?? '',
              tier: headers.get('x-tiergate-tier'),
              stream,
            });
          } catch (err) {
            failures.push(`client ${w} request ${i}: ${err instanceof Error ? err.message : String(err)}`);
          }
        }
      });

      // The storm: flip the file every 100 ms; every other flip also asks POST /admin/reload
      // at once (the watcher then finds nothing new), the others are left to the watcher.
      const adminOutcomes: string[] = [];
      let flips = 0;
      let started = performance.now();
      try {
        await until('traffic before the storm', () => answers.length >= CLIENTS, 15_000);
        started = performance.now();
        // At least STORM_MS and at least MIN_FLIPS flips (a loaded machine reloads slower), within a hard cap.
        const elapsed = () => performance.now() - started;
        while ((elapsed() < STORM_MS || flips < MIN_FLIPS) && flips < MAX_RELOADS && elapsed() < STORM_CAP_MS) {
          const tick = performance.now();
          flips++;
          tg.writePolicy(flips % 2 === 1 ? policies.large : policies.small);
          if (flips % 2 === 0) {
            const res = await fetch(`${tg.url}/admin/reload`, { method: 'POST' });
            adminOutcomes.push(((await res.json()) as ReloadResult).outcome);
          }
          await sleep(Math.max(0, RELOAD_EVERY_MS - (performance.now() - tick)));
        }
        // The last flip is applied, by whichever trigger gets there.
        const last = flips % 2 === 1 ? 'large' : 'small';
        await until('the last flip to be applied', () => hashes.get(tg.gateway.manager.runtime.version) === last);
      } finally {
        stop = true;
        await Promise.all(workers);
      }

      assert.deepEqual(failures, [], 'no request failed during the storm');
      assert.ok(flips >= MIN_FLIPS, `the storm flipped the policy ${flips} times`);
      assert.deepEqual(
        results.filter((r) => r.outcome === 'rejected'),
        [],
        'no reload was rejected',
      );
      const applied = results.filter((r) => r.outcome === 'applied');
      // A flip the watcher had not reached before the next one is simply overtaken, so on a
      // slow machine fewer than `flips` reloads apply; most must.
      assert.ok(applied.length >= Math.ceil(flips / 2), `most flips were applied (${applied.length} of ${flips})`);
      assert.ok(new Set(applied.map((r) => r.trigger)).size === 2, `both triggers applied reloads: ${[...new Set(applied.map((r) => r.trigger))].join(', ')}`);
      assert.ok(
        adminOutcomes.every((o) => o === 'applied' || o === 'unchanged'),
        adminOutcomes.join(', '),
      );
      for (const r of applied) assert.ok(hashes.has(r.policy_version), `applied version ${r.policy_version} is one of the two`);

      // Both versions served traffic, each routing as it says.
      const served = new Set(answers.map((a) => a.version));
      assert.deepEqual(
        [...served].filter((v) => !hashes.has(v)),
        [],
        'every answer came from one of the two versions',
      );
      assert.equal(served.size, 2, 'both versions answered requests');
      for (const a of answers) assert.equal(a.tier, hashes.get(a.version), `version ${a.version} routes to ${hashes.get(a.version)}`);

      // The decision log: one line per answer, each with exactly one policy_version.
      const ids = new Set(answers.map((a) => a.id));
      const lines = await until('every answer in the decision log', () => {
        const text = tg.decisionLogText();
        const all = text.split('\n').filter(Boolean);
        const found = all.filter((raw) => ids.has((JSON.parse(raw) as DecisionRecord).request_id));
        return found.length >= ids.size ? all : null;
      });
      const byId = new Map<string, { raw: string; record: DecisionRecord }>();
      for (const raw of lines) {
        assert.equal(raw.match(/"policy_version"/g)?.length, 1, `exactly one policy_version in ${raw.slice(0, 120)}…`);
        const record = JSON.parse(raw) as DecisionRecord;
        assert.ok(hashes.has(record.policy_version), `logged version ${record.policy_version} is one of the two`);
        assert.ok(!byId.has(record.request_id), `one line per request (${record.request_id})`);
        byId.set(record.request_id, { raw, record });
      }
      for (const a of answers) {
        const line = byId.get(a.id);
        assert.ok(line, `a decision line for ${a.id}`);
        assert.equal(line.record.status, 'ok');
        assert.equal(line.record.policy_version, a.version, 'the line has the version the client was told');
        assert.equal(line.record.tier, a.tier);
        assert.equal(line.record.routing_reason, `rule 1: to ${hashes.get(a.version)}`);
        assert.equal(line.record.stream, a.stream);
      }

      const status = (await (await fetch(`${tg.url}/admin/status`)).json()) as {
        last_reload_error: unknown;
        inflight_requests: number;
        reloads: { rejected: number };
      };
      assert.equal(status.last_reload_error, null);
      assert.equal(status.reloads.rejected, 0);
      // Every retired runtime was disposed, closing its decision log: the process holds
      // about as many files as it did with one policy serving, not one per reload.
      if (fdsServing !== null) {
        const now = await until('retired runtimes to release their files', () => {
          const fds = openFds() as number;
          return fds - fdsServing <= 1 ? fds : null;
        });
        assert.ok(now - fdsServing <= 1, `${now - fdsServing} more open files than before the storm`);
      }
      assert.ok(performance.now() - started < 20_000, 'bounded in time');
    } finally {
      await tg.close();
    }
    if (fdsBefore !== null) {
      const after = await until('the gateway to release every file', () => {
        const fds = openFds() as number;
        return fds <= fdsBefore ? fds : null;
      });
      assert.ok(after <= fdsBefore, `open files: ${fdsBefore} before, ${after} after closing`);
    }
  },
);
