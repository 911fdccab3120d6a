// Smoke test for `npm run bench -- --quick`: every case must produce numbers; their size is not judged.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { requireBinary } from '../helpers/require-binary.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const outJson = resolve(root, 'bench/results/quick.json');
const outSvg = resolve(root, 'bench/results/quick.svg');
// Bounded: the quick run takes ~30 s on an idle machine; this leaves room for a busy one.
const RUN_TIMEOUT_MS = 240_000;

interface CaseRow {
  id: string;
  status: string;
  error?: string;
  reqPerSec: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  requests?: number;
  pass: boolean | null;
  ratioTo: string | null;
  ratio: number | null;
  rounds: unknown[];
}

interface QuickResults {
  mode: string;
  machine: { cores: number; node: string; cpuModel: string };
  cases: CaseRow[];
  check: { judged: boolean };
}

const EXPECTED_CASES = [
  'bare',
  'cookie',
  'split',
  '401',
  '403',
  'node-floor',
  'redis',
  'bearer',
  'nginx-ceiling',
  'nginx-gatehouse',
  'apache-openidc',
  'bare-w',
  'cookie-w',
];

function runQuick(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['bench/run.mjs', '--quick', '--out', 'bench/results/quick.json'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    // SIGTERM lets the bench kill its own children (its signal handler) before it exits.
    const timer = setTimeout(() => child.kill('SIGTERM'), RUN_TIMEOUT_MS);
    child.once('error', (e) => {
      clearTimeout(timer);
      fail(e);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

const missing = ['wrk', 'nginx', 'redis-server', 'taskset', 'apache2'].filter(
  (b) => requireBinary(b) === null,
);
const built = existsSync(resolve(root, 'dist/cli.js')) && existsSync(resolve(root, 'dist/dev/idp.js'));
if (!built && process.env.CI === 'true')
  throw new Error('dist/ is not built under CI=true: run npm run build');

if (missing.length > 0) {
  t.skip(`bench --quick needs ${missing.join(', ')} (SKIPPED; fails under CI=true)`, async () => {});
} else if (!built) {
  process.stderr.write(
    '\n*** dist/cli.js or dist/dev/idp.js missing: run `npm run build`; bench test SKIPPED ***\n',
  );
  t.skip('bench --quick needs a built dist/ (npm run build)', async () => {});
} else {
  t.test('npm run bench -- --quick produces a number for every case', async (t) => {
    rmSync(outJson, { force: true });
    rmSync(outSvg, { force: true });
    const run = await runQuick();
    t.equal(run.code, 0, `bench exit code (stderr tail: ${run.stderr.slice(-1500)})`);
    t.match(run.stdout, /^case\s+req\/s\s+p50 ms\s+p99 ms\s+ratio\s+budget\s+result/m, 'prints the table');

    t.ok(existsSync(outJson), 'wrote the JSON results');
    const results = JSON.parse(readFileSync(outJson, 'utf8')) as QuickResults;
    t.equal(results.mode, 'quick');
    t.equal(results.check.judged, false, 'quick mode does not judge');
    t.ok(results.machine.cores >= 1, 'records the machine');
    t.match(results.machine.node, /^v24\./, 'gatehouse ran on Node 24 (the default)');
    t.same(
      results.cases.map((c) => c.id),
      EXPECTED_CASES,
      'runs every case',
    );
    for (const c of results.cases) {
      t.equal(c.status, 'ok', `${c.id} produced numbers${c.error ? `: ${c.error}` : ''}`);
      t.ok(typeof c.reqPerSec === 'number' && c.reqPerSec > 0, `${c.id}: req/s is a positive number`);
      t.ok(typeof c.p50Ms === 'number' && c.p50Ms > 0, `${c.id}: p50 is a positive number`);
      t.ok(
        typeof c.p99Ms === 'number' && typeof c.p50Ms === 'number' && c.p99Ms >= c.p50Ms,
        `${c.id}: p99 >= p50`,
      );
      t.equal(c.pass, null, `${c.id}: not judged`);
      t.equal(c.rounds.length, 1, `${c.id}: one round in quick mode`);
      if (c.ratioTo !== null)
        t.ok(
          typeof c.ratio === 'number' && c.ratio > 0,
          `${c.id}: a ratio to ${c.ratioTo} from the same round`,
        );
    }

    t.ok(existsSync(outSvg), 'wrote the SVG chart');
    const svg = readFileSync(outSvg, 'utf8');
    t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/, 'the chart is an SVG document');
    t.equal((svg.match(/<rect x=/g) ?? []).length, EXPECTED_CASES.length, 'one bar per case');
  });
}
