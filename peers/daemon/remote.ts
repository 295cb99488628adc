import type { HushNode } from '../../runtime/net/index.ts';
import { RequestChannel } from '../../runtime/net/rpc.ts';
import { RemoteStageHost, type StageReply, type StageRequest } from '../../runtime/engine/stage-service.ts';
import type { CloudReply, CloudRequest, CloudTransport } from '../../runtime/scx/messages.ts';
import { CLOUD_PROTOCOL, MAX_TENSOR_FRAME_BYTES, STAGE_PROTOCOL } from './common.ts';

/** Per-request timeout on a stage or cloud channel: a prefill of the largest context fits easily. */
export const REQUEST_TIMEOUT_MS = 60_000;

/**
 * Stages on a paired device: one channel per session, opened on first use and closed when the
 * session is dropped, so the device frees the session's KV cache even if the drop is lost.
 */
export function remoteStageHost(node: HushNode, peerId: string, label: string, modelName: string): RemoteStageHost {
  const channels = new Map<string, RequestChannel>();
  const request = async (m: StageRequest, signal?: AbortSignal): Promise<StageReply> => {
    let ch = channels.get(m.session);
    if (!ch) {
      if (m.type === 'drop') return { type: 'dropped' };
      ch = new RequestChannel((s) => node.openChannel(peerId, STAGE_PROTOCOL, { signal: s, maxFrameBytes: MAX_TENSOR_FRAME_BYTES }), { timeoutMs: REQUEST_TIMEOUT_MS });
      channels.set(m.session, ch);
    }
    try {
      return await ch.request(m, signal) as StageReply;
    } finally {
      if (m.type === 'drop') { channels.delete(m.session); await ch.close(); }
    }
  };
  return new RemoteStageHost(label, request, modelName);
}

/** The SCX exchange with a cloud peer over one channel per session. */
export function cloudTransport(node: HushNode, target: string): CloudTransport & { close(): Promise<void> } {
  const ch = new RequestChannel((s) => node.openChannel(target, CLOUD_PROTOCOL, { signal: s, maxFrameBytes: MAX_TENSOR_FRAME_BYTES }), { timeoutMs: REQUEST_TIMEOUT_MS });
  return {
    async request(msg: CloudRequest, signal?: AbortSignal): Promise<CloudReply> {
      const reply = await ch.request(msg, signal) as CloudReply;
      if (msg.type === 'end') await ch.close();
      return reply;
    },
    close: () => ch.close(),
  };
}
