import { describe, expect, it } from 'vitest';
import { buildManifest, parseConfig, readConfig, EMBEDDED_MODEL_DIR } from '../runtime/model/index.ts';
import {
  CostModel, InvalidInputError, attentionDims, hopMs, msPerLayer, predictPlan, scxVectorsPerTokenPerLayer,
  type ClusterState, type DeviceProfile, type Plan, type PlanRequest,
} from '../runtime/scheduler/index.ts';

// LLaMA-7B-sized (MHA: 32 heads, 32 kv heads) as SCX.md's wire-size note assumes.
const llama7b = buildManifest('llama-7b', parseConfig({
  model_type: 'llama', hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32,
  num_attention_heads: 32, num_key_value_heads: 32, vocab_size: 32000,
}));
const debprose = buildManifest('debprose-7m', readConfig(EMBEDDED_MODEL_DIR));

function dev(id: string, over: Partial<DeviceProfile> = {}): DeviceProfile {
  return { id, memoryBytes: 64e9, prefillFlopsPerSec: 200e9, decodeFlopsPerSec: 20e9, layerOverheadMs: 0.1, ...over };
}

const L = 32;
function cloudPlan(mode: 'scx' | 'split', h: number, t: number, req: PlanRequest): Plan {
  return {
    version: 1, model: 'llama-7b', numLayers: L, mode, h, t, coordinator: 'a', cloudPeer: 'g',
    stages: [
      { deviceId: 'a', role: 'embed', layers: [0, 0] },
      { deviceId: 'a', role: 'layers', layers: [0, h] },
      { deviceId: 'g', role: 'cloud', layers: [h, L - t] },
      { deviceId: 'a', role: 'layers', layers: [L - t, L] },
      { deviceId: 'a', role: 'head', layers: [L, L] },
    ],
    request: req,
  };
}
const cloudState: ClusterState = {
  coordinator: 'a',
  devices: [dev('a')],
  cloudPeers: [dev('g', { prefillFlopsPerSec: 40e12, decodeFlopsPerSec: 1e12, memoryBytes: 80e9, layerOverheadMs: 0.02 })],
  links: [{ a: 'a', b: 'g', rttMs: 50, bandwidthBytesPerSec: 50e6 }],
};

describe('wire sizes (SCX.md)', () => {
  it('scx prefill moves 11 d-vectors per token per cloud layer in 3 round trips for an MHA model', () => {
    expect(scxVectorsPerTokenPerLayer(llama7b)).toBe(11);
    const req: PlanRequest = { mode: 'scx', promptTokens: 100, maxNewTokens: 10, scx: { decoyRows: 0 } };
    const cm = new CostModel(cloudState, llama7b, req);
    const cb = cm.cloudBlock('g', 2, 30);
    const d = llama7b.hiddenSize;
    expect(cb.prefillBytes).toBe(11 * 100 * 28 * d * 4);
    expect(cb.prefillRoundTrips).toBe(3 * 28);
    // Generation: one d-vector each way per token.
    expect(cb.decodeBytes).toBe(2 * d * 4);
    // One d-vector of LLaMA-7B is 16 KiB in fp32.
    expect(llama7b.hiddenVectorBytes).toBe(16 * 1024);
  });

  it('counts GQA widths from the manifest (debprose-7m: 8 heads, 4 kv heads)', () => {
    const dims = attentionDims(debprose);
    expect(dims).toEqual({ qDim: 256, kvDim: 128, qkvDim: 512 });
    // x + qkv + qkv + o + (o + h) + h = 1 + 2 + 2 + 1 + 2 + 1
    expect(scxVectorsPerTokenPerLayer(debprose)).toBe(9);
  });

  it('decoy rows travel in P1 only; fp16 halves every byte; split sends the boundary state once each way', () => {
    const base: PlanRequest = { mode: 'scx', promptTokens: 64, maxNewTokens: 8 };
    const d = llama7b.hiddenSize, qkv = 3 * d;
    const b0 = new CostModel(cloudState, llama7b, { ...base, scx: { decoyRows: 0 } }).cloudBlock('g', 1, 31).prefillBytes;
    const b8 = new CostModel(cloudState, llama7b, { ...base, scx: { decoyRows: 8 } }).cloudBlock('g', 1, 31).prefillBytes;
    expect(b8 - b0).toBe(30 * 8 * (d + qkv) * 4);
    const half = new CostModel(cloudState, llama7b, { ...base, wireBytesPerElement: 2 }).cloudBlock('g', 1, 31);
    expect(half.prefillBytes).toBe(b0 / 2);
    const split = new CostModel(cloudState, llama7b, { ...base, mode: 'split' }).cloudBlock('g', 1, 31);
    expect(split.prefillBytes).toBe(2 * 64 * d * 4);
    expect(split.prefillRoundTrips).toBe(1);
  });
});

describe('cost model', () => {
  it('a hop costs RTT/2 + bytes/bandwidth, plus jitter, per-message cost and expected retransmissions', () => {
    expect(hopMs({ a: 'x', b: 'y', rttMs: 10, bandwidthBytesPerSec: 1e6 }, 'x', 5000)).toBeCloseTo(5 + 5, 12);
    expect(hopMs({ a: 'x', b: 'y', rttMs: 10, bandwidthBytesPerSec: 1e6, reverseBandwidthBytesPerSec: 5e5 }, 'y', 5000)).toBeCloseTo(5 + 10, 12);
    const lossy = hopMs({ a: 'x', b: 'y', rttMs: 10, bandwidthBytesPerSec: 1e6, lossRate: 0.5, jitterMs: 2, perMessageMs: 1 }, 'x', 0);
    expect(lossy).toBeCloseTo(5 + 2 + 1 + 1 * 200, 9);
  });

  it('predicts a one-device local plan as the sum of its units and a two-device plan with the hop between them', () => {
    const m = debprose;
    const a = dev('a'), b = dev('b', { prefillFlopsPerSec: 400e9, decodeFlopsPerSec: 40e9 });
    const state: ClusterState = { coordinator: 'a', devices: [a, b], cloudPeers: [], links: [{ a: 'a', b: 'b', rttMs: 4, bandwidthBytesPerSec: 10e6 }] };
    const req: PlanRequest = { mode: 'local', promptTokens: 32, maxNewTokens: 9 };
    const one: Plan = {
      version: 1, model: m.name, numLayers: 8, mode: 'local', h: 8, t: 0, coordinator: 'a', cloudPeer: null, request: req,
      stages: [{ deviceId: 'a', role: 'embed', layers: [0, 0] }, { deviceId: 'a', role: 'layers', layers: [0, 8] }, { deviceId: 'a', role: 'head', layers: [8, 8] }],
    };
    const p1 = predictPlan(one, state, m);
    const ctx = 32 + 9 / 2;
    const layerDecode = msPerLayer(a, m.layers[0], 'decode', 1, ctx);
    const embedDecode = a.layerOverheadMs + (m.hiddenSize / (a.decodeFlopsPerSec / 2)) * 1000;
    const headDecode = a.layerOverheadMs + (m.head.flopsPerToken / a.decodeFlopsPerSec) * 1000;
    expect(p1.perTokenMs).toBeCloseTo(embedDecode + 8 * layerDecode + headDecode, 9);
    expect(p1.ttftMs).toBeGreaterThan(8 * msPerLayer(a, m.layers[0], 'prefill', 32));
    expect(p1.wire.decodeCrossings).toBe(0);
    expect(p1.totalMs).toBeCloseTo(p1.ttftMs + 8 * p1.perTokenMs, 9);

    const two: Plan = { ...one, stages: [one.stages[0], { deviceId: 'a', role: 'layers', layers: [0, 4] }, { deviceId: 'b', role: 'layers', layers: [4, 8] }, { deviceId: 'b', role: 'head', layers: [8, 8] }] };
    const p2 = predictPlan(two, state, m);
    // Decode: hidden vector a -> b, logits b -> a.
    const hops = 2 + (m.hiddenSize * 4) / 10e3 + 2 + (m.vocabSize * 4) / 10e3;
    const computeB = 4 * msPerLayer(b, m.layers[0], 'decode', 1, ctx) + b.layerOverheadMs + (m.head.flopsPerToken / b.decodeFlopsPerSec) * 1000;
    expect(p2.perTokenMs).toBeCloseTo(embedDecode + 4 * layerDecode + computeB + hops, 9);
    expect(p2.wire.decodeCrossings).toBe(2);
    expect(p2.stages[2].hopInDecodeMs).toBeCloseTo(2 + (m.hiddenSize * 4) / 10e3, 9);
    expect(p2.returnDecodeMs).toBeCloseTo(2 + (m.vocabSize * 4) / 10e3, 9);
    // Memory: weights, KV for 41 tokens, workspace.
    const kv = m.kvBytesPerTokenPerLayer * 41;
    expect(p2.memoryBytes.b).toBe(16 * 32 * m.hiddenVectorBytes + 4 * (m.layers[0].bytes + kv) + m.head.bytes);
  });

  it('charges the coordinator SCX work (rows noise costs a matmul) and slows a shared cloud peer', () => {
    const req: PlanRequest = { mode: 'scx', promptTokens: 128, maxNewTokens: 16 };
    const coord = (noise: 'off' | 'shared' | 'rows') => new CostModel(cloudState, llama7b, { ...req, scx: { noise } }).cloudBlock('g', 1, 31).prefillCoordinatorMs;
    expect(coord('off')).toBeGreaterThan(0);
    expect(coord('shared')).toBeGreaterThan(coord('off'));
    expect(coord('rows')).toBeGreaterThan(5 * coord('shared'));
    const busy: ClusterState = { ...cloudState, cloudPeers: [{ ...cloudState.cloudPeers[0], slots: 2, activeSessions: 3 }] };
    const idle = new CostModel(cloudState, llama7b, req).cloudBlock('g', 1, 31);
    const shared = new CostModel(busy, llama7b, req).cloudBlock('g', 1, 31);
    expect(shared.decodeCloudMs).toBeCloseTo(2 * idle.decodeCloudMs, 9);
    expect(shared.decodeWireMs).toBe(idle.decodeWireMs);
  });

  it('the stage prediction sums to the pass total and key sharing enters the total once', () => {
    const req: PlanRequest = { mode: 'scx', promptTokens: 50, maxNewTokens: 20 };
    const p = predictPlan(cloudPlan('scx', 2, 1, req), cloudState, llama7b, req);
    const sumPre = p.stages.reduce((s, x) => s + x.prefillMs + x.hopInPrefillMs, 0) + p.returnPrefillMs;
    const sumDec = p.stages.reduce((s, x) => s + x.decodeMs + x.hopInDecodeMs, 0) + p.returnDecodeMs;
    expect(sumPre).toBeCloseTo(p.ttftMs, 6);
    expect(sumDec).toBeCloseTo(p.perTokenMs, 9);
    expect(p.keyShareMs).toBeGreaterThan(25); // at least RTT/2 to send the keys
    expect(p.totalMs).toBeCloseTo(p.ttftMs + p.keyShareMs + 19 * p.perTokenMs, 6);
    const cloud = p.stages[2].cloud!;
    expect(cloud.prefillWireMs + cloud.prefillCloudMs + cloud.prefillCoordinatorMs).toBeCloseTo(p.stages[2].prefillMs, 6);
  });

  it('rejects requests the model cannot serve', () => {
    expect(() => new CostModel(cloudState, llama7b, { mode: 'scx', h: 20, t: 12 })).toThrow(InvalidInputError);
    expect(() => new CostModel(cloudState, llama7b, { mode: 'local', h: 2 })).toThrow(/split and scx/);
    expect(() => new CostModel(cloudState, llama7b, { mode: 'bogus' as 'local' })).toThrow(InvalidInputError);
    expect(() => new CostModel(cloudState, llama7b, { mode: 'local', promptTokens: 0 })).toThrow(/promptTokens/);
    expect(() => new CostModel({ ...cloudState, devices: [dev('a', { decodeFlopsPerSec: -1 })] }, llama7b, { mode: 'local' })).toThrow(/decodeFlopsPerSec/);
    expect(() => new CostModel({ ...cloudState, coordinator: 'zz' }, llama7b, { mode: 'local' })).toThrow(/coordinator/);
  });
});
