import type { Mode, PlanStageView, PlanView } from '../../shared/bridge.ts';
import { formatMs, h, replaceChildren } from '../dom.ts';
import type { Page } from '../page.ts';
import { card, errorNotice, loading, modePicker } from '../ui.ts';

const ROLE_TEXT: Record<string, string> = {
  embed: 'Embedding',
  head: 'Head layers',
  cloud: 'Cloud layers',
  tail: 'Tail layers',
  lm_head: 'Final norm + LM head',
  sample: 'Sampling',
};

function isCloud(s: PlanStageView): boolean {
  return s.role === 'cloud';
}

/** "0-3" -> [0, 3] (inclusive, as the API prints spans); anything else -> null. */
export function parseSpan(text: string): [number, number] | null {
  const m = /^\s*(\d+)\s*(?:[-–]\s*(\d+))?\s*$/.exec(text);
  if (!m) return null;
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  return b >= a ? [a, b] : null;
}

function layerBar(stages: PlanStageView[]): HTMLElement | null {
  const spans = stages.map((s) => ({ s, span: parseSpan(s.layers) })).filter((x) => x.span !== null) as { s: PlanStageView; span: [number, number] }[];
  if (spans.length === 0) return null;
  const total = Math.max(...spans.map((x) => x.span[1])) + 1;
  const bar = h('div', { class: 'layer-bar', role: 'img', 'aria-label': `Layers 0 to ${total - 1}: ${spans.map((x) => `${x.s.layers} on ${x.s.device}`).join(', ')}` });
  for (const { s, span } of spans) {
    const seg = h('div', { class: `layer-seg ${isCloud(s) ? 'seg-cloud' : 'seg-trusted'}`, title: `${s.device}: layers ${s.layers}` }, h('span', null, s.layers));
    // Widths via CSSOM (allowed under the page's CSP, unlike style attributes).
    seg.style.flexGrow = String(span[1] - span[0] + 1);
    bar.append(seg);
  }
  return h('div', null, bar, h('div', { class: 'legend' }, h('span', { class: 'key key-trusted' }, 'your devices'), h('span', { class: 'key key-cloud' }, 'cloud peer')));
}

function stageCard(s: PlanStageView, i: number): HTMLElement {
  return h(
    'li',
    { class: `stage ${isCloud(s) ? 'stage-cloud' : 'stage-trusted'}` },
    h('p', { class: 'stage-step' }, `Step ${i + 1}`),
    h('p', { class: 'stage-role' }, ROLE_TEXT[s.role] ?? s.role),
    h('p', { class: 'stage-device' }, s.device),
    h('p', { class: 'stage-layers' }, /^\d/.test(s.layers) ? `layers ${s.layers}` : s.layers),
    h(
      'dl',
      { class: 'stage-times' },
      h('dt', null, 'predicted'),
      h('dd', null, formatMs(s.predictedMs)),
      h('dt', null, 'measured'),
      h('dd', null, s.measuredMs === undefined ? 'not yet' : formatMs(s.measuredMs)),
    ),
  );
}

function planView(p: PlanView): HTMLElement {
  const measured = p.stages.every((s) => s.measuredMs !== undefined) && p.stages.length > 0 ? p.stages.reduce((a, s) => a + (s.measuredMs ?? 0), 0) : null;
  const predictedSum = p.stages.some((s) => s.predictedMs !== undefined) ? p.stages.reduce((a, s) => a + (s.predictedMs ?? 0), 0) : null;
  return h(
    'div',
    { class: 'stack' },
    h(
      'dl',
      { class: 'metrics' },
      h('div', null, h('dt', null, 'First token (predicted)'), h('dd', null, formatMs(p.predicted.ttftMs))),
      h('div', null, h('dt', null, 'Per token (predicted)'), h('dd', null, formatMs(p.predicted.perTokenMs))),
      h('div', null, h('dt', null, 'Stages, sum predicted'), h('dd', null, formatMs(predictedSum))),
      h('div', null, h('dt', null, 'Stages, sum measured'), h('dd', null, measured === null ? 'not yet' : formatMs(measured))),
    ),
    layerBar(p.stages),
    h('ol', { class: 'pipeline', 'aria-label': 'Pipeline, in the order a token passes through it' }, ...p.stages.map(stageCard)),
  );
}

export const planPage: Page = {
  id: 'plan',
  title: 'Plan',
  lead: 'Who runs which layers for the next request, how long the scheduler expects each step to take, what it measured, and why it chose this placement.',
  render(root, ctx) {
    let mode: Mode = 'scx';
    const body = h('div', null, loading());
    const why = h('div', null);
    const load = async () => {
      try {
        const p = await ctx.bridge.plan(mode);
        replaceChildren(body, planView(p));
        replaceChildren(why, p.why.length ? h('ul', { class: 'why' }, ...p.why.map((w) => h('li', null, w))) : h('p', { class: 'muted' }, 'The scheduler gave no reasons.'));
      } catch (e) {
        replaceChildren(body, errorNotice(e, `No ${mode} plan`));
        replaceChildren(why);
      }
    };
    root.append(
      card('Pipeline', modePicker('plan-mode', mode, (m) => {
        mode = m;
        void load();
      }, 'Plan for mode'), body),
      card('Why this plan', why),
    );
    void load();
    ctx.onEvents(['plan.', 'device.', 'cloud.'], () => void load());
  },
};
