import type { LastSession, LastSessionCrossing } from '../../shared/bridge.ts';
import { absoluteTime, formatBytes, h, replaceChildren } from '../dom.ts';
import type { Page } from '../page.ts';
import { card, errorNotice, loading } from '../ui.ts';

export const CROSSING_TEXT: Record<string, string> = {
  P1: 'prefill: normed rows, permuted, noised, with decoys (to the cloud) and their q/k/v projection (back)',
  P2: 'prefill: head-permuted Q, K, V (to the cloud) and the attention output (back); K and V stay as the cloud’s cache',
  P3: 'prefill: attention output and residual, re-permuted (to the cloud) and the layer output (back)',
  K: 'key sharing: the head permutations of the cloud layers, after prefill',
  D: 'generation: one hidden vector per token each way',
  S: 'split prefill: plain boundary hidden states',
};

const FULL_LIST_MAX = 1000;

interface Group {
  stage: string;
  crossing: string;
  direction: string;
  count: number;
  layers: Set<number>;
  shapes: Set<string>;
  bytes: number;
}

export function groupCrossings(crossings: LastSessionCrossing[]): Group[] {
  const groups = new Map<string, Group>();
  for (const c of crossings) {
    const key = `${c.stage}|${c.crossing}|${c.direction}`;
    let g = groups.get(key);
    if (!g) {
      g = { stage: c.stage, crossing: c.crossing, direction: c.direction, count: 0, layers: new Set(), shapes: new Set(), bytes: 0 };
      groups.set(key, g);
    }
    g.count++;
    g.layers.add(c.layer);
    g.shapes.add(c.shape.join('×'));
    g.bytes += c.bytes;
  }
  return [...groups.values()];
}

function layerRange(s: Set<number>): string {
  const v = [...s].sort((a, b) => a - b);
  if (v.length === 0) return '—';
  return v.length === 1 ? String(v[0]) : `${v[0]}–${v[v.length - 1]}`;
}

function summary(s: LastSession): HTMLElement {
  const by = (dir: string) => s.crossings.filter((c) => c.direction === dir).reduce((a, c) => a + c.bytes, 0);
  return h(
    'dl',
    { class: 'metrics' },
    h('div', null, h('dt', null, 'Mode'), h('dd', null, s.mode)),
    h('div', null, h('dt', null, 'Crossings'), h('dd', null, String(s.crossings.length))),
    h('div', null, h('dt', null, 'Cloud received'), h('dd', null, formatBytes(by('received')))),
    h('div', null, h('dt', null, 'Cloud returned'), h('dd', null, formatBytes(by('returned')))),
    h('div', null, h('dt', null, 'Cloud kept (KV cache)'), h('dd', null, formatBytes(by('stored')))),
    h('div', null, h('dt', null, 'Total'), h('dd', null, formatBytes(s.totalBytes))),
  );
}

function view(s: LastSession): HTMLElement {
  const groups = groupCrossings(s.crossings);
  const meta = [s.model && `model ${s.model}`, s.sessionId && `session ${s.sessionId}`, s.startedAt && `started ${absoluteTime(s.startedAt)}`].filter(Boolean).join(' · ');
  return h(
    'div',
    { class: 'stack' },
    meta ? h('p', { class: 'muted' }, meta) : null,
    summary(s),
    s.crossings.length === 0
      ? h('p', { class: 'empty' }, s.mode === 'local' ? 'Local mode: nothing crossed to a cloud peer.' : 'No crossings were recorded.')
      : h('div', { class: 'table-wrap' }, h(
          'table',
          { class: 'table' },
          h('caption', null, 'Everything the cloud saw, grouped by crossing'),
          h('thead', null, h('tr', null, ...['Stage', 'Crossing', 'Direction', 'Count', 'Layers', 'Shapes', 'Bytes'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', null, ...groups.map((g) => h('tr', null,
            h('th', { scope: 'row' }, g.stage),
            h('td', null, h('abbr', { title: CROSSING_TEXT[g.crossing] ?? g.crossing }, g.crossing)),
            h('td', null, g.direction),
            h('td', { class: 'num' }, String(g.count)),
            h('td', { class: 'num' }, layerRange(g.layers)),
            h('td', null, h('code', null, [...g.shapes].slice(0, 3).join(', ') + (g.shapes.size > 3 ? ` +${g.shapes.size - 3}` : ''))),
            h('td', { class: 'num' }, formatBytes(g.bytes)),
          ))),
        )),
    s.crossings.length > 0
      ? h('details', { class: 'all-crossings' },
          h('summary', null, `Every crossing, in order (${s.crossings.length}${s.crossings.length > FULL_LIST_MAX ? `, first ${FULL_LIST_MAX} shown` : ''})`),
          h('div', { class: 'table-wrap' }, h(
            'table',
            { class: 'table table-compact' },
            h('thead', null, h('tr', null, ...['#', 'Stage', 'Layer', 'Crossing', 'Direction', 'Shape', 'Bytes'].map((c) => h('th', { scope: 'col' }, c)))),
            h('tbody', null, ...s.crossings.slice(0, FULL_LIST_MAX).map((c, i) => h('tr', null,
              h('td', { class: 'num' }, String(i + 1)),
              h('td', null, c.stage),
              h('td', { class: 'num' }, String(c.layer)),
              h('td', null, c.crossing),
              h('td', null, c.direction),
              h('td', null, h('code', null, c.shape.join('×'))),
              h('td', { class: 'num' }, formatBytes(c.bytes)),
            ))),
          )),
        )
      : null,
    h('details', null,
      h('summary', null, 'What the crossing names mean'),
      h('dl', { class: 'glossary' }, ...Object.entries(CROSSING_TEXT).flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
    ),
  );
}

export const sessionPage: Page = {
  id: 'session',
  title: 'Last session',
  lead: 'Exactly what the cloud peer received, sent back and kept during the last request: every crossing, its shape and its size. Never token ids, logits or keys of the edge layers.',
  render(root, ctx) {
    const body = h('div', null, loading());
    const load = async () => {
      try {
        const s = await ctx.bridge.lastSession();
        replaceChildren(body, s ? view(s) : h('p', { class: 'empty' }, 'No request has crossed to a cloud peer yet. Ask something in Chat with split or scx mode.'));
      } catch (e) {
        replaceChildren(body, errorNotice(e, 'Could not read the last session'));
      }
    };
    root.append(card('What the cloud saw', body));
    void load();
    ctx.onEvents(['session.end'], () => void load());
  },
};
