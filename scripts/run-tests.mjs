#!/usr/bin/env node
// Runs every tap test tier and ends with one plain line: "N passed, N failed, N skipped".
import { spawn } from 'node:child_process';

const args = ['tap', '-R', 'tap', ...process.argv.slice(2)];
const child = spawn('npx', args, { stdio: ['ignore', 'pipe', 'inherit'] });
let tail = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString()).slice(-8192);
});
child.on('close', (code) => {
  // tap's closing comment: "# { total: 9, pass: 6, fail: 1, skip: 2, ... }"
  const m = /# \{([^}]*)\}\s*$/.exec(tail.trimEnd()) ?? /# \{([^}]*total[^}]*)\}/.exec(tail);
  const field = (name) => {
    const f = m ? new RegExp(`\\b${name}: (\\d+)`).exec(m[1]) : null;
    return f ? Number(f[1]) : 0;
  };
  const failed = field('fail') + (m ? 0 : 1);
  const line = `${field('pass')} passed, ${failed} failed, ${field('skip') + field('todo')} skipped`;
  process.stdout.write(`\n${line}\n`);
  process.exit(code === 0 && failed === 0 ? 0 : code || 1);
});
