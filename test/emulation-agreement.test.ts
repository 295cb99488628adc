import { describe, it, expect } from 'vitest';
import { emulate, formatEmulation, type EmulationReport } from '../simulations/emulation/emulate.ts';

/**
 * Real daemons (laptop coordinator, cloud peer) as separate processes, the cloud link through the
 * user-space shaper at 50 ms RTT and 50 Mbit/s: the measured per-token latency agrees with the cost
 * model's prediction for the plan the daemon used within 20%, in scx and split mode. The prediction's
 * inputs are measured (device micro-benchmark, libp2p ping) or the shaper's settings, never fitted.
 */
describe('emulated runs vs the cost model', () => {
  it('per-token latency at 50 ms RTT, 50 Mbit/s agrees within 20% (scx and split)', async () => {
    const r: EmulationReport = await emulate({ settings: [{ rttMs: 50, bandwidthMbit: 50 }], modes: ['scx', 'split'], tokens: 24, reps: 2 });
    console.log(formatEmulation(r));
    expect(r.rows).toHaveLength(2);
    for (const row of r.rows) {
      // Every token took the shaped path (a token costs at least one 50 ms round trip to the cloud).
      const what = `${row.mode}: measured ${row.per_token_ms.toFixed(2)} ms/token, predicted ${row.pred_ms.toFixed(2)} ms`;
      expect(row.tokens, what).toBeGreaterThan(8);
      expect(row.per_token_ms, what).toBeGreaterThan(50);
      expect(Math.abs(row.err), what).toBeLessThan(0.2);
    }
    // The plan put the middle layers on the cloud peer, and scx needed 3 exchanges per cloud layer.
    const scx = r.rows.find((x) => x.mode === 'scx')!;
    expect(scx.plan).toMatch(/L1-6 cloud/);
    expect(scx.ttft_turns, 'request/reply turns before the first token').toBeGreaterThanOrEqual(scx.model_turns);
  }, 90_000);
});
