import type { Logger } from 'pino';
import { boundedText, quoteBounded } from '../api/core.js';
import {
  agentFramePriority,
  type AgentChannel,
  type AgentConnection,
  type AgentOpenStreamOptions,
  type ClientTransport,
  type ConnectionClientTransport,
  type Clock,
  ErrorCode,
  HawserError,
  isErrorCode,
  type Negotiated,
  PrioritySender,
  type TimerHandle,
  toHawserError,
  wire,
} from '../tunnel/index.js';
import type { Handshake } from './handshake.js';
import { Heartbeater, type HeartbeatTiming } from './heartbeater.js';
import type { SessionProgress } from './reconnect.js';
import { type AgentFrameHandler, type AgentHandlerFactory, type AgentSessionContext, AgentSessionRouter, type HubFrame, type UnhandledFrameCounts } from './router.js';
import type { SyncResume } from './sync-state.js';

// One stream from dial to close: hello, then registering (maybe pending)
// until the welcome, then every frame through the session router. Returns
// why the stream ended; the reconnect loop decides what comes next.

/** The welcomed session, as the agent and its handlers see it. */
export interface AgentSession extends AgentSessionContext {
  readonly since: number;
}

export interface SessionDeps {
  transport: ClientTransport;
  handshake: Handshake;
  logger: Logger;
  clock: Clock;
  registerTimeoutMs: number;
  /** The heartbeat timing for a welcome's interval. */
  heartbeatTiming(hubIntervalMs: number): HeartbeatTiming;
  readStatus(previous: wire.ClusterStatus | undefined): Promise<wire.ClusterStatus>;
  recordRtt(ms: number): void;
  /** Read at every hello. */
  readSyncState(): Promise<SyncResume>;
  handlers: readonly AgentHandlerFactory[];
  unhandled: UnhandledFrameCounts;
  /** The stream in use, so stop() can close it; undefined once it ended. */
  onChannel(channel: AgentChannel | undefined): void;
  /** The welcomed session; undefined once it ended. */
  onSession(session: AgentSession | undefined): void;
}

function goodbyeError(goodbye: wire.Goodbye): HawserError {
  return new HawserError(
    isErrorCode(goodbye.code) ? goodbye.code : ErrorCode.Unavailable,
    // The hub's words, bounded: they reach this agent's logs.
    boundedText(goodbye.message, 1024),
    { retryAfterMs: goodbye.retryAfterMs },
  );
}

export async function runSession(deps: SessionDeps, progress: SessionProgress): Promise<HawserError> {
  const { handshake, logger, clock } = deps;
  const refusal = handshake.cannotDial();
  if (refusal) return refusal;
  const sync = await deps.readSyncState();
  // A transport whose connections carry request streams (proxy) hands over the connection too.
  const connection = 'connect' in deps.transport ? (deps.transport as ConnectionClientTransport).connect() : undefined;
  const channel = connection?.control ?? deps.transport.open();
  deps.onChannel(channel);
  let registerTimer: TimerHandle | undefined;
  let renewTimer: TimerHandle | undefined;
  let router: AgentSessionRouter | undefined;
  let goodbye: HawserError | undefined;
  let local: HawserError | undefined;
  const early = new Set<string>();
  const fail = (error: HawserError) => {
    local ??= error;
    channel.close(error);
  };
  try {
    progress.registering();
    registerTimer = clock.setTimeout(
      () => fail(new HawserError(ErrorCode.RegistrationTimeout, `hub did not answer hello within ${deps.registerTimeoutMs}ms`)),
      deps.registerTimeoutMs,
    );
    await channel.send(handshake.helloFrame(sync)).catch((err: unknown) => fail(toHawserError(err, ErrorCode.Unavailable)));
    for await (const inbound of channel.frames()) {
      if (!inbound.ok) {
        fail(inbound.error);
        break;
      }
      const frame: HubFrame = inbound.frame.frame!;
      // The end of a session is the session's own business, before and after the welcome.
      if (frame.$case === 'goodbye') {
        goodbye = goodbyeError(frame.value);
        continue;
      }
      if (router) {
        const error = router.route(frame, inbound.bytes);
        if (error) fail(error);
        continue;
      }
      switch (frame.$case) {
        case 'registrationPending':
          registerTimer.cancel();
          logger.warn({ request: quoteBounded(frame.value.requestName, 128) }, `registration pending: ${quoteBounded(frame.value.message)}`);
          progress.registering(frame.value.requestName);
          break;
        case 'welcome': {
          registerTimer.cancel();
          const taken = await handshake.welcomed(frame.value);
          if ('error' in taken) {
            fail(taken.error);
            break;
          }
          renewTimer = handshake.scheduleRenewal(() => fail(new HawserError(ErrorCode.Unavailable, 'reconnecting to renew the cluster credential')));
          progress.ready(frame.value.clusterName);
          router = startRouting(deps, channel, connection, frame.value, taken.negotiated, fail);
          break;
        }
        case 'trustBundle':
          await handshake.adoptTrustBundle(frame.value);
          break;
        default:
          // Nothing else means anything before the welcome: counted, and logged once per kind.
          deps.unhandled.set(frame.$case, (deps.unhandled.get(frame.$case) ?? 0) + 1);
          if (!early.has(frame.$case)) logger.warn({ frame: frame.$case }, 'ignoring a frame from the hub before the welcome');
          early.add(frame.$case);
      }
    }
    const closedWith = await channel.closed;
    const error = goodbye ?? local ?? closedWith ?? new HawserError(ErrorCode.Unavailable, 'hub ended the stream');
    handshake.ended(error);
    return error;
  } catch (err) {
    channel.close();
    return toHawserError(err, ErrorCode.Unavailable);
  } finally {
    registerTimer?.cancel();
    renewTimer?.cancel();
    await router?.close();
    deps.onSession(undefined);
    deps.onChannel(undefined);
  }
}

/**
 * An apply report this large (hundreds of objects) takes seconds of a slow
 * link: the next one waits until the hub has it, so the socket never holds
 * more than one ahead of a heartbeat.
 */
const reportPaceBytes = 16 * 1024;
/** A transfer's acks this close together are one transfer: reports wait for its end. */
const reportQuietMs = 1_000;

/** The welcomed session: its handlers (heartbeats first, then every registered one) behind one router. */
function startRouting(
  deps: SessionDeps,
  channel: AgentChannel,
  connection: AgentConnection | undefined,
  welcome: wire.Welcome,
  negotiated: Negotiated,
  fail: (error: HawserError) => void,
): AgentSessionRouter {
  const ending = new AbortController();
  void channel.closed.then(() => ending.abort());
  // Heartbeats never wait behind apply reports queued here (src/tunnel/queue.ts);
  // a large report holds the next until a heartbeat sent after it is acked, and
  // a newer report replaces one still queued.
  const sender = new PrioritySender<wire.ConnectRequest>((frame) => channel.send(frame), agentFramePriority, {
    pacing: { paceBytes: reportPaceBytes, bytesOut: () => channel.bytesOut },
    // Reports wait for a pause in a transfer: they would hold its acks back on a slow link.
    quiet: {
      busy: (frame) => frame.frame?.$case === 'syncAck' || frame.frame?.$case === 'syncChunkAck',
      holds: (frame) => frame.frame?.$case === 'applyReport' && wire.ConnectRequest.encode(frame).finish().length >= reportPaceBytes,
      quietMs: reportQuietMs,
      clock: deps.clock,
    },
    supersedes: (older, newer) => older.frame?.$case === 'applyReport' && newer.frame?.$case === 'applyReport',
  });
  void channel.closed.then((error) => sender.close(error ?? new HawserError(ErrorCode.Unavailable, 'session ended')));
  const session: AgentSession = {
    clusterName: welcome.clusterName,
    negotiated,
    since: deps.clock.now(),
    send: (frame) => sender.send(frame),
    ended: ending.signal,
  };
  if (connection) {
    // Defined, not spread: openStreams is read live.
    Object.defineProperties(session, {
      openStream: { value: (kind: string, signal?: AbortSignal, options?: AgentOpenStreamOptions) => connection.openStream(kind, signal, options) },
      openStreams: { get: () => connection.openStreams },
    });
  }
  const heartbeater = new Heartbeater(
    {
      send: (heartbeat) => sender.send({ frame: { $case: 'heartbeat', value: heartbeat } }),
      readStatus: (previous) => deps.readStatus(previous),
      clock: deps.clock,
      fail,
      rtt: (ms) => {
        sender.urgentAcked();
        deps.recordRtt(ms);
      },
    },
    deps.heartbeatTiming(welcome.heartbeatIntervalMs),
  );
  const trustBundles: AgentFrameHandler = {
    name: 'trust-bundle',
    kinds: ['trustBundle'],
    // Pushed on rotation steps only; more waiting than this is a hub misbehaving.
    queueLimit: 16,
    handle: (frame) => (frame.$case === 'trustBundle' ? deps.handshake.adoptTrustBundle(frame.value) : undefined),
  };
  const router = new AgentSessionRouter([heartbeater, trustBundles, ...deps.handlers.map((build) => build(session))], {
    fail,
    logger: deps.logger,
    unhandled: deps.unhandled,
  });
  deps.onSession(session);
  heartbeater.start();
  return router;
}
