// Real Chromium fills in the dev IdP's interactive login form and lands on the relying party's callback.
import { createServer, type Server } from 'node:http';
import t from 'tap';
import { createOidcClient } from '../../src/oidc/client.js';
import { launchChromium } from '../helpers/browser.js';
import { startTestIdp, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../helpers/idp.js';
import { requireBinary } from '../helpers/require-binary.js';

const browserPath = requireBinary('chromium');

t.test(
  'Chromium logs in through the interactive form',
  { skip: browserPath ? false : 'chromium missing' },
  async (t) => {
    // The relying party's callback: records what the browser arrived with.
    let callbackUrl: URL | undefined;
    const rp: Server = createServer((req, res) => {
      // Only the callback counts: Chromium also asks for /favicon.ico, which must not overwrite it.
      const u = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (u.pathname === '/oauth2/callback') callbackUrl = u;
      res.writeHead(200, { 'content-type': 'text/plain' }).end('callback reached');
    });
    await new Promise<void>((resolve) => rp.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise<void>((resolve) => rp.close(() => resolve())));
    const addr = rp.address();
    const redirect = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/oauth2/callback`;

    const idp = await startTestIdp({ redirectUris: [redirect], interactive: true });
    t.teardown(() => idp.close());
    const noop = () => {};
    const client = createOidcClient(
      {
        issuerUrl: idp.issuer,
        clientId: TEST_CLIENT_ID,
        clientSecret: TEST_CLIENT_SECRET,
        skipDiscovery: false,
        loginUrl: '',
        redeemUrl: '',
        profileUrl: '',
        jwksUrl: '',
        publicKeys: [],
        scope: '',
        allowedGroups: ['admins'],
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
      },
      { log: { info: noop, warn: noop, error: noop } },
    );
    t.teardown(() => client.close());
    client.start();
    await client.whenReady();

    const ctx = await launchChromium(t, browserPath ?? '');
    const page = await ctx.newPage();
    const ls = client.createLoginState();
    await page.goto(client.authorizationUrl({ redirectUri: redirect, ...ls }));
    await page.fill('input[name=username]', 'alice');
    await page.fill('input[name=password]', 'wrong');
    await page.click('button[type=submit]');
    t.match(await page.textContent('body'), /Invalid username or password/);
    await page.fill('input[name=username]', 'alice');
    await page.fill('input[name=password]', 'alice-password');
    await Promise.all([
      page.waitForURL((u) => u.pathname === '/oauth2/callback'),
      page.click('button[type=submit]'),
    ]);
    t.equal(callbackUrl?.searchParams.get('state'), ls.state);
    const r = await client.redeem({
      code: callbackUrl?.searchParams.get('code') ?? '',
      redirectUri: redirect,
      ...ls,
      ...(callbackUrl ? { callbackParams: callbackUrl.searchParams } : {}),
    });
    t.match(r, { ok: true, session: { user: 'alice', groups: ['admins', 'staff'] } });
  },
);
