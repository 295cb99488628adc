import { InvalidArgumentError, type Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { loadModel } from '../../runtime/model/index.ts';
import { loadAttackPrompts, ATTACK_PROMPTS_FILE } from '../../simulations/attacks/prompts.ts';
import { formatReportTable } from '../../simulations/attacks/index.ts';
import { defaultForwardBudget, fmtNum, formatSettingResult, measureSetting, p1Rms, round2, type AttackMode, type AttackSetting } from '../../simulations/attacks/measure.ts';
import { buildPrivacyTable, DEFAULT_RELATIVE_SCALES, writePrivacyTable } from '../../simulations/attacks/privacy-table.ts';
import { PRIVACY_REPORT_FILE } from '../daemon/privacy-file.ts';
import { intArg } from './util.ts';

/** Prompts a run attacks by default; the table uses TABLE_PROMPTS (SCX.md asks for real sessions on unfiltered prompts). */
const DEFAULT_PROMPTS = 4;
const TABLE_PROMPTS = 12;

/** `--noise-scale 0.5` (absolute Laplace b) or `--noise-scale 1x` (b = 1 x the RMS of the P1 rows at the first cloud layer). */
export function noiseScaleArg(v: string): { absolute: number } | { relative: number } {
  const m = /^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(x?)\s*$/i.exec(v);
  const n = m ? Number(m[1]) : NaN;
  if (!m || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('noise-scale must be a number >= 0 (absolute b) or a multiple of the P1 RMS such as 1x');
  return m[2] ? { relative: n } : { absolute: n };
}

function decoysArg(v: string): number | 'N' {
  return v === 'N' ? 'N' : intArg('decoys', 0, 4096)(v);
}

function scalesArg(v: string): number[] {
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (xs.length === 0 || xs.length > 8 || xs.some((x) => !Number.isFinite(x) || x <= 0)) throw new InvalidArgumentError('scales must be 1 to 8 comma-separated positive numbers (multiples of the P1 RMS)');
  return xs;
}

export function registerAttackCommands(program: Command): void {
  program.command('attack')
    .description('what a cloud peer recovers from what it saw: real in-process sessions with capture, every attack of the harness, utility cost')
    .option('--model <dir>', 'Hugging Face model directory (default: the embedded debprose-7m)')
    .option('--mode <mode>', 'local, split or scx (required unless --table)')
    .option('--noise <kind>', 'scx noise: none, shared or rows', 'none')
    .option('--noise-scale <b>', "Laplace scale b of the scx noise: a number, or a multiple of the P1 rows' RMS such as 1x", noiseScaleArg)
    .option('--decoys <r>', "decoy rows per scx P1 crossing (a number or 'N')", decoysArg, 4)
    .option('--head-layers <h>', 'layers kept on trusted devices before the cloud', intArg('head-layers', 1), 1)
    .option('--tail-layers <t>', 'layers kept on trusted devices after the cloud', intArg('tail-layers', 1), 1)
    .option('--prompts <file>', 'prompt file, one prompt per line (default: data/prompts/attack-prompts.txt)')
    .option('--limit <n>', `use the first n prompts (default ${DEFAULT_PROMPTS}; ${TABLE_PROMPTS} with --table)`, intArg('limit', 1, 10000))
    .option('--generate <g>', 'tokens generated per prompt (1 = the prefill only)', intArg('generate', 1, 256), 4)
    .option('--layers <which>', 'cloud layers A1/A2/A3/A6 attack: first or all', 'first')
    .option('--max-forwards <n>', 'candidate-forward budget of each vocabulary-matching run, 0 = none (default: the compute of 4096 on debprose-7m, at least one vocabulary)', intArg('max-forwards', 0))
    .option('--json', 'print the result as JSON instead of tables')
    .option('--out <file>', 'write the JSON result to FILE (with --table: the privacy JSON; default docs/privacy.json, and the .md next to it)')
    .option('--details', "also print the harness's per-variant table")
    .option('--verbose', 'progress of the attacks on stderr')
    .option('--table', 'the privacy table: local, split, scx with noise none/shared/rows at --scales; writes privacy.json and privacy.md')
    .option('--scales <list>', 'noise scales of --table as multiples of the P1 RMS', scalesArg, [...DEFAULT_RELATIVE_SCALES])
    .action(async (o) => {
      if (!['first', 'all'].includes(o.layers)) throw new InvalidArgumentError('--layers must be first or all');
      const model = loadModel(o.model);
      const file = o.prompts ?? ATTACK_PROMPTS_FILE;
      const texts = loadAttackPrompts(file);
      const limit: number = o.limit ?? (o.table ? TABLE_PROMPTS : DEFAULT_PROMPTS);
      if (texts.length === 0) throw new InvalidArgumentError(`no prompts in ${file}`);
      const prompts = texts.slice(0, limit).map((p) => model.tokenizer.encode(p));
      const budget: number = o.maxForwards ?? defaultForwardBudget(model.config);
      const maxCandidateForwards = budget === 0 ? undefined : budget;
      const progress = (m: string) => process.stderr.write(`${m}\n`);

      if (o.table) {
        if (o.model && !o.out) throw new InvalidArgumentError(`--table with --model needs --out: ${PRIVACY_REPORT_FILE} is the embedded model's table`);
        const table = await buildPrivacyTable(model, {
          prompts, promptSource: file, generate: o.generate, h: o.headLayers, t: o.tailLayers, decoys: o.decoys,
          relativeScales: o.scales, maxCandidateForwards: budget === 0 ? Infinity : budget, onProgress: progress,
        });
        const files = writePrivacyTable(table, o.out ?? PRIVACY_REPORT_FILE);
        if (o.json) console.log(JSON.stringify(table.report));
        else console.log(table.markdown);
        progress(`wrote ${files.json} and ${files.md} in ${(table.seconds / 60).toFixed(1)} min`);
        return;
      }

      if (!['local', 'split', 'scx'].includes(o.mode)) throw new InvalidArgumentError('--mode must be local, split or scx (or give --table)');
      if (!['none', 'shared', 'rows'].includes(o.noise)) throw new InvalidArgumentError('--noise must be none, shared or rows');
      const mode = o.mode as AttackMode;
      const scale: { absolute: number } | { relative: number } = o.noiseScale ?? { absolute: 0 };
      let noiseScale = 'absolute' in scale ? scale.absolute : 0;
      let noiseRelative: number | undefined;
      let rms: number | undefined;
      if (mode === 'scx' && 'relative' in scale) {
        rms = p1Rms(model, prompts, o.headLayers);
        noiseRelative = scale.relative;
        noiseScale = round2(noiseRelative * rms);
      }
      const setting: AttackSetting = { mode, h: o.headLayers, t: o.tailLayers, noise: o.noise, noiseScale, decoys: o.decoys, noiseRelative };
      const result = await measureSetting(model, prompts, setting, {
        generate: o.generate,
        attack: { layers: o.layers, maxCandidateForwards, onProgress: o.verbose ? progress : undefined },
      });
      const json = { ...result, p1Rms: rms ?? null, promptFile: file, layers: o.layers, maxCandidateForwards: maxCandidateForwards ?? null };
      if (o.out) writeFileSync(o.out, JSON.stringify(json, null, 1) + '\n');
      if (o.json) { console.log(JSON.stringify(json)); return; }
      console.log(formatSettingResult(result));
      if (rms !== undefined) console.log(`noise scale: ${fmtNum(noiseRelative!)} x P1 RMS ${fmtNum(rms)} = b ${fmtNum(noiseScale)}`);
      if (o.details && result.report) console.log('\n' + formatReportTable(result.report));
      if (o.out) progress(`wrote ${o.out}`);
    });
}
