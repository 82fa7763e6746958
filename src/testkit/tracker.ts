import { connect } from 'node:net';
import { TestkitError, TestkitErrorCode } from './errors.js';

/** What the tracker needs from a process it watches. */
export interface TrackedProcess {
  readonly name: string;
  /** Pid of the current (or last) child; undefined before it was spawned. */
  readonly pid: number | undefined;
  stop(): Promise<unknown>;
}

export interface Leak {
  kind: 'process' | 'port';
  /** Process name, or the owner the port was handed out for. */
  name: string;
  pid?: number;
  port?: number;
  description: string;
}

/** True when a process with this pid exists (signal 0 only checks). */
export function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when something accepts TCP connections on host:port. */
export function isPortOpen(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (open: boolean): void => {
      socket.removeAllListeners();
      socket.on('error', () => {});
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(true)); // on loopback only a listener makes a connect hang
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Registry of every process and port the testkit hands out, so a test can
 * prove it cleaned up after itself (connect-es fails tests that leak a
 * connection; abstract-level closes what it owns with allSettled).
 */
export class Tracker {
  private readonly processes = new Set<TrackedProcess>();
  private readonly ports = new Map<number, string>();

  trackProcess(proc: TrackedProcess): void {
    this.processes.add(proc);
  }

  untrackProcess(proc: TrackedProcess): void {
    this.processes.delete(proc);
  }

  /** Registers a port; `owner` names it in leak reports. */
  trackPort(port: number, owner: string): void {
    this.ports.set(port, owner);
  }

  untrackPort(port: number): void {
    this.ports.delete(port);
  }

  trackedProcesses(): TrackedProcess[] {
    return [...this.processes];
  }

  trackedPorts(): Array<{ port: number; owner: string }> {
    return [...this.ports].map(([port, owner]) => ({ port, owner }));
  }

  /**
   * Every tracked process still alive and every tracked port still accepting
   * connections on 127.0.0.1. What is found clean is forgotten, so a port
   * number the OS later hands to someone else is not blamed on us; anything
   * tracked again (a restart) is registered again.
   */
  async findLeaks(): Promise<Leak[]> {
    const leaks: Leak[] = [];
    for (const proc of [...this.processes]) {
      const pid = proc.pid;
      if (pid !== undefined && isPidAlive(pid)) {
        leaks.push({ kind: 'process', name: proc.name, pid, description: `process "${proc.name}" (pid ${pid}) is still alive` });
      } else {
        this.processes.delete(proc);
      }
    }
    const portChecks = [...this.ports].map(async ([port, owner]) => ({ port, owner, open: await isPortOpen(port) }));
    for (const { port, owner, open } of await Promise.all(portChecks)) {
      if (open) {
        leaks.push({ kind: 'port', name: owner, port, description: `port 127.0.0.1:${port} (${owner}) still accepts connections` });
      } else {
        this.ports.delete(port);
      }
    }
    return leaks;
  }

  /** Rejects with TESTKIT_LEAK naming every live process and open port. */
  async assertNoLeaks(): Promise<void> {
    const leaks = await this.findLeaks();
    if (leaks.length > 0) throw new LeakError(leaks);
  }

  /** Stops every tracked process that may still run; never rejects. */
  async closeAll(): Promise<PromiseSettledResult<unknown>[]> {
    return Promise.allSettled([...this.processes].map((proc) => proc.stop()));
  }
}

export class LeakError extends TestkitError {
  constructor(readonly leaks: Leak[]) {
    super(TestkitErrorCode.Leak, `testkit leaked ${leaks.length} resource(s):\n` + leaks.map((l) => `  - ${l.description}`).join('\n'));
  }
}

/** The tracker every testkit helper registers with unless given another. */
export const defaultTracker = new Tracker();

/** `defaultTracker.assertNoLeaks()`. */
export function assertNoLeaks(tracker: Tracker = defaultTracker): Promise<void> {
  return tracker.assertNoLeaks();
}

/** `defaultTracker.closeAll()`. */
export function closeAll(tracker: Tracker = defaultTracker): Promise<PromiseSettledResult<unknown>[]> {
  return tracker.closeAll();
}
