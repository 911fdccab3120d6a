// The cookie session store: the whole session sealed into (possibly split) session cookies (COMPAT.md §3.4, §3.5, §7.4).
import {
  clearingSetCookies,
  equalsJoined,
  presentSessionCookieNames,
  readChunked,
  readChunks,
  splitCookieName,
  splitSetCookies,
} from '../cookies/chunks.js';
import type { CookieCodec, CookieOptions } from '../cookies/types.js';
import { createLru } from './lru.js';
import { decodeSession, encodeSession } from './serialize.js';
import type { Session } from './session.js';
import type { CookieContext, InvalidSessionReason, LoadResult, SessionStore, Unlock } from './store.js';

/** How far in the future a session's created_at may lie (clock skew between replicas, COMPAT.md §3.4.2). */
export const FUTURE_SKEW_MS = 5 * 60 * 1000;

export interface CookieSessionStoreDeps {
  /** Codec for the session cookie's purpose; the caller picks the purpose and the secret ring. */
  readonly codec: CookieCodec;
  readonly cookieName: string;
  /** Attributes of the session cookie; the Domain comes per request from the CookieContext. */
  readonly cookie: Omit<CookieOptions, 'domain'>;
  /** `--cookie-expire` in ms; 0 disables the created_at window check. */
  readonly expireMs: number;
  /** Opened sessions kept in memory, keyed by the sealed value; 0 disables the cache. */
  readonly cacheSize: number;
  /** Receives the "cookie was split, use redis" advice; never given cookie values. */
  readonly warn?: (msg: string) => void;
}

type SessionResult = Extract<LoadResult, { kind: 'session' }>;

/**
 * The cache is keyed by the head of the sealed value: version, issuedAt, the random nonce and the GCM
 * tag (`v1.` + base64url of 8 + 12 + 16 bytes = 51 characters), which differ for every sealing. Hashing
 * the whole value instead costs about a microsecond per kilobyte on every request (V8 hashes strings
 * character by character), and a split session is several kilobytes. A hit still requires the whole
 * value to be identical, so a forged value sharing a head is a miss and goes through full opening.
 */
const CACHE_KEY_CHARS = 64;
const cacheKey = (sealed: string): string =>
  sealed.length <= CACHE_KEY_CHARS ? sealed : sealed.slice(0, CACHE_KEY_CHARS);

/**
 * Creates the cookie SessionStore (COMPAT.md §7.1, §7.4). The sealed value's issuedAt is the session's
 * created_at (§3.4.3) and must satisfy `now − expire < createdAt < now + 5 min` (§3.4.2); a present but
 * unusable cookie yields `invalid` with clearing cookies for every `<name>` / `<name>_N` present
 * (§3.5.3). Saves split oversized values (§3.5.1) and also clear stale parts the new set does not
 * overwrite (§3.5.4). Opened sessions are cached by sealed value, never beyond the session's expiry.
 */
export function createCookieSessionStore(deps: CookieSessionStoreDeps): SessionStore {
  const { codec, cookieName, cookie, expireMs, warn } = deps;
  const windowed = expireMs > 0;
  const cache = createLru<SessionResult>(deps.cacheSize);
  const noopUnlock: Unlock = async () => {};
  const optionsFor = (ctx: CookieContext): CookieOptions =>
    ctx.domain === undefined ? cookie : { ...cookie, domain: ctx.domain };

  const inWindow = (createdAt: number, now: number): boolean =>
    !windowed || (now - expireMs < createdAt && createdAt < now + FUTURE_SKEW_MS);

  const remember = (key: string, session: Session): SessionResult => {
    const result: SessionResult = Object.freeze({
      kind: 'session',
      session: Object.freeze({ ...session, groups: Object.freeze([...session.groups]) }),
      key,
    });
    cache.set(cacheKey(key), result, windowed ? session.createdAt + expireMs : Number.POSITIVE_INFINITY);
    return result;
  };

  /**
   * The cached result for the sealed value made of `parts` (one cookie, or a split session's chunks in
   * order). A hit counts only for the identical sealed value. The entry's expiry enforces the lower
   * window bound; the upper bound only loosens with time. A split value is compared piece by piece: a
   * joined copy of several kilobytes per request would cost more than the compare itself.
   */
  const cached = (parts: readonly string[], now: number): SessionResult | undefined => {
    const head = parts[0] as string;
    // The key is the value's head; a first chunk shorter than the head (never written by us) is joined.
    if (parts.length > 1 && head.length < CACHE_KEY_CHARS) return cached([parts.join('')], now);
    const hit = cache.get(cacheKey(head), now);
    return hit !== undefined && equalsJoined(hit.key, parts) && inWindow(hit.session.createdAt, now)
      ? hit
      : undefined;
  };

  const openKey = (key: string, now: number): SessionResult | InvalidSessionReason =>
    cached([key], now) ?? openFresh(key, now);

  const openFresh = (key: string, now: number): SessionResult | InvalidSessionReason => {
    const opened = codec.open(key);
    if (!opened.ok) return opened.reason === 'bad_mac' ? 'bad_mac' : 'malformed';
    // issuedAt is authenticated, so the window is checked before any JSON is parsed.
    if (!inWindow(opened.issuedAt, now)) return 'expired';
    const session = decodeSession(opened.plaintext);
    if (session === undefined || session.createdAt !== opened.issuedAt) return 'malformed';
    return remember(key, session);
  };

  // Back-channel logouts seen by this process: `sid:<sid>` / `sub:<sub>` → revocation time. A cookie
  // cannot be deleted server-side, so matching cookies are refused until they would have expired anyway.
  const revoked = new Map<string, number>();
  const REVOKED_MAX = 100_000;
  const isRevoked = (s: Session, now: number): boolean => {
    if (revoked.size === 0) return false;
    const at =
      (s.sid !== undefined ? revoked.get(`sid:${s.sid}`) : undefined) ?? revoked.get(`sub:${s.user}`);
    if (at === undefined) return false;
    if (expireMs > 0 && at <= now - expireMs) return false;
    return s.createdAt <= at;
  };

  const loadSync = (ctx: CookieContext, now: number): LoadResult => {
    const parts = readChunks(cookieName, ctx.cookies);
    if (parts === undefined) return { kind: 'none' };
    const opened = cached(parts, now) ?? openFresh(parts.join(''), now);
    const r = typeof opened !== 'string' && isRevoked(opened.session, now) ? 'revoked' : opened;
    if (typeof r !== 'string') return r;
    return {
      kind: 'invalid',
      reason: r,
      setCookies: clearingSetCookies(presentSessionCookieNames(cookieName, ctx.cookies), optionsFor(ctx)),
    };
  };

  return {
    kind: 'cookie',

    loadSync,

    async load(ctx, now) {
      return loadSync(ctx, now);
    },

    async save(session, ctx) {
      const bytes = encodeSession(session);
      const sealed = codec.seal(bytes, session.createdAt);
      const o = optionsFor(ctx);
      const parts = splitSetCookies(cookieName, sealed, o);
      let written: ReadonlySet<string>;
      if (parts.length === 1) {
        written = new Set([cookieName]);
      } else {
        written = new Set(parts.map((_, i) => splitCookieName(cookieName, i)));
        warn?.(
          `session cookie ${cookieName} needs ${sealed.length} characters and was split into ${parts.length} cookies; ` +
            'consider --session-store-type=redis',
        );
      }
      // Anything of ours left on the request would be read back instead of (or after) the new value.
      const stale = presentSessionCookieNames(cookieName, ctx.cookies).filter((n) => !written.has(n));
      // The next request carries `sealed`: cache what a load would decode so it skips the crypto.
      const canonical = decodeSession(bytes);
      if (canonical !== undefined) remember(sealed, canonical);
      return stale.length === 0 ? parts : [...parts, ...clearingSetCookies(stale, o)];
    },

    async clear(ctx) {
      const key = readChunked(cookieName, ctx.cookies);
      if (key !== undefined) cache.delete(cacheKey(key));
      return clearingSetCookies(presentSessionCookieNames(cookieName, ctx.cookies), optionsFor(ctx));
    },

    async reload(key, now) {
      const r = openKey(key, now);
      return typeof r === 'string' || isRevoked(r.session, now) ? undefined : r.session;
    },

    async revoke(match, at) {
      const k = match.sid ? `sid:${match.sid}` : match.sub ? `sub:${match.sub}` : undefined;
      if (k === undefined) return 0;
      // Oldest entries go first; they are the ones closest to expiring on their own.
      if (revoked.size >= REVOKED_MAX) revoked.delete(revoked.keys().next().value as string);
      revoked.set(k, at);
      cache.clear();
      return 0;
    },

    async lock() {
      return noopUnlock;
    },

    async ping() {},

    async close() {
      cache.clear();
    },
  };
}
