import type { Command } from 'commander';
import { DaemonClient } from '../client.ts';

interface DeviceView { peerId: string; fingerprint: string; name: string; online: boolean; revoked?: string; rttMs?: number; path?: string | null; lastSeen?: string }

export function registerDeviceCommands(program: Command): void {
  program.command('id')
    .description("this device's identity: name, PeerId, fingerprint, addresses")
    .option('--home <dir>', 'device home', process.env.HUSH_HOME)
    .option('--json', 'print JSON')
    .action(async (o) => {
      const id = await DaemonClient.forHome(o.home).call<{ peerId: string; fingerprint: string; name: string; addresses: string[] }>('GET', '/api/v1/identity');
      if (o.json) { console.log(JSON.stringify(id, null, 2)); return; }
      console.log(`${id.name}\n  PeerId       ${id.peerId}\n  fingerprint  ${id.fingerprint}\n${id.addresses.map((a) => `  address      ${a}`).join('\n')}`);
    });

  const pair = program.command('pair').description('pair devices with a one-time code');
  pair.command('invite')
    .description('print a one-time invite code for another device to join')
    .option('--home <dir>', 'device home', process.env.HUSH_HOME)
    .option('--json', 'print JSON')
    .action(async (o) => {
      const inv = await DaemonClient.forHome(o.home).call<{ code: string; expiresAt: string }>('POST', '/api/v1/invites');
      if (o.json) { console.log(JSON.stringify(inv)); return; }
      console.log(`${inv.code}\n\nOn the other device run:  hush pair join ${inv.code}\nValid once, until ${inv.expiresAt}.`);
    });
  pair.command('join <code>')
    .description('pair this device with the one that printed CODE')
    .option('--home <dir>', 'device home', process.env.HUSH_HOME)
    .option('--name <name>', 'name to present to the other device')
    .action(async (code, o) => {
      const r = await DaemonClient.forHome(o.home).call<{ peerId: string; name: string }>('POST', '/api/v1/invites/join', { code, ...(o.name ? { name: o.name } : {}) });
      console.log(`paired with ${r.name} (${r.peerId})`);
    });

  const devices = program.command('devices').description('paired devices');
  devices.command('list', { isDefault: true })
    .description('list paired devices')
    .option('--home <dir>', 'device home', process.env.HUSH_HOME)
    .option('--json', 'print JSON')
    .action(async (o) => {
      const r = await DaemonClient.forHome(o.home).call<{ devices: DeviceView[] }>('GET', '/api/v1/devices');
      if (o.json) { console.log(JSON.stringify(r.devices, null, 2)); return; }
      if (!r.devices.length) console.log('no paired devices: run `hush pair invite` here and `hush pair join CODE` on the other device');
      for (const d of r.devices) {
        const state = d.revoked ? `revoked ${d.revoked}` : d.online ? `online (${d.path ?? '?'}${d.rttMs === undefined ? '' : `, ${d.rttMs.toFixed(1)} ms`})` : `offline${d.lastSeen ? `, last seen ${d.lastSeen}` : ''}`;
        console.log(`${d.fingerprint}  ${d.name.padEnd(20)}  ${state}\n    ${d.peerId}`);
      }
    });
  devices.command('rename <peerId> <name>')
    .description('rename a paired device')
    .option('--home <dir>', 'device home', process.env.HUSH_HOME)
    .action(async (peerId, name, o) => {
      const d = await DaemonClient.forHome(o.home).call<DeviceView>('PATCH', `/api/v1/devices/${encodeURIComponent(peerId)}`, { name });
      console.log(`renamed ${d.peerId} to ${d.name}`);
    });
  devices.command('revoke <peerId>')
    .description('revoke a device: every online device refuses it at once')
    .option('--home <dir>', 'device home', process.env.HUSH_HOME)
    .action(async (peerId, o) => {
      const d = await DaemonClient.forHome(o.home).call<DeviceView>('POST', `/api/v1/devices/${encodeURIComponent(peerId)}/revoke`);
      console.log(`revoked ${d.name} (${d.peerId})`);
    });

  program.command('plan')
    .description('the plan a request would use now: who runs which layers, and why')
    .option('--home <dir>', 'device home', process.env.HUSH_HOME)
    .option('--mode <mode>', 'local, split or scx', 'scx')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const p = await DaemonClient.forHome(o.home).call<{ stages: { device: string; role: string; layers: string; predictedMs?: number }[]; predicted: { ttftMs: number; perTokenMs: number }; why: string[] }>('GET', `/api/v1/plan?mode=${encodeURIComponent(o.mode)}`);
      if (o.json) { console.log(JSON.stringify(p, null, 2)); return; }
      for (const s of p.stages) console.log(`${s.role.padEnd(7)} ${s.layers.padEnd(22)} ${s.device}${s.predictedMs === undefined ? '' : `  ~${s.predictedMs.toFixed(1)} ms`}`);
      console.log(`predicted: first token ${p.predicted.ttftMs.toFixed(1)} ms, then ${p.predicted.perTokenMs.toFixed(2)} ms/token`);
      for (const w of p.why) console.log(`- ${w}`);
    });
}
