#!/usr/bin/env node
// Command line: argv/env/file → config → servers; signals and exit codes.
import cluster from 'node:cluster';
import pino from 'pino';
import { loadConfig } from './config/load.js';
import { createBatchDestination } from './log-destination.js';
import { nodeVersionWarning } from './node-version.js';
import { serve } from './serve.js';

async function main(): Promise<number | undefined> {
  const outcome = loadConfig(process.argv.slice(2), process.env);
  switch (outcome.kind) {
    case 'help':
    case 'version':
    case 'secret':
      process.stdout.write(outcome.text);
      return 0;
    case 'error':
      process.stderr.write(`invalid configuration:\n${outcome.errors.map((e) => `  ${e}`).join('\n')}\n`);
      return outcome.exitCode;
    case 'config-test':
      process.stdout.write('configuration is valid\n');
      return 0;
  }
  const config = outcome.config;
  // Request logging is on by default (as in oauth2-proxy). Lines are batched (one write per 16 KiB instead
  // of one per request) and flushed every second, so a quiet instance still logs promptly.
  const destination = createBatchDestination({
    fd: 1,
    // Each write is a thread-pool round trip (~100 µs of main-thread time measured here): few, large ones.
    minLength: 64 * 1024,
    maxPending: 16 * 1024 * 1024,
    flushEveryMs: 1000,
    onDrop: (count) => log.warn({ count }, 'log lines dropped: stdout is not keeping up'),
  });
  const log = pino(
    { level: config.standardLogging ? 'info' : 'warn', base: { pid: process.pid } },
    destination,
  );
  const flush = () => destination.flushSync();
  process.on('exit', flush);
  if (cluster.isPrimary) {
    const nodeWarning = nodeVersionWarning();
    if (nodeWarning) log.warn({ node: process.versions.node }, nodeWarning);
    for (const w of outcome.warnings) log.warn(w);
  }

  if (config.workers > 1 && cluster.isPrimary) {
    let stopping = false;
    for (let i = 0; i < config.workers; i++) cluster.fork();
    cluster.on('exit', (worker, code) => {
      if (stopping) return;
      log.error({ worker: worker.process.pid, code }, 'worker exited; starting a new one');
      cluster.fork();
    });
    const stop = () => {
      stopping = true;
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', () => {
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
    });
    return undefined;
  }

  let running: Awaited<ReturnType<typeof serve>>;
  try {
    running = await serve(config, { log, version: process.env.npm_package_version ?? '' });
  } catch (err) {
    log.error({ err: err instanceof Error ? err.message : String(err) }, 'start-up failed');
    return 1;
  }
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    log.info(
      { signal, delayMs: config.shutdownDelay, timeoutMs: config.shutdownTimeout },
      'shutting down: draining, then finishing in-flight requests',
    );
    // A stuck connection or store must not keep the process alive forever.
    setTimeout(() => process.exit(1), config.shutdownDelay + config.shutdownTimeout + 5_000).unref();
    running.shutdown({ delayMs: config.shutdownDelay, timeoutMs: config.shutdownTimeout }).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // Reload without restart: flags and env are the process's own; the TOML file and secret files are
  // read again. An invalid configuration is reported and the one in force stays.
  let reloading = false;
  process.on('SIGHUP', () => {
    if (reloading || closing) return;
    reloading = true;
    const next = loadConfig(process.argv.slice(2), process.env);
    const done = () => {
      reloading = false;
    };
    if (next.kind !== 'run') {
      log.error(
        { errors: next.kind === 'error' ? next.errors : [next.kind] },
        'reload refused: invalid configuration',
      );
      done();
      return;
    }
    for (const w of next.warnings) log.warn(w);
    running.app.reload(next.config).then(
      () => {
        log.info('configuration reloaded');
        done();
      },
      (err: unknown) => {
        log.error(
          { err: err instanceof Error ? err.message : String(err) },
          'reload failed; keeping the configuration in force',
        );
        done();
      },
    );
  });
  return undefined;
}

main().then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`fatal: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
