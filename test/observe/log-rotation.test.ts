// Rotating the decision log the way logrotate does (`mv decisions.jsonl …`, then SIGHUP in
// `postrotate`): the lines from then on go to a new file under the old name, and no line
// is lost or written twice. The writer on its own, then `tiergate serve` in a real process,
// with the log written directly and through winston (console: true).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DecisionLog, type FeedbackRecord } from '../../src/observe/decision-log.ts';
import { simulatorPolicy } from '../support/gateway.ts';
import { serveCli } from '../support/cli-gateway.ts';
import { waitFor } from '../support/wait.ts';

function requestIds(file: string): string[] {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { request_id: string }).request_id);
}

describe('the decision log writer', () => {
  test('reopen() after the file was moved: later lines go to a new file of that name; every line is in one of the two, once, in order', async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tg-rotate-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'decisions.jsonl');
    const errors: Error[] = [];
    const log = new DecisionLog({ file: 'decisions.jsonl', console: false, flushMs: 5 }, dir, (err) => errors.push(err));
    const line = (i: number) =>
      ({ kind: 'feedback', request_id: `r-${i}`, route: null, score: 1, timestamp: new Date(0).toISOString() }) satisfies FeedbackRecord;
    let n = 0;
    for (; n < 200; n++) log.write(line(n));
    await waitFor('the first lines in the file', () => requestIds(file).length === 200);
    renameSync(file, `${file}.1`);
    // Lines written while the move is not yet known, and while the file is being opened again.
    for (let k = 0; k < 50; k++, n++) log.write(line(n));
    const reopening = log.reopen();
    for (let k = 0; k < 50; k++, n++) log.write(line(n));
    assert.equal(await reopening, true);
    const afterReopen = n;
    for (let turn = 0; turn < 10; turn++) {
      await new Promise((resolve) => setImmediate(resolve));
      for (let k = 0; k < 20; k++, n++) log.write(line(n));
    }
    await log.close();

    const rotated = requestIds(`${file}.1`);
    const fresh = requestIds(file);
    assert.deepEqual(
      [...rotated, ...fresh],
      Array.from({ length: n }, (_, i) => `r-${i}`),
    );
    assert.ok(fresh.includes(`r-${afterReopen}`), 'every line written after reopen() resolved is in the new file');
    assert.ok(rotated.length >= 200, 'the lines before the move stay in the moved file');
    assert.deepEqual(errors, []);
  });
});

describe('tiergate serve: SIGHUP reopens the decision log', () => {
  for (const [how, decisionLog] of [
    ['written directly', '{ file: decisions.jsonl }'],
    ['through winston (console: true)', '{ file: decisions.jsonl, console: true }'],
  ] as const)
    test(`mv decisions.jsonl, SIGHUP: the next request's line is in a new decisions.jsonl (${how})`, { timeout: 30_000 }, async (t) => {
      const policy = simulatorPolicy().replace('decision_log: { file: decisions.jsonl }', `decision_log: ${decisionLog}`);
      assert.ok(policy.includes(decisionLog));
      const gw = await serveCli(t, policy);
      const file = path.join(gw.dir, 'decisions.jsonl');
      const ask = async () => {
        const res = await fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'support', messages: [{ role: 'user', content: 'Where is my parcel?' }] }),
        });
        assert.equal(res.status, 200, await res.clone().text());
        await res.arrayBuffer();
        const id = res.headers.get('x-tiergate-decision-id');
        assert.ok(id);
        return id;
      };

      const before = await ask();
      await waitFor(`decision ${before} in decisions.jsonl`, () => requestIds(file).includes(before), 10_000);
      renameSync(file, `${file}.1`);
      gw.proc.kill('SIGHUP');
      await waitFor('"decision log reopened"', () => gw.logs.some((l) => l.message === 'decision log reopened (SIGHUP)'), 10_000);
      const after = await ask();
      await waitFor(`decision ${after} in the new decisions.jsonl`, () => requestIds(file).includes(after), 10_000);
      assert.deepEqual(requestIds(`${file}.1`), [before], 'the moved file keeps its line and gets no new one');
      assert.deepEqual(requestIds(file), [after]);
    });
});
