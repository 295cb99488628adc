import { describe, expect, it } from 'vitest';
import { EventQueue, Prng, Simulator, SimulationError } from '../simulations/index.ts';

describe('seeded PRNG', () => {
  it('is a pure function of its seed, forks independent streams, and has sane distributions', () => {
    const a = new Prng(42), b = new Prng(42), c = new Prng(43);
    const xa = Array.from({ length: 100 }, () => a.nextU32());
    expect(Array.from({ length: 100 }, () => b.nextU32())).toEqual(xa);
    expect(Array.from({ length: 100 }, () => c.nextU32())).not.toEqual(xa);
    expect(new Prng('home').next()).toBe(new Prng('home').next());
    const f1 = new Prng(7).fork('world'), f2 = new Prng(7).fork('run');
    expect(f1.next()).not.toBe(f2.next());
    const r = new Prng(1);
    const n = 20000;
    let sum = 0, sumExp = 0, sumNorm = 0, sumSq = 0, losses = 0, lo = 1, hi = 0;
    const buckets = new Array(10).fill(0);
    for (let i = 0; i < n; i++) {
      const u = r.next();
      lo = Math.min(lo, u); hi = Math.max(hi, u);
      buckets[Math.floor(u * 10)]++;
      sum += u;
      sumExp += r.exp(3);
      const z = r.normal(); sumNorm += z; sumSq += z * z;
      losses += r.losses(0.2);
    }
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThan(1);
    expect(sum / n).toBeCloseTo(0.5, 1);
    for (const k of buckets) expect(Math.abs(k - n / 10)).toBeLessThan(n / 10 * 0.1);
    expect(sumExp / n).toBeGreaterThan(2.85);
    expect(sumExp / n).toBeLessThan(3.15);
    expect(Math.abs(sumNorm / n)).toBeLessThan(0.03);
    expect(sumSq / n).toBeCloseTo(1, 1);
    expect(losses / n).toBeCloseTo(0.25, 1); // geometric: p / (1 - p)
    expect(new Prng(5).weighted({ a: 0.000001, b: 1e9 })).toBe('b');
  });
});

describe('event queue', () => {
  it('pops in time order and, at equal times, in scheduling order', () => {
    const q = new EventQueue();
    const r = new Prng(9);
    const order: [number, number][] = [];
    for (let i = 0; i < 5000; i++) {
      const t = Math.floor(r.next() * 100); // many ties
      q.push(t, () => order.push([t, i]));
    }
    while (q.size) q.pop()!.fn();
    let sorted = order.length === 5000;
    for (let i = 1; i < order.length; i++) {
      const [t0, s0] = order[i - 1], [t1, s1] = order[i];
      if (!(t1 > t0 || (t1 === t0 && s1 > s0))) sorted = false;
    }
    expect(sorted).toBe(true);
    expect(() => q.push(Number.NaN, () => {})).toThrow(SimulationError);
  });

  it('runs handlers at their virtual times, bounded by time and count', () => {
    const sim = new Simulator();
    const seen: number[] = [];
    const tick = () => { seen.push(sim.now); if (sim.now < 50) sim.after(10, tick); };
    sim.at(5, tick);
    expect(sim.run(30)).toBe(3);
    expect(seen).toEqual([5, 15, 25]);
    sim.run();
    expect(seen).toEqual([5, 15, 25, 35, 45, 55]);
    expect(sim.pending).toBe(0);
    expect(() => sim.after(-1, () => {})).toThrow(SimulationError);
  });
});
