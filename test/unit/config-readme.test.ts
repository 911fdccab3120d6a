import { readFileSync } from 'node:fs';
import t from 'tap';
import { renderFlagsMarkdown } from '../../src/config/help.js';

t.test('README flag table matches the option table', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const m = /<!-- flags:start -->\n([\s\S]*?)<!-- flags:end -->/.exec(readme);
  t.ok(m, 'README.md has the flags markers');
  t.equal(
    m?.[1],
    renderFlagsMarkdown(),
    'README.md is stale: run `npm run build && node scripts/update-readme-flags.mjs`',
  );
});
