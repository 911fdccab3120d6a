// .ci/run: it must parse, find each tool it needs, and run exactly the README's test command.
// The detection block is executed for real with an empty PATH (every tool missing) and with a PATH
// of stub tools (none missing), so a mangled detection line fails here, not silently in CI.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { repoRoot } from '../helpers/nginx.js';

const script = readFileSync(join(repoRoot, '.ci/run'), 'utf8');
const TOOLS = ['nginx', 'caddy', 'chromium', 'redis-server', 'wrk', 'openssl', 'promtool'];
const PACKAGES = [
  'nginx',
  'libnginx-mod-http-lua',
  'caddy',
  'chromium',
  'redis-server',
  'wrk',
  'openssl',
  'prometheus',
];

/** The lines from `missing=()` up to the install step, followed by a print of what was found missing. */
function detection(): string {
  const start = script.indexOf('missing=()');
  const end = script.indexOf('\nif [ ');
  if (start < 0 || end < start) throw new Error('.ci/run: detection block not found');
  return `${script.slice(start, end)}\necho "MISSING:\${missing[*]}"\n`;
}

function runDetection(
  path: string,
  luaModule: string,
): { out: string; err: string; status: number | null; cwdFiles: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ci-run-'));
  try {
    const body = detection().replace('/usr/lib/nginx/modules/ngx_http_lua_module.so', luaModule);
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

t.test('.ci/run parses', async (t) => {
  const r = spawnSync('/bin/bash', ['-n', join(repoRoot, '.ci/run')], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
});

t.test('.ci/run runs exactly the README test command', async (t) => {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  t.match(readme, /npm ci && npm test/);
  t.match(script, /^\(npm ci && npm test\) 2>&1 \| tee/m);
});

t.test('with nothing on PATH every package is reported missing', async (t) => {
  const r = runDetection('/nonexistent', '/nonexistent/lua.so');
  t.equal(r.status, 0, r.err);
  t.equal(r.out.trim(), `MISSING:${PACKAGES.join(' ')}`);
  t.equal(r.cwdFiles, '', 'the detection writes no files');
});

t.test('with every tool present nothing is reported missing', async (t) => {
  const bin = mkdtempSync(join(tmpdir(), 'ci-bin-'));
  try {
    for (const tool of TOOLS) {
      writeFileSync(join(bin, tool), '#!/bin/sh\nexit 0\n');
      chmodSync(join(bin, tool), 0o755);
    }
    const lua = join(bin, 'lua.so');
    writeFileSync(lua, '');
    const r = runDetection(bin, lua);
    t.equal(r.status, 0, r.err);
    t.equal(r.out.trim(), 'MISSING:');
    t.equal(r.cwdFiles, '', 'the detection writes no files');
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});
