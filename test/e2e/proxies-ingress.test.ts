// deploy/k8s-ingress annotations rendered as ingress-nginx would, run by the real nginx with the Lua module.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { parseAllDocuments } from 'yaml';
import { startBackend } from '../helpers/backend.js';
import {
  freePort,
  proxyRequest,
  renderIngressNginxServer,
  repoRoot,
  startNginxWithConfig,
} from '../helpers/nginx.js';
import { requireBinary } from '../helpers/require-binary.js';
import {
  STAND_IN_IDENTITY,
  STAND_IN_SESSION,
  type StandInAuth,
  setCookieName,
  startStandInAuth,
} from '../helpers/stand-in-auth.js';

const LUA_MODULE = '/usr/lib/nginx/modules/ngx_http_lua_module.so';
const SNIPPET = 'nginx.ingress.kubernetes.io/configuration-snippet';

function appAnnotations(): Record<string, string> {
  const text = readFileSync(join(repoRoot, 'deploy/k8s-ingress/ingress.yaml'), 'utf8');
  for (const doc of parseAllDocuments(text)) {
    const o = doc.toJS() as {
      kind?: string;
      metadata?: { name?: string; annotations?: Record<string, string> };
    };
    if (o.kind === 'Ingress' && o.metadata?.annotations?.['nginx.ingress.kubernetes.io/auth-url']) {
      return o.metadata.annotations;
    }
  }
  throw new Error('no Ingress with auth-url in deploy/k8s-ingress/ingress.yaml');
}

function luaMissing(): string | false {
  if (!requireBinary('nginx')) return 'nginx is not installed';
  if (existsSync(LUA_MODULE)) return false;
  if (process.env.CI === 'true') throw new Error(`required module missing under CI=true: ${LUA_MODULE}`);
  process.stderr.write('\n*** libnginx-mod-http-lua is not installed: SKIPPED (fails under CI=true) ***\n');
  return 'libnginx-mod-http-lua is not installed';
}

async function ingress(t: Test, annotations: Record<string, string>) {
  const auth = await startStandInAuth({});
  t.teardown(() => auth.stop());
  const backend = await startBackend({ setCookies: ['app_session=own; Path=/'] });
  t.teardown(() => backend.stop());
  const port = await freePort();
  const httpConf = renderIngressNginxServer({
    listen: `127.0.0.1:${port}`,
    annotations,
    authHostPort: auth.hostPort,
    backendHostPort: backend.hostPort,
  });
  const nginx = await startNginxWithConfig({ httpConf, lua: true, port });
  t.teardown(() => nginx.stop());
  return { auth, backend, nginx };
}

const authLines = (lines: readonly string[]) => lines.filter((l) => l.startsWith('_oauth2_proxy')).sort();
const lastAuth = (auth: StandInAuth) => auth.answers.filter((a) => a.path === '/oauth2/auth').at(-1)!;

const skip = luaMissing();

t.test('ingress-nginx with the deploy configuration-snippet', { skip, timeout: 60_000 }, async (t) => {
  const { auth, backend, nginx } = await ingress(t, appAnnotations());
  const { port } = nginx;

  t.test('no session: 302 to auth-signin with the escaped original URI', async (t) => {
    const target = '/private?a=1&b=2';
    const res = await proxyRequest(port, target, { headers: [['Host', 'app.example.test']] });
    t.equal(res.status, 302);
    const loc = new URL(res.headers.location as string);
    t.equal(`${loc.origin}${loc.pathname}`, 'https://app.example.test/oauth2/start');
    t.equal(loc.searchParams.get('rd'), target);
  });

  t.test('split refresh: the second chunk (and every other line) reaches the client', async (t) => {
    const res = await proxyRequest(port, '/app', {
      headers: [
        ['Cookie', `_oauth2_proxy=${STAND_IN_SESSION.split}`],
        ['X-Auth-Request-User', 'mallory'],
      ],
    });
    t.equal(res.status, 200);
    const sent = lastAuth(auth).setCookies;
    t.same(sent.map(setCookieName), ['_oauth2_proxy_0', '_oauth2_proxy_1', '_oauth2_proxy']);
    t.same(authLines(res.setCookies), [...sent].sort(), 'byte for byte');
    t.ok(res.setCookies.includes('app_session=own; Path=/'), "the backend's cookie survives");
    const seen = backend.requests.at(-1)!;
    t.equal(
      seen.headers['x-auth-request-user'],
      STAND_IN_IDENTITY.user,
      'auth-response-headers replace the spoof',
    );
    t.equal(seen.headers['x-auth-request-groups'], STAND_IN_IDENTITY.groups.join(','));
    t.equal(seen.headers['x-auth-request-access-token'], auth.accessToken);
  });

  t.test('unsplit refresh: the new cookie, and both old chunks cleared', async (t) => {
    const res = await proxyRequest(port, '/app', {
      headers: [['Cookie', '_oauth2_proxy_0=stand-in-uns; _oauth2_proxy_1=plit']],
    });
    t.equal(res.status, 200);
    const sent = lastAuth(auth).setCookies;
    t.same(sent.map(setCookieName), ['_oauth2_proxy', '_oauth2_proxy_0', '_oauth2_proxy_1']);
    t.same(authLines(res.setCookies), [...sent].sort());
  });

  t.test('quiet session: no auth cookie at all', async (t) => {
    const res = await proxyRequest(port, '/app', {
      headers: [['Cookie', `_oauth2_proxy=${STAND_IN_SESSION.quiet}`]],
    });
    t.equal(res.status, 200);
    t.same(authLines(res.setCookies), []);
  });

  t.test('nginx logged no errors', async (t) => {
    t.notMatch(nginx.errorLog(), /\[(error|crit|alert|emerg)\]/);
  });
});

t.test(
  'control: without the snippet only the first chunk gets through',
  { skip, timeout: 30_000 },
  async (t) => {
    const annotations = { ...appAnnotations() };
    delete annotations[SNIPPET];
    const { auth, nginx } = await ingress(t, annotations);
    const res = await proxyRequest(nginx.port, '/app', {
      headers: [['Cookie', `_oauth2_proxy=${STAND_IN_SESSION.split}`]],
    });
    t.equal(res.status, 200);
    const sent = lastAuth(auth).setCookies;
    t.same(authLines(res.setCookies), [sent[0]], 'the controller alone forwards one line');
  },
);
