// Obtains a real session from gatehouse by running its OIDC login against the dev IdP (no forging).
import { setTimeout as delay } from 'node:timers/promises';

const START_WAIT_MS = 15_000;
const SESSION_COOKIE = /^_oauth2_proxy(_\d+)?$/;

function cookiePairs(res) {
  const out = [];
  for (const sc of res.headers.getSetCookie()) {
    const [pair = ''] = sc.split(';');
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    // Clearing cookies (empty value / Max-Age=0) are not part of the jar.
    if (value === '' || /;\s*max-age=0\b/i.test(sc)) continue;
    out.push([name, value]);
  }
  return out;
}

/**
 * GET /oauth2/start → the IdP's login for `accountId` → GET /oauth2/callback with the CSRF cookie.
 * Returns the `Cookie` header value carrying the session (one cookie, or `_0`, `_1`, … parts) and the
 * number of session cookies. Errors name the step, never a cookie value.
 */
export async function loginSession(base, idp, accountId) {
  // gatehouse answers 503 until its background OIDC discovery has succeeded: wait for that, bounded.
  const deadline = Date.now() + START_WAIT_MS;
  let start;
  for (;;) {
    start = await fetch(`${base}/oauth2/start?rd=%2F`, { redirect: 'manual' });
    await start.arrayBuffer();
    if (start.status !== 503 || Date.now() > deadline) break;
    await delay(100);
  }
  const location = start.headers.get('location');
  if (start.status !== 302 || !location) throw new Error(`login: /oauth2/start answered ${start.status}`);
  const csrf = cookiePairs(start);
  if (csrf.length === 0) throw new Error('login: /oauth2/start set no CSRF cookie');
  const callback = new URL(await idp.login(location, accountId));
  if (callback.origin !== new URL(base).origin)
    throw new Error(`login: IdP redirected to ${callback.origin}`);
  const cb = await fetch(callback, {
    redirect: 'manual',
    headers: { cookie: csrf.map(([k, v]) => `${k}=${v}`).join('; ') },
  });
  await cb.arrayBuffer();
  if (cb.status !== 302) throw new Error(`login: /oauth2/callback answered ${cb.status}`);
  const parts = cookiePairs(cb).filter(([k]) => SESSION_COOKIE.test(k));
  if (parts.length === 0) throw new Error('login: /oauth2/callback set no session cookie');
  return { cookie: parts.map(([k, v]) => `${k}=${v}`).join('; '), cookies: parts.length };
}
