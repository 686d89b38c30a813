// Child processes of the benchmark: each server under test runs in its own process,
// pinned to a CPU with taskset (util-linux) when it is there. Every child is registered
// so that killAll() ends them all on exit, error or Ctrl-C.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';

const children = new Set<ChildProcess>();

/** The deployment's node flags for `tiergate serve` (the Dockerfile's CMD): benchmark figures are those of a deployed gateway. */
export const GATEWAY_NODE_FLAGS: readonly string[] = ['--heap-growing-percent=50'];

export const HAS_TASKSET = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
export const CPU_COUNT = os.availableParallelism();
const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux; getconf CLK_TCK

/** Pins this process (every thread) to one CPU; false when it cannot. */
export function pinSelf(cpu: number): boolean {
  if (!HAS_TASKSET || cpu >= CPU_COUNT) return false;
  return spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)]).status === 0;
}

export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly pid: number;
  /** stderr so far (the last 20 kB), for error messages. */
  stderr(): string;
  /** stdout so far (the last 1 MB). */
  stdout(): string;
  /** Resolves with the exit code once the process has ended on its own. */
  exited(): Promise<number | null>;
  stop(): Promise<void>;
}

export function startChild(name: string, args: string[], options: { cpu?: number; env?: NodeJS.ProcessEnv; cwd?: string }): Child {
  const pinned = options.cpu !== undefined && HAS_TASKSET && options.cpu < CPU_COUNT;
  // taskset execs node, so the pid is node's own and /proc/<pid>/stat is the server's.
  const [command, argv] = pinned ? ['taskset', ['-c', String(options.cpu), process.execPath, ...args]] : [process.execPath, args];
  const proc = spawn(command, argv, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  let stderr = '';
  proc.stderr?.on('data', (data: Buffer) => {
    stderr = (stderr + data.toString()).slice(-20_000);
  });
  let stdout = '';
  proc.stdout?.on('data', (data: Buffer) => {
    stdout = (stdout + data.toString()).slice(-1_000_000);
  });
  const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  proc.once('exit', () => children.delete(proc));
  if (proc.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  const pid = proc.pid;
  return {
    name,
    process: proc,
    pid,
    stderr: () => stderr,
    stdout: () => stdout,
    exited: () => exit,
    stop: () => stopProcess(proc),
  };
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process has exited. */
function stopProcess(proc: ChildProcess, graceMs = 5000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

/** Ends every child still running (synchronous SIGKILL: safe in an exit handler). */
export function killAll(): void {
  for (const proc of children) {
    try {
      proc.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
}

export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((proc) => stopProcess(proc)));
}

/** A port free right now on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Polls GET url until it answers 2xx (a child is ready), or fails after timeoutMs. */
export async function waitReady(child: Child, url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.process.exitCode !== null || child.process.signalCode !== null) throw new Error(`${child.name} exited before it was ready:\n${child.stderr()}`);
    const status = await new Promise<number>((resolve) => {
      const req = http.get(url, { agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(0));
      req.setTimeout(1000, () => req.destroy());
    });
    // Any HTTP answer means it is listening; the upstream and proxy 404 a GET, the gateway has /readyz.
    if (status > 0 && status !== 503) return;
    if (Date.now() > deadline) throw new Error(`${child.name} was not ready after ${timeoutMs} ms:\n${child.stderr()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** CPU time (user + system) the process has used, in microseconds, from /proc/<pid>/stat. */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1e6) / CLOCK_TICKS_PER_SECOND;
}

/** CPU time of this process and every child still running, in microseconds. */
export function ownCpuMicros(): number {
  let total = cpuMicros(process.pid);
  for (const proc of children) {
    try {
      if (proc.pid !== undefined) total += cpuMicros(proc.pid);
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/**
 * CPU time of the whole machine (every core), in microseconds, from /proc/stat: `busy`
 * is what ran in this machine (user, nice, system, irq, softirq); `stolen` is the time a
 * core wanted to run and the hypervisor ran something else ("steal"), the noise of a
 * shared host that no process here accounts for.
 */
export function machineMicros(): { busy: number; stolen: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return { busy: ((user + nice + system + irq + softirq) * 1e6) / CLOCK_TICKS_PER_SECOND, stolen: ((steal ?? 0) * 1e6) / CLOCK_TICKS_PER_SECOND };
}

/** Resident set size in bytes, from /proc/<pid>/status. */
export function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1024 : Number.NaN;
}
