// Every refused login through the real IdP gets its documented status and the error page, never a 500 (COMPAT.md §1.9, §1.13).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Jar, type Stack, startStack } from '../helpers/stack.js';

const b64 = (s: string) => Buffer.from(s).toString('base64url');
const isClearing = (l: string) => /;\s*Max-Age=0(;|$)/i.test(l);

async function begin(s: Stack, jar: Jar, rd = '/') {
  const res = await s.request(`/oauth2/start?rd=${encodeURIComponent(rd)}`, { jar });
  if (res.status !== 302) throw new Error(`start answered ${res.status}`);
  jar.apply(res.headers.getSetCookie());
  const location = res.headers.get('location') ?? '';
  return { location, state: new URL(location).searchParams.get('state') ?? '' };
}

/** A callback URL the IdP really issued for `account` (code unused so far). */
async function issued(s: Stack, jar: Jar, account = 'alice', rd = '/') {
  const { location, state } = await begin(s, jar, rd);
  return { url: new URL(await s.idp.login(location, account)), state };
}

/**
 * Asserts a refused callback: the status, the shared error page with the request id, no session cookie
 * set, and (when given) a message fragment.
 */
async function refused(t: Test, res: Response, status: number, message?: RegExp) {
  t.equal(res.status, status, `status ${status}`);
  t.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
  t.equal(res.headers.get('cache-control'), 'no-cache, no-store, must-revalidate, max-age=0');
  const setting = res.headers.getSetCookie().filter((l) => !isClearing(l));
  t.same(setting, [], 'no cookie is set');
  const html = await res.text();
  t.match(html, new RegExp(`<h1>${status} `), 'the error page shows the status');
  t.match(html, /Request ID: <code>[^<]+<\/code>/);
  if (message) t.match(html, message);
  return html;
}

t.test('callback failure paths (cookie store)', async (t) => {
  const s = await startStack({});
  t.teardown(() => s.close());

  t.test('tampered state: a different hash finds no CSRF cookie → 403', async (t) => {
    const jar = new Jar();
    const { url, state } = await issued(s, jar);
    const hash = state.slice(0, 43);
    const flipped = `${hash[0] === 'A' ? 'B' : 'A'}${hash.slice(1)}`;
    url.searchParams.set('state', `${flipped}:/`);
    await refused(t, await s.request(url.href, { jar }), 403, /CSRF/);
  });

  t.test(
    'tampered state: same cookie name, different hash → 403 mismatch, CSRF cookie cleared',
    async (t) => {
      const jar = new Jar();
      const { url, state } = await issued(s, jar);
      const hash = state.slice(0, 43);
      const tampered = `${hash.slice(0, 8)}${hash.slice(8).split('').reverse().join('')}`;
      t.not(tampered, hash);
      url.searchParams.set('state', `${tampered}:/`);
      const res = await s.request(url.href, { jar });
      await refused(t, res, 403, /mismatch/);
      t.same(
        res.headers
          .getSetCookie()
          .filter(isClearing)
          .map((l) => l.slice(0, l.indexOf('='))),
        [`_oauth2_proxy_${hash.slice(0, 8)}_csrf`],
      );
      // The untampered callback still cannot be used afterwards once the browser dropped the cookie.
      jar.apply(res.headers.getSetCookie());
      url.searchParams.set('state', state);
      await refused(t, await s.request(url.href, { jar }), 403);
    },
  );

  t.test('missing or malformed state → 403', async (t) => {
    const jar = new Jar();
    const { url } = await issued(s, jar);
    for (const state of [undefined, '', 'no-colon-here', ':/', '\u00ff\u0000:/', 'x'.repeat(5000)]) {
      const u = new URL(url);
      if (state === undefined) u.searchParams.delete('state');
      else u.searchParams.set('state', state);
      await refused(t, await s.request(u.href, { jar }), 403);
    }
  });

  t.test('missing, forged or foreign CSRF cookie → 403', async (t) => {
    const jar = new Jar();
    const { url, state } = await issued(s, jar);
    const name = `_oauth2_proxy_${state.slice(0, 8)}_csrf`;
    await refused(t, await s.request(url.href), 403, /CSRF/);
    const forged = new Jar();
    forged.cookies.set(name, 'v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    await refused(t, await s.request(url.href, { jar: forged }), 403, /CSRF/);
    const garbage = new Jar();
    garbage.cookies.set(name, '%%%not-base64%%%');
    await refused(t, await s.request(url.href, { jar: garbage }), 403);
    // The session cookie of another purpose does not open as a CSRF cookie.
    const { jar: logged } = await s.login('bob');
    const session = logged.cookies.get('_oauth2_proxy') ?? '';
    const crossed = new Jar();
    crossed.cookies.set(name, session);
    await refused(t, await s.request(url.href, { jar: crossed }), 403);
    // The untouched original still works: the refusals above consumed nothing.
    const ok = await s.request(url.href, { jar });
    t.equal(ok.status, 302);
  });

  t.test("another login's CSRF cookie with this callback (swapped tabs/browsers) → 403", async (t) => {
    const a = new Jar();
    const b = new Jar();
    await issued(s, a, 'alice');
    const { url: bUrl } = await issued(s, b, 'alice');
    await refused(t, await s.request(bUrl.href, { jar: a }), 403);
  });

  t.test('replayed callback with the saved CSRF cookie → 403, never a 302 or 500', async (t) => {
    const jar = new Jar();
    const { url } = await issued(s, jar);
    const saved = new Jar();
    for (const [k, v] of jar.cookies) saved.cookies.set(k, v);
    const first = await s.request(url.href, { jar });
    t.equal(first.status, 302);
    jar.apply(first.headers.getSetCookie());
    await refused(t, await s.request(url.href, { jar: saved }), 403);
    await refused(t, await s.request(url.href, { jar }), 403, /CSRF/);
  });

  t.test('bad or missing code: refused, never a 500', async (t) => {
    const jar = new Jar();
    const { url } = await issued(s, jar);
    const u = new URL(url);
    u.searchParams.set('code', 'not-a-code-the-idp-issued');
    await refused(t, await s.request(u.href, { jar }), 403);
    const none = new URL(url);
    none.searchParams.delete('code');
    await refused(t, await s.request(none.href, { jar }), 400);
    await refused(t, await s.request('/oauth2/callback?code=x&state=%zz', { jar }), 400);
    await refused(t, await s.request('/oauth2/callback', { method: 'POST' }), 403);
  });

  t.test(
    'IdP error from the real IdP (prompt=none without an IdP session) → 403 with its code',
    async (t) => {
      const jar = new Jar();
      const { location } = await begin(s, jar, '/');
      const authz = new URL(location);
      authz.searchParams.set('prompt', 'none');
      const idpRes = await fetch(authz, { redirect: 'manual' });
      const back = new URL(idpRes.headers.get('location') ?? '', authz);
      t.equal(back.searchParams.get('error'), 'login_required', 'the IdP answered with an error');
      const html = await refused(t, await s.request(back.href, { jar }), 403);
      t.match(html, /login_required/);
    },
  );

  t.test('IdP error text is escaped and bounded', async (t) => {
    const res = await s.request(
      `/oauth2/callback?error=${encodeURIComponent(`<script>alert(1)</script>${'x'.repeat(5000)}`)}`,
    );
    const html = await refused(t, res, 403);
    t.notMatch(html, /<script>/);
    t.match(html, /&lt;script&gt;/);
    t.ok(html.length < 4000, 'the echoed code is truncated');
    // The description is shown too (#21 item 5), with the same care: escaped, bounded, no control characters.
    const desc = await s.request(
      `/oauth2/callback?error=invalid_request&error_description=${encodeURIComponent(`Code challenge required.<img src=x>\r\nX-Evil: 1${'y'.repeat(5000)}`)}`,
    );
    const page = await refused(t, desc, 403);
    t.match(page, 'invalid_request (Code challenge required.&lt;img src=x&gt;  X-Evil: 1y');
    t.notMatch(page, /<img|\r|\n X-Evil/);
    t.ok(page.length < 4000, 'the description is truncated');
  });

  t.test('the request id of the error page comes from X-Request-Id', async (t) => {
    const res = await s.request('/oauth2/callback?state=abc', { headers: { 'x-request-id': 'req-4711' } });
    const html = await refused(t, res, 403);
    t.match(html, /Request ID: <code>req-4711<\/code>/);
  });

  t.test('unverified email (eve) → 403', async (t) => {
    const { callback } = await s.login('eve');
    await refused(t, callback, 403, /not verified/);
  });

  t.test('email outside --email-domain (mallory) → 403', async (t) => {
    const { callback, jar } = await s.login('mallory');
    await refused(t, callback, 403, /not authorized/);
    t.same(jar.sessionNames(), []);
    t.equal((await s.request('/oauth2/userinfo', { jar })).status, 401);
  });
});

t.test('--allowed-group: a user outside the group is refused at the callback', async (t) => {
  const s = await startStack({ args: ['--allowed-group=admins'] });
  t.teardown(() => s.close());
  const bob = await s.login('bob');
  await refused(t, bob.callback, 403, /not authorized/);
  const alice = await s.login('alice');
  t.equal(alice.callback.status, 302);
  t.equal((await s.request('/oauth2/auth', { jar: alice.jar })).status, 202);
});

t.test('--authenticated-emails-file: only listed addresses may log in', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-emails-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'emails.txt');
  await writeFile(file, 'bob@example.com\n');
  const s = await startStack({ args: [`--authenticated-emails-file=${file}`] });
  t.teardown(() => s.close());
  await refused(t, (await s.login('alice')).callback, 403, /not authorized/);
  t.equal((await s.login('bob')).callback.status, 302);
});

t.test('--encode-state: undecodable or tampered state → 403', async (t) => {
  const s = await startStack({ args: ['--encode-state'] });
  t.teardown(() => s.close());
  const jar = new Jar();
  const { location, state } = await begin(s, jar, '/enc');
  t.equal(Buffer.from(state, 'base64url').toString('utf8').slice(43), ':/enc', 'state is base64url');
  t.equal(b64(Buffer.from(state, 'base64url').toString('utf8')), state);
  const url = new URL(await s.idp.login(location, 'alice'));
  const raw = Buffer.from(state, 'base64url').toString('utf8');
  const otherHash = `${raw.slice(0, 8)}${raw.slice(8, 43).split('').reverse().join('')}${raw.slice(43)}`;
  for (const bad of ['!!!', Buffer.from('no colon').toString('base64url'), b64(otherHash), raw]) {
    const u = new URL(url);
    u.searchParams.set('state', bad);
    await refused(t, await s.request(u.href, { jar }), 403);
  }
  const ok = await s.request(url.href, { jar });
  t.equal(ok.status, 302);
  t.equal(ok.headers.get('location'), '/enc');
});
