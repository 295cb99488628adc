import * as z from 'zod';
import type { TranscriptCrossing, TranscriptDirection, TranscriptStage } from '../scx/transcript.ts';

/**
 * Plain JSON-able data the DeviceController returns and the HTTP API carries.
 * Timestamps are ISO 8601 strings in UTC ("2025-01-31T12:00:00.000Z"), except OpenAI's `created`
 * (unix seconds, as OpenAI defines it).
 */

export const MODES = ['local', 'split', 'scx'] as const;
export type Mode = (typeof MODES)[number];

export interface Identity {
  peerId: string;
  /** Short human-comparable form of the PeerId, shown next to the name. */
  fingerprint: string;
  name: string;
  /** Multiaddrs this device listens on / announces. */
  addresses: string[];
}

export type LinkPath = 'lan' | 'direct' | 'relay';

export interface Device {
  peerId: string;
  fingerprint: string;
  name: string;
  added: string;
  expires?: string;
  /** When it was revoked; a revoked device stays on the roster so the gater keeps refusing it. */
  revoked?: string;
  online: boolean;
  /** How we reach it now; null when offline. */
  path: LinkPath | null;
  rttMs?: number;
  bandwidthMBps?: number;
  /** Layers the current plan gives it, for display ("embed, 0-3"). */
  layers?: string;
  lastSeen?: string;
}

export interface Invite {
  /** One-time code the other device enters (or scans). */
  code: string;
  expiresAt: string;
}

export interface JoinResult {
  /** The inviter, now paired. */
  peerId: string;
  name: string;
}

export interface Cloud {
  id: string;
  multiaddr: string;
  peerId?: string;
  name: string;
  reachable?: boolean;
  rttMs?: number;
  lastTested?: string;
}

export interface CloudTestResult {
  reachable: boolean;
  rttMs: number | null;
  error?: string;
}

/** Loose view of a plan for display. The scheduler owns the real Plan type; it may ride along in `details`. */
export interface PlanStageView {
  /** Device name or PeerId (or the cloud's name). */
  device: string;
  /** 'embed' | 'head' | 'cloud' | 'tail' | 'lm_head' | ... */
  role: string;
  /** Human-readable span, e.g. "0-3" or "embed". */
  layers: string;
  predictedMs?: number;
  measuredMs?: number;
}

export interface PlanView {
  mode: Mode;
  stages: PlanStageView[];
  predicted: { ttftMs: number; perTokenMs: number };
  /** One line per reason the scheduler chose this plan. */
  why: string[];
  details?: unknown;
}

export type ChatRole = 'system' | 'user' | 'assistant';
export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export interface GenerateRequest {
  prompt?: string;
  /** Rendered by the engine with the model's chat template. Exactly one of prompt / messages. */
  messages?: ChatMessage[];
  /** Absent: the controller decides (scx when a cloud is configured, else local). */
  mode?: Mode;
  /** Model id from models(); absent: the controller's default model. */
  model?: string;
  maxTokens: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  /**
   * Stop strings. The API layer also cuts the output at the first stop string and aborts the
   * generation itself, so a controller that ignores `stop` still behaves correctly.
   */
  stop?: string[];
}

export interface GenerationUsage {
  promptTokens: number;
  completionTokens: number;
}

/** Milliseconds. Known keys: ttftMs, totalMs, perTokenMs; controllers may add more. */
export type GenerationTimings = Record<string, number>;

export type FinishReason = 'stop' | 'length';

/**
 * What controller.generate() yields.
 * - start (optional, first): the mode actually used and the prompt's token count. Lets the API
 *   answer the HTTP head with the mode and report usage even when a stop string ends it early.
 * - token: one sampled token; `text` is its decoded delta (may be '' while a multi-byte character
 *   is incomplete).
 * - event: something happened mid-generation (re-plan, recovery after a device dropped).
 * - done (last): why it ended, usage, timings.
 */
export type GenerateEvent =
  | { type: 'start'; mode: Mode; promptTokens: number; model?: string; sessionId?: string }
  | { type: 'token'; text: string; id: number }
  | { type: 'event'; event: HushEvent }
  | { type: 'done'; finishReason: FinishReason; usage: GenerationUsage; timings: GenerationTimings };

export interface LastSessionCrossing {
  stage: TranscriptStage;
  layer: number;
  crossing: TranscriptCrossing;
  direction: TranscriptDirection;
  shape: number[];
  bytes: number;
}

/** What the cloud peer saw in the last session (from the coordinator's own transcript). */
export interface LastSession {
  mode: Mode;
  sessionId?: string;
  model?: string;
  startedAt?: string;
  crossings: LastSessionCrossing[];
  totalBytes: number;
}

/** One measured row of the attack harness (SCX.md, "Transcript and attack harness"). */
export interface PrivacyRow {
  mode: Mode;
  /** The measured setting within the mode (noise kind and scale, decoys), e.g. "scx, rows noise b=8 (10x RMS), 4 decoys". */
  setting?: string;
  /** 'A1' | 'A2' | 'A3' | 'A6' | 'A7' | 'A9' */
  attack: string;
  layer?: number;
  metric: string;
  value: number;
  /** The chance-level value of the metric, for comparison. */
  chance?: number;
}

export interface PrivacyReport {
  generatedAt: string;
  model: string;
  rows: PrivacyRow[];
  /** Per mode: true only when the harness measured chance-level recovery for every attack. */
  confidential: Partial<Record<Mode, boolean>>;
  details?: unknown;
}

export interface ModelInfo {
  id: string;
  /** Unix seconds (OpenAI's convention). */
  created: number;
  ownedBy: string;
}

export const HUSH_EVENT_TYPES = [
  'device.online',
  'device.offline',
  'device.paired',
  'device.renamed',
  'device.revoked',
  'invite.created',
  'invite.expired',
  'cloud.added',
  'cloud.removed',
  'cloud.reachable',
  'cloud.unreachable',
  'identity.renamed',
  /** The identity key changed (rotated, or imported from a backup): new PeerId, fingerprint, addresses. */
  'identity.changed',
  'plan.changed',
  'session.start',
  'session.end',
  'recovery',
] as const;
export type HushEventType = (typeof HUSH_EVENT_TYPES)[number];

/** A live event for the app (SSE). `data` carries type-specific fields (peerId, sessionId, ...). */
export interface HushEvent {
  type: HushEventType;
  at: string;
  peerId?: string;
  sessionId?: string;
  message?: string;
  data?: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Request schemas (zod). Every size that comes from the network has a limit here.

/** A display name: trimmed, 1..64 characters, no control characters. */
export const NameSchema = z
  .string()
  .trim()
  .min(1, 'name must not be empty')
  .max(64, 'name must be at most 64 characters')
  // eslint-disable-next-line no-control-regex
  .regex(/^[^\u0000-\u001f\u007f]*$/, 'name must not contain control characters');

/** libp2p PeerIds are base58btc ("12D3KooW...") or a base32 CID; both are alphanumeric. */
export const PeerIdSchema = z.string().regex(/^[A-Za-z0-9]{1,128}$/, 'peerId must be 1-128 letters or digits');
export const CloudIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, 'cloud id must be 1-128 of [A-Za-z0-9_-]');
export const ModeSchema = z.enum(MODES);

export const RenameBodySchema = z.object({ name: NameSchema }).strict();
export type RenameBody = z.infer<typeof RenameBodySchema>;

/** createInvite takes nothing; an absent body or {} is accepted. */
export const CreateInviteBodySchema = z.object({}).strict();

export const JoinInviteBodySchema = z
  .object({
    code: z.string().trim().min(1, 'code must not be empty').max(4096, 'code must be at most 4096 characters'),
    name: NameSchema.optional(),
  })
  .strict();
export type JoinInviteBody = z.infer<typeof JoinInviteBodySchema>;

export const AddCloudBodySchema = z
  .object({
    multiaddr: z
      .string()
      .trim()
      .min(2)
      .max(1024, 'multiaddr must be at most 1024 characters')
      .regex(/^\//, 'multiaddr must start with "/" (e.g. /ip4/203.0.113.5/tcp/4001/p2p/12D3KooW...)'),
    name: NameSchema.optional(),
  })
  .strict();
export type AddCloudBody = z.infer<typeof AddCloudBodySchema>;

/** Key backups: the passphrase people choose, and the backup text (the app's LIMITS agree). */
export const KEY_LIMITS = {
  passphraseMin: 8,
  passphraseMax: 1024,
  backupMax: 64 * 1024,
} as const;

const PassphraseSchema = z
  .string()
  .min(KEY_LIMITS.passphraseMin, `passphrase must have at least ${KEY_LIMITS.passphraseMin} characters`)
  .max(KEY_LIMITS.passphraseMax, `passphrase must have at most ${KEY_LIMITS.passphraseMax} characters`);

/** POST /api/v1/keys/export. */
export const ExportBackupBodySchema = z.object({ passphrase: PassphraseSchema }).strict();
/** POST /api/v1/keys/import. */
export const ImportBackupBodySchema = z
  .object({
    backup: z.string().min(1, 'backup must not be empty').max(KEY_LIMITS.backupMax, `backup must be at most ${KEY_LIMITS.backupMax} characters`),
    passphrase: PassphraseSchema,
  })
  .strict();

export const PlanQuerySchema = z.object({ mode: ModeSchema }).strict();

export const LIMITS = {
  promptChars: 1_000_000,
  messages: 1024,
  messageChars: 1_000_000,
  stopStrings: 16,
  stopChars: 256,
  maxTokens: 131_072,
} as const;

export const ChatMessageSchema = z
  .object({
    role: z.enum(['system', 'user', 'assistant']),
    content: z.string().max(LIMITS.messageChars),
  })
  .strict();

export const StopSchema = z
  .array(z.string().min(1, 'stop strings must not be empty').max(LIMITS.stopChars))
  .max(LIMITS.stopStrings, `at most ${LIMITS.stopStrings} stop strings`);

export const SamplingSchema = {
  maxTokens: z.number().int().min(1).max(LIMITS.maxTokens),
  temperature: z.number().min(0).max(2),
  topP: z.number().gt(0).max(1),
  topK: z.number().int().min(0).max(1_000_000),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
};

/** POST /api/v1/generate. */
export const GenerateBodySchema = z
  .object({
    prompt: z.string().max(LIMITS.promptChars).optional(),
    messages: z.array(ChatMessageSchema).min(1).max(LIMITS.messages).optional(),
    mode: ModeSchema.optional(),
    model: z.string().min(1).max(256).optional(),
    maxTokens: SamplingSchema.maxTokens.default(256),
    temperature: SamplingSchema.temperature.optional(),
    topP: SamplingSchema.topP.optional(),
    topK: SamplingSchema.topK.optional(),
    seed: SamplingSchema.seed.optional(),
    stop: StopSchema.optional(),
    /** true (default): Server-Sent Events; false: one JSON object when generation ends. */
    stream: z.boolean().default(true),
  })
  .strict()
  .refine((b) => (b.prompt === undefined) !== (b.messages === undefined), {
    message: 'give exactly one of "prompt" or "messages"',
  });
export type GenerateBody = z.infer<typeof GenerateBodySchema>;

/** One-line message from a zod error: "path: message; path: message". */
export function zodMessage(error: z.ZodError): string {
  return error.issues
    .map((i) => (i.path.length ? `${i.path.map(String).join('.')}: ${i.message}` : i.message))
    .join('; ');
}
