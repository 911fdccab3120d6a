// A small bounded least-recently-used cache with a per-entry expiry time, for opened sessions.

/** A bounded LRU whose entries also expire at a caller-given time (ms, same clock as `now`). */
export interface Lru<V> {
  /** The live value for `k` (and marks it recently used); expired entries are dropped and miss. */
  get(k: string, now: number): V | undefined;
  /** Stores `v` until `expiresAt` (exclusive), evicting the least recently used entry when full. */
  set(k: string, v: V, expiresAt: number): void;
  delete(k: string): void;
  clear(): void;
  readonly size: number;
}

/**
 * Creates an LRU holding at most `max` entries; `max` ≤ 0 makes a cache that stores nothing.
 * Map iteration order is insertion order, so re-inserting an entry makes it the newest. A hit re-inserts
 * only when the entry has drifted into the older half (by insertion count): a hot entry then costs one
 * lookup instead of three (keys are whole sealed cookies, kilobytes long, compared on every lookup),
 * and an entry that is used at all is still never the one evicted.
 */
export function createLru<V>(max: number): Lru<V> {
  const entries = new Map<string, { readonly v: V; readonly expiresAt: number; seq: number }>();
  const capacity = Number.isFinite(max) ? Math.max(0, Math.floor(max)) : 0;
  const refreshAfter = Math.max(1, capacity >> 1);
  let seq = 0;
  return {
    get(k, now) {
      const e = entries.get(k);
      if (e === undefined) return undefined;
      if (!(now < e.expiresAt)) {
        entries.delete(k);
        return undefined;
      }
      if (seq - e.seq >= refreshAfter) {
        entries.delete(k);
        e.seq = ++seq;
        entries.set(k, e);
      }
      return e.v;
    },
    set(k, v, expiresAt) {
      if (capacity === 0) return;
      entries.delete(k);
      entries.set(k, { v, expiresAt, seq: ++seq });
      while (entries.size > capacity) {
        const oldest = entries.keys().next();
        if (oldest.done) break;
        entries.delete(oldest.value);
      }
    },
    delete(k) {
      entries.delete(k);
    },
    clear() {
      entries.clear();
    },
    get size() {
      return entries.size;
    },
  };
}
