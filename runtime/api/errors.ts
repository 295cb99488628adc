/**
 * Typed errors of the HTTP API. A DeviceController throws these (or any Error carrying a numeric
 * `statusCode` in 400..599, fastify's convention) to choose the HTTP status; everything else is a 500.
 * The response body is always { error: { name, message } } on /api/v1 and OpenAI's error shape on /v1.
 */
export class HushApiError extends Error {
  override name = 'HushApiError';
  readonly statusCode: number = 500;
}

/** The request is malformed or asks for something impossible (bad multiaddr, bad invite code). */
export class BadRequestError extends HushApiError {
  override name = 'BadRequestError';
  override readonly statusCode = 400;
}

/** A request body / query / path parameter failed validation. */
export class ValidationError extends HushApiError {
  override name = 'ValidationError';
  override readonly statusCode = 400;
  constructor(
    message: string,
    readonly issues: { path: string; message: string }[] = [],
  ) {
    super(message);
  }
}

export class UnauthorizedError extends HushApiError {
  override name = 'UnauthorizedError';
  override readonly statusCode = 401;
}

/** Refused before auth: a browser origin not on the allow list, or a Host header that is not loopback. */
export class ForbiddenError extends HushApiError {
  override name = 'ForbiddenError';
  override readonly statusCode = 403;
}

/** No such device / cloud / model / route. */
export class NotFoundError extends HushApiError {
  override name = 'NotFoundError';
  override readonly statusCode = 404;
}

/** The request conflicts with current state (device already revoked, cloud already added). */
export class ConflictError extends HushApiError {
  override name = 'ConflictError';
  override readonly statusCode = 409;
}

/** Something that existed has expired (an invite code). */
export class GoneError extends HushApiError {
  override name = 'GoneError';
  override readonly statusCode = 410;
}

export class PayloadTooLargeError extends HushApiError {
  override name = 'PayloadTooLargeError';
  override readonly statusCode = 413;
}

/** The controller cannot do this yet (e.g. the privacy harness has not run). */
export class NotImplementedError extends HushApiError {
  override name = 'NotImplementedError';
  override readonly statusCode = 501;
}

/** A needed peer is unreachable or busy (no cloud reachable for scx, the only device offline). */
export class UnavailableError extends HushApiError {
  override name = 'UnavailableError';
  override readonly statusCode = 503;
}

/** The control server was asked to listen on an address other than loopback. */
export class NonLoopbackHostError extends Error {
  override name = 'NonLoopbackHostError';
}

/** The api-token file exists but cannot be used. */
export class ApiTokenFileError extends Error {
  override name = 'ApiTokenFileError';
}

/** A live-event subscriber fell too far behind; it is dropped and must reconnect. */
export class EventOverflowError extends Error {
  override name = 'EventOverflowError';
}

/** controller.generate() ended without a `done` event. */
export class GenerationProtocolError extends Error {
  override name = 'GenerationProtocolError';
}

/** The abort reason the API gives the controller when a stop string ended the generation. */
export class StopSequenceReached extends Error {
  override name = 'StopSequenceReached';
}

/** The abort reason the API gives the controller when the API stopped reading before the end (e.g. a write to a closing socket failed). */
export class GenerationAbandonedError extends Error {
  override name = 'GenerationAbandonedError';
}

/** The abort reason the API gives the controller when the HTTP client went away. */
export class ClientDisconnectedError extends Error {
  override name = 'ClientDisconnectedError';
}

export interface ErrorView {
  statusCode: number;
  name: string;
  message: string;
}

const FASTIFY_CODE_NAMES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PayloadTooLargeError',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UnsupportedMediaTypeError',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'ValidationError',
  FST_ERR_CTP_INVALID_JSON_BODY: 'ValidationError',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BadRequestError',
};

/** Status, name and message for any thrown value. 5xx keep their message: the API is the owner's own. */
export function errorView(err: unknown): ErrorView {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const sc = (err as { statusCode?: unknown }).statusCode;
    const statusCode = typeof sc === 'number' && sc >= 400 && sc <= 599 ? sc : 500;
    let name = err.name;
    if (typeof code === 'string' && code.startsWith('FST_')) {
      name = FASTIFY_CODE_NAMES[code] ?? (statusCode === 404 ? 'NotFoundError' : statusCode < 500 ? 'BadRequestError' : 'InternalError');
      if (err instanceof SyntaxError || code === 'FST_ERR_CTP_INVALID_JSON_BODY') name = 'ValidationError';
    }
    return { statusCode, name, message: err.message };
  }
  return { statusCode: 500, name: 'InternalError', message: String(err) };
}
