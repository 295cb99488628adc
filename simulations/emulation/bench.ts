import type { BenchRow, BenchSection } from '../../runtime/bench/report.ts';
import { emulate, type LinkSetting } from './emulate.ts';

/**
 * Emulated runs against the cost model as bench tables (`npm run bench -- --only emulation`): real
 * daemons, the cloud link shaped to 20 and 50 ms RTT at 50 Mbit/s, scx and split.
 */
export async function benchEmulation(settings: LinkSetting[] = [{ rttMs: 20, bandwidthMbit: 50 }, { rttMs: 50, bandwidthMbit: 50 }]): Promise<BenchSection[]> {
  const r = await emulate({ settings, modes: ['scx', 'split'], tokens: 32, reps: 3 });
  return [
    {
      title: 'Emulated runs (real daemons, cloud link through the user-space shaper) vs the cost model: per-token latency and TTFT',
      rows: r.rows as unknown as BenchRow[],
      notes: ['goal: per-token latency within 20% of the prediction (|err| < 0.2)', ...r.notes],
    },
    { title: 'Device profiles the predictions used (ms per layer)', rows: r.profiles as unknown as BenchRow[] },
  ];
}
