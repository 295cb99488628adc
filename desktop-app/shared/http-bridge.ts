/**
 * HushBridge over the daemon's loopback control API (runtime/api: bearer token, JSON, SSE).
 *
 * Used by Electron main (Node fetch) and by the browser development shim (window.fetch), so the
 * mapping from bridge calls to HTTP routes lives here once. Routes: runtime/api/ROUTES.md.
 */
import {
  type BackupFile,
  BridgeError,
  type BridgeEvent,
  type BridgeInfo,
  type ChatEvent,
  type ChatHandle,
  type ChatRequest,
  type ChatTimings,
  type Cloud,
  type CloudTestResult,
  type Device,
  type HushBridge,
  type HushEvent,
  type Identity,
  type Invite,
  type JoinResult,
  type LastSession,
  type Mode,
  MODES,
  type PlanView,
  type PrivacyReport,
} from './bridge.ts';
import { readSse } from './sse.ts';

export const API_PREFIX = '/api/v1';

/** Every route the bridge uses, in one place. */
export const ROUTES = {
  identity: `${API_PREFIX}/identity`,
  devices: `${API_PREFIX}/devices`,
  device: (peerId: string) => `${API_PREFIX}/devices/${encodeURIComponent(peerId)}`,
  deviceRevoke: (peerId: string) => `${API_PREFIX}/devices/${encodeURIComponent(peerId)}/revoke`,
  invites: `${API_PREFIX}/invites`,
  join: `${API_PREFIX}/invites/join`,
  clouds: `${API_PREFIX}/clouds`,
  cloud: (id: string) => `${API_PREFIX}/clouds/${encodeURIComponent(id)}`,
  cloudTest: (id: string) => `${API_PREFIX}/clouds/${encodeURIComponent(id)}/test`,
  plan: (mode: Mode) => `${API_PREFIX}/plan?mode=${encodeURIComponent(mode)}`,
  generate: `${API_PREFIX}/generate`,
  lastSession: `${API_PREFIX}/sessions/last`,
  privacy: `${API_PREFIX}/privacy`,
  events: `${API_PREFIX}/events`,
  // Proposed to the runtime/api owner; a daemon without them answers 404 and the UI says so.
  keysRotate: `${API_PREFIX}/keys/rotate`,
  keysExport: `${API_PREFIX}/keys/export`,
  keysImport: `${API_PREFIX}/keys/import`,
} as const;

/** JSON bodies larger than this are refused (the largest honest one is a long session's crossing list). */
export const MAX_JSON_CHARS = 16 << 20;

export interface HttpBridgeOptions {
  /** e.g. "http://127.0.0.1:7420"; "" means the page's own origin (serve.ts proxying the API). */
  baseUrl: string;
  token: string;
  kind: BridgeInfo['kind'];
  daemon?: BridgeInfo['daemon'];
  identityStorage?: BridgeInfo['identityStorage'];
  fetch?: typeof fetch;
  /** Per request, not for streams. */
  timeoutMs?: number;
  /** Delay before the events stream reconnects after a drop (doubles up to maxReconnectMs). */
  reconnectMs?: number;
  maxReconnectMs?: number;
}

type Json = Record<string, unknown>;

function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
/** List routes answer { key: [...] }; single-object routes answer the object or { key: object | null }. */
function field(body: unknown, key: string): unknown {
  return isObj(body) && key in body ? body[key] : body;
}
function list<T>(body: unknown, key: string): T[] {
  const v = field(body, key);
  if (!Array.isArray(v)) throw new BridgeError(`the daemon's answer has no "${key}" list`, 'BadResponse');
  return v as T[];
}
function object<T>(body: unknown, what: string): T {
  if (!isObj(body)) throw new BridgeError(`the daemon returned no ${what}`, 'BadResponse');
  return body as T;
}

/** { error: { name, message } } -> BridgeError carrying the daemon's error name. */
function toBridgeError(status: number, body: unknown, fallback: string): BridgeError {
  let name = status === 401 ? 'UnauthorizedError' : status === 404 ? 'NotFoundError' : status >= 500 ? 'DaemonError' : 'BadRequestError';
  let message = fallback;
  if (isObj(body)) {
    const e = isObj(body.error) ? body.error : body;
    if (typeof e.name === 'string') name = e.name;
    if (typeof e.message === 'string') message = e.message;
  }
  return new BridgeError(message, name, status);
}

/** Daemon timings (ttftMs, totalMs, perTokenMs, ...) merged with what the bridge measured itself. */
export function chatTimings(server: Record<string, unknown> | null, measured: { ttftMs: number | null; totalMs: number; tokens: number }): ChatTimings {
  const s = server ?? {};
  const totalMs = num(s.totalMs) ?? measured.totalMs;
  const ttftMs = num(s.ttftMs) ?? measured.ttftMs;
  const tokens = measured.tokens;
  const perTokenMs = num(s.perTokenMs) ?? (ttftMs !== null && tokens > 1 ? (totalMs - ttftMs) / (tokens - 1) : null);
  const extra: Record<string, number> = {};
  for (const [k, v] of Object.entries(s)) if (!['totalMs', 'ttftMs', 'perTokenMs'].includes(k) && num(v) !== null) extra[k] = v as number;
  return { ttftMs, totalMs, perTokenMs, tokens, tokensPerSecond: totalMs > 0 && tokens > 0 ? (tokens * 1000) / totalMs : null, extra };
}

export function createHttpBridge(opts: HttpBridgeOptions): HushBridge {
  const base = opts.baseUrl.replace(/\/+$/, '');
  const doFetch = opts.fetch ?? fetch.bind(globalThis);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const auth = { authorization: `Bearer ${opts.token}` };
  const where = base || 'this page';

  async function send(method: string, path: string, body: unknown, signal: AbortSignal, accept = 'application/json'): Promise<Response> {
    try {
      return await doFetch(base + path, {
        method,
        headers: body === undefined ? { ...auth, accept } : { ...auth, accept, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (e) {
      const name = (e as Error).name;
      if (name === 'TimeoutError') throw new BridgeError(`the Hush daemon did not answer ${method} ${path.split('?')[0]} within ${timeoutMs / 1000} s`, 'Timeout');
      if (name === 'AbortError') throw new BridgeError('cancelled', 'Cancelled');
      throw new BridgeError(`cannot reach the Hush daemon at ${where}: is it running?`, 'Unreachable');
    }
  }

  async function readJson(res: Response): Promise<unknown> {
    const text = await res.text();
    if (text.length > MAX_JSON_CHARS) throw new BridgeError('the daemon answer is too large', 'BadResponse', res.status);
    if (text === '') return null;
    try {
      return JSON.parse(text);
    } catch {
      if (!res.ok) return { error: { message: text.slice(0, 300) } };
      throw new BridgeError('the daemon answered with something that is not JSON', 'BadResponse', res.status);
    }
  }

  async function call(method: string, path: string, body?: unknown, notSupported?: string): Promise<unknown> {
    const res = await send(method, path, body, AbortSignal.timeout(timeoutMs));
    const parsed = await readJson(res);
    if (!res.ok) {
      if (notSupported && res.status === 404) throw new BridgeError(`${notSupported} is not supported by this Hush daemon yet`, 'NotSupported', 404);
      throw toBridgeError(res.status, parsed, `${method} ${path.split('?')[0]} failed with HTTP ${res.status}`);
    }
    return parsed;
  }

  function chat(request: ChatRequest, onEvent: (e: ChatEvent) => void): ChatHandle {
    const controller = new AbortController();
    const began = performance.now();
    let firstTokenAt: number | null = null;
    let tokens = 0;
    let ended = false;
    const emit = (e: ChatEvent) => {
      if (ended) return;
      if (e.type === 'done' || e.type === 'error') ended = true;
      try {
        onEvent(e);
      } catch {
        // A throwing listener must not break the stream.
      }
    };
    const run = async () => {
      const body = { prompt: request.prompt, mode: request.mode, stream: true, ...(request.maxTokens ? { maxTokens: request.maxTokens } : {}) };
      const res = await send('POST', ROUTES.generate, body, controller.signal, 'text/event-stream');
      if (!res.ok) throw toBridgeError(res.status, await readJson(res), `the answer failed with HTTP ${res.status}`);
      if (!res.body) throw new BridgeError('the daemon sent no answer stream', 'BadResponse', res.status);
      for await (const msg of readSse(res.body)) {
        let d: Json;
        try {
          const parsed: unknown = JSON.parse(msg.data);
          if (!isObj(parsed)) continue;
          d = parsed;
        } catch {
          continue; // not JSON: the API sends JSON only; skip rather than guess
        }
        if (d.type === 'start') {
          emit({
            type: 'start',
            mode: MODES.includes(d.mode as Mode) ? (d.mode as Mode) : request.mode,
            promptTokens: num(d.promptTokens) ?? 0,
            model: typeof d.model === 'string' ? d.model : null,
            sessionId: typeof d.sessionId === 'string' ? d.sessionId : null,
          });
        } else if (d.type === 'token') {
          firstTokenAt ??= performance.now();
          tokens++;
          emit({ type: 'token', text: typeof d.text === 'string' ? d.text : '' });
        } else if (d.type === 'event' && isObj(d.event)) {
          emit({ type: 'event', event: d.event as unknown as HushEvent });
        } else if (d.type === 'done') {
          const usage = isObj(d.usage) ? { promptTokens: num(d.usage.promptTokens) ?? 0, completionTokens: num(d.usage.completionTokens) ?? 0 } : null;
          const timings = chatTimings(isObj(d.timings) ? d.timings : null, {
            ttftMs: firstTokenAt === null ? null : firstTokenAt - began,
            totalMs: performance.now() - began,
            tokens: usage?.completionTokens || tokens,
          });
          emit({ type: 'done', finishReason: typeof d.finishReason === 'string' ? d.finishReason : 'stop', timings, usage });
          return;
        } else if (d.type === 'error') {
          const e = isObj(d.error) ? d.error : d;
          emit({ type: 'error', name: typeof e.name === 'string' ? e.name : 'GenerationError', message: typeof e.message === 'string' ? e.message : 'the answer failed' });
          return;
        }
      }
      emit({ type: 'error', name: 'GenerationError', message: 'the answer stream ended before it was done' });
    };
    const finished = run().catch((e: unknown) => {
      if (controller.signal.aborted) emit({ type: 'error', name: 'Cancelled', message: 'stopped' });
      else emit({ type: 'error', name: (e as BridgeError).code ?? (e as Error).name ?? 'Error', message: (e as Error).message ?? String(e) });
    });
    return { finished, cancel: () => controller.abort() };
  }

  function subscribe(onEvent: (e: BridgeEvent) => void): () => void {
    const controller = new AbortController();
    const first = opts.reconnectMs ?? 500;
    const max = opts.maxReconnectMs ?? 10_000;
    let connected: boolean | null = null;
    const connection = (up: boolean) => {
      if (connected === up) return;
      connected = up;
      try {
        onEvent({ type: 'connection', at: new Date().toISOString(), data: { connected: up } });
      } catch {
        // listener errors stay with the listener
      }
    };
    const loop = async () => {
      let delay = first;
      while (!controller.signal.aborted) {
        try {
          const res = await send('GET', ROUTES.events, undefined, controller.signal, 'text/event-stream');
          if (!res.ok || !res.body) {
            await res.body?.cancel();
            throw new BridgeError(`events failed with HTTP ${res.status}`, 'DaemonError', res.status);
          }
          connection(true);
          delay = first;
          for await (const msg of readSse(res.body)) {
            let data: unknown;
            try {
              data = JSON.parse(msg.data);
            } catch {
              continue;
            }
            if (!isObj(data) || typeof data.type !== 'string') continue;
            if (data.type === 'error') break; // the server ends the stream after this (e.g. we fell behind): reconnect
            try {
              onEvent(data as unknown as BridgeEvent);
            } catch {
              // listener errors stay with the listener
            }
          }
        } catch {
          // dropped or refused: reported below, then retried with backoff while subscribed
        }
        if (controller.signal.aborted) break;
        connection(false);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, delay);
          controller.signal.addEventListener('abort', () => {
            clearTimeout(t);
            resolve();
          }, { once: true });
        });
        delay = Math.min(max, delay * 2);
      }
    };
    void loop();
    return () => controller.abort();
  }

  return {
    info: async () => ({ kind: opts.kind, api: base || null, daemon: opts.daemon ?? 'unknown', identityStorage: opts.identityStorage ?? 'unknown' }),
    identity: async () => object<Identity>(await call('GET', ROUTES.identity), 'identity'),
    renameSelf: async (name) => object<Identity>(await call('PATCH', ROUTES.identity, { name }), 'identity'),
    devices: async () => list<Device>(await call('GET', ROUTES.devices), 'devices'),
    invite: async () => object<Invite>(await call('POST', ROUTES.invites, {}), 'invite'),
    join: async (code, name) => object<JoinResult>(await call('POST', ROUTES.join, name ? { code, name } : { code }), 'pairing result'),
    rename: async (peerId, name) => object<Device>(await call('PATCH', ROUTES.device(peerId), { name }), 'device'),
    revoke: async (peerId) => object<Device>(await call('POST', ROUTES.deviceRevoke(peerId), {}), 'device'),
    clouds: {
      list: async () => list<Cloud>(await call('GET', ROUTES.clouds), 'clouds'),
      add: async (multiaddr, name) => object<Cloud>(await call('POST', ROUTES.clouds, name ? { multiaddr, name } : { multiaddr }), 'cloud peer'),
      test: async (id) => object<CloudTestResult>(await call('POST', ROUTES.cloudTest(id), {}), 'test result'),
      remove: async (id) => {
        await call('DELETE', ROUTES.cloud(id));
      },
    },
    plan: async (mode) => object<PlanView>(await call('GET', ROUTES.plan(mode)), 'plan'),
    chat,
    lastSession: async () => (field(await call('GET', ROUTES.lastSession), 'session') as LastSession | null) ?? null,
    privacy: async () => (field(await call('GET', ROUTES.privacy), 'privacy') as PrivacyReport | null) ?? null,
    keys: {
      rotateIdentity: async () => object<Identity>(field(await call('POST', ROUTES.keysRotate, {}, 'Rotating the identity'), 'identity'), 'identity'),
      exportBackup: async (passphrase) => {
        const o = object<Json>(await call('POST', ROUTES.keysExport, { passphrase }, 'Exporting a key backup'), 'backup');
        const contents = typeof o.backup === 'string' ? o.backup : '';
        if (!contents) throw new BridgeError('the daemon returned an empty backup', 'BadResponse');
        const fileName = typeof o.fileName === 'string' && /^[\w.-]{1,128}$/.test(o.fileName) ? o.fileName : `hush-identity-${new Date().toISOString().slice(0, 10)}.hushkey`;
        return { fileName, contents } satisfies BackupFile;
      },
      importBackup: async (file, passphrase) =>
        object<Identity>(field(await call('POST', ROUTES.keysImport, { backup: file.contents, passphrase }, 'Importing a key backup'), 'identity'), 'identity'),
    },
    events: { subscribe },
  };
}
