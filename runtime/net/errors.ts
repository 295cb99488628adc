// Typed errors of runtime/net. Every error has a stable `name`; the ones a remote peer may report
// in an error frame are rebuilt with their own class on the receiving side (see errorFromRemote).

export class NetError extends Error {
  override name = 'NetError';
}

/** Invalid options given to a runtime/net API (a programming error, not a network event). */
export class NetConfigError extends NetError {
  override name = 'NetConfigError';
}

// ---------- framing ----------

export class FrameError extends NetError {
  override name = 'FrameError';
}
/** A length prefix announced more bytes than the limit, or the prefix itself was too long. */
export class FrameTooLargeError extends FrameError {
  override name = 'FrameTooLargeError';
  constructor(readonly declaredBytes: number, readonly maxBytes: number, message?: string) {
    super(message ?? `frame of ${declaredBytes} bytes exceeds the limit of ${maxBytes} bytes`);
  }
}
/** The stream ended in the middle of a frame. */
export class FrameTruncatedError extends FrameError {
  override name = 'FrameTruncatedError';
}
/** A complete frame whose payload is not a valid Hush frame (bad MessagePack or bad envelope). */
export class FrameUndecodableError extends FrameError {
  override name = 'FrameUndecodableError';
}

// ---------- channels ----------

/** The peer closed the channel cleanly while we waited for a frame. */
export class ChannelClosedError extends NetError {
  override name = 'ChannelClosedError';
}
/** No frame arrived (or could be sent) within the timeout. The channel stays usable. */
export class ChannelTimeoutError extends NetError {
  override name = 'ChannelTimeoutError';
}
/** The stream under the channel was reset or aborted (connection lost, peer reset it, we aborted). */
export class ChannelResetError extends NetError {
  override name = 'ChannelResetError';
}
/** The peer answered with an error frame whose name has no local class. */
export class RemoteError extends NetError {
  override name = 'RemoteError';
  constructor(readonly remoteName: string, message: string) {
    super(`peer reported ${remoteName}: ${message}`);
  }
}

// ---------- peers and services ----------

/**
 * The peer would not talk to us: its connection gater refused us at the handshake (we are not on
 * its roster, or revoked), or its trusted protocol handler refused us, or our own gater refused it.
 */
export class PeerRefusedError extends NetError {
  override name = 'PeerRefusedError';
}
/** No connection could be made: no known address, nothing listening, host unreachable. */
export class PeerUnreachableError extends NetError {
  override name = 'PeerUnreachableError';
}
/** The peer does not serve the protocol we asked for. */
export class ProtocolNotSupportedError extends NetError {
  override name = 'ProtocolNotSupportedError';
}
/** The service already serves its maximum number of channels. */
export class ServiceBusyError extends NetError {
  override name = 'ServiceBusyError';
}
/** A peer sent a message that breaks the protocol (wrong type, missing fields, bad order). */
export class ProtocolViolationError extends NetError {
  override name = 'ProtocolViolationError';
}

// ---------- identity, roster ----------

export class IdentityError extends NetError {
  override name = 'IdentityError';
}
/** roster.json or clouds.json cannot be read or is not valid; never silently replaced. */
export class RosterFileError extends NetError {
  override name = 'RosterFileError';
}
/** A roster operation that is not allowed (unknown peer, revoked peer re-added, cloud peer added...). */
export class RosterError extends NetError {
  override name = 'RosterError';
}

// ---------- pairing ----------

export class InviteInvalidError extends NetError {
  override name = 'InviteInvalidError';
}
export class InviteExpiredError extends NetError {
  override name = 'InviteExpiredError';
}
export class InviteUsedError extends NetError {
  override name = 'InviteUsedError';
}
/** A person said no on one side of the pairing (or did not answer in time). */
export class PairingDeclinedError extends NetError {
  override name = 'PairingDeclinedError';
}

type ErrorClass = new (message: string) => Error;

/** Error names a remote may send that we rebuild with their own class. */
const REMOTE_ERROR_CLASSES: Record<string, ErrorClass> = {
  PeerRefusedError,
  ProtocolNotSupportedError,
  ServiceBusyError,
  ProtocolViolationError,
  InviteInvalidError,
  InviteExpiredError,
  InviteUsedError,
  PairingDeclinedError,
  FrameTruncatedError,
  FrameUndecodableError,
  ChannelTimeoutError,
};

/** Rebuild an error reported by a peer. Unknown names become RemoteError (never an arbitrary class). */
export function errorFromRemote(name: string, message: string): Error {
  const cls = Object.hasOwn(REMOTE_ERROR_CLASSES, name) ? REMOTE_ERROR_CLASSES[name] : undefined;
  if (cls != null) return new cls(`peer reported: ${message}`);
  if (name === 'FrameTooLargeError') return new FrameTooLargeError(-1, -1, `peer reported: ${message}`);
  return new RemoteError(name, message);
}

/** True for errors that mean "the stream or connection went away" rather than a protocol fault. */
export function isConnectionLoss(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  return (
    name === 'ChannelResetError' ||
    name === 'StreamResetError' ||
    name === 'StreamAbortedError' ||
    name === 'StreamClosedError' ||
    name === 'StreamStateError' ||
    name === 'ConnectionClosedError' ||
    name === 'ConnectionClosingError' ||
    name === 'MuxerClosedError' ||
    name === 'UnexpectedEOFError' ||
    name === 'AbortError'
  );
}
