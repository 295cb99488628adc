import type { TokenForwarder } from '../engine/generate.ts';

/** A peer failed (connection lost, stream reset, stopped answering): the request can go on elsewhere. */
export class PeerFailureError extends Error {
  override name = 'PeerFailureError';
  constructor(readonly peerId: string, readonly role: 'device' | 'cloud', message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** No device or cloud peer left that can host a stage; names what is missing. */
export class NoPlacementError extends Error {
  override name = 'NoPlacementError';
  /** HTTP status when it reaches the API before any token: service unavailable. */
  readonly statusCode = 503;
}

export interface Attempt {
  forwarder: TokenForwarder;
  /** Peers this attempt depends on (for reports). */
  peers: string[];
}

export interface RecoveryRecord {
  failedPeer: string;
  role: 'device' | 'cloud';
  reason: string;
  /** Tokens already generated when it failed. */
  atToken: number;
  phase: 'prefill' | 'decode';
  /** From the failure to the logits of the next token on the new placement. */
  recoveryMs: number;
  newPeers: string[];
}

/**
 * Generation that survives a peer failure. The coordinator keeps what rebuilds any stage's state:
 * the token ids so far and the way to make a plan. When a peer fails, it is excluded, a new plan is
 * made, the new placement re-runs the prefix as a fresh prefill (fresh SCX keys: a new session), and
 * its last logits stand in for the failed step's. The generation loop above sees one continuous
 * sequence: no token lost, none repeated.
 */
export class ResilientForwarder implements TokenForwarder {
  private ids: number[] = [];
  private current: Attempt | undefined;
  private readonly excluded = new Set<string>();
  readonly recoveries: RecoveryRecord[] = [];

  constructor(
    private readonly makeAttempt: (excluded: ReadonlySet<string>) => Promise<Attempt>,
    private readonly opts: { maxRecoveries?: number; onRecovery?: (r: RecoveryRecord) => void; onFailure?: (e: PeerFailureError) => void } = {},
  ) {}

  get attempt(): Attempt | undefined {
    return this.current;
  }

  async prefill(ids: number[], signal?: AbortSignal): Promise<Float32Array> {
    this.ids = [...ids];
    this.promptLength = ids.length;
    return this.run((fw) => fw.prefill(this.ids, signal), 'prefill', signal);
  }

  async decode(id: number, signal?: AbortSignal): Promise<Float32Array> {
    this.ids.push(id);
    return this.run((fw) => fw.decode(id, signal), 'decode', signal);
  }

  private async run(op: (fw: TokenForwarder) => Promise<Float32Array>, phase: 'prefill' | 'decode', signal?: AbortSignal): Promise<Float32Array> {
    let step = op;
    let failure: { err: PeerFailureError; at: number } | undefined;
    for (;;) {
      this.current ??= await this.makeAttempt(this.excluded);
      try {
        const logits = await step(this.current.forwarder);
        if (failure) {
          const r: RecoveryRecord = {
            failedPeer: failure.err.peerId, role: failure.err.role, reason: failure.err.message, phase,
            atToken: Math.max(0, this.ids.length - this.promptLength), recoveryMs: performance.now() - failure.at, newPeers: this.current.peers,
          };
          this.recoveries.push(r);
          this.opts.onRecovery?.(r);
        }
        return logits;
      } catch (e) {
        if (!(e instanceof PeerFailureError) || signal?.aborted) throw e;
        if (this.recoveries.length + 1 > (this.opts.maxRecoveries ?? 4)) throw e;
        failure ??= { err: e, at: performance.now() };
        failure.err = e;
        this.opts.onFailure?.(e);
        this.excluded.add(e.peerId);
        const old = this.current;
        this.current = undefined;
        await old?.forwarder.close(e).catch(() => undefined);
        // Whatever failed, the new placement rebuilds every stage's KV from the ids so far.
        step = (fw) => fw.prefill(this.ids, signal);
      }
    }
  }

  private promptLength = 0;

  async close(reason?: unknown): Promise<void> {
    const c = this.current;
    this.current = undefined;
    await c?.forwarder.close(reason);
  }
}
