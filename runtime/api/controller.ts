import type {
  Cloud,
  CloudTestResult,
  Device,
  GenerateEvent,
  GenerateRequest,
  HushEvent,
  Identity,
  Invite,
  JoinResult,
  LastSession,
  Mode,
  ModelInfo,
  PlanView,
  PrivacyReport,
} from './types.ts';

/**
 * What the app, the CLI and the OpenAI endpoint need from a running device (implemented by the
 * device daemon in peers/). Every method is async and returns plain JSON-able data.
 *
 * Errors: throw the typed errors of ./errors.ts (NotFoundError, ConflictError, GoneError,
 * BadRequestError, UnavailableError, NotImplementedError), or any Error with a numeric
 * `statusCode` in 400..599, to choose the HTTP status. Anything else becomes a 500 that carries
 * the error's name and message, so messages must never contain keys.
 */
export interface DeviceController {
  identity(): Promise<Identity>;
  /** Renames this device (shown to paired devices). */
  renameSelf(name: string): Promise<Identity>;

  /** Paired devices, including revoked ones (with `revoked` set), never this device itself. */
  devices(): Promise<Device[]>;
  /** NotFoundError if the PeerId is not on the roster. */
  renameDevice(peerId: string, name: string): Promise<Device>;
  /** Takes effect at once on every online device; NotFoundError if unknown, ConflictError if already revoked. */
  revokeDevice(peerId: string): Promise<Device>;

  createInvite(): Promise<Invite>;
  /** BadRequestError for a malformed code, GoneError for an expired one, UnavailableError if the inviter is unreachable. */
  joinInvite(code: string, name?: string): Promise<JoinResult>;

  clouds(): Promise<Cloud[]>;
  /** BadRequestError for a multiaddr that does not parse; ConflictError if already added. */
  addCloud(multiaddr: string, name?: string): Promise<Cloud>;
  /** Dials the cloud peer and measures one round trip. Unreachable is a result, not an error. */
  testCloud(id: string): Promise<CloudTestResult>;
  removeCloud(id: string): Promise<void>;

  /** The plan the scheduler would use now for `mode`; UnavailableError when the mode cannot run (scx without a cloud). */
  plan(mode: Mode): Promise<PlanView>;

  /**
   * Generates. Yields an optional `start`, then `token`s (and `event`s), then exactly one `done`.
   * Must stop promptly (and release the session) when `signal` aborts; it may then end by
   * throwing signal.reason or by returning: the API has stopped reading either way.
   * `req.mode` absent means the controller's default (scx when a cloud is configured, else local).
   */
  generate(req: GenerateRequest, signal: AbortSignal): AsyncIterable<GenerateEvent>;

  /** What the cloud saw in the last session; null before the first session (or in local mode only). */
  lastSession(): Promise<LastSession | null>;
  /** The measured leakage table per mode; null until the attack harness has produced one. */
  privacy(): Promise<PrivacyReport | null>;
  models(): Promise<ModelInfo[]>;

  /**
   * Live events until `signal` aborts. Should register the subscriber before returning, so events
   * published right after the call are not lost (EventHub in ./events.ts does this).
   */
  events(signal: AbortSignal): AsyncIterable<HushEvent>;

  /**
   * Replaces this device's identity key with a new one: a new PeerId and fingerprint. The roster is
   * kept (this device still trusts its paired devices), but they know it only by the old PeerId and
   * refuse it until they pair again with a new invite from this device. Publishes `identity.changed`.
   */
  rotateIdentity(): Promise<Identity>;
  /**
   * The identity key, roster and cloud list, encrypted with `passphrase` (8..1024 characters) as a
   * versioned JSON text (runtime/net/backup.ts). `fileName` is a suggestion ("hush-identity-....hushkey").
   */
  exportBackup(passphrase: string): Promise<{ backup: string; fileName: string }>;
  /**
   * Replaces identity, roster and cloud list with a backup's. A wrong passphrase or a damaged file is
   * a 400 (BackupPassphraseError / BackupCorruptError) and changes nothing. Publishes `identity.changed`.
   */
  importBackup(backup: string, passphrase: string): Promise<Identity>;
}
