// Bearer JWTs on /oauth2/auth and the catch-all, through the real IdP's keys and a second JWKS issuer:
// --skip-jwt-bearer-tokens, --extra-jwt-issuers, JWKS caching and rotation, --bearer-token-login-fallback
// (COMPAT.md §1.5.1 step 1, §6.8, §6.9).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import t from 'tap';
import { offsetClock, startGatehouse } from '../helpers/gatehouse.js';
import { raw } from '../helpers/http.js';
import { TEST_CLIENT_ID } from '../helpers/idp.js';
import { type Jar, type Stack, startStack } from '../helpers/stack.js';

// ---- helpers ---------------------------------------------------------------------------------------------

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

// ---- a second issuer: its own ES256 keys behind discovery + a JWKS endpoint that counts fetches ---------------

interface ExtraIssuer {
  readonly issuer: string;
  readonly fetches: { jwks: number };
  sign(claims: Record<string, unknown>, kid: 'k1' | 'k2'): Promise<string>;
  /** Serve only this key from now on (rotation). */
  serveOnly(kid: 'k1' | 'k2'): void;
  close(): Promise<void>;
}

async function startExtraIssuer(): Promise<ExtraIssuer> {
  const keys = new Map<
    string,
    { privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey']; jwk: JWK }
  >();
  for (const kid of ['k1', 'k2']) {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    keys.set(kid, { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } });
  }
  let served = ['k1'];
  const fetches = { jwks: 0 };
  let issuer = '';
  const server: Server = createServer((req, res) => {
    if (req.url === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/keys` }));
    } else if (req.url === '/keys') {
      fetches.jwks++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: served.map((k) => keys.get(k)?.jwk) }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    issuer,
    fetches,
    async sign(claims, kid) {
      const k = keys.get(kid);
      if (!k) throw new Error(kid);
      return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid }).sign(k.privateKey);
    },
    serveOnly(kid) {
      served = [kid];
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

// ---- the stack ---------------------------------------------------------------------------------------------

let s: Stack;
let extra: ExtraIssuer;
let bobJar: Jar;
const EXTRA_AUD = 'api://extra';
const clock = offsetClock();

t.before(async () => {
  extra = await startExtraIssuer();
  s = await startStack({
    args: [
      '--skip-jwt-bearer-tokens',
      '--set-xauthrequest',
      '--upstream=static://202',
      `--extra-jwt-issuers=${extra.issuer}=${EXTRA_AUD}`,
    ],
    now: clock.now,
  });
  const { jar, callback } = await s.login('bob');
  if (callback.status !== 302) throw new Error(`login bob: ${callback.status}`);
  bobJar = jar;
});
t.teardown(async () => {
  await s?.close();
  await extra?.close();
});

const aliceClaims = {
  sub: 'alice',
  aud: TEST_CLIENT_ID,
  email: 'alice@example.com',
  email_verified: true,
  preferred_username: 'alice',
  groups: ['admins', 'staff'],
};

t.test('tokens signed by the provider: verified against its JWKS (§6.8, §6.9)', async (t) => {
  const good = await s.idp.signToken(aliceClaims);
  const ok = await raw(s.port, { path: '/oauth2/auth', headers: { authorization: `Bearer ${good}` } });
  t.equal(ok.status, 202);
  t.equal(ok.headers['x-auth-request-user'], 'alice');
  t.equal(ok.headers['x-auth-request-email'], 'alice@example.com');
  t.equal(ok.headers['x-auth-request-groups'], 'admins,staff');
  t.same(ok.headers['set-cookie'] ?? [], [], 'a bearer session is not stored: no cookie');

  const { n } = s.idp.publicJwks.keys[0] ?? {};
  const header = { alg: 'RS256', kid: s.idp.publicJwks.keys[0]?.kid };
  const payload = { ...aliceClaims, iss: s.idp.issuer, exp: Math.floor(Date.now() / 1000) + 300 };
  const hs256 = await new SignJWT(payload)
    .setProtectedHeader({ alg: 'HS256', kid: header.kid })
    .sign(new TextEncoder().encode(n ?? 'x'));
  const bad: [string, string][] = [
    ['audience of another client', await s.idp.signToken({ ...aliceClaims, aud: 'someone-else' })],
    ['no audience', await s.idp.signToken({ ...aliceClaims, aud: undefined })],
    ['expired', await s.idp.signToken(aliceClaims, { expiresIn: -120 })],
    ['another issuer', await s.idp.signToken({ ...aliceClaims, iss: 'http://evil.test' })],
    ['unknown kid', await s.idp.signToken(aliceClaims, { kid: 'not-a-key' })],
    ['alg none', `${b64url({ alg: 'none' })}.${b64url(payload)}.AAAA`],
    ['HS256 keyed with the public key (alg confusion)', hs256],
    ['signature of another token', `${good.split('.').slice(0, 2).join('.')}.${hs256.split('.')[2]}`],
    [
      'payload swapped under a valid signature',
      `${good.split('.')[0]}.${b64url({ ...payload, sub: 'admin' })}.${good.split('.')[2]}`,
    ],
    ['email outside --email-domain', await s.idp.signToken({ ...aliceClaims, email: 'alice@evil.test' })],
    ['email_verified false', await s.idp.signToken({ ...aliceClaims, email_verified: false })],
    [
      'no email: email = sub, which fails --email-domain',
      await s.idp.signToken({ ...aliceClaims, email: undefined }),
    ],
  ];
  for (const [name, token] of bad) {
    const r = await raw(s.port, { path: '/oauth2/auth', headers: { authorization: `Bearer ${token}` } });
    t.equal(r.status, 401, `${name} → 401 (fallback on: unauthenticated)`);
    t.notOk(r.headers['x-auth-request-user']);
  }

  const forms: [string, string, number][] = [
    ['Basic <jwt>:', basic(good, ''), 202],
    ['Basic <jwt>:x-oauth-basic', basic(good, 'x-oauth-basic'), 202],
    ['Basic user:<jwt>', basic('someone', good), 202],
    ['Basic <jwt>:other', basic(good, 'other'), 401],
    ['bearer (lower-case scheme)', `bearer ${good}`, 401],
    ['two spaces', `Bearer  ${good}`, 401],
  ];
  for (const [name, h, want] of forms) {
    const r = await raw(s.port, { path: '/oauth2/auth', headers: { authorization: h } });
    t.equal(r.status, want, `${name} → ${want}`);
  }

  const viaCatchAll = await raw(s.port, { path: '/app', headers: { authorization: `Bearer ${good}` } });
  t.equal(viaCatchAll.status, 202, 'the catch-all accepts the bearer session');
  t.equal(viaCatchAll.headers['gap-auth'], 'alice@example.com');
});

t.test('a JWT session overrides the cookie; an invalid JWT falls back to it (§6.9)', async (t) => {
  const good = await s.idp.signToken(aliceClaims);
  const both = await raw(s.port, {
    path: '/oauth2/auth',
    headers: { authorization: `Bearer ${good}`, cookie: bobJar.header() },
  });
  t.equal(both.status, 202);
  t.equal(both.headers['x-auth-request-user'], 'alice', 'JWT → basic → cookie order');
  const badJwt = await s.idp.signToken(aliceClaims, { expiresIn: -120 });
  const fallback = await raw(s.port, {
    path: '/oauth2/auth',
    headers: { authorization: `Bearer ${badJwt}`, cookie: bobJar.header() },
  });
  t.equal(fallback.status, 202);
  t.equal(fallback.headers['x-auth-request-user'], 'bob', 'invalid JWT + fallback on → the cookie session');
  const brokenCookie = await raw(s.port, {
    path: '/oauth2/auth',
    headers: { authorization: `Bearer ${good}`, cookie: '_oauth2_proxy=broken' },
  });
  t.equal(brokenCookie.status, 202, 'a broken cookie does not matter when the JWT is valid');
});

t.test('--skip-jwt-bearer-tokens off: Authorization is ignored', async (t) => {
  const gh = await startGatehouse(s, ['--email-domain=example.com']);
  t.teardown(() => gh.close());
  const good = await s.idp.signToken(aliceClaims);
  const r = await raw(gh.port, { path: '/oauth2/auth', headers: { authorization: `Bearer ${good}` } });
  t.equal(r.status, 401);
  const cookie = await raw(gh.port, {
    path: '/oauth2/auth',
    headers: { authorization: 'Bearer garbage', cookie: bobJar.header() },
  });
  t.equal(cookie.status, 202, 'the cookie still works');
});

t.test(
  '--bearer-token-login-fallback=false → plain 403 for any unusable Authorization (§1.5.1 step 1)',
  async (t) => {
    const gh = await startGatehouse(s, [
      '--email-domain=example.com',
      '--skip-jwt-bearer-tokens',
      '--bearer-token-login-fallback=false',
      '--upstream=static://202',
    ]);
    t.teardown(() => gh.close());
    const good = await s.idp.signToken(aliceClaims);
    const bad = await s.idp.signToken({ ...aliceClaims, aud: 'other' });
    const rows: [string, string | undefined, number][] = [
      ['valid JWT', `Bearer ${good}`, 202],
      ['JWT failing verification', `Bearer ${bad}`, 403],
      ['not a JWT', 'Bearer opaque-token', 403],
      ['malformed header', 'Bearer', 403],
      ['Basic credentials without a JWT', basic('user', 'pass'), 403],
      ['no Authorization header', undefined, 401],
    ];
    for (const [name, h, want] of rows) {
      for (const path of ['/oauth2/auth', '/app']) {
        const r = await raw(gh.port, { path, headers: h ? { authorization: h, accept: 'text/html' } : {} });
        const expected = path === '/app' && want === 401 ? 403 : want; // catch-all: sign-in page for no session
        t.equal(r.status, expected, `${path} ${name}`);
        if (want === 403) {
          t.equal(r.body, 'Forbidden\n', `${path} ${name}: plain 403`);
          t.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
        }
      }
    }
    const withCookie = await raw(gh.port, {
      path: '/oauth2/auth',
      headers: { authorization: `Bearer ${bad}`, cookie: bobJar.header() },
    });
    t.equal(withCookie.status, 403, 'an invalid token is refused even with a valid cookie');
  },
);

t.test(
  '--extra-jwt-issuers: discovery, JWKS fetched once and cached, rotation on an unknown kid',
  async (t) => {
    const realNow = Date.now;
    const nowS = () => Math.floor(realNow() / 1000);
    const claims = (over: Record<string, unknown> = {}) => ({
      iss: extra.issuer,
      aud: EXTRA_AUD,
      sub: 'svc-1',
      email: 'svc@example.com',
      groups: ['robots'],
      iat: nowS(),
      exp: nowS() + 300,
      ...over,
    });
    const auth = (token: string) =>
      raw(s.port, { path: '/oauth2/auth', headers: { authorization: `Bearer ${token}` } });

    // Earlier tests' invalid provider tokens also reach this verifier (the chain tries every issuer), so the
    // JWKS may already have been fetched (once, and again for their unknown kids).
    const start = extra.fetches.jwks;
    for (let i = 0; i < 5; i++) {
      const r = await auth(await extra.sign(claims({ sub: `svc-${i}` }), 'k1'));
      t.equal(r.status, 202, `token ${i} accepted`);
      t.equal(r.headers['x-auth-request-user'], `svc-${i}`);
    }
    t.equal(extra.fetches.jwks, Math.max(start, 1), 'the JWKS was fetched at most once for five tokens');

    const rows: [string, Record<string, unknown>][] = [
      ['audience of the provider client instead', { aud: TEST_CLIENT_ID }],
      ['another audience', { aud: 'api://other' }],
      ['issuer of the provider', { iss: s.idp.issuer }],
      ['email_verified false', { email_verified: false }],
      ['expired', { exp: nowS() - 60 }],
      ['email outside --email-domain', { email: 'svc@evil.test' }],
    ];
    for (const [name, over] of rows) {
      t.equal((await auth(await extra.sign(claims(over), 'k1'))).status, 401, name);
    }
    const noEmail = await auth(await extra.sign(claims({ email: undefined }), 'k1'));
    t.equal(noEmail.status, 401, 'no email: email = sub, which fails --email-domain');
    const providerSigned = await s.idp.signToken({ ...claims(), iss: extra.issuer });
    t.equal((await auth(providerSigned)).status, 401, "the provider's key cannot sign for the extra issuer");

    // Rotation: the issuer now serves only k2. An unknown kid causes one re-fetch, at most one per
    // interval for all unknown kids together (the provider-signed token above used this interval's).
    extra.serveOnly('k2');
    const k2 = await extra.sign(claims(), 'k2');
    const before = extra.fetches.jwks;
    const limited = await auth(k2);
    t.equal(limited.status, 401, 'within the interval of the last unknown-kid fetch: refused, no fetch');
    t.equal(extra.fetches.jwks, before, 'no fetch storm from unknown kids');
    clock.offset += 11_000;
    const rotated = await auth(k2);
    t.equal(rotated.status, 202, 'in the next interval the unknown kid triggers one re-fetch and verifies');
    t.equal(extra.fetches.jwks, before + 1);
    const again = await auth(await extra.sign(claims({ sub: 'svc-again' }), 'k2'));
    t.equal(again.status, 202);
    t.equal(extra.fetches.jwks, before + 1, 'the rotated set is cached');
    const retired = await auth(await extra.sign(claims(), 'k1'));
    t.equal(retired.status, 401, 'the retired key no longer verifies');
    t.equal(extra.fetches.jwks, before + 1, 'the retired kid is not fetched again within the interval');
  },
);
