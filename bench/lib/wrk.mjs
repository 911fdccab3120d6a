// Runs wrk (pinned, bounded) against one URL and turns its report into numbers.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const LUA = join(dirname(fileURLToPath(import.meta.url)), 'report.lua');
const KILL_AFTER_S = 20;

/**
 * Parses wrk's output. The Lua done() line is preferred (it carries the non-2xx/3xx count); the plain
 * `--latency` text is the fallback so a wrk without Lua still gives req/s, p50 and p99.
 */
export function parseWrk(stdout) {
  const json = /^WRKJSON (\{.*\})$/m.exec(stdout);
  if (json) {
    const r = JSON.parse(json[1]);
    return {
      requests: r.requests,
      reqPerSec: r.requests / (r.durationUs / 1e6),
      p50Ms: r.p50 / 1000,
      p90Ms: r.p90 / 1000,
      p99Ms: r.p99 / 1000,
      maxMs: r.max / 1000,
      errors: { connect: r.connect, read: r.read, write: r.write, timeout: r.timeout },
      non2xx3xx: r.status,
    };
  }
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(stdout);
  const pct = (p) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(stdout);
    if (!m) return Number.NaN;
    return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
  };
  const total = /^\s+(\d+) requests in/m.exec(stdout);
  const non = /^\s+Non-2xx or 3xx responses: (\d+)/m.exec(stdout);
  if (!rps || !total) throw new Error(`cannot parse wrk output: ${stdout.slice(0, 400)}`);
  return {
    requests: Number(total[1]),
    reqPerSec: Number(rps[1]),
    p50Ms: pct(50),
    p90Ms: pct(90),
    p99Ms: pct(99),
    maxMs: Number.NaN,
    errors: { connect: 0, read: 0, write: 0, timeout: 0 },
    non2xx3xx: non ? Number(non[1]) : 0,
  };
}

/**
 * `taskset -c <cpus> wrk -t<threads> -c<connections> -d<seconds>s --latency -s report.lua [-H …] url [-- N]`,
 * started through `procs` so it dies with the bench. Killed if it overruns its duration by KILL_AFTER_S.
 * Header values (cookies, tokens) go to wrk's argv only; they are never printed.
 */
export async function runWrk({
  procs,
  url,
  headers = {},
  seconds,
  connections = 64,
  threads = 1,
  cpus,
  maxRequests,
}) {
  const args = [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--latency', '-s', LUA];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(url);
  // With one thread the Lua counter sees every response; the duration stays as the upper bound.
  if (maxRequests !== undefined) args.push('--', String(Math.ceil(maxRequests / threads)));
  const proc = procs.start('wrk', cpus, 'wrk', args, { stdout: 'pipe' });
  const timer = setTimeout(() => proc.stop(), (seconds + KILL_AFTER_S) * 1000);
  const { code, signal } = await proc.exited;
  clearTimeout(timer);
  if (code !== 0)
    throw new Error(
      `wrk exited with ${code ?? signal}: ${(proc.stderrTail() || proc.stdout()).slice(0, 400)}`,
    );
  return parseWrk(proc.stdout());
}

/**
 * Drives `total` requests (± the 64 in flight) in wrk runs of at most 10 s, each sized from the previous
 * run's rate and capped by the Lua counter, so the count holds on a slow or noisy machine; gives up
 * after `maxSeconds`. wrk's own `-d` cannot be cut short, hence the segments.
 */
export async function driveRequests({ procs, url, headers, total, maxSeconds, cpus, expectDeny = false }) {
  const started = Date.now();
  let done = 0;
  let rate = 0;
  let badStatus = 0;
  let socketErrors = 0;
  while (done < total && (Date.now() - started) / 1000 < maxSeconds) {
    const left = total - done;
    const seconds = rate > 0 ? Math.min(10, Math.max(1, Math.ceil((left / rate) * 1.1))) : 2;
    const w = await runWrk({ procs, url, headers, seconds, cpus, maxRequests: left });
    if (w.requests === 0) throw new Error('wrk completed no requests');
    done += w.requests;
    // A capped segment idles after its count; its rate is the count over the whole -d, an underestimate.
    rate = Math.max(rate, w.reqPerSec);
    badStatus += expectDeny ? w.requests - w.non2xx3xx : w.non2xx3xx;
    socketErrors += w.errors.connect + w.errors.read + w.errors.write + w.errors.timeout;
  }
  return { requests: done, seconds: (Date.now() - started) / 1000, badStatus, socketErrors };
}
