// The SessionStore contract: routes load, save and clear sessions without knowing the backend (COMPAT.md §7).
import type { Session } from './session.js';

/** Request cookies by name; the first occurrence of a duplicated name wins (COMPAT.md §3.5.2). */
export type RequestCookies = ReadonlyMap<string, string>;

/** Per-request facts a store needs to write cookies. */
export interface CookieContext {
  readonly cookies: RequestCookies;
  /** Cookie Domain chosen for this request's host, if any (COMPAT.md §0.6). */
  readonly domain: string | undefined;
}

/** Why a present session cookie did not yield a session. */
export type InvalidSessionReason =
  | 'malformed'
  | 'bad_mac'
  | 'expired'
  | 'unknown_ticket'
  | 'store_error'
  | 'revoked';

export type LoadResult =
  | { readonly kind: 'none' }
  | {
      readonly kind: 'invalid';
      readonly reason: InvalidSessionReason;
      readonly setCookies: readonly string[];
    }
  | { readonly kind: 'session'; readonly session: Session; readonly key: string };

/** Releases a refresh lock. */
export type Unlock = () => Promise<void>;

export interface SessionStore {
  readonly kind: 'cookie' | 'redis';
  /** Loads the session. Throws GatehouseError('ERR_SESSION_STORE') only when the backend is down. */
  load(ctx: CookieContext, now: number): Promise<LoadResult>;
  /** The same answer without a promise, for stores that need no I/O (the cookie store): the hot path's fast lane. */
  loadSync?(ctx: CookieContext, now: number): LoadResult;
  /**
   * Saves the session and returns the Set-Cookie header values to send (including clearing of stale
   * chunks). `fresh: true` mints a new ticket (login); false reuses the request's ticket (refresh).
   */
  save(session: Session, ctx: CookieContext, opts: { readonly fresh: boolean }): Promise<string[]>;
  /** Deletes the session (and its backend record) and returns clearing Set-Cookie values. */
  clear(ctx: CookieContext): Promise<string[]>;
  /** Re-reads a session by the key `load` returned (after waiting on a refresh lock). */
  reload(key: string, now: number): Promise<Session | undefined>;
  /** Cross-replica refresh lock for `key` (COMPAT.md §7.6); the cookie store returns a no-op at once. */
  lock(key: string): Promise<Unlock | undefined>;
  /**
   * Ends every session of an IdP session (`sid`) or, without one, of a user (`sub`) created at or before
   * `at` (OIDC Back-Channel Logout 1.0). Resolves the number of sessions found (the cookie store cannot
   * count: it returns 0 and refuses matching cookies from then on).
   */
  revoke(match: { readonly sid?: string; readonly sub?: string }, at: number): Promise<number>;
  /** Health probe for /ready: resolves when the backend answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
