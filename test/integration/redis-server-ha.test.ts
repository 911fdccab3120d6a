// Issue 6 through the whole server on Redis Sentinel (failover during a loop of checks) and Redis Cluster.
import { setTimeout as delay } from 'node:timers/promises';
import t from 'tap';
import { createCookieCodec } from '../../src/cookies/codec.js';
import { redisCommand, startCluster, startSentinelSet, waitFor } from '../helpers/redis.js';
import { requireBinary } from '../helpers/require-binary.js';
import { Jar, type Stack, startStack, TEST_COOKIE_SECRET } from '../helpers/stack.js';

const NAME = '_oauth2_proxy';
const TICKET_KEY = /^_oauth2_proxy-[0-9a-f]{32}$/;
const ticketCodec = createCookieCodec([TEST_COOKIE_SECRET], 'ticket', '_oauth2_proxy');
const REQUEST_BOUND_MS = 10_000;

/** Ticket id inside a sealed ticket cookie (COMPAT.md §7.2), or undefined. */
function ticketIdOf(sealed: string | undefined): string | undefined {
  if (sealed === undefined) return undefined;
  const opened = ticketCodec.open(sealed);
  if (!opened.ok) return undefined;
  const parts = opened.plaintext.toString('utf8').split('.');
  return parts.length === 3 && parts[0] === 'v2'
    ? Buffer.from(parts[1] ?? '', 'base64url').toString('utf8')
    : undefined;
}

const ticketKeysOn = async (port: number) => {
  const r = await redisCommand(port, ['KEYS', `${NAME}-*`]);
  return Array.isArray(r) ? (r.filter((k) => typeof k === 'string' && TICKET_KEY.test(k)) as string[]) : [];
};

const copyOf = (jar: Jar) => {
  const c = new Jar();
  for (const [k, v] of jar.cookies) c.cookies.set(k, v);
  return c;
};

const auth = (s: Stack, jar: Jar) =>
  s.request('/oauth2/auth', { jar, signal: AbortSignal.timeout(REQUEST_BOUND_MS) });

const clears = (r: Response) => r.headers.getSetCookie().some((c) => /;\s*max-age=0\b/i.test(c));

if (!requireBinary('redis-server') || !requireBinary('redis-cli')) {
  t.skip('redis-server / redis-cli are not installed (would fail under CI=true)', async () => {});
} else {
  t.test('sentinel: login, then a failover during a loop of /oauth2/auth', async (t) => {
    const set = await startSentinelSet();
    t.teardown(() => set.stop());
    const s = await startStack({
      args: [
        '--session-store-type=redis',
        '--redis-use-sentinel',
        `--redis-sentinel-master-name=${set.masterName}`,
        `--redis-sentinel-connection-urls=${set.sentinelUrls.join(',')}`,
        '--set-xauthrequest',
      ],
    });
    t.teardown(() => s.close());

    const { jar, callback } = await s.login('alice');
    t.equal(callback.status, 302, 'login through the real IdP');
    t.same(jar.sessionNames(), [NAME]);
    const aliceId = ticketIdOf(jar.cookies.get(NAME));
    t.match(aliceId, TICKET_KEY);
    const first = await auth(s, jar);
    t.equal(first.status, 202);
    t.equal(first.headers.get('x-auth-request-email'), 'alice@example.com');
    t.same(await ticketKeysOn(set.master.port), [aliceId], 'the record is on the master');

    // Invalid sessions: a signed-out ticket (well sealed, record deleted) and a tampered cookie.
    const bob = await s.login('bob');
    const signedOut = copyOf(bob.jar);
    const bobId = ticketIdOf(signedOut.cookies.get(NAME));
    t.equal((await s.request('/oauth2/sign_out', { jar: bob.jar })).status, 302);
    t.equal((await auth(s, signedOut)).status, 401, 'a signed-out ticket is refused');
    const tampered = new Jar();
    const v = jar.cookies.get(NAME) ?? '';
    tampered.cookies.set(NAME, `${v.slice(0, -2)}${v.endsWith('AA') ? 'BB' : 'AA'}`);
    t.equal((await auth(s, tampered)).status, 401, 'a tampered cookie is refused');

    // The promoted replica must already hold what the master held, as in any failover worth surviving.
    await waitFor('replication of the login and of the sign-out', async () => {
      const keys = await ticketKeysOn(set.replica.port);
      return keys.includes(aliceId ?? '') && !keys.includes(bobId ?? '');
    });

    const seen = {
      valid: new Map<number, number>(),
      invalid: new Map<number, number>(),
      ready: new Set<number>(),
    };
    const bump = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);
    let validCleared = false;
    let done = false;
    const loop = (async () => {
      while (!done) {
        const r = await auth(s, jar);
        bump(seen.valid, r.status);
        if (clears(r)) validCleared = true;
        for (const bad of [signedOut, tampered]) bump(seen.invalid, (await auth(s, bad)).status);
        seen.ready.add((await s.request('/ready', { signal: AbortSignal.timeout(REQUEST_BOUND_MS) })).status);
        // Pacing, not synchronisation: bounds the request rate while Redis is down.
        await delay(20);
      }
    })();
    try {
      await waitFor('the loop sees 202s', async () => (seen.valid.get(202) ?? 0) > 0);
      await set.failover();
      const before = seen.valid.get(202) ?? 0;
      await waitFor('valid sessions succeed again after the promotion', async () => {
        return (seen.valid.get(202) ?? 0) > before;
      });
    } finally {
      done = true;
      await loop;
    }
    t.same(
      [...seen.valid.keys()].filter((st) => st !== 202 && st !== 500),
      [],
      `the valid session got only 202 or 500: ${JSON.stringify([...seen.valid])}`,
    );
    t.ok((seen.valid.get(500) ?? 0) > 0, 'the loop ran through the outage (500s while no master)');
    t.notOk(validCleared, 'the valid session was never signed out by the outage');
    t.equal(seen.invalid.get(202), undefined, 'no 202 for an invalid session, ever');
    t.same(
      [...seen.invalid.keys()].filter((st) => st !== 401 && st !== 500),
      [],
      `invalid sessions got only 401 or 500: ${JSON.stringify([...seen.invalid])}`,
    );
    t.ok(seen.ready.has(503), '/ready went red during the failover');
    t.equal((await s.request('/ready')).status, 200, '/ready green on the new master');
    t.equal((await auth(s, signedOut)).status, 401);
    t.equal((await auth(s, tampered)).status, 401);

    // Writes go to the promoted master: a new login works and lands there.
    const again = await s.login('bob');
    t.equal(again.callback.status, 302);
    const r = await auth(s, again.jar);
    t.equal(r.status, 202);
    t.equal(r.headers.get('x-auth-request-email'), 'bob@example.com');
    t.ok(
      (await ticketKeysOn(set.replica.port)).includes(ticketIdOf(again.jar.cookies.get(NAME)) ?? ''),
      'the new record is on the promoted replica',
    );
  });

  t.test('cluster: sessions spread over three masters, sign-out and refresh', async (t) => {
    const cluster = await startCluster();
    t.teardown(() => cluster.stop());
    let offset = 0;
    const s = await startStack({
      args: [
        '--session-store-type=redis',
        '--redis-use-cluster',
        `--redis-cluster-connection-urls=${cluster.urls.join(',')}`,
        '--set-xauthrequest',
        '--pass-access-token',
        '--cookie-refresh=1m',
      ],
      now: () => Date.now() + offset,
    });
    t.teardown(() => s.close());

    const users = Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? 'alice' : 'bob'));
    const jars: Jar[] = [];
    for (const u of users) {
      const { jar, callback } = await s.login(u);
      t.equal(callback.status, 302, `login ${u}`);
      jars.push(jar);
    }
    const ids = jars.map((j) => ticketIdOf(j.cookies.get(NAME)) ?? '');
    const perNode = await Promise.all(cluster.nodes.map((n) => ticketKeysOn(n.port)));
    t.same(perNode.flat().sort(), [...ids].sort(), 'every record is in the cluster, once');
    t.ok(
      perNode.filter((k) => k.length > 0).length >= 2,
      `records on several masters: ${perNode.map((k) => k.length).join(',')}`,
    );
    for (const [i, jar] of jars.entries()) {
      const r = await auth(s, jar);
      t.equal(r.status, 202);
      t.equal(r.headers.get('x-auth-request-email'), `${users[i]}@example.com`);
    }

    const [gone, kept] = jars as [Jar, Jar];
    const goneCopy = copyOf(gone);
    t.equal((await s.request('/oauth2/sign_out', { jar: gone })).status, 302);
    t.equal((await auth(s, goneCopy)).status, 401, 'signed out on whichever master held it');
    t.notOk(
      (await Promise.all(cluster.nodes.map((n) => ticketKeysOn(n.port)))).flat().includes(ids[0] ?? ''),
      'the record is deleted',
    );

    // Refresh through the cluster: the lock key lives in another slot than the record (§7.6).
    const before = await auth(s, kept);
    offset = 2 * 60_000;
    const refreshed = await auth(s, kept);
    t.equal(refreshed.status, 202);
    t.equal(s.idp.tokenRequests('refresh_token'), 1, 'one refresh');
    t.not(
      refreshed.headers.get('x-auth-request-access-token'),
      before.headers.get('x-auth-request-access-token'),
      'a new access token',
    );
    const cookie = refreshed.headers
      .getSetCookie()
      .find((c) => c.startsWith(`${NAME}=`))
      ?.split(';')[0]
      ?.slice(NAME.length + 1);
    t.equal(ticketIdOf(cookie), ids[1], 'the refreshed cookie keeps the ticket');
    const locks = (
      await Promise.all(cluster.nodes.map((n) => redisCommand(n.port, ['KEYS', `${NAME}-*.lock`])))
    ).flat();
    t.same(locks, [], 'the lock was released');
  });
}
