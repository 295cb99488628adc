import { ScxShapeError } from './errors.ts';

/**
 * The messages between the coordinator (trusted) and the cloud peer. The same objects travel
 * in-process (tests, simulator) and as msgpack frames over libp2p.
 */
export type CloudMode = 'split' | 'scx';

export type CloudRequest =
  | { type: 'open'; session: string; mode: CloudMode; model: string; start: number; end: number }
  | { type: 'split'; session: string; hidden: Float32Array; rows: number }
  | { type: 'P1'; session: string; layer: number; x: Float32Array; rows: number }
  | { type: 'P2'; session: string; layer: number; q: Float32Array; k: Float32Array; v: Float32Array; n: number }
  | { type: 'P3'; session: string; layer: number; o: Float32Array; h: Float32Array; n: number }
  | { type: 'keyshare'; session: string; layers: { layer: number; sigma: Int32Array; tau: Int32Array }[] }
  | { type: 'decode'; session: string; hidden: Float32Array }
  | { type: 'end'; session: string };

export type CloudReply =
  | { type: 'opened'; session: string }
  | { type: 'split'; hidden: Float32Array }
  | { type: 'P1'; qkv: Float32Array }
  | { type: 'P2'; o: Float32Array }
  | { type: 'P3'; h: Float32Array }
  | { type: 'keyshared' }
  | { type: 'decode'; hidden: Float32Array }
  | { type: 'ended' }
  | { type: 'error'; name: string; message: string };

/** How a request reaches the cloud: a direct call in-process, a stream over libp2p. */
export interface CloudTransport {
  request(msg: CloudRequest, signal?: AbortSignal): Promise<CloudReply>;
}

/** Bytes of the tensors in a message (what the wire carries beyond a small header). */
export function tensorBytes(msg: CloudRequest | CloudReply): number {
  let n = 0;
  for (const v of Object.values(msg)) {
    if (v instanceof Float32Array || v instanceof Int32Array) n += v.byteLength;
    else if (Array.isArray(v)) for (const x of v) if (x && typeof x === 'object') n += tensorBytes(x as CloudReply);
  }
  return n;
}

const SESSION_RE = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Check a request that arrived from the network before any use: field types, integer ranges,
 * typed-array kinds. Shapes against the model are checked by the cloud state machine.
 */
export function validateCloudRequest(raw: unknown): CloudRequest {
  const bad = (why: string): never => { throw new ScxShapeError(`malformed request: ${why}`); };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('not an object');
  const m = raw as Record<string, unknown>;
  if (typeof m.session !== 'string' || !SESSION_RE.test(m.session)) bad('session must be 1-64 characters of [A-Za-z0-9_-]');
  const int = (k: string, max = 1 << 20) => {
    const v = m[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) bad(`${k} must be an integer in [0, ${max}]`);
  };
  const f32 = (k: string) => { if (!(m[k] instanceof Float32Array)) bad(`${k} must be a Float32Array`); };
  switch (m.type) {
    case 'open':
      if (m.mode !== 'split' && m.mode !== 'scx') bad('mode must be split or scx');
      if (typeof m.model !== 'string' || m.model.length > 200) bad('model must be a string');
      int('start', 4096); int('end', 4096);
      break;
    case 'split': f32('hidden'); int('rows'); break;
    case 'P1': int('layer', 4096); f32('x'); int('rows'); break;
    case 'P2': int('layer', 4096); f32('q'); f32('k'); f32('v'); int('n'); break;
    case 'P3': int('layer', 4096); f32('o'); f32('h'); int('n'); break;
    case 'keyshare': {
      if (!Array.isArray(m.layers) || m.layers.length > 4096) bad('layers must be an array');
      for (const e of m.layers as unknown[]) {
        const x = e as Record<string, unknown>;
        if (typeof x !== 'object' || x === null || !Number.isInteger(x.layer) || !(x.sigma instanceof Int32Array) || !(x.tau instanceof Int32Array)) {
          bad('keyshare entries need layer, sigma (Int32Array), tau (Int32Array)');
        }
      }
      break;
    }
    case 'decode': f32('hidden'); break;
    case 'end': break;
    default: bad(`unknown type ${JSON.stringify(m.type)}`);
  }
  return m as unknown as CloudRequest;
}
