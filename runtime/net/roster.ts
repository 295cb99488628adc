// The owner's roster of paired devices (roster.json) and the separate list of cloud peers
// (clouds.json). Trust decisions read the in-memory state synchronously, so a revocation counts
// the moment revoke() is called; the file write follows (atomic: temp + fsync + rename).
import { join } from 'node:path';
import { TypedEventEmitter } from '@libp2p/interface';
import type { ComponentLogger, Logger, PeerId } from '@libp2p/interface';
import { defaultLogger } from '@libp2p/logger';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import { ensurePrivateDir, readSmallFile, writeFileAtomic } from './atomic-file.ts';
import {
  CLOUDS_FILE,
  MAX_CLOUD_ENTRIES,
  MAX_DEVICE_NAME_CHARS,
  MAX_ROSTER_ENTRIES,
  MAX_STATE_FILE_BYTES,
  ROSTER_FILE,
} from './constants.ts';
import { RosterError, RosterFileError } from './errors.ts';

export interface RosterEntry {
  /** PeerId, base58 text form. */
  peerId: string;
  name: string;
  /** ISO time the device was paired. */
  added: string;
  /** ISO time of the last change of name/expires (for last-writer-wins when rosters sync). */
  updated?: string;
  /** ISO time after which the device is no longer trusted (without being revoked). */
  expires?: string;
  /** ISO time of revocation. A revoked entry stays as a tombstone so the gater keeps refusing it. */
  revoked?: string;
}

export type RosterChangeType = 'add' | 'update' | 'rename' | 'revoke' | 'remove';

export interface RosterChange {
  type: RosterChangeType;
  peerId: string;
  /** The entry after the change (before it, for 'remove'). */
  entry: RosterEntry;
  /** 'local': this device's owner did it; 'sync': learned from a trusted peer (`from`). */
  origin: 'local' | 'sync';
  from?: string;
}

export interface RosterEvents {
  change: CustomEvent<RosterChange>;
}

export interface RosterInit {
  /** This device's own PeerId: it is never put on its own roster. */
  self?: PeerId | string;
  logger?: ComponentLogger;
  /** Clock, for tests of expiry. */
  now?(): number;
}

export interface MergeOptions {
  /** Peer that sent the entries (recorded in the change events). */
  from?: string;
  /**
   * Add devices this roster does not know yet (a trusted device introduced them, as Syncthing's
   * introducers do). Revocations are always applied: they can only remove trust.
   */
  acceptNew?: boolean;
}

/** Trim, drop control characters, cut to MAX_DEVICE_NAME_CHARS. Returns '' if nothing is left. */
export function sanitizeDeviceName(name: unknown): string {
  if (typeof name !== 'string') return '';
  // eslint-disable-next-line no-control-regex
  return name.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '').trim().slice(0, MAX_DEVICE_NAME_CHARS);
}

function peerIdText(peerId: PeerId | string): string {
  return typeof peerId === 'string' ? peerId : peerId.toString();
}

function isIsoTime(value: unknown): value is string {
  return typeof value === 'string' && value.length <= 40 && Number.isFinite(Date.parse(value));
}

export function isValidPeerIdText(value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 128) return false;
  try {
    peerIdFromString(value);
    return true;
  } catch {
    return false;
  }
}

/** Validate one roster entry from a file or the network; undefined if anything is off. */
export function parseRosterEntry(raw: unknown): RosterEntry | undefined {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  const r = raw as Record<string, unknown>;
  if (!isValidPeerIdText(r.peerId)) return undefined;
  const name = sanitizeDeviceName(r.name);
  if (name === '' || !isIsoTime(r.added)) return undefined;
  const entry: RosterEntry = { peerId: r.peerId, name, added: r.added };
  for (const key of ['updated', 'expires', 'revoked'] as const) {
    if (r[key] == null) continue;
    if (!isIsoTime(r[key])) return undefined;
    entry[key] = r[key];
  }
  return entry;
}

function later(a: string | undefined, b: string | undefined): boolean {
  return Date.parse(a ?? '') > Date.parse(b ?? '');
}

export class Roster extends TypedEventEmitter<RosterEvents> {
  readonly path: string | undefined;
  private readonly entries = new Map<string, RosterEntry>();
  private self: string | undefined;
  private readonly log: Logger;
  private readonly now: () => number;
  private writeChain: Promise<void> = Promise.resolve();

  private constructor(path: string | undefined, init: RosterInit) {
    super();
    this.path = path;
    this.self = init.self == null ? undefined : peerIdText(init.self);
    this.log = (init.logger ?? defaultLogger()).forComponent('hush:net:roster');
    this.now = init.now ?? Date.now;
  }

  /** Load home/roster.json (an empty roster if it does not exist). A corrupt file throws RosterFileError. */
  static async open(home: string, init: RosterInit = {}): Promise<Roster> {
    await ensurePrivateDir(home);
    const roster = new Roster(join(home, ROSTER_FILE), init);
    const raw = await readJsonState(roster.path!);
    if (raw !== undefined) {
      const list = (raw as { devices?: unknown } | null)?.devices;
      if (!Array.isArray(list) || list.length > MAX_ROSTER_ENTRIES) throw new RosterFileError(`${roster.path}: no valid "devices" list`);
      for (const item of list) {
        const entry = parseRosterEntry(item);
        if (entry == null) throw new RosterFileError(`${roster.path}: invalid entry ${JSON.stringify(item).slice(0, 200)}`);
        roster.entries.set(entry.peerId, entry);
      }
    }
    return roster;
  }

  /** A roster that lives only in memory (simulations, tests, ephemeral peers). */
  static inMemory(init: RosterInit = {}): Roster {
    return new Roster(undefined, init);
  }

  /** Tell the roster which PeerId is this device (done by createHushNode). */
  bindSelf(peerId: PeerId | string): void {
    const id = peerIdText(peerId);
    if (this.self != null && this.self !== id) throw new RosterError('this roster belongs to another identity');
    if (this.entries.has(id)) throw new RosterError('this device is on its own roster; remove it first');
    this.self = id;
  }

  get size(): number {
    return this.entries.size;
  }

  get(peerId: PeerId | string): RosterEntry | undefined {
    const entry = this.entries.get(peerIdText(peerId));
    return entry == null ? undefined : { ...entry };
  }

  list(): RosterEntry[] {
    return [...this.entries.values()].map((e) => ({ ...e }));
  }

  /** On the roster, not revoked, not expired. */
  isTrusted(peerId: PeerId | string): boolean {
    const entry = this.entries.get(peerIdText(peerId));
    if (entry == null || entry.revoked != null) return false;
    return entry.expires == null || Date.parse(entry.expires) > this.now();
  }

  isRevoked(peerId: PeerId | string): boolean {
    return this.entries.get(peerIdText(peerId))?.revoked != null;
  }

  /** Trusted peers' ids (for pushing roster changes, discovery dials). */
  trustedPeerIds(): string[] {
    return [...this.entries.keys()].filter((id) => this.isTrusted(id));
  }

  /**
   * Pair a device (or refresh its name/expiry if it is already paired). A revoked device must be
   * removed with remove() before it can be added again: re-trusting is an explicit decision.
   */
  async add(input: { peerId: PeerId | string; name: string; expires?: Date | string }): Promise<RosterEntry> {
    const peerId = peerIdText(input.peerId);
    if (!isValidPeerIdText(peerId)) throw new RosterError(`not a valid PeerId: ${String(peerId).slice(0, 80)}`);
    if (peerId === this.self) throw new RosterError('a device cannot be on its own roster');
    const name = sanitizeDeviceName(input.name);
    if (name === '') throw new RosterError('device name is empty');
    const expires = input.expires == null ? undefined : new Date(input.expires).toISOString();
    const existing = this.entries.get(peerId);
    if (existing?.revoked != null) throw new RosterError(`device ${name} (${peerId}) was revoked; remove it before pairing again`);
    if (existing == null && this.entries.size >= MAX_ROSTER_ENTRIES) throw new RosterError(`roster is full (${MAX_ROSTER_ENTRIES} devices)`);
    const nowIso = new Date(this.now()).toISOString();
    const entry: RosterEntry = existing == null ? { peerId, name, added: nowIso, updated: nowIso } : { ...existing, name, updated: nowIso };
    if (expires != null) entry.expires = expires;
    else delete entry.expires;
    this.entries.set(peerId, entry);
    this.emitChange({ type: existing == null ? 'add' : 'update', peerId, entry: { ...entry }, origin: 'local' });
    await this.save();
    return { ...entry };
  }

  async rename(peerId: PeerId | string, name: string): Promise<RosterEntry> {
    const id = peerIdText(peerId);
    const existing = this.entries.get(id);
    if (existing == null) throw new RosterError(`no device ${id} on the roster`);
    const clean = sanitizeDeviceName(name);
    if (clean === '') throw new RosterError('device name is empty');
    const entry = { ...existing, name: clean, updated: new Date(this.now()).toISOString() };
    this.entries.set(id, entry);
    this.emitChange({ type: 'rename', peerId: id, entry: { ...entry }, origin: 'local' });
    await this.save();
    return { ...entry };
  }

  /**
   * Revoke a device: from this call on isTrusted() is false and the gater refuses it. The entry
   * stays as a tombstone (also for devices this roster never knew, so a revocation learned from
   * another device keeps working here).
   */
  async revoke(peerId: PeerId | string, name = 'revoked device'): Promise<RosterEntry> {
    const id = peerIdText(peerId);
    if (!isValidPeerIdText(id)) throw new RosterError(`not a valid PeerId: ${String(id).slice(0, 80)}`);
    if (id === this.self) throw new RosterError('a device cannot revoke itself');
    const existing = this.entries.get(id);
    if (existing?.revoked != null) return { ...existing };
    const nowIso = new Date(this.now()).toISOString();
    const entry: RosterEntry = existing == null
      ? { peerId: id, name: sanitizeDeviceName(name) || 'revoked device', added: nowIso, updated: nowIso, revoked: nowIso }
      : { ...existing, revoked: nowIso };
    this.entries.set(id, entry);
    this.emitChange({ type: 'revoke', peerId: id, entry: { ...entry }, origin: 'local' });
    await this.save();
    return { ...entry };
  }

  /** Forget a device entirely (also a revocation tombstone). Returns false if it was not there. */
  async remove(peerId: PeerId | string): Promise<boolean> {
    const id = peerIdText(peerId);
    const existing = this.entries.get(id);
    if (existing == null) return false;
    this.entries.delete(id);
    this.emitChange({ type: 'remove', peerId: id, entry: { ...existing }, origin: 'local' });
    await this.save();
    return true;
  }

  /**
   * Apply entries learned from a trusted peer. Revocations always win and stick; names and expiry
   * follow the newer `updated`; unknown devices are added only with `acceptNew`. Entries about this
   * device itself are ignored. Returns the changes made (each also emitted as a 'change' event).
   */
  async merge(incoming: readonly unknown[], options: MergeOptions = {}): Promise<RosterChange[]> {
    const changes: RosterChange[] = [];
    for (const raw of incoming.slice(0, MAX_ROSTER_ENTRIES)) {
      const e = parseRosterEntry(raw);
      if (e == null || e.peerId === this.self) continue;
      const local = this.entries.get(e.peerId);
      let next: RosterEntry | undefined;
      let type: RosterChangeType | undefined;
      if (e.revoked != null) {
        if (local == null) {
          if (this.entries.size >= MAX_ROSTER_ENTRIES) continue;
          next = { ...e };
          type = 'revoke';
        } else if (local.revoked == null) {
          next = { ...local, revoked: e.revoked };
          type = 'revoke';
        }
      } else if (local == null) {
        if (options.acceptNew === true && this.entries.size < MAX_ROSTER_ENTRIES) {
          next = { ...e };
          type = 'add';
        }
      } else if (local.revoked == null && later(e.updated ?? e.added, local.updated ?? local.added)) {
        if (e.name !== local.name || e.expires !== local.expires) {
          next = { ...local, name: e.name, updated: e.updated ?? e.added };
          if (e.expires != null) next.expires = e.expires;
          else delete next.expires;
          type = e.name !== local.name ? 'rename' : 'update';
        }
      }
      if (next == null || type == null) continue;
      this.entries.set(e.peerId, next);
      const change: RosterChange = { type, peerId: e.peerId, entry: { ...next }, origin: 'sync' };
      if (options.from != null) change.from = options.from;
      changes.push(change);
      this.emitChange(change);
    }
    if (changes.length > 0) await this.save();
    return changes;
  }

  /** Resolves once every change made so far is on disk. */
  async flush(): Promise<void> {
    await this.writeChain;
  }

  private emitChange(change: RosterChange): void {
    this.log('%s %s (%s) origin=%s', change.type, change.peerId, change.entry.name, change.origin);
    this.safeDispatchEvent('change', { detail: change });
  }

  private save(): Promise<void> {
    const path = this.path;
    if (path == null) return Promise.resolve();
    // Each write stores the state at the time it runs, so a burst of changes coalesces safely.
    const run = async (): Promise<void> => {
      const body = JSON.stringify({ version: 1, devices: [...this.entries.values()] }, null, 2) + '\n';
      await writeFileAtomic(path, body, 0o600);
    };
    const next = this.writeChain.then(run, run);
    this.writeChain = next.catch((err) => this.log.error('writing %s failed - %e', path, err));
    return next;
  }
}

async function readJsonState(path: string): Promise<unknown> {
  let bytes: Buffer | undefined;
  try {
    bytes = await readSmallFile(path, MAX_STATE_FILE_BYTES);
  } catch (err) {
    throw new RosterFileError(`cannot read ${path}: ${(err as Error).message}`);
  }
  if (bytes == null) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new RosterFileError(`${path} is not valid JSON`);
  }
}

// ---------- cloud peers ----------

export interface CloudEntry {
  /** PeerId of the cloud peer if known (from the multiaddr's /p2p part or given). */
  peerId?: string;
  multiaddr: string;
  name: string;
  added: string;
}

/** One cloud entry as clouds.json accepts it; undefined if anything is off (also used by backups). */
export function parseCloudEntry(raw: unknown): CloudEntry | undefined {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  const r = raw as Record<string, unknown>;
  const name = sanitizeDeviceName(r.name);
  if (name === '' || typeof r.multiaddr !== 'string' || r.multiaddr.length > 512 || !isIsoTime(r.added)) return undefined;
  try {
    multiaddr(r.multiaddr);
  } catch {
    return undefined;
  }
  const entry: CloudEntry = { multiaddr: r.multiaddr, name, added: r.added };
  if (r.peerId != null) {
    if (!isValidPeerIdText(r.peerId)) return undefined;
    entry.peerId = r.peerId;
  }
  return entry;
}

/**
 * Cloud peers this device may use (home/clouds.json). Kept apart from the roster on purpose: a
 * cloud peer is never trusted, so it can never be on the roster (add() refuses roster members).
 */
export class CloudList {
  readonly path: string | undefined;
  private readonly entries = new Map<string, CloudEntry>();
  private writeChain: Promise<void> = Promise.resolve();

  private constructor(path: string | undefined) {
    this.path = path;
  }

  static async open(home: string): Promise<CloudList> {
    await ensurePrivateDir(home);
    const list = new CloudList(join(home, CLOUDS_FILE));
    const raw = await readJsonState(list.path!);
    if (raw !== undefined) {
      const items = (raw as { clouds?: unknown } | null)?.clouds;
      if (!Array.isArray(items) || items.length > MAX_CLOUD_ENTRIES) throw new RosterFileError(`${list.path}: no valid "clouds" list`);
      for (const item of items) {
        const entry = parseCloudEntry(item);
        if (entry == null) throw new RosterFileError(`${list.path}: invalid entry ${JSON.stringify(item).slice(0, 200)}`);
        list.entries.set(entry.name, entry);
      }
    }
    return list;
  }

  static inMemory(): CloudList {
    return new CloudList(undefined);
  }

  list(): CloudEntry[] {
    return [...this.entries.values()].map((e) => ({ ...e }));
  }

  get(name: string): CloudEntry | undefined {
    const e = this.entries.get(name);
    return e == null ? undefined : { ...e };
  }

  isCloudPeer(peerId: PeerId | string): boolean {
    const id = peerIdText(peerId);
    for (const e of this.entries.values()) if (e.peerId === id) return true;
    return false;
  }

  /** Add or replace the cloud peer called `name`. Refuses a PeerId that is on `roster`. */
  async add(input: { multiaddr: string; name: string; peerId?: string }, options: { roster?: Roster } = {}): Promise<CloudEntry> {
    const name = sanitizeDeviceName(input.name);
    if (name === '') throw new RosterError('cloud peer name is empty');
    let ma;
    try {
      ma = multiaddr(input.multiaddr);
    } catch {
      throw new RosterError(`not a valid multiaddr: ${String(input.multiaddr).slice(0, 200)}`);
    }
    const fromAddr = ma.getComponents().find((c) => c.name === 'p2p')?.value;
    const peerId = input.peerId ?? fromAddr;
    if (peerId != null && !isValidPeerIdText(peerId)) throw new RosterError(`not a valid PeerId: ${String(peerId).slice(0, 80)}`);
    if (input.peerId != null && fromAddr != null && input.peerId !== fromAddr) throw new RosterError('peerId does not match the /p2p part of the multiaddr');
    if (peerId != null && options.roster?.get(peerId) != null) throw new RosterError('a cloud peer cannot be a paired device (it is on the roster)');
    if (!this.entries.has(name) && this.entries.size >= MAX_CLOUD_ENTRIES) throw new RosterError(`cloud list is full (${MAX_CLOUD_ENTRIES})`);
    const entry: CloudEntry = { multiaddr: ma.toString(), name, added: new Date().toISOString() };
    if (peerId != null) entry.peerId = peerId;
    this.entries.set(name, entry);
    await this.save();
    return { ...entry };
  }

  async remove(name: string): Promise<boolean> {
    if (!this.entries.delete(name)) return false;
    await this.save();
    return true;
  }

  async flush(): Promise<void> {
    await this.writeChain;
  }

  private save(): Promise<void> {
    const path = this.path;
    if (path == null) return Promise.resolve();
    const run = async (): Promise<void> => {
      await writeFileAtomic(path, JSON.stringify({ version: 1, clouds: [...this.entries.values()] }, null, 2) + '\n', 0o600);
    };
    const next = this.writeChain.then(run, run);
    this.writeChain = next.catch(() => {});
    return next;
  }
}
