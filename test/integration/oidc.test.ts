// The OIDC client against the real dev OpenID Provider over real sockets (COMPAT.md §0.3, §0.4, §1.8, §6).
import { execFileSync } from 'node:child_process';
import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importJWK, SignJWT } from 'jose';
import t, { type Test } from 'tap';
import { BEARER_CACHE_MS } from '../../src/oidc/bearer.js';
import { createOidcClient, type OidcClient, type OidcOptions } from '../../src/oidc/client.js';
import { createIdpFetch } from '../../src/oidc/fetch.js';
import { type DevIdp, startTestIdp, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../helpers/idp.js';
import { requireBinary } from '../helpers/require-binary.js';

const REDIRECT = 'http://127.0.0.1:1/oauth2/callback';
const EVENT = 'http://schemas.openid.net/event/backchannel-logout';

interface LogLine {
  level: 'info' | 'warn' | 'error';
  msg: string;
  o: object;
}

function recorder() {
  const lines: LogLine[] = [];
  const waiters: Array<{ level: string; resolve: () => void }> = [];
  const push = (level: LogLine['level']) => (o: object, msg: string) => {
    lines.push({ level, msg, o });
    for (const w of waiters.splice(0)) {
      if (w.level === level) w.resolve();
      else waiters.push(w);
    }
  };
  return {
    lines,
    log: { info: push('info'), warn: push('warn'), error: push('error') },
    next: (level: LogLine['level']) => new Promise<void>((resolve) => waiters.push({ level, resolve })),
  };
}

function options(issuerUrl: string, over: Partial<OidcOptions> = {}): OidcOptions {
  return {
    issuerUrl,
    clientId: TEST_CLIENT_ID,
    clientSecret: TEST_CLIENT_SECRET,
    skipDiscovery: false,
    loginUrl: '',
    redeemUrl: '',
    profileUrl: '',
    jwksUrl: '',
    publicKeys: [],
    scope: '',
    allowedGroups: [],
    codeChallengeMethod: '',
    skipNonce: false,
    emailClaim: 'email',
    groupsClaim: 'groups',
    userIdClaim: 'email',
    audienceClaims: ['aud'],
    extraAudiences: [],
    allowUnverifiedEmail: false,
    skipIssuerVerification: false,
    enabledSigningAlgs: [],
    skipClaimsFromProfileUrl: false,
    extraJwtIssuers: [],
    prompt: '',
    approvalPrompt: 'force',
    acrValues: '',
    responseMode: '',
    sslInsecureSkipVerify: false,
    clientAuthMethod: 'auto',
    ...over,
  };
}

// Real time unless a test freezes it, so jose and the IdP agree on "now".
let frozen: number | undefined;
const clock = () => frozen ?? Date.now();

async function readyClient(
  t: Test,
  issuer: string,
  over: Partial<OidcOptions> = {},
): Promise<{ client: OidcClient; rec: ReturnType<typeof recorder> }> {
  const rec = recorder();
  const client = createOidcClient(options(issuer, over), { log: rec.log, now: clock });
  t.teardown(() => client.close());
  client.start();
  await client.whenReady();
  return { client, rec };
}

async function loginAs(idp: DevIdp, client: OidcClient, account: string) {
  const ls = client.createLoginState();
  const url = client.authorizationUrl({ redirectUri: REDIRECT, ...ls });
  const cb = new URL(await idp.login(url, account));
  return { ls, cb, code: cb.searchParams.get('code') ?? '' };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createTcpServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** A tiny cookie-keeping user agent: follows redirects on the IdP's origin, stops anywhere else. */
async function browse(
  jar: Map<string, string>,
  start: string,
  origin: string,
  init: { method?: string; form?: Record<string, string> } = {},
): Promise<{ url: URL; status: number; body: string }> {
  let url = new URL(start);
  let method = init.method ?? 'GET';
  let body: string | undefined = init.form ? new URLSearchParams(init.form).toString() : undefined;
  for (let hop = 0; hop < 15; hop++) {
    if (url.origin !== origin) return { url, status: 0, body: '' };
    const headers: Record<string, string> = {};
    if (jar.size > 0) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await fetch(url, {
      method,
      headers,
      redirect: 'manual',
      ...(body !== undefined ? { body } : {}),
    });
    for (const sc of res.headers.getSetCookie()) {
      const pair = sc.split(';')[0] ?? '';
      const eq = pair.indexOf('=');
      if (eq > 0) jar.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    const location = res.headers.get('location');
    const text = await res.text();
    if (res.status < 300 || res.status >= 400 || !location) return { url, status: res.status, body: text };
    url = new URL(location, url);
    method = 'GET';
    body = undefined;
  }
  throw new Error('too many redirects');
}

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

t.test('oidc client against the dev IdP', async (t) => {
  // Receives the IdP's back-channel logout POSTs.
  const logoutTokens: string[] = [];
  let onLogoutToken: () => void = () => {};
  const receiver: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      logoutTokens.push(new URLSearchParams(Buffer.concat(chunks).toString()).get('logout_token') ?? '');
      res.writeHead(200).end();
      onLogoutToken();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => receiver.close(() => resolve())));
  const raddr = receiver.address();
  const idp = await startTestIdp({
    redirectUris: [REDIRECT],
    backchannelLogoutUri: `http://127.0.0.1:${typeof raddr === 'object' && raddr ? raddr.port : 0}/bcl`,
    postLogoutRedirectUris: ['http://127.0.0.1:1/'],
    accessTokenTtl: 600,
    interactive: true,
  });
  t.teardown(() => idp.close());

  t.test('interactive login form: plain HTML, wrong password refused, right one completes', async (t) => {
    const { client } = await readyClient(t, idp.issuer);
    const ls = client.createLoginState();
    const jar = new Map<string, string>();
    const page = await browse(jar, client.authorizationUrl({ redirectUri: REDIRECT, ...ls }), idp.issuer);
    t.equal(page.status, 200);
    t.match(page.url.pathname, /^\/interaction\//);
    t.match(page.body, /<input name="username"/);
    t.match(page.body, /<input name="password"[^>]*type="password"/);
    t.match(page.body, /<button type="submit"/);
    t.notMatch(page.body, /<script|<link|src=/, 'no external assets or scripts');
    const bad = await browse(jar, page.url.href, idp.issuer, {
      method: 'POST',
      form: { username: 'alice', password: 'nope' },
    });
    t.equal(bad.status, 401);
    t.match(bad.body, /Invalid username or password/);
    const done = await browse(jar, page.url.href, idp.issuer, {
      method: 'POST',
      form: { username: 'alice@example.com', password: 'alice-password' },
    });
    t.equal(`${done.url.origin}${done.url.pathname}`, REDIRECT);
    t.equal(done.url.searchParams.get('state'), ls.state);
    const r = await client.redeem({
      code: done.url.searchParams.get('code') ?? '',
      redirectUri: REDIRECT,
      ...ls,
    });
    t.match(r, { ok: true, session: { user: 'alice', email: 'alice@example.com' } });
  });

  t.test('RP-initiated logout delivers a back-channel logout token that verifies', async (t) => {
    const { client } = await readyClient(t, idp.issuer);
    const jar = new Map<string, string>();
    const ls = client.createLoginState();
    const cb = new URL(
      await idp.login(client.authorizationUrl({ redirectUri: REDIRECT, ...ls }), 'bob', jar),
    );
    const r = await client.redeem({ code: cb.searchParams.get('code') ?? '', redirectUri: REDIRECT, ...ls });
    if (!r.ok) throw new Error(`redeem failed: ${r.code}`);
    const endUrl = client.endSessionUrl({
      idTokenHint: r.session.idToken ?? '',
      postLogoutRedirectUri: 'http://127.0.0.1:1/',
    });
    const confirm = await browse(jar, endUrl ?? '', idp.issuer);
    t.equal(confirm.status, 200);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.body)?.[1] ?? '';
    const delivered = new Promise<void>((resolve) => {
      onLogoutToken = resolve;
    });
    const out = await browse(jar, `${idp.issuer}/session/end/confirm`, idp.issuer, {
      method: 'POST',
      form: { xsrf, logout: 'yes' },
    });
    t.equal(out.url.href, 'http://127.0.0.1:1/', 'back to the post-logout URI');
    await delivered;
    const claims = await client.verifyLogoutToken(logoutTokens.at(-1) ?? '');
    t.same(claims, { sub: 'bob', sid: r.session.sid });
  });

  t.test('discovery makes the client ready; PKCE S256 by default, explicit method wins (§0.4)', async (t) => {
    const { client, rec } = await readyClient(t, idp.issuer);
    t.equal(client.ready(), true);
    t.equal(client.pkceMethod(), 'S256');
    t.ok(rec.lines.some((l) => l.level === 'info' && /ready/.test(l.msg)));
    t.equal(rec.lines.filter((l) => l.level === 'error').length, 0);
    const { client: plain } = await readyClient(t, idp.issuer, { codeChallengeMethod: 'plain' });
    t.equal(plain.pkceMethod(), 'plain');
    const { client: slash } = await readyClient(t, `${idp.issuer}/`);
    t.equal(slash.ready(), true, 'a trailing slash on the issuer URL is the same issuer');
  });

  t.test('authorization URL (§1.8.3, §1.8.4, §6.3, §6.7)', async (t) => {
    const { client } = await readyClient(t, idp.issuer);
    const ls = client.createLoginState();
    t.match(ls.state, /^[A-Za-z0-9_-]{43}$/);
    t.match(ls.nonce, /^[A-Za-z0-9_-]{43}$/);
    t.match(ls.codeVerifier, /^[A-Za-z0-9_-]{128}$/);
    const again = client.createLoginState();
    t.not(again.state, ls.state);
    t.not(again.nonce, ls.nonce);
    t.not(again.codeVerifier, ls.codeVerifier);

    const href = client.authorizationUrl({ redirectUri: REDIRECT, ...ls });
    const url = new URL(href);
    t.equal(`${url.origin}${url.pathname}`, `${idp.issuer}/auth`);
    const keys = url.search
      .slice(1)
      .split('&')
      .map((kv) => kv.split('=')[0]);
    t.same(keys, [...keys].sort(), 'keys are in sorted order');
    t.same(keys, [
      'approval_prompt',
      'client_id',
      'code_challenge',
      'code_challenge_method',
      'nonce',
      'redirect_uri',
      'response_type',
      'scope',
      'state',
    ]);
    const q = url.searchParams;
    t.equal(q.get('approval_prompt'), 'force');
    t.equal(q.get('client_id'), TEST_CLIENT_ID);
    t.equal(q.get('redirect_uri'), REDIRECT);
    t.equal(q.get('response_type'), 'code');
    t.equal(q.get('scope'), 'openid email profile');
    t.ok(href.includes('scope=openid+email+profile'), 'form encoding uses + for spaces');
    t.equal(q.get('state'), ls.state);
    t.equal(q.get('nonce'), ls.nonce);
    t.equal(q.get('code_challenge_method'), 'S256');
    t.equal(
      q.get('code_challenge'),
      createHash('sha256')
        .update(ls.codeVerifier ?? '')
        .digest('base64url'),
    );

    const { client: custom } = await readyClient(t, idp.issuer, {
      prompt: 'login',
      acrValues: 'urn:mace:incommon:iap:silver',
      responseMode: 'query',
      allowedGroups: ['admins'],
      skipNonce: true,
      codeChallengeMethod: 'plain',
      loginUrl: `${idp.issuer}/auth?hd=example.com&z=1`,
    });
    const cs = custom.createLoginState();
    t.equal(cs.nonce, undefined, 'no nonce when skipped');
    const u2 = new URL(
      custom.authorizationUrl({
        redirectUri: REDIRECT,
        ...cs,
        nonce: 'ignored',
        overrides: { prompt: 'consent', state: 'evil', client_id: 'evil', nonce: 'evil' },
      }),
    );
    const q2 = u2.searchParams;
    t.equal(q2.get('prompt'), 'consent', 'a configured login parameter may be overridden');
    t.equal(q2.has('approval_prompt'), false, 'prompt replaces approval_prompt');
    t.equal(q2.get('acr_values'), 'urn:mace:incommon:iap:silver');
    t.equal(q2.get('response_mode'), 'query');
    t.equal(q2.get('scope'), 'openid email profile groups');
    t.equal(q2.has('nonce'), false);
    t.equal(q2.get('state'), cs.state, 'state is never overridable');
    t.equal(q2.get('client_id'), TEST_CLIENT_ID);
    t.equal(q2.get('hd'), 'example.com', 'existing query of the login URL is kept');
    t.equal(q2.get('code_challenge_method'), 'plain');
    t.equal(q2.get('code_challenge'), cs.codeVerifier);
    const keys2 = u2.search
      .slice(1)
      .split('&')
      .map((kv) => kv.split('=')[0]);
    t.same(keys2, [...keys2].sort(), 'merged keys are sorted too');

    const { client: noPrompt } = await readyClient(t, idp.issuer, {
      approvalPrompt: '',
      scope: 'openid email',
    });
    const q3 = new URL(noPrompt.authorizationUrl({ redirectUri: REDIRECT, state: 's' })).searchParams;
    t.equal(q3.has('approval_prompt') || q3.has('prompt'), false);
    t.equal(q3.get('scope'), 'openid email');
    t.equal(q3.has('code_challenge'), false, 'no challenge without a verifier');
  });

  t.test('full code flow yields the session (§2.7, §6.4)', async (t) => {
    const { client } = await readyClient(t, idp.issuer, { allowedGroups: ['admins'] });
    const { ls, cb, code } = await loginAs(idp, client, 'alice');
    t.equal(cb.origin + cb.pathname, REDIRECT);
    t.equal(cb.searchParams.get('state'), ls.state);
    t.ok(code);
    frozen = Date.now();
    t.teardown(() => {
      frozen = undefined;
    });
    const r = await client.redeem({ code, redirectUri: REDIRECT, ...ls, callbackParams: cb.searchParams });
    if (!r.ok) throw new Error(`redeem failed: ${r.code} ${r.detail}`);
    const s = r.session;
    t.equal(s.user, 'alice');
    t.equal(s.email, 'alice@example.com');
    t.same(s.groups, ['admins', 'staff']);
    t.equal(s.preferredUsername, 'alice');
    t.ok(s.accessToken && s.idToken && s.refreshToken, 'all three tokens');
    t.match(s.idToken, /^ey/);
    t.equal(s.createdAt, frozen);
    t.equal(s.expiresOn, frozen + 600_000, 'expires_on from expires_in');
    t.type(s.sid, 'string', 'sid from the ID token');
  });

  t.test('redeem failures return codes, never throw (§1.9, §6.5, §6.7, §6.8)', async (t) => {
    const { client } = await readyClient(t, idp.issuer);

    const a = await loginAs(idp, client, 'alice');
    t.match(await client.redeem({ code: a.code, redirectUri: REDIRECT, ...a.ls, nonce: 'wrong' }), {
      ok: false,
      code: 'nonce_mismatch',
    });
    const b = await loginAs(idp, client, 'alice');
    const { nonce: _n, ...noNonce } = b.ls;
    t.match(await client.redeem({ code: b.code, redirectUri: REDIRECT, ...noNonce }), {
      ok: false,
      code: 'nonce_mismatch',
    });

    const c = await loginAs(idp, client, 'alice');
    t.match(await client.redeem({ code: `${c.code}x`, redirectUri: REDIRECT, ...c.ls }), {
      ok: false,
      code: 'exchange_failed',
    });
    t.match(await client.redeem({ code: 'bogus', redirectUri: REDIRECT }), {
      ok: false,
      code: 'exchange_failed',
    });
    const d = await loginAs(idp, client, 'alice');
    t.match(
      await client.redeem({ code: d.code, redirectUri: REDIRECT, ...d.ls, codeVerifier: 'x'.repeat(43) }),
      {
        ok: false,
        code: 'exchange_failed',
      },
    );
    t.match(
      await client.redeem({
        code: d.code,
        redirectUri: REDIRECT,
        ...d.ls,
        callbackParams: new URLSearchParams({ iss: 'https://evil.test' }),
      }),
      { ok: false, code: 'exchange_failed', detail: /iss/ },
    );

    const e = await loginAs(idp, client, 'eve');
    t.match(await client.redeem({ code: e.code, redirectUri: REDIRECT, ...e.ls }), {
      ok: false,
      code: 'unverified_email',
    });
    const { client: lax } = await readyClient(t, idp.issuer, { allowUnverifiedEmail: true });
    const e2 = await loginAs(idp, lax, 'eve');
    t.match(await lax.redeem({ code: e2.code, redirectUri: REDIRECT, ...e2.ls }), {
      ok: true,
      session: { email: 'eve@example.com' },
    });

    const { client: otherAud } = await readyClient(t, idp.issuer, { audienceClaims: ['custom_aud'] });
    const f = await loginAs(idp, otherAud, 'alice');
    t.match(await otherAud.redeem({ code: f.code, redirectUri: REDIRECT, ...f.ls }), {
      ok: false,
      code: 'id_token_invalid',
    });
    const { client: fallbackAud } = await readyClient(t, idp.issuer, {
      audienceClaims: ['custom_aud', 'aud'],
    });
    const g = await loginAs(idp, fallbackAud, 'bob');
    t.match(await fallbackAud.redeem({ code: g.code, redirectUri: REDIRECT, ...g.ls }), {
      ok: true,
      session: { user: 'bob', groups: [] },
    });

    const { client: noEmail } = await readyClient(t, idp.issuer, { emailClaim: 'work_email' });
    const h = await loginAs(idp, noEmail, 'alice');
    t.match(await noEmail.redeem({ code: h.code, redirectUri: REDIRECT, ...h.ls }), {
      ok: false,
      code: 'missing_email',
    });

    const notReady = createOidcClient(options(idp.issuer), { log: recorder().log });
    t.match(await notReady.redeem({ code: 'x', redirectUri: REDIRECT }), {
      ok: false,
      code: 'exchange_failed',
    });
    t.throws(() => notReady.authorizationUrl({ redirectUri: REDIRECT, state: 's' }), {
      code: 'ERR_OIDC_DISCOVERY',
    });
    t.equal(notReady.endSessionUrl({}), undefined);
    t.equal(await notReady.verifyLogoutToken('eyJ.eyJ.x'), undefined);
  });

  t.test('refresh (§6.10)', async (t) => {
    const { client } = await readyClient(t, idp.issuer, {
      scope: 'openid email profile groups offline_access',
    });
    const { ls, code } = await loginAs(idp, client, 'bob');
    const r = await client.redeem({ code, redirectUri: REDIRECT, ...ls });
    if (!r.ok) throw new Error(`redeem failed: ${r.code}`);
    idp.resetCounters();
    frozen = Date.now() + 1;
    t.teardown(() => {
      frozen = undefined;
    });
    const f = await client.refresh(r.session);
    if (!f.ok) throw new Error(`refresh failed: ${f.detail}`);
    t.equal(idp.tokenRequests('refresh_token'), 1, 'exactly one refresh_token grant');
    t.equal(idp.tokenRequests('authorization_code'), 0);
    t.not(f.session.accessToken, r.session.accessToken, 'new access token');
    t.ok(f.session.idToken && f.session.refreshToken);
    t.equal(f.session.createdAt, frozen);
    t.equal(f.session.expiresOn, frozen + 600_000);
    t.match(f.session, { user: 'bob', email: 'bob@example.com', groups: ['staff'] });

    t.match(await client.refresh({ ...r.session, refreshToken: 'nope' }), { ok: false, fatal: true });
    const { refreshToken: _rt, ...noRt } = r.session;
    t.match(await client.refresh(noRt), { ok: false, fatal: false });

    await idp.revokeAllGrants('bob');
    t.match(await client.refresh(f.session), { ok: false, fatal: true }, 'revoked grant ends the session');
  });

  t.test('refresh with the IdP down is transient', async (t) => {
    const idp2 = await startTestIdp({ redirectUris: [REDIRECT] });
    let closed = false;
    t.teardown(() => (closed ? undefined : idp2.close()));
    const { client } = await readyClient(t, idp2.issuer);
    const { ls, code } = await loginAs(idp2, client, 'alice');
    const r = await client.redeem({ code, redirectUri: REDIRECT, ...ls });
    if (!r.ok) throw new Error(`redeem failed: ${r.code}`);
    await idp2.close();
    closed = true;
    t.match(await client.refresh(r.session), { ok: false, fatal: false });
  });

  t.test('end-session URL (§1.10)', async (t) => {
    const { client } = await readyClient(t, idp.issuer);
    const u = new URL(
      client.endSessionUrl({ idTokenHint: 'eyJ.hint', postLogoutRedirectUri: 'http://127.0.0.1:1/' }) ?? '',
    );
    t.equal(`${u.origin}${u.pathname}`, `${idp.issuer}/session/end`);
    t.equal(u.searchParams.get('id_token_hint'), 'eyJ.hint');
    t.equal(u.searchParams.get('post_logout_redirect_uri'), 'http://127.0.0.1:1/');
    t.equal(u.searchParams.get('client_id'), TEST_CLIENT_ID);
  });

  t.test('bearer tokens (§6.9)', async (t) => {
    const { client } = await readyClient(t, idp.issuer);
    const good = await idp.signToken({
      sub: 'svc',
      aud: TEST_CLIENT_ID,
      email: 'svc@example.com',
      groups: 'ops',
    });
    const s = await client.verifyBearer(good);
    t.match(s, { user: 'svc', email: 'svc@example.com', groups: ['ops'], accessToken: good, idToken: good });
    t.type(s?.expiresOn, 'number');

    t.match(await client.verifyBearer(await idp.signToken({ sub: 'svc', aud: [TEST_CLIENT_ID, 'x'] })), {
      email: 'svc',
    });
    const rejects: Array<[string, string]> = [
      ['wrong audience', await idp.signToken({ sub: 'a', aud: 'other' })],
      ['no audience', await idp.signToken({ sub: 'a' })],
      ['expired', await idp.signToken({ sub: 'a', aud: TEST_CLIENT_ID }, { expiresIn: -60 })],
      ['unknown kid', await idp.signToken({ sub: 'a', aud: TEST_CLIENT_ID }, { kid: 'nope' })],
      ['wrong issuer', await idp.signToken({ sub: 'a', aud: TEST_CLIENT_ID, iss: 'https://evil.test' })],
      [
        'unverified email',
        await idp.signToken({ sub: 'a', aud: TEST_CLIENT_ID, email: 'a@x', email_verified: false }),
      ],
      ['groups of a bad type', await idp.signToken({ sub: 'a', aud: TEST_CLIENT_ID, groups: 7 })],
      ['no sub', await idp.signToken({ aud: TEST_CLIENT_ID })],
      ['alg none', `${b64({ alg: 'none' })}.${b64({ sub: 'a', aud: TEST_CLIENT_ID, iss: idp.issuer })}.x`],
      ['garbage', 'garbage'],
      ['empty', ''],
      ['almost a jwt', 'eyJ.eyJ.'],
      ['undecodable', 'eyJhbGciOi.eyJzdWIi.abc'],
    ];
    // HS256 signed with the provider's *public* key as the HMAC secret (the classic alg-confusion trick).
    const pub = createPublicKey({
      key: idp.publicJwks.keys[0] as import('node:crypto').JsonWebKey,
      format: 'jwk',
    });
    const pem = pub.export({ type: 'spki', format: 'pem' });
    const now = Math.floor(Date.now() / 1000);
    rejects.push([
      'HS256 with the public key',
      await new SignJWT({ sub: 'a', aud: TEST_CLIENT_ID, iss: idp.issuer, iat: now, exp: now + 60 })
        .setProtectedHeader({ alg: 'HS256', kid: idp.publicJwks.keys[0]?.kid ?? '' })
        .sign(Buffer.from(pem)),
    ]);
    for (const [name, token] of rejects) t.equal(await client.verifyBearer(token), undefined, name);

    const { client: extraAud } = await readyClient(t, idp.issuer, { extraAudiences: ['other'] });
    t.match(await extraAud.verifyBearer(await idp.signToken({ sub: 'a', aud: 'other' })), { user: 'a' });

    const { ls, code } = await loginAs(idp, client, 'alice');
    const r = await client.redeem({ code, redirectUri: REDIRECT, ...ls });
    if (!r.ok) throw new Error('redeem failed');
    t.match(await client.verifyBearer(r.session.idToken ?? ''), {
      user: 'alice',
      email: 'alice@example.com',
    });
  });

  t.test('verified bearer tokens are remembered until exp, at most BEARER_CACHE_MS', async (t) => {
    const { client } = await readyClient(t, idp.issuer);
    const start = Date.now();
    frozen = start;
    t.teardown(() => {
      frozen = undefined;
    });
    const long = await idp.signToken({ sub: 'svc', aud: TEST_CLIENT_ID }, { expiresIn: 3600 });
    const short = await idp.signToken({ sub: 'svc2', aud: TEST_CLIENT_ID }, { expiresIn: 10 });
    const bad = await idp.signToken({ sub: 'a', aud: 'other' });
    t.equal(client.cachedBearer(long), undefined, 'nothing is cached before a verification');
    t.match(await client.verifyBearer(long), { user: 'svc' });
    t.match(client.cachedBearer(long), { user: 'svc', accessToken: long }, 'cached after verifying');
    t.equal(await client.verifyBearer(bad), undefined);
    t.equal(client.cachedBearer(bad), undefined, 'a rejected token is never cached');
    // The cache is keyed by the token's tail (its signature): a token forged to end like a cached one,
    // with another payload, must not be answered from the cache, nor verify.
    const [h, , sig] = long.split('.');
    const forgedPayload = Buffer.from(
      JSON.stringify({ sub: 'root', aud: TEST_CLIENT_ID, exp: 9e9 }),
    ).toString('base64url');
    const forged = `${h}.${forgedPayload}.${sig}`;
    t.equal(forged.slice(-64), long.slice(-64), 'the forged token ends like the cached one');
    t.equal(client.cachedBearer(forged), undefined, 'a forged token sharing the tail is not a cache hit');
    t.equal(await client.verifyBearer(forged), undefined, 'and does not verify');
    t.match(client.cachedBearer(long), { user: 'svc' }, 'the real one is still cached');
    t.match(await client.verifyBearer(short), { user: 'svc2' });
    const shortExp = (
      JSON.parse(Buffer.from(short.split('.')[1] ?? '', 'base64url').toString()) as { exp: number }
    ).exp;
    frozen = shortExp * 1000 - 1;
    t.match(client.cachedBearer(short), { user: 'svc2' }, 'still cached just before exp');
    frozen = shortExp * 1000;
    t.equal(client.cachedBearer(short), undefined, 'gone at exp');
    t.equal(await client.verifyBearer(short), undefined, 'and verification refuses it');
    frozen = start + BEARER_CACHE_MS - 1;
    t.ok(client.cachedBearer(long), 'a long-lived token is cached up to the cap');
    frozen = start + BEARER_CACHE_MS;
    t.equal(client.cachedBearer(long), undefined, 'then verified again');
    t.match(await client.verifyBearer(long), { user: 'svc' });
    t.ok(client.cachedBearer(long), 'and cached again');
  });

  t.test('extra JWT issuers: discovery, then the jwks.json fallback (§6.9)', async (t) => {
    const other = await startTestIdp({ redirectUris: [REDIRECT] });
    t.teardown(() => other.close());
    // An issuer without discovery that only serves /.well-known/jwks.json (with the other IdP's keys).
    const bare: Server = createServer((req, res) => {
      if (req.url === '/.well-known/jwks.json') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(other.publicJwks));
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise<void>((resolve) => bare.close(() => resolve())));
    const addr = bare.address();
    const bareIssuer = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;

    const { client } = await readyClient(t, idp.issuer, {
      extraJwtIssuers: [`${other.issuer}=api`, `${bareIssuer}=api2=x`],
    });
    t.match(await client.verifyBearer(await other.signToken({ sub: 'robot', aud: 'api' })), {
      user: 'robot',
      email: 'robot',
    });
    t.equal(
      await client.verifyBearer(await other.signToken({ sub: 'robot', aud: TEST_CLIENT_ID })),
      undefined,
    );
    t.equal(
      await client.verifyBearer(await other.signToken({ sub: 'robot', aud: 'api', iss: idp.issuer })),
      undefined,
      'a token naming another issuer does not verify with this issuer key',
    );
    t.match(
      await client.verifyBearer(await other.signToken({ sub: 'r2', aud: 'api2=x', iss: bareIssuer })),
      { user: 'r2' },
      'audience is everything after the first =',
    );
    t.equal(
      await client.verifyBearer(await other.signToken({ sub: 'r2', aud: 'api2', iss: bareIssuer })),
      undefined,
    );
  });

  t.test('back-channel logout tokens', async (t) => {
    const { client } = await readyClient(t, idp.issuer);
    const base = { aud: TEST_CLIENT_ID, jti: 'j-1', events: { [EVENT]: {} } };
    t.same(await client.verifyLogoutToken(await idp.signToken({ ...base, sub: 'alice', sid: 's-1' })), {
      sub: 'alice',
      sid: 's-1',
    });
    t.same(await client.verifyLogoutToken(await idp.signToken({ ...base, sid: 's-2' })), { sid: 's-2' });
    const bad: Array<[string, Record<string, unknown>]> = [
      ['with a nonce', { ...base, sub: 'alice', nonce: 'n' }],
      ['without events', { aud: TEST_CLIENT_ID, jti: 'j', sub: 'alice' }],
      ['with the wrong event', { ...base, events: { 'urn:other': {} }, sub: 'alice' }],
      ['event not an object', { ...base, events: { [EVENT]: 'yes' }, sub: 'alice' }],
      ['without sub and sid', { ...base }],
      ['without jti', { aud: TEST_CLIENT_ID, events: { [EVENT]: {} }, sub: 'alice' }],
      ['for another client', { ...base, aud: 'other', sub: 'alice' }],
      ['from another issuer', { ...base, sub: 'alice', iss: 'https://evil.test' }],
    ];
    for (const [name, claims] of bad) {
      t.equal(await client.verifyLogoutToken(await idp.signToken(claims)), undefined, name);
    }
    const key = await importJWK(
      { kty: 'oct', k: Buffer.from('k'.repeat(32)).toString('base64url') },
      'HS256',
    );
    const forged = await new SignJWT({ ...base, sub: 'alice', iss: idp.issuer })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuedAt()
      .sign(key);
    t.equal(await client.verifyLogoutToken(forged), undefined, 'HMAC-forged');
    t.equal(await client.verifyLogoutToken('not a jwt'), undefined);
  });

  t.test('skip discovery: explicit endpoints, basic auth, no PKCE (§6.1)', async (t) => {
    const { client } = await readyClient(t, idp.issuer, {
      skipDiscovery: true,
      loginUrl: `${idp.issuer}/auth`,
      redeemUrl: `${idp.issuer}/token`,
      jwksUrl: `${idp.issuer}/jwks`,
    });
    t.equal(client.pkceMethod(), undefined);
    t.equal(client.endSessionUrl({}), undefined, 'no end-session endpoint without discovery');
    const { ls, code } = await loginAs(idp, client, 'alice');
    t.equal(ls.codeVerifier, undefined);
    t.match(await client.redeem({ code, redirectUri: REDIRECT, ...ls }), {
      ok: true,
      session: { user: 'alice' },
    });

    const broken = createOidcClient(options(idp.issuer, { skipDiscovery: true }), {
      log: recorder().log,
      retry: { initialMs: 1, maxMs: 1 },
    });
    broken.start();
    t.equal(broken.ready(), false, 'missing endpoints never become ready');
    broken.close();
    await t.rejects(broken.whenReady());
  });

  t.test('--oidc-public-key-file: PEM keys instead of the JWKS, with and without discovery', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'gh-pem-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const idpKey = createPublicKey({
      key: idp.publicJwks.keys[0] as import('node:crypto').JsonWebKey,
      format: 'jwk',
    });
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const { readPublicKeyFile } = await import('../../src/oidc/keys.js');
    const write = async (name: string, text: string) => {
      const path = join(dir, name);
      await writeFile(path, text);
      return path;
    };
    const idpPem = await write('idp.pem', idpKey.export({ type: 'spki', format: 'pem' }) as string);
    const otherPem = await write(
      'other.pem',
      other.publicKey.export({ type: 'spki', format: 'pem' }) as string,
    );
    const keyOf = (path: string) => {
      const k = readPublicKeyFile(path);
      if (k instanceof Error) throw k;
      return k;
    };

    // Without discovery: endpoints by flag, keys from PEM (the other key first: the right one is found).
    const { client } = await readyClient(t, idp.issuer, {
      skipDiscovery: true,
      loginUrl: `${idp.issuer}/auth`,
      redeemUrl: `${idp.issuer}/token`,
      publicKeys: [keyOf(otherPem), keyOf(idpPem)],
    });
    const { ls, code } = await loginAs(idp, client, 'alice');
    const r = await client.redeem({ code, redirectUri: REDIRECT, ...ls });
    t.match(r, { ok: true, session: { user: 'alice' } }, 'login: the ID token verifies with the PEM key');
    const token = await idp.signToken({ sub: 'svc', aud: TEST_CLIENT_ID });
    t.match(await client.verifyBearer(token), { user: 'svc' }, 'bearer tokens too');

    // Only a key the IdP does not sign with: nothing verifies, login fails closed.
    const { client: wrong } = await readyClient(t, idp.issuer, {
      skipDiscovery: true,
      loginUrl: `${idp.issuer}/auth`,
      redeemUrl: `${idp.issuer}/token`,
      publicKeys: [keyOf(otherPem)],
    });
    const second = await loginAs(idp, wrong, 'alice');
    t.match(await wrong.redeem({ code: second.code, redirectUri: REDIRECT, ...second.ls }), { ok: false });
    t.equal(await wrong.verifyBearer(await idp.signToken({ sub: 'svc', aud: TEST_CLIENT_ID })), undefined);

    // With discovery, the PEM keys still replace the discovered JWKS (oauth2-proxy's static key set).
    const { client: discovered } = await readyClient(t, idp.issuer, { publicKeys: [keyOf(otherPem)] });
    t.equal(
      await discovered.verifyBearer(await idp.signToken({ sub: 'svc', aud: TEST_CLIENT_ID })),
      undefined,
      'the JWKS is not consulted when PEM keys are given',
    );

    // What the file may hold.
    const cert = await write(
      'private.pem',
      other.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    );
    t.match(readPublicKeyFile(cert), { message: /private key/ }, 'a private key is refused');
    t.match(readPublicKeyFile(await write('junk.pem', 'hello')), { message: /not a PEM public key/ });
    t.match(readPublicKeyFile(join(dir, 'missing.pem')), { message: /cannot be read \(ENOENT\)/ });
    const pkcs1 = await write('pkcs1.pem', idpKey.export({ type: 'pkcs1', format: 'pem' }) as string);
    t.notOk(readPublicKeyFile(pkcs1) instanceof Error, 'PKCS#1 RSA public keys are read');
  });

  t.test('issuer mismatch fails discovery unless verification is skipped (§6.1)', async (t) => {
    const mismatched = `http://localhost:${idp.port}`;
    const rec = recorder();
    const strict = createOidcClient(options(mismatched), { log: rec.log, retry: { initialMs: 5, maxMs: 5 } });
    t.teardown(() => strict.close());
    const failed = rec.next('error');
    strict.start();
    await failed;
    t.equal(strict.ready(), false);
    const { client } = await readyClient(t, mismatched, { skipIssuerVerification: true });
    t.equal(client.ready(), true);
  });
});

t.test('IdP down at start: not ready, retried in the background, ready once it is up (§6.1)', async (t) => {
  const port = await freePort();
  // A listener that drops every connection stands in for a dead IdP and counts the retries.
  let attempts = 0;
  let onAttempt: () => void = () => {};
  const dead = createTcpServer((sock) => {
    attempts++;
    sock.destroy();
    onAttempt();
  });
  await new Promise<void>((resolve) => dead.listen(port, '127.0.0.1', resolve));

  const rec = recorder();
  const client = createOidcClient(options(`http://127.0.0.1:${port}`), {
    log: rec.log,
    now: clock,
    retry: { initialMs: 10, maxMs: 40 },
  });
  t.teardown(() => client.close());
  const thirdAttempt = new Promise<void>((resolve) => {
    onAttempt = () => {
      if (attempts >= 3) resolve();
    };
  });
  client.start();
  await thirdAttempt;
  t.equal(client.ready(), false);
  t.equal(client.pkceMethod(), undefined);
  await new Promise<void>((resolve) => dead.close(() => resolve()));

  const idp = await startTestIdp({ redirectUris: [REDIRECT], port });
  t.teardown(() => idp.close());
  await client.whenReady();
  t.equal(client.ready(), true);
  t.equal(client.pkceMethod(), 'S256');
  t.equal(rec.lines.filter((l) => l.level === 'error').length, 1, 'one log line per failure streak');
  t.ok(rec.lines.some((l) => l.level === 'info' && /recovered/.test(l.msg)));

  const { ls, code } = await loginAs(idp, client, 'bob');
  t.match(await client.redeem({ code, redirectUri: REDIRECT, ...ls }), {
    ok: true,
    session: { user: 'bob' },
  });

  const rec2 = recorder();
  const stopped = createOidcClient(options(`http://127.0.0.1:${await freePort()}`), {
    log: rec2.log,
    retry: { initialMs: 5, maxMs: 5 },
  });
  const firstFailure = rec2.next('error');
  stopped.start();
  await firstFailure;
  stopped.close();
  await t.rejects(stopped.whenReady(), 'close() before discovery rejects whenReady');
  t.equal(stopped.ready(), false);
});

const openssl = requireBinary('openssl');
t.test(
  '--ssl-insecure-skip-verify: self-signed IdP certificates (§8.2)',
  { skip: openssl ? false : 'openssl missing' },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'gatehouse-oidc-tls-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    execFileSync(
      openssl ?? 'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-subj',
        '/CN=127.0.0.1',
        '-days',
        '1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    let issuer = '';
    const server = createHttpsServer(
      { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) },
      (req, res) => {
        if (req.url === '/.well-known/openid-configuration') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify({
              issuer,
              authorization_endpoint: `${issuer}/auth`,
              token_endpoint: `${issuer}/token`,
              jwks_uri: `${issuer}/jwks`,
              code_challenge_methods_supported: ['S256'],
            }),
          );
        } else if (req.url === '/echo' && req.method === 'POST') {
          const chunks: Buffer[] = [];
          req.on('data', (c: Buffer) => chunks.push(c));
          req.on('end', () => {
            res.writeHead(200, {
              'content-type': 'text/plain',
              'x-len': req.headers['content-length'] ?? '',
            });
            res.end(Buffer.concat(chunks));
          });
        } else {
          res.writeHead(204).end();
        }
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const addr = server.address();
    issuer = `https://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;

    const insecure = createIdpFetch({ sslInsecureSkipVerify: true });
    const doc = (await (await insecure(`${issuer}/.well-known/openid-configuration`)).json()) as {
      issuer: string;
    };
    t.equal(doc.issuer, issuer);
    const echo = await insecure(new URL(`${issuer}/echo`), {
      method: 'POST',
      body: new URLSearchParams({ a: 'b c' }),
    });
    t.equal(await echo.text(), 'a=b+c');
    t.equal(echo.headers.get('x-len'), '5');
    t.equal((await insecure(`${issuer}/nothing`)).status, 204);
    await t.rejects(
      createIdpFetch({ sslInsecureSkipVerify: false })(`${issuer}/nothing`),
      'verification is on by default',
    );

    const rec = recorder();
    const strict = createOidcClient(options(issuer), { log: rec.log, retry: { initialMs: 5, maxMs: 5 } });
    t.teardown(() => strict.close());
    const failed = rec.next('error');
    strict.start();
    await failed;
    t.equal(strict.ready(), false, 'an unverifiable certificate stops discovery');

    const rec2 = recorder();
    const lax = createOidcClient(options(issuer, { sslInsecureSkipVerify: true }), { log: rec2.log });
    t.teardown(() => lax.close());
    t.ok(
      rec2.lines.some((l) => l.level === 'warn' && /NOT verified/.test(l.msg)),
      'warns at start-up',
    );
    lax.start();
    await lax.whenReady();
    t.equal(lax.pkceMethod(), 'S256');
  },
);
