import '../../runtime/polyfill.ts';
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { loadModel } from '../../runtime/model/index.ts';
import { attackerModel } from './forward.ts';
import { buildScxLikeTranscript, buildSplitTranscript } from './synth.ts';
import { recordSessions } from './real.ts';
import { loadAttackPrompts } from './prompts.ts';
import { formatNoiseSweep, formatReportTable, runAttacks, type AttackId, type AttackOptions, type AttackReport } from './index.ts';

/**
 * Developer entry point of the harness:
 *   npx tsx simulations/attacks/cli.ts --source real --mode scx --prompts 4 --noise shared --b 0.5 --decoys 4
 *   npx tsx simulations/attacks/cli.ts --source synthetic --mode split --prompts 4
 * "real" records sessions through the runtime's in-process SCX stack; "synthetic" lays out the
 * attacker's own forward as the cloud would see it (synth.ts). --json FILE writes the report.
 * --sweep 0,0.5,2 repeats the run at each noise scale and ends with the accuracy-vs-noise table.
 */
const { values } = parseArgs({
  options: {
    source: { type: 'string', default: 'real' },
    mode: { type: 'string', default: 'scx' },
    prompts: { type: 'string', default: '4' },
    first: { type: 'string', default: '0' },
    h: { type: 'string', default: '1' },
    t: { type: 'string', default: '1' },
    generate: { type: 'string', default: '6' },
    noise: { type: 'string', default: 'none' },
    b: { type: 'string', default: '0' },
    decoys: { type: 'string', default: '0' },
    layers: { type: 'string', default: 'first' },
    attacks: { type: 'string' },
    a3: { type: 'string' },
    'max-forwards': { type: 'string' },
    json: { type: 'string' },
    sweep: { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});
const lm = loadModel();
const m = attackerModel(lm);
const first = Number(values.first), count = Number(values.prompts);
const prompts = loadAttackPrompts().slice(first, first + count).map((p) => lm.tokenizer.encode(p));
const sessionIds = prompts.map((_, i) => `p${first + i}`);
const h = Number(values.h), t = Number(values.t), generate = Number(values.generate);
const noise = values.noise as 'none' | 'shared' | 'rows';
const decoys = values.decoys === 'N' ? 'N' as const : Number(values.decoys);
const mode = values.mode as 'split' | 'scx';
async function record(b: number) {
  return values.source === 'real'
    ? recordSessions(lm, prompts, { run: { mode, h, t, scx: { noise, noiseScale: b, decoys } }, generate, sessionIds })
    : mode === 'scx'
      ? buildScxLikeTranscript(m, lm.name, prompts.map((promptIds, i) => ({ session: sessionIds[i], promptIds })),
        { h, t, generate, noise, noiseScale: b, decoys: decoys === 'N' ? 0 : decoys })
      : buildSplitTranscript(m, lm.name, prompts.map((promptIds, i) => ({ session: sessionIds[i], promptIds })), { h, t, generate });
}
const layers: AttackOptions['layers'] = values.layers === 'all' ? 'all' : values.layers === 'first' ? 'first' : values.layers.split(',').map(Number);
const attackOpts: AttackOptions = {
  layers,
  attacks: values.attacks ? (values.attacks.split(',') as AttackId[]) : undefined,
  a3Labels: values.a3 ? values.a3.split(',') : undefined,
  maxCandidateForwards: values['max-forwards'] ? Number(values['max-forwards']) : undefined,
  onProgress: values.verbose ? (msg: string) => console.error(msg) : undefined,
};
const reports: AttackReport[] = [];
for (const b of values.sweep ? values.sweep.split(',').map(Number) : [Number(values.b)]) {
  const t0 = performance.now();
  const built = await record(b);
  console.error(`recorded ${prompts.length} ${values.source} session(s) (b=${b}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const report = runAttacks(built.transcript, lm, built.truth, attackOpts);
  reports.push(report);
  console.log(formatReportTable(report));
  for (const [s, text] of Object.entries(report.recoveredText)) console.log(`${s}: ${JSON.stringify(text)}`);
  console.log('');
}
if (values.sweep) console.log('accuracy vs noise scale\n\n' + formatNoiseSweep(reports));
if (values.json) writeFileSync(values.json, JSON.stringify(values.sweep ? reports : reports[0], null, 1));
