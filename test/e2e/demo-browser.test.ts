// `npm run demo` in real Chromium: the protected page → gatehouse sign-in → dev IdP login form → back as alice.
import t from 'tap';
import { startDemo } from '../../src/dev/demo.js';
import { launchChromium } from '../helpers/browser.js';
import { requireBinary } from '../helpers/require-binary.js';

const chromiumPath = requireBinary('chromium');

t.test(
  'demo: log in through the dev IdP form and see whom the protected page was served to',
  { skip: chromiumPath ? false : 'chromium is not installed', timeout: 90_000 },
  async (t) => {
    const demo = await startDemo({ idpPort: 0, gatehousePort: 0, appPort: 0 });
    t.teardown(() => demo.close());
    const ctx = await launchChromium(t, chromiumPath ?? '');
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    page.setDefaultTimeout(15_000);

    // Not signed in: the demo app sends the browser to gatehouse's sign-in page.
    await page.goto(`${demo.appUrl}/hello?x=1`);
    t.equal(new URL(page.url()).origin, demo.gatehouseUrl, 'on gatehouse');
    t.equal(new URL(page.url()).pathname, '/oauth2/sign_in');
    const button = page.getByRole('button', { name: /sign in with the demo idp/i });
    t.equal(await button.count(), 1, 'the provider button is an accessible button');

    await button.click();
    await page.waitForURL((u) => u.origin === demo.idpUrl);
    t.equal(await page.title(), 'Sign in - gatehouse dev IdP');

    // A wrong password stays on the IdP with an error.
    await page.fill('#username', 'alice');
    await page.fill('#password', 'not-her-password');
    await page.click('#submit');
    await page.waitForSelector('.error');
    t.match(await page.textContent('.error'), /Invalid username or password/);
    t.equal(new URL(page.url()).origin, demo.idpUrl);

    await page.fill('#username', 'alice');
    await page.fill('#password', 'alice-password');
    await page.click('#submit');
    await page.waitForURL((u) => u.origin === demo.appUrl);
    t.equal(page.url(), `${demo.appUrl}/hello?x=1`, 'back at the page first asked for');
    t.equal(await page.textContent('#user'), 'alice');
    t.equal(await page.textContent('#email'), 'alice@example.com');
    t.equal(await page.textContent('#groups'), 'admins,staff');
    const cookies = await ctx.cookies(demo.gatehouseUrl);
    const session = cookies.find((c) => c.name === '_oauth2_proxy');
    t.ok(session, 'session cookie set');
    t.equal(session?.httpOnly, true);
    t.notOk(
      cookies.some((c) => c.name.endsWith('_csrf')),
      'the CSRF cookie is gone after the callback',
    );

    // Sign out: gatehouse clears the session, the IdP ends its session, the app asks for a login again.
    await page.click('#sign-out');
    const idpConfirm = page.locator('button[autofocus], button[type=submit]').first();
    await page.waitForURL((u) => u.origin === demo.idpUrl);
    await idpConfirm.click();
    await page.waitForURL((u) => u.origin === demo.gatehouseUrl && u.pathname === '/oauth2/sign_in');
    t.notOk(
      (await ctx.cookies(demo.gatehouseUrl)).some((c) => c.name === '_oauth2_proxy'),
      'session cookie cleared',
    );

    // bob is in a different group.
    await page.getByRole('button', { name: /sign in with/i }).click();
    await page.waitForURL((u) => u.origin === demo.idpUrl);
    await page.fill('#username', 'bob');
    await page.fill('#password', 'bob-password');
    await page.click('#submit');
    await page.waitForURL((u) => u.origin === demo.appUrl);
    t.equal(await page.textContent('#user'), 'bob');
    t.equal(await page.textContent('#groups'), 'staff');
  },
);
