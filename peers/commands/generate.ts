import type { Command } from 'commander';
import { floatArg, idsArg, intArg } from './util.ts';
import { DaemonClient } from '../client.ts';

/** `hush generate --via HOME`: the request runs on the daemon's plan; tokens stream back over its API. */
async function generateVia(o: Record<string, any>, mode: string | undefined): Promise<void> {
  const client = DaemonClient.forHome(o.via);
  let text = '';
  for await (const e of client.generate({
    prompt: o.prompt, maxTokens: o.maxTokens, seed: o.seed, ...(mode ? { mode } : {}),
    ...(o.temperature === undefined ? {} : { temperature: o.temperature }), ...(o.topP === undefined ? {} : { topP: o.topP }), ...(o.topK === undefined ? {} : { topK: o.topK }),
  })) {
    if (e.type === 'token') { text += e.text as string; if (!o.json) process.stdout.write(e.text as string); }
    else if (e.type === 'error') throw Object.assign(new Error(String((e as { error?: { message?: string } }).error?.message ?? 'generation failed')), { name: 'GenerationError' });
    else if (e.type === 'done') {
      if (o.json) console.log(JSON.stringify({ text, ...e }));
      else {
        const t = e.timings as Record<string, number>;
        process.stdout.write('\n');
        process.stderr.write(`[via ${o.via}] ${(e.usage as { completionTokens: number }).completionTokens} tokens, first after ${t.ttftMs?.toFixed(0)} ms, ${t.tokensPerSecond?.toFixed(1)} tokens/s, cloud saw ${t.crossings ?? 0} crossings\n`);
      }
    }
  }
}

export function registerGenerateCommands(program: Command): void {
  program.command('generate')
    .description('generate text from a prompt (in-process; --via runs it through a local device daemon)')
    .option('--model <dir>', 'Hugging Face model directory (default: the embedded debprose-7m)')
    .requiredOption('--prompt <text>', 'prompt text')
    .option('--max-tokens <n>', 'most tokens to generate', intArg('max-tokens', 1, 100000), 64)
    .option('--temperature <t>', "sampling temperature; 0 = greedy (default: the model's generation_config)", floatArg('temperature', 0, 100))
    .option('--top-p <p>', 'nucleus sampling mass', floatArg('top-p', 0, 1))
    .option('--top-k <k>', 'sample among the k most likely', intArg('top-k', 0))
    .option('--seed <n>', 'sampling seed', intArg('seed'), 0)
    .option('--mode <mode>', 'local, split or scx', 'local')
    .option('--head-layers <h>', 'layers kept on trusted devices before the cloud (split/scx)', intArg('head-layers', 1), 1)
    .option('--tail-layers <t>', 'layers kept on trusted devices after the cloud (split/scx)', intArg('tail-layers', 1), 1)
    .option('--noise <kind>', 'scx noise: none, shared or rows', 'none')
    .option('--noise-scale <b>', 'Laplace scale of the scx noise', floatArg('noise-scale', 0), 0)
    .option('--decoys <r>', "decoy rows per scx crossing (a number or 'N')", '0')
    .option('--transcript <file>', 'write everything the cloud peer saw to FILE (.hushtx)')
    .option('--json', 'print one JSON object with ids, text and timings instead of streaming')
    .option('--via <home>', 'run through the device daemon of this home (its paired devices and cloud peer)')
    .action(async (o, cmd) => {
      if (!['local', 'split', 'scx'].includes(o.mode)) throw new Error('--mode must be local, split or scx');
      if (o.via) return generateVia(o, cmd.getOptionValueSource('mode') === 'default' ? undefined : o.mode);
      if (!['none', 'shared', 'rows'].includes(o.noise)) throw new Error('--noise must be none, shared or rows');
      const decoys = o.decoys === 'N' ? 'N' : intArg('decoys', 0, 4096)(o.decoys);
      // Loaded here, not at the top: `hush --help` and daemon-client commands stay fast.
      const { loadModel } = await import('../../runtime/model/index.ts');
      const { generateText } = await import('../../runtime/engine/index.ts');
      const { InProcessRuntime } = await import('../../runtime/scx/in-process.ts');
      const { Transcript } = await import('../../runtime/scx/transcript.ts');
      const model = loadModel(o.model);
      const transcript = o.transcript ? new Transcript({ model: model.name, mode: o.mode, meta: { h: o.headLayers, t: o.tailLayers, numLayers: model.config.numLayers, noise: o.noise, noiseScale: o.noiseScale, decoys } }) : undefined;
      const rt = new InProcessRuntime(model, { capture: transcript });
      const fw = await rt.forwarder({ mode: o.mode, h: o.headLayers, t: o.tailLayers, scx: { noise: o.noise, noiseScale: o.noiseScale, decoys } });
      const temperature = o.temperature ?? model.generation.temperature ?? 0;
      const req = {
        prompt: o.prompt, maxTokens: o.maxTokens, temperature, seed: o.seed,
        topP: o.topP ?? model.generation.topP, topK: o.topK ?? model.generation.topK, stopIds: model.config.eosTokenIds,
      };
      for await (const e of generateText(model.tokenizer, fw, req)) {
        if (e.type === 'token' && !o.json) process.stdout.write(e.text);
        if (e.type === 'done') {
          const cloud = { crossings: fw.stats.crossings, bytesToCloud: fw.stats.bytesToCloud, bytesFromCloud: fw.stats.bytesFromCloud };
          if (o.json) {
            console.log(JSON.stringify({ mode: o.mode, ids: e.ids, promptIds: e.promptIds, text: e.text, finishReason: e.finishReason, timings: e.timings, cloud }));
          } else {
            process.stdout.write('\n');
            process.stderr.write(`[${o.mode}] ${e.ids.length} tokens, first after ${e.timings.ttftMs.toFixed(0)} ms, ${e.timings.tokensPerSecond.toFixed(1)} tokens/s` +
              (o.mode === 'local' ? '' : `, cloud saw ${cloud.crossings} crossings, ${cloud.bytesToCloud} bytes in, ${cloud.bytesFromCloud} out`) + '\n');
          }
        }
      }
      if (transcript) {
        transcript.save(o.transcript);
        process.stderr.write(`transcript: ${transcript.entries.length} tensors, ${transcript.totalBytes()} bytes -> ${o.transcript}\n`);
      }
      await rt.release();
    });

  program.command('logits')
    .description("print the last position's logits")
    .option('--model <dir>', 'Hugging Face model directory (default: the embedded debprose-7m)')
    .option('--ids <ids>', 'comma-separated token ids', idsArg)
    .option('--prompt <text>', 'prompt text (tokenized with BOS)')
    .option('--top <k>', 'also show the k most likely next tokens', intArg('top', 0), 10)
    .option('--json', 'print JSON: ids and all logits')
    .action(async (o) => {
      if (!o.ids === !o.prompt) throw new Error('give exactly one of --ids or --prompt');
      const { loadModel } = await import('../../runtime/model/index.ts');
      const { InProcessPipeline } = await import('../../runtime/engine/index.ts');
      const model = loadModel(o.model);
      const ids: number[] = o.ids ?? model.tokenizer.encode(o.prompt);
      const pipe = await InProcessPipeline.create(model);
      const logits = await pipe.forward('logits', ids);
      await pipe.release();
      if (o.json) { console.log(JSON.stringify({ ids, logits: Array.from(logits) })); return; }
      const top = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]).slice(0, o.top);
      console.log(`ids: ${ids.join(',')}`);
      for (const i of top) console.log(`${String(i).padStart(6)}  ${logits[i].toFixed(4).padStart(10)}  ${JSON.stringify(model.tokenizer.decode([i], false))}`);
    });
}
