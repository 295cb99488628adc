// /hush/roster/1: keeps the rosters of one owner's devices in step, so a revocation made on one
// device takes effect on every online device at once (their gaters then refuse the revoked peer
// and they hang up on it).
//
// Messages (one request, one answer, per channel):
//   {type:'update', entries}   -> {type:'ack', applied}      a change made here, pushed to peers
//   {type:'exchange', entries} -> {type:'exchange', entries} full rosters both ways, when a device
//                                                              is newly paired or (re)connects
// Receivers merge (Roster.merge): revocations always apply and stick; names follow the newer
// `updated`; unknown devices are added when `acceptIntroductions` (default true). What a device
// learns by sync it passes on to its other online trusted peers (not back to the sender); merge
// only reports real changes, so this stops once every device agrees. remove() is local only.
import type { ComponentLogger, Logger, PeerId, Startable } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { DEFAULT_ROSTER_PUSH_TIMEOUT_MS, MAX_ROSTER_ENTRIES, ROSTER_PROTOCOL, ROSTER_SYNC_MAX_FRAME_BYTES } from './constants.ts';
import { ProtocolViolationError } from './errors.ts';
import type { FrameChannel } from './framing.ts';
import type { Roster, RosterChange, RosterEntry } from './roster.ts';
import { ProtocolService, openChannel, type ChannelDialer, type ServiceRegistrar } from './service.ts';

export interface RosterSyncComponents {
  registrar: ServiceRegistrar;
  dialer: ChannelDialer;
  logger: ComponentLogger;
  peerId: PeerId;
  /** Peers with an open connection now. */
  getConnectedPeers(): PeerId[];
}

export interface RosterSyncInit {
  roster: Roster;
  /** Add devices a trusted peer introduces (default true). */
  acceptIntroductions?: boolean;
  /** Per push (open + send + ack). */
  pushTimeoutMs?: number;
}

export interface PushResult {
  peerId: string;
  ok: boolean;
  error?: string;
}

function readEntries(message: unknown): unknown[] {
  const entries = (message as { entries?: unknown } | null)?.entries;
  if (!Array.isArray(entries) || entries.length > MAX_ROSTER_ENTRIES) throw new ProtocolViolationError('roster message needs an entries list');
  return entries;
}

export class RosterSyncService implements Startable {
  private readonly components: RosterSyncComponents;
  private readonly roster: Roster;
  private readonly acceptIntroductions: boolean;
  private readonly pushTimeoutMs: number;
  private readonly log: Logger;
  private readonly service: ProtocolService;
  /** Changed entries waiting for the next broadcast, and whom not to send each back to. */
  private pendingEntries = new Map<string, { entry: RosterEntry; exclude?: string }>();
  private pendingExchanges = new Set<string>();
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private inflight: Promise<PushResult[]> = Promise.resolve([]);
  private started = false;

  constructor(components: RosterSyncComponents, init: RosterSyncInit) {
    this.components = components;
    this.roster = init.roster;
    this.acceptIntroductions = init.acceptIntroductions ?? true;
    this.pushTimeoutMs = init.pushTimeoutMs ?? DEFAULT_ROSTER_PUSH_TIMEOUT_MS;
    this.log = components.logger.forComponent('hush:net:roster-sync');
    this.service = new ProtocolService(
      { registrar: components.registrar, logger: components.logger },
      {
        protocol: ROSTER_PROTOCOL,
        trusted: true,
        roster: init.roster,
        maxFrameBytes: ROSTER_SYNC_MAX_FRAME_BYTES,
        maxInboundStreams: 4,
        maxConcurrentChannels: 32,
        idleTimeoutMs: this.pushTimeoutMs,
        handler: this.handleSync,
      },
    );
  }

  readonly [Symbol.toStringTag] = 'hush:RosterSyncService';

  async start(): Promise<void> {
    if (this.started) return;
    await this.service.start();
    this.roster.addEventListener('change', this.onRosterChange);
    this.started = true;
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.roster.removeEventListener('change', this.onRosterChange);
    if (this.flushTimer != null) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.pendingEntries.clear();
    this.pendingExchanges.clear();
    await this.service.stop();
  }

  isStarted(): boolean {
    return this.started;
  }

  /** Wait for the pushes scheduled so far; returns the results of the last broadcast. */
  async flush(): Promise<PushResult[]> {
    if (this.flushTimer != null) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
      this.runBroadcast();
    }
    return await this.inflight;
  }

  /** A trusted peer connected: swap full rosters (catches up on what happened while apart). */
  onPeerConnected(peer: PeerId): void {
    if (!this.started || !this.roster.isTrusted(peer)) return;
    this.pendingExchanges.add(peer.toString());
    this.schedule();
  }

  /** Send `entries` to one peer. */
  async push(peer: PeerId, entries: RosterEntry[]): Promise<void> {
    const channel = await this.open(peer);
    try {
      const answer = await channel.request({ type: 'update', entries }, { timeoutMs: this.pushTimeoutMs });
      if ((answer as { type?: unknown } | null)?.type !== 'ack') throw new ProtocolViolationError('expected an ack');
      await channel.close();
    } catch (err) {
      channel.abort(err as Error);
      throw err;
    }
  }

  /** Swap full rosters with one peer; returns the changes merged here. */
  async exchange(peer: PeerId): Promise<RosterChange[]> {
    const channel = await this.open(peer);
    try {
      const answer = await channel.request({ type: 'exchange', entries: this.roster.list() }, { timeoutMs: this.pushTimeoutMs });
      if ((answer as { type?: unknown } | null)?.type !== 'exchange') throw new ProtocolViolationError('expected an exchange answer');
      const changes = await this.roster.merge(readEntries(answer), { from: peer.toString(), acceptNew: this.acceptIntroductions });
      await channel.close();
      return changes;
    } catch (err) {
      channel.abort(err as Error);
      throw err;
    }
  }

  private open(peer: PeerId): Promise<FrameChannel> {
    return openChannel(this.components.dialer, peer, ROSTER_PROTOCOL, {
      maxFrameBytes: ROSTER_SYNC_MAX_FRAME_BYTES,
      timeoutMs: this.pushTimeoutMs,
      receiveTimeoutMs: this.pushTimeoutMs,
    });
  }

  private readonly onRosterChange = (evt: CustomEvent<RosterChange>): void => {
    const change = evt.detail;
    if (change.type === 'remove') return;
    const pending: { entry: RosterEntry; exclude?: string } = { entry: change.entry };
    if (change.from != null) pending.exclude = change.from;
    this.pendingEntries.set(change.peerId, pending);
    // A device just paired here learns the whole roster (and teaches us its own).
    if (change.origin === 'local' && (change.type === 'add' || change.type === 'update')) this.pendingExchanges.add(change.peerId);
    this.schedule();
  };

  private schedule(): void {
    // One macrotask of batching: a burst of changes goes out as one message per peer.
    if (this.flushTimer != null) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.runBroadcast();
    }, 0);
  }

  private runBroadcast(): void {
    const entries = this.pendingEntries;
    const exchanges = this.pendingExchanges;
    this.pendingEntries = new Map();
    this.pendingExchanges = new Set();
    const previous = this.inflight;
    this.inflight = previous.then(() => this.broadcast(entries, exchanges));
  }

  private async broadcast(entries: Map<string, { entry: RosterEntry; exclude?: string }>, exchanges: Set<string>): Promise<PushResult[]> {
    if (!this.started) return [];
    const self = this.components.peerId.toString();
    const online = new Set(this.components.getConnectedPeers().map((p) => p.toString()));
    const targets = [...online].filter((id) => id !== self && this.roster.isTrusted(id));
    const jobs = targets.map(async (id): Promise<PushResult> => {
      const peer = peerIdFromString(id);
      try {
        if (exchanges.has(id)) {
          await this.exchange(peer);
          return { peerId: id, ok: true };
        }
        const list = [...entries.values()].filter((p) => p.exclude !== id && p.entry.peerId !== id).map((p) => p.entry);
        if (list.length === 0) return { peerId: id, ok: true };
        await this.push(peer, list);
        return { peerId: id, ok: true };
      } catch (err) {
        // Expected while a pairing completes (the other side trusts us a moment later) or when a
        // peer just went away; it catches up by exchange when it next connects.
        this.log('roster push to %s failed: %s', id, (err as Error).message);
        return { peerId: id, ok: false, error: `${(err as Error).name}: ${(err as Error).message}` };
      }
    });
    return await Promise.all(jobs);
  }

  private readonly handleSync = async (channel: FrameChannel, remotePeer: PeerId): Promise<void> => {
    const message = await channel.receive({ timeoutMs: this.pushTimeoutMs });
    const type = (message as { type?: unknown } | null)?.type;
    if (type !== 'update' && type !== 'exchange') throw new ProtocolViolationError('expected update or exchange');
    const changes = await this.roster.merge(readEntries(message), { from: remotePeer.toString(), acceptNew: this.acceptIntroductions });
    if (changes.length > 0) this.log('applied %d roster changes from %p', changes.length, remotePeer);
    if (type === 'exchange') await channel.send({ type: 'exchange', entries: this.roster.list() });
    else await channel.send({ type: 'ack', applied: changes.length });
    // Let the client close first; closing here right away is also fine (close() waits for both).
    await channel.receive({ timeoutMs: this.pushTimeoutMs }).catch(() => {});
  };
}
