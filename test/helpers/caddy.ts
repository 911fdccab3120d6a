// Real Caddy for e2e tests: renders a deploy/ Caddyfile template and runs `caddy run` in a temp home.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, type ProxyHandle, renderTemplate, repoRoot, stopChild, waitForHttp } from './nginx.js';

export interface StartCaddyOptions {
  /** Template path relative to deploy/, e.g. 'caddy/Caddyfile'. */
  confTemplate: string;
  /** Marker values; CADDY_ADMIN (off) and SITE_ADDRESS (http://127.0.0.1:<free port>) are filled in unless given. */
  vars: Record<string, string>;
  /** Listen port when the caller needs it before Caddy starts (e.g. for gatehouse's --redirect-url). */
  port?: number;
}

/**
 * Runs `caddy run --config FILE --adapter caddyfile` on the rendered template, with the admin API off,
 * a plain-HTTP site on a free port (no automatic HTTPS), and HOME/XDG dirs inside a temp dir so no
 * state leaks into the user's home.
 */
export async function startCaddy(opts: StartCaddyOptions): Promise<ProxyHandle> {
  const port = opts.port ?? (await freePort());
  const vars = { CADDY_ADMIN: 'off', SITE_ADDRESS: `http://127.0.0.1:${port}`, ...opts.vars };
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-caddy-'));
  const file = join(dir, 'Caddyfile');
  await writeFile(
    file,
    renderTemplate(await readFile(join(repoRoot, 'deploy', opts.confTemplate), 'utf8'), vars),
  );

  let log = '';
  const child = spawn('caddy', ['run', '--config', file, '--adapter', 'caddyfile'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: dir,
      XDG_DATA_HOME: join(dir, 'data'),
      XDG_CONFIG_HOME: join(dir, 'config'),
    },
  });
  const collect = (d: Buffer) => {
    log += d.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const onExit = () => child.kill('SIGKILL');
  process.once('exit', onExit);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    await stopChild(child, 'SIGTERM');
    process.removeListener('exit', onExit);
    stopped = true;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForHttp(port, child, 'caddy', () => log);
  } catch (e) {
    await stop();
    throw e;
  }
  return { port, stop, errorLog: () => (stopped ? '' : log) };
}
