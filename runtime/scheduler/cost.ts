/**
 * The cost model: predicts a plan's time to first token and per-token latency from device profiles,
 * link profiles and the model manifest. The solver's dynamic programme and the simulator both use the
 * primitives here, so a plan's predicted time, the DP's objective and a noise-free simulation agree.
 *
 * A pass (prefill or one decode step) is a sequence of operations: the coordinator sends token ids to
 * the embed stage, each stage computes and hands its output to the next stage's device (no hop when it
 * is the same device), the stage before the cloud hands the residual stream to the coordinator, the
 * coordinator runs the exchange with the cloud peer (SCX.md), hands the result to the stage after the
 * cloud, and the LM head stage returns logits (last position only) to the coordinator.
 */
import type { ModelManifest, PartCost } from '../model/manifest.ts';
import { InvalidInputError } from './errors.ts';
import type {
  ClusterState, DeviceProfile, LinkProfile, Objective, Plan, PlanMode, PlanRequest, Prediction,
  ScxNoise, StagePrediction,
} from './types.ts';

/** Activation workspace per device, in hidden vectors per prompt token (residual, norm, q/k/v, MLP). */
export const WORKSPACE_VECTORS_PER_PROMPT_TOKEN = 16;
/** Minimum retransmission timeout (Linux TCP); a lost message costs max(this, 2 RTT). */
export const MIN_RTO_MS = 200;
/** Elementwise-equivalents to draw one Laplace sample (log + a few arithmetic ops). */
export const LAPLACE_SAMPLE_COST = 8;
/** Bytes per entry of a shared SCX permutation key (head dims fit in uint16). */
export const KEY_ENTRY_BYTES = 2;
/** Bytes per token id on the wire. */
export const TOKEN_ID_BYTES = 4;

export interface ResolvedRequest {
  mode: PlanMode;
  promptTokens: number;
  maxNewTokens: number;
  /** KV capacity reserved (tokens). */
  contextTokens: number;
  /** Context at which the steady-state per-token latency is predicted: N + G/2. */
  decodeContext: number;
  wireBytes: number;
  decoyRows: number;
  noise: ScxNoise;
  h: number | undefined;
  t: number | undefined;
  maxEdgeLayers: number;
  objective: Objective;
  /** Objective = wTtft x TTFT + wToken x perToken + wKey x keyShare. */
  wTtft: number;
  wToken: number;
  wKey: number;
}

/** Tie-breaking weight for the parts an objective ignores (keeps 0 x Infinity out of sums). */
const EPS_WEIGHT = 1e-6;

function posInt(v: unknown, name: string, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new InvalidInputError(`${name} must be an integer >= ${min} (got ${JSON.stringify(v)})`);
  }
  return v;
}

/** Fill defaults and check a request against the model. */
export function resolveRequest(req: PlanRequest, manifest: ModelManifest): ResolvedRequest {
  const L = manifest.numLayers;
  if (req.mode !== 'local' && req.mode !== 'split' && req.mode !== 'scx') {
    throw new InvalidInputError(`mode must be local, split or scx (got ${JSON.stringify(req.mode)})`);
  }
  const N = posInt(req.promptTokens ?? 256, 'promptTokens');
  const G = posInt(req.maxNewTokens ?? 128, 'maxNewTokens');
  const ctx = posInt(req.contextTokens ?? N + G, 'contextTokens');
  if (ctx < N) throw new InvalidInputError(`contextTokens (${ctx}) is smaller than promptTokens (${N})`);
  const w = req.wireBytesPerElement ?? 4;
  if (w !== 2 && w !== 4) throw new InvalidInputError(`wireBytesPerElement must be 2 or 4 (got ${w})`);
  const noise = req.scx?.noise ?? 'shared';
  if (noise !== 'off' && noise !== 'shared' && noise !== 'rows') throw new InvalidInputError(`scx.noise must be off, shared or rows`);
  const decoys = posInt(req.scx?.decoyRows ?? 0, 'scx.decoyRows', 0);
  const cloud = req.mode !== 'local';
  let h: number | undefined, t: number | undefined;
  if (cloud) {
    if (L < 3) throw new InvalidInputError(`mode ${req.mode} needs at least 3 layers (h >= 1, t >= 1, one cloud layer); the model has ${L}`);
    if (req.h != null) h = posInt(req.h, 'h');
    if (req.t != null) t = posInt(req.t, 't');
    if ((h ?? 1) + (t ?? 1) > L - 1) {
      throw new InvalidInputError(`h + t must leave at least one cloud layer: h=${h ?? 1} t=${t ?? 1} L=${L}`);
    }
  } else if (req.h != null || req.t != null) {
    throw new InvalidInputError('h and t apply to split and scx modes only (local mode runs every layer on trusted devices)');
  }
  const maxEdge = req.maxEdgeLayers == null ? L : posInt(req.maxEdgeLayers, 'maxEdgeLayers');
  if ((h ?? 0) > maxEdge || (t ?? 0) > maxEdge) throw new InvalidInputError(`fixed h=${h} / t=${t} exceed maxEdgeLayers ${maxEdge}`);
  const objective = req.objective ?? 'total';
  let wTtft: number, wToken: number, wKey: number;
  if (objective === 'total') { wTtft = 1; wToken = Math.max(G - 1, EPS_WEIGHT); wKey = G > 1 ? 1 : EPS_WEIGHT; }
  else if (objective === 'perToken') { wTtft = EPS_WEIGHT; wToken = 1; wKey = EPS_WEIGHT; }
  else if (objective === 'ttft') { wTtft = 1; wToken = EPS_WEIGHT; wKey = EPS_WEIGHT; }
  else throw new InvalidInputError(`objective must be total, perToken or ttft (got ${JSON.stringify(objective)})`);
  return {
    mode: req.mode, promptTokens: N, maxNewTokens: G, contextTokens: ctx, decodeContext: N + G / 2,
    wireBytes: w, decoyRows: decoys, noise, h, t, maxEdgeLayers: maxEdge, objective, wTtft, wToken, wKey,
  };
}

/** Attention widths recovered from the manifest: q (H*hd), k and v (Hkv*hd each). */
export function attentionDims(m: ModelManifest): { qDim: number; kvDim: number; qkvDim: number } {
  const layer = m.layers[0];
  // flopsPerTokenPerContext = 4 * H * hd; kvBytesPerTokenPerLayer = 2 (K,V) * Hkv * hd * 4 bytes.
  const qDim = layer && layer.flopsPerTokenPerContext > 0 ? layer.flopsPerTokenPerContext / 4 : m.hiddenSize;
  const kvDim = m.kvBytesPerTokenPerLayer > 0 ? m.kvBytesPerTokenPerLayer / 8 : m.hiddenSize;
  return { qDim, kvDim, qkvDim: qDim + 2 * kvDim };
}

/** d-vectors per prompt token per cloud layer that scx prefill moves (both directions, no decoys). */
export function scxVectorsPerTokenPerLayer(m: ModelManifest): number {
  const { qDim, qkvDim } = attentionDims(m);
  const d = m.hiddenSize;
  // P1: x out, qkv back; P2: q,k,v out, o back; P3: o and h out, h3 back.
  return (d + qkvDim + qkvDim + qDim + qDim + d + d) / d;
}

export type PassPhase = 'prefill' | 'decode';

/** One sequential step of a pass. `stage` is the plan stage it belongs to; -1 for the final return. */
export type Op =
  | { kind: 'compute'; device: string; ms: number; stage: number; what: string; cloud: boolean; layer?: number }
  | { kind: 'send'; from: string; to: string; bytes: number; ms: number; stage: number; what: string; hopIn: boolean; layer?: number };

/** Breakdown of the cloud stage's time, ms (see StagePrediction.cloud). */
export interface CloudBlockCost {
  prefillWireMs: number;
  prefillCloudMs: number;
  prefillCoordinatorMs: number;
  decodeWireMs: number;
  decodeCloudMs: number;
  keyShareMs: number;
  prefillBytes: number;
  decodeBytes: number;
  prefillRoundTrips: number;
}

interface CloudTable {
  load: number;
  /** Prefix sums over layers (index l = layers [0, l)). Cloud compute is before the load factor. */
  preWire: Float64Array; preCloud: Float64Array; preCoord: Float64Array; preBytes: Float64Array; decCloud: Float64Array;
  splitBytes: number; splitWireMs: number;
  decodeVectorBytes: number; decodeWireMs: number;
  keyBytesPerLayer: number; rewriteMsPerLayer: number;
}


/** Time of one message of `bytes` over a link in the given direction, in expectation. */
export function hopMs(link: LinkProfile, from: string, bytes: number): number {
  const bw = from === link.a ? link.bandwidthBytesPerSec : (link.reverseBandwidthBytesPerSec ?? link.bandwidthBytesPerSec);
  const loss = link.lossRate ?? 0;
  const rto = Math.max(MIN_RTO_MS, 2 * link.rttMs);
  return link.rttMs / 2 + (link.perMessageMs ?? 0) + (link.jitterMs ?? 0) + (bytes / bw) * 1000 + (loss / (1 - loss)) * rto;
}

function checkDevice(d: DeviceProfile, what: string): void {
  const pos = (v: number, n: string) => {
    if (!(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw new InvalidInputError(`${what} ${d.id}: ${n} must be a positive number (got ${v})`);
  };
  if (typeof d.id !== 'string' || d.id === '') throw new InvalidInputError(`${what}: id must be a non-empty string`);
  if (!(Number.isFinite(d.memoryBytes) && d.memoryBytes >= 0)) throw new InvalidInputError(`${what} ${d.id}: memoryBytes must be >= 0`);
  pos(d.prefillFlopsPerSec, 'prefillFlopsPerSec');
  pos(d.decodeFlopsPerSec, 'decodeFlopsPerSec');
  if (!(Number.isFinite(d.layerOverheadMs) && d.layerOverheadMs >= 0)) throw new InvalidInputError(`${what} ${d.id}: layerOverheadMs must be >= 0`);
  if (d.elementwisePerSec != null) pos(d.elementwisePerSec, 'elementwisePerSec');
  if (d.maxShare != null && !(d.maxShare >= 0 && d.maxShare <= 1)) throw new InvalidInputError(`${what} ${d.id}: maxShare must be in [0,1]`);
  if (d.slots != null) pos(d.slots, 'slots');
}

function checkLink(l: LinkProfile): void {
  const ok = (v: number | undefined, min: number) => v == null || (Number.isFinite(v) && v >= min);
  if (!(l.bandwidthBytesPerSec > 0) || !ok(l.reverseBandwidthBytesPerSec, 1e-9) || !ok(l.rttMs, 0)
    || !ok(l.perMessageMs, 0) || !ok(l.jitterMs, 0) || !(l.lossRate == null || (l.lossRate >= 0 && l.lossRate < 1))) {
    throw new InvalidInputError(`link ${l.a}-${l.b}: rtt, bandwidth, jitter and loss must be finite, bandwidth > 0, loss in [0,1)`);
  }
}

/**
 * Cost model bound to one cluster state, manifest and request. Cheap to build; the solver and the
 * simulator build one per planning call or per world state.
 */
export class CostModel {
  readonly req: ResolvedRequest;
  readonly L: number;
  /** Units in pipeline order: 0 = embedding, 1..L = layers 0..L-1, L+1 = final norm + LM head. */
  readonly U: number;
  readonly dims: { qDim: number; kvDim: number; qkvDim: number };
  private readonly trusted = new Map<string, DeviceProfile>();
  private readonly clouds = new Map<string, DeviceProfile>();
  /** Links by both endpoints (two-level map: no key strings built on the hot path). */
  private readonly links = new Map<string, Map<string, LinkProfile>>();

  constructor(readonly state: ClusterState, readonly manifest: ModelManifest, request: PlanRequest) {
    this.req = resolveRequest(request, manifest);
    this.L = manifest.numLayers;
    this.U = this.L + 2;
    if (manifest.layers.length !== this.L) throw new InvalidInputError(`manifest ${manifest.name}: ${manifest.layers.length} layer costs for ${this.L} layers`);
    this.dims = attentionDims(manifest);
    for (const d of state.devices) {
      checkDevice(d, 'device');
      if (this.trusted.has(d.id)) throw new InvalidInputError(`device ${d.id} is listed twice`);
      this.trusted.set(d.id, d);
    }
    for (const c of state.cloudPeers) {
      checkDevice(c, 'cloud peer');
      if (this.clouds.has(c.id) || this.trusted.has(c.id)) throw new InvalidInputError(`cloud peer ${c.id} is listed twice or is also a trusted device`);
      this.clouds.set(c.id, c);
    }
    if (!this.trusted.has(state.coordinator)) throw new InvalidInputError(`coordinator ${state.coordinator} is not among the trusted devices`);
    for (const l of state.links) {
      checkLink(l);
      (this.links.get(l.a) ?? this.links.set(l.a, new Map()).get(l.a)!).set(l.b, l);
      (this.links.get(l.b) ?? this.links.set(l.b, new Map()).get(l.b)!).set(l.a, l);
    }
  }

  device(id: string): DeviceProfile | undefined { return this.trusted.get(id); }
  cloud(id: string): DeviceProfile | undefined { return this.clouds.get(id); }
  link(a: string, b: string): LinkProfile | undefined { return this.links.get(a)?.get(b); }

  /** Expected time to move `bytes` from one device to another; 0 on the same device, Infinity with no link. */
  hop(from: string, to: string, bytes: number): number {
    if (from === to) return 0;
    const l = this.links.get(from)?.get(to);
    return l ? hopMs(l, from, bytes) : Infinity;
  }

  part(u: number): PartCost {
    if (u === 0) return this.manifest.embedding;
    if (u === this.U - 1) return this.manifest.head;
    return this.manifest.layers[u - 1];
  }
  isLayerUnit(u: number): boolean { return u >= 1 && u <= this.L; }

  elementwiseRate(d: DeviceProfile): number { return d.elementwisePerSec ?? d.decodeFlopsPerSec / 2; }
  loadFactor(d: DeviceProfile): number { return Math.max(1, ((d.activeSessions ?? 0) + 1) / (d.slots ?? 1)); }

  /** Compute time of one unit during prefill of the whole prompt (the LM head runs on the last position only). */
  unitPrefillMs(d: DeviceProfile, u: number): number {
    const N = this.req.promptTokens;
    if (u === 0) return d.layerOverheadMs + (N * this.manifest.hiddenSize / this.elementwiseRate(d)) * 1000;
    const p = this.part(u);
    if (u === this.U - 1) return d.layerOverheadMs + (p.flopsPerToken / d.decodeFlopsPerSec) * 1000;
    return d.layerOverheadMs + ((N * p.flopsPerToken + p.flopsPerTokenPerContext * N * (N + 1) / 2) / d.prefillFlopsPerSec) * 1000;
  }

  /** Compute time of one unit for one decoded token at `ctx` cached positions. */
  unitDecodeMs(d: DeviceProfile, u: number, ctx = this.req.decodeContext): number {
    if (u === 0) return d.layerOverheadMs + (this.manifest.hiddenSize / this.elementwiseRate(d)) * 1000;
    const p = this.part(u);
    return d.layerOverheadMs + ((p.flopsPerToken + p.flopsPerTokenPerContext * ctx) / d.decodeFlopsPerSec) * 1000;
  }

  /** Weight bytes of a unit. */
  unitBytes(u: number): number { return this.part(u).bytes; }
  /** KV cache bytes one layer holds for the reserved context. */
  kvBytesPerLayer(): number { return this.manifest.kvBytesPerTokenPerLayer * this.req.contextTokens; }
  workspaceBytes(): number { return WORKSPACE_VECTORS_PER_PROMPT_TOKEN * this.req.promptTokens * this.manifest.hiddenVectorBytes; }

  /** Bytes crossing the boundary before unit position p (0: token ids; U: logits; else hidden states). */
  boundaryBytes(p: number, phase: PassPhase): number {
    const n = phase === 'prefill' ? this.req.promptTokens : 1;
    if (p === 0) return TOKEN_ID_BYTES * n;
    if (p === this.U) return this.manifest.vocabSize * this.req.wireBytes;
    return n * this.manifest.hiddenSize * this.req.wireBytes;
  }

  /**
   * Time of the cloud stage running layers [h, e) on `cloudId`, with the coordinator as the trusted end.
   * scx prefill: per cloud layer three round trips (P1, P2, P3 of SCX.md) plus the coordinator's SCX work;
   * split prefill: the boundary states once each way; decode (both): one d-vector each way.
   * O(1) per call after a per-peer table is built (the solver asks for every (h, e) pair).
   */
  cloudBlock(cloudId: string, h: number, e: number): CloudBlockCost {
    const t = this.cloudTable(cloudId);
    if (!t) {
      return { prefillWireMs: Infinity, prefillCloudMs: Infinity, prefillCoordinatorMs: Infinity, decodeWireMs: Infinity,
        decodeCloudMs: Infinity, keyShareMs: Infinity, prefillBytes: 0, decodeBytes: 0, prefillRoundTrips: 0 };
    }
    const scx = this.req.mode === 'scx';
    const layers = e - h;
    return {
      prefillWireMs: scx ? t.preWire[e] - t.preWire[h] : t.splitWireMs,
      prefillCloudMs: (t.preCloud[e] - t.preCloud[h]) * t.load,
      prefillCoordinatorMs: scx ? t.preCoord[e] - t.preCoord[h] : 0,
      decodeWireMs: t.decodeWireMs,
      decodeCloudMs: (t.decCloud[e] - t.decCloud[h]) * t.load,
      keyShareMs: scx ? this.hop(this.state.coordinator, cloudId, layers * t.keyBytesPerLayer) + t.rewriteMsPerLayer * layers * t.load : 0,
      prefillBytes: scx ? t.preBytes[e] - t.preBytes[h] : 2 * t.splitBytes,
      decodeBytes: 2 * t.decodeVectorBytes,
      prefillRoundTrips: scx ? 3 * layers : 1,
    };
  }

  /** One-off key sharing after scx prefill (sigma and tau of the cloud layers, then the KV rewrite). */
  keyShareMs(cloudId: string, h: number, e: number): number { return this.cloudBlock(cloudId, h, e).keyShareMs; }

  private readonly cloudTables = new Map<string, CloudTable | null>();

  private cloudTable(cloudId: string): CloudTable | null {
    let t = this.cloudTables.get(cloudId);
    if (t !== undefined) return t;
    const g = this.clouds.get(cloudId);
    if (!g) { this.cloudTables.set(cloudId, null); return null; }
    const L = this.L, c = this.state.coordinator, m = this.manifest;
    const N = this.req.promptTokens, d = m.hiddenSize, w = this.req.wireBytes;
    const preWire = new Float64Array(L + 1), preCloud = new Float64Array(L + 1), preCoord = new Float64Array(L + 1);
    const preBytes = new Float64Array(L + 1), decCloud = new Float64Array(L + 1);
    const acc = { wire: 0, cloud: 0, coord: 0, bytes: 0 };
    const sum = (kind: 'send' | 'cloud' | 'coord', ms: number, bytes: number) => {
      if (kind === 'send') { acc.wire += ms; acc.bytes += bytes; } else if (kind === 'cloud') acc.cloud += ms; else acc.coord += ms;
    };
    let dec = 0;
    for (let l = 0; l < L; l++) {
      // A layer's costs depend only on its FLOP counts: reuse the previous layer's when they match
      // (every layer of a uniform model), so a table costs one layer's steps, not L.
      const p = m.layers[l], q = m.layers[l - 1];
      if (!q || p.flopsPerToken !== q.flopsPerToken || p.flopsPerTokenPerContext !== q.flopsPerTokenPerContext) {
        acc.wire = acc.cloud = acc.coord = acc.bytes = 0;
        if (this.req.mode === 'scx') this.scxLayerSteps(g, l, sum);
        else acc.cloud = this.layerPrefillMs(g, l);
        dec = this.layerDecodeMs(g, l, this.req.decodeContext);
      }
      preWire[l + 1] = preWire[l] + acc.wire;
      preCloud[l + 1] = preCloud[l] + acc.cloud;
      preCoord[l + 1] = preCoord[l] + acc.coord;
      preBytes[l + 1] = preBytes[l] + acc.bytes;
      decCloud[l + 1] = decCloud[l] + dec;
    }
    const splitBytes = N * d * w, decodeVectorBytes = d * w;
    t = {
      load: this.loadFactor(g), preWire, preCloud, preCoord, preBytes, decCloud,
      splitBytes, splitWireMs: this.hop(c, cloudId, splitBytes) + this.hop(cloudId, c, splitBytes),
      decodeVectorBytes, decodeWireMs: this.hop(c, cloudId, decodeVectorBytes) + this.hop(cloudId, c, decodeVectorBytes),
      keyBytesPerLayer: 2 * this.dims.kvDim * KEY_ENTRY_BYTES,
      rewriteMsPerLayer: (2 * N * this.dims.kvDim / this.elementwiseRate(g)) * 1000,
    };
    this.cloudTables.set(cloudId, t);
    return t;
  }

  private layerPrefillMs(g: DeviceProfile, l: number): number {
    const p = this.manifest.layers[l], N = this.req.promptTokens;
    return g.layerOverheadMs + ((N * p.flopsPerToken + p.flopsPerTokenPerContext * N * (N + 1) / 2) / g.prefillFlopsPerSec) * 1000;
  }
  private layerDecodeMs(g: DeviceProfile, l: number, ctx: number): number {
    const p = this.manifest.layers[l];
    return g.layerOverheadMs + ((p.flopsPerToken + p.flopsPerTokenPerContext * ctx) / g.decodeFlopsPerSec) * 1000;
  }

  /**
   * The 13 steps of one cloud layer of scx prefill (SCX.md stage 1), in order. `emit` gets the kind, the
   * time in ms (cloud compute before the load factor) and the bytes of a send; `what` names the step.
   */
  private scxLayerSteps(g: DeviceProfile, l: number,
    emit: (kind: 'send' | 'cloud' | 'coord', ms: number, bytes: number, what: string, dir: 'up' | 'down' | '') => void): void {
    const c = this.state.coordinator, coord = this.trusted.get(c)!;
    const m = this.manifest, d = m.hiddenSize, w = this.req.wireBytes, N = this.req.promptTokens;
    const r = this.req.decoyRows, R = N + r;
    const { qDim, kvDim, qkvDim } = this.dims;
    const el = this.elementwiseRate(coord) / 1000; // elements per ms
    const noise = this.req.noise;
    const p = m.layers[l];
    const qkvFlops = 2 * d * qkvDim;
    const pre = g.prefillFlopsPerSec / 1000;
    const link = this.link(c, g.id);
    const up = (bytes: number) => (link ? hopMs(link, c, bytes) : Infinity);
    const down = (bytes: number) => (link ? hopMs(link, g.id, bytes) : Infinity);
    // T1: RMSNorm, decoy rows, noise A (rows: one Laplace draw per element; shared: one per column), permute pi1.
    let e1 = 2 * N * d + r * d + R * d;
    if (noise === 'rows') e1 += R * d * (1 + LAPLACE_SAMPLE_COST);
    else if (noise === 'shared') e1 += R * d + d * LAPLACE_SAMPLE_COST;
    emit('coord', e1 / el, 0, 'P1 encode', '');
    let b = R * d * w;
    emit('send', up(b), b, 'P1 x', 'up');
    emit('cloud', g.layerOverheadMs + R * qkvFlops / pre, 0, 'P1 qkv', '');
    b = R * qkvDim * w;
    emit('send', down(b), b, 'P1 qkv', 'down');
    // T2: noise compensation (shared: a W_qkv, one vector-matrix product; rows: a full matmul), undo pi1,
    // drop decoys, RoPE on q and k at their true positions, head-dim permutations sigma and tau.
    let t2 = (R * qkvDim + 3 * N * (qDim + kvDim) + N * qkvDim) / el;
    if (noise === 'shared') t2 += (qkvFlops / coord.decodeFlopsPerSec) * 1000 + (R * qkvDim) / el;
    else if (noise === 'rows') t2 += (R * qkvFlops / coord.prefillFlopsPerSec) * 1000 + (R * qkvDim) / el;
    emit('coord', t2, 0, 'P2 encode', '');
    b = N * qkvDim * w;
    emit('send', up(b), b, 'P2 q,k,v', 'up');
    emit('cloud', g.layerOverheadMs + (p.flopsPerTokenPerContext * N * (N + 1) / 2) / pre, 0, 'P2 attention', '');
    b = N * qDim * w;
    emit('send', down(b), b, 'P2 o', 'down');
    // T3: undo tau on o, permute rows pi2 of o and h.
    emit('coord', (N * qDim + N * (qDim + d)) / el, 0, 'P3 encode', '');
    b = N * (qDim + d) * w;
    emit('send', up(b), b, 'P3 o,h', 'up');
    emit('cloud', g.layerOverheadMs + N * Math.max(0, p.flopsPerToken - qkvFlops) / pre, 0, 'P3 o-proj+mlp', '');
    b = N * d * w;
    emit('send', down(b), b, 'P3 h', 'down');
    // T4: undo pi2.
    emit('coord', (N * d) / el, 0, 'P3 decode', '');
  }

  /** The operations of the cloud stage, in order. */
  cloudOps(cloudId: string, h: number, e: number, phase: PassPhase, stage: number, ctx = this.req.decodeContext): Op[] {
    const g = this.clouds.get(cloudId);
    const c = this.state.coordinator;
    const ops: Op[] = [];
    if (!g) {
      ops.push({ kind: 'send', from: c, to: cloudId, bytes: 0, ms: Infinity, stage, what: 'unknown cloud peer', hopIn: false });
      return ops;
    }
    const load = this.loadFactor(g);
    const m = this.manifest, d = m.hiddenSize, w = this.req.wireBytes;
    const send = (from: string, to: string, bytes: number, what: string) =>
      ops.push({ kind: 'send', from, to, bytes, ms: this.hop(from, to, bytes), stage, what, hopIn: false });
    const cloudCompute = (ms: number, what: string) =>
      ops.push({ kind: 'compute', device: cloudId, ms: ms * load, stage, what, cloud: true });
    if (phase === 'decode') {
      send(c, cloudId, d * w, 'hidden');
      let ms = 0;
      for (let l = h; l < e; l++) ms += this.layerDecodeMs(g, l, ctx);
      cloudCompute(ms, 'cloud layers');
      send(cloudId, c, d * w, 'hidden');
      return ops;
    }
    if (this.req.mode === 'split') {
      const N = this.req.promptTokens;
      send(c, cloudId, N * d * w, 'hidden');
      let ms = 0;
      for (let l = h; l < e; l++) ms += this.layerPrefillMs(g, l);
      cloudCompute(ms, 'cloud layers');
      send(cloudId, c, N * d * w, 'hidden');
      return ops;
    }
    let layer = h;
    const emit = (kind: 'send' | 'cloud' | 'coord', ms: number, bytes: number, what: string, dir: 'up' | 'down' | '') => {
      if (kind === 'send') {
        const up = dir === 'up';
        ops.push({ kind: 'send', from: up ? c : cloudId, to: up ? cloudId : c, bytes, ms, stage, what, hopIn: false, layer });
      } else if (kind === 'cloud') ops.push({ kind: 'compute', device: cloudId, ms: ms * load, stage, what, cloud: true, layer });
      else ops.push({ kind: 'compute', device: c, ms, stage, what, cloud: false, layer });
    };
    for (; layer < e; layer++) this.scxLayerSteps(g, layer, emit);
    return ops;
  }

  /** Units a stage covers, in order. */
  stageUnits(s: Plan['stages'][number]): number[] {
    if (s.role === 'embed') return [0];
    if (s.role === 'head') return [this.U - 1];
    const out: number[] = [];
    for (let l = s.layers[0]; l < s.layers[1]; l++) out.push(l + 1);
    return out;
  }

  /** The operations of one pass of a plan, in order. Decode at context `ctx` (default N + G/2). */
  ops(plan: Plan, phase: PassPhase, ctx = this.req.decodeContext): Op[] {
    const c = plan.coordinator;
    const ops: Op[] = [];
    let loc = c;
    let p = 0; // unit position reached (for boundary sizes)
    plan.stages.forEach((s, i) => {
      if (s.role === 'cloud') {
        const bytes = this.boundaryBytes(s.layers[0] + 1, phase);
        if (loc !== c) ops.push({ kind: 'send', from: loc, to: c, bytes, ms: this.hop(loc, c, bytes), stage: i, what: 'hidden', hopIn: true });
        ops.push(...this.cloudOps(s.deviceId, s.layers[0], s.layers[1], phase, i, ctx));
        loc = c;
        p = s.layers[1] + 1;
        return;
      }
      const units = this.stageUnits(s);
      const dev = this.trusted.get(s.deviceId);
      if (loc !== s.deviceId) {
        const bytes = this.boundaryBytes(p, phase);
        ops.push({ kind: 'send', from: loc, to: s.deviceId, bytes, ms: this.hop(loc, s.deviceId, bytes), stage: i, what: p === 0 ? 'tokens' : 'hidden', hopIn: true });
      }
      let ms = 0;
      for (const u of units) ms += dev ? (phase === 'prefill' ? this.unitPrefillMs(dev, u) : this.unitDecodeMs(dev, u, ctx)) : Infinity;
      ops.push({ kind: 'compute', device: s.deviceId, ms, stage: i, what: s.role, cloud: false });
      loc = s.deviceId;
      if (units.length) p = units[units.length - 1] + 1;
    });
    const bytes = this.boundaryBytes(this.U, phase);
    if (loc !== c) ops.push({ kind: 'send', from: loc, to: c, bytes, ms: this.hop(loc, c, bytes), stage: -1, what: 'logits', hopIn: false });
    return ops;
  }

  /** Bytes each device holds under a plan: weights + KV for the reserved context + workspace (once per device). */
  memory(plan: Plan): Record<string, number> {
    const out: Record<string, number> = {};
    const kv = this.kvBytesPerLayer();
    for (const s of plan.stages) {
      let bytes = 0;
      if (s.role === 'cloud') {
        const g = this.clouds.get(s.deviceId);
        const loaded = g?.loadedModels?.includes(this.manifest.name) ?? false;
        for (let l = s.layers[0]; l < s.layers[1]; l++) bytes += (loaded ? 0 : this.manifest.layers[l].bytes) + kv;
      } else {
        for (const u of this.stageUnits(s)) bytes += this.unitBytes(u) + (this.isLayerUnit(u) ? kv : 0);
      }
      if (!(s.deviceId in out)) out[s.deviceId] = this.workspaceBytes();
      out[s.deviceId] += bytes;
    }
    return out;
  }

  /** Weighted objective from its parts (see PlanRequest.objective). */
  objectiveOf(ttftMs: number, perTokenMs: number, keyShareMs: number): number {
    return this.req.wTtft * ttftMs + this.req.wToken * perTokenMs + this.req.wKey * keyShareMs;
  }

  /** Predict a plan's times. Does not check constraints (see validatePlan); unknown devices or links give Infinity. */
  predict(plan: Plan): Prediction {
    const pre = this.ops(plan, 'prefill');
    const dec = this.ops(plan, 'decode');
    const stages: StagePrediction[] = plan.stages.map((s, i) => ({
      stage: i, deviceId: s.deviceId, role: s.role, prefillMs: 0, decodeMs: 0, hopInPrefillMs: 0, hopInDecodeMs: 0,
    }));
    let ttft = 0, perToken = 0, retP = 0, retD = 0;
    const wire = { prefillBytes: 0, decodeBytes: 0, prefillCrossings: 0, decodeCrossings: 0 };
    const tally = (ops: Op[], phase: PassPhase) => {
      for (const o of ops) {
        if (phase === 'prefill') ttft += o.ms; else perToken += o.ms;
        if (o.kind === 'send') {
          if (phase === 'prefill') { wire.prefillBytes += o.bytes; wire.prefillCrossings++; }
          else { wire.decodeBytes += o.bytes; wire.decodeCrossings++; }
        }
        if (o.stage < 0) { if (phase === 'prefill') retP += o.ms; else retD += o.ms; continue; }
        const sp = stages[o.stage];
        if (o.kind === 'send' && o.hopIn) { if (phase === 'prefill') sp.hopInPrefillMs += o.ms; else sp.hopInDecodeMs += o.ms; }
        else if (phase === 'prefill') sp.prefillMs += o.ms; else sp.decodeMs += o.ms;
      }
    };
    tally(pre, 'prefill');
    tally(dec, 'decode');
    let keyShare = 0;
    plan.stages.forEach((s, i) => {
      if (s.role !== 'cloud') return;
      const cb = this.cloudBlock(s.deviceId, s.layers[0], s.layers[1]);
      keyShare += cb.keyShareMs;
      stages[i].cloud = {
        prefillWireMs: cb.prefillWireMs, prefillCloudMs: cb.prefillCloudMs, prefillCoordinatorMs: cb.prefillCoordinatorMs,
        decodeWireMs: cb.decodeWireMs, decodeCloudMs: cb.decodeCloudMs,
        prefillBytes: cb.prefillBytes, decodeBytes: cb.decodeBytes, prefillRoundTrips: cb.prefillRoundTrips,
      };
    });
    const G = this.req.maxNewTokens;
    const total = ttft + (G > 1 ? keyShare + (G - 1) * perToken : 0);
    return {
      ttftMs: ttft, perTokenMs: perToken, keyShareMs: keyShare, totalMs: total,
      objective: this.objectiveOf(ttft, perToken, keyShare), stages,
      returnPrefillMs: retP, returnDecodeMs: retD, wire, memoryBytes: this.memory(plan),
    };
  }
}

/** Predict a plan's times in one call. */
export function predictPlan(plan: Plan, state: ClusterState, manifest: ModelManifest, request: PlanRequest = plan.request): Prediction {
  return new CostModel(state, manifest, request).predict(plan);
}

/** ms per layer of a device for a model layer, as a user reads a profile ("12 ms/layer decode"). */
export function msPerLayer(d: DeviceProfile, layer: PartCost, phase: PassPhase, tokens = 1, ctx = 0): number {
  if (phase === 'decode') return d.layerOverheadMs + ((layer.flopsPerToken + layer.flopsPerTokenPerContext * ctx) / d.decodeFlopsPerSec) * 1000;
  return d.layerOverheadMs + ((tokens * layer.flopsPerToken + layer.flopsPerTokenPerContext * tokens * (tokens + 1) / 2) / d.prefillFlopsPerSec) * 1000;
}
