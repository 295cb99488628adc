import '../runtime/polyfill.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnDaemon, type RunningDaemon } from './daemon/spawn.ts';
import { loadModel } from '../runtime/model/index.ts';
import { InProcessPipeline, generateText } from '../runtime/engine/index.ts';

/**
 * `npm start`: the federated demo on the embedded model. Two trusted-device daemons and one cloud
 * peer as separate processes on loopback, fresh homes, real libp2p: pair, add the cloud, run a
 * prompt in scx mode, stream it, then show who ran what and what the cloud saw. Stops everything.
 */
const PROMPT = process.argv[2] ?? 'The meaning of life is';
const MAX_TOKENS = 48;
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);

const root = mkdtempSync(join(tmpdir(), 'hush-demo-'));
const running: RunningDaemon[] = [];
let code = 0;
try {
  console.log(bold('Hush federated demo') + dim(` (homes in ${root})`));
  const t0 = performance.now();
  const [cloud, laptop, desktop] = await Promise.all([
    spawnDaemon('cloud', join(root, 'cloud')),
    // The laptop is on battery saver: it may hold at most 15% of the layers, so the scheduler has to
    // place the tail on the desktop (without a cap it keeps everything on the laptop: one hop less).
    spawnDaemon('device', join(root, 'laptop'), ['--name', 'laptop', '--max-share', '0.15']),
    spawnDaemon('device', join(root, 'desktop'), ['--name', 'desktop']),
  ]);
  running.push(cloud, laptop, desktop);
  console.log(`started 3 processes in ${(performance.now() - t0).toFixed(0)} ms:`);
  for (const d of running) console.log(`  ${d.role.padEnd(6)} pid ${String(d.child.pid).padEnd(7)} ${d.info.peerId}  ${d.info.addresses[0]}`);

  const invite = await laptop.client!.call<{ code: string }>('POST', '/api/v1/invites');
  const joined = await desktop.client!.call<{ name: string }>('POST', '/api/v1/invites/join', { code: invite.code });
  console.log(`paired desktop with ${joined.name} using a one-time code`);
  await laptop.client!.call('POST', '/api/v1/clouds', { multiaddr: cloud.info.addresses[0], name: 'gpu-cloud' });
  const test = await laptop.client!.call<{ rttMs: number }>('POST', '/api/v1/clouds/gpu-cloud/test');
  console.log(`added cloud peer gpu-cloud (round trip ${test.rttMs.toFixed(1)} ms)`);

  const plan = await laptop.client!.call<{ stages: { device: string; role: string; layers: string }[]; predicted: { ttftMs: number; perTokenMs: number }; why: string[] }>('GET', '/api/v1/plan?mode=scx');
  console.log(bold('\nwho runs what (scx), as the scheduler planned it (laptop capped at 15% of layers):'));
  for (const s of plan.stages) console.log(`  ${s.role.padEnd(7)} ${s.layers.padEnd(22)} ${s.device}`);
  console.log(dim(`  predicted: first token ${plan.predicted.ttftMs.toFixed(0)} ms, then ${plan.predicted.perTokenMs.toFixed(1)} ms/token`));

  console.log(bold(`\nprompt: `) + JSON.stringify(PROMPT) + dim(` (greedy, ${MAX_TOKENS} tokens)`));
  let text = '';
  let done: Record<string, unknown> | undefined;
  process.stdout.write(bold('answer: ') + PROMPT);
  for await (const e of laptop.client!.generate({ prompt: PROMPT, mode: 'scx', maxTokens: MAX_TOKENS, temperature: 0 })) {
    if (e.type === 'token') { text += e.text; process.stdout.write(e.text as string); }
    if (e.type === 'done') done = e;
    if (e.type === 'error') throw new Error(JSON.stringify(e));
  }
  process.stdout.write('\n');

  const last = await laptop.client!.call<{ session: { crossings: { stage: string; crossing: string; direction: string; bytes: number }[]; totalBytes: number } }>('GET', '/api/v1/sessions/last');
  const by = new Map<string, { n: number; bytes: number }>();
  for (const c of last.session.crossings) {
    const k = `${c.stage} ${c.crossing} ${c.direction === 'received' ? 'to cloud' : 'from cloud'}`;
    const v = by.get(k) ?? { n: 0, bytes: 0 };
    v.n++; v.bytes += c.bytes;
    by.set(k, v);
  }
  console.log(bold('\nwhat the cloud saw:') + ' encoded activations only (no token ids, no logits, no edge-layer keys)');
  for (const [k, v] of by) console.log(`  ${k.padEnd(28)} ${String(v.n).padStart(4)} tensors ${String(v.bytes).padStart(9)} bytes`);
  console.log(`  ${'total'.padEnd(28)} ${String(last.session.crossings.length).padStart(4)} tensors ${String(last.session.totalBytes).padStart(9)} bytes`);

  const t = done!.timings as Record<string, number>;
  console.log(bold('\ntimings:') + ` first token ${t.ttftMs.toFixed(0)} ms (prefill incl. SCX ${t.prefillMs.toFixed(0)} ms), ${t.tokensPerSecond.toFixed(1)} tokens/s, ${t.crossings} request/replies with the cloud`);

  // The same prompt in one process running the whole model: the federated answer must equal it.
  const model = loadModel();
  const pipe = await InProcessPipeline.create(model);
  let local = '';
  for await (const e of generateText(model.tokenizer, pipe.forwarder(), { prompt: PROMPT, maxTokens: MAX_TOKENS, temperature: 0, stopIds: model.config.eosTokenIds })) if (e.type === 'done') local = e.text;
  await pipe.release();
  const same = local === text;
  console.log(`one-process reference gives the ${same ? 'same' : 'DIFFERENT'} text: ${same ? 'ok' : JSON.stringify(local)}`);
  if (!same) code = 1;
} catch (e) {
  console.error(`demo failed: ${(e as Error).message}`);
  for (const d of running) if (d.stderr.length) console.error(`--- ${d.role} ${d.home} ---\n${d.stderr.slice(-10).join('\n')}`);
  code = 1;
} finally {
  await Promise.all(running.map((d) => d.stop()));
  rmSync(root, { recursive: true, force: true });
  console.log(dim(`stopped ${running.length} processes, removed ${root}`));
}
process.exit(code);
