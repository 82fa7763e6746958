// One conformance suite for every transport: a connection owns its control
// stream and its request streams. transport-memory.test.ts and
// transport-grpc.test.ts run it. Not a test file itself.
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ClusterStatus, type ConnectRequest, type ConnectResponse } from '../../src/gen/hawser/v1/tunnel.js';
import { ErrorCode, HawserError } from '../../src/tunnel/errors.js';
import type {
  AgentConnection,
  AgentConnectionTestHooks,
  ByteStream,
  ConnectionClientTransport,
  HubConnection,
  ServerTransportEvents,
  StreamAcceptor,
  TunnelListener,
} from '../../src/tunnel/transport.js';
import { waitFor } from './support.js';

export interface TransportUnderTest {
  listenConnections(onConnection: (connection: HubConnection) => void, events?: ServerTransportEvents): Promise<TunnelListener>;
  client(): ConnectionClientTransport & { connect(): AgentConnection & AgentConnectionTestHooks };
  /** The most bytes a writer may have had taken beyond what its reader consumed. */
  readonly bufferBoundBytes: number;
  close(): Promise<void>;
}

type TestAgent = AgentConnection & AgentConnectionTestHooks;

/** Items as they arrive; next() waits for one. */
class Inbox<T> {
  private items: T[] = [];
  private waiters: Array<(item: T) => void> = [];
  push(item: T): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(item);
    else this.items.push(item);
  }
  next(): Promise<T> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  get size(): number {
    return this.items.length;
  }
}

/**
 * The protocol's part, as small as the tests need: the hub acks heartbeats
 * and announces requested streams with an OpenStream frame; the agent opens
 * what the hub asks for.
 */
interface Session {
  hub: HubConnection;
  agent: TestAgent;
  /** Streams the agent opened on its own, as the hub got them. */
  agentStreams: Inbox<ByteStream>;
  /** The agent's ends of the streams the hub asked for. */
  requested: Inbox<ByteStream>;
  /** Failures of the agent's answers to OpenStream. */
  answerErrors: Inbox<HawserError>;
  heartbeat(sequence: number): Promise<void>;
  accept(acceptor?: Partial<StreamAcceptor>): void;
}

async function readAll(stream: ByteStream): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of stream.chunks()) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

async function readError(stream: ByteStream): Promise<unknown> {
  try {
    for await (const _ of stream.chunks()) {
      // drain
    }
  } catch (err) {
    return err;
  }
  return undefined;
}

async function writeAll(stream: ByteStream, data: Buffer, sizes: number[]): Promise<void> {
  let offset = 0;
  for (let i = 0; offset < data.length; i++) {
    const size = sizes[i % sizes.length]!;
    await stream.write(data.subarray(offset, offset + size));
    offset += size;
  }
  await stream.end();
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function codeOf(err: unknown): string | undefined {
  return err instanceof HawserError ? err.code : undefined;
}

export function transportConformance(name: string, make: () => Promise<TransportUnderTest>): void {
  describe(`transport conformance: ${name}`, () => {
    let transport: TransportUnderTest | undefined;
    const cleanups: Array<() => void | Promise<void>> = [];

    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
      await transport?.close();
      transport = undefined;
    });

    async function start(events: ServerTransportEvents = {}) {
      transport = await make();
      const hubs = new Inbox<HubConnection>();
      const listener = await transport.listenConnections((c) => hubs.push(c), events);
      cleanups.push(() => listener.close(0));
      const client = transport.client();
      cleanups.push(() => client.close());
      return { hubs, client, bound: transport.bufferBoundBytes };
    }

    async function open(hubs: Inbox<HubConnection>, client: { connect(): TestAgent }, hubReadsControl = true): Promise<Session> {
      const agent = client.connect();
      const hub = await hubs.next();
      cleanups.push(() => agent.close());
      const agentStreams = new Inbox<ByteStream>();
      const requested = new Inbox<ByteStream>();
      const answerErrors = new Inbox<HawserError>();
      const acks = new Map<number, () => void>();
      // Hub: acks heartbeats.
      if (hubReadsControl) void (async () => {
        for await (const inbound of hub.control.frames()) {
          const frame = inbound.ok ? inbound.frame.frame : undefined;
          if (frame?.$case === 'heartbeat') {
            await hub.control
              .send({ frame: { $case: 'heartbeatAck', value: { sequence: frame.value.sequence, leaseExpiresAtUnixMs: 0 } } })
              .catch(() => undefined);
          }
        }
      })();
      // Agent: answers OpenStream, resolves heartbeat acks.
      void (async () => {
        for await (const inbound of agent.control.frames()) {
          const frame = inbound.ok ? inbound.frame.frame : undefined;
          if (frame?.$case === 'openStream') {
            agent.openStream(frame.value.kind, undefined, { requestId: frame.value.streamId }).then(
              (s) => requested.push(s),
              (err: unknown) => answerErrors.push(err as HawserError),
            );
          } else if (frame?.$case === 'heartbeatAck') {
            acks.get(frame.value.sequence)?.();
          }
        }
      })();
      return {
        hub,
        agent,
        agentStreams,
        requested,
        answerErrors,
        heartbeat: async (sequence) => {
          const acked = new Promise<void>((resolve) => acks.set(sequence, resolve));
          const frame: ConnectRequest = { frame: { $case: 'heartbeat', value: { sequence, sentAtUnixMs: 0, lastRttMs: 0, statusUnchanged: true } } };
          await agent.control.send(frame);
          await acked;
        },
        accept: (acceptor = {}) =>
          hub.acceptStreams({
            onStream: (s) => agentStreams.push(s),
            announce: (request) => {
              const frame: ConnectResponse = { frame: { $case: 'openStream', value: { streamId: request.id, kind: request.kind, prelude: Buffer.alloc(0) } } };
              return hub.control.send(frame);
            },
            ...acceptor,
          }),
      };
    }

    async function session(events: ServerTransportEvents = {}) {
      const { hubs, client, bound } = await start(events);
      const s = await open(hubs, client);
      s.accept();
      return { ...s, hubs, client, bound };
    }

    /** A stream the agent opens and the hub's end of it. */
    async function agentOpened(s: Session, kind = 'sync', signal?: AbortSignal) {
      const agentEnd = await s.agent.openStream(kind, signal);
      const hubEnd = await s.agentStreams.next();
      return { agentEnd, hubEnd };
    }

    /** A stream the hub asks for (announced on the control stream) and the agent's end of it. */
    async function hubRequested(s: Session, kind = 'proxy', signal?: AbortSignal) {
      const hubEnd = await s.hub.openStream(kind, signal);
      const agentEnd = await s.requested.next();
      return { agentEnd, hubEnd };
    }

    it('carries the control stream and many concurrent streams, opened by either side, each its own data both ways', async () => {
      const s = await session();
      await s.heartbeat(1);
      const pairs = await Promise.all([
        ...Array.from({ length: 6 }, () => agentOpened(s)),
        ...Array.from({ length: 6 }, () => hubRequested(s)),
      ]);
      expect(new Set(pairs.map((p) => p.hubEnd.id)).size).toBe(12);
      for (const p of pairs) {
        expect(p.agentEnd.id).toBe(p.hubEnd.id);
        expect(p.agentEnd.kind).toBe(p.hubEnd.kind);
      }
      expect(s.hub.openStreams).toBe(12);
      expect(s.agent.openStreams).toBe(12);
      const payloads = pairs.map((_, i) => ({ up: randomBytes(1000 + i * 7919), down: randomBytes(500 + i * 104729) }));
      const results = await Promise.all(
        pairs.map(async (p, i) => {
          const [, , up, down] = await Promise.all([
            writeAll(p.agentEnd, payloads[i]!.up, [333, 4096]),
            writeAll(p.hubEnd, payloads[i]!.down, [65536, 17]),
            readAll(p.hubEnd),
            readAll(p.agentEnd),
          ]);
          return { up, down };
        }),
      );
      results.forEach((r, i) => {
        expect(sha(r.up)).toBe(sha(payloads[i]!.up));
        expect(sha(r.down)).toBe(sha(payloads[i]!.down));
      });
      const closed = await Promise.all(pairs.flatMap((p) => [p.agentEnd.closed, p.hubEnd.closed]));
      expect(closed.every((c) => c === undefined)).toBe(true);
      await waitFor('streams gone from both sides', () => s.hub.openStreams === 0 && s.agent.openStreams === 0);
      await s.heartbeat(2);
    });

    it('passes payloads of several MB intact and in order, both ways at once', async () => {
      const s = await session();
      const { agentEnd, hubEnd } = await hubRequested(s);
      const up = randomBytes(9 * 1024 * 1024 + 13);
      const down = randomBytes(7 * 1024 * 1024 + 5);
      // A writer may reuse its buffer once write() resolved: scribble on each chunk after it is taken.
      const writeThenScribble = async (stream: ByteStream, data: Buffer) => {
        const scratch = Buffer.alloc(3 * 1024 * 1024 + 1);
        for (let offset = 0; offset < data.length; offset += scratch.length) {
          const n = data.copy(scratch, 0, offset, offset + scratch.length);
          await stream.write(scratch.subarray(0, n));
          scratch.fill(0xee);
        }
        await stream.end();
      };
      const [, , gotUp, gotDown] = await Promise.all([writeThenScribble(agentEnd, up), writeThenScribble(hubEnd, down), readAll(hubEnd), readAll(agentEnd)]);
      expect(gotUp.length).toBe(up.length);
      expect(sha(gotUp)).toBe(sha(up));
      expect(sha(gotDown)).toBe(sha(down));
      expect(hubEnd.bytesIn).toBe(up.length);
      expect(agentEnd.bytesIn).toBe(down.length);
    });

    it('bounds what a writer has buffered by what its slow reader consumed', async () => {
      const s = await session();
      const total = 24 * 1024 * 1024;
      for (const direction of ['agent to hub', 'hub to agent'] as const) {
        const { agentEnd, hubEnd } = await hubRequested(s);
        const [writer, reader] = direction === 'agent to hub' ? [agentEnd, hubEnd] : [hubEnd, agentEnd];
        let taken = 0;
        let consumed = 0;
        let worst = 0;
        const chunk = randomBytes(64 * 1024);
        const writing = (async () => {
          while (taken < total) {
            await writer.write(chunk);
            taken += chunk.length;
            worst = Math.max(worst, taken - consumed);
          }
          await writer.end();
        })();
        // The reader first reads nothing while the control stream makes round trips.
        for (let i = 0; i < 30; i++) await s.heartbeat(i);
        expect(taken).toBeLessThan(total);
        expect(taken).toBeLessThanOrEqual(s.bound);
        // Then it reads slowly: one chunk per event-loop turn.
        for await (const c of reader.chunks()) {
          consumed += c.byteLength;
          await new Promise<void>((r) => setImmediate(r));
        }
        await writing;
        expect(consumed).toBe(total);
        expect(worst).toBeLessThanOrEqual(s.bound);
      }
    });

    it('bounds the control stream too: a writer whose reader does not read waits', async () => {
      const { hubs, client } = await start();
      const s = await open(hubs, client, false);
      s.accept();
      const { agentEnd, hubEnd } = await agentOpened(s);
      // Frames of about 1 KB: the bound is in frames on one transport, in bytes on another.
      const total = 10_000;
      const status = ClusterStatus.fromPartial({ k8sVersion: 'v'.repeat(1000) });
      let sent = 0;
      const sending = (async () => {
        for (let sequence = 0; sequence < total; sequence++) {
          await s.agent.control.send({ frame: { $case: 'heartbeat', value: { sequence, sentAtUnixMs: 0, lastRttMs: 0, statusUnchanged: false, status } } });
          sent++;
        }
      })();
      // The hub does not read its control stream. Event-loop turns (an unbounded writer is done
      // in the first) and round trips on a request stream (I/O on the same connection) go by.
      const echoes = hubEnd.chunks()[Symbol.asyncIterator]();
      for (let i = 0; i < 30; i++) {
        await new Promise<void>((r) => setImmediate(r));
        await agentEnd.write(Buffer.from([i]));
        expect((await echoes.next()).value).toEqual(Buffer.from([i]));
      }
      expect(sent).toBeLessThan(total);
      let expected = 0;
      for await (const inbound of s.hub.control.frames()) {
        const frame = inbound.ok ? inbound.frame.frame : undefined;
        expect(frame?.$case === 'heartbeat' && frame.value.sequence).toBe(expected++);
        if (expected === total) break;
      }
      await sending;
      expect(sent).toBe(total);
    });

    it('keeps heartbeats flowing on the control stream while a bulk stream is saturated', async () => {
      const s = await session();
      const { agentEnd, hubEnd } = await agentOpened(s);
      const data = randomBytes(32 * 1024 * 1024);
      let taken = 0;
      const writing = (async () => {
        for (let offset = 0; offset < data.length; offset += 1024 * 1024) {
          await agentEnd.write(data.subarray(offset, offset + 1024 * 1024));
          taken += 1024 * 1024;
        }
        await agentEnd.end();
      })();
      // The hub does not read the bulk stream; the writer stalls, the control stream does not.
      for (let i = 1; i <= 50; i++) await s.heartbeat(i);
      expect(taken).toBeLessThan(data.length);
      let controlClosed = false;
      void s.hub.control.closed.then(() => (controlClosed = true));
      const got = await readAll(hubEnd);
      await writing;
      expect(sha(got)).toBe(sha(data));
      await s.heartbeat(51);
      expect(controlClosed).toBe(false);
    });

    it("an agent's abort reaches the hub at once and frees both ends, also under a stalled writer", async () => {
      const s = await session();
      const { agentEnd, hubEnd } = await hubRequested(s);
      const second = await hubRequested(s);
      // The hub writes into a stream the agent never reads: its writer stalls.
      let stalledWrite: Promise<unknown> | undefined;
      const filling = (async () => {
        for (;;) {
          stalledWrite = second.hubEnd.write(randomBytes(256 * 1024));
          await stalledWrite;
        }
      })().catch((err: unknown) => err);
      for (let i = 0; i < 10; i++) await s.heartbeat(i);
      agentEnd.abort();
      second.agentEnd.abort(new HawserError(ErrorCode.Cancelled, 'kubectl went away'));
      expect(codeOf(await hubEnd.closed)).toBe(ErrorCode.Cancelled);
      expect(codeOf(await readError(hubEnd))).toBe(ErrorCode.Cancelled);
      await expect(hubEnd.write(Buffer.from('late'))).rejects.toMatchObject({ code: ErrorCode.Cancelled });
      expect(codeOf(await second.hubEnd.closed)).toBe(ErrorCode.Cancelled);
      expect(codeOf(await filling)).toBe(ErrorCode.Cancelled);
      expect(codeOf(await agentEnd.closed)).toBe(ErrorCode.Cancelled);
      await waitFor('streams freed', () => s.hub.openStreams === 0 && s.agent.openStreams === 0);
      await s.heartbeat(99);
    });

    it("a hub's abort reaches the agent with its code, and a saturated one still ends at once", async () => {
      const s = await session();
      const { agentEnd, hubEnd } = await agentOpened(s);
      hubEnd.abort(new HawserError(ErrorCode.HubShuttingDown, 'going away'));
      expect(codeOf(await agentEnd.closed)).toBe(ErrorCode.HubShuttingDown);
      expect(codeOf(await readError(agentEnd))).toBe(ErrorCode.HubShuttingDown);
      // The hub's writer is stalled on an agent that does not read: the abort must not wait for it.
      const stalled = await hubRequested(s);
      const filling = (async () => {
        for (;;) await stalled.hubEnd.write(randomBytes(256 * 1024));
      })().catch((err: unknown) => err);
      for (let i = 0; i < 10; i++) await s.heartbeat(i);
      stalled.hubEnd.abort(new HawserError(ErrorCode.Cancelled, 'kubectl went away'));
      expect(await stalled.agentEnd.closed).toBeInstanceOf(HawserError);
      expect(await readError(stalled.agentEnd)).toBeInstanceOf(HawserError);
      expect(codeOf(await filling)).toBe(ErrorCode.Cancelled);
      await waitFor('streams freed', () => s.hub.openStreams === 0 && s.agent.openStreams === 0);
    });

    it('cancels a stream by its AbortSignal on either side; a deadline gives its own code', async () => {
      const s = await session();
      const agentSide = new AbortController();
      const a = await s.agent.openStream('sync', agentSide.signal);
      const aHub = await s.agentStreams.next();
      agentSide.abort();
      expect(codeOf(await a.closed)).toBe(ErrorCode.Cancelled);
      expect(codeOf(await aHub.closed)).toBe(ErrorCode.Cancelled);

      const hubSide = new AbortController();
      const b = await hubRequested(s, 'proxy', hubSide.signal);
      hubSide.abort(new HawserError(ErrorCode.Unavailable, 'cluster link dropped'));
      expect(codeOf(await b.hubEnd.closed)).toBe(ErrorCode.Unavailable);
      expect(codeOf(await b.agentEnd.closed)).toBe(ErrorCode.Unavailable);

      // A deadline is a signal aborted with a TimeoutError (what AbortSignal.timeout does).
      const deadline = new AbortController();
      const c = await hubRequested(s, 'proxy', deadline.signal);
      deadline.abort(new DOMException('deadline', 'TimeoutError'));
      expect(codeOf(await c.hubEnd.closed)).toBe(ErrorCode.DeadlineExceeded);
      expect(codeOf(await c.agentEnd.closed)).toBe(ErrorCode.DeadlineExceeded);
      const timed = await s.agent.openStream('sync', AbortSignal.timeout(1)).then(
        (stream) => stream.closed,
        (err: unknown) => err,
      );
      expect(codeOf(timed)).toBe(ErrorCode.DeadlineExceeded);

      // A signal that fired already refuses the stream before it opens.
      await expect(s.agent.openStream('sync', AbortSignal.abort())).rejects.toMatchObject({ code: ErrorCode.Cancelled });
      await expect(s.hub.openStream('proxy', AbortSignal.abort())).rejects.toMatchObject({ code: ErrorCode.Cancelled });
      await waitFor('streams freed', () => s.hub.openStreams === 0 && s.agent.openStreams === 0);
    });

    it("the hub's wait for a requested stream ends with its signal; the agent's late answer is refused", async () => {
      const { hubs, client } = await start();
      const s = await open(hubs, client);
      const controller = new AbortController();
      // The announcement goes out, but the hub gives up before the agent's stream arrives.
      s.accept({
        announce: async (request) => {
          controller.abort();
          await s.hub.control.send({ frame: { $case: 'openStream', value: { streamId: request.id, kind: request.kind, prelude: Buffer.alloc(0) } } });
        },
      });
      await expect(s.hub.openStream('proxy', controller.signal)).rejects.toMatchObject({ code: ErrorCode.Cancelled });
      expect(codeOf(await s.answerErrors.next())).toBe(ErrorCode.StreamRefused);
      expect(s.hub.openStreams).toBe(0);
    });

    it('closing the agent connection ends all its streams on both sides', async () => {
      const s = await session();
      const pairs = [await agentOpened(s), await agentOpened(s), await hubRequested(s), await hubRequested(s)];
      s.agent.close();
      for (const p of pairs) {
        expect(codeOf(await p.agentEnd.closed)).toBe(ErrorCode.SessionEnded);
        expect([ErrorCode.Cancelled, ErrorCode.SessionEnded]).toContain(codeOf(await p.hubEnd.closed));
        expect(await readError(p.hubEnd)).toBeInstanceOf(HawserError);
      }
      await s.hub.closed;
      expect(s.hub.openStreams).toBe(0);
      expect(s.agent.openStreams).toBe(0);
    });

    it("closing the hub's connection, or only its control stream, ends all streams on both sides", async () => {
      const { hubs, client } = await start();
      for (const how of ['connection', 'control stream'] as const) {
        const s = await open(hubs, client);
        s.accept();
        const pairs = [await agentOpened(s), await hubRequested(s)];
        const reason = new HawserError(ErrorCode.Superseded, 'a newer session took over');
        if (how === 'connection') s.hub.close(reason);
        else s.hub.control.close(reason);
        for (const p of pairs) {
          expect(codeOf(await p.hubEnd.closed)).toBe(ErrorCode.SessionEnded);
          expect(codeOf(await p.agentEnd.closed)).toBe(ErrorCode.SessionEnded);
          expect(codeOf(await readError(p.agentEnd))).toBe(ErrorCode.SessionEnded);
        }
        expect(codeOf(await s.agent.closed)).toBe(ErrorCode.Superseded);
        expect(s.hub.openStreams).toBe(0);
        expect(s.agent.openStreams).toBe(0);
      }
    });

    it('a stream cannot outlive its session: none opens on an ended one, and its token binds nothing', async () => {
      const { hubs, client } = await start();
      const s = await open(hubs, client);
      s.accept();
      const token = await s.agent.sessionToken();
      s.agent.close();
      await s.hub.closed;
      await expect(s.agent.openStream('sync')).rejects.toMatchObject({ code: ErrorCode.SessionEnded });
      await expect(s.hub.openStream('proxy')).rejects.toMatchObject({ code: ErrorCode.SessionEnded });
      const next = await open(hubs, client);
      next.accept();
      await expect(next.agent.openStreamNaming(token, 'sync')).rejects.toMatchObject({ code: ErrorCode.StreamUnbound });
      expect(next.agentStreams.size).toBe(0);
    });

    it("refuses a stream that names another connection's session, counting it", async () => {
      const refused: string[] = [];
      const { hubs, client } = await start({ streamRefused: (error) => refused.push(error.code) });
      const a = await open(hubs, client);
      const b = await open(hubs, transport!.client());
      a.accept();
      b.accept();
      const victim = await b.agent.sessionToken();
      await expect(a.agent.openStreamNaming(victim, 'sync')).rejects.toMatchObject({ code: ErrorCode.StreamUnbound });
      await expect(a.agent.openStreamNaming(randomBytes(16).toString('base64url'), 'sync')).rejects.toMatchObject({
        code: ErrorCode.StreamUnbound,
      });
      expect(refused).toEqual([ErrorCode.StreamUnbound, ErrorCode.StreamUnbound]);
      expect(b.agentStreams.size).toBe(0);
      expect(b.hub.openStreams).toBe(0);
      // Both sessions still work.
      await a.heartbeat(1);
      await b.heartbeat(1);
      const own = await agentOpened(b);
      await own.agentEnd.end();
      await own.hubEnd.end();
      expect(await own.hubEnd.closed).toBeUndefined();
    });

    it('refuses streams the session does not take: before authentication, unasked, or of the wrong kind', async () => {
      const refused: string[] = [];
      const { hubs, client } = await start({ streamRefused: (error) => refused.push(error.code) });
      const s = await open(hubs, client);
      // Not yet authenticated: no acceptStreams.
      await expect(s.agent.openStream('sync')).rejects.toMatchObject({ code: ErrorCode.StreamRefused });
      await expect(s.hub.openStream('proxy')).rejects.toMatchObject({ code: ErrorCode.StreamRefused });
      // Authenticated, but the hub takes no streams it did not ask for.
      s.accept({ onStream: undefined });
      await expect(s.agent.openStream('sync')).rejects.toMatchObject({ code: ErrorCode.StreamRefused });
      // An answer to a request the hub never made, and a bad kind.
      await expect(s.agent.openStream('proxy', undefined, { requestId: 'h999' })).rejects.toMatchObject({ code: ErrorCode.StreamRefused });
      await expect(s.agent.openStream('Not A Kind')).rejects.toMatchObject({ code: ErrorCode.StreamRefused });
      expect(refused).toEqual([ErrorCode.StreamRefused, ErrorCode.StreamRefused, ErrorCode.StreamRefused]);
      // The control stream is untouched.
      await s.heartbeat(7);
    });

    describe('streams the agent opens ahead (a pool)', () => {
      /** A session whose hub holds up to `limit` idle 'proxy' streams; announcements are counted. */
      async function pooledSession(limit: number) {
        const refused: string[] = [];
        const { hubs, client } = await start({ streamRefused: (error) => refused.push(error.code) });
        const s = await open(hubs, client);
        let announced = 0;
        s.accept({
          pools: { proxy: limit },
          announce: (request) => {
            announced++;
            return s.hub.control.send({ frame: { $case: 'openStream', value: { streamId: request.id, kind: request.kind, prelude: Buffer.alloc(0) } } });
          },
        });
        return { ...s, refused, announced: () => announced };
      }

      it('a request takes an idle stream without an announcement, its prelude the first bytes; pooled streams are no open streams', async () => {
        const s = await pooledSession(2);
        const ahead = [await s.agent.openStream('proxy'), await s.agent.openStream('proxy')];
        await waitFor('both pooled on the hub', () => s.hub.pooledStreams === 2);
        expect(s.hub.openStreams).toBe(0);
        // Pooled streams never reach onStream.
        expect(s.agentStreams.size).toBe(0);
        const hubEnd = await s.hub.openStream('proxy', undefined, { prelude: Buffer.from('head:') });
        expect(s.announced()).toBe(0);
        expect(hubEnd.id).toBe(ahead[0]!.id);
        expect(s.hub.pooledStreams).toBe(1);
        expect(s.hub.openStreams).toBe(1);
        await hubEnd.write(Buffer.from('body'));
        await hubEnd.end();
        expect((await readAll(ahead[0]!)).toString()).toBe('head:body');
        await ahead[0]!.write(Buffer.from('answer'));
        await ahead[0]!.end();
        expect((await readAll(hubEnd)).toString()).toBe('answer');
        expect(await hubEnd.closed).toBeUndefined();
        await waitFor('the used stream is freed', () => s.hub.openStreams === 0);
        expect(s.hub.pooledStreams).toBe(1);
      });

      it('a pool that is empty or exhausted by concurrent requests still serves each, by announcement', async () => {
        const s = await pooledSession(2);
        const ahead = [await s.agent.openStream('proxy'), await s.agent.openStream('proxy')];
        await waitFor('both pooled', () => s.hub.pooledStreams === 2);
        const hubEnds = await Promise.all([0, 1, 2, 3].map(() => s.hub.openStream('proxy', undefined, { prelude: Buffer.from('x') })));
        expect(s.announced()).toBe(2);
        expect(new Set(hubEnds.map((h) => h.id)).size).toBe(4);
        const agentEnds = [...ahead, await s.requested.next(), await s.requested.next()];
        for (const [i, hubEnd] of hubEnds.entries()) {
          const agentEnd = agentEnds.find((a) => a.id === hubEnd.id)!;
          await agentEnd.write(Buffer.from(`answer ${i}`));
          await agentEnd.end();
          await hubEnd.end();
          expect((await readAll(hubEnd)).toString()).toBe(`answer ${i}`);
        }
        await waitFor('all freed', () => s.hub.openStreams === 0 && s.agent.openStreams === 0);
        expect(s.hub.pooledStreams).toBe(0);
      });

      it('holds no more idle streams than its limit, refusing the rest with a count', async () => {
        const s = await pooledSession(1);
        await s.agent.openStream('proxy');
        await expect(s.agent.openStream('proxy')).rejects.toMatchObject({ code: ErrorCode.StreamRefused });
        expect(s.refused).toEqual([ErrorCode.StreamRefused]);
        expect(s.hub.pooledStreams).toBe(1);
      });

      it("a taken stream obeys the request's signal; an idle one that ends leaves the pool", async () => {
        const s = await pooledSession(2);
        const first = await s.agent.openStream('proxy');
        const second = await s.agent.openStream('proxy');
        await waitFor('both pooled', () => s.hub.pooledStreams === 2);
        // The agent gives one up while it is idle: the next request gets the other.
        first.abort();
        await waitFor('one left', () => s.hub.pooledStreams === 1);
        const cancel = new AbortController();
        const hubEnd = await s.hub.openStream('proxy', cancel.signal, { prelude: Buffer.from('x') });
        expect(hubEnd.id).toBe(second.id);
        cancel.abort(new HawserError(ErrorCode.Cancelled, 'the client went away'));
        expect(codeOf(await hubEnd.closed)).toBe(ErrorCode.Cancelled);
        expect(codeOf(await second.closed)).toBe(ErrorCode.Cancelled);
        await waitFor('nothing open', () => s.hub.openStreams === 0 && s.agent.openStreams === 0);
      });

      it('idle streams close with their session, on both sides, and the gauges return to 0', async () => {
        const s = await pooledSession(4);
        const ahead = await Promise.all([0, 1, 2].map(() => s.agent.openStream('proxy')));
        await waitFor('pooled', () => s.hub.pooledStreams === 3);
        s.hub.close(new HawserError(ErrorCode.Superseded, 'a newer session took over'));
        for (const a of ahead) expect(codeOf(await a.closed)).toBe(ErrorCode.SessionEnded);
        expect(s.hub.pooledStreams).toBe(0);
        expect(s.hub.openStreams).toBe(0);
        await waitFor('agent streams freed', () => s.agent.openStreams === 0);
      });
    });
  });
}
