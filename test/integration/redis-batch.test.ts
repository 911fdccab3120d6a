// The GETs of one event-loop turn reach a real redis-server as one MGET (src/sessions/redis-client.ts), each
// caller gets its own key's value, and a failure reaches every caller of the batch.
import t, { type Test } from 'tap';
import { createRedisClient } from '../../src/sessions/redis-client.js';
import { clientOptions, logSink, redisCommand, startRedis } from '../helpers/redis.js';
import { requireBinary } from '../helpers/require-binary.js';

/** `calls=` of one command in INFO commandstats (0 when it never ran). */
async function callsOf(port: number, command: string): Promise<number> {
  const info = await redisCommand(port, ['INFO', 'commandstats']);
  const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(typeof info === 'string' ? info : '');
  return m ? Number(m[1]) : 0;
}

/** A private redis-server and a connected client (both stopped at the end of `t`), and the client's log. */
async function connected(t: Test) {
  const server = await startRedis();
  t.teardown(() => server.stop());
  const sink = logSink();
  const redis = createRedisClient(clientOptions({ connectionUrl: server.url }), sink.log);
  t.teardown(() => redis.quit());
  await redis.ping();
  return { server, redis, lines: sink.lines };
}

if (!requireBinary('redis-server')) {
  t.skip('redis-server is not installed (would fail under CI=true)', async () => {});
} else {
  t.test('one MGET per event-loop turn, the right value for each caller', async (t) => {
    const { server, redis } = await connected(t);
    for (let i = 0; i < 10; i++) await redis.set(`k${i}`, Buffer.from([i, 0xff, i]), {});
    await redisCommand(server.port, ['CONFIG', 'RESETSTAT']);

    // 30 GETs in one turn: present keys, missing keys, the same key twice.
    const keys = Array.from({ length: 30 }, (_, i) => (i % 3 === 2 ? `missing${i}` : `k${i % 10}`));
    const values = await Promise.all(keys.map((k) => redis.getBuffer(k)));
    keys.forEach((k, i) => {
      const want = k.startsWith('k') ? Buffer.from([Number(k.slice(1)), 0xff, Number(k.slice(1))]) : null;
      t.same(values[i], want, `${k}: its own value`);
    });
    t.equal(await callsOf(server.port, 'mget'), 1, 'one MGET for the turn');
    t.equal(await callsOf(server.port, 'get'), 0, 'no single GETs');

    // One GET per turn: a plain GET.
    t.same(await redis.getBuffer('k1'), Buffer.from([1, 0xff, 1]));
    t.same(await redis.getBuffer('nope'), null);
    t.equal(await callsOf(server.port, 'get'), 2, 'a lone GET goes as GET');
    t.equal(await callsOf(server.port, 'mget'), 1);
  });

  t.test('an ACL without MGET: one warning, then the same values with GET', async (t) => {
    const { server, redis, lines } = await connected(t);
    await redis.set('a', 'A', {});
    await redis.set('b', 'B', {});
    t.equal(await redisCommand(server.port, ['ACL', 'SETUSER', 'default', '-mget']), 'OK');
    await redisCommand(server.port, ['CONFIG', 'RESETSTAT']);
    const first = await Promise.all(['a', 'b', 'none'].map((k) => redis.getBuffer(k)));
    t.same(
      first.map((v) => v?.toString() ?? null),
      ['A', 'B', null],
      'the refused batch is answered with GET',
    );
    const again = await Promise.all(['b', 'a'].map((k) => redis.getBuffer(k)));
    t.same(
      again.map((v) => v?.toString() ?? null),
      ['B', 'A'],
      'and so is every later turn',
    );
    t.equal(await callsOf(server.port, 'get'), 5, 'five GETs');
    const warned = lines.filter((l) => l.obj.event === 'redis_mget_refused');
    t.equal(warned.length, 1, 'one warning');
    t.match(warned[0]?.obj.error, /NOPERM/);
  });

  t.test('a hung redis-server: every caller of the batch gets the timeout', async (t) => {
    const { server, redis } = await connected(t);
    server.pause();
    t.teardown(() => server.resume());
    const results = await Promise.allSettled(['a', 'b', 'c'].map((k) => redis.getBuffer(k)));
    for (const r of results) {
      t.equal(r.status, 'rejected', 'rejected');
      if (r.status === 'rejected') t.match(String(r.reason), /timed out|timeout/i);
    }
  });
}
