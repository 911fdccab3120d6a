// decide(): the pure forward-auth decision for /oauth2/auth and the catch-all (COMPAT.md §1.5.1, §1.6, §2, §5).
import type { NoSessionReason } from '../sessions/loader.js';
import type { Session } from '../sessions/session.js';

/** Machine-readable deny (or allow) reasons: log field and metrics label, never a response body. */
export type Reason =
  | NoSessionReason
  | 'ok'
  | 'skipped'
  | 'email_not_allowed'
  | 'group_not_allowed'
  | 'query_filter';

export interface Decision {
  /** 202/static code on success; 401/403 deny. The catch-all maps 'unauthenticated' to its own flow. */
  readonly status: number;
  readonly reason: Reason;
  /** Identity headers, only on success (COMPAT.md §2.1). */
  readonly headers: readonly (readonly [string, string])[];
  readonly setCookies: readonly string[];
  /** The session failed email/group checks and must be cleared by the caller. */
  readonly clearSession: boolean;
  readonly user: string | undefined;
}

export interface HeaderOptions {
  readonly setXAuthRequest: boolean;
  readonly passAccessToken: boolean;
  readonly setAuthorizationHeader: boolean;
  readonly setBasicAuth: boolean;
  readonly basicAuthPassword: string;
  readonly preferEmailToUser: boolean;
}

const PLAIN_VALUE = /^[\t\x20-\x7e]*$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/g;

/**
 * A claim as a header value the way Go's net/http writes it: CR, LF (and here every other control
 * character, which Node refuses to send) become a space, and the rest goes out as its UTF-8 bytes. Without
 * this, one IdP claim outside Latin-1 (a group named 日本) would make every answer for that user a 500.
 */
export function headerValueOf(v: string): string {
  if (PLAIN_VALUE.test(v)) return v;
  return Buffer.from(v.replace(CONTROL, ' '), 'utf8').toString('latin1');
}

/** Compiles the identity-header writer once from the flags (COMPAT.md §2.2–2.5). */
export function createHeaderWriter(o: HeaderOptions): (s: Session) => readonly (readonly [string, string])[] {
  const build = (s: Session): readonly (readonly [string, string])[] => {
    const h: (readonly [string, string])[] = [['GAP-Auth', s.email || s.user]];
    if (o.setXAuthRequest) {
      if (s.user) h.push(['X-Auth-Request-User', s.user]);
      if (s.email) h.push(['X-Auth-Request-Email', s.email]);
      if (s.preferredUsername) h.push(['X-Auth-Request-Preferred-Username', s.preferredUsername]);
      if (s.groups.length > 0) h.push(['X-Auth-Request-Groups', s.groups.join(',')]);
      if (o.passAccessToken && s.accessToken) h.push(['X-Auth-Request-Access-Token', s.accessToken]);
    }
    const auth: string[] = [];
    if (o.setBasicAuth) {
      const name = o.preferEmailToUser && s.email ? s.email : s.user;
      auth.push(`Basic ${Buffer.from(`${name}:${o.basicAuthPassword}`).toString('base64')}`);
    }
    if (o.setAuthorizationHeader && s.idToken) auth.push(`Bearer ${s.idToken}`);
    if (auth.length > 0) h.push(['Authorization', auth.join(',')]);
    return Object.freeze(h.map(([k, v]) => [k, headerValueOf(v)] as const));
  };
  // Cached sessions are the same (frozen) object on every request: their headers are built once. A
  // WeakMap, so an entry goes when the session object does.
  const memo = new WeakMap<Session, readonly (readonly [string, string])[]>();
  return (s) => {
    let h = memo.get(s);
    if (h === undefined) {
      h = build(s);
      memo.set(s, h);
    }
    return h;
  };
}

export interface DecideInput {
  readonly session: Session | undefined;
  /** Why there is no session, when there is none. */
  readonly noSessionReason: Reason;
  /** The request is allowed without authentication (COMPAT.md §5.4). */
  readonly allowed: boolean;
  /** Loader Set-Cookie values (refresh or clearing) to carry on the response. */
  readonly setCookies: readonly string[];
  readonly successStatus: number;
  /** Query constraints of this request pass for the session (evaluated lazily). */
  readonly queryPasses: (s: Session) => boolean;
}

export interface DeciderOptions {
  readonly emailValid: (email: string) => boolean;
  readonly groupsAllowed: (groups: readonly string[]) => boolean;
  readonly headers: (s: Session) => readonly (readonly [string, string])[];
}

const EMPTY: readonly (readonly [string, string])[] = [];

/**
 * Returns the decision for one request. `/oauth2/auth` answers 401 for `unauthenticated` and for a
 * session failing email/group checks, 403 for a query-filter miss (COMPAT.md §1.5.1 steps 2–6).
 */
export function createDecider(o: DeciderOptions): (i: DecideInput) => Decision {
  return (i) => {
    const s = i.session;
    if (!s) {
      if (i.allowed) {
        return {
          status: i.successStatus,
          reason: 'skipped',
          headers: EMPTY,
          setCookies: i.setCookies,
          clearSession: false,
          user: undefined,
        };
      }
      return {
        status: 401,
        reason: i.noSessionReason,
        headers: EMPTY,
        setCookies: i.setCookies,
        clearSession: false,
        user: undefined,
      };
    }
    if (!i.allowed) {
      if (s.email !== '' && !o.emailValid(s.email)) {
        return {
          status: 401,
          reason: 'email_not_allowed',
          headers: EMPTY,
          setCookies: i.setCookies,
          clearSession: true,
          user: s.user,
        };
      }
      if (!o.groupsAllowed(s.groups)) {
        return {
          status: 401,
          reason: 'group_not_allowed',
          headers: EMPTY,
          setCookies: i.setCookies,
          clearSession: true,
          user: s.user,
        };
      }
    }
    if (!i.queryPasses(s)) {
      return {
        status: 403,
        reason: 'query_filter',
        headers: EMPTY,
        setCookies: i.setCookies,
        clearSession: false,
        user: s.user,
      };
    }
    return {
      status: i.successStatus,
      reason: i.allowed ? 'skipped' : 'ok',
      headers: o.headers(s),
      setCookies: i.setCookies,
      clearSession: false,
      user: s.user,
    };
  };
}
