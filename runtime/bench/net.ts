import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHushNode, loadOrCreateIdentity, encodeFrame } from '../net/index.ts';
import { serveRequests } from '../net/rpc.ts';
import { loadModel } from '../model/index.ts';
import { InProcessPipeline, generateText } from '../engine/index.ts';
import { median, percentile, type BenchSection } from './report.ts';

const ECHO = '/hush/bench-echo/1';

/** Round trip of one request/reply of `bytes` over libp2p (TCP + Noise + Yamux on loopback) vs in-process. */
async function crossingOverhead(): Promise<BenchSection> {
  const home = mkdtempSync(join(tmpdir(), 'hush-bench-net-'));
  const server = await createHushNode({ privateKey: await loadOrCreateIdentity(join(home, 's')), role: 'cloud', listen: ['/ip4/127.0.0.1/tcp/0'] });
  const client = await createHushNode({ privateKey: await loadOrCreateIdentity(join(home, 'c')), role: 'cloud', listen: ['/ip4/127.0.0.1/tcp/0'] });
  await server.handle(ECHO, { trusted: false, maxFrameBytes: 1 << 20 }, (ch) => serveRequests(ch, async (m) => m));
  const ch = await client.openChannel(server.getMultiaddrs()[0], ECHO, { maxFrameBytes: 1 << 20 });
  const rows = [];
  for (const kib of [8, 64]) {
    const msg = { type: 'P1', session: 'bench', layer: 1, x: new Float32Array((kib * 1024) / 4), rows: 1 };
    const net: number[] = [], inproc: number[] = [];
    for (let i = 0; i < 50; i++) await ch.request(msg);
    for (let i = 0; i < 400; i++) {
      let t = performance.now();
      await ch.request(msg);
      net.push(performance.now() - t);
      t = performance.now();
      await Promise.resolve(structuredClone(msg)).then((m) => structuredClone(m));
      inproc.push(performance.now() - t);
    }
    rows.push({
      frame: `${kib} KiB`, wire_bytes: encodeFrame(msg).length, libp2p_median_ms: median(net), libp2p_p90_ms: percentile(net, 90),
      in_process_median_ms: median(inproc), overhead_median_ms: median(net) - median(inproc), goal_met: kib !== 8 || median(net) <= 0.7,
    });
  }
  await ch.close();
  await client.stop(); await server.stop();
  rmSync(home, { recursive: true, force: true });
  return { title: 'Per-crossing round trip over libp2p on loopback vs in-process (400 requests, same process)', rows, notes: ['goal: median <= 0.7 ms for 8 KiB'] };
}

/** The federated demo's setup (2 device daemons + cloud daemon, separate processes) vs one process. */
async function demoThroughput(): Promise<BenchSection[]> {
  const { spawnDaemon } = await import('../../peers/daemon/spawn.ts');
  const root = mkdtempSync(join(tmpdir(), 'hush-bench-demo-'));
  const [cloud, laptop, desktop] = await Promise.all([
    spawnDaemon('cloud', join(root, 'cloud')), spawnDaemon('device', join(root, 'laptop')), spawnDaemon('device', join(root, 'desktop')),
  ]);
  try {
    const inv = await laptop.client!.call<{ code: string }>('POST', '/api/v1/invites');
    await desktop.client!.call('POST', '/api/v1/invites/join', { code: inv.code });
    await laptop.client!.call('POST', '/api/v1/clouds', { multiaddr: cloud.info.addresses[0], name: 'gpu' });
    const prompt = 'The LORD said to Moses, "Stretch out your hand over the sea';
    const run = async (mode: string) => {
      let timings: Record<string, number> = {};
      for await (const e of laptop.client!.generate({ prompt, mode, maxTokens: 64, temperature: 0 })) if (e.type === 'done') timings = e.timings as Record<string, number>;
      return timings;
    };
    await run('scx'); await run('split');
    const scx: Record<string, number>[] = [], split: Record<string, number>[] = [], local: number[] = [];
    const model = loadModel();
    const pipe = await InProcessPipeline.create(model);
    for (let r = 0; r < 3; r++) {
      scx.push(await run('scx'));
      split.push(await run('split'));
      for await (const e of generateText(model.tokenizer, pipe.forwarder(), { prompt, maxTokens: 64, temperature: 0 })) if (e.type === 'done') local.push(e.timings.tokensPerSecond);
    }
    await pipe.release();
    const plan = await laptop.client!.call<{ stages: { device: string; role: string; layers: string }[] }>('GET', '/api/v1/plan?mode=scx');
    const last = await laptop.client!.call<{ session: { crossings: { stage: string; bytes: number }[] } }>('GET', '/api/v1/sessions/last');
    const gen = last.session.crossings.filter((c) => c.stage === 'generate');
    const d = model.config.hiddenSize;
    const tps = (xs: Record<string, number>[]) => median(xs.map((x) => x.tokensPerSecond));
    const oneProc = median(local);
    return [{
      title: 'Federated demo (2 device daemons + cloud daemon on loopback) vs one process, 64 tokens, median of 3',
      rows: [
        { run: 'one process (whole model)', tokens_per_s: oneProc, ratio_vs_one_process: 1 },
        { run: 'daemons, split', tokens_per_s: tps(split), ttft_ms: median(split.map((x) => x.ttftMs)), ratio_vs_one_process: tps(split) / oneProc },
        { run: 'daemons, scx', tokens_per_s: tps(scx), ttft_ms: median(scx.map((x) => x.ttftMs)), ratio_vs_one_process: tps(scx) / oneProc },
      ],
      notes: [`the scheduler's plan: ${plan.stages.map((s) => `${s.role} ${s.layers} on ${s.device}`).join('; ')}`,
        'the one-process run has no network at all; the daemons pay one libp2p round trip to the cloud per token plus one per remote trusted stage'],
    }, {
      title: 'Bytes per generated token to/from the cloud (scx): measured vs SCX.md formula (2 d-vectors, fp32)',
      rows: [{
        tensors_per_token: gen.length / (gen.length / 2), tensor_bytes_per_token: gen.reduce((a, c) => a + c.bytes, 0) / (gen.length / 2),
        formula_bytes_per_token: 2 * d * 4,
        framed_bytes_per_token: encodeFrame({ type: 'decode', session: '00000000-0000-0000-0000-000000000000', hidden: new Float32Array(d) }).length + encodeFrame({ type: 'decode', hidden: new Float32Array(d) }).length,
      }],
      notes: ['framed bytes: msgpack frames as sent (before Noise and Yamux headers)'],
    }];
  } finally {
    await Promise.all([cloud, laptop, desktop].map((x) => x.stop()));
    rmSync(root, { recursive: true, force: true });
  }
}

export async function benchNet(): Promise<BenchSection[]> {
  return [await crossingOverhead(), ...(await demoThroughput())];
}
