// Connection gaters: who may hold a connection with this node at all.
//
// Device (trusted role):
//   - revoked peers: refused at the handshake in both directions and never dialled
//     (denyDialPeer, denyInboundEncryptedConnection, denyOutboundEncryptedConnection), whatever
//     else is going on, invites included;
//   - trusted peers (on the roster, not expired): admitted;
//   - unknown peers, inbound: admitted only while this device has a live invite (the pairing
//     window), and then they can only pair: every trusted protocol re-checks the roster per channel
//     and refuses them with PeerRefusedError;
//   - unknown peers, outbound: admitted, because a device dials its cloud peer (never on the
//     roster) and, when joining, an inviter not yet on the roster. A cloud peer can open nothing on
//     a device over that connection except pairing (which needs a secret) and identify/ping.
// Cloud (untrusted role): anyone may connect; it serves only the cloud protocol (trusted: false).
// An optional deny list refuses chosen peers there.
import type { ConnectionGater, Logger, PeerId } from '@libp2p/interface';
import type { InviteBook } from './pairing.ts';
import type { Roster } from './roster.ts';

export interface DeviceGaterInit {
  roster: Roster;
  /** Outstanding invites; without it unknown inbound peers are always refused. */
  invites?: InviteBook;
  log?: Logger;
}

export function createDeviceGater(init: DeviceGaterInit): ConnectionGater {
  const { roster, invites, log } = init;
  const revoked = (peerId: PeerId, where: string): boolean => {
    if (!roster.isRevoked(peerId)) return false;
    log?.('refused revoked peer %p (%s)', peerId, where);
    return true;
  };
  return {
    denyDialPeer: (peerId) => revoked(peerId, 'dial'),
    denyOutboundEncryptedConnection: (peerId) => revoked(peerId, 'outbound handshake'),
    denyInboundEncryptedConnection: (peerId) => {
      if (revoked(peerId, 'inbound handshake')) return true;
      if (roster.isTrusted(peerId)) return false;
      if (invites?.hasLiveInvite() === true) {
        log?.('admitting unknown peer %p for pairing only', peerId);
        return false;
      }
      log?.('refused unknown peer %p (no invite outstanding)', peerId);
      return true;
    },
  };
}

export interface CloudGaterInit {
  /** Return true to refuse a peer (abuse, ban list). */
  deny?(peerId: PeerId): boolean;
  log?: Logger;
}

export function createCloudGater(init: CloudGaterInit = {}): ConnectionGater {
  const deny = (peerId: PeerId): boolean => {
    if (init.deny?.(peerId) !== true) return false;
    init.log?.('refused denied peer %p', peerId);
    return true;
  };
  return {
    denyDialPeer: deny,
    denyInboundEncryptedConnection: deny,
    denyOutboundEncryptedConnection: deny,
  };
}
