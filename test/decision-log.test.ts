// The decision log's file writer: every line in order, whole, once; a file that fails
// is reported once and never takes the process down; close() waits for the last line.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DecisionLog, type FeedbackRecord } from '../src/decision-log.ts';

function line(i: number): FeedbackRecord {
  return { kind: 'feedback', request_id: `r-${i}`, timestamp: new Date(0).toISOString(), score: i / 10_000 } as unknown as FeedbackRecord;
}

function readLines(file: string): Array<{ request_id: string }> {
  const text = readFileSync(file, 'utf8');
  assert.ok(text.endsWith('\n'), 'the file ends with a whole line');
  return text.trimEnd().split('\n').map((l) => JSON.parse(l) as { request_id: string });
}

describe('decision log file', () => {
  test('lines written in bursts and across turns all reach the file, whole and in order, by the time close() resolves', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tg-dlog-'));
    const errors: Error[] = [];
    const log = new DecisionLog({ file: 'logs/decisions.jsonl', console: false } as never, dir, (err) => errors.push(err));
    let n = 0;
    // Written before the file is even open, in one turn, and while writes are in flight.
    for (; n < 500; n++) log.write(line(n));
    for (let turn = 0; turn < 20; turn++) {
      await new Promise((resolve) => setImmediate(resolve));
      for (let k = 0; k < 50; k++, n++) log.write(line(n));
    }
    await log.close();
    const lines = readLines(path.join(dir, 'logs/decisions.jsonl'));
    assert.equal(lines.length, n);
    assert.deepEqual(lines.map((l) => l.request_id), Array.from({ length: n }, (_, i) => `r-${i}`));
    assert.deepEqual(errors, []);
    // Closing again is immediate, and a late line is not written.
    log.write(line(n));
    await log.close();
    assert.equal(readLines(path.join(dir, 'logs/decisions.jsonl')).length, n);
  });

  test('a second log on the same file appends after the first one’s lines', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tg-dlog-'));
    const settings = { file: 'decisions.jsonl', console: false } as never;
    const first = new DecisionLog(settings, dir);
    for (let i = 0; i < 10; i++) first.write(line(i));
    await first.close();
    const second = new DecisionLog(settings, dir);
    for (let i = 10; i < 20; i++) second.write(line(i));
    await second.close();
    assert.deepEqual(readLines(path.join(dir, 'decisions.jsonl')).map((l) => l.request_id), Array.from({ length: 20 }, (_, i) => `r-${i}`));
  });

  test('a file that cannot be opened is reported once; writes are dropped and close() still resolves', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tg-dlog-'));
    mkdirSync(path.join(dir, 'a-directory.jsonl'));
    const errors: Error[] = [];
    const log = new DecisionLog({ file: 'a-directory.jsonl', console: false } as never, dir, (err) => errors.push(err));
    for (let i = 0; i < 100; i++) log.write(line(i));
    await new Promise((resolve) => setTimeout(resolve, 50));
    for (let i = 0; i < 100; i++) log.write(line(i));
    await log.close();
    assert.equal(errors.length, 1);
    assert.match(String((errors[0] as NodeJS.ErrnoException).code), /EISDIR/);
  });
});
