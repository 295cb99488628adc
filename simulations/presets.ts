/**
 * Device, access-link and model presets for scenarios. Numbers are for Hush's engine as it runs today:
 * onnxruntime-node on CPU in fp32 on trusted devices, a CUDA/TensorRT-class runtime on cloud GPUs.
 * Decode is memory-bound: effective FLOP/s = 0.5 FLOP per weight byte x achievable bandwidth.
 */
import { buildManifest, EMBEDDED_MODEL_DIR, parseConfig, readConfig, type ModelManifest } from '../runtime/model/index.ts';
import type { DeviceProfile, LinkProfile } from '../runtime/scheduler/index.ts';

const GB = 1e9, GIB = 1024 ** 3;

export interface DevicePreset {
  /** Memory Hush may use (OS and apps left aside). */
  memoryGiB: number;
  /** Sustained fp32 GFLOP/s in a batched matmul (prefill). */
  prefillGflops: number;
  /** Achievable memory bandwidth, GB/s (decode streams every weight once per token). */
  memoryGBs: number;
  /** Per-layer session/kernel launch overhead, ms. */
  overheadMs: number;
  slots?: number;
  description: string;
}

export const DEVICE_PRESETS: Record<string, DevicePreset> = {
  phone: { memoryGiB: 3, prefillGflops: 25, memoryGBs: 12, overheadMs: 0.4, description: 'flagship phone, 4 big cores, LPDDR5' },
  'old-laptop': { memoryGiB: 5, prefillGflops: 35, memoryGBs: 10, overheadMs: 0.3, description: '2016 dual-core laptop, DDR4' },
  laptop: { memoryGiB: 12, prefillGflops: 150, memoryGBs: 30, overheadMs: 0.15, description: 'recent 8-core x86 laptop, 16 GB' },
  macbook: { memoryGiB: 24, prefillGflops: 400, memoryGBs: 90, overheadMs: 0.1, description: 'Apple M2 Pro, 32 GB unified memory' },
  desktop: { memoryGiB: 28, prefillGflops: 700, memoryGBs: 45, overheadMs: 0.08, description: '16-core desktop, 32 GB DDR5' },
  nas: { memoryGiB: 28, prefillGflops: 30, memoryGBs: 10, overheadMs: 0.3, description: 'home server / NAS, low-power 4-core, 32 GB' },
  'mini-pc': { memoryGiB: 12, prefillGflops: 60, memoryGBs: 18, overheadMs: 0.2, description: 'N100 mini PC, 16 GB' },
  'raspberry-pi': { memoryGiB: 6, prefillGflops: 20, memoryGBs: 8, overheadMs: 0.5, description: 'Raspberry Pi 5, 8 GB' },
  'cloud-a100': { memoryGiB: 70, prefillGflops: 15000, memoryGBs: 1400, overheadMs: 0.03, slots: 8, description: 'A100 80 GB (fp32/TF32)' },
  'cloud-h100': { memoryGiB: 70, prefillGflops: 40000, memoryGBs: 2600, overheadMs: 0.02, slots: 16, description: 'H100 80 GB (fp32/TF32)' },
};

export function profileFromPreset(id: string, presetName: string, over: Partial<DeviceProfile> & { memoryGiB?: number } = {}): DeviceProfile {
  const p = DEVICE_PRESETS[presetName];
  if (!p) throw new Error(`unknown device preset ${JSON.stringify(presetName)} (known: ${Object.keys(DEVICE_PRESETS).join(', ')})`);
  const { memoryGiB, ...rest } = over;
  return {
    id,
    name: presetName,
    memoryBytes: Math.round((memoryGiB ?? p.memoryGiB) * GIB),
    prefillFlopsPerSec: p.prefillGflops * GB,
    decodeFlopsPerSec: 0.5 * p.memoryGBs * GB,
    layerOverheadMs: p.overheadMs,
    slots: p.slots,
    ...rest,
  };
}

/** How a device reaches its home network; a LAN link joins two access links. */
export interface AccessPreset { rttMs: number; mbps: number; jitterMs: number; loss: number; perMessageMs: number }

export const ACCESS_PRESETS: Record<string, AccessPreset> = {
  ethernet: { rttMs: 0.2, mbps: 940, jitterMs: 0.02, loss: 0, perMessageMs: 0.1 },
  wifi: { rttMs: 2.5, mbps: 250, jitterMs: 1, loss: 0.002, perMessageMs: 0.2 },
  'wifi-weak': { rttMs: 6, mbps: 60, jitterMs: 4, loss: 0.01, perMessageMs: 0.3 },
  datacenter: { rttMs: 0.05, mbps: 25000, jitterMs: 0.01, loss: 0, perMessageMs: 0.02 },
};

export function accessPreset(name: string): AccessPreset {
  const a = ACCESS_PRESETS[name];
  if (!a) throw new Error(`unknown access preset ${JSON.stringify(name)} (known: ${Object.keys(ACCESS_PRESETS).join(', ')})`);
  return a;
}

/** A LAN link between two devices: RTTs and jitter add, bandwidth is the narrower, losses compound. */
export function lanLink(a: string, accA: AccessPreset, b: string, accB: AccessPreset): LinkProfile {
  return {
    a, b,
    rttMs: accA.rttMs + accB.rttMs,
    bandwidthBytesPerSec: (Math.min(accA.mbps, accB.mbps) * 1e6) / 8,
    jitterMs: accA.jitterMs + accB.jitterMs,
    lossRate: 1 - (1 - accA.loss) * (1 - accB.loss),
    perMessageMs: Math.max(accA.perMessageMs, accB.perMessageMs),
  };
}

/** The owner's internet uplink. */
export interface WanProfile { rttMs: number; upMbps: number; downMbps: number; jitterMs: number; loss: number }

/** A device-to-cloud link: access link, then the owner's WAN (upload limits what goes to the cloud). */
export function wanLink(dev: string, acc: AccessPreset, cloud: string, wan: WanProfile): LinkProfile {
  return {
    a: dev, b: cloud,
    rttMs: acc.rttMs + wan.rttMs,
    bandwidthBytesPerSec: (Math.min(acc.mbps, wan.upMbps) * 1e6) / 8,
    reverseBandwidthBytesPerSec: (Math.min(acc.mbps, wan.downMbps) * 1e6) / 8,
    jitterMs: acc.jitterMs + wan.jitterMs,
    lossRate: 1 - (1 - acc.loss) * (1 - wan.loss),
    perMessageMs: Math.max(acc.perMessageMs, 0.3),
  };
}

/** LLaMA-7B-sized config (d=4096, 32 layers, ffn 11008, vocab 32000, MHA) as a Hugging Face config. */
export const LLAMA_7B_CONFIG = {
  model_type: 'llama', hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32,
  num_attention_heads: 32, num_key_value_heads: 32, vocab_size: 32000, max_position_embeddings: 4096,
  rms_norm_eps: 1e-5, tie_word_embeddings: false,
};

const manifests = new Map<string, ModelManifest>();

/** Manifests scenarios may name: the embedded debprose-7m and a synthetic LLaMA-7B. */
export function manifestFor(name: string): ModelManifest {
  let m = manifests.get(name);
  if (m) return m;
  if (name === 'debprose-7m') m = buildManifest('debprose-7m', readConfig(EMBEDDED_MODEL_DIR));
  else if (name === 'llama-7b-synthetic') m = buildManifest('llama-7b-synthetic', parseConfig(LLAMA_7B_CONFIG, 'llama-7b-synthetic'));
  else throw new Error(`unknown model ${JSON.stringify(name)} (known: debprose-7m, llama-7b-synthetic)`);
  manifests.set(name, m);
  return m;
}
