import type { LoadedModel } from '../../runtime/model/index.ts';
import { StageRunner } from '../../runtime/engine/stage-runner.ts';
import { SubLayerOps } from '../../runtime/engine/sublayer-ops.ts';
import type { Transcript } from '../../runtime/scx/transcript.ts';

/** Plaintext the audit compares with: residual entering each layer and its input RMSNorm, from a local run. */
export async function plaintextStates(model: LoadedModel, ids: number[]): Promise<{ residual: Map<number, Float32Array>; normed: Map<number, Float32Array> }> {
  const c = model.config;
  const residual = new Map<number, Float32Array>(), normed = new Map<number, Float32Array>();
  const ops = new SubLayerOps(c, model.weights);
  let hs: Float32Array | undefined;
  for (let l = 0; l < c.numLayers; l++) {
    const st = await StageRunner.create(c, model.weights, { embed: l === 0, start: l, end: l + 1, head: false });
    st.openSession('p');
    if (l > 0) { residual.set(l, hs!); normed.set(l, await ops.attnNorm(l, hs!)); }
    hs = (await st.forward('p', l === 0 ? { ids } : { hidden: hs })).hidden!;
    await st.release();
  }
  await ops.release();
  return { residual, normed };
}

function rowsOf(x: Float32Array | Int32Array, w: number): Float32Array[] {
  return Array.from({ length: x.length / w }, (_, i) => Float32Array.from(x.subarray(i * w, (i + 1) * w)));
}

/**
 * The wire audit of SCX.md on one session's transcript. Returns the violations found (empty = pass):
 * token ids or logits on the wire, integers other than the cloud layers' sigma/tau, tensors of head or
 * tail layers, rows within 1e-3 of an embedding row or its RMSNorm, and (scx) P1/P3 row sets in true order.
 */
export async function auditTranscript(tx: Transcript, model: LoadedModel, opts: { h: number; t: number; promptIds: number[]; mode: 'split' | 'scx' }): Promise<string[]> {
  const c = model.config, d = c.hiddenSize, L = c.numLayers, N = opts.promptIds.length;
  const v: string[] = [];
  for (const e of tx.entries) {
    const where = `${e.stage}/${e.crossing}/${e.name}@${e.layer}`;
    if (!(e.data instanceof Float32Array) && !(e.stage === 'keyshare' && ['sigma', 'tau'].includes(e.name))) v.push(`${where}: integer tensor on the wire`);
    if (e.shape[e.shape.length - 1] === c.vocabSize) v.push(`${where}: vocabulary-sized tensor (logits?)`);
    if (['ids', 'logits', 'tokens'].includes(e.name)) v.push(`${where}: named ${e.name}`);
    if (e.layer < opts.h || e.layer >= L - opts.t) v.push(`${where}: tensor of a trusted layer`);
  }
  const E = rowsOf(model.weights.get('model.embed_tokens.weight'), d);
  const En = E.map((r) => { const s = Math.sqrt(r.reduce((a, x) => a + x * x, 0) / d + c.rmsNormEps); return r.map((x) => x / s); });
  for (const e of tx.entries) {
    if (!(e.data instanceof Float32Array) || e.shape[e.shape.length - 1] !== d) continue;
    for (const row of rowsOf(e.data, d)) {
      for (let i = 0; i < E.length; i++) {
        let a = true, b = true;
        for (let j = 0; j < d && (a || b); j++) {
          if (Math.abs(row[j] - E[i][j]) > 1e-3) a = false;
          if (Math.abs(row[j] - En[i][j]) > 1e-3) b = false;
        }
        if (a || b) { v.push(`${e.stage}/${e.crossing}/${e.name}@${e.layer}: a row within 1e-3 of embedding row ${i}`); break; }
      }
    }
  }
  if (opts.mode === 'scx') {
    const plain = await plaintextStates(model, opts.promptIds);
    const identity = Array.from({ length: N }, (_, i) => i);
    const order = (got: Float32Array, truth: Float32Array[]) => rowsOf(got, d).map((r) => {
      let best = -1, bd = Infinity;
      truth.forEach((t2, i) => { let s = 0; for (let j = 0; j < d; j++) s += Math.abs(r[j] - t2[j]); if (s < bd) { bd = s; best = i; } });
      return best;
    });
    for (let l = opts.h; l < L - opts.t; l++) {
      const p1 = tx.entries.find((e) => e.crossing === 'P1' && e.layer === l && e.direction === 'received');
      const p3 = tx.entries.find((e) => e.crossing === 'P3' && e.layer === l && e.direction === 'received' && e.name === 'h');
      if (!p1 || !p3) { v.push(`layer ${l}: P1 or P3 missing from the transcript`); continue; }
      if (N > 1 && order(p1.data as Float32Array, rowsOf(plain.normed.get(l)!, d)).slice(0, N).join() === identity.join()) v.push(`layer ${l}: P1 rows in true order`);
      if (N > 1 && order(p3.data as Float32Array, rowsOf(plain.residual.get(l)!, d)).join() === identity.join()) v.push(`layer ${l}: P3 rows in true order`);
    }
  }
  return v;
}
