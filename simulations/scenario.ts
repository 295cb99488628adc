/**
 * Scenario files (simulations/scenarios/*.json): one owner's devices and cloud peers, or a generated
 * population of many owners sharing a pool of cloud peers; a workload; timed events; sweeps for charts.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ACCESS_PRESETS, DEVICE_PRESETS } from './presets.ts';
import { PLANNER_NAMES, type PlannerName } from './baselines.ts';

export class ScenarioError extends Error {
  override name = 'ScenarioError';
  constructor(message: string, readonly file?: string) { super(file ? `${file}: ${message}` : message); }
}

const preset = z.string().refine((p) => p in DEVICE_PRESETS, { message: `unknown device preset (known: ${Object.keys(DEVICE_PRESETS).join(', ')})` });
const access = z.string().refine((p) => p in ACCESS_PRESETS, { message: `unknown access preset (known: ${Object.keys(ACCESS_PRESETS).join(', ')})` });
const id = z.string().min(1).max(64).regex(/^[A-Za-z0-9._-]+$/, 'ids use letters, digits, dot, dash, underscore');
const ms = z.number().min(0).max(1e9);
const weights = z.record(z.string(), z.number().positive());
const range = z.tuple([z.number().min(0), z.number().min(0)]).refine(([a, b]) => a <= b, { message: 'range must be [min, max] with min <= max' });

const requestSchema = z.object({
  promptTokens: z.number().int().positive().max(32768).default(256),
  maxNewTokens: z.number().int().positive().max(8192).default(64),
  contextTokens: z.number().int().positive().max(65536).optional(),
  objective: z.enum(['total', 'perToken', 'ttft']).optional(),
  h: z.number().int().positive().optional(),
  t: z.number().int().positive().optional(),
  maxEdgeLayers: z.number().int().positive().optional(),
  wireBytesPerElement: z.union([z.literal(2), z.literal(4)]).optional(),
  scx: z.object({ decoyRows: z.number().int().min(0).max(4096).optional(), noise: z.enum(['off', 'shared', 'rows']).optional() }).strict().optional(),
}).strict();

const deviceSchema = z.object({
  id, preset, access: access.default('wifi'),
  memoryGiB: z.number().positive().max(4096).optional(),
  optOut: z.boolean().optional(),
  maxShare: z.number().min(0).max(1).optional(),
  /** Starts offline (joins with a 'join' event). */
  offline: z.boolean().optional(),
}).strict();

const wanSchema = z.object({
  rttMs: ms, upMbps: z.number().positive(), downMbps: z.number().positive(),
  jitterMs: ms.default(1), loss: z.number().min(0).max(0.5).default(0),
}).strict();

const cloudSchema = z.object({
  id, preset,
  /** RTT from the owner's network to this peer (default: the owner's WAN RTT). */
  rttMs: ms.optional(),
  loadedModels: z.array(z.string()).optional(),
}).strict();

const eventSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('leave'), atMs: ms, device: id }).strict(),
  z.object({ kind: z.literal('join'), atMs: ms, device: id }).strict(),
  z.object({ kind: z.literal('cloud-fail'), atMs: ms, cloud: id }).strict(),
  z.object({ kind: z.literal('cloud-recover'), atMs: ms, cloud: id }).strict(),
  z.object({ kind: z.literal('drift'), atMs: ms, device: id, factor: z.number().positive().max(100) }).strict(),
]);

const populationSchema = z.object({
  /** Owners are generated until their devices reach this count. */
  targetDevices: z.number().int().positive().max(200_000),
  devicesPerOwner: range,
  coordinatorPresets: weights,
  presets: weights,
  access: weights,
  wanRttMs: range, upMbps: range, downMbps: range,
  wanJitterMs: ms.default(1), wanLoss: z.number().min(0).max(0.5).default(0.001),
  cloudPeers: z.number().int().positive().max(10_000),
  cloudPresets: weights,
  /** Extra RTT of each cloud peer's region on top of an owner's WAN RTT. */
  cloudExtraRttMs: range.default([0, 30]),
  /** Cloud peers an owner's directory query returns (lowest RTT + load first). */
  candidateClouds: z.number().int().positive().max(64).default(6),
  /** Non-coordinator devices alternate up and down periods (exponential means); 0 = no churn. */
  churn: z.object({ meanUpMs: ms, meanDownMs: ms }).strict().default({ meanUpMs: 0, meanDownMs: 0 }),
  /** Cloud peers that fail (permanently) at a uniform time in the middle of the run. */
  cloudFailures: z.number().int().min(0).default(0),
}).strict();

export const scenarioSchema = z.object({
  name: id,
  description: z.string().max(2000).default(''),
  seed: z.number().int().min(0).max(2 ** 32 - 1).default(1),
  model: z.enum(['debprose-7m', 'llama-7b-synthetic']),
  mode: z.enum(['local', 'split', 'scx']),
  request: requestSchema.default({ promptTokens: 256, maxNewTokens: 64 }),
  /** Counted in the heterogeneous-scenario comparison against the memory-proportional baseline. */
  heterogeneous: z.boolean().default(false),
  planners: z.array(z.enum(PLANNER_NAMES as unknown as [PlannerName, ...PlannerName[]])).min(1).default([...PLANNER_NAMES]),
  owner: z.object({
    coordinator: id,
    devices: z.array(deviceSchema).min(1).max(64),
    wan: wanSchema.default({ rttMs: 30, upMbps: 100, downMbps: 500, jitterMs: 1, loss: 0 }),
  }).strict().optional(),
  cloudPeers: z.array(cloudSchema).max(256).default([]),
  population: populationSchema.optional(),
  workload: z.object({
    requests: z.number().int().positive().max(100_000).default(5),
    thinkMs: ms.default(1000),
    /** Stop starting requests after this virtual time (default: no limit). */
    durationMs: ms.optional(),
  }).strict().default({ requests: 5, thinkMs: 1000 }),
  events: z.array(eventSchema).max(10_000).default([]),
  sweeps: z.object({
    deviceCount: z.boolean().optional(),
    rttMs: z.array(ms).max(32).optional(),
  }).strict().default({}),
  /** Relative error of the scheduler's measured device speeds (normal, sd). */
  measurementNoise: z.number().min(0).max(0.5).default(0.03),
  /** Relative spread of each compute op's duration around its nominal value (uniform). */
  computeJitter: z.number().min(0).max(0.9).default(0.05),
  /** Time for a coordinator to notice a device or cloud peer is gone. */
  failureDetectMs: ms.default(1500),
  /** Wait before retrying a request that found no feasible plan. */
  retryMs: ms.default(5000),
}).strict().superRefine((s, ctx) => {
  if (!!s.owner === !!s.population) ctx.addIssue({ code: 'custom', message: 'a scenario has exactly one of "owner" and "population"' });
  if (s.owner) {
    const ids = new Set<string>();
    for (const d of s.owner.devices) {
      if (ids.has(d.id)) ctx.addIssue({ code: 'custom', message: `device ${d.id} is listed twice` });
      ids.add(d.id);
    }
    if (!ids.has(s.owner.coordinator)) ctx.addIssue({ code: 'custom', message: `coordinator ${s.owner.coordinator} is not among the devices` });
    const clouds = new Set(s.cloudPeers.map((c) => c.id));
    for (const e of s.events) {
      if ('device' in e && !ids.has(e.device)) ctx.addIssue({ code: 'custom', message: `event at ${e.atMs} ms names unknown device ${e.device}` });
      if ('cloud' in e && !clouds.has(e.cloud)) ctx.addIssue({ code: 'custom', message: `event at ${e.atMs} ms names unknown cloud peer ${e.cloud}` });
    }
  }
  if (s.mode !== 'local' && !s.cloudPeers.length && !s.population) ctx.addIssue({ code: 'custom', message: `mode ${s.mode} needs cloudPeers` });
  if (s.population) {
    for (const [k, table] of [['presets', s.population.presets], ['coordinatorPresets', s.population.coordinatorPresets], ['cloudPresets', s.population.cloudPresets]] as const) {
      for (const p of Object.keys(table)) if (!(p in DEVICE_PRESETS)) ctx.addIssue({ code: 'custom', message: `population.${k}: unknown preset ${p}` });
    }
    for (const p of Object.keys(s.population.access)) if (!(p in ACCESS_PRESETS)) ctx.addIssue({ code: 'custom', message: `population.access: unknown preset ${p}` });
    if (s.population.devicesPerOwner[0] < 1) ctx.addIssue({ code: 'custom', message: 'population.devicesPerOwner must start at >= 1' });
  }
});

export type Scenario = z.infer<typeof scenarioSchema>;
export type ScenarioInput = z.input<typeof scenarioSchema>;

/** Largest scenario file read (a scenario is a small JSON document). */
const MAX_SCENARIO_BYTES = 1 << 20;

export function parseScenario(raw: unknown, file?: string): Scenario {
  const r = scenarioSchema.safeParse(raw);
  if (!r.success) {
    const msg = r.error.issues.slice(0, 8).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new ScenarioError(`invalid scenario: ${msg}`, file);
  }
  return r.data;
}

export function loadScenario(file: string): Scenario {
  let text: string;
  try {
    const buf = readFileSync(file);
    if (buf.length > MAX_SCENARIO_BYTES) throw new ScenarioError(`file is ${buf.length} bytes, over the ${MAX_SCENARIO_BYTES}-byte limit`, file);
    text = buf.toString('utf8');
  } catch (e) {
    if (e instanceof ScenarioError) throw e;
    throw new ScenarioError(`cannot read (${(e as Error).message})`, file);
  }
  let raw: unknown;
  try { raw = JSON.parse(text); } catch (e) { throw new ScenarioError(`not valid JSON (${(e as Error).message})`, file); }
  return parseScenario(raw, file);
}
