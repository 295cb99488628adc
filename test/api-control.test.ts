import { request as httpRequest } from 'node:http';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Writable } from 'node:stream';
import pino from 'pino';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ApiTokenFileError,
  ClientDisconnectedError,
  EventHub,
  EventOverflowError,
  loadOrCreateApiToken,
  NonLoopbackHostError,
  redactUrl,
  startControlServer,
  StopSequenceFilter,
  StopSequenceReached,
  type RunningServer,
} from '../runtime/api/index.ts';
import { PEER_A, PEER_B, readSse, SCRIPT, SCRIPT_TEXT, ScriptedController, withTimeout } from './api-double.ts';

const TOKEN = 'a'.repeat(32) + 'b'.repeat(32);
const APP_ORIGIN = 'http://localhost:5173';

let ctl: ScriptedController;
let server: RunningServer;

beforeAll(async () => {
  ctl = new ScriptedController();
  server = await startControlServer({ controller: ctl, host: '127.0.0.1', port: 0, token: TOKEN, allowedOrigins: [APP_ORIGIN], bodyLimitBytes: 8192 });
});
afterAll(async () => {
  await server?.close();
});
beforeEach(() => {
  ctl.calls.length = 0;
});

function api(path: string, init: RequestInit & { token?: string | null } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const token = init.token === undefined ? TOKEN : init.token;
  if (token !== null) headers.set('authorization', `Bearer ${token}`);
  if (init.body !== undefined && !headers.has('content-type')) headers.set('content-type', 'application/json');
  return fetch(`${server.url}${path}`, { ...init, headers });
}
const json = (v: unknown) => JSON.stringify(v);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const jsonOf = (res: Response): Promise<any> => res.json();

/** node:http, because fetch will not send a custom Host header. */
function rawGet(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: server.port, path, method: 'GET', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('control server: binding and auth', () => {
  it('serves /health without a token', async () => {
    const res = await fetch(`${server.url}/health`);
    expect(res.status).toBe(200);
    expect(await jsonOf(res)).toEqual({ ok: true });
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('refuses to listen beyond loopback and refuses weak tokens', async () => {
    await expect(startControlServer({ controller: ctl, host: '0.0.0.0', token: TOKEN })).rejects.toBeInstanceOf(NonLoopbackHostError);
    await expect(startControlServer({ controller: ctl, host: '192.168.1.10', token: TOKEN })).rejects.toThrow(/loopback/);
    await expect(startControlServer({ controller: ctl, token: 'short' })).rejects.toThrow(RangeError);
  });

  it('answers 401 with a clear JSON error without a token, with a wrong token, or another scheme', async () => {
    const none = await api('/api/v1/identity', { token: null });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    const noneBody = await jsonOf(none);
    expect(noneBody.error.name).toBe('UnauthorizedError');
    expect(noneBody.error.message).toMatch(/missing Authorization: Bearer/);

    const wrong = await api('/api/v1/identity', { token: TOKEN.slice(0, -1) + 'c' });
    expect(wrong.status).toBe(401);
    expect((await jsonOf(wrong)).error.message).toMatch(/wrong API token/);

    const basic = await api('/api/v1/identity', { token: null, headers: { authorization: `Basic ${TOKEN}` } });
    expect(basic.status).toBe(401);
    expect((await jsonOf(basic)).error.message).toMatch(/not "Bearer <token>"/);

    // The query-string token is accepted on the events route only.
    const q = await api(`/api/v1/identity?token=${TOKEN}`, { token: null });
    expect(q.status).toBe(401);

    expect(ctl.calls).toEqual([]);
    const ok = await api('/api/v1/identity');
    expect(ok.status).toBe(200);
    expect((await jsonOf(ok)).name).toBe('laptop');
  });

  it('refuses requests whose Host is not a loopback name (DNS rebinding)', async () => {
    const evil = await rawGet('/api/v1/identity', { host: 'evil.example:80', authorization: `Bearer ${TOKEN}` });
    expect(evil.status).toBe(403);
    expect(JSON.parse(evil.body).error.name).toBe('ForbiddenError');
    const good = await rawGet('/api/v1/identity', { host: `localhost:${server.port}`, authorization: `Bearer ${TOKEN}` });
    expect(good.status).toBe(200);
  });
});

describe('control server: CORS', () => {
  it('answers a preflight from the allowed origin before auth', async () => {
    const res = await fetch(`${server.url}/api/v1/devices/${PEER_A}`, {
      method: 'OPTIONS',
      headers: { origin: APP_ORIGIN, 'access-control-request-method': 'PATCH', 'access-control-request-headers': 'authorization, content-type' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
    expect(res.headers.get('access-control-allow-methods')).toContain('PATCH');
    expect(res.headers.get('access-control-allow-headers')).toContain('authorization');
  });

  it('sets the allow-origin header on real requests from the allowed origin', async () => {
    const res = await api('/api/v1/identity', { headers: { origin: APP_ORIGIN } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
  });

  it('refuses unknown origins, preflight and real request, before the controller runs', async () => {
    const pre = await fetch(`${server.url}/api/v1/devices/${PEER_A}/revoke`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(pre.status).toBe(403);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();

    const res = await api(`/api/v1/devices/${PEER_A}/revoke`, { method: 'POST', headers: { origin: 'https://evil.example' } });
    expect(res.status).toBe(403);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    const body = await jsonOf(res);
    expect(body.error.name).toBe('ForbiddenError');
    expect(body.error.message).toContain('https://evil.example');
    expect(ctl.calls).toEqual([]);
  });
});

describe('control server: routes', () => {
  it('identity: read and rename', async () => {
    const res = await api('/api/v1/identity', { method: 'PATCH', body: json({ name: '  studio  ' }) });
    expect(res.status).toBe(200);
    expect((await jsonOf(res)).name).toBe('studio');
  });

  it('devices: list, rename, revoke; unknown and repeated revocations are 404 / 409', async () => {
    const list = await jsonOf(await api('/api/v1/devices'));
    expect(list.devices.map((d: { peerId: string }) => d.peerId)).toEqual([PEER_A, PEER_B]);

    const renamed = await api(`/api/v1/devices/${PEER_B}`, { method: 'PATCH', body: json({ name: 'pixel' }) });
    expect(renamed.status).toBe(200);
    expect((await jsonOf(renamed)).name).toBe('pixel');

    const missing = await api('/api/v1/devices/12D3KooWNOPE', { method: 'PATCH', body: json({ name: 'x' }) });
    expect(missing.status).toBe(404);
    expect((await jsonOf(missing)).error).toEqual({ name: 'NotFoundError', message: 'no paired device 12D3KooWNOPE' });

    const revoked = await api(`/api/v1/devices/${PEER_B}/revoke`, { method: 'POST' });
    expect(revoked.status).toBe(200);
    expect((await jsonOf(revoked)).revoked).toBeTruthy();
    // A client that always sends a JSON content type with an empty body is accepted too.
    const again = await api(`/api/v1/devices/${PEER_B}/revoke`, { method: 'POST', body: '' });
    expect(again.status).toBe(409);
    expect((await jsonOf(again)).error.name).toBe('ConflictError');
  });

  it('invites: create and join; an expired code is 410', async () => {
    const inv = await api('/api/v1/invites', { method: 'POST' });
    expect(inv.status).toBe(201);
    expect(await jsonOf(inv)).toEqual({ code: 'HUSH-ABCD-EFGH', expiresAt: '2025-02-01T00:10:00.000Z' });

    const join = await api('/api/v1/invites/join', { method: 'POST', body: json({ code: 'HUSH-ABCD-EFGH', name: 'desk' }) });
    expect(join.status).toBe(200);
    expect(await jsonOf(join)).toEqual({ peerId: PEER_A, name: 'desk' });

    const expired = await api('/api/v1/invites/join', { method: 'POST', body: json({ code: 'EXPIRED' }) });
    expect(expired.status).toBe(410);
    expect((await jsonOf(expired)).error.name).toBe('GoneError');
  });

  it('clouds: plan needs one (503), add (201), duplicate (409), test, remove (204)', async () => {
    const noCloud = await api('/api/v1/plan?mode=scx');
    expect(noCloud.status).toBe(503);
    expect((await jsonOf(noCloud)).error).toEqual({ name: 'UnavailableError', message: 'mode scx needs a cloud peer; add one first' });

    const ma = '/ip4/127.0.0.1/tcp/4010/p2p/12D3KooWCLOUD';
    const added = await api('/api/v1/clouds', { method: 'POST', body: json({ multiaddr: ma, name: 'gpu box' }) });
    expect(added.status).toBe(201);
    const cloud = await jsonOf(added);
    expect(cloud).toMatchObject({ multiaddr: ma, name: 'gpu box' });

    const dup = await api('/api/v1/clouds', { method: 'POST', body: json({ multiaddr: ma }) });
    expect(dup.status).toBe(409);

    expect((await jsonOf(await api('/api/v1/clouds'))).clouds).toHaveLength(1);
    const test = await api(`/api/v1/clouds/${cloud.id}/test`, { method: 'POST' });
    expect(await jsonOf(test)).toEqual({ reachable: false, rttMs: null, error: 'connection refused' });

    const plan = await api('/api/v1/plan?mode=scx');
    expect(plan.status).toBe(200);
    expect(await jsonOf(plan)).toMatchObject({ mode: 'scx', predicted: { ttftMs: 120, perTokenMs: 40 }, why: ['laptop has the most free memory'] });

    const del = await api(`/api/v1/clouds/${cloud.id}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect((await api(`/api/v1/clouds/${cloud.id}`, { method: 'DELETE' })).status).toBe(404);
  });

  it('models, privacy (null until measured) and the last session', async () => {
    expect(await jsonOf(await api('/api/v1/models'))).toEqual({ models: [{ id: 'tiny-llama', created: 1_700_000_000, ownedBy: 'hush' }] });
    expect(await jsonOf(await api('/api/v1/privacy'))).toEqual({ privacy: null });
    // Nothing generated yet in this file.
    expect(await jsonOf(await api('/api/v1/sessions/last'))).toEqual({ session: null });
  });

  it('keys: rotate, export and import reach the controller with the passphrase; its errors keep their name and status', async () => {
    const before = await jsonOf(await api('/api/v1/identity'));
    const exported = await api('/api/v1/keys/export', { method: 'POST', body: json({ passphrase: 'correct horse' }) });
    expect(exported.status).toBe(200);
    const file = await jsonOf(exported);
    expect(file.fileName).toBe(`hush-identity-${before.fingerprint}.hushkey`);
    expect(typeof file.backup).toBe('string');

    // No body, an empty body or {} all rotate (like the other "no body" routes).
    const rotated = await api('/api/v1/keys/rotate', { method: 'POST' });
    expect(rotated.status).toBe(200);
    const { identity: after, message } = await jsonOf(rotated);
    expect(message).toMatch(/Paired devices know it only by its old PeerId.*pair anew with a fresh invite code/);
    expect(after.peerId).not.toBe(before.peerId);
    expect(after.fingerprint).not.toBe(before.fingerprint);
    expect(after.name).toBe(before.name);
    expect((await api('/api/v1/keys/rotate', { method: 'POST', body: '{}' })).status).toBe(200);

    const wrong = await api('/api/v1/keys/import', { method: 'POST', body: json({ backup: file.backup, passphrase: 'the wrong horse' }) });
    expect(wrong.status).toBe(400);
    expect((await jsonOf(wrong)).error).toEqual({ name: 'BackupPassphraseError', message: 'the passphrase does not open this backup' });
    const junk = await api('/api/v1/keys/import', { method: 'POST', body: json({ backup: 'not json', passphrase: 'correct horse' }) });
    expect(junk.status).toBe(400);
    expect((await jsonOf(junk)).error.name).toBe('BackupCorruptError');

    const imported = await api('/api/v1/keys/import', { method: 'POST', body: json({ backup: file.backup, passphrase: 'correct horse' }) });
    expect(imported.status).toBe(200);
    const restored = await jsonOf(imported);
    expect(restored.identity).toEqual(before);
    expect(restored.message).toMatch(/identity, roster and cloud peers from the backup/);
    expect(await jsonOf(await api('/api/v1/identity'))).toEqual(before);
    expect(ctl.passphrases).toEqual(['correct horse', 'the wrong horse', 'correct horse', 'correct horse']);
  });

  it('keys: a backup of the largest allowed size fits the import route, one character more is refused by name', async () => {
    // 64 Ki characters of JSON-escaped text (quotes double in the request body) still reach validation.
    const max = '"'.repeat(64 * 1024);
    const atMax = await api('/api/v1/keys/import', { method: 'POST', body: json({ backup: max, passphrase: 'correct horse' }) });
    expect(atMax.status).toBe(400);
    expect((await jsonOf(atMax)).error.name).toBe('BackupCorruptError'); // reached the controller
    ctl.calls.length = 0;
    const over = await api('/api/v1/keys/import', { method: 'POST', body: json({ backup: max + 'x', passphrase: 'correct horse' }) });
    expect(over.status).toBe(400);
    const err = (await jsonOf(over)).error;
    expect(err.name).toBe('ValidationError');
    expect(err.message).toMatch(/backup: backup must be at most 65536 characters/);
    const huge = await api('/api/v1/keys/import', { method: 'POST', body: json({ backup: 'x'.repeat(200 * 1024), passphrase: 'correct horse' }) });
    expect(huge.status).toBe(413);
    expect(ctl.calls).toEqual([]);
  });

  it('answers unknown routes with a JSON 404', async () => {
    const res = await api('/api/v1/nope');
    expect(res.status).toBe(404);
    expect((await jsonOf(res)).error.name).toBe('NotFoundError');
  });
});

describe('control server: validation', () => {
  const cases: [string, string, string, unknown, RegExp][] = [
    ['PATCH', '/api/v1/identity', 'empty name', { name: '   ' }, /body: name: name must not be empty/],
    ['PATCH', '/api/v1/identity', 'unknown field', { name: 'ok', admin: true }, /Unrecognized key.*admin/],
    ['PATCH', '/api/v1/identity', 'control character', { name: 'a\u0007b' }, /control characters/],
    ['PATCH', '/api/v1/identity', 'long name', { name: 'x'.repeat(65) }, /at most 64/],
    ['PATCH', `/api/v1/devices/${PEER_A}`, 'missing name', {}, /name/],
    ['PATCH', '/api/v1/devices/not-a-peer!', 'bad peerId', { name: 'x' }, /path: peerId/],
    ['POST', `/api/v1/devices/${PEER_A}/revoke`, 'a body on revoke', { force: true }, /Unrecognized key/],
    ['POST', '/api/v1/invites', 'a body on create', { ttl: 5 }, /Unrecognized key/],
    ['POST', '/api/v1/invites/join', 'missing code', { name: 'x' }, /code/],
    ['POST', '/api/v1/invites/join', 'huge code', { code: 'H'.repeat(4097) }, /4096/],
    ['POST', '/api/v1/clouds', 'not a multiaddr', { multiaddr: '203.0.113.5:4001' }, /must start with "\/"/],
    ['POST', '/api/v1/clouds/bad%20id/test', 'bad cloud id', undefined, /path: id/],
    ['GET', '/api/v1/plan?mode=fast', 'bad mode', undefined, /query: mode/],
    ['GET', '/api/v1/plan', 'missing mode', undefined, /query: mode/],
    ['POST', '/api/v1/generate', 'prompt and messages', { prompt: 'a', messages: [{ role: 'user', content: 'b' }] }, /exactly one of "prompt" or "messages"/],
    ['POST', '/api/v1/generate', 'neither', { maxTokens: 4 }, /exactly one/],
    ['POST', '/api/v1/generate', 'maxTokens 0', { prompt: 'a', maxTokens: 0 }, /maxTokens/],
    ['POST', '/api/v1/generate', 'bad mode', { prompt: 'a', mode: 'cloud' }, /mode/],
    ['POST', '/api/v1/generate', 'bad role', { messages: [{ role: 'tool', content: 'x' }] }, /messages\.0\.role/],
    ['POST', '/api/v1/keys/rotate', 'a body on rotate', { force: true }, /Unrecognized key/],
    ['POST', '/api/v1/keys/export', 'no passphrase', {}, /passphrase/],
    ['POST', '/api/v1/keys/export', 'short passphrase', { passphrase: 'hunter2' }, /passphrase: passphrase must have at least 8 characters/],
    ['POST', '/api/v1/keys/export', 'long passphrase', { passphrase: 'p'.repeat(1025) }, /at most 1024 characters/],
    ['POST', '/api/v1/keys/export', 'unknown field', { passphrase: 'correct horse', kdf: 'md5' }, /Unrecognized key.*kdf/],
    ['POST', '/api/v1/keys/import', 'no backup', { passphrase: 'correct horse' }, /backup/],
    ['POST', '/api/v1/keys/import', 'empty backup', { backup: '', passphrase: 'correct horse' }, /backup must not be empty/],
    ['POST', '/api/v1/keys/import', 'short passphrase', { backup: '{}', passphrase: 'hunter2' }, /at least 8/],
    ['POST', '/api/v1/generate', 'too many stops', { prompt: 'a', stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }, /at most 16 stop strings/],
  ];
  for (const [method, path, what, body, message] of cases) {
    it(`${method} ${path}: ${what} -> 400`, async () => {
      const res = await api(path, { method, body: body === undefined ? undefined : json(body) });
      expect(res.status).toBe(400);
      const err = (await jsonOf(res)).error;
      expect(err.name).toBe('ValidationError');
      expect(err.message).toMatch(message);
      // A refused passphrase is named, never echoed.
      if (body && typeof body === 'object' && 'passphrase' in body) expect(JSON.stringify(err)).not.toContain((body as { passphrase: string }).passphrase);
      expect(ctl.calls.filter((c) => c !== 'identity')).toEqual([]);
    });
  }

  it('rejects malformed JSON (400) and bodies over the limit (413)', async () => {
    const bad = await api('/api/v1/identity', { method: 'PATCH', body: '{"name": ' });
    expect(bad.status).toBe(400);
    expect((await jsonOf(bad)).error.name).toBe('ValidationError');

    const big = await api('/api/v1/identity', { method: 'PATCH', body: json({ name: 'x'.repeat(9000) }) });
    expect(big.status).toBe(413);
    expect((await jsonOf(big)).error.name).toBe('PayloadTooLargeError');
    expect(ctl.calls).toEqual([]);
  });
});

describe('control server: generation', () => {
  it('streams start, tokens and done as SSE data events', async () => {
    const res = await api('/api/v1/generate', { method: 'POST', body: json({ prompt: 'Say it', mode: 'local', maxTokens: 4 }) });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    expect(res.headers.get('x-hush-mode')).toBe('local');
    const { items } = await readSse(res);
    const events = items.filter((i) => i.data).map((i) => JSON.parse(i.data!));
    expect(events[0]).toEqual({ type: 'start', mode: 'local', promptTokens: 7, model: 'tiny-llama' });
    expect(events.slice(1, 5)).toEqual(SCRIPT.slice(0, 4).map((text, i) => ({ type: 'token', text, ids: [100 + i] })));
    expect(events[5]).toMatchObject({ type: 'done', finishReason: 'length', usage: { promptTokens: 7, completionTokens: 4 } });
    expect(events).toHaveLength(6);
    expect(ctl.requests.at(-1)).toEqual({ prompt: 'Say it', mode: 'local', maxTokens: 4 });
    expect(await jsonOf(await api('/api/v1/sessions/last'))).toEqual({ session: { mode: 'local', crossings: [], totalBytes: 0 } });
  });

  it('cuts at a stop string across tokens, and aborts the controller with StopSequenceReached', async () => {
    const aborted = ctl.nextAbort();
    const res = await api('/api/v1/generate', { method: 'POST', body: json({ messages: [{ role: 'user', content: 'go' }], stop: ['wn fox'], stream: false }) });
    expect(res.status).toBe(200);
    const body = await jsonOf(res);
    expect(body.text).toBe(' The quick bro');
    expect(body.finishReason).toBe('stop');
    expect(body.usage).toEqual({ promptTokens: 7, completionTokens: 4 });
    expect(body.tokenIds).toEqual([100, 101, 102, 103]);
    expect(await withTimeout(aborted, 2000, 'controller abort')).toBeInstanceOf(StopSequenceReached);
    expect(ctl.requests.at(-1)?.messages).toEqual([{ role: 'user', content: 'go' }]);
  });

  it('reports a controller failure before the first token as an HTTP error status', async () => {
    ctl.generateFailure = Object.assign(new Error('no cloud peer reachable'), { name: 'CloudUnreachableError', statusCode: 503 });
    try {
      const res = await api('/api/v1/generate', { method: 'POST', body: json({ prompt: 'x' }) });
      expect(res.status).toBe(503);
      expect((await jsonOf(res)).error).toEqual({ name: 'CloudUnreachableError', message: 'no cloud peer reachable' });
    } finally {
      ctl.generateFailure = null;
    }
  });

  it('aborts the generation when the client disconnects', async () => {
    ctl.endless = true;
    ctl.tokenDelayMs = 5;
    try {
      const aborted = ctl.nextAbort();
      const ac = new AbortController();
      const res = await api('/api/v1/generate', { method: 'POST', body: json({ prompt: 'forever', maxTokens: 100000 }), signal: ac.signal });
      await readSse(res, (items) => items.filter((i) => i.data?.includes('"token"')).length >= 3);
      ac.abort();
      expect(await withTimeout(aborted, 3000, 'controller abort')).toBeInstanceOf(ClientDisconnectedError);
    } finally {
      ctl.endless = false;
      ctl.tokenDelayMs = 0;
    }
  });
});

describe('control server: live events (SSE)', () => {
  it('delivers published events to a header-authenticated stream and drops the subscriber on disconnect', async () => {
    const ac = new AbortController();
    const res = await api('/api/v1/events', { signal: ac.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const published: unknown[] = [];
    const got = await readSse(res, (items) => {
      if (items.some((i) => i.comment === 'subscribed') && published.length === 0) {
        published.push(ctl.publish('device.online', { peerId: PEER_A }));
        published.push(ctl.publish('session.start', { sessionId: 's1', data: { mode: 'scx' } }));
      }
      return items.filter((i) => i.data).length >= 2;
    });
    expect(got.items.filter((i) => i.data).map((i) => JSON.parse(i.data!))).toEqual(published);
    expect(got.raw.startsWith('retry: 3000\n\n')).toBe(true);
    ac.abort();
    for (let i = 0; i < 100 && ctl.hub.subscriberCount > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(ctl.hub.subscriberCount).toBe(0);
  });

  it('accepts the token as a query parameter (EventSource) and refuses a wrong one', async () => {
    const wrong = await fetch(`${server.url}/api/v1/events?token=${'0'.repeat(64)}`);
    expect(wrong.status).toBe(401);
    expect((await jsonOf(wrong)).error.message).toMatch(/token query parameter/);

    const res = await fetch(`${server.url}/api/v1/events?token=${TOKEN}`, { headers: { origin: APP_ORIGIN } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
    let sent = false;
    const got = await readSse(res, (items) => {
      if (!sent && items.some((i) => i.comment === 'subscribed')) {
        sent = true;
        ctl.publish('device.revoked', { peerId: PEER_B });
      }
      return items.some((i) => i.data);
    });
    expect(JSON.parse(got.items.find((i) => i.data)!.data!)).toMatchObject({ type: 'device.revoked', peerId: PEER_B });
  });

  it('never logs the query token', async () => {
    expect(redactUrl(`/api/v1/events?x=1&token=${TOKEN}`)).toBe('/api/v1/events?x=1&token=[redacted]');
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const logged = await startControlServer({ controller: ctl, token: TOKEN, logger: pino({ level: 'info' }, sink) });
    try {
      const wrong = await fetch(`${logged.url}/api/v1/events?token=${'f'.repeat(64)}`);
      expect(wrong.status).toBe(401);
      const ac = new AbortController();
      const res = await fetch(`${logged.url}/api/v1/events?token=${TOKEN}`, { signal: ac.signal });
      await readSse(res, (items) => items.some((i) => i.comment === 'subscribed'));
      ac.abort();
      expect((await fetch(`${logged.url}/api/v1/identity`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    } finally {
      await logged.close();
    }
    const all = lines.join('');
    expect(all).toContain('token=[redacted]');
    expect(all).toContain('/api/v1/identity');
    expect(all).not.toContain(TOKEN);
    expect(all).not.toContain('f'.repeat(64));
  });
});

describe('control server: shutdown', () => {
  it('sends heartbeats, and close() ends open event streams and aborts running generations', async () => {
    const c2 = new ScriptedController();
    c2.endless = true;
    c2.tokenDelayMs = 5;
    const s2 = await startControlServer({ controller: c2, token: TOKEN, heartbeatMs: 20 });
    let closed = false;
    try {
      const events = await fetch(`${s2.url}/api/v1/events`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const beat = await readSse(events, (items) => items.some((i) => i.comment === 'ping'));
      expect(beat.items.map((i) => i.comment)).toContain('ping');
      const events2 = await fetch(`${s2.url}/api/v1/events`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const gen = await fetch(`${s2.url}/api/v1/generate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'x', maxTokens: 100000 }),
      });
      expect(gen.status).toBe(200);
      const aborted = c2.nextAbort();
      for (let i = 0; i < 100 && c2.hub.subscriberCount < 1; i++) await new Promise((r) => setTimeout(r, 10));
      await withTimeout(s2.close(), 3000, 'server close');
      closed = true;
      expect(await withTimeout(aborted, 3000, 'generation abort on close')).toBeInstanceOf(ClientDisconnectedError);
      // Subscriptions end as their sockets close, which may trail close() by a tick under load.
      for (let i = 0; i < 200 && c2.hub.subscriberCount > 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(c2.hub.subscriberCount).toBe(0);
      // Both streams end (cut off, or ended cleanly) instead of hanging until the read times out.
      for (const res of [events2, gen]) {
        const outcome = await readSse(res, undefined, 2000).then(
          () => 'ended',
          (e: Error) => e.message,
        );
        expect(outcome).not.toMatch(/did not finish/);
      }
    } finally {
      if (!closed) await s2.close();
    }
  });
});

describe('StopSequenceFilter', () => {
  it('holds back a possible stop prefix and releases it when it turns out not to be one', () => {
    const f = new StopSequenceFilter(['</s>', 'END']);
    expect(f.push('Hello <')).toEqual({ emit: 'Hello ', stopped: false });
    expect(f.push('/b')).toEqual({ emit: '</b', stopped: false });
    expect(f.push(' E')).toEqual({ emit: ' ', stopped: false });
    expect(f.push('N')).toEqual({ emit: '', stopped: false });
    expect(f.flush()).toBe('EN');
  });

  it('cuts at the earliest stop string, even one split over tokens', () => {
    const f = new StopSequenceFilter(['xyz', 'b']);
    expect(f.push('a x')).toEqual({ emit: 'a ', stopped: false });
    expect(f.push('yzb tail')).toEqual({ emit: '', stopped: true });
    expect(f.push('more')).toEqual({ emit: '', stopped: true });
    expect(f.flush()).toBe('');
    const g = new StopSequenceFilter(['lazy', 'the']);
    expect(g.push(' over the lazy')).toEqual({ emit: ' over ', stopped: true });
  });
});

describe('EventHub', () => {
  it('drops a subscriber that falls too far behind with EventOverflowError', async () => {
    const hub = new EventHub<number>(3);
    const sub = hub.subscribe();
    for (let i = 0; i < 4; i++) hub.publish(i);
    expect(hub.subscriberCount).toBe(0);
    await expect(sub.next()).rejects.toBeInstanceOf(EventOverflowError);
  });

  it('delivers in order and ends on abort', async () => {
    const hub = new EventHub<number>();
    const ac = new AbortController();
    const sub = hub.subscribe(ac.signal);
    hub.publish(1);
    hub.publish(2);
    expect((await sub.next()).value).toBe(1);
    expect((await sub.next()).value).toBe(2);
    const pending = sub.next();
    ac.abort();
    expect(await pending).toEqual({ value: undefined, done: true });
    expect(hub.subscriberCount).toBe(0);
  });
});

describe('loadOrCreateApiToken', () => {
  it('creates a 0600 file of 64 hex characters once, then reads it back', () => {
    const home = mkdtempSync(join(tmpdir(), 'hush-api-'));
    try {
      const t1 = loadOrCreateApiToken(join(home, 'h'));
      expect(t1).toMatch(/^[0-9a-f]{64}$/);
      const file = join(home, 'h', 'api-token');
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(statSync(join(home, 'h')).mode & 0o777).toBe(0o700);
      expect(readFileSync(file, 'utf8').trim()).toBe(t1);
      expect(loadOrCreateApiToken(join(home, 'h'))).toBe(t1);

      chmodSync(file, 0o644);
      expect(loadOrCreateApiToken(join(home, 'h'))).toBe(t1);
      expect(statSync(file).mode & 0o777).toBe(0o600);

      const other = loadOrCreateApiToken(join(home, 'other'));
      expect(other).not.toBe(t1);

      writeFileSync(file, 'not a token\n');
      expect(() => loadOrCreateApiToken(join(home, 'h'))).toThrow(ApiTokenFileError);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
