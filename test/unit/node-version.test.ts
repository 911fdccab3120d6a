// Supported Node.js versions: the start-up check, and every place that states them agreeing with package.json.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { minimumNodeVersion, nodeVersionWarning, requiredNodeRange } from '../../src/node-version.js';
import { repoRoot } from '../helpers/nginx.js';

const read = (path: string) => readFileSync(join(repoRoot, path), 'utf8');
const pkg = JSON.parse(read('package.json')) as { engines: { node: string } };

t.test('nodeVersionWarning compares the running version with the minimum', async (t) => {
  const needs = '>=22.19.0';
  for (const old of ['20.20.2', 'v20.20.2', '22.18.9', '22.9.0', '18.0.0', '21.99.99']) {
    const w = nodeVersionWarning(old, needs);
    t.type(w, 'string', `${old} is too old`);
    t.match(w, `Node.js ${old}`, 'names the running version');
    t.match(w, 'needs Node.js 22.19.0 or newer', 'names the version it needs');
    t.match(w, '24 LTS', 'and the recommended one');
  }
  for (const ok of ['22.19.0', '22.19.1', '22.23.5', '23.0.0', '24.0.0', '24.22.3', '26.1.0', '24.0.0-pre']) {
    t.equal(nodeVersionWarning(ok, needs), undefined, `${ok} is supported`);
  }
  t.equal(nodeVersionWarning('20.0.0', '>=20'), undefined, 'a short minimum is read as 20.0.0');
  t.match(nodeVersionWarning('19.9.9', '>=20'), 'needs Node.js 20.0.0 or newer');
  // Anything unreadable never stops gatehouse from starting.
  t.equal(nodeVersionWarning('20.0.0', ''), undefined, 'an empty engines field');
  t.equal(nodeVersionWarning('20.0.0', '^22 || >=24'), undefined, 'a range form the check does not read');
  t.equal(nodeVersionWarning('not a version', needs), undefined, 'an unreadable running version');
});

t.test('the defaults: this process and package.json', async (t) => {
  t.equal(requiredNodeRange(), pkg.engines.node, 'the range is read from package.json');
  const minimum = minimumNodeVersion(pkg.engines.node);
  t.ok(minimum, `package.json engines.node (${pkg.engines.node}) is a ">=x.y.z" minimum the check reads`);
  t.equal(
    nodeVersionWarning(),
    nodeVersionWarning(process.versions.node, pkg.engines.node),
    'by default the running Node.js is checked',
  );
});

t.test('the minimum covers what the dependencies need', async (t) => {
  const minimum = minimumNodeVersion(pkg.engines.node) ?? '';
  t.match(minimum, /^\d+\.\d+\.\d+$/);
  const lock = JSON.parse(read('package-lock.json')) as {
    packages: Record<string, { engines?: { node?: string } | string[]; optional?: boolean }>;
  };
  t.equal(
    (lock.packages['']?.engines as { node?: string } | undefined)?.node,
    pkg.engines.node,
    'package-lock.json records the same engines',
  );
  // A dependency raising its own `>=x.y.z` floor above ours must raise ours (npm would warn EBADENGINE).
  for (const [path, p] of Object.entries(lock.packages)) {
    const range = Array.isArray(p.engines) ? undefined : p.engines?.node;
    const theirs = range === undefined ? undefined : minimumNodeVersion(range);
    if (path === '' || theirs === undefined) continue;
    if (nodeVersionWarning(minimum, range) !== undefined) t.fail(`${path} needs Node.js ${range}`);
  }
});

t.test(
  'README and .node-version state the same versions (the Dockerfile: test/e2e/dockerfile-recipe.test.ts)',
  async (t) => {
    const minimum = minimumNodeVersion(pkg.engines.node) ?? '';
    const short = minimum.replace(/\.0$/, '');
    const readme = read('README.md');
    const firstSection = readme.slice(0, readme.indexOf('\n## '));
    t.match(
      firstSection,
      /^# gatehouse\n\n```sh\nnpm ci && npm run demo .*\nnpm ci && npm test .*\n```\n/,
      'README opens with the two commands',
    );
    t.ok(
      firstSection.includes(`Node.js 24 LTS (${short}+ works)`),
      `first section: Node.js 24 LTS (${short}+ works)`,
    );
    t.equal(read('.node-version').trim(), '24', '.node-version names 24');
    t.equal(nodeVersionWarning('24.0.0', pkg.engines.node), undefined, '24 is supported');
    t.equal(nodeVersionWarning('22.19.0', pkg.engines.node), undefined, '22.19 is supported');
  },
);
