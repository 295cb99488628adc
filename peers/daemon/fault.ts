/**
 * Fault injection for the failure tests and the recovery benchmark, off unless HUSH_FAULT is set.
 * HUSH_FAULT=<point>[:<count>] makes this daemon SIGKILL itself (or SIGSTOP itself, a partition that
 * keeps its connections open, with HUSH_FAULT_ACTION=stop) when it reaches the point for the count-th
 * time. Points: cloud `P1@L`/`P2@L`/`P3@L` (the crossing for layer L), `keyshare`, `decode`;
 * device `forward` (a stage forward request).
 */
const spec = process.env.HUSH_FAULT;
const action = process.env.HUSH_FAULT_ACTION === 'stop' ? 'SIGSTOP' : 'SIGKILL';
const [point, countText] = (spec ?? '').split(':');
const target = Number(countText ?? '1');
let seen = 0;

export function faultPoint(name: string): void {
  if (!spec || name !== point) return;
  if (++seen === target) process.kill(process.pid, action);
}
