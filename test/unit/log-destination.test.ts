import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pino from 'pino';
import t from 'tap';
import { createBatchDestination } from '../../src/log-destination.js';

function tempFile(): { path: string; fd: number } {
  const path = join(mkdtempSync(join(tmpdir(), 'gh-log-')), 'out.log');
  return { path, fd: openSync(path, 'w') };
}

/** A destination that writes only when told to (flushSync), for exact assertions. */
const manual = (fd: number) =>
  createBatchDestination({ fd, minLength: 1 << 20, maxPending: 1 << 22, flushEveryMs: 60_000 });

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await delay(5);
}

t.test('lines are held until minLength, then written in order in one batch', async (t) => {
  const f = tempFile();
  const d = createBatchDestination({ fd: f.fd, minLength: 100, maxPending: 10_000, flushEveryMs: 60_000 });
  d.write('a\n');
  d.write('b\n');
  await delay(30);
  t.equal(readFileSync(f.path, 'utf8'), '', 'below minLength nothing is written yet');
  for (let i = 0; i < 50; i++) d.write(`line ${i}\n`);
  await until(() => readFileSync(f.path, 'utf8').includes('line 49'));
  const text = readFileSync(f.path, 'utf8');
  t.equal(
    text,
    `a\nb\n${Array.from({ length: 50 }, (_, i) => `line ${i}\n`).join('')}`,
    'every line, in order',
  );
  closeSync(f.fd);
});

t.test('the timer writes a quiet batch; flushSync writes what is pending at once', async (t) => {
  const f = tempFile();
  const d = createBatchDestination({ fd: f.fd, minLength: 1 << 20, maxPending: 1 << 22, flushEveryMs: 20 });
  d.write('quiet\n');
  await until(() => readFileSync(f.path, 'utf8') === 'quiet\n');
  t.equal(readFileSync(f.path, 'utf8'), 'quiet\n', 'written by the interval');
  const g = tempFile();
  const e = manual(g.fd);
  e.write('exit ✓\n');
  e.flushSync();
  t.equal(readFileSync(g.path, 'utf8'), 'exit ✓\n', 'synchronously, as UTF-8');
  e.flushSync();
  t.equal(readFileSync(g.path, 'utf8'), 'exit ✓\n', 'nothing is written twice');
  closeSync(f.fd);
  closeSync(g.fd);
});

t.test('a destination that cannot keep up drops lines, counts them, and reports once', async (t) => {
  const f = tempFile();
  const reports: number[] = [];
  const d = createBatchDestination({
    fd: f.fd,
    minLength: 10,
    maxPending: 50,
    flushEveryMs: 60_000,
    onDrop: (n) => reports.push(n),
  });
  // The first line starts a write; until it completes the rest pile up and the overflow is dropped.
  let accepted = 0;
  for (let i = 0; i < 40; i++) if (d.write(`${String(i).padStart(9, '0')}\n`)) accepted++;
  t.ok(d.dropped > 0, 'some lines were dropped');
  t.equal(accepted + d.dropped, 40, 'every line is either kept or counted');
  await until(() => reports.length > 0);
  t.same(reports, [d.dropped], 'the drop count is reported after the write');
  d.flushSync();
  const lines = readFileSync(f.path, 'utf8').trim().split('\n');
  t.equal(lines.length, accepted, 'every accepted line is written');
  t.same(lines, [...lines].sort(), 'kept lines stay in order');
  closeSync(f.fd);
});

t.test('a closed descriptor loses the batch without throwing', async (t) => {
  // A descriptor number that is not open (a closed one could be reused by the time the write runs).
  const d = createBatchDestination({ fd: 999_999, minLength: 1, maxPending: 100, flushEveryMs: 60_000 });
  t.doesNotThrow(() => d.write('x\n'));
  await delay(30);
  t.doesNotThrow(() => d.write('y\n'), 'later writes still accepted');
  t.doesNotThrow(() => d.flushSync());
});

t.test('pino writes complete JSON lines through it', async (t) => {
  const f = tempFile();
  const d = manual(f.fd);
  const log = pino({ base: { pid: 1 } }, d);
  log.info({ path: '/oauth2/auth', status: 401 }, 'request');
  log.warn('second');
  d.flushSync();
  const rows = readFileSync(f.path, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(rows, [
    { level: 30, pid: 1, path: '/oauth2/auth', status: 401, msg: 'request' },
    { level: 40, msg: 'second' },
  ]);
  closeSync(f.fd);
});
