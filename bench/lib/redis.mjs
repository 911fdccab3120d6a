// A private redis-server for the Redis-store case: free port, no persistence, pinned with the load.
import { createConnection } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

function ping(port) {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => done(d.toString().startsWith('+PONG')));
    sock.on('error', () => done(false));
  });
}

/** Starts `redis-server` on 127.0.0.1:<port> under `procs` and waits until it answers PING. */
export async function startRedis(procs, name, cpus, port) {
  const proc = procs.start(name, cpus, 'redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--protected-mode',
    'yes',
  ]);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (!proc.isRunning()) throw new Error(`redis-server exited: ${proc.stderrTail().slice(-500)}`);
    if (await ping(port)) return { kind: 'redis', url: `redis://127.0.0.1:${port}`, proc, pinned: true };
    await delay(50);
  }
  await proc.stop();
  throw new Error('redis-server did not answer PING within 10 s');
}
