// A Hush device in its own process, driven by JSON lines on stdin (one request per line) and
// answering with JSON lines on stdout. Used by the net tests that need peers in separate
// processes. It exits when stdin closes (the test ended or died) or after a hard deadline.
//
//   node --import tsx test/support/net-peer.ts --home DIR --name NAME
//   -> {"event":"ready","peerId":"...","addrs":["/ip4/127.0.0.1/tcp/..../p2p/..."]}
//   <- {"id":1,"cmd":"join","code":"HUSH1-..."}            pair with the inviter
//   <- {"id":2,"cmd":"open","target":"...","protocol":"...","message":...}   one request on a channel
//   <- {"id":3,"cmd":"connect","target":"..."}               dial + verify
//   <- {"id":4,"cmd":"roster"}                              roster entries
//   -> {"id":N,"ok":true,"result":...} | {"id":N,"ok":false,"error":{"name":"...","message":"..."}}
import '../../runtime/polyfill.ts';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Roster, createHushNode, loadOrCreateIdentity, type FrameChannel } from '../../runtime/net/index.ts';

export const PEER_ECHO_PROTOCOL = '/hush-test/echo/1';
const HARD_DEADLINE_MS = 120_000;

const { values } = parseArgs({ options: { home: { type: 'string' }, name: { type: 'string' } } });
if (values.home == null || values.name == null) {
  process.stderr.write('usage: net-peer.ts --home DIR --name NAME\n');
  process.exit(2);
}

const deadline = setTimeout(() => {
  process.stderr.write('net-peer: hard deadline reached, exiting\n');
  process.exit(3);
}, HARD_DEADLINE_MS);
deadline.unref();

const privateKey = await loadOrCreateIdentity(values.home);
const roster = await Roster.open(values.home);
const node = await createHushNode({
  privateKey,
  role: 'device',
  listen: ['/ip4/127.0.0.1/tcp/0'],
  roster,
  name: values.name,
  connectionManager: { inboundConnectionThreshold: 1_000 },
});
await node.handle(PEER_ECHO_PROTOCOL, {}, async (channel: FrameChannel) => {
  for await (const message of channel) await channel.send(message);
});

function emit(message: unknown): void {
  process.stdout.write(JSON.stringify(message) + '\n');
}

async function run(request: Record<string, unknown>): Promise<unknown> {
  switch (request.cmd) {
    case 'join':
      return await node.join(String(request.code));
    case 'open': {
      const channel = await node.openChannel(String(request.target), String(request.protocol), { timeoutMs: 5_000 });
      try {
        return await channel.request(request.message, { timeoutMs: 5_000 });
      } finally {
        await channel.close();
      }
    }
    case 'connect': {
      const connection = await node.connect(String(request.target), { timeoutMs: 5_000 });
      return connection.remotePeer.toString();
    }
    case 'roster':
      return roster.list();
    default:
      throw new Error(`unknown command ${String(request.cmd)}`);
  }
}

let stopping = false;
async function shutdown(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  await node.stop().catch(() => {});
  await roster.flush().catch(() => {});
  process.exit(code);
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  let request: Record<string, unknown>;
  try {
    request = JSON.parse(line) as Record<string, unknown>;
  } catch {
    emit({ ok: false, error: { name: 'SyntaxError', message: 'not JSON' } });
    return;
  }
  if (request.cmd === 'exit') {
    void shutdown(0);
    return;
  }
  run(request).then(
    (result) => emit({ id: request.id, ok: true, result }),
    (err: Error) => emit({ id: request.id, ok: false, error: { name: err?.name ?? 'Error', message: err?.message ?? String(err) } }),
  );
});
lines.on('close', () => void shutdown(0));

emit({ event: 'ready', peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) });
