import { isIP } from 'node:net';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type * as z from 'zod';
import { errorView, ForbiddenError, NonLoopbackHostError, ValidationError, type ErrorView } from './errors.ts';
import { zodMessage } from './types.ts';

/** True for names that only ever reach this machine: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h);
  return false;
}

/** The hostname of a Host header ("127.0.0.1:8080", "[::1]:80", "localhost"), without the port. */
export function hostHeaderName(hostHeader: string): string {
  const m = /^\[([^\]]*)\](?::\d+)?$/.exec(hostHeader);
  if (m) return m[1];
  const i = hostHeader.lastIndexOf(':');
  return i >= 0 && hostHeader.indexOf(':') === i ? hostHeader.slice(0, i) : hostHeader;
}

/** Removes the `token` query parameter from a URL before it is logged. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]token=)[^&#]*/gi, '$1[redacted]');
}

export type ErrorFormatter = (err: ErrorView, req: FastifyRequest) => unknown;

/** The control API's error body: { error: { name, message } } (plus validation issues). */
export function controlErrorBody(err: ErrorView & { issues?: unknown }): unknown {
  return { error: { name: err.name, message: err.message, ...(err.issues ? { issues: err.issues } : {}) } };
}

export function sendError(reply: FastifyReply, err: unknown, format: ErrorFormatter): FastifyReply {
  const view = errorView(err);
  const issues = err instanceof ValidationError && err.issues.length ? err.issues : undefined;
  if (view.statusCode === 401) reply.header('www-authenticate', 'Bearer');
  return reply.code(view.statusCode).type('application/json; charset=utf-8').send(format({ ...view, ...(issues ? { issues } : {}) } as ErrorView, reply.request));
}

/** Validates `value` with a zod schema; a failure is a 400 ValidationError naming each bad field. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, where: 'body' | 'query' | 'path'): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new ValidationError(
    `invalid request ${where}: ${zodMessage(r.error)}`,
    r.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message })),
  );
}

export interface BaseAppOptions {
  bodyLimitBytes: number;
  allowedOrigins: readonly string[];
  /** Refuse Host headers that are not loopback names (DNS-rebinding defence); off only for a server bound beyond loopback. */
  checkHostHeader: boolean;
  logger?: FastifyBaseLogger;
  /** Error body for refusals raised before any route (host, CORS, 404), chosen per request. */
  formatError: ErrorFormatter;
}

const DEFAULT_ALLOWED_HEADERS = 'authorization, content-type';

/**
 * A fastify instance with the guards every Hush HTTP server shares:
 * - Host header must be a loopback name (a web page that rebinds its own DNS name to 127.0.0.1
 *   sends its own name as Host and is refused before it can even try a token);
 * - browser requests (those with an Origin header) only from allowedOrigins; preflights are
 *   answered here, before auth, because browsers never send credentials on a preflight;
 * - JSON bodies up to bodyLimitBytes; an empty JSON body reads as "no body";
 * - request logging without the `?token=` query parameter.
 */
export function createBaseApp(opts: BaseAppOptions): FastifyInstance {
  const app = Fastify({
    bodyLimit: opts.bodyLimitBytes,
    // close() must not wait for open SSE streams or idle keep-alive connections.
    forceCloseConnections: true,
    // Fastify's own request lines would log req.url with the ?token= parameter; onResponse below logs a redacted one.
    logController: new LogController({ disableRequestLogging: true }),
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
  }) as unknown as FastifyInstance;

  const defaultJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (typeof body === 'string' && body.trim() === '') return done(null, undefined);
    defaultJson(req, body as string, done);
  });

  const allowed = new Set(opts.allowedOrigins);
  app.addHook('onRequest', async (req, reply) => {
    if (opts.checkHostHeader) {
      const host = req.headers.host ?? '';
      if (!isLoopbackHost(hostHeaderName(host))) {
        return sendError(reply, new ForbiddenError(`Host ${JSON.stringify(host)} is not a loopback name; this server only answers requests addressed to 127.0.0.1, [::1] or localhost`), opts.formatError);
      }
    }
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!allowed.has(origin)) {
        return sendError(reply, new ForbiddenError(`origin ${JSON.stringify(origin)} is not allowed to call this API (allowed: ${[...allowed].join(', ') || 'none'})`), opts.formatError);
      }
      reply.header('access-control-allow-origin', origin);
      reply.header('vary', 'Origin');
      reply.header('access-control-expose-headers', 'x-hush-mode');
      if (req.method === 'OPTIONS') {
        const requested = req.headers['access-control-request-headers'];
        reply.header('access-control-allow-methods', 'GET, POST, PATCH, DELETE, OPTIONS');
        reply.header('access-control-allow-headers', typeof requested === 'string' && requested.length <= 1024 ? requested : DEFAULT_ALLOWED_HEADERS);
        reply.header('access-control-max-age', '600');
        return reply.code(204).send();
      }
    }
  });
  // Gives preflights a route to match so the hook above answers them (unmatched routes would 404 first).
  app.options('/*', async (_req, reply) => reply.code(204).send());

  if (opts.logger) {
    app.addHook('onResponse', async (req, reply) => {
      req.log.info({ method: req.method, url: redactUrl(req.url), statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
    });
  }

  app.setNotFoundHandler(async (req, reply) => {
    return reply.code(404).send(opts.formatError({ statusCode: 404, name: 'NotFoundError', message: `no route ${req.method} ${redactUrl(req.url)}` }, req));
  });
  app.setErrorHandler(async (err, req, reply) => sendError(reply, err, opts.formatError));
  return app;
}

export interface RunningServer {
  /** Base URL, e.g. "http://127.0.0.1:43121". */
  url: string;
  host: string;
  port: number;
  app: FastifyInstance;
  /** Stops listening, ends open streams, and aborts their generations. */
  close(): Promise<void>;
}

export async function listen(app: FastifyInstance, host: string, port: number): Promise<RunningServer> {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`port must be an integer in 0..65535, got ${port}`);
  await app.listen({ host, port });
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('server did not report a TCP address');
  const urlHost = addr.family === 'IPv6' || addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  let closed: Promise<void> | null = null;
  return {
    url: `http://${urlHost}:${addr.port}`,
    host: addr.address,
    port: addr.port,
    app,
    close: () => (closed ??= app.close()),
  };
}

export function assertLoopbackBind(host: string): void {
  if (!isLoopbackHost(host)) {
    throw new NonLoopbackHostError(`refusing to listen on ${JSON.stringify(host)}: the control API only listens on loopback (127.0.0.1, ::1, localhost)`);
  }
}
