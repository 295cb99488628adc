// Defaults of runtime/net, one place to read and tune them (like js-libp2p's per-service constants).
// Every size that comes from the network has a limit here; every network operation has a timeout.

/** Protocol ids. Bump the trailing number on any incompatible change of the messages. */
export const PAIRING_PROTOCOL = '/hush/pair/1';
export const ROSTER_PROTOCOL = '/hush/roster/1';

/** mDNS service tag, so Hush peers only discover Hush peers (not every libp2p node on the LAN). */
export const MDNS_SERVICE_TAG = '_hush._udp.local';

// ---------- framing ----------

/** Default largest frame a channel accepts or sends (payload bytes, after the length prefix). */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** No configuration may raise the frame limit past this (a varint of 5 bytes holds it). */
export const MAX_FRAME_BYTES_CEILING = 512 * 1024 * 1024;
/**
 * A channel stops reading (pauses the stream, so yamux stops granting send window to the remote)
 * once this many decoded but unread bytes are queued; it resumes when the reader catches up.
 */
export const DEFAULT_RECEIVE_HIGH_WATER_BYTES = 4 * 1024 * 1024;
/** Same, counted in frames (many tiny frames cost memory per object too). */
export const DEFAULT_RECEIVE_HIGH_WATER_FRAMES = 256;
/**
 * Largest yamux receive window per stream: what a remote may still send after we pause, so the
 * memory a paused channel can hold is about highWater + this. 8 MiB keeps 160 MB/s at 50 ms RTT.
 */
export const YAMUX_MAX_STREAM_WINDOW_BYTES = 8 * 1024 * 1024;
/**
 * A paused libp2p stream buffers what arrives and resets itself past `maxReadBufferLength`
 * (4 MiB by default). It must exceed the yamux window or pausing would kill the stream.
 */
export function pausedStreamReadBufferBytes(windowBytes: number): number {
  return 2 * windowBytes + 1024 * 1024;
}
export const PAUSED_STREAM_READ_BUFFER_BYTES = pausedStreamReadBufferBytes(YAMUX_MAX_STREAM_WINDOW_BYTES);
/** Default wait for one frame from the peer. */
export const DEFAULT_RECEIVE_TIMEOUT_MS = 30_000;
/** Default wait for one frame to be handed to the transport (backpressure). */
export const DEFAULT_SEND_TIMEOUT_MS = 30_000;
/** Graceful close waits this long for unsent bytes to flush before resetting the stream. */
export const CLOSE_TIMEOUT_MS = 2_000;
/** Error frames carry a name and a message; both are cut to these lengths. */
export const MAX_ERROR_NAME_CHARS = 64;
export const MAX_ERROR_MESSAGE_CHARS = 1_000;

// ---------- services ----------

/** Dial plus protocol negotiation plus the server's accept frame. */
export const DEFAULT_OPEN_TIMEOUT_MS = 10_000;
/** A served channel whose peer sends nothing for this long is closed. */
export const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60_000;
/** Streams of one protocol one connection may have open at once (libp2p enforces it). */
export const DEFAULT_MAX_INBOUND_STREAMS = 8;
/** Streams of one protocol we may open on one connection. */
export const DEFAULT_MAX_OUTBOUND_STREAMS = 16;
/** Channels one service serves at once, across all connections (duplicate connections included). */
export const DEFAULT_MAX_CONCURRENT_CHANNELS = 64;

// ---------- pairing ----------

export const DEFAULT_INVITE_VALID_MS = 10 * 60_000;
/** Longest invite the inviter will issue. */
export const MAX_INVITE_VALID_MS = 24 * 60 * 60_000;
/** Invites outstanding at once (each one opens the pairing window to unknown peers). */
export const MAX_OUTSTANDING_INVITES = 16;
/** Listen addresses carried by one invite code. */
export const MAX_INVITE_ADDRS = 8;
export const INVITE_SECRET_BYTES = 16;
export const INVITE_CODE_PREFIX = 'HUSH1-';
/** Longest device name accepted from the network. */
export const MAX_DEVICE_NAME_CHARS = 64;
/** Pairing messages are tiny. */
export const PAIRING_MAX_FRAME_BYTES = 16 * 1024;
/** How long the inviter's owner has to answer the confirmation prompt (either side). */
export const DEFAULT_CONFIRM_TIMEOUT_MS = 120_000;
/** The network part of pairing (dial, request, answers), excluding the human confirmations. */
export const DEFAULT_PAIRING_TIMEOUT_MS = 15_000;

// ---------- roster ----------

export const MAX_ROSTER_ENTRIES = 1_024;
export const MAX_CLOUD_ENTRIES = 256;
export const ROSTER_FILE = 'roster.json';
export const CLOUDS_FILE = 'clouds.json';
export const IDENTITY_FILE = 'identity.key';
/** Largest roster/clouds/identity file we read (a corrupt or hostile file must not eat memory). */
export const MAX_STATE_FILE_BYTES = 1024 * 1024;
/** A roster sync frame holds at most MAX_ROSTER_ENTRIES entries of bounded size. */
export const ROSTER_SYNC_MAX_FRAME_BYTES = 512 * 1024;
export const DEFAULT_ROSTER_PUSH_TIMEOUT_MS = 5_000;

// ---------- node ----------

/** How often a device looks for connections it should no longer hold (expired, unpaired). */
export const UNTRUSTED_SWEEP_INTERVAL_MS = 30_000;
/** An unknown peer admitted for pairing may stay connected this long (pairing + both confirmations). */
export const UNPAIRED_CONNECTION_GRACE_MS = DEFAULT_PAIRING_TIMEOUT_MS + 2 * DEFAULT_CONFIRM_TIMEOUT_MS;

/** Dial timeout of the connection manager (all addresses of a peer). */
export const DEFAULT_DIAL_TIMEOUT_MS = 10_000;
/** Connections per second one host may open to us before libp2p throttles it. */
export const DEFAULT_INBOUND_CONNECTION_THRESHOLD = 20;
export const DEFAULT_MAX_CONNECTIONS = 128;
