// runtime/net: the libp2p layer of Hush. Carries bytes; knows nothing of models.
export * from './constants.ts';
export * from './errors.ts';
export { loadOrCreateIdentity, fingerprint, encodeIdentity, decodeIdentity } from './identity.ts';
export {
  Roster,
  CloudList,
  sanitizeDeviceName,
  parseRosterEntry,
  type RosterEntry,
  type RosterChange,
  type RosterChangeType,
  type RosterEvents,
  type RosterInit,
  type MergeOptions,
  type CloudEntry,
} from './roster.ts';
export {
  FrameChannel,
  FrameDecoder,
  FrameKind,
  encodeFrame,
  encodeFrameParts,
  decodeFramePayload,
  errorFromErrorFrame,
  type DecodedFrame,
  type FrameChannelInit,
  type ReceiveOptions,
  type SendOptions,
} from './framing.ts';
export {
  ProtocolService,
  openChannel,
  mapDialError,
  toDialTarget,
  type ChannelHandler,
  type ChannelDialer,
  type ChannelTarget,
  type OpenChannelOptions,
  type ProtocolServiceComponents,
  type ProtocolServiceInit,
  type ServeOptions,
  type ServiceRegistrar,
} from './service.ts';
export { createDeviceGater, createCloudGater, type DeviceGaterInit, type CloudGaterInit } from './gater.ts';
export {
  PairingService,
  InviteBook,
  encodeInvite,
  decodeInvite,
  type Invite,
  type InviteContents,
  type PairingPeerInfo,
  type ConfirmPairing,
  type JoinOptions,
  type PairingInit,
  type PairingComponents,
  type PairingEvents,
} from './pairing.ts';
export { RosterSyncService, type RosterSyncInit, type RosterSyncComponents, type PushResult } from './roster-sync.ts';
export { createHushNode, HushNode, type HushNodeInit, type HushRole, type HushServices, type HandleOptions } from './node.ts';
export { serveRequests, RequestChannel } from './rpc.ts';
