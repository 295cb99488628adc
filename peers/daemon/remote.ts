import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import { FrameTooLargeError, type HushNode } from '../../runtime/net/index.ts';
import { RequestChannel, type Watchdog } from '../../runtime/net/rpc.ts';
import { RemoteStageHost, type StageReply, type StageRequest } from '../../runtime/engine/stage-service.ts';
import type { CloudReply, CloudRequest, CloudTransport } from '../../runtime/scx/messages.ts';
import { PeerFailureError } from '../../runtime/scx/resilient.ts';
import { CLOUD_PROTOCOL, MAX_TENSOR_FRAME_BYTES, STAGE_PROTOCOL } from './common.ts';

/** Last-resort timeout of one request; liveness is the watchdog's job (a long prefill is not a failure). */
export const REQUEST_TIMEOUT_MS = 300_000;
/**
 * Liveness probes: every max(1 s, 4 x RTT); three misses in a row and the peer is given up on. A busy
 * 2-core machine can take a few hundred ms to answer a ping, so a tighter floor raises false alarms;
 * a killed peer is noticed at once anyway (its connection closes), only a silent partition waits.
 */
export const WATCHDOG_MIN_MS = 1000;
export const WATCHDOG_MISSES = 3;

export interface RemoteOptions {
  /** Measured round trip to the peer, to scale the liveness probes. */
  rttMs?: () => number | undefined;
}

function watchdog(node: HushNode, peerId: string, o: RemoteOptions): Watchdog {
  const pid = peerIdFromString(peerId);
  return {
    probe: (signal) => node.libp2p.services.ping.ping(pid, { signal }),
    intervalMs: Math.max(WATCHDOG_MIN_MS, 4 * (o.rttMs?.() ?? 0)),
    misses: WATCHDOG_MISSES,
  };
}

/** Transport failures (lost connection, reset, unresponsive) become PeerFailureError: the request can move. */
function asPeerFailure(e: unknown, peerId: string, role: 'device' | 'cloud'): unknown {
  if (e instanceof FrameTooLargeError || e instanceof PeerFailureError) return e;
  const err = e as Error;
  if (err?.name === 'AbortError') return e;
  return new PeerFailureError(peerId, role, `${role} ${peerId.slice(-8)}: ${err?.name ?? 'Error'}: ${err?.message ?? String(e)}`, { cause: e });
}

/**
 * Stages on a paired device: one channel per session, opened on first use and closed when the
 * session is dropped, so the device frees the session's KV cache even if the drop is lost.
 */
export function remoteStageHost(node: HushNode, peerId: string, label: string, modelName: string, o: RemoteOptions = {}): RemoteStageHost {
  const channels = new Map<string, RequestChannel>();
  const request = async (m: StageRequest, signal?: AbortSignal): Promise<StageReply> => {
    let ch = channels.get(m.session);
    if (!ch) {
      if (m.type === 'drop') return { type: 'dropped' };
      ch = new RequestChannel((s) => node.openChannel(peerId, STAGE_PROTOCOL, { signal: s, maxFrameBytes: MAX_TENSOR_FRAME_BYTES }),
        { timeoutMs: REQUEST_TIMEOUT_MS, watchdog: watchdog(node, peerId, o) });
      channels.set(m.session, ch);
    }
    try {
      return await ch.request(m, signal) as StageReply;
    } catch (e) {
      channels.delete(m.session);
      ch.abort();
      throw asPeerFailure(e, peerId, 'device');
    } finally {
      if (m.type === 'drop') { channels.delete(m.session); await ch.close(); }
    }
  };
  return new RemoteStageHost(label, request, modelName);
}

/** The SCX exchange with a cloud peer over one channel per session. */
export function cloudTransport(node: HushNode, target: string, o: RemoteOptions = {}): CloudTransport & { close(): Promise<void>; peerId: string } {
  const peerId = multiaddr(target).getComponents().find((c) => c.name === 'p2p')?.value ?? target;
  const ch = new RequestChannel((s) => node.openChannel(target, CLOUD_PROTOCOL, { signal: s, maxFrameBytes: MAX_TENSOR_FRAME_BYTES }),
    { timeoutMs: REQUEST_TIMEOUT_MS, watchdog: watchdog(node, peerId, o) });
  return {
    peerId,
    async request(msg: CloudRequest, signal?: AbortSignal): Promise<CloudReply> {
      let reply: CloudReply;
      try {
        reply = await ch.request(msg, signal) as CloudReply;
      } catch (e) {
        ch.abort();
        throw asPeerFailure(e, peerId, 'cloud');
      }
      // A cloud that forgot a session it opened (it restarted) has failed this session.
      if (reply.type === 'error' && reply.name === 'UnknownScxSessionError' && msg.type !== 'open' && msg.type !== 'end') {
        throw new PeerFailureError(peerId, 'cloud', `cloud ${peerId.slice(-8)} lost the session (restarted?)`);
      }
      if (msg.type === 'end') await ch.close();
      return reply;
    },
    close: () => ch.close(),
  };
}
