// Structural checks of every YAML file under deploy/ (Kubernetes manifests and Traefik dynamic configs).
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import t, { type Test } from 'tap';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from '../helpers/nginx.js';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const at = (o: unknown, ...path: Array<string | number>): unknown =>
  path.reduce<unknown>((cur, k) => (isObj(cur) || Array.isArray(cur) ? (cur as Obj)[k] : undefined), o);

const deployDir = join(repoRoot, 'deploy');
const A = 'nginx.ingress.kubernetes.io/';
const CHUNKS = ['_oauth2_proxy', '_oauth2_proxy_0', '_oauth2_proxy_1', '_oauth2_proxy_2', '_oauth2_proxy_3'];
const IDENTITY = [
  'X-Auth-Request-User',
  'X-Auth-Request-Email',
  'X-Auth-Request-Groups',
  'X-Auth-Request-Access-Token',
];

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

/** Every document of every deploy/ YAML file, parsed; a parse error fails the test that loads it. */
function loadAll(t: Test): Array<{ file: string; doc: unknown }> {
  const out: Array<{ file: string; doc: unknown }> = [];
  for (const path of yamlFiles(deployDir)) {
    const file = relative(repoRoot, path);
    for (const d of parseAllDocuments(readFileSync(path, 'utf8'))) {
      t.same(d.errors, [], `${file} parses`);
      out.push({ file, doc: d.toJS() });
    }
  }
  return out;
}

t.test('deploy/ YAML', async (t) => {
  const docs = loadAll(t);
  const files = new Set(docs.map((d) => d.file));
  for (const f of [
    'deploy/k8s-ingress/ingress.yaml',
    'deploy/k8s-ingress/deployment.yaml',
    'deploy/k8s-ingress/service.yaml',
    'deploy/k8s-ingress/secret.example.yaml',
    'deploy/traefik/dynamic-errors.yml',
    'deploy/traefik/dynamic-static-upstream.yml',
  ]) {
    t.ok(files.has(f), `${f} exists`);
  }
  const k8s = docs.filter((d) => d.file.startsWith('deploy/k8s-ingress/'));
  const traefik = docs.filter((d) => d.file.startsWith('deploy/traefik/'));
  const kind = (k: string) => k8s.filter((d) => at(d.doc, 'kind') === k).map((d) => d.doc);

  t.test('every Kubernetes object has apiVersion, kind, metadata.name and a namespace', async (t) => {
    t.ok(k8s.length >= 5);
    for (const { file, doc } of k8s) {
      const name = `${file} ${String(at(doc, 'kind'))}/${String(at(doc, 'metadata', 'name'))}`;
      t.match(at(doc, 'apiVersion'), /^(v1|apps\/v1|networking\.k8s\.io\/v1)$/, `${name}: apiVersion`);
      t.match(at(doc, 'kind'), /^[A-Z][A-Za-z]+$/, `${name}: kind`);
      t.match(at(doc, 'metadata', 'name'), /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${name}: metadata.name`);
      t.type(at(doc, 'metadata', 'namespace'), 'string', `${name}: namespace`);
    }
  });

  t.test('Deployment: port 4180, probes, hardened security context, secrets from a Secret', async (t) => {
    const [dep] = kind('Deployment');
    t.equal(at(dep, 'apiVersion'), 'apps/v1');
    const pod = at(dep, 'spec', 'template', 'spec');
    t.same(at(dep, 'spec', 'selector', 'matchLabels'), at(dep, 'spec', 'template', 'metadata', 'labels'));
    t.equal(at(pod, 'securityContext', 'runAsNonRoot'), true);
    t.ok(Number(at(pod, 'securityContext', 'runAsUser')) > 0, 'a numeric non-root uid');
    const c = at(pod, 'containers', 0);
    const http = (at(c, 'ports') as Obj[]).find((p) => p.name === 'http');
    t.equal(http?.containerPort, 4180);
    t.equal(at(c, 'readinessProbe', 'httpGet', 'path'), '/ready');
    t.equal(at(c, 'livenessProbe', 'httpGet', 'path'), '/ping');
    for (const probe of ['readinessProbe', 'livenessProbe']) {
      t.ok(['http', 4180].includes(at(c, probe, 'httpGet', 'port') as string), `${probe} targets port 4180`);
    }
    t.equal(at(c, 'securityContext', 'allowPrivilegeEscalation'), false);
    t.equal(at(c, 'securityContext', 'readOnlyRootFilesystem'), true);
    t.same(at(c, 'securityContext', 'capabilities', 'drop'), ['ALL']);
    const args = at(c, 'args') as string[];
    t.ok(args.includes('--http-address=0.0.0.0:4180'));
    t.ok(args.includes('--reverse-proxy=true'));
    t.ok(args.includes('--set-xauthrequest=true'));
    t.notOk(
      args.some((a) => /secret/i.test(a)),
      'no secret on the command line',
    );
    const env = at(c, 'env') as Obj[];
    for (const name of [
      'OAUTH2_PROXY_CLIENT_ID',
      'OAUTH2_PROXY_CLIENT_SECRET',
      'OAUTH2_PROXY_COOKIE_SECRET',
    ]) {
      const e = env.find((x) => x.name === name);
      t.type(at(e, 'valueFrom', 'secretKeyRef', 'name'), 'string', `${name} comes from a Secret`);
      t.equal(at(e, 'value'), undefined);
    }
  });

  t.test('Service targets the http port; Secret example holds both secrets', async (t) => {
    const [svc] = kind('Service');
    const port = (at(svc, 'spec', 'ports') as Obj[]).find((p) => p.name === 'http');
    t.equal(port?.port, 4180);
    t.equal(port?.targetPort, 'http');
    const [secret] = kind('Secret');
    t.type(at(secret, 'stringData', 'cookie-secret'), 'string');
    t.type(at(secret, 'stringData', 'client-secret'), 'string');
  });

  t.test('Ingress: auth annotations and a snippet that forwards every chunk', async (t) => {
    const ingresses = kind('Ingress');
    const app = ingresses.find((i) => at(i, 'metadata', 'annotations', `${A}auth-url`));
    const ann = at(app, 'metadata', 'annotations') as Obj;
    t.match(ann[`${A}auth-url`], /^http:\/\/[^/]+:4180\/oauth2\/auth$/);
    t.match(ann[`${A}auth-signin`], /\/oauth2\/start\?rd=\$escaped_request_uri$/);
    const headers = String(ann[`${A}auth-response-headers`]).split(',');
    for (const h of IDENTITY) t.ok(headers.includes(h), `auth-response-headers has ${h}`);
    t.match(ann[`${A}proxy-buffer-size`], /^(1[6-9]|[2-9]\d)k$/, 'buffer fits two 4 KB Set-Cookie lines');
    const snippet = String(ann[`${A}configuration-snippet`]);
    t.match(snippet, /access_by_lua_block/);
    for (const name of CHUNKS) {
      t.match(snippet, new RegExp(`\\$upstream_cookie_${name}\\b`), `captures ${name}`);
      t.match(snippet, new RegExp(`"${name}"`), `re-emits ${name}`);
    }
    const pages = ingresses.find((i) =>
      (at(i, 'spec', 'rules', 0, 'http', 'paths') as Obj[] | undefined)?.some((p) => p.path === '/oauth2'),
    );
    t.ok(pages, 'an Ingress routes /oauth2 to gatehouse');
    t.equal(at(pages, 'spec', 'rules', 0, 'host'), at(app, 'spec', 'rules', 0, 'host'), 'on the same host');
  });

  t.test('Traefik: both variants wire forwardAuth and strip identity headers', async (t) => {
    t.equal(traefik.length, 2);
    for (const { file, doc } of traefik) {
      const mws = at(doc, 'http', 'middlewares') as Record<string, Obj>;
      const fa = Object.values(mws).find((m) => m.forwardAuth)?.forwardAuth as Obj;
      t.ok(fa, `${file}: forwardAuth middleware`);
      t.equal(fa.trustForwardHeader, true, `${file}: trustForwardHeader`);
      for (const h of IDENTITY)
        t.ok((fa.authResponseHeaders as string[]).includes(h), `${file}: copies ${h}`);
      t.same(fa.addAuthCookiesToResponse, CHUNKS, `${file}: every chunk reaches the browser`);
      const strip = Object.values(mws).find((m) => m.headers)?.headers as Obj;
      const stripped = at(strip, 'customRequestHeaders') as Obj;
      for (const h of [...IDENTITY, 'X_Auth_Request_User']) t.equal(stripped[h], '', `${file}: strips ${h}`);
      const app = at(doc, 'http', 'routers', 'app') as Obj;
      const chain = app.middlewares as string[];
      t.equal(
        chain.at(-1),
        Object.keys(mws).find((k) => mws[k]?.forwardAuth),
        `${file}: forwardAuth runs last`,
      );
      t.equal(
        at(doc, 'http', 'services', 'gatehouse', 'loadBalancer', 'servers', 0, 'url'),
        'http://gatehouse:4180',
      );
      const address = new URL(String(fa.address));
      if (file.endsWith('dynamic-errors.yml')) {
        t.equal(address.pathname, '/oauth2/auth');
        const errors = Object.values(mws).find((m) => m.errors)?.errors as Obj;
        t.same(errors.status, ['401']);
        t.equal(errors.query, '/oauth2/sign_in?rd={url}');
        t.ok(chain.indexOf('gatehouse-errors') < chain.indexOf('gatehouse-auth'), 'errors wraps forwardAuth');
      } else {
        t.equal(address.pathname, '/', `${file}: the static://202 catch-all`);
      }
    }
  });
});
