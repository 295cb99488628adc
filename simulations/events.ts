/**
 * Discrete-event core: virtual time in ms and a binary min-heap of events ordered by (time, sequence
 * number). Ties run in the order they were scheduled, so a run never depends on heap internals.
 */
export class SimulationError extends Error {
  override name = 'SimulationError';
}

type Handler = () => void;

export class EventQueue {
  private times: number[] = [];
  private seqs: number[] = [];
  private fns: Handler[] = [];
  private seq = 0;

  get size(): number { return this.times.length; }

  push(time: number, fn: Handler): void {
    if (!Number.isFinite(time)) throw new SimulationError(`event time must be finite (got ${time})`);
    const t = this.times, s = this.seqs, f = this.fns;
    let i = t.length;
    t.push(time); s.push(this.seq++); f.push(fn);
    // Sift up.
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (t[p] < t[i] || (t[p] === t[i] && s[p] < s[i])) break;
      this.swap(i, p);
      i = p;
    }
  }

  peekTime(): number { return this.times.length ? this.times[0] : Infinity; }

  pop(): { time: number; fn: Handler } | undefined {
    const t = this.times, s = this.seqs, f = this.fns;
    const n = t.length;
    if (!n) return undefined;
    const time = t[0], fn = f[0];
    const lastT = t.pop()!, lastS = s.pop()!, lastF = f.pop()!;
    if (n > 1) {
      t[0] = lastT; s[0] = lastS; f[0] = lastF;
      // Sift down.
      let i = 0;
      const m = n - 1;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let min = i;
        if (l < m && (t[l] < t[min] || (t[l] === t[min] && s[l] < s[min]))) min = l;
        if (r < m && (t[r] < t[min] || (t[r] === t[min] && s[r] < s[min]))) min = r;
        if (min === i) break;
        this.swap(i, min);
        i = min;
      }
    }
    return { time, fn };
  }

  private swap(i: number, j: number): void {
    const t = this.times, s = this.seqs, f = this.fns;
    const tt = t[i]; t[i] = t[j]; t[j] = tt;
    const ss = s[i]; s[i] = s[j]; s[j] = ss;
    const ff = f[i]; f[i] = f[j]; f[j] = ff;
  }
}

/** A clock and an event queue. Handlers schedule more events; `run` drains them in time order. */
export class Simulator {
  now = 0;
  events = 0;
  private readonly q = new EventQueue();

  /** Run `fn` after `delayMs` of virtual time. */
  after(delayMs: number, fn: Handler): void {
    if (!(delayMs >= 0)) throw new SimulationError(`delay must be >= 0 (got ${delayMs})`);
    this.q.push(this.now + delayMs, fn);
  }

  /** Run `fn` at absolute virtual time `timeMs` (not before now). */
  at(timeMs: number, fn: Handler): void {
    this.q.push(Math.max(timeMs, this.now), fn);
  }

  get pending(): number { return this.q.size; }

  /** Process events until none is left, virtual time passes `untilMs`, or `maxEvents` ran. */
  run(untilMs = Infinity, maxEvents = Infinity): number {
    let n = 0;
    while (n < maxEvents && this.q.size > 0 && this.q.peekTime() <= untilMs) {
      const e = this.q.pop()!;
      this.now = e.time;
      e.fn();
      n++;
    }
    this.events += n;
    return n;
  }
}
