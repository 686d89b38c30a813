// The compiled form of server.auth (gateway.yaml): the keys, admin and metrics tokens a
// policy declares, held as HMACs, and what a listen address means. Built by the compiler
// (compile.ts), checked by semantic.ts, used per request by the faces (src/faces/auth.ts),
// which is why it lives here, below both.
//
// Tokens are compared as HMACs (a per-process random key) with timingSafeEqual, against
// every key without stopping at a match: neither the length of a key nor which key
// matched shows in the time an answer takes.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { AuthData } from '../policy-shape/policy-data.ts';

export type AllowList = '*' | ReadonlySet<string>;

/** A gateway key as the request path sees it: its name and what it may call. */
export interface GatewayKey {
  readonly name: string;
  readonly routes: AllowList;
  readonly models: AllowList;
}

const HMAC_KEY = randomBytes(32);
const digest = (token: string): Buffer => createHmac('sha256', HMAC_KEY).update(token, 'utf8').digest();

export function mayCall(list: AllowList, name: string): boolean {
  return list === '*' || list.has(name);
}

export class GatewayAuth {
  readonly keyNames: readonly string[];
  readonly allowUnauthenticated: boolean;
  private readonly keys: ReadonlyArray<{ key: GatewayKey; digest: Buffer }>;
  private readonly adminDigest: Buffer | null;
  private readonly metricsDigest: Buffer | null;

  /** `data` is server.auth; partial, since a GatewayAuth is also made outside a validated policy (defaults not filled in). */
  constructor(data: Partial<AuthData> | undefined) {
    this.keys = (data?.keys ?? []).map((entry) => ({
      key: Object.freeze({
        name: entry.name,
        routes: entry.routes === '*' ? '*' : new Set(entry.routes),
        models: entry.models === undefined ? new Set<string>() : entry.models === '*' ? '*' : new Set(entry.models),
      }),
      digest: digest(entry.key),
    }));
    this.keyNames = Object.freeze(this.keys.map((k) => k.key.name));
    this.adminDigest = data?.admin_token === undefined ? null : digest(data.admin_token);
    this.metricsDigest = data?.metrics_token === undefined ? null : digest(data.metrics_token);
    this.allowUnauthenticated = data?.allow_unauthenticated === true;
  }

  get hasKeys(): boolean {
    return this.keys.length > 0;
  }

  get hasAdminToken(): boolean {
    return this.adminDigest !== null;
  }

  /** The key this token is, or null. Constant time in the token and in which key matched. */
  identify(token: string): GatewayKey | null {
    const presented = digest(token);
    let found: GatewayKey | null = null;
    for (const { key, digest: expected } of this.keys) if (timingSafeEqual(presented, expected) && found === null) found = key;
    return found;
  }

  isAdminToken(token: string): boolean {
    return matches(token, this.adminDigest);
  }

  get hasMetricsToken(): boolean {
    return this.metricsDigest !== null;
  }

  /** The scraper's token (server.auth.metrics_token): /metrics only. */
  isMetricsToken(token: string): boolean {
    return matches(token, this.metricsDigest);
  }
}

function matches(token: string, expected: Buffer | null): boolean {
  return expected !== null && timingSafeEqual(digest(token), expected);
}

// ---------------------------------------------------------------------------------
// Addresses

/** Whether a listen address only accepts connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare.toLowerCase() === 'localhost') return true;
  return isIP(bare) !== 0 && isLoopbackAddress(bare);
}

/** Whether a peer address (req.socket.remoteAddress) is this machine. */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.') || address === '0:0:0:0:0:0:0:1';
}
