#!/usr/bin/env node
// Rewrites README.md between <!-- flags:start --> and <!-- flags:end --> with the option table.
// Usage: npm run build && node scripts/update-readme-flags.mjs
// (reads the compiled dist/config/help.js; test/unit/config-readme.test.ts fails when the README is stale)
import { readFileSync, writeFileSync } from 'node:fs';

const { renderFlagsMarkdown } = await import(new URL('../dist/config/help.js', import.meta.url).href);
const readmeUrl = new URL('../README.md', import.meta.url);
const START = '<!-- flags:start -->';
const END = '<!-- flags:end -->';

const readme = readFileSync(readmeUrl, 'utf8');
const a = readme.indexOf(START);
const b = readme.indexOf(END);
if (a === -1 || b === -1 || b < a) {
  process.stderr.write(`README.md must contain ${START} followed by ${END}\n`);
  process.exit(1);
}
const next = `${readme.slice(0, a + START.length)}\n${renderFlagsMarkdown()}${readme.slice(b)}`;
if (next === readme) {
  process.stdout.write('README.md flag table is up to date\n');
} else {
  writeFileSync(readmeUrl, next);
  process.stdout.write('README.md flag table rewritten\n');
}
