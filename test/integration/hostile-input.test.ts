// Hostile request input never crashes a route or yields a 500 (issue brief: "never a 500 for bad input").
import fc from 'fast-check';
import t from 'tap';
import { startStack } from '../helpers/stack.js';

t.test('non-ASCII redirect targets are percent-encoded, not a 500', async (t) => {
  const s = await startStack();
  t.teardown(() => s.close());
  const out = await s.request(`/oauth2/sign_out?rd=${encodeURIComponent('/日本?q=ü')}`);
  t.equal(out.status, 302);
  t.equal(out.headers.get('location'), '/%E6%97%A5%E6%9C%AC?q=%C3%BC');
  const { callback } = await s.login('alice', { rd: '/日本' });
  t.equal(callback.status, 302);
  t.equal(callback.headers.get('location'), '/%E6%97%A5%E6%9C%AC');
  const bad = await s.request('/oauth2/start?rd=%zz');
  t.equal(bad.status, 400, 'invalid escape in rd is a 400 (oauth2-proxy v7.3.0 #1649)');
});

t.test('property: no request to any route answers 500 or crashes', async (t) => {
  const s = await startStack({ args: ['--upstream=static://202', '--skip-jwt-bearer-tokens'] });
  t.teardown(() => s.close());
  const { jar } = await s.login('bob');
  const session = jar.header();
  const paths = [
    '/oauth2/auth',
    '/oauth2/start',
    '/oauth2/callback',
    '/oauth2/sign_in',
    '/oauth2/sign_out',
    '/oauth2/userinfo',
    '/',
    '/x',
    '/oauth2/static/a',
  ];
  const text = fc.string({ unit: 'grapheme', maxLength: 40 });
  const headerValue = fc.stringMatching(/^[\x20-\x7e]{0,60}$/);
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...paths),
      fc.array(fc.tuple(text, text), { maxLength: 4 }),
      fc.record({
        cookie: fc.oneof(headerValue, fc.constant(session), fc.constant(`${session}; _oauth2_proxy_1=zz`)),
        authorization: fc.oneof(headerValue, fc.constant('Bearer eyJ.eyJ.x'), fc.constant('Basic Og==')),
        'x-forwarded-uri': headerValue,
        'x-forwarded-host': headerValue,
        'x-auth-request-redirect': headerValue,
        accept: headerValue,
      }),
      fc.constantFrom('GET', 'POST', 'HEAD', 'OPTIONS', 'DELETE'),
      async (path, query, headers, method) => {
        const qs = query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
        const raw = `${path}?${qs}&rd=${encodeURIComponent(query[0]?.[1] ?? '/')}&state=${encodeURIComponent(query[1]?.[1] ?? '')}`;
        const r = await s.request(raw, { method, headers });
        await r.arrayBuffer();
        if (r.status >= 500) t.fail(`${method} ${raw} → ${r.status}`);
        return r.status < 500;
      },
    ),
    { numRuns: 300 },
  );
  t.pass('no 5xx');
});
