import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScenario } from '../simulations/index.ts';

const FILE = join(resolve(import.meta.dirname, '..', 'simulations', 'scenarios'), 'multi-owner-10k.json');

describe('10,000 devices, many owners, a shared pool of cloud peers', () => {
  it('runs the real scheduler for every owner through churn and cloud failures', () => {
    const r = runScenario(FILE, { planners: ['hush'], sweeps: false });
    expect(r.devices).toBe(10_000);
    expect(r.owners).toBeGreaterThan(1000);
    expect(r.cloudPeers).toBe(64);
    const s = r.planners[0].simulated!;
    // Every owner plans at least once; churn and cloud failures force re-plans.
    expect(s.replanReasons.initial).toBeGreaterThanOrEqual(r.owners * 0.9);
    expect(s.replanReasons.left).toBeGreaterThan(0);
    expect(s.planCalls).toBeGreaterThan(r.owners);
    expect(s.requests).toBeGreaterThan(r.owners * 0.9);
    expect(s.tokens).toBe(s.requests * r.request.maxNewTokens!);
    expect(s.events).toBeGreaterThan(100_000);
    expect(s.perTokenMs.mean).toBeGreaterThan(0);
    expect(Number.isFinite(s.ttftMs.p95)).toBe(true);
    // Owners share the pool: load spreads over most peers, and peers hold several sessions at once.
    expect(s.cloudPeersUsed).toBeGreaterThan(48);
    expect(s.cloudSessionsMax).toBeGreaterThan(4);
    expect(r.planners[0].byDeviceCount!.map((b) => b.devices)).toEqual(expect.arrayContaining([3, 4, 5, 6, 7, 8]));
  });
});
