/**
 * Scheduler and simulator benchmarks (called from `npm run bench`):
 * - planning time against device count (1..64), local and scx, LLaMA-7B-sized model;
 * - simulator events per second on the 10,000-device multi-owner scenario;
 * - re-planning time after a device leaves, 16 devices (goal: <= 100 ms).
 */
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { replan, solve, type ClusterState, type LinkProfile, type PlanMode } from '../runtime/scheduler/index.ts';
import { accessPreset, lanLink, manifestFor, profileFromPreset, wanLink } from './presets.ts';
import { Prng } from './prng.ts';
import { hushPlanner, type Planner } from './baselines.ts';
import { loadScenario } from './scenario.ts';
import { buildPopulation, World } from './world.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const PRESETS = ['laptop', 'desktop', 'macbook', 'nas', 'phone', 'mini-pc', 'old-laptop', 'raspberry-pi'];
const ACCESS = ['ethernet', 'wifi', 'wifi-weak'];

/** A home with n random devices (seeded) and two cloud peers. */
export function benchState(n: number, mode: PlanMode, seed = 1, coordinatorPreset = 'laptop'): ClusterState {
  const rng = new Prng(seed);
  const devs = Array.from({ length: n }, (_, i) => ({ id: `d${i}`, preset: i === 0 ? coordinatorPreset : rng.pick(PRESETS), access: rng.pick(ACCESS) }));
  const links: LinkProfile[] = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) links.push(lanLink(devs[i].id, accessPreset(devs[i].access), devs[j].id, accessPreset(devs[j].access)));
  const clouds = mode === 'local' ? [] : [profileFromPreset('g0', 'cloud-h100'), profileFromPreset('g1', 'cloud-a100')];
  clouds.forEach((g, k) => {
    for (const d of devs) links.push(wanLink(d.id, accessPreset(d.access), g.id, { rttMs: 20 + 30 * k, upMbps: 500, downMbps: 500, jitterMs: 1, loss: 0 }));
  });
  return { coordinator: 'd0', devices: devs.map((d) => profileFromPreset(d.id, d.preset)), cloudPeers: clouds, links };
}

function timeMs(fn: () => void, reps: number): { medianMs: number; p95Ms: number; minMs: number } {
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return { medianMs: ts[Math.floor(ts.length / 2)], p95Ms: ts[Math.min(ts.length - 1, Math.floor(ts.length * 0.95))], minMs: ts[0] };
}

export async function benchScheduler(): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  const m = manifestFor('llama-7b-synthetic');
  const request = { promptTokens: 256, maxNewTokens: 128 };
  for (const mode of ['local', 'scx'] as const) {
    for (const n of [1, 2, 4, 8, 16, 32, 64]) {
      const state = benchState(n, mode);
      let method = 'infeasible';
      const t = timeMs(() => {
        try { method = solve(state, m, { mode, ...request }).why.search.method; } catch { method = 'infeasible'; }
      }, n >= 32 ? 5 : 10);
      out.push({ bench: 'scheduler.plan', model: m.name, mode, devices: n, method, ...t });
    }
  }
  for (const mode of ['local', 'scx'] as const) {
    // A phone coordinates, so the plan runs on other devices; each repetition removes one of them.
    const state = benchState(16, mode, 2, 'phone');
    const first = solve(state, m, { mode, ...request });
    const victims = [...new Set(first.plan.stages.filter((s) => s.role !== 'cloud' && s.deviceId !== state.coordinator).map((s) => s.deviceId))];
    if (!victims.length) throw new Error('bench: the plan uses no device besides the coordinator');
    let i = 0, changed = 0;
    const t = timeMs(() => {
      const gone = victims[i++ % victims.length];
      const next = { ...state, devices: state.devices.filter((d) => d.id !== gone), links: state.links.filter((l) => l.a !== gone && l.b !== gone) };
      if (replan(first, next, m).changed) changed++;
    }, 20);
    out.push({ bench: 'scheduler.replanAfterLeave', model: m.name, mode, devices: 16, ...t, replans: 20, plansChanged: changed, goalMs: 100, pass: t.medianMs <= 100 });
  }
  // The 10,000-device scenario, Hush only. Planning runs inside the simulation (every owner plans), so
  // report events/s of the whole run and of the simulator alone (planning wall time taken out).
  const sc = loadScenario(join(HERE, 'scenarios', 'multi-owner-10k.json'));
  const pop = buildPopulation(sc, new Prng(sc.seed).fork('population'));
  let planningMs = 0;
  const timed: Planner = {
    name: 'hush',
    plan: (...a) => { const t0 = performance.now(); try { return hushPlanner.plan(...a); } finally { planningMs += performance.now() - t0; } },
  };
  const t0 = performance.now();
  const st = new World(sc, pop, manifestFor(sc.model), timed, sc.seed).run();
  const wallMs = performance.now() - t0;
  out.push({
    bench: 'sim.multiOwner', devices: pop.owners.reduce((n, o) => n + o.devices.length, 0), owners: pop.owners.length, cloudPeers: pop.clouds.length,
    events: st.events, wallMs, planningMs, planCalls: st.planCalls, requests: st.records.length,
    eventsPerSec: st.events / (wallMs / 1000), simEventsPerSec: st.events / ((wallMs - planningMs) / 1000),
  });
  return out;
}
