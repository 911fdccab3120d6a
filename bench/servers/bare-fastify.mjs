// The baseline: bare Fastify (the version gatehouse uses, logger off) answering 202 on /oauth2/auth.
// Usage: node bench/servers/bare-fastify.mjs <port> [workers]
import cluster from 'node:cluster';
import Fastify from 'fastify';

const port = Number(process.argv[2]);
const workers = Number(process.argv[3] ?? '1');

if (workers > 1 && cluster.isPrimary) {
  // Same shape as `gatehouse --workers=N`: a primary that only forks and the workers share the port.
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', () => process.exit(1));
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const app = Fastify({ logger: false });
  app.all('/oauth2/auth', (_req, reply) => {
    reply.code(202).send();
  });
  app.get('/ping', (_req, reply) => {
    reply.type('text/plain; charset=utf-8').send('OK');
  });
  await app.listen({ port, host: '127.0.0.1' });
  process.on('SIGTERM', () => {
    app.close().then(() => process.exit(0));
  });
}
