#!/usr/bin/env node
// .ci/run's closing lines: one line per Node.js run, then the plain "N passed, N failed, N skipped" summed over
// all runs, printed last. Exits 1 when any run failed.
//
// Usage: node scripts/ci-summary.mjs LABEL EXIT_CODE SECONDS LOG [LABEL EXIT_CODE SECONDS LOG ...]
// LOG is the run's output (scripts/run-tests.mjs ends it with "N passed, N failed, N skipped"); a missing LOG or
// one without that line (npm ci, the build, type-check or lint failed first) counts as one failure.
import { existsSync, readFileSync } from 'node:fs';

const SUMMARY = /^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$/;

/** The counts of a run's last summary line, or null when it has none. */
function readCounts(text) {
  const lines = text.split('\n').map((l) => l.trim());
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = SUMMARY.exec(lines[i]);
    if (m) return { passed: Number(m[1]), failed: Number(m[2]), skipped: Number(m[3] ?? 0) };
  }
  return null;
}

const duration = (s) => `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;

/** The closing lines for runs of {label, code, seconds, text}; the sum last. */
function summarize(runs) {
  const total = { passed: 0, failed: 0, skipped: 0 };
  const lines = [];
  let ok = true;
  for (const run of runs) {
    const found = readCounts(run.text);
    const counts = found ?? { passed: 0, failed: 1, skipped: 0 };
    total.passed += counts.passed;
    total.failed += counts.failed;
    total.skipped += counts.skipped;
    const failed = run.code !== 0 || counts.failed > 0;
    if (failed) ok = false;
    let line = `${run.label}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`;
    if (!found)
      line = `${run.label}: no test summary (npm ci, build, type-check or lint failed), counted as 1 failed`;
    if (run.code !== 0) line += `, exit code ${run.code}`;
    lines.push(`${failed ? 'FAILED ' : ''}${line} (${duration(run.seconds)})`);
  }
  lines.push(`${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
  return { lines, ok };
}

function main(args) {
  if (args.length === 0 || args.length % 4 !== 0) {
    process.stderr.write('usage: ci-summary.mjs LABEL EXIT_CODE SECONDS LOG [...]\n');
    return 2;
  }
  const runs = [];
  for (let i = 0; i < args.length; i += 4) {
    const [label, code, seconds, log] = args.slice(i, i + 4);
    const text = existsSync(log) ? readFileSync(log, 'utf8') : '';
    runs.push({ label, code: Number(code), seconds: Number(seconds), text });
  }
  const { lines, ok } = summarize(runs);
  process.stdout.write(`${lines.join('\n')}\n`);
  return ok ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));
