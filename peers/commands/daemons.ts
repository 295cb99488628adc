import type { Command } from 'commander';
import { DaemonClient } from '../client.ts';
import { floatArg, intArg } from './util.ts';

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerDaemonCommands(program: Command): void {
  const device = program.command('device').description('the trusted-device daemon');
  device.command('start')
    .description('run this device: serve stages to paired devices, coordinate requests, control API on loopback')
    .option('--home <dir>', 'state directory (identity, roster, clouds, API token)', process.env.HUSH_HOME)
    .option('--listen <multiaddr>', 'libp2p listen address (repeatable)', collect)
    .option('--api-port <n>', 'loopback port of the control API and OpenAI endpoint (0 = any)', intArg('api-port', 0, 65535), 0)
    .option('--model <dir>', 'Hugging Face model directory (default: the embedded debprose-7m)')
    .option('--name <name>', "this device's name as paired devices see it")
    .option('--mdns', 'discover paired devices on the LAN with mDNS')
    .option('--allow-origin <origin>', 'browser origin allowed to call the API (repeatable)', collect)
    .option('--head-layers <h>', 'layers kept on trusted devices before the cloud', intArg('head-layers', 1), 1)
    .option('--tail-layers <t>', 'layers kept on trusted devices after the cloud', intArg('tail-layers', 1), 1)
    .option('--allow-local-fallback', 'finish requests in local mode when no cloud peer is left')
    .option('--memory <MB>', 'memory this device offers for stages', intArg('memory', 1))
    .option('--opt-out', 'battery saver: host no stage for other devices')
    .option('--max-share <fraction>', "most of the model's layers this device may hold (0..1)", floatArg('max-share', 0, 1))
    .option('--app-channel <fd>', "the desktop app's JSON-lines pipe on this file descriptor: the identity key comes from and goes to the app's OS keychain (never identity.key), and the daemon exits when the app closes it", intArg('app-channel', 3, 1023))
    .action(async (o) => {
      const { runDeviceDaemon } = await import('../daemon/device-daemon.ts');
      await runDeviceDaemon({
        home: o.home, listen: o.listen, apiPort: o.apiPort, model: o.model, name: o.name, mdns: !!o.mdns, allowedOrigins: o.allowOrigin,
        h: o.headLayers, t: o.tailLayers, allowLocalFallback: !!o.allowLocalFallback,
        memoryBytes: o.memory ? o.memory * 1024 * 1024 : undefined, optOut: !!o.optOut, maxShare: o.maxShare, appChannel: o.appChannel,
      });
    });

  const cloud = program.command('cloud').description('cloud peers: run one, or manage the ones this device uses');
  cloud.command('start')
    .description('run a cloud peer: serves only the SCX exchange for the middle layers')
    .option('--home <dir>', 'state directory (identity)', process.env.HUSH_HOME)
    .option('--listen <multiaddr>', 'libp2p listen address (repeatable)', collect)
    .option('--model <dir>', 'Hugging Face model directory (default: the embedded debprose-7m)')
    .option('--health-port <n>', 'loopback port of the health endpoint (0 = any)', intArg('health-port', 0, 65535), 0)
    .option('--capture <dir>', 'write what this peer saw in each session to DIR/<session>.hushtx')
    .action(async (o) => {
      const { runCloudDaemon } = await import('../daemon/cloud-daemon.ts');
      await runCloudDaemon({ home: o.home, listen: o.listen, model: o.model, healthPort: o.healthPort, captureDir: o.capture });
    });
  cloud.command('add <multiaddr>')
    .description('use a cloud peer (its multiaddr must end in /p2p/<PeerId>)')
    .option('--home <dir>', 'device home', process.env.HUSH_HOME)
    .option('--name <name>', 'a name for it')
    .action(async (addr, o) => {
      const c = await DaemonClient.forHome(o.home).call<{ id: string; peerId?: string }>('POST', '/api/v1/clouds', { multiaddr: addr, ...(o.name ? { name: o.name } : {}) });
      console.log(`added cloud peer ${c.id} (${c.peerId})`);
    });
  cloud.command('list')
    .description('cloud peers this device uses')
    .option('--home <dir>', 'device home', process.env.HUSH_HOME)
    .option('--json', 'print JSON')
    .action(async (o) => {
      const r = await DaemonClient.forHome(o.home).call<{ clouds: { id: string; multiaddr: string; reachable?: boolean; rttMs?: number }[] }>('GET', '/api/v1/clouds');
      if (o.json) { console.log(JSON.stringify(r.clouds, null, 2)); return; }
      if (!r.clouds.length) console.log('no cloud peers: add one with `hush cloud add MULTIADDR`');
      for (const c of r.clouds) console.log(`${c.id}  ${c.multiaddr}${c.reachable === undefined ? '' : c.reachable ? `  reachable, ${c.rttMs?.toFixed(1)} ms` : '  unreachable'}`);
    });
  cloud.command('test <id>')
    .description('dial a cloud peer and measure a round trip')
    .option('--home <dir>', 'device home', process.env.HUSH_HOME)
    .action(async (id, o) => {
      const r = await DaemonClient.forHome(o.home).call<{ reachable: boolean; rttMs: number | null; error?: string }>('POST', `/api/v1/clouds/${encodeURIComponent(id)}/test`);
      console.log(r.reachable ? `${id}: reachable, round trip ${r.rttMs?.toFixed(2)} ms` : `${id}: unreachable (${r.error})`);
      if (!r.reachable) process.exitCode = 1;
    });
  cloud.command('remove <id>')
    .description('stop using a cloud peer')
    .option('--home <dir>', 'device home', process.env.HUSH_HOME)
    .action(async (id, o) => {
      await DaemonClient.forHome(o.home).call('DELETE', `/api/v1/clouds/${encodeURIComponent(id)}`);
      console.log(`removed ${id}`);
    });
}
