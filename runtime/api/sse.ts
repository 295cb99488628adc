import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';

/**
 * A Server-Sent Events response. Takes the reply over from fastify (hijack), keeping the headers
 * hooks already set (CORS), and writes with backpressure: a slow client makes send() wait for
 * 'drain' instead of buffering without bound.
 */
export class SseStream {
  private readonly res: ServerResponse;
  private isClosed = false;

  private constructor(reply: FastifyReply, extraHeaders: Record<string, string>) {
    this.res = reply.raw;
    reply.hijack();
    const headers: Record<string, string | number | string[]> = {};
    for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) headers[k] = v as string | number | string[];
    Object.assign(headers, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // Proxies (nginx) would otherwise buffer the stream.
      'x-accel-buffering': 'no',
      ...extraHeaders,
    });
    this.res.writeHead(200, headers);
    this.res.on('close', () => {
      this.isClosed = true;
    });
  }

  static open(reply: FastifyReply, extraHeaders: Record<string, string> = {}): SseStream {
    return new SseStream(reply, extraHeaders);
  }

  get closed(): boolean {
    return this.isClosed || this.res.destroyed;
  }

  /** Writes one `data:` event. Returns false once the client has gone. */
  send(data: string): Promise<boolean> {
    // A JSON.stringify result has no raw newlines, but guard so a stray one cannot split an event.
    const body = data.split(/\r\n|\r|\n/).map((line) => `data: ${line}\n`).join('');
    return this.write(`${body}\n`);
  }

  sendJson(value: unknown): Promise<boolean> {
    return this.send(JSON.stringify(value));
  }

  /** A comment line (ignored by clients): heartbeats and the "subscribed" marker. */
  comment(text: string): Promise<boolean> {
    return this.write(`: ${text.replace(/[\r\n]/g, ' ')}\n\n`);
  }

  /** The client's reconnect delay for EventSource. */
  retry(ms: number): Promise<boolean> {
    return this.write(`retry: ${Math.max(0, Math.floor(ms))}\n\n`);
  }

  end(): void {
    if (!this.res.writableEnded) this.res.end();
  }

  private write(chunk: string): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.res.write(chunk)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve(!this.closed);
      };
      this.res.on('drain', done);
      this.res.on('close', done);
    });
  }
}

/**
 * An AbortSignal that fires when the HTTP client goes away before the response is finished.
 * Node emits 'close' on the response both after a normal end and on a dropped connection;
 * writableFinished tells them apart.
 */
export function clientGoneSignal(reply: FastifyReply, reason: () => Error): AbortSignal {
  const ac = new AbortController();
  const res = reply.raw;
  const onClose = () => {
    if (!res.writableFinished) ac.abort(reason());
  };
  res.once('close', onClose);
  return ac.signal;
}
