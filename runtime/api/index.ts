// Public API of runtime/api: the loopback control server, the OpenAI-compatible endpoint, and the
// DeviceController interface the device daemon implements.
export type { DeviceController } from './controller.ts';
export * from './types.ts';
export * from './errors.ts';
export { EventHub } from './events.ts';
export { loadOrCreateApiToken, secretsEqual, bearerToken, MIN_SECRET_CHARS } from './auth.ts';
export { startControlServer, KEYS_IMPORT_BODY_LIMIT_BYTES, ROTATED_MESSAGE, IMPORTED_MESSAGE, type ControlServerOptions } from './control-server.ts';
export {
  startOpenAIServer,
  registerOpenAIRoutes,
  openAIErrorBody,
  chatMessagesFrom,
  ChatCompletionBodySchema,
  CompletionBodySchema,
  type OpenAIRoutesOptions,
  type OpenAIServerOptions,
  type ChatCompletionBody,
  type CompletionBody,
} from './openai.ts';
export { StopSequenceFilter, runGeneration, collectGeneration, type GenerationOutput, type CollectedGeneration } from './generation.ts';
export { isLoopbackHost, redactUrl, type RunningServer } from './http.ts';
export { SseStream } from './sse.ts';
