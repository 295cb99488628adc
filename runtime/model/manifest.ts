import type { ModelConfig } from './config.ts';

/** What the scheduler needs to know about a model: sizes and work per part, nothing about values. */
export interface ModelManifest {
  name: string;
  numLayers: number;
  hiddenSize: number;
  vocabSize: number;
  /** Bytes of one token's hidden vector in fp32 (one "d-vector" on the wire). */
  hiddenVectorBytes: number;
  embedding: PartCost;
  layers: PartCost[];
  /** Final norm + LM head. */
  head: PartCost;
  /** KV cache bytes per token per layer (fp32, K and V). */
  kvBytesPerTokenPerLayer: number;
}

export interface PartCost {
  /** Parameter bytes as computed (float32). */
  bytes: number;
  params: number;
  /** Multiply-adds x2 per token, excluding attention over the context. */
  flopsPerToken: number;
  /** Extra FLOPs per token per context position (attention scores and weighted sum). */
  flopsPerTokenPerContext: number;
}

export function buildManifest(name: string, c: ModelConfig): ModelManifest {
  const d = c.hiddenSize, hd = c.headDim;
  const qkv = d * (c.numHeads + 2 * c.numKvHeads) * hd + (c.qkvBias ? (c.numHeads + 2 * c.numKvHeads) * hd : 0);
  const o = c.numHeads * hd * d;
  const mlp = 3 * d * c.intermediateSize;
  const norms = 2 * d;
  const layerParams = qkv + o + mlp + norms;
  const layer: PartCost = {
    params: layerParams,
    bytes: layerParams * 4,
    flopsPerToken: 2 * (qkv + o + mlp),
    flopsPerTokenPerContext: 4 * c.numHeads * hd,
  };
  const headParams = d + c.vocabSize * d;
  return {
    name,
    numLayers: c.numLayers,
    hiddenSize: d,
    vocabSize: c.vocabSize,
    hiddenVectorBytes: d * 4,
    embedding: { params: c.vocabSize * d, bytes: c.vocabSize * d * 4, flopsPerToken: 0, flopsPerTokenPerContext: 0 },
    layers: Array.from({ length: c.numLayers }, () => ({ ...layer })),
    head: { params: headParams, bytes: headParams * 4, flopsPerToken: 2 * c.vocabSize * d, flopsPerTokenPerContext: 0 },
    kvBytesPerTokenPerLayer: 2 * c.numKvHeads * hd * 4,
  };
}
