import type { FrameChannel } from './framing.ts';
import { ChannelClosedError, NetError } from './errors.ts';

/** The peer stopped answering liveness probes while a request was outstanding. */
export class PeerUnresponsiveError extends NetError {
  override name = 'PeerUnresponsiveError';
}

/**
 * Liveness while waiting for a reply: a long computation on the peer is fine as long as the peer
 * answers probes (libp2p ping runs on its own stream and event loop turn), so a long prefill never
 * raises a false alarm, while a peer that stops answering is given up on after `misses` probes.
 */
export interface Watchdog {
  probe(signal: AbortSignal): Promise<unknown>;
  intervalMs: number;
  misses: number;
}

/**
 * Request/reply over one channel: the handler answers every frame in order until the peer closes.
 * `onEnd` runs however the channel ends (clean close, reset, timeout), so per-channel state such as
 * a session's KV cache can be dropped when its coordinator disappears.
 */
export async function serveRequests(channel: FrameChannel, handle: (msg: unknown) => Promise<unknown>, onEnd?: () => void | Promise<void>): Promise<void> {
  try {
    for await (const msg of channel) await channel.send(await handle(msg));
  } finally {
    await onEnd?.();
  }
}

/**
 * The client side: one request in flight at a time on a lazily opened channel. A failed channel is
 * not reused; the next request opens a new one only if `reopen` is set (sessions are tied to their
 * channel, so by default a lost channel stays lost and the error reaches the caller).
 */
export class RequestChannel {
  private channel: FrameChannel | undefined;
  private opening: Promise<FrameChannel> | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly open: (signal?: AbortSignal) => Promise<FrameChannel>, private readonly opts: { timeoutMs?: number; reopen?: boolean; watchdog?: Watchdog } = {}) {}

  private async get(signal?: AbortSignal): Promise<FrameChannel> {
    if (this.closed) throw new ChannelClosedError('request channel closed');
    if (this.channel?.isOpen) return this.channel;
    if (this.channel && !this.opts.reopen) throw new ChannelClosedError('the channel to the peer was lost');
    this.opening ??= this.open(signal).finally(() => { this.opening = undefined; });
    this.channel = await this.opening;
    return this.channel;
  }

  request(msg: unknown, signal?: AbortSignal): Promise<unknown> {
    const run = async () => {
      const ch = await this.get(signal);
      const wd = this.opts.watchdog;
      if (!wd) return ch.request(msg, { signal, ...(this.opts.timeoutMs ? { timeoutMs: this.opts.timeoutMs } : {}) });
      let missed = 0;
      let probing = false;
      const timer = setInterval(() => {
        if (probing) return;
        probing = true;
        wd.probe(AbortSignal.timeout(wd.intervalMs)).then(() => { missed = 0; }, () => {
          if (++missed >= wd.misses) ch.abort(new PeerUnresponsiveError(`peer did not answer ${missed} liveness probes ${wd.intervalMs} ms apart`));
        }).finally(() => { probing = false; });
      }, wd.intervalMs);
      try {
        return await ch.request(msg, { signal, ...(this.opts.timeoutMs ? { timeoutMs: this.opts.timeoutMs } : {}) });
      } finally {
        clearInterval(timer);
      }
    };
    const p = this.tail.then(run, run);
    this.tail = p.catch(() => undefined);
    return p;
  }

  get isOpen(): boolean {
    return !!this.channel?.isOpen;
  }

  async close(): Promise<void> {
    this.closed = true;
    const ch = this.channel;
    this.channel = undefined;
    if (ch) await ch.close().catch(() => undefined);
  }

  abort(): void {
    this.closed = true;
    this.channel?.abort();
    this.channel = undefined;
  }
}
