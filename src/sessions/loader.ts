// Loads the request's session: bearer JWT, then the session store, then refresh when due (COMPAT.md §6.9, §6.10, §7.4–7.6).
import { createRefreshBackoff, type RefreshBackoffOptions } from './refresh-backoff.js';
import type { Session } from './session.js';
import type { CookieContext, SessionStore } from './store.js';

/** What the loader needs from the OIDC client (structural, so tests can pass fakes). */
export interface SessionRefresher {
  refresh(
    s: Session,
  ): Promise<{ ok: true; session: Session } | { ok: false; fatal: boolean; detail: string }>;
}
export interface BearerVerifier {
  verifyBearer(token: string): Promise<Session | undefined>;
  /** Optional synchronous answer for a token verified recently (see src/oidc/bearer.ts). */
  cachedBearer?(token: string): Session | undefined;
}

/** Why a request ended up without a session (the deny reason when nothing else allows it). */
export type NoSessionReason =
  | 'no_session'
  | 'malformed'
  | 'bad_mac'
  | 'expired'
  | 'unknown_ticket'
  | 'revoked'
  | 'store_error'
  | 'refresh_failed'
  | 'token_expired'
  | 'refresh_lock_timeout'
  | 'bearer_invalid';

export interface Loaded {
  readonly session: Session | undefined;
  /** Store key of a cookie/ticket session (absent for bearer sessions). */
  readonly key: string | undefined;
  readonly bearer: boolean;
  readonly reason: NoSessionReason | undefined;
  /** Set-Cookie values to send on whatever response is produced (refresh or clearing). */
  readonly setCookies: readonly string[];
  /** `--bearer-token-login-fallback=false` and the Authorization header was not a valid token: plain 403. */
  readonly forbid: boolean;
}

export interface LoaderOptions {
  readonly store: SessionStore;
  readonly refresher: SessionRefresher | undefined;
  readonly bearer: BearerVerifier | undefined;
  readonly skipJwtBearerTokens: boolean;
  readonly bearerLoginFallback: boolean;
  /** --cookie-refresh in ms; 0 disables refresh. */
  readonly refreshMs: number;
  readonly now: () => number;
  readonly log: { warn(o: object, msg: string): void; info(o: object, msg: string): void };
  /** Retry timing after transient refresh failures (defaults: 5 s doubling to 5 min; circuit 5 → 30 s). */
  readonly backoff?: RefreshBackoffOptions;
}

/** True when the session's ID token carries an `exp` in the past (an unreadable token counts as expired). */
export function idTokenExpired(s: Session, now: number): boolean {
  if (!s.idToken) return false;
  const payload = s.idToken.split('.')[1];
  try {
    const exp = (JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8')) as { exp?: unknown })
      .exp;
    return typeof exp !== 'number' || exp * 1000 <= now;
  } catch {
    return true;
  }
}

const JWT_RE = /^ey[a-zA-Z0-9_-]*\.ey[a-zA-Z0-9_-]*\.[a-zA-Z0-9_-]+$/;

/** Extracts a JWT from `Bearer <jwt>` or Basic credentials carrying one (COMPAT.md §6.9). */
export function bearerTokenFrom(header: string): string | undefined {
  const parts = header.split(' ');
  if (parts.length !== 2) return undefined;
  const [scheme, value] = parts as [string, string];
  if (scheme === 'Bearer') return JWT_RE.test(value) ? value : undefined;
  if (scheme !== 'Basic') return undefined;
  let decoded: string;
  try {
    decoded = Buffer.from(value, 'base64').toString('utf8');
  } catch {
    return undefined;
  }
  const i = decoded.indexOf(':');
  if (i < 0) return undefined;
  const user = decoded.slice(0, i);
  const pass = decoded.slice(i + 1);
  if (JWT_RE.test(user) && (pass === '' || pass === 'x-oauth-basic')) return user;
  if (JWT_RE.test(pass)) return pass;
  return undefined;
}

type RefreshOutcome =
  | { ok: true; session: Session; setCookies: readonly string[] }
  | { ok: false; reason: NoSessionReason; setCookies: readonly string[] }
  | { ok: 'kept'; session: Session };

// An expired access token makes a refresh due at once, but not within this long of the session's login or last
// refresh: an IdP that issues already-expired tokens must not be asked on every request (issue #21 item 4).
const MIN_EXPIRY_REFRESH_MS = 1000;

/**
 * COMPAT.md §6.10, amended by issue #21 item 3: a refresh is due when the session is older than
 * --cookie-refresh, or earlier when its access token has expired and it holds a refresh token (oauth2-proxy
 * waits for the refresh period and meanwhile answers 401 once the token has expired).
 */
export function refreshDue(s: Session, now: number, refreshMs: number): boolean {
  if (refreshMs <= 0) return false;
  const age = now - s.createdAt;
  if (age > refreshMs) return true;
  return (
    s.refreshToken !== undefined &&
    s.expiresOn !== undefined &&
    s.expiresOn < now &&
    age >= MIN_EXPIRY_REFRESH_MS
  );
}

const NO_COOKIES: readonly string[] = Object.freeze([]);

const none = (reason: NoSessionReason, setCookies: readonly string[] = [], forbid = false): Loaded => ({
  session: undefined,
  key: undefined,
  bearer: false,
  reason,
  setCookies,
  forbid,
});
const NO_SESSION: Loaded = Object.freeze(none('no_session'));

/** Creates the per-request session loader. Refreshes are single-flight per session key in this process. */
export function createSessionLoader(
  o: LoaderOptions,
): (ctx: CookieContext, authorization: string | undefined) => Loaded | Promise<Loaded> {
  const inflight = new Map<string, Promise<RefreshOutcome>>();
  // Requests still carrying the pre-refresh cookie reuse the outcome instead of refreshing again.
  const recent = new Map<string, { until: number; outcome: RefreshOutcome }>();
  const RECENT_MS = 60_000;
  const RECENT_MAX = 10_000;
  const backoff = createRefreshBackoff(o.backoff);
  // Sessions whose end for token expiry was logged, so a cookie sent again (other tabs, retries) is not
  // logged again (issue #17 item 7).
  const expiredLogged = new Set<string>();

  /** The stored session when another request or replica has refreshed it since `than` was read. */
  async function refreshedElsewhere(key: string, than: Session): Promise<Session | undefined> {
    const latest = await o.store.reload(key, o.now());
    if (latest === undefined) return undefined;
    return latest.createdAt > than.createdAt || latest.refreshToken !== than.refreshToken
      ? latest
      : undefined;
  }

  async function doRefresh(key: string, session: Session, ctx: CookieContext): Promise<RefreshOutcome> {
    const unlock = await o.store.lock(key);
    if (!unlock) {
      // The lock lives as long as the other replica's refresh: its result may just have landed.
      const theirs = await refreshedElsewhere(key, session);
      if (theirs) return { ok: true, session: theirs, setCookies: [] };
      return { ok: false, reason: 'refresh_lock_timeout', setCookies: [] };
    }
    try {
      // Another replica may have refreshed while we waited for the lock (COMPAT.md §7.6).
      const current = (await o.store.reload(key, o.now())) ?? session;
      if (!refreshDue(current, o.now(), o.refreshMs)) {
        return current === session ? { ok: 'kept', session } : { ok: true, session: current, setCookies: [] };
      }
      if (!current.refreshToken || !o.refresher) return { ok: 'kept', session: current };
      const r = await o.refresher.refresh(current);
      if (r.ok || r.fatal) {
        if (backoff.answered(key).circuitClosed) o.log.info({}, 'IdP answers again; refresh circuit closed');
      }
      if (r.ok) {
        const setCookies = await o.store.save(r.session, ctx, { fresh: false });
        o.log.info({ user: r.session.user }, 'session refreshed');
        return { ok: true, session: r.session, setCookies };
      }
      if (r.fatal) {
        // A refresh token rotated by someone else's refresh (a lost race, a lock that lapsed) is refused
        // as invalid_grant: re-read the session before ending anything (issue #17 item 1).
        const theirs = await refreshedElsewhere(key, current);
        if (theirs) {
          o.log.info({ user: current.user }, 'refresh lost a race; using the session refreshed meanwhile');
          return { ok: true, session: theirs, setCookies: [] };
        }
        o.log.info({ user: current.user, detail: r.detail }, 'refresh rejected by the IdP; session ended');
        return { ok: false, reason: 'refresh_failed', setCookies: await o.store.clear(ctx) };
      }
      // Logged once per backoff window: until then checks answer from the still-valid session without
      // asking the IdP (issue #17 item 3).
      const f = backoff.failed(key, o.now());
      o.log.warn(
        { user: current.user, detail: r.detail, retryInMs: f.retryInMs },
        'refresh failed transiently; keeping the session',
      );
      if (f.circuitOpened) o.log.warn({ detail: r.detail }, 'IdP failing; refresh circuit open');
      return { ok: 'kept', session: current };
    } finally {
      await unlock();
    }
  }

  function refreshOnce(key: string, session: Session, ctx: CookieContext): Promise<RefreshOutcome> {
    const now = o.now();
    const hit = recent.get(key);
    // A remembered refreshed session that is itself due again (a redis ticket keeps its key across refreshes,
    // and a short-lived access token expires within RECENT_MS) is refreshed, not replayed.
    if (
      hit &&
      hit.until > now &&
      !(hit.outcome.ok === true && refreshDue(hit.outcome.session, now, o.refreshMs))
    )
      return Promise.resolve(hit.outcome);
    let p = inflight.get(key);
    if (!p) {
      // A session backing off after a transient failure (or any, while the IdP circuit is open) is not
      // sent to the IdP: it is served as it is while it is still valid (issue #17 item 3).
      if (!backoff.mayTry(key, now)) return Promise.resolve({ ok: 'kept', session });
      p = doRefresh(key, session, ctx).finally(() => inflight.delete(key));
      inflight.set(key, p);
      p.then(
        (outcome) => {
          // A transient failure is remembered by the backoff, not here.
          if (outcome.ok === 'kept') return;
          if (recent.size >= RECENT_MAX) recent.clear();
          recent.set(key, { until: o.now() + RECENT_MS, outcome });
        },
        () => undefined,
      );
    }
    return p;
  }

  const loadSync = o.store.loadSync?.bind(o.store);
  const bearerOn = o.skipJwtBearerTokens && o.bearer !== undefined;
  const cachedBearer = bearerOn ? o.bearer?.cachedBearer?.bind(o.bearer) : undefined;

  /**
   * The hot path: a store that needs no I/O, no bearer token to verify, no refresh due and nothing to
   * clear is answered without a promise; so is a bearer token verified recently. Anything else takes the
   * async path below.
   */
  return function load(ctx, authorization) {
    if (bearerOn && authorization !== undefined) {
      // `Bearer <token>`: the cache holds only tokens that verified (so are well-formed JWTs), and a
      // lookup is cheaper than parsing the header; anything else is parsed in full.
      const token =
        cachedBearer === undefined
          ? undefined
          : authorization.startsWith('Bearer ')
            ? authorization.slice(7)
            : bearerTokenFrom(authorization);
      const session = token === undefined ? undefined : cachedBearer?.(token);
      if (session !== undefined)
        return {
          session,
          key: undefined,
          bearer: true,
          reason: undefined,
          setCookies: NO_COOKIES,
          forbid: false,
        };
      return loadAsync(ctx, authorization);
    }
    if (loadSync === undefined) return loadAsync(ctx, authorization);
    const now = o.now();
    const r = loadSync(ctx, now);
    if (r.kind === 'none') return NO_SESSION;
    if (r.kind === 'invalid') return none(r.reason, r.setCookies);
    const s = r.session;
    if (
      o.refreshMs > 0 &&
      (now - s.createdAt > o.refreshMs || (s.expiresOn !== undefined && s.expiresOn < now))
    ) {
      return loadAsync(ctx, authorization);
    }
    return {
      session: s,
      key: r.key,
      bearer: false,
      reason: undefined,
      setCookies: NO_COOKIES,
      forbid: false,
    };
  };

  /** Ends a session whose tokens expired unrefreshed (COMPAT.md §6.10), logging that once per session. */
  async function expired(key: string, s: Session, detail: string, ctx: CookieContext): Promise<Loaded> {
    if (!expiredLogged.has(key)) {
      if (expiredLogged.size >= RECENT_MAX) expiredLogged.clear();
      expiredLogged.add(key);
      o.log.info(
        { user: s.user, reason: 'token_expired', detail },
        'session ended: its tokens expired unrefreshed',
      );
    }
    return none('token_expired', await o.store.clear(ctx));
  }

  async function loadAsync(ctx: CookieContext, authorization: string | undefined): Promise<Loaded> {
    if (o.skipJwtBearerTokens && authorization !== undefined && o.bearer) {
      const token = bearerTokenFrom(authorization);
      const session = token ? await o.bearer.verifyBearer(token) : undefined;
      if (session)
        return { session, key: undefined, bearer: true, reason: undefined, setCookies: [], forbid: false };
      if (!o.bearerLoginFallback) return none('bearer_invalid', [], true);
    }
    const r = await o.store.load(ctx, o.now());
    if (r.kind === 'none') return none('no_session');
    if (r.kind === 'invalid') return none(r.reason, r.setCookies);
    let session = r.session;
    let setCookies: readonly string[] = [];
    if (refreshDue(session, o.now(), o.refreshMs)) {
      const out = await refreshOnce(r.key, session, ctx);
      if (out.ok === false) return none(out.reason, out.setCookies);
      session = out.session;
      if (out.ok === true) setCookies = out.setCookies;
      // A due session that was not refreshed is re-validated through its ID token (COMPAT.md §6.10). The
      // token's signature was verified at login and it has been inside our authenticated seal since, so
      // what can have changed is its expiry.
      else if (idTokenExpired(session, o.now())) return expired(r.key, session, 'id_token_expired', ctx);
    }
    // Token expiry is only enforced when refresh is on (COMPAT.md §6.10 [Q]).
    if (o.refreshMs > 0 && session.expiresOn !== undefined && session.expiresOn < o.now()) {
      return expired(r.key, session, 'access_token_expired', ctx);
    }
    return { session, key: r.key, bearer: false, reason: undefined, setCookies, forbid: false };
  }
}
