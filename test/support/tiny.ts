import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTinyModel, type TinyModelOptions } from '../../runtime/model/tiny.ts';
import { loadModel, type LoadedModel } from '../../runtime/model/index.ts';

const dirs: string[] = [];

/** Write a tiny random model to a temp dir and load it; removed by cleanupTinyModels(). */
export function tinyModel(opts: TinyModelOptions = {}): LoadedModel {
  const dir = mkdtempSync(join(tmpdir(), 'hush-tiny-'));
  dirs.push(dir);
  writeTinyModel(dir, opts);
  return loadModel(dir);
}

export function cleanupTinyModels(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}
