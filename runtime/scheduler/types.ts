/**
 * Types the scheduler speaks. It knows costs and constraints, never tensors: everything here is
 * numbers about devices, links and a model manifest, and the plan a daemon executes.
 */

/** What a device (trusted or cloud) can do, as measured at daemon start and refreshed on drift. */
export interface DeviceProfile {
  id: string;
  name?: string;
  /** Bytes Hush may use on this device for weights, KV cache and workspace. */
  memoryBytes: number;
  /** Effective FLOP/s during a batched prefill (compute-bound). */
  prefillFlopsPerSec: number;
  /** Effective FLOP/s for a one-token decode step (memory-bandwidth-bound on most hardware). */
  decodeFlopsPerSec: number;
  /** Fixed cost of running one layer (session launch, kernel launches), per pass. */
  layerOverheadMs: number;
  /** Elementwise throughput (elements/s) for SCX bookkeeping; default decodeFlopsPerSec / 2. */
  elementwisePerSec?: number;
  /** Battery saver: the device hosts no stage (a coordinator that opts out still coordinates). */
  optOut?: boolean;
  /** Cap on the fraction of the model's transformer layers this device may hold (0..1). */
  maxShare?: number;
  /** Cloud peers: concurrent sessions the accelerator serves without slowing down (batching). */
  slots?: number;
  /** Cloud peers: sessions already running there; compute slows by max(1, (active+1)/slots). */
  activeSessions?: number;
  /** Cloud peers: models whose every layer is already resident (only KV then needs memory). */
  loadedModels?: string[];
  /** Epoch ms of the measurement, for drift and cache decisions. */
  measuredAt?: number;
}

/** A measured network path between two devices (symmetric RTT; bandwidth may differ by direction). */
export interface LinkProfile {
  a: string;
  b: string;
  rttMs: number;
  /** Bytes/s from a to b. */
  bandwidthBytesPerSec: number;
  /** Bytes/s from b to a (default: same as a to b). Home uplinks are often much slower. */
  reverseBandwidthBytesPerSec?: number;
  /** Fixed per-message cost of the transport (framing, encryption), ms. Default 0. */
  perMessageMs?: number;
  /** Mean extra one-way delay, ms (the simulator draws it exponentially). Default 0. */
  jitterMs?: number;
  /** Probability a message is lost and resent after a retransmission timeout. Default 0. */
  lossRate?: number;
  measuredAt?: number;
}

/** Everything the solver looks at for one owner: its trusted devices, candidate cloud peers, links. */
export interface ClusterState {
  /** Device where requests start: holds tokenizer, session keys, sampling, the SCX exchange. */
  coordinator: string;
  /** The owner's paired (trusted) devices, coordinator included. */
  devices: DeviceProfile[];
  /** Untrusted GPU peers that may run cloud layers [h, L-t). */
  cloudPeers: DeviceProfile[];
  links: LinkProfile[];
}

export type PlanMode = 'local' | 'split' | 'scx';
export type StageRole = 'embed' | 'layers' | 'head' | 'cloud';
export type Objective = 'total' | 'perToken' | 'ttft';
export type ScxNoise = 'off' | 'shared' | 'rows';

/** The request shape a plan is made for. */
export interface PlanRequest {
  mode: PlanMode;
  /** Prompt length N (default 256). */
  promptTokens?: number;
  /** Tokens to generate G (default 128). */
  maxNewTokens?: number;
  /** KV cache capacity to reserve, tokens (default promptTokens + maxNewTokens). */
  contextTokens?: number;
  /** Fixed head/tail layer counts (split/scx). Unset: the solver chooses them. */
  h?: number;
  t?: number;
  /** Upper bound on h and on t when the solver chooses them (default: no bound beyond the model). */
  maxEdgeLayers?: number;
  /** Bytes per element on the wire: 4 (fp32, default) or 2 (fp16). */
  wireBytesPerElement?: 2 | 4;
  scx?: { decoyRows?: number; noise?: ScxNoise };
  /**
   * What the solver minimises: 'total' = TTFT + key sharing + (G-1) x per-token (default),
   * 'perToken' = steady-state per-token latency, 'ttft' = time to first token.
   */
  objective?: Objective;
}

/** One step of the pipeline: a device and the part of the model it runs. */
export interface PlanStage {
  deviceId: string;
  /** embed: token ids -> hidden (layers [0,0)); layers: [a,b); head: final norm + LM head ([L,L)); cloud: [h, L-t). */
  role: StageRole;
  layers: [number, number];
}

/** What a daemon executes. Stages are in pipeline order; the coordinator talks to the cloud stage. */
export interface Plan {
  version: 1;
  model: string;
  numLayers: number;
  mode: PlanMode;
  /** Head layers [0,h) and tail layers [L-t,L) on trusted devices; local mode: h = L, t = 0. */
  h: number;
  t: number;
  coordinator: string;
  cloudPeer: string | null;
  stages: PlanStage[];
  /** The request shape the plan was made for (context sizes the memory check used). */
  request: PlanRequest;
}

/** Time of one stage in the cost model, ms. */
export interface StagePrediction {
  stage: number;
  deviceId: string;
  role: StageRole;
  /** Compute of the stage; for the cloud stage the whole exchange (wire + cloud + coordinator SCX work). */
  prefillMs: number;
  decodeMs: number;
  /** Network time to hand the stage its input (0 when the previous stage is on the same device). */
  hopInPrefillMs: number;
  hopInDecodeMs: number;
  /** Cloud stage only: split of its time into wire, cloud compute and coordinator SCX work. */
  cloud?: {
    prefillWireMs: number; prefillCloudMs: number; prefillCoordinatorMs: number;
    decodeWireMs: number; decodeCloudMs: number;
    prefillBytes: number; decodeBytes: number; prefillRoundTrips: number;
  };
}

export interface Prediction {
  /** Prompt in to first token sampled. */
  ttftMs: number;
  /** One generated token, steady state, at the mean context of the request. */
  perTokenMs: number;
  /** One-off SCX key sharing after prefill (0 unless scx). */
  keyShareMs: number;
  /** ttft + keyShare + (G-1) x perToken. */
  totalMs: number;
  /** The weighted value the solver minimised (see PlanRequest.objective). */
  objective: number;
  stages: StagePrediction[];
  /** Final hop: logits back to the coordinator. */
  returnPrefillMs: number;
  returnDecodeMs: number;
  /** Bytes on the wire per pass (all hops, cloud included) and crossings per pass. */
  wire: { prefillBytes: number; decodeBytes: number; prefillCrossings: number; decodeCrossings: number };
  /** Bytes each device holds under the plan (weights + KV + workspace). */
  memoryBytes: Record<string, number>;
}

export type BindingConstraint = 'memory' | 'share-cap' | 'compute' | 'network' | 'trust' | 'fixed-edge';

export interface StageWhy {
  stage: number;
  deviceId: string;
  role: StageRole;
  layers: [number, number];
  prefillMs: number;
  decodeMs: number;
  hopInPrefillMs: number;
  hopInDecodeMs: number;
  /** All stages of this device together, and what it may use. */
  memoryBytes: number;
  memoryAvailableBytes: number;
  binding: BindingConstraint;
  note: string;
}

export type ExclusionReason = 'opt-out' | 'unreachable' | 'no-memory' | 'not-worth-it' | 'not-candidate';

export interface PlanWhy {
  stages: StageWhy[];
  excluded: { deviceId: string; reason: ExclusionReason; note: string }[];
  search: {
    method: 'exact' | 'heuristic';
    /** Trusted devices the search considered as executors. */
    candidates: number;
    /** Cloud peers a DP ran for (the rest were pruned by a lower bound or not candidates). */
    cloudPeersSearched: string[];
    dpStates: number;
  };
  summary: string[];
}

export interface PlanResult {
  plan: Plan;
  predicted: Prediction;
  why: PlanWhy;
}

/** What the daemon's micro-benchmark returns (one device, timed on a reference layer). */
export interface Measured {
  /** Bytes Hush may use on the device. */
  memoryBytes: number;
  /** The layer that was timed (a manifest PartCost, or its numbers). */
  reference: { flopsPerToken: number; flopsPerTokenPerContext: number; bytes: number };
  /** Prefill timing: one layer over `prefillTokens` tokens took `prefillMsPerLayer`. */
  prefillTokens: number;
  prefillMsPerLayer: number;
  /** Decode timing: one layer, one token, at `decodeContext` cached positions. */
  decodeContext: number;
  decodeMsPerLayer: number;
  /** Time of a near-empty layer run (launch overhead); 0 when not measured. */
  overheadMsPerLayer?: number;
  /** Free-form description (CPU model, accelerator). */
  label?: string;
}
