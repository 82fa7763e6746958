import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, chmodSync, closeSync, constants, createWriteStream, mkdirSync, openSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { TestkitError, TestkitErrorCode } from './errors.js';
import { defaultTracker, type TrackedProcess, type Tracker } from './tracker.js';
import { waitUntil } from './wait.js';

export interface ManagedProcessOptions {
  /** Short name used for the log file and in every message, e.g. "etcd-a". */
  name: string;
  command: string;
  args?: readonly string[];
  /** Added over process.env (or used alone when inheritEnv is false). */
  env?: Record<string, string | undefined>;
  /** Default true. */
  inheritEnv?: boolean;
  cwd?: string;
  /**
   * stdout and stderr go to `<logDir>/<name>.log` (appended across restarts),
   * mode 0600; logDir is created 0700. Logs may hold what a process says
   * about its peers, so only their owner reads them.
   */
  logDir: string;
  /** Lines kept in memory for error messages. Default 200. */
  tailLines?: number;
  /** stop(): time between SIGTERM and SIGKILL. Default 10 s. */
  stopGraceMs?: number;
  /** Ports this process listens on; tracked under its name on every start. */
  ports?: readonly number[];
  tracker?: Tracker;
  /**
   * Kill the child when the spawning thread dies, even by SIGKILL
   * (`setpriv --pdeathsig KILL`, Linux only). Default true when setpriv exists.
   */
  dieWithParent?: boolean;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * What `waitFor` waits for: a RegExp or substring matched against each output
 * line, `{ line: predicate }` over each line, or a function polled until it
 * returns something truthy (it gets a signal that aborts at the deadline).
 */
export type ProcessCondition =
  | RegExp
  | string
  | { line: (line: string) => boolean }
  | ((signal: AbortSignal) => unknown);

export interface ProcessWaitOptions {
  timeoutMs: number;
  /** What is awaited, for the error message, e.g. "etcd ready". */
  what: string;
  /** Poll interval for function conditions. Default 100 ms. */
  intervalMs?: number;
  signal?: AbortSignal;
}

interface Run {
  child: ChildProcess;
  exited: Promise<ExitInfo>;
  /** Exit seen and every stdio pipe closed and the log flushed. */
  drained: Promise<void>;
  exit: ExitInfo | undefined;
  firstLine: number;
}

const DEFAULT_TAIL = 200;
const DEFAULT_GRACE_MS = 10_000;
const DRAIN_CAP_MS = 2_000;

// Children of this process still running; SIGKILLed if the runner exits.
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of liveChildren) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

let setprivPath: string | null | undefined;
function findSetpriv(): string | null {
  if (setprivPath !== undefined) return setprivPath;
  setprivPath = null;
  if (process.platform !== 'linux') return setprivPath;
  for (const candidate of ['/usr/bin/setpriv', '/bin/setpriv']) {
    try {
      accessSync(candidate, constants.X_OK);
      setprivPath = candidate;
      break;
    } catch {
      // try the next
    }
  }
  return setprivPath;
}

/** Absolute path of `command` (searched on PATH), or undefined if not executable. */
function resolveCommand(command: string, cwd: string | undefined, pathEnv: string | undefined): string | undefined {
  const candidates = command.includes('/')
    ? [command.startsWith('/') ? command : join(cwd ?? process.cwd(), command)]
    : (pathEnv ?? '').split(':').filter(Boolean).map((dir) => join(dir, command));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}

function lineMatcher(cond: RegExp | string | { line: (line: string) => boolean }): (line: string) => boolean {
  if (cond instanceof RegExp) return (line) => cond.test(line);
  if (typeof cond === 'string') return (line) => line.includes(cond);
  return cond.line;
}

function describeExit(info: ExitInfo): string {
  return info.signal ? `signal ${info.signal}` : `code ${String(info.code)}`;
}

/**
 * A real child process with its output in a log file, the last lines in
 * memory, deadline-bound waits, graceful stop, signals and restart. It
 * registers itself (and its ports) with the tracker on every start.
 */
export class ManagedProcess implements TrackedProcess {
  readonly name: string;
  readonly logPath: string;
  private readonly options: ManagedProcessOptions;
  private readonly tracker: Tracker;
  private readonly maxTail: number;
  private readonly tailBuf: string[] = [];
  private linesSeen = 0;
  private readonly listeners = new Set<(line: string) => void>();
  private run: Run | undefined;
  private log: WriteStream | undefined;
  private starts = 0;

  private constructor(options: ManagedProcessOptions) {
    if (!options.name || /[/\\]/.test(options.name)) {
      throw new TestkitError(TestkitErrorCode.InvalidArgument, `ManagedProcess: name must be non-empty without slashes, got "${options.name}"`);
    }
    this.options = options;
    this.name = options.name;
    this.tracker = options.tracker ?? defaultTracker;
    this.maxTail = options.tailLines ?? DEFAULT_TAIL;
    mkdirSync(options.logDir, { recursive: true, mode: 0o700 });
    this.logPath = join(options.logDir, `${options.name}.log`);
    // Created 0600, and narrowed to 0600 if it existed with a wider mode.
    closeSync(openSync(this.logPath, 'a', 0o600));
    chmodSync(this.logPath, 0o600);
  }

  /** Spawns the process; rejects with TESTKIT_SPAWN_FAILED if it cannot start. */
  static async start(options: ManagedProcessOptions): Promise<ManagedProcess> {
    const proc = new ManagedProcess(options);
    await proc.spawnRun();
    return proc;
  }

  /** Pid of the current (or last) child. */
  get pid(): number | undefined {
    return this.run?.child.pid;
  }

  /** True between spawn and exit. */
  get running(): boolean {
    return this.run !== undefined && this.run.exit === undefined;
  }

  /** How the current run ended, or undefined while it runs. */
  get exitInfo(): ExitInfo | undefined {
    return this.run?.exit;
  }

  /** Resolves when the current run exits (never rejects). */
  get exited(): Promise<ExitInfo> {
    if (!this.run) throw new TestkitError(TestkitErrorCode.InvalidArgument, `${this.name}: not started`);
    return this.run.exited;
  }

  /** The last lines of output kept in memory (both streams, all runs). */
  lines(): string[] {
    return [...this.tailBuf];
  }

  /** The last `n` lines as one block for error messages. */
  tail(n = 40): string {
    const lines = this.tailBuf.slice(-n);
    return `--- last ${lines.length} lines of ${this.name} (${this.logPath}) ---\n${lines.join('\n')}`;
  }

  /** Calls `listener` with every later output line; returns the unsubscribe. */
  onLine(listener: (line: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Sends a signal to the current child. False when it is not running. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (!this.run || this.run.exit !== undefined) return false;
    return this.run.child.kill(signal);
  }

  /**
   * Waits for a log line or a polled condition. Rejects with TESTKIT_TIMEOUT
   * at the deadline, or at once with TESTKIT_PROCESS_EXITED if the process
   * exits first; both messages carry the log tail.
   */
  async waitFor(condition: ProcessCondition, options: ProcessWaitOptions): Promise<void> {
    const run = this.run;
    if (!run) throw new TestkitError(TestkitErrorCode.InvalidArgument, `${this.name}: not started`);
    const what = `${options.what} (${this.name})`;
    const context = (): string => this.tail();
    const exitedError = (info: ExitInfo): TestkitError =>
      new TestkitError(
        TestkitErrorCode.ProcessExited,
        `${this.name} exited (${describeExit(info)}) while waiting for ${options.what}\n${this.tail()}`,
      );
    const base = { timeoutMs: options.timeoutMs, what, context, ...(options.signal ? { signal: options.signal } : {}) };

    if (typeof condition === 'function') {
      await waitUntil(async (signal) => Boolean(await condition(signal)), {
        ...base,
        failWhen: run.drained.then(() => exitedError(run.exit ?? { code: null, signal: null })),
        intervalMs: options.intervalMs ?? 100,
      });
      return;
    }

    const matches = lineMatcher(condition);
    // Lines of the current run already seen (as far as the tail reaches).
    const firstKept = this.linesSeen - this.tailBuf.length;
    for (let i = Math.max(run.firstLine, firstKept); i < this.linesSeen; i++) {
      if (matches(this.tailBuf[i - firstKept] ?? '')) return;
    }
    let matched = false;
    const off = this.onLine((line) => {
      if (!matched && matches(line)) matched = true;
    });
    try {
      // Output can still arrive after 'exit': give up only once the pipes are drained.
      const failWhen = run.drained.then(() =>
        matched ? new Promise<Error>(() => {}) : exitedError(run.exit ?? { code: null, signal: null }),
      );
      await waitUntil(() => matched, { ...base, failWhen, intervalMs: options.intervalMs ?? 25 });
    } finally {
      off();
    }
  }

  /**
   * SIGTERM, then SIGKILL after the grace period; resolves once the process
   * has exited and its output is flushed to the log. Safe to call twice.
   */
  async stop(options: { graceMs?: number } = {}): Promise<ExitInfo> {
    const run = this.run;
    if (!run) return { code: null, signal: null };
    if (run.exit === undefined) {
      const graceMs = options.graceMs ?? this.options.stopGraceMs ?? DEFAULT_GRACE_MS;
      this.kill('SIGTERM');
      const escalate = setTimeout(() => {
        this.writeLog(`# [testkit] ${this.name} ignored SIGTERM for ${graceMs} ms; sending SIGKILL\n`);
        this.kill('SIGKILL');
      }, graceMs);
      try {
        await run.exited;
      } finally {
        clearTimeout(escalate);
      }
    }
    await run.drained;
    return run.exit ?? { code: null, signal: null };
  }

  /** Stops the process (if running) and starts it again with the same options. */
  async restart(): Promise<void> {
    await this.stop();
    await this.spawnRun();
  }

  private writeLog(text: string): void {
    this.log?.write(text);
  }

  private pushLine(line: string): void {
    this.tailBuf.push(line);
    if (this.tailBuf.length > this.maxTail) this.tailBuf.shift();
    this.linesSeen++;
    for (const listener of this.listeners) listener(line);
  }

  private async spawnRun(): Promise<void> {
    const opts = this.options;
    const args = [...(opts.args ?? [])];
    const env = opts.inheritEnv === false ? { ...opts.env } : { ...process.env, ...opts.env };
    const command = resolveCommand(opts.command, opts.cwd, env['PATH']);
    if (command === undefined) {
      throw new TestkitError(TestkitErrorCode.SpawnFailed, `could not start ${this.name}: "${opts.command}" is not an executable file or on PATH`);
    }
    const setpriv = opts.dieWithParent === false ? null : findSetpriv();
    const [file, argv] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', '--', command, ...args]] : [command, args];

    this.log = createWriteStream(this.logPath, { flags: 'a', mode: 0o600 });
    const log = this.log;
    log.on('error', () => {}); // a broken log file must not crash the test runner
    this.starts++;
    const header = `# [testkit] ${new Date().toISOString()} start #${this.starts}: ${[opts.command, ...args].join(' ')}`;
    log.write(header + '\n');

    const child = spawn(file, argv, {
      cwd: opts.cwd,
      env,
      detached: false,
      stdio: ['ignore', 'pipe', 'pipe'],
    });

    let resolveExit!: (info: ExitInfo) => void;
    const exited = new Promise<ExitInfo>((resolve) => (resolveExit = resolve));
    const run: Run = { child, exited, drained: Promise.resolve(), exit: undefined, firstLine: this.linesSeen };

    const pending = { out: '', err: '' };
    const onData = (key: 'out' | 'err') => (chunk: Buffer) => {
      log.write(chunk);
      const text = pending[key] + chunk.toString('utf8');
      const parts = text.split('\n');
      pending[key] = parts.pop() ?? '';
      for (const part of parts) this.pushLine(part.endsWith('\r') ? part.slice(0, -1) : part);
    };
    child.stdout?.on('data', onData('out'));
    child.stderr?.on('data', onData('err'));

    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    let spawnError: Error | undefined;

    await new Promise<void>((resolve) => {
      child.once('spawn', () => resolve());
      child.once('error', (err) => {
        // Before 'spawn' this means the binary could not be started at all.
        if (child.pid === undefined) {
          spawnError = err;
          run.exit = { code: null, signal: null };
          resolveExit(run.exit);
          resolve();
        }
      });
    });

    if (spawnError) {
      log.end(`# [testkit] spawn failed: ${spawnError.message}\n`);
      this.run = run;
      throw new TestkitError(
        TestkitErrorCode.SpawnFailed,
        `could not start ${this.name} (${opts.command}): ${spawnError.message}`,
        { cause: spawnError },
      );
    }

    liveChildren.add(child);
    installExitHook();
    child.on('error', (err) => log.write(`# [testkit] child error: ${err.message}\n`));
    child.once('exit', (code, signal) => {
      liveChildren.delete(child);
      run.exit = { code, signal };
      resolveExit(run.exit);
    });

    run.drained = (async () => {
      const info = await exited;
      // A grandchild holding our pipes must not block stop(); cap the wait.
      let cap: NodeJS.Timeout | undefined;
      await Promise.race([closed, new Promise<void>((r) => (cap = setTimeout(r, DRAIN_CAP_MS)))]);
      clearTimeout(cap);
      child.stdout?.destroy();
      child.stderr?.destroy();
      for (const key of ['out', 'err'] as const) {
        if (pending[key]) this.pushLine(pending[key]);
        pending[key] = '';
      }
      await new Promise<void>((resolve) => log.end(`\n# [testkit] ${new Date().toISOString()} exited: ${describeExit(info)}\n`, () => resolve()));
    })();

    this.run = run;
    this.tracker.trackProcess(this);
    for (const port of opts.ports ?? []) this.tracker.trackPort(port, this.name);
  }
}

/** `ManagedProcess.start(options)`. */
export function startProcess(options: ManagedProcessOptions): Promise<ManagedProcess> {
  return ManagedProcess.start(options);
}
