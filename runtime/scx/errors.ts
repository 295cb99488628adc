/** Errors of the SCX exchange. Both sides end the session when one is raised. */
export class ScxError extends Error {
  override name = 'ScxError';
}
export class UnknownScxSessionError extends ScxError {
  override name = 'UnknownScxSessionError';
  constructor(readonly session: string) {
    super(`unknown SCX session ${session}`);
  }
}
export class CrossingOrderError extends ScxError {
  override name = 'CrossingOrderError';
}
export class ScxShapeError extends ScxError {
  override name = 'ScxShapeError';
}
export class MissingKeyShareError extends ScxError {
  override name = 'MissingKeyShareError';
}
export class ScxLimitError extends ScxError {
  override name = 'ScxLimitError';
}
export class ScxModelMismatchError extends ScxError {
  override name = 'ScxModelMismatchError';
}
/** The cloud answered with an error; `remoteName` is the cloud-side error's name. */
export class ScxRemoteError extends ScxError {
  override name = 'ScxRemoteError';
  constructor(readonly remoteName: string, message: string) {
    super(`cloud peer: ${remoteName}: ${message}`);
  }
}
