import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { writeTinyModel } from '../runtime/model/tiny.ts';
import type { PrivacyReport } from '../runtime/api/types.ts';

/**
 * `hush attack` as a user runs it: the real CLI entry (peers/bin/hush.js) in a child process, on a
 * tiny random model directory, real in-process sessions, JSON on stdout.
 */
const run = promisify(execFile);
const HUSH = resolve(import.meta.dirname, '..', 'peers', 'bin', 'hush.js');
let dir: string;
let modelDir: string;

async function hush(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [HUSH, ...args], { timeout: 90_000, maxBuffer: 64 << 20 });
    return { stdout, stderr, code: 0 };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: number };
    return { stdout: err.stdout ?? '', stderr: err.stderr ?? '', code: typeof err.code === 'number' ? err.code : -1 };
  }
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hush-attack-cli-'));
  modelDir = join(dir, 'tiny');
  writeTinyModel(modelDir, { seed: 3 });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('hush attack', () => {
  it('--mode split --limit 2 --json: real sessions, A3 recovers the prompts, logits exact', async () => {
    const { stdout, stderr, code } = await hush(['attack', '--model', modelDir, '--mode', 'split', '--limit', '2', '--json']);
    expect(code, stderr).toBe(0);
    const out = JSON.parse(stdout);
    expect(out.setting.mode).toBe('split');
    expect(out.prompts).toBe(2);
    expect(out.cloud.tensors).toBeGreaterThan(0);
    const a3 = out.lines.find((l: { attack: string; observable: string; metric: string }) => l.attack === 'A3' && l.observable === 'S h in' && l.metric === 'positional-accuracy');
    expect(a3.value).toBeGreaterThanOrEqual(0.9);
    expect(a3.atChance).toBe(false);
    expect(a3.candidateForwards).toBeGreaterThan(0);
    expect(out.confidential).toBe(false);
    expect(out.utility.greedyMatch).toBe(true);
    expect(out.utility.maxAbsLogitError).toBeLessThan(1e-4);
    expect(out.report.mode).toBe('split');
  });

  it('--table writes a PrivacyReport (the file the daemon serves) and its Markdown', async () => {
    const prompts = join(dir, 'prompts.txt');
    writeFileSync(prompts, 'The river runs slowly past the old mill\nPeople in the town say that\n');
    const outFile = join(dir, 'privacy.json');
    const { stdout, stderr, code } = await hush(['attack', '--model', modelDir, '--table', '--prompts', prompts, '--generate', '2', '--scales', '10', '--out', outFile]);
    expect(code, stderr).toBe(0);
    const report = JSON.parse(readFileSync(outFile, 'utf8')) as PrivacyReport;
    expect(report.model).toBe('tiny');
    expect(Number.isNaN(Date.parse(report.generatedAt))).toBe(false);
    expect(report.confidential).toEqual({ local: true, split: false, scx: false });
    const modes = new Set(report.rows.map((r) => r.mode));
    expect(modes).toEqual(new Set(['local', 'split', 'scx']));
    for (const r of report.rows) {
      expect(r.value).toBeGreaterThanOrEqual(0);
      expect(r.value).toBeLessThanOrEqual(1);
      expect(typeof r.metric).toBe('string');
    }
    // scx without noise, and with shared and row noise at the one scale asked for (10x the P1 RMS).
    const scx = [...new Set(report.rows.filter((r) => r.mode === 'scx').map((r) => (r as unknown as { setting: string }).setting))];
    expect(scx).toHaveLength(3);
    expect(scx.filter((s) => s.includes('(10x RMS)'))).toHaveLength(2);
    const md = readFileSync(join(dir, 'privacy.md'), 'utf8');
    expect(md).toContain('confidential only when every attack');
    expect(md).toContain('| A3 vocabulary matching');
    expect(stdout).toContain('# Privacy table: tiny');
  });

  it('refuses a run without --mode or --table', async () => {
    const { stderr, code } = await hush(['attack', '--model', modelDir, '--limit', '1']);
    expect(code).not.toBe(0);
    expect(stderr).toContain('--mode must be local, split or scx');
  });
});
