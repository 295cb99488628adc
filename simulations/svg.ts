/** Hand-written SVG charts for simulation reports: line charts and operation timelines. */

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' }[c]!));
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

function fmt(v: number): string {
  if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-2) return v.toExponential(1);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export interface Series { name: string; points: [number, number | null][] }

/** Line chart; null points break the line (a planner with no feasible plan there). Log y when the range is wide. */
export function lineChart(o: { title: string; xLabel: string; yLabel: string; series: Series[]; width?: number; height?: number }): string {
  const W = o.width ?? 720, H = o.height ?? 420;
  const m = { l: 70, r: 170, t: 40, b: 50 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const xs = o.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = o.series.flatMap((s) => s.points.map((p) => p[1]).filter((y): y is number => y != null && Number.isFinite(y) && y > 0));
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(o.title)}</text>`);
  if (!xs.length || !ys.length) {
    out.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no data</text></svg>`);
    return out.join('\n');
  }
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  const logY = y1 / y0 > 20;
  if (!logY) { y0 = 0; y1 = y1 * 1.08; } else { y0 = y0 / 1.3; y1 = y1 * 1.3; }
  const X = (x: number) => m.l + (x1 === x0 ? pw / 2 : ((x - x0) / (x1 - x0)) * pw);
  const Y = (y: number) => logY ? m.t + ph - ((Math.log(y) - Math.log(y0)) / (Math.log(y1) - Math.log(y0))) * ph : m.t + ph - ((y - y0) / (y1 - y0)) * ph;
  out.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  // y ticks
  const ticks: number[] = [];
  if (logY) {
    for (let e = Math.floor(Math.log10(y0)); e <= Math.ceil(Math.log10(y1)); e++) for (const k of [1, 2, 5]) {
      const v = k * 10 ** e;
      if (v >= y0 && v <= y1) ticks.push(v);
    }
  } else {
    // Round steps (1, 2 or 5 times a power of ten) so tick labels read well.
    const raw = (y1 - y0) / 5, p10 = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((k) => k * p10).find((s) => s >= raw)!;
    for (let v = 0; v <= y1; v += step) ticks.push(v);
  }
  for (const v of ticks) {
    out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${Y(v).toFixed(1)}" y2="${Y(v).toFixed(1)}" stroke="#eee"/>`);
    out.push(`<text x="${m.l - 6}" y="${(Y(v) + 4).toFixed(1)}" text-anchor="end">${fmt(v)}</text>`);
  }
  let lastX = -Infinity;
  for (const v of [...new Set(xs)].sort((a, b) => a - b)) {
    if (X(v) - lastX < 28) continue; // keep labels from overlapping
    lastX = X(v);
    out.push(`<text x="${X(v).toFixed(1)}" y="${m.t + ph + 18}" text-anchor="middle">${fmt(v)}</text>`);
  }
  out.push(`<text x="${m.l + pw / 2}" y="${H - 10}" text-anchor="middle">${escapeXml(o.xLabel)}</text>`);
  out.push(`<text x="16" y="${m.t + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${m.t + ph / 2})">${escapeXml(o.yLabel + (logY ? ' (log)' : ''))}</text>`);
  o.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    let d = '';
    let pen = false;
    for (const [x, y] of s.points) {
      if (y == null || !Number.isFinite(y) || y <= 0) { pen = false; continue; }
      d += `${pen ? 'L' : 'M'}${X(x).toFixed(1)},${Y(y).toFixed(1)} `;
      pen = true;
    }
    if (d) out.push(`<path d="${d.trim()}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const [x, y] of s.points) {
      if (y == null || !Number.isFinite(y) || y <= 0) continue;
      out.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3.5" fill="${color}"><title>${escapeXml(`${s.name}: ${fmt(x)} → ${fmt(y)}`)}</title></circle>`);
    }
    const ly = m.t + 10 + i * 20;
    out.push(`<line x1="${m.l + pw + 14}" x2="${m.l + pw + 34}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`);
    out.push(`<text x="${m.l + pw + 40}" y="${ly + 4}">${escapeXml(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

export interface Bar { lane: string; startMs: number; durMs: number; kind: 'compute' | 'cloud' | 'send'; label: string }
export interface Panel { title: string; bars: Bar[] }

/** Gantt-style timeline: one row per device (plus the network), one panel per pass. */
export function timelineChart(o: { title: string; panels: Panel[]; width?: number }): string {
  const W = o.width ?? 960;
  const m = { l: 130, r: 30 };
  const pw = W - m.l - m.r;
  const rowH = 18, gap = 46;
  const out: string[] = [];
  let y = 40;
  const body: string[] = [];
  const colors = { compute: '#2ca02c', cloud: '#9467bd', send: '#aaaaaa' };
  for (const p of o.panels) {
    const lanes = [...new Set(p.bars.filter((b) => b.lane !== 'network').map((b) => b.lane)), 'network'];
    const total = p.bars.reduce((s, b) => Math.max(s, b.startMs + b.durMs), 0) || 1;
    body.push(`<text x="${m.l}" y="${y}" font-size="13">${escapeXml(`${p.title} — ${total >= 1000 ? `${(total / 1000).toFixed(2)} s` : `${fmt(total)} ms`}`)}</text>`);
    y += 8;
    lanes.forEach((lane, i) => {
      const ly = y + i * rowH;
      body.push(`<rect x="${m.l}" y="${ly}" width="${pw}" height="${rowH - 2}" fill="${i % 2 ? '#fafafa' : '#f2f2f2'}"/>`);
      body.push(`<text x="${m.l - 6}" y="${ly + rowH - 6}" text-anchor="end">${escapeXml(lane)}</text>`);
    });
    for (const b of p.bars) {
      const li = lanes.indexOf(b.lane);
      const x = m.l + (b.startMs / total) * pw;
      const w = Math.max(0.5, (b.durMs / total) * pw);
      body.push(`<rect x="${x.toFixed(2)}" y="${y + li * rowH + 1}" width="${w.toFixed(2)}" height="${rowH - 4}" fill="${colors[b.kind]}"><title>${escapeXml(`${b.label}: ${fmt(b.durMs)} ms at ${fmt(b.startMs)} ms`)}</title></rect>`);
    }
    y += lanes.length * rowH + gap;
  }
  const H = y;
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="15">${escapeXml(o.title)}</text>`);
  const lx = W - 330;
  for (const [i, [k, c]] of Object.entries(colors).entries()) {
    out.push(`<rect x="${lx + i * 105}" y="28" width="12" height="10" fill="${c}"/><text x="${lx + i * 105 + 16}" y="37">${k === 'compute' ? 'trusted compute' : k === 'cloud' ? 'cloud compute' : 'network'}</text>`);
  }
  out.push(...body, '</svg>');
  return out.join('\n');
}
