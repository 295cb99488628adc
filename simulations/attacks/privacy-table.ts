import '../../runtime/polyfill.ts';
import { cpus } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { LoadedModel } from '../../runtime/model/index.ts';
import type { PrivacyReport, PrivacyRow } from '../../runtime/api/types.ts';
import {
  ATTACK_TITLES, CHANCE_TEST_LEVEL, defaultForwardBudget, fmtNum, markdownTable, measureSetting, p1Rms, pct, plaintextReference, round2,
  type AttackMode, type AttackSetting, type PrivacyLine, type SettingResult,
} from './measure.ts';
import { PROMPT_RULE } from './prompts.ts';

/**
 * The README's privacy table for one model: every attack of the harness on real in-process sessions
 * in each mode and scx noise setting, next to its chance level, plus each setting's utility cost.
 * Written as docs/privacy.json (runtime/api/types.ts PrivacyReport; the device daemon serves it on
 * GET /api/v1/privacy, the desktop app shows it) and docs/privacy.md (the Markdown table).
 *
 *   npx tsx simulations/attacks/privacy-table.ts [--limit 12] [--out docs/privacy.json]
 *   hush attack --table            (the same, from the CLI)
 */

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface PrivacyTableOptions {
  /** Prompt token ids (BOS first), already limited. */
  prompts: number[][];
  /** Where the prompts came from (recorded in details). */
  promptSource?: string;
  generate: number;
  h: number;
  t: number;
  decoys: number | 'N';
  /** Noise scales as multiples of the P1 rows' RMS at the first cloud layer. */
  relativeScales: number[];
  /** Candidate-forward budget of every A3-engine run (vocabulary matching); default defaultForwardBudget(model). */
  maxCandidateForwards?: number;
  onProgress?: (message: string) => void;
}

export const DEFAULT_RELATIVE_SCALES = [0.1, 1, 10] as const;

/** A row of docs/privacy.json: PrivacyRow plus which setting of the mode and which variant it is. */
export interface PrivacyTableRow extends PrivacyRow {
  setting: string;
  variant: string;
  observable: string;
  correct: number;
  total: number;
  atChance: boolean;
}

export interface PrivacyTable {
  report: PrivacyReport;
  markdown: string;
  results: SettingResult[];
  seconds: number;
}

export const CONFIDENTIAL_RULE =
  `A setting is called confidential only when every attack of the harness is at chance level on it: for every attack, observable, layer and metric, ` +
  `every variant's recovered count is at most its chance level or not significantly above it (one-sided binomial test, p >= ${CHANCE_TEST_LEVEL}, ` +
  `null = the chance rate, floored at 1/V for token metrics). A mode is called confidential only when every measured setting of it is. ` +
  `Chance levels: token accuracy and next-token agreement = A0, the model's own greedy text from BOS (a guess that sees nothing); ` +
  `bag recall = A0's bag recall; decoy precision/recall = flagging as many rows as the attack did, uniformly at random; ` +
  `noise-offset recovery, key recovery and key-reuse flags = 0. ` +
  `local is confidential by construction: the cloud receives nothing (checked: its transcript is empty).`;

function settings(o: PrivacyTableOptions, rms: number): AttackSetting[] {
  const base = { h: o.h, t: o.t, decoys: o.decoys };
  const out: AttackSetting[] = [
    { mode: 'local', ...base, noise: 'none', noiseScale: 0 },
    { mode: 'split', ...base, noise: 'none', noiseScale: 0 },
    { mode: 'scx', ...base, noise: 'none', noiseScale: 0 },
  ];
  for (const noise of ['shared', 'rows'] as const) {
    for (const k of o.relativeScales) out.push({ mode: 'scx', ...base, noise, noiseScale: round2(k * rms), noiseRelative: k });
  }
  return out;
}

/** Run every setting and assemble the report. Sequential: the attacks are CPU-bound. */
export async function buildPrivacyTable(model: LoadedModel, o: PrivacyTableOptions): Promise<PrivacyTable> {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const say = o.onProgress ?? (() => {});
  const maxCandidateForwards = o.maxCandidateForwards ?? defaultForwardBudget(model.config);
  const rms = p1Rms(model, o.prompts, o.h);
  const reference = await plaintextReference(model, o.prompts, o.generate);
  say(`P1 RMS at layer ${o.h}: ${fmtNum(rms)}; plaintext reference in ${reference.seconds.toFixed(1)} s`);
  const results: SettingResult[] = [];
  for (const s of settings(o, rms)) {
    const t1 = performance.now();
    const r = await measureSetting(model, o.prompts, s, {
      generate: o.generate, reference,
      attack: { layers: 'first', maxCandidateForwards },
    });
    results.push(r);
    say(`${r.label}: ${((performance.now() - t1) / 1000).toFixed(1)} s, ${r.confidential ? 'at chance' : 'above chance'}, ` +
      `greedy ${r.utility.greedyMatchedPrompts}/${r.utility.prompts}, max abs logit error ${r.utility.maxAbsLogitError.toExponential(2)}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const rows: PrivacyTableRow[] = [];
  for (const r of results) {
    for (const l of r.lines) {
      rows.push({
        mode: r.setting.mode, setting: r.label, attack: l.attack, ...(l.layer === null ? {} : { layer: l.layer }), metric: l.metric, value: l.value,
        chance: l.chance, variant: l.variant, observable: l.observable, correct: l.correct, total: l.total, atChance: l.atChance,
      });
    }
  }
  const modes: AttackMode[] = ['local', 'split', 'scx'];
  const confidential: PrivacyReport['confidential'] = {};
  for (const m of modes) {
    const rs = results.filter((r) => r.setting.mode === m);
    if (rs.length) confidential[m] = rs.every((r) => r.confidential);
  }
  const details = {
    rule: CONFIDENTIAL_RULE,
    prompts: o.prompts.length,
    promptTokens: o.prompts.reduce((a, p) => a + p.length, 0),
    promptSource: o.promptSource ?? null,
    promptRule: PROMPT_RULE,
    generate: o.generate,
    h: o.h, t: o.t, decoys: o.decoys,
    p1Rms: rms,
    noiseScales: o.relativeScales.map((k) => ({ relative: k, b: round2(k * rms) })),
    maxCandidateForwards,
    layers: 'first cloud layer (A1, A2, A3, A6); A7 on every decode vector; A9 across sessions',
    seconds,
    /** CPU time of this process: the wall time on an otherwise idle machine, the attacks being single-threaded. */
    cpuSeconds,
    cpus: cpus().length,
    settings: results.map((r) => ({
      label: r.label, mode: r.setting.mode, noise: r.setting.noise, noiseScale: r.setting.noiseScale, noiseRelative: r.setting.noiseRelative ?? null,
      decoys: r.setting.mode === 'scx' ? r.setting.decoys : 0, confidential: r.confidential, cloud: r.cloud, utility: r.utility, seconds: r.seconds,
      setupCost: r.report?.setupCost ?? {},
    })),
  };
  const report: PrivacyReport = { generatedAt: new Date().toISOString(), model: model.name, rows, confidential, details };
  return { report, markdown: formatPrivacyMarkdown(report, results, details), results, seconds };
}

function cell(l: PrivacyLine | undefined): string {
  if (!l) return '—';
  return l.atChance ? `${pct(l.value)} (chance)` : pct(l.value);
}

/** Column header of a setting: short enough for a README table. */
function shortLabel(r: SettingResult): string {
  const s = r.setting;
  if (s.mode !== 'scx') return s.mode;
  return s.noise === 'none' ? 'scx' : `scx ${s.noise} ${fmtNum(s.noiseRelative ?? s.noiseScale)}${s.noiseRelative !== undefined ? 'x' : ''}`;
}

export function formatPrivacyMarkdown(report: PrivacyReport, results: SettingResult[], details: { prompts: number; promptTokens: number; promptSource: string | null; generate: number; h: number; t: number; decoys: number | 'N'; p1Rms: number; noiseScales: { relative: number; b: number }[]; maxCandidateForwards: number; seconds: number; cpuSeconds: number; cpus: number }): string {
  // One table row per (attack, observable, metric), the strongest variant of each setting in its cell.
  type Key = { attack: PrivacyLine['attack']; observable: string; metric: PrivacyLine['metric'] };
  const keys: Key[] = [];
  const same = (l: Key, k: Key) => l.attack === k.attack && l.observable === k.observable && l.metric === k.metric;
  for (const r of results) {
    if (!r.report) continue;
    for (const l of r.lines) if (!keys.some((k) => same(l, k))) keys.push({ attack: l.attack, observable: l.observable, metric: l.metric });
  }
  const order = ['A1', 'A2', 'A3', 'A6', 'A7', 'A9'];
  keys.sort((a, b) => order.indexOf(a.attack) - order.indexOf(b.attack));
  const pick = (r: SettingResult, k: Key) => {
    const ls = r.lines.filter((l) => same(l, k));
    if (ls.length === 0) return undefined;
    return ls.reduce((a, b) => (b.value > a.value ? b : a));
  };
  const head = ['attack', 'observable', 'metric', ...results.map(shortLabel)];
  const body: string[][] = keys.map((k) => [`${k.attack} ${ATTACK_TITLES[k.attack]}`, k.observable, k.metric, ...results.map((r) => (!r.report ? '0 (nothing seen)' : cell(pick(r, k))))]);
  const a0 = (r: SettingResult, metric: string) => r.report?.summary.find((s) => s.attack === 'A0' && s.metric === metric)?.value ?? null;
  body.push(['A0 prior (chance level)', '', 'positional-accuracy', ...results.map((r) => (r.report ? pct(a0(r, 'positional-accuracy')) : '—'))]);
  body.push(['A0 prior (chance level)', '', 'bag-recall', ...results.map((r) => (r.report ? pct(a0(r, 'bag-recall')) : '—'))]);
  body.push(['utility', '', 'max abs logit error', ...results.map((r) => r.utility.maxAbsLogitError.toExponential(1))]);
  body.push(['utility', '', 'max rel logit error', ...results.map((r) => r.utility.maxRelLogitError.toExponential(1))]);
  body.push(['utility', '', 'greedy tokens match', ...results.map((r) => `${r.utility.greedyMatchedPrompts}/${r.utility.prompts}`)]);
  body.push(['cost', '', 'cloud tensors seen', ...results.map((r) => String(r.cloud.tensors))]);
  body.push(['cost', '', 'attack seconds', ...results.map((r) => r.seconds.attack.toFixed(0))]);
  body.push(['verdict', '', 'confidential', ...results.map((r) => (r.confidential ? '**yes**' : 'no'))]);
  const scales = details.noiseScales.map((s) => `${fmtNum(s.relative)}x = b ${fmtNum(s.b)}`).join(', ');
  const modeVerdict = (['local', 'split', 'scx'] as const).map((m) => `${m}: ${report.confidential[m] ? 'confidential' : 'not confidential'}`).join('; ');
  return [
    `# Privacy table: ${report.model}`,
    '',
    `Generated ${report.generatedAt} by \`hush attack --table\` (simulations/attacks/privacy-table.ts). ` +
      `What a cloud peer recovers from exactly what it saw in real in-process sessions (the runtime's own SCX stack with capture on), ` +
      `attacked with the public weights, tokenizer and config only (SCX.md, "Transcript and attack harness").`,
    '',
    `Setup: the first ${details.prompts} prompts of ${details.promptSource ? relative(REPO_ROOT, details.promptSource) : 'the prompt set'} (${details.promptTokens} tokens with BOS), ` +
      `greedy, ${details.generate} generated tokens each; h=${details.h} head and t=${details.t} tail layers on trusted devices; ` +
      `scx with ${details.decoys} decoy rows per P1 crossing; noise scales b relative to the RMS of the P1 rows at the first cloud layer ` +
      `(${fmtNum(details.p1Rms)}): ${scales} (Laplace scale; its standard deviation is b·√2). ` +
      `A1/A2/A3/A6 attack the first cloud layer; ` +
      (Number.isFinite(details.maxCandidateForwards)
        ? `every vocabulary-matching run (A3 engine) has a budget of ${details.maxCandidateForwards} candidate forwards, after which it tries only the model's top-32 and the row proposals per position. `
        : 'vocabulary matching (A3 engine) has no candidate budget. ') +
      `Each cell is the strongest variant of the attack (per-variant values in privacy.json); "(chance)" marks values at chance level. ` +
      `Full run: ${(details.seconds / 60).toFixed(1)} min wall clock, ${(details.cpuSeconds / 60).toFixed(1)} min CPU (the attacks are single-threaded), on ${details.cpus} CPU cores shared with other jobs.`,
    '',
    markdownTable(head, body),
    '',
    `Verdict per mode: ${modeVerdict}.`,
    '',
    `Rule. ${CONFIDENTIAL_RULE}`,
    '',
    'Reading the table. A3 recovers the prompt left to right by running candidate prefixes through the public model and matching what the cloud saw; ' +
      'min over rows undoes row permutations and sorting undoes head-dim permutations (A2). In scx the P3 residuals and P2 keys/values carry no noise, so ' +
      'noise on P1 alone does not hide the prompt. A9 "key-recovery" reads the head-dim permutations off the BOS row before key sharing (the cloud gets them at key sharing anyway); ' +
      '"reuse-flagged" stays 0 when every session has fresh keys.',
    '',
  ].join('\n');
}

/** Write privacy.json and the Markdown next to it (same name, .md). */
export function writePrivacyTable(table: PrivacyTable, jsonFile: string): { json: string; md: string } {
  mkdirSync(dirname(jsonFile), { recursive: true });
  const md = jsonFile.replace(/\.json$/i, '') + '.md';
  writeFileSync(jsonFile, JSON.stringify(table.report, null, 1) + '\n');
  writeFileSync(md, table.markdown);
  return { json: jsonFile, md };
}

// npx tsx simulations/attacks/privacy-table.ts [--limit 12] [--out docs/privacy.json] [--max-forwards N]
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      limit: { type: 'string', default: '12' },
      generate: { type: 'string', default: '4' },
      decoys: { type: 'string', default: '4' },
      'max-forwards': { type: 'string' },
      out: { type: 'string' },
    },
  });
  const { loadModel } = await import('../../runtime/model/index.ts');
  const { loadAttackPrompts, ATTACK_PROMPTS_FILE } = await import('./prompts.ts');
  const { PRIVACY_REPORT_FILE } = await import('../../peers/daemon/privacy-file.ts');
  const model = loadModel();
  const prompts = loadAttackPrompts().slice(0, Number(values.limit)).map((p) => model.tokenizer.encode(p));
  const table = await buildPrivacyTable(model, {
    prompts, promptSource: ATTACK_PROMPTS_FILE, generate: Number(values.generate), h: 1, t: 1,
    decoys: values.decoys === 'N' ? 'N' : Number(values.decoys), relativeScales: [...DEFAULT_RELATIVE_SCALES],
    maxCandidateForwards: values['max-forwards'] === undefined ? undefined : Number(values['max-forwards']) || Infinity, onProgress: (m) => console.error(m),
  });
  const files = writePrivacyTable(table, values.out ?? PRIVACY_REPORT_FILE);
  console.log(table.markdown);
  console.error(`wrote ${files.json} and ${files.md} in ${(table.seconds / 60).toFixed(1)} min`);
}
