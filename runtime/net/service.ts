// Request/response protocols over long-lived channels: ProtocolService serves one protocol,
// openChannel() is its client. Built like js-libp2p's services (components + init, start/stop).
//
// Opening a channel costs one extra half round trip: the service answers with an accept frame (or
// an error frame saying why it refuses), so openChannel() fails fast and typed instead of the
// first receive() failing later. Sessions are long, so this is paid once per session.
import type { ComponentLogger, Connection, DialTarget, Logger, PeerId, Startable, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import {
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CONCURRENT_CHANNELS,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_INBOUND_STREAMS,
  DEFAULT_MAX_OUTBOUND_STREAMS,
  DEFAULT_OPEN_TIMEOUT_MS,
  DEFAULT_RECEIVE_TIMEOUT_MS,
} from './constants.ts';
import {
  ChannelClosedError,
  ChannelResetError,
  ChannelTimeoutError,
  NetConfigError,
  PeerRefusedError,
  PeerUnreachableError,
  ProtocolNotSupportedError,
  ServiceBusyError,
  isConnectionLoss,
} from './errors.ts';
import { FrameChannel, checkMaxFrameBytes } from './framing.ts';
import type { Roster } from './roster.ts';

/** What a service needs from libp2p (the node itself, or its registrar component). */
export interface ServiceRegistrar {
  handle(protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>;
  unhandle(protocol: string): Promise<void>;
}

export interface ProtocolServiceComponents {
  registrar: ServiceRegistrar;
  logger: ComponentLogger;
}

/** Called once per channel; the channel is closed when it returns (reset if it throws). */
export type ChannelHandler = (channel: FrameChannel, remotePeer: PeerId, connection: Connection) => Promise<void> | void;

export interface ServeOptions {
  /**
   * Serve only peers that are trusted on `roster` (checked when each channel opens). Others get
   * an error frame (PeerRefusedError) and a reset. Cloud protocols use trusted: false.
   */
  trusted: boolean;
  roster?: Roster;
  /** Largest frame in either direction. Default DEFAULT_MAX_FRAME_BYTES (16 MiB). */
  maxFrameBytes?: number;
  /** Streams of this protocol one connection may have open (libp2p resets extra ones). */
  maxInboundStreams?: number;
  maxOutboundStreams?: number;
  /** Channels served at once across all connections; extra ones get ServiceBusyError. */
  maxConcurrentChannels?: number;
  /** A channel whose peer sends nothing for this long (while the handler waits) is closed. */
  idleTimeoutMs?: number;
  /** How long a send may wait on backpressure. */
  sendTimeoutMs?: number;
  /** Pause reading a channel above this many unread bytes (default max(4 MiB, maxFrameBytes)). */
  highWaterBytes?: number;
}

export interface ProtocolServiceInit extends ServeOptions {
  protocol: string;
  handler: ChannelHandler;
}

export class ProtocolService implements Startable {
  readonly protocol: string;
  private readonly components: ProtocolServiceComponents;
  private readonly init: Required<Omit<ProtocolServiceInit, 'roster' | 'sendTimeoutMs' | 'highWaterBytes'>> & Pick<ProtocolServiceInit, 'roster' | 'sendTimeoutMs' | 'highWaterBytes'>;
  private readonly log: Logger;
  private readonly active = new Set<FrameChannel>();
  private started = false;

  constructor(components: ProtocolServiceComponents, init: ProtocolServiceInit) {
    if (init.trusted && init.roster == null) throw new NetConfigError(`trusted protocol ${init.protocol} needs a roster`);
    if (!init.protocol.startsWith('/')) throw new NetConfigError(`protocol id must start with '/': ${init.protocol}`);
    this.components = components;
    this.protocol = init.protocol;
    this.init = {
      ...init,
      maxFrameBytes: checkMaxFrameBytes(init.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES),
      maxInboundStreams: init.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS,
      maxOutboundStreams: init.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS,
      maxConcurrentChannels: init.maxConcurrentChannels ?? DEFAULT_MAX_CONCURRENT_CHANNELS,
      idleTimeoutMs: init.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    };
    this.log = components.logger.forComponent(`hush:net:service:${init.protocol}`);
  }

  readonly [Symbol.toStringTag] = 'hush:ProtocolService';

  async start(): Promise<void> {
    if (this.started) return;
    await this.components.registrar.handle(this.protocol, this.handleStream, {
      maxInboundStreams: this.init.maxInboundStreams,
      maxOutboundStreams: this.init.maxOutboundStreams,
    });
    this.started = true;
  }

  /** Stop serving: unregister and reset every open channel. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.components.registrar.unhandle(this.protocol);
    for (const channel of this.active) channel.abort(new ChannelResetError('service stopped'));
    this.active.clear();
  }

  isStarted(): boolean {
    return this.started;
  }

  /** Channels being served now. */
  get activeChannels(): number {
    return this.active.size;
  }

  /** Reset every channel this service serves to `peer` (e.g. after a revocation). */
  dropPeer(peer: PeerId | string): void {
    const id = peer.toString();
    for (const channel of this.active) {
      if (channel.remotePeer?.toString() === id) channel.abort(new PeerRefusedError('peer is no longer trusted'));
    }
  }

  private readonly handleStream = async (stream: Stream, connection: Connection): Promise<void> => {
    const remotePeer = connection.remotePeer;
    const channel = new FrameChannel(stream, {
      maxFrameBytes: this.init.maxFrameBytes,
      receiveTimeoutMs: this.init.idleTimeoutMs,
      ...(this.init.sendTimeoutMs == null ? {} : { sendTimeoutMs: this.init.sendTimeoutMs }),
      ...(this.init.highWaterBytes == null ? {} : { highWaterBytes: this.init.highWaterBytes }),
      remotePeer,
      protocol: this.protocol,
      log: this.log,
    });
    // Re-checked per channel, whatever the gater let in: a peer admitted only for pairing, or one
    // revoked since its connection opened, is refused here.
    if (this.init.trusted && this.init.roster?.isTrusted(remotePeer) !== true) {
      this.log('refusing %p: not trusted', remotePeer);
      await channel.fail(new PeerRefusedError(`this device does not trust ${remotePeer.toString()} (not on its roster, expired or revoked)`));
      return;
    }
    if (this.active.size >= this.init.maxConcurrentChannels) {
      this.log('refusing %p: %d channels already open', remotePeer, this.active.size);
      await channel.fail(new ServiceBusyError(`${this.protocol} already serves ${this.active.size} channels`));
      return;
    }
    this.active.add(channel);
    try {
      await channel.sendAccept();
      await this.init.handler(channel, remotePeer, connection);
      await channel.close();
    } catch (err) {
      if (err instanceof ChannelClosedError || isConnectionLoss(err)) this.log('channel from %p ended: %s', remotePeer, (err as Error).message);
      else if (err instanceof ChannelTimeoutError) this.log('channel from %p idle: %s', remotePeer, err.message);
      else this.log.error('handler for %p failed - %e', remotePeer, err);
      await channel.fail(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.active.delete(channel);
    }
  };
}

/** What openChannel needs from libp2p: the node (or anything that dials like it). */
export interface ChannelDialer {
  dial(target: DialTarget, options?: { signal?: AbortSignal }): Promise<Connection>;
}

/** A PeerId (object or text), a multiaddr (object or text, ideally ending in /p2p/<id>), or several addresses. */
export type ChannelTarget = PeerId | Multiaddr | string | Array<Multiaddr | string>;

export interface OpenChannelOptions {
  signal?: AbortSignal;
  /** Dial + negotiation + accept. Default DEFAULT_OPEN_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Must match (or be below) the service's limit. Default DEFAULT_MAX_FRAME_BYTES. */
  maxFrameBytes?: number;
  /** Default timeout of receive() on the channel (DEFAULT_RECEIVE_TIMEOUT_MS). */
  receiveTimeoutMs?: number;
  sendTimeoutMs?: number;
  /** Pause reading above this many unread bytes (default max(4 MiB, maxFrameBytes)). */
  highWaterBytes?: number;
  maxOutboundStreams?: number;
  log?: Logger;
}

export function toDialTarget(target: ChannelTarget): DialTarget {
  if (Array.isArray(target)) return target.map((t) => (typeof t === 'string' ? multiaddr(t) : t));
  if (typeof target === 'string') return target.startsWith('/') ? multiaddr(target) : peerIdFromString(target);
  return target;
}

function describeTarget(target: DialTarget): string {
  if (Array.isArray(target)) return target.map(String).join(', ');
  return target.toString();
}

/** Turn libp2p's dial and negotiation failures into typed Hush errors. */
export function mapDialError(err: unknown, target: DialTarget, protocol: string): Error {
  // Some libp2p paths (p-event with rejectionEvents) reject with the stream's 'close' Event itself.
  if (err instanceof Event) {
    const inner = (err as Event & { error?: unknown }).error;
    if (inner != null) return mapDialError(inner, target, protocol);
    err = Object.assign(new Error(`stream ${err.type} during ${protocol}`), { name: 'StreamClosedError' });
  }
  const e = err as Error & { errors?: unknown[] };
  const name = e?.name;
  const who = describeTarget(target);
  if (name === 'DialDeniedError') return withCause(new PeerRefusedError(`refused by this device: ${who} is revoked`), err);
  if (name === 'UnsupportedProtocolError') return withCause(new ProtocolNotSupportedError(`${who} does not serve ${protocol}`), err);
  if (name === 'UnexpectedEOFError' || name === 'ConnectionClosedError' || name === 'ConnectionClosingError' || name === 'StreamResetError' || name === 'MuxerClosedError' || name === 'StreamClosedError' || name === 'StreamStateError') {
    // libp2p reports a peer whose connection gater refused us as an unexpected end of stream.
    return withCause(new PeerRefusedError(`${who} closed the connection during the handshake: it does not accept this device (not paired, or revoked), or it went away`), err);
  }
  if (name === 'AggregateError' && Array.isArray(e.errors) && e.errors.length > 0) return mapDialError(e.errors[0], target, protocol);
  if (name === 'NoValidAddressesError') return withCause(new PeerUnreachableError(`no known address for ${who}: it is not connected and was not discovered; dial a multiaddr`), err);
  const code = (e as { code?: unknown })?.code;
  if (name === 'DialError' || /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|EADDRNOTAVAIL/.test(`${String(code)} ${e?.message ?? ''}`)) {
    return withCause(new PeerUnreachableError(`cannot reach ${who}: ${e?.message ?? name}`), err);
  }
  return e instanceof Error ? e : new Error(String(err));
}

function withCause<T extends Error>(err: T, cause: unknown): T {
  (err as { cause?: unknown }).cause = cause;
  return err;
}

/**
 * Open a channel to `protocol` on `target`: dial (or reuse a connection), negotiate, wait for the
 * service's accept. Typed failures: PeerRefusedError, ProtocolNotSupportedError, ServiceBusyError,
 * ChannelTimeoutError.
 */
export async function openChannel(node: ChannelDialer, target: ChannelTarget, protocol: string, options: OpenChannelOptions = {}): Promise<FrameChannel> {
  const dialTarget = toDialTarget(target);
  const timeoutMs = options.timeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal == null ? timeout : AbortSignal.any([options.signal, timeout]);
  const timedOut = (): boolean => timeout.aborted && options.signal?.aborted !== true;
  let stream: Stream;
  let connection: Connection;
  try {
    connection = await node.dial(dialTarget, { signal });
    stream = await connection.newStream(protocol, {
      signal,
      maxOutboundStreams: options.maxOutboundStreams ?? DEFAULT_MAX_OUTBOUND_STREAMS,
    });
  } catch (err) {
    if (timedOut()) throw withCause(new ChannelTimeoutError(`opening ${protocol} on ${describeTarget(dialTarget)} took more than ${timeoutMs} ms`), err);
    throw mapDialError(err, dialTarget, protocol);
  }
  const channel = new FrameChannel(stream, {
    maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    receiveTimeoutMs: options.receiveTimeoutMs ?? DEFAULT_RECEIVE_TIMEOUT_MS,
    ...(options.sendTimeoutMs == null ? {} : { sendTimeoutMs: options.sendTimeoutMs }),
    ...(options.highWaterBytes == null ? {} : { highWaterBytes: options.highWaterBytes }),
    remotePeer: connection.remotePeer,
    protocol,
    ...(options.log == null ? {} : { log: options.log }),
  });
  try {
    await channel.receiveAccept({ signal, timeoutMs: 0 });
    return channel;
  } catch (err) {
    channel.abort(err instanceof Error ? err : new Error(String(err)));
    if (timedOut()) throw withCause(new ChannelTimeoutError(`${protocol} on ${connection.remotePeer.toString()} did not accept within ${timeoutMs} ms`), err);
    // Our services always answer accept or an error frame. A clean close without either comes
    // from libp2p itself: more streams of this protocol on the connection than maxInboundStreams.
    if (err instanceof ChannelClosedError) {
      throw withCause(new ServiceBusyError(`${connection.remotePeer.toString()} closed ${protocol} before accepting it: too many streams of it on one connection, or the service is stopping`), err);
    }
    if (err instanceof ChannelResetError) {
      throw withCause(new ChannelResetError(`${connection.remotePeer.toString()} reset ${protocol} before accepting it (it went away?)`), err);
    }
    throw err;
  }
}
