import { describe, expect, it } from 'vitest';
import { buildManifest, parseConfig } from '../runtime/model/index.ts';
import {
  movedBytes, needsReplan, replan, solve, validatePlan,
  type ClusterState, type DeviceProfile, type LinkProfile, type PlanRequest,
} from '../runtime/scheduler/index.ts';

const manifest = buildManifest('llama-7b', parseConfig({
  model_type: 'llama', hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32,
  num_attention_heads: 32, num_key_value_heads: 32, vocab_size: 32000,
}));
const GiB = 1024 ** 3;

/** Sixteen devices: the first few big and fast, the rest small or slow; all on one LAN, one cloud peer. */
function home16(mode: 'local' | 'scx'): ClusterState {
  const devices: DeviceProfile[] = Array.from({ length: 16 }, (_, i) => ({
    id: `d${i}`,
    memoryBytes: (i % 4 === 1 ? 24 : i % 4 === 2 ? 16 : 8) * GiB,
    prefillFlopsPerSec: (i % 5 === 1 ? 600 : 80 + 10 * i) * 1e9,
    decodeFlopsPerSec: (i % 5 === 1 ? 40 : 5 + i) * 1e9,
    layerOverheadMs: 0.1,
  }));
  const links: LinkProfile[] = [];
  for (let i = 0; i < 16; i++) for (let j = i + 1; j < 16; j++) links.push({ a: `d${i}`, b: `d${j}`, rttMs: 2 + ((i + j) % 3), bandwidthBytesPerSec: 60e6 });
  const cloudPeers: DeviceProfile[] = mode === 'local' ? [] : ['g0', 'g1'].map((id, k) => ({
    id, memoryBytes: 80 * GiB, prefillFlopsPerSec: 40e12, decodeFlopsPerSec: 1.3e12, layerOverheadMs: 0.02, slots: 8,
  }));
  for (const [k, g] of cloudPeers.entries()) for (const d of devices) links.push({ a: d.id, b: g.id, rttMs: 20 + 30 * k, bandwidthBytesPerSec: 60e6 });
  return { coordinator: 'd0', devices, cloudPeers, links };
}

const without = (s: ClusterState, id: string): ClusterState => ({
  ...s, devices: s.devices.filter((d) => d.id !== id), cloudPeers: s.cloudPeers.filter((g) => g.id !== id),
  links: s.links.filter((l) => l.a !== id && l.b !== id),
});

describe('re-planning', () => {
  for (const mode of ['local', 'scx'] as const) {
    it(`finishes after a device of the plan leaves (16 devices, ${mode})`, () => {
      const request: PlanRequest = { mode, promptTokens: 256, maxNewTokens: 128 };
      const state = home16(mode);
      const first = solve(state, manifest, request);
      const gone = first.plan.stages.find((s) => s.role === 'layers' && s.deviceId !== 'd0')!.deviceId;
      const next = without(state, gone);
      const check = needsReplan(first, next, manifest);
      expect(check.needed).toBe(true);
      expect(check.reasons).toContain(`left: ${gone}`);
      expect(check.previousValid).toBe(false);
      const r = replan(first, next, manifest);
      expect(r.changed).toBe(true);
      expect(r.plan.stages.some((s) => s.deviceId === gone)).toBe(false);
      expect(validatePlan(r.plan, next, manifest, request)).toEqual([]);
      expect(r.movedBytes).toBe(movedBytes(first.plan, r.plan, manifest, next));
      expect(r.movedBytes).toBeGreaterThan(0);
    });
  }

  it('keeps the plan when nothing changed or a change is too small to pay for moving weights', () => {
    const request: PlanRequest = { mode: 'local', promptTokens: 256, maxNewTokens: 128 };
    const state = home16('local');
    const first = solve(state, manifest, request);
    const same = replan(first, state, manifest);
    expect(same.changed).toBe(false);
    expect(same.reasons).toEqual([]);
    // A newcomer 3% faster than the best device: a full re-plan would move gigabytes for 3%.
    const best = state.devices.find((d) => d.id === first.plan.stages[1].deviceId)!;
    const newcomer: DeviceProfile = { ...best, id: 'new', prefillFlopsPerSec: best.prefillFlopsPerSec * 1.03, decodeFlopsPerSec: best.decodeFlopsPerSec * 1.03 };
    const joined: ClusterState = {
      ...state, devices: [...state.devices, newcomer],
      links: [...state.links, ...state.devices.map((d) => ({ a: d.id, b: 'new', rttMs: 2, bandwidthBytesPerSec: 60e6 }))],
    };
    const r = replan(first, joined, manifest);
    expect(r.reasons).toContain('joined: new');
    expect(r.changed).toBe(false);
    expect(r.plan).toBe(first.plan);
    // Without the movement penalty and margin, the solver would take the newcomer.
    const free = replan(first, joined, manifest, { movePenaltyMsPerMiB: 0, minGain: 0 });
    expect(free.plan.stages.some((s) => s.deviceId === 'new')).toBe(true);
  });

  it('prefers plans that move fewer weights', () => {
    const request: PlanRequest = { mode: 'local', promptTokens: 256, maxNewTokens: 128 };
    const state = home16('local');
    const first = solve(state, manifest, request);
    const used = [...new Set(first.plan.stages.map((s) => s.deviceId))];
    const next = without(state, used[used.length - 1] === 'd0' ? used[0] : used[used.length - 1]);
    const penalised = replan(first, next, manifest, { movePenaltyMsPerMiB: 5 });
    const free = replan(first, next, manifest, { movePenaltyMsPerMiB: 0, minGain: 0 });
    expect(penalised.movedBytes).toBeLessThanOrEqual(free.movedBytes);
    expect(free.predicted.objective).toBeLessThanOrEqual(penalised.predicted.objective * (1 + 1e-9));
  });

  it('re-plans on measurement drift and on a cloud peer failure', () => {
    const request: PlanRequest = { mode: 'scx', promptTokens: 128, maxNewTokens: 256 };
    const state = home16('scx');
    const first = solve(state, manifest, request);
    const used = first.plan.stages.find((s) => s.role === 'layers')!.deviceId;
    const slow: ClusterState = { ...state, devices: state.devices.map((d) => d.id === used ? { ...d, prefillFlopsPerSec: d.prefillFlopsPerSec / 8, decodeFlopsPerSec: d.decodeFlopsPerSec / 8 } : d) };
    const small: ClusterState = { ...state, devices: state.devices.map((d) => d.id === used ? { ...d, decodeFlopsPerSec: d.decodeFlopsPerSec * 0.99 } : d) };
    expect(needsReplan(first, small, manifest).needed).toBe(false);
    const r = replan(first, slow, manifest);
    expect(r.reasons.some((x) => x.startsWith('drift'))).toBe(true);
    expect(r.changed).toBe(true);
    expect(r.predicted.objective).toBeLessThan(r.previousObjective);
    const cloud = first.plan.cloudPeer!;
    const failed = replan(first, without(state, cloud), manifest);
    expect(failed.reasons).toContain(`cloud peer gone: ${cloud}`);
    expect(failed.plan.cloudPeer).not.toBe(cloud);
    expect(failed.plan.cloudPeer).not.toBeNull();
  });

  it('counts moved bytes per device and unit', () => {
    const state = home16('local');
    const request: PlanRequest = { mode: 'local' };
    const p = solve(state, manifest, request).plan;
    expect(movedBytes(p, p, manifest)).toBe(0);
    const shifted = { ...p, stages: p.stages.map((s) => ({ ...s, deviceId: s.deviceId === p.stages[0].deviceId ? 'other' : s.deviceId })) };
    const onFirst = p.stages.filter((s) => s.deviceId === p.stages[0].deviceId);
    const expected = onFirst.reduce((b, s) => b + (s.role === 'embed' ? manifest.embedding.bytes : s.role === 'head' ? manifest.head.bytes
      : manifest.layers.slice(s.layers[0], s.layers[1]).reduce((x, l) => x + l.bytes, 0)), 0);
    expect(movedBytes(p, shifted, manifest)).toBe(expected);
  });
});

describe('re-planning on opt-out', () => {
  it('notices a device opting out and back in', () => {
    const request: PlanRequest = { mode: 'local', promptTokens: 256, maxNewTokens: 128 };
    const state = home16('local');
    const first = solve(state, manifest, request);
    const used = first.plan.stages.find((s) => s.role === 'layers' && s.deviceId !== 'd0')!.deviceId;
    const saver: ClusterState = { ...state, devices: state.devices.map((d) => d.id === used ? { ...d, optOut: true } : d) };
    const r = replan(first, saver, manifest);
    expect(r.reasons).toContain(`opted out: ${used}`);
    expect(r.plan.stages.some((s) => s.deviceId === used)).toBe(false);
    expect(r.why.excluded.find((e) => e.deviceId === used)?.reason).toBe('opt-out');
    const back = replan(r, state, manifest);
    expect(back.reasons).toContain(`opted back in: ${used}`);
  });
});
