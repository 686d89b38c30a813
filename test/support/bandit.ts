// For test/plugins/bandit.test.ts and bandit-gateway.test.ts: the repository root, the
// Redis the bandit's shared state is tested on, and the keys a test file leaves there.
import { after } from 'node:test';
import path from 'node:path';
import { Redis } from 'ioredis';

export const REPO = path.resolve(import.meta.dirname, '../..');
export const REDIS_URL = process.env.TIERGATE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Each test file runs in its own process: its keys start with its own prefix. */
export const PREFIX = `tiergate-test:bandit:${process.pid}:${Date.now()}`;

/**
 * The Redis keys a test file creates: push them on the list returned, and a top-level
 * `after` hook (registered by this call, made at the top of the file) deletes them.
 * Redis absent: nothing to clean.
 */
export function redisKeysDeletedAfter(): string[] {
  const redisKeys: string[] = [];
  after(async () => {
    if (redisKeys.length === 0) return;
    const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      await redis.del(...redisKeys);
    } catch {
      // Redis absent: nothing to clean
    } finally {
      redis.disconnect();
    }
  });
  return redisKeys;
}
