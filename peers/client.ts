import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolve } from 'node:path';
import { defaultHome, readDaemonInfo } from './daemon/common.ts';

export class DaemonNotRunningError extends Error {
  override name = 'DaemonNotRunningError';
}

/** Talks to a running device daemon's control API (the CLI's `--via HOME` and management commands). */
export class DaemonClient {
  constructor(readonly apiUrl: string, private readonly token: string) {}

  static forHome(home?: string): DaemonClient {
    const dir = resolve(home ?? defaultHome());
    const info = readDaemonInfo(dir, 'device');
    if (!info?.apiUrl) throw new DaemonNotRunningError(`no device daemon is running for ${dir}: start one with \`hush device start --home ${dir}\``);
    return new DaemonClient(info.apiUrl, readFileSync(join(dir, 'api-token'), 'utf8').trim());
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(this.apiUrl + path, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 204) return undefined as T;
    const json = await res.json().catch(() => ({})) as { error?: { name: string; message: string } };
    if (!res.ok) {
      const e = new Error(json.error?.message ?? `${method} ${path}: HTTP ${res.status}`);
      e.name = json.error?.name ?? 'HttpError';
      throw e;
    }
    return json as T;
  }

  /** POST /api/v1/generate as a stream of events. */
  async *generate(body: Record<string, unknown>, signal?: AbortSignal): AsyncGenerator<Record<string, unknown>> {
    const res = await fetch(this.apiUrl + '/api/v1/generate', {
      method: 'POST', signal,
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ ...body, stream: true }),
    });
    if (!res.ok || !res.body) {
      const json = await res.json().catch(() => ({})) as { error?: { name: string; message: string } };
      const e = new Error(json.error?.message ?? `generate: HTTP ${res.status}`);
      e.name = json.error?.name ?? 'HttpError';
      throw e;
    }
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        for (const line of block.split('\n')) if (line.startsWith('data: ')) yield JSON.parse(line.slice(6));
      }
    }
  }
}
