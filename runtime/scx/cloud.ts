import { StageRunner } from '../engine/stage-runner.ts';
import { SubLayerOps } from '../engine/sublayer-ops.ts';
import type { LoadedModel } from '../model/index.ts';
import { unpermuteHeadDims, kvHeadToGroup, assertPermutation } from './encoding.ts';
import { CrossingOrderError, MissingKeyShareError, ScxError, ScxLimitError, ScxModelMismatchError, ScxShapeError, UnknownScxSessionError } from './errors.ts';
import { validateCloudRequest, type CloudMode, type CloudReply, type CloudRequest, type CloudTransport } from './messages.ts';
import type { Transcript, TranscriptCrossing, TranscriptDirection, TranscriptStage } from './transcript.ts';

export interface ScxCloudInit {
  /** Most sessions held at once; a further open is refused. */
  maxSessions?: number;
  /** Record everything received, returned and stored (the attack harness's input). */
  capture?: Transcript;
  /** Model name a coordinator must ask for (defaults to the loaded model's directory name). */
  modelName?: string;
}

export const CLOUD_DEFAULTS = { maxSessions: 64 } as const;

type Phase = { kind: 'prefill'; layer: number; crossing: 'P1' | 'P2' | 'P3' } | { kind: 'prefilled' } | { kind: 'ready' };

interface CloudSession {
  mode: CloudMode;
  start: number;
  end: number;
  phase: Phase;
  /** Prompt length N, fixed by the first P2 (P1 carries decoys too) or by the split prefill. */
  n: number;
  /** Per cloud layer: K'' and V'' as received in P2 (head dims still permuted). */
  storedK: Float32Array[];
  storedV: Float32Array[];
  runner: StageRunner;
  decodeSteps: number;
}

/**
 * The cloud side of SCX as a state machine: it holds stock weights of the middle layers, answers each
 * crossing in order, keeps the (encoded) KV cache of cloud layers only, and after key sharing runs
 * decode natively. Every request is validated; any error ends the session.
 */
export class ScxCloud {
  private readonly sessions = new Map<string, CloudSession>();
  private readonly runners = new Map<string, Promise<StageRunner>>();
  readonly ops: SubLayerOps;
  private readonly maxSessions: number;
  readonly modelName: string;
  capture?: Transcript;

  constructor(readonly model: Pick<LoadedModel, 'config' | 'weights' | 'name'>, init: ScxCloudInit = {}) {
    this.ops = new SubLayerOps(model.config, model.weights);
    this.maxSessions = init.maxSessions ?? CLOUD_DEFAULTS.maxSessions;
    this.capture = init.capture;
    this.modelName = init.modelName ?? model.name;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** What the cloud stores for a session (statelessness audits): layers with KV and their lengths. */
  storage(session: string): { layers: number[]; kvLength: number; encodedLayers: number } | null {
    const s = this.sessions.get(session);
    if (!s) return null;
    const layers = Array.from({ length: s.end - s.start }, (_, i) => s.start + i);
    return { layers, kvLength: s.runner.sessionLength(session), encodedLayers: s.storedK.filter((x) => x.length > 0).length };
  }

  private runner(start: number, end: number): Promise<StageRunner> {
    const key = `${start}-${end}`;
    let r = this.runners.get(key);
    if (!r) {
      r = StageRunner.create(this.model.config, this.model.weights, { embed: false, start, end, head: false });
      this.runners.set(key, r);
    }
    return r;
  }

  /** Handle one request; never throws: errors become an error reply and end the session. */
  async handle(raw: unknown): Promise<CloudReply> {
    // A malformed request for a known session ends that session too.
    const claimed = (raw as { session?: unknown } | null)?.session;
    let session: string | undefined = typeof claimed === 'string' && this.sessions.has(claimed) ? claimed : undefined;
    try {
      const msg = validateCloudRequest(raw);
      session = msg.session;
      return await this.dispatch(msg);
    } catch (e) {
      const err = e as Error;
      if (session !== undefined && !(err instanceof UnknownScxSessionError)) this.drop(session);
      return { type: 'error', name: err instanceof ScxError ? err.name : 'ScxError', message: err.message };
    }
  }

  private record(session: string, stage: TranscriptStage, layer: number, crossing: TranscriptCrossing, direction: TranscriptDirection,
    name: string, shape: number[], data: Float32Array | Int32Array, step?: number): void {
    this.capture?.record({ session, stage, layer, crossing, direction, name, shape, data, ...(step === undefined ? {} : { step }) });
  }

  private get(session: string): CloudSession {
    const s = this.sessions.get(session);
    if (!s) throw new UnknownScxSessionError(session);
    return s;
  }

  private expect(s: CloudSession, layer: number, crossing: 'P1' | 'P2' | 'P3'): void {
    const p = s.phase;
    if (s.mode !== 'scx' || p.kind !== 'prefill' || p.layer !== layer || p.crossing !== crossing) {
      const want = p.kind === 'prefill' ? `${p.crossing} of layer ${p.layer}` : p.kind;
      throw new CrossingOrderError(`${crossing} of layer ${layer} out of order (expected ${want}); a replayed or skipped crossing ends the session`);
    }
  }

  private advance(s: CloudSession, layer: number, crossing: 'P1' | 'P2' | 'P3'): void {
    if (crossing === 'P1') s.phase = { kind: 'prefill', layer, crossing: 'P2' };
    else if (crossing === 'P2') s.phase = { kind: 'prefill', layer, crossing: 'P3' };
    else s.phase = layer + 1 < s.end ? { kind: 'prefill', layer: layer + 1, crossing: 'P1' } : { kind: 'prefilled' };
  }

  private async dispatch(msg: CloudRequest): Promise<CloudReply> {
    const c = this.model.config;
    const d = c.hiddenSize, H = c.numHeads, Hkv = c.numKvHeads, hd = c.headDim;
    const qkvWidth = (H + 2 * Hkv) * hd;
    switch (msg.type) {
      case 'open': {
        if (this.sessions.has(msg.session)) throw new CrossingOrderError(`session ${msg.session} is already open`);
        if (msg.model !== this.modelName) throw new ScxModelMismatchError(`this cloud peer serves ${this.modelName}, not ${msg.model}`);
        if (msg.start < 1 || msg.end > c.numLayers - 1 || msg.start >= msg.end) {
          throw new ScxShapeError(`cloud layers [${msg.start}, ${msg.end}) must lie inside [1, ${c.numLayers - 1}) so head and tail stay trusted`);
        }
        if (this.sessions.size >= this.maxSessions) throw new ScxLimitError(`cloud peer is at its limit of ${this.maxSessions} sessions`);
        const runner = await this.runner(msg.start, msg.end);
        if (msg.mode === 'scx') await this.ops.warm(['qkv', 'attention', 'post'], range(msg.start, msg.end));
        const count = msg.end - msg.start;
        this.sessions.set(msg.session, {
          mode: msg.mode, start: msg.start, end: msg.end, n: 0, decodeSteps: 0, runner,
          phase: msg.mode === 'scx' ? { kind: 'prefill', layer: msg.start, crossing: 'P1' } : { kind: 'prefilled' },
          storedK: Array.from({ length: count }, () => new Float32Array(0)),
          storedV: Array.from({ length: count }, () => new Float32Array(0)),
        });
        runner.openSession(msg.session);
        return { type: 'opened', session: msg.session };
      }
      case 'split': {
        const s = this.get(msg.session);
        if (s.mode !== 'split' || s.phase.kind !== 'prefilled' || s.n !== 0) throw new CrossingOrderError('split prefill out of order');
        checkRows(msg.hidden, msg.rows, d, 'hidden', c.maxPositionEmbeddings);
        this.record(msg.session, 'prefill', s.start, 'S', 'received', 'h', [msg.rows, d], msg.hidden);
        const out = await s.runner.forward(msg.session, { hidden: msg.hidden });
        s.n = msg.rows;
        s.phase = { kind: 'ready' };
        this.record(msg.session, 'prefill', s.end - 1, 'S', 'returned', 'h', [msg.rows, d], out.hidden!);
        return { type: 'split', hidden: out.hidden! };
      }
      case 'P1': {
        const s = this.get(msg.session);
        this.expect(s, msg.layer, 'P1');
        checkRows(msg.x, msg.rows, d, 'x', 2 * c.maxPositionEmbeddings + 1024);
        this.record(msg.session, 'prefill', msg.layer, 'P1', 'received', 'x', [msg.rows, d], msg.x);
        const qkv = await this.ops.qkv(msg.layer, msg.x);
        this.record(msg.session, 'prefill', msg.layer, 'P1', 'returned', 'qkv', [msg.rows, qkvWidth], qkv);
        this.advance(s, msg.layer, 'P1');
        return { type: 'P1', qkv };
      }
      case 'P2': {
        const s = this.get(msg.session);
        this.expect(s, msg.layer, 'P2');
        const n = msg.n;
        if (n < 1 || n > c.maxPositionEmbeddings) throw new ScxShapeError(`P2: N=${n} outside [1, ${c.maxPositionEmbeddings}]`);
        if (s.n !== 0 && n !== s.n) throw new ScxShapeError(`P2: N=${n} differs from this session's N=${s.n}`);
        if (msg.q.length !== H * n * hd || msg.k.length !== Hkv * n * hd || msg.v.length !== Hkv * n * hd) {
          throw new ScxShapeError(`P2: q/k/v must be [${H},${n},${hd}], [${Hkv},${n},${hd}], [${Hkv},${n},${hd}]`);
        }
        s.n = n;
        for (const [name, t, h] of [['q', msg.q, H], ['k', msg.k, Hkv], ['v', msg.v, Hkv]] as const) {
          this.record(msg.session, 'prefill', msg.layer, 'P2', 'received', name, [h, n, hd], t);
        }
        const o = await this.ops.attention(msg.q, msg.k, msg.v, n);
        const i = msg.layer - s.start;
        s.storedK[i] = new Float32Array(msg.k);
        s.storedV[i] = new Float32Array(msg.v);
        this.record(msg.session, 'prefill', msg.layer, 'P2', 'returned', 'o', [H, n, hd], o);
        this.advance(s, msg.layer, 'P2');
        return { type: 'P2', o };
      }
      case 'P3': {
        const s = this.get(msg.session);
        this.expect(s, msg.layer, 'P3');
        const n = s.n;
        if (msg.n !== n || msg.o.length !== n * H * hd || msg.h.length !== n * d) throw new ScxShapeError(`P3: o and h must be [${n},${H * hd}] and [${n},${d}]`);
        this.record(msg.session, 'prefill', msg.layer, 'P3', 'received', 'o', [n, H * hd], msg.o);
        this.record(msg.session, 'prefill', msg.layer, 'P3', 'received', 'h', [n, d], msg.h);
        const h = await this.ops.post(msg.layer, msg.o, msg.h);
        this.record(msg.session, 'prefill', msg.layer, 'P3', 'returned', 'h', [n, d], h);
        this.advance(s, msg.layer, 'P3');
        return { type: 'P3', h };
      }
      case 'keyshare': {
        const s = this.get(msg.session);
        if (s.mode !== 'scx' || s.phase.kind !== 'prefilled') throw new CrossingOrderError('key sharing before the prefill of every cloud layer finished, or twice');
        const want = range(s.start, s.end);
        const got = msg.layers.map((e) => e.layer);
        if (got.length !== want.length || got.some((l, i) => l !== want[i])) {
          throw new ScxShapeError(`keyshare must carry exactly the cloud layers [${s.start}, ${s.end}) in order`);
        }
        const k: Float32Array[] = [], v: Float32Array[] = [];
        for (const e of msg.layers) {
          if (e.sigma.length !== Hkv * hd || e.tau.length !== Hkv * hd) throw new ScxShapeError(`keyshare: sigma/tau of layer ${e.layer} must be [${Hkv},${hd}]`);
          for (let g = 0; g < Hkv; g++) {
            assertPermutation(e.sigma, hd, g * hd, 'sigma');
            assertPermutation(e.tau, hd, g * hd, 'tau');
          }
          this.record(msg.session, 'keyshare', e.layer, 'K', 'received', 'sigma', [Hkv, hd], e.sigma);
          this.record(msg.session, 'keyshare', e.layer, 'K', 'received', 'tau', [Hkv, hd], e.tau);
          const i = e.layer - s.start;
          // Rewrite the stored K'', V'' to the plain basis so decode runs natively.
          k.push(unpermuteHeadDims(s.storedK[i], Hkv, s.n, hd, e.sigma, kvHeadToGroup));
          v.push(unpermuteHeadDims(s.storedV[i], Hkv, s.n, hd, e.tau, kvHeadToGroup));
          s.storedK[i].fill(0); s.storedV[i].fill(0);
          s.storedK[i] = new Float32Array(0); s.storedV[i] = new Float32Array(0);
        }
        s.runner.setSessionKv(msg.session, s.n, k, v);
        for (let i = 0; i < k.length; i++) {
          this.record(msg.session, 'keyshare', s.start + i, 'K', 'stored', 'k', [Hkv, s.n, hd], k[i]);
          this.record(msg.session, 'keyshare', s.start + i, 'K', 'stored', 'v', [Hkv, s.n, hd], v[i]);
        }
        s.phase = { kind: 'ready' };
        return { type: 'keyshared' };
      }
      case 'decode': {
        const s = this.get(msg.session);
        if (s.phase.kind !== 'ready') {
          throw s.mode === 'scx' && s.phase.kind === 'prefilled'
            ? new MissingKeyShareError('decode before key sharing: the cloud holds no usable KV cache yet')
            : new CrossingOrderError('decode before prefill');
        }
        if (msg.hidden.length !== d) throw new ScxShapeError(`decode: hidden must be one row of ${d}`);
        const step = s.decodeSteps++;
        this.record(msg.session, 'generate', s.start, 'D', 'received', 'h', [1, d], msg.hidden, step);
        const out = await s.runner.forward(msg.session, { hidden: msg.hidden });
        this.record(msg.session, 'generate', s.end - 1, 'D', 'returned', 'h', [1, d], out.hidden!, step);
        return { type: 'decode', hidden: out.hidden! };
      }
      case 'end': {
        this.drop(msg.session);
        return { type: 'ended' };
      }
    }
  }

  /** Forget a session: stored encodings and KV are zeroed. */
  drop(session: string): void {
    const s = this.sessions.get(session);
    if (!s) return;
    for (const t of [...s.storedK, ...s.storedV]) t.fill(0);
    s.runner.dropSession(session);
    this.sessions.delete(session);
  }

  dropAll(): void {
    for (const id of [...this.sessions.keys()]) this.drop(id);
  }

  async release(): Promise<void> {
    this.dropAll();
    await this.ops.release();
    for (const r of this.runners.values()) await (await r).release();
  }

  /** The in-process transport: a direct call, with the arrays copied as a wire would. */
  transport(): CloudTransport {
    return { request: async (msg) => this.handle(structuredClone(msg)) };
  }
}

function range(a: number, b: number): number[] {
  return Array.from({ length: b - a }, (_, i) => a + i);
}

function checkRows(x: Float32Array, rows: number, width: number, what: string, maxRows: number): void {
  if (rows < 1 || rows > maxRows) throw new ScxLimitError(`${what}: ${rows} rows outside [1, ${maxRows}]`);
  if (x.length !== rows * width) throw new ScxShapeError(`${what}: ${x.length} values, expected [${rows}, ${width}]`);
}
