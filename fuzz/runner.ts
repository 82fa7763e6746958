// The fuzz engine: runs generated cases against a hub's tunnel over real
// gRPC+TLS, judges every reply with the oracle, and keeps the findings. It
// starts no processes; fuzz/world.ts does that.

import { type AgentKeyPair, ErrorCode, generateAgentKeyPair, GrpcClientTransport, HawserError, signHello, wire } from '../src/tunnel/index.js';
import { type CaseClass, encodeHello, type FuzzCase, generateCase, type GeneratorOptions } from './frames.js';
import { type Finding, frameKind, judgeEndOfStream, judgeReply, judgeStatusAfterGoodbye, type Reply, type StreamState } from './oracle.js';

export interface RunOptions {
  target: string;
  caPem: string;
  generator: GeneratorOptions;
  /** Stop starting cases once this many frames were sent (or `maxSeconds` passed). */
  maxFrames: number;
  maxSeconds: number;
  concurrency: number;
  /** How long a reply may take before the stream counts as hung. */
  replyDeadlineMs: number;
  /** Only these case indexes (a replay); otherwise 0, 1, 2, ... */
  onlyCases?: readonly number[];
  /** Called with each signature's first finding as it happens. */
  onFinding?: (f: RecordedFinding) => void;
  /** Called now and then with progress. */
  onProgress?: (p: { frames: number; cases: number; findings: number; elapsedMs: number }) => void;
  /** Stops the run early (e.g. the hub exited). */
  signal?: AbortSignal;
}

export interface RecordedFinding extends Finding {
  seed: number;
  caseIndex: number;
  cls: CaseClass;
  step: number;
  /** What the step was (or "session hello"). */
  note: string;
  frameBytes: number;
  /** First bytes of the frame, hex (bounded). */
  frameHex: string;
}

export interface RunResult {
  frames: number;
  cases: number;
  elapsedMs: number;
  /** Cases per class. */
  classes: Partial<Record<CaseClass, number>>;
  /** Replies per kind, e.g. "heartbeatAck", "goodbye:HAWSER_MALFORMED_FRAME". */
  answers: Record<string, number>;
  /** Findings per signature. */
  findingCounts: Record<string, number>;
  /** Fresh connections dialled after a case hung or its connection dropped. */
  redials: number;
  /** Findings per signature and case class, keyed "signature @ class". */
  findingsByClass: Record<string, number>;
  /** The first few findings of each signature. */
  findings: RecordedFinding[];
}

const examplesPerSignature = 3;
const unavailable = 14; // gRPC UNAVAILABLE: the connection dropped
export const frameHexBytes = 256;

/** One raw stream: replies in arrival order, each awaited with a deadline. */
class RawStream {
  private readonly replies: Reply[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;

  constructor(private readonly call: ReturnType<GrpcClientTransport['openRaw']>) {
    call.on('data', (bytes: Buffer) => this.push({ kind: 'frame', bytes }));
    call.on('status', (s: { code: number; details: string; metadata: { get(key: string): unknown[] } }) => {
      const code = s.metadata.get('hawser-error-code')[0];
      this.push({ kind: 'status', grpcCode: s.code, hawserCode: typeof code === 'string' ? code : undefined, details: s.details });
      this.ended = true;
    });
    // grpc-js also reports a non-OK status as 'error'; 'status' carries all we need.
    call.on('error', () => undefined);
  }

  private push(r: Reply): void {
    if (this.ended) return;
    this.replies.push(r);
    this.waiter?.();
  }

  get isEnded(): boolean {
    return this.ended;
  }

  async write(bytes: Buffer, deadlineMs: number): Promise<void> {
    if (this.ended) return;
    if (this.call.write(bytes)) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, deadlineMs);
      this.call.once('drain', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  async next(deadlineMs: number): Promise<Reply> {
    const started = Date.now();
    while (this.replies.length === 0) {
      const remaining = deadlineMs - (Date.now() - started);
      if (remaining <= 0) return { kind: 'timeout', waitedMs: deadlineMs };
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, remaining);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.replies.shift()!;
  }

  /** Ends our side of the stream. */
  end(): void {
    if (!this.ended) this.call.end();
  }

  cancel(): void {
    this.ended = true;
    this.call.cancel();
  }
}

export interface WorkerIdentity {
  clusterId: string;
  clusterName: string;
  credential: string;
  /** The worker's agent key: every hello it says as itself is signed afresh with it. */
  key: AgentKeyPair;
}

/** Registers one cluster for a worker's authenticated sessions (the hub must auto-approve). */
export async function registerIdentity(target: string, caPem: string, generator: GeneratorOptions, clusterId: string, clusterName: string): Promise<WorkerIdentity> {
  const transport = new GrpcClientTransport({ target, tls: { caPem } });
  const channel = transport.open();
  const key = generateAgentKeyPair();
  try {
    const registration = { name: clusterName, namespace: '', clusterType: 'EdgeCluster', labels: {}, syncMode: wire.SyncMode.SYNC_MODE_DUAL };
    await channel.send({ frame: { $case: 'hello', value: workerHello(clusterId, key, { $case: 'bootstrapToken', value: generator.bootstrapToken }, registration) } });
    for await (const inbound of channel.frames()) {
      if (!inbound.ok) throw inbound.error;
      const frame = inbound.frame.frame;
      if (frame?.$case === 'welcome') return { clusterId, clusterName, credential: frame.value.credential, key };
      if (frame?.$case === 'goodbye') throw new HawserError(ErrorCode.Unavailable, `registering ${clusterName}: ${frame.value.code} ${frame.value.message}`);
      if (frame?.$case === 'registrationPending') throw new HawserError(ErrorCode.InvalidOption, 'the fuzzer needs a hub started with --auto-approve');
    }
    throw new HawserError(ErrorCode.Unavailable, `registering ${clusterName}: stream ended without a welcome`);
  } finally {
    channel.close(new HawserError(ErrorCode.Cancelled, 'registered'));
    transport.close();
  }
}

/**
 * The hellos a worker says as itself (registering, then opening each session):
 * the one place to change when hellos must carry more (e.g. a key and a proof).
 */
function workerHello(clusterId: string, key: AgentKeyPair, auth: wire.Hello['auth'], registration?: wire.ClusterRegistration): wire.Hello {
  return signHello(wire.Hello.fromPartial({ clusterId, auth, registration, agentVersion: 'fuzz' }), key, Date.now());
}

/**
 * The hub checks a hello's proof of possession before anything else in it, so
 * an unsigned fuzzed hello would only ever test the signature check. A frame
 * that decodes as a hello without a proof, and is encoded canonically, is signed at send time with a fresh
 * key (generation stays the same per seed; the bytes sent then differ by the
 * key, time and nonce). Anything that does not decode is sent as generated.
 */
function signedIfHello(bytes: Buffer): Buffer {
  let request: wire.ConnectRequest;
  try {
    request = wire.ConnectRequest.decode(bytes);
  } catch {
    return bytes;
  }
  const frame = request.frame;
  if (frame?.$case !== 'hello' || frame.value.proof || !frame.value.auth) return bytes;
  // Only a canonical encoding is re-signed: a mutated one (unknown fields, odd
  // wire types) is sent exactly as the mutator made it.
  if (!Buffer.from(wire.ConnectRequest.encode(request).finish()).equals(bytes)) return bytes;
  const signed = signHello(frame.value, generateAgentKeyPair(), Date.now());
  return Buffer.from(wire.ConnectRequest.encode({ frame: { $case: 'hello', value: signed } }).finish());
}

function sessionHello(identity: WorkerIdentity): Buffer {
  return encodeHello(workerHello(identity.clusterId, identity.key, { $case: 'clusterCredential', value: identity.credential }));
}

export async function runFuzz(options: RunOptions, identities: readonly WorkerIdentity[]): Promise<RunResult> {
  if (identities.length < options.concurrency) throw new Error(`need ${options.concurrency} identities, got ${identities.length}`);
  const started = Date.now();
  const result: RunResult = { frames: 0, cases: 0, elapsedMs: 0, classes: {}, answers: {}, findingCounts: {}, findingsByClass: {}, findings: [], redials: 0 };
  let nextIndex = 0;
  const takeIndex = (): number | undefined => {
    if (options.signal?.aborted) return undefined;
    if (options.onlyCases) return nextIndex < options.onlyCases.length ? options.onlyCases[nextIndex++] : undefined;
    if (result.frames >= options.maxFrames || Date.now() - started >= options.maxSeconds * 1000) return undefined;
    return nextIndex++;
  };
  const record = (c: FuzzCase, step: number, note: string, bytes: Buffer, finding: Finding) => {
    const count = (result.findingCounts[finding.signature] ?? 0) + 1;
    result.findingCounts[finding.signature] = count;
    const byClass = `${finding.signature} @ ${c.cls}`;
    result.findingsByClass[byClass] = (result.findingsByClass[byClass] ?? 0) + 1;
    if (count > examplesPerSignature) return;
    const f: RecordedFinding = {
      ...finding,
      seed: c.seed,
      caseIndex: c.index,
      cls: c.cls,
      step,
      note,
      frameBytes: bytes.length,
      frameHex: bytes.subarray(0, frameHexBytes).toString('hex'),
    };
    result.findings.push(f);
    if (count === 1) options.onFinding?.(f);
  };

  /** Returns true when the stream hung or its connection dropped: the worker then dials a fresh connection. */
  const runCase = async (transport: GrpcClientTransport, identity: WorkerIdentity, c: FuzzCase): Promise<boolean> => {
    result.cases++;
    result.classes[c.cls] = (result.classes[c.cls] ?? 0) + 1;
    const steps = c.session ? [{ bytes: sessionHello(identity), note: 'session hello' }, ...c.steps] : c.steps;
    const stream = new RawStream(transport.openRaw({ sameConnection: true }));
    let state: StreamState = 'fresh';
    let broken = false;
    const next = async (): Promise<Reply> => {
      const reply = await stream.next(options.replyDeadlineMs);
      if (reply.kind === 'timeout' || (reply.kind === 'status' && reply.hawserCode === undefined && reply.grpcCode === unavailable)) broken = true;
      return reply;
    };
    try {
      for (let i = 0; i < steps.length; i++) {
        const { note } = steps[i]!;
        const bytes = signedIfHello(steps[i]!.bytes);
        const stepIndex = c.session ? i - 1 : i; // -1: the session hello
        await stream.write(bytes, options.replyDeadlineMs);
        result.frames++;
        const kind = frameKind(bytes, options.generator.maxFrameBytes);
        const verdict = judgeReply(kind, state, await next());
        result.answers[verdict.answer] = (result.answers[verdict.answer] ?? 0) + 1;
        if (!verdict.ok) {
          record(c, stepIndex, note, bytes, verdict.finding);
          return broken;
        }
        if (c.session && i === 0 && verdict.answer !== 'welcome') {
          record(c, stepIndex, note, bytes, { signature: `session-hello-refused:${verdict.answer}`, detail: 'the worker could not open its own session' });
          return broken;
        }
        if (verdict.next === 'goodbye') {
          const finding = judgeStatusAfterGoodbye(verdict.goodbyeCode!, await next());
          if (finding) record(c, stepIndex, note, bytes, finding);
          return broken;
        }
        if (verdict.next === 'ended' || verdict.next === 'pending') return broken;
        state = verdict.next;
      }
      if (c.halfClose) {
        stream.end();
        const finding = judgeEndOfStream(state, await next());
        if (finding) record(c, c.steps.length, 'half-close', Buffer.alloc(0), finding);
      }
      return broken;
    } finally {
      stream.cancel();
    }
  };

  let lastProgress = started;
  const worker = async (w: number): Promise<void> => {
    const dial = () => new GrpcClientTransport({ target: options.target, tls: { caPem: options.caPem } });
    let transport = dial();
    try {
      for (let index = takeIndex(); index !== undefined; index = takeIndex()) {
        // After a hang the connection itself may be wedged: later cases get a fresh one, so
        // what they find is theirs.
        if (await runCase(transport, identities[w]!, generateCase(options.generator, index))) {
          transport.close();
          transport = dial();
          result.redials++;
        }
        if (options.onProgress && Date.now() - lastProgress > 5_000) {
          lastProgress = Date.now();
          options.onProgress({ frames: result.frames, cases: result.cases, findings: result.findings.length, elapsedMs: lastProgress - started });
        }
      }
    } finally {
      transport.close();
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, (_, w) => worker(w)));
  result.elapsedMs = Date.now() - started;
  return result;
}
