import { randomBytes } from 'node:crypto';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import * as z from 'zod';
import { assertSecret, bearerToken, secretsEqual } from './auth.ts';
import type { DeviceController } from './controller.ts';
import { ClientDisconnectedError, errorView, NotFoundError, UnauthorizedError, type ErrorView } from './errors.ts';
import { collectGeneration, runGeneration, type GenerationOutput } from './generation.ts';
import { assertLoopbackBind, createBaseApp, listen, parseWith, sendError, type RunningServer } from './http.ts';
import { clientGoneSignal, SseStream } from './sse.ts';
import { LIMITS, ModeSchema, SamplingSchema, type ChatMessage, type FinishReason, type GenerateRequest, type Mode } from './types.ts';

/**
 * OpenAI-compatible endpoint: GET /v1/models, POST /v1/completions, POST /v1/chat/completions,
 * streaming (SSE `data: {chunk}\n\n` ... `data: [DONE]\n\n`) and not. Extensions: `hush_mode`
 * ('local' | 'split' | 'scx'; absent: the controller's default) and `top_k`. The mode used is also
 * returned in the `x-hush-mode` response header.
 */
export interface OpenAIRoutesOptions {
  controller: DeviceController;
  /** Bearer key clients send (`OPENAI_API_KEY`); separate from the control API token. */
  apiKey: string;
  /** max_tokens when a request gives none (default 512; OpenAI's legacy completions default is 16, too small for chat clients). */
  defaultMaxTokens?: number;
  /** Largest request body (default 8 MiB). */
  bodyLimitBytes?: number;
}

/** OpenAI's error shape: { error: { message, type, param, code } }. */
export function openAIErrorBody(err: ErrorView): unknown {
  const type = err.statusCode >= 500 ? 'server_error' : 'invalid_request_error';
  // OpenAI's codes where one exists (invalid_api_key, model_not_found), else the error name in snake_case.
  const code = err.statusCode === 401 ? 'invalid_api_key' : err.name.replace(/Error$/, '').replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase() || null;
  return { error: { message: err.message, type, param: null, code } };
}

class ModelNotFoundError extends NotFoundError {
  override name = 'ModelNotFoundError';
}

const nullish = <S extends z.ZodType>(s: S) => s.nullish();

const StopField = nullish(
  z.union([
    z.string().min(1).max(LIMITS.stopChars),
    z.array(z.string().min(1).max(LIMITS.stopChars)).max(LIMITS.stopStrings, `at most ${LIMITS.stopStrings} stop strings`),
  ]),
);

/** Fields both endpoints share; unknown fields are ignored (OpenAI clients send many), unsupported ones are refused. */
const CommonFields = {
  model: z.string().min(1).max(256),
  stream: nullish(z.boolean()),
  stream_options: nullish(z.object({ include_usage: nullish(z.boolean()) })),
  max_tokens: nullish(SamplingSchema.maxTokens),
  temperature: nullish(SamplingSchema.temperature),
  top_p: nullish(SamplingSchema.topP),
  top_k: nullish(SamplingSchema.topK),
  seed: nullish(SamplingSchema.seed),
  stop: StopField,
  n: nullish(z.literal(1, { message: 'only n=1 is supported' })),
  // Refused rather than silently ignored: a client asking for them would get different output than it expects.
  frequency_penalty: nullish(z.literal(0, { message: 'frequency_penalty is not supported (omit it or send 0)' })),
  presence_penalty: nullish(z.literal(0, { message: 'presence_penalty is not supported (omit it or send 0)' })),
  hush_mode: ModeSchema.optional(),
};

const TextPart = z.object({ type: z.literal('text', { message: 'only text content parts are supported' }), text: z.string().max(LIMITS.messageChars) });

export const ChatCompletionBodySchema = z.object({
  ...CommonFields,
  messages: z
    .array(
      z.object({
        role: z.enum(['system', 'developer', 'user', 'assistant'], { message: 'role must be system, developer, user or assistant (tools are not supported)' }),
        content: z.union([z.string().max(LIMITS.messageChars), z.array(TextPart).max(256)]),
        name: z.string().max(256).optional(),
      }),
    )
    .min(1, 'messages must not be empty')
    .max(LIMITS.messages),
  max_completion_tokens: nullish(SamplingSchema.maxTokens),
  tools: nullish(z.array(z.unknown()).max(0, 'tools are not supported')),
  logprobs: nullish(z.literal(false, { message: 'logprobs are not supported' })),
  response_format: nullish(z.object({ type: z.literal('text', { message: 'only response_format {"type":"text"} is supported' }) })),
});
export type ChatCompletionBody = z.infer<typeof ChatCompletionBodySchema>;

export const CompletionBodySchema = z.object({
  ...CommonFields,
  prompt: z.union([
    z.string().max(LIMITS.promptChars),
    z.array(z.string().max(LIMITS.promptChars)).length(1, 'prompt arrays must hold exactly one string (batched prompts are not supported)'),
  ]),
  echo: nullish(z.literal(false, { message: 'echo is not supported' })),
  logprobs: nullish(z.null({ message: 'logprobs are not supported' })),
  suffix: nullish(z.null({ message: 'suffix is not supported' })),
  best_of: nullish(z.literal(1, { message: 'only best_of=1 is supported' })),
});
export type CompletionBody = z.infer<typeof CompletionBodySchema>;

const CommonSchema = z.object(CommonFields);
type Common = z.infer<typeof CommonSchema>;

function samplingFrom(b: Common, maxTokens: number | null | undefined, defaultMaxTokens: number): Omit<GenerateRequest, 'prompt' | 'messages'> {
  const r: Omit<GenerateRequest, 'prompt' | 'messages'> = { model: b.model, maxTokens: maxTokens ?? defaultMaxTokens };
  if (b.hush_mode) r.mode = b.hush_mode;
  if (b.temperature != null) r.temperature = b.temperature;
  if (b.top_p != null) r.topP = b.top_p;
  if (b.top_k != null) r.topK = b.top_k;
  if (b.seed != null) r.seed = b.seed;
  if (b.stop != null) r.stop = typeof b.stop === 'string' ? [b.stop] : b.stop;
  return r;
}

export function chatMessagesFrom(body: ChatCompletionBody): ChatMessage[] {
  return body.messages.map((m) => ({
    // OpenAI's newer "developer" role is the system prompt of chat templates.
    role: m.role === 'developer' ? 'system' : m.role,
    content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join(''),
  }));
}

function newId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('base64url')}`;
}

/** Registers /v1/* on `app` (an encapsulated plugin with its own key check and OpenAI-shaped errors). */
export async function registerOpenAIRoutes(app: FastifyInstance, opts: OpenAIRoutesOptions): Promise<void> {
  assertSecret('apiKey', opts.apiKey);
  await app.register(async (v1) => openAIRoutes(v1, opts), { prefix: '/v1' });
}

function openAIRoutes(v1: FastifyInstance, opts: OpenAIRoutesOptions): void {
  const c = opts.controller;
  const defaultMaxTokens = opts.defaultMaxTokens ?? 512;
  const bodyLimit = opts.bodyLimitBytes ?? 8 * 1024 * 1024;
  const fmt = (e: ErrorView) => openAIErrorBody(e);
  v1.setErrorHandler(async (err, _req, reply) => sendError(reply, err, fmt));
  v1.setNotFoundHandler(async (req, reply) => sendError(reply, new NotFoundError(`no route ${req.method} ${req.url}`), fmt));

  v1.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (req.method === 'OPTIONS') return;
    const given = bearerToken(req.headers.authorization);
    if (given === null) return sendError(reply, new UnauthorizedError('missing Authorization: Bearer <api key> header'), fmt);
    if (!secretsEqual(given, opts.apiKey)) return sendError(reply, new UnauthorizedError('incorrect API key provided'), fmt);
  });

  v1.get('/models', async () => {
    const models = await c.models();
    return { object: 'list', data: models.map((m) => ({ id: m.id, object: 'model', created: m.created, owned_by: m.ownedBy })) };
  });
  v1.get('/models/:id', async (req) => {
    const id = (req.params as { id: string }).id;
    const m = (await c.models()).find((x) => x.id === id);
    if (!m) throw new ModelNotFoundError(`the model ${JSON.stringify(id)} does not exist`);
    return { id: m.id, object: 'model', created: m.created, owned_by: m.ownedBy };
  });

  async function checkModel(model: string): Promise<void> {
    const models = await c.models();
    if (!models.some((m) => m.id === model)) {
      throw new ModelNotFoundError(`the model ${JSON.stringify(model)} does not exist; available: ${models.map((m) => m.id).join(', ') || 'none'}`);
    }
  }

  v1.post('/chat/completions', { bodyLimit }, async (req, reply) => {
    const b = parseWith(ChatCompletionBodySchema, req.body, 'body');
    await checkModel(b.model);
    const genReq: GenerateRequest = { ...samplingFrom(b, b.max_completion_tokens ?? b.max_tokens, defaultMaxTokens), messages: chatMessagesFrom(b) };
    return respond(req, reply, c, genReq, b, 'chat');
  });

  v1.post('/completions', { bodyLimit }, async (req, reply) => {
    const b = parseWith(CompletionBodySchema, req.body, 'body');
    await checkModel(b.model);
    const prompt = typeof b.prompt === 'string' ? b.prompt : b.prompt[0];
    const genReq: GenerateRequest = { ...samplingFrom(b, b.max_tokens, defaultMaxTokens), prompt };
    return respond(req, reply, c, genReq, b, 'text');
  });
}

async function respond(
  _req: FastifyRequest,
  reply: FastifyReply,
  controller: DeviceController,
  genReq: GenerateRequest,
  b: Common,
  kind: 'chat' | 'text',
): Promise<unknown> {
  const id = newId(kind === 'chat' ? 'chatcmpl' : 'cmpl');
  const created = Math.floor(Date.now() / 1000);
  const signal = clientGoneSignal(reply, () => new ClientDisconnectedError('the HTTP client disconnected'));
  const outputs = runGeneration(controller, genReq, signal);

  if (!b.stream) {
    const r = await collectGeneration(outputs);
    if (r.mode) reply.header('x-hush-mode', r.mode);
    const usage = { prompt_tokens: r.usage.promptTokens, completion_tokens: r.usage.completionTokens, total_tokens: r.usage.promptTokens + r.usage.completionTokens };
    const model = r.model ?? genReq.model;
    if (kind === 'chat') {
      return {
        id,
        object: 'chat.completion',
        created,
        model,
        system_fingerprint: null,
        choices: [{ index: 0, message: { role: 'assistant', content: r.text, refusal: null }, logprobs: null, finish_reason: r.finishReason }],
        usage,
      };
    }
    return { id, object: 'text_completion', created, model, system_fingerprint: null, choices: [{ text: r.text, index: 0, logprobs: null, finish_reason: r.finishReason }], usage };
  }

  const includeUsage = b.stream_options?.include_usage === true;
  // The first output comes before the HTTP head so that an immediate failure is an HTTP error status.
  const first = await outputs.next();
  let mode: Mode | undefined;
  let model = genReq.model;
  if (!first.done && first.value.type === 'start') {
    mode = first.value.mode;
    model = first.value.model ?? model;
  }
  const sse = SseStream.open(reply, mode ? { 'x-hush-mode': mode } : {});
  const base = () => ({ id, object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion', created, model, system_fingerprint: null });
  const chunk = (choice: Record<string, unknown>) => ({ ...base(), choices: [{ index: 0, ...choice }], ...(includeUsage ? { usage: null } : {}) });
  const content = (text: string) => (kind === 'chat' ? chunk({ delta: { content: text }, logprobs: null, finish_reason: null }) : chunk({ text, logprobs: null, finish_reason: null }));
  const finish = (reason: FinishReason) => (kind === 'chat' ? chunk({ delta: {}, logprobs: null, finish_reason: reason }) : chunk({ text: '', logprobs: null, finish_reason: reason }));

  try {
    if (kind === 'chat' && !(await sse.sendJson(chunk({ delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null })))) return;
    let next: IteratorResult<GenerationOutput, void> = first;
    for (;;) {
      if (next.done) return;
      const out = next.value;
      if (out.type === 'token' && out.text.length > 0) {
        if (!(await sse.sendJson(content(out.text)))) return;
      } else if (out.type === 'done') {
        if (!(await sse.sendJson(finish(out.finishReason)))) return;
        if (includeUsage) {
          const u = out.usage;
          const usage = { prompt_tokens: u.promptTokens, completion_tokens: u.completionTokens, total_tokens: u.promptTokens + u.completionTokens };
          if (!(await sse.sendJson({ ...base(), choices: [], usage }))) return;
        }
        await sse.send('[DONE]');
        return;
      }
      next = await outputs.next();
    }
  } catch (e) {
    // Mid-stream failure: OpenAI clients raise an APIError for a chunk holding `error`.
    await sse.sendJson(openAIErrorBody(errorView(e)));
  } finally {
    await outputs.return(undefined);
    sse.end();
  }
}

export interface OpenAIServerOptions extends OpenAIRoutesOptions {
  /** Default 127.0.0.1. Other addresses need exposeBeyondLoopback: true (the API key is then the only guard; use TLS in front). */
  host?: string;
  port?: number;
  exposeBeyondLoopback?: boolean;
  /** Browser origins allowed (a web chat UI served from another origin). */
  allowedOrigins?: string[];
  logger?: FastifyBaseLogger;
}

/** The OpenAI-compatible endpoint on its own server (GET /health too). */
export async function startOpenAIServer(opts: OpenAIServerOptions): Promise<RunningServer> {
  const host = opts.host ?? '127.0.0.1';
  if (!opts.exposeBeyondLoopback) assertLoopbackBind(host);
  assertSecret('apiKey', opts.apiKey);
  const bodyLimitBytes = opts.bodyLimitBytes ?? 8 * 1024 * 1024;
  const app = createBaseApp({
    bodyLimitBytes,
    allowedOrigins: opts.allowedOrigins ?? [],
    checkHostHeader: !opts.exposeBeyondLoopback,
    logger: opts.logger,
    formatError: (err) => openAIErrorBody(err),
  });
  app.get('/health', async () => ({ ok: true }));
  await registerOpenAIRoutes(app, { ...opts, bodyLimitBytes });
  return listen(app, host, opts.port ?? 0);
}
