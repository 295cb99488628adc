import type { Logger } from 'pino';
import { peerIdFromString } from '@libp2p/peer-id';
import type { HushNode, Roster } from '../../runtime/net/index.ts';
import type { Measured } from '../../runtime/scheduler/types.ts';
import { CLOUD_PROTOCOL, MAX_TENSOR_FRAME_BYTES, PROFILE_PROTOCOL } from './common.ts';

/** What a device daemon answers on the profile protocol. */
export interface PeerProfile {
  name: string;
  model: string;
  measured: Measured;
  optOut?: boolean;
  maxShare?: number;
}

export interface PeerInfo {
  profile?: PeerProfile;
  profileAt?: number;
  rttMs?: number;
  /** Bytes/s measured by a probe transfer. */
  bandwidthBytesPerSec?: number;
  lastSeen?: string;
}

const PROFILE_TTL_MS = 60_000;
const PROBE_BYTES = 256 * 1024;

/**
 * The coordinator's view of its paired devices: who is a running Hush device (it answered the
 * profile protocol), how fast it is, and the RTT and bandwidth of the link to it. Refreshed by a
 * loop; reconnects to paired devices whose addresses it knows.
 */
export class PeerDirectory {
  readonly peers = new Map<string, PeerInfo>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(private readonly node: HushNode, private readonly roster: Roster, private readonly log: Logger, private readonly intervalMs = 5_000) {}

  start(): void {
    this.timer = setInterval(() => { void this.refreshAll(); }, this.intervalMs);
    this.timer.unref();
    void this.refreshAll();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  get(peerId: string): PeerInfo | undefined {
    return this.peers.get(peerId);
  }

  forget(peerId: string): void {
    this.peers.delete(peerId);
  }

  private connected(id: string): boolean {
    return this.node.libp2p.getConnections().some((c) => c.remotePeer.toString() === id && c.status === 'open');
  }

  async refreshAll(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const self = this.node.peerId.toString();
      await Promise.all(this.roster.trustedPeerIds().filter((id) => id !== self).map((id) => this.refresh(id).catch(() => undefined)));
    } finally {
      this.running = false;
    }
  }

  /** A cloud peer's profile, RTT and bandwidth over the cloud protocol (the only one it serves). */
  async refreshCloud(peerId: string, addr: string, force = false): Promise<PeerInfo | undefined> {
    const info = this.peers.get(peerId) ?? {};
    if (!force && info.profileAt && Date.now() - info.profileAt < PROFILE_TTL_MS) return info;
    const ch = await this.node.openChannel(addr, CLOUD_PROTOCOL, { timeoutMs: 5000, maxFrameBytes: MAX_TENSOR_FRAME_BYTES });
    try {
      info.rttMs = await this.node.libp2p.services.ping.ping(peerIdFromString(peerId), { signal: AbortSignal.timeout(3000) });
      const r = await ch.request({ type: 'profile' }, { timeoutMs: 5000 }) as { type: string; profile?: PeerProfile };
      if (r.type !== 'profile' || !r.profile) throw new Error('the cloud peer sent no profile');
      info.profile = r.profile;
      const t = performance.now();
      await ch.request({ type: 'probe', payload: new Uint8Array(PROBE_BYTES) }, { timeoutMs: 5000 });
      info.bandwidthBytesPerSec = PROBE_BYTES / (Math.max(0.05, performance.now() - t - info.rttMs) / 1000);
      info.profileAt = Date.now();
      info.lastSeen = new Date().toISOString();
    } finally {
      await ch.close();
    }
    this.peers.set(peerId, info);
    return info;
  }

  /** Ping, and fetch the profile and a bandwidth probe when stale. */
  async refresh(id: string, force = false): Promise<PeerInfo | undefined> {
    const pid = peerIdFromString(id);
    if (!this.connected(id)) {
      // Known addresses (from earlier identify): reconnect so a paired device is not a ghost.
      await this.node.libp2p.dial(pid, { signal: AbortSignal.timeout(3000) }).catch(() => undefined);
      if (!this.connected(id)) return this.peers.get(id);
    }
    const info = this.peers.get(id) ?? {};
    info.rttMs = await this.node.libp2p.services.ping.ping(pid, { signal: AbortSignal.timeout(3000) });
    info.lastSeen = new Date().toISOString();
    if (force || !info.profileAt || Date.now() - info.profileAt > PROFILE_TTL_MS) {
      try {
        const ch = await this.node.openChannel(pid, PROFILE_PROTOCOL, { timeoutMs: 5000, maxFrameBytes: MAX_TENSOR_FRAME_BYTES });
        try {
          const r = await ch.request({ type: 'profile' }, { timeoutMs: 5000 }) as { type: string; profile?: PeerProfile };
          if (r.type === 'profile' && r.profile) { info.profile = r.profile; info.profileAt = Date.now(); }
          const t = performance.now();
          await ch.request({ type: 'probe', payload: new Uint8Array(PROBE_BYTES) }, { timeoutMs: 5000 });
          const ms = Math.max(0.05, performance.now() - t - (info.rttMs ?? 0));
          info.bandwidthBytesPerSec = PROBE_BYTES / (ms / 1000);
        } finally {
          await ch.close();
        }
      } catch (e) {
        // Not a Hush device daemon (or an old one): it stays off plans.
        this.log.debug({ peer: id, err: (e as Error).message }, 'no profile');
      }
    }
    this.peers.set(id, info);
    return info;
  }
}
