import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildManifest, parseConfig } from '../runtime/model/index.ts';
import {
  PROFILE_FILE, ProfileError, deviceProfileFromMeasured, loadOrMeasureProfile, msPerLayer, type Measured,
} from '../runtime/scheduler/index.ts';

const manifest = buildManifest('llama-7b', parseConfig({
  model_type: 'llama', hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, vocab_size: 32000,
}));
const layer = manifest.layers[0];
const measured: Measured = {
  memoryBytes: 12e9, reference: layer, prefillTokens: 64, prefillMsPerLayer: 210, decodeContext: 64, decodeMsPerLayer: 30, overheadMsPerLayer: 0.4,
};
const host = { platform: 'linux', arch: 'x64', cpuModel: 'Test CPU', cpus: 8, totalMemBytes: 16e9 };
const dirs: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'hush-profile-')); dirs.push(d); return d; };
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

describe('device profiles', () => {
  it('turns a micro-benchmark into rates that reproduce the measured ms per layer', () => {
    const p = deviceProfileFromMeasured('laptop', measured);
    expect(msPerLayer(p, layer, 'prefill', 64)).toBeCloseTo(210, 9);
    expect(msPerLayer(p, layer, 'decode', 1, 64)).toBeCloseTo(30, 9);
    expect(p.layerOverheadMs).toBe(0.4);
    // Rates carry over to another layer size (here half the FLOPs -> roughly half the time minus overhead).
    const half = { ...layer, flopsPerToken: layer.flopsPerToken / 2, flopsPerTokenPerContext: layer.flopsPerTokenPerContext / 2 };
    expect(msPerLayer(p, half, 'decode', 1, 64)).toBeCloseTo(0.4 + (30 - 0.4) / 2, 9);
    expect(() => deviceProfileFromMeasured('x', { ...measured, decodeMsPerLayer: -1 })).toThrow(ProfileError);
    expect(() => deviceProfileFromMeasured('x', { ...measured, overheadMsPerLayer: 40 })).toThrow(/overhead/);
  });

  it('caches the measurement in the home directory and measures again when stale, foreign or corrupt', async () => {
    const home = join(tmp(), 'nested', 'home');
    let calls = 0;
    const measure = async () => { calls++; return { ...measured, decodeMsPerLayer: 30 + calls }; };
    let now = 1_000_000;
    const opts = { now: () => now, host };
    const a = await loadOrMeasureProfile(home, measure, 60_000, opts);
    expect(a.fromCache).toBe(false);
    expect(calls).toBe(1);
    expect(statSync(join(home, PROFILE_FILE)).mode & 0o777).toBe(0o600);
    now += 30_000;
    const b = await loadOrMeasureProfile(home, measure, 60_000, opts);
    expect(b.fromCache).toBe(true);
    expect(b.measured.decodeMsPerLayer).toBe(31);
    expect(calls).toBe(1);
    now += 60_000; // older than maxAgeMs
    const c = await loadOrMeasureProfile(home, measure, 60_000, opts);
    expect(c.fromCache).toBe(false);
    expect(calls).toBe(2);
    // New hardware (say, the disk moved to another machine): measure again.
    const d = await loadOrMeasureProfile(home, measure, 60_000, { now: () => now, host: { ...host, cpus: 16 } });
    expect(d.fromCache).toBe(false);
    expect(calls).toBe(3);
    writeFileSync(join(home, PROFILE_FILE), '{ not json');
    const e = await loadOrMeasureProfile(home, measure, 60_000, { now: () => now, host });
    expect(e.fromCache).toBe(false);
    expect(calls).toBe(4);
    const stored = JSON.parse(readFileSync(join(home, PROFILE_FILE), 'utf8'));
    expect(stored.measured.decodeMsPerLayer).toBe(34);
    expect(stored.version).toBe(1);
  });

  it('refuses a bad measurement and keeps the cache as it was', async () => {
    const home = tmp();
    await loadOrMeasureProfile(home, async () => measured, 1000, { now: () => 0, host });
    const before = readFileSync(join(home, PROFILE_FILE), 'utf8');
    await expect(loadOrMeasureProfile(home, async () => ({ ...measured, prefillMsPerLayer: Number.NaN }), 1000, { now: () => 5000, host }))
      .rejects.toThrow(/prefillMsPerLayer/);
    expect(readFileSync(join(home, PROFILE_FILE), 'utf8')).toBe(before);
  });
});
