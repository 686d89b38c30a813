// A map that keeps only its most recently added entries.
//
// Not `map.delete(map.keys().next().value)`, the usual way to drop a Map's oldest entry:
// V8 leaves a deleted entry's slot empty until the table is rebuilt, and every new
// iterator walks the empty slots at the front before it finds a live one. At 10,000
// entries that eviction cost ~8 µs per insert (measured in a loop; the decisions kept for
// feedback took it once per request), where a ring of the keys in insertion order,
// evicting by key, costs ~0.4 µs.

export class RecentMap<K, V> {
  readonly #map = new Map<K, V>();
  readonly #keys: Array<K | undefined>;
  readonly #values: Array<V | undefined>;
  #next = 0;

  /** `capacity`: how many entries to keep, at least 1. */
  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`RecentMap capacity must be a whole number ≥ 1, not ${capacity}`);
    this.#keys = new Array<K | undefined>(capacity);
    this.#values = new Array<V | undefined>(capacity);
  }

  get size(): number {
    return this.#map.size;
  }

  get(key: K): V | undefined {
    return this.#map.get(key);
  }

  delete(key: K): boolean {
    return this.#map.delete(key);
  }

  /** Adds (or replaces) an entry, forgetting the oldest added once `capacity` are kept. */
  set(key: K, value: V): this {
    const slot = this.#next;
    const oldKey = this.#keys[slot];
    // The slot's entry may be gone already (deleted, or replaced by a later set of its key).
    if (oldKey !== undefined && this.#map.get(oldKey) === this.#values[slot]) this.#map.delete(oldKey);
    this.#keys[slot] = key;
    this.#values[slot] = value;
    this.#next = slot + 1 === this.capacity ? 0 : slot + 1;
    this.#map.set(key, value);
    return this;
  }
}
