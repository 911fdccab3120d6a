// The Redis session store: sealed ticket cookie, encrypted session value in Redis, refresh lock (COMPAT.md §7).
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { clearingSetCookies, presentSessionCookieNames, serializeCookie } from '../cookies/chunks.js';
import type { CookieCodec, CookieOptions } from '../cookies/types.js';
import { GatehouseError } from '../errors.js';
import { FUTURE_SKEW_MS } from './cookie-store.js';
import { createLru } from './lru.js';
import type { RedisLike } from './redis-client.js';
import { decodeSession, encodeSession } from './serialize.js';
import type { Session } from './session.js';
import type { CookieContext, InvalidSessionReason, LoadResult, SessionStore, Unlock } from './store.js';

export interface RedisSessionStoreDeps {
  readonly redis: RedisLike;
  /** Seals the ticket cookie (COMPAT.md §0.7). */
  readonly codec: CookieCodec;
  readonly cookieName: string;
  readonly cookie: Omit<CookieOptions, 'domain'>;
  /** `--cookie-expire` in ms: the age window and the Redis TTL. 0 = no window (TTL falls back to 168h). */
  readonly expireMs: number;
  /**
   * TTL of a refresh lock (default 10 s). The holder renews it every third of that while its refresh runs,
   * so the lock lasts as long as the refresh however slow the IdP, and a crashed holder's lock lapses within
   * the TTL. 10 s, not 2: a holder whose event loop stalls for two thirds of the TTL (a starved CPU) misses
   * its renewal, and a second replica then spends the refresh token too (seen in CI at 2 s).
   */
  readonly lockTtlMs?: number;
  /** How long a replica waits for another's refresh (the lock) before giving up; default 30 s. */
  readonly lockWaitMs?: number;
  readonly lockPollMs?: number;
  /** Opened tickets/sessions kept in memory, keyed by the sealed cookie; 0 (default) turns it off. */
  readonly cacheSize?: number;
  /**
   * Keys for the back-channel-logout index names, newest first (from the cookie secret ring). The names
   * are HMACs of the IdP's sid/sub, so a Redis dump reveals no user identifiers; revocation looks under
   * every key, so rotating the cookie secret does not hide older sessions.
   */
  readonly indexKeys?: readonly Buffer[];
  /** Waits between lock attempts; injectable so tests need no wall clock. */
  readonly sleep?: (ms: number) => Promise<void>;
}

interface Ticket {
  readonly id: string;
  readonly secret: Buffer;
}

interface CacheEntry {
  readonly ticket: Ticket;
  raw?: Buffer;
  session?: Session;
}

// Used as TTL when --cookie-expire is 0, so a browser-session cookie cannot leave a key behind for ever.
const FALLBACK_TTL_MS = 168 * 3_600_000;
const VALUE_VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HKDF_INFO = Buffer.from('gatehouse redis session value v1');
/**
 * Tickets one back-channel index (one IdP session or one user) may hold. Above it, members whose session is
 * gone are dropped; if more live sessions remain, the surplus sessions are ended rather than forgotten, since a
 * forgotten ticket would survive a back-channel logout.
 */
export const MAX_INDEX_MEMBERS = 256;

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

function storeError(e: unknown): GatehouseError {
  const detail = e instanceof Error ? e.message : String(e);
  return new GatehouseError('ERR_SESSION_STORE', `redis session store: ${detail}`, { cause: e });
}

/** AES-256-GCM key for one ticket's value, derived from the ticket secret that only the cookie holds. */
function valueKey(t: Ticket): Buffer {
  return Buffer.from(hkdfSync('sha256', t.secret, Buffer.alloc(0), HKDF_INFO, 32));
}

/** version ‖ nonce ‖ ciphertext ‖ tag; the ticket id is bound as AAD, so values cannot be moved between keys. */
function sealValue(t: Ticket, plaintext: Buffer): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const c = createCipheriv('aes-256-gcm', valueKey(t), nonce, { authTagLength: TAG_BYTES });
  c.setAAD(Buffer.from(t.id));
  const body = Buffer.concat([c.update(plaintext), c.final()]);
  return Buffer.concat([Buffer.from([VALUE_VERSION]), nonce, body, c.getAuthTag()]);
}

function openValue(t: Ticket, v: Buffer): Buffer | undefined {
  if (v.length < 1 + NONCE_BYTES + TAG_BYTES || v[0] !== VALUE_VERSION) return undefined;
  try {
    // authTagLength pins the tag size: Node 24 deprecates (DEP0182) deciphering GCM without it.
    const d = createDecipheriv('aes-256-gcm', valueKey(t), v.subarray(1, 1 + NONCE_BYTES), {
      authTagLength: TAG_BYTES,
    });
    d.setAAD(Buffer.from(t.id));
    d.setAuthTag(v.subarray(v.length - TAG_BYTES));
    return Buffer.concat([d.update(v.subarray(1 + NONCE_BYTES, v.length - TAG_BYTES)), d.final()]);
  } catch {
    return undefined;
  }
}

/**
 * Startup self-test (COMPAT.md §7.3): SET/GET/DEL on `<cookie-name>-healthcheck-<random>`. Rejects with
 * GatehouseError('ERR_SESSION_STORE') on any failure; the caller treats that as fatal.
 */
export async function selfTest(redis: RedisLike, cookieName: string): Promise<void> {
  const key = `${cookieName}-healthcheck-${randomBytes(8).toString('hex')}`;
  const value = randomBytes(16).toString('hex');
  try {
    await redis.set(key, value, { px: 60_000 });
    const got = await redis.getBuffer(key);
    if (got === null || got.toString() !== value) throw new Error('read back a different value');
    await redis.del(key);
  } catch (e) {
    throw storeError(e);
  }
}

/**
 * Creates the `redis` SessionStore (COMPAT.md §7.2–§7.6). The cookie holds only a sealed ticket
 * `v2.<b64url(id)>.<b64url(secret)>`; Redis holds, under the id, the session encrypted with a key derived from
 * the secret. Fresh saves always mint a new ticket (§7.3, GHSA-f24x-5g9q-753f); refresh saves keep it.
 */
export function createRedisSessionStore(deps: RedisSessionStoreDeps): SessionStore {
  const { redis, codec, cookieName: name, expireMs } = deps;
  const lockTtlMs = deps.lockTtlMs ?? 10_000;
  const lockWaitMs = deps.lockWaitMs ?? 30_000;
  const lockPollMs = Math.max(1, deps.lockPollMs ?? 10);
  const lockAttempts = Math.max(1, Math.floor(lockWaitMs / lockPollMs) + 1);
  const sleep = deps.sleep ?? ((ms: number) => delay(ms));
  const ttlMs = expireMs > 0 ? expireMs : FALLBACK_TTL_MS;
  const cacheSize = deps.cacheSize ?? 0;
  // Entries never expire by time: every load still GETs the value and checks the age window.
  const cache = createLru<CacheEntry>(cacheSize);
  const idPrefix = `${name}-`;
  const hexId = /^[0-9a-f]{32}$/;
  const ticketPrefix = 'v2.';

  const optionsFor = (ctx: CookieContext): CookieOptions =>
    ctx.domain === undefined ? deps.cookie : { ...deps.cookie, domain: ctx.domain };
  const ownNames = (ctx: CookieContext) => presentSessionCookieNames(name, ctx.cookies);
  const chunkNames = (ctx: CookieContext) => ownNames(ctx).filter((n) => n !== name);
  const clearingFor = (names: readonly string[], ctx: CookieContext) =>
    names.length === 0 ? [] : clearingSetCookies(names, optionsFor(ctx));

  const newTicket = (): Ticket => ({
    id: `${name}-${randomBytes(16).toString('hex')}`,
    secret: randomBytes(16),
  });
  const ticketCookie = (t: Ticket, issuedAt: number) =>
    codec.seal(`${ticketPrefix}${b64url(t.id)}.${b64url(t.secret)}`, issuedAt);

  const parseTicket = (sealed: string): Ticket | InvalidSessionReason => {
    const hit = cache.get(sealed, 0);
    if (hit) return hit.ticket;
    const opened = codec.open(sealed);
    if (!opened.ok) return opened.reason === 'bad_mac' ? 'bad_mac' : 'malformed';
    const text = opened.plaintext.toString('utf8');
    const parts = text.split('.');
    if (parts.length !== 3 || `${parts[0]}.` !== ticketPrefix) return 'malformed';
    const id = Buffer.from(parts[1] ?? '', 'base64url').toString('utf8');
    const secret = Buffer.from(parts[2] ?? '', 'base64url');
    if (!id.startsWith(idPrefix) || !hexId.test(id.slice(idPrefix.length)) || secret.length !== 16) {
      return 'malformed';
    }
    const ticket = { id, secret };
    cache.set(sealed, { ticket }, Number.POSITIVE_INFINITY);
    return ticket;
  };

  const fetchRaw = async (id: string): Promise<Buffer | null> => {
    try {
      return await redis.getBuffer(id);
    } catch (e) {
      throw storeError(e);
    }
  };

  /** Redis value → session, or why not; the cache skips decryption when the stored bytes did not change. */
  const readSession = async (
    sealed: string,
    t: Ticket,
    now: number,
  ): Promise<Session | InvalidSessionReason> => {
    const raw = await fetchRaw(t.id);
    if (raw === null) return 'unknown_ticket';
    const entry = cache.get(sealed, 0);
    let session: Session | undefined;
    if (entry?.raw?.equals(raw) && entry.session) {
      session = entry.session;
    } else {
      const plain = openValue(t, raw);
      if (!plain) return 'bad_mac';
      session = decodeSession(plain);
      if (!session) return 'malformed';
      cache.set(sealed, { ticket: t, raw, session }, Number.POSITIVE_INFINITY);
    }
    // Same window as the cookie store (§3.4.2/§3.4.3): createdAt is the session's, so a refresh renews it.
    if (expireMs > 0 && (session.createdAt <= now - expireMs || session.createdAt >= now + FUTURE_SKEW_MS)) {
      return 'expired';
    }
    return session;
  };

  const requestTicket = (ctx: CookieContext): Ticket | undefined => {
    const sealed = ctx.cookies.get(name);
    if (sealed === undefined) return undefined;
    const t = parseTicket(sealed);
    return typeof t === 'string' ? undefined : t;
  };

  // Index of tickets per IdP session and per user, so a back-channel logout finds them without any
  // per-request cost. The prefix differs from tickets (`<name>-<hex>`) so the two never mix.
  const indexKeys = deps.indexKeys && deps.indexKeys.length > 0 ? deps.indexKeys : [Buffer.from(name)];
  const indexKey = (kind: 'sid' | 'sub', v: string, key: Buffer = indexKeys[0] as Buffer) =>
    `${name}.idx.${createHmac('sha256', key).update(`${kind}\0${v}`).digest('hex')}`;
  const indexNames = (s: Session, key?: Buffer): string[] =>
    s.sid ? [indexKey('sid', s.sid, key), indexKey('sub', s.user, key)] : [indexKey('sub', s.user, key)];
  const prune = async (key: string, keep: string) => {
    const live: string[] = [];
    for (const id of await redis.smembers(key)) {
      if (id !== keep && (await redis.getBuffer(id)) === null) await redis.srem(key, id);
      else if (id !== keep) live.push(id);
    }
    for (const id of live.slice(0, Math.max(0, live.length + 1 - MAX_INDEX_MEMBERS))) {
      await redis.del(id);
      await redis.srem(key, id);
    }
  };
  const index = async (s: Session, ticketId: string) => {
    for (const key of indexNames(s)) {
      await redis.sadd(key, ticketId);
      await redis.pexpire(key, ttlMs);
      if ((await redis.scard(key)) > MAX_INDEX_MEMBERS) await prune(key, ticketId);
    }
  };
  /** Drops an ending ticket from its back-channel indexes (under every index key, as revoke looks). */
  const unindex = async (t: Ticket) => {
    const raw = await redis.getBuffer(t.id);
    const plain = raw === null ? undefined : openValue(t, raw);
    const s = plain === undefined ? undefined : decodeSession(plain);
    if (!s) return;
    for (const k of indexKeys) for (const name of indexNames(s, k)) await redis.srem(name, t.id);
  };

  const forget = (ctx: CookieContext) => {
    const sealed = ctx.cookies.get(name);
    if (sealed !== undefined) cache.delete(sealed);
  };

  return {
    kind: 'redis',

    async load(ctx, now): Promise<LoadResult> {
      const sealed = ctx.cookies.get(name);
      if (sealed === undefined) {
        // Leftover chunks of the cookie store are not a ticket: clear them (§7.2: tickets are never split).
        const chunks = chunkNames(ctx);
        if (chunks.length === 0) return { kind: 'none' };
        return { kind: 'invalid', reason: 'malformed', setCookies: clearingFor(chunks, ctx) };
      }
      const invalid = (reason: InvalidSessionReason): LoadResult => ({
        kind: 'invalid',
        reason,
        setCookies: clearingFor(ownNames(ctx), ctx),
      });
      const t = parseTicket(sealed);
      if (typeof t === 'string') return invalid(t);
      const s = await readSession(sealed, t, now);
      if (typeof s === 'string') return invalid(s);
      return { kind: 'session', session: s, key: sealed };
    },

    async save(session, ctx, { fresh }) {
      const old = requestTicket(ctx);
      const ticket = fresh || !old ? newTicket() : old;
      const value = sealValue(ticket, encodeSession(session));
      let written: boolean;
      try {
        // A refresh must not resurrect a session that was signed out meanwhile: XX only rewrites a live key.
        written = await redis.set(ticket.id, value, { px: ttlMs, xx: ticket === old });
        if (fresh && old) {
          await unindex(old);
          await redis.del(old.id);
        }
        if (written) await index(session, ticket.id);
      } catch (e) {
        throw storeError(e);
      }
      forget(ctx);
      if (!written) return clearingFor(ownNames(ctx), ctx);
      const cookie = serializeCookie(name, ticketCookie(ticket, session.createdAt), optionsFor(ctx));
      return [cookie, ...clearingFor(chunkNames(ctx), ctx)];
    },

    async clear(ctx) {
      const t = requestTicket(ctx);
      if (t) {
        try {
          await unindex(t);
          await redis.del(t.id);
        } catch (e) {
          throw storeError(e);
        }
      }
      forget(ctx);
      return clearingFor(ownNames(ctx), ctx);
    },

    async reload(key, now) {
      const t = parseTicket(key);
      if (typeof t === 'string') return undefined;
      const s = await readSession(key, t, now);
      return typeof s === 'string' ? undefined : s;
    },

    async revoke(match) {
      const kind = match.sid ? 'sid' : match.sub ? 'sub' : undefined;
      const value = match.sid ?? match.sub;
      if (kind === undefined || value === undefined) return 0;
      let n = 0;
      try {
        for (const k of indexKeys) {
          const key = indexKey(kind, value, k);
          for (const id of await redis.smembers(key)) n += await redis.del(id);
          await redis.del(key);
        }
      } catch (e) {
        throw storeError(e);
      }
      cache.clear();
      return n;
    },

    async lock(key): Promise<Unlock | undefined> {
      const t = parseTicket(key);
      if (typeof t === 'string') return undefined;
      const lockKey = `${t.id}.lock`;
      const token = randomBytes(16).toString('hex');
      for (let attempt = 0; attempt < lockAttempts; attempt++) {
        let got: boolean;
        try {
          got = await redis.set(lockKey, token, { px: lockTtlMs, nx: true });
        } catch (e) {
          throw storeError(e);
        }
        if (got) {
          let released = false;
          // Renewed while held (issue #17 item 1): a fixed TTL shorter than a slow refresh let a second
          // replica take the lock and spend the same refresh token again.
          const renew = setInterval(
            () => {
              redis.pexpireIfEquals(lockKey, token, lockTtlMs).catch(() => undefined);
            },
            Math.max(1, Math.floor(lockTtlMs / 3)),
          );
          renew.unref();
          return async () => {
            if (released) return;
            released = true;
            clearInterval(renew);
            try {
              await redis.delIfEquals(lockKey, token);
            } catch {
              // The lock expires after lockTtlMs anyway; a failed release must not fail the request.
            }
          };
        }
        if (attempt + 1 < lockAttempts) await sleep(lockPollMs);
      }
      return undefined;
    },

    async ping() {
      try {
        await redis.ping();
      } catch (e) {
        throw storeError(e);
      }
    },

    async close() {
      cache.clear();
      await redis.quit();
    },
  };
}
