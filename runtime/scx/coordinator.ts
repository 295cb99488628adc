import { randomUUID } from 'node:crypto';
import type { ModelConfig } from '../model/config.ts';
import type { ModelWeights } from '../model/weights.ts';
import type { TokenForwarder } from '../engine/generate.ts';
import { SubLayerOps } from '../engine/sublayer-ops.ts';
import { applyRope, ropeTables } from '../model/rope.ts';
import { SessionKeys } from './keys.ts';
import { makeDecoys } from './decoys.ts';
import {
  permuteRows, unpermuteRows, appendRows, takeRows, addRowNoise, subtractInPlace, subtractRowInPlace,
  permuteHeadDims, unpermuteHeadDims, queryHeadToGroup, kvHeadToGroup, type NoisePool,
} from './encoding.ts';
import { ScxError, ScxRemoteError, ScxShapeError } from './errors.ts';
import { tensorBytes, type CloudReply, type CloudRequest, type CloudTransport } from './messages.ts';

export type Mode = 'local' | 'split' | 'scx';
export type NoiseKind = 'none' | 'shared' | 'rows';

export interface ScxOptions {
  noise?: NoiseKind;
  /** Laplace scale b of the P1 noise (absolute). */
  noiseScale?: number;
  /** Decoy rows per P1: a count, or 'N' for as many as prompt tokens. */
  decoys?: number | 'N';
  /** Pool of precomputed (a, a·W_qkv) pairs for shared noise; each pair is used once. */
  noisePool?: NoisePool;
}

/**
 * The trusted devices' part of a run: embedding + head layers [0, h), then tail layers [L-t, L) +
 * final norm + LM head. In-process these are stage runners; distributed, remote trusted devices.
 */
export interface TrustedPath {
  /** Token ids -> hidden rows after layer h-1 (appending to the head stages' KV). */
  head(session: string, ids: number[], signal?: AbortSignal): Promise<Float32Array>;
  /** Hidden rows entering layer L-t -> logits of the last row. */
  tail(session: string, hidden: Float32Array, signal?: AbortSignal): Promise<Float32Array>;
  drop(session: string): Promise<void>;
}

/** One tensor that crossed to or from the cloud (shape and size, never the values). */
export interface WireEntry {
  stage: 'prefill' | 'keyshare' | 'generate';
  layer: number;
  crossing: 'P1' | 'P2' | 'P3' | 'K' | 'D' | 'S';
  direction: 'received' | 'returned';
  name: string;
  shape: number[];
  bytes: number;
}

/** Counters of what crossed to and from the cloud in one session. */
export interface CrossingStats {
  crossings: number;
  bytesToCloud: number;
  bytesFromCloud: number;
  byKind: Record<string, { count: number; bytesToCloud: number; bytesFromCloud: number }>;
  prefillMs: number;
  decodeMs: number[];
  /** Every tensor, as the cloud received or returned it ("received" = sent by us). */
  wire: WireEntry[];
}

export interface CoordinatorInit {
  config: ModelConfig;
  /** Needed for the noise compensation (W_qkv of cloud layers) in scx mode. */
  weights?: ModelWeights;
  modelName: string;
  mode: Mode;
  /** Head layers [0, h) and tail layers [L-t, L). Local mode ignores them. */
  h: number;
  t: number;
  trusted: TrustedPath;
  cloud?: CloudTransport;
  /** The coordinator's sub-layer ops (attn_norm of cloud layers). Shared across sessions. */
  ops?: SubLayerOps;
  scx?: ScxOptions;
  /** A given seed replays a session (tests); by default a fresh one from the OS CSPRNG. */
  seed?: Uint8Array;
  session?: string;
}

/**
 * The trusted side of one request. Runs the head stages, the SCX per-layer exchange (or the split
 * crossing) for cloud layers, key sharing, and one vector each way per generated token. Implements
 * TokenForwarder, so the generation loop is the same for every mode. Keys are zeroed on close,
 * also after an error.
 */
export class ScxCoordinator implements TokenForwarder {
  readonly session: string;
  readonly keys: SessionKeys | null;
  readonly stats: CrossingStats = { crossings: 0, bytesToCloud: 0, bytesFromCloud: 0, byKind: {}, prefillMs: 0, decodeMs: [], wire: [] };
  private opened = false;
  private closed = false;
  private readonly cloudStart: number;
  private readonly cloudEnd: number;
  private readonly ropeT: ReturnType<typeof ropeTables> | null;
  /** Buffers derived from keys (noise, compensation) that must be zeroed at the end. */
  private readonly secrets: (Float32Array | Int32Array)[] = [];

  constructor(private readonly init: CoordinatorInit) {
    const L = init.config.numLayers;
    this.session = init.session ?? randomUUID();
    if (init.mode !== 'local') {
      if (!(init.h >= 1 && init.t >= 1 && init.h + init.t < L)) {
        throw new ScxShapeError(`mode ${init.mode} needs h >= 1, t >= 1 and h + t < ${L} (got h=${init.h}, t=${init.t})`);
      }
      if (!init.cloud) throw new ScxError(`mode ${init.mode} needs a cloud peer`);
    }
    this.cloudStart = init.h;
    this.cloudEnd = L - init.t;
    this.keys = init.mode === 'scx' ? (init.seed ? SessionKeys.fromSeed(init.seed) : SessionKeys.fresh()) : null;
    this.ropeT = init.mode === 'scx' ? cachedRopeTables(init.config) : null;
    if (init.mode === 'scx' && (!init.ops || !init.weights)) throw new ScxError('scx mode needs the coordinator sub-layer ops and weights');
  }

  private async call<T extends CloudReply['type']>(msg: CloudRequest, expect: T, signal?: AbortSignal): Promise<Extract<CloudReply, { type: T }>> {
    const reply = await this.init.cloud!.request(msg, signal);
    if (reply.type === 'error') throw new ScxRemoteError(reply.name, reply.message);
    if (reply.type !== expect) throw new ScxError(`cloud answered ${reply.type} to ${msg.type}`);
    const to = tensorBytes(msg), from = tensorBytes(reply);
    const k = (this.stats.byKind[msg.type] ??= { count: 0, bytesToCloud: 0, bytesFromCloud: 0 });
    k.count++; k.bytesToCloud += to; k.bytesFromCloud += from;
    this.stats.crossings++;
    this.stats.bytesToCloud += to;
    this.stats.bytesFromCloud += from;
    this.logWire(msg, reply);
    return reply as Extract<CloudReply, { type: T }>;
  }

  private logWire(msg: CloudRequest, reply: CloudReply): void {
    const c = this.init.config, d = c.hiddenSize, H = c.numHeads, Hkv = c.numKvHeads, hd = c.headDim;
    const add = (stage: WireEntry['stage'], layer: number, crossing: WireEntry['crossing'], direction: WireEntry['direction'], name: string, shape: number[]) =>
      this.stats.wire.push({ stage, layer, crossing, direction, name, shape, bytes: shape.reduce((a, b) => a * b, 4) });
    switch (msg.type) {
      case 'split':
        add('prefill', this.cloudStart, 'S', 'received', 'h', [msg.rows, d]);
        add('prefill', this.cloudEnd - 1, 'S', 'returned', 'h', [msg.rows, d]);
        break;
      case 'P1':
        add('prefill', msg.layer, 'P1', 'received', 'x', [msg.rows, d]);
        add('prefill', msg.layer, 'P1', 'returned', 'qkv', [msg.rows, (H + 2 * Hkv) * hd]);
        break;
      case 'P2':
        add('prefill', msg.layer, 'P2', 'received', 'q', [H, msg.n, hd]);
        add('prefill', msg.layer, 'P2', 'received', 'k', [Hkv, msg.n, hd]);
        add('prefill', msg.layer, 'P2', 'received', 'v', [Hkv, msg.n, hd]);
        add('prefill', msg.layer, 'P2', 'returned', 'o', [H, msg.n, hd]);
        break;
      case 'P3':
        add('prefill', msg.layer, 'P3', 'received', 'o', [msg.n, H * hd]);
        add('prefill', msg.layer, 'P3', 'received', 'h', [msg.n, d]);
        add('prefill', msg.layer, 'P3', 'returned', 'h', [msg.n, d]);
        break;
      case 'keyshare':
        for (const e of msg.layers) {
          add('keyshare', e.layer, 'K', 'received', 'sigma', [Hkv, hd]);
          add('keyshare', e.layer, 'K', 'received', 'tau', [Hkv, hd]);
        }
        break;
      case 'decode':
        add('generate', this.cloudStart, 'D', 'received', 'h', [1, d]);
        if (reply.type === 'decode') add('generate', this.cloudEnd - 1, 'D', 'returned', 'h', [1, d]);
        break;
    }
  }

  async prefill(ids: number[], signal?: AbortSignal): Promise<Float32Array> {
    const t0 = performance.now();
    const { mode, trusted } = this.init;
    if (ids.length === 0) throw new ScxShapeError('empty prompt');
    let h = await trusted.head(this.session, ids, signal);
    if (mode !== 'local') {
      await this.call({ type: 'open', session: this.session, mode, model: this.init.modelName, start: this.cloudStart, end: this.cloudEnd }, 'opened', signal);
      this.opened = true;
      if (mode === 'split') {
        h = (await this.call({ type: 'split', session: this.session, hidden: h, rows: ids.length }, 'split', signal)).hidden;
      } else {
        for (let l = this.cloudStart; l < this.cloudEnd; l++) h = await this.exchangeLayer(l, h, ids.length, signal);
      }
    }
    const logits = await trusted.tail(this.session, h, signal);
    if (mode === 'scx') await this.shareKeys(signal);
    this.stats.prefillMs = performance.now() - t0;
    return logits;
  }

  /** SCX P1/P2/P3 for cloud layer l on the true-order residual h [N, d]. */
  private async exchangeLayer(l: number, h: Float32Array, n: number, signal?: AbortSignal): Promise<Float32Array> {
    const c = this.init.config, keys = this.keys!, opts = this.init.scx ?? {};
    const d = c.hiddenSize, H = c.numHeads, Hkv = c.numKvHeads, hd = c.headDim;
    const qkvWidth = (H + 2 * Hkv) * hd;

    // P1: normalise, add decoys and noise, permute rows.
    const x = await this.init.ops!.attnNorm(l, h);
    const r = opts.decoys === 'N' ? n : Math.max(0, opts.decoys ?? 0);
    const decoys = r > 0 ? makeDecoys(x, n, d, r, keys, l) : new Float32Array(0);
    const m = n + r;
    let X = r > 0 ? appendRows(x, n, d, decoys, r) : x;
    const noise = opts.noise ?? 'none';
    const b = opts.noiseScale ?? 0;
    let comp: Float32Array | null = null;
    if (noise !== 'none' && b > 0) {
      let a: Float32Array;
      const pair = noise === 'shared' ? opts.noisePool?.take(l) : undefined;
      if (pair) {
        a = pair.a; comp = pair.aW;
      } else {
        a = keys.laplace(l, 'P1', 'noise', noise === 'shared' ? d : m * d, b);
        comp = await this.noiseThroughQkv(l, a);
      }
      this.secrets.push(a, comp);
      X = addRowNoise(X, m, d, a, noise);
    }
    const pi1 = keys.permutation(l, 'P1', 'rows', m);
    const p1 = await this.call({ type: 'P1', session: this.session, layer: l, x: permuteRows(X, m, d, pi1), rows: m }, 'P1', signal);
    if (p1.qkv.length !== m * qkvWidth) throw new ScxShapeError(`P1 reply of ${p1.qkv.length} values, expected [${m}, ${qkvWidth}]`);

    // P2: remove noise, restore order, drop decoys, RoPE at true positions, permute head dims.
    let Y = unpermuteRows(p1.qkv, m, qkvWidth, pi1);
    if (comp) {
      if (noise === 'shared') subtractRowInPlace(Y, m, qkvWidth, comp);
      else subtractInPlace(Y, comp);
    }
    Y = takeRows(Y, qkvWidth, n);
    const { q, k, v } = splitQkvHeads(Y, n, H, Hkv, hd);
    const qr = applyRope(q, H, n, hd, 0, this.ropeT!);
    const kr = applyRope(k, Hkv, n, hd, 0, this.ropeT!);
    const { sigma, tau } = this.headPerms(l);
    const qGroup = queryHeadToGroup(H, Hkv);
    const p2 = await this.call({
      type: 'P2', session: this.session, layer: l, n,
      q: permuteHeadDims(qr, H, n, hd, sigma, qGroup),
      k: permuteHeadDims(kr, Hkv, n, hd, sigma, kvHeadToGroup),
      v: permuteHeadDims(v, Hkv, n, hd, tau, kvHeadToGroup),
    }, 'P2', signal);
    if (p2.o.length !== H * n * hd) throw new ScxShapeError(`P2 reply of ${p2.o.length} values, expected [${H}, ${n}, ${hd}]`);

    // P3: undo tau, token-major, a fresh row permutation for o and the residual.
    const o = headsToRows(unpermuteHeadDims(p2.o, H, n, hd, tau, qGroup), H, n, hd);
    const pi2 = keys.permutation(l, 'P3', 'rows', n);
    const p3 = await this.call({
      type: 'P3', session: this.session, layer: l, n,
      o: permuteRows(o, n, H * hd, pi2), h: permuteRows(h, n, d, pi2),
    }, 'P3', signal);
    if (p3.h.length !== n * d) throw new ScxShapeError(`P3 reply of ${p3.h.length} values, expected [${n}, ${d}]`);
    return unpermuteRows(p3.h, n, d, pi2);
  }

  /**
   * a·W_qkvᵀ for noise rows a, on the same onnxruntime kernel the cloud uses (a JS matmul is ~50x
   * slower for row noise). The qkv op adds the bias, which the compensation must not contain.
   */
  private async noiseThroughQkv(l: number, a: Float32Array): Promise<Float32Array> {
    const aw = await this.init.ops!.qkv(l, a);
    if (this.init.config.qkvBias) {
      const w = this.init.weights!, p = `model.layers.${l}.self_attn.`;
      const bias = [w.get(p + 'q_proj.bias'), w.get(p + 'k_proj.bias'), w.get(p + 'v_proj.bias')];
      const width = bias.reduce((x, y) => x + y.length, 0);
      for (let r = 0; r < aw.length / width; r++) {
        let o = r * width;
        for (const bv of bias) for (let i = 0; i < bv.length; i++) aw[o++] -= bv[i];
      }
    }
    return aw;
  }

  /** sigma and tau of a cloud layer, derived once (P2 and key sharing both need them). */
  private readonly perms = new Map<number, { sigma: Int32Array; tau: Int32Array }>();
  private headPerms(l: number): { sigma: Int32Array; tau: Int32Array } {
    let p = this.perms.get(l);
    if (!p) {
      const c = this.init.config, keys = this.keys!;
      p = { sigma: keys.headPermutations(l, 'sigma', c.numKvHeads, c.headDim), tau: keys.headPermutations(l, 'tau', c.numKvHeads, c.headDim) };
      this.perms.set(l, p);
    }
    return p;
  }

  /** Stage 2: the cloud layers' sigma and tau, and nothing of head or tail layers. */
  private async shareKeys(signal?: AbortSignal): Promise<void> {
    const layers = [];
    for (let l = this.cloudStart; l < this.cloudEnd; l++) layers.push({ layer: l, ...this.headPerms(l) });
    await this.call({ type: 'keyshare', session: this.session, layers }, 'keyshared', signal);
  }

  async decode(id: number, signal?: AbortSignal): Promise<Float32Array> {
    const t0 = performance.now();
    let h = await this.init.trusted.head(this.session, [id], signal);
    if (this.init.mode !== 'local') h = (await this.call({ type: 'decode', session: this.session, hidden: h }, 'decode', signal)).hidden;
    const logits = await this.init.trusted.tail(this.session, h, signal);
    this.stats.decodeMs.push(performance.now() - t0);
    return logits;
  }

  /** End the session everywhere; keys and derived secrets are zeroed whether or not it failed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.opened) {
        try { await this.init.cloud!.request({ type: 'end', session: this.session }); } catch { /* the cloud may be gone */ }
      }
      await this.init.trusted.drop(this.session);
    } finally {
      for (const s of this.secrets) s.fill(0);
      this.secrets.length = 0;
      this.perms.clear(); // the arrays themselves are the keys' buffers, zeroed by destroy()
            this.keys?.destroy();
    }
  }
}

const ropeCache = new WeakMap<ModelConfig, ReturnType<typeof ropeTables>>();
/** RoPE tables depend only on the model: build them once, not per session. */
function cachedRopeTables(c: ModelConfig): ReturnType<typeof ropeTables> {
  let t = ropeCache.get(c);
  if (!t) ropeCache.set(c, (t = ropeTables(c, c.maxPositionEmbeddings)));
  return t;
}

/** Split token-major QKV rows [N, (H+2Hkv)·hd] into head-major q [H,N,hd], k/v [Hkv,N,hd]. */
export function splitQkvHeads(Y: Float32Array, n: number, H: number, Hkv: number, hd: number): { q: Float32Array; k: Float32Array; v: Float32Array } {
  const width = (H + 2 * Hkv) * hd;
  const q = new Float32Array(H * n * hd), k = new Float32Array(Hkv * n * hd), v = new Float32Array(Hkv * n * hd);
  for (let j = 0; j < n; j++) {
    const row = j * width;
    for (let h = 0; h < H; h++) q.set(Y.subarray(row + h * hd, row + (h + 1) * hd), (h * n + j) * hd);
    for (let g = 0; g < Hkv; g++) {
      k.set(Y.subarray(row + (H + g) * hd, row + (H + g + 1) * hd), (g * n + j) * hd);
      v.set(Y.subarray(row + (H + Hkv + g) * hd, row + (H + Hkv + g + 1) * hd), (g * n + j) * hd);
    }
  }
  return { q, k, v };
}

/** Head-major [H, N, hd] -> token-major [N, H·hd]. */
export function headsToRows(o: Float32Array, H: number, n: number, hd: number): Float32Array {
  const out = new Float32Array(n * H * hd);
  for (let h = 0; h < H; h++) for (let j = 0; j < n; j++) out.set(o.subarray((h * n + j) * hd, (h * n + j + 1) * hd), (j * H + h) * hd);
  return out;
}
