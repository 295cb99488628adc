// Pairing two devices of one owner with a one-time invite code (/hush/pair/1).
//
//   inviter: createInvite() -> code shown as text/QR; holds {secret, expiry} in memory only
//   joiner:  join(code) dials the inviter's addresses with /p2p/<inviter PeerId> (Noise proves the
//            inviter's identity), sends {secret, its name}
//   inviter: checks the secret (constant time, unexpired, unused; the invite is burnt from here on),
//            asks its owner (confirm), answers {accept, its name}
//   joiner:  asks its owner (confirm), answers {confirm}
//   inviter: adds the joiner to its roster, answers {done}; the joiner adds the inviter.
//
// While an invite is live (unexpired, used or not) the inviter's connection gater admits unknown
// peers, but they can use nothing except this protocol (plus identify and ping): every trusted
// protocol re-checks the roster per channel. After a failed attempt the inviter hangs up on them.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { TypedEventEmitter } from '@libp2p/interface';
import type { ComponentLogger, Connection, Logger, PeerId, Startable } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { base32Decode, base32Encode } from './base32.ts';
import {
  DEFAULT_CONFIRM_TIMEOUT_MS,
  DEFAULT_INVITE_VALID_MS,
  DEFAULT_PAIRING_TIMEOUT_MS,
  INVITE_CODE_PREFIX,
  INVITE_SECRET_BYTES,
  MAX_INVITE_ADDRS,
  MAX_INVITE_VALID_MS,
  MAX_OUTSTANDING_INVITES,
  PAIRING_MAX_FRAME_BYTES,
  PAIRING_PROTOCOL,
} from './constants.ts';
import {
  InviteExpiredError,
  InviteInvalidError,
  InviteUsedError,
  NetConfigError,
  PairingDeclinedError,
  PeerRefusedError,
  ProtocolViolationError,
} from './errors.ts';
import type { FrameChannel } from './framing.ts';
import { fingerprint } from './identity.ts';
import { sanitizeDeviceName, type Roster } from './roster.ts';
import { ProtocolService, openChannel, type ChannelDialer, type ServiceRegistrar } from './service.ts';

// ---------- invite codes ----------

export interface InviteContents {
  peerId: PeerId;
  /** Inviter's addresses, without the /p2p part. */
  multiaddrs: Multiaddr[];
  secret: Uint8Array;
  expiresAt: Date;
}

const INVITE_VERSION = 1;
const EXPIRED_INVITE_MEMORY_MS = 10 * 60_000;
const MAX_REMEMBERED_INVITES = 64;
const CHECKSUM_BYTES = 4;
const MAX_CODE_CHARS = 2_000;

/** Binary layout: version, expiry (ms, 6 bytes), secret, PeerId text, addresses, sha256 checksum. */
export function encodeInvite(invite: InviteContents): string {
  const peerIdBytes = new TextEncoder().encode(invite.peerId.toString());
  if (peerIdBytes.length > 255) throw new NetConfigError('PeerId too long for an invite');
  if (invite.secret.length !== INVITE_SECRET_BYTES) throw new NetConfigError(`invite secret must be ${INVITE_SECRET_BYTES} bytes`);
  const addrs = invite.multiaddrs.slice(0, MAX_INVITE_ADDRS).map((a) => a.bytes).filter((b) => b.length <= 255);
  const parts: number[] = [INVITE_VERSION];
  const ms = invite.expiresAt.getTime();
  for (let shift = 40; shift >= 0; shift -= 8) parts.push(Math.floor(ms / 2 ** shift) & 0xff);
  parts.push(...invite.secret, peerIdBytes.length, ...peerIdBytes, addrs.length);
  for (const a of addrs) parts.push(a.length, ...a);
  const body = Uint8Array.from(parts);
  const checksum = createHash('sha256').update(body).digest().subarray(0, CHECKSUM_BYTES);
  const all = new Uint8Array(body.length + CHECKSUM_BYTES);
  all.set(body);
  all.set(checksum, body.length);
  return INVITE_CODE_PREFIX + base32Encode(all);
}

/** Parse an invite code (whitespace, line breaks and dashes are ignored). Throws InviteInvalidError. */
export function decodeInvite(code: string): InviteContents {
  if (typeof code !== 'string' || code.length > MAX_CODE_CHARS) throw new InviteInvalidError('invite code is too long or not text');
  const compact = code.replace(/\s+/g, '').toUpperCase();
  if (!compact.startsWith(INVITE_CODE_PREFIX)) throw new InviteInvalidError(`invite code must start with ${INVITE_CODE_PREFIX}`);
  const bytes = base32Decode(compact.slice(INVITE_CODE_PREFIX.length).replace(/-/g, ''));
  if (bytes == null || bytes.length < 1 + 6 + INVITE_SECRET_BYTES + 2 + CHECKSUM_BYTES) throw new InviteInvalidError('invite code is malformed');
  const body = bytes.subarray(0, bytes.length - CHECKSUM_BYTES);
  const expected = createHash('sha256').update(body).digest().subarray(0, CHECKSUM_BYTES);
  if (!timingSafeEqual(expected, bytes.subarray(bytes.length - CHECKSUM_BYTES))) throw new InviteInvalidError('invite code is damaged (checksum mismatch): copy it again');
  if (body[0] !== INVITE_VERSION) throw new InviteInvalidError(`invite code version ${body[0]} is not supported`);
  let pos = 1;
  let ms = 0;
  for (let i = 0; i < 6; i++) ms = ms * 256 + body[pos++];
  const secret = body.slice(pos, pos + INVITE_SECRET_BYTES);
  pos += INVITE_SECRET_BYTES;
  const need = (n: number): void => {
    if (pos + n > body.length) throw new InviteInvalidError('invite code is truncated');
  };
  need(1);
  const idLength = body[pos++];
  need(idLength);
  let peerId: PeerId;
  try {
    peerId = peerIdFromString(new TextDecoder('utf-8', { fatal: true }).decode(body.subarray(pos, pos + idLength)));
  } catch {
    throw new InviteInvalidError('invite code holds no valid PeerId');
  }
  pos += idLength;
  need(1);
  const count = body[pos++];
  if (count > MAX_INVITE_ADDRS) throw new InviteInvalidError('invite code holds too many addresses');
  const multiaddrs: Multiaddr[] = [];
  for (let i = 0; i < count; i++) {
    need(1);
    const length = body[pos++];
    need(length);
    try {
      multiaddrs.push(multiaddr(body.slice(pos, pos + length)));
    } catch {
      throw new InviteInvalidError('invite code holds an invalid address');
    }
    pos += length;
  }
  if (pos !== body.length) throw new InviteInvalidError('invite code has trailing bytes');
  return { peerId, multiaddrs, secret, expiresAt: new Date(ms) };
}

// ---------- the inviter's book of invites ----------

interface StoredInvite {
  secret: Uint8Array;
  expiresAt: number;
  state: 'open' | 'pending' | 'used';
}

/** Live invites, in memory only (a restart cancels them). The gater reads hasLiveInvite(). */
export class InviteBook {
  private invites: StoredInvite[] = [];
  private readonly now: () => number;

  constructor(init: { now?(): number } = {}) {
    this.now = init.now ?? Date.now;
  }

  /** A new secret valid for `validForMs`. */
  create(validForMs = DEFAULT_INVITE_VALID_MS): { secret: Uint8Array; expiresAt: Date } {
    if (!Number.isFinite(validForMs) || validForMs <= 0 || validForMs > MAX_INVITE_VALID_MS) {
      throw new NetConfigError(`invite validity must be in (0, ${MAX_INVITE_VALID_MS}] ms`);
    }
    this.prune();
    if (this.live().length >= MAX_OUTSTANDING_INVITES) throw new NetConfigError(`too many outstanding invites (${MAX_OUTSTANDING_INVITES}); cancel some first`);
    const secret = new Uint8Array(randomBytes(INVITE_SECRET_BYTES));
    const expiresAt = this.now() + validForMs;
    this.invites.push({ secret, expiresAt, state: 'open' });
    return { secret, expiresAt: new Date(expiresAt) };
  }

  /** True while some invite has not expired: the pairing window for unknown peers is open. */
  hasLiveInvite(): boolean {
    return this.live().length > 0;
  }

  /** Invites not yet used and not expired. */
  get openCount(): number {
    return this.live().filter((i) => i.state === 'open').length;
  }

  /**
   * Claim the invite holding `secret`: from here on it is burnt, whatever happens next. Compares
   * against every stored secret in constant time. Throws InviteInvalidError/InviteExpiredError/InviteUsedError.
   */
  claim(secret: Uint8Array): void {
    if (!(secret instanceof Uint8Array) || secret.length !== INVITE_SECRET_BYTES) throw new InviteInvalidError('invite secret has the wrong size');
    let match: StoredInvite | undefined;
    for (const invite of this.invites) {
      if (timingSafeEqual(invite.secret, secret) && match == null) match = invite;
    }
    if (match == null) throw new InviteInvalidError('no such invite on this device (wrong code, cancelled, or this device restarted)');
    if (match.expiresAt <= this.now()) throw new InviteExpiredError('the invite has expired: create a new one');
    if (match.state !== 'open') throw new InviteUsedError('the invite was already used: create a new one');
    match.state = 'pending';
  }

  /** Mark the claimed invite used (kept until it expires, so a second use says "used"). */
  finish(secret: Uint8Array): void {
    for (const invite of this.invites) if (timingSafeEqual(invite.secret, secret)) invite.state = 'used';
  }

  /** Cancel an invite by its secret. */
  cancel(secret: Uint8Array): boolean {
    const before = this.invites.length;
    this.invites = this.invites.filter((i) => !(i.secret.length === secret.length && timingSafeEqual(i.secret, secret)));
    return this.invites.length < before;
  }

  cancelAll(): void {
    this.invites = [];
  }

  /** Live invites: unexpired, used or not. */
  private live(): StoredInvite[] {
    const now = this.now();
    return this.invites.filter((i) => i.expiresAt > now);
  }

  private prune(): void {
    // Expired invites are remembered a while so a late joiner hears "expired", not "invalid".
    const forgetBefore = this.now() - EXPIRED_INVITE_MEMORY_MS;
    this.invites = this.invites.filter((i) => i.expiresAt > forgetBefore).slice(-MAX_REMEMBERED_INVITES);
  }
}

// ---------- the pairing service ----------

export interface PairingPeerInfo {
  peerId: string;
  name: string;
  fingerprint: string;
}

export type ConfirmPairing = (peer: PairingPeerInfo) => Promise<boolean> | boolean;

export interface Invite {
  /** The code to show or paste (contains the secret: never log it). */
  code: string;
  expiresAt: Date;
  peerId: string;
  multiaddrs: string[];
}

export interface PairingComponents {
  registrar: ServiceRegistrar;
  dialer: ChannelDialer;
  logger: ComponentLogger;
  peerId: PeerId;
  getMultiaddrs(): Multiaddr[];
  hangUp?(peer: PeerId): Promise<void>;
}

export interface PairingInit {
  roster: Roster;
  invites: InviteBook;
  /** This device's name, sent to the other side. */
  deviceName: string;
  /** Inviter side: asked before a joiner is accepted. Default: accept (CLI --yes). */
  confirm?: ConfirmPairing;
  confirmTimeoutMs?: number;
  /** Network part of one pairing. */
  timeoutMs?: number;
  /** Refuse these peers (cloud peers are never paired). */
  isCloudPeer?(peerId: PeerId): boolean;
}

export interface JoinOptions {
  signal?: AbortSignal;
  /** Joiner side: asked once the inviter accepted. Default: accept. */
  confirm?: ConfirmPairing;
  /** Name to present instead of the service's deviceName. */
  name?: string;
}

export interface PairingEvents {
  paired: CustomEvent<PairingPeerInfo & { role: 'inviter' | 'joiner' }>;
}

async function confirmWithin(confirm: ConfirmPairing, peer: PairingPeerInfo, timeoutMs: number, who: string): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((_, reject) => {
    timer = setTimeout(() => reject(new PairingDeclinedError(`no answer on ${who} within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return (await Promise.race([Promise.resolve(confirm(peer)), timeout])) === true;
  } finally {
    clearTimeout(timer);
  }
}

function field(message: unknown, type: string): Record<string, unknown> {
  if (message == null || typeof message !== 'object' || Array.isArray(message) || (message as { type?: unknown }).type !== type) {
    throw new ProtocolViolationError(`expected a ${type} message`);
  }
  return message as Record<string, unknown>;
}

export class PairingService extends TypedEventEmitter<PairingEvents> implements Startable {
  private readonly components: PairingComponents;
  private readonly init: PairingInit;
  private readonly log: Logger;
  private readonly service: ProtocolService;
  private readonly confirmTimeoutMs: number;
  private readonly timeoutMs: number;
  /** Pending hang-ups of unknown peers that failed to pair (cleared on stop). */
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();

  constructor(components: PairingComponents, init: PairingInit) {
    super();
    this.components = components;
    this.init = init;
    this.log = components.logger.forComponent('hush:net:pairing');
    this.confirmTimeoutMs = init.confirmTimeoutMs ?? DEFAULT_CONFIRM_TIMEOUT_MS;
    this.timeoutMs = init.timeoutMs ?? DEFAULT_PAIRING_TIMEOUT_MS;
    this.service = new ProtocolService(
      { registrar: components.registrar, logger: components.logger },
      {
        protocol: PAIRING_PROTOCOL,
        trusted: false,
        maxFrameBytes: PAIRING_MAX_FRAME_BYTES,
        maxInboundStreams: 1,
        maxConcurrentChannels: 4,
        idleTimeoutMs: this.timeoutMs,
        handler: this.handlePairing,
      },
    );
  }

  readonly [Symbol.toStringTag] = 'hush:PairingService';

  async start(): Promise<void> {
    await this.service.start();
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.init.invites.cancelAll();
    await this.service.stop();
  }

  isStarted(): boolean {
    return this.service.isStarted();
  }

  /** Issue a one-time invite code holding this device's PeerId and addresses. */
  createInvite(options: { validForMs?: number; multiaddrs?: Array<Multiaddr | string> } = {}): Invite {
    const addrs = (options.multiaddrs ?? this.components.getMultiaddrs())
      .map((a) => (typeof a === 'string' ? multiaddr(a) : a))
      .map((a) => (a.getComponents().some((c) => c.name === 'p2p') ? a.decapsulateCode(421) : a))
      .slice(0, MAX_INVITE_ADDRS);
    if (addrs.length === 0) throw new NetConfigError('this device has no listen address to put in an invite');
    const { secret, expiresAt } = this.init.invites.create(options.validForMs ?? DEFAULT_INVITE_VALID_MS);
    const code = encodeInvite({ peerId: this.components.peerId, multiaddrs: addrs, secret, expiresAt });
    this.log('created an invite valid until %s', expiresAt.toISOString());
    return { code, expiresAt, peerId: this.components.peerId.toString(), multiaddrs: addrs.map(String) };
  }

  /** Cancel an outstanding invite (true if it was live). */
  cancelInvite(code: string): boolean {
    return this.init.invites.cancel(decodeInvite(code).secret);
  }

  /** Join the device that issued `code`; resolves once both rosters hold each other. */
  async join(code: string, options: JoinOptions = {}): Promise<PairingPeerInfo> {
    const invite = decodeInvite(code);
    if (invite.expiresAt.getTime() <= Date.now()) throw new InviteExpiredError(`the invite expired at ${invite.expiresAt.toISOString()}: ask for a new one`);
    if (invite.peerId.equals(this.components.peerId)) throw new InviteInvalidError("this is this device's own invite");
    if (this.init.roster.isRevoked(invite.peerId)) throw new PeerRefusedError('the inviting device is revoked on this device');
    const name = sanitizeDeviceName(options.name ?? this.init.deviceName);
    if (name === '') throw new NetConfigError('device name is empty');
    const addrs = invite.multiaddrs.map((a) => a.encapsulate(`/p2p/${invite.peerId.toString()}`));
    if (addrs.length === 0) throw new InviteInvalidError('invite code holds no address');
    const signal = options.signal;
    let channel: FrameChannel;
    try {
      channel = await openChannel(this.components.dialer, addrs, PAIRING_PROTOCOL, {
        maxFrameBytes: PAIRING_MAX_FRAME_BYTES,
        timeoutMs: this.timeoutMs,
        ...(signal == null ? {} : { signal }),
      });
    } catch (err) {
      if (err instanceof PeerRefusedError) {
        throw Object.assign(new PeerRefusedError(`${err.message} (has the invite expired, been used or cancelled on the inviting device?)`), { cause: err });
      }
      throw err;
    }
    try {
      const peerFingerprint = fingerprint(invite.peerId);
      await channel.send({ type: 'pair', secret: invite.secret, name }, { ...(signal == null ? {} : { signal }) });
      const accept = field(await channel.receive({ timeoutMs: this.confirmTimeoutMs + this.timeoutMs, ...(signal == null ? {} : { signal }) }), 'accept');
      const inviterName = sanitizeDeviceName(accept.name);
      if (inviterName === '') throw new ProtocolViolationError('inviter sent no name');
      const peer: PairingPeerInfo = { peerId: invite.peerId.toString(), name: inviterName, fingerprint: peerFingerprint };
      const ok = await confirmWithin(options.confirm ?? (() => true), peer, this.confirmTimeoutMs, 'this device');
      if (!ok) {
        await channel.send({ type: 'decline' });
        throw new PairingDeclinedError('pairing declined on this device');
      }
      await channel.send({ type: 'confirm' });
      field(await channel.receive({ timeoutMs: this.timeoutMs, ...(signal == null ? {} : { signal }) }), 'done');
      await this.init.roster.add({ peerId: invite.peerId, name: inviterName });
      await channel.close();
      this.log('paired with %s (%s) as joiner', inviterName, peer.fingerprint);
      this.safeDispatchEvent('paired', { detail: { ...peer, role: 'joiner' } });
      return peer;
    } catch (err) {
      channel.abort(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  }

  private readonly handlePairing = async (channel: FrameChannel, remotePeer: PeerId, connection: Connection): Promise<void> => {
    let claimed: Uint8Array | undefined;
    try {
      const request = field(await channel.receive({ timeoutMs: this.timeoutMs }), 'pair');
      const secret = request.secret;
      const name = sanitizeDeviceName(request.name);
      if (!(secret instanceof Uint8Array) || name === '') throw new ProtocolViolationError('pair request needs a secret and a name');
      if (this.init.isCloudPeer?.(remotePeer) === true) throw new PeerRefusedError('cloud peers cannot pair with a device');
      if (this.init.roster.isRevoked(remotePeer)) throw new PeerRefusedError('this device revoked you');
      this.init.invites.claim(secret);
      claimed = secret;
      const peer: PairingPeerInfo = { peerId: remotePeer.toString(), name, fingerprint: fingerprint(remotePeer) };
      const ok = await confirmWithin(this.init.confirm ?? (() => true), peer, this.confirmTimeoutMs, 'the inviting device');
      if (!ok) throw new PairingDeclinedError('the inviting device declined the pairing');
      await channel.send({ type: 'accept', name: sanitizeDeviceName(this.init.deviceName) });
      const answer = await channel.receive({ timeoutMs: this.confirmTimeoutMs + this.timeoutMs });
      if ((answer as { type?: unknown } | null)?.type === 'decline') throw new PairingDeclinedError('the joining device declined the pairing');
      field(answer, 'confirm');
      await this.init.roster.add({ peerId: remotePeer, name });
      await channel.send({ type: 'done' });
      this.log('paired with %s (%s) as inviter', name, peer.fingerprint);
      this.safeDispatchEvent('paired', { detail: { ...peer, role: 'inviter' } });
    } finally {
      if (claimed != null) this.init.invites.finish(claimed);
      // An unknown peer that did not end up paired has no business staying connected.
      if (!this.init.roster.isTrusted(remotePeer) && this.components.hangUp != null) {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          if (connection.status === 'open') this.components.hangUp!(remotePeer).catch(() => {});
        }, 1_000);
        timer.unref?.();
        this.timers.add(timer);
      }
    }
  };
}
