// Child processes of one bench run: CPU-pinned spawn, readiness polling, RSS, and kill-all on any exit.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

const STDERR_TAIL = 4096;
const STOP_GRACE_MS = 3000;

/** A free TCP port on 127.0.0.1 (the OS picks it; the listener is closed before the port is used). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resident set size of one process in MiB, from /proc/<pid>/status VmRSS; null when it is gone. */
export function rssMiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) one process has used so far, from /proc/<pid>/stat; null when it is gone. */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of the whole line, in clock ticks (USER_HZ, 100 on Linux).
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}

/**
 * CPU seconds used so far by every live process of one process group (`pgid`: the leader's pid; each child
 * the bench starts leads its own group, so this covers nginx's or Apache's workers too). A worker that
 * exits during a measurement takes its time with it: the servers measured here keep theirs.
 */
export function groupCpuSeconds(pgid) {
  let total = 0;
  let found = false;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the command name: state (3), ppid (4), pgrp (5) … utime (14), stime (15).
    if (Number(f[2]) !== pgid) continue;
    found = true;
    total += (Number(f[11]) + Number(f[12])) / 100;
  }
  return found ? total : null;
}

/**
 * Owns every child the bench starts. Each child gets its own process group (detached), so stopping it
 * also stops what it forked (node:cluster workers, nginx's worker); the groups are SIGKILLed when the
 * bench exits for any reason, including SIGINT and uncaught errors.
 */
export function createProcs({ pin }) {
  const live = new Map();

  const killGroup = (pid, sig) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // already gone
    }
  };

  const killAllNow = () => {
    for (const pid of live.keys()) killGroup(pid, 'SIGKILL');
    live.clear();
  };
  process.on('exit', killAllNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping children\n`);
      killAllNow();
      process.exit(130);
    });
  }

  /**
   * Starts `cmd args` pinned to `cpus` (a taskset list such as "0" or "1"; null = not pinned).
   * taskset execs the command, so the returned pid is the command's own pid.
   */
  const start = (name, cpus, cmd, args, opts = {}) => {
    const argv = pin && cpus !== null ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args];
    const child = spawn(argv[0], argv[1], {
      detached: true,
      stdio: ['ignore', opts.stdout === 'pipe' ? 'pipe' : 'ignore', 'pipe'],
      cwd: opts.cwd,
      env: opts.env ?? process.env,
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => {
      stderr = (stderr + d.toString()).slice(-STDERR_TAIL);
    });
    child.stdout?.on('data', (d) => {
      stdout += d.toString();
    });
    const exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child.pid);
        resolve({ code, signal });
      });
      child.once('error', (err) => {
        live.delete(child.pid);
        stderr += String(err.message);
        resolve({ code: -1, signal: null });
      });
    });
    if (child.pid !== undefined) live.set(child.pid, name);
    let done = false;
    exited.then(() => {
      done = true;
    });
    return {
      name,
      pid: child.pid,
      exited,
      isRunning: () => !done,
      stderrTail: () => stderr.trim(),
      stdout: () => stdout,
      /** SIGTERM to the group, SIGKILL after a grace period. */
      async stop() {
        if (done || child.pid === undefined) return;
        killGroup(child.pid, 'SIGTERM');
        const timer = delay(STOP_GRACE_MS).then(() => 'timeout');
        if ((await Promise.race([exited, timer])) === 'timeout') {
          killGroup(child.pid, 'SIGKILL');
          await exited;
        }
      },
    };
  };

  return { start, killAll: killAllNow };
}

/**
 * Polls `url` until it answers `status`, failing early when `proc` exits (with its stderr in the error).
 * Bounded by `timeoutMs`.
 */
export async function waitForHttp(url, proc, { status = 200, timeoutMs = 20_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (!proc.isRunning()) {
      throw new Error(
        `${proc.name} exited during start-up: ${proc.stderrTail().slice(-1500) || '(no stderr)'}`,
      );
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === status) return;
      last = `status ${res.status}`;
    } catch (e) {
      last = e.cause?.code ?? e.message;
    }
    await delay(50);
  }
  throw new Error(
    `${proc.name} not ready at ${url} after ${timeoutMs} ms (${last}): ${proc.stderrTail().slice(-800)}`,
  );
}
