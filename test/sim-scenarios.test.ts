import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { InfeasiblePlanError, solve } from '../runtime/scheduler/index.ts';
import {
  ScenarioError, loadScenario, parseScenario, runScenario, scenarioTruthState, simCommand, summarizeGate, writeReport,
  type ScenarioInput, type ScenarioReport,
} from '../simulations/index.ts';

const DIR = resolve(import.meta.dirname, '..', 'simulations', 'scenarios');
const files = readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();
const heterogeneous = files.filter((f) => loadScenario(join(DIR, f)).heterogeneous);
const tmpDirs: string[] = [];
afterAll(() => { for (const d of tmpDirs) rmSync(d, { recursive: true, force: true }); });

const small: ScenarioInput = {
  name: 'small', model: 'debprose-7m', mode: 'local', seed: 3,
  request: { promptTokens: 32, maxNewTokens: 12 },
  owner: {
    coordinator: 'a',
    devices: [{ id: 'a', preset: 'laptop', access: 'wifi' }, { id: 'b', preset: 'desktop', access: 'ethernet' }, { id: 'c', preset: 'nas', access: 'ethernet' }],
  },
  planners: ['hush', 'memory-proportional'],
  workload: { requests: 3, thinkMs: 500 },
};

describe('scenario files', () => {
  it('ship the required scenarios and all parse', () => {
    for (const f of files) loadScenario(join(DIR, f));
    const names = files.map((f) => f.replace('.json', ''));
    for (const n of ['home-lan-3', 'home-lan-8', 'phone-wifi', 'cloud-20ms', 'cloud-50ms', 'cloud-100ms', 'churn', 'cloud-failure', 'multi-owner-10k']) expect(names).toContain(n);
    expect(heterogeneous.length).toBeGreaterThanOrEqual(6);
  });

  it('rejects bad scenarios with a clear error', () => {
    expect(() => parseScenario({ ...small, owner: { ...small.owner!, coordinator: 'zz' } })).toThrow(/coordinator zz is not among the devices/);
    expect(() => parseScenario({ ...small, model: 'gpt-9' as 'debprose-7m' })).toThrow(ScenarioError);
    expect(() => parseScenario({ ...small, owner: { ...small.owner!, devices: [{ id: 'a', preset: 'toaster' }] } })).toThrow(/unknown device preset/);
    expect(() => parseScenario({ ...small, mode: 'scx' })).toThrow(/needs cloudPeers/);
    expect(() => parseScenario({ ...small, events: [{ kind: 'leave', atMs: 5, device: 'ghost' }] })).toThrow(/unknown device ghost/);
    expect(() => loadScenario(join(DIR, 'does-not-exist.json'))).toThrow(/cannot read/);
  });
});

describe('Hush against the baselines', () => {
  const reports: ScenarioReport[] = heterogeneous.map((f) => runScenario(join(DIR, f), { sweeps: false, planners: ['hush', 'memory-proportional', 'best-single'] }));

  it('geometric-mean per-token latency over memory-proportional is at most 0.75 on the heterogeneous scenarios', () => {
    const gate = summarizeGate(reports);
    // Printed so the number is visible in test logs, scenario by scenario.
    console.log(JSON.stringify(gate.scenarios.map((s) => [s.scenario, +(s.simulated ?? NaN).toFixed(3), +(s.predicted ?? NaN).toFixed(3)])), 'geomean', gate.geomeanSimulated);
    expect(gate.scenarios.length).toBe(heterogeneous.length);
    for (const s of gate.scenarios) expect(s.simulated, s.scenario).not.toBeNull();
    expect(gate.geomeanSimulated!).toBeLessThanOrEqual(0.75);
    expect(gate.geomeanPredicted!).toBeLessThanOrEqual(0.75);
    // Never worse than the baseline by more than noise, scenario by scenario.
    for (const s of gate.scenarios) expect(s.predicted!, s.scenario).toBeLessThanOrEqual(1 + 1e-9);
  });

  it('is never slower than the best single device', () => {
    for (const r of reports) expect(r.comparison.hushNotSlowerThanBestSingle, r.scenario).toBe(true);
  });

  it('never gets slower as devices are added one at a time', () => {
    for (const f of heterogeneous) {
      const { deviceOrder } = scenarioTruthState(join(DIR, f));
      let prev = Infinity;
      for (let k = 1; k <= deviceOrder.length; k++) {
        const { state, manifest, request } = scenarioTruthState(join(DIR, f), { deviceIds: deviceOrder.slice(0, k) });
        let o = Infinity;
        try { o = solve(state, manifest, request).predicted.objective; } catch (e) { if (!(e instanceof InfeasiblePlanError)) throw e; }
        expect(o, `${f} with ${k} devices`).toBeLessThanOrEqual(prev * (1 + 1e-12));
        prev = o;
      }
      expect(prev, f).toBeLessThan(Infinity);
    }
  });
});

describe('simulation', () => {
  it('is deterministic for a seed', () => {
    const a = runScenario(small), b = runScenario(small);
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
    const c = runScenario(small, { seed: 4 });
    expect(c.planners[0].simulated!.perTokenMs.mean).not.toBe(a.planners[0].simulated!.perTokenMs.mean);
    const f = join(DIR, 'churn.json');
    expect(JSON.stringify(runScenario(f, { sweeps: false, planners: ['hush'] }))).toBe(JSON.stringify(runScenario(f, { sweeps: false, planners: ['hush'] })));
  });

  it('matches the cost model when nothing is random', () => {
    const quiet = runScenario({ ...small, measurementNoise: 0, computeJitter: 0, planners: ['hush'],
      owner: { ...small.owner!, devices: small.owner!.devices.map((d) => ({ ...d, access: 'ethernet' })) } });
    const h = quiet.planners[0];
    // Ethernet links keep a 0.02 ms mean jitter, so allow 1%.
    expect(Math.abs(h.simulated!.perTokenMs.mean / h.plan!.perTokenMs - 1)).toBeLessThan(0.01);
    expect(Math.abs(h.simulated!.ttftMs.mean / h.plan!.ttftMs - 1)).toBeLessThan(0.01);
  });

  it('survives devices leaving and joining: no lost or repeated tokens, plans follow the devices', () => {
    const r = runScenario(join(DIR, 'churn.json'), { sweeps: false, planners: ['hush'] });
    const s = r.planners[0].simulated!;
    expect(s.requests).toBe(10);
    expect(s.aborted).toBe(0);
    expect(s.tokens).toBe(10 * r.request.maxNewTokens!);
    expect(s.recoveries).toBeGreaterThanOrEqual(1);
    expect(s.replanReasons.left).toBeGreaterThanOrEqual(1);
    expect(s.replanReasons.joined).toBeGreaterThanOrEqual(1);
    expect(s.planChanges).toBeGreaterThanOrEqual(2);
  });

  it('moves to another cloud peer when one fails mid-answer', () => {
    const r = runScenario(join(DIR, 'cloud-failure.json'), { sweeps: false, planners: ['hush'] });
    const s = r.planners[0].simulated!;
    expect(s.aborted).toBe(0);
    expect(s.tokens).toBe(s.requests * r.request.maxNewTokens!);
    expect(s.recoveries).toBeGreaterThanOrEqual(1);
    expect(s.replanReasons['cloud peer failed']).toBeGreaterThanOrEqual(1);
    expect(s.stallMs.n).toBeGreaterThanOrEqual(1);
    expect(s.stallMs.max).toBeGreaterThanOrEqual(1500); // at least the failure-detection time
  });

  it('writes report.json and SVG charts, and the CLI prints a table or JSON', async () => {
    const out = mkdtempSync(join(tmpdir(), 'hush-sim-'));
    tmpDirs.push(out);
    const r = runScenario(join(DIR, 'cloud-50ms.json'), { planners: ['hush', 'memory-proportional'] });
    const written = writeReport(r, out).map((p) => p.replace(out + '/', '')).sort();
    expect(written).toEqual(['latency-vs-devices.svg', 'latency-vs-rtt.svg', 'report.json', 'timeline.svg']);
    expect(JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'))).toEqual(JSON.parse(JSON.stringify(r)));
    for (const f of written.filter((x) => x.endsWith('.svg'))) {
      const svg = readFileSync(join(out, f), 'utf8');
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
      expect(svg).not.toMatch(/NaN|undefined/);
    }
    expect(readFileSync(join(out, 'latency-vs-rtt.svg'), 'utf8')).toMatch(/<path d="M/);
    expect(readFileSync(join(out, 'timeline.svg'), 'utf8')).toMatch(/one decode step/);

    const scenarioFile = join(out, 'small.json');
    writeFileSync(scenarioFile, JSON.stringify(small));
    const chunks: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => { chunks.push(String(c)); return true; });
    const errSpy = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await simCommand(scenarioFile, {})).toBe(0);
      expect(chunks.join('')).toMatch(/planner\s+TTFT pred/);
      expect(chunks.join('')).toMatch(/memory-proportional/);
      chunks.length = 0;
      expect(await simCommand(scenarioFile, { json: true, out: join(out, 'cli') })).toBe(0);
      expect(JSON.parse(chunks.join('')).scenario).toBe('small');
      expect(readdirSync(join(out, 'cli'))).toContain('report.json');
      writeFileSync(join(out, 'bad.json'), '{"name": "x"}');
      expect(await simCommand(join(out, 'bad.json'), {})).toBe(2);
      expect(errSpy.mock.calls.map((c) => String(c[0])).join('')).toMatch(/ScenarioError/);
    } finally {
      spy.mockRestore();
      errSpy.mockRestore();
    }
  });
});
