import type { BenchRow, BenchSection } from './report.ts';

/**
 * Scheduler and simulator numbers (simulations/bench.ts) as bench tables: planning time against
 * device count (1..64), re-planning after a device leaves with 16 devices against the 100 ms goal,
 * and simulator events per second on the 10,000-device scenario.
 */
export async function benchScheduler(): Promise<BenchSection[]> {
  const { benchScheduler: measure } = await import('../../simulations/bench.ts');
  const records = await measure();
  const of = (bench: string) => records.filter((r) => r.bench === bench);
  const num = (v: unknown) => (typeof v === 'number' ? v : null);

  const plan = of('scheduler.plan');
  const model = String(plan[0]?.model ?? '');
  const planning: BenchSection = {
    title: `Planning time vs device count (${model}, prompt 256 + 128 generated, two cloud peers in scx)`,
    rows: plan.map((r): BenchRow => ({
      mode: String(r.mode), devices: num(r.devices), search: String(r.method),
      median_ms: num(r.medianMs), p95_ms: num(r.p95Ms), min_ms: num(r.minMs),
    })),
    notes: [
      'a home with n random devices (laptop coordinator; phones, NAS, desktops, ... on ethernet / Wi-Fi), solve() from scratch; 10 repetitions (5 at 32 and 64 devices)',
      'search "exact" = the dynamic programme over every candidate order; "heuristic" past the exact limit; "infeasible" = the model does not fit (local mode, 1-2 devices)',
    ],
  };

  const re = of('scheduler.replanAfterLeave');
  const replanning: BenchSection = {
    title: 'Re-planning after a device leaves, 16 devices (goal: <= 100 ms)',
    rows: re.map((r): BenchRow => ({
      mode: String(r.mode), devices: num(r.devices), median_ms: num(r.medianMs), p95_ms: num(r.p95Ms), min_ms: num(r.minMs),
      replans: num(r.replans), plans_changed: num(r.plansChanged), goal_ms: num(r.goalMs), goal_met: r.pass === true,
    })),
    notes: ['a phone coordinates; each repetition removes one device the plan used and calls replan() from the previous plan'],
  };

  const sim = of('sim.multiOwner')[0];
  const simulator: BenchSection = {
    title: 'Simulator, multi-owner-10k scenario (10,000 devices sharing 64 cloud peers), Hush planner',
    rows: sim ? [{
      devices: num(sim.devices), owners: num(sim.owners), cloud_peers: num(sim.cloudPeers), requests: num(sim.requests),
      events: num(sim.events), wall_ms: Math.round(num(sim.wallMs) ?? 0), planning_ms: Math.round(num(sim.planningMs) ?? 0), plan_calls: num(sim.planCalls),
      events_per_s: Math.round(num(sim.eventsPerSec) ?? 0), events_per_s_without_planning: Math.round(num(sim.simEventsPerSec) ?? 0),
    }] : [],
    notes: ['every owner plans inside the simulation with the real scheduler; events_per_s_without_planning takes the planning wall time out'],
  };
  return [planning, replanning, simulator];
}
