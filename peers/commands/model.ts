import type { Command } from 'commander';
import { intArg } from './util.ts';

export function registerModelCommands(program: Command): void {
  const model = program.command('model').description('model files: make test models, inspect a model');
  model.command('tiny')
    .description('write a deterministic, randomly initialised Hugging Face model directory (for tests)')
    .requiredOption('--out <dir>', 'output directory')
    .option('--seed <n>', 'PRNG seed', intArg('seed'), 1)
    .option('--arch <arch>', 'llama or qwen2', 'llama')
    .option('--layers <n>', 'decoder layers', intArg('layers', 1, 256))
    .option('--hidden <n>', 'hidden size', intArg('hidden', 2, 65536))
    .option('--heads <n>', 'attention heads', intArg('heads', 1, 1024))
    .option('--kv-heads <n>', 'key/value heads', intArg('kv-heads', 1, 1024))
    .option('--ffn <n>', 'MLP intermediate size', intArg('ffn', 1, 1 << 20))
    .option('--vocab <n>', 'vocabulary size (>= 259)', intArg('vocab', 259, 1 << 20))
    .option('--tie', 'tie the LM head to the embedding')
    .option('--no-tie', 'separate lm_head.weight')
    .option('--dtype <dtype>', 'f32, f16 or bf16', 'f32')
    .action(async (o) => {
      const { writeTinyModel } = await import('../../runtime/model/tiny.ts');
      const { loadModel } = await import('../../runtime/model/index.ts');
      if (!['llama', 'qwen2'].includes(o.arch)) throw new Error(`--arch must be llama or qwen2`);
      if (!['f32', 'f16', 'bf16'].includes(o.dtype)) throw new Error(`--dtype must be f32, f16 or bf16`);
      writeTinyModel(o.out, {
        seed: o.seed, arch: o.arch, layers: o.layers, hidden: o.hidden, heads: o.heads, kvHeads: o.kvHeads,
        ffn: o.ffn, vocab: o.vocab, tie: o.tie, dtype: o.dtype,
      });
      const m = loadModel(o.out);
      const params = m.manifest.embedding.params + m.manifest.layers.reduce((a, l) => a + l.params, 0) + m.manifest.head.params;
      console.log(`wrote ${o.out}: ${m.config.arch}, ${m.config.numLayers} layers, d=${m.config.hiddenSize}, ${m.config.numHeads}/${m.config.numKvHeads} heads, vocab ${m.config.vocabSize}, ~${params} parameters`);
    });
  model.command('info')
    .description('show a model directory: architecture, sizes, manifest')
    .option('--model <dir>', 'model directory (default: the embedded debprose-7m)')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const { loadModel } = await import('../../runtime/model/index.ts');
      const m = loadModel(o.model);
      if (o.json) { console.log(JSON.stringify({ config: m.config, manifest: m.manifest }, null, 2)); return; }
      console.log(`${m.name}: ${m.config.arch}, ${m.config.numLayers} layers, d=${m.config.hiddenSize}, heads ${m.config.numHeads}/${m.config.numKvHeads} (hd ${m.config.headDim}), ffn ${m.config.intermediateSize}, vocab ${m.config.vocabSize}, tied ${m.config.tieWordEmbeddings}`);
      console.log(`per layer: ${(m.manifest.layers[0].bytes / 1e6).toFixed(2)} MB fp32, ${(m.manifest.layers[0].flopsPerToken / 1e6).toFixed(2)} MFLOP/token`);
    });
}
