// The decision log's file writer: every line in order, whole, once; a file that fails
// is reported once and never takes the process down; close() waits for the last line;
// lines of one flush interval leave in one write; a record JSON cannot write still
// leaves its line, without the part that cannot be written.
import { describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import fs, { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { DecisionLog, type FeedbackRecord } from '../../src/observe/decision-log.ts';

function line(i: number): FeedbackRecord {
  return { kind: 'feedback', request_id: `r-${i}`, timestamp: new Date(0).toISOString(), score: i / 10_000 } as unknown as FeedbackRecord;
}

function readLines(file: string): Array<{ request_id: string }> {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  if (text === '') return [];
  assert.ok(text.endsWith('\n'), 'the file ends with a whole line');
  return text
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { request_id: string });
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
    assert.deepEqual(
      lines.map((l) => l.request_id),
      Array.from({ length: n }, (_, i) => `r-${i}`),
    );
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
    assert.deepEqual(
      readLines(path.join(dir, 'decisions.jsonl')).map((l) => l.request_id),
      Array.from({ length: 20 }, (_, i) => `r-${i}`),
    );
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

  /** Counts fs.write calls (the appender's write(2)s) while `body` runs. */
  async function countingWrites(body: () => Promise<void>): Promise<number> {
    const spy = mock.method(fs, 'write');
    syncBuiltinESMExports();
    try {
      await body();
      return spy.mock.callCount();
    } finally {
      spy.mock.restore();
      syncBuiltinESMExports();
    }
  }

  /** One line per event-loop turn, or (`gapMs`) one every gapMs: long enough for a write to finish in between. */
  async function writeOverTurns(log: DecisionLog, turns: number, gapMs?: number): Promise<void> {
    for (let i = 0; i < turns; i++) {
      log.write(line(i));
      await new Promise((resolve) => (gapMs === undefined ? setImmediate(resolve) : setTimeout(resolve, gapMs)));
    }
  }

  test('lines written over many turns within flush_ms leave in one write, and no sooner than flush_ms', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tg-dlog-'));
    const file = path.join(dir, 'decisions.jsonl');
    const log = new DecisionLog({ file: 'decisions.jsonl', console: false, flushMs: 400 }, dir);
    // Let the file open first, so the interval starts with the first line.
    await new Promise((resolve) => setTimeout(resolve, 50));
    let firstSeenAfter = Number.NaN;
    const writes = await countingWrites(async () => {
      const started = performance.now();
      await writeOverTurns(log, 20);
      assert.deepEqual(readLines(file), [], 'nothing written before the interval is up');
      while (readLines(file).length < 20) await new Promise((resolve) => setTimeout(resolve, 5));
      firstSeenAfter = performance.now() - started;
    });
    assert.equal(writes, 1);
    assert.ok(firstSeenAfter >= 390, `lines appeared after ${firstSeenAfter.toFixed(0)} ms, before flush_ms`);
    await log.close();
    assert.deepEqual(
      readLines(file).map((l) => l.request_id),
      Array.from({ length: 20 }, (_, i) => `r-${i}`),
    );
  });

  test('flush_ms 0 writes each turn’s lines on their own', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tg-dlog-'));
    const log = new DecisionLog({ file: 'decisions.jsonl', console: false, flushMs: 0 }, dir);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const writes = await countingWrites(async () => {
      await writeOverTurns(log, 20, 5);
      await log.close();
    });
    assert.ok(writes >= 10, `${writes} writes for 20 turns`);
    assert.equal(readLines(path.join(dir, 'decisions.jsonl')).length, 20);
  });

  test('close() writes waiting lines at once, whatever flush_ms says', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tg-dlog-'));
    const log = new DecisionLog({ file: 'decisions.jsonl', console: false, flushMs: 10_000 }, dir);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await writeOverTurns(log, 5);
    const started = performance.now();
    await log.close();
    assert.ok(performance.now() - started < 5000, 'close did not wait for the interval');
    assert.equal(readLines(path.join(dir, 'decisions.jsonl')).length, 5);
  });

  test('a record JSON.stringify cannot write still leaves its line: the unwritable values noted, the rest as it was', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tg-dlog-'));
    const log = new DecisionLog({ file: 'decisions.jsonl', console: false }, dir);
    let deep: unknown[] = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    const circular: Record<string, unknown> = { name: 'me' };
    circular.self = circular;
    const unwritable = [{ prompt: deep }, { request_features: { count: 10n ** 30n } }, { request_features: { circular } }];
    unwritable.forEach((part, i) => log.write({ ...line(i), status: 'ok', cost_usd: 0.25, ...part } as unknown as FeedbackRecord));
    log.write(line(3));
    await log.close();
    const lines = readLines(path.join(dir, 'decisions.jsonl')) as unknown as Array<Record<string, any>>;
    assert.deepEqual(
      lines.map((l) => l.request_id),
      ['r-0', 'r-1', 'r-2', 'r-3'],
      'one line each, in order',
    );
    for (const l of lines.slice(0, 3)) {
      assert.equal(typeof l.serialization_error, 'string', 'the line says why part of it is missing');
      assert.equal(l.status, 'ok');
      assert.equal(l.cost_usd, 0.25);
    }
    // The deep prompt is kept down to the depth a line can hold, then noted.
    let kept = lines[0].prompt;
    let levels = 0;
    while (Array.isArray(kept)) {
      kept = kept[0];
      levels++;
    }
    assert.ok(levels > 10 && levels < 100, `${levels} levels kept`);
    assert.match(String(kept), /^\[not logged: nested more than \d+ levels deep\]$/);
    assert.equal(lines[1].request_features.count, String(10n ** 30n));
    assert.deepEqual(lines[2].request_features.circular, { name: 'me', self: '[not logged: circular]' });
    assert.equal('serialization_error' in lines[3], false, 'a record JSON can write is written as it is');
  });

  test('a burst past 256 K characters is written without waiting for the interval', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tg-dlog-'));
    const file = path.join(dir, 'decisions.jsonl');
    const log = new DecisionLog({ file: 'decisions.jsonl', console: false, flushMs: 10_000 }, dir);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const big = (i: number) => ({ ...line(i), padding: 'x'.repeat(1024) }) as unknown as FeedbackRecord;
    for (let i = 0; i < 300; i++) log.write(big(i));
    const deadline = Date.now() + 3000;
    while (readLines(file).length < 300 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(readLines(file).length, 300);
    await log.close();
  });
});
