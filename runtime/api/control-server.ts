import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import * as z from 'zod';
import { assertSecret, bearerToken, secretsEqual } from './auth.ts';
import type { DeviceController } from './controller.ts';
import { ClientDisconnectedError, errorView, UnauthorizedError } from './errors.ts';
import { collectGeneration, runGeneration, untilAborted } from './generation.ts';
import { assertLoopbackBind, controlErrorBody, createBaseApp, listen, parseWith, sendError, type RunningServer } from './http.ts';
import { openAIErrorBody, registerOpenAIRoutes, type OpenAIRoutesOptions } from './openai.ts';
import { clientGoneSignal, SseStream } from './sse.ts';
import {
  AddCloudBodySchema,
  CloudIdSchema,
  CreateInviteBodySchema,
  ExportBackupBodySchema,
  GenerateBodySchema,
  ImportBackupBodySchema,
  JoinInviteBodySchema,
  KEY_LIMITS,
  PeerIdSchema,
  PlanQuerySchema,
  RenameBodySchema,
  type GenerateRequest,
} from './types.ts';

export interface ControlServerOptions {
  controller: DeviceController;
  /** Loopback only: 127.0.0.1 (default), ::1 or localhost. Anything else throws NonLoopbackHostError. */
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Bearer token for every /api/v1 route (see loadOrCreateApiToken). */
  token: string;
  /** Browser origins allowed to call the API (the app's dev server origin). Requests with no Origin header are not browser requests and need only the token. */
  allowedOrigins?: string[];
  /** Largest JSON body for the small control routes (default 64 KiB); /generate allows generateBodyLimitBytes. */
  bodyLimitBytes?: number;
  /** Largest body for POST /api/v1/generate (default 8 MiB). */
  generateBodyLimitBytes?: number;
  /** SSE heartbeat comment interval for /api/v1/events (default 15 s): keeps proxies from idling the stream out and finds dead clients. */
  heartbeatMs?: number;
  /** Also serve the OpenAI-compatible API under /v1 on this server, with its own key. */
  openai?: Omit<OpenAIRoutesOptions, 'controller'>;
  /** Request lines are logged without the ?token= parameter; keys and tokens are never logged. */
  logger?: FastifyBaseLogger;
}

const EVENTS_PATH = '/api/v1/events';
/**
 * POST /api/v1/keys/import carries a backup of up to KEY_LIMITS.backupMax characters as a JSON
 * string: escaping can double it (quotes, newlines), plus the passphrase. The zod schema then holds
 * the backup itself to KEY_LIMITS.backupMax.
 */
export const KEYS_IMPORT_BODY_LIMIT_BYTES = 2 * KEY_LIMITS.backupMax + 8 * 1024;

/** What POST /api/v1/keys/rotate tells the caller to do next (the app and CLI show it). */
export const ROTATED_MESSAGE =
  'This device has a new identity key, PeerId and fingerprint. Paired devices know it only by its old PeerId, so they refuse it until they pair again: ' +
  'on each of them revoke the old entry for this device, then pair anew with a fresh invite code (create it on either side and join it on the other). ' +
  'This device kept its roster and cloud peers; cloud peers need nothing.';
/** What POST /api/v1/keys/import tells the caller. */
export const IMPORTED_MESSAGE =
  'This device now uses the identity, roster and cloud peers from the backup. Devices paired with that identity recognise it again; ' +
  'devices that knew only the identity it replaced must pair again with a fresh invite code.';

/**
 * The loopback control API for the desktop app and the CLI. Routes: see ROUTES.md.
 *
 * Tokens: every /api/v1 route needs `Authorization: Bearer <token>`. GET /api/v1/events also takes
 * `?token=<token>`, because a browser's EventSource cannot set headers. Tradeoff: a token in a URL
 * can end up in history, logs and crash reports. This server never logs it (URLs are redacted), the
 * server only listens on loopback, and clients that can (Electron main, the CLI, fetch()-based SSE
 * readers) should send the header instead.
 */
export async function startControlServer(opts: ControlServerOptions): Promise<RunningServer> {
  const host = opts.host ?? '127.0.0.1';
  assertLoopbackBind(host);
  assertSecret('token', opts.token);
  if (opts.openai) assertSecret('openai.apiKey', opts.openai.apiKey);
  const token = opts.token;
  const app = createBaseApp({
    bodyLimitBytes: opts.bodyLimitBytes ?? 64 * 1024,
    allowedOrigins: opts.allowedOrigins ?? [],
    checkHostHeader: true,
    logger: opts.logger,
    formatError: (err, req) => (req.url.startsWith('/v1/') ? openAIErrorBody(err) : controlErrorBody(err)),
  });
  app.get('/health', async () => ({ ok: true }));
  await app.register(
    async (api) => {
      registerControlRoutes(api, {
        controller: opts.controller,
        token,
        heartbeatMs: opts.heartbeatMs ?? 15_000,
        generateBodyLimitBytes: opts.generateBodyLimitBytes ?? 8 * 1024 * 1024,
      });
    },
    { prefix: '/api/v1' },
  );
  if (opts.openai) await registerOpenAIRoutes(app, { ...opts.openai, controller: opts.controller });
  return listen(app, host, opts.port ?? 0);
}

interface ControlRouteOptions {
  controller: DeviceController;
  token: string;
  heartbeatMs: number;
  generateBodyLimitBytes: number;
}

function registerControlRoutes(api: FastifyInstance, o: ControlRouteOptions): void {
  const c = o.controller;
  const fmt = (e: Parameters<typeof controlErrorBody>[0]) => controlErrorBody(e);
  api.setErrorHandler(async (err, _req, reply) => sendError(reply, err, fmt));

  api.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    let given = bearerToken(req.headers.authorization);
    let how = 'Authorization: Bearer header';
    if (given === null && req.routeOptions.url === EVENTS_PATH) {
      const q = (req.query as Record<string, unknown> | undefined)?.token;
      if (typeof q === 'string' && q.length > 0) {
        given = q;
        how = 'token query parameter';
      }
    }
    if (given === null) {
      const hint = req.headers.authorization ? 'the Authorization header is not "Bearer <token>"' : 'missing Authorization: Bearer <token> header';
      return sendError(reply, new UnauthorizedError(`${hint} (the token is in the api-token file of the Hush home directory)`), fmt);
    }
    if (!secretsEqual(given, o.token)) {
      return sendError(reply, new UnauthorizedError(`wrong API token in the ${how}`), fmt);
    }
  });

  const peerParam = z.object({ peerId: PeerIdSchema });
  const cloudParam = z.object({ id: CloudIdSchema });

  api.get('/identity', async () => c.identity());
  api.patch('/identity', async (req) => c.renameSelf(parseWith(RenameBodySchema, req.body, 'body').name));

  api.get('/devices', async () => ({ devices: await c.devices() }));
  api.patch('/devices/:peerId', async (req) => {
    const { peerId } = parseWith(peerParam, req.params, 'path');
    return c.renameDevice(peerId, parseWith(RenameBodySchema, req.body, 'body').name);
  });
  api.post('/devices/:peerId/revoke', async (req) => {
    const { peerId } = parseWith(peerParam, req.params, 'path');
    parseWith(CreateInviteBodySchema.optional(), req.body, 'body');
    return c.revokeDevice(peerId);
  });

  api.post('/invites', async (req, reply) => {
    parseWith(CreateInviteBodySchema.optional(), req.body, 'body');
    return reply.code(201).send(await c.createInvite());
  });
  api.post('/invites/join', async (req) => {
    const b = parseWith(JoinInviteBodySchema, req.body, 'body');
    return c.joinInvite(b.code, b.name);
  });

  api.get('/clouds', async () => ({ clouds: await c.clouds() }));
  api.post('/clouds', async (req, reply) => {
    const b = parseWith(AddCloudBodySchema, req.body, 'body');
    return reply.code(201).send(await c.addCloud(b.multiaddr, b.name));
  });
  api.post('/clouds/:id/test', async (req) => {
    const { id } = parseWith(cloudParam, req.params, 'path');
    parseWith(CreateInviteBodySchema.optional(), req.body, 'body');
    return c.testCloud(id);
  });
  api.delete('/clouds/:id', async (req, reply) => {
    const { id } = parseWith(cloudParam, req.params, 'path');
    await c.removeCloud(id);
    return reply.code(204).send();
  });

  // Key management. Passphrases and keys never reach a log: fastify logs no bodies, and validation
  // messages name the field, never its value.
  api.post('/keys/rotate', async (req) => {
    parseWith(CreateInviteBodySchema.optional(), req.body, 'body');
    return { identity: await c.rotateIdentity(), message: ROTATED_MESSAGE };
  });
  api.post('/keys/export', async (req) => {
    const b = parseWith(ExportBackupBodySchema, req.body, 'body');
    return c.exportBackup(b.passphrase);
  });
  api.post('/keys/import', { bodyLimit: KEYS_IMPORT_BODY_LIMIT_BYTES }, async (req) => {
    const b = parseWith(ImportBackupBodySchema, req.body, 'body');
    return { identity: await c.importBackup(b.backup, b.passphrase), message: IMPORTED_MESSAGE };
  });

  api.get('/plan', async (req) => c.plan(parseWith(PlanQuerySchema, req.query, 'query').mode));

  api.get('/sessions/last', async () => ({ session: await c.lastSession() }));
  api.get('/privacy', async () => ({ privacy: await c.privacy() }));
  api.get('/models', async () => ({ models: await c.models() }));

  api.post('/generate', { bodyLimit: o.generateBodyLimitBytes }, async (req, reply) => {
    const b = parseWith(GenerateBodySchema, req.body, 'body');
    const { stream, ...rest } = b;
    const genReq: GenerateRequest = rest;
    const signal = clientGoneSignal(reply, () => new ClientDisconnectedError('the HTTP client disconnected'));
    const outputs = runGeneration(c, genReq, signal);
    if (!stream) {
      const r = await collectGeneration(outputs);
      if (r.mode) reply.header('x-hush-mode', r.mode);
      return r;
    }
    // Pull the first output before answering, so an immediate failure (no cloud, bad model) is a proper HTTP error status.
    const first = await outputs.next();
    const sse = SseStream.open(reply, first.done || first.value.type !== 'start' ? {} : { 'x-hush-mode': first.value.mode });
    try {
      if (!first.done && !(await sse.sendJson(first.value))) return;
      if (first.done) return;
      for (;;) {
        const r = await outputs.next();
        if (r.done || !(await sse.sendJson(r.value))) return;
      }
    } catch (e) {
      const v = errorView(e);
      await sse.sendJson({ type: 'error', error: { name: v.name, message: v.message } });
    } finally {
      // Ends the generation (aborting the controller) if we stopped early because the client left.
      await outputs.return(undefined);
      sse.end();
    }
  });

  api.get('/events', async (req, reply) => {
    // The query may carry the token (EventSource); nothing else is accepted there.
    parseWith(z.object({ token: z.string().max(256).optional() }).strict(), req.query, 'query');
    const ac = new AbortController();
    reply.raw.once('close', () => ac.abort(new ClientDisconnectedError('the events client disconnected')));
    const events = c.events(ac.signal)[Symbol.asyncIterator]();
    const sse = SseStream.open(reply);
    const heartbeat = setInterval(() => void sse.comment('ping'), o.heartbeatMs);
    heartbeat.unref();
    try {
      await sse.retry(3000);
      // Tells the client the subscription is live: events published from now on will arrive.
      await sse.comment('subscribed');
      for (;;) {
        // Raced with the abort so a controller that ignores the signal cannot keep a dead stream open.
        const r = await untilAborted(events.next(), ac.signal);
        if (r.done || !(await sse.sendJson(r.value))) break;
      }
    } catch (e) {
      if (!ac.signal.aborted) {
        const v = errorView(e);
        await sse.sendJson({ type: 'error', error: { name: v.name, message: v.message } });
      }
    } finally {
      clearInterval(heartbeat);
      ac.abort(new ClientDisconnectedError('events stream closed'));
      if (typeof events.return === 'function') Promise.resolve(events.return()).catch(() => {});
      sse.end();
    }
  });
}
