/** writeReport: report.json and SVG charts of a scenario run; formatReport: the readable table. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PlannerName } from './baselines.ts';
import type { ScenarioReport, SweepPoint } from './run.ts';
import { lineChart, timelineChart, type Series } from './svg.ts';

function sweepSeries(points: SweepPoint[], planners: PlannerName[]): Series[] {
  return planners.map((p) => ({ name: p, points: points.map((pt) => [pt.x, pt.perTokenMs[p] ?? null] as [number, number | null]) }));
}

/** Write report.json and the charts into `outDir`; returns the paths written. */
export function writeReport(report: ScenarioReport, outDir: string): string[] {
  mkdirSync(outDir, { recursive: true });
  const files: string[] = [];
  const write = (name: string, text: string) => { const f = join(outDir, name); writeFileSync(f, text); files.push(f); };
  write('report.json', JSON.stringify(report, null, 2) + '\n');
  const planners = report.planners.map((p) => p.planner);
  const sub = `${report.scenario} (${report.model}, ${report.mode})`;
  if (report.sweeps.deviceCount) {
    write('latency-vs-devices.svg', lineChart({
      title: `Per-token latency vs devices — ${sub}`, xLabel: 'devices (coordinator first, in scenario order)',
      yLabel: 'ms per token (predicted)', series: sweepSeries(report.sweeps.deviceCount, planners),
    }));
  } else if (report.planners.some((p) => p.byDeviceCount)) {
    write('latency-vs-devices.svg', lineChart({
      title: `Per-token latency vs owner's devices — ${sub}`, xLabel: "owner's devices", yLabel: 'ms per token (simulated mean)',
      series: report.planners.filter((p) => p.byDeviceCount).map((p) => ({ name: p.planner, points: p.byDeviceCount!.map((b) => [b.devices, b.perTokenMs] as [number, number]) })),
    }));
  }
  if (report.sweeps.rttMs) {
    write('latency-vs-rtt.svg', lineChart({
      title: `Per-token latency vs cloud RTT — ${sub}`, xLabel: 'cloud RTT (ms)', yLabel: 'ms per token (predicted)',
      series: sweepSeries(report.sweeps.rttMs, planners),
    }));
  } else if (report.planners.some((p) => p.byRtt)) {
    write('latency-vs-rtt.svg', lineChart({
      title: `Per-token latency vs WAN RTT — ${sub}`, xLabel: 'owner WAN RTT (ms, 10 ms buckets)', yLabel: 'ms per token (simulated mean)',
      series: report.planners.filter((p) => p.byRtt).map((p) => ({ name: p.planner, points: p.byRtt!.map((b) => [b.rttMs, b.perTokenMs] as [number, number]) })),
    }));
  }
  if (report.timelines.length) {
    write('timeline.svg', timelineChart({
      title: `Plan timelines — ${sub}`,
      panels: report.timelines.flatMap((t) => [
        { title: `${t.planner}: one decode step`, bars: t.decode },
        { title: `${t.planner}: prefill (${report.request.promptTokens} tokens)`, bars: t.prefill },
      ]),
    }));
  }
  return files;
}

function n(v: number | null | undefined, digits = 1): string {
  return v == null || !Number.isFinite(v) ? '—' : v.toFixed(digits);
}

/** A readable table of a report. */
export function formatReport(r: ScenarioReport): string {
  const lines: string[] = [];
  lines.push(`scenario ${r.scenario}: ${r.model}, mode ${r.mode}, seed ${r.seed}; ${r.owners} owner(s), ${r.devices} devices, ${r.cloudPeers} cloud peer(s)`);
  lines.push(`request: ${r.request.promptTokens} prompt tokens, ${r.request.maxNewTokens} new tokens, objective ${r.request.objective ?? 'total'}`);
  const head = ['planner', 'TTFT pred', 'TTFT sim', 'ms/tok pred', 'ms/tok sim', 'ms/tok p95', 'requests', 'aborted', 'recoveries', 'replans'];
  const rows = r.planners.map((p) => [
    p.planner,
    n(p.plan?.ttftMs, 0), n(p.simulated?.ttftMs.mean, 0),
    n(p.plan?.perTokenMs), n(p.simulated?.perTokenMs.mean), n(p.simulated?.perTokenMs.p95),
    String(p.simulated?.requests ?? '—'), String(p.simulated?.aborted ?? '—'), String(p.simulated?.recoveries ?? '—'),
    p.simulated ? `${p.simulated.planChanges}/${p.simulated.planCalls}` : '—',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const fmtRow = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  lines.push(fmtRow(head));
  lines.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) lines.push(fmtRow(row));
  for (const p of r.planners) if (p.error) lines.push(`${p.planner}: no plan (${p.error})`);
  const c = r.comparison;
  lines.push(`Hush / memory-proportional, ms per token: ${n(c.perTokenRatioVsMemoryProportional.simulated, 2)} simulated, ${n(c.perTokenRatioVsMemoryProportional.predicted, 2)} predicted`);
  if (c.hushNotSlowerThanBestSingle != null) lines.push(`Hush no slower than the best single device (predicted objective): ${c.hushNotSlowerThanBestSingle ? 'yes' : 'NO'}`);
  const hush = r.planners.find((p) => p.planner === 'hush');
  if (hush?.plan) {
    lines.push(`Hush plan: ${hush.plan.stages.map((s) => s.role === 'layers' || s.role === 'cloud' ? `${s.deviceId}[${s.layers[0]},${s.layers[1]})` : `${s.deviceId}:${s.role}`).join(' → ')}`);
    for (const s of hush.plan.summary) lines.push(`  ${s}`);
  }
  if (hush?.simulated) {
    const rr = Object.entries(hush.simulated.replanReasons).map(([k, v]) => `${k} ${v}`).join(', ');
    lines.push(`simulation: ${hush.simulated.events} events, ${n(hush.simulated.virtualMs / 1000)} s virtual; plan calls by reason: ${rr}`);
  }
  return lines.join('\n');
}
