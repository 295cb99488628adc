export class EngineError extends Error {
  override name = 'EngineError';
}
export class UnknownSessionError extends EngineError {
  override name = 'UnknownSessionError';
  constructor(readonly session: string) {
    super(`unknown session ${session}`);
  }
}
export class ShapeMismatchError extends EngineError {
  override name = 'ShapeMismatchError';
}
export class ContextOverflowError extends EngineError {
  override name = 'ContextOverflowError';
}
