import { setTimeout as sleep } from 'node:timers/promises';
import {
  ConflictError,
  EventHub,
  GoneError,
  NotFoundError,
  UnavailableError,
  BadRequestError,
  type Cloud,
  type CloudTestResult,
  type Device,
  type DeviceController,
  type GenerateEvent,
  type GenerateRequest,
  type HushEvent,
  type Identity,
  type Invite,
  type JoinResult,
  type LastSession,
  type Mode,
  type ModelInfo,
  type PlanView,
  type PrivacyReport,
} from '../runtime/api/index.ts';

/**
 * TEST DOUBLE FOR THE HTTP TRANSPORT LAYER ONLY. It stands in for the device daemon (peers/) so the
 * api tests exercise routing, auth, CORS, validation, SSE and the OpenAI wire format. It is not a
 * model and not a roster: generation replays a fixed token sequence, state is in memory. The lead's
 * end-to-end test runs the same server against the real daemon.
 */
export const SCRIPT = [' The', ' quick', ' brown', ' fox', ' jumps', ' over', ' the', ' lazy', ' dog', '.'];
export const SCRIPT_TEXT = SCRIPT.join('');
export const PEER_A = '12D3KooWA1111111111111111111111111111111111111111111';
export const PEER_B = '12D3KooWB2222222222222222222222222222222222222222222';

export class ScriptedController implements DeviceController {
  readonly hub = new EventHub();
  /** Delay before each token; with `endless` the script repeats until the signal aborts. */
  tokenDelayMs = 0;
  endless = false;
  /** Every request generate() was called with, in order. */
  readonly requests: GenerateRequest[] = [];
  /** The abort reasons the generations' signals fired with. */
  readonly abortReasons: unknown[] = [];
  private abortWaiters: { index: number; resolve: (reason: unknown) => void }[] = [];
  /** Calls that reached the controller, by method name: lets tests prove a refused request never got here. */
  readonly calls: string[] = [];
  generateFailure: Error | null = null;

  private self: Identity = { peerId: '12D3KooWSELF000000000000000000000000000000000000000', fingerprint: 'SELF-0000', name: 'laptop', addresses: ['/ip4/127.0.0.1/tcp/4001'] };
  private readonly roster = new Map<string, Device>([
    [PEER_A, { peerId: PEER_A, fingerprint: 'AAAA-1111', name: 'desktop', added: '2025-01-01T00:00:00.000Z', online: true, path: 'lan', rttMs: 0.8, bandwidthMBps: 110, layers: 'embed, 0-3' }],
    [PEER_B, { peerId: PEER_B, fingerprint: 'BBBB-2222', name: 'phone', added: '2025-01-02T00:00:00.000Z', online: false, path: null, lastSeen: '2025-01-03T00:00:00.000Z' }],
  ]);
  private readonly cloudList: Cloud[] = [];
  private last: LastSession | null = null;
  private nextCloud = 1;

  /** Resolves with the reason of the first generation abort from now on. */
  nextAbort(): Promise<unknown> {
    return this.nextAbortAfter(this.abortReasons.length);
  }

  /** Resolves with the reason of abort number `count` (0-based), now or when it happens. */
  nextAbortAfter(count: number): Promise<unknown> {
    if (this.abortReasons.length > count) return Promise.resolve(this.abortReasons[count]);
    return new Promise((resolve) => this.abortWaiters.push({ index: count, resolve }));
  }

  publish(type: HushEvent['type'], extra: Partial<HushEvent> = {}): HushEvent {
    const ev: HushEvent = { type, at: new Date().toISOString(), ...extra };
    this.hub.publish(ev);
    return ev;
  }

  async identity(): Promise<Identity> {
    this.calls.push('identity');
    return { ...this.self };
  }
  async renameSelf(name: string): Promise<Identity> {
    this.calls.push('renameSelf');
    this.self = { ...this.self, name };
    return { ...this.self };
  }
  async devices(): Promise<Device[]> {
    this.calls.push('devices');
    return [...this.roster.values()].map((d) => ({ ...d }));
  }
  private device(peerId: string): Device {
    const d = this.roster.get(peerId);
    if (!d) throw new NotFoundError(`no paired device ${peerId}`);
    return d;
  }
  async renameDevice(peerId: string, name: string): Promise<Device> {
    this.calls.push('renameDevice');
    const d = this.device(peerId);
    d.name = name;
    return { ...d };
  }
  async revokeDevice(peerId: string): Promise<Device> {
    this.calls.push('revokeDevice');
    const d = this.device(peerId);
    if (d.revoked) throw new ConflictError(`device ${peerId} is already revoked`);
    d.revoked = '2025-02-01T00:00:00.000Z';
    d.online = false;
    d.path = null;
    return { ...d };
  }
  async createInvite(): Promise<Invite> {
    this.calls.push('createInvite');
    return { code: 'HUSH-ABCD-EFGH', expiresAt: '2025-02-01T00:10:00.000Z' };
  }
  async joinInvite(code: string, name?: string): Promise<JoinResult> {
    this.calls.push('joinInvite');
    if (code === 'EXPIRED') throw new GoneError('the invite code has expired; ask for a new one');
    if (!code.startsWith('HUSH-')) throw new BadRequestError('not a Hush invite code');
    return { peerId: PEER_A, name: name ?? 'desktop' };
  }
  async clouds(): Promise<Cloud[]> {
    this.calls.push('clouds');
    return this.cloudList.map((x) => ({ ...x }));
  }
  async addCloud(multiaddr: string, name?: string): Promise<Cloud> {
    this.calls.push('addCloud');
    if (this.cloudList.some((x) => x.multiaddr === multiaddr)) throw new ConflictError(`cloud ${multiaddr} is already added`);
    const cloud: Cloud = { id: `cloud${this.nextCloud++}`, multiaddr, name: name ?? 'cloud' };
    this.cloudList.push(cloud);
    return { ...cloud };
  }
  async testCloud(id: string): Promise<CloudTestResult> {
    this.calls.push('testCloud');
    if (!this.cloudList.some((x) => x.id === id)) throw new NotFoundError(`no cloud ${id}`);
    return { reachable: false, rttMs: null, error: 'connection refused' };
  }
  async removeCloud(id: string): Promise<void> {
    this.calls.push('removeCloud');
    const i = this.cloudList.findIndex((x) => x.id === id);
    if (i < 0) throw new NotFoundError(`no cloud ${id}`);
    this.cloudList.splice(i, 1);
  }
  async plan(mode: Mode): Promise<PlanView> {
    this.calls.push('plan');
    if (mode !== 'local' && this.cloudList.length === 0) throw new UnavailableError(`mode ${mode} needs a cloud peer; add one first`);
    return {
      mode,
      stages: [{ device: 'laptop', role: 'embed', layers: 'embed' }, { device: 'laptop', role: 'head', layers: '0-1', predictedMs: 3 }],
      predicted: { ttftMs: 120, perTokenMs: 40 },
      why: ['laptop has the most free memory'],
    };
  }

  async *generate(req: GenerateRequest, signal: AbortSignal): AsyncIterable<GenerateEvent> {
    this.calls.push('generate');
    this.requests.push(req);
    signal.addEventListener(
      'abort',
      () => {
        this.abortReasons.push(signal.reason);
        const reached = this.abortWaiters.filter((w) => w.index < this.abortReasons.length);
        this.abortWaiters = this.abortWaiters.filter((w) => w.index >= this.abortReasons.length);
        for (const w of reached) w.resolve(this.abortReasons[w.index]);
      },
      { once: true },
    );
    if (this.generateFailure) throw this.generateFailure;
    const mode: Mode = req.mode ?? (this.cloudList.length > 0 ? 'scx' : 'local');
    yield { type: 'start', mode, promptTokens: 7, model: req.model ?? 'tiny-llama' };
    let n = 0;
    while (n < req.maxTokens && (this.endless || n < SCRIPT.length)) {
      if (this.tokenDelayMs > 0) await sleep(this.tokenDelayMs, undefined, { signal });
      signal.throwIfAborted();
      yield { type: 'token', text: SCRIPT[n % SCRIPT.length], id: 100 + (n % SCRIPT.length) };
      n++;
    }
    this.last = { mode, crossings: [], totalBytes: 0 };
    yield { type: 'done', finishReason: n >= req.maxTokens ? 'length' : 'stop', usage: { promptTokens: 7, completionTokens: n }, timings: { ttftMs: 1, totalMs: 2 } };
  }

  async lastSession(): Promise<LastSession | null> {
    this.calls.push('lastSession');
    return this.last;
  }
  async privacy(): Promise<PrivacyReport | null> {
    this.calls.push('privacy');
    return null;
  }
  async models(): Promise<ModelInfo[]> {
    this.calls.push('models');
    return [{ id: 'tiny-llama', created: 1_700_000_000, ownedBy: 'hush' }];
  }
  events(signal: AbortSignal): AsyncIterable<HushEvent> {
    this.calls.push('events');
    return this.hub.subscribe(signal);
  }

  /** Passphrases the key routes received, so tests can check what reached the controller. */
  readonly passphrases: string[] = [];
  private rotations = 0;
  async rotateIdentity(): Promise<Identity> {
    this.calls.push('rotateIdentity');
    this.rotations++;
    this.self = { ...this.self, peerId: `12D3KooWROT${this.rotations}`.padEnd(52, '0'), fingerprint: `ROT${this.rotations}-0000` };
    this.publish('identity.changed', { peerId: this.self.peerId });
    return { ...this.self };
  }
  /** Not encryption: a marked copy of the identity, enough to test the routes' shapes and errors. */
  async exportBackup(passphrase: string): Promise<{ backup: string; fileName: string }> {
    this.calls.push('exportBackup');
    this.passphrases.push(passphrase);
    return { backup: JSON.stringify({ double: true, passphrase: passphrase.length, self: this.self }), fileName: `hush-identity-${this.self.fingerprint}.hushkey` };
  }
  async importBackup(backup: string, passphrase: string): Promise<Identity> {
    this.calls.push('importBackup');
    this.passphrases.push(passphrase);
    let doc: { double?: boolean; passphrase?: number; self?: Identity };
    try {
      doc = JSON.parse(backup) as typeof doc;
    } catch {
      throw Object.assign(new Error('not a Hush key backup (the file is not JSON)'), { name: 'BackupCorruptError', statusCode: 400 });
    }
    if (!doc.double || !doc.self) throw Object.assign(new Error('not a Hush key backup'), { name: 'BackupCorruptError', statusCode: 400 });
    if (doc.passphrase !== passphrase.length) throw Object.assign(new Error('the passphrase does not open this backup'), { name: 'BackupPassphraseError', statusCode: 400 });
    this.self = { ...doc.self };
    this.publish('identity.changed', { peerId: this.self.peerId });
    return { ...this.self };
  }
}

/** A parsed SSE event: its data lines joined, or a comment. */
export interface SseItem {
  data?: string;
  comment?: string;
}

/**
 * Reads an SSE response body until `until` says stop, the stream ends, or `timeoutMs` passes
 * (then it throws, so a hung stream fails the test instead of hanging it).
 */
export async function readSse(res: Response, until: (items: SseItem[]) => boolean = () => false, timeoutMs = 5000): Promise<{ items: SseItem[]; raw: string }> {
  if (!res.body) throw new Error('response has no body');
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const items: SseItem[] = [];
  let raw = '';
  let buf = '';
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    void reader.cancel(new Error('readSse timeout')).catch(() => {});
  }, timeoutMs);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const text = decoder.decode(value, { stream: true });
      raw += text;
      buf += text;
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data: string[] = [];
        const item: SseItem = {};
        for (const line of block.split('\n')) {
          if (line.startsWith('data: ')) data.push(line.slice(6));
          else if (line.startsWith(': ')) item.comment = line.slice(2);
        }
        if (data.length) item.data = data.join('\n');
        if (item.data !== undefined || item.comment !== undefined) items.push(item);
      }
      if (until(items)) {
        await reader.cancel();
        break;
      }
    }
  } finally {
    clearTimeout(timer);
  }
  if (expired) throw new Error(`SSE stream did not finish within ${timeoutMs} ms; got: ${raw.slice(0, 500)}`);
  return { items, raw };
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
