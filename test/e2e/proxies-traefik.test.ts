// Traefik ForwardAuth (no binary here): the deploy/traefik configs replayed with Traefik's exact request shape.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { repoRoot } from '../helpers/nginx.js';
import {
  STAND_IN_IDENTITY,
  STAND_IN_SESSION,
  type StandInAuth,
  sendForwardAuthRequest,
  setCookieName,
  signInPageRd,
  startStandInAuth,
  type TraefikForwardAuthConfig,
  type TraefikIncomingRequest,
  traefikForwardAuthOutcome,
  traefikForwardAuthRequest,
} from '../helpers/stand-in-auth.js';

interface Dynamic {
  http: { middlewares: Record<string, { forwardAuth?: TraefikForwardAuthConfig }> };
}

/** The forwardAuth middleware of a deploy/traefik file, its address pointed at the stand-in. */
function forwardAuthOf(file: string, auth: StandInAuth): TraefikForwardAuthConfig {
  const doc = parse(readFileSync(join(repoRoot, 'deploy/traefik', file), 'utf8')) as Dynamic;
  const fa = Object.values(doc.http.middlewares).find((m) => m.forwardAuth)?.forwardAuth;
  if (!fa) throw new Error(`${file}: no forwardAuth middleware`);
  const address = new URL(fa.address);
  address.host = auth.hostPort;
  return { ...fa, address: address.href };
}

const header = (req: { headers: Array<[string, string]> }, name: string) =>
  req.headers.filter(([k]) => k.toLowerCase() === name.toLowerCase()).map(([, v]) => v);

const browser = (over: Partial<TraefikIncomingRequest> = {}): TraefikIncomingRequest => ({
  method: 'GET',
  host: 'app.example.test',
  requestUri: '/reports/q?year=2026&view=full',
  headers: { 'User-Agent': 'test-browser/1', Accept: 'text/html' },
  remoteAddr: '203.0.113.7:51234',
  tls: true,
  ...over,
});

t.test('traefikForwardAuthRequest: the request shape of Traefik ForwardAuth', async (t) => {
  const incoming = browser({
    method: 'POST',
    headers: {
      Cookie: '_oauth2_proxy=abc',
      'Content-Type': 'application/json',
      'Content-Length': '17',
      Connection: 'keep-alive, X-Hop',
      'X-Hop': 'drop me',
      Upgrade: 'websocket',
      'X-Forwarded-Uri': '/public/spoofed',
      'X-Forwarded-For': '198.51.100.1',
      x_auth_request_user: 'mallory',
    },
  });
  const req = traefikForwardAuthRequest(incoming, { address: 'http://gatehouse:4180/oauth2/auth' });
  t.equal(req.method, 'GET');
  t.equal(req.url, 'http://gatehouse:4180/oauth2/auth');
  t.same(header(req, 'Host'), ['gatehouse:4180']);
  t.same(header(req, 'Cookie'), ['_oauth2_proxy=abc'], 'the original headers, Cookie included');
  t.same(header(req, 'Content-Type'), ['application/json']);
  t.same(header(req, 'Content-Length'), [], 'no body, no length');
  for (const hop of ['Connection', 'X-Hop', 'Upgrade']) t.same(header(req, hop), [], `${hop} removed`);
  t.same(header(req, 'X-Forwarded-Method'), ['POST']);
  t.same(header(req, 'X-Forwarded-Proto'), ['https']);
  t.same(header(req, 'X-Forwarded-Host'), ['app.example.test']);
  t.same(header(req, 'X-Forwarded-Uri'), ['/reports/q?year=2026&view=full'], 'untrusted: the real URI');
  t.same(header(req, 'X-Forwarded-For'), ['203.0.113.7'], 'untrusted: the peer only');
  t.same(header(req, 'X_auth_request_user'), ['mallory'], 'Go canonical form, passed as is');

  const trusted = traefikForwardAuthRequest(incoming, {
    address: 'http://gatehouse:4180/',
    trustForwardHeader: true,
  });
  t.same(header(trusted, 'X-Forwarded-Uri'), ['/public/spoofed'], 'trusted: the forwarded value wins');
  t.same(header(trusted, 'X-Forwarded-For'), ['198.51.100.1, 203.0.113.7']);

  const filtered = traefikForwardAuthRequest(incoming, {
    address: 'http://gatehouse:4180/',
    authRequestHeaders: ['Cookie'],
  });
  t.same(header(filtered, 'Content-Type'), [], 'authRequestHeaders filters the copied headers');
  t.same(header(filtered, 'Cookie'), ['_oauth2_proxy=abc']);
});

t.test('variant A (dynamic-errors.yml): forwardAuth to /oauth2/auth', async (t) => {
  const auth = await startStandInAuth({});
  t.teardown(() => auth.stop());
  const config = forwardAuthOf('dynamic-errors.yml', auth);
  t.equal(new URL(config.address).pathname, '/oauth2/auth');

  t.test('no session: the 401 goes back to the client (the errors middleware takes over)', async (t) => {
    const incoming = browser();
    const answer = await sendForwardAuthRequest(traefikForwardAuthRequest(incoming, config));
    const out = traefikForwardAuthOutcome(incoming, config, answer);
    t.equal(out.kind, 'deny');
    if (out.kind === 'deny') {
      t.equal(out.status, 401);
      t.equal(out.body, 'Unauthorized\n');
    }
    const seen = auth.requests.at(-1)!;
    t.equal(seen.method, 'GET');
    t.equal(seen.url, '/oauth2/auth');
    t.equal(seen.bodyLength, 0);
    t.equal(seen.headers['x-forwarded-uri'], incoming.requestUri);
    t.equal(seen.headers['x-forwarded-proto'], 'https');
  });

  t.test('split refresh: identity replaces the spoof, every chunk is added to the response', async (t) => {
    const incoming = browser({
      headers: { Cookie: `_oauth2_proxy=${STAND_IN_SESSION.split}`, 'X-Auth-Request-User': 'mallory' },
    });
    const answer = await sendForwardAuthRequest(traefikForwardAuthRequest(incoming, config));
    t.equal(answer.status, 202);
    const out = traefikForwardAuthOutcome(incoming, config, answer);
    t.equal(out.kind, 'allow');
    if (out.kind !== 'allow') return;
    t.same(out.backendHeaders['X-Auth-Request-User'], [STAND_IN_IDENTITY.user]);
    t.same(out.backendHeaders['X-Auth-Request-Email'], [STAND_IN_IDENTITY.email]);
    t.same(out.backendHeaders['X-Auth-Request-Access-Token'], [auth.accessToken]);
    t.same(out.clientSetCookies.map(setCookieName), ['_oauth2_proxy_0', '_oauth2_proxy_1', '_oauth2_proxy']);
    t.same(out.clientSetCookies, auth.answers.at(-1)!.setCookies);
  });

  t.test('403 from gatehouse is returned to the client', async (t) => {
    const incoming = browser({ headers: { Cookie: `_oauth2_proxy=${STAND_IN_SESSION.forbidden}` } });
    const out = traefikForwardAuthOutcome(
      incoming,
      config,
      await sendForwardAuthRequest(traefikForwardAuthRequest(incoming, config)),
    );
    t.equal(out.kind === 'deny' && out.status, 403);
  });
});

t.test('variant B (dynamic-static-upstream.yml): forwardAuth to the catch-all', async (t) => {
  const auth = await startStandInAuth({ staticUpstream: 202 });
  t.teardown(() => auth.stop());
  const config = forwardAuthOf('dynamic-static-upstream.yml', auth);
  t.equal(new URL(config.address).pathname, '/');
  t.equal(config.trustForwardHeader, true);

  t.test('no session, browser: gatehouse sign-in page (403) for the forwarded URI', async (t) => {
    const incoming = browser();
    const out = traefikForwardAuthOutcome(
      incoming,
      config,
      await sendForwardAuthRequest(traefikForwardAuthRequest(incoming, config)),
    );
    t.equal(out.kind, 'deny');
    if (out.kind !== 'deny') return;
    t.equal(out.status, 403);
    t.equal(signInPageRd(out.body), incoming.requestUri);
    t.equal(auth.requests.at(-1)!.url, '/');
  });

  t.test('no session, ajax: 401 with a JSON body', async (t) => {
    const incoming = browser({ headers: { Accept: 'application/json' } });
    const out = traefikForwardAuthOutcome(
      incoming,
      config,
      await sendForwardAuthRequest(traefikForwardAuthRequest(incoming, config)),
    );
    t.equal(out.kind === 'deny' && `${out.status} ${out.body}`, '401 {}');
  });

  t.test('session: 202 and the identity headers', async (t) => {
    const incoming = browser({ headers: { Cookie: `_oauth2_proxy=${STAND_IN_SESSION.quiet}` } });
    const answer = await sendForwardAuthRequest(traefikForwardAuthRequest(incoming, config));
    t.equal(answer.status, 202);
    t.equal(answer.body, 'Authenticated');
    const out = traefikForwardAuthOutcome(incoming, config, answer);
    t.equal(out.kind, 'allow');
    if (out.kind === 'allow') {
      t.same(out.backendHeaders['X-Auth-Request-Groups'], [STAND_IN_IDENTITY.groups.join(',')]);
      t.same(out.clientSetCookies, []);
    }
  });
});
