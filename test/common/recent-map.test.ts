// RecentMap (src/common/recent-map.ts): the decisions kept for feedback, and the compiled policy
// regexes, keep their newest `capacity` entries and forget the oldest first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RecentMap } from '../../src/common/recent-map.ts';

test('keeps the newest `capacity` entries, forgetting the oldest added first', () => {
  const map = new RecentMap<string, number>(3);
  for (let i = 1; i <= 5; i++) map.set(`k${i}`, i);
  assert.equal(map.size, 3);
  assert.deepEqual(
    ['k1', 'k2', 'k3', 'k4', 'k5'].map((k) => map.get(k)),
    [undefined, undefined, 3, 4, 5],
  );
});

test('an entry deleted or set again is not taken for the one its old slot held', () => {
  const map = new RecentMap<string, number>(3);
  map.set('a', 1).set('b', 2).set('c', 3);
  map.delete('b');
  assert.equal(map.size, 2);
  // 'a' set again: its first slot no longer holds it, so evicting that slot keeps it.
  map.set('a', 10);
  assert.equal(map.get('a'), 10);
  map.set('d', 4); // the slot of b (deleted): nothing to forget
  map.set('e', 5); // the slot of c: c goes
  assert.equal(map.get('c'), undefined);
  assert.equal(map.get('a'), 10, 'the replaced a survives the eviction of its old slot');
  assert.deepEqual([map.get('d'), map.get('e'), map.size], [4, 5, 3]);
  map.set('f', 6); // the slot of the second a: a goes now
  assert.equal(map.get('a'), undefined);
});

test('a capacity below 1 is refused', () => {
  assert.throws(() => new RecentMap(0), RangeError);
  assert.throws(() => new RecentMap(1.5), RangeError);
});

test('at 10,000 entries, the newest 10,000 of 200,000 are kept', () => {
  // The speed against the Map idiom is in the benchmark's pieces (scripts/bench/pieces.ts).
  const map = new RecentMap<string, number>(10_000);
  const keys = Array.from({ length: 200_000 }, (_, i) => `tg-${i.toString(36)}`);
  keys.forEach((key, i) => map.set(key, i));
  assert.equal(map.size, 10_000);
  assert.equal(map.get(keys[keys.length - 1]), keys.length - 1);
  assert.equal(map.get(keys[keys.length - 10_000]), keys.length - 10_000);
  assert.equal(map.get(keys[keys.length - 10_001]), undefined);
});
