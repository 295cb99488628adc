/**
 * INTERIM TEST DOUBLE of the device daemon's DeviceController (runtime/api/controller.ts).
 *
 * test/app-browser.test.ts serves the real control API (runtime/api startControlServer) over this
 * in-memory controller until the real device daemon (`hush device start`) exists; the end-to-end
 * tests in that file run against the real daemons and take over once peers/cli.ts has them.
 * Nothing here runs a model or a network: tokens are canned and times are made up, so nothing
 * measured through it means anything about Hush's speed or privacy.
 */
import { ConflictError, GoneError, BadRequestError, NotFoundError, UnavailableError } from '../../runtime/api/errors.ts';
import type { DeviceController } from '../../runtime/api/controller.ts';
import { EventHub } from '../../runtime/api/events.ts';
import type {
  Cloud,
  CloudTestResult,
  Device,
  GenerateEvent,
  GenerateRequest,
  HushEvent,
  HushEventType,
  Identity,
  Invite,
  JoinResult,
  LastSession,
  LastSessionCrossing,
  Mode,
  ModelInfo,
  PlanView,
  PrivacyReport,
} from '../../runtime/api/types.ts';

const ANSWER = ' The edge layers ran on your own devices, and the cloud saw only encoded hidden states.';
const HIDDEN = 64;

function fingerprintOf(peerId: string): string {
  return peerId.slice(-12).toUpperCase().replace(/(.{4})(?=.)/g, '$1-');
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason);
    }, { once: true });
  });
}

export interface InterimControllerOptions {
  /** Delay between streamed tokens, so a test can see the answer grow. */
  tokenDelayMs?: number;
  withPrivacyReport?: boolean;
}

export class InterimController implements DeviceController {
  readonly hub = new EventHub<HushEvent>();
  private self: Identity = {
    peerId: '12D3KooWHushLaptopA1b2C3d4E5f6G7h8J9k1M2n3P4q5R6s7T8',
    fingerprint: '',
    name: 'Study laptop',
    addresses: ['/ip4/127.0.0.1/tcp/41001', '/ip4/192.168.1.20/tcp/41001'],
  };
  private roster: Device[];
  private cloudList: Cloud[];
  private session: LastSession | null = null;
  private inviteSeq = 0;
  private cloudSeq = 1;
  private readonly tokenDelayMs: number;
  private readonly withPrivacy: boolean;

  constructor(opts: InterimControllerOptions = {}) {
    this.tokenDelayMs = opts.tokenDelayMs ?? 40;
    this.withPrivacy = opts.withPrivacyReport ?? true;
    this.self.fingerprint = fingerprintOf(this.self.peerId);
    const now = Date.now();
    const iso = (agoMs: number) => new Date(now - agoMs).toISOString();
    this.roster = [
      { peerId: '12D3KooWDeskTopB7x9Yq2Lm4Np6Rs8Tu1Vw3Xy5Za7Bc9De2Fg', fingerprint: '', name: 'Home desktop', added: iso(86_400_000 * 12), online: true, path: 'lan', rttMs: 0.8, bandwidthMBps: 94, layers: 'embed, 0-3', lastSeen: iso(1000) },
      { peerId: '12D3KooWPhoneC3k5Mn7Pq9Rs2Tu4Vw6Xy8Za1Bc3De5Fg7Hj9K', fingerprint: '', name: 'Phone', added: iso(86_400_000 * 3), online: false, path: null, lastSeen: iso(3_600_000 * 5) },
      { peerId: '12D3KooWOldTabD4m6Np8Qr1St3Uv5Wx7Yz9Ab2Cd4Ef6Gh8Jk1', fingerprint: '', name: 'Old tablet', added: iso(86_400_000 * 90), revoked: iso(86_400_000 * 30), online: false, path: null, lastSeen: iso(86_400_000 * 31) },
    ];
    for (const d of this.roster) d.fingerprint = fingerprintOf(d.peerId);
    this.cloudList = [
      { id: 'cloud-1', multiaddr: '/ip4/127.0.0.1/tcp/42001/p2p/12D3KooWCloudGpuE5n7Pq9Rs1Tu3Vw5Xy7Za9Bc2De4Fg6Hj8', peerId: '12D3KooWCloudGpuE5n7Pq9Rs1Tu3Vw5Xy7Za9Bc2De4Fg6Hj8', name: 'Rented GPU', reachable: true, rttMs: 18.4, lastTested: iso(600_000) },
    ];
  }

  private publish(type: HushEventType, fields: Partial<HushEvent> = {}): void {
    this.hub.publish({ type, at: new Date().toISOString(), ...fields });
  }

  async identity(): Promise<Identity> {
    return structuredClone(this.self);
  }

  async renameSelf(name: string): Promise<Identity> {
    this.self.name = name;
    this.publish('identity.renamed');
    return this.identity();
  }

  async devices(): Promise<Device[]> {
    return structuredClone(this.roster);
  }

  private find(peerId: string): Device {
    const d = this.roster.find((x) => x.peerId === peerId);
    if (!d) throw new NotFoundError(`no paired device ${peerId}`);
    return d;
  }

  async renameDevice(peerId: string, name: string): Promise<Device> {
    const d = this.find(peerId);
    d.name = name;
    this.publish('device.renamed', { peerId });
    return structuredClone(d);
  }

  async revokeDevice(peerId: string): Promise<Device> {
    const d = this.find(peerId);
    if (d.revoked) throw new ConflictError(`${d.name} is already revoked`);
    d.revoked = new Date().toISOString();
    d.online = false;
    d.path = null;
    delete d.layers;
    this.publish('device.revoked', { peerId });
    return structuredClone(d);
  }

  async createInvite(): Promise<Invite> {
    this.inviteSeq++;
    this.publish('invite.created');
    return { code: `HUSH-${String(this.inviteSeq).padStart(2, '0')}QF-7M2K-9XPA-LT4C`, expiresAt: new Date(Date.now() + 5 * 60_000).toISOString() };
  }

  async joinInvite(code: string): Promise<JoinResult> {
    if (/expired/i.test(code)) throw new GoneError('this invite code has expired: create a new one on the other device');
    if (!/^HUSH-/i.test(code)) throw new BadRequestError('this is not a Hush invite code');
    const peerId = `12D3KooWJoined${String(this.roster.length).padStart(2, '0')}Xa2Bc4De6Fg8Hj1Km3Np5Qr7St9Uv2Wx4`;
    const dev: Device = { peerId, fingerprint: fingerprintOf(peerId), name: 'Office desktop', added: new Date().toISOString(), online: true, path: 'direct', rttMs: 4.2, bandwidthMBps: 38, lastSeen: new Date().toISOString() };
    this.roster.push(dev);
    this.publish('device.paired', { peerId });
    return { peerId, name: dev.name };
  }

  async clouds(): Promise<Cloud[]> {
    return structuredClone(this.cloudList);
  }

  async addCloud(multiaddr: string, name?: string): Promise<Cloud> {
    if (!/^\/(ip4|ip6|dns4|dns6|dns)\/[^/]+\/tcp\/\d+/.test(multiaddr)) throw new BadRequestError(`cannot parse the multiaddr ${multiaddr}`);
    if (this.cloudList.some((c) => c.multiaddr === multiaddr)) throw new ConflictError('this cloud peer is already added');
    const c: Cloud = { id: `cloud-${++this.cloudSeq}`, multiaddr, name: name ?? `Cloud ${this.cloudSeq}`, peerId: /\/p2p\/(\w+)/.exec(multiaddr)?.[1] };
    this.cloudList.push(c);
    this.publish('cloud.added');
    return structuredClone(c);
  }

  async testCloud(id: string): Promise<CloudTestResult> {
    const c = this.cloudList.find((x) => x.id === id);
    if (!c) throw new NotFoundError(`no cloud peer ${id}`);
    // Addresses on 127.0.0.1 "answer"; anything else is unreachable from the test.
    const reachable = c.multiaddr.startsWith('/ip4/127.0.0.1/');
    c.reachable = reachable;
    c.rttMs = reachable ? 12.5 : undefined;
    c.lastTested = new Date().toISOString();
    return reachable ? { reachable, rttMs: 12.5 } : { reachable, rttMs: null, error: 'dial timed out' };
  }

  async removeCloud(id: string): Promise<void> {
    const i = this.cloudList.findIndex((x) => x.id === id);
    if (i < 0) throw new NotFoundError(`no cloud peer ${id}`);
    this.cloudList.splice(i, 1);
    this.publish('cloud.removed');
  }

  async plan(mode: Mode): Promise<PlanView> {
    const desk = this.roster.find((d) => d.online && !d.revoked);
    if (mode !== 'local' && this.cloudList.length === 0) throw new UnavailableError(`${mode} mode needs a cloud peer: add one under Cloud peers`);
    const cloud = this.cloudList[0];
    if (mode === 'local') {
      return {
        mode,
        stages: [
          { device: this.self.name, role: 'embed', layers: 'embed', predictedMs: 0.4, measuredMs: 0.5 },
          { device: desk?.name ?? this.self.name, role: 'head', layers: '0-11', predictedMs: 31, measuredMs: 34.2 },
          { device: this.self.name, role: 'tail', layers: '12-23', predictedMs: 33, measuredMs: 30.8 },
          { device: this.self.name, role: 'lm_head', layers: 'lm_head', predictedMs: 2.1 },
        ],
        predicted: { ttftMs: 420, perTokenMs: 66 },
        why: [`${desk?.name ?? 'No other device'} is online over the LAN (0.8 ms, 94 MB/s), so half the layers go there.`, 'Local mode: no layer leaves your devices.'],
      };
    }
    return {
      mode,
      stages: [
        { device: this.self.name, role: 'embed', layers: 'embed', predictedMs: 0.4, measuredMs: 0.5 },
        { device: desk?.name ?? this.self.name, role: 'head', layers: '0-1', predictedMs: 5.2, measuredMs: 5.9 },
        { device: cloud.name, role: 'cloud', layers: '2-21', predictedMs: mode === 'scx' ? 24 : 11, measuredMs: mode === 'scx' ? 26.3 : 12.1 },
        { device: this.self.name, role: 'tail', layers: '22-23', predictedMs: 5.4 },
        { device: this.self.name, role: 'lm_head', layers: 'lm_head', predictedMs: 2.1 },
      ],
      predicted: { ttftMs: mode === 'scx' ? 610 : 240, perTokenMs: mode === 'scx' ? 38 : 25 },
      why: [
        `${cloud.name} runs the 20 middle layers: it is ${Math.round((cloud.rttMs ?? 18) * 10) / 10} ms away and about 30× faster than your devices.`,
        'Head and tail keep 2 layers each on trusted devices, the least the protocol allows.',
        mode === 'scx' ? 'SCX adds 3 crossings per cloud layer during prefill; generation is one vector each way per token.' : 'Split mode: one crossing each way per pass, no encoding.',
      ],
    };
  }

  async *generate(req: GenerateRequest, signal: AbortSignal): AsyncIterable<GenerateEvent> {
    const mode = req.mode ?? (this.cloudList.length ? 'scx' : 'local');
    if (mode !== 'local' && this.cloudList.length === 0) throw new UnavailableError(`${mode} mode needs a cloud peer: add one under Cloud peers`);
    const promptTokens = Math.max(1, Math.round((req.prompt ?? '').length / 4));
    const sessionId = `s-${Date.now().toString(36)}`;
    this.publish('session.start', { sessionId });
    yield { type: 'start', mode, promptTokens, model: 'debprose-7m', sessionId };
    const t0 = performance.now();
    let ttft = 0;
    const words = ANSWER.match(/\s*\S+/g) ?? [];
    const n = Math.min(words.length, req.maxTokens);
    for (let i = 0; i < n; i++) {
      await sleep(this.tokenDelayMs, signal);
      if (i === 0) ttft = performance.now() - t0;
      yield { type: 'token', text: words[i], id: 1000 + i };
    }
    this.session = mode === 'local' ? { mode, sessionId, model: 'debprose-7m', startedAt: new Date().toISOString(), crossings: [], totalBytes: 0 } : this.transcript(mode, sessionId, promptTokens, n);
    this.publish('session.end', { sessionId });
    const totalMs = performance.now() - t0;
    yield {
      type: 'done',
      finishReason: n < req.maxTokens ? 'stop' : 'length',
      usage: { promptTokens, completionTokens: n },
      timings: { ttftMs: ttft, totalMs, perTokenMs: n > 1 ? (totalMs - ttft) / (n - 1) : 0, prefillMs: ttft * 0.8 },
    };
  }

  private transcript(mode: Mode, sessionId: string, tokens: number, generated: number): LastSession {
    const crossings: LastSessionCrossing[] = [];
    const add = (stage: LastSessionCrossing['stage'], layer: number, crossing: LastSessionCrossing['crossing'], direction: LastSessionCrossing['direction'], shape: number[]) =>
      crossings.push({ stage, layer, crossing, direction, shape, bytes: shape.reduce((a, b) => a * b, 1) * 4 });
    const rows = tokens + 4; // decoys
    if (mode === 'split') {
      add('prefill', 2, 'S', 'received', [tokens, HIDDEN]);
      add('prefill', 21, 'S', 'returned', [tokens, HIDDEN]);
    } else {
      for (let layer = 2; layer <= 21; layer++) {
        add('prefill', layer, 'P1', 'received', [rows, HIDDEN]);
        add('prefill', layer, 'P1', 'returned', [rows, 3 * HIDDEN]);
        add('prefill', layer, 'P2', 'received', [3, tokens, HIDDEN]);
        add('prefill', layer, 'P2', 'stored', [2, tokens, HIDDEN]);
        add('prefill', layer, 'P2', 'returned', [tokens, HIDDEN]);
        add('prefill', layer, 'P3', 'received', [2, tokens, HIDDEN]);
        add('prefill', layer, 'P3', 'returned', [tokens, HIDDEN]);
      }
      add('keyshare', 2, 'K', 'received', [20, 2, 4, 16]);
    }
    for (let step = 0; step < generated; step++) {
      add('generate', 2, 'D', 'received', [1, HIDDEN]);
      add('generate', 21, 'D', 'returned', [1, HIDDEN]);
    }
    return { mode, sessionId, model: 'debprose-7m', startedAt: new Date().toISOString(), crossings, totalBytes: crossings.reduce((a, c) => a + c.bytes, 0) };
  }

  async lastSession(): Promise<LastSession | null> {
    return this.session ? structuredClone(this.session) : null;
  }

  async privacy(): Promise<PrivacyReport | null> {
    if (!this.withPrivacy) return null;
    return {
      generatedAt: '2025-01-15T10:00:00.000Z',
      model: 'debprose-7m',
      confidential: { local: true, split: false, scx: false },
      rows: [
        { mode: 'split', attack: 'A3', layer: 2, metric: 'positional token accuracy', value: 0.99, chance: 0.0002 },
        { mode: 'split', attack: 'A7', metric: 'generated tokens recovered', value: 0.97, chance: 0.0002 },
        { mode: 'scx', attack: 'A1', layer: 2, metric: 'bag-of-tokens recall', value: 0.41, chance: 0.004 },
        { mode: 'scx', attack: 'A2', layer: 2, metric: 'positional token accuracy', value: 0.63, chance: 0.0002 },
        { mode: 'scx', attack: 'A3', layer: 2, metric: 'positional token accuracy', value: 0.88, chance: 0.0002 },
        { mode: 'scx', attack: 'A7', metric: 'generated tokens recovered', value: 0.93, chance: 0.0002 },
        { mode: 'scx', attack: 'A9', metric: 'key recovery rate', value: 0, chance: 0 },
      ],
    };
  }

  async models(): Promise<ModelInfo[]> {
    return [{ id: 'debprose-7m', created: 1_736_900_000, ownedBy: 'hush' }];
  }

  events(signal: AbortSignal): AsyncIterable<HushEvent> {
    return this.hub.subscribe(signal);
  }

  // Key management stays unsupported here (404, as a daemon without the routes answers), so the UI's
  // "not supported by this daemon" path keeps a test; test/e2e-keys.test.ts runs it against the real daemon.
  async rotateIdentity(): Promise<Identity> {
    throw new NotFoundError('rotating the identity is not supported by this test double');
  }
  async exportBackup(_passphrase: string): Promise<{ backup: string; fileName: string }> {
    throw new NotFoundError('key backups are not supported by this test double');
  }
  async importBackup(_backup: string, _passphrase: string): Promise<Identity> {
    throw new NotFoundError('key backups are not supported by this test double');
  }

  /** Test hook: a device goes on or off line, as the daemon would report. */
  setOnline(peerId: string, online: boolean): void {
    const d = this.find(peerId);
    d.online = online;
    d.path = online ? 'lan' : null;
    d.lastSeen = new Date().toISOString();
    this.publish(online ? 'device.online' : 'device.offline', { peerId });
  }
}
