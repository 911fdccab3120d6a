// Real nginx for e2e tests: renders deploy/ templates into a temp prefix and runs Debian's binary there.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (test/helpers/ is two levels down). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

const LUA_MODULES = [
  '/usr/lib/nginx/modules/ndk_http_module.so',
  '/usr/lib/nginx/modules/ngx_http_lua_module.so',
];
const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const MARKER = /\{\{([A-Z][A-Z0-9_]*)\}\}/g;

export interface ProxyHandle {
  readonly port: number;
  /** Stops the process (graceful, then SIGKILL) and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
  /** The proxy's error/diagnostic log so far ('' once stopped). */
  errorLog(): string;
}

export interface StartNginxOptions {
  /** Template path relative to deploy/, e.g. 'nginx/gatehouse.conf'. Included inside `http {}`. */
  confTemplate: string;
  /** Marker values; LISTEN (127.0.0.1:<free port>) and SERVER_NAME (_) are filled in unless given. */
  vars: Record<string, string>;
  /** More templates (relative to deploy/) rendered next to the main one, keeping their path below the
   * main template's folder: 'nginx/snippets/gatehouse-auth.conf' lands in <prefix>/snippets/. */
  includes?: readonly string[];
  /** Load the NDK and Lua modules (libnginx-mod-http-lua). */
  lua?: boolean;
  /** Listen port when the caller needs it before nginx starts (e.g. for gatehouse's --redirect-url). */
  port?: number;
}

/** Finds a TCP port that is free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? ok(port) : fail(new Error('no port'))));
    });
  });
}

/**
 * Replaces every `{{NAME}}` marker. Every marker must have a value: a deploy file that grew a marker
 * the test does not know about fails here instead of reaching nginx as literal braces.
 */
export function renderTemplate(text: string, vars: Record<string, string>): string {
  const missing = new Set<string>();
  const out = text.replace(MARKER, (whole, name: string) => {
    const v = vars[name];
    if (v === undefined) {
      missing.add(name);
      return whole;
    }
    return v;
  });
  if (missing.size > 0) throw new Error(`template markers without a value: ${[...missing].join(', ')}`);
  return out;
}

/** Resolves once GET / on the port gets any HTTP answer; rejects when the process exits or time runs out. */
export async function waitForHttp(port: number, child: ChildProcess, what: string, log: () => string) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before answering:\n${log()}`);
    }
    const answered = await new Promise<boolean>((ok) => {
      const req = request(
        { host: '127.0.0.1', port, path: '/__ready', method: 'GET', timeout: 500 },
        (res) => {
          res.resume();
          res.on('end', () => ok(true));
        },
      );
      req.on('timeout', () => req.destroy());
      req.on('error', () => ok(false));
      req.end();
    });
    if (answered) return;
    // Polling a port that has not opened yet: a short pause between attempts, not a synchronisation sleep.
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what} did not answer on port ${port} within ${READY_TIMEOUT_MS} ms:\n${log()}`);
}

/** Sends `signal`, waits for exit, escalates to SIGKILL. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

function mainConf(dir: string, lua: boolean, serverConf: string): string {
  const modules = lua ? LUA_MODULES.map((m) => `load_module ${m};\n`).join('') : '';
  // A root master hands sockets to `nobody` workers; the prefix must be traversable for them.
  const user = process.getuid?.() === 0 ? 'user nobody nogroup;\n' : '';
  return `${modules}${user}daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log notice;
events { worker_connections 256; }
http {
    access_log ${dir}/access.log;
    client_body_temp_path ${dir}/client_body_temp;
    proxy_temp_path ${dir}/proxy_temp;
    fastcgi_temp_path ${dir}/fastcgi_temp;
    uwsgi_temp_path ${dir}/uwsgi_temp;
    scgi_temp_path ${dir}/scgi_temp;
    include ${serverConf};
}
`;
}

/**
 * Runs nginx on already-rendered http-level config text (plus extra files relative to the prefix).
 * Used by startNginx and by tests that render a server block themselves (the ingress-nginx mimic).
 */
export async function startNginxWithConfig(opts: {
  httpConf: string;
  files?: Record<string, string>;
  lua?: boolean;
  port: number;
}): Promise<ProxyHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-nginx-'));
  chmodSync(dir, 0o755);
  await writeFile(join(dir, 'server.conf'), opts.httpConf);
  for (const [rel, text] of Object.entries(opts.files ?? {})) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeFile(join(dir, rel), text);
  }
  await writeFile(join(dir, 'nginx.conf'), mainConf(dir, opts.lua ?? false, 'server.conf'));

  let stderr = '';
  const child = spawn('nginx', ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  // A crashed test run must not leave nginx behind.
  const onExit = () => child.kill('SIGKILL');
  process.once('exit', onExit);

  let stopped = false;
  const errorLog = () => {
    if (stopped) return '';
    const file = join(dir, 'error.log');
    return stderr + (existsSync(file) ? readFileSync(file, 'utf8') : '');
  };
  const stop = async () => {
    if (stopped) return;
    await stopChild(child, 'SIGQUIT');
    process.removeListener('exit', onExit);
    stopped = true;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForHttp(opts.port, child, 'nginx', errorLog);
  } catch (e) {
    await stop();
    throw e;
  }
  return { port: opts.port, stop, errorLog };
}

/**
 * Renders a deploy/ nginx template (byte for byte except its `{{MARKERS}}`) and runs it with the real
 * nginx binary in a temp prefix on a free port.
 */
export async function startNginx(opts: StartNginxOptions): Promise<ProxyHandle> {
  const port = opts.port ?? (await freePort());
  const vars = { LISTEN: `127.0.0.1:${port}`, SERVER_NAME: '_', ...opts.vars };
  const deploy = join(repoRoot, 'deploy');
  const base = dirname(join(deploy, opts.confTemplate));
  const httpConf = renderTemplate(await readFile(join(deploy, opts.confTemplate), 'utf8'), vars);
  const files: Record<string, string> = {};
  for (const inc of opts.includes ?? []) {
    const abs = join(deploy, inc);
    if (!abs.startsWith(`${base}/`))
      throw new Error(`include ${inc} is not below ${opts.confTemplate}'s folder`);
    files[abs.slice(base.length + 1)] = renderTemplate(await readFile(abs, 'utf8'), vars);
  }
  return startNginxWithConfig({ httpConf, files, lua: opts.lua ?? false, port });
}

/** A client's view of one answer from the proxy under test. */
export interface ProxyAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Every Set-Cookie line, in order, byte for byte. */
  setCookies: string[];
  body: string;
}

/**
 * Sends one request to 127.0.0.1:port with exactly the given header lines (names may carry
 * underscores, repeated names are sent repeatedly) and collects the answer. Never follows redirects.
 */
export function proxyRequest(
  port: number,
  path: string,
  opts: {
    method?: string;
    headers?: ReadonlyArray<[string, string]>;
    body?: string;
    timeoutMs?: number;
  } = {},
): Promise<ProxyAnswer> {
  return new Promise((ok, fail) => {
    const headers: string[] = [];
    // With raw header lines node adds no Host of its own; HTTP/1.1 requires one.
    if (!(opts.headers ?? []).some(([k]) => k.toLowerCase() === 'host'))
      headers.push('Host', `127.0.0.1:${port}`);
    for (const [k, v] of opts.headers ?? []) headers.push(k, v);
    if (opts.body !== undefined) headers.push('Content-Length', String(Buffer.byteLength(opts.body)));
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: opts.method ?? 'GET',
        headers,
        timeout: opts.timeoutMs ?? 5000,
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('end', () =>
          ok({
            status: res.statusCode ?? 0,
            headers: res.headers,
            setCookies: res.headers['set-cookie'] ?? [],
            body,
          }),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error(`request to ${path} timed out`)));
    req.on('error', fail);
    req.end(opts.body);
  });
}

const ANNOTATION = 'nginx.ingress.kubernetes.io/';

/**
 * Renders the server block ingress-nginx's controller template (rootfs/etc/nginx/template/nginx.tmpl)
 * generates for one Ingress path with external auth: the internal auth location, the sign-in named
 * location, and the protected location with `auth_request_set $auth_cookie $upstream_http_set_cookie;
 * add_header Set-Cookie $auth_cookie;`, one `auth_request_set`/`proxy_set_header` pair per
 * auth-response-headers entry, the controller's own rewrite/header_filter/log Lua phases, and the
 * configuration-snippet pasted verbatim. The auth-url's host:port is replaced by `authHostPort`.
 * `set_escape_uri` (set-misc, absent here) is mimicked with `set_by_lua_block` (needs `lua: true`).
 */
export function renderIngressNginxServer(opts: {
  listen: string;
  annotations: Readonly<Record<string, string>>;
  authHostPort: string;
  backendHostPort: string;
}): string {
  const a = (name: string) => opts.annotations[ANNOTATION + name];
  const authUrl = new URL(a('auth-url') ?? '');
  authUrl.host = opts.authHostPort;
  const bufferSize = a('proxy-buffer-size') ?? '4k';
  const signin = a('auth-signin');
  const responseHeaders = (a('auth-response-headers') ?? '')
    .split(',')
    .map((h) => h.trim())
    .filter((h) => h !== '');
  const authPath = '/_external-auth-Lw-Prefix';
  const signinLocation = '@64e80c4f5e2c2b1c_signin';
  const headerLines = responseHeaders
    .map(
      (h, i) =>
        `        auth_request_set $authHeader${i} $upstream_http_${h.toLowerCase().replaceAll('-', '_')};\n` +
        `        proxy_set_header '${h}' $authHeader${i};\n`,
    )
    .join('');
  const snippet = (a('configuration-snippet') ?? '')
    .split('\n')
    .map((l) => `        ${l}`)
    .join('\n');
  return `server {
    listen ${opts.listen};
    server_name _;

    location = ${authPath} {
        internal;
        proxy_pass_request_body     off;
        proxy_set_header            Content-Length          "";
        proxy_set_header            X-Forwarded-Proto       "";
        proxy_set_header            X-Request-ID            $request_id;
        proxy_set_header            Host                    ${authUrl.hostname};
        proxy_set_header            X-Original-URL          $scheme://$http_host$request_uri;
        proxy_set_header            X-Original-Method       $request_method;
        proxy_set_header            X-Sent-From             "nginx-ingress-controller";
        proxy_set_header            X-Real-IP               $remote_addr;
        proxy_set_header            X-Forwarded-For         $remote_addr;
        proxy_set_header            X-Auth-Request-Redirect $request_uri;
        proxy_buffering             off;
        proxy_buffer_size           ${bufferSize};
        proxy_buffers               4 ${bufferSize};
        proxy_request_buffering     on;
        proxy_http_version          1.1;
        proxy_pass_request_headers  on;
        client_max_body_size        1m;
        set $target ${authUrl.href};
        proxy_pass $target;
    }
${
  signin
    ? `
    location ${signinLocation} {
        internal;
        add_header Set-Cookie $auth_cookie;
        return 302 ${signin};
    }
`
    : ''
}
    location / {
        set $proxy_upstream_name "default-app-80";
        rewrite_by_lua_block {
        }
        header_filter_by_lua_block {
        }
        log_by_lua_block {
        }
        port_in_redirect off;

        # this location requires authentication
        auth_request        ${authPath};
        auth_request_set    $auth_cookie $upstream_http_set_cookie;
        add_header          Set-Cookie $auth_cookie;
${headerLines}${
  signin
    ? `        set_by_lua_block $escaped_request_uri { return ngx.escape_uri(ngx.var.request_uri) }
        error_page 401 = ${signinLocation};
`
    : ''
}
        proxy_set_header Host              $http_host;
        proxy_set_header X-Request-ID      $request_id;
        proxy_set_header X-Real-IP         $remote_addr;
        proxy_set_header X-Forwarded-For   $remote_addr;
        proxy_set_header X-Forwarded-Host  $http_host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Scheme          $scheme;
        proxy_set_header Proxy             "";
        proxy_buffer_size                  ${bufferSize};
        proxy_buffers                      4 ${bufferSize};
        proxy_http_version                 1.1;

${snippet}
        proxy_pass http://${opts.backendHostPort};
    }
}
`;
}
