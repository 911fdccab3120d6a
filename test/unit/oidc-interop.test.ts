// Interop with other OpenID Providers (issue #21): metadata redirects, client authentication, error codes, HMAC ID tokens.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { ClientError, ResponseBodyError, WWWAuthenticateChallengeError } from 'openid-client';
import t from 'tap';
import { loadConfig } from '../../src/config/load.js';
import { createOidcClient, type OidcOptions } from '../../src/oidc/client.js';
import { clientSecretBasic, createClientAuth, withClientAuthFallback } from '../../src/oidc/client-auth.js';
import { discoveryFailure } from '../../src/oidc/discovery.js';
import { type FetchFn, followRedirects, MetadataFetchError } from '../../src/oidc/fetch.js';
import { signingAlgs } from '../../src/oidc/jwt.js';
import { describeError, hmacIdTokenAlg, oauthErrorCode } from '../../src/oidc/tokens.js';

const redirect = (status: number, location?: string) =>
  new Response(null, { status, headers: location === undefined ? {} : { location } });

/** A fetch answering from a table of URL → Response factories, recording what was asked. */
function fakeFetch(routes: Record<string, () => Response>) {
  const asked: { url: string; redirect: RequestInit['redirect']; method: string | undefined }[] = [];
  const fetchFn: FetchFn = async (input, init) => {
    const url = String(input);
    asked.push({ url, redirect: init?.redirect, method: init?.method });
    const r = routes[url];
    return r ? r() : new Response('not found', { status: 404 });
  };
  return { fetchFn, asked };
}

t.test('followRedirects: bounded, relative Location, http→https only (item 1)', async (t) => {
  const { fetchFn, asked } = fakeFetch({
    'http://idp.test/o/.well-known/openid-configuration': () =>
      redirect(301, '/o/.well-known/openid-configuration/'),
    'http://idp.test/o/.well-known/openid-configuration/': () => redirect(308, 'https://idp.test/doc'),
    'https://idp.test/doc': () => Response.json({ issuer: 'http://idp.test/o' }),
    'https://idp.test/down': () => redirect(302, 'http://idp.test/doc'),
    'https://idp.test/nowhere': () => redirect(302),
    'https://idp.test/loop': () => redirect(302, '/loop'),
    'https://idp.test/js': () => redirect(302, 'javascript:alert(1)'),
    'https://idp.test/bad': () => redirect(302, 'http://[::1'),
  });
  const f = followRedirects(fetchFn);
  const ok = await f('http://idp.test/o/.well-known/openid-configuration', {
    method: 'GET',
    redirect: 'manual',
  });
  t.equal(ok.status, 200);
  t.same(await ok.json(), { issuer: 'http://idp.test/o' });
  t.same(
    asked.map((a) => a.url),
    [
      'http://idp.test/o/.well-known/openid-configuration',
      'http://idp.test/o/.well-known/openid-configuration/',
      'https://idp.test/doc',
    ],
    'relative Location resolved; http→https followed',
  );
  t.ok(
    asked.every((a) => a.redirect === 'manual'),
    'each hop is fetched without the platform following it',
  );

  await t.rejects(f('https://idp.test/down'), {
    name: 'MetadataFetchError',
    status: 302,
    location: 'http://idp.test/doc',
  });
  await t.rejects(
    f('https://idp.test/down'),
    /https to http, which is refused \(Location: http:\/\/idp\.test\/doc\)/,
  );
  await t.rejects(f('https://idp.test/nowhere'), /answered 302 without a Location/);
  await t.rejects(f('https://idp.test/loop'), /more than 5 redirects \(Location: \/loop\)/);
  await t.rejects(f('https://idp.test/js'), /non-HTTP URL/);
  await t.rejects(f('https://idp.test/bad'), /bad Location/);
  const n = asked.length;
  const post = await f('https://idp.test/down', { method: 'POST' });
  t.equal(post.status, 302, 'a POST is never followed (credentials stay where they were sent)');
  t.equal(asked.length, n + 1);
});

t.test('discoveryFailure names status, Location and both issuers (item 1)', async (t) => {
  const res = redirect(301, '/o/.well-known/openid-configuration/');
  const e = discoveryFailure(
    new ClientError('unexpected HTTP response status code', { cause: res }),
    'http://idp/o',
  );
  t.match(
    e.message,
    'unexpected HTTP response status code: http://idp/o answered 301 (Location: /o/.well-known/openid-configuration/)',
  );
  t.ok(e instanceof MetadataFetchError);
  const mismatch = discoveryFailure(
    new ClientError('discovered metadata issuer does not match the expected issuer', {
      cause: { expected: 'http://idp/o/', body: { issuer: 'http://idp/o' } },
    }),
    'http://idp/o/',
  );
  t.match(mismatch.message, 'publishes issuer "http://idp/o", --oidc-issuer-url is "http://idp/o/"');
  const plain = new Error('connect ECONNREFUSED');
  t.equal(discoveryFailure(plain, 'x'), plain);
  t.equal(discoveryFailure('weird', 'x').message, 'weird');
});

t.test('a discovery that keeps failing logs the status and Location once (item 1)', async (t) => {
  let hits = 0;
  const server: Server = createServer((req, res) => {
    hits++;
    res.writeHead(302, { location: `${req.url}x` }).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}/idp`;
  const lines: { level: string; o: Record<string, unknown>; msg: string }[] = [];
  const log = {
    info: (o: object, msg: string) => lines.push({ level: 'info', o: o as Record<string, unknown>, msg }),
    warn: (o: object, msg: string) => lines.push({ level: 'warn', o: o as Record<string, unknown>, msg }),
    error: (o: object, msg: string) => lines.push({ level: 'error', o: o as Record<string, unknown>, msg }),
  };
  const client = createOidcClient(options(issuer), { log, retry: { initialMs: 60_000, maxMs: 60_000 } });
  t.teardown(() => client.close());
  client.start();
  for (let i = 0; i < 200 && lines.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(hits, 6, 'the first request and 5 redirects, then it stops');
  t.equal(lines.length, 1);
  t.match(lines[0], {
    level: 'error',
    msg: 'OIDC discovery failed; retrying in the background',
    o: {
      err: /answered 302: more than 5 redirects \(Location: \/idp\/\.well-known\/openid-configurationxxxxxx\)/,
    },
  });
});

t.test('a redirect to a document publishing another issuer is refused (item 1)', async (t) => {
  let base = '';
  const server = createServer((req, res) => {
    if (req.url === '/idp/.well-known/openid-configuration')
      res.writeHead(301, { location: `${base}/elsewhere/.well-known/openid-configuration` }).end();
    else if (req.url === '/elsewhere/.well-known/openid-configuration')
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          issuer: `${base}/elsewhere`,
          authorization_endpoint: `${base}/auth`,
          token_endpoint: `${base}/token`,
          jwks_uri: `${base}/jwks`,
        }),
      );
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const errors: Record<string, unknown>[] = [];
  const client = createOidcClient(options(`${base}/idp`), {
    log: { info: () => {}, warn: () => {}, error: (o) => void errors.push(o as Record<string, unknown>) },
    retry: { initialMs: 60_000, maxMs: 60_000 },
  });
  t.teardown(() => client.close());
  client.start();
  for (let i = 0; i < 200 && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(client.ready(), false, 'not discovered: the redirect does not change which issuer is expected');
  t.match(errors[0], { err: `publishes issuer "${base}/elsewhere", --oidc-issuer-url is "${base}/idp"` });
});

t.test('an extra JWT issuer behind redirects: discovery and JWKS are followed (item 1)', async (t) => {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  let base = '';
  const server = createServer((req, res) => {
    const json = (o: unknown) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(o));
    if (req.url === '/x/.well-known/openid-configuration')
      res.writeHead(301, { location: '/x/.well-known/openid-configuration/' }).end();
    else if (req.url === '/x/.well-known/openid-configuration/')
      json({ issuer: `${base}/x`, jwks_uri: `${base}/old-jwks` });
    else if (req.url === '/old-jwks') res.writeHead(302, { location: '/jwks' }).end();
    else if (req.url === '/jwks') json({ keys: [jwk] });
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = createOidcClient(
    { ...options('http://127.0.0.1:9/unused'), extraJwtIssuers: [`${base}/x=api`] },
    { log: { info: () => {}, warn: () => {}, error: () => {} } },
  );
  const token = await new SignJWT({ email: 'a@example.com' })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setIssuer(`${base}/x`)
    .setAudience('api')
    .setSubject('s-1')
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(privateKey);
  const session = await client.verifyBearer(token);
  t.match(session, { user: 's-1', email: 'a@example.com' });
});

t.test('client_secret_basic is RFC 6749 §2.3.1 form-encoding (item 2)', async (t) => {
  const header = (id: string, secret: string) => {
    const h = new Headers();
    clientSecretBasic(secret)({ issuer: 'x' }, { client_id: id }, new URLSearchParams(), h);
    return Buffer.from((h.get('authorization') ?? '').replace(/^Basic /, ''), 'base64').toString('utf8');
  };
  t.equal(
    header('gatehouse', 'gatehouse-secret-0123'),
    'gatehouse:gatehouse-secret-0123',
    'unreserved stay as they are',
  );
  t.equal(
    header('my client', 'a b+c/d:e%f~g_h.i'),
    'my+client:a+b%2Bc%2Fd%3Ae%25f~g_h.i',
    'space → +, the rest %XX',
  );
  t.equal(header('c', "!*'()"), 'c:%21%2A%27%28%29', 'as Go url.QueryEscape');
  t.equal(header('c', 'é'), 'c:%C3%A9');
});

t.test('createClientAuth honours token_endpoint_auth_methods_supported (item 2)', async (t) => {
  const methodOf = (opt: 'auto' | 'basic' | 'post', adv: unknown) =>
    createClientAuth(opt, 's', adv).current();
  t.equal(methodOf('auto', undefined), 'basic', 'nothing advertised: RFC 8414 default basic');
  t.equal(methodOf('auto', []), 'basic');
  t.equal(methodOf('auto', ['client_secret_post', 'client_secret_basic']), 'basic', 'basic when both');
  t.equal(methodOf('auto', ['client_secret_post']), 'post', 'post when only post');
  t.equal(methodOf('auto', ['private_key_jwt']), 'basic', 'neither: basic');
  t.equal(methodOf('auto', 'client_secret_post'), 'basic', 'a malformed list counts as none');
  t.equal(methodOf('basic', ['client_secret_post']), 'basic', 'an explicit choice wins');
  t.equal(methodOf('post', ['client_secret_basic']), 'post');

  const auto = createClientAuth('auto', 's', ['client_secret_basic', 'client_secret_post']);
  t.equal(auto.fallBack(), true);
  t.equal(auto.current(), 'post');
  t.equal(auto.fallBack(), false, 'only once');
  auto.reset();
  t.equal(auto.current(), 'basic');
  t.equal(createClientAuth('auto', 's', ['client_secret_basic']).fallBack(), false, 'post not advertised');
  t.equal(createClientAuth('basic', 's', []).fallBack(), false, 'not with an explicit method');
  const postOnly = createClientAuth('auto', 's', ['client_secret_post']);
  t.equal(postOnly.fallBack(), false);

  // The auth function applies the current method.
  const body = new URLSearchParams();
  const headers = new Headers();
  auto.fallBack();
  auto.auth({ issuer: 'x' }, { client_id: 'c' }, body, headers);
  t.equal(body.get('client_secret'), 's', 'post puts the secret in the body');
  t.equal(headers.get('authorization'), null);
});

const challenge = (status: number, header: string) => {
  const response = new Response(null, { status, headers: { 'www-authenticate': header } });
  const params = Object.fromEntries([...header.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
  return new WWWAuthenticateChallengeError(
    'server responded with a challenge in the WWW-Authenticate HTTP Header',
    {
      cause: [{ scheme: 'bearer', parameters: params }],
      response,
    },
  );
};
const bodyError = (error: string, description?: string) =>
  new ResponseBodyError('server responded with an error in the response body', {
    cause: { error, ...(description ? { error_description: description } : {}) },
    response: new Response(null, { status: 400 }),
  });

t.test('oauthErrorCode and describeError know the 401 challenge (item 4)', async (t) => {
  const dot = challenge(
    401,
    'Bearer error="invalid_client", error_description="Client authentication failed."',
  );
  t.equal(oauthErrorCode(dot), 'invalid_client');
  t.equal(
    describeError(dot),
    'HTTP 401 invalid_client: Client authentication failed. (WWW-Authenticate challenge)',
  );
  const bare = challenge(401, 'Basic realm="lemonldap"');
  t.equal(
    oauthErrorCode(bare),
    'invalid_client',
    'a 401 challenge without an error is a client-authentication failure',
  );
  t.equal(oauthErrorCode(challenge(400, 'Bearer error="invalid_grant"')), 'invalid_grant');
  t.equal(oauthErrorCode(challenge(403, 'Basic realm="x"')), undefined);
  t.equal(oauthErrorCode(bodyError('invalid_grant')), 'invalid_grant');
  t.equal(oauthErrorCode(new Error('ECONNRESET')), undefined);
  const status = new ClientError('unexpected HTTP response status code', {
    cause: new Response('oops', { status: 500 }),
  });
  t.equal(
    describeError(status),
    'client_error: unexpected HTTP response status code (HTTP 500)',
    'the status is named',
  );
});

t.test(
  'withClientAuthFallback: one retry with post after invalid_client, then remembered (item 2)',
  async (t) => {
    const log = {
      lines: [] as string[],
      warn: (_o: object, m: string) => void log.lines.push(m),
      info: (_o: object, m: string) => void log.lines.push(m),
    };
    const state = createClientAuth('auto', 's', undefined);
    const seen: string[] = [];
    const idp = async () => {
      seen.push(state.current());
      if (state.current() === 'basic') throw challenge(401, 'Basic realm="x"');
      return 'tokens';
    };
    t.equal(await withClientAuthFallback(state, idp, log), 'tokens');
    t.same(seen, ['basic', 'post']);
    t.equal(await withClientAuthFallback(state, idp, log), 'tokens');
    t.same(seen, ['basic', 'post', 'post'], 'remembered');
    t.equal(log.lines.length, 2, 'one warning, one info, once');

    // Post refused too (a rotated secret): back to basic, the error is the IdP's.
    const s2 = createClientAuth('auto', 's', undefined);
    let calls = 0;
    await t.rejects(
      withClientAuthFallback(
        s2,
        async () => {
          calls++;
          throw bodyError('invalid_client');
        },
        log,
      ),
      ResponseBodyError,
    );
    t.equal(calls, 2);
    t.equal(s2.current(), 'basic');
    // Other errors are not retried.
    let other = 0;
    await t.rejects(
      withClientAuthFallback(
        createClientAuth('auto', 's', undefined),
        async () => {
          other++;
          throw bodyError('invalid_grant');
        },
        log,
      ),
    );
    t.equal(other, 1);
    // A post retry failing otherwise keeps post.
    const s3 = createClientAuth('auto', 's', undefined);
    await t.rejects(
      withClientAuthFallback(
        s3,
        async () => {
          throw s3.current() === 'basic' ? bodyError('invalid_client') : new Error('ECONNRESET');
        },
        log,
      ),
    );
    t.equal(s3.current(), 'post');
  },
);

t.test('HMAC ID tokens: never verified, named in the message, a config error (item 5)', async (t) => {
  t.same(signingAlgs([], ['HS256', 'RS256']), ['RS256'], 'HS dropped from discovery');
  t.same(signingAlgs([], ['HS512']), ['RS256'], 'HS-only discovery falls back to RS256 (and warns)');
  const jwt = (alg: string) => `${Buffer.from(JSON.stringify({ alg })).toString('base64url')}.e30.sig`;
  t.equal(hmacIdTokenAlg(undefined, jwt('HS512')), 'HS512');
  t.equal(hmacIdTokenAlg(undefined, jwt('RS256')), undefined);
  t.equal(hmacIdTokenAlg(undefined, 'garbage'), undefined);
  const fromLib = new ClientError('unexpected JWT "alg" header parameter', {
    cause: { header: { alg: 'HS384' } },
  });
  t.equal(hmacIdTokenAlg(fromLib), 'HS384');
  t.equal(hmacIdTokenAlg(new Error('x')), undefined);

  const base = [
    '--provider=oidc',
    '--oidc-issuer-url=https://idp.example.com',
    '--client-id=c',
    '--client-secret=s',
    '--cookie-secret=fDsNKvuAHy0kKBhQPvILBeuiLdLQUZxMDX6m2yT1QCU',
    '--email-domain=*',
  ];
  const bad = loadConfig([...base, '--oidc-enabled-signing-alg=RS256,HS256'], {});
  t.equal(bad.kind, 'error');
  t.match(
    bad.kind === 'error' ? bad.errors.join('\n') : '',
    /--oidc-enabled-signing-alg .*HS256 ID tokens are keyed with the client secret.*RS256/,
  );
  t.equal(loadConfig([...base, '--oidc-enabled-signing-alg=RS256'], {}).kind, 'run');
  const method = loadConfig([...base, '--client-auth-method=digest'], {});
  t.match(
    method.kind === 'error' ? method.errors.join('\n') : '',
    /--client-auth-method .*"auto", "basic" or "post"/,
  );
  const env = loadConfig(base, { OAUTH2_PROXY_CLIENT_AUTH_METHOD: 'post' });
  t.equal(env.kind === 'run' ? env.config.clientAuthMethod : '', 'post', 'env var like the others');
});

t.test('HS-only discovery is a start-up warning (item 5)', async (t) => {
  let base = '';
  const server = createServer((req, res) => {
    if (req.url === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          issuer: base,
          authorization_endpoint: `${base}/auth`,
          token_endpoint: `${base}/token`,
          jwks_uri: `${base}/jwks`,
          id_token_signing_alg_values_supported: ['HS256', 'HS512'],
        }),
      );
    } else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const warnings: string[] = [];
  const client = createOidcClient(options(base), {
    log: { info: () => {}, error: () => {}, warn: (_o, m) => void warnings.push(m) },
  });
  t.teardown(() => client.close());
  client.start();
  await client.whenReady();
  t.match(warnings.join('\n'), /advertises only HS256\/HS384\/HS512 ID-token signatures.*RS256/);
});

function options(issuerUrl: string): OidcOptions {
  return {
    issuerUrl,
    clientId: 'c',
    clientSecret: 's',
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
  };
}
