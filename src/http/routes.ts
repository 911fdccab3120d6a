// Route handlers: auth check, catch-all, login (sign_in/start/callback), sign_out, userinfo (COMPAT.md §1).
import type { FastifyReply } from 'fastify';
import type { Decision } from '../authz/decide.js';
import { clearingSetCookies, presentSessionCookieNames, serializeCookie } from '../cookies/chunks.js';
import type { CookieOptions } from '../cookies/types.js';
import { sameSecret } from '../oidc/tokens.js';
import { effectiveHost, effectiveProto } from '../redirect/request.js';
import type { Loaded } from '../sessions/loader.js';
import type { Session } from '../sessions/session.js';
import type { CookieContext } from '../sessions/store.js';
import { renderErrorPage } from './pages.js';
import type { ReplyLike } from './reply.js';
import type { CheckContext, Route, RouteContext } from './server.js';
import type { Services } from './services.js';
import { headerSafeUrl, NO_CACHE, parseFormStrict, plain } from './util.js';

const JSON_CT = 'application/json';
const HTML_CT = 'text/html; charset=utf-8';
const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

interface CsrfPayload {
  s: string;
  n?: string;
  cv?: string;
  rd: string;
}

/** Bytes of clearing CSRF Set-Cookie lines one /oauth2/start answer may carry (see startLogin). */
const CSRF_CLEARING_BUDGET_BYTES = 1536;
/** `Set-Cookie: ` and the line's CRLF. */
const CRLF_HEADER_OVERHEAD = 14;

/** Creates every route handler over the services; all option lookups happen here, once. */
export function createRoutes(svc: Services) {
  const o = svc.opts;
  const prefix = o.proxyPrefix;
  const signInPath = `${prefix}/sign_in`;
  const callbackPath = `${prefix}/callback`;
  const csrfNameRe = new RegExp(`^${escapeRe(o.cookieName)}_[A-Za-z0-9_-]{8}_csrf$`);
  const staticCode = o.staticCode;
  // JSON bodies go out as Buffers: for a string body Fastify appends '; charset=utf-8' to the JSON
  // Content-Type, and COMPAT.md §1.6.1/§1.11 require exactly `application/json`.
  const emptyJson = Buffer.from('{}');

  // The Domain is only needed when a cookie is written, so it is computed on first use. A class, not an
  // object literal with a getter: V8 keeps a literal's getter closure in the object's hidden class, so
  // every request would mint a new hidden class that outlives the request (measured: ~3.5 KB promoted
  // per request, scavenges at 70 % survival and a mark-compact every half second).
  class LazyCookieContext implements CookieContext {
    readonly cookies: ReadonlyMap<string, string>;
    #c: CheckContext;
    #domain: string | undefined = undefined;
    #chosen = false;
    constructor(c: CheckContext) {
      this.cookies = c.cookies;
      this.#c = c;
    }
    get domain(): string | undefined {
      if (!this.#chosen) {
        this.#domain = svc.cookieDomain(effectiveHost(this.#c.facts, svc.trust(this.#c.facts)));
        this.#chosen = true;
      }
      return this.#domain;
    }
  }
  const cookieCtx = (c: CheckContext): CookieContext => new LazyCookieContext(c);

  const noCache = (reply: FastifyReply) => reply.headers(NO_CACHE);

  const withCookies = <R extends ReplyLike>(reply: R, setCookies: readonly string[]): R => {
    if (setCookies.length > 0) reply.header('set-cookie', setCookies as string[]);
    return reply;
  };

  function errorPage(
    c: RouteContext,
    status: number,
    message: string,
    setCookies: readonly string[] = [],
    debug?: string,
  ) {
    const page = renderErrorPage({
      status,
      title: STATUS_TEXT[status] ?? 'Error',
      message: o.showDebugOnError && debug ? `${message} (${debug})` : message,
      requestId: c.requestId(),
      back: '/',
    });
    return withCookies(noCache(c.reply.code(status)), setCookies)
      .header('content-type', HTML_CT)
      .send(page);
  }

  const observe = (c: CheckContext, d: Decision) => {
    c.state.reason = d.reason;
    c.state.user = d.user;
    c.state.decision = d.status;
    svc.observer?.decision(d.status, d.reason);
    // One line per decision: the request line carries the reason when request logging is on; otherwise
    // server.ts writes an "auth decision" line from this state once the answer is out.
  };

  type Checked = { d: Decision; loaded: Loaded };
  const ALWAYS = () => true;

  /**
   * Steps 1–5 of COMPAT.md §1.5.1, shared by /oauth2/auth, the catch-all and userinfo. Synchronous when
   * the session loaded synchronously and nothing must be cleared (the common case); a promise otherwise.
   */
  function check(c: CheckContext, withQuery: boolean, successStatus: number): Checked | Promise<Checked> {
    const ctx = cookieCtx(c);
    const loaded = svc.loadSession(ctx, headerOne(c.facts.headers.authorization));
    return loaded instanceof Promise
      ? loaded.then((l) => decideFor(c, ctx, l, withQuery, successStatus))
      : decideFor(c, ctx, loaded, withQuery, successStatus);
  }

  function decideFor(
    c: CheckContext,
    ctx: CookieContext,
    loaded: Loaded,
    withQuery: boolean,
    successStatus: number,
  ): Checked | Promise<Checked> {
    if (loaded.forbid) {
      const d: Decision = {
        status: 403,
        reason: 'bearer_invalid',
        headers: [],
        setCookies: [],
        clearSession: false,
        user: undefined,
      };
      return { d, loaded };
    }
    const d = svc.decide({
      session: loaded.session,
      noSessionReason: loaded.reason ?? 'no_session',
      allowed: svc.allow(c.facts),
      setCookies: loaded.setCookies,
      successStatus,
      queryPasses: withQuery ? svc.queryFilter(c.rawQuery) : ALWAYS,
    });
    if (d.clearSession)
      return svc.store.clear(ctx).then((setCookies) => ({ d: { ...d, setCookies }, loaded }));
    return { d, loaded };
  }

  function writeAuth<R extends ReplyLike>(c: CheckContext<R>, r: Checked): R {
    const { d } = r;
    observe(c, d);
    const reply = withCookies(c.reply, d.setCookies);
    if (d.status === 202) {
      for (const [k, v] of d.headers) reply.header(k, v);
      reply.code(202);
      reply.send();
      return reply;
    }
    return plain(reply, d.status === 403 ? 403 : 401);
  }

  // Not an async function: a synchronous answer is sent without a promise or a microtask hop. Generic
  // over the reply: Fastify's for other methods, the fast path's RawReply for GET and HEAD (server.ts).
  const auth = <R extends ReplyLike>(c: CheckContext<R>): R | Promise<R> => {
    let r: Checked | Promise<Checked>;
    try {
      r = check(c, true, 202);
    } catch (err) {
      return storeDown(c, err);
    }
    return r instanceof Promise
      ? r.then(
          (x) => writeAuth(c, x),
          (err: unknown) => storeDown(c, err),
        )
      : writeAuth(c, r);
  };

  function storeDown<R extends ReplyLike>(c: CheckContext<R>, err: unknown): R {
    c.state.reason = 'store_error';
    svc.observer?.decision(500, 'store_error');
    svc.log.debug({ err: err instanceof Error ? err.message : String(err) }, 'session store unavailable');
    return plain(c.reply, 500);
  }

  function clearSessionCookies(c: RouteContext): string[] {
    const names = presentSessionCookieNames(o.cookieName, c.cookies);
    return names.length === 0
      ? []
      : clearingSetCookies(names, { ...svc.cookie, domain: cookieCtx(c).domain, maxAge: 0 });
  }

  const catchAll: Route = async (c) => {
    let r: { d: Decision; loaded: Loaded };
    try {
      r = await check(c, true, staticCode ?? 200);
    } catch (err) {
      return storeDown(c, err);
    }
    const { d } = r;
    observe(c, d);
    if (d.status === 403 && d.reason === 'bearer_invalid') return plain(c.reply, 403);
    if (d.clearSession) {
      if (o.forceJsonErrors)
        return withCookies(c.reply.code(403), d.setCookies).header('content-type', JSON_CT).send(emptyJson);
      return errorPage(c, 403, 'The session failed authorization checks.', d.setCookies);
    }
    if (d.status === 401) {
      if (o.forceJsonErrors || svc.isAjax(c.facts.headers) || svc.isApiRoute(c.facts)) {
        return withCookies(c.reply.code(401), d.setCookies).header('content-type', JSON_CT).send(emptyJson);
      }
      if (o.skipProviderButton) return startLogin(c, svc.chooseRedirect(c.facts, undefined), d.setCookies);
      const setCookies = [...d.setCookies, ...clearSessionCookies(c)];
      return withCookies(noCache(c.reply.code(403)), dedupe(setCookies))
        .header('content-type', HTML_CT)
        .send(svc.signInPage(signInTarget(svc.chooseRedirect(c.facts, undefined))));
    }
    if (d.status === 403) return plain(withCookies(c.reply, d.setCookies), 403);
    if (staticCode === undefined) {
      return withCookies(c.reply.code(404), d.setCookies)
        .header('content-type', 'text/plain; charset=utf-8')
        .send('404 page not found\n');
    }
    const reply = withCookies(c.reply, d.setCookies);
    for (const [k, v] of d.headers) reply.header(k, v);
    return reply.code(staticCode).header('content-type', 'text/plain; charset=utf-8').send('Authenticated');
  };

  const userinfo: Route = async (c) => {
    let r: { d: Decision; loaded: Loaded };
    try {
      r = await check(c, false, 200);
    } catch (err) {
      return storeDown(c, err);
    }
    const { d, loaded } = r;
    observe(c, d);
    const reply = withCookies(noCache(c.reply), d.setCookies);
    if (d.status === 403) return plain(reply, 403);
    if (d.status !== 200) return plain(reply, 401);
    const s = loaded.session;
    if (!s) return reply.code(200).header('content-type', JSON_CT).send(emptyJson);
    const body: Record<string, unknown> = { user: s.user, email: s.email };
    if (s.groups.length > 0) body.groups = s.groups;
    if (s.preferredUsername) body.preferredUsername = s.preferredUsername;
    return reply
      .code(200)
      .header('content-type', JSON_CT)
      .send(Buffer.from(`${JSON.stringify(body)}\n`));
  };

  /** The callback URL sent as redirect_uri (COMPAT.md §6.6). */
  function callbackUrl(c: RouteContext): string {
    const configured = o.redirectUrl;
    let path = callbackPath;
    if (configured) {
      try {
        const u = new URL(configured, 'http://relative.invalid');
        if (!configured.startsWith('/') && u.host && !o.relativeRedirectUrl) return configured;
        path = u.pathname + u.search;
        if (o.relativeRedirectUrl) return path;
      } catch {
        // validated at start-up; keep the default path
      }
    }
    const trusted = svc.trust(c.facts);
    const proto = o.cookieSecure ? 'https' : effectiveProto(c.facts, trusted);
    return `${proto}://${effectiveHost(c.facts, trusted)}${path}`;
  }

  function csrfCookieOptions(c: RouteContext, maxAge: number): CookieOptions {
    return { ...svc.csrfCookie, domain: cookieCtx(c).domain, maxAge };
  }

  /** Starts the OAuth flow: CSRF cookie + 302 to the IdP (COMPAT.md §1.8). */
  function startLogin(c: RouteContext, rd: string, extraSetCookies: readonly string[] = []) {
    if (!svc.oidc.ready()) {
      c.state.reason = undefined;
      return errorPage(
        c,
        503,
        'The identity provider is not reachable yet. Please try again in a moment.',
        extraSetCookies,
      );
    }
    const ls = svc.oidc.createLoginState();
    const rawState = `${ls.state}:${rd}`;
    const state = o.encodeState ? Buffer.from(rawState).toString('base64url') : rawState;
    const payload: CsrfPayload = { s: ls.state, rd };
    if (ls.nonce) payload.n = ls.nonce;
    if (ls.codeVerifier) payload.cv = ls.codeVerifier;
    const name = o.csrfPerRequest ? `${o.cookieName}_${ls.state.slice(0, 8)}_csrf` : `${o.cookieName}_csrf`;
    const now = svc.now();
    const setCookies = [...extraSetCookies];
    if (o.csrfPerRequest && o.csrfPerRequestLimit > 0) {
      const existing: { name: string; at: number }[] = [];
      for (const [k, v] of c.cookies) {
        if (!csrfNameRe.test(k)) continue;
        const opened = svc.csrfCodec.open(v);
        existing.push({ name: k, at: opened.ok ? opened.issuedAt : 0 });
      }
      existing.sort((a, b) => a.at - b.at);
      // Clearing is bounded (issue #17 item 7): at most the limit's worth per answer, and no more bytes
      // than leave room in a proxy's smallest default header buffer (nginx: 4 KiB). A browser flooded
      // with forged CSRF cookies is cleaned up over a few starts instead of in one oversized answer.
      const excess = Math.min(existing.length - (o.csrfPerRequestLimit - 1), o.csrfPerRequestLimit);
      if (excess > 0) {
        const clearing = clearingSetCookies(
          existing.slice(0, excess).map((e) => e.name),
          csrfCookieOptions(c, 0),
        );
        let bytes = 0;
        for (const line of clearing) {
          bytes += line.length + CRLF_HEADER_OVERHEAD;
          if (bytes > CSRF_CLEARING_BUDGET_BYTES) break;
          setCookies.push(line);
        }
      }
    }
    setCookies.push(
      serializeCookie(
        name,
        svc.csrfCodec.seal(JSON.stringify(payload), now),
        csrfCookieOptions(c, Math.floor(o.csrfExpireMs / 1000)),
      ),
    );
    const url = svc.oidc.authorizationUrl({
      redirectUri: callbackUrl(c),
      state,
      ...(ls.nonce ? { nonce: ls.nonce } : {}),
      ...(ls.codeVerifier ? { codeVerifier: ls.codeVerifier } : {}),
    });
    return withCookies(noCache(c.reply.code(302)), setCookies)
      .header('location', headerSafeUrl(url))
      .send();
  }

  /** Query plus (POST) form values; a parse error is a 400 (never a 500 for bad input). */
  function formOf(c: RouteContext): URLSearchParams | Error {
    const q = parseFormStrict(c.rawQuery, o.allowQuerySemicolons);
    if (q instanceof Error) return q;
    const body = c.req.body;
    if (typeof body === 'string' && body !== '') {
      const f = parseFormStrict(body, o.allowQuerySemicolons);
      if (f instanceof Error) return f;
      // A POST body value wins over the query (COMPAT.md §4.2).
      for (const k of new Set(f.keys())) q.set(k, f.get(k) as string);
    }
    return q;
  }

  const signInTarget = (rd: string) => (rd.split('?')[0] === signInPath ? '/' : rd);

  const start: Route = (c) => {
    const form = formOf(c);
    if (form instanceof Error)
      return errorPage(c, 400, 'The request could not be understood.', [], form.message);
    return startLogin(c, svc.chooseRedirect(c.facts, form.get('rd') ?? undefined));
  };

  const signIn: Route = async (c) => {
    const form = formOf(c);
    if (form instanceof Error)
      return errorPage(c, 400, 'The request could not be understood.', [], form.message);
    const rd = svc.chooseRedirect(c.facts, form.get('rd') ?? undefined);
    if (o.skipProviderButton) return startLogin(c, rd);
    // Clear any planted session before showing the page (GHSA-f24x-5g9q-753f).
    let setCookies: string[];
    try {
      setCookies = await svc.store.clear(cookieCtx(c));
    } catch {
      setCookies = clearSessionCookies(c);
    }
    return withCookies(noCache(c.reply.code(200)), setCookies)
      .header('content-type', HTML_CT)
      .send(svc.signInPage(signInTarget(rd)));
  };

  const callback: Route = async (c) => {
    const form = formOf(c);
    if (form instanceof Error)
      return errorPage(c, 400, 'The callback request could not be understood.', [], form.message);
    const idpError = form.get('error');
    if (idpError !== null) {
      c.state.reason = undefined;
      // RFC 6749 §4.1.2.1: hostile input like any other; shortened, control characters dropped, escaped by
      // the page. The description is often what the user can act on ("Code challenge required.").
      const error = printable(idpError, 100);
      const description = printable(form.get('error_description') ?? '', 300);
      svc.log.info(
        { reqId: c.requestId(), error, ...(description ? { error_description: description } : {}) },
        'login failed: the identity provider returned an error',
      );
      return errorPage(
        c,
        403,
        `Login failed: the identity provider returned an error: ${error}${description ? ` (${description})` : ''}`,
      );
    }
    let state = form.get('state') ?? '';
    if (o.encodeState) state = Buffer.from(state, 'base64url').toString('utf8');
    const colon = state.indexOf(':');
    if (colon <= 0)
      return errorPage(c, 403, 'Login failed: the login state is missing or malformed. Please try again.');
    const hash = state.slice(0, colon);
    const name = o.csrfPerRequest ? `${o.cookieName}_${hash.slice(0, 8)}_csrf` : `${o.cookieName}_csrf`;
    const raw = c.cookies.get(name);
    const opened = raw === undefined ? undefined : svc.csrfCodec.open(raw);
    const now = svc.now();
    if (!opened?.ok || now - opened.issuedAt > o.csrfExpireMs || opened.issuedAt > now + 5 * 60_000) {
      return errorPage(c, 403, 'Login failed: unable to find a valid CSRF token. Please try again.');
    }
    const clearCsrf = clearingSetCookies([name], csrfCookieOptions(c, 0));
    let payload: CsrfPayload;
    try {
      payload = JSON.parse(opened.plaintext.toString('utf8')) as CsrfPayload;
    } catch {
      return errorPage(
        c,
        403,
        'Login failed: unable to find a valid CSRF token. Please try again.',
        clearCsrf,
      );
    }
    if (typeof payload.s !== 'string' || !sameSecret(payload.s, hash)) {
      return errorPage(c, 403, 'Login failed: CSRF token mismatch.', clearCsrf);
    }
    const code = form.get('code');
    if (!code)
      return errorPage(c, 400, 'Login failed: the identity provider sent no authorization code.', clearCsrf);
    const r = await svc.oidc.redeem({
      code,
      redirectUri: callbackUrl(c),
      ...(payload.cv ? { codeVerifier: payload.cv } : {}),
      ...(payload.n ? { nonce: payload.n } : {}),
    });
    if (!r.ok) {
      svc.log.info({ reqId: c.requestId(), code: r.code, detail: r.detail }, 'login failed');
      const msg =
        r.code === 'unverified_email'
          ? 'Login failed: your email address is not verified at the identity provider.'
          : r.code === 'id_token_hmac'
            ? `Login failed: ${r.detail}.`
            : r.code === 'missing_email'
              ? 'Login failed: the identity provider did not send an email address.'
              : r.code === 'exchange_failed'
                ? 'Login failed: the authorization code could not be redeemed. Please sign in again.'
                : 'Login failed: the session could not be validated.';
      return errorPage(c, 403, msg, clearCsrf, r.code);
    }
    const session: Session = r.session;
    if (!svc.emailValid(session.email) || !svc.groupsAllowed(session.groups)) {
      c.state.user = session.user;
      svc.log.info({ reqId: c.requestId(), user: session.user }, 'login refused: email or group not allowed');
      return errorPage(c, 403, 'Access denied: your account is not authorized for this site.', clearCsrf);
    }
    const target = typeof payload.rd === 'string' && svc.validRedirect(payload.rd) ? payload.rd : '/';
    let setCookies: string[];
    try {
      setCookies = await svc.store.save(session, cookieCtx(c), { fresh: true });
    } catch (err) {
      return storeDown(c, err);
    }
    c.state.user = session.user;
    svc.log.info({ reqId: c.requestId(), user: session.user }, 'login succeeded');
    return withCookies(noCache(c.reply.code(302)), [...clearCsrf, ...setCookies])
      .header('location', headerSafeUrl(target))
      .send();
  };

  const signOut: Route = async (c) => {
    const form = formOf(c);
    if (form instanceof Error)
      return errorPage(c, 400, 'The request could not be understood.', [], form.message);
    const ctx = cookieCtx(c);
    let session: Session | undefined;
    try {
      session = (await svc.loadSession(ctx, undefined)).session;
    } catch {
      session = undefined;
    }
    let target = svc.chooseRedirect(c.facts, form.get('rd') ?? undefined);
    if (session?.idToken && target.includes('{id_token}'))
      target = target.split('{id_token}').join(session.idToken);
    // The record goes first: a sign-out that cannot delete it must not look like a success, since a copy
    // of the ticket cookie would still work once the store is back (issue #17 item 4). The browser keeps
    // its cookie then, so that signing out again can finish the job.
    let setCookies: string[];
    try {
      setCookies = await svc.store.clear(ctx);
    } catch (err) {
      c.state.reason = 'store_error';
      c.state.user = session?.user;
      svc.log.error(
        { reqId: c.requestId(), err: err instanceof Error ? err.message : String(err) },
        'sign-out did not complete: the session store is unavailable',
      );
      return errorPage(
        c,
        500,
        'Sign-out did not complete: your session could not be ended. Please try again in a moment.',
      );
    }
    if (o.backendLogoutUrl && session && svc.backendLogout) {
      await svc.backendLogout(o.backendLogoutUrl.split('{id_token}').join(session.idToken ?? ''));
    }
    // The issue text: with --oidc-rp-initiated-logout OR --backend-logout-url, sign out through the IdP's
    // end_session_endpoint when it advertises one (beyond COMPAT.md §1.10, which only does the GET).
    if ((o.rpInitiatedLogout || o.backendLogoutUrl !== '') && session?.idToken) {
      const trusted = svc.trust(c.facts);
      const absolute = target.startsWith('/')
        ? `${o.cookieSecure ? 'https' : effectiveProto(c.facts, trusted)}://${effectiveHost(c.facts, trusted)}${target}`
        : target;
      const idp = svc.oidc.endSessionUrl({ idTokenHint: session.idToken, postLogoutRedirectUri: absolute });
      if (idp) target = idp;
    }
    c.state.user = session?.user;
    return withCookies(noCache(c.reply.code(302)), setCookies)
      .header('location', headerSafeUrl(target))
      .send();
  };

  /**
   * OIDC Back-Channel Logout 1.0 (gatehouse-only): the IdP POSTs a signed logout token; every session of
   * that IdP session (`sid`), or of that user when no sid is given, ends.
   */
  const backchannelLogout: Route = async (c) => {
    const reply = c.reply.header('cache-control', 'no-store');
    if (c.req.method !== 'POST') return reply.code(405).header('allow', 'POST').send();
    const body = typeof c.req.body === 'string' ? parseFormStrict(c.req.body, false) : new URLSearchParams();
    const token = body instanceof Error ? null : body.get('logout_token');
    const claims = token ? await svc.oidc.verifyLogoutToken(token) : undefined;
    if (!claims) {
      svc.log.info({ reqId: c.requestId() }, 'back-channel logout refused: invalid logout token');
      return reply.code(400).header('content-type', JSON_CT).send('{"error":"invalid_request"}');
    }
    try {
      const n = await svc.store.revoke(claims, svc.now());
      c.state.user = claims.sub;
      svc.log.info({ reqId: c.requestId(), user: claims.sub, sessions: n }, 'back-channel logout');
    } catch (err) {
      return storeDown(c, err);
    }
    return reply.code(200).send();
  };

  const robots: Route = (c) =>
    c.reply.code(200).header('content-type', 'text/plain; charset=utf-8').send(o.robotsTxt);

  const staticAsset: Route = (c) =>
    noCache(c.reply.code(404))
      .header('content-type', 'text/plain; charset=utf-8')
      .send('404 page not found\n');

  return {
    auth,
    catchAll,
    userinfo,
    start,
    signIn,
    callback,
    signOut,
    backchannelLogout,
    robots,
    staticAsset,
  };
}

function headerOne(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** At most `max` characters of `s` without control characters (C0, DEL, C1). */
function printable(s: string, max: number): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing them is the point
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ').slice(0, max);
}

function dedupe(xs: string[]): string[] {
  return [...new Set(xs)];
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
