/** Errors raised while reading a model directory. Each names the file (and tensor) at fault. */
export class ModelError extends Error {
  override name = 'ModelError';
  constructor(message: string, readonly file?: string, readonly tensor?: string) {
    super(message);
  }
}
export class UnsupportedModelError extends ModelError {
  override name = 'UnsupportedModelError';
}
export class CorruptModelFileError extends ModelError {
  override name = 'CorruptModelFileError';
}
export class MissingTensorError extends ModelError {
  override name = 'MissingTensorError';
}
export class TensorShapeError extends ModelError {
  override name = 'TensorShapeError';
}
export class MissingTokenizerError extends ModelError {
  override name = 'MissingTokenizerError';
}
