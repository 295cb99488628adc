// A Hush libp2p node: TCP + Noise + Yamux, identify, ping, optional mDNS, the connection gater of
// its role, and for devices the pairing and roster-sync services. See gater.ts for who may
// connect, pairing.ts for how devices pair, roster-sync.ts for how revocations spread.
import '../polyfill.ts';
import { hostname } from 'node:os';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify, type Identify } from '@libp2p/identify';
import { defaultLogger } from '@libp2p/logger';
import type { ComponentLogger, Connection, Libp2p, Logger, PeerId, PeerInfo, PrivateKey } from '@libp2p/interface';
import { mdns } from '@libp2p/mdns';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { ping, type Ping } from '@libp2p/ping';
import { tcp } from '@libp2p/tcp';
import type { Multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import {
  DEFAULT_DIAL_TIMEOUT_MS,
  DEFAULT_INBOUND_CONNECTION_THRESHOLD,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_OPEN_TIMEOUT_MS,
  MDNS_SERVICE_TAG,
  UNPAIRED_CONNECTION_GRACE_MS,
  UNTRUSTED_SWEEP_INTERVAL_MS,
  YAMUX_MAX_STREAM_WINDOW_BYTES,
  pausedStreamReadBufferBytes,
} from './constants.ts';
import { ChannelTimeoutError, NetConfigError, PeerRefusedError } from './errors.ts';
import type { FrameChannel } from './framing.ts';
import { createCloudGater, createDeviceGater } from './gater.ts';
import { InviteBook, PairingService, type ConfirmPairing, type Invite, type JoinOptions, type PairingPeerInfo } from './pairing.ts';
import type { CloudList, Roster, RosterChange } from './roster.ts';
import { RosterSyncService, type PushResult } from './roster-sync.ts';
import {
  ProtocolService,
  mapDialError,
  openChannel,
  toDialTarget,
  type ChannelHandler,
  type ChannelTarget,
  type OpenChannelOptions,
  type ServeOptions,
} from './service.ts';

export type HushRole = 'device' | 'cloud';

export type HushServices = {
  identify: Identify;
  ping: Ping;
};

export interface HushNodeInit {
  privateKey: PrivateKey;
  role: HushRole;
  /** Listen multiaddrs, e.g. ['/ip4/0.0.0.0/tcp/4801'] (tests: '/ip4/127.0.0.1/tcp/0'). */
  listen: string[];
  /** Addresses to advertise instead of the listen ones (NAT, port forwards). */
  announce?: string[];
  /** Discover devices on the LAN (devices only; dials trusted ones it finds). */
  mdns?: boolean | { interval?: number; serviceTag?: string };
  /** Required for role 'device'. */
  roster?: Roster;
  /** Cloud peers this device uses; they can never pair with it. */
  clouds?: CloudList;
  /** Device name shown to the other side when pairing (default: host name). */
  name?: string;
  /** Inviter-side pairing confirmation (default: accept, as with CLI --yes). */
  confirmPairing?: ConfirmPairing;
  confirmTimeoutMs?: number;
  /** Add devices introduced by trusted devices' rosters (default true). */
  acceptIntroductions?: boolean;
  /** Cloud role: refuse these peers at the handshake. */
  denyPeer?(peerId: PeerId): boolean;
  connectionManager?: { maxConnections?: number; inboundConnectionThreshold?: number; dialTimeout?: number };
  /** Largest yamux window per stream (default YAMUX_MAX_STREAM_WINDOW_BYTES). */
  streamWindowBytes?: number;
  logger?: ComponentLogger;
}

export interface HandleOptions extends Partial<ServeOptions> {}

/** One Hush peer on the network. `libp2p` is the underlying node for anything not wrapped here. */
export class HushNode {
  readonly libp2p: Libp2p<HushServices>;
  readonly role: HushRole;
  readonly peerId: PeerId;
  readonly roster: Roster | undefined;
  readonly clouds: CloudList | undefined;
  readonly invites: InviteBook | undefined;
  readonly pairing: PairingService | undefined;
  readonly rosterSync: RosterSyncService | undefined;
  private readonly log: Logger;
  private readonly services = new Map<string, ProtocolService>();
  private readonly discoveryDials = new Set<string>();
  private sweepTimer: ReturnType<typeof setInterval> | undefined;
  private stopped = false;

  /** Use createHushNode(). */
  constructor(libp2p: Libp2p<HushServices>, init: HushNodeInit, invites: InviteBook | undefined) {
    this.libp2p = libp2p;
    this.role = init.role;
    this.peerId = libp2p.peerId;
    this.roster = init.roster;
    this.clouds = init.clouds;
    this.invites = invites;
    this.log = libp2p.logger.forComponent('hush:net:node');
    if (init.role === 'device') {
      const roster = init.roster!;
      this.pairing = new PairingService(
        { registrar: libp2p, dialer: libp2p, logger: libp2p.logger, peerId: libp2p.peerId, getMultiaddrs: () => libp2p.getMultiaddrs(), hangUp: (p) => libp2p.hangUp(p) },
        {
          roster,
          invites: invites!,
          deviceName: init.name ?? hostname(),
          ...(init.confirmPairing == null ? {} : { confirm: init.confirmPairing }),
          ...(init.confirmTimeoutMs == null ? {} : { confirmTimeoutMs: init.confirmTimeoutMs }),
          isCloudPeer: (p) => init.clouds?.isCloudPeer(p) === true,
        },
      );
      this.rosterSync = new RosterSyncService(
        { registrar: libp2p, dialer: libp2p, logger: libp2p.logger, peerId: libp2p.peerId, getConnectedPeers: () => libp2p.getPeers() },
        { roster, ...(init.acceptIntroductions == null ? {} : { acceptIntroductions: init.acceptIntroductions }) },
      );
    }
  }

  /** @internal */
  async startServices(): Promise<void> {
    if (this.role === 'device') {
      await this.pairing!.start();
      await this.rosterSync!.start();
      this.roster!.addEventListener('change', this.onRosterChange);
      this.libp2p.addEventListener('peer:connect', this.onPeerConnect);
      this.libp2p.addEventListener('peer:discovery', this.onPeerDiscovery);
      this.sweepTimer = setInterval(() => this.sweepUntrusted(), UNTRUSTED_SWEEP_INTERVAL_MS);
      this.sweepTimer.unref?.();
    }
  }

  /**
   * Close connections a device should not hold: to peers on the roster that are no longer
   * trusted (expired; revoked ones are dropped at once), and inbound ones from unknown peers older
   * than the pairing grace. Outbound connections to unknown peers (cloud peers) stay. Runs every
   * UNTRUSTED_SWEEP_INTERVAL_MS; returns how many it closed.
   */
  sweepUntrusted(now = Date.now()): number {
    if (this.roster == null || this.stopped) return 0;
    let closed = 0;
    for (const connection of this.libp2p.getConnections()) {
      const peer = connection.remotePeer;
      if (this.roster.isTrusted(peer)) continue;
      const known = this.roster.get(peer) != null;
      const stale = connection.direction === 'inbound' && now - connection.timeline.open > UNPAIRED_CONNECTION_GRACE_MS;
      if (!known && !stale) continue;
      this.log('closing connection to untrusted %p (%s)', peer, known ? 'no longer trusted' : 'unpaired');
      connection.close().catch((err: Error) => connection.abort(err));
      closed++;
    }
    return closed;
  }

  getMultiaddrs(): Multiaddr[] {
    return this.libp2p.getMultiaddrs();
  }

  /**
   * Serve `protocol`: `handler(channel, remotePeer, connection)` runs once per channel, for as many
   * frames as it likes. Devices serve trusted protocols by default (roster checked per channel);
   * a cloud node can only serve untrusted ones (trusted: false).
   */
  async handle(protocol: string, options: HandleOptions, handler: ChannelHandler): Promise<ProtocolService> {
    const trusted = options.trusted ?? this.role === 'device';
    if (trusted && this.roster == null) throw new NetConfigError(`a ${this.role} node has no roster, so it cannot serve trusted protocol ${protocol}`);
    if (this.services.has(protocol)) throw new NetConfigError(`${protocol} is already served`);
    const service = new ProtocolService(
      { registrar: this.libp2p, logger: this.libp2p.logger },
      { ...options, trusted, ...(trusted ? { roster: this.roster! } : {}), protocol, handler },
    );
    await service.start();
    this.services.set(protocol, service);
    return service;
  }

  async unhandle(protocol: string): Promise<void> {
    const service = this.services.get(protocol);
    if (service == null) return;
    this.services.delete(protocol);
    await service.stop();
  }

  /** Open a channel to `protocol` on `target` (PeerId, multiaddr with /p2p, or addresses). */
  openChannel(target: ChannelTarget, protocol: string, options: OpenChannelOptions = {}): Promise<FrameChannel> {
    return openChannel(this.libp2p, target, protocol, options);
  }

  /**
   * Dial `target` and make sure it really admits us (a refused dial can look successful until the
   * first stream): pings over the new connection. Throws PeerRefusedError if refused.
   */
  async connect(target: ChannelTarget, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<Connection> {
    const dialTarget = toDialTarget(target);
    const timeoutMs = options.timeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = options.signal == null ? timeout : AbortSignal.any([options.signal, timeout]);
    try {
      const connection = await this.libp2p.dial(dialTarget, { signal });
      await this.libp2p.services.ping.ping(connection.remotePeer, { signal });
      return connection;
    } catch (err) {
      if (timeout.aborted && options.signal?.aborted !== true) throw Object.assign(new ChannelTimeoutError(`connecting to ${String(dialTarget)} took more than ${timeoutMs} ms`), { cause: err });
      throw mapDialError(err, dialTarget, 'connection');
    }
  }

  /** Issue a one-time pairing invite (devices). */
  createInvite(options: { validForMs?: number; multiaddrs?: Array<Multiaddr | string> } = {}): Invite {
    return this.requirePairing().createInvite(options);
  }

  /** Pair with the device that issued `code` (devices). */
  join(code: string, options: JoinOptions = {}): Promise<PairingPeerInfo> {
    return this.requirePairing().join(code, options);
  }

  /**
   * Revoke a device: refused from now on here, hung up on, and pushed to every online trusted
   * device (which do the same). Resolves with the push results.
   */
  async revoke(peer: PeerId | string): Promise<PushResult[]> {
    if (this.roster == null || this.rosterSync == null) throw new NetConfigError('only devices have a roster');
    await this.roster.revoke(peer);
    return await this.rosterSync.flush();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.sweepTimer != null) clearInterval(this.sweepTimer);
    this.roster?.removeEventListener('change', this.onRosterChange);
    this.libp2p.removeEventListener('peer:connect', this.onPeerConnect);
    this.libp2p.removeEventListener('peer:discovery', this.onPeerDiscovery);
    for (const service of this.services.values()) await service.stop().catch(() => {});
    this.services.clear();
    await this.rosterSync?.stop().catch(() => {});
    await this.pairing?.stop().catch(() => {});
    await this.libp2p.stop();
  }

  /**
   * mDNS (or any discovery) found a peer. libp2p 3 does not dial discovered peers by itself; we
   * dial trusted ones only (no connections to strangers, no ghost devices). Both sides may dial
   * at once: libp2p keeps both connections and streams use either.
   */
  onPeerDiscovered(info: PeerInfo): void {
    const id = info.id.toString();
    if (this.stopped || this.roster?.isTrusted(info.id) !== true) return;
    if (this.libp2p.getConnections(info.id).length > 0 || this.discoveryDials.has(id)) return;
    this.discoveryDials.add(id);
    const target = info.multiaddrs.length > 0 ? info.multiaddrs.map((a) => (a.getComponents().some((c) => c.name === 'p2p') ? a : a.encapsulate(`/p2p/${id}`))) : info.id;
    this.libp2p
      .dial(target, { signal: AbortSignal.timeout(DEFAULT_DIAL_TIMEOUT_MS) })
      .then(() => this.log('connected to discovered device %p', info.id))
      .catch((err: Error) => this.log('dial to discovered device %p failed: %s', info.id, err.message))
      .finally(() => this.discoveryDials.delete(id));
  }

  private requirePairing(): PairingService {
    if (this.pairing == null) throw new NetConfigError('only devices pair');
    return this.pairing;
  }

  private readonly onPeerDiscovery = (evt: CustomEvent<PeerInfo>): void => {
    this.onPeerDiscovered(evt.detail);
  };

  private readonly onPeerConnect = (evt: CustomEvent<PeerId>): void => {
    this.rosterSync?.onPeerConnected(evt.detail);
  };

  private readonly onRosterChange = (evt: CustomEvent<RosterChange>): void => {
    const change = evt.detail;
    if (this.roster?.isTrusted(change.peerId) === true) return;
    // Revoked, removed or expired: drop whatever connection it still has. A revoked peer is cut
    // off at once (abort, no graceful close), the others are closed politely.
    for (const service of this.services.values()) service.dropPeer(change.peerId);
    const revoked = this.roster?.isRevoked(change.peerId) === true;
    for (const connection of this.libp2p.getConnections()) {
      if (connection.remotePeer.toString() !== change.peerId) continue;
      this.log('dropping connection to %p (%s)', connection.remotePeer, change.type);
      if (revoked) connection.abort(new PeerRefusedError('peer was revoked'));
      else connection.close().catch((err: Error) => connection.abort(err));
    }
  };
}

/** Create and start a Hush node. */
export async function createHushNode(init: HushNodeInit): Promise<HushNode> {
  if (init.role !== 'device' && init.role !== 'cloud') throw new NetConfigError(`unknown role ${String(init.role)}`);
  if (init.role === 'device' && init.roster == null) throw new NetConfigError('a device node needs a roster');
  if (init.role === 'cloud' && init.roster != null) throw new NetConfigError('a cloud node has no roster: cloud peers are never trusted');
  if (init.privateKey.type !== 'Ed25519') throw new NetConfigError('Hush identities are Ed25519 keys');
  if (init.listen.length === 0) throw new NetConfigError('listen needs at least one address');
  const invites = init.role === 'device' ? new InviteBook() : undefined;
  const selfId = peerIdFromPrivateKey(init.privateKey);
  init.roster?.bindSelf(selfId);
  const gaterLog = (init.logger ?? defaultLogger()).forComponent('hush:net:gater');
  const connectionGater =
    init.role === 'device'
      ? createDeviceGater({ roster: init.roster!, invites: invites!, log: gaterLog })
      : createCloudGater({ ...(init.denyPeer == null ? {} : { deny: init.denyPeer }), log: gaterLog });
  const windowBytes = init.streamWindowBytes ?? YAMUX_MAX_STREAM_WINDOW_BYTES;
  // yamux's own floor is its 256 KiB initial window.
  if (!Number.isInteger(windowBytes) || windowBytes < 256 * 1024 || windowBytes > 64 * 1024 * 1024) throw new NetConfigError('streamWindowBytes must be in [256 KiB, 64 MiB]');
  const useMdns = init.role === 'device' && init.mdns != null && init.mdns !== false;
  const mdnsInit = typeof init.mdns === 'object' ? init.mdns : {};
  const libp2p = await createLibp2p<HushServices>({
    privateKey: init.privateKey,
    addresses: { listen: init.listen, ...(init.announce == null ? {} : { announce: init.announce }) },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [
      yamux({
        streamOptions: {
          maxStreamWindowSize: windowBytes,
          // A paused channel may hold up to one window; the default 4 MiB would reset the stream.
          maxReadBufferLength: pausedStreamReadBufferBytes(windowBytes),
        },
      }),
    ],
    peerDiscovery: useMdns ? [mdns({ serviceTag: mdnsInit.serviceTag ?? MDNS_SERVICE_TAG, ...(mdnsInit.interval == null ? {} : { interval: mdnsInit.interval }) })] : [],
    services: { identify: identify(), ping: ping() },
    connectionGater,
    connectionManager: {
      maxConnections: init.connectionManager?.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
      inboundConnectionThreshold: init.connectionManager?.inboundConnectionThreshold ?? DEFAULT_INBOUND_CONNECTION_THRESHOLD,
      dialTimeout: init.connectionManager?.dialTimeout ?? DEFAULT_DIAL_TIMEOUT_MS,
    },
    nodeInfo: { name: 'hush', version: '0.1.0', userAgent: `hush/0.1.0 (${init.role})` },
    ...(init.logger == null ? {} : { logger: init.logger }),
  });
  if (!libp2p.peerId.equals(selfId)) throw new NetConfigError('libp2p derived another PeerId from the key');
  const node = new HushNode(libp2p, init, invites);
  try {
    await node.startServices();
  } catch (err) {
    await libp2p.stop();
    throw err;
  }
  return node;
}
