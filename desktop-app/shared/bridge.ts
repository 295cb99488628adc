/**
 * The one interface between the Hush renderer and whatever talks to the device daemon.
 *
 * Two implementations:
 *  - Electron: desktop-app/preload/preload.ts exposes it as `window.hush` over contextBridge; every call
 *    goes by IPC to main, which calls the daemon's loopback control API (desktop-app/main/ipc.ts).
 *  - Browser (development and tests): desktop-app/renderer/dev-bridge.ts calls the same API with fetch
 *    and the bearer token taken from the page URL fragment.
 * Both end in desktop-app/shared/http-bridge.ts, so the mapping to HTTP routes exists once.
 *
 * This file is imported by main/preload (Node types only) and by the renderer (DOM types only),
 * so it uses neither: plain data, functions and promises.
 */

import type {
  Cloud,
  CloudTestResult,
  Device,
  GenerationTimings,
  GenerationUsage,
  HushEvent as ApiHushEvent,
  Identity,
  Invite,
  JoinResult,
  LastSession,
  LastSessionCrossing,
  LinkPath,
  Mode,
  PlanStageView,
  PlanView,
  PrivacyReport,
  PrivacyRow,
} from '../../runtime/api/types.ts';

// The daemon's own data types (runtime/api/types.ts) are the bridge's: the UI shows what the API says.
export type {
  Cloud,
  CloudTestResult,
  Device,
  GenerationTimings,
  GenerationUsage,
  Identity,
  Invite,
  JoinResult,
  LastSession,
  LastSessionCrossing,
  LinkPath,
  Mode,
  PlanStageView,
  PlanView,
  PrivacyReport,
  PrivacyRow,
};

/** Kept here (not imported) so the renderer bundle does not pull zod in through runtime/api/types.ts. */
export const MODES = ['local', 'split', 'scx'] as const satisfies readonly Mode[];

/** Events the bridge delivers: the daemon's, plus its own "connection" event when the stream drops or returns. */
export type BridgeEvent = ApiHushEvent | { type: 'connection'; at: string; data: { connected: boolean } };
export type HushEvent = ApiHushEvent;

export interface ChatRequest {
  prompt: string;
  mode: Mode;
  maxTokens?: number;
}

/** Per-answer timings, merged from the daemon's and measured by the bridge where the daemon gave none. */
export interface ChatTimings {
  /** Request sent to first token shown. */
  ttftMs: number | null;
  totalMs: number;
  /** Mean time per generated token after the first. */
  perTokenMs: number | null;
  tokens: number;
  tokensPerSecond: number | null;
  /** Everything else the daemon reported (e.g. prefillMs, cloudMs). */
  extra: Record<string, number>;
}

export type ChatEvent =
  | { type: 'start'; mode: Mode; promptTokens: number; model: string | null; sessionId: string | null }
  | { type: 'token'; text: string }
  | { type: 'event'; event: ApiHushEvent }
  | { type: 'done'; finishReason: string; timings: ChatTimings; usage: GenerationUsage | null }
  | { type: 'error'; name: string; message: string };

export interface ChatHandle {
  /** Settles once the answer ended ("done", "error" or cancel). Never rejects: errors arrive as events. */
  readonly finished: Promise<void>;
  cancel(): void;
}

export interface BackupFile {
  fileName: string;
  /** The encrypted backup as text (armored); it holds nothing readable without the passphrase. */
  contents: string;
}

export type Unsubscribe = () => void;

/** What the renderer needs to show where it is connected. */
export interface BridgeInfo {
  kind: 'electron' | 'browser';
  /** Base URL of the daemon's control API (never the token). */
  api: string | null;
  /** Whether the app started the daemon (and will stop it on quit) or attached to one already running. */
  daemon: 'started' | 'attached' | 'unknown';
  /** Where the identity private key lives: OS keychain (app-owned daemon) or the 0600 file in the home dir. */
  identityStorage: 'keychain' | 'file' | 'unknown';
}

export interface HushBridge {
  info(): Promise<BridgeInfo>;
  identity(): Promise<Identity>;
  renameSelf(name: string): Promise<Identity>;
  devices(): Promise<Device[]>;
  invite(): Promise<Invite>;
  join(code: string, name?: string): Promise<JoinResult>;
  rename(peerId: string, name: string): Promise<Device>;
  revoke(peerId: string): Promise<Device>;
  clouds: {
    list(): Promise<Cloud[]>;
    add(multiaddr: string, name?: string): Promise<Cloud>;
    test(id: string): Promise<CloudTestResult>;
    remove(id: string): Promise<void>;
  };
  /** The plan the scheduler would use now for a mode (an error when the mode cannot run, e.g. scx with no cloud). */
  plan(mode: Mode): Promise<PlanView>;
  chat(request: ChatRequest, onEvent: (event: ChatEvent) => void): ChatHandle;
  lastSession(): Promise<LastSession | null>;
  privacy(): Promise<PrivacyReport | null>;
  keys: {
    rotateIdentity(): Promise<Identity>;
    exportBackup(passphrase: string): Promise<BackupFile>;
    importBackup(file: BackupFile, passphrase: string): Promise<Identity>;
  };
  events: {
    subscribe(onEvent: (event: BridgeEvent) => void): Unsubscribe;
  };
}

/** Errors that cross the bridge keep a name the UI can branch on and a message it can show. */
export class BridgeError extends Error {
  override name = 'BridgeError';
  constructor(
    message: string,
    /** The daemon's error name (e.g. "NotFoundError", "UnavailableError") or the bridge's ("Unreachable", "Timeout", "NotSupported"). */
    readonly code: string,
    readonly status: number | null = null,
  ) {
    super(message);
  }
}

/** Limits on what the UI accepts from people before anything is sent. */
export const LIMITS = {
  nameMax: 64,
  codeMax: 4096,
  multiaddrMax: 1024,
  promptMax: 32_000,
  passphraseMin: 8,
  passphraseMax: 1024,
  backupMax: 64 * 1024,
} as const;

/** Every method name IPC may carry (main refuses anything else). */
export const BRIDGE_CALLS = [
  'info',
  'identity',
  'renameSelf',
  'devices',
  'invite',
  'join',
  'rename',
  'revoke',
  'clouds.list',
  'clouds.add',
  'clouds.test',
  'clouds.remove',
  'plan',
  'lastSession',
  'privacy',
  'keys.rotateIdentity',
  'keys.exportBackup',
  'keys.importBackup',
] as const;
export type BridgeCall = (typeof BRIDGE_CALLS)[number];

/** IPC channel names shared by preload and main. */
export const IPC = {
  call: 'hush:call',
  chatStart: 'hush:chat:start',
  chatCancel: 'hush:chat:cancel',
  chatEvent: 'hush:chat:event',
  eventsSubscribe: 'hush:events:subscribe',
  eventsUnsubscribe: 'hush:events:unsubscribe',
  event: 'hush:event',
} as const;

